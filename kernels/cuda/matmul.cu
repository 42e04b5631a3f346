/* y (T, N) = x (T, K) . W^T: picks the path and runs the cuBLASLt ones.
 *
 * Paths (ctx->last_mm_path says which ran):
 * - BF16 weights of at most FW_BF16_GEMV_BYTES with fp32 output, at most
 *   ctx->opt.fp8_gemv_rows rows (decode: DeepSeek-V3's router): the own GEMV.
 *   cuBLASLt's plan for the router's 256 x 7168 at one token is a split-K GEMM
 *   plus a reduction kernel, 9 us for 3.7 MB under ncu (the GEMV: 4.7). Not for
 *   bf16 outputs: a decode alone would then round its projections in another
 *   order than the same decode in a step with prefill rows (cuBLASLt), so a
 *   batched request would differ from the same request alone more often.
 * - Other BF16 weights: cuBLASLt, bf16 in, fp32 compute, bf16 (or fp32) out, any
 *   shape cuBLASLt's heuristic accepts (the output head at decode streams near
 *   the copy bandwidth).
 * - FP8 weights, at most ctx->opt.fp8_gemv_rows rows (decode): the own GEMV.
 * - FP8 weights, bf16 output: cuBLASLt block-scaled FP8 as measured in
 *   shared/reference/deepseek-v3.md: the activations are quantized per token per
 *   128 channels (fp8_quant.cu), M padded to a multiple of 4 (the output then goes
 *   through the scratch), W scales in cuBLASLt's layout (used in place for a whole
 *   uploaded weight, else repacked into the scratch). Needs sm_90+, N % 8 == 0,
 *   K % 16 == 0, W.ld % 16 == 0, a 16-byte aligned W, and a view origin on the
 *   128 grid (r0 % 128 == c0 % 128 == 0). The tiny test models' 48/96/144 pass
 *   these checks; if cuBLASLt still refuses them, the own kernels run.
 * - INT4 weights: at most FW_INT4_GEMV_ROWS rows (decode) the own GEMV (packed
 *   words widened in registers, q * scale exact in fp32); more rows: the weight
 *   dequantized to bf16 into the scratch, then cuBLASLt bf16 as above.
 * - Everything else (F32 weights, FP8 with fp32 output, shapes or views cuBLASLt
 *   refuses, ctx->opt.mm_policy == FW_CUDA_MM_OWN): the own kernels (matmul_own.cu),
 *   which widen weights in registers and keep the activations in bf16.
 * A refusal by cuBLASLt (no heuristic result, CUBLAS_STATUS_NOT_SUPPORTED) falls
 * back to the own kernels and is remembered per shape; other failures are errors.
 *
 * cuBLASLt is column-major: with A = W seen as (K x N, ld W.ld) transposed, B = x
 * seen as (K x M, ld K) and D = y seen as (N x M, ld N), D = A^T B is y = x W^T. */
#include "kernels/cuda/cuda_common.h"

#include <stdlib.h>
#include <string.h>

#define FW_PLANS 64
#define FW_BF16_GEMV_BYTES ((int64_t)64 << 20)

/* One cached cuBLASLt configuration: descriptors, layouts and the chosen algorithm
 * for one (weight type, output type, shape, ld, alignments). */
typedef struct fw_plan {
    bool used, ok; /* ok == false: cuBLASLt refused this key */
    int wtype, out_f32;
    int64_t M, N, K, lda;
    unsigned align_a, align_b, align_d;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
} fw_plan;

struct fw_cuda_plans {
    fw_plan p[FW_PLANS];
    int next; /* round-robin eviction */
};

static void plan_release(fw_plan *p) {
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->ld) cublasLtMatrixLayoutDestroy(p->ld);
    memset(p, 0, sizeof *p);
}

static void plans_free(fw_cuda_plans *pl) {
    if (!pl) return;
    for (int i = 0; i < FW_PLANS; i++) plan_release(&pl->p[i]);
    free(pl);
}

