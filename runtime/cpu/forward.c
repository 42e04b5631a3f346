/* The DeepSeek-V3 forward pass on one rank, written once over the op table. */
#include "runtime/cpu/cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "runtime/cpu/indexer.h"
#include "runtime/model/kvcache.h"
#include "runtime/model/rope.h"

/* Scratch for one forward call, carved out of one allocation. */
typedef struct scratch {
    char *base;
    size_t used;
} scratch;

static float *take(scratch *s, int64_t n_floats) {
    float *p = (float *)(s->base ? s->base + s->used : NULL);
    s->used += ((size_t)n_floats * sizeof(float) + 63) / 64 * 64;
    return p;
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Steps of at most this many tokens may run a layer's experts side by side
 * (moe): their inputs, hidden states and outputs then each have rows of their own. */
#define SPREAD_MAX_T 8

/* Whether n independent pieces of work (heads, experts) go one per thread in a
 * single parallel region, each piece's ops running on its thread alone, rather
 * than one after another with each op's own parallel region: when there are
 * at least as many pieces as threads, and nested regions run on one thread
 * (OpenMP's default), so a decode step waits at one barrier instead of one per
 * op. Each op's result does not depend on how many threads ran it, so both
 * ways give the same bits. */
static bool spread(int64_t n) {
#ifdef _OPENMP
    const int nt = omp_get_max_threads();
    return nt > 1 && n >= nt && !omp_in_parallel() && omp_get_max_active_levels() <= 1;
#else
    (void)n;
    return false;
#endif
}

typedef struct bufs {
    float *x, *h, *y;          /* (T, D) residual stream, normed input, block output */
    float *cat;                /* MTP: (T, 2 D) the normed embedding and hidden state side by side */
    float *qa;                 /* (T, q_lora) */
    float *q;                  /* (T, H, dqk) */
    float *kva;                /* (T, KW): normed c_kv, rotated k_pe, the indexer key: a cache row */
    float *kv_a;               /* (T, C + R) kv_a_proj's output before it is spread into kva */
    float *o;                  /* (T, H, dv) */
    float *cos_tab, *sin_tab;  /* (T, R / 2) */
    float *lat_c;              /* naive: (S, C) */
    float *kvx;                /* naive: (S, H, dn + dv) */
    float *k, *v;              /* naive: (S, H, dqk), (S, H, dv) */
    float *qn, *qh;            /* absorbed: (T, dn), (T, C) one head's slices */
    float *q_lat, *q_pe, *o_lat;   /* absorbed: (T, H, C), (T, H, R), (T, H, C) */
    float *oh;                 /* absorbed: (T, dv) */
    float *g, *u;              /* (T, F) FFN hidden */
    float *rlog, *rw;          /* (T, E) router logits, (T, k) routing weights */
    int32_t *rid;              /* (T, k) chosen experts */
    int32_t *order;            /* (T * k) (token, slot) pairs grouped by expert */
    int32_t *count;            /* (E + 1) */
    float *xe, *ye;            /* (T, D) one expert's tokens in and out; spread: (T * k, D), every expert's */
    float *ge, *ue;            /* spread: (T * k, Ie) every expert's FFN hidden */
    float *lat;                /* (S, KW) one layer's cache rows gathered from its blocks */
    /* DeepSeek-V3.2's indexer (index_topk > 0) */
    float *qi, *iw;            /* (T, ih, id) queries, (T, ih) head weights */
    float *score, *stmp;       /* (score_rows, S) queries' index scores, (S) selection scratch */
    float *ilog;               /* (score_rows, ih, S) their heads' dot products */
    uint16_t *keys16;          /* (S, id) the keys as bf16 (the FP8 indexer's: exact) */
    int64_t score_rows;        /* queries scored together */
    int32_t *sel;              /* (index_topk) one query's selected positions */
    float *lat_sel;            /* absorbed: (index_topk, KW) the selected cache rows */
    float *k_sel, *v_sel;      /* naive: (index_topk, H, dqk), (index_topk, H, dv) */
} bufs;

static void carve(scratch *s, bufs *b, const fw_model *m, int64_t T, int64_t S, bool naive, bool absorbed,
                  bool mtp) {
    const fw_config *c = &m->cfg;
    const int64_t D = c->hidden_size, H = m->part.heads, C = c->kv_lora_rank;
    const int64_t R = c->qk_rope_head_dim, dn = c->qk_nope_head_dim, dv = c->v_head_dim;
    const int64_t dqk = dn + R, E = c->n_routed_experts, k = c->num_experts_per_tok;
    int64_t F = max64(c->intermediate_size, c->moe_intermediate_size * max64(1, c->n_shared_experts));
    b->x = take(s, T * D);
    b->h = take(s, T * D);
    b->cat = mtp ? take(s, T * 2 * D) : NULL;
    b->y = take(s, T * D);
    b->qa = take(s, T * max64(1, c->q_lora_rank));
    b->q = take(s, T * H * dqk);
    const int64_t KW = fw_config_kv_width(c), K = c->index_topk;
    b->kva = take(s, T * KW);
    b->kv_a = take(s, T * (C + R));
    b->o = take(s, T * H * dv);
    b->lat = take(s, S * KW);
    if (fw_config_has_indexer(c)) {
        b->qi = take(s, T * c->index_n_heads * c->index_head_dim);
        b->iw = take(s, T * c->index_n_heads);
        /* as many queries as keep the heads' dot products near 64 MB */
        const int64_t ih = c->index_n_heads, rows = ((int64_t)16 << 20) / (ih * max64(1, S));
        b->score_rows = rows < 1 ? 1 : rows > T ? T : rows;
        b->score = take(s, b->score_rows * S);
        b->ilog = take(s, b->score_rows * ih * S);
        b->keys16 = m->index_fp8 ? (uint16_t *)take(s, (S * c->index_head_dim + 1) / 2) : NULL;
        b->stmp = take(s, S);
        b->sel = (int32_t *)take(s, K);
        if (absorbed) b->lat_sel = take(s, K * KW);
        if (naive) b->k_sel = take(s, K * H * dqk), b->v_sel = take(s, K * H * dv);
    }
    b->cos_tab = take(s, T * R / 2);
    b->sin_tab = take(s, T * R / 2);
    if (naive) {
        b->lat_c = take(s, S * C);
        b->kvx = take(s, S * H * (dn + dv));
        b->k = take(s, S * H * dqk);
        b->v = take(s, S * H * dv);
    }
    if (absorbed) {
        b->qn = take(s, H * T * dn);   /* a (T, dn) and (T, C) slice per head */
        b->qh = take(s, H * T * C);
        b->q_lat = take(s, T * H * C);
        b->q_pe = take(s, T * H * R);
        b->o_lat = take(s, T * H * C);
        b->oh = take(s, H * T * dv);
    }
    b->g = take(s, T * F);
    b->u = take(s, T * F);
    if (E > 0) {
        b->rlog = take(s, T * E);
        b->rw = take(s, T * k);
        b->rid = (int32_t *)take(s, T * k);
        b->order = (int32_t *)take(s, T * k);
        b->count = (int32_t *)take(s, E + 1);
        const int64_t Te = T <= SPREAD_MAX_T ? T * k : T;
        b->xe = take(s, Te * D);
        b->ye = take(s, Te * D);
        if (T <= SPREAD_MAX_T) {
            b->ge = take(s, T * k * c->moe_intermediate_size);
            b->ue = take(s, T * k * c->moe_intermediate_size);
        }
    }
}

/* Of the T queries at positions pos0.. of a sequence, how many lead that attend
 * to every earlier position: all of them without an indexer; with one, those
 * that have at most index_topk positions to choose from. */
static int64_t dense_rows(const fw_config *c, int64_t pos0, int64_t T) {
    if (!fw_config_has_indexer(c)) return T;
    int64_t n = c->index_topk - pos0;
    return n < 0 ? 0 : n > T ? T : n;
}

/* Index scores of queries t .. t + score_rows - 1 (of T, at positions pos0 +
 * t ..) into b->score (rows of S = pos0 + T), when t starts such a chunk of the
 * sparse rows nd .. T - 1; returns query t's row. */
static const float *score_row(const fw_model *m, const float *lat, int64_t pos0, int64_t nd, int64_t T, int64_t t,
                              bufs *b) {
    const fw_config *c = &m->cfg;
    const int64_t r = (t - nd) % b->score_rows, ihd = (int64_t)c->index_n_heads * c->index_head_dim;
    if (r == 0) {
        const int64_t nq = T - t < b->score_rows ? T - t : b->score_rows;
        fw_indexer_scores(m, b->qi + t * ihd, b->iw + t * c->index_n_heads, lat + c->kv_lora_rank +
                          c->qk_rope_head_dim, fw_config_kv_width(c), pos0 + t, nq, b->keys16, b->ilog, b->score,
                          pos0 + T);
    }
    return b->score + r * (pos0 + T);
}

/* The indexer's pick for query t (at position pos0 + t) of layer l from its
 * scores: its n positions into b->sel, ascending. */
static int64_t pick(const fw_model *m, int l, int64_t pos0, int64_t t, const float *score, bufs *b) {
    const int64_t S = pos0 + t + 1;
    int64_t n = fw_indexer_topk(score, S, m->cfg.index_topk, b->stmp, b->sel);
    if (m->index_probe) m->index_probe(m->index_probe_arg, l, pos0 + t, S, score, n, b->sel);
    return n;
}

/* Naive MLA: expand keys and values of all S cached positions through kv_b. */
static void attention_naive(const fw_model *m, int l, const fw_layer *L, const float *lat, int64_t T,
                            int64_t S, bufs *b) {
    const fw_config *c = &m->cfg;
    const int64_t H = m->part.heads, C = c->kv_lora_rank, R = c->qk_rope_head_dim;
    const int64_t dn = c->qk_nope_head_dim, dv = c->v_head_dim, dqk = dn + R, W = fw_config_kv_width(c);
    for (int64_t s = 0; s < S; s++) memcpy(b->lat_c + s * C, lat + s * W, (size_t)C * sizeof(float));
    m->ops->matmul(b->kvx, b->lat_c, &L->kv_b, S); /* (S, H, dn + dv) */
    for (int64_t s = 0; s < S; s++)
        for (int64_t h = 0; h < H; h++) {
            const float *kv = b->kvx + (s * H + h) * (dn + dv);
            float *k = b->k + (s * H + h) * dqk;
            memcpy(k, kv, (size_t)dn * sizeof(float));
            memcpy(k + dn, lat + s * W + C, (size_t)R * sizeof(float)); /* k_pe, shared by heads */
            memcpy(b->v + (s * H + h) * dv, kv + dn, (size_t)dv * sizeof(float));
        }
    const int64_t pos0 = S - T, nd = dense_rows(c, pos0, T);
    if (nd > 0) m->ops->attn_naive(b->o, b->q, b->k, b->v, nd, pos0 + nd, H, dqk, dv, m->softmax_scale);
    for (int64_t t = nd; t < T; t++) { /* sparse: the selected keys and values only */
        const int64_t n = pick(m, l, pos0, t, score_row(m, lat, pos0, nd, T, t, b), b);
        for (int64_t j = 0; j < n; j++) {
            memcpy(b->k_sel + j * H * dqk, b->k + b->sel[j] * H * dqk, (size_t)(H * dqk) * sizeof(float));
            memcpy(b->v_sel + j * H * dv, b->v + b->sel[j] * H * dv, (size_t)(H * dv) * sizeof(float));
        }
        m->ops->attn_naive(b->o + t * H * dv, b->q + t * H * dqk, b->k_sel, b->v_sel, 1, n, H, dqk, dv,
                           m->softmax_scale);
    }
}

/* Absorbed MLA: q_nope . W_UK per head, attention over the latent cache, then
 * the latent output . W_UV^T per head; kv_b is never expanded per position. */
static void attention_absorbed(const fw_model *m, int l, const fw_layer *L, const float *lat, int64_t T,
                               int64_t S, bufs *b) {
    const fw_config *c = &m->cfg;
    const int64_t H = m->part.heads, C = c->kv_lora_rank, R = c->qk_rope_head_dim;
    const int64_t dn = c->qk_nope_head_dim, dv = c->v_head_dim, dqk = dn + R, W = fw_config_kv_width(c);
    const bool par = spread(H);
    (void)par;   /* without OpenMP */
#pragma omp parallel for schedule(static) if (par)
    for (int64_t h = 0; h < H; h++) {
        fw_weight w_uk = fw_weight_view(&L->kv_b, h * (dn + dv), dn, 0, C); /* (dn, C) */
        float *qn = b->qn + h * T * dn, *qh = b->qh + h * T * C;
        for (int64_t t = 0; t < T; t++) {
            memcpy(qn + t * dn, b->q + (t * H + h) * dqk, (size_t)dn * sizeof(float));
            memcpy(b->q_pe + (t * H + h) * R, b->q + (t * H + h) * dqk + dn, (size_t)R * sizeof(float));
        }
        m->ops->matmul_xw(qh, qn, &w_uk, T); /* (T, C) */
        for (int64_t t = 0; t < T; t++)
            memcpy(b->q_lat + (t * H + h) * C, qh + t * C, (size_t)C * sizeof(float));
    }
    const int64_t pos0 = S - T, nd = dense_rows(c, pos0, T);
    if (nd > 0)
        m->ops->attn_absorbed(b->o_lat, b->q_lat, b->q_pe, lat, W, lat + C, W, nd, pos0 + nd, H, C, R,
                              m->softmax_scale);
    for (int64_t t = nd; t < T; t++) { /* sparse: the selected cache rows only */
        const int64_t n = pick(m, l, pos0, t, score_row(m, lat, pos0, nd, T, t, b), b);
        for (int64_t j = 0; j < n; j++)
            memcpy(b->lat_sel + j * W, lat + b->sel[j] * W, (size_t)(C + R) * sizeof(float));
        m->ops->attn_absorbed(b->o_lat + t * H * C, b->q_lat + t * H * C, b->q_pe + t * H * R, b->lat_sel, W,
                              b->lat_sel + C, W, 1, n, H, C, R, m->softmax_scale);
    }
#pragma omp parallel for schedule(static) if (par)
    for (int64_t h = 0; h < H; h++) {
        fw_weight w_uv = fw_weight_view(&L->kv_b, h * (dn + dv) + dn, dv, 0, C); /* (dv, C) */
        float *qh = b->qh + h * T * C, *oh = b->oh + h * T * dv;
        for (int64_t t = 0; t < T; t++)
            memcpy(qh + t * C, b->o_lat + (t * H + h) * C, (size_t)C * sizeof(float));
        m->ops->matmul(oh, qh, &w_uv, T); /* (T, dv) */
        for (int64_t t = 0; t < T; t++)
            memcpy(b->o + (t * H + h) * dv, oh + t * dv, (size_t)dv * sizeof(float));
    }
}

/* y = down(silu(gate(x)) * up(x)) for n rows of x; g, u: (n, gate rows) scratch. */
static void swiglu_in(const fw_model *m, const fw_weight *gate, const fw_weight *up, const fw_weight *down,
                      float *y, const float *x, int64_t n, float *g, float *u) {
    m->ops->matmul(g, x, gate, n);
    m->ops->matmul(u, x, up, n);
    m->ops->silu_mul(g, g, u, n * gate->rows);
    m->ops->matmul(y, g, down, n);
}

static void swiglu(const fw_model *m, const fw_weight *gate, const fw_weight *up, const fw_weight *down,
                   float *y, const float *x, int64_t n, bufs *b) {
    swiglu_in(m, gate, up, down, y, x, n, b->g, b->u);
}

/* DeepSeekMoE: shared experts on every token plus the routed top-k, y (T, D).
 * With TP, y is this rank's partial sum (its shared-expert slice and its routed
 * experts); the caller's all-reduce completes it. */
static void moe(const fw_model *m, const fw_layer *L, int64_t T, bufs *b) {
    const fw_config *c = &m->cfg;
    const int64_t D = c->hidden_size, E = c->n_routed_experts, k = c->num_experts_per_tok;
    fw_route_params rp = {.n_experts = (int)E, .top_k = (int)k, .n_group = c->n_group,
                          .topk_group = c->topk_group, .norm_topk_prob = c->norm_topk_prob,
                          .routed_scaling_factor = (float)c->routed_scaling_factor};
    m->ops->matmul(b->rlog, b->h, &L->router, T); /* (T, E) */
    m->ops->route(b->rid, b->rw, b->rlog, L->router_bias, T, &rp);
    if (m->route_probe) m->route_probe(m->route_probe_arg, L, &rp, T, b->rlog, b->rid);

    /* Group the (token, slot) pairs by expert so each expert runs once on its tokens. */
    memset(b->count, 0, (size_t)(E + 1) * sizeof(int32_t));
    for (int64_t i = 0; i < T * k; i++) b->count[b->rid[i] + 1]++;
    for (int64_t x = 0; x < E; x++) b->count[x + 1] += b->count[x];
    for (int64_t i = 0; i < T * k; i++) b->order[b->count[b->rid[i]]++] = (int32_t)i;
    for (int64_t x = E; x > 0; x--) b->count[x] = b->count[x - 1]; /* back to start offsets */
    b->count[0] = 0;

    /* A few tokens: the shared experts and each routed expert with tokens are
     * pieces of one parallel region, each on one thread, its rows at its pairs'
     * offsets; the routed outputs are then added in expert order, as below. */
    const int64_t x0 = m->part.exp_first, x1 = x0 + m->part.exp_n, shared = c->n_shared_experts > 0;
    int64_t busy = 0;
    for (int64_t x = x0; x < x1; x++) busy += b->count[x + 1] > b->count[x];
    if (T <= SPREAD_MAX_T && spread(busy + shared)) {
        const int64_t Ie = c->moe_intermediate_size;
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t x = x0 - shared; x < x1; x++) {
            if (x < x0) {
                swiglu(m, &L->sh_gate, &L->sh_up, &L->sh_down, b->y, b->h, T, b);
                continue;
            }
            const int32_t *pairs = b->order + b->count[x];
            const int64_t n = b->count[x + 1] - b->count[x], at = b->count[x];
            if (n == 0) continue;
            for (int64_t i = 0; i < n; i++)
                memcpy(b->xe + (at + i) * D, b->h + (pairs[i] / k) * D, (size_t)D * sizeof(float));
            swiglu_in(m, &L->exp_gate[x], &L->exp_up[x], &L->exp_down[x], b->ye + at * D, b->xe + at * D, n,
                      b->ge + at * Ie, b->ue + at * Ie);
        }
        if (!shared) memset(b->y, 0, (size_t)(T * D) * sizeof(float));
        for (int64_t x = x0; x < x1; x++)
            for (int64_t i = b->count[x]; i < b->count[x + 1]; i++) {
                float w = b->rw[b->order[i]], *y = b->y + (b->order[i] / k) * D;
                const float *ye = b->ye + i * D;
                for (int64_t d = 0; d < D; d++) y[d] += w * ye[d];
            }
        return;
    }

    if (shared) swiglu(m, &L->sh_gate, &L->sh_up, &L->sh_down, b->y, b->h, T, b);
    else memset(b->y, 0, (size_t)(T * D) * sizeof(float));
    for (int64_t x = x0; x < x1; x++) {
        const int32_t *pairs = b->order + b->count[x];
        int64_t n = b->count[x + 1] - b->count[x];
        if (n == 0) continue;
        for (int64_t i = 0; i < n; i++)
            memcpy(b->xe + i * D, b->h + (pairs[i] / k) * D, (size_t)D * sizeof(float));
        swiglu(m, &L->exp_gate[x], &L->exp_up[x], &L->exp_down[x], b->ye, b->xe, n, b);
        for (int64_t i = 0; i < n; i++) {
            float w = b->rw[pairs[i]], *y = b->y + (pairs[i] / k) * D;
            const float *ye = b->ye + i * D;
            for (int64_t d = 0; d < D; d++) y[d] += w * ye[d];
        }
    }
}

