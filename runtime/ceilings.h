/* This machine's ceilings, measured in the same run as a benchmark so that its
 * figures can be read as fractions of what the hardware does. */
#ifndef FW_RUNTIME_CEILINGS_H
#define FW_RUNTIME_CEILINGS_H

#include <stddef.h>

typedef struct fw_ceilings {
    double copy_gbs;     /* STREAM-like copy: (read + write bytes) / s, all threads */
    double read_gbs;     /* streaming read (a sum over a large array) / s */
    double fma_gflops;   /* float32 FMA peak over all threads (independent chains) */
    int threads;
} fw_ceilings;

/* Measures with arrays of `bytes` each (well past the last-level cache). */
int fw_ceilings_measure(fw_ceilings *c, size_t bytes);

#endif
