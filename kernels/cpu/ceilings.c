#include "kernels/cpu/ceilings.h"

#include <cpuid.h>
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void fw_ceiling_copy(float *dst, const float *src, int64_t n) {
#pragma omp parallel
    {
        int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
        int64_t a = n * id / nt, b = n * (id + 1) / nt;
        memcpy(dst + a, src + a, (size_t)(b - a) * sizeof(float));
    }
}

/* Four independent vector sums, so the adds never wait on each other. */
__attribute__((target("avx2"))) static double read_avx2(const float *a, int64_t n) {
    double sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
    for (int64_t c = 0; c < n / 4096; c++) {
        const float *b = a + c * 4096;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int i = 0; i < 4096; i += 32) {
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(b + i));
            a1 = _mm256_add_ps(a1, _mm256_loadu_ps(b + i + 8));
            a2 = _mm256_add_ps(a2, _mm256_loadu_ps(b + i + 16));
            a3 = _mm256_add_ps(a3, _mm256_loadu_ps(b + i + 24));
        }
        sum += _mm256_cvtss_f32(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    }
    return sum;
}

static double read_portable(const float *a, int64_t n) {
    double sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
    for (int64_t c = 0; c < n / 4096; c++) {
        float s[8] = {0};
        for (int i = 0; i < 4096; i += 8)
            for (int j = 0; j < 8; j++) s[j] += a[c * 4096 + i + j];
        for (int j = 0; j < 8; j++) sum += s[j];
    }
    return sum;
}

double fw_ceiling_read(const float *a, int64_t n) {
    return __builtin_cpu_supports("avx2") ? read_avx2(a, n) : read_portable(a, n);
}

/* 12 independent FMA chains per thread kept in registers: the FMA units' throughput. */
__attribute__((target("avx2,fma"))) static double fma_avx2(int64_t iters) {
    double sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
        __m256 a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
        const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
        for (int64_t k = 0; k < iters; k++) {
#define FMA1(a) a = _mm256_fmadd_ps(a, m, c);
            FMA1(a0) FMA1(a1) FMA1(a2) FMA1(a3) FMA1(a4) FMA1(a5)
            FMA1(a6) FMA1(a7) FMA1(a8) FMA1(a9) FMA1(a10) FMA1(a11)
#undef FMA1
            __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5),
                             "+x"(a6), "+x"(a7), "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
        }
        sink += _mm256_cvtss_f32(_mm256_add_ps(_mm256_add_ps(a0, a5), a11));
    }
    return sink;
}

/* The same on 16 lanes: the peak of the AVX-512 kernels, twice AVX2's where the
 * FMA units are 512 bits wide (Zen 5), the same where they split the vector. */
__attribute__((target("avx512f"))) static double fma_avx512(int64_t iters) {
    double sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
        __m512 a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
        const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
        for (int64_t k = 0; k < iters; k++) {
#define FMA1(a) a = _mm512_fmadd_ps(a, m, c);
            FMA1(a0) FMA1(a1) FMA1(a2) FMA1(a3) FMA1(a4) FMA1(a5)
            FMA1(a6) FMA1(a7) FMA1(a8) FMA1(a9) FMA1(a10) FMA1(a11)
#undef FMA1
            __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5),
                             "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
        }
        sink += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a5), a11));
    }
    return sink;
}

/* vdpbf16ps on 12 accumulators (AVX512-BF16): each adds 16 lanes x 2 products, the
 * peak of the BF16 prefill GEMM. */
__attribute__((target("avx512f,avx512bf16"))) static double bf16dot_avx512(int64_t iters) {
    double sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
        __m512 a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
        const __m512bh m = (__m512bh)_mm512_set1_epi16(0x3F80), c = (__m512bh)_mm512_set1_epi16(0x3300);
        for (int64_t k = 0; k < iters; k++) {
#define DP1(a) a = _mm512_dpbf16_ps(a, m, c);
            DP1(a0) DP1(a1) DP1(a2) DP1(a3) DP1(a4) DP1(a5)
            DP1(a6) DP1(a7) DP1(a8) DP1(a9) DP1(a10) DP1(a11)
#undef DP1
            __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5),
                             "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
        }
        sink += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a5), a11));
    }
    return sink;
}

double fw_ceiling_bf16dot(int64_t iters) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5)) || !__builtin_cpu_supports("avx512f")) return -1;
    return bf16dot_avx512(iters);
}

/* Flops of one call: FW_CEILING_FMA_FLOPS per iteration per thread on 8 lanes, twice
 * that on 16. */
int fw_ceiling_fma_lanes(void) { return __builtin_cpu_supports("avx512f") ? 16 : 8; }

double fw_ceiling_fma(int64_t iters) {
    if (__builtin_cpu_supports("avx512f")) return fma_avx512(iters);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return fma_avx2(iters);
    double sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
        float a[96] = {0};
        for (int64_t k = 0; k < iters; k++)
            for (int j = 0; j < 96; j++) a[j] = a[j] * 0.999999f + 1e-7f;
        sink += a[0] + a[95];
    }
    return sink;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define REPEATS 5

int fw_ceilings_measure(fw_ceilings *c, size_t bytes) {
    int64_t n = (int64_t)(bytes / sizeof(float)) / 4096 * 4096;
    float *a = aligned_alloc(64, (size_t)n * sizeof(float)), *b = aligned_alloc(64, (size_t)n * sizeof(float));
    if (!a || !b) {
        free(a);
        free(b);
        return -1;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) a[i] = b[i] = (float)(i & 1023); /* first touch by the same threads */
    volatile double sink = 0;
    double best_copy = 1e30, best_read = 1e30, best_fma = 1e30;
    const int64_t iters = 2000000;
    for (int r = 0; r < REPEATS; r++) { /* best of: other work may share the machine */
        double t0 = now();
        fw_ceiling_copy(b, a, n);
        double t1 = now();
        sink += fw_ceiling_read(a, n);
        double t2 = now();
        sink += fw_ceiling_fma(iters);
        double t3 = now();
        if (t1 - t0 < best_copy) best_copy = t1 - t0;
        if (t2 - t1 < best_read) best_read = t2 - t1;
        if (t3 - t2 < best_fma) best_fma = t3 - t2;
    }
    (void)sink;
    c->threads = omp_get_max_threads();
    c->copy_gbs = 2.0 * (double)n * sizeof(float) / best_copy / 1e9;
    c->read_gbs = (double)n * sizeof(float) / best_read / 1e9;
    c->fma_gflops = (double)c->threads * (double)iters * FW_CEILING_FMA_FLOPS * fw_ceiling_fma_lanes() / 8 / best_fma / 1e9;
    free(a);
    free(b);
    return 0;
}
