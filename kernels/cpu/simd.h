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

/* fw_bf16_to_f32 inlined: the kernels' inner loops must not call out. */
static inline float bf16_f32(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#endif
