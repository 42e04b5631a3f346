/* The DeepSeek-V3 forward on one GPU, for several sequences at once: every
 * projection, norm and expert runs once over all their tokens; only attention
 * runs per sequence, over that sequence's latent cache. The structure follows
 * runtime/cpu/forward.c (the CPU forward) step for step; the differences are bf16
 * activations, batched-head MLA projections, and MoE grouping on the device. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/delay.h"
#include "kernels/cuda/indexer.h"
#include "runtime/cuda/gpu_model.h"
#include "runtime/model/rope.h"

#define CK(call)                                     \
    do {                                             \
        if (call) return fw_gpu_fail(g, e);          \
    } while (0)

typedef struct carver {
    char *base;
    size_t used;
} carver;

static void *take(carver *c, size_t bytes) {
    void *p = c->base ? c->base + c->used : NULL;
    c->used += (bytes + 255) / 256 * 256;
    return p;
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

typedef struct gbufs {
    int32_t *ids, *rid, *q_seq, *q_len; /* per token: its sequence (table row), the keys it sees */
    int32_t *tab;                          /* (n, max_blocks) the sequences' block tables */
    void *mla_work;
    float *cos_tab, *sin_tab, *hid, *rlog, *rw, *logits;
    fw_bf16 *x, *h, *y, *qa, *q, *kva, *o;
    fw_bf16 *lat, *lat_c, *kvx;            /* naive */
    fw_bf16 *q_lat, *q_pe, *o_lat;         /* absorbed */
    fw_bf16 *g, *u, *eg, *ye, *hn;
    fw_bf16 *cat;                          /* the MTP layer's [enorm(embed); hnorm(h)] (Tt, 2 D) */
    void *plan;
    /* DeepSeek-V3.2's indexer: queries (fp32, then e4m3 codes), head weights,
     * keys (fp32); scores of score_rows queries at a time over the cache's
     * positions; the selections */
    float *iq, *iw, *ik, *score;
    uint8_t *iq8;
    int32_t *sel, *nsel, *irow;
    int64_t score_rows;
} gbufs;

typedef struct shape {
    int64_t Tt, Smax, n_rows; /* tokens, longest context, head rows (the segments' n_out summed) */
    int n;                    /* sequences */
    bool hidden;              /* some segment wants its final-normed hidden states */
} shape;

static void carve(carver *cv, gbufs *b, const fw_gpu_model *g, const shape *s, fw_attn_mode mode, bool mtp) {
    const fw_config *c = &g->cfg;
    const int64_t Tt = s->Tt, S = s->Smax, D = c->hidden_size, H = g->part.heads, C = c->kv_lora_rank;
    const int64_t R = c->qk_rope_head_dim, dn = c->qk_nope_head_dim, dv = c->v_head_dim, dqk = dn + R;
    const int64_t E = c->n_routed_experts, k = c->num_experts_per_tok, bf = sizeof(fw_bf16), f = sizeof(float);
    const int64_t F = max64(c->intermediate_size, c->moe_intermediate_size * max64(1, c->n_shared_experts));
    b->ids = take(cv, (size_t)Tt * 4);
    b->q_seq = take(cv, (size_t)Tt * 4);
    b->q_len = take(cv, (size_t)Tt * 4);
    b->tab = take(cv, (size_t)(s->n * g->max_blocks) * 4);
    b->cos_tab = take(cv, (size_t)(Tt * R / 2) * f);
    b->sin_tab = take(cv, (size_t)(Tt * R / 2) * f);
    b->hid = take(cv, (size_t)(Tt * D) * f);
    b->x = take(cv, (size_t)(Tt * D) * bf);
    b->h = take(cv, (size_t)(Tt * D) * bf);
    b->y = take(cv, (size_t)(Tt * D) * bf);
    b->qa = take(cv, (size_t)(Tt * max64(1, c->q_lora_rank)) * bf);
    b->q = take(cv, (size_t)(Tt * H * dqk) * bf);
    b->kva = take(cv, (size_t)(Tt * (C + R)) * bf);
    b->o = take(cv, (size_t)(Tt * H * dv) * bf);
    if (mode == FW_ATTN_NAIVE) {
        b->lat = take(cv, (size_t)(S * (C + R)) * bf);
        b->lat_c = take(cv, (size_t)(S * C) * bf);
        b->kvx = take(cv, (size_t)(S * H * (dn + dv)) * bf);
    } else {
        /* Sized for the whole cache, as the launch splits it (and a graph keeps it). */
        b->mla_work = take(cv, fw_cuda_mla_work_bytes(Tt, H, g->cap, C));
        b->q_lat = take(cv, (size_t)(Tt * H * C) * bf);
        b->q_pe = take(cv, (size_t)(Tt * H * R) * bf);
        b->o_lat = take(cv, (size_t)(Tt * H * C) * bf);
    }
    b->g = take(cv, (size_t)(Tt * F) * bf);
    b->u = take(cv, (size_t)(Tt * F) * bf);
    if (E > 0) {
        const int64_t P = Tt * k, Ie = c->moe_intermediate_size;
        b->rlog = take(cv, (size_t)(Tt * E) * f);
        b->rw = take(cv, (size_t)P * f);
        b->rid = take(cv, (size_t)P * 4);
        b->plan = take(cv, fw_cuda_moe_plan_bytes(P, max64(1, g->part.exp_n)));
        b->eg = take(cv, (size_t)(P * Ie) * bf);
        b->ye = take(cv, (size_t)(P * D) * bf);
    }
    if (fw_config_has_indexer(c)) {
        const int64_t ih = c->index_n_heads, id = c->index_head_dim, K = c->index_topk;
        b->iq = take(cv, (size_t)(Tt * ih * id) * f);
        b->iq8 = take(cv, (size_t)(Tt * ih * id));
        b->iw = take(cv, (size_t)(Tt * ih) * f);
        b->ik = take(cv, (size_t)(Tt * id) * f);
        b->sel = take(cv, (size_t)(Tt * K) * 4);
        b->nsel = take(cv, (size_t)Tt * 4);
        b->irow = take(cv, (size_t)Tt * 4);
        b->score_rows = Tt < ((int64_t)128 << 20) / g->cap ? Tt : max64(1, ((int64_t)128 << 20) / g->cap);
        b->score = take(cv, (size_t)(b->score_rows * g->cap) * f);
    }
    if (mtp) b->cat = take(cv, (size_t)(Tt * 2 * D) * bf);
    b->hn = take(cv, (size_t)(s->n_rows * D) * bf);
    b->logits = take(cv, (size_t)(s->n_rows * max64(1, g->part.vocab)) * f);
}

