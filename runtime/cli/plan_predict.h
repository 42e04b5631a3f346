/* furrow plan --predict: predicted step time, tokens/s and latency of the
 * layouts the planner picks, from the performance model (partition/perf.h). */
#ifndef FW_RUNTIME_CLI_PLAN_PREDICT_H
#define FW_RUNTIME_CLI_PLAN_PREDICT_H

#include "io/base/err.h"
#include "io/config.h"
#include "partition/plan.h"

#define FW_PREDICT_MAX 16

typedef struct fw_predict_opts {
    const char *compute;       /* furrow-compute JSON; NULL: the built-in H100 table (GPU ranks) */
    const char *links;         /* furrow-links JSON (its classes override the system's) */
    const char *system;        /* published link figures: "h100", "h200"; NULL: none */
    int nodes[FW_PREDICT_MAX], n_nodes;
    int64_t batches[FW_PREDICT_MAX];
    int n_batches;             /* decode batches */
    int64_t prefill;           /* prefill tokens per sequence; 0: none */
    int64_t prefill_batch;     /* sequences of the prefill (default 1) */
    int nics_per_node;         /* 0: one per rank */
} fw_predict_opts;

/* For each node count, a row per decode batch and the prefill: the plan of
 * base with world = nodes x ranks per node and the row's batch (its KV cache
 * must fit --mem-per-rank too), and its predicted step. Prints the table. */
int fw_plan_predict(const fw_config *c, const fw_plan_request *base, const fw_predict_opts *o, fw_err *e);

#endif
