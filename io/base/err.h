/* Error reporting for library code: a function that can fail takes an fw_err *,
 * fills it with a message naming the file, tensor, rank or request at fault, and
 * returns -1 (FW_ERR). Library code never exits; the CLI prints err->msg. */
#ifndef FW_IO_BASE_ERR_H
#define FW_IO_BASE_ERR_H

#include <stddef.h>

#define FW_OK 0
#define FW_ERR (-1)

typedef struct fw_err {
    char msg[2048];
} fw_err;

/* Sets the message (printf-style) and returns FW_ERR, so `return fw_errf(e, ...)`. */
int fw_errf(fw_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes the existing message with more context: "ctx: old message". Returns FW_ERR. */
int fw_err_prefix(fw_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Overflow-checked size arithmetic for values read from files: return 0 on
 * success, -1 when the result does not fit in uint64_t. */
int fw_mul_u64(unsigned long long a, unsigned long long b, unsigned long long *out);
int fw_add_u64(unsigned long long a, unsigned long long b, unsigned long long *out);

#endif
