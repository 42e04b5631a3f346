/* This rank's part of the model on one GPU: the weights in their stored format
 * (BF16 or FP8 with block scales; norms, router bias and RoPE in fp32), each
 * layer's routed experts stacked in one allocation so one launch serves them all,
 * the paged latent KV cache in bf16, and the work buffers of a forward. Built from the
 * host model that fw_model_load read (same slices, same layout). */
#ifndef FW_RUNTIME_CUDA_GPU_MODEL_H
#define FW_RUNTIME_CUDA_GPU_MODEL_H

#include <mpi.h>

#include "kernels/cuda/ops_cuda.h"
#include "runtime/model/backend.h"
#include "runtime/model/model.h"

/* Local experts of one kind (gate, up or down) stacked: expert x - exp_first at
 * w.data + x * stride elements, its scales at w.scale + x * sstride floats. */
typedef struct fw_gpu_experts {
    fw_weight w;
    int64_t stride, sstride;
} fw_gpu_experts;

typedef struct fw_gpu_layer {
    bool moe, on_device;
    float *attn_norm, *ffn_norm, *q_a_norm, *kv_a_norm, *router_bias;
    fw_cuda_weight q_a, q_b, kv_a, kv_b, o;
    fw_cuda_weight gate, up, down;           /* dense FFN */
    fw_cuda_weight router, sh_gate, sh_up, sh_down;
    fw_gpu_experts exp_gate, exp_up, exp_down;
    /* DeepSeek-V3.2's indexer (cfg.index_topk > 0) */
    fw_cuda_weight ix_wq_b, ix_wk, ix_w;
    float *ix_k_norm, *ix_k_bias;
} fw_gpu_layer;

/* The MTP layer (speculative decoding's draft, runtime/model/model.h fw_mtp) on
 * the last stage: its cache rows are the cache's layer after the stage's. */
typedef struct fw_gpu_mtp {
    fw_gpu_layer layer;
    fw_cuda_weight embed, eh_proj, head;
    float *enorm, *hnorm, *head_norm;
} fw_gpu_mtp;

typedef struct fw_gpu_comm fw_gpu_comm; /* NCCL (gpu_nccl.c) */

/* One sequence's part of a batched forward on the GPU: T tokens at its cache's
 * positions kv->len .. kv->len + T - 1 (the backend's fw_seq_step, with its ids;
 * the forward takes one attention mode for all): the logits of its last n_out,
 * and with hidden_out the final-normed hidden state of each of its rows. */
typedef struct fw_gpu_seg {
    fw_kv *kv;
    const int32_t *ids;
    int64_t T;
    int64_t n_out;
    bool hidden_out;
} fw_gpu_seg;

/* Where a forward's time goes (furrow bench --device cuda): events recorded on
 * the stream between regions, summed after the forward when g->prof is set. */
typedef enum fw_gpu_region {
    FW_PROF_IO,        /* uploads, embedding, final norm and head, downloads */
    FW_PROF_ATTN_GEMM, /* q/kv/o projections, norms, RoPE, absorbed-MLA projections */
    FW_PROF_ATTN,      /* attention over the cache (and the naive form's expansion) */
    FW_PROF_ROUTE,     /* router GEMM, top-k, grouping tokens by expert */
    FW_PROF_MOE_GEMM,  /* shared and routed expert GEMMs, combine */
    FW_PROF_DENSE,     /* dense FFN GEMMs */
    FW_PROF_COMM,      /* tensor-parallel all-reduces */
    FW_PROF_N
} fw_gpu_region;
#define FW_PROF_MAX_EVENTS 1024
#define FW_GPU_MAX_GRAPH_BATCH 256
/* Tokens a sequence of a captured step: 1 (decode) or 1 + K (verifying K <= 2
 * drafts of --speculative mtp:K). */
#define FW_GPU_MAX_GRAPH_T 3
/* A captured step's key: tokens a sequence, whether it writes the hidden states
 * (the MTP layer's input), sequences. */
#define FW_GPU_GRAPH_KEYS (FW_GPU_MAX_GRAPH_T * 2 * (FW_GPU_MAX_GRAPH_BATCH + 1))

