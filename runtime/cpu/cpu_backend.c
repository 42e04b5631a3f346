/* The CPU backend (runtime/model/backend.h): the forward of forward.c on the
 * host weights the loader read, the latent cache in a host pool. */
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cpu/fast.h"
#include "runtime/cpu/cpu.h"

typedef struct cpu_state {
    fw_model *m;
    fw_comm *comm;
    fw_kv_pool pool;           /* the blocks of every sequence's cache */
    char desc[128];
} cpu_state;

static int attach(void **st, fw_model *m, const fw_backend_place *at, fw_err *e) {
    cpu_state *s = calloc(1, sizeof *s);
    if (!s) return fw_errf(e, "out of memory");
    s->m = m;
    s->comm = at->comm;
    snprintf(s->desc, sizeof s->desc, "CPU, %s kernels", m->ops->name);
    *st = s;
    return FW_OK;
}

static int kv_init(void *st, int64_t n_blocks, int64_t block, int64_t max_context, fw_err *e) {
    cpu_state *s = st;
    const fw_config *c = &s->m->cfg;
    (void)max_context; /* the tables say which blocks a sequence has */
    fw_kv_pool_free(&s->pool);
    return fw_kv_pool_init(&s->pool, n_blocks, block, fw_model_kv_layers(s->m), fw_config_kv_width(c), e);
}

/* max_batch requests of 512 tokens, or one of max_context if that is more: the
 * host's memory is the user's to size (--kv-blocks). */
static int64_t kv_default(void *st, int64_t block, int64_t max_batch, int64_t max_context) {
    (void)st;
    int64_t per = (max_context < 512 ? max_context : 512) * max_batch;
    if (per < max_context) per = max_context;
    return (per + block - 1) / block;
}

static int forward(void *st, int n, const fw_seq_step *q, const int32_t *ids, float *hidden, float *logits,
                   fw_err *e) {
    cpu_state *s = st;
    if (!s->pool.data) return fw_errf(e, "forward: the backend has no KV cache");
    return fw_model_forward_seqs(s->m, s->comm, &s->pool, n, q, ids, hidden, logits, e);
}

static int forward_mtp(void *st, int n, const fw_seq_step *q, const int32_t *ids, const float *h_in, float *h_out,
                       float *logits, fw_err *e) {
    cpu_state *s = st;
    if (!s->pool.data) return fw_errf(e, "forward: the backend has no KV cache");
    return fw_model_forward_mtp(s->m, s->comm, &s->pool, n, q, ids, h_in, h_out, logits, e);
}

static const char *describe(void *st) { return ((cpu_state *)st)->desc; }

static void detach(void *st) {
    cpu_state *s = st;
    if (!s) return;
    fw_kv_pool_free(&s->pool);
    free(s);
}

/* Up to 8 rows the CPU matmuls take their GEMV path, whose result for a row does
 * not depend on the other rows: a request's tokens stay the same whatever else
 * is in the batch (tests/test_invariance.c). */
static const fw_backend cpu_backend = {
    .name = "cpu",
    .kv_block = FW_KV_BLOCK_SIZE,
    .decode_group = FW_GEMV_MAX_T,
    .take_layer = NULL, /* computes on the host weights */
    .attach = attach,
    .kv_init = kv_init,
    .kv_default = kv_default,
    .forward = forward,
    .forward_mtp = forward_mtp,
    .bench_steps = NULL,
    .describe = describe,
    .detach = detach,
};

const fw_backend *fw_cpu_backend(void) { return &cpu_backend; }
