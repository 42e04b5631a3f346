/* Layout planning: validates or chooses (tp, pp, dp), splits the layers into
 * pipeline stages by cost and estimates the memory of every rank.
 *
 * Automatic choice (a request's tp or pp of 0):
 *  - tp: the largest divisor of ranks_per_node (default: the world) that divides
 *    the world (and world / pp when pp is given) and that the model allows (heads,
 *    vocabulary, dense and shared-expert intermediate sizes divisible by tp; tp <=
 *    n_routed_experts): tensor parallelism is the fastest split but needs NVLink,
 *    so it fills a node and no more.
 *  - pp: the smallest divisor of world / tp (at most num_hidden_layers) whose
 *    layout fits mem_per_rank; the remaining factor becomes data-parallel
 *    replicas, which add throughput without pipeline bubbles. With no memory
 *    given, pp = world / tp (or its largest divisor <= num_hidden_layers).
 *  - dp = world / (tp * pp).
 *
 * Cost of a layer: the matmul parameters one decode token touches in it
 * (attention projections, plus the dense FFN or router + shared expert +
 * num_experts_per_tok routed experts). The embedding is a lookup (cost
 * hidden_size, on the first stage); the head is V x D (on the last). Stages are
 * contiguous layer ranges minimising the largest stage cost.
 *
 * Memory of a rank: the bytes of the slices fw_shard_slice gives it, each tensor
 * as stored (stored_of): FP8 linear weights of 1 byte plus their f32 block
 * scales when the config is fp8; compressed-tensors INT4 weights (the config's
 * quantization_config) as packed int32 words of 8 values plus a bf16 scale per
 * row and group; with a request's `weights` spec, the tensors it covers as INT4
 * or INT8 (1 byte plus a bf16 scale per row) instead; everything else BF16
 * (router, embedding, head, norms) or f32 (e_score_correction_bias). Then the
 * latent KV cache of its layers and an activation estimate (act_bytes). */
#include "partition/plan.h"

#include <float.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/model_tensors.h"
#include "io/quant_ct.h"
#include "partition/shard.h"

#define DEFAULT_CONTEXT 4096
#define PREFILL_CHUNK 2048

static void app(char *b, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void app(char *b, size_t n, const char *fmt, ...) {
    size_t u = strlen(b);
    if (u + 1 >= n) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b + u, n - u, fmt, ap);
    va_end(ap);
}

/* ---- which tp the model allows ---- */

static bool any_layer(const fw_config *c, bool moe) {
    for (int l = 0; l < c->num_hidden_layers; l++)
        if (fw_config_layer_is_moe(c, l) == moe) return true;
    return false;
}

/* Appends the reasons tp is refused to why (if not NULL). */
static bool tp_ok(const fw_config *c, int tp, char *why, size_t n) {
    char tmp[8];
    if (!why) why = tmp, n = sizeof tmp, tmp[0] = '\0';
    const size_t before = strlen(why);
    const int64_t Is = c->moe_intermediate_size * c->n_shared_experts;
    const bool moe = any_layer(c, true);
    if (c->num_attention_heads % tp)
        app(why, n, "%snum_attention_heads %d is not divisible by %d", strlen(why) > before ? ", " : "",
            c->num_attention_heads, tp);
    if (c->vocab_size % tp)
        app(why, n, "%svocab_size %lld is not divisible by %d", strlen(why) > before ? ", " : "",
            (long long)c->vocab_size, tp);
    if (any_layer(c, false) && c->intermediate_size % tp)
        app(why, n, "%sintermediate_size %lld (dense layers) is not divisible by %d",
            strlen(why) > before ? ", " : "", (long long)c->intermediate_size, tp);
    if (moe && Is > 0 && Is % tp)
        app(why, n, "%smoe_intermediate_size x n_shared_experts = %lld (shared expert) is not divisible by %d",
            strlen(why) > before ? ", " : "", (long long)Is, tp);
    if (moe && tp > c->n_routed_experts)
        app(why, n, "%stp %d exceeds n_routed_experts %d (a rank would hold no expert)",
            strlen(why) > before ? ", " : "", tp, c->n_routed_experts);
    /* tmp may have truncated: judge by the checks, not the text. */
    return c->num_attention_heads % tp == 0 && c->vocab_size % tp == 0 &&
           !(any_layer(c, false) && c->intermediate_size % tp) && !(moe && Is > 0 && Is % tp) &&
           !(moe && tp > c->n_routed_experts);
}

