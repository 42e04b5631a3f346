/* Prefill attention on the tensor cores through cuBLAS: for a group of heads at a
 * time (as many as fit the work space), one strided-batched GEMM for the scores
 * (bf16 q and k, fp32 scores, the softmax scale as alpha), a causal softmax per
 * row in fp32 that writes bf16 probabilities (masked keys get 0), and one
 * strided-batched GEMM for p v. The (T, S) score matrices are materialised, so
 * memory traffic grows with T * S; a fused flash-attention kernel would not. */
#include "kernels/cuda/cuda_common.h"

#include <math.h>

#define SM_THREADS 256
#define ATTN_WORK_CAP ((size_t)3 << 29) /* 1.5 GiB of scores and probabilities */

static int64_t heads_per_group(int64_t T, int64_t S, int64_t H) {
    size_t per = (size_t)(T * S) * (sizeof(float) + sizeof(bf16));
    int64_t g = (int64_t)(ATTN_WORK_CAP / (per ? per : 1));
    return g < 1 ? 1 : g > H ? H : g;
}

extern "C" size_t fw_cuda_attn_prefill_bytes(int64_t T, int64_t S, int64_t H) {
    int64_t g = heads_per_group(T, S, H);
    return (size_t)(g * T * S) * (sizeof(float) + sizeof(bf16)) + 256;
}

/* Row (h, t): p[j] = softmax(scores[j]) over j <= S - T + t, 0 beyond. */
__global__ void __launch_bounds__(SM_THREADS)
causal_softmax_kernel(bf16 *__restrict__ p, const float *__restrict__ sc, int64_t T, int64_t S) {
    __shared__ float red[33];
    const int64_t row = blockIdx.x, t = row % T, n = S - T + t + 1;
    const float *x = sc + row * S;
    bf16 *y = p + row * S;
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < n; j += SM_THREADS) m = fmaxf(m, x[j]);
    /* block max through the sum helper's layout: reduce in two steps */
    m = fw_warp_max(m);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
        float v = threadIdx.x < SM_THREADS / 32 ? red[threadIdx.x] : -INFINITY;
        v = fw_warp_max(v);
        if (threadIdx.x == 0) red[32] = v;
    }
    __syncthreads();
    m = red[32];
    __syncthreads();
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < n; j += SM_THREADS) s += expf(x[j] - m);
    s = fw_block_sum(s, red);
    const float inv = 1.0f / s;
    for (int64_t j = threadIdx.x; j < S; j += SM_THREADS) y[j] = fw_f2bf(j < n ? expf(x[j] - m) * inv : 0.0f);
}

extern "C" int fw_cuda_attn_prefill(fw_cuda_ctx *ctx, fw_bf16 *o, const fw_bf16 *q, const fw_bf16 *k, const fw_bf16 *v,
                                    int64_t T, int64_t S, int64_t H, int64_t dqk, int64_t dv, float scale, void *work) {
    if (T < 0 || S < T || H < 1 || dqk < 1 || dv < 1)
        return fw_cuda_errf(ctx, "fw_cuda_attn_prefill: bad shape (T %lld, S %lld, H %lld)", (long long)T,
                            (long long)S, (long long)H);
    if (T == 0) return FW_CUDA_OK;
    if (T * S > 0x7fffffffLL || H * dqk > 0x7fffffffLL)
        return fw_cuda_errf(ctx, "fw_cuda_attn_prefill: %lld x %lld scores are too many", (long long)T, (long long)S);
    cublasHandle_t h = (cublasHandle_t)ctx->blas;
    const int64_t G = heads_per_group(T, S, H);
    float *sc = (float *)work;
    bf16 *p = (bf16 *)((char *)work + fw_round_up((int64_t)(G * T * S) * 4, 256));
    const float one = 1.0f, zero = 0.0f;
    for (int64_t h0 = 0; h0 < H; h0 += G) {
        const int g = (int)(H - h0 < G ? H - h0 : G);
        /* column-major: scores^T (S x T) = K_h (dqk x S)^T . Q_h (dqk x T), per head */
        FW_CUDA_CHECK(ctx, cublasGemmStridedBatchedEx(
                               h, CUBLAS_OP_T, CUBLAS_OP_N, (int)S, (int)T, (int)dqk, &scale, k + h0 * dqk, CUDA_R_16BF,
                               (int)(H * dqk), dqk, q + h0 * dqk, CUDA_R_16BF, (int)(H * dqk), dqk, &zero, sc, CUDA_R_32F,
                               (int)S, T * S, g, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        causal_softmax_kernel<<<(unsigned)(g * T), SM_THREADS, 0, ctx->stream>>>(p, sc, T, S);
        FW_CUDA_LAUNCHED(ctx);
        /* column-major: O_h (dv x T) = V_h (dv x S) . P_h^T... P stored (T x S) row-major = (S x T) column-major */
        FW_CUDA_CHECK(ctx, cublasGemmStridedBatchedEx(
                               h, CUBLAS_OP_N, CUBLAS_OP_N, (int)dv, (int)T, (int)S, &one, v + h0 * dv, CUDA_R_16BF,
                               (int)(H * dv), dv, p, CUDA_R_16BF, (int)S, T * S, &zero, o + h0 * dv, CUDA_R_16BF,
                               (int)(H * dv), dv, g, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    return FW_CUDA_OK;
}