static int allreduce(fw_comm *comm, float *buf, int64_t n, fw_err *e) {
    return comm ? fw_comm_allreduce(comm, buf, n, e) : FW_OK;
}

/* One decoder layer over the T tokens of n sequences in b->x (the residual
 * stream, updated in place); its cache rows are layer `slot` of the pool. */
static int layer_forward(fw_model *m, fw_comm *comm, fw_kv_pool *pool, int n, const fw_seq_step *q,
                         const fw_layer *L, int l, int slot, int64_t T, bufs *bp, fw_err *e) {
    const fw_config *c = &m->cfg;
    const fw_ops *ops = m->ops;
    const int64_t D = c->hidden_size, H = m->part.heads, C = c->kv_lora_rank;
    const int64_t R = c->qk_rope_head_dim, dqk = fw_config_qk_head_dim(c), dn = c->qk_nope_head_dim;
    const int64_t W = fw_config_kv_width(c), dv = c->v_head_dim;
    const int64_t ihd = (int64_t)c->index_n_heads * c->index_head_dim;
    const float eps = (float)c->rms_norm_eps;
    bufs b = *bp;
    float *lat = b.lat; /* (S, C + R) */

    /* Every token of every sequence together through the projections... */
    ops->rmsnorm(b.h, b.x, L->attn_norm, T, D, eps);
    if (c->q_lora_rank > 0) {
        ops->matmul(b.qa, b.h, &L->q_a, T);
        ops->rmsnorm(b.qa, b.qa, L->q_a_norm, T, c->q_lora_rank, eps);
        ops->matmul(b.q, b.qa, &L->q_b, T);
    } else {
        ops->matmul(b.q, b.h, &L->q_b, T);
    }
    ops->matmul(b.kv_a, b.h, &L->kv_a, T);
    for (int64_t t = 0; t < T; t++) {
        memcpy(b.kva + t * W, b.kv_a + t * (C + R), (size_t)(C + R) * sizeof(float));
        ops->rmsnorm(b.kva + t * W, b.kva + t * W, L->kv_a_norm, 1, C, eps);
    }
    if (fw_config_has_indexer(c)) { /* its keys go into the cache rows beside the latent */
        fw_indexer_project(m, L, b.h, b.qa, T, b.cos_tab, b.sin_tab, b.qi, b.iw, b.kva + C + R, W);
        if (m->index_fp8) {
            const int64_t id = c->index_head_dim;
            for (int64_t i = 0; i < T * c->index_n_heads; i++) fw_indexer_fp8_round(b.qi + i * id, id, NULL);
            for (int64_t t = 0; t < T; t++) fw_indexer_fp8_round(b.kva + t * W + C + R, id, NULL);
        }
    }
    ops->rope(b.kva + C, T, 1, W, 0, R, b.cos_tab, b.sin_tab);
    ops->rope(b.q + dn, T, H, H * dqk, dqk, R, b.cos_tab, b.sin_tab);
    /* ...attention one sequence at a time over its cache, through its block table:
     * the new rows out, the whole sequence back in... */
    for (int i = 0, off = 0; i < n; off += (int)q[i].T, i++) {
        fw_kv *kv = q[i].kv;
        const int64_t pos0 = kv->len, Ti = q[i].T, S = pos0 + Ti;
        fw_kv_pool_scatter(pool, kv->table, slot, pos0, Ti, b.kva + off * W);
        fw_kv_pool_gather(pool, kv->table, slot, S, lat);
        bufs bi = b; /* this sequence's rows of q and o */
        bi.q = b.q + off * H * dqk, bi.o = b.o + off * H * dv;
        if (b.qi) bi.qi = b.qi + off * ihd, bi.iw = b.iw + off * c->index_n_heads;
        if (q[i].mode == FW_ATTN_NAIVE) attention_naive(m, l, L, lat, Ti, S, &bi);
        else attention_absorbed(m, l, L, lat, Ti, S, &bi);
    }
    /* ...and together again through the output projection and the FFN. */
    ops->matmul(b.y, b.o, &L->o, T); /* row-parallel: a partial sum under TP */
    if (allreduce(comm, b.y, T * D, e)) return FW_ERR;
    ops->add(b.x, b.y, T * D);

    ops->rmsnorm(b.h, b.x, L->ffn_norm, T, D, eps);
    if (L->moe) moe(m, L, T, &b);
    else swiglu(m, &L->gate, &L->up, &L->down, b.y, b.h, T, &b);
    if (allreduce(comm, b.y, T * D, e)) return FW_ERR;
    ops->add(b.x, b.y, T * D);
    return FW_OK;
}

