/* The ops the GPU forward adds beyond the CPU table, against plain loops over
 * fw_weight_get, with the same NMSE bounds and guards as test_cuda_ops.c:
 * - the routed-expert chain: grouping on the device, the gathered expert matmul
 *   (gate/up), the grouped-row matmul (down), the weighted combine; for BF16 and
 *   FP8 experts stacked in one allocation, a local expert range inside the full
 *   one (other ranks' experts are skipped), ragged N and K, and T from 1 (the
 *   small-group kernel) to 512 (64-row tensor-core tiles: the mma kernel, or the
 *   wmma one where rows are not 16-byte pieces; partial tiles, N past a 128 tile,
 *   K past a 64 stage and FP8's last scale block partial); its prefill timing;
 * - absorbed MLA's all-head projections q . W_UK and o_lat . W_UV^T;
 * - flash-decoding over a paged latent cache, appends to it and gathers from it;
 * - rmsnorm over strided rows. */
#include <math.h>
#include <string.h>

#include "tests/check.h"
#include "tests/cuda_test.h"

/* Random distinct experts per token and random routing weights. */
static void random_routes(int32_t *ids, float *w, int64_t T, int64_t k, int64_t E) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < k; j++) {
            int32_t e;
            bool dup;
            do {
                e = (int32_t)(check_rng_u32() % (uint32_t)E);
                dup = false;
                for (int64_t i = 0; i < j; i++) dup |= ids[t * k + i] == e;
            } while (dup);
            ids[t * k + j] = e;
            w[t * k + j] = 0.5f + 0.5f * check_rng_uniform();
        }
}

/* n experts of [N, K] stacked: one host block (for upload) and per-expert views. */
typedef struct stack {
    hw all;         /* rows n * N */
    fw_weight *one; /* [n] host views, each with its own scale grid */
    int64_t stride, sstride;
} stack;

/* The group of INT4 stacks (set by the INT4 cases). */
static int64_t int4_group = 32;

static stack stack_make(fw_wtype ty, int64_t n, int64_t N, int64_t K) {
    stack s;
    if (ty == FW_WTYPE_INT4) { /* experts' rows of K / 8 words and K / group scales, stacked */
        const int64_t ld = K / 8, groups = (K + int4_group - 1) / int4_group;
        s.all = hw_make_int4(n * N, K, int4_group);
        s.stride = N * ld;
        s.sstride = N * groups;
        s.one = calloc((size_t)n, sizeof *s.one);
        for (int64_t i = 0; i < n; i++) s.one[i] = fw_weight_view(&s.all.w, i * N, N, 0, K);
        return s;
    }
    const int64_t NB = (N + 127) / 128, KB = (K + 127) / 128, es = ty == FW_WTYPE_BF16 ? 2 : 1;
    s.all = hw_make(ty, n * N, K, K);
    s.stride = N * K;
    s.sstride = ty == FW_WTYPE_FP8 ? NB * KB : 0;
    s.one = calloc((size_t)n, sizeof *s.one);
    if (ty == FW_WTYPE_FP8) { /* per-expert grids, packed NB x KB each */
        free(s.all.scale);
        s.all.scale = hnew(n * NB * KB);
        for (int64_t i = 0; i < n * NB * KB; i++) s.all.scale[i] = (1.5f + check_rng_uniform()) / 300.0f;
    }
    for (int64_t i = 0; i < n; i++)
        s.one[i] = (fw_weight){.type = ty, .rows = N, .cols = K, .ld = K,
                               .data = (const char *)s.all.data + i * s.stride * es,
                               .scale = ty == FW_WTYPE_FP8 ? s.all.scale + i * s.sstride : NULL,
                               .scale_ld = ty == FW_WTYPE_FP8 ? KB : 0};
    return s;
}

/* The stack on the device: expert 0's weight with device pointers. */
static fw_weight stack_upload(const stack *s, int64_t n, dbuf *data, dbuf *scale) {
    const fw_weight *w = &s->one[0];
    if (w->type == FW_WTYPE_INT4) {
        *data = dnew((size_t)(n * s->stride) * 4);
        *scale = dnew((size_t)(n * s->sstride) * 2);
        CU(fw_cuda_upload(&ctx, dp(*data), s->all.data, (size_t)(n * s->stride) * 4));
        CU(fw_cuda_upload(&ctx, dp(*scale), s->all.gscale, (size_t)(n * s->sstride) * 2));
        fw_weight d = *w;
        d.data = dp(*data), d.gscale = dp(*scale);
        return d;
    }
    const int64_t es = w->type == FW_WTYPE_BF16 ? 2 : 1;
    *data = dnew((size_t)(n * s->stride * es));
    CU(fw_cuda_upload(&ctx, dp(*data), s->all.data, (size_t)(n * s->stride * es)));
    fw_weight d = *w;
    d.data = dp(*data);
    if (w->type == FW_WTYPE_FP8) {
        *scale = dnew((size_t)(n * s->sstride) * sizeof(float));
        CU(fw_cuda_upload(&ctx, dp(*scale), s->all.scale, (size_t)(n * s->sstride) * sizeof(float)));
        d.scale = dp(*scale);
    }
    return d;
}

static void stack_free(stack *s) {
    hw_free(&s->all);
    free(s->one);
}

/* The tile kernel moe.cu picks for a stack of [rows, K] with ld = K in 16-byte
 * aligned buffers: the mma one for BF16 / FP8 rows of whole 16-byte pieces. */
static const char *moe_tile_name(fw_wtype ty, int64_t K) {
    if (ty == FW_WTYPE_FP8 && K % 128 == 0 && ctx.cc_major == 9 && ctx.cc_minor == 0 && !ctx.opt.moe_tiles_mma)
        return ctx.opt.moe_act_fp8 && ctx.opt.mm_policy == FW_CUDA_MM_AUTO ? "wgmma-fp8act" : "wgmma";
    if (ty == FW_WTYPE_INT4 && K % 128 == 0 && ctx.cc_major == 9 && ctx.cc_minor == 0 && !ctx.opt.moe_tiles_mma &&
        (int4_group == 32 || int4_group == 64 || int4_group % 128 == 0))
        return int4_group % 128 ? "wgmma-scaled" : "wgmma";
    if (ty == FW_WTYPE_INT4) return K % 32 == 0 && int4_group % 32 == 0 ? "mma" : "wmma";
    return ty != FW_WTYPE_F32 && K * (int64_t)fw_wtype_size(ty) % 16 == 0 ? "mma" : "wmma";
}

static double silu(double a) { return a / (1.0 + exp(-a)); }

/* DeepSeek's act_quant round trip on 128 values: scale amax / 448, e4m3 of v / scale. */
static void act_quant_128(float *v) {
    float amax = 0.0f;
    for (int i = 0; i < 128; i++) amax = fmaxf(amax, fabsf(v[i]));
    if (amax == 0.0f) return;
    const float s = amax / 448.0f;
    for (int i = 0; i < 128; i++) v[i] = fw_fp8e4m3_to_f32(fw_f32_to_fp8e4m3(v[i] / s)) * s;
}

/* y = y0 + sum_j w * (a . W2_e^T) over local experts, a = silu(x[t] . W1_e^T) *
 * (x[t] . W3_e^T), every product rounded to bf16. dup: every token's k slots pick
 * one expert (not what a router does), so an expert gets k T rows where the
 * small-group kernel keeps T per pass. */