/* Host-side buffers of a step, in pinned memory. */
typedef struct staging {
    int32_t *ids, *seq, *len, *tab;
    float *cos, *sin, *hid, *logits;
} staging;

/* Grows the device work space and the pinned staging to fit (dropping the
 * captured graphs, which point into them). */
static int reserve(fw_gpu_model *g, size_t work, size_t pinned, fw_err *e) {
    if (work > g->work_bytes || pinned > g->pinned_bytes) fw_gpu_drop_graphs(g);
    if (work > g->work_bytes) {
        fw_cuda_free(g->work);
        g->work = NULL, g->work_bytes = 0;
        CK(fw_cuda_sync(&g->ctx) || fw_cuda_malloc(&g->ctx, &g->work, work));
        g->work_bytes = work;
    }
    if (pinned > g->pinned_bytes) {
        if (g->pinned) cudaFreeHost(g->pinned);
        g->pinned = NULL, g->pinned_bytes = 0;
        if (cudaMallocHost(&g->pinned, pinned) != cudaSuccess)
            return fw_errf(e, "GPU %d: cannot pin %zu bytes of host staging", g->ctx.device, pinned);
        g->pinned_bytes = pinned;
    }
    return FW_OK;
}

static int copy2d(fw_gpu_model *g, void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                  size_t height, fw_err *e) {
    if (!width || !height) return FW_OK;
    cudaError_t st = cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, cudaMemcpyDeviceToDevice,
                                       g->ctx.stream);
    if (st != cudaSuccess) return fw_errf(e, "GPU %d: copy: %s", g->ctx.device, cudaGetErrorString(st));
    return FW_OK;
}

static int copy_async(fw_gpu_model *g, void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind, fw_err *e) {
    cudaError_t st = cudaMemcpyAsync(dst, src, bytes, kind, g->ctx.stream);
    if (st != cudaSuccess) return fw_errf(e, "GPU %d: copy: %s", g->ctx.device, cudaGetErrorString(st));
    return FW_OK;
}

/* A call on the side context failed: its message. */
#define CKS(side, call)                                                          \
    do {                                                                         \
        if (call) return fw_errf(e, "GPU %d: %s", g->ctx.device, (side)->err);   \
    } while (0)

/* The context for work that may run beside the main stream's until join_side:
 * the side stream, after it waits for what the main stream enqueued so far; the
 * main context itself with one stream or while profiling (regions stay serial). */
static int fork_side(fw_gpu_model *g, fw_cuda_ctx **side, fw_err *e) {
    *side = &g->ctx;
    if (!g->side_on || g->prof) return FW_OK;
    /* The side runs as the main context is set now (tests and layouts change it after start-up). */
    g->side.opt = g->ctx.opt;
    if (cudaEventRecord((cudaEvent_t)g->fork_ev[0], g->ctx.stream) != cudaSuccess ||
        cudaStreamWaitEvent(g->side.stream, (cudaEvent_t)g->fork_ev[0], 0) != cudaSuccess)
        return fw_errf(e, "GPU %d: cannot fork the side stream", g->ctx.device);
    *side = &g->side;
    return FW_OK;
}

/* The main stream waits for what the side stream enqueued. */
static int join_side(fw_gpu_model *g, const fw_cuda_ctx *side, fw_err *e) {
    if (side == &g->ctx) return FW_OK;
    if (cudaEventRecord((cudaEvent_t)g->fork_ev[1], side->stream) != cudaSuccess ||
        cudaStreamWaitEvent(g->ctx.stream, (cudaEvent_t)g->fork_ev[1], 0) != cudaSuccess)
        return fw_errf(e, "GPU %d: cannot join the side stream", g->ctx.device);
    return FW_OK;
}

/* DeepSeek-V3.2's indexer for the step's tokens: their keys into the cache rows
 * (after the latent, FP8 as DeepSeek rounds them), then per query the top
 * index_topk of its visible positions as cache rows in b->sel (the FP8 path of
 * runtime/cpu/indexer.h). */
