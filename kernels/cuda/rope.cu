/* RoPE on interleaved pairs, in place, strided like fw_ops.rope: for token t and
 * vector n, v = x + t * tok_stride + n * vec_stride, pair i rotated by the fp32
 * angle tables cos/sin (T, dim/2); the rotation in fp32, the result rounded to bf16. */
#include "kernels/cuda/cuda_common.h"

#define ROPE_THREADS 256

__global__ void __launch_bounds__(ROPE_THREADS)
rope_kernel(bf16 *x, int64_t T, int64_t n_vec, int64_t tok_stride, int64_t vec_stride, int64_t half,
            const float *__restrict__ cos_tab, const float *__restrict__ sin_tab) {
    const int64_t total = T * n_vec * half;
    for (int64_t idx = (int64_t)blockIdx.x * ROPE_THREADS + threadIdx.x; idx < total; idx += (int64_t)gridDim.x * ROPE_THREADS) {
        int64_t i = idx % half, n = (idx / half) % n_vec, t = idx / (half * n_vec);
        bf16 *v = x + t * tok_stride + n * vec_stride + 2 * i;
        float c = cos_tab[t * half + i], s = sin_tab[t * half + i];
        float a = fw_bf2f(v[0]), b = fw_bf2f(v[1]);
        v[0] = fw_f2bf(a * c - b * s);
        v[1] = fw_f2bf(a * s + b * c);
    }
}

extern "C" int fw_cuda_rope(fw_cuda_ctx *ctx, fw_bf16 *x, int64_t T, int64_t n_vec, int64_t tok_stride, int64_t vec_stride,
                            int64_t dim, const float *cos_tab, const float *sin_tab) {
    if (T < 0 || n_vec < 0 || dim < 0)
        return fw_cuda_errf(ctx, "fw_cuda_rope: bad shape (T %lld, n_vec %lld, dim %lld)", (long long)T, (long long)n_vec,
                            (long long)dim);
    int64_t total = T * n_vec * (dim / 2);
    if (total == 0) return FW_CUDA_OK;
    rope_kernel<<<fw_grid_1d(total, ROPE_THREADS), ROPE_THREADS, 0, ctx->stream>>>(x, T, n_vec, tok_stride, vec_stride,
                                                                                   dim / 2, cos_tab, sin_tab);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}
