/* What the CUDA op tests share (defined in test_cuda_ops.c): the device context,
 * guarded device buffers, random host data, the NMSE comparison and host weights. */
#ifndef FW_TESTS_CUDA_TEST_H
#define FW_TESTS_CUDA_TEST_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/ops_cuda.h"

#define GUARD 256          /* sentinel bytes on each side (keeps 256-byte alignment) */
#define GUARD_BYTE 0xA5
#define FILL_BYTE 0xFF     /* bf16 0xFFFF and f32 0xFFFFFFFF are NaN */
#define NMSE_BF16 1e-5
#define NMSE_BF16_FEW 2e-5 /* fewer than 64 outputs */
#define NMSE_F32 1e-8
#define NMSE_ROUTE_W 1e-10
#define NMSE_FP8_ACT 5e-3

extern fw_cuda_ctx ctx;

/* Test infrastructure failures end the test (the library itself returns statuses). */
#define CU(call)                                                                                    \
    do {                                                                                            \
        if ((call) != FW_CUDA_OK) {                                                                 \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, ctx.err);         \
            exit(1);                                                                                \
        }                                                                                           \
    } while (0)

typedef struct dbuf {
    unsigned char *base;
    size_t bytes;
} dbuf;

typedef struct hw {
    fw_weight w;
    void *data;
    float *scale;
    uint16_t *gscale; /* INT4 */
} hw;

bool op_ok(int st, const char *what);
float *hnew(int64_t n);
float *hrand_bf16(int64_t n, float a);
void *dp(dbuf b);
dbuf dnew(size_t bytes);
void dfree(dbuf *b);
dbuf dbf16(const float *x, int64_t n);
dbuf df32(const float *x, int64_t n);
void get_bf16(float *y, dbuf b, int64_t n);
double compare(const char *op, const char *shape, const char *path, const float *y, const float *ref, int64_t n,
               double bound);
void check_guards(dbuf b, const char *op, const char *shape);
hw hw_make(fw_wtype type, int64_t rows, int64_t cols, int64_t ld);
/* INT4 [rows, cols] (cols a multiple of 8), random words, one bf16 scale per row and group. */
hw hw_make_int4(int64_t rows, int64_t cols, int64_t group);
void hw_free(hw *t);
const char *tname(fw_wtype t);

/* test_cuda_model_ops.c: the ops of the GPU model runtime (MoE, MLA); its failures. */
int test_model_ops(void);
/* test_cuda_indexer_ops.c: DeepSeek-V3.2's indexer ops; its failures. */
int test_indexer_ops(void);

#endif