static int indexer(fw_gpu_model *g, const fw_gpu_layer *L, const fw_cuda_pages *pg, int64_t Tt, gbufs *b, fw_err *e) {
    const fw_config *c = &g->cfg;
    const int64_t ih = c->index_n_heads, id = c->index_head_dim, K = c->index_topk, R = c->qk_rope_head_dim;
    const int64_t col0 = g->ix_col;
    fw_cuda_ctx *ctx = &g->ctx;
    CK(fw_cuda_matmul_f32(ctx, b->iq, b->qa, &L->ix_wq_b.w, Tt));
    CK(fw_cuda_matmul_f32(ctx, b->iw, b->h, &L->ix_w.w, Tt));
    CK(fw_cuda_matmul_f32(ctx, b->ik, b->h, &L->ix_wk.w, Tt));
    CK(fw_cuda_index_queries(ctx, b->iq8, b->iw, b->iq, b->cos_tab, b->sin_tab, Tt, ih, id, R));
    CK(fw_cuda_index_keys(ctx, pg, col0, b->ik, L->ix_k_norm, L->ix_k_bias, 1e-6f, b->cos_tab, b->sin_tab, b->q_seq,
                          b->q_len, Tt, id, R));
    for (int64_t t0 = 0; t0 < Tt; t0 += b->score_rows) {
        const int64_t n = Tt - t0 < b->score_rows ? Tt - t0 : b->score_rows;
        CK(fw_cuda_index_scores(ctx, b->score, g->cap, b->iq8 + t0 * ih * id, b->iw + t0 * ih, pg, col0, b->q_seq + t0,
                                b->q_len + t0, n, ih, id));
        CK(fw_cuda_index_topk(ctx, b->sel, b->nsel, b->irow, b->score, g->cap, pg, b->q_seq, b->q_len, t0, n, K));
    }
    return FW_OK;
}

static int allreduce(fw_gpu_model *g, fw_bf16 *buf, int64_t n, fw_err *e) {
    if (g->comm) return fw_gpu_allreduce(g, buf, n, e);
    if (g->sim_comm &&
        fw_cuda_delay(&g->ctx, g->sim_alpha_us + g->sim_us_per_byte * (double)n * (double)sizeof *buf))
        return fw_gpu_fail(g, e);
    return FW_OK;
}

/* Cache layer kvl's pages (the stage's layers in order, then the MTP layer's),
 * through the step's block tables. */
static fw_cuda_pages pages_of(const fw_gpu_model *g, int kvl, const gbufs *b) {
    const int64_t W = g->kv_w;
    return (fw_cuda_pages){g->kv + kvl * g->kv_blocks * g->kv_block * W, W, g->kv_block, g->kv_block * W,
                           g->max_blocks, b->tab};
}

/* Naive MLA for sequence `seq` of the step: its S cached positions gathered in
 * order, k_nope and v expanded from them (S, H, dn + dv); the fused attention
 * reads k_pe from the gathered latent rows, shared by the heads. */
static int attn_naive(fw_gpu_model *g, const fw_gpu_layer *L, const fw_cuda_pages *pg, int seq, int64_t T, int64_t S,
                      const fw_bf16 *q, fw_bf16 *o, gbufs *b, fw_err *e) {
    const fw_config *c = &g->cfg;
    const int64_t H = g->part.heads, C = c->kv_lora_rank, R = c->qk_rope_head_dim;
    const int64_t dn = c->qk_nope_head_dim, dv = c->v_head_dim, W = C + R, bf = sizeof(fw_bf16);
    CK(fw_cuda_kv_gather(&g->ctx, b->lat, pg, seq, S));
    if (copy2d(g, b->lat_c, C * bf, b->lat, W * bf, C * bf, S, e)) return FW_ERR;
    CK(fw_cuda_matmul(&g->ctx, b->kvx, b->lat_c, &L->kv_b.w, S)); /* (S, H, dn + dv) */
    const fw_cuda_attn_kv kv = {.k1 = b->kvx, .k2 = b->lat + C, .v = b->kvx + dn, .d1 = dn, .d2 = R, .dv = dv,
                                .k1_ss = H * (dn + dv), .k1_hs = dn + dv, .k2_ss = W, .k2_hs = 0,
                                .v_ss = H * (dn + dv), .v_hs = dn + dv};
    CK(fw_cuda_attn_flash(&g->ctx, o, q, &kv, T, S, H, g->softmax_scale));
    return FW_OK;
}

static int swiglu(fw_gpu_model *g, fw_cuda_ctx *ctx, const fw_cuda_weight *gate, const fw_cuda_weight *up,
                  const fw_cuda_weight *down, fw_bf16 *y, const fw_bf16 *x, int64_t n, gbufs *b, fw_err *e) {
    CKS(ctx, fw_cuda_matmul(ctx, b->g, x, &gate->w, n));
    CKS(ctx, fw_cuda_matmul(ctx, b->u, x, &up->w, n));
    CKS(ctx, fw_cuda_silu_mul(ctx, b->g, b->g, b->u, n * gate->w.rows));
    CKS(ctx, fw_cuda_matmul(ctx, y, b->g, &down->w, n));
    return FW_OK;
}

/* Shared experts plus the routed top-k of this rank's experts, y (T, D): a
 * partial sum under TP that the caller's all-reduce completes. */
