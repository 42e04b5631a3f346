/* Copies a loaded host model to the GPU (fw_gpu_model). */
#include "runtime/cuda/gpu_model.h"

#include "kernels/cuda/indexer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fw_gpu_drop_graphs(fw_gpu_model *g) {
    for (int i = 0; i < FW_GPU_GRAPH_KEYS; i++) {
        if (g->graph_exec[i]) cudaGraphExecDestroy((cudaGraphExec_t)g->graph_exec[i]);
        g->graph_exec[i] = NULL;
        g->graph_warm[i] = false;
    }
}

static int track(fw_gpu_model *g, void *p, fw_err *e) {
    if (g->n_allocs == g->cap_allocs) {
        int64_t cap = g->cap_allocs ? 2 * g->cap_allocs : 256;
        void **a = realloc(g->allocs, (size_t)cap * sizeof *a);
        if (!a) {
            fw_cuda_free(p);
            return fw_errf(e, "out of memory");
        }
        g->allocs = a, g->cap_allocs = cap;
    }
    g->allocs[g->n_allocs++] = p;
    return FW_OK;
}

static int dev_alloc(fw_gpu_model *g, void **p, size_t bytes, fw_err *e) {
    if (fw_cuda_malloc(&g->ctx, p, bytes)) return fw_gpu_fail(g, e);
    return track(g, *p, e);
}

/* A host fp32 vector (norm weights, router bias) on the device; NULL stays NULL. */
static int upload_vec(fw_gpu_model *g, float **d, const float *h, int64_t n, fw_err *e) {
    *d = NULL;
    if (!h) return FW_OK;
    if (dev_alloc(g, (void **)d, (size_t)n * sizeof(float), e)) return FW_ERR;
    if (fw_cuda_upload(&g->ctx, *d, h, (size_t)n * sizeof(float))) return fw_gpu_fail(g, e);
    return FW_OK;
}

/* INT8 weights (until the GPU has W8A16 kernels) and an INT4 kv_b (the absorbed
 * attention kernels of mla.cu read BF16 or FP8) go up as BF16, dequantized on the
 * host (q * scale rounded to bf16, as compressed-tensors' decompress does; an
 * INT4 kv_b is 4x its packed bytes, 25 MB more a DeepSeek-V3 layer). *h is
 * replaced by the BF16 copy in *buf (freed by the caller). */
static int as_bf16(const fw_weight **h, fw_weight *tmp, uint16_t **buf, fw_err *e) {
    if (!(*buf = malloc((size_t)((*h)->rows * (*h)->cols) * 2 + 2)))
        return fw_errf(e, "out of memory dequantizing an %s weight [%lld x %lld] to BF16",
                       (*h)->type == FW_WTYPE_INT4 ? "INT4" : "INT8", (long long)(*h)->rows, (long long)(*h)->cols);
    fw_weight_to_bf16(*h, *buf);
    *tmp = (fw_weight){.type = FW_WTYPE_BF16, .rows = (*h)->rows, .cols = (*h)->cols, .ld = (*h)->cols, .data = *buf};
    *h = tmp;
    return FW_OK;
}

/* widen: INT4 goes up as BF16 too (kv_b); INT8 always does. */
static int upload_as(fw_gpu_model *g, fw_cuda_weight *d, const fw_weight *h, bool widen, fw_err *e) {
    memset(d, 0, sizeof *d);
    if (!h->data) return FW_OK;
    fw_weight tmp;
    uint16_t *buf = NULL;
    if ((h->type == FW_WTYPE_INT8 || (widen && h->type == FW_WTYPE_INT4)) && as_bf16(&h, &tmp, &buf, e)) return FW_ERR;
    int rc = fw_cuda_weight_upload(&g->ctx, d, h, 0) ? fw_gpu_fail(g, e) : FW_OK;
    free(buf);
    g->weight_bytes += fw_wtype_bytes(h->type, h->rows, h->cols);
    return rc;
}

static int upload_w(fw_gpu_model *g, fw_cuda_weight *d, const fw_weight *h, fw_err *e) {
    return upload_as(g, d, h, false, e);
}

/* INT4 experts: each expert's packed rows (ld words, 16-byte aligned) and its
 * bf16 group scales, stacked. */
