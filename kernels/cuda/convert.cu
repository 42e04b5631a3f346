/* f32 <-> bf16 on the device (round to nearest even), for boundaries and tests. */
#include "kernels/cuda/cuda_common.h"

#define CVT_THREADS 256

__global__ void __launch_bounds__(CVT_THREADS) f32_to_bf16_kernel(bf16 *__restrict__ y, const float *__restrict__ x, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * CVT_THREADS + threadIdx.x; i < n; i += (int64_t)gridDim.x * CVT_THREADS)
        y[i] = fw_f2bf(x[i]);
}

__global__ void __launch_bounds__(CVT_THREADS) bf16_to_f32_kernel(float *__restrict__ y, const bf16 *__restrict__ x, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * CVT_THREADS + threadIdx.x; i < n; i += (int64_t)gridDim.x * CVT_THREADS)
        y[i] = fw_bf2f(x[i]);
}

extern "C" int fw_cuda_f32_to_bf16(fw_cuda_ctx *ctx, fw_bf16 *y, const float *x, int64_t n) {
    if (n < 0) return fw_cuda_errf(ctx, "fw_cuda_f32_to_bf16: n %lld", (long long)n);
    if (n == 0) return FW_CUDA_OK;
    f32_to_bf16_kernel<<<fw_grid_1d(n, CVT_THREADS), CVT_THREADS, 0, ctx->stream>>>(y, x, n);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

extern "C" int fw_cuda_bf16_to_f32(fw_cuda_ctx *ctx, float *y, const fw_bf16 *x, int64_t n) {
    if (n < 0) return fw_cuda_errf(ctx, "fw_cuda_bf16_to_f32: n %lld", (long long)n);
    if (n == 0) return FW_CUDA_OK;
    bf16_to_f32_kernel<<<fw_grid_1d(n, CVT_THREADS), CVT_THREADS, 0, ctx->stream>>>(y, x, n);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

/* out (rows, cols) bf16 = an INT4 weight's q * scale, rounded once: the dense
 * matmuls of more than 8 rows hand it to cuBLASLt (matmul.cu). A thread takes a
 * word (8 values, one scale: groups are whole words) and stores 16 bytes where
 * the row allows, the element form otherwise. */
__global__ void __launch_bounds__(CVT_THREADS)
int4_to_bf16_kernel(bf16 *__restrict__ out, fw_wview w, int64_t rows, int64_t cols, bool vec) {
    const int64_t wpr = (cols + 7) / 8, n = rows * wpr;
    for (int64_t i = (int64_t)blockIdx.x * CVT_THREADS + threadIdx.x; i < n; i += (int64_t)gridDim.x * CVT_THREADS) {
        const int64_t r = i / wpr, c = (i % wpr) * 8;
        if (vec) { /* c0 a whole word, cols whole words, out 16-byte aligned */
            const uint32_t q = ((const uint32_t *)w.data)[r * w.ld + (w.c0 + c) / 8];
            const float sc = fw_int4_scale(w, r, c);
            uint32_t o[4];
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const bf16 lo = fw_f2bf(fw_int4_at(q, 2 * j) * sc), hi = fw_f2bf(fw_int4_at(q, 2 * j + 1) * sc);
                o[j] = (uint32_t)__bfloat16_as_ushort(lo) | ((uint32_t)__bfloat16_as_ushort(hi) << 16);
            }
            *(uint4 *)(out + r * cols + c) = make_uint4(o[0], o[1], o[2], o[3]);
        } else {
            for (int64_t j = c; j < c + 8 && j < cols; j++) out[r * cols + j] = fw_f2bf(fw_wget<FW_WTYPE_INT4>(w, r, j));
        }
    }
}

int fw_cuda_int4_to_bf16(fw_cuda_ctx *ctx, bf16 *out, const fw_weight *w) {
    const int64_t n = w->rows * ((w->cols + 7) / 8);
    if (n == 0) return FW_CUDA_OK;
    const bool vec = w->c0 % 8 == 0 && w->cols % 8 == 0 && fw_ptr_align(out) >= 16;
    int4_to_bf16_kernel<<<fw_grid_1d(n, CVT_THREADS), CVT_THREADS, 0, ctx->stream>>>(out, fw_wview_of(w), w->rows, w->cols, vec);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}
