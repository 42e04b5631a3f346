/* furrow bench --device cuda: decode steps at several batch sizes and context
 * lengths, and a long prefill, on this rank's stage, against ceilings measured on
 * the same GPU in the same run (device-to-device copy bandwidth and a cuBLASLt
 * bf16 GEMM of 8192^3), with the time split by region (fw_gpu_region). The caches
 * are filled with zeros up to the context: the step reads as many bytes and does
 * as much work as with real keys. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "io/base/clock.h"
#include "runtime/cuda/gpu_model.h"
#include "runtime/dist/energy.h"

static double wbytes(const fw_weight *w) {
    if (!w->data) return 0;
    double el = (double)(w->rows * w->cols);
    if (w->type == FW_WTYPE_FP8) return el + 4.0 * (double)(((w->rows + 127) / 128) * ((w->cols + 127) / 128));
    if (w->type == FW_WTYPE_INT4) /* packed words and bf16 group scales */
        return (double)fw_wtype_bytes(w->type, w->rows, w->cols) + 2.0 * (double)(w->rows * ((w->cols + w->group - 1) / w->group));
    return el * (double)fw_wtype_size(w->type);
}

static double wparams(const fw_weight *w) { return w->data ? (double)(w->rows * w->cols) : 0; }

/* Per decode step of B sequences at context S, over the stage's layers: bytes
 * the step must read (weights it touches, expected distinct experts under
 * uniform routing, the latent cache) and FLOPs. */
static void step_cost(const fw_gpu_model *g, int B, int64_t S, double *bytes, double *flops) {
    const fw_config *c = &g->cfg;
    const fw_part *p = &g->part;
    const double H = (double)p->heads, C = (double)c->kv_lora_rank, W = C + (double)c->qk_rope_head_dim;
    double by = 0, fl = 0;
    for (int l = p->first_layer; l < p->first_layer + p->n_layers; l++) {
        const fw_gpu_layer *L = &g->layers[l];
        const fw_weight *att[] = {&L->q_a.w, &L->q_b.w, &L->kv_a.w, &L->kv_b.w, &L->o.w};
        for (size_t i = 0; i < 5; i++) by += wbytes(att[i]), fl += 2.0 * B * wparams(att[i]);
        double seen = (double)(S + 1);                         /* positions attended to */
        if (fw_config_has_indexer(c)) { /* the indexer reads every key; MLA only the selected rows */
            const fw_weight *ix[] = {&L->ix_wq_b.w, &L->ix_wk.w, &L->ix_w.w};
            for (size_t i = 0; i < 3; i++) by += wbytes(ix[i]), fl += 2.0 * B * wparams(ix[i]);
            const double ih = (double)c->index_n_heads, id = (double)c->index_head_dim;
            by += (double)B * (double)(S + 1) * (id + 4); /* e4m3 keys and their scales */
            fl += 2.0 * B * ih * id * (double)(S + 1);
            seen = fmin(seen, (double)c->index_topk);
        }
        by += (double)B * seen * W * 2;                        /* the latent cache */
        fl += 2.0 * B * H * seen * (W + C);                    /* scores and the weighted sum */
        if (!L->moe) {
            const fw_weight *ffn[] = {&L->gate.w, &L->up.w, &L->down.w};
            for (size_t i = 0; i < 3; i++) by += wbytes(ffn[i]), fl += 2.0 * B * wparams(ffn[i]);
            continue;
        }
        const fw_weight *sh[] = {&L->router.w, &L->sh_gate.w, &L->sh_up.w, &L->sh_down.w};
        for (size_t i = 0; i < 4; i++) by += wbytes(sh[i]), fl += 2.0 * B * wparams(sh[i]);
        const double E = (double)c->n_routed_experts, k = (double)c->num_experts_per_tok;
        const double used = (double)p->exp_n * (1.0 - pow(1.0 - k / E, B));
        const double one = wbytes(&L->exp_gate.w) + wbytes(&L->exp_up.w) + wbytes(&L->exp_down.w);
        const double prm = wparams(&L->exp_gate.w) + wparams(&L->exp_up.w) + wparams(&L->exp_down.w);
        by += used * one;
        fl += 2.0 * B * k * (double)p->exp_n / E * prm;
    }
    *bytes = by, *flops = fl;
}

