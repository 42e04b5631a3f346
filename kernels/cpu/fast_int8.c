/* INT8 weights (FW_WTYPE_INT8, kernels/ops.h) on the fast CPU path: a row widened
 * to f32 (for the AVX2 GEMM tiles and the W^T fallback of fast_matmul.c), the
 * AVX2 decode GEMV, which widens int8 in registers (sign-extend to int32, convert
 * to f32), multiplies with the f32 activations and applies each row's bf16 scale
 * once per group: per channel, once per row; and the AVX-512 GEMV and GEMM tiles,
 * which apply the scale to each widened weight, as the reference does. */
#include "kernels/cpu/fast.h"
#include "kernels/cpu/gemm512.h"
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

static const fw_gemv_fn gemv_int8_table[FW_GEMV_MAX_T] = {gemv_int8_1, gemv_int8_2, gemv_int8_3, gemv_int8_4,
                                                            gemv_int8_5, gemv_int8_6, gemv_int8_7, gemv_int8_8};

void fw_cpu_int8_gemv_avx2(float *y, const float *x, const fw_weight *w, int64_t T) {
    fw_gemv_passes(gemv_int8_table, y, x, w, T);
}

/* matmul_xw: y[T, N] = x[T, K] . W, W [K, N] (absorbed attention's per-head views
 * of kv_b): each thread owns 256 columns of y at a time; each row of W is widened
 * (q * scale) once and added, times x[t, i], to every token's columns in L1. */
#define XW8_CH 256

AVX2_FN void fw_cpu_int8_xw_avx2(float *y, const float *x, const fw_weight *w, int64_t T) {
    const int64_t K = w->rows, N = w->cols, nchunk = (N + XW8_CH - 1) / XW8_CH;
#pragma omp parallel for schedule(static) if (K * N * T >= PAR_MIN_ELEMS)
    for (int64_t c = 0; c < nchunk; c++) {
        const int64_t j0 = c * XW8_CH, n = N - j0 < XW8_CH ? N - j0 : XW8_CH, n8 = n / 8 * 8;
        float buf[XW8_CH];
        for (int64_t t = 0; t < T; t++) memset(y + t * N + j0, 0, (size_t)n * sizeof(float));
        for (int64_t i = 0; i < K; i++) {
            fw_cpu_int8_widen_avx2(buf, w, i, j0, n);
            for (int64_t t = 0; t < T; t++) {
                const __m256 xi = _mm256_set1_ps(x[t * K + i]);
                float *yt = y + t * N + j0;
                int64_t j = 0;
                for (; j < n8; j += 8)
                    _mm256_storeu_ps(yt + j, _mm256_fmadd_ps(xi, _mm256_loadu_ps(buf + j), _mm256_loadu_ps(yt + j)));
                for (; j < n; j++) yt[j] += x[t * K + i] * buf[j];
            }
        }
    }
}

/* ---- AVX-512 ----
 * GEMV: 16 columns a vector, q sign-extended to int32 and converted (exact), times
 * the lane's group scale (exact: q has 8 bits, the scale 8), as the reference
 * widens each weight; then one FMA per token. A run of columns inside one group
 * shares a broadcast scale; a group's last partial vector is a masked load (no
 * overread). Rows per tile and tokens per pass as fast_int4.c's AVX-512 GEMV. */

/* 16 int8 at p (the first n of them, n < 16: a masked load) as f32. */
AVX512_INLINE __m512 ld_i8x16(const int8_t *p) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p))); }
AVX512_INLINE __m512 ld_i8x16_mask(const int8_t *p, __mmask16 m) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, p)));
}

