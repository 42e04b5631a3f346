/* INT4 matmuls of the fast CPU ops (compressed-tensors pack-quantized weights:
 * int32 words of 8 nibbles q + 8, lowest column in the lowest nibble, a bf16 scale
 * per row and group of columns). The packed words are unpacked in registers and
 * never widened into a copy of the weights in memory; the weights stay exact
 * (q * scale in f32, or q alone with the group scale applied to its sum). */
#include "kernels/cpu/fast_int4.h"
#include "kernels/cpu/fast.h"
#include "kernels/cpu/gemm512.h"
#include "kernels/cpu/simd.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static inline int64_t omp_threads(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

static inline int64_t omp_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* The 8 int4 values of one packed word, in column order, as f32 (-8..7). */
AVX2_INLINE __m256 ld_int4_word(uint32_t word) {
    __m256i v = _mm256_srlv_epi32(_mm256_set1_epi32((int)word), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    v = _mm256_sub_epi32(_mm256_and_si256(v, _mm256_set1_epi32(15)), _mm256_set1_epi32(8));
    return _mm256_cvtepi32_ps(v);
}

AVX2_FN void fw_cpu_int4_widen_avx2(float *out, const fw_weight *w, int64_t i, int64_t j0, int64_t n) {
    /* A word's 8 columns share one scale: groups are whole words. */
    const uint32_t *p = (const uint32_t *)w->data + i * w->ld + (w->c0 + j0) / 8;
    const uint16_t *sc = w->gscale + i * w->scale_ld;
    for (int64_t j = 0; j < n; j += 8) {
        const __m256 s = _mm256_set1_ps(bf16_f32(sc[(w->c0 + j0 + j) / w->group]));
        _mm256_storeu_ps(out + j, _mm256_mul_ps(ld_int4_word(p[j / 8]), s));
    }
}

/* Rows per tile and tokens per pass as fast_matmul.c's GEMV: above 4 tokens a
 * tile of rows is run twice, for each half of the tokens (the second pass finds
 * the rows in L1). */
#define GEMV_TA(TT) ((TT) <= 4 ? (TT) : ((TT) + 1) / 2) /* tokens in the first pass */

/* ---- AVX2 GEMV ----
 *
 * A 64-column block of a row is 8 words, one vector load. Nibble k of every word
 * (v & 15, then v >>= 4) is column 8w + k of word w, so x is permuted once per
 * call (int4_prep) to meet those lanes with one load. A lane holds one word, and a
 * word's 8 columns share one group scale, so with n = q + 8 in [0, 15] each lane
 * sums n * x over the block and the scale is applied once per block:
 *   sum_c q_c s x_c = s * (sum_c n_c x_c - 8 sum_c x_c).
 * The -8 sum x of every word is the same for all rows: int4_prep forms it once and
 * it starts each block's sum. Weights stay exact (n and s are f32); only the order
 * of the f32 additions differs from the plain dot product. */

/* One call's prepared x: xp[t, 64b + 8k + w] = x[t, 64b + 8w + k] (a tail under
 * 64 columns as it is), xs[t, 8b + w] = -8 * (sum over word w of block b of x[t]),
 * and gi[8b + w] = the group of word w of block b. */
typedef struct {
    float *xp;   /* (T, K) */
    float *xs;   /* (T, K64 / 8) */
    int32_t *gi; /* (K64 / 8) */
} int4_x;

/* For 1 or 2 tokens the unpacking dominates: nibble k is converted in place, as
 * n * 16^k (exact; the top nibble, which would read as negative, is shifted down
 * instead), without the shift per nibble, and its x carries the 16^-k (exact
 * unless |x| < 2^-102). With more tokens the masks' registers cost more than the
 * shifts save. */
static const float int4_xk_scale[8] = {1.0f, 0x1p-4f, 0x1p-8f, 0x1p-12f, 0x1p-16f, 0x1p-20f, 0x1p-24f, 1.0f};

static void int4_prep(int4_x *p, const float *x, const fw_weight *w, int64_t T) {
    const int64_t K = w->cols, K64 = K / 64 * 64;
    for (int64_t t = 0; t < T; t++) {
        const int64_t chunk = T - t / FW_GEMV_MAX_T * FW_GEMV_MAX_T; /* tokens left from t's kernel call on */
        const float *xt = x + t * K;
        float *pt = p->xp + t * K, *st = p->xs + t * (K64 / 8);
        for (int64_t b = 0; b < K64; b += 64)
            for (int wd = 0; wd < 8; wd++) {
                float s = 0;
                for (int k = 0; k < 8; k++) {
                    pt[b + 8 * k + wd] = xt[b + 8 * wd + k] * (chunk <= 2 ? int4_xk_scale[k] : 1.0f);
                    s += xt[b + 8 * wd + k];
                }
                st[b / 8 + wd] = -8.0f * s;
            }
        memcpy(pt + K64, xt + K64, (size_t)(K - K64) * sizeof(float));
    }
    for (int64_t c = 0; c < K64; c += 8) p->gi[c / 8] = (int32_t)((w->c0 + c) / w->group);
}

/* y[t, i0 + r] for r < RB, t < TT, from the prepared x. P partial sums per
 * output when there are few outputs, so the FMA chains overlap. */
AVX2_INLINE void gemv_int4_tile(float *y, const int4_x *p, int64_t t0, const fw_weight *w, int64_t i0,
                                const int RB, const int TT, const bool inplace) {
    const int64_t K = w->cols, N = w->rows, K64 = K / 64 * 64, G = w->group, c0 = w->c0;
    const float *xp = p->xp + t0 * K, *xs = p->xs + t0 * (K64 / 8);
    const int P = TT <= 1 ? 2 : 1;
    /* Lanes 0-3 and 4-7 each within one group: two scales per block. */
    const bool halves = G % 32 == 0 && c0 % 32 == 0;
    __m256 tot[8]; /* (RB, TT) */
#pragma GCC unroll 8
    for (int a = 0; a < RB * TT; a++) tot[a] = _mm256_setzero_ps();
    for (int64_t j = 0; j < K64; j += 64) {
        const int32_t *gb = p->gi + j / 8;
        __m256i v[4];
        __m256 acc[16]; /* (RB, TT, P) */
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            v[r] = _mm256_loadu_si256((const __m256i *)((const uint32_t *)w->data + (i0 + r) * w->ld + (c0 + j) / 8));
#pragma GCC unroll 8
            for (int t = 0; t < TT; t++) {
                acc[(r * TT + t) * P] = _mm256_loadu_ps(xs + t * (K64 / 8) + j / 8);
                if (P == 2) acc[(r * TT + t) * P + 1] = _mm256_setzero_ps();
            }
        }
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++) {
                __m256i q;
                if (inplace) {
                    q = k < 7 ? _mm256_and_si256(v[r], _mm256_set1_epi32(15 << 4 * k)) : _mm256_srli_epi32(v[r], 28);
                } else {
                    q = _mm256_and_si256(v[r], _mm256_set1_epi32(15));
                    v[r] = _mm256_srli_epi32(v[r], 4);
                }
                const __m256 n = _mm256_cvtepi32_ps(q);
#pragma GCC unroll 8
                for (int t = 0; t < TT; t++) {
                    __m256 *a = &acc[(r * TT + t) * P + k % P];
                    *a = _mm256_fmadd_ps(n, _mm256_loadu_ps(xp + t * K + j + 8 * k), *a);
                }
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            const uint16_t *sc = w->gscale + (i0 + r) * w->scale_ld;
            __m256 s;
            if (halves) {
                s = _mm256_set_m128(_mm_set1_ps(bf16_f32(sc[gb[4]])), _mm_set1_ps(bf16_f32(sc[gb[0]])));
            } else {
                float f[8];
                for (int q = 0; q < 8; q++) f[q] = bf16_f32(sc[gb[q]]);
                s = _mm256_loadu_ps(f);
            }
#pragma GCC unroll 8
            for (int t = 0; t < TT; t++) {
                __m256 a = acc[(r * TT + t) * P];
                if (P == 2) a = _mm256_add_ps(a, acc[(r * TT + t) * P + 1]);
                tot[r * TT + t] = _mm256_fmadd_ps(a, s, tot[r * TT + t]);
            }
        }
    }
    for (int64_t j = K64; j < K; j += 8) { /* whole words in column order */
#pragma GCC unroll 4
        for (int r = 0; r < RB; r++) {
            const uint32_t word = ((const uint32_t *)w->data)[(i0 + r) * w->ld + (c0 + j) / 8];
            const __m256 s = _mm256_set1_ps(bf16_f32(w->gscale[(i0 + r) * w->scale_ld + (c0 + j) / G]));
            const __m256 wv = _mm256_mul_ps(ld_int4_word(word), s);
#pragma GCC unroll 8
            for (int t = 0; t < TT; t++)
                tot[r * TT + t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xp + t * K + j), tot[r * TT + t]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 8
        for (int t = 0; t < TT; t++) y[t * N + i0 + r] = hsum8(tot[r * TT + t]);
}

#define INT4_RB(TT) ((TT) <= 2 ? 4 : 2)

#define DEF_GEMV_INT4(TT)                                                                              \
    AVX2_FN static void gemv_int4_##TT(float *y, const int4_x *p, int64_t t0, const fw_weight *w) {   \
        const int64_t N = w->rows, K = w->cols, nb = (N + INT4_RB(TT) - 1) / INT4_RB(TT);             \
        const int64_t TA = GEMV_TA(TT);                                                                \
        _Pragma("omp parallel for schedule(static) if (N * K >= PAR_MIN_ELEMS)")                       \
        for (int64_t b = 0; b < nb; b++) {                                                             \
            const int64_t i0 = b * INT4_RB(TT);                                                        \
            if (i0 + INT4_RB(TT) <= N) {                                                               \
                gemv_int4_tile(y, p, t0, w, i0, INT4_RB(TT), GEMV_TA(TT), (TT) <= 2);                  \
                if (TA < (TT))                                                                         \
                    gemv_int4_tile(y + TA * N, p, t0 + TA, w, i0, INT4_RB(TT), (TT) - GEMV_TA(TT), false); \
            } else {                                                                                   \
                for (int64_t i = i0; i < N; i++) {                                                     \
                    gemv_int4_tile(y, p, t0, w, i, 1, GEMV_TA(TT), (TT) <= 2);                         \
                    if (TA < (TT)) gemv_int4_tile(y + TA * N, p, t0 + TA, w, i, 1, (TT) - GEMV_TA(TT), false); \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }
DEF_GEMV_INT4(1) DEF_GEMV_INT4(2) DEF_GEMV_INT4(3) DEF_GEMV_INT4(4)
DEF_GEMV_INT4(5) DEF_GEMV_INT4(6) DEF_GEMV_INT4(7) DEF_GEMV_INT4(8)

typedef void (*gemv_int4_fn)(float *y, const int4_x *p, int64_t t0, const fw_weight *w);
static const gemv_int4_fn gemv_int4_table[FW_GEMV_MAX_T] = {gemv_int4_1, gemv_int4_2, gemv_int4_3, gemv_int4_4,
                                                            gemv_int4_5, gemv_int4_6, gemv_int4_7, gemv_int4_8};

bool fw_cpu_int4_gemv_avx2(float *y, const float *x, const fw_weight *w, int64_t T) {
    const int64_t N = w->rows, K = w->cols, K64 = K / 64 * 64;
    /* One buffer: xp (T * K floats), xs (T * K64 / 8 floats), gi (K64 / 8 ints). */
    const size_t nf = (size_t)(T * K + T * K64 / 8), bytes = nf * sizeof(float) + (size_t)(K64 / 8) * sizeof(int32_t);
    float *buf = malloc(bytes > 0 ? bytes : 1);
    if (!buf) return false;
    int4_x p = {.xp = buf, .xs = buf + T * K, .gi = (int32_t *)(buf + nf)};
    int4_prep(&p, x, w, T);
    for (int64_t t0 = 0; t0 < T; t0 += FW_GEMV_MAX_T) {
        int64_t tt = T - t0 < FW_GEMV_MAX_T ? T - t0 : FW_GEMV_MAX_T;
        gemv_int4_table[tt - 1](y + t0 * N, &p, t0, w);
    }
    free(buf);
    return true;
}

/* ---- AVX2 matmul_xw: y[T, N] = x[T, K] . W, W [K, N] (absorbed attention) ----
 * As the AVX-512 one below, on 64-column blocks (8 words) for one token at a time. */
AVX2_INLINE void xw2_tile(float *y, const float *x, const fw_weight *w, int64_t t, int64_t b) {
    const int64_t K = w->rows, N = w->cols, G = w->group, nc = N - 64 * b;
    const int64_t ga = (w->c0 + 64 * b) / G, glast = (w->c0 + N - 1) / G;
    int32_t gl[8];
    for (int l = 0; l < 8; l++) {
        const int64_t g = (w->c0 + 64 * b + 8 * l) / G;
        gl[l] = (int32_t)((g < glast ? g : glast) - ga);
    }
    const __m256i gli = _mm256_loadu_si256((const __m256i *)gl), m15 = _mm256_set1_epi32(15);
    const __m256i wm = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(nc / 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 acc[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) acc[k] = _mm256_setzero_ps();
    const int32_t *wb = (const int32_t *)w->data + (w->c0 + 64 * b) / 8;
    for (int64_t i = 0; i < K; i++) {
        const __m256i v = _mm256_maskload_epi32(wb + i * w->ld, wm);
        float sv[8];
        for (int g = 0; g <= gl[7]; g++) sv[g] = bf16_f32(w->gscale[i * w->scale_ld + ga + g]);
        const __m256 s = _mm256_permutevar8x32_ps(_mm256_loadu_ps(sv), gli);
        const __m256 s8 = _mm256_mul_ps(s, _mm256_set1_ps(-8.0f)), xb = _mm256_set1_ps(x[t * K + i]);
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) { /* (n - 8) * s, exact: n * s - 8 s in one rounding */
            const __m256 n = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(v, 4 * k), m15));
            acc[k] = _mm256_fmadd_ps(_mm256_fmadd_ps(n, s, s8), xb, acc[k]);
        }
    }
    float o[8][8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) _mm256_storeu_ps(o[k], acc[k]);
    float *yt = y + t * N + 64 * b;
    for (int64_t c = 0; c < 64 && c < nc; c++) yt[c] = o[c % 8][c / 8];
}

AVX2_FN void fw_cpu_int4_xw_avx2(float *y, const float *x, const fw_weight *w, int64_t T) {
    const int64_t N = w->cols, nblk = (N + 63) / 64;
#pragma omp parallel for collapse(2) schedule(static) if (w->rows * N * T >= PAR_MIN_ELEMS)
    for (int64_t b = 0; b < nblk; b++)
        for (int64_t t = 0; t < T; t++) xw2_tile(y, x, w, t, b);
}

/* ---- AVX-512 GEMV ----
 * A block is 128 columns, 16 words, one vector: lane l holds word l, and nibble k of
 * every lane meets x[128 b + 8 l + k], which the call's prepared x keeps at 16 k + l
 * of the block. A 16-entry table (vpermps reads 4 index bits) turns the nibbles
 * into q as f32, times the lanes' group scales (exact: q has 4 bits, the scale 8):
 * one vector of weights serves every token of the tile, and only the rows' sums
 * stay in registers. Measured against two other unpackings on Zen 5
 * (PERFORMANCE.md): q as bf16 with x split into two bf16 halves (vdpbf16ps) ran as
 * fast at one token, no faster above, and is not exact; x quantized to int8
 * (vpdpbusd, llama.cpp's Q4_0 x Q8_0) runs faster from 4 tokens on but misses the
 * kernel tests' bounds by orders of magnitude. */

#define I4_CH 2048 /* columns whose group scales are widened at a time, per row of a tile */

/* One call's prepared x and the group of each lane: lane l of block b belongs to
 * group gb[b] + gl[16 b + l] (relative to the view's first group; lanes past the
 * last column keep the last group, and their x is 0). */
typedef struct i4p {
    float *xp;     /* (T, nblk, 128) */
    int32_t *gb;   /* (nblk) */
    int32_t *gl;   /* (nblk, 16) */
    int64_t nblk;
    int64_t chunk; /* blocks per column chunk */
} i4p;

static void i4_prep(i4p *p, const float *x, const fw_weight *w, int64_t T) {
    const int64_t K = w->cols, G = w->group, g0 = w->c0 / G, glast = (w->c0 + K - 1) / G - g0;
    for (int64_t b = 0; b < p->nblk; b++) {
        p->gb[b] = (int32_t)((w->c0 + 128 * b) / G - g0);
        for (int l = 0; l < 16; l++) {
            const int64_t g = (w->c0 + 128 * b + 8 * l) / G - g0;
            p->gl[b * 16 + l] = (int32_t)((g < glast ? g : glast) - p->gb[b]);
        }
    }
    for (int64_t t = 0; t < T; t++)
        for (int64_t b = 0; b < p->nblk; b++) {
            float *d = p->xp + (t * p->nblk + b) * 128;
            for (int l = 0; l < 16; l++)
                for (int k = 0; k < 8; k++) {
                    const int64_t c = 128 * b + 8 * l + k;
                    d[16 * k + l] = c < K ? x[t * K + c] : 0.0f;
                }
        }
}

/* The f32 scales of groups [ga, ge] of rows i0 .. i0 + RB, sf[r * SFL + g - ga]; the
 * next tile's scale rows are fetched meanwhile (short streams, as the rows). */
#define SFL (I4_CH / 8 + 32)
AVX512_INLINE void widen_scales(float *sf, const fw_weight *w, int64_t i0, int RB, int64_t ga, int64_t ge, bool pf) {
    const int64_t g0 = w->c0 / w->group, n = ge - ga + 1;
    for (int r = 0; r < RB; r++) {
        const uint16_t *sc = w->gscale + (i0 + r) * w->scale_ld + g0 + ga;
        for (int64_t g = 0; g < n; g += 16) {
            const __mmask16 m = (__mmask16)(n - g >= 16 ? 0xFFFF : (1u << (n - g)) - 1);
            const __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, sc + g));
            _mm512_storeu_ps(sf + r * SFL + g, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
            if (pf && g % 32 == 0) _mm_prefetch((const char *)(sc + RB * w->scale_ld + g), _MM_HINT_T0);
        }
    }
}

