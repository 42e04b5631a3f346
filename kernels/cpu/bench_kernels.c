/* Micro-benchmark of the fast CPU kernels against this machine's ceilings:
 * STREAM-like copy and read bandwidth, register-only FMA throughput, then GEMV
 * (decode matmul, memory-bound) in GB/s of weights and GEMM (prefill matmul,
 * compute-bound) in GFLOP/s. Every figure is the best of several repeats (other
 * processes may share the machine).
 *
 * usage: bench_kernels [seconds per repeat, default 0.05] [sections: any of c g m x a w i 8 b, default gmaw]
 *   c: ceilings only, g: + GEMV, m: + GEMM, x: GEMV vs GEMM path for T = 1..16,
 *   a: attention, w: matmul_xw, i: the INT4 kernels per instruction set, 8: the
 *   INT8 kernels per instruction set, b: BF16 and FP8 per kernel set (the
 *   ceilings always run: the others are reported against them). */
#include "kernels/ops.h"
#include "kernels/cpu/ceilings.h"
#include "kernels/cpu/fast.h"
#include "kernels/cpu/fast_int4.h"

#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define REPEATS 15

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static double g_budget = 0.05; /* seconds per repeat: short, so that some land in quiet moments */

/* Best seconds per call of fn(arg, iteration) over REPEATS batches. */
static double best_time(void (*fn)(void *, int64_t), void *arg) {
    fn(arg, 0); /* warm up */
    double t0 = now();
    int64_t n = 1;
    fn(arg, 1);
    double one = now() - t0;
    n = one > 0 ? (int64_t)(g_budget / one) : 1000;
    if (n < 1) n = 1;
    double best = 1e30;
    for (int r = 0; r < REPEATS; r++) {
        t0 = now();
        for (int64_t i = 0; i < n; i++) fn(arg, i);
        double t = (now() - t0) / (double)n;
        best = t < best ? t : best;
    }
    return best;
}

/* ---- ceilings ---- */

typedef struct stream_arg {
    float *a, *b;
    int64_t n;
    double sink;
} stream_arg;

/* The ceilings' kernels (kernels/cpu/ceilings.c), timed here like every other. */
static void stream_copy(void *p, int64_t it) {
    stream_arg *s = p;
    (void)it;
    fw_ceiling_copy(s->a, s->b, s->n);
}

static void stream_read(void *p, int64_t it) {
    stream_arg *s = p;
    (void)it;
    s->sink += fw_ceiling_read(s->b, s->n);
}

#define FMA_ITERS 2000000

static void fma_peak(void *p, int64_t it) {
    (void)it;
    *(double *)p += fw_ceiling_fma(FMA_ITERS);
}

static double cpu_mhz(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    double mhz = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "cpu MHz : %lf", &mhz) == 1) break;
    if (f) fclose(f);
    return mhz;
}

/* ---- matmul ---- */

typedef struct mm_arg {
    void (*fn)(float *, const float *, const fw_weight *, int64_t);
    fw_weight *w; /* ncopies weights of the same shape (cycling defeats the L3) */
    int ncopies;
    float *x, *y;
    int64_t T;
} mm_arg;

static void mm_run(void *p, int64_t it) {
    static int64_t calls; /* not `it`: each batch restarts it, and must not find its weights cached */
    mm_arg *m = p;
    (void)it;
    m->fn(m->y, m->x, &m->w[calls++ % m->ncopies], m->T);
}

typedef struct xw_arg {
    fw_weight *w;
    float *x, *y;
    int64_t T;
} xw_arg;

static void xw_run(void *p, int64_t it) {
    xw_arg *a = p;
    (void)it;
    for (int64_t h = 0; h < 128; h++) {
        fw_weight v = fw_weight_view(a->w, h * 256, 128, 0, 512);
        fw_ops_cpu_fast()->matmul_xw(a->y + h * 512, a->x + h * 128, &v, a->T);
    }
}

typedef struct attn_arg {
    float *q, *k, *v, *o;
    int64_t T, S, H, dqk, dv;
} attn_arg;

static void attn_naive_run(void *p, int64_t it) {
    attn_arg *a = p;
    (void)it;
    fw_ops_cpu_fast()->attn_naive(a->o, a->q, a->k, a->v, a->T, a->S, a->H, a->dqk, a->dv, 0.1f);
}

