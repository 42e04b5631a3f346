/* A minimal test harness: CHECK records a failure with file and line and goes on;
 * a test's main returns check_result() (0 pass, 1 fail) or 77 to skip. */
#ifndef FW_TESTS_CHECK_H
#define FW_TESTS_CHECK_H

#include <stdint.h>
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

/* A fixed xorshift stream, so every run draws the same inputs. */
static uint64_t check_rng_state = 0x9E3779B97F4A7C15ull;

static inline uint32_t check_rng_u32(void) {
    check_rng_state ^= check_rng_state << 13;
    check_rng_state ^= check_rng_state >> 7;
    check_rng_state ^= check_rng_state << 17;
    return (uint32_t)(check_rng_state >> 32);
}

/* Uniform in [-1, 1). */
static inline float check_rng_uniform(void) { return (float)(check_rng_u32() >> 8) / 16777216.0f * 2.0f - 1.0f; }

static inline int check_result(void) {
    if (check_failures_) fprintf(stderr, "%d check(s) failed\n", check_failures_);
    return check_failures_ ? 1 : 0;
}

#endif
