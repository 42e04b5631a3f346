/* Internals of the fast CPU ops, shared by kernels/cpu/fast*.c, the kernel tests
 * and the micro-benchmark (not part of the public op table). */
#ifndef FW_KERNELS_CPU_FAST_H
#define FW_KERNELS_CPU_FAST_H

#include "kernels/ops.h"

/* Whether this CPU runs the AVX2/FMA/F16C kernels (checked at run time). */
bool fw_cpu_has_avx2(void);
/* Whether it also runs the AVX-512 kernels (F, BW, VL). */
bool fw_cpu_has_avx512(void);
/* Whether it also has AVX512-BF16 (vdpbf16ps) and AVX512-VBMI (vpermi2b). */
bool fw_cpu_has_avx512bf16(void);

/* The fast ops without SIMD (what fw_ops_cpu_fast() returns on older CPUs), and
 * with AVX2 alone (what it returns where there is no AVX-512). */
const fw_ops *fw_ops_cpu_fast_generic(void);
const fw_ops *fw_ops_cpu_fast_avx2(void);
/* The AVX-512 (F, BW, VL) table without AVX512-BF16's kernels. */
const fw_ops *fw_ops_cpu_fast_avx512(void);

/* matmul implementations, callable directly so that tests and benchmarks can
 * run each at any T (fw_ops_cpu_fast's matmul picks GEMV for T <= FW_GEMV_MAX_T). */
#define FW_GEMV_MAX_T 8

/* A GEMV of tt tokens (1 <= tt <= FW_GEMV_MAX_T), one per entry of a table. */
typedef void (*fw_gemv_fn)(float *y, const float *x, const fw_weight *w);

/* y[T, rows] = x[T, cols] . W^T in passes of at most FW_GEMV_MAX_T tokens, pass
 * of tt tokens by table[tt - 1]. */
static inline void fw_gemv_passes(const fw_gemv_fn *table, float *y, const float *x, const fw_weight *w, int64_t T) {
    for (int64_t t0 = 0; t0 < T; t0 += FW_GEMV_MAX_T) {
        const int64_t tt = T - t0 < FW_GEMV_MAX_T ? T - t0 : FW_GEMV_MAX_T;
        table[tt - 1](y + t0 * w->rows, x + t0 * w->cols, w);
    }
}
void fw_cpu_matmul_gemv_avx2(float *y, const float *x, const fw_weight *w, int64_t T);  /* T <= 8 */
void fw_cpu_matmul_gemm_avx2(float *y, const float *x, const fw_weight *w, int64_t T);
void fw_cpu_matmul_avx2(float *y, const float *x, const fw_weight *w, int64_t T);
void fw_cpu_matmul_avx512(float *y, const float *x, const fw_weight *w, int64_t T); /* AVX2's but INT4, INT8 */
/* AVX-512's but BF16 through vdpbf16ps (kernels/cpu/fast_bf16.c). */
void fw_cpu_matmul_avx512bf16(float *y, const float *x, const fw_weight *w, int64_t T);
void fw_cpu_matmul_xw_avx2(float *y, const float *x, const fw_weight *w, int64_t T);
void fw_cpu_matmul_xw_avx512(float *y, const float *x, const fw_weight *w, int64_t T); /* AVX2's but INT4 */
void fw_cpu_matmul_generic(float *y, const float *x, const fw_weight *w, int64_t T);
void fw_cpu_matmul_xw_generic(float *y, const float *x, const fw_weight *w, int64_t T);

/* Widens w[i, j0 .. j0 + n) (scales applied) into out[n]. */
void fw_cpu_widen_row(float *out, const fw_weight *w, int64_t i, int64_t j0, int64_t n);

/* INT8 (kernels/cpu/fast_int8.c): a row widened as fw_cpu_widen_row, and the GEMV
 * (any T, in passes of FW_GEMV_MAX_T tokens). */
void fw_cpu_int8_widen_generic(float *out, const fw_weight *w, int64_t i, int64_t j0, int64_t n);
void fw_cpu_int8_widen_avx2(float *out, const fw_weight *w, int64_t i, int64_t j0, int64_t n);
void fw_cpu_int8_gemv_avx2(float *y, const float *x, const fw_weight *w, int64_t T);
/* y[T, cols] = x[T, rows] . W (matmul_xw), rows widened with AVX2. */
void fw_cpu_int8_xw_avx2(float *y, const float *x, const fw_weight *w, int64_t T);
/* On AVX-512 (F, BW, VL): the GEMV as above, and the prefill GEMM (any T). */
void fw_cpu_int8_gemv_avx512(float *y, const float *x, const fw_weight *w, int64_t T);
void fw_cpu_int8_gemm_avx512(float *y, const float *x, const fw_weight *w, int64_t T);

/* BF16 weights with AVX512-BF16 (kernels/cpu/fast_bf16.c): the GEMV (any T; x split
 * into three bf16 whose sum is x). false: no memory for its buffer, y untouched. */
bool fw_cpu_bf16_gemv_avx512bf16(float *y, const float *x, const fw_weight *w, int64_t T);
/* FP8 weights with AVX512-BF16 and VBMI: the GEMV (any T), e4m3 widened to bf16 in
 * registers by a table lookup. It takes views whose first column is on a 64-column
 * boundary of the scale grid (fw_cpu_fp8_gemv_ok); false (y untouched) for others
 * or without memory for its buffer. */
bool fw_cpu_fp8_gemv_ok(const fw_weight *w);
bool fw_cpu_fp8_gemv_avx512bf16(float *y, const float *x, const fw_weight *w, int64_t T);
/* BF16 or FP8 on AVX-512 (F, BW, VL): the prefill GEMM of kernels/cpu/gemm512.c over
 * tiles widened exactly to f32 (kernels/cpu/fast_matmul.c). */
void fw_cpu_widened_gemm_avx512(float *y, const float *x, const fw_weight *w, int64_t T);

#endif