/* k holds the latent cache rows (C + R per position); q the H heads' (C + R). */
static void attn_absorbed_run(void *p, int64_t it) {
    attn_arg *a = p;
    (void)it;
    const int64_t C = a->dqk, R = a->dv;
    fw_ops_cpu_fast()->attn_absorbed(a->o, a->q, a->q + a->H * C, a->k, C + R, a->k + C, C + R, 1, a->S, a->H, C, R, 0.05f);
}

static float frand(void) { return (float)rand() / (float)RAND_MAX * 2.0f - 1.0f; }

/* The weights w (nc copies), random x of T rows, y; free m.x and m.y. */
static mm_arg mm_arg_new(fw_weight *w, int nc, int64_t T) {
    mm_arg m = {.w = w, .ncopies = nc, .T = T};
    m.x = malloc((size_t)(T * w->cols) * sizeof(float));
    m.y = malloc((size_t)(T * w->rows) * sizeof(float));
    for (int64_t i = 0; i < T * w->cols; i++) m.x[i] = frand();
    return m;
}

/* ncopies random weights [rows, cols] of type t sharing one scale grid. */
static fw_weight *make_weights(fw_wtype t, int64_t rows, int64_t cols, int ncopies, float **scale) {
    size_t es = fw_wtype_size(t);
    fw_weight *w = calloc((size_t)ncopies, sizeof *w);
    int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128;
    *scale = malloc((size_t)(sr * sc) * sizeof(float));
    for (int64_t i = 0; i < sr * sc; i++) (*scale)[i] = 0.01f * (1.5f + frand());
    if (t == FW_WTYPE_INT4) { /* group 32, bf16 scales (held in *scale's allocation) */
        free(*scale);
        uint16_t *gs = malloc((size_t)(rows * (cols / 32)) * 2);
        for (int64_t i = 0; i < rows * (cols / 32); i++) gs[i] = fw_f32_to_bf16(0.01f * (1.5f + frand()));
        *scale = (float *)gs;
        for (int c = 0; c < ncopies; c++) {
            uint32_t *d = malloc(fw_wtype_bytes(t, rows, cols));
            for (int64_t i = 0; i < rows * cols / 8; i++) d[i] = (uint32_t)rand() * 2654435761u;
            w[c] = (fw_weight){.type = t, .rows = rows, .cols = cols, .ld = cols / 8, .data = d, .gscale = gs,
                               .scale_ld = cols / 32, .group = 32};
        }
        return w;
    }
    if (t == FW_WTYPE_INT8) { /* per output channel, bf16 scales (held in *scale's allocation) */
        free(*scale);
        uint16_t *gs = malloc((size_t)rows * 2);
        for (int64_t i = 0; i < rows; i++) gs[i] = fw_f32_to_bf16(0.01f * (1.5f + frand()));
        *scale = (float *)gs;
        for (int c = 0; c < ncopies; c++) {
            int8_t *d = malloc((size_t)(rows * cols));
            for (int64_t i = 0; i < rows * cols; i++) d[i] = (int8_t)(rand() & 255);
            w[c] = (fw_weight){.type = t, .rows = rows, .cols = cols, .ld = cols, .data = d, .gscale = gs,
                               .scale_ld = 1, .group = cols};
        }
        return w;
    }
    for (int c = 0; c < ncopies; c++) {
        uint8_t *d = malloc((size_t)(rows * cols) * es);
        for (int64_t i = 0; i < rows * cols; i++) {
            float v = frand();
            if (t == FW_WTYPE_F32) ((float *)d)[i] = v;
            else if (t == FW_WTYPE_BF16) ((uint16_t *)d)[i] = fw_f32_to_bf16(v);
            else d[i] = fw_f32_to_fp8e4m3(v * 100);
        }
        w[c] = (fw_weight){.type = t, .rows = rows, .cols = cols, .ld = cols, .data = d,
                           .scale = *scale, .scale_ld = sc};
    }
    return w;
}

static void free_weights(fw_weight *w, int ncopies, float *scale) {
    for (int c = 0; c < ncopies; c++) free((void *)w[c].data);
    free(w);
    free(scale);
}

