/* The backend interface: what runs this rank's pipeline stage of the model. The
 * engine (runtime/engine) calls only this table, whatever runs the model; the CPU
 * (runtime/cpu, over the kernels/ op table) and CUDA (runtime/cuda, one GPU per
 * rank) implement it. A binary registers the backends it links before running a
 * command: plain `furrow` only the CPU, so it never loads CUDA, and it hands
 * `--device cuda` to the furrow-cuda next to it (runtime/cli/dispatch.c). */
#ifndef FW_RUNTIME_MODEL_BACKEND_H
#define FW_RUNTIME_MODEL_BACKEND_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "io/base/err.h"
#include "runtime/dist/comm.h"
#include "runtime/model/model.h"

/* What a backend's step benchmark (furrow bench) measures: decode steps of `batch[i]` sequences at
 * `context[j]` cached positions, and prefills of `prefill[k]` tokens. With sim_tp > 1 the rank runs
 * rank 0's share of a tp sim_tp layout alone (fw_engine_opts.sim_tp), and each step is also run with
 * every all-reduce replaced by a wait of the modelled ring all-reduce: sim_alpha_us + 2 (n - 1) / n x
 * bytes / sim_busbw_gbs. */
typedef struct fw_bench_steps {
    int n_batch, n_context, n_prefill;
    int batch[8];
    int64_t context[4];
    int64_t prefill[4];
    int iters;
    int sim_tp;
    double sim_alpha_us, sim_busbw_gbs;
    const char *json_path;     /* also "furrow-compute" JSON of the compute-only steps (plan --predict --compute) */
} fw_bench_steps;

/* How a backend runs: choices from the command line (runtime/cli/cli.h), the
 * same on every rank. */
typedef struct fw_backend_opts {
    bool reference;            /* --kernels ref: the reference paths (the CPU's plain op table; on a GPU the
                                * own GEMMs with bf16 activations, never cuBLASLt or FP8 activations) */
    bool graphs;               /* --cuda-graphs on: decode steps replay CUDA graphs */
    int streams;               /* --cuda-streams N: 2 overlaps independent work of a layer, 1 does not */
    double collective_timeout; /* --collective-timeout S: a collective stuck longer fails the job */
} fw_backend_opts;

/* Where the backend runs on this rank: the node-local rank picks a device; the
 * tensor-parallel group (MPI_COMM_NULL: none) and the host's collectives over it
 * (the CPU's all-reduces; a GPU makes its own NCCL communicator). */
typedef struct fw_backend_place {
    const fw_backend_opts *opts;
    int local_rank;
    MPI_Comm tp_comm;
    fw_comm *comm;
} fw_backend_place;

typedef struct fw_backend {
    const char *name;
    int64_t kv_block;          /* positions per KV block unless the user says otherwise */
    int decode_group;          /* decodes per forward at most; 0: any number (the runner's groups) */
    /* Takes layer l of the host model as soon as the loader has it (the state is
     * made on the first call). FW_OK: the backend has its own copy and the loader
     * frees the host's, so a rank's host memory holds one layer at a time. NULL:
     * the backend computes on the host weights themselves. */
    int (*take_layer)(void **st, const fw_model *m, const fw_backend_place *at, int l, fw_err *e);
    /* Makes the state for this rank's part of the model (host weights loaded;
     * layers already taken are not copied again). */
    int (*attach)(void **st, fw_model *m, const fw_backend_place *at, fw_err *e);
    /* (Re)allocates the paged latent cache: n_blocks blocks of `block` positions
     * (every layer of the stage), block tables of sequences of at most
     * max_context positions. What the old cache held is gone. */
    int (*kv_init)(void *st, int64_t n_blocks, int64_t block, int64_t max_context, fw_err *e);
    /* The scheduler's cache by default: blocks of `block` positions for
     * max_batch requests of up to max_context positions, as far as the
     * backend's memory allows. */
    int64_t (*kv_default)(void *st, int64_t block, int64_t max_batch, int64_t max_context);
    /* One step of n sequences (runtime/model/model.h, fw_seq_step): their tokens
     * `ids` (the first stage) or `hidden` (sum T, D) in, in sequence order; the
     * last stage writes the logits the sequences ask for, (sum n_out, vocab
     * shard), others their output to `hidden`. Advances each cache's length. */
    int (*forward)(void *st, int n, const fw_seq_step *q, const int32_t *ids, float *hidden, float *logits,
                   fw_err *e);
    /* The MTP layer (speculative decoding's draft) on the last stage: ids the
     * next token of each position, h_in (sum T, D) the final-normed hidden states
     * the forward wrote with fw_seq_step.hidden_out (or h_out of a chained step);
     * h_out (sum T, D) its output before shared_head.norm (NULL: not wanted),
     * logits (sum n_out, vocab shard). Its cache rows are the layer after the
     * stage's in the same blocks. NULL where the backend cannot run it. */
    int (*forward_mtp)(void *st, int n, const fw_seq_step *q, const int32_t *ids, const float *h_in, float *h_out,
                       float *logits, fw_err *e);
    /* The step benchmark that `furrow bench` runs on this backend (collective over the replica; prints
     * where `print`); NULL where the backend has none. */
    int (*bench_steps)(void *st, const fw_bench_steps *req, bool print, fw_err *e);
    /* A line describing where it runs (device, memory), for reports. */
    const char *(*describe)(void *st);
    void (*detach)(void *st);
} fw_backend;

/* Registers a backend of this binary (main does, before running a command). */
void fw_backend_register(const fw_backend *b);
/* The registered backend of that name, or NULL. */
const fw_backend *fw_backend_find(const char *name);

#endif
