/* What the CPU this process runs on can do, checked once at run time. */
#include "kernels/cpu/fast.h"

bool fw_cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