/* ncopies random INT4 weights [rows, cols], group G, sharing one scale array. */
static fw_weight *make_int4(int64_t rows, int64_t cols, int64_t G, int ncopies, uint16_t **scales) {
    fw_weight *w = calloc((size_t)ncopies, sizeof *w);
    *scales = malloc((size_t)(rows * (cols / G)) * 2);
    for (int64_t i = 0; i < rows * (cols / G); i++) (*scales)[i] = fw_f32_to_bf16(0.01f * (1.5f + frand()));
    for (int c = 0; c < ncopies; c++) {
        uint32_t *d = malloc(fw_wtype_bytes(FW_WTYPE_INT4, rows, cols));
        for (int64_t i = 0; i < rows * cols / 8; i++) d[i] = (uint32_t)rand() * 2654435761u;
        w[c] = (fw_weight){.type = FW_WTYPE_INT4, .rows = rows, .cols = cols, .ld = cols / 8, .data = d,
                           .gscale = *scales, .scale_ld = cols / G, .group = G};
    }
    return w;
}

static void int4_avx2(float *y, const float *x, const fw_weight *w, int64_t T) { fw_cpu_int4_gemv_avx2(y, x, w, T); }
static void int4_avx512(float *y, const float *x, const fw_weight *w, int64_t T) { fw_cpu_int4_gemv_avx512(y, x, w, T); }
static void int4_gemm512(float *y, const float *x, const fw_weight *w, int64_t T) { fw_cpu_int4_gemm_avx512(y, x, w, T); }

/* The INT4 kernels per instruction set: decode shapes at T 1..8 in GB/s of stored
 * bytes (words and scales) against the read ceiling, prefill in GFLOP/s. */
static void bench_int4(double read_bw, double fma_gf) {
    const int64_t shape[][2] = {{2048, 7168}, {7168, 2048}, {2048, 2048}, {576, 7168}};
    const int64_t Gs[] = {32, 128}, Ts[] = {1, 2, 4, 8};
    printf("\nINT4 GEMV (GB/s of words + scales, %% of the read ceiling, Gweights/s)\n%-12s %-10s %4s %2s", "impl",
           "shape", "G", "T");
    printf(" %9s %7s %9s\n", "GB/s", "% read", "Gw/s");
    const char *names[] = {"avx2", "avx512"};
    for (int si = 0; si < 4; si++)
        for (int gi = 0; gi < 2; gi++) {
            const int64_t N = shape[si][0], K = shape[si][1], G = Gs[gi];
            const size_t bytes = fw_wtype_bytes(FW_WTYPE_INT4, N, K) + (size_t)(N * (K / G)) * 2;
            const int nc = (int)((256u << 20) / bytes) + 1;
            uint16_t *sc;
            fw_weight *w = make_int4(N, K, G, nc, &sc);
            for (int k = 0; k < 4; k++) {
                const int64_t T = Ts[k];
                mm_arg m = mm_arg_new(w, nc, T);
                for (int v = 0; v < 2; v++) {
                    if (v > 0 && !fw_cpu_has_avx512()) continue;
                    m.fn = v == 0 ? int4_avx2 : int4_avx512;
                    const double gbs = (double)bytes / best_time(mm_run, &m) / 1e9;
                    char sh[32];
                    snprintf(sh, sizeof sh, "%lldx%lld", (long long)N, (long long)K);
                    printf("%-12s %-10s %4lld %2lld %9.2f %6.1f%% %9.2f\n", names[v], sh, (long long)G, (long long)T, gbs,
                           100 * gbs / read_bw, gbs / (double)bytes * (double)(N * K));
                    fflush(stdout);
                }
                free(m.x);
                free(m.y);
            }
            for (int c = 0; c < nc; c++) free((void *)w[c].data);
            free(w);
            free(sc);
        }
    printf("\nINT4 GEMM, T 512 (GFLOP/s, %% of the FMA ceiling)\n");
    const int64_t pshape[][2] = {{2048, 7168}, {2048, 2048}};
    for (int si = 0; si < 2; si++)
        for (int gi = 0; gi < 2; gi++) {
            const int64_t N = pshape[si][0], K = pshape[si][1], G = Gs[gi], T = 512;
            uint16_t *sc;
            fw_weight *w = make_int4(N, K, G, 1, &sc);
            mm_arg m = {.w = w, .ncopies = 1, .T = T};
            m.x = malloc((size_t)(T * K) * sizeof(float));
            m.y = malloc((size_t)(T * N) * sizeof(float));
            for (int64_t i = 0; i < T * K; i++) m.x[i] = frand();
            for (int v = 0; v < 2; v++) {
                if (v == 1 && !fw_cpu_has_avx512()) continue;
                m.fn = v == 0 ? fw_cpu_matmul_gemm_avx2 : int4_gemm512;
                const double gf = 2.0 * (double)(T * N * K) / best_time(mm_run, &m) / 1e9;
                printf("%-12s %lldx%lld G %lld: %7.1f GFLOP/s %5.1f%%\n", v ? "avx512" : "avx2 (tile)", (long long)N,
                       (long long)K, (long long)G, gf, 100 * gf / fma_gf);
                fflush(stdout);
            }
            free(m.x);
            free(m.y);
            free((void *)w[0].data);
            free(w);
            free(sc);
        }
}

