/* BF16 and FP8 weights' decode GEMV on AVX512-BF16 (kernels/cpu/fast.h):
 * vdpbf16ps multiplies 32 bf16 pairs straight from BF16 weights, or from FP8 ones
 * widened in registers. The activations are split into three bf16 parts, hi =
 * bf16(x), mid = bf16(x - hi), lo = the rest, whose sum is x exactly, and each part
 * is multiplied: one part (llama.cpp's rounding) moved the golden tiny-a-bf16
 * logits by up to 0.5 of max|logit| (tolerance 1e-3), and two (16 significant
 * bits) moved FP8 logits over tp 2 by more than 1e-5; decode is bound by memory,
 * not by these instructions. A prefill GEMM on two parts ran no faster than
 * AVX-512's exactly widened tiles (gemm512.c), which prefill uses. Both run at any
 * T (tests call them directly). */
#include "kernels/cpu/fast.h"
#include "kernels/cpu/simd.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define BF_TARGET AVX512_TARGET ",avx512bf16,avx512vbmi"
#define BF_FN __attribute__((target(BF_TARGET)))
#define BF_INLINE static inline __attribute__((always_inline, target(BF_TARGET)))


static inline const char *wrow(const fw_weight *w, int64_t i) {
    return (const char *)w->data + (size_t)(i * w->ld) * fw_wtype_size(w->type);
}

/* x[n] -> hi, mid, lo (bf16) with x = hi + mid + lo exactly (each remainder is exact
 * in f32, and the last has at most 8 significant bits), zero-filled to np; nothing
 * is written past np. */
BF_INLINE void split3_bf16(uint16_t *hi, uint16_t *mid, uint16_t *lo, const float *x, int64_t n, int64_t np) {
    for (int64_t j = 0; j < np; j += 16) {
        const __mmask16 m = (__mmask16)(j + 16 <= n ? 0xFFFF : j >= n ? 0 : (1u << (n - j)) - 1);
        const __mmask16 ms = (__mmask16)(j + 16 <= np ? 0xFFFF : (1u << (np - j)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + j);
        const __m256i h = (__m256i)_mm512_cvtneps_pbh(v);
        const __m512 r1 = _mm512_sub_ps(v, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
        const __m256i md = (__m256i)_mm512_cvtneps_pbh(r1);
        const __m512 r2 = _mm512_sub_ps(r1, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(md), 16)));
        _mm256_mask_storeu_epi16(hi + j, ms, h);
        _mm256_mask_storeu_epi16(mid + j, ms, md);
        _mm256_mask_storeu_epi16(lo + j, ms, (__m256i)_mm512_cvtneps_pbh(r2));
    }
}

/* ---- decode GEMV (AVX512-BF16): y[t, i0 + r] for r < RB, t < TT ---- */

/* xs: (TT, 3, Kp) bf16, each token's hi, mid and lo parts, zero past K. */
BF_INLINE void bgv_tile(float *y, const uint16_t *xs, int64_t Kp, const fw_weight *w, int64_t i0, const int RB,
                        const int TT) {
    const int64_t K = w->cols, N = w->rows;
    const uint16_t *row[8];
    __m512 acc[16]; /* (RB, TT) */
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++) row[r] = (const uint16_t *)wrow(w, i0 + r);
#pragma GCC unroll 16
    for (int a = 0; a < RB * TT; a++) acc[a] = _mm512_setzero_ps();
    for (int64_t j = 0; j < K; j += 32) {
        const __mmask32 m = j + 32 <= K ? 0xFFFFFFFFu : (__mmask32)((1u << (K - j)) - 1);
        __m512bh wv[8];
        if (i0 + 2 * RB <= N) /* rows are short streams: fetch the next tile's line now (as fast_matmul.c) */
#pragma GCC unroll 8
            for (int r = 0; r < RB; r++) _mm_prefetch((const char *)(row[r] + RB * w->ld + j), _MM_HINT_T0);
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) wv[r] = (__m512bh)_mm512_maskz_loadu_epi16(m, row[r] + j);
#pragma GCC unroll 4
        for (int t = 0; t < TT; t++) {
            const __m512bh hi = (__m512bh)_mm512_load_si512(xs + (3 * t) * Kp + j);
            const __m512bh md = (__m512bh)_mm512_load_si512(xs + (3 * t + 1) * Kp + j);
            const __m512bh lo = (__m512bh)_mm512_load_si512(xs + (3 * t + 2) * Kp + j);
#pragma GCC unroll 8
            for (int r = 0; r < RB; r++)
                acc[r * TT + t] =
                    _mm512_dpbf16_ps(_mm512_dpbf16_ps(_mm512_dpbf16_ps(acc[r * TT + t], wv[r], hi), wv[r], md), wv[r], lo);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int t = 0; t < TT; t++) y[t * N + i0 + r] = _mm512_reduce_add_ps(acc[r * TT + t]);
}