int fw_model_forward(fw_model *m, fw_comm *comm, fw_kv *kv, const int32_t *ids, float *hidden, int64_t T,
                     fw_attn_mode mode, float *logits, int64_t n_out, fw_err *e) {
    if (!kv->own) return fw_errf(e, "forward: the sequence has no blocks of its own (fw_kv_init)");
    fw_seq_step q = {.kv = kv, .T = T, .n_out = n_out, .mode = mode};
    return fw_model_forward_seqs(m, comm, kv->own, 1, &q, ids, hidden, logits, e);
}

/* The checks, the scratch and the RoPE tables of a step of n sequences (ids
 * checked where given); *T and *n_out: their sums. */
static int step_begin(fw_model *m, int n, const fw_seq_step *q, const int32_t *ids, bool mtp, scratch *s, bufs *b,
                      int64_t *T_out, int64_t *n_out_sum, fw_err *e) {
    const fw_config *c = &m->cfg;
    const int64_t R = c->qk_rope_head_dim, V = c->vocab_size;
    int64_t T = 0, S_max = 0, n_out = 0;
    bool naive = false, absorbed = false;
    for (int i = 0; i < n; i++) {
        const fw_kv *kv = q[i].kv;
        if (q[i].T <= 0 || q[i].n_out < 0 || q[i].n_out > q[i].T)
            return fw_errf(e, "forward: bad token count %lld", (long long)q[i].T);
        const int64_t pos0 = kv->len, S = pos0 + q[i].T;
        if (S > kv->cap)
            return fw_errf(e, "context is full: %lld + %lld tokens exceed the cache's %lld positions",
                           (long long)pos0, (long long)q[i].T, (long long)kv->cap);
        if (ids)
            for (int64_t t = 0; t < q[i].T; t++)
                if (ids[T + t] < 0 || ids[T + t] >= V)
                    return fw_errf(e, "token id %d at position %lld is outside the vocabulary [0, %lld)",
                                   ids[T + t], (long long)(pos0 + t), (long long)V);
        T += q[i].T, n_out += q[i].n_out;
        S_max = S > S_max ? S : S_max;
        naive |= q[i].mode == FW_ATTN_NAIVE, absorbed |= q[i].mode == FW_ATTN_ABSORBED;
    }
    *s = (scratch){0};
    *b = (bufs){0}; /* buffers a step does not need stay NULL */
    carve(s, b, m, T, S_max, naive, absorbed, mtp); /* first pass measures */
    s->base = aligned_alloc(64, s->used);
    if (!s->base) return fw_errf(e, "forward: out of memory for %zu bytes of scratch", s->used);
    s->used = 0;
    carve(s, b, m, T, S_max, naive, absorbed, mtp);
    for (int i = 0, off = 0; i < n; off += (int)q[i].T, i++) /* each sequence at its own positions */
        fw_rope_tables(m->rope_inv_freq, m->rope_mscale, R, q[i].kv->len, q[i].T, b->cos_tab + off * R / 2,
                       b->sin_tab + off * R / 2);
    *T_out = T, *n_out_sum = n_out;
    return FW_OK;
}