/* FLOPs of a prefill of T tokens over the stage: the per-token matmuls (the
 * kv_b expansion costs what the absorbed projections do) and causal attention. */
static double prefill_flops(const fw_gpu_model *g, int64_t T) {
    double by, fl;
    step_cost(g, 1, 0, &by, &fl);
    const fw_config *c = &g->cfg;
    const double H = (double)g->part.heads, tt = (double)T;
    const double d = (double)(c->qk_nope_head_dim + c->qk_rope_head_dim + c->v_head_dim);
    return tt * fl + (double)g->part.n_layers * H * tt * tt * d;
}

/* n random bf16 values in [-1, 1) (xorshift), to the device at dst. */
static int upload_random_bf16(fw_gpu_model *g, void *dst, int64_t n, uint64_t seed) {
    uint16_t *h = malloc((size_t)n * sizeof *h);
    if (!h) return FW_ERR;
    for (int64_t i = 0; i < n; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        h[i] = fw_f32_to_bf16((float)(seed >> 40) / (float)(1 << 23) - 1.0f);
    }
    int rc = fw_cuda_upload(&g->ctx, dst, h, (size_t)n * sizeof *h) ? FW_ERR : FW_OK;
    free(h);
    return rc;
}

/* Ceilings on this GPU, now: copy bandwidth (read + write) and bf16 GEMM. The
 * GEMM's operands are random: on constant or zero data the tensor cores draw
 * less power and run ~13% faster (788 vs 894 TFLOP/s on an H200 here), a
 * ceiling no real product reaches. */
static int ceilings(fw_gpu_model *g, double *copy_gbs, double *gemm_tflops, fw_err *e) {
    const size_t bytes = (size_t)2 << 30;
    const int64_t n = 8192;
    void *a = NULL, *b = NULL, *x = NULL, *w = NULL, *y = NULL;
    int rc = FW_ERR;
    if (fw_cuda_malloc(&g->ctx, &a, bytes) || fw_cuda_malloc(&g->ctx, &b, bytes) ||
        fw_cuda_malloc(&g->ctx, &x, (size_t)(n * n) * 2) || fw_cuda_malloc(&g->ctx, &w, (size_t)(n * n) * 2) ||
        fw_cuda_malloc(&g->ctx, &y, (size_t)(n * n) * 2)) {
        fw_gpu_fail(g, e);
        goto out;
    }
    cudaMemsetAsync(a, 0, bytes, g->ctx.stream);
    if (upload_random_bf16(g, x, n * n, 0x9E3779B97F4A7C15ull) || upload_random_bf16(g, w, n * n, 0xD1B54A32D192ED03ull)) {
        if (g->ctx.err[0]) fw_gpu_fail(g, e);
        else fw_errf(e, "bench: out of memory");
        goto out;
    }
    fw_weight wt = {.type = FW_WTYPE_BF16, .rows = n, .cols = n, .ld = n, .data = w};
    double best_copy = 1e9, best_gemm = 1e9;
    for (int i = 0; i < 4; i++) {
        if (fw_cuda_sync(&g->ctx)) goto fail;
        double t0 = fw_now();
        cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, g->ctx.stream);
        if (fw_cuda_sync(&g->ctx)) goto fail;
        double t1 = fw_now();
        if (fw_cuda_matmul(&g->ctx, y, x, &wt, n) || fw_cuda_sync(&g->ctx)) goto fail;
        double t2 = fw_now();
        if (i > 0) best_copy = fmin(best_copy, t1 - t0), best_gemm = fmin(best_gemm, t2 - t1);
    }
    *copy_gbs = 2.0 * (double)bytes / best_copy / 1e9;
    *gemm_tflops = 2.0 * (double)n * n * n / best_gemm / 1e12;
    rc = FW_OK;
    goto out;
fail:
    fw_gpu_fail(g, e);