/* "1, 2, 4": the tp values the model allows among the divisors of ranks. */
static void list_tp(const fw_config *c, int ranks, char *b, size_t n) {
    b[0] = '\0';
    for (int d = 1; d <= ranks; d++)
        if (ranks % d == 0 && tp_ok(c, d, NULL, 0)) app(b, n, "%s%d", b[0] ? ", " : "", d);
    if (!b[0]) snprintf(b, n, "none");
}

/* The pp values for `ranks` ranks per tp: divisors, at most the layer count. */
static void list_pp(const fw_config *c, int ranks, char *b, size_t n) {
    b[0] = '\0';
    for (int d = 1; d <= ranks && d <= c->num_hidden_layers && d <= FW_MAX_STAGES; d++)
        if (ranks % d == 0) app(b, n, "%s%d", b[0] ? ", " : "", d);
    if (!b[0]) snprintf(b, n, "none");
}

/* ---- cost and stages ---- */

static double layer_cost(const fw_config *c, int l) {
    const double D = (double)c->hidden_size, H = c->num_attention_heads, Q = c->q_lora_rank;
    const double dqk = fw_config_qk_head_dim(c), dn = c->qk_nope_head_dim, dv = c->v_head_dim;
    const double C = c->kv_lora_rank, R = c->qk_rope_head_dim;
    double attn = (Q > 0 ? Q * D + H * dqk * Q : H * dqk * D) + (C + R) * D + H * (dn + dv) * C + D * H * dv;
    if (fw_config_has_indexer(c)) /* DeepSeek-V3.2's indexer: wq_b, wk, weights_proj */
        attn += (double)c->index_n_heads * c->index_head_dim * Q + (double)c->index_head_dim * D +
                (double)c->index_n_heads * D;
    if (!fw_config_layer_is_moe(c, l)) return attn + 3 * (double)c->intermediate_size * D;
    const double Ie = (double)c->moe_intermediate_size;
    return attn + (double)c->n_routed_experts * D + 3 * Ie * c->n_shared_experts * D +
           3 * Ie * D * c->num_experts_per_tok;
}

/* Minimises the largest stage cost over the splits of w[0..L) into pp contiguous
 * non-empty ranges: dynamic programming over prefixes, O(pp L^2). */
static int split_stages(const double *w, int L, int pp, int *first, fw_err *e) {
    double *pre = malloc((size_t)(L + 1) * sizeof *pre);
    double *best = malloc((size_t)(pp + 1) * (size_t)(L + 1) * sizeof *best);
    int *cut = malloc((size_t)(pp + 1) * (size_t)(L + 1) * sizeof *cut);
    if (!pre || !best || !cut) {
        free(pre), free(best), free(cut);
        return fw_errf(e, "planning stages: out of memory");
    }
    pre[0] = 0;
    for (int i = 0; i < L; i++) pre[i + 1] = pre[i] + w[i];
#define B(s, i) best[(size_t)(s) * (size_t)(L + 1) + (size_t)(i)]
#define K(s, i) cut[(size_t)(s) * (size_t)(L + 1) + (size_t)(i)]
    for (int i = 0; i <= L; i++) B(0, i) = i ? DBL_MAX : 0;
    for (int s = 1; s <= pp; s++)
        for (int i = 0; i <= L; i++) {
            B(s, i) = DBL_MAX, K(s, i) = -1;
            for (int j = s - 1; j < i; j++) {  /* stage s holds layers [j, i) */
                if (B(s - 1, j) == DBL_MAX) continue;
                double m = B(s - 1, j) > pre[i] - pre[j] ? B(s - 1, j) : pre[i] - pre[j];
                if (m < B(s, i)) B(s, i) = m, K(s, i) = j;
            }
        }
    for (int s = pp, i = L; s >= 1; s--) {
        first[s - 1] = K(s, i);
        i = K(s, i);
    }
#undef B
#undef K
    free(pre), free(best), free(cut);
    return FW_OK;
}

