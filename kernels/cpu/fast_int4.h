/* The INT4 matmuls of the fast CPU ops (kernels/cpu/fast_int4.c), callable per
 * instruction set so that tests and the micro-benchmark run each on any machine
 * that has it. All need whole words: c0 and cols multiples of 8 (fw_cpu_int4_ok). */
#ifndef FW_KERNELS_CPU_FAST_INT4_H
#define FW_KERNELS_CPU_FAST_INT4_H

#include "kernels/ops.h"

/* Whether the view starts on a word and holds whole words (the SIMD paths' condition). */
static inline bool fw_cpu_int4_ok(const fw_weight *w) { return w->c0 % 8 == 0 && w->cols % 8 == 0; }

/* out[0 .. n) = w[i, j0 .. j0 + n) (scales applied), (c0 + j0) % 8 == 0, n % 8 == 0. */
void fw_cpu_int4_widen_avx2(float *out, const fw_weight *w, int64_t i, int64_t j0, int64_t n);

/* y[T, rows] = x[T, cols] . W^T. GEMV: each row streamed once per FW_GEMV_MAX_T
 * tokens (decode); GEMM: tiles of W unpacked once into L1 and used by all tokens
 * (prefill). They return false, computing nothing, when a buffer cannot be
 * allocated (the caller then runs the portable code). */
bool fw_cpu_int4_gemv_avx2(float *y, const float *x, const fw_weight *w, int64_t T);
bool fw_cpu_int4_gemv_avx512(float *y, const float *x, const fw_weight *w, int64_t T);
bool fw_cpu_int4_gemm_avx512(float *y, const float *x, const fw_weight *w, int64_t T);
/* y[T, cols] = x[T, rows] . W (matmul_xw), allocating nothing. */
void fw_cpu_int4_xw_avx2(float *y, const float *x, const fw_weight *w, int64_t T);
void fw_cpu_int4_xw_avx512(float *y, const float *x, const fw_weight *w, int64_t T);

#endif
