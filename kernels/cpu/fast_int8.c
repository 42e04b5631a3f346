/* INT8 weights (FW_WTYPE_INT8, kernels/ops.h) on the fast CPU path: a row widened
 * to f32 (for the GEMM tiles and the W^T fallback of fast_matmul.c), and the
 * decode GEMV, which widens int8 in registers (sign-extend to int32, convert to
 * f32), multiplies with the f32 activations and applies each row's bf16 scale
 * once per group: per channel, once per row. */
#include "kernels/cpu/fast.h"
#include "kernels/cpu/simd.h"

#include <immintrin.h>
#include <string.h>

/* Row i of the view from its column 0; the scales of row i. */
static inline const int8_t *q_row(const fw_weight *w, int64_t i) { return (const int8_t *)w->data + i * w->ld + w->c0; }
static inline const uint16_t *s_row(const fw_weight *w, int64_t i) { return w->gscale + i * w->scale_ld; }

/* End (view column, exclusive) of the group holding view column j, capped at n. */
static inline int64_t group_end(const fw_weight *w, int64_t j, int64_t n) {
    const int64_t e = ((w->c0 + j) / w->group + 1) * w->group - w->c0;
    return e < n ? e : n;
}

void fw_cpu_int8_widen_generic(float *out, const fw_weight *w, int64_t i, int64_t j0, int64_t n) {
    const int8_t *q = q_row(w, i) + j0;
    for (int64_t j = 0; j < n;) {
        const int64_t e = group_end(w, j0 + j, j0 + n) - j0;
        const float s = bf16_f32(s_row(w, i)[(w->c0 + j0 + j) / w->group]);
        for (; j < e; j++) out[j] = (float)q[j] * s;
    }
}

/* 8 int8 values at p as f32. */
AVX2_INLINE __m256 ld_i8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

AVX2_FN void fw_cpu_int8_widen_avx2(float *out, const fw_weight *w, int64_t i, int64_t j0, int64_t n) {
    const int8_t *q = q_row(w, i) + j0;
    for (int64_t j = 0; j < n;) {
        const int64_t e = group_end(w, j0 + j, j0 + n) - j0;
        const float s = bf16_f32(s_row(w, i)[(w->c0 + j0 + j) / w->group]);
        const __m256 vs = _mm256_set1_ps(s);
        for (; j + 8 <= e; j += 8) _mm256_storeu_ps(out + j, _mm256_mul_ps(ld_i8(q + j), vs));
        for (; j < e; j++) out[j] = (float)q[j] * s;
    }
}

/* y[t, i0 + r] for r < RB, t < TT: each group's integer-valued products are
 * summed in f32, then scaled once (sum_c q_c s x_c = s sum_c q_c x_c). */
AVX2_INLINE void gemv_int8_tile(float *y, const float *x, const fw_weight *w, int64_t i0, const int RB, const int TT) {
    const int64_t K = w->cols, N = w->rows;
    const int8_t *row[4];
    __m256 tot[8], acc[8]; /* (RB, TT) */
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) row[r] = q_row(w, i0 + r);
#pragma GCC unroll 8
    for (int a = 0; a < RB * TT; a++) tot[a] = _mm256_setzero_ps();
    for (int64_t j = 0; j < K;) {
        const int64_t js = j, je = group_end(w, j, K);
#pragma GCC unroll 8
        for (int a = 0; a < RB * TT; a++) acc[a] = _mm256_setzero_ps();
        for (; j + 8 <= je; j += 8) {
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++) {
                const __m256 wv = ld_i8(row[r] + j);
#pragma GCC unroll 8
                for (int t = 0; t < TT; t++)
                    acc[r * TT + t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + t * K + j), acc[r * TT + t]);
            }
        }
        if (j < je) { /* tail: zero-padded copies, masked x loads, no overread */
            const int64_t n = je - j;
            const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++) {
                int8_t buf[8] = {0};
                memcpy(buf, row[r] + j, (size_t)n);
                const __m256 wv = ld_i8(buf);
#pragma GCC unroll 8
                for (int t = 0; t < TT; t++)
                    acc[r * TT + t] = _mm256_fmadd_ps(wv, _mm256_maskload_ps(x + t * K + j, m), acc[r * TT + t]);
            }
            j = je;
        }
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            const __m256 s = _mm256_set1_ps(bf16_f32(s_row(w, i0 + r)[(w->c0 + js) / w->group]));
#pragma GCC unroll 8
            for (int t = 0; t < TT; t++) tot[r * TT + t] = _mm256_fmadd_ps(acc[r * TT + t], s, tot[r * TT + t]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 8
        for (int t = 0; t < TT; t++) y[t * N + i0 + r] = hsum8(tot[r * TT + t]);
}

/* Rows per tile and tokens of the first pass, as fast_matmul.c's GEMV: at most 8
 * accumulators, x loads shared by the tile's rows, a second pass over rows still
 * in L1 for the other tokens above 4. */
#define I8_RB(TT) ((TT) <= 2 ? 4 : 2)
#define I8_TA(TT) ((TT) <= 4 ? (TT) : ((TT) + 1) / 2)

#define DEF_GEMV_INT8(TT)                                                                            \
    AVX2_FN static void gemv_int8_##TT(float *y, const float *x, const fw_weight *w) {               \
        const int64_t N = w->rows, K = w->cols, nb = (N + I8_RB(TT) - 1) / I8_RB(TT);                \
        _Pragma("omp parallel for schedule(static) if (N * K >= PAR_MIN_ELEMS)")                     \
        for (int64_t b = 0; b < nb; b++) {                                                           \
            const int64_t i0 = b * I8_RB(TT);                                                        \
            if (i0 + I8_RB(TT) <= N) {                                                               \
                gemv_int8_tile(y, x, w, i0, I8_RB(TT), I8_TA(TT));                                   \
                if (I8_TA(TT) < (TT))                                                                \
                    gemv_int8_tile(y + I8_TA(TT) * N, x + I8_TA(TT) * K, w, i0, I8_RB(TT), (TT) - I8_TA(TT)); \
            } else {                                                                                 \
                for (int64_t i = i0; i < N; i++) gemv_int8_tile(y, x, w, i, 1, TT);                  \
            }                                                                                        \
        }                                                                                            \
    }
DEF_GEMV_INT8(1) DEF_GEMV_INT8(2) DEF_GEMV_INT8(3) DEF_GEMV_INT8(4)
DEF_GEMV_INT8(5) DEF_GEMV_INT8(6) DEF_GEMV_INT8(7) DEF_GEMV_INT8(8)

typedef void (*gemv_int8_fn)(float *y, const float *x, const fw_weight *w);
static const gemv_int8_fn gemv_int8_table[FW_GEMV_MAX_T] = {gemv_int8_1, gemv_int8_2, gemv_int8_3, gemv_int8_4,
                                                            gemv_int8_5, gemv_int8_6, gemv_int8_7, gemv_int8_8};

void fw_cpu_int8_gemv_avx2(float *y, const float *x, const fw_weight *w, int64_t T) {
    const int64_t N = w->rows, K = w->cols;
    for (int64_t t0 = 0; t0 < T; t0 += FW_GEMV_MAX_T) {
        const int64_t tt = T - t0 < FW_GEMV_MAX_T ? T - t0 : FW_GEMV_MAX_T;
        gemv_int8_table[tt - 1](y + t0 * N, x + t0 * K, w);
    }
}
