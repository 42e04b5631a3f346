#include "runtime/ceilings.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cli.h"

#define REPEATS 5

/* Best of REPEATS: the machine may be busy with other work at times. */
static double copy_gbs(float *a, float *b, size_t n) {
    double best = 0;
    for (int r = 0; r < REPEATS; r++) {
        double t0 = fw_now();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) b[i] = a[i];
        double dt = fw_now() - t0;
        double gbs = 2.0 * (double)n * sizeof(float) / dt / 1e9;
        if (gbs > best) best = gbs;
    }
    return best;
}

static double read_gbs(const float *a, size_t n, float *sink) {
    double best = 0;
    for (int r = 0; r < REPEATS; r++) {
        double t0 = fw_now();
        float total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total)
        for (size_t i = 0; i < n; i++) total += a[i];
        double dt = fw_now() - t0;
        *sink += total;
        double gbs = (double)n * sizeof(float) / dt / 1e9;
        if (gbs > best) best = gbs;
    }
    return best;
}

/* 8 independent accumulator vectors of 8 lanes keep both FMA pipes busy; the
 * compiler vectorises the inner loop with whatever the build targets, so the
 * AVX2 clone is selected at run time where the CPU has it. */
__attribute__((target_clones("avx2,fma", "default"))) static float fma_kernel(long iters, float x) {
    float acc[64];
    for (int j = 0; j < 64; j++) acc[j] = x + (float)j;
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < 64; j++) acc[j] = acc[j] * 0.9999999f + 1e-7f;
    float s = 0;
    for (int j = 0; j < 64; j++) s += acc[j];
    return s;
}

static double fma_gflops(float *sink) {
    const long iters = 2000000;
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = fw_now();
        float total = 0;
#pragma omp parallel reduction(+ : total)
        total += fma_kernel(iters, (float)omp_get_thread_num());
        double dt = fw_now() - t0;
        *sink += total;
        double gf = 2.0 * 64 * (double)iters * omp_get_max_threads() / dt / 1e9;
        if (gf > best) best = gf;
    }
    return best;
}

int fw_ceilings_measure(fw_ceilings *c, size_t bytes) {
    size_t n = bytes / sizeof(float);
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    if (!a || !b) {
        free(a);
        free(b);
        return -1;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = b[i] = (float)(i & 1023); /* first touch by the same threads */
    volatile float sink = 0;
    float s = 0;
    c->threads = omp_get_max_threads();
    c->copy_gbs = copy_gbs(a, b, n);
    c->read_gbs = read_gbs(a, n, &s);
    c->fma_gflops = fma_gflops(&s);
    sink = s;
    (void)sink;
    free(a);
    free(b);
    return 0;
}