static void check_moe_routes(fw_wtype ty, int64_t T, int64_t k, int64_t E, int64_t e0, int64_t n_exp, int64_t N,
                             int64_t K, int64_t D, bool dup) {
    char shape[128];
    snprintf(shape, sizeof shape, "%s T%lld k%lld experts %lld..%lld of %lld, N%lld K%lld D%lld%s", tname(ty),
             (long long)T, (long long)k, (long long)e0, (long long)(e0 + n_exp - 1), (long long)E, (long long)N,
             (long long)K, (long long)D, dup ? " (one expert per token)" : ctx.opt.moe_gemv_cores ? " (CUDA cores)" :
             ctx.opt.moe_act_fp8 && ty == FW_WTYPE_FP8 ? " (FP8 activations)" : "");
    const int64_t P = T * k;
    int32_t *ids = malloc((size_t)P * sizeof(int32_t));
    float *rw = hnew(P), *x = hrand_bf16(T * K, 1.0f), *y0 = hrand_bf16(T * D, 1.0f);
    random_routes(ids, rw, T, k, E);
    for (int64_t p = 0; dup && p < P; p++) ids[p] = ids[p - p % k];
    stack w1 = stack_make(ty, n_exp, N, K), w3 = stack_make(ty, n_exp, N, K), w2 = stack_make(ty, n_exp, D, N);

    /* FP8 activations (ctx.opt.moe_act_fp8, on 9.0): the tiles' experts (more
     * than 8 rows, moe.cu's MOE_SMALL) see x, and the down projection its input,
     * quantized per 128 channels as fw_cuda_quant_act does; the others bf16. */
    const bool act8 = ty == FW_WTYPE_FP8 && ctx.opt.moe_act_fp8 && ctx.opt.mm_policy == FW_CUDA_MM_AUTO &&
                      !ctx.opt.moe_tiles_mma && ctx.cc_major == 9 && ctx.cc_minor == 0 && P > 8;
    int64_t *rows_of = calloc((size_t)n_exp, sizeof(int64_t));
    for (int64_t p = 0; p < P; p++)
        if (ids[p] >= e0 && ids[p] < e0 + n_exp) rows_of[ids[p] - e0]++;
    float *xq = malloc((size_t)(T * K) * sizeof(float));
    memcpy(xq, x, (size_t)(T * K) * sizeof(float));
    if (act8 && K % 128 == 0)
        for (int64_t i = 0; i < T * K; i += 128) act_quant_128(xq + i);
    float *ref = hnew(T * D), *a = hnew(N);
    for (int64_t t = 0; t < T; t++) {
        double acc[4096];
        for (int64_t d = 0; d < D; d++) acc[d] = y0[t * D + d];
        for (int64_t j = 0; j < k; j++) {
            int64_t e = ids[t * k + j] - e0;
            if (e < 0 || e >= n_exp) continue;
            const bool tiled = rows_of[e] > 8;
            const float *xr = (tiled ? xq : x) + t * K;
            for (int64_t n = 0; n < N; n++) {
                double gs = 0, us = 0;
                for (int64_t c = 0; c < K; c++) {
                    gs += (double)xr[c] * fw_weight_get(&w1.one[e], n, c);
                    us += (double)xr[c] * fw_weight_get(&w3.one[e], n, c);
                }
                const double gb = fw_bf16_to_f32(fw_f32_to_bf16((float)gs)), ub = fw_bf16_to_f32(fw_f32_to_bf16((float)us));
                a[n] = fw_bf16_to_f32(fw_f32_to_bf16((float)(silu(gb) * ub)));
            }
            if (act8 && tiled && N % 128 == 0)
                for (int64_t n = 0; n < N; n += 128) act_quant_128(a + n);
            for (int64_t d = 0; d < D; d++) {
                double s = 0;
                for (int64_t n = 0; n < N; n++) s += (double)a[n] * fw_weight_get(&w2.one[e], d, n);
                acc[d] += rw[t * k + j] * fw_bf16_to_f32(fw_f32_to_bf16((float)s));
            }
        }
        for (int64_t d = 0; d < D; d++) ref[t * D + d] = (float)acc[d];
    }

    dbuf dx = dbf16(x, T * K), dy = dbf16(y0, T * D), dw = df32(rw, P), dids = dnew((size_t)P * 4);
    CU(fw_cuda_upload(&ctx, dp(dids), ids, (size_t)P * 4));
    dbuf da = dnew((size_t)(P * N) * 2), db = dnew((size_t)(P * D) * 2), dplan = dnew(fw_cuda_moe_plan_bytes(P, n_exp));
    dbuf d1, s1 = {0}, d2, s2 = {0}, d3, s3 = {0};
    fw_weight w1d = stack_upload(&w1, n_exp, &d1, &s1), w2d = stack_upload(&w2, n_exp, &d2, &s2);
    fw_weight w3d = stack_upload(&w3, n_exp, &d3, &s3);
    fw_cuda_moe_plan pl;
    bool ok = op_ok(fw_cuda_moe_group(&ctx, &pl, dp(dplan), dp(dids), T, k, e0, n_exp), "moe_group") &&
              op_ok(fw_cuda_moe_swiglu(&ctx, dp(da), dp(dx), k, &w1d, &w3d, w1.stride, w1.sstride, &pl), "moe_swiglu") &&
              op_ok(fw_cuda_moe_matmul(&ctx, dp(db), dp(da), false, k, &w2d, w2.stride, w2.sstride, &pl), "moe_matmul") &&
              op_ok(fw_cuda_moe_combine(&ctx, dp(dy), dp(db), dp(dw), &pl, T, k, D), "moe_combine");
    if (ok) {
        /* The path the plan took: experts of few rows, 64-row tiles (and which tile
         * kernel the gate and down matmuls get), or both. */
        int32_t cnt[2];
        CU(fw_cuda_download(&ctx, cnt, pl.counts, sizeof cnt));
        char path[48];
        if (cnt[1] == 0) snprintf(path, sizeof path, "small");
        else snprintf(path, sizeof path, "%stiles %s/%s", cnt[0] ? "small+" : "", moe_tile_name(ty, K), moe_tile_name(ty, N));
        float *y = hnew(T * D);
        get_bf16(y, dy, T * D);
        /* FP8 activations: a bf16 step apart in the down input (the GPU's sums
         * differ in order) can round to the next e4m3 value. */
        /* INT4 on the wmma tiles (K or the group not whole 32s) and on the wgmma
         * tiles of groups under 128: q * scale rounded to bf16 in the tile, about
         * 2e-5 more. */
        const bool int4_wmma = ty == FW_WTYPE_INT4 && cnt[1] && (strstr(path, " wmma") || strstr(path, "/wmma") ||
                                                                  strstr(path, "scaled"));
        compare("moe", shape, path, y, ref, T * D, act8 ? 1e-4 : int4_wmma ? 5e-5 : NMSE_BF16);
        free(y);
    }
    dbuf *all[] = {&dx, &dy, &dw, &dids, &da, &db, &dplan, &d1, &d2, &d3};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) check_guards(*all[i], "moe", shape), dfree(all[i]);
    if (s1.base) dfree(&s1);
    if (s2.base) dfree(&s2);
    if (s3.base) dfree(&s3);
    stack_free(&w1);
    stack_free(&w2);
    stack_free(&w3);
    free(ids), free(rw), free(x), free(y0), free(ref), free(a), free(xq), free(rows_of);
}

static void check_moe(fw_wtype ty, int64_t T, int64_t k, int64_t E, int64_t e0, int64_t n_exp, int64_t N, int64_t K,
                      int64_t D) {
    check_moe_routes(ty, T, k, E, e0, n_exp, N, K, D, false);
}