static int fill_stages(const fw_config *c, fw_layout *l, fw_err *e) {
    const int L = c->num_hidden_layers, pp = l->pp;
    double *w = malloc((size_t)L * sizeof *w);
    int first[FW_MAX_STAGES];
    if (!w) return fw_errf(e, "planning stages: out of memory");
    for (int i = 0; i < L; i++) w[i] = layer_cost(c, i);
    w[0] += (double)c->hidden_size;                         /* embedding lookup */
    w[L - 1] += (double)c->vocab_size * c->hidden_size;     /* lm_head */
    if (split_stages(w, L, pp, first, e)) {
        free(w);
        return FW_ERR;
    }
    for (int s = 0; s < pp; s++) {
        fw_stage *st = &l->stages[s];
        memset(st, 0, sizeof *st);
        st->first_layer = first[s];
        st->n_layers = (s + 1 < pp ? first[s + 1] : L) - first[s];
        st->has_embed = s == 0;
        st->has_head = s == pp - 1;
        for (int i = st->first_layer; i < st->first_layer + st->n_layers; i++) st->cost += w[i];
    }
    free(w);
    return FW_OK;
}

/* ---- memory ---- */

/* Scratch of one forward step in 4-byte floats, the larger of
 *  - prefill of one sequence in chunks of P = min(context, 2048) tokens: per token
 *    6 hidden-size vectors (residual, norm, attention and FFN outputs, latents),
 *    its heads' q and naive k/v ((H/tp) x (qk_head + nope + v)), 2 x the widest
 *    FFN intermediate a token can meet on the rank (dense I/tp, or k routed
 *    experts + the shared expert's slice) and the logits shard V/tp on the last
 *    stage; plus the attention scores of its heads, (H/tp) x P x P;
 *  - a decode step of batch tokens: the same per token, scores (H/tp) x context.
 * Not counted: the runtime itself, communication buffers, allocator slack. */
static uint64_t act_bytes(const fw_config *c, const fw_layout *l, bool head) {
    const int64_t tp = l->tp, D = c->hidden_size, Hl = c->num_attention_heads / tp;
    const int64_t dense = any_layer(c, false) ? c->intermediate_size / tp : 0;
    const int64_t moe = any_layer(c, true) ? (int64_t)c->num_experts_per_tok * c->moe_intermediate_size +
                                                 c->moe_intermediate_size * c->n_shared_experts / tp
                                           : 0;
    const int64_t per_token = 6 * D + Hl * (fw_config_qk_head_dim(c) + c->qk_nope_head_dim + c->v_head_dim) +
                              2 * (dense > moe ? dense : moe) + (head ? c->vocab_size / tp : 0);
    const int64_t P = l->context < PREFILL_CHUNK ? l->context : PREFILL_CHUNK;
    const int64_t prefill = P * per_token + Hl * P * P;
    const int64_t B = l->batch * (1 + l->mtp); /* a speculative step verifies 1 + K tokens a sequence */
    const int64_t decode = B * per_token + B * Hl * l->context;
    return (uint64_t)l->value_bytes * (uint64_t)(prefill > decode ? prefill : decode);
}

static uint64_t slice_elems(const fw_slice *s) {
    return (uint64_t)s->count[0] * (uint64_t)(s->ndim == 2 ? s->count[1] : 1);
}

/* How one tensor is stored, for the estimate. */
typedef struct stored {
    fw_wtype type;   /* F32, BF16, FP8 (+ f32 block scales), INT4 or INT8 (+ bf16 scales) */
    int64_t group;   /* INT4/INT8: input columns per scale; 0: one per row (per channel) */
} stored;

/* The model's tensors and how each is stored: listed once per plan, not per
 * layout tried. */
typedef struct tensors {
    fw_model_tensor *t;
    stored *st;
    int64_t n;
} tensors;

