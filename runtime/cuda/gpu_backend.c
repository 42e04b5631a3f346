/* The CUDA backend (runtime/model/backend.h): one GPU per rank, picked by the
 * node-local rank, NCCL for the tensor-parallel group. */
#include <stdlib.h>

#include "runtime/cuda/gpu_backend.h"
#include "runtime/cuda/gpu_model.h"
#include "runtime/model/kvcache.h"

/* The device state on the first call (the GPU of the node-local rank). */
static int open_dev(void **st, const fw_model *m, const fw_backend_place *at, fw_err *e) {
    if (*st) return FW_OK;
    int n = 0;
    if (fw_cuda_device_count(&n) || n == 0) return fw_errf(e, "--device cuda: no usable GPU on this node");
    fw_gpu_model *g = calloc(1, sizeof *g);
    if (!g) return fw_errf(e, "out of memory");
    *st = g;
    return fw_gpu_model_begin(g, m, at->local_rank % n, at->opts, e);
}

static int take_layer(void **st, const fw_model *m, const fw_backend_place *at, int l, fw_err *e) {
    return open_dev(st, m, at, e) || fw_gpu_upload_layer(*st, m, l, e) ? FW_ERR : FW_OK;
}

static int attach(void **st, fw_model *m, const fw_backend_place *at, fw_err *e) {
    if (open_dev(st, m, at, e) || fw_gpu_model_finish(*st, m, e)) return FW_ERR;
    if (at->tp_comm != MPI_COMM_NULL && fw_gpu_comm_init(*st, at->tp_comm, e)) return FW_ERR;
    return FW_OK;
}

static int kv_init(void *st, int64_t n_blocks, int64_t block, int64_t max_context, fw_err *e) {
    return fw_gpu_kv_init(st, n_blocks, block, max_context, e);
}

/* Room for every request at full length, as far as the free memory goes. */
static int64_t kv_default(void *st, int64_t block, int64_t max_batch, int64_t max_context) {
    int64_t want = max_batch * ((max_context + block - 1) / block);
    int64_t fit = fw_gpu_kv_fit(st, block);
    return want < fit ? want : fit;
}

/* The backend's steps as the GPU's segments (each with its ids from `ids`, in
 * sequence order; NULL: none). */
static fw_gpu_seg *segs_of(int n, const fw_seq_step *q, const int32_t *ids, fw_err *e) {
    fw_gpu_seg *segs = calloc((size_t)n, sizeof *segs);
    if (!segs) {
        fw_errf(e, "out of memory");
        return NULL;
    }
    for (int64_t i = 0, t = 0; i < n; t += q[i].T, i++)
        segs[i] = (fw_gpu_seg){q[i].kv, ids ? ids + t : NULL, q[i].T, q[i].n_out, q[i].hidden_out};
    return segs;
}

/* One step: the GPU's forward takes one attention mode for all its sequences,
 * as the runner's groups have (decodes and verifications together, a prompt
 * chunk alone). */
static int forward(void *st, int n, const fw_seq_step *q, const int32_t *ids, float *hidden, float *logits,
                   fw_err *e) {
    for (int i = 1; i < n; i++)
        if (q[i].mode != q[0].mode) return fw_errf(e, "--device cuda: the sequences of one step differ in attention mode");
    fw_gpu_seg *segs = segs_of(n, q, ids, e);
    if (!segs) return FW_ERR;
    int rc = fw_gpu_forward(st, n, segs, hidden, q[0].mode, logits, e);
    free(segs);
    return rc;
}

/* The MTP layer's steps mix the runner's modes (a position alone absorbed, the
 * accepted drafts' rows naive); both give the same attention, and the absorbed
 * form serves all of them at once unless every sequence asks for the naive. */
static int forward_mtp(void *st, int n, const fw_seq_step *q, const int32_t *ids, const float *h_in, float *h_out,
                       float *logits, fw_err *e) {
    fw_attn_mode mode = FW_ATTN_NAIVE;
    for (int i = 0; i < n; i++)
        if (q[i].mode == FW_ATTN_ABSORBED) mode = FW_ATTN_ABSORBED;
    if (!ids) return fw_errf(e, "the MTP layer needs the next token of each position");
    fw_gpu_seg *segs = segs_of(n, q, ids, e);
    if (!segs) return FW_ERR;
    int rc = fw_gpu_forward_mtp(st, n, segs, h_in, h_out, mode, logits, e);
    free(segs);
    return rc;
}

static int bench_steps(void *st, const fw_bench_steps *req, bool print, fw_err *e) {
    return fw_gpu_bench(st, req, print, e);
}

static const char *describe(void *st) { return ((fw_gpu_model *)st)->desc; }

static void detach(void *st) {
    if (!st) return;
    fw_gpu_model_free(st);
    free(st);
}

/* All the step's decodes go in one forward (one CUDA graph). As in vLLM or
 * SGLang, a token can then change with what else is in the batch where two
 * logits nearly tie: the GEMMs' reduction order depends on the batch size. */
static const fw_backend cuda_backend = {
    .name = "cuda",
    .kv_block = FW_KV_DEVICE_BLOCK_SIZE,
    .decode_group = 0,
    .take_layer = take_layer,
    .attach = attach,
    .kv_init = kv_init,
    .kv_default = kv_default,
    .forward = forward,
    .forward_mtp = forward_mtp,
    .bench_steps = bench_steps,
    .describe = describe,
    .detach = detach,
};

const fw_backend *fw_cuda_backend(void) { return &cuda_backend; }