/* Builds the descriptors and asks the heuristic; p->ok = false on a refusal. */
static int plan_build(fw_cuda_ctx *ctx, fw_plan *p) {
    bool fp8 = p->wtype == FW_WTYPE_FP8;
    cudaDataType_t ab = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF, dt = p->out_f32 ? CUDA_R_32F : CUDA_R_16BF;
    FW_CUDA_CHECK(ctx, cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    FW_CUDA_CHECK(ctx, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    FW_CUDA_CHECK(ctx, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (fp8) {
        int32_t am = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F, bm = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
        FW_CUDA_CHECK(ctx, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &am, sizeof am));
        FW_CUDA_CHECK(ctx, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &bm, sizeof bm));
        /* Placeholders (each call sets the real ones) so the heuristic sees the
         * scaled GEMM it will run. */
        const void *sp = ctx->lt_ws;
        FW_CUDA_CHECK(ctx, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sp, sizeof sp));
        FW_CUDA_CHECK(ctx, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sp, sizeof sp));
    }
    FW_CUDA_CHECK(ctx, cublasLtMatrixLayoutCreate(&p->la, ab, (uint64_t)p->K, (uint64_t)p->N, p->lda));
    FW_CUDA_CHECK(ctx, cublasLtMatrixLayoutCreate(&p->lb, ab, (uint64_t)p->K, (uint64_t)p->M, p->K));
    FW_CUDA_CHECK(ctx, cublasLtMatrixLayoutCreate(&p->ld, dt, (uint64_t)p->N, (uint64_t)p->M, p->N));

    cublasLtMatmulPreference_t pref;
    FW_CUDA_CHECK(ctx, cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = ctx->lt_ws_bytes;
    uint32_t aa = p->align_a, abl = p->align_b, ad = p->align_d;
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    /* The real alignments: the default (256) would let it pick kernels that fault on
     * views and odd strides. */
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &abl, sizeof abl);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ad, sizeof ad);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ad, sizeof ad);
    if (st != CUBLAS_STATUS_SUCCESS) {
        cublasLtMatmulPreferenceDestroy(pref);
        FW_CUDA_CHECK(ctx, st);
    }
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    memset(&res, 0, sizeof res);
    st = cublasLtMatmulAlgoGetHeuristic(ctx->lt, p->desc, p->la, p->lb, p->ld, p->ld, pref, 1, &res, &nres);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED || (st == CUBLAS_STATUS_SUCCESS && (nres < 1 || res.state != CUBLAS_STATUS_SUCCESS))) {
        p->ok = false;
        return FW_CUDA_OK;
    }
    FW_CUDA_CHECK(ctx, st);
    p->algo = res.algo;
    p->ok = true;
    return FW_CUDA_OK;
}

/* The cached plan for this key (built on first use). */
static int plan_get(fw_cuda_ctx *ctx, const fw_plan *key, fw_plan **out) {
    if (!ctx->plans) {
        ctx->plans = (fw_cuda_plans *)calloc(1, sizeof *ctx->plans);
        if (!ctx->plans) return fw_cuda_errf(ctx, "fw_cuda_matmul: out of host memory for the plan cache");
        ctx->plans_free = plans_free;
    }
    fw_cuda_plans *pl = ctx->plans;
    for (int i = 0; i < FW_PLANS; i++) {
        fw_plan *p = &pl->p[i];
        if (p->used && p->wtype == key->wtype && p->out_f32 == key->out_f32 && p->M == key->M && p->N == key->N &&
            p->K == key->K && p->lda == key->lda && p->align_a == key->align_a && p->align_b == key->align_b &&
            p->align_d == key->align_d) {
            *out = p;
            return FW_CUDA_OK;
        }
    }
    fw_plan *p = &pl->p[pl->next];
    pl->next = (pl->next + 1) % FW_PLANS;
    plan_release(p);
    *p = *key;
    p->desc = NULL;
    p->la = p->lb = p->ld = NULL;
    p->used = true;
    if (plan_build(ctx, p)) {
        plan_release(p);
        return FW_CUDA_ERR;
    }
    *out = p;
    return FW_CUDA_OK;
}

