/* The operands of cuBLASLt's block-scaled FP8 GEMM (shared/reference/deepseek-v3.md):
 * activations quantized per token per 128 channels (DeepSeek's act_quant: scale =
 * amax / 448, q = e4m3(x / scale), round to nearest even, saturating), with the
 * scales written transposed (token fastest); and W's block scales repacked into
 * cuBLASLt's layout when a view's grid is not already in it. */
#include "kernels/cuda/cuda_common.h"

#define QUANT_THREADS 256 /* a warp per (token, 128-channel block) */

__global__ void __launch_bounds__(QUANT_THREADS)
quant_act_kernel(uint8_t *__restrict__ xq, float *__restrict__ xs, const bf16 *__restrict__ x, int64_t T, int64_t M,
                 int64_t K, int64_t KB, int64_t KBp) {
    const int lane = threadIdx.x & 31;
    const int64_t wid = (int64_t)blockIdx.x * (QUANT_THREADS / 32) + (threadIdx.x >> 5);
    if (wid >= M * KBp) return; /* warp-uniform */
    const int64_t m = wid % M, kb = wid / M;  /* wid = m + kb * M: the scale's index */
    if (kb >= KB) { /* the grid's padding to a multiple of 4 blocks: no data, scale 0 */
        if (lane == 0) xs[wid] = 0.0f;
        return;
    }
    float v[4], amax = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        int64_t c = kb * FW_FP8_BLOCK + lane + 32 * j;
        v[j] = (m < T && c < K) ? fw_bf2f(x[m * K + c]) : 0.0f; /* rows >= T: padding tokens */
        amax = fmaxf(amax, fabsf(v[j]));
    }
    amax = fw_warp_max(amax);
    const float s = amax > 0.0f ? amax / 448.0f : 1.0f; /* an all-zero block: q = 0, any scale */
#pragma unroll
    for (int j = 0; j < 4; j++) {
        int64_t c = kb * FW_FP8_BLOCK + lane + 32 * j;
        if (c < K) xq[m * K + c] = amax > 0.0f ? (uint8_t)__nv_cvt_float_to_fp8(v[j] / s, __NV_SATFINITE, __NV_E4M3) : 0;
    }
    if (lane == 0) xs[wid] = s;
}

int fw_cuda_quant_act(fw_cuda_ctx *ctx, uint8_t *xq, float *xs, const bf16 *x, int64_t T, int64_t M, int64_t K) {
    int64_t KB = fw_ceil_div(K, FW_FP8_BLOCK), KBp = fw_round_up(KB, 4);
    int64_t blocks = fw_ceil_div(M * KBp, QUANT_THREADS / 32);
    if (blocks > 0x7fffffffLL) return fw_cuda_errf(ctx, "fw_cuda_quant_act: %lld x %lld is too large", (long long)M, (long long)K);
    quant_act_kernel<<<(unsigned)blocks, QUANT_THREADS, 0, ctx->stream>>>(xq, xs, x, T, M, K, KB, KBp);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

__global__ void repack_wscale_kernel(float *__restrict__ dst, const float *__restrict__ src, int64_t src_ld, int64_t NB,
                                     int64_t KB, int64_t NBp, int64_t KBp) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < NBp * KBp; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t nb = i / KBp, kb = i % KBp;
        dst[i] = (nb < NB && kb < KB) ? src[nb * src_ld + kb] : 0.0f;
    }
}

int fw_cuda_repack_wscale(fw_cuda_ctx *ctx, float *dst, const fw_weight *w, int64_t NB, int64_t KB, int64_t NBp,
                          int64_t KBp) {
    /* w's origin is on the grid: its block (0, 0) is the parent's (r0/128, c0/128). */
    const float *src = w->scale + (w->r0 / FW_FP8_BLOCK) * w->scale_ld + w->c0 / FW_FP8_BLOCK;
    repack_wscale_kernel<<<fw_grid_1d(NBp * KBp, 256), 256, 0, ctx->stream>>>(dst, src, w->scale_ld, NB, KB, NBp, KBp);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}
