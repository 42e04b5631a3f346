/* The layout of a job: how the model is split over the ranks. Rank coordinates
 * are (dp, pp, tp) with tp fastest, so a tensor-parallel group stays inside a
 * node. Pipeline stages own contiguous layer ranges balanced by cost (the
 * embedding counts for the first stage, the head for the last). Routed experts
 * are split across the TP group: expert e lives on tp rank e * tp / E. */
#ifndef FW_PARTITION_PLAN_H
#define FW_PARTITION_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "io/config.h"
#include "io/err.h"

#define FW_MAX_STAGES 256

typedef struct fw_stage {
    int first_layer;           /* [first_layer, first_layer + n_layers) */
    int n_layers;
    bool has_embed;            /* stage 0 */
    bool has_head;             /* the last stage: final norm and lm_head */
    double cost;               /* relative cost (matmul parameters per token) */
    uint64_t mem_max;          /* bytes: the largest memory need among its tp ranks */
} fw_stage;

/* Memory of one rank, in bytes (the worst rank of the layout). */
typedef struct fw_mem_estimate {
    uint64_t weights;          /* its weight slices in their stored dtypes, scales included */
    uint64_t weights_bf16, weights_fp8, weights_f32;
    uint64_t weights_scales;   /* the fp8 block scales (f32, also counted in weights_f32) */
    uint64_t kv_cache;         /* latent cache: context x batch x (kv_lora + rope) x value bytes x its layers */
    uint64_t activations;      /* scratch of one forward step of batch tokens */
    uint64_t total;
} fw_mem_estimate;

typedef struct fw_layout {
    int world, tp, pp, dp;
    int n_layers;              /* num_hidden_layers (MTP not run) */
    fw_stage stages[FW_MAX_STAGES];
    int experts_per_rank_max;  /* ceil(E / tp) */
    fw_mem_estimate mem;       /* the rank with the largest need */
    int mem_pp_rank, mem_tp_rank; /* where that rank sits */
    int64_t context, batch;    /* what the KV and activation estimates assume */
    int value_bytes;           /* bytes per KV value and activation: 4 (CPU, fp32), 2 (GPU, bf16) */
    bool tp_auto, pp_auto;     /* chosen by fw_plan rather than requested */
} fw_layout;

typedef struct fw_plan_request {
    int world;                 /* total ranks */
    int ranks_per_node;        /* for the automatic choice: TP stays inside a node */
    int tp, pp;                /* 0 = choose automatically */
    uint64_t mem_per_rank;     /* bytes available per rank; 0 = unknown (no check) */
    int64_t context;           /* tokens per sequence for the KV estimate (default 4096) */
    int64_t batch;             /* sequences for the KV and activation estimate (default 1) */
    int value_bytes;           /* bytes per KV value and activation (0: 4, the CPU's fp32; 2: a GPU's bf16) */
} fw_plan_request;

/* Chooses or validates a layout. Invalid ones get an error that says why and what
 * would work (heads, vocab or intermediate sizes not divisible by tp, more stages
 * than layers, world != tp * pp * dp, not enough memory per rank). */
int fw_plan(const fw_config *c, const fw_plan_request *req, fw_layout *out, fw_err *e);

/* Memory of every rank of one replica: out[pp_rank * tp + tp_rank] (tp * pp
 * entries), by the same rules as fw_layout.mem. */
int fw_plan_mem_per_rank(const fw_config *c, const fw_layout *l, fw_mem_estimate *out, fw_err *e);

/* Coordinates of a world rank: tp fastest, then pp, then dp. */
static inline int fw_layout_tp_rank(const fw_layout *l, int rank) { return rank % l->tp; }
static inline int fw_layout_pp_rank(const fw_layout *l, int rank) { return rank / l->tp % l->pp; }
static inline int fw_layout_dp_rank(const fw_layout *l, int rank) { return rank / (l->tp * l->pp); }
/* The stage that runs a layer. */
int fw_layout_stage_of_layer(const fw_layout *l, int layer);
/* Routed experts [*first, *first + *n) of tp rank r (expert e is on rank e * tp / E). */
void fw_layout_experts(const fw_layout *l, const fw_config *c, int tp_rank, int *first, int *n);

#endif