/* The last n_out rows of each sequence of x through a norm and a head, one
 * sequence after another: logits (sum n_out, vocab shard). */
static void heads(const fw_model *m, int n, const fw_seq_step *q, const float *x, const float *norm,
                  const fw_weight *head, int64_t n_out, float *logits, bufs *b) {
    const int64_t D = m->cfg.hidden_size;
    if (n_out == 0) return;
    for (int i = 0, off = 0, r = 0; i < n; off += (int)q[i].T, r += (int)q[i].n_out, i++)
        m->ops->rmsnorm(b->h + r * D, x + (off + q[i].T - q[i].n_out) * D, norm, q[i].n_out, D,
                        (float)m->cfg.rms_norm_eps);
    m->ops->matmul(logits, b->h, head, n_out); /* (n_out, vocab shard) */
}

int fw_model_forward_seqs(fw_model *m, fw_comm *comm, fw_kv_pool *pool, int n, const fw_seq_step *q,
                          const int32_t *ids, float *hidden, float *logits, fw_err *e) {
    const fw_part *p = &m->part;
    const int64_t D = m->cfg.hidden_size;
    scratch s;
    bufs b;
    int64_t T, n_out;
    if (step_begin(m, n, q, p->has_embed ? ids : NULL, false, &s, &b, &T, &n_out, e)) return FW_ERR;
    int rc = FW_ERR;
    if (p->has_embed) {
        m->ops->embed(b.x, &m->embed, ids, T, p->vocab0); /* zero rows outside the vocab shard */
        if (allreduce(comm, b.x, T * D, e)) goto done;
    } else {
        memcpy(b.x, hidden, (size_t)(T * D) * sizeof(float));
    }
    for (int l = p->first_layer; l < p->first_layer + p->n_layers; l++)
        if (layer_forward(m, comm, pool, n, q, &m->layers[l], l, l - p->first_layer, T, &b, e)) goto done;
    if (!p->has_head) {
        memcpy(hidden, b.x, (size_t)(T * D) * sizeof(float));
    } else {
        /* The final-normed rows the MTP layer takes, at the sequences' offsets. */
        for (int i = 0, off = 0; i < n; off += (int)q[i].T, i++)
            if (q[i].hidden_out)
                m->ops->rmsnorm(hidden + off * D, b.x + off * D, m->final_norm, q[i].T, D, (float)m->cfg.rms_norm_eps);
        heads(m, n, q, b.x, m->final_norm, &m->head, n_out, logits, &b);
    }
    for (int i = 0; i < n; i++) q[i].kv->len += q[i].T;
    rc = FW_OK;
done:
    free(s.base);
    return rc;
}

