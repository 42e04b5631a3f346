/* This machine's ceilings, measured in the same run as a benchmark so that its
 * figures read as fractions of what the hardware does: STREAM-like copy, a
 * read-only stream (what a GEMV does) and register-only FMA throughput. */
#ifndef FW_KERNELS_CPU_CEILINGS_H
#define FW_KERNELS_CPU_CEILINGS_H

#include <stddef.h>
#include <stdint.h>

typedef struct fw_ceilings {
    double copy_gbs;     /* (read + write bytes) / s, STREAM's count, all threads */
    double read_gbs;     /* bytes read / s */
    double fma_gflops;   /* float32 FMA throughput over all threads */
    int threads;
} fw_ceilings;

/* The kernels, for callers that time them their own way. */
void fw_ceiling_copy(float *dst, const float *src, int64_t n);   /* each thread memcpys its share */
double fw_ceiling_read(const float *a, int64_t n);               /* returns the sum (a sink) */
double fw_ceiling_fma(int64_t iters);                            /* returns a sink */
/* Floating-point operations of fw_ceiling_fma per iteration per thread on 8 lanes;
 * it runs on fw_ceiling_fma_lanes() lanes (16 where the CPU has AVX-512). */
#define FW_CEILING_FMA_FLOPS (12 * 8 * 2)
int fw_ceiling_fma_lanes(void);
/* vdpbf16ps throughput: FW_CEILING_BF16DOT_FLOPS per iteration per thread; returns
 * -1 without AVX512-BF16 (a sink otherwise). */
double fw_ceiling_bf16dot(int64_t iters);
#define FW_CEILING_BF16DOT_FLOPS (12 * 16 * 4)

/* Best of several repeats, arrays of `bytes` each (well past the last-level
 * cache). Returns -1 if the arrays cannot be allocated. */
int fw_ceilings_measure(fw_ceilings *c, size_t bytes);

#endif
