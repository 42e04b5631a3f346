/* The performance model: alpha-beta collectives plus measured compute
 * (partition/perf.h; equations in PERFORMANCE.md). */
#include "partition/perf.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const coll_names[FW_PERF_N_COLL] = {"sendrecv", "allreduce", "alltoall"};
static const char *const class_names[FW_PERF_N_CLASS] = {"intra", "inter"};

const char *fw_perf_coll_name(fw_perf_coll k) { return coll_names[k]; }
const char *fw_perf_class_name(fw_perf_class c) { return class_names[c]; }

void fw_perf_coeffs(fw_perf_coll k, int n, double *c_alpha, double *c_beta) {
    if (n < 2) {
        *c_alpha = *c_beta = 0;
        return;
    }
    const double m = n;
    switch (k) {
    case FW_PERF_SENDRECV: *c_alpha = 1, *c_beta = 1; break;
    case FW_PERF_ALLREDUCE: {
        const double ring = 2 * (m - 1), tree = 2 * ceil(log2(m));
        *c_alpha = ring < tree ? ring : tree;
        *c_beta = 2 * (m - 1) / m;
        break;
    }
    default: *c_alpha = m - 1, *c_beta = (m - 1) / m; break;
    }
}

double fw_perf_coll_s(const fw_perf_links *L, fw_perf_coll k, fw_perf_class cls, int n, double bytes) {
    const fw_perf_ab *p = &L->ab[cls][k];
    if (n < 2 || !p->set) return 0;
    if (p->n_points >= 2 && n == p->ranks && bytes >= p->m[0] && bytes <= p->m[p->n_points - 1]) {
        int i = 1;
        while (i < p->n_points - 1 && p->m[i] < bytes) i++;
        const double f = (bytes - p->m[i - 1]) / (p->m[i] - p->m[i - 1]);
        return p->t[i - 1] + f * (p->t[i] - p->t[i - 1]);
    }
    double ca, cb;
    fw_perf_coeffs(k, n, &ca, &cb);
    return ca * p->alpha + cb * bytes * p->beta;
}

double fw_perf_allreduce_s(const fw_perf_links *L, fw_perf_class cls, int n, double bytes, double wait_s) {
    if (n < 2) return 0;
    const double t = fw_perf_coll_s(L, FW_PERF_ALLREDUCE, cls, n, bytes);
    return t > wait_s ? t : wait_s;
}

int fw_perf_fit(const double *x, const double *t, int n, double *a, double *b, fw_err *e) {
    /* Weighted normal equations of t = a + b x, weights 1/t^2. */
    double sw = 0, sx = 0, sxx = 0, st = 0, sxt = 0;
    for (int i = 0; i < n; i++) {
        if (!(t[i] > 0) || !(x[i] >= 0)) return fw_errf(e, "fit: point %d (%g bytes, %g s) is not positive", i, x[i], t[i]);
        const double w = 1 / (t[i] * t[i]);
        sw += w, sx += w * x[i], sxx += w * x[i] * x[i], st += w * t[i], sxt += w * x[i] * t[i];
    }
    const double det = sw * sxx - sx * sx;
    if (n < 2 || !(fabs(det) > 1e-30 * sw * sxx)) return fw_errf(e, "fit: needs two or more distinct message sizes");
    *b = (sw * sxt - sx * st) / det;
    *a = (st - *b * sx) / sw;
    return FW_OK;
}

static int read_file_json(const char *path, const char *format, json_t **out, fw_err *e) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) return fw_errf(e, "%s: %s (line %d)", path, je.text, je.line);
    const char *f = json_string_value(json_object_get(j, "format"));
    json_int_t v = json_integer_value(json_object_get(j, "version"));
    if (!f || strcmp(f, format) || v != 1) {
        json_decref(j);
        return fw_errf(e, "%s: not a \"%s\" version 1 file (its \"format\" and \"version\" keys)", path, format);
    }
    *out = j;
    return FW_OK;
}

static int get_pos(const json_t *o, const char *key, bool zero_ok, double *v, const char *path, const char *where,
                   fw_err *e) {
    const json_t *x = json_object_get(o, key);
    if (!json_is_number(x)) return fw_errf(e, "%s: %s has no number \"%s\"", path, where, key);
    *v = json_number_value(x);
    if (!isfinite(*v) || *v < 0 || (!zero_ok && *v == 0))
        return fw_errf(e, "%s: %s: \"%s\" is %g, not a %s number", path, where, key, *v, zero_ok ? "non-negative" : "positive");
    return FW_OK;
}