/* The INT8 kernels per instruction set, per channel: decode shapes at T 1..8 in
 * GB/s of stored bytes (values and scales) against the read ceiling, prefill in
 * GFLOP/s against the FMA ceiling. */
static void bench_int8(double read_bw, double fma_gf) {
    const int64_t shape[][2] = {{2048, 7168}, {7168, 2048}, {2048, 2048}, {576, 7168}};
    const int64_t Ts[] = {1, 2, 4, 8};
    void (*const gemv[])(float *, const float *, const fw_weight *, int64_t) = {fw_cpu_int8_gemv_avx2,
                                                                              fw_cpu_int8_gemv_avx512};
    const char *names[] = {"avx2", "avx512"};
    printf("\nINT8 GEMV, per channel (GB/s of values + scales, %% of the read ceiling, Gweights/s)\n"
           "%-12s %-10s %2s %9s %7s %9s\n", "impl", "shape", "T", "GB/s", "% read", "Gw/s");
    for (int si = 0; si < 4; si++) {
        const int64_t N = shape[si][0], K = shape[si][1];
        const size_t bytes = (size_t)(N * K) + (size_t)N * 2;
        const int nc = (int)((256u << 20) / bytes) + 1;
        float *sc;
        fw_weight *w = make_weights(FW_WTYPE_INT8, N, K, nc, &sc);
        for (int k = 0; k < 4; k++) {
            const int64_t T = Ts[k];
            mm_arg m = mm_arg_new(w, nc, T);
            for (int v = 0; v < 2; v++) {
                if (v > 0 && !fw_cpu_has_avx512()) continue;
                m.fn = gemv[v];
                const double gbs = (double)bytes / best_time(mm_run, &m) / 1e9;
                char sh[32];
                snprintf(sh, sizeof sh, "%lldx%lld", (long long)N, (long long)K);
                printf("%-12s %-10s %2lld %9.2f %6.1f%% %9.2f\n", names[v], sh, (long long)T, gbs, 100 * gbs / read_bw,
                       gbs / (double)bytes * (double)(N * K));
                fflush(stdout);
            }
            free(m.x);
            free(m.y);
        }
        free_weights(w, nc, sc);
    }
    printf("\nINT8 GEMM, T 512 (GFLOP/s, %% of the FMA ceiling)\n");
    const int64_t pshape[][2] = {{2048, 7168}, {2048, 2048}};
    for (int si = 0; si < 2; si++) {
        const int64_t N = pshape[si][0], K = pshape[si][1], T = 512;
        float *sc;
        fw_weight *w = make_weights(FW_WTYPE_INT8, N, K, 1, &sc);
        mm_arg m = {.w = w, .ncopies = 1, .T = T};
        m.x = malloc((size_t)(T * K) * sizeof(float));
        m.y = malloc((size_t)(T * N) * sizeof(float));
        for (int64_t i = 0; i < T * K; i++) m.x[i] = frand();
        for (int v = 0; v < 2; v++) {
            if (v == 1 && !fw_cpu_has_avx512()) continue;
            m.fn = v == 0 ? fw_cpu_matmul_gemm_avx2 : fw_cpu_int8_gemm_avx512;
            const double gf = 2.0 * (double)(T * N * K) / best_time(mm_run, &m) / 1e9;
            printf("%-12s %lldx%lld: %7.1f GFLOP/s %5.1f%%\n", v ? "avx512" : "avx2 (tile)", (long long)N, (long long)K,
                   gf, 100 * gf / fma_gf);
            fflush(stdout);
        }
        free(m.x);
        free(m.y);
        free_weights(w, 1, sc);
    }
}