/* Median of 10 timed fw_cuda_moe_matmul calls (after 2 for warm-up), in ms; < 0 on failure. */
static float moe_matmul_ms(fw_bf16 *y, const fw_bf16 *x, bool gather, int64_t k, const fw_weight *w, int64_t stride,
                           int64_t sstride, const fw_cuda_moe_plan *pl) {
    enum { WARM = 2, RUNS = 10 };
    float ms[RUNS];
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    int st = FW_CUDA_OK;
    for (int i = 0; i < WARM && st == FW_CUDA_OK; i++) st = fw_cuda_moe_matmul(&ctx, y, x, gather, k, w, stride, sstride, pl);
    for (int i = 0; i < RUNS && st == FW_CUDA_OK; i++) {
        cudaEventRecord(e0, ctx.stream);
        st = fw_cuda_moe_matmul(&ctx, y, x, gather, k, w, stride, sstride, pl);
        cudaEventRecord(e1, ctx.stream);
        if (st == FW_CUDA_OK) st = fw_cuda_sync(&ctx);
        if (st == FW_CUDA_OK && cudaEventElapsedTime(&ms[i], e0, e1) != cudaSuccess) st = FW_CUDA_ERR;
    }
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    if (st != FW_CUDA_OK || fw_cuda_sync(&ctx) != FW_CUDA_OK) return -1.0f;
    for (int i = 1; i < RUNS; i++) /* insertion sort */
        for (int j = i; j > 0 && ms[j] < ms[j - 1]; j--) {
            float t = ms[j];
            ms[j] = ms[j - 1], ms[j - 1] = t;
        }
    return 0.5f * (ms[RUNS / 2 - 1] + ms[RUNS / 2]);
}

/* Informational: DeepSeek-V3's routed experts at a 4096-token prefill (top-8 of
 * 256, all held: ~128 rows per expert), FP8, one launch each: the gathered gate
 * projection [2048, 7168] and the grouped down projection [7168, 2048] (the same
 * bytes seen as the other shape). 3.8 GB of weights, distinct per expert: a
 * 64 MiB random block (no NaN codes) uploaded once and copied over the rest on
 * the device, each copy rotated by its own offset. No reference: check_moe
 * covers correctness. */
static void time_moe_matmul(void) {
    const int64_t T = 4096, k = 8, E = 256, I = 2048, D = 7168, P = T * k, NB = I / 128, KB = D / 128;
    const size_t wbytes = (size_t)(E * I * D), piece = (size_t)64 << 20;
    uint8_t *dw = NULL;
    float *ds = NULL;
    fw_bf16 *dx = NULL, *dg = NULL, *dd = NULL;
    void *dplan = NULL;
    int32_t *dids = NULL;
    uint8_t *hw8 = malloc(piece);
    uint16_t *hx = malloc((size_t)(T * D) * 2);
    float *hs = malloc((size_t)(E * NB * KB) * sizeof(float)), *rw = malloc((size_t)P * sizeof(float));
    int32_t *ids = malloc((size_t)P * sizeof(int32_t));
    if (!hw8 || !hx || !hs || !rw || !ids) {
        printf("bench moe_matmul: skipped (host memory)\n");
        goto out;
    }
    for (size_t i = 0; i < piece; i += 4) {
        uint32_t r = check_rng_u32();
        memcpy(hw8 + i, &r, 4);
    }
    for (size_t i = 0; i < piece; i++)
        if ((hw8[i] & 0x7F) == 0x7F) hw8[i] ^= 1; /* e4m3 NaN -> 448 */
    for (int64_t i = 0; i < T * D; i++) hx[i] = fw_f32_to_bf16(check_rng_uniform());
    for (int64_t i = 0; i < E * NB * KB; i++) hs[i] = (1.5f + check_rng_uniform()) / 300.0f;
    random_routes(ids, rw, T, k, E);
    if (fw_cuda_malloc(&ctx, (void **)&dw, wbytes) || fw_cuda_malloc(&ctx, (void **)&ds, (size_t)(E * NB * KB) * 4) ||
        fw_cuda_malloc(&ctx, (void **)&dx, (size_t)(T * D) * 2) || fw_cuda_malloc(&ctx, (void **)&dg, (size_t)(P * I) * 2) ||
        fw_cuda_malloc(&ctx, (void **)&dd, (size_t)(P * D) * 2) || fw_cuda_malloc(&ctx, &dplan, fw_cuda_moe_plan_bytes(P, E)) ||
        fw_cuda_malloc(&ctx, (void **)&dids, (size_t)P * 4)) {
        printf("bench moe_matmul: skipped (device memory: %s)\n", ctx.err);
        goto out;
    }
    CU(fw_cuda_upload(&ctx, dw, hw8, piece));
    for (size_t off = piece; off < wbytes; off += piece) {
        const size_t len = wbytes - off < piece ? wbytes - off : piece, rot = (off / piece) * 65584 % piece;
        const size_t first = len < piece - rot ? len : piece - rot;
        if (cudaMemcpyAsync(dw + off, dw + rot, first, cudaMemcpyDeviceToDevice, ctx.stream) != cudaSuccess ||
            (len > first && cudaMemcpyAsync(dw + off + first, dw, len - first, cudaMemcpyDeviceToDevice, ctx.stream) != cudaSuccess)) {
            printf("bench moe_matmul: skipped (device copy failed)\n");
            goto out;
        }
    }
    CU(fw_cuda_upload(&ctx, ds, hs, (size_t)(E * NB * KB) * 4));
    CU(fw_cuda_upload(&ctx, dx, hx, (size_t)(T * D) * 2));
    CU(fw_cuda_upload(&ctx, dids, ids, (size_t)P * 4));
    fw_cuda_moe_plan pl;
    int32_t cnt[2] = {0, 0};
    CU(fw_cuda_moe_group(&ctx, &pl, dplan, dids, T, k, 0, E));
    CU(fw_cuda_download(&ctx, cnt, pl.counts, sizeof cnt));
    const fw_weight wg = {.type = FW_WTYPE_FP8, .rows = I, .cols = D, .ld = D, .data = dw, .scale = ds, .scale_ld = KB};
    const fw_weight wd = {.type = FW_WTYPE_FP8, .rows = D, .cols = I, .ld = I, .data = dw, .scale = ds, .scale_ld = NB};
    const double fl = 2.0 * (double)P * (double)I * (double)D;
    const float ms_g = moe_matmul_ms(dg, dx, true, k, &wg, I * D, NB * KB, &pl);
    const float ms_d = ms_g < 0 ? -1.0f : moe_matmul_ms(dd, dg, false, k, &wd, I * D, NB * KB, &pl);
    if (ms_g < 0 || ms_d < 0) {
        CHECK(0, "bench moe_matmul: %s", ctx.err);
        goto out;
    }
    printf("bench moe_matmul fp8 gate T%lld k%lld %lld experts N%lld K%lld gathered (%d tiles, %s): %.3f ms, %.0f TFLOP/s\n",
           (long long)T, (long long)k, (long long)E, (long long)I, (long long)D, cnt[1], moe_tile_name(FW_WTYPE_FP8, D), ms_g, fl / ms_g / 1e9);
    printf("bench moe_matmul fp8 down T%lld k%lld %lld experts N%lld K%lld grouped (%d tiles, %s): %.3f ms, %.0f TFLOP/s\n",
           (long long)T, (long long)k, (long long)E, (long long)D, (long long)I, cnt[1], moe_tile_name(FW_WTYPE_FP8, I), ms_d, fl / ms_d / 1e9);
    /* INT4 of group 128 over the first half of the same bytes, bf16 scales */
    {
        const int64_t G = 128, ns = E * I * D / G;
        int4_group = G; /* for moe_tile_name */
        uint16_t *hg = malloc((size_t)ns * 2);
        void *dg4 = NULL;
        if (!hg || fw_cuda_malloc(&ctx, &dg4, (size_t)ns * 2)) {
            free(hg);
            printf("bench moe_matmul int4: skipped (memory)\n");
            goto out;
        }
        for (int64_t i = 0; i < ns; i++) hg[i] = fw_f32_to_bf16((1.5f + check_rng_uniform()) / 8.0f);
        CU(fw_cuda_upload(&ctx, dg4, hg, (size_t)ns * 2));
        free(hg);
        const fw_weight ig = {.type = FW_WTYPE_INT4, .rows = I, .cols = D, .ld = D / 8, .data = dw, .gscale = dg4,
                              .scale_ld = D / G, .group = G};
        const fw_weight id = {.type = FW_WTYPE_INT4, .rows = D, .cols = I, .ld = I / 8, .data = dw, .gscale = dg4,
                              .scale_ld = I / G, .group = G};
        const float i_g = moe_matmul_ms(dg, dx, true, k, &ig, I * D / 8, I * D / G, &pl);
        const float i_d = i_g < 0 ? -1.0f : moe_matmul_ms(dd, dg, false, k, &id, I * D / 8, I * D / G, &pl);
        fw_cuda_free(dg4);
        if (i_g < 0 || i_d < 0) {
            CHECK(0, "bench moe_matmul int4: %s", ctx.err);
            goto out;
        }
        printf("bench moe_matmul int4 g128 gate (%s): %.3f ms, %.0f TFLOP/s (%.2fx fp8); down: %.3f ms, %.0f TFLOP/s (%.2fx fp8)\n",
               moe_tile_name(FW_WTYPE_INT4, D), i_g, fl / i_g / 1e9, i_g / ms_g, i_d, fl / i_d / 1e9, i_d / ms_d);
    }
out:
    fw_cuda_free(dw), fw_cuda_free(ds), fw_cuda_free(dx), fw_cuda_free(dg), fw_cuda_free(dd), fw_cuda_free(dplan);
    fw_cuda_free(dids);
    free(hw8), free(hx), free(hs), free(rw), free(ids);
}

