/* This rank's part of the model on one GPU: the weights in their stored format
 * (BF16 or FP8 with block scales; norms, router bias and RoPE in fp32), each
 * layer's routed experts stacked in one allocation so one launch serves them all,
 * the latent KV caches in bf16, and the work buffers of a forward. Built from the
 * host model that fw_model_load read (same slices, same layout). */
#ifndef FW_RUNTIME_GPU_MODEL_H
#define FW_RUNTIME_GPU_MODEL_H

#include <mpi.h>

#include "kernels/cuda/ops_cuda.h"
#include "runtime/device.h"
#include "runtime/model.h"

/* Local experts of one kind (gate, up or down) stacked: expert x - exp_first at
 * w.data + x * stride elements, its scales at w.scale + x * sstride floats. */
typedef struct fw_gpu_experts {
    fw_weight w;
    int64_t stride, sstride;
} fw_gpu_experts;

typedef struct fw_gpu_layer {
    bool moe;
    float *attn_norm, *ffn_norm, *q_a_norm, *kv_a_norm, *router_bias;
    fw_cuda_weight q_a, q_b, kv_a, kv_b, o;
    fw_cuda_weight gate, up, down;           /* dense FFN */
    fw_cuda_weight router, sh_gate, sh_up, sh_down;
    fw_gpu_experts exp_gate, exp_up, exp_down;
} fw_gpu_layer;

typedef struct fw_gpu_comm fw_gpu_comm; /* NCCL (gpu_nccl.c) */

typedef struct fw_gpu_model {
    fw_cuda_ctx ctx;
    fw_config cfg;
    fw_part part;
    float softmax_scale, rope_mscale;
    float *rope_inv_freq;       /* host (R / 2) */
    fw_cuda_weight embed, head;
    float *final_norm;
    fw_gpu_layer *layers;       /* [num_hidden_layers]; the stage's are set */
    void **allocs;              /* device allocations besides the fw_cuda_weights */
    int64_t n_allocs, cap_allocs;
    uint64_t weight_bytes;

    int n_seqs;
    int64_t cap;                /* positions per sequence */
    fw_bf16 *kv;                /* (n_seqs, n_layers, cap, C + R) */

    /* Work space of a forward, grown on demand, and pinned host staging. */
    void *work;
    size_t work_bytes;
    void *pinned;
    size_t pinned_bytes;

    fw_gpu_comm *comm;          /* NULL without tensor parallelism */
    char desc[512];
} fw_gpu_model;

/* Uploads the host model's weights to device `device`. */
int fw_gpu_model_init(fw_gpu_model *g, const fw_model *m, int device, int n_seqs, int64_t context, fw_err *e);
void fw_gpu_model_free(fw_gpu_model *g);

/* The batched forward of runtime/device.h on this GPU. */
int fw_gpu_forward(fw_gpu_model *g, int n, const fw_seg *segs, float *hidden, fw_attn_mode mode, float *logits,
                   int64_t n_out, fw_err *e);

/* Tensor parallelism over NCCL (gpu_nccl.c): a communicator for tp_comm's ranks
 * (unique id from its rank 0 over MPI, then a barrier), and an in-place bf16 sum
 * of n values on a communication stream ordered by events with g->ctx.stream.
 * A collective that does not finish within the timeout aborts the communicator
 * and fails with a message. */
int fw_gpu_comm_init(fw_gpu_model *g, MPI_Comm tp_comm, fw_err *e);
int fw_gpu_allreduce(fw_gpu_model *g, fw_bf16 *buf, int64_t n, fw_err *e);
/* Waits for everything enqueued on the compute stream, watching for a stuck or
 * failed collective (then aborts the communicator and fails). */
int fw_gpu_comm_wait(fw_gpu_model *g, fw_err *e);
void fw_gpu_comm_free(fw_gpu_model *g);

/* Records ctx.err into e (after a failed fw_cuda_* call) and returns FW_ERR. */
int fw_gpu_fail(fw_gpu_model *g, fw_err *e);

#endif
