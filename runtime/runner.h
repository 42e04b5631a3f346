/* The scheduler driving the engine on every rank of a replica. Replica rank 0
 * (the leader) plans each step with runtime/sched, broadcasts it (positions,
 * token ids, block tables) to the replica, runs its part, samples, and commits;
 * the other ranks follow the broadcast plans until the leader says stop. All
 * ranks hold the same paged KV pool, filled through the tables of the plan. */
#ifndef FW_RUNTIME_RUNNER_H
#define FW_RUNTIME_RUNNER_H

#include "runtime/engine.h"
#include "runtime/kvcache.h"
#include "runtime/sched.h"

/* Decodes per forward pass on the CPU. Up to 8 rows, the CPU matmuls take their
 * GEMV path, whose result for a row does not depend on the other rows: a
 * request's tokens stay the same whatever else is in the batch. On a device all
 * the step's decodes go in one forward (one CUDA graph), and, as in vLLM or
 * SGLang, a token can change with what else is in the batch where two logits
 * nearly tie (the GEMMs' reduction order depends on the batch size). */
#define FW_RUNNER_DECODE_GROUP 8

typedef struct fw_runner {
    fw_engine *en;
    bool leader;
    fw_kv_pool pool;
    fw_sched sched;            /* leader only */
    int64_t *wire;             /* the broadcast plan */
    int64_t wire_cap;
    float *logits;             /* (group, V) leader: rows for the samplers */
    int32_t *step_ids;         /* (token_budget) a group's token ids */
    int32_t *step_tabs;        /* (group, max blocks) a group's block tables */
    int group;                 /* decodes per forward */
    fw_seq_step *q;            /* (group) a group's sequences */
    fw_kv *kv;
    int *kinds;
    fw_sample_out *out;        /* (max_batch) */
    fw_engine_best *best;      /* (max_batch) */
    int32_t *best_tok;
    int *best_at;
    int32_t *top_ids;          /* (tp * FW_SAMPLE_TOP_MAX) top-k candidates */
    float *top_vals;
    int max_batch;
    int64_t steps, tokens;     /* counters for reports */
    double last_step_s;
} fw_runner;

/* Token budget and the pool's geometry go to every rank alike; callbacks and
 * queue limits matter on the leader. The engine must have been built with
 * context >= token_budget. Collective over the replica. */
int fw_runner_init(fw_runner *r, fw_engine *en, const fw_sched_opts *o, fw_err *e);
void fw_runner_free(fw_runner *r);
/* A replica for a scheduler (serve, batch jobs): the engine, taking a step's
 * token budget per call, then the runner. `job` begins the error for a layout
 * of more than one replica ("serve runs", "batch jobs run"). The engine needs
 * fw_engine_free whatever the result; the runner is zeroed first, so
 * fw_runner_free is safe too. Collective. */
int fw_runner_open(fw_runner *r, fw_engine *en, fw_world *w, fw_engine_opts *eo, const fw_sched_opts *so,
                   const char *job, fw_err *e);
/* Leader: plans, broadcasts and runs one step; *n = its entries (0: idle,
 * nothing sent). */
int fw_runner_step(fw_runner *r, int *n, fw_err *e);
/* Leader: tells the followers to return from fw_runner_follow. */
void fw_runner_stop(fw_runner *r);
/* Followers: run the leader's steps until it stops. */
int fw_runner_follow(fw_runner *r, fw_err *e);

/* Engine options and scheduler limits for a serving replica, from the flags
 * `--kv-blocks N --block-size N --max-batch N --token-budget N --max-context N`
 * (help text FW_RUNNER_HELP; codes 1100..1104 for getopt_long). */
#define FW_RUNNER_OPTIONS                                                                        \
    {"kv-blocks", required_argument, 0, 1100}, {"block-size", required_argument, 0, 1101},       \
    {"max-batch", required_argument, 0, 1102}, {"token-budget", required_argument, 0, 1103},     \
    {"max-context", required_argument, 0, 1104}
#define FW_RUNNER_HELP                                                                           \
    "  --max-context N                     prompt + generated tokens per request (default 4096)\n" \
    "  --kv-blocks N                       blocks of the paged KV cache (default: room for\n"     \
    "                                      max-batch requests of 512 tokens on the CPU; on a\n"   \
    "                                      GPU of max-context tokens, as its memory allows)\n"     \
    "  --block-size N                      positions per KV block (default 16, on a GPU 64)\n"    \
    "  --max-batch N                       requests running at once (default 32)\n"               \
    "  --token-budget N                    tokens computed per step: decodes plus prompt chunks\n" \
    "                                      (default 512)\n"
void fw_runner_defaults(fw_sched_opts *o);
/* 1: handled, 0: not one of FW_RUNNER_OPTIONS, -1: bad value. */
int fw_runner_option(int code, const char *arg, fw_sched_opts *o, fw_err *e);

#endif