static stored stored_of(const fw_config *c, const fw_ct_scheme *ct, const fw_quant_spec *q,
                        const fw_model_tensor *t) {
    int64_t g;
    if (q && fw_quant_spec_covers(q, t->name)) return (stored){q->type, q->group};
    if (!q && fw_ct_weight_quantized(ct, t->name, &g)) return (stored){FW_WTYPE_INT4, g};
    if (t->quantized && c->fp8) return (stored){FW_WTYPE_FP8, 0};
    return (stored){t->f32 ? FW_WTYPE_F32 : FW_WTYPE_BF16, 0};
}

static void tensors_free(tensors *ts) {
    free(ts->t);
    free(ts->st);
}

/* q: the spec that replaces the config's quantization (NULL: none). */
static int tensors_list(const fw_config *c, const fw_quant_spec *q, tensors *ts, fw_err *e) {
    *ts = (tensors){0};
    fw_ct_scheme *ct = NULL;
    if (!q && c->int4 && fw_ct_from_json(&ct, c->json, "config.json", e)) return FW_ERR;
    if (fw_model_tensors(c, &ts->t, &ts->n, e)) {
        fw_ct_free(ct);
        return FW_ERR;
    }
    if (!(ts->st = malloc((size_t)(ts->n > 0 ? ts->n : 1) * sizeof *ts->st))) {
        fw_ct_free(ct);
        tensors_free(ts);
        return fw_errf(e, "estimating memory: out of memory");
    }
    for (int64_t i = 0; i < ts->n; i++) ts->st[i] = stored_of(c, ct, q, &ts->t[i]);
    fw_ct_free(ct);
    return FW_OK;
}

/* Bytes of rows x cols of an INT4 or INT8 weight t: the values, and in *scales
 * their bf16 scales. A slice's columns cover ceil(cols / group) groups (a
 * row-parallel cut inside a group costs that group's scale on both ranks). */
static uint64_t int_bytes(stored st, const fw_model_tensor *t, uint64_t rows, uint64_t cols, uint64_t *scales) {
    const uint64_t g = (uint64_t)(st.group > 0 ? st.group : t->shape[1]);
    *scales = 2 * rows * ((cols + g - 1) / g);
    return st.type == FW_WTYPE_INT4 ? 4 * rows * ((cols + 7) / 8) : rows * cols;
}

/* Adds one tensor's slice on rank (p, r) to m. *needed: whether the rank holds any of it. */
static int add_tensor(const fw_config *c, const fw_layout *l, const fw_model_tensor *t, stored st, int p, int r,
                      fw_mem_estimate *m, bool *needed, fw_err *e) {
    int (*slice)(const fw_config *, const fw_layout *, int, int, const char *, int, const int64_t *, fw_slice *,
                 fw_err *) = t->mtp ? fw_shard_slice_mtp : fw_shard_slice;
    fw_slice s;
    if (slice(c, l, p, r, t->name, t->ndim, t->shape, &s, e)) return FW_ERR;
    *needed = s.needed;
    if (!s.needed) return FW_OK;
    const uint64_t n = slice_elems(&s);
    if (st.type == FW_WTYPE_FP8) {
        char sname[sizeof t->name + 16];
        int64_t sshape[2];
        snprintf(sname, sizeof sname, "%s_scale_inv", t->name);
        fw_model_tensor_scale_shape(c, t->shape, sshape);
        if (slice(c, l, p, r, sname, 2, sshape, &s, e)) return FW_ERR;
        m->weights_fp8 += n;
        m->weights_scales += 4 * slice_elems(&s);
        m->weights_f32 += 4 * slice_elems(&s);
    } else if (st.type == FW_WTYPE_INT4 || st.type == FW_WTYPE_INT8) {
        uint64_t scales;
        const uint64_t q = int_bytes(st, t, (uint64_t)s.count[0], (uint64_t)s.count[1], &scales);
        if (st.type == FW_WTYPE_INT4) m->weights_int4 += q;
        else m->weights_int8 += q;
        m->weights_bf16 += scales;
        m->weights_scales += scales;
    } else if (st.type == FW_WTYPE_F32) {
        m->weights_f32 += 4 * n;
    } else {
        m->weights_bf16 += 2 * n;
    }
    return FW_OK;
}

