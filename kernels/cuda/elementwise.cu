/* Element-wise ops on bf16 vectors, math in fp32: y = silu(g) * u (the SwiGLU
 * gate), y += x (the residual). Grid-stride loops; y may alias g. */
#include "kernels/cuda/cuda_common.h"

#define EW_THREADS 256

__global__ void __launch_bounds__(EW_THREADS) silu_mul_kernel(bf16 *y, const bf16 *g, const bf16 *u, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * EW_THREADS + threadIdx.x; i < n; i += (int64_t)gridDim.x * EW_THREADS) {
        y[i] = fw_swiglu(g[i], u[i]);
    }
}

__global__ void __launch_bounds__(EW_THREADS) add_kernel(bf16 *y, const bf16 *x, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * EW_THREADS + threadIdx.x; i < n; i += (int64_t)gridDim.x * EW_THREADS)
        y[i] = fw_f2bf(fw_bf2f(y[i]) + fw_bf2f(x[i]));
}

extern "C" int fw_cuda_silu_mul(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_bf16 *g, const fw_bf16 *u, int64_t n) {
    if (n < 0) return fw_cuda_errf(ctx, "fw_cuda_silu_mul: n %lld", (long long)n);
    if (n == 0) return FW_CUDA_OK;
    silu_mul_kernel<<<fw_grid_1d(n, EW_THREADS), EW_THREADS, 0, ctx->stream>>>(y, g, u, n);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

extern "C" int fw_cuda_add(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_bf16 *x, int64_t n) {
    if (n < 0) return fw_cuda_errf(ctx, "fw_cuda_add: n %lld", (long long)n);
    if (n == 0) return FW_CUDA_OK;
    add_kernel<<<fw_grid_1d(n, EW_THREADS), EW_THREADS, 0, ctx->stream>>>(y, x, n);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}