/* acc[r * TT + t] += (W[i0 + r, j0 : j1] . x[t, j0 : j1]) (* s[r] per weight when scaled). */
AVX512_INLINE void gemv512_run(__m512 *acc, const float *x, const int8_t *const *row, const __m512 *s, int64_t K,
                               int64_t j0, int64_t j1, const int RB, const int TT, const bool scaled) {
    int64_t j = j0;
    for (; j + 16 <= j1; j += 16) {
        __m512 xv[4];
#pragma GCC unroll 4
        for (int t = 0; t < TT; t++) xv[t] = _mm512_loadu_ps(x + t * K + j);
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) {
            const __m512 q = scaled ? _mm512_mul_ps(ld_i8x16(row[r] + j), s[r]) : ld_i8x16(row[r] + j);
#pragma GCC unroll 4
            for (int t = 0; t < TT; t++) acc[r * TT + t] = _mm512_fmadd_ps(q, xv[t], acc[r * TT + t]);
        }
    }
    if (j < j1) { /* the run's last columns: masked loads, no overread */
        const __mmask16 m = (__mmask16)((1u << (j1 - j)) - 1);
        __m512 xv[4];
#pragma GCC unroll 4
        for (int t = 0; t < TT; t++) xv[t] = _mm512_maskz_loadu_ps(m, x + t * K + j);
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) {
            const __m512 q = scaled ? _mm512_mul_ps(ld_i8x16_mask(row[r] + j, m), s[r]) : ld_i8x16_mask(row[r] + j, m);
#pragma GCC unroll 4
            for (int t = 0; t < TT; t++) acc[r * TT + t] = _mm512_fmadd_ps(q, xv[t], acc[r * TT + t]);
        }
    }
}

/* y[t * N + i0 + r] for r < RB, t < TT. With few sums (RB x TT <= 8) each group's
 * q . x is summed and then scaled (one multiply per group and row instead of one
 * per 16 weights; per channel, one per row); with more, each widened weight is
 * scaled, as the reference does, and serves TT tokens. */
AVX512_INLINE void gemv512_tile(float *y, const float *x, const fw_weight *w, int64_t i0, const int RB, const int TT) {
    const int64_t K = w->cols, N = w->rows;
    const bool fold = RB * TT <= 8;
    const int8_t *row[8];
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++) row[r] = q_row(w, i0 + r);
    __m512 acc[16]; /* (RB, TT) */
#pragma GCC unroll 16
    for (int a = 0; a < RB * TT; a++) acc[a] = _mm512_setzero_ps();
    for (int64_t j = 0; j < K;) {
        const int64_t je = group_end(w, j, K), g = (w->c0 + j) / w->group;
        __m512 s[8];
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) s[r] = _mm512_set1_ps(bf16_f32(s_row(w, i0 + r)[g]));
        if (fold) {
            __m512 gs[8];
#pragma GCC unroll 8
            for (int a = 0; a < RB * TT; a++) gs[a] = _mm512_setzero_ps();
            gemv512_run(gs, x, row, s, K, j, je, RB, TT, false);
#pragma GCC unroll 8
            for (int a = 0; a < RB * TT; a++) acc[a] = _mm512_fmadd_ps(gs[a], s[a / TT], acc[a]);
        } else {
            gemv512_run(acc, x, row, s, K, j, je, RB, TT, true);
        }
        j = je;
    }
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int t = 0; t < TT; t++) y[t * N + i0 + r] = _mm512_reduce_add_ps(acc[r * TT + t]);
}

#define I8_RB512(TT) ((TT) == 1 ? 8 : 4)
#define I8_TA512(TT) ((TT) <= 4 ? (TT) : ((TT) + 1) / 2) /* tokens in the first pass */