/* Every rank of a replica: out[p * tp + r]. */
static int mem_ranks(const fw_config *c, const tensors *ts, const fw_layout *l, fw_mem_estimate *out, fw_err *e) {
    const int tp = l->tp, pp = l->pp;
    memset(out, 0, (size_t)tp * (size_t)pp * sizeof *out);
    for (int64_t i = 0; i < ts->n; i++) {
        const fw_model_tensor *t = &ts->t[i];
        if (t->mtp && !l->mtp) continue;  /* loaded only to speculate */
        /* A layer's tensors live on its stage, the MTP layer's on the last; the others on the first or last. */
        int p0 = t->mtp ? pp - 1 : t->layer >= 0 ? fw_layout_stage_of_layer(l, t->layer) : 0;
        int p1 = t->mtp || t->layer >= 0 ? p0 : pp - 1;
        for (int p = p0; p <= p1; p += (p1 - p0 > 0 ? p1 - p0 : 1))
            for (int r = 0; r < tp; r++) {
                bool needed;
                if (add_tensor(c, l, t, ts->st[i], p, r, &out[p * tp + r], &needed, e)) return FW_ERR;
                if (needed && t->role == FW_TP_EXPERT) break;  /* one owner */
            }
    }
    const uint64_t kv_layer =
        (uint64_t)l->context * (uint64_t)l->batch * fw_plan_kv_bytes(c, l->value_bytes);
    for (int p = 0; p < pp; p++)
        for (int r = 0; r < tp; r++) {
            fw_mem_estimate *m = &out[p * tp + r];
            m->weights = m->weights_bf16 + m->weights_fp8 + m->weights_f32 + m->weights_int4 + m->weights_int8;
            m->kv_cache = kv_layer * (uint64_t)(l->stages[p].n_layers + (l->mtp && p == pp - 1 ? 1 : 0));
            m->activations = act_bytes(c, l, l->stages[p].has_head);
            m->total = m->weights + m->kv_cache + m->activations;
        }
    return FW_OK;
}

uint64_t fw_plan_kv_bytes(const fw_config *c, int value_bytes) {
    if (value_bytes == 2) return 2 * (uint64_t)fw_config_gpu_kv_cols(c);
    return (uint64_t)fw_config_kv_width(c) * (uint64_t)value_bytes;
}

/* Stages, experts and memory of (tp, pp); world and dp are the caller's; l->quant
 * and l->requantized are set (they chose ts->st). */
static int fill_layout(const fw_config *c, const tensors *ts, int tp, int pp, int64_t context, int64_t batch,
                       int value_bytes, int mtp, fw_layout *l, fw_err *e) {
    l->tp = tp, l->pp = pp, l->n_layers = c->num_hidden_layers;
    l->context = context, l->batch = batch, l->value_bytes = value_bytes, l->mtp = mtp;
    l->experts_per_rank_max = c->n_routed_experts > 0 ? (c->n_routed_experts + tp - 1) / tp : 0;
    if (fill_stages(c, l, e)) return FW_ERR;
    fw_mem_estimate *m = malloc((size_t)tp * (size_t)pp * sizeof *m);
    if (!m) return fw_errf(e, "estimating memory: out of memory");
    if (mem_ranks(c, ts, l, m, e)) {
        free(m);
        return FW_ERR;
    }
    int worst = 0;
    for (int i = 0; i < tp * pp; i++) {
        if (m[i].total > m[worst].total) worst = i;
        if (m[i].total > l->stages[i / tp].mem_max) l->stages[i / tp].mem_max = m[i].total;
    }
    l->mem = m[worst];
    l->mem_pp_rank = worst / tp, l->mem_tp_rank = worst % tp;
    free(m);
    return FW_OK;
}