int fw_perf_links_load(fw_perf_links *L, const char *path, fw_err *e) {
    json_t *j;
    if (read_file_json(path, "furrow-links", &j, e)) return FW_ERR;
    int rc = FW_OK, found = 0;
    for (int c = 0; c < FW_PERF_N_CLASS && rc == FW_OK; c++) {
        const json_t *cls = json_object_get(json_object_get(j, "links"), class_names[c]);
        for (int k = 0; k < FW_PERF_N_COLL && cls && rc == FW_OK; k++) {
            const json_t *p = json_object_get(cls, coll_names[k]);
            if (!p) continue;
            char where[64];
            snprintf(where, sizeof where, "links.%s.%s", class_names[c], coll_names[k]);
            double a, b;
            rc = get_pos(p, "alpha_s", true, &a, path, where, e);
            if (rc == FW_OK) rc = get_pos(p, "beta_s_per_byte", true, &b, path, where, e);
            if (rc == FW_OK) L->ab[c][k] = (fw_perf_ab){.alpha = a, .beta = b, .set = true}, found++;
            /* The measured points, if any: ascending sizes, positive times. */
            const json_t *pts = json_object_get(p, "points");
            fw_perf_ab *ab = &L->ab[c][k];
            ab->ranks = (int)json_integer_value(json_object_get(p, "ranks"));
            for (size_t i = 0; rc == FW_OK && json_is_array(pts) && i < json_array_size(pts); i++) {
                const json_t *pt = json_array_get(pts, i);
                const double m = json_number_value(json_array_get(pt, 0)), t = json_number_value(json_array_get(pt, 1));
                if (i >= FW_PERF_MAX_POINTS || !(t > 0) || !(m > 0) || (i > 0 && !(m > ab->m[i - 1])))
                    rc = fw_errf(e, "%s: %s.points[%zu]: expected [bytes, seconds], sizes ascending, at most %d",
                                 path, where, i, FW_PERF_MAX_POINTS);
                else ab->m[i] = m, ab->t[i] = t, ab->n_points = (int)i + 1;
            }
        }
    }
    if (rc == FW_OK && !found) rc = fw_errf(e, "%s: no link parameters under \"links\" (intra/inter)", path);
    if (rc == FW_OK) snprintf(L->source, sizeof L->source, "measured: %s", path);
    json_decref(j);
    return rc;
}

int fw_perf_links_builtin(fw_perf_links *L, const char *system, fw_err *e) {
    if (strcmp(system, "h100") && strcmp(system, "h200"))
        return fw_errf(e, "no published link figures for '%s' (h100, h200)", system);
    memset(L, 0, sizeof *L);
    /* Intra-node all-reduce, NVLink 4 (H100 and H200 HGX boards alike): 348 GB/s
     * bus bandwidth at 512 MB and 24.3 us at 14 KB measured over 4 H200s
     * (NCCL 2.28); alpha = (24.3 us - 1.5 x 14 KB / 348 GB/s) / min(6, 4) steps. */
    L->ab[FW_PERF_INTRA][FW_PERF_ALLREDUCE] = (fw_perf_ab){.alpha = 6.06e-6, .beta = 1 / 348e9, .set = true};
    /* NVLink 4 point to point: 450 GB/s a direction per GPU (NVIDIA's figure),
     * and the same launch latency as a collective step. */
    L->ab[FW_PERF_INTRA][FW_PERF_SENDRECV] = (fw_perf_ab){.alpha = 6.06e-6, .beta = 1 / 450e9, .set = true};
    L->ab[FW_PERF_INTRA][FW_PERF_ALLTOALL] = (fw_perf_ab){.alpha = 6.06e-6, .beta = 1 / 348e9, .set = true};
    /* Between nodes: 400 Gb/s NDR InfiniBand per GPU (8 per node): 50 GB/s a
     * rail; NCCL all-reduce over 2+ such nodes reaches 400-450 GB/s bus
     * bandwidth at 8 GB (published NCCL-tests figures; PERFORMANCE.md), which
     * is the NVLink ring inside plus the rails between: 400 GB/s is taken. A
     * message step over IB: 10 us (NCCL's inter-node LL latency). */
    L->ab[FW_PERF_INTER][FW_PERF_ALLREDUCE] = (fw_perf_ab){.alpha = 10e-6, .beta = 1 / 400e9, .set = true};
    L->ab[FW_PERF_INTER][FW_PERF_SENDRECV] = (fw_perf_ab){.alpha = 10e-6, .beta = 1 / 50e9, .set = true};
    L->ab[FW_PERF_INTER][FW_PERF_ALLTOALL] = (fw_perf_ab){.alpha = 10e-6, .beta = 1 / 50e9, .set = true};
    snprintf(L->source, sizeof L->source, "published %s figures (NVLink 4 in a node, 400 Gb/s InfiniBand per GPU "
             "between nodes)", system);
    return FW_OK;
}

