/* Shared by the .cu files of kernels/cuda (CUDA C++ only): the one check macro for
 * CUDA and cuBLAS(Lt) calls, argument errors, device-side element access of
 * weights and bf16/fp8 values, warp and block reductions, and the internal
 * functions one .cu file calls in another. */
#ifndef FW_KERNELS_CUDA_CUDA_COMMON_H
#define FW_KERNELS_CUDA_CUDA_COMMON_H

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <cublasLt.h>
#include <cublas_v2.h>

#include "kernels/cuda/ops_cuda.h"

typedef __nv_bfloat16 bf16;

/* ---- errors ---- */

/* Writes "file:line: what: msg" into ctx->err; returns FW_CUDA_ERR. */
int fw_cuda_fail(fw_cuda_ctx *ctx, const char *file, int line, const char *what, const char *msg);
/* printf-style argument errors ("fw_cuda_matmul: ..."); returns FW_CUDA_ERR. */
int fw_cuda_errf(fw_cuda_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static inline bool fw_cuda_ok(cudaError_t e) { return e == cudaSuccess; }
static inline const char *fw_cuda_str(cudaError_t e) { return cudaGetErrorString(e); }
static inline bool fw_cuda_ok(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS; }
static inline const char *fw_cuda_str(cublasStatus_t s) { return cublasLtGetStatusString(s); }

/* The one check for every CUDA runtime and cuBLAS(Lt) call (llm.c's cudaCheck,
 * returning a status instead of exiting): on failure, records file, line, the
 * call and the library's error string in ctx->err and returns FW_CUDA_ERR. */
#define FW_CUDA_CHECK(ctx, call)                                                              \
    do {                                                                                      \
        auto fw_st_ = (call);                                                                 \
        if (!fw_cuda_ok(fw_st_)) return fw_cuda_fail((ctx), __FILE__, __LINE__, #call, fw_cuda_str(fw_st_)); \
    } while (0)

/* After a kernel launch: a bad launch configuration fails here; a fault while the
 * kernel runs is reported by the next synchronizing call. */
#define FW_CUDA_LAUNCHED(ctx) FW_CUDA_CHECK(ctx, cudaGetLastError())

/* ---- internal functions (defined in the file named) ---- */

/* ctx.cu: a scratch area of at least `bytes`, valid until the next op on the stream. */
int fw_cuda_scratch(fw_cuda_ctx *ctx, size_t bytes, void **p);
/* ctx.cu: the driver's tensor-map encoder, found once through the runtime (no link
 * to libcuda); NULL where the driver has none. */
PFN_cuTensorMapEncodeTiled_v12000 fw_tma_encoder(void);
/* convert.cu: out (rows, cols) = an INT4 weight dequantized to bf16 (q * scale rounded once). */
int fw_cuda_int4_to_bf16(fw_cuda_ctx *ctx, bf16 *out, const fw_weight *w);

/* matmul_own.cu: y (T, N) = x (T, K) . W^T with the own kernels; y bf16 or fp32. */
int fw_cuda_mm_own(fw_cuda_ctx *ctx, void *y, bool y_f32, const bf16 *x, const fw_weight *w, int64_t T);
/* fp8_quant.cu: x (T, K) bf16 -> xq (Mpad, K) e4m3 with dequant scales xs[m + kb * Mpad]
 * (amax / 448 per token per 128 channels; rows T..Mpad-1 zero with scale 1; the
 * blocks kb in [ceil(K/128), roundup4) that pad the grid get scale 0): Mpad x KBp floats. */
int fw_cuda_quant_act(fw_cuda_ctx *ctx, uint8_t *xq, float *xs, const bf16 *x, int64_t T, int64_t Mpad, int64_t K);
/* fp8_quant.cu: the weight scales of w (r0, c0 multiples of 128) in cuBLASLt's layout:
 * block (n, k) at k + n * KBp, zero padding, NBp x KBp floats. */
int fw_cuda_repack_wscale(fw_cuda_ctx *ctx, float *dst, const fw_weight *w, int64_t NB, int64_t KB, int64_t NBp,
                          int64_t KBp);

/* ---- small host helpers ---- */

__host__ __device__ static inline int64_t fw_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
__host__ __device__ static inline int64_t fw_round_up(int64_t a, int64_t b) { return fw_ceil_div(a, b) * b; }
/* The largest power of two (<= 256) that divides the address: what cuBLASLt calls
 * the alignment of a buffer. */
static inline unsigned fw_ptr_align(const void *p) {
    uintptr_t a = (uintptr_t)p;
    unsigned al = 256;
    while (al > 1 && (a & (al - 1))) al >>= 1;
    return al;
}
/* Blocks for a grid-stride loop over n elements. */
static inline unsigned fw_grid_1d(int64_t n, int threads) {
    int64_t b = fw_ceil_div(n, threads);
    if (b < 1) b = 1;
    if (b > 65536) b = 65536;
    return (unsigned)b;
}

/* ---- device helpers ---- */

__device__ __forceinline__ float fw_bf2f(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ bf16 fw_f2bf(float v) { return __float2bfloat16_rn(v); }

/* The SwiGLU gate of bf16 g and u, in fp32, rounded to bf16 (every kernel that
 * applies it gives the same value). */
__device__ __forceinline__ bf16 fw_swiglu(bf16 g, bf16 u) {
    const float a = fw_bf2f(g);
    return fw_f2bf(a / (1.0f + expf(-a)) * fw_bf2f(u));
}

/* e4m3fn -> f32, exact (0x7F and 0xFF are NaN, as fw_fp8e4m3_to_f32). */
__device__ __forceinline__ float fw_fp8_to_f32(uint8_t b) {
    __half_raw h = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)b, __NV_E4M3);
    return __half2float(__half(h));
}

/* A weight view as kernels see it: element (i, j) at data + i * ld + j; FP8 scale of
 * (i, j) at scale[((r0 + i) / 128) * scale_ld + (c0 + j) / 128] (ops.h). INT4:
 * ld counts int32 words of 8 values, column c = c0 + j is nibble c % 8 of word
 * c / 8 of row i, its scale gscale[i * scale_ld + c / group]. */
struct fw_wview {
    const void *data;
    const float *scale;
    int64_t ld, scale_ld, r0, c0;
    const bf16 *gscale;
    int64_t group;
};

static inline fw_wview fw_wview_of(const fw_weight *w) {
    fw_wview v = {w->data, w->scale, w->ld, w->scale_ld, w->r0, w->c0, (const bf16 *)w->gscale, w->group};
    return v;
}

/* Byte offset of element k of a row from its start (k whole 16-byte pieces for INT4). */
template <int WT>
__device__ __forceinline__ int64_t fw_wbyte(int64_t k) {
    return WT == FW_WTYPE_F32 ? 4 * k : WT == FW_WTYPE_BF16 ? 2 * k : WT == FW_WTYPE_FP8 ? k : k / 2;
}

/* Elements in a 16-byte piece of a weight row. */
template <int WT>
struct fw_piece {
    static constexpr int E = WT == FW_WTYPE_F32 ? 4 : WT == FW_WTYPE_BF16 ? 8 : WT == FW_WTYPE_FP8 ? 16 : 32;
};

/* An INT4 weight's scale of row n at column c0 + k. */
__device__ __forceinline__ float fw_int4_scale(const fw_wview &w, int64_t n, int64_t k) {
    return fw_bf2f(w.gscale[n * w.scale_ld + (w.c0 + k) / w.group]);
}

/* The INT4 value of nibble k (0..7) of a packed word: -8..7, as 2^23 + nibble
 * (the nibble in the mantissa's low bits) less 2^23 + 8: one logic op and one add. */
__device__ __forceinline__ float fw_int4_at(uint32_t word, int k) {
    return __uint_as_float(0x4B000000u | ((word >> (4 * k)) & 15u)) - 8388616.0f;
}

template <int WT>
__device__ __forceinline__ float fw_wget(const fw_wview &w, int64_t i, int64_t j) {
    if (WT == FW_WTYPE_INT4) {
        const int64_t c = w.c0 + j;
        const uint32_t word = ((const uint32_t *)w.data)[i * w.ld + c / 8];
        return fw_int4_at(word, (int)(c % 8)) * fw_int4_scale(w, i, j);
    }
    int64_t off = i * w.ld + j;
    if (WT == FW_WTYPE_F32) return ((const float *)w.data)[off];
    if (WT == FW_WTYPE_BF16) return fw_bf2f(((const bf16 *)w.data)[off]);
    float s = w.scale[((w.r0 + i) >> 7) * w.scale_ld + ((w.c0 + j) >> 7)];
    return fw_fp8_to_f32(((const uint8_t *)w.data)[off]) * s;
}

/* 8 consecutive elements from element offset `off` (16-byte aligned for F32/BF16,
 * 8-byte for FP8, which comes back unscaled). */
template <int WT>
__device__ __forceinline__ void fw_load8(const void *base, int64_t off, float v[8]) {
    if (WT == FW_WTYPE_F32) {
        const float4 *p = (const float4 *)((const float *)base + off);
        float4 a = p[0], b = p[1];
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
        v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    } else if (WT == FW_WTYPE_BF16) {
        uint4 u = *(const uint4 *)((const bf16 *)base + off);
        const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 f = __bfloat1622float2(h[i]);
            v[2 * i] = f.x;
            v[2 * i + 1] = f.y;
        }
    } else {
        uint2 u = *(const uint2 *)((const uint8_t *)base + off);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            v[i] = fw_fp8_to_f32((uint8_t)(u.x >> (8 * i)));     /* little-endian: byte i */
            v[4 + i] = fw_fp8_to_f32((uint8_t)(u.y >> (8 * i)));
        }
    }
}

