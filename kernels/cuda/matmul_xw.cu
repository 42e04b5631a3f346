/* y (T, N) = x (T, K) . W with W [K x N] (rows = K): absorbed MLA's q_nope . W_UK
 * on a per-head view of kv_b_proj. A simple kernel: a thread per output column j
 * for up to 8 tokens; a warp reads 32 consecutive elements of a W row (coalesced),
 * the x values are warp-uniform (broadcast). fp32 accumulation, bf16 output. */
#include "kernels/cuda/cuda_common.h"

#define XW_THREADS 128
#define XW_TOKENS 8

template <int WT>
__global__ void __launch_bounds__(XW_THREADS)
xw_kernel(bf16 *__restrict__ y, const bf16 *__restrict__ x, fw_wview w, int64_t T, int64_t K, int64_t N) {
    const int64_t j = (int64_t)blockIdx.x * XW_THREADS + threadIdx.x;
    const int64_t t0 = (int64_t)blockIdx.y * XW_TOKENS;
    if (j >= N) return;
    const int nt = (int)(T - t0 < XW_TOKENS ? T - t0 : XW_TOKENS);
    float acc[XW_TOKENS];
#pragma unroll
    for (int t = 0; t < XW_TOKENS; t++) acc[t] = 0.0f;
    for (int64_t i = 0; i < K; i++) {
        float wv = fw_wget<WT>(w, i, j);
#pragma unroll
        for (int t = 0; t < XW_TOKENS; t++)
            if (t < nt) acc[t] = fmaf(fw_bf2f(x[(t0 + t) * K + i]), wv, acc[t]);
    }
#pragma unroll
    for (int t = 0; t < XW_TOKENS; t++)
        if (t < nt) y[(t0 + t) * N + j] = fw_f2bf(acc[t]);
}

extern "C" int fw_cuda_matmul_xw(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_bf16 *x, const fw_weight *w, int64_t T) {
    const int64_t ld_cols = w && w->type == FW_WTYPE_INT4 ? 8 * w->ld - w->c0 : w ? w->ld : 0; /* INT4: ld in words */
    if (!w || T < 0 || w->rows < 0 || w->cols < 0 || ld_cols < w->cols)
        return fw_cuda_errf(ctx, "fw_cuda_matmul_xw: bad arguments (T %lld)", (long long)T);
    if (w->type == FW_WTYPE_FP8 && (!w->scale || w->r0 < 0 || w->c0 < 0))
        return fw_cuda_errf(ctx, "fw_cuda_matmul_xw: FP8 weight without scales or with a negative origin");
    int64_t K = w->rows, N = w->cols;
    if (T == 0 || N == 0) return FW_CUDA_OK;
    if (K == 0) {
        FW_CUDA_CHECK(ctx, cudaMemsetAsync(y, 0, (size_t)(T * N) * sizeof(bf16), ctx->stream));
        return FW_CUDA_OK;
    }
    if (fw_ceil_div(T, XW_TOKENS) > 65535)
        return fw_cuda_errf(ctx, "fw_cuda_matmul_xw: T %lld is too large for one launch", (long long)T);
    dim3 grid((unsigned)fw_ceil_div(N, XW_THREADS), (unsigned)fw_ceil_div(T, XW_TOKENS));
    fw_wview v = fw_wview_of(w);
    switch (w->type) {
    case FW_WTYPE_F32: xw_kernel<FW_WTYPE_F32><<<grid, XW_THREADS, 0, ctx->stream>>>(y, x, v, T, K, N); break;
    case FW_WTYPE_BF16: xw_kernel<FW_WTYPE_BF16><<<grid, XW_THREADS, 0, ctx->stream>>>(y, x, v, T, K, N); break;
    case FW_WTYPE_FP8: xw_kernel<FW_WTYPE_FP8><<<grid, XW_THREADS, 0, ctx->stream>>>(y, x, v, T, K, N); break;
    case FW_WTYPE_INT4: xw_kernel<FW_WTYPE_INT4><<<grid, XW_THREADS, 0, ctx->stream>>>(y, x, v, T, K, N); break;
    default: return fw_cuda_errf(ctx, "fw_cuda_matmul_xw: unknown weight type %d", (int)w->type);
    }
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}