static int upload_experts_int4(fw_gpu_model *g, fw_gpu_experts *d, const fw_weight *h, int64_t x0, int64_t n, fw_err *e) {
    const fw_weight *w0 = &h[x0];
    const int64_t N = w0->rows, K = w0->cols, words = (K + 7) / 8, ld = (words + 3) / 4 * 4;
    const int64_t groups = (K + w0->group - 1) / w0->group;
    memset(d, 0, sizeof *d);
    d->stride = N * ld;
    d->sstride = N * groups;
    void *data, *scale;
    if (dev_alloc(g, &data, (size_t)(n * d->stride) * 4, e) || dev_alloc(g, &scale, (size_t)(n * d->sstride) * 2, e))
        return FW_ERR;
    for (int64_t i = 0; i < n; i++) {
        const fw_weight *w = &h[x0 + i];
        if (w->type != FW_WTYPE_INT4 || w->rows != N || w->cols != K || w->group != w0->group || w->c0 != 0)
            return fw_errf(e, "expert %lld differs in type, shape or group from expert %lld", (long long)(x0 + i),
                           (long long)x0);
        if (fw_cuda_upload2d(&g->ctx, (char *)data + (size_t)(i * d->stride) * 4, (size_t)ld * 4, w->data,
                             (size_t)w->ld * 4, (size_t)words * 4, (size_t)N) ||
            fw_cuda_upload2d(&g->ctx, (uint16_t *)scale + i * d->sstride, (size_t)groups * 2, w->gscale,
                             (size_t)w->scale_ld * 2, (size_t)groups * 2, (size_t)N))
            return fw_gpu_fail(g, e);
        g->weight_bytes += fw_wtype_bytes(FW_WTYPE_INT4, N, K);
    }
    d->w = *w0;
    d->w.data = data;
    d->w.ld = ld;
    d->w.gscale = scale;
    d->w.scale_ld = groups;
    return FW_OK;
}

/* The local experts x in [x0, x0 + n) of one kind into one allocation. */
static int upload_experts(fw_gpu_model *g, fw_gpu_experts *d, const fw_weight *h, int64_t x0, int64_t n, fw_err *e) {
    const fw_weight *w0 = &h[x0];
    if (w0->type == FW_WTYPE_INT4) return upload_experts_int4(g, d, h, x0, n, e);
    const fw_wtype stored = w0->type;
    /* INT8 experts go up as BF16 (as_bf16), one at a time. */
    const fw_weight as_bf16_shape = {.type = FW_WTYPE_BF16, .rows = w0->rows, .cols = w0->cols, .ld = w0->cols};
    if (stored == FW_WTYPE_INT8) w0 = &as_bf16_shape;
    const size_t es = fw_wtype_size(w0->type);
    const int64_t N = w0->rows, K = w0->cols, ld = (K + 15) / 16 * 16;
    const int64_t NB = (N + FW_FP8_BLOCK - 1) / FW_FP8_BLOCK, KB = (K + FW_FP8_BLOCK - 1) / FW_FP8_BLOCK;
    memset(d, 0, sizeof *d);
    d->stride = N * ld;
    d->sstride = w0->type == FW_WTYPE_FP8 ? NB * KB : 0;
    void *data;
    float *scale = NULL;
    if (dev_alloc(g, &data, (size_t)(n * d->stride) * es, e)) return FW_ERR;
    if (d->sstride && dev_alloc(g, (void **)&scale, (size_t)(n * d->sstride) * sizeof(float), e)) return FW_ERR;
    for (int64_t i = 0; i < n; i++) {
        const fw_weight *w = &h[x0 + i];
        if (w->type != stored)
            return fw_errf(e, "expert %lld differs in type from expert %lld", (long long)(x0 + i), (long long)x0);
        fw_weight tmp;
        uint16_t *buf = NULL;
        if (stored == FW_WTYPE_INT8 && as_bf16(&w, &tmp, &buf, e)) return FW_ERR;
        if (w->rows != N || w->cols != K || (w->type == FW_WTYPE_FP8 && (w->r0 || w->c0))) {
            free(buf);
            return fw_errf(e, "expert %lld differs in type or shape from expert %lld", (long long)(x0 + i),
                           (long long)x0);
        }
        const int rc = fw_cuda_upload2d(&g->ctx, (char *)data + (size_t)(i * d->stride) * es, (size_t)ld * es,
                                        w->data, (size_t)w->ld * es, (size_t)K * es, (size_t)N);
        free(buf);
        if (rc) return fw_gpu_fail(g, e);
        if (d->sstride && fw_cuda_upload2d(&g->ctx, scale + i * d->sstride, (size_t)KB * sizeof(float), w->scale,
                                           (size_t)w->scale_ld * sizeof(float), (size_t)KB * sizeof(float),
                                           (size_t)NB))
            return fw_gpu_fail(g, e);
        g->weight_bytes += (uint64_t)(N * K) * es;
    }
    d->w = *w0;
    d->w.data = data;
    d->w.ld = ld;
    d->w.scale = scale;
    d->w.scale_ld = d->sstride ? KB : 0;
    d->w.r0 = d->w.c0 = 0;
    return FW_OK;
}