/* Seconds of one call of each of m->fn = fns[0 .. n), best of `reps` rounds that
 * call each in turn: on a shared machine a burst of other work then slows all of
 * them alike, and each one's best is a call that ran alone. */
static void best_interleaved(mm_arg *m, void (*const *fns)(float *, const float *, const fw_weight *, int64_t), int n,
                             int reps, double *best) {
    for (int v = 0; v < n; v++) {
        m->fn = fns[v];
        mm_run(m, 0); /* warm up */
        best[v] = 1e30;
    }
    for (int r = 0; r < reps; r++)
        for (int v = 0; v < n; v++) {
            m->fn = fns[v];
            const double t0 = now();
            mm_run(m, 0);
            const double t = now() - t0;
            best[v] = t < best[v] ? t : best[v];
        }
}

static void bf16dot_peak(void *p, int64_t it) {
    (void)it;
    *(double *)p += fw_ceiling_bf16dot(FMA_ITERS);
}

/* BF16 and FP8 weights per kernel set: the decode GEMV in GB/s of stored weights
 * against the read ceiling, the prefill GEMM (T 512) in GFLOP/s against the FMA and
 * vdpbf16ps ceilings; the sets' calls interleaved (best_interleaved). */
static void bench_bf16(double read_bw, double fma_gf, double dot_gf) {
    const int64_t shape[][2] = {{2048, 7168}, {7168, 2048}, {2048, 2048}, {576, 7168}};
    const int64_t Ts[] = {1, 2, 4, 8};
    const fw_ops *sets[] = {fw_ops_cpu_fast_avx2(), fw_ops_cpu_fast_avx512(), fw_ops_cpu_fast()};
    const int nsets = fw_ops_cpu_fast() == fw_ops_cpu_fast_avx512() ? 2 : fw_cpu_has_avx512() ? 3 : 1;
    for (int ty = 0; ty < 2; ty++) {
        const fw_wtype t = ty ? FW_WTYPE_FP8 : FW_WTYPE_BF16;
        printf("\n%s GEMV (GB/s of stored weights, %% of the read ceiling, Gweights/s)\n%-22s %-10s %2s %9s %7s %9s\n",
               ty ? "FP8" : "BF16", "ops", "shape", "T", "GB/s", "% read", "Gw/s");
        for (int si = 0; si < 4; si++) {
            const int64_t N = shape[si][0], K = shape[si][1];
            const size_t bytes = fw_wtype_bytes(t, N, K);
            const int nc = (int)((256u << 20) / bytes) + 1;
            float *sc;
            fw_weight *w = make_weights(t, N, K, nc, &sc);
            for (int k = 0; k < 4; k++) {
                const int64_t T = Ts[k];
                mm_arg m = mm_arg_new(w, nc, T);
                void (*fns[3])(float *, const float *, const fw_weight *, int64_t);
                double best[3];
                for (int v = 0; v < nsets; v++) fns[v] = sets[v]->matmul;
                best_interleaved(&m, fns, nsets, 60, best);
                for (int v = 0; v < nsets; v++) {
                    const double gbs = (double)bytes / best[v] / 1e9;
                    char sh[32];
                    snprintf(sh, sizeof sh, "%lldx%lld", (long long)N, (long long)K);
                    printf("%-22s %-10s %2lld %9.2f %6.1f%% %9.2f\n", sets[v]->name, sh, (long long)T, gbs,
                           100 * gbs / read_bw, gbs / (double)bytes * (double)(N * K));
                    fflush(stdout);
                }
                free(m.x);
                free(m.y);
            }
            free_weights(w, nc, sc);
        }
        printf("\n%s GEMM, T 512 (GFLOP/s, %% of the f32 FMA and the vdpbf16ps ceilings)\n", ty ? "FP8" : "BF16");
        const int64_t pshape[][2] = {{2048, 7168}, {7168, 2048}, {2048, 2048}};
        for (int si = 0; si < 3; si++) {
            const int64_t N = pshape[si][0], K = pshape[si][1], T = 512;
            float *sc;
            fw_weight *w = make_weights(t, N, K, 1, &sc);
            mm_arg m = {.w = w, .ncopies = 1, .T = T};
            m.x = malloc((size_t)(T * K) * sizeof(float));
            m.y = malloc((size_t)(T * N) * sizeof(float));
            for (int64_t i = 0; i < T * K; i++) m.x[i] = frand();
            void (*fns[3])(float *, const float *, const fw_weight *, int64_t);
            double best[3];
            for (int v = 0; v < nsets; v++) fns[v] = sets[v]->matmul;
            best_interleaved(&m, fns, nsets, 8, best);
            for (int v = 0; v < nsets; v++) {
                const double gf = 2.0 * (double)(T * N * K) / best[v] / 1e9;
                printf("%-22s %lldx%lld: %7.1f GFLOP/s %5.1f%% FMA %5.1f%% dot\n", sets[v]->name, (long long)N,
                       (long long)K, gf, 100 * gf / fma_gf, dot_gf > 0 ? 100 * gf / dot_gf : 0.0);
                fflush(stdout);
            }
            free(m.x);
            free(m.y);
            free_weights(w, 1, sc);
        }
    }
}