typedef struct fw_gpu_model {
    fw_cuda_ctx ctx;
    fw_config cfg;
    fw_part part;
    float softmax_scale, rope_mscale;
    float *rope_inv_freq;       /* host (R / 2) */
    fw_cuda_weight embed, head;
    float *final_norm;
    fw_gpu_layer *layers;       /* [num_hidden_layers]; the stage's are set */
    fw_gpu_mtp *mtp;            /* the MTP layer where the host model has it loaded (m->mtp), or NULL */
    int kv_layers;              /* layers of the cache: the stage's, and the MTP layer's */
    void **allocs;              /* device allocations besides the fw_cuda_weights */
    int64_t n_allocs, cap_allocs;
    uint64_t weight_bytes;

    /* The paged latent cache: blocks of kv_block positions, named by the block
     * tables of the sequences (runtime/model/kvcache.h; the host keeps only the ids). */
    int64_t kv_blocks, kv_block;
    int64_t cap;                /* positions per sequence at most */
    int64_t max_blocks;         /* table entries per sequence: cap / kv_block rounded up */
    int64_t kv_w;               /* bf16 values a row: C + R, then (V3.2) the index key from ix_col */
    int64_t ix_col;             /* V3.2: id e4m3 codes and their fp32 scale from this bf16 column (16-byte aligned) */
    fw_bf16 *kv;                /* (n_layers, kv_blocks, kv_block, kv_w) */
    size_t kv_bytes;

    /* Work space of a forward, grown on demand, and pinned host staging. */
    void *work;
    size_t work_bytes;
    void *pinned;
    size_t pinned_bytes;

    fw_gpu_comm *comm;          /* NULL without tensor parallelism */
    /* furrow bench --tp-sim: no other ranks; with sim_comm each all-reduce of b
     * bytes is a wait of sim_alpha_us + b x sim_us_per_byte (fw_cuda_delay). */
    bool sim_comm;
    double sim_alpha_us, sim_us_per_byte;

    /* A second stream for the work of a layer that does not depend on the main
     * stream's next kernels (the kv branch of the attention, the shared experts):
     * forked and joined by events, captured into the decode graphs as parallel
     * branches. Off with --cuda-streams 1 and while profiling. */
    fw_cuda_ctx side;
    bool side_on;
    void *fork_ev[2];           /* main -> side, side -> main */

    bool graphs_on;             /* decode steps as CUDA graphs (--cuda-graphs) */
    double collective_timeout;  /* seconds (--collective-timeout) */
    void *graph_exec[FW_GPU_GRAPH_KEYS]; /* by (T, hidden, batch size): graph_key in gpu_forward.c */
    bool graph_warm[FW_GPU_GRAPH_KEYS];
    void *graph_scratch[2]; /* the main and side contexts' scratch when the graphs were made */

    bool prof;                  /* time regions (costs an event per region; no graphs) */
    void *prof_ev[FW_PROF_MAX_EVENTS];
    int prof_region[FW_PROF_MAX_EVENTS];
    int n_prof;
    double prof_ms[FW_PROF_N];  /* summed over forwards since the last reset */
    bool time_gpu;              /* time each forward's device work (graph or eager) with two events */
    void *step_ev[2];
    double gpu_ms;              /* summed over timed forwards since the last reset */
    char desc[512];
} fw_gpu_model;

/* Uploads the host model's weights to device `device`: begin (the context), a
 * layer at a time as the loader has them (fw_gpu_upload_layer, so the host can
 * free each), then finish (embedding, head, the layers not yet uploaded).
 * fw_gpu_model_init is begin then finish. */
int fw_gpu_model_begin(fw_gpu_model *g, const fw_model *m, int device, const fw_backend_opts *o, fw_err *e);
int fw_gpu_upload_layer(fw_gpu_model *g, const fw_model *m, int l, fw_err *e);
int fw_gpu_model_finish(fw_gpu_model *g, const fw_model *m, fw_err *e);
int fw_gpu_model_init(fw_gpu_model *g, const fw_model *m, int device, const fw_backend_opts *o, fw_err *e);
/* (Re)allocates the paged cache: n_blocks blocks of `block` positions for
 * sequences of at most max_context positions (the old cache is dropped). */
int fw_gpu_kv_init(fw_gpu_model *g, int64_t n_blocks, int64_t block, int64_t max_context, fw_err *e);
/* Blocks of `block` positions that fit in the free memory (the current cache's
 * counted as free), keeping FW_GPU_WORK_RESERVE for work space and graphs. */
#define FW_GPU_WORK_RESERVE (4ull << 30)
int64_t fw_gpu_kv_fit(fw_gpu_model *g, int64_t block);
void fw_gpu_model_free(fw_gpu_model *g);

/* The batched forward of runtime/model/backend.h on this GPU (gpu_forward.c):
 * logits (sum of the segments' n_out, vocab shard). */
int fw_gpu_forward(fw_gpu_model *g, int n, const fw_gpu_seg *segs, float *hidden, fw_attn_mode mode, float *logits,
                   fw_err *e);
/* The MTP layer over the segments (fw_backend.forward_mtp): ids the next token
 * of each row, h_in (sum T, D) the final-normed hidden states, h_out (sum T, D;
 * NULL: not wanted) its output before shared_head.norm, logits (sum n_out,
 * vocab shard). Advances each cache's length. */
int fw_gpu_forward_mtp(fw_gpu_model *g, int n, const fw_gpu_seg *segs, const float *h_in, float *h_out,
                       fw_attn_mode mode, float *logits, fw_err *e);

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

/* Destroys the captured decode graphs (gpu_model.c; gpu_forward.c makes them). */
void fw_gpu_drop_graphs(fw_gpu_model *g);

/* Marks the end of a region of the forward (no-op unless g->prof). */
void fw_gpu_prof_mark(fw_gpu_model *g, fw_gpu_region r);
/* Adds the marked regions of the last forward (after it synchronized) to prof_ms. */
void fw_gpu_prof_collect(fw_gpu_model *g);

/* furrow bench --device cuda (gpu_bench.c): see fw_backend.bench_steps. */
int fw_gpu_bench(fw_gpu_model *g, const fw_bench_steps *req, bool print, fw_err *e);

/* Records ctx.err into e (after a failed fw_cuda_* call) and returns FW_ERR. */
static inline int fw_gpu_fail(fw_gpu_model *g, fw_err *e) {
    return fw_errf(e, "GPU %d: %s", g->ctx.device, g->ctx.err);
}

#endif