static void check_mla(fw_wtype ty, int64_t T, int64_t H, int64_t dn, int64_t dv, int64_t R, int64_t C) {
    char shape[128];
    snprintf(shape, sizeof shape, "%s T%lld H%lld dn%lld dv%lld R%lld C%lld", tname(ty), (long long)T, (long long)H,
             (long long)dn, (long long)dv, (long long)R, (long long)C);
    const int64_t dqk = dn + R;
    hw kv_b = hw_make(ty, H * (dn + dv), C, C);
    fw_cuda_weight d;
    CU(fw_cuda_weight_upload(&ctx, &d, &kv_b.w, 0));
    float *q = hrand_bf16(T * H * dqk, 1.0f), *ol = hrand_bf16(T * H * C, 1.0f);
    float *qref = hnew(T * H * C), *oref = hnew(T * H * dv), *y = hnew(T * H * (C > dv ? C : dv));
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            for (int64_t c = 0; c < C; c++) {
                double s = 0;
                for (int64_t i = 0; i < dn; i++) s += (double)q[(t * H + h) * dqk + i] * fw_weight_get(&kv_b.w, h * (dn + dv) + i, c);
                qref[(t * H + h) * C + c] = (float)s;
            }
            for (int64_t j = 0; j < dv; j++) {
                double s = 0;
                for (int64_t c = 0; c < C; c++)
                    s += (double)ol[(t * H + h) * C + c] * fw_weight_get(&kv_b.w, h * (dn + dv) + dn + j, c);
                oref[(t * H + h) * dv + j] = (float)s;
            }
        }
    dbuf dq = dbf16(q, T * H * dqk), dol = dbf16(ol, T * H * C), dql = dnew((size_t)(T * H * C) * 2),
         dout = dnew((size_t)(T * H * dv) * 2);
    if (op_ok(fw_cuda_mla_q_absorb(&ctx, dp(dql), dp(dq), &d.w, T, H, dn, dv, R, C), "mla_q_absorb")) {
        get_bf16(y, dql, T * H * C);
        compare("mla_q_absorb", shape, "-", y, qref, T * H * C, NMSE_BF16);
    }
    if (op_ok(fw_cuda_mla_o_absorb(&ctx, dp(dout), dp(dol), &d.w, T, H, dn, dv, C), "mla_o_absorb")) {
        get_bf16(y, dout, T * H * dv);
        compare("mla_o_absorb", shape, "-", y, oref, T * H * dv, NMSE_BF16);
    }
    dbuf *all[] = {&dq, &dol, &dql, &dout};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) check_guards(*all[i], "mla", shape), dfree(all[i]);
    fw_cuda_weight_free(&d);
    hw_free(&kv_b);
    free(q), free(ol), free(qref), free(oref), free(y);
}

/* nseq logical caches of cap rows (width W) laid out in a pool of blocks of bs
 * rows, the blocks in shuffled order with a spare block between, as the
 * scheduler's pool leaves them. Host pool (bf16 values) and the tables. */
typedef struct paged {
    int64_t bs, max_blocks, n_blocks;
    int32_t *table; /* (nseq, max_blocks) */
    float *pool;    /* (n_blocks, bs, W) */
} paged;