static int moe(fw_gpu_model *g, const fw_gpu_layer *L, int64_t T, gbufs *b, fw_err *e) {
    const fw_config *c = &g->cfg;
    const int64_t D = c->hidden_size, k = c->num_experts_per_tok;
    fw_route_params rp = {.n_experts = (int)c->n_routed_experts, .top_k = (int)k, .n_group = c->n_group,
                          .topk_group = c->topk_group, .norm_topk_prob = c->norm_topk_prob,
                          .routed_scaling_factor = (float)c->routed_scaling_factor};
    /* The shared experts into y on the side stream, while the router and the routed experts run. */
    fw_cuda_ctx *side;
    if (fork_side(g, &side, e)) return FW_ERR;
    if (c->n_shared_experts > 0) {
        if (swiglu(g, side, &L->sh_gate, &L->sh_up, &L->sh_down, b->y, b->h, T, b, e)) return FW_ERR;
    } else if (cudaMemsetAsync(b->y, 0, (size_t)(T * D) * sizeof(fw_bf16), side->stream) != cudaSuccess) {
        return fw_errf(e, "GPU %d: memset failed", g->ctx.device);
    }
    fw_gpu_prof_mark(g, FW_PROF_MOE_GEMM);
    CK(fw_cuda_matmul_f32(&g->ctx, b->rlog, b->h, &L->router.w, T));
    CK(fw_cuda_route(&g->ctx, b->rid, b->rw, b->rlog, L->router_bias, T, &rp));
    fw_gpu_prof_mark(g, FW_PROF_ROUTE);
    if (g->part.exp_n == 0) return join_side(g, side, e);
    fw_cuda_moe_plan pl;
    CK(fw_cuda_moe_group(&g->ctx, &pl, b->plan, b->rid, T, k, g->part.exp_first, g->part.exp_n));
    fw_gpu_prof_mark(g, FW_PROF_ROUTE);
    /* The gate and up stacks were uploaded alike (gpu_model.c), so one stride serves both. */
    CK(fw_cuda_moe_swiglu(&g->ctx, b->eg, b->h, k, &L->exp_gate.w, &L->exp_up.w, L->exp_gate.stride,
                          L->exp_gate.sstride, &pl));
    CK(fw_cuda_moe_matmul(&g->ctx, b->ye, b->eg, false, k, &L->exp_down.w, L->exp_down.stride,
                          L->exp_down.sstride, &pl));
    if (join_side(g, side, e)) return FW_ERR;
    CK(fw_cuda_moe_combine(&g->ctx, b->y, b->ye, b->rw, &pl, T, k, D));
    fw_gpu_prof_mark(g, FW_PROF_MOE_GEMM);
    return FW_OK;
}

/* Decoder layer L over the step's tokens in b->x, its cache rows in cache layer kvl. */
static int layer(fw_gpu_model *g, const fw_gpu_layer *L, int kvl, int n, const fw_gpu_seg *segs, const int64_t *off,
                 int64_t Tt, fw_attn_mode mode, gbufs *b, fw_err *e) {
    const fw_config *c = &g->cfg;
    const int64_t D = c->hidden_size, H = g->part.heads, C = c->kv_lora_rank, R = c->qk_rope_head_dim;
    const int64_t dn = c->qk_nope_head_dim, dv = c->v_head_dim, dqk = dn + R, W = C + R, bf = sizeof(fw_bf16);
    const float eps = (float)c->rms_norm_eps;
    fw_cuda_ctx *ctx = &g->ctx;

    CK(fw_cuda_rmsnorm(ctx, b->h, b->x, L->attn_norm, Tt, D, eps));
    /* The latent branch on the side stream: kv_a, its norm, k_pe's rotation, and
     * the append to each sequence's pages at positions known on the device
     * (graph-safe); joined before attention reads the cache. */
    fw_cuda_ctx *side;
    if (fork_side(g, &side, e)) return FW_ERR;
    const fw_cuda_pages pg = pages_of(g, kvl, b);
    CKS(side, fw_cuda_matmul(side, b->kva, b->h, &L->kv_a.w, Tt));
    CKS(side, fw_cuda_rmsnorm_ld(side, b->kva, W, b->kva, W, L->kv_a_norm, Tt, C, eps));
    CKS(side, fw_cuda_rope(side, b->kva + C, Tt, 1, W, 0, R, b->cos_tab, b->sin_tab));
    CKS(side, fw_cuda_kv_append_cols(side, &pg, 0, b->kva, W, b->q_seq, b->q_len, Tt));
    if (c->q_lora_rank > 0) {
        CK(fw_cuda_matmul(ctx, b->qa, b->h, &L->q_a.w, Tt));
        CK(fw_cuda_rmsnorm(ctx, b->qa, b->qa, L->q_a_norm, Tt, c->q_lora_rank, eps));
        CK(fw_cuda_matmul(ctx, b->q, b->qa, &L->q_b.w, Tt));
    } else {
        CK(fw_cuda_matmul(ctx, b->q, b->h, &L->q_b.w, Tt));
    }
    CK(fw_cuda_rope(ctx, b->q + dn, Tt, H, H * dqk, dqk, R, b->cos_tab, b->sin_tab));

    if (mode == FW_ATTN_NAIVE && join_side(g, side, e)) return FW_ERR;
    fw_gpu_prof_mark(g, FW_PROF_ATTN_GEMM);
    if (mode == FW_ATTN_NAIVE) {
        for (int i = 0; i < n; i++)
            if (attn_naive(g, L, &pg, i, segs[i].T, segs[i].kv->len + segs[i].T,
                           b->q + off[i] * H * dqk, b->o + off[i] * H * dv, b, e))
                return FW_ERR;
        fw_gpu_prof_mark(g, FW_PROF_ATTN);
    } else {
        const bool sparse = fw_config_has_indexer(c);
        if (sparse && indexer(g, L, &pg, Tt, b, e)) return FW_ERR;
        CK(fw_cuda_mla_q_absorb(ctx, b->q_lat, b->q, &L->kv_b.w, Tt, H, dn, dv, R, C));
        if (copy2d(g, b->q_pe, R * bf, b->q + dn, dqk * bf, R * bf, Tt * H, e) || join_side(g, side, e)) return FW_ERR;
        fw_gpu_prof_mark(g, FW_PROF_ATTN_GEMM);

        /* Every token of every sequence in one launch, each over its own cache or,
         * sparse, over its selected rows (a table of one-row blocks a query). */
        const fw_cuda_pages sp = {pg.base, pg.W, 1, pg.W, c->index_topk, b->sel};
        if (sparse)
            CK(fw_cuda_mla_decode(ctx, b->o_lat, b->q_lat, b->q_pe, &sp, b->irow, b->nsel, Tt, c->index_topk, H, C, R,
                                  g->softmax_scale, b->mla_work));
        else
            CK(fw_cuda_mla_decode(ctx, b->o_lat, b->q_lat, b->q_pe, &pg, b->q_seq, b->q_len, Tt, g->cap, H, C, R,
                                  g->softmax_scale, b->mla_work));
        fw_gpu_prof_mark(g, FW_PROF_ATTN);
        CK(fw_cuda_mla_o_absorb(ctx, b->o, b->o_lat, &L->kv_b.w, Tt, H, dn, dv, C));
    }
    CK(fw_cuda_matmul(ctx, b->y, b->o, &L->o.w, Tt)); /* row-parallel: a partial sum under TP */
    fw_gpu_prof_mark(g, FW_PROF_ATTN_GEMM);
    if (allreduce(g, b->y, Tt * D, e)) return FW_ERR;
    fw_gpu_prof_mark(g, FW_PROF_COMM);
    CK(fw_cuda_add(ctx, b->x, b->y, Tt * D));

    CK(fw_cuda_rmsnorm(ctx, b->h, b->x, L->ffn_norm, Tt, D, eps));
    fw_gpu_prof_mark(g, FW_PROF_ATTN_GEMM);
    if (L->moe) {
        if (moe(g, L, Tt, b, e)) return FW_ERR;
    } else if (swiglu(g, &g->ctx, &L->gate, &L->up, &L->down, b->y, b->h, Tt, b, e)) {
        return FW_ERR;
    }
    fw_gpu_prof_mark(g, L->moe ? FW_PROF_MOE_GEMM : FW_PROF_DENSE);
    if (allreduce(g, b->y, Tt * D, e)) return FW_ERR;
    fw_gpu_prof_mark(g, FW_PROF_COMM);
    CK(fw_cuda_add(ctx, b->x, b->y, Tt * D));
    return FW_OK;
}

