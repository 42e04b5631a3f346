/* The AVX-512 prefill GEMM shared by INT4 and INT8 weights (kernels/cpu/gemm512.h).
 * A tile of FW_GEMM512_NB rows x FW_GEMM512_KC columns is unpacked once into L1,
 * column-major so that one vector holds 16 rows of a column; the micro-kernel
 * broadcasts x[t, k] and accumulates GM_MR tokens x FW_GEMM512_NB rows in registers
 * (an outer product: no horizontal sums), and every token of the work item reuses
 * the tile. */
#include "kernels/cpu/gemm512.h"
#include "kernels/cpu/simd.h"

#include <immintrin.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define GM_NB FW_GEMM512_NB
#define GM_KC FW_GEMM512_KC
#define GM_MR 12 /* tokens per micro-kernel: 24 accumulators */

/* y[t, 0 : nb] += sum_k x[t, k] tile[k, 0 : nb] for t < MR. */
AVX512_INLINE void gm_micro(float *y, int64_t N, const float *x, int64_t K, const float *tile, int64_t kc,
                            __mmask16 m0, __mmask16 m1, const int MR) {
    __m512 acc[GM_MR][2];
#pragma GCC unroll 12
    for (int t = 0; t < MR; t++) acc[t][0] = acc[t][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        const __m512 w0 = _mm512_load_ps(tile + k * GM_NB), w1 = _mm512_load_ps(tile + k * GM_NB + 16);
#pragma GCC unroll 12
        for (int t = 0; t < MR; t++) {
            const __m512 xb = _mm512_set1_ps(x[t * K + k]);
            acc[t][0] = _mm512_fmadd_ps(w0, xb, acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(w1, xb, acc[t][1]);
        }
    }
    tile32_add(y, N, acc, MR, m0, m1);
}

AVX512_FN static void gm_tokens(float *y, int64_t N, const float *x, int64_t K, const float *tile, int64_t kc,
                                int64_t nb, int64_t nt) {
    __mmask16 m0, m1;
    tile32_masks(nb, &m0, &m1);
    int64_t t = 0;
    for (; t + GM_MR <= nt; t += GM_MR) gm_micro(y + t * N, N, x + t * K, K, tile, kc, m0, m1, GM_MR);
    switch (nt - t) {
#define GM_CASE(R) case R: gm_micro(y + t * N, N, x + t * K, K, tile, kc, m0, m1, R); break;
        GM_CASE(1) GM_CASE(2) GM_CASE(3) GM_CASE(4) GM_CASE(5) GM_CASE(6)
        GM_CASE(7) GM_CASE(8) GM_CASE(9) GM_CASE(10) GM_CASE(11)
#undef GM_CASE
    default: break;
    }
}

void fw_cpu_gemm512(float *y, const float *x, const fw_weight *w, int64_t T, fw_gemm512_fill fill) {
    const int64_t N = w->rows, K = w->cols;
    if (N <= 0 || T <= 0) return;
    /* Work items: row blocks x token groups; tokens are split only when there are
     * too few row blocks to keep every thread busy. */
    const int64_t nnb = (N + GM_NB - 1) / GM_NB;
#ifdef _OPENMP
    const int64_t want = 4 * (int64_t)omp_get_max_threads();
#else
    const int64_t want = 1;
#endif
    int64_t ntg = nnb >= want ? 1 : (want + nnb - 1) / nnb;
    const int64_t ntb = (T + GM_MR - 1) / GM_MR;
    if (ntg > ntb) ntg = ntb;
    const int64_t tbg = (ntb + ntg - 1) / ntg; /* token blocks per group */
    ntg = (ntb + tbg - 1) / tbg;
#pragma omp parallel if (N * K * T >= PAR_MIN_ELEMS)
    {
        _Alignas(64) float tile[GM_KC * GM_NB]; /* (GM_KC, GM_NB) */
        /* The second vector of rows stays 0 where a block has 16 rows or fewer. */
        memset(tile, 0, sizeof tile);
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int64_t bn = 0; bn < nnb; bn++)
            for (int64_t g = 0; g < ntg; g++) {
                const int64_t n0 = bn * GM_NB, nb = N - n0 < GM_NB ? N - n0 : GM_NB;
                const int64_t t0 = g * tbg * GM_MR, t1 = t0 + tbg * GM_MR < T ? t0 + tbg * GM_MR : T;
                for (int64_t t = t0; t < t1; t++) memset(y + t * N + n0, 0, (size_t)nb * sizeof(float));
                for (int64_t k0 = 0; k0 < K; k0 += GM_KC) {
                    const int64_t kc = K - k0 < GM_KC ? K - k0 : GM_KC;
                    fill(tile, w, n0, nb, k0, kc);
                    gm_tokens(y + t0 * N + n0, N, x + t0 * K + k0, K, tile, kc, nb, t1 - t0);
                }
            }
    }
}
