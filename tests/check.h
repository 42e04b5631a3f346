/* A minimal test harness: CHECK records a failure with file and line and goes on;
 * a test's main returns check_result() (0 pass, 1 fail) or 77 to skip. */
#ifndef FW_TESTS_CHECK_H
#define FW_TESTS_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int check_failures_;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            check_failures_++;                                                  \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

#define SKIP(...)                                                               \
    do {                                                                        \
        fprintf(stderr, "SKIP: ");                                              \
        fprintf(stderr, __VA_ARGS__);                                           \
        fputc('\n', stderr);                                                    \
        exit(77);                                                               \
    } while (0)

static inline int check_result(void) {
    if (check_failures_) fprintf(stderr, "%d check(s) failed\n", check_failures_);
    return check_failures_ ? 1 : 0;
}

#endif