#define DEF_GEMV512_INT8(TT)                                                                               \
    AVX512_FN static void gemv512_int8_##TT(float *y, const float *x, const fw_weight *w) {                \
        const int64_t N = w->rows, K = w->cols, RB = I8_RB512(TT), TA = I8_TA512(TT), nb = (N + RB - 1) / RB; \
        _Pragma("omp parallel for schedule(static) if (N * K >= PAR_MIN_ELEMS)")                           \
        for (int64_t b = 0; b < nb; b++) {                                                                 \
            const int64_t i0 = b * RB;                                                                     \
            if (i0 + RB <= N) {                                                                            \
                gemv512_tile(y, x, w, i0, I8_RB512(TT), I8_TA512(TT));                                     \
                if (TA < (TT)) gemv512_tile(y + TA * N, x + TA * K, w, i0, I8_RB512(TT), (TT) - I8_TA512(TT)); \
            } else {                                                                                       \
                for (int64_t i = i0; i < N; i++) {                                                         \
                    gemv512_tile(y, x, w, i, 1, I8_TA512(TT));                                             \
                    if (TA < (TT)) gemv512_tile(y + TA * N, x + TA * K, w, i, 1, (TT) - I8_TA512(TT));     \
                }                                                                                          \
            }                                                                                              \
        }                                                                                                  \
    }
DEF_GEMV512_INT8(1) DEF_GEMV512_INT8(2) DEF_GEMV512_INT8(3) DEF_GEMV512_INT8(4)
DEF_GEMV512_INT8(5) DEF_GEMV512_INT8(6) DEF_GEMV512_INT8(7) DEF_GEMV512_INT8(8)
static const fw_gemv_fn gemv512_int8_table[FW_GEMV_MAX_T] = {
    gemv512_int8_1, gemv512_int8_2, gemv512_int8_3, gemv512_int8_4,
    gemv512_int8_5, gemv512_int8_6, gemv512_int8_7, gemv512_int8_8};

void fw_cpu_int8_gemv_avx512(float *y, const float *x, const fw_weight *w, int64_t T) {
    fw_gemv_passes(gemv512_int8_table, y, x, w, T);
}

/* GEMM tiles (kernels/cpu/gemm512.h): 16 rows' next 4 bytes gathered as one dword
 * each, byte b of which is column 4 wc + b of its row; the scales are reloaded
 * where a column starts a group. */
AVX512_FN static void int8_fill(float *tile, const fw_weight *w, int64_t n0, int64_t nb, int64_t k0, int64_t kc) {
    const int64_t G = w->group;
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32((int)w->ld));
    for (int64_t h = 0; h < FW_GEMM512_NB && h < nb; h += 16) {
        const int64_t nr = nb - h < 16 ? nb - h : 16;
        const __mmask16 m = (__mmask16)((1u << nr) - 1);
        const int8_t *base = q_row(w, n0 + h) + k0;
        int64_t gnext = 0; /* the tile column where the next group starts */
        __m512 s = _mm512_setzero_ps();
        __m512i v = _mm512_setzero_si512();
        for (int64_t k = 0; k < kc; k++) {
            if (k == gnext) { /* the 16 rows' scales of this column's group (0 past nb) */
                const int64_t g = (w->c0 + k0 + k) / G;
                float f[16] = {0};
                for (int l = 0; l < nr; l++) f[l] = bf16_f32(s_row(w, n0 + h + l)[g]);
                s = _mm512_loadu_ps(f);
                gnext = (g + 1) * G - w->c0 - k0;
            }
            __m512i q;
            if (k % 4 == 0 && k + 4 <= kc) v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, base + k, 1);
            if (k + 4 - k % 4 <= kc) { /* byte k % 4 of the dword, sign-extended */
                q = _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * (int)(k % 4)), 24);
            } else { /* the last columns, fewer than 4: byte by byte */
                int32_t b[16] = {0};
                for (int l = 0; l < nr; l++) b[l] = base[l * w->ld + k];
                q = _mm512_loadu_si512(b);
            }
            _mm512_store_ps(tile + k * FW_GEMM512_NB + h, _mm512_mul_ps(_mm512_cvtepi32_ps(q), s));
        }
    }
}

void fw_cpu_int8_gemm_avx512(float *y, const float *x, const fw_weight *w, int64_t T) {
    fw_cpu_gemm512(y, x, w, T, int8_fill);
}
