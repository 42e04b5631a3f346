/* The layout of a job: how the model is split over the ranks. Rank coordinates
 * are (dp, pp, tp) with tp fastest, so a tensor-parallel group stays inside a
 * node. Routed experts are split across the TP group: expert e lives on tp rank
 * e * tp / E. partition/plan.h makes one. */
#ifndef FW_PARTITION_LAYOUT_H
#define FW_PARTITION_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "io/config.h"
#include "io/quant_spec.h"

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
    uint64_t weights_int4;     /* packed words (their bf16 group scales are in weights_bf16) */
    uint64_t weights_int8;     /* int8 values (their bf16 channel scales are in weights_bf16) */
    uint64_t weights_scales;   /* quantization scales: fp8 blocks' (f32), int4/int8 groups' (bf16); also
                                  counted in weights_f32 / weights_bf16 */
    uint64_t kv_cache;         /* latent cache: context x batch x (kv_lora + rope) x value bytes x its layers */
    uint64_t activations;      /* scratch of one forward step of batch tokens */
    uint64_t total;
} fw_mem_estimate;

typedef struct fw_layout {
    int world, tp, pp, dp;
    int n_layers;              /* num_hidden_layers (the MTP layer, when speculating, rides on the last stage) */
    fw_stage stages[FW_MAX_STAGES];
    int experts_per_rank_max;  /* ceil(E / tp) */
    fw_mem_estimate mem;       /* the rank with the largest need */
    int mem_pp_rank, mem_tp_rank; /* where that rank sits */
    int64_t context, batch;    /* what the KV and activation estimates assume */
    int value_bytes;           /* bytes per KV value and activation: 4 (CPU, fp32), 2 (GPU, bf16) */
    int mtp;                   /* draft tokens a step when the plan speculates with the MTP layer (0: none) */
    bool tp_auto, pp_auto;     /* chosen by fw_plan rather than requested */
    bool requantized;          /* the estimate stores the tensors `quant` covers as it says, the rest as
                                  the config does (plan --weights); false: all as the config does */
    fw_quant_spec quant;
} fw_layout;

/* Coordinates of a world rank: tp fastest, then pp, then dp. */
static inline int fw_layout_tp_rank(const fw_layout *l, int rank) { return rank % l->tp; }
static inline int fw_layout_pp_rank(const fw_layout *l, int rank) { return rank / l->tp % l->pp; }
static inline int fw_layout_dp_rank(const fw_layout *l, int rank) { return rank / (l->tp * l->pp); }
/* The stage that runs a layer. */
int fw_layout_stage_of_layer(const fw_layout *l, int layer);
/* Routed experts [*first, *first + *n) of tp rank r (expert e is on rank e * tp / E). */
void fw_layout_experts(const fw_layout *l, const fw_config *c, int tp_rank, int *first, int *n);

#endif
