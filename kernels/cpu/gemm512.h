/* The AVX-512 prefill GEMM of the quantized weight types (kernels/cpu/gemm512.c):
 * y[T, rows] = x[T, cols] . W^T over tiles of W that the weight type's own code
 * unpacks, exactly (q * scale in f32), into L1 once for all tokens of a work item. */
#ifndef FW_KERNELS_CPU_GEMM512_H
#define FW_KERNELS_CPU_GEMM512_H

#include "kernels/ops.h"

#define FW_GEMM512_NB 32  /* rows per tile: two vectors */
#define FW_GEMM512_KC 256 /* columns per tile: 32 KB of f32 */

/* Writes tile[k * FW_GEMM512_NB + r] = W[n0 + r, k0 + k] for k < kc and r < nb
 * rounded up to 16, 0 for r >= nb (those sums are never stored); tile is 64-byte
 * aligned. */
typedef void (*fw_gemm512_fill)(float *tile, const fw_weight *w, int64_t n0, int64_t nb, int64_t k0, int64_t kc);

/* Needs AVX-512 F (the caller checks fw_cpu_has_avx512). */
void fw_cpu_gemm512(float *y, const float *x, const fw_weight *w, int64_t T, fw_gemm512_fill fill);

#endif
