/* matmul and matmul_xw for the fast CPU ops.
 *
 * Decode (T <= FW_GEMV_MAX_T) is memory-bound: each weight row is streamed from
 * memory once for all T tokens and widened in registers (bf16: shift into the
 * high half; fp8: rebias into f16 and convert with F16C); FP8 partial sums are
 * scaled once per 128-column block. Prefill is compute-bound: a panel of W is
 * widened (scales applied) into a thread-local f32 tile, x is packed by column
 * panels, and an FMA micro-kernel of GEMM_MR tokens x GEMM_NR rows runs over
 * them. OpenMP splits output rows (and tokens when the rows are too few).
 *
 * Measured on the 2-core Zen 3 (kernels/cpu/bench_kernels): decode BF16 ~27 GB/s of
 * weights (~90% of a read-only stream); FP8 ~15-18 GB/s, bound by the widening
 * (vcvtph2ps), not memory, but still more weights per second than BF16; prefill
 * ~130-155 GFLOP/s of a measured 200 GFLOP/s FMA peak. */
#include "kernels/cpu/fast.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/fast_int4.h"
#include "kernels/cpu/gemm512.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static inline const char *wrow(const fw_weight *w, int64_t i) {
    return (const char *)w->data + (size_t)(i * w->ld) * fw_wtype_size(w->type);
}

/* The block scale of view element (i, j). */
static inline float fp8_scale(const fw_weight *w, int64_t i, int64_t j) {
    return w->scale[((w->r0 + i) / FW_FP8_BLOCK) * w->scale_ld + (w->c0 + j) / FW_FP8_BLOCK];
}

/* End (view column, exclusive) of the FP8 scale block holding view column j, capped at n. */
static inline int64_t fp8_seg_end(const fw_weight *w, int64_t j, int64_t n) {
    int64_t e = ((w->c0 + j) / FW_FP8_BLOCK + 1) * FW_FP8_BLOCK - w->c0;
    return e < n ? e : n;
}

/* e4m3fn -> f32 without ldexpf: the 7 magnitude bits placed at the top of an f32
 * mantissa/exponent give the value times 2^-120 (subnormals included). */
static inline float fp8_to_f32_fast(uint8_t b) {
    uint32_t u = (uint32_t)(b & 0x7F) << 20;
    float f;
    memcpy(&f, &u, 4);
    f *= 0x1p120f;
    if ((b & 0x7F) == 0x7F) f = NAN;
    return (b & 0x80) ? -f : f;
}

static void widen_row_generic(float *out, const fw_weight *w, int64_t i, int64_t j0, int64_t n) {
    const char *row = wrow(w, i);
    switch (w->type) {
    case FW_WTYPE_F32: memcpy(out, (const float *)row + j0, (size_t)n * sizeof(float)); break;
    case FW_WTYPE_BF16:
        for (int64_t j = 0; j < n; j++) out[j] = fw_bf16_to_f32(((const uint16_t *)row)[j0 + j]);
        break;
    case FW_WTYPE_FP8:
        for (int64_t j = 0; j < n;) {
            int64_t e = fp8_seg_end(w, j0 + j, j0 + n) - j0;
            float s = fp8_scale(w, i, j0 + j);
            for (; j < e; j++) out[j] = fp8_to_f32_fast(((const uint8_t *)row)[j0 + j]) * s;
        }
        break;
    case FW_WTYPE_INT4: {
        const uint32_t *p = (const uint32_t *)row;
        const uint16_t *sc = w->gscale + i * w->scale_ld;
        for (int64_t j = 0; j < n; j++) {
            const int64_t c = w->c0 + j0 + j;
            out[j] = (float)fw_int4_get(p[c / 8], (int)(c % 8)) * fw_bf16_to_f32(sc[c / w->group]);
        }
        break;
    }
    case FW_WTYPE_INT8: fw_cpu_int8_widen_generic(out, w, i, j0, n); break;
    }
}

/* ---- AVX2 building blocks ---- */

