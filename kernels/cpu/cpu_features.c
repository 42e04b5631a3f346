/* What the CPU this process runs on can do, checked once at run time. */
#include "kernels/cpu/fast.h"

#include <cpuid.h>

/* F16C from cpuid leaf 1: clang's __builtin_cpu_supports does not know "f16c". */
static bool has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

/* Each answer is cached: cpuid traps to the hypervisor in a VM (microseconds), and
 * kernels ask per row (fw_cpu_widen_row). Threads that race store the same value. */
#define CACHED(expr)                                   \
    do {                                               \
        static int known; /* 0: not yet, 1: no, 2: yes */ \
        if (!known) known = (expr) ? 2 : 1;            \
        return known == 2;                             \
    } while (0)

bool fw_cpu_has_avx2(void) {
    __builtin_cpu_init();
    CACHED(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c());
}

bool fw_cpu_has_avx512(void) {
    __builtin_cpu_init();
    CACHED(fw_cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl"));
}

/* AVX512-BF16: cpuid leaf 7, subleaf 1, EAX bit 5 (not every compiler's
 * __builtin_cpu_supports knows "avx512bf16"); VBMI: leaf 7, ECX bit 1. Every CPU
 * with the first has the second so far; the FP8 kernels need both. */
bool fw_cpu_has_avx512bf16(void) {
    unsigned a, b, c, d;
    CACHED(fw_cpu_has_avx512() && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5)) &&
           __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 1)));
}