/* y[t, i0 + r] (+)= the tile's sums over blocks [cb, ce), for r < RB, t < TT
 * (stored on the first chunk, added on the others). */
AVX512_INLINE void gemv512_tile(float *y, const i4p *p, int64_t t0, const fw_weight *w, int64_t i0, int64_t cb,
                                int64_t ce, const int RB, const int TT) {
    const int64_t K = w->cols, N = w->rows, nblk = p->nblk;
    const __m512 tab = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    const uint32_t *row[8];
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++) row[r] = (const uint32_t *)w->data + (i0 + r) * w->ld + w->c0 / 8;
    __m512 acc[16]; /* (RB, TT) */
#pragma GCC unroll 16
    for (int a = 0; a < RB * TT; a++) acc[a] = _mm512_setzero_ps();
    float sf[8 * SFL];
    /* The rows are short streams: fetch the next tile's bytes of each block while
     * this one runs, rather than wait for the prefetchers to find each row. */
    const bool pf = i0 + 2 * RB <= N;
    const int64_t pfd = RB * w->ld * 4;
    for (int64_t ch = cb; ch < ce; ch += I4_CH / 128) {
        const int64_t be = ch + I4_CH / 128 < ce ? ch + I4_CH / 128 : ce;
        const int64_t ga = p->gb[ch];
        widen_scales(sf, w, i0, RB, ga, p->gb[be - 1] + p->gl[(be - 1) * 16 + 15], pf);
        for (int64_t b = ch; b < be; b++) {
            const int64_t nc = K - 128 * b;
            __m512i v[8];
            __m512 s[8];
#pragma GCC unroll 8
            for (int r = 0; r < RB; r++) {
                if (pf) _mm_prefetch((const char *)(row[r] + 16 * b) + pfd, _MM_HINT_T0);
                v[r] = nc >= 128 ? _mm512_loadu_si512(row[r] + 16 * b)
                                 : _mm512_maskz_loadu_epi32((__mmask16)((1u << (nc / 8)) - 1), row[r] + 16 * b);
                s[r] = _mm512_permutexvar_ps(_mm512_loadu_si512(p->gl + b * 16),
                                             _mm512_loadu_ps(sf + r * SFL + p->gb[b] - ga));
            }
            if (TT == 1) {
                /* q . x per lane over the block, then times the lane's scale: a multiply
                 * per block and row instead of one per nibble (exact weights still; only
                 * where the rounding falls changes, as in the AVX2 GEMV). */
                __m512 bs[8];
#pragma GCC unroll 8
                for (int r = 0; r < RB; r++) bs[r] = _mm512_setzero_ps();
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) {
                    const __m512 xv = _mm512_loadu_ps(p->xp + (t0 * nblk + b) * 128 + 16 * k);
#pragma GCC unroll 8
                    for (int r = 0; r < RB; r++)
                        bs[r] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v[r], 4 * k), tab), xv, bs[r]);
                }
