/* The contract the scheduler's decode groups rely on (runtime/engine/runner.c): for
 * up to the CPU backend's decode_group rows, each CPU op table's matmul gives every row
 * exactly (bit for bit) what that row gives alone, for every weight type, so a
 * request's tokens do not depend on what else is in the batch. */
#include "kernels/cpu/fast.h"
#include "kernels/ops.h"
#include "runtime/cpu/cpu.h"
#include "tests/check.h"

#include <string.h>

static void check(const fw_ops *ops, const fw_weight *w, const char *name) {
    const int64_t N = w->rows, K = w->cols, group = fw_cpu_backend()->decode_group;
    float *x = malloc((size_t)(group * K) * sizeof(float));
    float *y = malloc((size_t)(group * N) * sizeof(float)), *y1 = malloc((size_t)N * sizeof(float));
    for (int64_t i = 0; i < group * K; i++) x[i] = check_rng_uniform();
    CHECK(group >= 2, "the CPU backend groups %lld decodes", (long long)group);
    for (int M = 2; M <= group; M++) {
        ops->matmul(y, x, w, M);
        for (int r = 0; r < M; r++) {
            ops->matmul(y1, x + r * K, w, 1);
            CHECK(!memcmp(y1, y + r * N, (size_t)N * sizeof(float)), "%s %s: row %d of %d differs from the row alone",
                  ops->name, name, r, M);
        }
    }
    free(x), free(y), free(y1);
}

int main(void) {
    const int64_t N = 300, K = 260; /* not multiples of the kernels' tiles or of 128 */
    float *wf = malloc((size_t)(N * K) * sizeof(float)), sc[9];
    uint16_t *wb = malloc((size_t)(N * K) * sizeof(uint16_t));
    uint8_t *w8 = malloc((size_t)(N * K));
    for (int64_t i = 0; i < N * K; i++) {
        wf[i] = check_rng_uniform();
        uint32_t u;
        memcpy(&u, &wf[i], 4);
        wb[i] = (uint16_t)(u >> 16);
        w8[i] = (uint8_t)(check_rng_u32() % 256);
        if ((w8[i] & 0x7f) == 0x7f) w8[i] = 1; /* not NaN */
    }
    for (int i = 0; i < 9; i++) sc[i] = 0.01f * (float)(i + 1);
    fw_weight ws[3] = {{.type = FW_WTYPE_F32, .rows = N, .cols = K, .ld = K, .data = wf},
                       {.type = FW_WTYPE_BF16, .rows = N, .cols = K, .ld = K, .data = wb},
                       {.type = FW_WTYPE_FP8, .rows = N, .cols = K, .ld = K, .data = w8, .scale = sc, .scale_ld = 3}};
    const char *names[3] = {"f32", "bf16", "fp8"};
    const fw_ops *tables[3] = {fw_ops_cpu_fast(), fw_ops_cpu_fast_generic(), fw_ops_cpu_ref()};
    for (int t = 0; t < 3; t++)
        for (int k = 0; k < 3; k++) check(tables[t], &ws[k], names[k]);
    free(wf), free(wb), free(w8);
    return check_result();
}
