#include "io/base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int fw_errf(fw_err *e, const char *fmt, ...) {
    if (!e) return FW_ERR;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return FW_ERR;
}

int fw_err_prefix(fw_err *e, const char *fmt, ...) {
    if (!e) return FW_ERR;
    char old[sizeof e->msg];
    memcpy(old, e->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof e->msg)
        snprintf(e->msg + n, sizeof e->msg - (size_t)n, ": %s", old);
    return FW_ERR;
}

int fw_mul_u64(unsigned long long a, unsigned long long b, unsigned long long *out) {
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}

int fw_add_u64(unsigned long long a, unsigned long long b, unsigned long long *out) {
    return __builtin_add_overflow(a, b, out) ? -1 : 0;
}
