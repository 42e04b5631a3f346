/* The CUDA device backend (runtime/model/backend.h): one GPU per rank, picked by the
 * node-local rank, NCCL for the tensor-parallel group. */
#include <stdlib.h>

#include "runtime/cuda/gpu_backend.h"
#include "runtime/cuda/gpu_model.h"

/* The device state on the first call (the GPU of the node-local rank). */
static int open_dev(void **dev, const fw_model *m, int local_rank, fw_err *e) {
    if (*dev) return FW_OK;
    int n = 0;
    if (fw_cuda_device_count(&n) || n == 0) return fw_errf(e, "--device cuda: no usable GPU on this node");
    fw_gpu_model *g = calloc(1, sizeof *g);
    if (!g) return fw_errf(e, "out of memory");
    *dev = g;
    return fw_gpu_model_begin(g, m, local_rank % n, e);
}

static int take_layer(void **dev, const fw_model *m, int local_rank, int l, fw_err *e) {
    return open_dev(dev, m, local_rank, e) || fw_gpu_upload_layer(*dev, m, l, e) ? FW_ERR : FW_OK;
}

static int attach(void **dev, const fw_model *m, MPI_Comm tp_comm, int local_rank, fw_err *e) {
    if (open_dev(dev, m, local_rank, e) || fw_gpu_model_finish(*dev, m, e)) return FW_ERR;
    if (tp_comm != MPI_COMM_NULL && fw_gpu_comm_init(*dev, tp_comm, e)) return FW_ERR;
    return FW_OK;
}

static int kv_init(void *dev, int64_t n_blocks, int64_t block, int64_t max_context, fw_err *e) {
    return fw_gpu_kv_init(dev, n_blocks, block, max_context, e);
}

static int64_t kv_fit(void *dev, int64_t block) { return fw_gpu_kv_fit(dev, block); }

static int forward(void *dev, int n, const fw_seg *segs, float *hidden, fw_attn_mode mode, float *logits,
                   int64_t n_out, fw_err *e) {
    return fw_gpu_forward(dev, n, segs, hidden, mode, logits, n_out, e);
}

static int bench(void *dev, const fw_dev_bench *req, bool print, fw_err *e) { return fw_gpu_bench(dev, req, print, e); }

static const char *describe(void *dev) { return ((fw_gpu_model *)dev)->desc; }

static void detach(void *dev) {
    if (!dev) return;
    fw_gpu_model_free(dev);
    free(dev);
}

static const fw_device_backend cuda_backend = {"cuda", take_layer, attach, kv_init, kv_fit, forward, bench, describe, detach};

const fw_device_backend *fw_cuda_backend(void) { return &cuda_backend; }