/* 16 bytes of a weight row as floats: 16 FP8 (unscaled), 8 BF16 or 32 INT4 values
 * (unscaled, -8..7: exact). */
template <int WT>
__device__ __forceinline__ void fw_unpack16(const uint4 &u, float *f) {
    const uint32_t *q = (const uint32_t *)&u;
    if (WT == FW_WTYPE_INT4) {
#pragma unroll
        for (int i = 0; i < 32; i++) f[i] = fw_int4_at(q[i / 8], i % 8);
    } else if (WT == FW_WTYPE_FP8) {
#pragma unroll
        for (int i = 0; i < 8; i++) {
            __half2_raw h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(q[i / 2] >> (16 * (i % 2))), __NV_E4M3);
            float2 v = __half22float2(__half2(h));
            f[2 * i] = v.x, f[2 * i + 1] = v.y;
        }
    } else {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 v = __bfloat1622float2(*(const __nv_bfloat162 *)&q[i]);
            f[2 * i] = v.x, f[2 * i + 1] = v.y;
        }
    }
}

__device__ __forceinline__ float fw_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float fw_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* The sum over the block, returned to every thread. blockDim.x a multiple of 32;
 * `red` holds 33 floats of shared memory; contains __syncthreads. */
__device__ __forceinline__ float fw_block_sum(float v, float *red) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = fw_warp_sum(v);
    if (lane == 0) red[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float s = lane < nw ? red[lane] : 0.0f;
        s = fw_warp_sum(s);
        if (lane == 0) red[32] = s;
    }
    __syncthreads();
    return red[32];
}

#endif