int fw_perf_compute_load(fw_perf_compute *C, const char *path, fw_err *e) {
    json_t *j;
    if (read_file_json(path, "furrow-compute", &j, e)) return FW_ERR;
    memset(C, 0, sizeof *C);
    int rc = FW_OK;
    double tp;
    const json_t *steps = json_object_get(j, "steps");
    if (get_pos(j, "tp", false, &tp, path, "the file", e)) rc = FW_ERR;
    else if (!json_is_array(steps) || json_array_size(steps) == 0)
        rc = fw_errf(e, "%s: no \"steps\" array", path);
    else if (json_array_size(steps) > FW_PERF_MAX_ROWS)
        rc = fw_errf(e, "%s: %zu steps, at most %d", path, json_array_size(steps), FW_PERF_MAX_ROWS);
    C->tp = (int)tp;
    for (size_t i = 0; rc == FW_OK && i < json_array_size(steps); i++) {
        const json_t *s = json_array_get(steps, i);
        char where[32];
        snprintf(where, sizeof where, "steps[%zu]", i);
        const char *ph = json_string_value(json_object_get(s, "phase"));
        fw_perf_compute_row *r = &C->rows[C->n_rows];
        double batch = 0, tokens = 0;
        if (!ph || (strcmp(ph, "decode") && strcmp(ph, "prefill"))) {
            rc = fw_errf(e, "%s: %s: \"phase\" must be \"decode\" or \"prefill\"", path, where);
            break;
        }
        r->prefill = !strcmp(ph, "prefill");
        rc = get_pos(s, "batch", false, &batch, path, where, e);
        if (rc == FW_OK) rc = get_pos(s, "tokens", false, &tokens, path, where, e);
        if (rc == FW_OK) rc = get_pos(s, "layer_s", false, &r->layer_s, path, where, e);
        if (rc == FW_OK && json_object_get(s, "fixed_s")) rc = get_pos(s, "fixed_s", true, &r->fixed_s, path, where, e);
        if (rc == FW_OK && json_object_get(s, "wait_s")) rc = get_pos(s, "wait_s", true, &r->wait_s, path, where, e);
        r->batch = (int64_t)batch, r->tokens = (int64_t)tokens;
        if (rc == FW_OK) C->n_rows++;
    }
    if (rc == FW_OK) snprintf(C->source, sizeof C->source, "measured: %s (tp %d)", path, C->tp);
    json_decref(j);
    return rc;
}

void fw_perf_compute_builtin(fw_perf_compute *C, const char *system) {
    /* GPU.md, "furrow bench --synthetic deepseek-v3 --layers 4 --dense 1":
     * layer ms of one H100 at context 1024 (decode) and the 4096-token prefill
     * (FP8 MoE activations), a whole layer (tp 1). The fixed part: the step
     * less 4 layers (embedding, the bf16 head, copies). */
    static const struct { bool prefill; int64_t batch, tokens; double layer_ms, step_ms; } t[] = {
        {false, 1, 1, 0.287, 1.89},    {false, 8, 8, 0.973, 5.00},   {false, 64, 64, 2.92, 16.4},
        {false, 256, 256, 3.84, 30.4}, {true, 1, 4096, 10.1, 42.9},
    };
    /* An H200: the same tensor cores, more bandwidth: decode steps (bandwidth
     * bound) scaled by the device copy bandwidths measured on each, 3010 GB/s
     * (H100, GPU.md) and 4278 GB/s (H200); prefill as the H100's. */
    const bool h200 = system && !strcmp(system, "h200");
    memset(C, 0, sizeof *C);
    C->tp = 1;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        const double k = h200 && !t[i].prefill ? 3010.0 / 4278.0 : 1.0;
        double fixed = (t[i].step_ms - 4 * t[i].layer_ms) / 1e3 * k;
        C->rows[C->n_rows++] = (fw_perf_compute_row){t[i].prefill, t[i].batch, t[i].tokens,
                                                     t[i].layer_ms / 1e3 * k, fixed > 0 ? fixed : 0, 0};
    }
    snprintf(C->source, sizeof C->source, "built in: one H100's per-layer figures (GPU.md)%s, split over tp",
             h200 ? ", decode scaled to the H200's copy bandwidth" : "");
}