static paged page_out(const float *cache, int64_t nseq, int64_t cap, int64_t W, int64_t bs) {
    paged pg = {.bs = bs, .max_blocks = (cap + bs - 1) / bs};
    pg.n_blocks = 2 * nseq * pg.max_blocks + 1;
    int32_t *perm = malloc((size_t)pg.n_blocks * 4);
    for (int64_t i = 0; i < pg.n_blocks; i++) perm[i] = (int32_t)i;
    for (int64_t i = pg.n_blocks - 1; i > 0; i--) {
        int64_t j = check_rng_u32() % (uint32_t)(i + 1);
        int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    pg.table = malloc((size_t)(nseq * pg.max_blocks) * 4);
    pg.pool = hrand_bf16(pg.n_blocks * bs * W, 1.0f); /* garbage where no sequence lives */
    for (int64_t s = 0; s < nseq; s++)
        for (int64_t b = 0; b < pg.max_blocks; b++) {
            int32_t id = perm[2 * (s * pg.max_blocks + b)]; /* every other block: gaps between */
            pg.table[s * pg.max_blocks + b] = id;
            for (int64_t r = 0; r < bs && b * bs + r < cap; r++)
                memcpy(pg.pool + (id * bs + r) * W, cache + (s * cap + b * bs + r) * W, (size_t)W * sizeof(float));
        }
    free(perm);
    return pg;
}

/* Flash-decoding MLA: nseq caches of rows (C + R) at stride W, paged in blocks
 * of bs positions, queries with their own sequence and length (or one causal
 * sequence), against softmax in double. */
static void check_mla_decode(int64_t T, int64_t nseq, int64_t cap, int64_t H, int64_t C, int64_t R, bool causal,
                             int64_t bs) {
    char shape[160];
    snprintf(shape, sizeof shape, "T%lld seqs %lld cap %lld H%lld C%lld R%lld block %lld%s", (long long)T,
             (long long)nseq, (long long)cap, (long long)H, (long long)C, (long long)R, (long long)bs,
             causal ? " causal" : "");
    const int64_t W = C + R + 8, stride = cap * W;
    float *cache = hrand_bf16(nseq * stride, 1.0f), *ql = hrand_bf16(T * H * C, 0.5f), *qp = hrand_bf16(T * H * R, 0.5f);
    int32_t *seq = malloc((size_t)T * 4), *len = malloc((size_t)T * 4);
    for (int64_t t = 0; t < T; t++) {
        seq[t] = causal ? 0 : (int32_t)(check_rng_u32() % (uint32_t)nseq);
        len[t] = causal ? (int32_t)(cap - T + t + 1) : (int32_t)(1 + check_rng_u32() % (uint32_t)cap);
    }
    const float scale = 1.0f / sqrtf((float)(C + R));
    float *ref = hnew(T * H * C), *y = hnew(T * H * C);
    double *sc = malloc((size_t)cap * sizeof(double));
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            const float *c = cache + seq[t] * stride;
            double mx = -INFINITY, sum = 0;
            for (int64_t s = 0; s < len[t]; s++) {
                double d = 0;
                for (int64_t i = 0; i < C; i++) d += (double)ql[(t * H + h) * C + i] * c[s * W + i];
                for (int64_t i = 0; i < R; i++) d += (double)qp[(t * H + h) * R + i] * c[s * W + C + i];
                sc[s] = d * scale;
                mx = fmax(mx, sc[s]);
            }
            for (int64_t s = 0; s < len[t]; s++) sum += (sc[s] = exp(sc[s] - mx));
            for (int64_t i = 0; i < C; i++) {
                double o = 0;
                for (int64_t s = 0; s < len[t]; s++) o += sc[s] * c[s * W + i];
                ref[(t * H + h) * C + i] = (float)(o / sum);
            }
        }
    paged pg = page_out(cache, nseq, cap, W, bs);
    dbuf dc = dbf16(pg.pool, pg.n_blocks * bs * W), dql = dbf16(ql, T * H * C), dqp = dbf16(qp, T * H * R);
    dbuf dtab = dnew((size_t)(nseq * pg.max_blocks) * 4);
    dbuf dseq = dnew((size_t)T * 4), dlen = dnew((size_t)T * 4), dout = dnew((size_t)(T * H * C) * 2);
    dbuf dwork = dnew(fw_cuda_mla_work_bytes(T, H, cap, C));
    CU(fw_cuda_upload(&ctx, dp(dseq), seq, (size_t)T * 4));
    CU(fw_cuda_upload(&ctx, dp(dlen), len, (size_t)T * 4));
    CU(fw_cuda_upload(&ctx, dp(dtab), pg.table, (size_t)(nseq * pg.max_blocks) * 4));
    fw_cuda_pages pages = {dp(dc), W, bs, bs * W, pg.max_blocks, dp(dtab)};
    /* The warpgroup-MMA kernel where it applies (9.0, C 512 or 256, R 64), the
     * mma.sync one where it applies, then the CUDA-core one; each path once. */
    const char *done[3] = {NULL, NULL, NULL};
    for (int mode = 0; mode < 3; mode++) {
        ctx.opt.mla_mma = mode == 1;
        ctx.opt.mla_cuda_cores = mode == 2;
        ctx.last_mla_path = NULL;
        if (!op_ok(fw_cuda_mla_decode(&ctx, dp(dout), dp(dql), dp(dqp), &pages, causal ? NULL : dp(dseq),
                                      causal ? NULL : dp(dlen), T, cap, H, C, R, scale, dp(dwork)),
                   "mla_decode"))
            break;
        done[mode] = ctx.last_mla_path;
        if ((mode > 0 && done[mode] == done[mode - 1]) || (mode > 1 && done[mode] == done[0])) continue;
        get_bf16(y, dout, T * H * C);
        char path[64];
        snprintf(path, sizeof path, "%s, %d splits", ctx.last_mla_path, ctx.last_mla_splits);
        compare("mla_decode", shape, path, y, ref, T * H * C, NMSE_BF16);
    }
    ctx.opt.mla_mma = false;
    ctx.opt.mla_cuda_cores = false;
    dbuf *all[] = {&dc, &dql, &dqp, &dtab, &dseq, &dlen, &dout, &dwork};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) check_guards(*all[i], "mla_decode", shape), dfree(all[i]);
    free(cache), free(ql), free(qp), free(seq), free(len), free(ref), free(y), free(sc), free(pg.table), free(pg.pool);
}

/* kv_append writes each new row where the table puts its position, and
 * kv_gather reads a sequence back in order: both exact (bf16 moves). */
static void check_kv_pages(int64_t nseq, int64_t cap, int64_t W, int64_t bs) {
    char shape[96];
    snprintf(shape, sizeof shape, "seqs %lld cap %lld W%lld block %lld", (long long)nseq, (long long)cap,
             (long long)W, (long long)bs);
    float *cache = hrand_bf16(nseq * cap * W, 1.0f);
    paged pg = page_out(cache, nseq, cap, W, bs);
    /* One new row per sequence at a random position, as a decode step appends. */
    int32_t *seq = malloc((size_t)nseq * 4), *len = malloc((size_t)nseq * 4);
    float *rows = hrand_bf16(nseq * W, 1.0f), *y = hnew(cap * W);
    for (int64_t s = 0; s < nseq; s++) {
        seq[s] = (int32_t)(nseq - 1 - s), len[s] = (int32_t)(1 + check_rng_u32() % (uint32_t)cap);
        memcpy(cache + (seq[s] * cap + len[s] - 1) * W, rows + s * W, (size_t)W * sizeof(float));
    }
    dbuf dc = dbf16(pg.pool, pg.n_blocks * bs * W), drows = dbf16(rows, nseq * W);
    dbuf dtab = dnew((size_t)(nseq * pg.max_blocks) * 4), dseq = dnew((size_t)nseq * 4), dlen = dnew((size_t)nseq * 4);
    dbuf dout = dnew((size_t)(cap * W) * 2);
    CU(fw_cuda_upload(&ctx, dp(dseq), seq, (size_t)nseq * 4));
    CU(fw_cuda_upload(&ctx, dp(dlen), len, (size_t)nseq * 4));
    CU(fw_cuda_upload(&ctx, dp(dtab), pg.table, (size_t)(nseq * pg.max_blocks) * 4));
    fw_cuda_pages pages = {dp(dc), W, bs, bs * W, pg.max_blocks, dp(dtab)};
    if (op_ok(fw_cuda_kv_append(&ctx, &pages, dp(drows), dp(dseq), dp(dlen), nseq), "kv_append"))
        for (int64_t s = 0; s < nseq; s++) {
            if (!op_ok(fw_cuda_kv_gather(&ctx, dp(dout), &pages, s, cap), "kv_gather")) break;
            get_bf16(y, dout, cap * W);
            compare("kv_append+gather", shape, "exact", y, cache + s * cap * W, cap * W, 0.0);
        }
    dbuf *all[] = {&dc, &drows, &dtab, &dseq, &dlen, &dout};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) check_guards(*all[i], "kv_pages", shape), dfree(all[i]);
    free(cache), free(seq), free(len), free(rows), free(y), free(pg.table), free(pg.pool);
}

/* Fused prefill attention against the CPU reference's naive attention. mla:
 * keys and values laid out as the GPU forward has them (k_nope and v interleaved
 * per head in the kv_b expansion, k_pe once per position in the latent rows at
 * offset 40 of 40 + d2 + 8), else plain (S, H, d1) keys and (S, H, dv) values. */