out:
    fw_cuda_free(a), fw_cuda_free(b), fw_cuda_free(x), fw_cuda_free(w), fw_cuda_free(y);
    return rc;
}

static double layers_ms(const fw_gpu_model *g) {
    double s = 0;
    for (int r = FW_PROF_ATTN_GEMM; r < FW_PROF_N; r++) s += g->prof_ms[r];
    return s;
}

/* Runs `iters` forwards of segs (after two warm-ups: the second captures the
 * decode graph), restoring the lengths each time: wall seconds and device
 * milliseconds (events around the graph or the eager launches) per forward; then
 * `iters` more, eager, with the region timers. */
static int run(fw_gpu_model *g, int n, fw_gpu_seg *segs, fw_attn_mode mode, float *logits, int iters, double *wall,
               double *gpu_ms, fw_err *e) {
    int64_t len0[256];
    for (int i = 0; i < n; i++) len0[i] = segs[i].kv->len;
    double t = 0;
    g->gpu_ms = 0;
    for (int it = 0; it < 2 + 2 * iters; it++) {
        for (int i = 0; i < n; i++) segs[i].kv->len = len0[i];
        g->prof = it >= 2 + iters;
        g->time_gpu = it >= 2 && it < 2 + iters;
        double t0 = fw_now();
        if (fw_gpu_forward(g, n, segs, NULL, mode, logits, e)) return FW_ERR;
        if (it >= 2 && it < 2 + iters) t += fw_now() - t0;
    }
    g->prof = g->time_gpu = false;
    for (int i = 0; i < n; i++) segs[i].kv->len = len0[i];
    *wall = t / iters;
    *gpu_ms = g->gpu_ms / iters;
    return FW_OK;
}

/* Joules of this node's GPUs per token of a step (NVML's counters move in whole
 * millijoules, a few times a second): the step repeated, lengths restored,
 * for at least half a second. -1 without a GPU counter. */
static double joules_per_token(fw_gpu_model *g, fw_energy *m, int n, fw_gpu_seg *segs, fw_attn_mode mode,
                               float *logits, int64_t tokens, fw_err *e) {
    double cpu, j0, j1;
    fw_energy_totals(m, &cpu, &j0);
    if (j0 < 0) return -1;
    int64_t len0[256];
    for (int i = 0; i < n; i++) len0[i] = segs[i].kv->len;
    const double t0 = fw_now();
    int64_t reps = 0;
    do {
        for (int i = 0; i < n; i++) segs[i].kv->len = len0[i];
        if (fw_gpu_forward(g, n, segs, NULL, mode, logits, e)) return -2;
        reps++;
    } while (fw_now() - t0 < 0.5);
    for (int i = 0; i < n; i++) segs[i].kv->len = len0[i];
    fw_energy_totals(m, &cpu, &j1);
    return (j1 - j0) / (double)(reps * tokens);
}

/* The step's all-reduces as the model of --tp-sim has them (two a layer and the
 * embedding's): 0 when they cost nothing. */
static void set_sim_comm(fw_gpu_model *g, const fw_bench_steps *req, bool on) {
    const double n = (double)req->sim_tp;
    g->sim_comm = on && req->sim_tp > 1;
    g->sim_alpha_us = req->sim_alpha_us;
    g->sim_us_per_byte = 2.0 * (n - 1) / n / (req->sim_busbw_gbs * 1e3); /* GB/s = 1e3 bytes/us */
    fw_gpu_drop_graphs(g); /* captured with the other setting */
}

/* The step run again with the modelled all-reduces (--tp-sim): its wall time;
 * the region times of the run before are kept. */
static int run_with_comm(fw_gpu_model *g, const fw_bench_steps *req, int n, fw_gpu_seg *segs, fw_attn_mode mode,
                         float *logits, int iters, double *wall, fw_err *e) {
    double prof[FW_PROF_N], gpu;
    memcpy(prof, g->prof_ms, sizeof prof);
    set_sim_comm(g, req, true);
    const int rc = run(g, n, segs, mode, logits, iters, wall, &gpu, e);
    set_sim_comm(g, req, false);
    memcpy(g->prof_ms, prof, sizeof prof);
    return rc;
}