static int upload_layer(fw_gpu_model *g, fw_gpu_layer *G, const fw_layer *L, const fw_model *m, fw_err *e) {
    const fw_config *c = &m->cfg;
    G->moe = L->moe;
    if (upload_vec(g, &G->attn_norm, L->attn_norm, c->hidden_size, e) ||
        upload_vec(g, &G->ffn_norm, L->ffn_norm, c->hidden_size, e) ||
        upload_vec(g, &G->q_a_norm, L->q_a_norm, c->q_lora_rank, e) ||
        upload_vec(g, &G->kv_a_norm, L->kv_a_norm, c->kv_lora_rank, e) ||
        upload_w(g, &G->q_a, &L->q_a, e) || upload_w(g, &G->q_b, &L->q_b, e) || upload_w(g, &G->kv_a, &L->kv_a, e) ||
        upload_as(g, &G->kv_b, &L->kv_b, true, e) || upload_w(g, &G->o, &L->o, e))
        return FW_ERR;
    if (fw_config_has_indexer(c) &&
        (upload_w(g, &G->ix_wq_b, &L->ix_wq_b, e) || upload_w(g, &G->ix_wk, &L->ix_wk, e) ||
         upload_w(g, &G->ix_w, &L->ix_w, e) || upload_vec(g, &G->ix_k_norm, L->ix_k_norm, c->index_head_dim, e) ||
         upload_vec(g, &G->ix_k_bias, L->ix_k_bias, c->index_head_dim, e)))
        return FW_ERR;
    if (!L->moe)
        return upload_w(g, &G->gate, &L->gate, e) || upload_w(g, &G->up, &L->up, e) ||
               upload_w(g, &G->down, &L->down, e);
    if (upload_w(g, &G->router, &L->router, e) ||
        upload_vec(g, &G->router_bias, L->router_bias, c->n_routed_experts, e) ||
        upload_w(g, &G->sh_gate, &L->sh_gate, e) || upload_w(g, &G->sh_up, &L->sh_up, e) ||
        upload_w(g, &G->sh_down, &L->sh_down, e))
        return FW_ERR;
    const int64_t x0 = m->part.exp_first, n = m->part.exp_n;
    if (n == 0) return FW_OK;
    return upload_experts(g, &G->exp_gate, L->exp_gate, x0, n, e) ||
           upload_experts(g, &G->exp_up, L->exp_up, x0, n, e) ||
           upload_experts(g, &G->exp_down, L->exp_down, x0, n, e);
}

static void describe(fw_gpu_model *g);

int fw_gpu_model_begin(fw_gpu_model *g, const fw_model *m, int device, const fw_backend_opts *o, fw_err *e) {
    memset(g, 0, sizeof *g);
    if (fw_cuda_ctx_init(&g->ctx, device, NULL)) return fw_errf(e, "GPU %d: %s", device, g->ctx.err);
    /* The reference paths: never cuBLASLt (bf16 activations into FP8 weights
     * instead of e4m3 activations; golden parity and layout comparisons). */
    if (o->reference) g->ctx.opt.mm_policy = FW_CUDA_MM_OWN;
    g->graphs_on = o->graphs;
    g->collective_timeout = o->collective_timeout;
    if (o->streams > 1) {
        if (fw_cuda_ctx_init(&g->side, device, NULL)) return fw_errf(e, "GPU %d: %s", device, g->side.err);
        for (int i = 0; i < 2; i++)
            if (cudaEventCreateWithFlags((cudaEvent_t *)&g->fork_ev[i], cudaEventDisableTiming) != cudaSuccess)
                return fw_errf(e, "GPU %d: cannot create an event", device);
        g->side_on = true;
    }
    g->cfg = m->cfg;
    g->part = m->part;
    g->softmax_scale = m->softmax_scale;
    g->rope_mscale = m->rope_mscale;
    const fw_config *c = &m->cfg;
    const int64_t R = c->qk_rope_head_dim;
    g->ix_col = fw_config_gpu_index_col(c);
    g->kv_w = fw_config_gpu_kv_cols(c);
    if (fw_config_has_indexer(c) && g->kv_w != g->ix_col + fw_cuda_index_key_cols(c->index_head_dim))
        return fw_errf(e, "GPU %d: the cache row's layout and the indexer kernels' disagree", device);
    g->rope_inv_freq = malloc((size_t)(R / 2 > 0 ? R / 2 : 1) * sizeof(float));
    g->layers = calloc((size_t)c->num_hidden_layers, sizeof *g->layers);
    if (!g->rope_inv_freq || !g->layers) return fw_errf(e, "out of memory");
    memcpy(g->rope_inv_freq, m->rope_inv_freq, (size_t)(R / 2) * sizeof(float));
    return FW_OK;
}