static void check_attn_flash(int64_t T, int64_t S, int64_t H, int64_t d1, int64_t d2, int64_t dv, bool mla,
                             float amp) {
    char shape[128];
    const int64_t dqk = d1 + d2, C = 40, W = C + d2 + 8;
    snprintf(shape, sizeof shape, "T%lld S%lld H%lld q.k %lld+%lld v%lld %s%s", (long long)T, (long long)S,
             (long long)H, (long long)d1, (long long)d2, (long long)dv, mla ? "mla layout" : "plain",
             amp > 1 ? ", peaked" : "");
    float *q = hrand_bf16(T * H * dqk, 0.5f * amp), *k = hnew(S * H * dqk), *v = hnew(S * H * dv);
    float *kvx = hrand_bf16(S * H * (d1 + dv), 0.5f), *lat = hrand_bf16(S * W, 0.5f);
    for (int64_t s = 0; s < S; s++) /* the keys and values the kernel should see, contiguous */
        for (int64_t h = 0; h < H; h++) {
            const float *e = kvx + (s * H + h) * (d1 + dv);
            for (int64_t d = 0; d < dqk; d++)
                k[(s * H + h) * dqk + d] = mla ? (d < d1 ? e[d] : lat[s * W + C + d - d1]) : e[d];
            for (int64_t d = 0; d < dv; d++) v[(s * H + h) * dv + d] = mla ? e[d1 + d] : kvx[(s * H + h) * dv + d];
        }
    float *ref = hnew(T * H * dv), *y = hnew(T * H * dv);
    const float scale = 1.0f / sqrtf((float)dqk);
    fw_ops_cpu_ref()->attn_naive(ref, q, k, v, T, S, H, dqk, dv, scale);
    dbuf dq = dbf16(q, T * H * dqk), dout = dnew((size_t)(T * H * dv) * 2);
    dbuf dkvx = mla ? dbf16(kvx, S * H * (d1 + dv)) : dbf16(k, S * H * dqk), dlat = mla ? dbf16(lat, S * W) : dbf16(v, S * H * dv);
    const fw_bf16 *px = dp(dkvx), *pl = dp(dlat);
    fw_cuda_attn_kv kv = mla ? (fw_cuda_attn_kv){px, pl + C, px + d1, d1, d2, dv, H * (d1 + dv), d1 + dv, W, 0,
                                                 H * (d1 + dv), d1 + dv}
                             : (fw_cuda_attn_kv){px, px + d1, pl, d1, d2, dv, H * dqk, dqk, H * dqk, dqk, H * dv, dv};
    ctx.last_flash_path = NULL;
    if (op_ok(fw_cuda_attn_flash(&ctx, dp(dout), dp(dq), &kv, T, S, H, scale), "attn_flash")) {
        char path[64];
        snprintf(path, sizeof path, "%s, %s", ctx.last_flash_path ? ctx.last_flash_path : "?",
                 d1 % 8 || d2 % 8 || dv % 8 ? "scalar loads" : "cp.async");
        get_bf16(y, dout, T * H * dv);
        compare("attn_flash", shape, path, y, ref, T * H * dv, NMSE_BF16);
    }
    dbuf *all[] = {&dq, &dkvx, &dlat, &dout};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) check_guards(*all[i], "attn_flash", shape), dfree(all[i]);
    free(q), free(k), free(v), free(kvx), free(lat), free(ref), free(y);
}

/* Informational: the fused attention at DeepSeek-V3's prefill shape (T = S,
 * 128 heads, q.k 128 + 64, v 128), TFLOP/s of the causal half. */
static void time_attn_flash(int64_t T, int64_t H, bool mma) {
    const int64_t d1 = 128, d2 = 64, dv = 128, W = 576, S = T;
    float *q = hrand_bf16(T * H * (d1 + d2), 1.0f), *kvx = hrand_bf16(S * H * (d1 + dv), 1.0f), *lat = hrand_bf16(S * W, 1.0f);
    dbuf dq = dbf16(q, T * H * (d1 + d2)), dkvx = dbf16(kvx, S * H * (d1 + dv)), dlat = dbf16(lat, S * W);
    dbuf dout = dnew((size_t)(T * H * dv) * 2);
    free(q), free(kvx), free(lat);
    const fw_bf16 *px = dp(dkvx), *pl = dp(dlat);
    fw_cuda_attn_kv kv = {px, pl + 512, px + d1, d1, d2, dv, H * (d1 + dv), d1 + dv, W, 0, H * (d1 + dv), d1 + dv};
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    float best = 1e30f;
    ctx.opt.flash_mma = mma;
    for (int it = 0; it < 6; it++) {
        cudaEventRecord(e0, ctx.stream);
        int st = fw_cuda_attn_flash(&ctx, dp(dout), dp(dq), &kv, T, S, H, 0.07f);
        cudaEventRecord(e1, ctx.stream);
        float ms = 0;
        if (st != FW_CUDA_OK || fw_cuda_sync(&ctx) != FW_CUDA_OK || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) {
            printf("bench attn_flash: failed: %s\n", ctx.err);
            break;
        }
        if (it > 0 && ms < best) best = ms;
    }
    const double fl = 2.0 * (double)H * (double)T * (double)(T + 1) / 2 * (double)(d1 + d2 + dv);
    if (best < 1e30f)
        printf("bench attn_flash T%lld H%lld causal, %s: %.3f ms, %.0f TFLOP/s\n", (long long)T, (long long)H,
               ctx.last_flash_path, best, fl / best / 1e9);
    ctx.opt.flash_mma = false;
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    dfree(&dq), dfree(&dkvx), dfree(&dlat), dfree(&dout);
}

/* Informational: decode attention at DeepSeek-V3's widths (C 512, R 64), T
 * queries of S cached positions each (their own sequences, blocks of bs),
 * TFLOP/s of its products and GB/s of the cache it reads, for each path. */
static void time_mla_decode(int64_t T, int64_t S, int64_t H, int64_t bs) {
    const int64_t C = 512, R = 64, W = C + R, nb = T * (S / bs);
    /* One random 64-block segment, copied over the pool: each query still reads its own pages. */
    const int64_t seg = 4096 * W;
    float *hs = hrand_bf16(seg, 1.0f), *ql = hrand_bf16(T * H * C, 0.5f), *qp = hrand_bf16(T * H * R, 0.5f);
    dbuf dc = dnew((size_t)(nb * bs * W) * 2), dseg = dbf16(hs, seg);
    for (int64_t off = 0; off < nb * bs * W; off += seg)
        cudaMemcpy((char *)dp(dc) + off * 2, dp(dseg), (size_t)(off + seg <= nb * bs * W ? seg : nb * bs * W - off) * 2,
                   cudaMemcpyDeviceToDevice);
    int32_t *tab = malloc((size_t)nb * 4), *seq = malloc((size_t)T * 4), *len = malloc((size_t)T * 4);
    for (int64_t i = 0; i < nb; i++) tab[i] = (int32_t)((i * 7919) % nb); /* scattered blocks */
    for (int64_t t = 0; t < T; t++) seq[t] = (int32_t)t, len[t] = (int32_t)S;
    dbuf dql = dbf16(ql, T * H * C), dqp = dbf16(qp, T * H * R), dtab = dnew((size_t)nb * 4);
    dbuf dseq = dnew((size_t)T * 4), dlen = dnew((size_t)T * 4), dout = dnew((size_t)(T * H * C) * 2);
    dbuf dwork = dnew(fw_cuda_mla_work_bytes(T, H, S, C));
    CU(fw_cuda_upload(&ctx, dp(dtab), tab, (size_t)nb * 4));
    CU(fw_cuda_upload(&ctx, dp(dseq), seq, (size_t)T * 4));
    CU(fw_cuda_upload(&ctx, dp(dlen), len, (size_t)T * 4));
    fw_cuda_pages pages = {dp(dc), W, bs, bs * W, S / bs, dp(dtab)};
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    for (int mode = 0; mode < 2; mode++) {
        ctx.opt.mla_mma = mode == 1;
        float best = 1e30f;
        for (int it = 0; it < 6; it++) {
            cudaEventRecord(e0, ctx.stream);
            int st = fw_cuda_mla_decode(&ctx, dp(dout), dp(dql), dp(dqp), &pages, dp(dseq), dp(dlen), T, S, H, C, R,
                                        0.07f, dp(dwork));
            cudaEventRecord(e1, ctx.stream);
            float ms = 0;
            if (st != FW_CUDA_OK || fw_cuda_sync(&ctx) != FW_CUDA_OK || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) {
                printf("bench mla_decode: failed: %s\n", ctx.err);
                break;
            }
            if (it > 0 && ms < best) best = ms;
        }
        const double fl = 2.0 * (double)T * (double)H * (double)S * (double)(C + R + C), by = (double)T * S * W * 2;
        if (best < 1e30f)
            printf("bench mla_decode T%lld S%lld H%lld block %lld, %s, %d splits: %.3f ms, %.0f TFLOP/s, %.0f GB/s\n",
                   (long long)T, (long long)S, (long long)H, (long long)bs, ctx.last_mla_path, ctx.last_mla_splits, best, fl / best / 1e9,
                   by / best / 1e6);
    }
    ctx.opt.mla_mma = false;
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    dfree(&dc), dfree(&dseg), dfree(&dql), dfree(&dqp), dfree(&dtab), dfree(&dseq), dfree(&dlen), dfree(&dout);
    dfree(&dwork);
    free(hs), free(ql), free(qp), free(tab), free(seq), free(len);
}