/* Blocks a sequence of S + 1 positions takes. */
static int64_t blocks_of(const fw_gpu_model *g, int64_t positions) { return (positions + g->kv_block - 1) / g->kv_block; }

/* The cache for the steps: the largest step's blocks (batch x context, or a
 * prefill) of those that fit beside the weights; the others are left out. */
static int size_cache(fw_gpu_model *g, const fw_bench_steps *req, fw_err *e) {
    const int64_t fit = fw_gpu_kv_fit(g, g->kv_block);
    if (fit < 1) return fw_errf(e, "bench: no room for a KV cache next to the weights");
    int64_t need = 1, longest = 1;
    for (int bi = 0; bi < req->n_batch; bi++)
        for (int ci = 0; ci < req->n_context; ci++) {
            const int64_t n = req->batch[bi] * blocks_of(g, req->context[ci] + 1);
            if (n > fit) continue;
            need = n > need ? n : need;
            longest = req->context[ci] + 1 > longest ? req->context[ci] + 1 : longest;
        }
    for (int i = 0; i < req->n_prefill; i++) {
        const int64_t n = blocks_of(g, req->prefill[i]);
        if (n > fit) continue;
        need = n > need ? n : need;
        longest = req->prefill[i] > longest ? req->prefill[i] : longest;
    }
    return fw_gpu_kv_init(g, need, g->kv_block, longest, e);
}