int fw_gpu_upload_layer(fw_gpu_model *g, const fw_model *m, int l, fw_err *e) {
    if (g->layers[l].on_device) return FW_OK;
    if (upload_layer(g, &g->layers[l], &m->layers[l], m, e)) return fw_err_prefix(e, "uploading layer %d", l);
    g->layers[l].on_device = true;
    return FW_OK;
}

/* The MTP layer (m->mtp) the host model loaded, its decoder layer as a main one. */
static int upload_mtp(fw_gpu_model *g, const fw_model *m, fw_err *e) {
    const fw_mtp *h = m->mtp;
    const int64_t D = m->cfg.hidden_size;
    fw_gpu_mtp *t = calloc(1, sizeof *t);
    if (!t) return fw_errf(e, "out of memory");
    g->mtp = t;
    if (upload_layer(g, &t->layer, &h->layer, m, e) || upload_w(g, &t->embed, &h->embed, e) ||
        upload_w(g, &t->eh_proj, &h->eh_proj, e) || upload_w(g, &t->head, &h->head, e) ||
        upload_vec(g, &t->enorm, h->enorm, D, e) || upload_vec(g, &t->hnorm, h->hnorm, D, e) ||
        upload_vec(g, &t->head_norm, h->head_norm, D, e))
        return fw_err_prefix(e, "uploading the MTP layer");
    t->layer.on_device = true;
    return FW_OK;
}

int fw_gpu_model_finish(fw_gpu_model *g, const fw_model *m, fw_err *e) {
    const fw_part *p = &m->part;
    if ((p->has_embed && upload_w(g, &g->embed, &m->embed, e)) || (p->has_head && upload_w(g, &g->head, &m->head, e)) ||
        (p->has_head && upload_vec(g, &g->final_norm, m->final_norm, m->cfg.hidden_size, e)))
        return fw_err_prefix(e, "uploading the model");
    for (int l = p->first_layer; l < p->first_layer + p->n_layers; l++)
        if (fw_gpu_upload_layer(g, m, l, e)) return FW_ERR;
    if (m->mtp && !g->mtp && upload_mtp(g, m, e)) return FW_ERR;
    g->kv_layers = fw_model_kv_layers(m);
    describe(g);
    return FW_OK;
}

int fw_gpu_model_init(fw_gpu_model *g, const fw_model *m, int device, const fw_backend_opts *o, fw_err *e) {
    return fw_gpu_model_begin(g, m, device, o, e) || fw_gpu_model_finish(g, m, e) ? FW_ERR : FW_OK;
}

static void describe(fw_gpu_model *g) {
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    snprintf(g->desc, sizeof g->desc, "GPU %d (%s, sm_%d%d): %.2f GB of weights, %.2f GB of KV cache, %.1f GB free",
             g->ctx.device, g->ctx.device_name, g->ctx.cc_major, g->ctx.cc_minor, (double)g->weight_bytes / 1e9,
             (double)g->kv_bytes / 1e9, (double)free_b / 1e9);
}

int64_t fw_gpu_kv_fit(fw_gpu_model *g, int64_t block) {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return 0;
    const uint64_t avail = (uint64_t)free_b + g->kv_bytes, keep = FW_GPU_WORK_RESERVE + (uint64_t)total_b / 20;
    const uint64_t per = (uint64_t)(g->kv_layers * block * g->kv_w) * sizeof(fw_bf16);
    return avail > keep && per > 0 ? (int64_t)((avail - keep) / per) : 0;
}