/* The last n_out rows of each segment through `norm` and `head`: logits (sum
 * n_out, vocab shard) into the staging. */
static int heads(fw_gpu_model *g, int n, const fw_gpu_seg *segs, const int64_t *off, const shape *sh,
                 const float *norm, const fw_cuda_weight *head, gbufs *b, const staging *h, fw_err *e) {
    const int64_t D = g->cfg.hidden_size;
    if (sh->n_rows == 0) return FW_OK;
    for (int64_t i = 0, r = 0; i < n; r += segs[i].n_out, i++)
        if (segs[i].n_out > 0 &&
            copy_async(g, b->hn + r * D, b->x + (off[i + 1] - segs[i].n_out) * D,
                       (size_t)(segs[i].n_out * D) * sizeof(fw_bf16), cudaMemcpyDeviceToDevice, e))
            return FW_ERR;
    CK(fw_cuda_rmsnorm(&g->ctx, b->hn, b->hn, norm, sh->n_rows, D, (float)g->cfg.rms_norm_eps));
    CK(fw_cuda_matmul_f32(&g->ctx, b->logits, b->hn, &head->w, sh->n_rows));
    return copy_async(g, h->logits, b->logits, (size_t)(sh->n_rows * g->part.vocab) * sizeof(float),
                      cudaMemcpyDeviceToHost, e);
}

/* The MTP layer's input (runtime/model/model.h, fw_mtp): x = eh_proj(cat(enorm(
 * embed(next token)), hnorm(h))), the ids and h (fp32) from the staging. */
static int mtp_input(fw_gpu_model *g, const fw_gpu_mtp *t, const shape *sh, gbufs *b, const staging *h, fw_err *e) {
    const int64_t D = g->cfg.hidden_size, Tt = sh->Tt, bf = sizeof(fw_bf16);
    const float eps = (float)g->cfg.rms_norm_eps;
    fw_cuda_ctx *ctx = &g->ctx;
    if (copy_async(g, b->ids, h->ids, (size_t)Tt * 4, cudaMemcpyHostToDevice, e) ||
        copy_async(g, b->hid, h->hid, (size_t)(Tt * D) * sizeof(float), cudaMemcpyHostToDevice, e))
        return FW_ERR;
    CK(fw_cuda_embed(ctx, b->x, &t->embed.w, b->ids, Tt, g->part.vocab0)); /* vocabulary-parallel, as the model's */
    if (allreduce(g, b->x, Tt * D, e)) return FW_ERR;
    CK(fw_cuda_rmsnorm(ctx, b->h, b->x, t->enorm, Tt, D, eps));
    CK(fw_cuda_f32_to_bf16(ctx, b->y, b->hid, Tt * D));
    CK(fw_cuda_rmsnorm(ctx, b->y, b->y, t->hnorm, Tt, D, eps));
    if (copy2d(g, b->cat, 2 * D * bf, b->h, D * bf, D * bf, Tt, e) ||
        copy2d(g, b->cat + D, 2 * D * bf, b->y, D * bf, D * bf, Tt, e))
        return FW_ERR;
    CK(fw_cuda_matmul(ctx, b->x, b->cat, &t->eh_proj.w, Tt)); /* (Tt, D), whole on every rank */
    return FW_OK;
}

/* The device work of a forward, enqueued on the stream without waiting: inputs
 * from the pinned staging, outputs (logits, hidden states) back into it. This is
 * what a CUDA graph captures for decode and verification steps. With t, the MTP
 * layer instead of the stage's layers. */