/* Rows per tile and tokens of the first pass (as fast_int8.c's AVX-512 GEMV): the
 * activations' loads are shared by the tile's rows, at most 16 accumulators, and
 * above 4 tokens a second pass over rows still in cache takes the rest. */
#define BG_RB(TT) ((TT) == 1 ? 8 : 4)
#define BG_TA(TT) ((TT) <= 4 ? (TT) : ((TT) + 1) / 2)

#define DEF_BGV(TT)                                                                                   \
    BF_FN static void bgv_##TT(float *y, const uint16_t *xs, int64_t Kp, const fw_weight *w) {       \
        const int64_t N = w->rows, K = w->cols, RB = BG_RB(TT), TA = BG_TA(TT), nb = (N + RB - 1) / RB; \
        _Pragma("omp parallel for schedule(static) if (N * K >= PAR_MIN_ELEMS)")                     \
        for (int64_t b = 0; b < nb; b++) {                                                           \
            const int64_t i0 = b * RB;                                                               \
            if (i0 + RB <= N) {                                                                      \
                bgv_tile(y, xs, Kp, w, i0, BG_RB(TT), BG_TA(TT));                                    \
                if (TA < (TT)) bgv_tile(y + TA * N, xs + 3 * TA * Kp, Kp, w, i0, BG_RB(TT), (TT) - BG_TA(TT)); \
            } else {                                                                                 \
                for (int64_t i = i0; i < N; i++) {                                                   \
                    bgv_tile(y, xs, Kp, w, i, 1, BG_TA(TT));                                         \
                    if (TA < (TT)) bgv_tile(y + TA * N, xs + 3 * TA * Kp, Kp, w, i, 1, (TT) - BG_TA(TT)); \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }
DEF_BGV(1) DEF_BGV(2) DEF_BGV(3) DEF_BGV(4) DEF_BGV(5) DEF_BGV(6) DEF_BGV(7) DEF_BGV(8)
typedef void (*bgv_fn)(float *y, const uint16_t *xs, int64_t Kp, const fw_weight *w);

/* *buf holds at least need values (64-byte aligned; grown, never shrunk: a
 * thread's scratch kept between calls). False when memory runs out. */
static bool scratch_fit(uint16_t **buf, int64_t *cap, int64_t need) {
    if (need <= *cap) return true;
    uint16_t *nb = aligned_alloc(64, (size_t)need * sizeof(uint16_t));
    if (!nb) return false;
    free(*buf);
    *buf = nb;
    *cap = need;
    return true;
}
static const bgv_fn bgv_table[FW_GEMV_MAX_T] = {bgv_1, bgv_2, bgv_3, bgv_4, bgv_5, bgv_6, bgv_7, bgv_8};

BF_FN bool fw_cpu_bf16_gemv_avx512bf16(float *y, const float *x, const fw_weight *w, int64_t T) {
    const int64_t N = w->rows, K = w->cols, Kp = (K + 31) / 32 * 32;
    /* The split activations of up to FW_GEMV_MAX_T tokens, kept by the calling thread
     * between calls (decode calls this for every weight of every step). */
    static _Thread_local uint16_t *xs;
    static _Thread_local int64_t cap;
    if (!scratch_fit(&xs, &cap, 3 * FW_GEMV_MAX_T * Kp)) return false;
    for (int64_t t0 = 0; t0 < T; t0 += FW_GEMV_MAX_T) {
        const int64_t tt = T - t0 < FW_GEMV_MAX_T ? T - t0 : FW_GEMV_MAX_T;
        for (int64_t t = 0; t < tt; t++)
            split3_bf16(xs + 3 * t * Kp, xs + (3 * t + 1) * Kp, xs + (3 * t + 2) * Kp, x + (t0 + t) * K, K, Kp);
        bgv_table[tt - 1](y + t0 * N, xs, Kp, w);
    }
    return true;
}

/* ---- FP8 (e4m3, 128 x 128 block scales) ---- */

/* e4m3's magnitude m (7 bits) as bf16 bits: normals rebias the exponent (7 -> 127)
 * under the 3 mantissa bits, subnormals (m < 8, m * 2^-9) are normal in bf16, and
 * 0x7F is NaN as in the reference. Every e4m3 value is exact in bf16. */
#define F8_SUB(m) ((m) == 0 ? 0 : (m) == 1 ? 118 << 7 : (m) == 2 ? 119 << 7 : (m) == 3 ? (119 << 7) | 64 \
                   : (m) == 4 ? 120 << 7 : (m) == 5 ? (120 << 7) | 32 : (m) == 6 ? (120 << 7) | 64 : (120 << 7) | 96)
#define F8(m) (uint16_t)((m) == 127 ? 0x7FC0 : (m) >= 8 ? ((m) << 4) + (120 << 7) : F8_SUB(m))
#define F8X8(b) F8(b), F8(b + 1), F8(b + 2), F8(b + 3), F8(b + 4), F8(b + 5), F8(b + 6), F8(b + 7)
static const uint16_t fp8_bf16[128] = {F8X8(0),  F8X8(8),  F8X8(16), F8X8(24), F8X8(32), F8X8(40),
                                       F8X8(48), F8X8(56), F8X8(64), F8X8(72), F8X8(80), F8X8(88),
                                       F8X8(96), F8X8(104), F8X8(112), F8X8(120)};

/* The table's low and high bytes as vpermi2b tables (entries 0-63, 64-127). */
typedef struct f8lut {
    __m512i lo0, lo1, hi0, hi1;
} f8lut;

BF_INLINE f8lut f8_lut(void) {
    f8lut l;
    __m256i b[4], h[4];
    for (int q = 0; q < 4; q++) {
        const __m512i v = _mm512_loadu_si512(fp8_bf16 + 32 * q);
        b[q] = _mm512_cvtepi16_epi8(v);
        h[q] = _mm512_cvtepi16_epi8(_mm512_srli_epi16(v, 8));
    }
    l.lo0 = _mm512_inserti64x4(_mm512_castsi256_si512(b[0]), b[1], 1);
    l.lo1 = _mm512_inserti64x4(_mm512_castsi256_si512(b[2]), b[3], 1);
    l.hi0 = _mm512_inserti64x4(_mm512_castsi256_si512(h[0]), h[1], 1);
    l.hi1 = _mm512_inserti64x4(_mm512_castsi256_si512(h[2]), h[3], 1);
    return l;
}

/* 64 e4m3 at p (m: which to load, the rest 0) as two vectors of 32 bf16: *a holds
 * bytes 0-7, 16-23, 32-39, 48-55 and *b the others (vpunpck's in-lane order; the
 * activations are permuted to match, f8_xperm). */
BF_INLINE void f8_widen(const f8lut *l, const uint8_t *p, __mmask64 m, __m512bh *a, __m512bh *b) {
    const __m512i v = _mm512_maskz_loadu_epi8(m, p);
    const __m512i lo = _mm512_permutex2var_epi8(l->lo0, v, l->lo1);
    const __m512i hi = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(l->hi0, v, l->hi1), v,
                                                 _mm512_set1_epi8((char)0x80), 0xF8); /* hi | (v & 0x80) */
    *a = (__m512bh)_mm512_unpacklo_epi8(lo, hi);
    *b = (__m512bh)_mm512_unpackhi_epi8(lo, hi);
}