AVX2_INLINE __m256 ld_bf16(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* 8 e4m3fn values as f32 / 256: (b << 8) >> 1 (arithmetic) puts e4m3's exponent and
 * mantissa where f16 keeps them; clearing the copied sign bit leaves an f16 whose
 * value is the fp8 value times 2^-8 (the bias differs by 8), subnormals included.
 * The 2^8 goes into the block scale. (0x7F, NaN in e4m3fn, reads as 480.) */
AVX2_INLINE __m256 ld_fp8(const uint8_t *p) {
    __m128i h = _mm_unpacklo_epi8(_mm_setzero_si128(), _mm_loadl_epi64((const __m128i *)p));
    h = _mm_and_si128(_mm_srai_epi16(h, 1), _mm_set1_epi16((short)0xBFFF));
    return _mm256_cvtph_ps(h);
}

/* 8 weights at row + j (an fp8 load is scaled by 2^-8, see ld_fp8). */
AVX2_INLINE __m256 ld_w(const int type, const char *row, int64_t j) {
    if (type == FW_WTYPE_F32) return _mm256_loadu_ps((const float *)row + j);
    if (type == FW_WTYPE_BF16) return ld_bf16((const uint16_t *)row + j);
    return ld_fp8((const uint8_t *)row + j);
}

/* {sum(a), sum(b), sum(c), sum(d)} */
AVX2_INLINE __m128 hsum4x(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

AVX2_INLINE __m256i tail_mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

AVX2_FN static void widen_row_avx2(float *out, const fw_weight *w, int64_t i, int64_t j0, int64_t n) {
    const char *row = wrow(w, i);
    int64_t j = 0;
    switch (w->type) {
    case FW_WTYPE_F32: memcpy(out, (const float *)row + j0, (size_t)n * sizeof(float)); break;
    case FW_WTYPE_BF16: {
        const uint16_t *p = (const uint16_t *)row + j0;
        for (; j + 8 <= n; j += 8) _mm256_storeu_ps(out + j, ld_bf16(p + j));
        for (; j < n; j++) out[j] = fw_bf16_to_f32(p[j]);
        break;
    }
    case FW_WTYPE_FP8: {
        const uint8_t *p = (const uint8_t *)row + j0;
        while (j < n) {
            int64_t e = fp8_seg_end(w, j0 + j, j0 + n) - j0;
            float s = fp8_scale(w, i, j0 + j);
            __m256 vs = _mm256_set1_ps(s * 256.0f);
            for (; j + 8 <= e; j += 8) _mm256_storeu_ps(out + j, _mm256_mul_ps(ld_fp8(p + j), vs));
            for (; j < e; j++) out[j] = fp8_to_f32_fast(p[j]) * s;
        }
        break;
    }
    case FW_WTYPE_INT4: {
        if ((w->c0 + j0) % 8 != 0) { /* a view starting inside a word */
            widen_row_generic(out, w, i, j0, n);
            break;
        }
        j = n / 8 * 8;
        fw_cpu_int4_widen_avx2(out, w, i, j0, j);
        if (j < n) widen_row_generic(out + j, w, i, j0 + j, n - j);
        break;
    }
    case FW_WTYPE_INT8: fw_cpu_int8_widen_avx2(out, w, i, j0, n); break;
    }
}

void fw_cpu_widen_row(float *out, const fw_weight *w, int64_t i, int64_t j0, int64_t n) {
    if (fw_cpu_has_avx2()) widen_row_avx2(out, w, i, j0, n);
    else widen_row_generic(out, w, i, j0, n);
}

/* ---- GEMV (decode): y[t, i0 + r] for r < RB, t < TT ---- */

AVX2_INLINE void gemv_tile(float *y, const float *x, const fw_weight *w, int64_t i0,
                           const int type, const int RB, const int TT) {
    const int64_t K = w->cols, N = w->rows;
    const size_t es = fw_wtype_size((fw_wtype)type);
    const char *row[4];
    __m256 tot[8], acc[8]; /* (RB, TT) */
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) row[r] = wrow(w, i0 + r);
#pragma GCC unroll 8
    for (int a = 0; a < RB * TT; a++) tot[a] = _mm256_setzero_ps();
    int64_t j = 0;
    while (j < K) {
        const int64_t js = j, je = type == FW_WTYPE_FP8 ? fp8_seg_end(w, j, K) : K;
#pragma GCC unroll 8
        for (int a = 0; a < RB * TT; a++) acc[a] = _mm256_setzero_ps();
        if (type == FW_WTYPE_FP8 && i0 + 2 * RB <= N) {
            /* Rows are short streams (a few KB): fetch the next tile's bytes of this
             * block now rather than wait for the prefetchers to pick up each row. */
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++) {
                const char *nx = row[r] + (size_t)(RB * w->ld) + js;
                _mm_prefetch(nx, _MM_HINT_T0);
                _mm_prefetch(nx + 64, _MM_HINT_T0);
            }
        }
        for (; j + 8 <= je; j += 8) {
            if (type == FW_WTYPE_BF16 && j % 32 == 0 && i0 + 2 * RB <= N) /* as FP8's, a line at a time */
#pragma GCC unroll 4
                for (int r = 0; r < RB; r++) _mm_prefetch(row[r] + (size_t)(RB * w->ld + j) * 2, _MM_HINT_T0);
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++) {
                __m256 wv = ld_w(type, row[r], j);
#pragma GCC unroll 8
                for (int t = 0; t < TT; t++)
                    acc[r * TT + t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + t * K + j), acc[r * TT + t]);
            }
        }
        if (j < je) { /* tail: zero-padded copies keep the same arithmetic, no overread */
            const int64_t n = je - j;
            const __m256i m = tail_mask(n);
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++) {
                char buf[32] = {0};
                memcpy(buf, row[r] + j * es, (size_t)n * es);
                __m256 wv = ld_w(type, buf, 0);
#pragma GCC unroll 8
                for (int t = 0; t < TT; t++)
                    acc[r * TT + t] = _mm256_fmadd_ps(wv, _mm256_maskload_ps(x + t * K + j, m), acc[r * TT + t]);
            }
            j = je;
        }
        if (type == FW_WTYPE_FP8) {
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++) {
                __m256 s = _mm256_set1_ps(fp8_scale(w, i0 + r, js) * 256.0f);
#pragma GCC unroll 8
                for (int t = 0; t < TT; t++) tot[r * TT + t] = _mm256_fmadd_ps(acc[r * TT + t], s, tot[r * TT + t]);
            }
        } else {
#pragma GCC unroll 8
            for (int a = 0; a < RB * TT; a++) tot[a] = _mm256_add_ps(tot[a], acc[a]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 8
        for (int t = 0; t < TT; t++) y[t * N + i0 + r] = hsum8(tot[r * TT + t]);
}

/* Rows per tile for TT tokens: enough independent accumulators to hide the FMA
 * latency, few enough to stay in registers, and x loads shared by RB rows. Above 4
 * tokens a pair of rows is run twice, for each half of the tokens: the second pass
 * finds the rows in L1, and RB x TT stays at most 8 accumulators. */
#define GEMV_RB(TT) ((TT) <= 2 ? 4 : 2)
#define GEMV_TA(TT) ((TT) <= 4 ? (TT) : ((TT) + 1) / 2) /* tokens in the first pass */

#define DEF_GEMV(TNAME, TYPE, TT)                                                    \
    AVX2_FN static void gemv_##TNAME##_##TT(float *y, const float *x, const fw_weight *w) { \
        const int64_t nb = (w->rows + GEMV_RB(TT) - 1) / GEMV_RB(TT);                \
        const int64_t N = w->rows, K = w->cols;                                      \
        _Pragma("omp parallel for schedule(static) if (N * K >= PAR_MIN_ELEMS)")     \
        for (int64_t b = 0; b < nb; b++) {                                           \
            const int64_t i0 = b * GEMV_RB(TT);                                      \
            if (i0 + GEMV_RB(TT) <= N) {                                             \
                gemv_tile(y, x, w, i0, TYPE, GEMV_RB(TT), GEMV_TA(TT));              \
                if (GEMV_TA(TT) < (TT))                                              \
                    gemv_tile(y + GEMV_TA(TT) * N, x + GEMV_TA(TT) * K, w, i0, TYPE, \
                              GEMV_RB(TT), (TT) - GEMV_TA(TT));                      \
            } else {                                                                 \
                for (int64_t i = i0; i < N; i++) gemv_tile(y, x, w, i, TYPE, 1, TT); \
            }                                                                        \
        }                                                                            \
    }
