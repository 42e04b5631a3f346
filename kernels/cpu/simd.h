/* What the fast CPU kernels (fast.c, fast_matmul.c, fast_int4.c, fast_int8.c,
 * gemm512.c) share: the per-function target attributes (no -march flags: each SIMD function
 * carries its own), the size under which a parallel region costs more than it
 * saves, a horizontal sum and an inlined bf16 widening. */
#ifndef FW_KERNELS_CPU_SIMD_H
#define FW_KERNELS_CPU_SIMD_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define AVX2_FN __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))
#define AVX512_TARGET "avx512f,avx512bw,avx512vl,avx2,fma,f16c"
#define AVX512_FN __attribute__((target(AVX512_TARGET)))
#define AVX512_INLINE static inline __attribute__((always_inline, target(AVX512_TARGET)))

/* Below this many weight elements a matmul runs on one thread. */
#define PAR_MIN_ELEMS 65536

AVX2_INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The masks of a 32-row tile's two vectors when nb rows are real. */
AVX512_INLINE void tile32_masks(int64_t nb, __mmask16 *m0, __mmask16 *m1) {
    *m0 = (__mmask16)(nb >= 16 ? 0xFFFF : (1u << nb) - 1);
    *m1 = (__mmask16)(nb >= 32 ? 0xFFFF : nb <= 16 ? 0 : (1u << (nb - 16)) - 1);
}

/* y[t, 0 : 32] += acc[t] under the masks for t < MR (a micro-kernel's outer
 * products, token t's 32 rows in two vectors). */
AVX512_INLINE void tile32_add(float *y, int64_t N, __m512 (*acc)[2], const int MR, __mmask16 m0, __mmask16 m1) {
#pragma GCC unroll 12
    for (int t = 0; t < MR; t++) {
        float *yt = y + t * N;
        _mm512_mask_storeu_ps(yt, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, yt), acc[t][0]));
        _mm512_mask_storeu_ps(yt + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, yt + 16), acc[t][1]));
    }
}

/* fw_bf16_to_f32 inlined: the kernels' inner loops must not call out. */
static inline float bf16_f32(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#endif