#pragma GCC unroll 8
                for (int r = 0; r < RB; r++) acc[r] = _mm512_fmadd_ps(bs[r], s[r], acc[r]);
                continue;
            }
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                __m512 xv[8];
#pragma GCC unroll 8
                for (int t = 0; t < TT; t++) xv[t] = _mm512_loadu_ps(p->xp + ((t0 + t) * nblk + b) * 128 + 16 * k);
#pragma GCC unroll 8
                for (int r = 0; r < RB; r++) {
                    const __m512 q = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v[r], 4 * k), tab), s[r]);
#pragma GCC unroll 8
                    for (int t = 0; t < TT; t++) acc[r * TT + t] = _mm512_fmadd_ps(q, xv[t], acc[r * TT + t]);
                }
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 8
        for (int t = 0; t < TT; t++) {
            float *yo = y + (t0 + t) * N + i0 + r;
            *yo = (cb == 0 ? 0.0f : *yo) + _mm512_reduce_add_ps(acc[r * TT + t]);
        }
}

/* Rows per tile: 8 for one token, else 4 (tokens in passes of at most 4, whose
 * second finds the rows in L1). Each thread runs its share of the row tiles over a
 * chunk of columns, then the next chunk: x's chunk (for every token of the call)
 * stays in L1 while the rows stream past it. */