int fw_plan_mem_per_rank(const fw_config *c, const fw_layout *l, fw_mem_estimate *out, fw_err *e) {
    tensors ts;
    if (tensors_list(c, l->requantized ? &l->quant : NULL, &ts, e)) return FW_ERR;
    int rc = mem_ranks(c, &ts, l, out, e);
    tensors_free(&ts);
    return rc;
}

int fw_plan_weight_bytes(const fw_config *c, const fw_quant_spec *q, bool with_mtp, uint64_t *bytes, fw_err *e) {
    tensors ts;
    if (tensors_list(c, q, &ts, e)) return FW_ERR;
    uint64_t sum = 0;
    for (int64_t i = 0; i < ts.n; i++) {
        const fw_model_tensor *t = &ts.t[i];
        if (t->mtp && !with_mtp) continue;
        const uint64_t rows = (uint64_t)t->shape[0], cols = (uint64_t)(t->ndim == 2 ? t->shape[1] : 1);
        const stored st = ts.st[i];
        if (st.type == FW_WTYPE_FP8) {
            int64_t ss[2];
            fw_model_tensor_scale_shape(c, t->shape, ss);
            sum += rows * cols + 4 * (uint64_t)ss[0] * (uint64_t)ss[1];
        } else if (st.type == FW_WTYPE_INT4 || st.type == FW_WTYPE_INT8) {
            uint64_t scales;
            sum += int_bytes(st, t, rows, cols, &scales) + scales;
        } else {
            sum += rows * cols * (st.type == FW_WTYPE_F32 ? 4 : 2);
        }
    }
    tensors_free(&ts);
    *bytes = sum;
    return FW_OK;
}

/* "86.8 GB", "75.1 MB", "12.0 kB" (decimal units). */
static const char *human(char *b, size_t n, uint64_t v) {
    if ((double)v >= 1e9) snprintf(b, n, "%.1f GB", (double)v / 1e9);
    else if ((double)v >= 1e6) snprintf(b, n, "%.1f MB", (double)v / 1e6);
    else snprintf(b, n, "%.1f kB", (double)v / 1e3);
    return b;
}

/* What l's tp x pp would need with the weights stored otherwise: c's types (q
 * NULL) or q's. Appends "; <what> would need X per rank at tp x pp (fits)". */
static void alternative(const fw_config *c, const fw_quant_spec *q, const fw_layout *l, uint64_t avail,
                        const char *what, fw_layout *x, char *msg, size_t n) {
    tensors ts;
    fw_err ignored;
    if (tensors_list(c, q, &ts, &ignored)) return;
    char h[24];
    if (!fill_layout(c, &ts, l->tp, l->pp, l->context, l->batch, l->value_bytes, l->mtp, x, &ignored))
        app(msg, n, "; %s would need %s per rank at tp %d x pp %d (%s)", what, human(h, sizeof h, x->mem.total),
            l->tp, l->pp, x->mem.total <= avail ? "fits" : "does not fit either");
    tensors_free(&ts);
}

/* The error for a layout that does not fit, with one that would: more stages at
 * the same tp (one replica of tp x pp ranks); for BF16 weights what FP8 would
 * need, and for weights not yet INT4 what INT4 (group 128) would. */