#define DEF_GEMV_TYPE(TNAME, TYPE)                                                   \
    DEF_GEMV(TNAME, TYPE, 1) DEF_GEMV(TNAME, TYPE, 2) DEF_GEMV(TNAME, TYPE, 3)      \
    DEF_GEMV(TNAME, TYPE, 4) DEF_GEMV(TNAME, TYPE, 5) DEF_GEMV(TNAME, TYPE, 6)      \
    DEF_GEMV(TNAME, TYPE, 7) DEF_GEMV(TNAME, TYPE, 8)
DEF_GEMV_TYPE(f32, FW_WTYPE_F32)
DEF_GEMV_TYPE(bf16, FW_WTYPE_BF16)
DEF_GEMV_TYPE(fp8, FW_WTYPE_FP8)

#define GEMV_ROW(TNAME) \
    { gemv_##TNAME##_1, gemv_##TNAME##_2, gemv_##TNAME##_3, gemv_##TNAME##_4, \
      gemv_##TNAME##_5, gemv_##TNAME##_6, gemv_##TNAME##_7, gemv_##TNAME##_8 }
static const fw_gemv_fn gemv_table[3][FW_GEMV_MAX_T] = {GEMV_ROW(f32), GEMV_ROW(bf16), GEMV_ROW(fp8)};

void fw_cpu_matmul_gemv_avx2(float *y, const float *x, const fw_weight *w, int64_t T) {
    if (w->type == FW_WTYPE_INT4) { /* a view inside a word, or no memory: the portable code */
        if (!fw_cpu_int4_ok(w) || !fw_cpu_int4_gemv_avx2(y, x, w, T)) fw_cpu_matmul_generic(y, x, w, T);
        return;
    }
    if (w->type == FW_WTYPE_INT8) {
        fw_cpu_int8_gemv_avx2(y, x, w, T);
        return;
    }
    fw_gemv_passes(gemv_table[w->type], y, x, w, T);
}

/* ---- GEMM (prefill) ---- */

#ifndef GEMM_NB
#define GEMM_NB 32  /* W rows per tile */
#endif
#ifndef GEMM_KC
#define GEMM_KC 512 /* W columns per tile (the micro-kernel's run: longer runs amortise its sums) */
#endif
#define GEMM_MR 3   /* tokens per micro-kernel */
#define GEMM_NR 4   /* W rows per micro-kernel */
#ifndef GEMM_TC
#define GEMM_TC 6   /* tokens per L1-resident chunk of x (a multiple of GEMM_MR) */
#endif

/* tile (GEMM_NB, GEMM_KC) = W[n0 : n0 + nb, k0 : k0 + kc], zero-padded to whole
 * micro-kernel rows and 8 columns. */
AVX2_FN static void gemm_fill_tile(float *tile, const fw_weight *w, int64_t n0, int64_t nb, int64_t k0, int64_t kc) {
    const int64_t kcp = (kc + 7) & ~(int64_t)7;
    const int64_t nbp = (nb + GEMM_NR - 1) / GEMM_NR * GEMM_NR;
    for (int64_t r = 0; r < nb; r++) {
        widen_row_avx2(tile + r * GEMM_KC, w, n0 + r, k0, kc);
        memset(tile + r * GEMM_KC + kc, 0, (size_t)(kcp - kc) * sizeof(float));
    }
    for (int64_t r = nb; r < nbp; r++) memset(tile + r * GEMM_KC, 0, (size_t)kcp * sizeof(float));
}

/* y[t, 0 : nr] += x[t, 0 : kcp] . tile[0 : nr, 0 : kcp]^T for t < MR_ (tile rows
 * up to GEMM_NR are read; rows past nr are zero). */
AVX2_INLINE void gemm_micro(float *y, int64_t ldy, const float *x, int64_t ldx, const float *tile,
                            int64_t kcp, int64_t nr, const int MR_) {
    __m256 acc[GEMM_MR][GEMM_NR];
#pragma GCC unroll 4
    for (int t = 0; t < MR_; t++)
#pragma GCC unroll 4
        for (int r = 0; r < GEMM_NR; r++) acc[t][r] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kcp; k += 8) {
        __m256 xv[GEMM_MR];
#pragma GCC unroll 4
        for (int t = 0; t < MR_; t++) xv[t] = _mm256_load_ps(x + t * ldx + k);
#pragma GCC unroll 4
        for (int r = 0; r < GEMM_NR; r++) {
            __m256 wv = _mm256_load_ps(tile + r * GEMM_KC + k);
#pragma GCC unroll 4
            for (int t = 0; t < MR_; t++) acc[t][r] = _mm256_fmadd_ps(xv[t], wv, acc[t][r]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < MR_; t++) {
        __m128 s = hsum4x(acc[t][0], acc[t][1], acc[t][2], acc[t][3]);
        float *yt = y + t * ldy;
        if (nr == GEMM_NR) {
            _mm_storeu_ps(yt, _mm_add_ps(_mm_loadu_ps(yt), s));
        } else {
            float tmp[4];
            _mm_storeu_ps(tmp, s);
            for (int64_t r = 0; r < nr; r++) yt[r] += tmp[r];
        }
    }
}

AVX2_FN void fw_cpu_matmul_gemm_avx2(float *y, const float *x, const fw_weight *w, int64_t T) {
    const int64_t N = w->rows, K = w->cols;
    if (N <= 0 || T <= 0) return;
    /* x packed by column panels, xp (np, T, GEMM_KC), zero-padded: a chunk of tokens
     * then sits in consecutive 1 KB rows of L1 (x's own rows, K floats apart, can all
     * map to the same cache set), and the micro-kernel reads whole vectors. */
    const int64_t np = (K + GEMM_KC - 1) / GEMM_KC;
    float *xp = np > 0 ? aligned_alloc(64, (size_t)(np * T * GEMM_KC) * sizeof(float)) : NULL;
    if (np > 0 && !xp) { /* no memory for the copy: the GEMV path needs none */
        fw_cpu_matmul_gemv_avx2(y, x, w, T);
        return;
    }
    /* Work items: row blocks x token groups; split tokens only when there are too
     * few row blocks to keep every thread busy. */
    const int64_t nnb = (N + GEMM_NB - 1) / GEMM_NB, ntb = (T + GEMM_MR - 1) / GEMM_MR;
    const int64_t want = 4 * (int64_t)max_threads();
    int64_t ntg = nnb >= want ? 1 : (want + nnb - 1) / nnb;
    if (ntg > ntb) ntg = ntb;
    const int64_t tbg = (ntb + ntg - 1) / ntg; /* token blocks per group */
    ntg = (ntb + tbg - 1) / tbg;

#pragma omp parallel if (N * K * T >= PAR_MIN_ELEMS)
    {
#pragma omp for collapse(2) schedule(static)
        for (int64_t p = 0; p < np; p++) {
            for (int64_t t = 0; t < T; t++) {
                const int64_t k0 = p * GEMM_KC, kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
                float *dst = xp + (p * T + t) * GEMM_KC;
                memcpy(dst, x + t * K + k0, (size_t)kc * sizeof(float));
                memset(dst + kc, 0, (size_t)(GEMM_KC - kc) * sizeof(float));
            }
        }
        _Alignas(64) float tile[GEMM_NB * GEMM_KC]; /* (GEMM_NB, GEMM_KC) */
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int64_t bn = 0; bn < nnb; bn++) {
            for (int64_t g = 0; g < ntg; g++) {
                const int64_t n0 = bn * GEMM_NB, nb = N - n0 < GEMM_NB ? N - n0 : GEMM_NB;
                const int64_t t0 = g * tbg * GEMM_MR, t1 = t0 + tbg * GEMM_MR < T ? t0 + tbg * GEMM_MR : T;
                for (int64_t t = t0; t < t1; t++) memset(y + t * N + n0, 0, (size_t)nb * sizeof(float));
                for (int64_t p = 0; p < np; p++) {
                    const int64_t k0 = p * GEMM_KC, kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
                    const int64_t kcp = (kc + 7) & ~(int64_t)7;
                    const float *xpp = xp + p * T * GEMM_KC; /* (T, GEMM_KC) */
                    gemm_fill_tile(tile, w, n0, nb, k0, kc);
                    /* A chunk of GEMM_TC tokens' x stays in L1 while the tile's row
                     * groups pass; each row group serves the whole chunk from L1. */
                    for (int64_t tc = t0; tc < t1; tc += GEMM_TC) {
                        const int64_t tce = t1 - tc < GEMM_TC ? t1 : tc + GEMM_TC;
                        for (int64_t r = 0; r < nb; r += GEMM_NR) {
                            const int64_t nr = nb - r < GEMM_NR ? nb - r : GEMM_NR;
                            const float *tl = tile + r * GEMM_KC;
                            for (int64_t t = tc; t < tce; t += GEMM_MR) {
                                const float *xt = xpp + t * GEMM_KC;
                                float *yt = y + t * N + n0 + r;
                                const int64_t mr = tce - t < GEMM_MR ? tce - t : GEMM_MR;
                                if (mr == 3) gemm_micro(yt, N, xt, GEMM_KC, tl, kcp, nr, 3);
                                else if (mr == 2) gemm_micro(yt, N, xt, GEMM_KC, tl, kcp, nr, 2);
                                else gemm_micro(yt, N, xt, GEMM_KC, tl, kcp, nr, 1);
                            }
                        }
                    }
                }
            }
        }
    }
    free(xp);
}

void fw_cpu_matmul_avx2(float *y, const float *x, const fw_weight *w, int64_t T) {
    if (T <= FW_GEMV_MAX_T) fw_cpu_matmul_gemv_avx2(y, x, w, T);
    else fw_cpu_matmul_gemm_avx2(y, x, w, T);
}

/* INT4 on whole words and INT8 run kernels/cpu/fast_int4.c's and fast_int8.c's
 * AVX-512 kernels, BF16's and FP8's prefill gemm512.c's over exactly widened tiles;
 * the rest (and INT4 without memory for their buffers) the AVX2 paths. */
void fw_cpu_matmul_avx512(float *y, const float *x, const fw_weight *w, int64_t T) {
    if (w->type == FW_WTYPE_INT4 && fw_cpu_int4_ok(w) &&
        (T <= FW_GEMV_MAX_T ? fw_cpu_int4_gemv_avx512(y, x, w, T) : fw_cpu_int4_gemm_avx512(y, x, w, T)))
        return;
    if (w->type == FW_WTYPE_INT8) {
        if (T <= FW_GEMV_MAX_T) fw_cpu_int8_gemv_avx512(y, x, w, T);
        else fw_cpu_int8_gemm_avx512(y, x, w, T);
        return;
    }
    if ((w->type == FW_WTYPE_BF16 || w->type == FW_WTYPE_FP8) && T > FW_GEMV_MAX_T) {
        fw_cpu_widened_gemm_avx512(y, x, w, T);
        return;
    }
    fw_cpu_matmul_avx2(y, x, w, T);
}

/* Prefill: kernels/cpu/gemm512.c's f32 GEMM over tiles widened exactly (fp8 x block
 * scale, as the reference; BF16 by a shift) from rows widened by widen_row_avx2. */
AVX512_FN static void rows_fill(float *tile, const fw_weight *w, int64_t n0, int64_t nb, int64_t k0, int64_t kc) {
    _Alignas(64) float buf[FW_GEMM512_KC];
    for (int64_t r = 0; r < nb; r++) {
        widen_row_avx2(buf, w, n0 + r, k0, kc);
        for (int64_t k = 0; k < kc; k++) tile[k * FW_GEMM512_NB + r] = buf[k];
    }
    const int64_t nbp = (nb + 15) / 16 * 16;
    for (int64_t r = nb; r < nbp; r++)
        for (int64_t k = 0; k < kc; k++) tile[k * FW_GEMM512_NB + r] = 0;
}

void fw_cpu_widened_gemm_avx512(float *y, const float *x, const fw_weight *w, int64_t T) {
    fw_cpu_gemm512(y, x, w, T, rows_fill);
}

/* BF16 weights through vdpbf16ps (kernels/cpu/fast_bf16.c), FP8's one-token GEMV
 * too; the rest as AVX-512. */
void fw_cpu_matmul_avx512bf16(float *y, const float *x, const fw_weight *w, int64_t T) {
    /* Every T of the GEMV's range takes the same kernel, so a row's result does not
     * depend on its batch; prefill takes AVX-512's exactly widened tiles. */
    bool done = false; /* false: prefill, a view these kernels do not take, or no memory for their buffers */
    if (w->type == FW_WTYPE_BF16 && T <= FW_GEMV_MAX_T)
        done = fw_cpu_bf16_gemv_avx512bf16(y, x, w, T);
    else if (w->type == FW_WTYPE_FP8 && T <= FW_GEMV_MAX_T)
        done = fw_cpu_fp8_gemv_avx512bf16(y, x, w, T);
    if (!done) fw_cpu_matmul_avx512(y, x, w, T);
}

/* ---- matmul_xw: y[T, N] = x[T, K] . W[K, N] ---- */

#define XW_TB 8 /* tokens per pass over a row group's columns */

/* y[t, j] += sum_{r < RB} x[t, i + r] W[i + r, j] for j in [ja, jb), t < T. The
 * FP8 block scale (and ld_fp8's 2^8) goes into the broadcast x values, once per
 * block, instead of into every widened weight. */
AVX2_INLINE void xw_rows(float *y, const float *x, const fw_weight *w, int64_t T, int64_t i,
                         int64_t ja, int64_t jb, const int type, const int RB) {
    const int64_t K = w->rows, N = w->cols;
    const char *row[4];
#pragma GCC unroll 4
    for (int r = 0; r < RB; r++) row[r] = wrow(w, i + r);
    for (int64_t t0 = 0; t0 < T; t0 += XW_TB) {
        const int64_t tn = T - t0 < XW_TB ? T - t0 : XW_TB;
        float *yt0 = y + t0 * N;
        const float *xt0 = x + t0 * K + i;
        for (int64_t j = ja; j < jb;) {
            const int64_t je = type == FW_WTYPE_FP8 ? fp8_seg_end(w, j, jb) : jb;
            float scs[4], xs[XW_TB * 4]; /* (tn, RB): x times the block scale */
#pragma GCC unroll 4
            for (int r = 0; r < RB; r++) scs[r] = type == FW_WTYPE_FP8 ? fp8_scale(w, i + r, j) : 1.0f;
            for (int64_t t = 0; t < tn; t++)
#pragma GCC unroll 4
                for (int r = 0; r < RB; r++)
                    xs[t * RB + r] = xt0[t * K + r] * (type == FW_WTYPE_FP8 ? scs[r] * 256.0f : 1.0f);
            if (tn == 1) { /* decode: the x values live in registers */
                __m256 xb[4];
#pragma GCC unroll 4
                for (int r = 0; r < RB; r++) xb[r] = _mm256_set1_ps(xs[r]);
                for (; j + 8 <= je; j += 8) {
                    __m256 yv = _mm256_loadu_ps(yt0 + j);
#pragma GCC unroll 4
                    for (int r = 0; r < RB; r++) yv = _mm256_fmadd_ps(xb[r], ld_w(type, row[r], j), yv);
                    _mm256_storeu_ps(yt0 + j, yv);
                }
            }
            for (; j + 8 <= je; j += 8) {
                __m256 wv[4];
#pragma GCC unroll 4
                for (int r = 0; r < RB; r++) wv[r] = ld_w(type, row[r], j);
                for (int64_t t = 0; t < tn; t++) {
                    __m256 yv = _mm256_loadu_ps(yt0 + t * N + j);
#pragma GCC unroll 4
                    for (int r = 0; r < RB; r++) yv = _mm256_fmadd_ps(_mm256_broadcast_ss(xs + t * RB + r), wv[r], yv);
                    _mm256_storeu_ps(yt0 + t * N + j, yv);
                }
            }
            for (; j < je; j++) { /* a partial vector at a block or row end */
                float wj[4];
#pragma GCC unroll 4
                for (int r = 0; r < RB; r++) {
                    if (type == FW_WTYPE_F32) wj[r] = ((const float *)row[r])[j];
                    else if (type == FW_WTYPE_BF16) wj[r] = fw_bf16_to_f32(((const uint16_t *)row[r])[j]);
                    else wj[r] = fp8_to_f32_fast(((const uint8_t *)row[r])[j]) * scs[r];
                }
                for (int64_t t = 0; t < tn; t++) {
                    float sum = yt0[t * N + j];
#pragma GCC unroll 4
                    for (int r = 0; r < RB; r++) sum += xt0[t * K + r] * wj[r];
                    yt0[t * N + j] = sum;
                }
            }
        }
    }
}

AVX2_INLINE void xw_cols(float *y, const float *x, const fw_weight *w, int64_t T, int64_t ja, int64_t jb,
                         const int type) {
    const int64_t K = w->rows, N = w->cols;
    for (int64_t t = 0; t < T; t++) memset(y + t * N + ja, 0, (size_t)(jb - ja) * sizeof(float));
    int64_t i = 0;
    for (; i + 4 <= K; i += 4) xw_rows(y, x, w, T, i, ja, jb, type, 4);
    for (; i < K; i++) xw_rows(y, x, w, T, i, ja, jb, type, 1);
}

AVX2_FN static void xw_cols_f32(float *y, const float *x, const fw_weight *w, int64_t T, int64_t ja, int64_t jb) {
    xw_cols(y, x, w, T, ja, jb, FW_WTYPE_F32);
}
AVX2_FN static void xw_cols_bf16(float *y, const float *x, const fw_weight *w, int64_t T, int64_t ja, int64_t jb) {
    xw_cols(y, x, w, T, ja, jb, FW_WTYPE_BF16);
}
AVX2_FN static void xw_cols_fp8(float *y, const float *x, const fw_weight *w, int64_t T, int64_t ja, int64_t jb) {
    xw_cols(y, x, w, T, ja, jb, FW_WTYPE_FP8);
}

void fw_cpu_matmul_xw_avx2(float *y, const float *x, const fw_weight *w, int64_t T) {
    const int64_t N = w->cols;
    if (N <= 0 || T <= 0) return;
    if (w->type == FW_WTYPE_INT4 && fw_cpu_int4_ok(w)) {
        fw_cpu_int4_xw_avx2(y, x, w, T);
        return;
    }
    if (w->type == FW_WTYPE_INT8) {
        fw_cpu_int8_xw_avx2(y, x, w, T);
        return;
    }
    if (fw_wtype_grouped(w->type)) { /* INT4 inside a word: rows widened a chunk at a time */
        fw_cpu_matmul_xw_generic(y, x, w, T);
        return;
    }
    void (*cols)(float *, const float *, const fw_weight *, int64_t, int64_t, int64_t) =
        w->type == FW_WTYPE_F32 ? xw_cols_f32 : w->type == FW_WTYPE_BF16 ? xw_cols_bf16 : xw_cols_fp8;
    /* Each thread owns whole 64-byte lines of y's columns and streams its part of every W row. */
    const int64_t nchunk = (N + 15) / 16;
#pragma omp parallel if (w->rows * N >= PAR_MIN_ELEMS)
    {
#ifdef _OPENMP
        const int64_t nth = omp_get_num_threads(), id = omp_get_thread_num();
#else
        const int64_t nth = 1, id = 0;
#endif
        const int64_t per = (nchunk + nth - 1) / nth;
        const int64_t ja = id * per * 16, jb = (id + 1) * per * 16 < N ? (id + 1) * per * 16 : N;
        if (ja < jb) cols(y, x, w, T, ja, jb);
    }
}

/* INT4 on whole words: kernels/cpu/fast_int4.c's AVX-512 kernel; the rest as AVX2. */
void fw_cpu_matmul_xw_avx512(float *y, const float *x, const fw_weight *w, int64_t T) {
    if (w->type == FW_WTYPE_INT4 && fw_cpu_int4_ok(w)) fw_cpu_int4_xw_avx512(y, x, w, T);
    else fw_cpu_matmul_xw_avx2(y, x, w, T);
}

/* ---- portable versions ---- */

#define GENERIC_CHUNK 256

void fw_cpu_matmul_generic(float *y, const float *x, const fw_weight *w, int64_t T) {
    const int64_t N = w->rows, K = w->cols;
#pragma omp parallel for schedule(static) if (N * K >= PAR_MIN_ELEMS)
    for (int64_t i = 0; i < N; i++) {
        float buf[GENERIC_CHUNK];
        for (int64_t t = 0; t < T; t++) y[t * N + i] = 0;
        for (int64_t k0 = 0; k0 < K; k0 += GENERIC_CHUNK) {
            const int64_t n = K - k0 < GENERIC_CHUNK ? K - k0 : GENERIC_CHUNK;
            widen_row_generic(buf, w, i, k0, n);
            for (int64_t t = 0; t < T; t++) {
                const float *xt = x + t * K + k0;
                float s = 0;
                for (int64_t k = 0; k < n; k++) s += xt[k] * buf[k];
                y[t * N + i] += s;
            }
        }
    }
}

void fw_cpu_matmul_xw_generic(float *y, const float *x, const fw_weight *w, int64_t T) {
    const int64_t K = w->rows, N = w->cols;
    const int64_t nchunk = (N + GENERIC_CHUNK - 1) / GENERIC_CHUNK;
#pragma omp parallel for schedule(static) if (N * K >= PAR_MIN_ELEMS)
    for (int64_t c = 0; c < nchunk; c++) {
        const int64_t j0 = c * GENERIC_CHUNK, n = N - j0 < GENERIC_CHUNK ? N - j0 : GENERIC_CHUNK;
        float buf[GENERIC_CHUNK];
        for (int64_t t = 0; t < T; t++) memset(y + t * N + j0, 0, (size_t)n * sizeof(float));
        for (int64_t i = 0; i < K; i++) {
            widen_row_generic(buf, w, i, j0, n);
            for (int64_t t = 0; t < T; t++) {
                const float xi = x[t * K + i];
                float *yt = y + t * N + j0;
                for (int64_t j = 0; j < n; j++) yt[j] += xi * buf[j];
            }
        }
    }
}