/* x[n] -> per 64 columns: hi a, hi b, mid a, mid b, lo a, lo b (32 bf16 each,
 * f8_widen's order), zero past n; np a multiple of 64; tmp holds 3 np. */
BF_INLINE void f8_xperm(uint16_t *out, uint16_t *tmp, const float *x, int64_t n, int64_t np) {
    split3_bf16(tmp, tmp + np, tmp + 2 * np, x, n, np);
    static const uint16_t order[32] = {0,  1,  2,  3,  4,  5,  6,  7,  16, 17, 18, 19, 20, 21, 22, 23,
                                       32, 33, 34, 35, 36, 37, 38, 39, 48, 49, 50, 51, 52, 53, 54, 55};
    const __m512i ia = _mm512_loadu_si512(order);
    const __m512i ib = _mm512_add_epi16(ia, _mm512_set1_epi16(8));
    for (int64_t j = 0; j < np; j += 64)
        for (int h = 0; h < 3; h++) {
            const __m512i v0 = _mm512_loadu_si512(tmp + h * np + j), v1 = _mm512_loadu_si512(tmp + h * np + j + 32);
            _mm512_storeu_si512(out + 3 * j + 64 * h, _mm512_permutex2var_epi16(v0, ia, v1));
            _mm512_storeu_si512(out + 3 * j + 64 * h + 32, _mm512_permutex2var_epi16(v0, ib, v1));
        }
}