#define I4_RB(TT) ((TT) == 1 ? 8 : 4)
#define DEF_GEMV_512(TT)                                                                                       \
    AVX512_FN static void gemv512_##TT(float *y, const i4p *p, int64_t t0, const fw_weight *w) {               \
        const int64_t N = w->rows, K = w->cols, nb = (N + I4_RB(TT) - 1) / I4_RB(TT), TA = GEMV_TA(TT);        \
        _Pragma("omp parallel if (N * K >= PAR_MIN_ELEMS)") {                                                  \
            const int64_t nth = omp_threads(), id = omp_id();                                                  \
            const int64_t ba = nb * id / nth, bz = nb * (id + 1) / nth;                                        \
            for (int64_t cb = 0; cb < p->nblk; cb += p->chunk) {                                               \
                const int64_t ce = cb + p->chunk < p->nblk ? cb + p->chunk : p->nblk;                          \
                for (int64_t b = ba; b < bz; b++) {                                                            \
                    const int64_t i0 = b * I4_RB(TT);                                                          \
                    if (i0 + I4_RB(TT) <= N) {                                                                 \
                        gemv512_tile(y, p, t0, w, i0, cb, ce, I4_RB(TT), TA);                                  \
                        if (TA < (TT)) gemv512_tile(y, p, t0 + TA, w, i0, cb, ce, I4_RB(TT), (TT) - TA);       \
                    } else {                                                                                   \
                        for (int64_t i = i0; i < N; i++) {                                                     \
                            gemv512_tile(y, p, t0, w, i, cb, ce, 1, TA);                                       \
                            if (TA < (TT)) gemv512_tile(y, p, t0 + TA, w, i, cb, ce, 1, (TT) - TA);            \
                        }                                                                                      \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }
DEF_GEMV_512(1) DEF_GEMV_512(2) DEF_GEMV_512(3) DEF_GEMV_512(4)
DEF_GEMV_512(5) DEF_GEMV_512(6) DEF_GEMV_512(7) DEF_GEMV_512(8)
static void (*const gemv512_table[FW_GEMV_MAX_T])(float *, const i4p *, int64_t, const fw_weight *) = {
    gemv512_1, gemv512_2, gemv512_3, gemv512_4, gemv512_5, gemv512_6, gemv512_7, gemv512_8};

bool fw_cpu_int4_gemv_avx512(float *y, const float *x, const fw_weight *w, int64_t T) {
    const int64_t nblk = (w->cols + 127) / 128;
    /* One buffer: xp, gb, gl. */
    const size_t xbytes = (size_t)(T * nblk) * 128 * sizeof(float);
    char *buf = aligned_alloc(64, (xbytes + (size_t)nblk * 17 * 4 + 63) / 64 * 64);
    if (!buf) return false;
    /* A column chunk holds x of the call's tokens (at most FW_GEMV_MAX_T at a time) in 32 KB of L1. */
    const int64_t tk = T < FW_GEMV_MAX_T ? T : FW_GEMV_MAX_T, per = (32 << 10) / (128 * 4 * tk);
    i4p p = {.xp = (float *)buf, .gb = (int32_t *)(buf + xbytes), .nblk = nblk, .chunk = per > 0 ? per : 1};
    p.gl = p.gb + nblk;
    i4_prep(&p, x, w, T);
    for (int64_t t0 = 0; t0 < T; t0 += FW_GEMV_MAX_T) {
        const int64_t tt = T - t0 < FW_GEMV_MAX_T ? T - t0 : FW_GEMV_MAX_T;
        gemv512_table[tt - 1](y, &p, t0, w);
    }
    free(buf);
    return true;
}

/* ---- AVX-512 matmul_xw: y[T, N] = x[T, K] . W, W [K, N] (absorbed attention) ----
 * A tile is one 128-column block of y for up to 3 tokens: every row of W adds its
 * block (unpacked as the GEMV's, scales folded in) times x[t, i] to 8 accumulators
 * per token, nibble k of lane l being column 8 l + k; the block is put back in
 * column order once at the end. */
AVX512_INLINE void xw512_tile(float *y, const float *x, const fw_weight *w, int64_t t0, int64_t b,
                              const int TT) {
    const int64_t K = w->rows, N = w->cols, G = w->group, nc = N - 128 * b;
    const __m512 tab = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    /* The block's lanes' groups, relative to the first (lanes past N keep the last). */
    const int64_t ga = (w->c0 + 128 * b) / G, glast = (w->c0 + N - 1) / G;
    int32_t gl[16];
    for (int l = 0; l < 16; l++) {
        const int64_t g = (w->c0 + 128 * b + 8 * l) / G;
        gl[l] = (int32_t)((g < glast ? g : glast) - ga);
    }
    const __m512i gli = _mm512_loadu_si512(gl);
    const __mmask16 gm = (__mmask16)((1u << (gl[15] + 1)) - 1);
    const __mmask16 wm = (__mmask16)(nc >= 128 ? 0xFFFF : (1u << (nc / 8)) - 1);
    __m512 acc[24]; /* (TT, 8) */
#pragma GCC unroll 24
    for (int a = 0; a < TT * 8; a++) acc[a] = _mm512_setzero_ps();
    const uint32_t *wb = (const uint32_t *)w->data + (w->c0 + 128 * b) / 8;
    for (int64_t i = 0; i < K; i++) {
        const __m512i v = _mm512_maskz_loadu_epi32(wm, wb + i * w->ld);
        const __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(gm, w->gscale + i * w->scale_ld + ga));
        const __m512 s = _mm512_permutexvar_ps(gli, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
        __m512 xb[3];
#pragma GCC unroll 3
        for (int t = 0; t < TT; t++) xb[t] = _mm512_set1_ps(x[(t0 + t) * K + i]);
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            const __m512 q = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4 * k), tab), s);
#pragma GCC unroll 3
            for (int t = 0; t < TT; t++) acc[t * 8 + k] = _mm512_fmadd_ps(q, xb[t], acc[t * 8 + k]);
        }
    }