static int enqueue(fw_gpu_model *g, int n, const fw_gpu_seg *segs, const int64_t *off, const shape *sh, fw_attn_mode mode,
                   gbufs *b, const staging *h, const fw_gpu_mtp *t, fw_err *e) {
    const fw_config *c = &g->cfg;
    const fw_part *p = &g->part;
    const int64_t D = c->hidden_size, Tt = sh->Tt;
    const size_t half = (size_t)(Tt * c->qk_rope_head_dim / 2);
    fw_gpu_prof_mark(g, FW_PROF_IO); /* the start */
    if (copy_async(g, b->cos_tab, h->cos, half * sizeof(float), cudaMemcpyHostToDevice, e) ||
        copy_async(g, b->sin_tab, h->sin, half * sizeof(float), cudaMemcpyHostToDevice, e) ||
        copy_async(g, b->q_seq, h->seq, (size_t)Tt * 4, cudaMemcpyHostToDevice, e) ||
        copy_async(g, b->q_len, h->len, (size_t)Tt * 4, cudaMemcpyHostToDevice, e) ||
        copy_async(g, b->tab, h->tab, (size_t)(sh->n * g->max_blocks) * 4, cudaMemcpyHostToDevice, e))
        return FW_ERR;
    if (t) {
        if (mtp_input(g, t, sh, b, h, e)) return FW_ERR;
    } else if (p->has_embed) {
        if (copy_async(g, b->ids, h->ids, (size_t)Tt * 4, cudaMemcpyHostToDevice, e)) return FW_ERR;
        CK(fw_cuda_embed(&g->ctx, b->x, &g->embed.w, b->ids, Tt, p->vocab0));
        if (allreduce(g, b->x, Tt * D, e)) return FW_ERR; /* zero rows outside the vocabulary shard */
    } else {
        if (copy_async(g, b->hid, h->hid, (size_t)(Tt * D) * sizeof(float), cudaMemcpyHostToDevice, e)) return FW_ERR;
        CK(fw_cuda_f32_to_bf16(&g->ctx, b->x, b->hid, Tt * D));
    }
    fw_gpu_prof_mark(g, FW_PROF_IO);
    if (t) {
        if (layer(g, &t->layer, p->n_layers, n, segs, off, Tt, mode, b, e)) return FW_ERR;
    } else {
        for (int l = p->first_layer; l < p->first_layer + p->n_layers; l++)
            if (layer(g, &g->layers[l], l - p->first_layer, n, segs, off, Tt, mode, b, e)) return FW_ERR;
    }
    if (!t && !p->has_head) {
        CK(fw_cuda_bf16_to_f32(&g->ctx, b->hid, b->x, Tt * D));
        if (copy_async(g, h->hid, b->hid, (size_t)(Tt * D) * sizeof(float), cudaMemcpyDeviceToHost, e)) return FW_ERR;
    } else {
        /* The hidden states the MTP layer takes: the main model's final-normed
         * rows, or the MTP layer's own output before its head's norm. */
        if (sh->hidden) {
            if (!t) CK(fw_cuda_rmsnorm(&g->ctx, b->h, b->x, g->final_norm, Tt, D, (float)c->rms_norm_eps));
            CK(fw_cuda_bf16_to_f32(&g->ctx, b->hid, t ? b->x : b->h, Tt * D));
            if (copy_async(g, h->hid, b->hid, (size_t)(Tt * D) * sizeof(float), cudaMemcpyDeviceToHost, e))
                return FW_ERR;
        }
        if (heads(g, n, segs, off, sh, t ? t->head_norm : g->final_norm, t ? &t->head : &g->head, b, h, e))
            return FW_ERR;
    }
    fw_gpu_prof_mark(g, FW_PROF_IO);
    return FW_OK;
}

/* A captured step's slot: (tokens a sequence, hidden states out, sequences). */
static int graph_key(int64_t T, bool hidden, int n) {
    return (int)(((T - 1) * 2 + (hidden ? 1 : 0)) * (FW_GPU_MAX_GRAPH_BATCH + 1) + n);
}

/* Decode steps of n sequences (one token each) and verification steps (1 + K
 * tokens each, every row's logits) replay a CUDA graph captured on the second
 * such step (the first grows the work space and warms cuBLASLt): one launch
 * instead of dozens per layer. Any reallocation drops the graphs. The MTP
 * layer's steps run eagerly. */
static bool graphable(const fw_gpu_model *g, int n, const fw_gpu_seg *segs, fw_attn_mode mode, bool mtp) {
    if (mtp || g->prof || mode != FW_ATTN_ABSORBED || n > FW_GPU_MAX_GRAPH_BATCH || !g->graphs_on) return false;
    const int64_t T = segs[0].T;
    if (T > FW_GPU_MAX_GRAPH_T) return false;
    for (int i = 0; i < n; i++)
        if (segs[i].T != T || segs[i].hidden_out != segs[0].hidden_out || (g->part.has_head && segs[i].n_out != T))
            return false;
    return true;
}