/* Runs a plan; *refused = true when cuBLASLt turns it down at run time. */
static int plan_run(fw_cuda_ctx *ctx, fw_plan *p, const void *a, const void *b, void *d, bool *refused) {
    const float alpha = 1.0f, beta = 0.0f;
    cublasStatus_t st = cublasLtMatmul(ctx->lt, p->desc, &alpha, a, p->la, b, p->lb, &beta, d, p->ld, d, p->ld, &p->algo,
                                       ctx->lt_ws, ctx->lt_ws_bytes, ctx->stream);
    *refused = false;
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) {
        p->ok = false;
        *refused = true;
        return FW_CUDA_OK;
    }
    FW_CUDA_CHECK(ctx, st);
    return FW_CUDA_OK;
}

/* The alignment cuBLASLt may assume for a matrix: that of its pointer and of its
 * leading dimension in bytes, whichever is smaller. */
static unsigned align_ld(unsigned a, int64_t ld_bytes) {
    while (a > 1 && ld_bytes % a) a >>= 1;
    return a;
}

static unsigned fw_align(const void *p, int64_t ld_bytes) { return align_ld(fw_ptr_align(p), ld_bytes); }

/* cuBLASLt with bf16 weights. *done = false: refused, use the own kernels. */
static int mm_lt_bf16(fw_cuda_ctx *ctx, void *y, bool y_f32, const bf16 *x, const fw_weight *w, int64_t T, bool *done) {
    *done = false;
    fw_plan key;
    memset(&key, 0, sizeof key);
    key.wtype = FW_WTYPE_BF16;
    key.out_f32 = y_f32;
    key.M = T;
    key.N = w->rows;
    key.K = w->cols;
    key.lda = w->ld;
    key.align_a = fw_align(w->data, w->ld * 2);
    key.align_b = fw_align(x, w->cols * 2);
    key.align_d = fw_align(y, w->rows * (y_f32 ? 4 : 2));
    fw_plan *p;
    if (plan_get(ctx, &key, &p)) return FW_CUDA_ERR;
    if (!p->ok) return FW_CUDA_OK;
    bool refused;
    if (plan_run(ctx, p, w->data, x, y, &refused)) return FW_CUDA_ERR;
    *done = !refused;
    return FW_CUDA_OK;
}

/* INT4 weights: up to this many rows the own GEMV reads the packed words once;
 * more go to cuBLASLt as bf16, dequantized into the scratch for the call (a dense
 * weight's bf16 copy costs 4x its packed bytes to write, less than the GEMM's
 * time from here on). */
#define FW_INT4_GEMV_ROWS 8
static int mm_lt_int4(fw_cuda_ctx *ctx, void *y, bool y_f32, const bf16 *x, const fw_weight *w, int64_t T, bool *done) {
    *done = false;
    void *scratch;
    if (fw_cuda_scratch(ctx, (size_t)(w->rows * w->cols) * sizeof(bf16), &scratch)) return FW_CUDA_ERR;
    if (fw_cuda_int4_to_bf16(ctx, (bf16 *)scratch, w)) return FW_CUDA_ERR;
    fw_weight wb;
    memset(&wb, 0, sizeof wb);
    wb.type = FW_WTYPE_BF16, wb.rows = w->rows, wb.cols = w->cols, wb.ld = w->cols, wb.data = scratch;
    return mm_lt_bf16(ctx, y, y_f32, x, &wb, T, done);
}

/* Can the block-scaled FP8 path take this weight at all (before asking cuBLASLt)? */
static bool fp8_lt_shape_ok(const fw_cuda_ctx *ctx, const fw_weight *w) {
    return ctx->cc_major >= 9 && w->rows % 8 == 0 && w->cols % 16 == 0 && w->ld % 16 == 0 &&
           fw_ptr_align(w->data) >= 16 && w->r0 % FW_FP8_BLOCK == 0 && w->c0 % FW_FP8_BLOCK == 0 && w->scale;
}

static size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