#pragma GCC unroll 3
    for (int t = 0; t < TT; t++) {
        float o[8][16];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) _mm512_storeu_ps(o[k], acc[t * 8 + k]);
        float *yt = y + (t0 + t) * N + 128 * b;
        for (int64_t c = 0; c < 128 && c < nc; c++) yt[c] = o[c % 8][c / 8];
    }
}

AVX512_FN void fw_cpu_int4_xw_avx512(float *y, const float *x, const fw_weight *w, int64_t T) {
    const int64_t N = w->cols, nblk = (N + 127) / 128, ntg = (T + 2) / 3;
#pragma omp parallel for collapse(2) schedule(static) if (w->rows * N * T >= PAR_MIN_ELEMS)
    for (int64_t b = 0; b < nblk; b++)
        for (int64_t g = 0; g < ntg; g++) {
            const int64_t t0 = 3 * g;
            switch (T - t0 < 3 ? T - t0 : 3) {
            case 3: xw512_tile(y, x, w, t0, b, 3); break;
            case 2: xw512_tile(y, x, w, t0, b, 2); break;
            default: xw512_tile(y, x, w, t0, b, 1); break;
            }
        }
}

/* ---- AVX-512 GEMM (prefill): kernels/cpu/gemm512.c's, on tiles unpacked here ---- */