int fw_model_forward_mtp(fw_model *m, fw_comm *comm, fw_kv_pool *pool, int n, const fw_seq_step *q,
                         const int32_t *ids, const float *h_in, float *h_out, float *logits, fw_err *e) {
    const fw_mtp *t = m->mtp;
    const fw_ops *ops = m->ops;
    const int64_t D = m->cfg.hidden_size;
    const float eps = (float)m->cfg.rms_norm_eps;
    if (!t) return fw_errf(e, "forward: the MTP layer is not loaded on this rank");
    scratch s;
    bufs b;
    int64_t T, n_out;
    if (step_begin(m, n, q, ids, true, &s, &b, &T, &n_out, e)) return FW_ERR;
    int rc = FW_ERR;
    /* x = eh_proj(cat(enorm(embed(next token)), hnorm(h))), the embedding first. */
    ops->embed(b.y, &t->embed, ids, T, m->part.vocab0); /* vocabulary-parallel, as the model's */
    if (allreduce(comm, b.y, T * D, e)) goto done;
    ops->rmsnorm(b.h, b.y, t->enorm, T, D, eps);
    ops->rmsnorm(b.y, h_in, t->hnorm, T, D, eps);
    for (int64_t r = 0; r < T; r++) {
        memcpy(b.cat + r * 2 * D, b.h + r * D, (size_t)D * sizeof(float));
        memcpy(b.cat + r * 2 * D + D, b.y + r * D, (size_t)D * sizeof(float));
    }
    ops->matmul(b.x, b.cat, &t->eh_proj, T); /* (T, D), whole on every rank */
    if (layer_forward(m, comm, pool, n, q, &t->layer, m->cfg.num_hidden_layers, m->part.n_layers, T, &b, e))
        goto done;
    if (h_out) memcpy(h_out, b.x, (size_t)(T * D) * sizeof(float));
    heads(m, n, q, b.x, t->head_norm, &t->head, n_out, logits, &b);
    for (int i = 0; i < n; i++) q[i].kv->len += q[i].T;
    rc = FW_OK;
done:
    free(s.base);
    return rc;
}

int fw_kv_init(fw_kv *kv, const fw_model *m, int64_t cap, fw_err *e) {
    const fw_config *c = &m->cfg;
    memset(kv, 0, sizeof *kv);
    int64_t bs = FW_KV_BLOCK_SIZE, nb = cap > 0 ? (cap + bs - 1) / bs : 1;
    kv->own = malloc(sizeof *kv->own);
    kv->own_table = malloc((size_t)nb * sizeof(int32_t));
    if (!kv->own || !kv->own_table) {
        fw_kv_free(kv);
        return fw_errf(e, "KV cache: out of memory");
    }
    if (fw_kv_pool_init(kv->own, nb, bs, fw_model_kv_layers(m), fw_config_kv_width(c), e)) {
        free(kv->own), kv->own = NULL;
        fw_kv_free(kv);
        return FW_ERR;
    }
    for (int64_t i = 0; i < nb; i++) kv->own_table[i] = fw_kv_pool_take(kv->own);
    kv->table = kv->own_table;
    kv->cap = cap;
    return FW_OK;
}

void fw_kv_free(fw_kv *kv) {
    if (kv->own) fw_kv_pool_free(kv->own);
    free(kv->own);
    free(kv->own_table);
    memset(kv, 0, sizeof *kv);
}