/* y[t, i0 + r] for r < RB, t < TT; xs: (TT, 3 Kp) from f8_xperm. The view starts on
 * a 64-column boundary of its scale grid (the caller checks), so a 64-column chunk
 * lies in one block: each block's sums are scaled once. */
BF_INLINE void f8gv_tile(float *y, const uint16_t *xs, int64_t Kp, const fw_weight *w, int64_t i0, const f8lut *l,
                         const int RB, const int TT) {
    const int64_t K = w->cols, N = w->rows;
    const uint8_t *row[4];
    const float *srow[4];
    __m512 tot[8], acc[8]; /* (RB, TT) */
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) {
        row[r] = (const uint8_t *)wrow(w, i0 + r);
        srow[r] = w->scale + ((w->r0 + i0 + r) / FW_FP8_BLOCK) * w->scale_ld;
    }
#pragma GCC unroll 8
    for (int a = 0; a < RB * TT; a++) tot[a] = _mm512_setzero_ps();
    for (int64_t j = 0; j < K;) {
        const int64_t je0 = ((w->c0 + j) / FW_FP8_BLOCK + 1) * FW_FP8_BLOCK - w->c0, je = je0 < K ? je0 : K;
#pragma GCC unroll 8
        for (int a = 0; a < RB * TT; a++) acc[a] = _mm512_setzero_ps();
        for (; j < je; j += 64) {
            const __mmask64 m = j + 64 <= K ? ~(__mmask64)0 : ((__mmask64)1 << (K - j)) - 1;
            __m512bh wa[4], wb[4];
            if (i0 + 2 * RB <= N)
#pragma GCC unroll 4
                for (int r = 0; r < RB; r++) _mm_prefetch((const char *)(row[r] + RB * w->ld + j), _MM_HINT_T0);
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++) f8_widen(l, row[r] + j, m, &wa[r], &wb[r]);
#pragma GCC unroll 8
            for (int t = 0; t < TT; t++) {
                const uint16_t *xt = xs + 3 * t * Kp + 3 * j;
#pragma GCC unroll 4
                for (int r = 0; r < RB; r++) {
                    __m512 s = acc[r * TT + t];
#pragma GCC unroll 3
                    for (int q = 0; q < 3; q++) { /* hi, mid, lo */
                        s = _mm512_dpbf16_ps(s, wa[r], (__m512bh)_mm512_load_si512(xt + 64 * q));
                        s = _mm512_dpbf16_ps(s, wb[r], (__m512bh)_mm512_load_si512(xt + 64 * q + 32));
                    }
                    acc[r * TT + t] = s;
                }
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            const __m512 sc = _mm512_set1_ps(srow[r][(w->c0 + je - 1) / FW_FP8_BLOCK]);
#pragma GCC unroll 8
            for (int t = 0; t < TT; t++) tot[r * TT + t] = _mm512_fmadd_ps(acc[r * TT + t], sc, tot[r * TT + t]);
        }
        j = je;
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 8
        for (int t = 0; t < TT; t++) y[t * N + i0 + r] = _mm512_reduce_add_ps(tot[r * TT + t]);
}