/* cuBLASLt block-scaled FP8, bf16 output. *done = false: refused. */
static int mm_lt_fp8(fw_cuda_ctx *ctx, bf16 *y, const bf16 *x, const fw_weight *w, int64_t T, bool *done) {
    *done = false;
    int64_t N = w->rows, K = w->cols;
    int64_t M = fw_round_up(T, 4); /* cuBLASLt refuses M % 4 != 0: pad with zero tokens */
    int64_t KB = fw_ceil_div(K, FW_FP8_BLOCK), NB = fw_ceil_div(N, FW_FP8_BLOCK);
    int64_t KBp = fw_round_up(KB, 4), NBp = fw_round_up(NB, 4);
    /* W's scales are used in place when the grid is already cuBLASLt's: the view
     * starts at the parent's origin (so the zeros that pad the grid to multiples of
     * 4, as fw_cuda_weight_upload allocates them, are the view's padding), a grid
     * row is exactly KBp wide, 16-byte aligned. Else a repacked copy (tiny). */
    const float *ws = w->scale;
    bool repack = w->r0 != 0 || w->c0 != 0 || w->scale_ld != KBp || fw_ptr_align(ws) < 16;
    bool pad_out = M != T || fw_ptr_align(y) < 16;

    /* Scratch: xq (M, K) e4m3 | xs (KBp, M) f32 | repacked W scales | padded y (M, N). */
    size_t o_xs = align256((size_t)(M * K));
    size_t o_ws = o_xs + align256((size_t)(M * KBp) * sizeof(float));
    size_t o_y = o_ws + (repack ? align256((size_t)(NBp * KBp) * sizeof(float)) : 0);
    size_t total = o_y + (pad_out ? (size_t)(M * N) * sizeof(bf16) : 0);

    fw_plan key;
    memset(&key, 0, sizeof key);
    key.wtype = FW_WTYPE_FP8;
    key.out_f32 = 0;
    key.M = M;
    key.N = N;
    key.K = K;
    key.lda = w->ld;
    key.align_a = fw_align(w->data, w->ld);
    key.align_b = align_ld(256, K); /* the scratch's parts are 256-byte aligned */
    key.align_d = pad_out ? align_ld(256, N * 2) : fw_align(y, N * 2);
    fw_plan *p;
    if (plan_get(ctx, &key, &p)) return FW_CUDA_ERR;
    if (!p->ok) return FW_CUDA_OK;

    void *scratch;
    if (fw_cuda_scratch(ctx, total, &scratch)) return FW_CUDA_ERR;
    uint8_t *xq = (uint8_t *)scratch;
    float *xs = (float *)((char *)scratch + o_xs);
    if (fw_cuda_quant_act(ctx, xq, xs, x, T, M, K)) return FW_CUDA_ERR;
    if (repack) {
        float *wsr = (float *)((char *)scratch + o_ws);
        if (fw_cuda_repack_wscale(ctx, wsr, w, NB, KB, NBp, KBp)) return FW_CUDA_ERR;
        ws = wsr;
    }
    bf16 *d = pad_out ? (bf16 *)((char *)scratch + o_y) : y;
    /* The dequant multipliers (not their inverses): A = W's blocks, B = x's vectors. */
    FW_CUDA_CHECK(ctx, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &ws, sizeof ws));
    const float *xsc = xs;
    FW_CUDA_CHECK(ctx, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &xsc, sizeof xsc));
    bool refused;
    if (plan_run(ctx, p, w->data, xq, d, &refused)) return FW_CUDA_ERR;
    if (refused) return FW_CUDA_OK;
    if (pad_out)
        FW_CUDA_CHECK(ctx, cudaMemcpyAsync(y, d, (size_t)(T * N) * sizeof(bf16), cudaMemcpyDeviceToDevice, ctx->stream));
    *done = true;
    return FW_CUDA_OK;
}