int fw_gpu_bench(fw_gpu_model *g, const fw_bench_steps *req, bool print, fw_err *e) {
    double copy_gbs = 0, tflops = 0;
    if (ceilings(g, &copy_gbs, &tflops, e) || size_cache(g, req, e)) return FW_ERR;
    const fw_part *p = &g->part;
    const int nl = p->n_layers;
    const bool sim = req->sim_tp > 1;
    int maxb = 1;
    int64_t maxp = 0;
    for (int i = 0; i < req->n_batch; i++) maxb = req->batch[i] > maxb ? req->batch[i] : maxb;
    for (int i = 0; i < req->n_prefill; i++) maxp = req->prefill[i] > maxp ? req->prefill[i] : maxp;
    fw_kv *kvs = calloc((size_t)maxb, sizeof *kvs);
    fw_gpu_seg *segs = calloc((size_t)maxb, sizeof *segs);
    int32_t *ids = calloc((size_t)(maxp > maxb ? maxp : maxb), sizeof *ids);
    float *logits = malloc((size_t)maxb * (size_t)p->vocab * sizeof(float));
    const int64_t mb = g->max_blocks;
    int32_t *tabs = malloc((size_t)(maxb * mb) * sizeof *tabs);
    if (!kvs || !segs || !ids || !logits || !tabs) return fw_errf(e, "out of memory");
    for (int64_t i = 0; i < (maxp > maxb ? maxp : maxb); i++) ids[i] = (int32_t)((i * 7919 + 13) % g->cfg.vocab_size);
    const double kv_gb_block = (double)g->kv_bytes / (double)g->kv_blocks / 1e9;
    fw_energy meter; /* the GPUs' energy counters (NVML), for J/token */
    fw_energy_open(&meter, true);
    double cpu_j, gpu_j;
    fw_energy_totals(&meter, &cpu_j, &gpu_j);
    const bool joules = gpu_j >= 0;
    if (print) {
        printf("%s\n", g->desc);
        printf("ceilings   (same GPU, same run) device-to-device copy %.0f GB/s (read + write); cuBLASLt bf16 GEMM "
               "8192^3 on random operands %.0f TFLOP/s\n", copy_gbs, tflops);
        printf("stage      %d layers (%d..%d), %lld heads, experts %d..%d, tp %d\n", nl, p->first_layer,
               p->first_layer + nl - 1, (long long)p->heads, p->exp_first, p->exp_first + p->exp_n - 1, p->tp);
        printf("KV cache   %lld blocks of %lld positions, %.2f GB; steps that need more are left out\n",
               (long long)g->kv_blocks, (long long)g->kv_block, (double)g->kv_bytes / 1e9);
        if (joules) printf("energy     J/tok: the GPUs' joules (NVML) per token, the step repeated for 0.5 s\n");
        else printf("energy     not read: %s\n", meter.nvml_why);
        if (sim)
            printf("tp-sim     this GPU runs rank 0 of tp %d alone; the router picks among all %d experts, so the "
                   "rank's %d get their share of tokens; the +comm columns rerun each step with every all-reduce "
                   "(2 a layer and the embedding's) a wait of %.1f us + 2(n-1)/n x bytes / %.0f GB/s\n",
                   req->sim_tp, g->cfg.n_routed_experts, p->exp_n, req->sim_alpha_us, req->sim_busbw_gbs);
        printf("\nstep ms: one forward, wall clock (decode: a CUDA graph); tok/s: tokens of the step per second (decode:\n"
               "batch / step, every sequence one token); gpu ms: the step's device time (events around the graph);\n"
               "layer ms: a layer's share of it (gpu ms less the eager embedding, head and copies, over the layers),\n"
               "from which GB/s, %%copy and TFLOP/s; eager ms and the split: the layers' time run eagerly with\n"
               "events between regions (launch gaps included)\n");
        printf("\nphase   batch  context  step ms    tok/s   gpu ms  layer ms  MB/layer  GB/s  %%copy  TFLOP/s |  eager ms"
               "  attn-gemm      attn     route  moe-gemm     dense      comm%s%s\n",
               sim ? " | +comm step ms  +comm tok/s" : "", joules ? " |  J/tok" : "");
    }
    json_t *rows = json_array(); /* --json: the compute-only steps, per layer of the share */
    int rc = rows ? FW_OK : fw_errf(e, "out of memory");
    for (int bi = 0; bi < req->n_batch && rc == FW_OK; bi++)
        for (int ci = 0; ci < req->n_context && rc == FW_OK; ci++) {
            const int B = req->batch[bi];
            const int64_t S = req->context[ci], per = blocks_of(g, S + 1);
            if (S + 1 > g->cap || B * per > g->kv_blocks) {
                if (print)
                    printf("decode  %5d  %7lld  left out: its KV cache (%.1f GB) does not fit beside the weights\n", B,
                           (long long)S, (double)(B * per) * kv_gb_block);
                continue;
            }
            for (int i = 0; i < B; i++) {
                for (int64_t j = 0; j < per; j++) tabs[i * mb + j] = (int32_t)(i * per + j);
                kvs[i] = (fw_kv){.cap = g->cap, .len = S, .table = tabs + i * mb};
                segs[i] = (fw_gpu_seg){&kvs[i], &ids[i], 1, 1, false};
            }
            memset(g->prof_ms, 0, sizeof g->prof_ms);
            double wall, gpu, wall_c = 0;
            rc = run(g, B, segs, FW_ATTN_ABSORBED, logits, req->iters, &wall, &gpu, e);
            const double eager = layers_ms(g) / req->iters;
            if (rc == FW_OK && sim) rc = run_with_comm(g, req, B, segs, FW_ATTN_ABSORBED, logits, req->iters, &wall_c, e);
            const double jt = rc == FW_OK && joules ? joules_per_token(g, &meter, B, segs, FW_ATTN_ABSORBED, logits, B, e) : -1;
            if (jt < -1.5) rc = FW_ERR;
            if (rc || !print) continue;
            double by, fl;
            double lay = fmax(gpu - g->prof_ms[FW_PROF_IO] / req->iters, 1e-6);
            step_cost(g, B, S, &by, &fl);
            double gbs = by / (lay / 1e3) / 1e9;
            json_array_append_new(rows, json_pack("{s:s,s:i,s:i,s:I,s:f,s:f,s:f}", "phase", "decode", "batch", B,
                                                  "tokens", 1, "context", (json_int_t)S, "layer_s", lay / nl / 1e3,
                                                  "fixed_s", (gpu - lay) / 1e3, "wait_s", 0.0));
            printf("decode  %5d  %7lld  %7.3f  %7.0f  %7.3f  %8.3f  %8.1f  %4.0f  %4.0f%%  %7.1f |  %8.3f ", B,
                   (long long)S, wall * 1e3, B / wall, gpu, lay / nl, by / nl / 1e6, gbs, 100 * gbs / copy_gbs,
                   fl / (lay / 1e3) / 1e12, eager / nl);
            for (int r = FW_PROF_ATTN_GEMM; r < FW_PROF_N; r++) printf(" %9.3f", g->prof_ms[r] / ((double)req->iters * nl));
            if (sim) printf(" | %13.3f  %11.0f", wall_c * 1e3, B / wall_c);
            if (joules) printf(" | %6.3f", jt);
            printf("\n");
        }
    for (int pi = 0; pi < req->n_prefill && rc == FW_OK; pi++) {
        const int64_t P = req->prefill[pi];
        if (P <= 0) continue;
        if (P > g->cap || blocks_of(g, P) > g->kv_blocks) {
            if (print) printf("prefill %5d  %7lld  left out: its KV cache does not fit beside the weights\n", 1, (long long)P);
            continue;
        }
        for (int64_t j = 0; j < blocks_of(g, P); j++) tabs[j] = (int32_t)j;
        kvs[0] = (fw_kv){.cap = g->cap, .len = 0, .table = tabs};
        segs[0] = (fw_gpu_seg){&kvs[0], ids, P, 1, false};
        memset(g->prof_ms, 0, sizeof g->prof_ms);
        const int it = req->iters > 3 ? 3 : req->iters;
        double wall, gpu, wall_c = 0;
        rc = run(g, 1, segs, FW_ATTN_NAIVE, logits, it, &wall, &gpu, e);
        if (rc == FW_OK && sim) rc = run_with_comm(g, req, 1, segs, FW_ATTN_NAIVE, logits, it, &wall_c, e);
        const double jt = rc == FW_OK && joules ? joules_per_token(g, &meter, 1, segs, FW_ATTN_NAIVE, logits, P, e) : -1;
        if (jt < -1.5) rc = FW_ERR;
        if (rc == FW_OK && print) {
            double lay = layers_ms(g) / it, fl = prefill_flops(g, P);
            json_array_append_new(rows, json_pack("{s:s,s:i,s:I,s:f,s:f,s:f}", "phase", "prefill", "batch", 1, "tokens",
                                                  (json_int_t)P, "layer_s", lay / nl / 1e3,
                                                  "fixed_s", fmax(wall * 1e3 - lay, 0) / 1e3, "wait_s", 0.0));
            printf("prefill %5d  %7lld  %7.1f  %7.0f  %7.1f  %8.3f  %8s  %4s  %5s  %7.1f |  %8.3f ", 1, (long long)P,
                   wall * 1e3, P / wall, gpu, lay / nl, "-", "-", "-", fl / (lay / 1e3) / 1e12, lay / nl);
            for (int r = FW_PROF_ATTN_GEMM; r < FW_PROF_N; r++) printf(" %9.3f", g->prof_ms[r] / ((double)it * nl));
            if (sim) printf(" | %13.1f  %11.0f", wall_c * 1e3, P / wall_c);
            if (joules) printf(" | %6.4f", jt);
            printf("\nprefill: %.0f%% of the bf16 GEMM ceiling in the layers (%.1f TFLOP/s)\n",
                   100 * fl / (lay / 1e3) / 1e12 / tflops, fl / (lay / 1e3) / 1e12);
        }
    }
    if (rc == FW_OK && print && req->json_path) {
        json_t *j = json_pack("{s:s,s:i,s:s,s:i,s:i,s:i,s:O}", "format", "furrow-compute", "version", 1, "model",
                              g->desc, "layers", nl, "tp", p->tp, "pp", 1, "steps", rows);
        if (!j || json_dump_file(j, req->json_path, JSON_INDENT(1) | JSON_REAL_PRECISION(6)))
            rc = fw_errf(e, "bench: cannot write %s", req->json_path);
        json_decref(j);
    }
    json_decref(rows);
    fw_energy_close(&meter);
    free(kvs), free(segs), free(ids), free(logits), free(tabs);
    return rc;
}