static int run_graph(fw_gpu_model *g, int n, const fw_gpu_seg *segs, const int64_t *off, const shape *sh, gbufs *b,
                     const staging *h, fw_err *e) {
    const int key = graph_key(segs[0].T, sh->hidden, n);
    cudaGraphExec_t *exec = (cudaGraphExec_t *)&g->graph_exec[key];
    if (!*exec) {
        if (!g->graph_warm[key]) { /* first step of this shape: eager */
            g->graph_warm[key] = true;
            return enqueue(g, n, segs, off, sh, FW_ATTN_ABSORBED, b, h, NULL, e);
        }
        cudaGraph_t graph;
        if (cudaStreamBeginCapture(g->ctx.stream, cudaStreamCaptureModeRelaxed) != cudaSuccess)
            return fw_errf(e, "GPU %d: cannot start a CUDA graph capture", g->ctx.device);
        int rc = enqueue(g, n, segs, off, sh, FW_ATTN_ABSORBED, b, h, NULL, e);
        cudaError_t st = cudaStreamEndCapture(g->ctx.stream, &graph);
        if (rc) return FW_ERR;
        if (st != cudaSuccess) return fw_errf(e, "GPU %d: capturing the decode step: %s", g->ctx.device, cudaGetErrorString(st));
        st = cudaGraphInstantiate(exec, graph, 0);
        cudaGraphDestroy(graph);
        if (st != cudaSuccess) {
            *exec = NULL;
            return fw_errf(e, "GPU %d: instantiating the decode graph: %s", g->ctx.device, cudaGetErrorString(st));
        }
    }
    cudaError_t st = cudaGraphLaunch(*exec, g->ctx.stream);
    return st == cudaSuccess ? FW_OK : fw_errf(e, "GPU %d: graph launch: %s", g->ctx.device, cudaGetErrorString(st));
}

/* The two events that time a forward's device work, made on first use. */
static bool step_events(fw_gpu_model *g) {
    for (int i = 0; i < 2; i++)
        if (!g->step_ev[i] && cudaEventCreate((cudaEvent_t *)&g->step_ev[i]) != cudaSuccess) return false;
    return true;
}

/* A step of the stage's layers (t NULL) or of the MTP layer t: h_in the hidden
 * states in (a later stage's input, the MTP layer's), h_out those out (an earlier
 * stage's output, the segments' final-normed rows with hidden_out, the MTP
 * layer's output); NULL where none. */