/* As BG_RB/BG_TA with fewer rows: each row holds two widened vectors. */
#define F8_RB(TT) ((TT) == 1 ? 4 : 2)

#define DEF_F8GV(TT)                                                                                  \
    BF_FN static void f8gv_##TT(float *y, const uint16_t *xs, int64_t Kp, const fw_weight *w) {      \
        const int64_t N = w->rows, K = w->cols, RB = F8_RB(TT), TA = BG_TA(TT), nb = (N + RB - 1) / RB; \
        _Pragma("omp parallel if (N * K >= PAR_MIN_ELEMS)") {                                        \
            const f8lut l = f8_lut();                                                                \
            _Pragma("omp for schedule(static)") for (int64_t b = 0; b < nb; b++) {                   \
                const int64_t i0 = b * RB;                                                           \
                if (i0 + RB <= N) {                                                                  \
                    f8gv_tile(y, xs, Kp, w, i0, &l, F8_RB(TT), BG_TA(TT));                           \
                    if (TA < (TT)) f8gv_tile(y + TA * N, xs + 3 * TA * Kp, Kp, w, i0, &l, F8_RB(TT), (TT) - BG_TA(TT)); \
                } else {                                                                             \
                    for (int64_t i = i0; i < N; i++) {                                               \
                        f8gv_tile(y, xs, Kp, w, i, &l, 1, BG_TA(TT));                                \
                        if (TA < (TT)) f8gv_tile(y + TA * N, xs + 3 * TA * Kp, Kp, w, i, &l, 1, (TT) - BG_TA(TT)); \
                    }                                                                                \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }
DEF_F8GV(1) DEF_F8GV(2) DEF_F8GV(3) DEF_F8GV(4) DEF_F8GV(5) DEF_F8GV(6) DEF_F8GV(7) DEF_F8GV(8)
static const bgv_fn f8gv_table[FW_GEMV_MAX_T] = {f8gv_1, f8gv_2, f8gv_3, f8gv_4, f8gv_5, f8gv_6, f8gv_7, f8gv_8};

bool fw_cpu_fp8_gemv_ok(const fw_weight *w) { return w->type == FW_WTYPE_FP8 && w->c0 % 64 == 0; }

BF_FN bool fw_cpu_fp8_gemv_avx512bf16(float *y, const float *x, const fw_weight *w, int64_t T) {
    const int64_t N = w->rows, K = w->cols, Kp = (K + 63) / 64 * 64;
    static _Thread_local uint16_t *xs;
    static _Thread_local int64_t cap;
    if (!fw_cpu_fp8_gemv_ok(w)) return false;
    if (!scratch_fit(&xs, &cap, 3 * (FW_GEMV_MAX_T + 1) * Kp)) return false; /* FW_GEMV_MAX_T tokens, a scratch row */
    uint16_t *tmp = xs + 3 * FW_GEMV_MAX_T * Kp;
    for (int64_t t0 = 0; t0 < T; t0 += FW_GEMV_MAX_T) {
        const int64_t tt = T - t0 < FW_GEMV_MAX_T ? T - t0 : FW_GEMV_MAX_T;
        for (int64_t t = 0; t < tt; t++) f8_xperm(xs + 3 * t * Kp, tmp, x + (t0 + t) * K, K, Kp);
        f8gv_table[tt - 1](y + t0 * N, xs, Kp, w);
    }
    return true;
}