static void check_rmsnorm_ld(void) {
    const int64_t T = 5, D = 70, ld = 90;
    float *x = hrand_bf16(T * ld, 2.0f), *w = hrand_bf16(D, 1.0f), *ref = hnew(T * ld), *y = hnew(T * ld);
    memcpy(ref, x, (size_t)(T * ld) * sizeof(float));
    for (int64_t t = 0; t < T; t++) {
        double ss = 0;
        for (int64_t d = 0; d < D; d++) ss += (double)x[t * ld + d] * x[t * ld + d];
        double r = 1.0 / sqrt(ss / D + 1e-6);
        for (int64_t d = 0; d < D; d++) ref[t * ld + d] = (float)(x[t * ld + d] * r * w[d]);
    }
    dbuf dx = dbf16(x, T * ld), dw = df32(w, D);
    if (op_ok(fw_cuda_rmsnorm_ld(&ctx, dp(dx), ld, dp(dx), ld, dp(dw), T, D, 1e-6f), "rmsnorm_ld")) {
        get_bf16(y, dx, T * ld);
        compare("rmsnorm_ld", "T5 D70 ld90 in place (the rest of each row kept)", "-", y, ref, T * ld, NMSE_BF16);
    }
    check_guards(dx, "rmsnorm_ld", "");
    dfree(&dx), dfree(&dw);
    free(x), free(w), free(ref), free(y);
}