/* tile[k * FW_GEMM512_NB + r] = W[n0 + r, k0 + k] (q * scale, exact in f32) for
 * r < nb, k < kc; rows past nb are 0. 16 rows' words of a column are gathered at
 * once: nibble k of each is column 8 wc + k of its row. */
AVX512_FN static void int4_fill(float *tile, const fw_weight *w, int64_t n0, int64_t nb, int64_t k0, int64_t kc) {
    const __m512 tab = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    const int64_t G = w->group;
    for (int64_t h = 0; h < FW_GEMM512_NB && h < nb; h += 16) {
        const __mmask16 m = (__mmask16)(nb - h >= 16 ? 0xFFFF : (1u << (nb - h)) - 1);
        const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                               _mm512_set1_epi32((int)w->ld));
        const uint32_t *base = (const uint32_t *)w->data + (n0 + h) * w->ld + (w->c0 + k0) / 8;
        int64_t g = -1;
        __m512 s = _mm512_setzero_ps();
        for (int64_t wc = 0; wc < kc / 8; wc++) {
            const int64_t gc = (w->c0 + k0 + 8 * wc) / G;
            if (gc != g) { /* the 16 rows' scales of this group (0 past nb) */
                float f[16] = {0};
                for (int l = 0; l < 16 && h + l < nb; l++) f[l] = bf16_f32(w->gscale[(n0 + h + l) * w->scale_ld + gc]);
                s = _mm512_loadu_ps(f);
                g = gc;
            }
            const __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, base + wc, 4);
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++)
                _mm512_store_ps(tile + (8 * wc + k) * FW_GEMM512_NB + h,
                                _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4 * k), tab), s));
        }
    }
}

bool fw_cpu_int4_gemm_avx512(float *y, const float *x, const fw_weight *w, int64_t T) {
    fw_cpu_gemm512(y, x, w, T, int4_fill);
    return true;
}
