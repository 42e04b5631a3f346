/* RMSNorm: y (T, D) = x / sqrt(mean(x^2) + eps) * w, a block per token, the sum of
 * squares and the scale in fp32, bf16 in and out, w fp32. In place is safe: each
 * thread reads x[d] again just before writing y[d], after the block's reduction. */
#include "kernels/cuda/cuda_common.h"

#define NORM_THREADS 256

__global__ void __launch_bounds__(NORM_THREADS)
rmsnorm_kernel(bf16 *y, int64_t ldy, const bf16 *x, int64_t ldx, const float *__restrict__ w, int64_t D, float eps) {
    __shared__ float red[33];
    const int64_t t = blockIdx.x;
    const bf16 *xt = x + t * ldx;
    bf16 *yt = y + t * ldy;
    float ss = 0.0f;
    for (int64_t d = threadIdx.x; d < D; d += NORM_THREADS) {
        float v = fw_bf2f(xt[d]);
        ss = fmaf(v, v, ss);
    }
    ss = fw_block_sum(ss, red);
    const float r = 1.0f / sqrtf(ss / (float)D + eps);
    for (int64_t d = threadIdx.x; d < D; d += NORM_THREADS) yt[d] = fw_f2bf(fw_bf2f(xt[d]) * r * w[d]);
}

/* Rows of up to NORM_VEC * 8 * NORM_THREADS values in 16-byte pieces, held in
 * registers between the two passes (one read of x, loads all in flight), w's
 * values loaded with them rather than after the reduction (a decode step's
 * norm is one block: its time is its chain of memory round trips). */
#define NORM_VEC 4
__global__ void __launch_bounds__(NORM_THREADS)
rmsnorm_vec_kernel(bf16 *y, int64_t ldy, const bf16 *x, int64_t ldx, const float *__restrict__ w, int D, float eps) {
    __shared__ float red[33];
    const int64_t t = blockIdx.x;
    const bf16 *xt = x + t * ldx;
    bf16 *yt = y + t * ldy;
    uint4 v[NORM_VEC];
    float4 wv[NORM_VEC][2];
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < NORM_VEC; i++) {
        const int d = 8 * (threadIdx.x + i * NORM_THREADS);
        if (d < D) {
            v[i] = *(const uint4 *)(xt + d);
            wv[i][0] = __ldg((const float4 *)(w + d));
            wv[i][1] = __ldg((const float4 *)(w + d) + 1);
            const __nv_bfloat162 *h = (const __nv_bfloat162 *)&v[i];
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float2 f = __bfloat1622float2(h[j]);
                ss = fmaf(f.x, f.x, fmaf(f.y, f.y, ss));
            }
        }
    }
    ss = fw_block_sum(ss, red);
    const float r = 1.0f / sqrtf(ss / (float)D + eps);
#pragma unroll
    for (int i = 0; i < NORM_VEC; i++) {
        const int d = 8 * (threadIdx.x + i * NORM_THREADS);
        if (d < D) {
            __nv_bfloat162 *h = (__nv_bfloat162 *)&v[i];
            const float *wf = (const float *)wv[i];
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float2 f = __bfloat1622float2(h[j]);
                h[j] = __floats2bfloat162_rn(f.x * r * wf[2 * j], f.y * r * wf[2 * j + 1]);
            }
            *(uint4 *)(yt + d) = v[i];
        }
    }
}

extern "C" int fw_cuda_rmsnorm(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_bf16 *x, const float *w, int64_t T, int64_t D, float eps) {
    return fw_cuda_rmsnorm_ld(ctx, y, D, x, D, w, T, D, eps);
}

extern "C" int fw_cuda_rmsnorm_ld(fw_cuda_ctx *ctx, fw_bf16 *y, int64_t ldy, const fw_bf16 *x, int64_t ldx,
                                  const float *w, int64_t T, int64_t D, float eps) {
    if (T < 0 || D < 0 || ldx < D || ldy < D) return fw_cuda_errf(ctx, "fw_cuda_rmsnorm: bad shape (%lld, %lld)", (long long)T, (long long)D);
    if (T == 0 || D == 0) return FW_CUDA_OK;
    if (T > 0x7fffffffLL) return fw_cuda_errf(ctx, "fw_cuda_rmsnorm: T %lld is too large for one launch", (long long)T);
    if (D % 8 == 0 && D <= 8 * NORM_THREADS * NORM_VEC && ldx % 8 == 0 && ldy % 8 == 0 && fw_ptr_align(x) >= 16 &&
        fw_ptr_align(y) >= 16 && fw_ptr_align(w) >= 16)
        rmsnorm_vec_kernel<<<(unsigned)T, NORM_THREADS, 0, ctx->stream>>>(y, ldy, x, ldx, w, (int)D, eps);
    else rmsnorm_kernel<<<(unsigned)T, NORM_THREADS, 0, ctx->stream>>>(y, ldy, x, ldx, w, D, eps);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}