int main(int argc, char **argv) {
    if (argc > 1) g_budget = atof(argv[1]);
    const char *sections = argc > 2 ? argv[2] : "gmaw";
    if (!fw_cpu_has_avx2()) {
        fprintf(stderr, "bench_kernels: this CPU lacks AVX2/FMA/F16C; the fast kernels run their portable code\n");
    }
    printf("threads %d, fast ops %s\n", threads(), fw_ops_cpu_fast()->name);

    /* Ceilings. */
    stream_arg s = {.n = (int64_t)64 << 20}; /* 256 MiB per array */
    s.a = aligned_alloc(64, (size_t)s.n * sizeof(float));
    s.b = aligned_alloc(64, (size_t)s.n * sizeof(float));
    for (int64_t i = 0; i < s.n; i++) s.a[i] = s.b[i] = 1.0f;
    double bytes = (double)s.n * sizeof(float);
    double copy_bw = 2 * bytes / best_time(stream_copy, &s) / 1e9;      /* STREAM's count: read + write */
    double read_bw = bytes / best_time(stream_read, &s) / 1e9;
    free(s.a);
    free(s.b);
    double sink = 0;
    double fma_gf = threads() * (double)FMA_ITERS * FW_CEILING_FMA_FLOPS * fw_ceiling_fma_lanes() / 8 /
                    best_time(fma_peak, &sink) / 1e9;
    double mhz = cpu_mhz();
    double peak_gf = threads() * 2 * fw_ceiling_fma_lanes() * 2 * mhz / 1e3; /* cores x 2 FMA units x lanes x 2 flops x clock */
    printf("copy  %.1f GB/s (STREAM: 2 x bytes copied / s)\n", copy_bw);
    printf("read  %.1f GB/s (a read-only stream, like GEMV's)\n", read_bw);
    printf("FMA   %.1f GFLOP/s measured (registers only); nominal peak %.1f GFLOP/s at %.0f MHz\n", fma_gf,
           peak_gf, mhz);
    double dot_gf = -1;
    if (fw_ceiling_bf16dot(1) >= 0) {
        dot_gf = threads() * (double)FMA_ITERS * FW_CEILING_BF16DOT_FLOPS / best_time(bf16dot_peak, &sink) / 1e9;
        printf("BF16  %.1f GFLOP/s measured (vdpbf16ps, registers only)\n", dot_gf);
    }
    if (strchr(sections, 'b')) bench_bf16(read_bw, fma_gf, dot_gf);

    if (strchr(sections, 'i')) bench_int4(read_bw, fma_gf);
    if (strchr(sections, '8')) bench_int8(read_bw, fma_gf);

    /* GEMV: decode shapes, weights cycled through > 4x the L3. */
    const int64_t gshape[][2] = {{2048, 2048}, {5632, 2048}, {2048, 5632}, {7168, 2048}, {576, 7168}};
    const fw_wtype types[] = {FW_WTYPE_BF16, FW_WTYPE_FP8, FW_WTYPE_F32, FW_WTYPE_INT4, FW_WTYPE_INT8};
    static const char *const tnames[] = {"f32", "bf16", "fp8", "int4", "int8"};
    const int64_t gT[] = {1, 4, 8};
    printf("\nGEMV (matmul, weights streamed from memory; GB/s of stored weights, int4: packed words, group 32;\n"
           "int8: one scale per row)\n"
           "%-6s %-12s %3s %10s %9s %9s %12s\n", "type", "shape", "T", "GB/s", "% copy", "% read", "Gweights/s");
    for (int ti = 0; ti < 5 && strchr(sections, 'g'); ti++) {
        for (int si = 0; si < 5; si++) {
            int64_t N = gshape[si][0], K = gshape[si][1];
            size_t wbytes = fw_wtype_bytes(types[ti], N, K);
            int nc = (int)((256u << 20) / wbytes) + 1;
            float *scale;
            fw_weight *w = make_weights(types[ti], N, K, nc, &scale);
            for (int k = 0; k < 3; k++) {
                int64_t T = gT[k];
                if (types[ti] == FW_WTYPE_F32 && T != 1) continue;
                mm_arg m = {.fn = fw_ops_cpu_fast()->matmul, .w = w, .ncopies = nc, .T = T};
                m.x = malloc((size_t)(T * K) * sizeof(float));
                m.y = malloc((size_t)(T * N) * sizeof(float));
                for (int64_t i = 0; i < T * K; i++) m.x[i] = frand();
                double gbs = (double)wbytes / best_time(mm_run, &m) / 1e9;
                char shape[32];
                snprintf(shape, sizeof shape, "%lldx%lld", (long long)N, (long long)K);
                printf("%-6s %-12s %3lld %10.2f %8.1f%% %8.1f%% %12.2f\n", tnames[types[ti]], shape, (long long)T, gbs,
                       100 * gbs / copy_bw, 100 * gbs / read_bw, gbs * 1e9 / ((double)wbytes / (double)(N * K)) / 1e9);
                fflush(stdout);
                free(m.x);
                free(m.y);
            }
            free_weights(w, nc, scale);
        }
    }

    /* The two matmul paths around the crossover (FW_GEMV_MAX_T). */
    for (int ti = 0; ti < 2 && strchr(sections, 'x'); ti++) {
        int64_t N = 2048, K = 2048;
        size_t wbytes = (size_t)(N * K) * (types[ti] == FW_WTYPE_BF16 ? 2 : 1);
        int nc = (int)((256u << 20) / wbytes) + 1;
        float *scale;
        fw_weight *w = make_weights(types[ti], N, K, nc, &scale);
        printf("\n%s 2048x2048: GFLOP/s of the GEMV path / the GEMM path\n", types[ti] == FW_WTYPE_BF16 ? "bf16" : "fp8");
        for (int64_t T = 1; T <= 16; T++) {
            mm_arg m = {.fn = fw_cpu_matmul_gemv_avx2, .w = w, .ncopies = nc, .T = T};
            m.x = malloc((size_t)(T * K) * sizeof(float));
            m.y = malloc((size_t)(T * N) * sizeof(float));
            for (int64_t i = 0; i < T * K; i++) m.x[i] = frand();
            double a = 2.0 * (double)(T * N * K) / best_time(mm_run, &m) / 1e9;
            m.fn = fw_cpu_matmul_gemm_avx2;
            double b = 2.0 * (double)(T * N * K) / best_time(mm_run, &m) / 1e9;
            printf("T %2lld: %6.1f / %6.1f\n", (long long)T, a, b);
            fflush(stdout);
            free(m.x);
            free(m.y);
        }
        free_weights(w, nc, scale);
    }

    /* matmul_xw as absorbed MLA uses it: q_nope . W_UK for each of 128 heads, W_UK
     * a [128, 512] view (rows h*256 .. h*256+127) of kv_b_proj [128*256, 512]. */
    for (int ti = 0; ti < 2 && strchr(sections, 'w'); ti++) {
        float *scale;
        fw_weight *w = make_weights(types[ti], 128 * 256, 512, 1, &scale);
        xw_arg a = {.w = w, .T = 1};
        a.x = malloc(128 * 128 * sizeof(float));
        a.y = malloc(128 * 512 * sizeof(float));
        for (int i = 0; i < 128 * 128; i++) a.x[i] = frand();
        size_t bytes = (size_t)128 * 128 * 512 * (types[ti] == FW_WTYPE_BF16 ? 2 : 1);
        printf("\nmatmul_xw %s, 128 heads x [128, 512] views, T 1: %.2f GB/s\n",
               types[ti] == FW_WTYPE_BF16 ? "bf16" : "fp8", (double)bytes / best_time(xw_run, &a) / 1e9);
        free(a.x);
        free(a.y);
        free_weights(w, 1, scale);
    }

    /* Attention: prefill (naive) and decode (absorbed over the latent cache). */
    if (strchr(sections, 'a')) {
        attn_arg a = {.T = 512, .S = 512, .H = 16, .dqk = 192, .dv = 128};
        a.q = calloc((size_t)(a.T * a.H * a.dqk), sizeof(float));
        a.k = calloc((size_t)(a.S * a.H * a.dqk), sizeof(float));
        a.v = calloc((size_t)(a.S * a.H * a.dv), sizeof(float));
        a.o = calloc((size_t)(a.T * a.H * a.dv), sizeof(float));
        for (int64_t i = 0; i < a.T * a.H * a.dqk; i++) a.q[i] = frand();
        for (int64_t i = 0; i < a.S * a.H * a.dqk; i++) a.k[i] = frand();
        for (int64_t i = 0; i < a.S * a.H * a.dv; i++) a.v[i] = frand();
        double fl = (double)a.T * (a.T + 1) / 2 * a.H * (a.dqk + a.dv) * 2; /* causal */
        printf("\nattn_naive T %lld S %lld H %lld dqk %lld dv %lld: %.1f GFLOP/s\n", (long long)a.T, (long long)a.S,
               (long long)a.H, (long long)a.dqk, (long long)a.dv, fl / best_time(attn_naive_run, &a) / 1e9);
        free(a.q), free(a.k), free(a.v), free(a.o);
        attn_arg b = {.T = 1, .S = 4096, .H = 16, .dqk = 512, .dv = 64}; /* dqk: C, dv: R */
        b.q = calloc((size_t)(b.H * (b.dqk + b.dv)), sizeof(float));
        b.k = calloc((size_t)(b.S * (b.dqk + b.dv)), sizeof(float));
        b.o = calloc((size_t)(b.H * b.dqk), sizeof(float));
        for (int64_t i = 0; i < b.S * (b.dqk + b.dv); i++) b.k[i] = frand();
        for (int64_t i = 0; i < b.H * (b.dqk + b.dv); i++) b.q[i] = frand();
        double t = best_time(attn_absorbed_run, &b);
        printf("attn_absorbed T 1 S %lld H %lld C %lld R %lld: %.1f GFLOP/s, cache read at %.1f GB/s\n",
               (long long)b.S, (long long)b.H, (long long)b.dqk, (long long)b.dv,
               (double)b.S * b.H * (2 * b.dqk + b.dv) * 2 / t / 1e9, (double)b.S * (b.dqk + b.dv) * 4 / t / 1e9);
        free(b.q), free(b.k), free(b.o);
    }

    /* GEMM: prefill shapes. */
    const int64_t mshape[][2] = {{2048, 2048}, {5632, 2048}, {2048, 5632}};
    const int64_t mT[] = {16, 128, 512};
    printf("\nGEMM (matmul, prefill)\n%-6s %-12s %4s %10s %11s %11s\n", "type", "shape", "T", "GFLOP/s", "% FMA meas",
           "% nominal");
    for (int ti = 0; ti < 2 && strchr(sections, 'm'); ti++) {
        for (int si = 0; si < 3; si++) {
            int64_t N = mshape[si][0], K = mshape[si][1];
            float *scale;
            fw_weight *w = make_weights(types[ti], N, K, 1, &scale);
            for (int k = 0; k < 3; k++) {
                int64_t T = mT[k];
                mm_arg m = {.fn = fw_ops_cpu_fast()->matmul, .w = w, .ncopies = 1, .T = T};
                m.x = malloc((size_t)(T * K) * sizeof(float));
                m.y = malloc((size_t)(T * N) * sizeof(float));
                for (int64_t i = 0; i < T * K; i++) m.x[i] = frand();
                double gf = 2.0 * (double)(T * N * K) / best_time(mm_run, &m) / 1e9;
                char shape[32];
                snprintf(shape, sizeof shape, "%lldx%lld", (long long)N, (long long)K);
                printf("%-6s %-12s %4lld %10.1f %10.1f%% %10.1f%%\n", types[ti] == FW_WTYPE_BF16 ? "bf16" : "fp8", shape,
                       (long long)T, gf, 100 * gf / fma_gf, 100 * gf / peak_gf);
                fflush(stdout);
                free(m.x);
                free(m.y);
            }
            free_weights(w, 1, scale);
        }
    }
    return sink == 12345 ? 1 : 0;
}