static int mem_error(const fw_config *c, const tensors *ts, const fw_plan_request *rq, int rpn, const fw_layout *l,
                     fw_err *e) {
    char msg[sizeof e->msg] = "";
    const fw_mem_estimate *m = &l->mem;
    char h[5][24];
    app(msg, sizeof msg,
        "not enough memory per rank: tp %d x pp %d needs %s on its fullest rank (stage %d, tp rank %d: "
        "weights %s, KV cache %s, activations %s) but %s are available", l->tp, l->pp,
        human(h[0], 24, m->total), l->mem_pp_rank, l->mem_tp_rank, human(h[1], 24, m->weights),
        human(h[2], 24, m->kv_cache), human(h[3], 24, m->activations), human(h[4], 24, rq->mem_per_rank));
    int maxpp = c->num_hidden_layers < FW_MAX_STAGES ? c->num_hidden_layers : FW_MAX_STAGES;
    fw_layout *x = malloc(sizeof *x);
    if (!x) return fw_errf(e, "%s", msg);
    /* Memory falls as pp grows: bisect for the smallest pp that fits. */
    int lo = l->pp + 1, hi = maxpp, found = 0;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (fill_layout(c, ts, l->tp, mid, l->context, l->batch, l->value_bytes, l->mtp, x, e)) break;
        if (x->mem.total <= rq->mem_per_rank) found = mid, hi = mid - 1;
        else lo = mid + 1;
    }
    if (found) {
        int ranks = l->tp * found;
        const int nodes = (ranks + rpn - 1) / rpn;
        app(msg, sizeof msg, "; tp %d x pp %d fits (%s per rank): %d ranks per replica, i.e. %d node%s of %d "
            "ranks", l->tp, found, human(h[0], 24, x->mem.total), ranks, nodes, nodes > 1 ? "s" : "", rpn);
    } else {
        app(msg, sizeof msg, "; even pp %d (one layer per stage) does not fit: use a larger tp, ranks with "
            "more memory, or a shorter --context / smaller --batch", maxpp);
    }
    if (m->kv_cache > m->weights)
        app(msg, sizeof msg, " (the KV cache of context %lld x batch %lld dominates: a shorter --context or "
            "smaller --batch helps)", (long long)l->context, (long long)l->batch);
    const bool all_bf16 = !c->fp8 && !c->int4 && m->weights_int4 == 0 && m->weights_int8 == 0;
    if (all_bf16) {
        fw_config f = *c;
        f.fp8 = true, f.fp8_block[0] = f.fp8_block[1] = 128;
        alternative(&f, NULL, l, rq->mem_per_rank, "these weights are BF16: the FP8 checkpoint", x, msg, sizeof msg);
    }
    const bool int4 = l->requantized ? l->quant.type == FW_WTYPE_INT4 && !l->quant.experts_only : c->int4;
    if (!int4) {
        const fw_quant_spec q = {.type = FW_WTYPE_INT4, .group = FW_QUANT_GROUP_DEFAULT};
        alternative(c, &q, l, rq->mem_per_rank, "INT4 weights (--weights int4: every linear weight but the head)",
                    x, msg, sizeof msg);
    }
    free(x);
    return fw_errf(e, "%s", msg);
}

static int mismatch_error(const fw_config *c, int world, int tp, int pp, fw_err *e) {
    char msg[sizeof e->msg], list[512];
    snprintf(msg, sizeof msg, "world size %d is not a multiple of tp %d x pp %d = %d", world, tp, pp, tp * pp);
    if (world % tp == 0) {
        list_pp(c, world / tp, list, sizeof list);
        app(msg, sizeof msg, "; with tp %d, pp can be %s", tp, list);
    }
    if (world % pp == 0) {
        list_tp(c, world / pp, list, sizeof list);
        app(msg, sizeof msg, "; with pp %d, tp can be %s", pp, list);
    }
    if (world % tp && world % pp) {
        list_tp(c, world, list, sizeof list);
        app(msg, sizeof msg, "; valid tp for %d ranks: %s", world, list);
    }
    return fw_errf(e, "%s", msg);
}