static int check_args(fw_cuda_ctx *ctx, const char *op, const void *y, const void *x, const fw_weight *w, int64_t T) {
    const int64_t ld_cols = w && w->type == FW_WTYPE_INT4 ? 8 * w->ld - w->c0 : w ? w->ld : 0; /* INT4: ld in words */
    if (!w || T < 0 || w->rows < 0 || w->cols < 0 || ld_cols < w->cols)
        return fw_cuda_errf(ctx, "%s: bad arguments (T %lld, W [%lld x %lld] ld %lld)", op, (long long)T,
                            w ? (long long)w->rows : -1LL, w ? (long long)w->cols : -1LL, w ? (long long)w->ld : -1LL);
    if (w->type != FW_WTYPE_F32 && w->type != FW_WTYPE_BF16 && w->type != FW_WTYPE_FP8 && w->type != FW_WTYPE_INT4)
        return fw_cuda_errf(ctx, "%s: unknown weight type %d", op, (int)w->type);
    if (w->type == FW_WTYPE_INT4 && (!w->gscale || w->group < 8 || w->group % 8 || w->c0 < 0))
        return fw_cuda_errf(ctx, "%s: INT4 weight without group scales, or with group %lld", op, (long long)w->group);
    if (w->type == FW_WTYPE_FP8 && (!w->scale || w->r0 < 0 || w->c0 < 0))
        return fw_cuda_errf(ctx, "%s: FP8 weight without scales or with a negative origin", op);
    if (T > 0 && w->rows > 0 && (!y || (!x && w->cols > 0))) return fw_cuda_errf(ctx, "%s: NULL input or output", op);
    return FW_CUDA_OK;
}

static int matmul_any(fw_cuda_ctx *ctx, void *y, bool y_f32, const bf16 *x, const fw_weight *w, int64_t T) {
    ctx->last_mm_path = FW_CUDA_MM_NONE;
    if (check_args(ctx, y_f32 ? "fw_cuda_matmul_f32" : "fw_cuda_matmul", y, x, w, T)) return FW_CUDA_ERR;
    if (T == 0 || w->rows == 0) return FW_CUDA_OK;
    if (w->cols == 0) { /* an empty sum */
        FW_CUDA_CHECK(ctx, cudaMemsetAsync(y, 0, (size_t)(T * w->rows) * (y_f32 ? 4 : 2), ctx->stream));
        return FW_CUDA_OK;
    }
    bool done = false;
    if (ctx->opt.mm_policy == FW_CUDA_MM_AUTO) {
        if (w->type == FW_WTYPE_BF16 &&
            !(y_f32 && T <= ctx->opt.fp8_gemv_rows && 2 * w->rows * w->cols <= FW_BF16_GEMV_BYTES)) {
            if (mm_lt_bf16(ctx, y, y_f32, x, w, T, &done)) return FW_CUDA_ERR;
            if (done) ctx->last_mm_path = FW_CUDA_MM_LT_BF16;
        } else if (w->type == FW_WTYPE_FP8 && !y_f32 && T > ctx->opt.fp8_gemv_rows && fp8_lt_shape_ok(ctx, w)) {
            if (mm_lt_fp8(ctx, (bf16 *)y, x, w, T, &done)) return FW_CUDA_ERR;
            if (done) ctx->last_mm_path = FW_CUDA_MM_LT_FP8;
        } else if (w->type == FW_WTYPE_INT4 && T > FW_INT4_GEMV_ROWS) {
            if (mm_lt_int4(ctx, y, y_f32, x, w, T, &done)) return FW_CUDA_ERR;
            if (done) ctx->last_mm_path = FW_CUDA_MM_LT_BF16;
        }
    }
    if (done) return FW_CUDA_OK;
    return fw_cuda_mm_own(ctx, y, y_f32, x, w, T); /* sets last_mm_path */
}

extern "C" int fw_cuda_matmul(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_bf16 *x, const fw_weight *w, int64_t T) {
    return matmul_any(ctx, y, false, x, w, T);
}

extern "C" int fw_cuda_matmul_f32(fw_cuda_ctx *ctx, float *y, const fw_bf16 *x, const fw_weight *w, int64_t T) {
    return matmul_any(ctx, y, true, x, w, T);
}