int test_model_ops(void) {
    const int64_t Ts[] = {1, 5, 40, 300};
    for (int ty = FW_WTYPE_BF16; ty <= FW_WTYPE_FP8; ty++)
        for (int i = 0; i < 4; i++) {
            check_moe((fw_wtype)ty, Ts[i], 4, 16, 0, 16, 200, 136, 96);
            check_moe((fw_wtype)ty, Ts[i], 4, 16, 4, 8, 256, 128, 72);
        }
    check_moe(FW_WTYPE_FP8, 64, 8, 256, 64, 64, 256, 384, 256); /* DeepSeek-V3's top-8 of 256, a quarter held */
    /* The mma tiles: ~75 rows per expert (a full and a partial tile), N and D not
     * multiples of 128, K not of 64 (FP8: the last scale block is 80 or 112 wide),
     * a local range starting at 5; 256 rows per expert (four tiles; FP8's down K
     * of 200 takes the wmma kernel); gate outputs not in 16-byte pieces (element
     * stores); DeepSeek-like top-8 of 64 experts, 32 rows each. */
    for (int ty = FW_WTYPE_BF16; ty <= FW_WTYPE_FP8; ty++) {
        check_moe((fw_wtype)ty, 300, 4, 16, 0, 16, 240, 208, 136);
        check_moe((fw_wtype)ty, 300, 4, 16, 5, 8, 240, 208, 136);
        check_moe((fw_wtype)ty, 512, 4, 8, 0, 8, 200, 208, 72);
        check_moe((fw_wtype)ty, 300, 4, 16, 0, 16, 204, 208, 136);
        check_moe((fw_wtype)ty, 256, 8, 64, 0, 64, 256, 512, 384);
    }
    /* FP8 tiles on the warpgroup MMA (K in whole scale blocks; 9.0 only) and by
     * mma.sync on the same shapes: N and D not multiples of 128 (a partial CTA of
     * outputs), partial tiles of rows, a local range, gathered and grouped rows. */
    for (int mode = 0; mode < 3; mode++) { /* wgmma, mma.sync, wgmma with FP8 activations */
        ctx.opt.moe_tiles_mma = mode == 1;
        ctx.opt.moe_act_fp8 = mode == 2;
        check_moe(FW_WTYPE_FP8, 300, 4, 16, 0, 16, 200, 256, 136);
        check_moe(FW_WTYPE_FP8, 300, 4, 16, 5, 8, 256, 384, 200);
        check_moe(FW_WTYPE_FP8, 700, 4, 16, 0, 16, 384, 128, 256);
    }
    ctx.opt.moe_tiles_mma = false, ctx.opt.moe_act_fp8 = true; /* the defaults */
    /* INT4 (groups of 32, 64 and 128; 8 and 16 where K is not whole 32-groups, which
     * take the single-value GEMV and the wmma tiles): small groups at T 1, 5, 40;
     * tiles (on 9.0 the warpgroup MMA where K is whole 128s, then mma.sync on the
     * same shapes) with partial CTAs of outputs, a local range, a K of 224 (a half
     * stage at the end), DeepSeek-like top-8 of 256 with a quarter held. */
    const int64_t g4[] = {32, 64, 128};
    for (int mode = 0; mode < 2; mode++) {
        ctx.opt.moe_tiles_mma = mode == 1;
        for (int gi = 0; gi < 3; gi++) {
            int4_group = g4[gi];
            for (int i = 0; i < 3 && mode == 0; i++) check_moe(FW_WTYPE_INT4, Ts[i], 4, 16, 4, 8, 256, 128, 256);
            check_moe(FW_WTYPE_INT4, 300, 4, 16, 0, 16, 256, 384, 128);
            check_moe(FW_WTYPE_INT4, 700, 4, 16, 5, 8, 384, 128, 256);
            check_moe(FW_WTYPE_INT4, 300, 4, 16, 0, 16, 200, 384, 136);
            check_moe(FW_WTYPE_INT4, 64, 8, 256, 64, 64, 256, 384, 256);
        }
    }
    ctx.opt.moe_tiles_mma = false;
    int4_group = 32;
    check_moe(FW_WTYPE_INT4, 512, 4, 8, 0, 8, 224, 256, 96);
    int4_group = 8;
    check_moe(FW_WTYPE_INT4, 40, 4, 16, 0, 16, 200, 136, 96);
    check_moe(FW_WTYPE_INT4, 300, 4, 16, 0, 16, 240, 208, 136);
    int4_group = 16;
    check_moe(FW_WTYPE_INT4, 300, 4, 16, 0, 16, 240, 208, 136);
    if (!getenv("FW_TEST_NO_TIMING")) {
        time_moe_matmul();
        ctx.opt.moe_act_fp8 = false; /* with bf16 activations, and by mma.sync, for comparison */
        time_moe_matmul();
        ctx.opt.moe_tiles_mma = true;
        time_moe_matmul();
        ctx.opt.moe_tiles_mma = false, ctx.opt.moe_act_fp8 = true;
    }
    for (int ty = FW_WTYPE_F32; ty <= FW_WTYPE_FP8; ty++) {
        check_mla((fw_wtype)ty, 1, 4, 32, 32, 16, 64);
        check_mla((fw_wtype)ty, 9, 3, 40, 24, 8, 72);
        check_mla((fw_wtype)ty, 20, 2, 128, 128, 64, 512);
        check_mla((fw_wtype)ty, 8, 3, 128, 128, 64, 512);  /* a full 8-token group */
        check_mla((fw_wtype)ty, 70, 2, 128, 128, 64, 512); /* three 32-token groups, the last ragged */
        check_mla((fw_wtype)ty, 33, 2, 48, 40, 8, 192);    /* dv 40: a partial m-tile; FP8 heads straddle a scale block */
        check_mla((fw_wtype)ty, 5, 2, 16, 20, 0, 1024);    /* o: two chunks of windows; R = 0 */
        check_mla((fw_wtype)ty, 3, 1, 144, 16, 4, 128);    /* q: dn > 128, two chunks of k-steps */
    }
    check_mla_decode(1, 1, 1, 4, 64, 16, true, 1);        /* one key */
    check_mla_decode(1, 1, 1000, 16, 64, 16, true, 1000); /* a long decode step: many splits, one block */
    check_mla_decode(1, 1, 1000, 16, 64, 16, true, 16);   /* the same over 63 blocks of 16 */
    check_mla_decode(7, 1, 300, 5, 32, 8, true, 7);       /* causal prefill, blocks cutting tiles, H % 8 != 0 */
    check_mla_decode(9, 3, 200, 8, 512, 64, false, 64);   /* batched decode, DeepSeek-V3 widths, own lengths */
    check_mla_decode(3, 2, 700, 40, 512, 64, false, 16);  /* H % 16 != 0, tiles cutting blocks of 16 */
    check_mla_decode(2, 1, 2000, 128, 512, 64, true, 64); /* DeepSeek-V3's 128 heads, a long cache */
    check_mla_decode(6, 3, 900, 64, 512, 64, false, 16);  /* one 64-head block a query, many key tiles */
    check_mla_decode(40, 5, 150, 70, 256, 64, false, 16); /* C 256; a second head block of 6 */
    check_mla_decode(1, 1, 33, 32, 512, 64, true, 16);    /* 32 heads (tp 4), one partial tile */
    check_mla_decode(4, 2, 500, 128, 512, 64, false, 128); /* blocks of 128: two tiles a block */
    check_mla_decode(3, 2, 100, 64, 512, 64, false, 8);    /* blocks of 8: no copies by the tensor memory accelerator */
    check_mla_decode(4, 2, 100, 4, 64, 16, false, 7);     /* the golden tiny model's widths */
    check_mla_decode(64, 4, 50, 3, 64, 16, false, 16);
    check_mla_decode(5, 2, 90, 3, 36, 6, false, 16);      /* C + R = 42: rows not in 16-byte pieces */
    check_mla_decode(3, 1, 60, 2, 30, 6, false, 16);      /* C % 4 != 0: the merge's scalar loads */
    check_kv_pages(5, 100, 576, 16);
    check_kv_pages(3, 40, 72, 7);
    check_moe(FW_WTYPE_BF16, 5, 4, 16, 0, 16, 64, 130, 40); /* K % 8 != 0: the scalar small-group path */
    check_moe(FW_WTYPE_FP8, 5, 4, 16, 0, 16, 64, 130, 40);
    /* FP8 experts of 2..8 rows on the tensor cores (K % 64 == 0; else, and with
     * moe_gemv_cores, the CUDA cores): outputs not in whole 16-row warps (N 200,
     * D 88), a down K of 200 (CUDA cores), 1..8 rows per expert, a local range. */
    for (int cores = 0; cores < 2; cores++) {
        ctx.opt.moe_gemv_cores = cores;
        check_moe(FW_WTYPE_FP8, 5, 4, 16, 0, 16, 192, 128, 64);
        check_moe(FW_WTYPE_FP8, 7, 4, 16, 0, 16, 200, 256, 88);
        check_moe(FW_WTYPE_FP8, 6, 4, 16, 0, 16, 256, 128, 88);
        check_moe(FW_WTYPE_FP8, 8, 8, 64, 16, 32, 256, 384, 256);
    }
    ctx.opt.moe_gemv_cores = false;
    /* Batch 1 with an odd output count (down: D 73), wide and 8-element loads. */
    for (int ty = FW_WTYPE_BF16; ty <= FW_WTYPE_FP8; ty++) {
        check_moe((fw_wtype)ty, 1, 4, 16, 0, 16, 256, 128, 73);
        check_moe((fw_wtype)ty, 1, 4, 16, 0, 16, 200, 128, 73);
    }
    /* More rows per expert than the small-group kernel's pass (T): T 1 gives 4
     * rows in passes of 1, T 2 gives 8 in passes of 2. */
    for (int ty = FW_WTYPE_BF16; ty <= FW_WTYPE_FP8; ty++) {
        check_moe_routes((fw_wtype)ty, 1, 4, 16, 0, 16, 200, 136, 96, true);
        check_moe_routes((fw_wtype)ty, 2, 4, 16, 0, 16, 200, 136, 96, true);
    }
    /* amp: query scale; 1 gives near-uniform softmax, 12 peaked rows whose maximum
     * moves between key tiles. Each on the warpgroup-MMA kernel (9.0: the default
     * where it has an instance) and on mma.sync. */
    const float amps[] = {1.0f, 12.0f};
    for (int mma = 0; mma < 2; mma++) {
        ctx.opt.flash_mma = mma;
        for (int i = 0; i < 2; i++) {
            const float a = amps[i];
            check_attn_flash(1, 1, 2, 16, 8, 16, false, a);
            check_attn_flash(37, 50, 3, 16, 8, 16, false, a);     /* queries are the last 37 of 50 positions */
            check_attn_flash(37, 50, 3, 20, 4, 12, true, a);      /* widths not in 16-byte pieces: plain loads */
            check_attn_flash(200, 200, 4, 128, 64, 128, true, a); /* DeepSeek-V3 head widths, partial tiles */
            check_attn_flash(130, 300, 2, 128, 64, 128, true, a); /* a chunk after 170 cached positions */
            check_attn_flash(192, 192, 2, 128, 64, 128, true, a); /* a query block's second half past T */
            check_attn_flash(256, 700, 2, 128, 64, 128, true, a); /* 11 key tiles: the load ring wraps */
            check_attn_flash(64, 64, 3, 32, 16, 32, true, a);     /* the golden tiny model's widths, one tile */
            check_attn_flash(90, 90, 4, 32, 16, 32, true, a);     /* the same over two query blocks and key tiles */
            check_attn_flash(150, 150, 2, 96, 32, 128, false, a); /* q.k 128 */
            check_attn_flash(70, 70, 2, 48, 16, 96, false, a);    /* q.k 64 with v 96: the 128 instance */
            check_attn_flash(100, 100, 2, 200, 48, 96, false, a); /* the widest q.k instance (mma.sync) */
        }
    }
    ctx.opt.flash_mma = false;
    if (!getenv("FW_TEST_NO_TIMING")) {
        time_attn_flash(4096, 128, false);
        time_attn_flash(4096, 128, true);
        time_mla_decode(1, 1024, 128, 16);
        time_mla_decode(8, 4096, 128, 16);
        time_mla_decode(64, 4096, 128, 16);
        time_mla_decode(256, 4096, 128, 16);
        time_mla_decode(256, 4096, 128, 64);
        time_mla_decode(64, 4096, 32, 16);
    }
    check_rmsnorm_ld();
    return check_failures_;
}