int fw_gpu_kv_init(fw_gpu_model *g, int64_t n_blocks, int64_t block, int64_t max_context, fw_err *e) {
    const int64_t W = g->kv_w;
    if (n_blocks < 1 || block < 1 || max_context < 1)
        return fw_errf(e, "KV cache: %lld blocks of %lld positions for %lld-position sequences", (long long)n_blocks,
                       (long long)block, (long long)max_context);
    fw_gpu_drop_graphs(g); /* they point at the old cache and size their work by it */
    if (g->kv && fw_cuda_sync(&g->ctx)) return fw_gpu_fail(g, e);
    fw_cuda_free(g->kv);
    g->kv = NULL, g->kv_bytes = 0;
    const size_t bytes = (size_t)(g->kv_layers * n_blocks * block * W) * sizeof(fw_bf16);
    if (fw_cuda_malloc(&g->ctx, (void **)&g->kv, bytes)) {
        g->kv = NULL;
        return fw_errf(e, "GPU %d: no room for a KV cache of %lld blocks x %lld positions (%.2f GB): %s", g->ctx.device,
                       (long long)n_blocks, (long long)block, (double)bytes / 1e9, g->ctx.err);
    }
    /* Zeroed: the attention never reads a row before it is written, but a
     * stray read then gives zeros, not NaNs from old memory. */
    if (cudaMemsetAsync(g->kv, 0, bytes, g->ctx.stream) != cudaSuccess || fw_cuda_sync(&g->ctx))
        return fw_errf(e, "GPU %d: clearing the KV cache failed", g->ctx.device);
    g->kv_blocks = n_blocks, g->kv_block = block, g->cap = max_context, g->kv_bytes = bytes;
    g->max_blocks = (max_context + block - 1) / block;
    describe(g);
    return FW_OK;
}

static void free_w(fw_cuda_weight *w) { fw_cuda_weight_free(w); }

void fw_gpu_model_free(fw_gpu_model *g) {
    fw_gpu_drop_graphs(g);
    if (g->comm) fw_gpu_comm_free(g);
    for (int l = 0; g->layers && l < g->cfg.num_hidden_layers; l++) {
        fw_gpu_layer *G = &g->layers[l];
        fw_cuda_weight *ws[] = {&G->q_a,    &G->q_b,     &G->kv_a,  &G->kv_b,    &G->o,     &G->gate,
                                &G->up,     &G->down,    &G->router, &G->sh_gate, &G->sh_up, &G->sh_down,
                                &G->ix_wq_b, &G->ix_wk,  &G->ix_w};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) free_w(ws[i]);
    }
    if (g->mtp) {
        fw_gpu_layer *G = &g->mtp->layer;
        fw_cuda_weight *ws[] = {&G->q_a,    &G->q_b,     &G->kv_a,  &G->kv_b,    &G->o,     &G->gate,
                                &G->up,     &G->down,    &G->router, &G->sh_gate, &G->sh_up, &G->sh_down,
                                &G->ix_wq_b, &G->ix_wk,  &G->ix_w,   &g->mtp->embed, &g->mtp->eh_proj, &g->mtp->head};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) free_w(ws[i]);
        free(g->mtp);
    }
    free_w(&g->embed);
    free_w(&g->head);
    for (int64_t i = 0; i < g->n_allocs; i++) fw_cuda_free(g->allocs[i]);
    fw_cuda_free(g->work);
    fw_cuda_free(g->kv);
    for (int i = 0; i < FW_PROF_MAX_EVENTS; i++)
        if (g->prof_ev[i]) cudaEventDestroy((cudaEvent_t)g->prof_ev[i]);
    for (int i = 0; i < 2; i++) {
        if (g->step_ev[i]) cudaEventDestroy((cudaEvent_t)g->step_ev[i]);
        if (g->fork_ev[i]) cudaEventDestroy((cudaEvent_t)g->fork_ev[i]);
    }
    if (g->side.stream) fw_cuda_ctx_free(&g->side);
    if (g->pinned) cudaFreeHost(g->pinned);
    free(g->allocs);
    free(g->layers);
    free(g->rope_inv_freq);
    fw_cuda_ctx_free(&g->ctx);
    memset(g, 0, sizeof *g);
}