int fw_plan(const fw_config *c, const fw_plan_request *rq, fw_layout *out, fw_err *e) {
    memset(out, 0, sizeof *out);
    const int L = c->num_hidden_layers, world = rq->world;
    char list[512], why[1024];
    if (L < 1 || c->num_attention_heads < 1 || c->vocab_size < 1 || c->hidden_size < 1)
        return fw_errf(e, "the config has no layers, heads, vocabulary or hidden size to split");
    if (world < 1) return fw_errf(e, "world size %d: need at least one rank", world);
    if (rq->tp < 0) return fw_errf(e, "tensor parallel size %d must be positive (0: choose)", rq->tp);
    if (rq->pp < 0) return fw_errf(e, "pipeline parallel size %d must be positive (0: choose)", rq->pp);
    if (rq->ranks_per_node < 0) return fw_errf(e, "ranks per node %d must be positive", rq->ranks_per_node);
    if (rq->mtp < 0 || rq->mtp > 2) return fw_errf(e, "speculative draft tokens %d: 1 or 2 (0: none)", rq->mtp);
    if (rq->mtp && c->num_nextn_predict_layers < 1)
        return fw_errf(e, "speculative decoding with mtp needs an MTP layer, and this model has none "
                          "(num_nextn_predict_layers is 0)");
    if (rq->context < 0 || rq->batch < 0)
        return fw_errf(e, "context %lld and batch %lld must be positive", (long long)rq->context,
                       (long long)rq->batch);
    const int rpn = rq->ranks_per_node > 0 ? rq->ranks_per_node : world;
    const int64_t context = rq->context > 0 ? rq->context : DEFAULT_CONTEXT;
    const int64_t batch = rq->batch > 0 ? rq->batch : 1;
    const int vb = rq->value_bytes > 0 ? rq->value_bytes : 4;
    int tp = rq->tp, pp = rq->pp;

    if (pp > L || pp > FW_MAX_STAGES) {
        /* List the pp that work with the given tp, or with the one we would choose. */
        int t = tp;
        for (int d = rpn < world ? rpn : world; d >= 1 && !t; d--)
            if (rpn % d == 0 && world % d == 0 && tp_ok(c, d, NULL, 0)) t = d;
        if (world % t) t = 1;
        list_pp(c, world / t, list, sizeof list);
        return fw_errf(e, "pipeline parallel size %d exceeds %s %d (every stage needs at least one layer); "
                       "valid pp with tp %d on %d ranks: %s", pp, pp > L ? "num_hidden_layers" : "the stage limit",
                       pp > L ? L : FW_MAX_STAGES, t, world, list);
    }
    if (tp > 0) {
        why[0] = '\0';
        if (!tp_ok(c, tp, why, sizeof why)) {
            list_tp(c, world, list, sizeof list);
            return fw_errf(e, "tensor parallel size %d is invalid: %s; valid tp for %d ranks: %s", tp, why,
                           world, list);
        }
        if (world % tp) return mismatch_error(c, world, tp, pp > 0 ? pp : 1, e);
    } else {
        if (pp > 0 && world % pp) return mismatch_error(c, world, 1, pp, e);
        const int per = pp > 0 ? world / pp : world;
        for (int d = rpn < per ? rpn : per; d >= 1 && !tp; d--)
            if (rpn % d == 0 && per % d == 0 && tp_ok(c, d, NULL, 0)) tp = d;
        out->tp_auto = true;
    }
    if (pp > 0 && world % (tp * pp)) return mismatch_error(c, world, tp, pp, e);

    tensors ts;
    if (tensors_list(c, rq->weights, &ts, e)) return FW_ERR;
    out->requantized = rq->weights != NULL;
    if (rq->weights) out->quant = *rq->weights;
    int rc = FW_ERR;
    if (pp > 0) {
        if (fill_layout(c, &ts, tp, pp, context, batch, vb, rq->mtp, out, e)) goto done;
    } else {
        /* Smallest pp that fits; with no memory limit the most the world allows. */
        out->pp_auto = true;
        const int per = world / tp;
        int last = 0;
        for (int d = 1; d <= per && d <= L && d <= FW_MAX_STAGES; d++) {
            if (per % d) continue;
            if (!rq->mem_per_rank) {
                last = d;
                continue;
            }
            if (fill_layout(c, &ts, tp, d, context, batch, vb, rq->mtp, out, e)) goto done;
            pp = d;
            if (out->mem.total <= rq->mem_per_rank) break;
        }
        if (!rq->mem_per_rank) {
            pp = last;
            if (fill_layout(c, &ts, tp, pp, context, batch, vb, rq->mtp, out, e)) goto done;
        }
    }
    out->world = world;
    out->dp = world / (tp * pp);
    if (rq->mem_per_rank && out->mem.total > rq->mem_per_rank) {
        mem_error(c, &ts, rq, rpn, out, e);
        goto done;
    }
    rc = FW_OK;
done:
    tensors_free(&ts);
    return rc;
}