double fw_perf_layer_s(const fw_perf_compute *C, bool prefill, int64_t tokens, int tp, double *fixed_s,
                       double *wait_s) {
    const fw_perf_compute_row *best = NULL;
    double dist = INFINITY;
    for (int i = 0; i < C->n_rows; i++) {
        const fw_perf_compute_row *r = &C->rows[i];
        if (r->prefill != prefill) continue;
        const double d = fabs(log((double)r->tokens / (double)tokens));
        if (d < dist) dist = d, best = r;
    }
    if (!best) return -1;
    /* Decode between measured batches: the nearest row (bandwidth-bound
     * steps change slowly with the batch); prefill scales with its tokens. */
    const double scale = prefill ? (double)tokens / (double)best->tokens : 1.0;
    if (fixed_s) *fixed_s = best->fixed_s * scale;
    if (wait_s) *wait_s = best->wait_s;
    return best->layer_s * scale * (double)C->tp / (double)tp;
}

/* The link class of a group of n consecutive ranks starting at `first` (tp
 * fastest in the rank map), or of the hop between two ranks. */
static fw_perf_class class_of(int first, int last, int rpn) {
    return first / rpn == last / rpn ? FW_PERF_INTRA : FW_PERF_INTER;
}

int fw_perf_predict(const fw_layout *l, const fw_perf_compute *C, const fw_perf_links *L, const fw_perf_req *r,
                    fw_perf_step *out, fw_err *e) {
    memset(out, 0, sizeof *out);
    const bool together = r->together && l->pp == 1;
    /* Tokens of one forward: the whole batch together, or one sequence. */
    const int64_t fwd_tokens = together ? r->batch * r->tokens : r->tokens;
    double fixed, wait_s;
    const double layer = fw_perf_layer_s(C, r->prefill, fwd_tokens, l->tp, &fixed, &wait_s);
    if (layer < 0)
        return fw_errf(e, "the compute figures (%s) have no %s step", C->source, r->prefill ? "prefill" : "decode");
    const double msg = (double)fwd_tokens * (double)r->hidden * r->value_bytes;
    const int rpn = r->ranks_per_node > 0 ? r->ranks_per_node : l->world;
    double slot_max = 0, sum = 0, ar_sum = 0, p2p_sum = 0, comp_sum = 0;
    for (int s = 0; s < l->pp; s++) {
        const fw_stage *st = &l->stages[s];
        const int first = s * l->tp;  /* replica 0; the others sit alike */
        const fw_perf_class tpc = class_of(first, first + l->tp - 1, rpn);
        const double n_ar = 2.0 * st->n_layers + (st->has_embed ? 1 : 0);
        const double ar = n_ar * fw_perf_allreduce_s(L, tpc, l->tp, msg, wait_s);
        const double comp = st->n_layers * layer + (st->has_head ? fixed : 0);
        double hop = 0;
        if (s + 1 < l->pp) {
            const fw_perf_class hc = class_of(first, first + l->tp, rpn);
            /* Every tp rank sends the hidden states to its peer of the next
             * stage: across nodes they share the node's links. */
            const int senders = l->tp < rpn ? l->tp : rpn;
            const int nics = r->nics_per_node > 0 ? r->nics_per_node : senders;
            const double share = hc == FW_PERF_INTER && senders > nics ? ceil((double)senders / nics) : 1;
            hop = fw_perf_coll_s(L, FW_PERF_SENDRECV, hc, 2, msg * share);
        }
        const double slot = comp + ar + hop;
        if (slot > slot_max) slot_max = slot;
        sum += slot, ar_sum += ar, p2p_sum += hop, comp_sum += comp;
    }
    /* One forward per sequence unless together: the first passes every stage,
     * the others follow one slot of the slowest stage apart. */
    const double n_fwd = together ? 1 : (double)r->batch;
    double step = sum + (n_fwd - 1) * slot_max;
    /* The next tokens: an argmax over the head's tp group (an all-reduce of a
     * value and an index per sequence), then a broadcast from the head's rank
     * to the replica (tree: ceil(log2 n) message steps). */
    const int rep = l->tp * l->pp, last = (l->pp - 1) * l->tp;
    double other = fw_perf_allreduce_s(L, class_of(last, last + l->tp - 1, rpn), l->tp, 8.0 * (double)r->batch, wait_s);
    if (rep > 1) {
        const fw_perf_class c = class_of(0, rep - 1, rpn);
        const fw_perf_ab *p = &L->ab[c][FW_PERF_SENDRECV];
        if (p->set) other += ceil(log2((double)rep)) * (p->alpha + 4.0 * (double)r->batch * p->beta);
    }
    step += other;
    const double scale = sum > 0 ? (step - other) / sum : 0; /* share of the path: the slots it holds */
    out->compute_s = comp_sum * scale;
    out->allreduce_s = ar_sum * scale;
    out->p2p_s = p2p_sum * scale;
    out->other_s = other;
    out->step_s = step;
    out->tokens_s = (double)l->dp * (double)(r->batch * r->tokens) / step;
    return FW_OK;
}