static int step(fw_gpu_model *g, int n, const fw_gpu_seg *segs, const float *h_in, float *h_out, fw_attn_mode mode,
                float *logits, const fw_gpu_mtp *t, fw_err *e) {
    const fw_config *c = &g->cfg;
    const fw_part *p = &g->part;
    const int64_t D = c->hidden_size, R = c->qk_rope_head_dim, V = c->vocab_size;
    const bool ids_in = t || p->has_embed, head = t || p->has_head;
    if (n < 1) return fw_errf(e, "forward: no sequences");
    if (fw_config_has_indexer(c)) mode = FW_ATTN_ABSORBED; /* sparse MLA runs in the absorbed form */
    if (!g->kv) return fw_errf(e, "forward: the device has no KV cache");
    if (!ids_in && !h_in) return fw_errf(e, "forward: no hidden states in");
    int64_t *off = calloc((size_t)n + 1, sizeof *off);
    if (!off) return fw_errf(e, "out of memory");
    shape sh = {0, 0, 0, n, false};
    int rc = FW_OK;
    for (int i = 0; i < n && rc == FW_OK; i++) {
        const fw_gpu_seg *s = &segs[i];
        if (s->T <= 0 || s->n_out < 0 || s->n_out > s->T)
            rc = fw_errf(e, "forward: bad token count %lld (%lld outputs)", (long long)s->T, (long long)s->n_out);
        else if (s->kv->len + s->T > (s->kv->cap < g->cap ? s->kv->cap : g->cap))
            rc = fw_errf(e, "context is full: %lld + %lld tokens exceed the cache's %lld positions",
                         (long long)s->kv->len, (long long)s->T, (long long)(s->kv->cap < g->cap ? s->kv->cap : g->cap));
        for (int64_t j = 0; rc == FW_OK && j * g->kv_block < s->kv->len + s->T; j++)
            if (!s->kv->table || s->kv->table[j] < 0 || s->kv->table[j] >= g->kv_blocks)
                rc = fw_errf(e, "forward: sequence %d: block %lld of its table is not one of the cache's %lld", i,
                             (long long)j, (long long)g->kv_blocks);
        if (rc == FW_OK && ids_in && !s->ids) rc = fw_errf(e, "forward: sequence %d has no token ids", i);
        for (int64_t j = 0; rc == FW_OK && ids_in && j < s->T; j++)
            if (s->ids[j] < 0 || s->ids[j] >= V)
                rc = fw_errf(e, "token id %d is outside the vocabulary [0, %lld)", s->ids[j], (long long)V);
        off[i + 1] = off[i] + s->T;
        sh.Smax = max64(sh.Smax, s->kv->len + s->T);
        if (head) sh.n_rows += s->n_out;
        sh.hidden |= t ? h_out != NULL : p->has_head && s->hidden_out;
    }
    if (rc == FW_OK && sh.hidden && !h_out) rc = fw_errf(e, "forward: hidden states asked for, but nowhere to put them");
    const bool graph = rc == FW_OK && graphable(g, n, segs, mode, t != NULL);
    sh.Tt = off[n];
    carver cv = {0};
    gbufs b = {0}; /* buffers a step does not use stay NULL */
    carve(&cv, &b, g, &sh, mode, t != NULL);
    const size_t half = (size_t)(sh.Tt * R / 2);
    const size_t out_floats = (size_t)max64(sh.Tt * D, sh.n_rows * max64(1, p->vocab));
    size_t pinned = (size_t)sh.Tt * 12 + (size_t)(n * g->max_blocks) * 4 + 2 * half * sizeof(float) + (size_t)(sh.Tt * D) * sizeof(float) +
                    out_floats * sizeof(float) + 1024;
    if (rc == FW_OK) rc = reserve(g, cv.used, pinned, e);
    if (rc != FW_OK) {
        free(off);
        return FW_ERR;
    }
    cv = (carver){g->work, 0};
    carve(&cv, &b, g, &sh, mode, t != NULL);

    /* Host side of the step: ids, positions and RoPE tables into pinned memory. */
    staging h;
    h.ids = g->pinned, h.seq = h.ids + sh.Tt, h.len = h.seq + sh.Tt, h.tab = h.len + sh.Tt;
    h.cos = (float *)(h.tab + n * g->max_blocks), h.sin = h.cos + half, h.hid = h.sin + half;
    h.logits = h.hid + sh.Tt * D;
    for (int i = 0; i < n; i++) {
        if (ids_in) memcpy(h.ids + off[i], segs[i].ids, (size_t)segs[i].T * 4);
        for (int64_t j = 0; j < segs[i].T; j++)
            h.seq[off[i] + j] = i, h.len[off[i] + j] = (int32_t)(segs[i].kv->len + j + 1);
        const int64_t nb = (segs[i].kv->len + segs[i].T + g->kv_block - 1) / g->kv_block;
        memcpy(h.tab + i * g->max_blocks, segs[i].kv->table, (size_t)nb * 4);
        memset(h.tab + i * g->max_blocks + nb, 0, (size_t)(g->max_blocks - nb) * 4);
        fw_rope_tables(g->rope_inv_freq, g->rope_mscale, R, segs[i].kv->len, segs[i].T, h.cos + off[i] * R / 2,
                       h.sin + off[i] * R / 2);
    }
    if (t || !p->has_embed) memcpy(h.hid, h_in, (size_t)(sh.Tt * D) * sizeof(float));
    /* The ops' scratch (quantized activations, padded outputs) may have grown in an
     * eager step since a graph captured its old address: such graphs are stale. */
    if (g->ctx.scratch != g->graph_scratch[0] || g->side.scratch != g->graph_scratch[1]) {
        fw_gpu_drop_graphs(g);
        g->graph_scratch[0] = g->ctx.scratch, g->graph_scratch[1] = g->side.scratch;
    }
    g->n_prof = 0;
    const bool timed = g->time_gpu && step_events(g);
    if (timed) cudaEventRecord((cudaEvent_t)g->step_ev[0], g->ctx.stream);
    rc = graph ? run_graph(g, n, segs, off, &sh, &b, &h, e) : enqueue(g, n, segs, off, &sh, mode, &b, &h, t, e);
    if (timed) cudaEventRecord((cudaEvent_t)g->step_ev[1], g->ctx.stream);
    if (rc == FW_OK && g->comm) rc = fw_gpu_comm_wait(g, e); /* never block on a stuck collective */
    if (rc == FW_OK && fw_cuda_sync(&g->ctx)) rc = fw_gpu_fail(g, e);
    if (rc == FW_OK && g->prof) fw_gpu_prof_collect(g);
    float ms = 0;
    if (rc == FW_OK && timed &&
        cudaEventElapsedTime(&ms, (cudaEvent_t)g->step_ev[0], (cudaEvent_t)g->step_ev[1]) == cudaSuccess)
        g->gpu_ms += ms;
    if (rc == FW_OK && !head) {
        memcpy(h_out, h.hid, (size_t)(sh.Tt * D) * sizeof(float));
    } else if (rc == FW_OK) {
        for (int i = 0; i < n && sh.hidden; i++) /* the rows asked for, at the segments' offsets */
            if (t || segs[i].hidden_out)
                memcpy(h_out + off[i] * D, h.hid + off[i] * D, (size_t)(segs[i].T * D) * sizeof(float));
        if (sh.n_rows > 0) memcpy(logits, h.logits, (size_t)(sh.n_rows * p->vocab) * sizeof(float));
    }
    if (rc == FW_OK)
        for (int i = 0; i < n; i++) segs[i].kv->len += segs[i].T;
    free(off);
    return rc;
}

int fw_gpu_forward(fw_gpu_model *g, int n, const fw_gpu_seg *segs, float *hidden, fw_attn_mode mode, float *logits,
                   fw_err *e) {
    return step(g, n, segs, hidden, hidden, mode, logits, NULL, e);
}

int fw_gpu_forward_mtp(fw_gpu_model *g, int n, const fw_gpu_seg *segs, const float *h_in, float *h_out,
                       fw_attn_mode mode, float *logits, fw_err *e) {
    if (!g->mtp) return fw_errf(e, "forward: the MTP layer is not on this GPU");
    if (!h_in) return fw_errf(e, "forward: the MTP layer needs the hidden states of its positions");
    return step(g, n, segs, h_in, h_out, mode, logits, g->mtp, e);
}

void fw_gpu_prof_mark(fw_gpu_model *g, fw_gpu_region r) {
    if (!g->prof || g->n_prof >= FW_PROF_MAX_EVENTS) return;
    cudaEvent_t *ev = (cudaEvent_t *)&g->prof_ev[g->n_prof];
    if (!*ev && cudaEventCreate(ev) != cudaSuccess) return;
    if (cudaEventRecord(*ev, g->ctx.stream) != cudaSuccess) return;
    g->prof_region[g->n_prof++] = r;
}

void fw_gpu_prof_collect(fw_gpu_model *g) {
    for (int i = 1; i < g->n_prof; i++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, (cudaEvent_t)g->prof_ev[i - 1], (cudaEvent_t)g->prof_ev[i]) == cudaSuccess)
            g->prof_ms[g->prof_region[i]] += ms;
    }
    g->n_prof = 0;
}
