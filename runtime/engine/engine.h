/* One model replica spread over ranks: the world, the layout, this rank's part of
 * the model and its cache, and a forward that runs every pipeline stage in turn
 * and hands back the logits (gathered on rank 0) or the greedy token (on every
 * rank). With one rank it is the plain single-rank engine. */
#ifndef FW_RUNTIME_ENGINE_ENGINE_H
#define FW_RUNTIME_ENGINE_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "partition/plan.h"
#include "runtime/dist/comm.h"
#include "runtime/model/backend.h"
#include "runtime/model/model.h"
#include "runtime/dist/topo.h"
#include "runtime/dist/world.h"

typedef struct fw_engine_opts {
    const char *model_dir;
    const fw_ops *ops;
    int tp, pp;                  /* 0: automatic */
    fw_pp_transport transport;
    int64_t context;             /* positions of the KV cache (each sequence) */
    int n_seqs;                  /* sequences in flight (0 or 1: one) */
    bool verbose;                /* report bytes read per rank */
    bool no_verify;              /* skip the checkpoint's chunk checksums while loading */
    fw_load_mode load;           /* map the weights (default) or read them */
    double watchdog;             /* seconds a step may make no progress (runtime/dist/watchdog.h); 0: off */
    fw_backend_opts backend;     /* how it runs */
    const char *device;          /* the backend: "cpu" (NULL: the default) or one this binary links ("cuda") */
    int sim_tp;                  /* furrow bench --tp-sim N: this one rank loads and runs rank 0's share of a tp N
                                  * layout, without the other ranks or collectives (0 or 1: off) */
    int speculative;             /* --speculative mtp:K: K draft tokens a step from the MTP layer (0: none) */
    bool index_exact;            /* --indexer exact: DeepSeek-V3.2's index scores in float32 without the FP8
                                  * rounding of q and k (CPU only; default: DeepSeek's FP8 arithmetic) */
} fw_engine_opts;

typedef struct fw_engine {
    fw_world *world;
    fw_topo topo;
    fw_layout layout;
    fw_model *model;
    fw_comm comm;
    MPI_Comm replica;            /* the ranks of this data-parallel replica */
    int replica_rank, replica_size;
    int head_root;               /* replica rank of (last stage, tp 0) */
    fw_kv *kvs;                  /* [n_seqs] caches; fw_engine_logits uses kvs[0] */
    int n_seqs;
    int64_t context;             /* positions a forward call takes at most */
    float *hidden;               /* (context, D) pipeline buffer */
    float *shard;                /* (context, vocab shard) logits of the last stage */
    double t_load;               /* seconds to load this rank's slices */
    const fw_backend *be;        /* what runs this rank's stage (runtime/model/backend.h) */
    fw_backend_opts backend_opts;
    void *st;                    /* the backend's state */
    int32_t *tabs;               /* the kvs' block tables, one run of blocks each */
    fw_watchdog *wd;             /* started once loaded: loading has no bound */
    int speculative;             /* draft tokens a step (the MTP layer loaded on the last stage); 0: none */
    bool index_exact;            /* --indexer exact (checked against the backend as layers load) */
} fw_engine;

/* Plans the layout, binds this rank, loads its slices. Collective: if any rank
 * fails, every rank returns FW_ERR (the failing ranks with their message). */
int fw_engine_init(fw_engine *en, fw_world *w, const fw_engine_opts *o, fw_err *e);
void fw_engine_free(fw_engine *en);

/* Runs T tokens (known on every rank) through all stages over the first cache;
 * replica rank 0 receives the logits of every position in logits (T, V), other
 * ranks may pass NULL (furrow logits). */
int fw_engine_logits(fw_engine *en, const int32_t *ids, int64_t T, fw_attn_mode mode, float *logits, fw_err *e);

/* Several sequences at once, greedy: sequence i runs ids[i] (T[i] tokens, known
 * on every rank) over its own cache, and every rank receives its next token in
 * next[i]. The sequences go through the pipeline one behind the other, so while
 * stage s works on sequence i, stage s - 1 already works on sequence i + 1
 * (micro-batches in flight). n <= opts.n_seqs. */
int fw_engine_forward_many(fw_engine *en, int n, const int32_t *const *ids, const int64_t *T, fw_attn_mode mode,
                           int32_t *next, fw_err *e);

/* For the scheduler (runtime/engine/runner.c): remakes the backend's cache with
 * the geometry of `pool` (the blocks the scheduler hands out by id) for sequences
 * of up to max_context positions; the engine's own caches are gone from then on.
 * Collective. */
int fw_engine_kv_pages(fw_engine *en, const struct fw_kv_pool *pool, int64_t max_context, fw_err *e);

/* For the scheduler's steps (runtime/engine/runner.c): several sequences' chunks
 * through this rank's stage in one pass over caches the caller gives (ids
 * checked first, the same on every rank); the last stage keeps the rows of
 * logits the sequences asked for (n_out each), in order, for what follows. */
int fw_engine_stage_seqs(fw_engine *en, int n, const fw_seq_step *q, const int32_t *ids, fw_err *e);
/* The MTP layer over several sequences' positions (runtime/cpu/cpu.h,
 * fw_model_forward_mtp): on the last stage only (others return at once); its
 * logits replace the rows in the shard, for fw_engine_shard_best. */
int fw_engine_mtp_seqs(fw_engine *en, int n, const fw_seq_step *q, const int32_t *ids, const float *h_in,
                       float *h_out, fw_err *e);
/* The last stage's largest logit of its shard of row `row` (layout of MPI_FLOAT_INT). */
typedef struct fw_engine_best {
    float v;
    int i;
} fw_engine_best;
fw_engine_best fw_engine_shard_best(const fw_engine *en, int row);
/* Max-loc of n rows' bests across the shards; every replica rank gets the tokens. */
int fw_engine_best_tokens(fw_engine *en, int n, fw_engine_best *best, int32_t *next, fw_err *e);
/* The first n rows' full logits (n, V) on replica rank 0 (collective over the
 * replica's head ranks and rank 0). */
int fw_engine_rows_logits(fw_engine *en, int n, float *logits, fw_err *e);
/* The k largest logits of row `row` across the shards (ids, vals: tp * k) and
 * the row's log-sum-exp, on replica rank 0; each shard sends k, not the row
 * (runtime/engine/engine_top.c; collective like fw_engine_rows_logits). */
int fw_engine_row_top(fw_engine *en, int row, int k, int32_t *ids, float *vals, int64_t *n, double *lse, fw_err *e);

/* The backend `--device NAME` names in this binary (NULL: the CPU), or NULL. */
const fw_backend *fw_engine_backend(const char *device);

/* The backend's step benchmark (furrow bench); collective over the replica. */
int fw_engine_bench_steps(fw_engine *en, const fw_bench_steps *req, bool print, fw_err *e);

#endif
