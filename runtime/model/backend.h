/* A device backend for the model: the engine runs this rank's stage through it
 * instead of the CPU op table when `--device` names it. A binary that links one
 * registers it before running a command (furrow-cuda registers the CUDA backend);
 * plain `furrow` links none, so it never loads CUDA, and hands `--device cuda` to
 * the furrow-cuda next to it (runtime/cli/main.c). */
#ifndef FW_RUNTIME_MODEL_BACKEND_H
#define FW_RUNTIME_MODEL_BACKEND_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "io/base/err.h"
#include "runtime/model/model.h"

/* One sequence's part of a batched forward: T tokens at its cache's positions
 * kv->len .. kv->len + T - 1. kv holds the length, the capacity and the block
 * table; the blocks themselves are the device's (kv_init), kv->pool only
 * counts them. */
typedef struct fw_seg {
    fw_kv *kv;
    const int32_t *ids;
    int64_t T;
} fw_seg;

/* What `furrow bench --device` measures: decode steps of `batch[i]` sequences at
 * `context[j]` cached positions, and a prefill of `prefill` tokens. */
typedef struct fw_dev_bench {
    int n_batch, n_context;
    int batch[8];
    int64_t context[4];
    int64_t prefill;
    int iters;
} fw_dev_bench;

typedef struct fw_device_backend {
    const char *name;
    /* Copies layer l of the host model as soon as the loader has it (the device
     * state is made on the first call, on the device of the node-local rank);
     * the loader then frees the host copy, so a rank's host memory holds one
     * layer at a time, not its whole part. */
    int (*take_layer)(void **dev, const fw_model *m, int local_rank, int l, fw_err *e);
    /* Copies this rank's part of the model (host weights loaded) to the device
     * chosen by the node-local rank; tp_comm is the tensor-parallel group
     * (MPI_COMM_NULL: none); layers already taken are not copied again. The
     * host weights may be freed afterwards. */
    int (*attach)(void **dev, const fw_model *m, MPI_Comm tp_comm, int local_rank, fw_err *e);
    /* (Re)allocates the paged latent cache on the device: n_blocks blocks of
     * `block` positions (every layer of the stage), block tables of sequences of
     * at most max_context positions. What the old cache held is gone. */
    int (*kv_init)(void *dev, int64_t n_blocks, int64_t block, int64_t max_context, fw_err *e);
    /* Blocks of `block` positions a kv_init could take now, leaving room for the
     * forward's work space (the default size of the scheduler's cache). */
    int64_t (*kv_fit)(void *dev, int64_t block);
    /* fw_model_forward for n sequences at once: hidden holds (sum T, D) floats in
     * and out as there; the last stage writes the logits of the last n_out tokens
     * of each sequence, (n * n_out, vocab shard), in sequence order. */
    int (*forward)(void *dev, int n, const fw_seg *segs, float *hidden, fw_attn_mode mode, float *logits,
                   int64_t n_out, fw_err *e);
    /* The device's benchmark (collective over the replica; prints where `print`). */
    int (*bench)(void *dev, const fw_dev_bench *req, bool print, fw_err *e);
    /* A line describing the device (name, memory), for reports. */
    const char *(*describe)(void *dev);
    void (*detach)(void *dev);
} fw_device_backend;

/* The backend linked into this binary, or NULL. */
const fw_device_backend *fw_device_backend_linked(void);
void fw_device_backend_register(const fw_device_backend *b);

#endif
