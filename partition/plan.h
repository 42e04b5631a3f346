/* The planner: chooses or checks the layout of a job (partition/layout.h) for a
 * model and a number of ranks. Pipeline stages own contiguous layer ranges
 * balanced by cost (the embedding counts for the first stage, the head for the
 * last); memory per rank is estimated from the slices partition/shard.c gives. */
#ifndef FW_PARTITION_PLAN_H
#define FW_PARTITION_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "io/config.h"
#include "io/base/err.h"
#include "partition/layout.h"

typedef struct fw_plan_request {
    int world;                 /* total ranks */
    int ranks_per_node;        /* for the automatic choice: TP stays inside a node */
    int tp, pp;                /* 0 = choose automatically */
    uint64_t mem_per_rank;     /* bytes available per rank; 0 = unknown (no check) */
    int64_t context;           /* tokens per sequence for the KV estimate (default 4096) */
    int64_t batch;             /* sequences for the KV and activation estimate (default 1) */
    int value_bytes;           /* bytes per KV value and activation (0: 4, the CPU's fp32; 2: a GPU's bf16) */
    int mtp;                   /* speculative decoding with K = mtp draft tokens a step: the MTP layer's
                                  weights and KV cache on the last stage, decode steps of batch x (1 + K)
                                  tokens (0: none; the layer is then never loaded) */
    const fw_quant_spec *weights; /* NULL: every tensor as the config stores it (fp8 block-quantized,
                                     compressed-tensors INT4, or BF16); else the tensors it covers
                                     quantized as it says and the rest as the config stores them */
} fw_plan_request;

/* Chooses or validates a layout. Invalid ones get an error that says why and what
 * would work (heads, vocab or intermediate sizes not divisible by tp, more stages
 * than layers, world != tp * pp * dp, not enough memory per rank). */
int fw_plan(const fw_config *c, const fw_plan_request *req, fw_layout *out, fw_err *e);

/* Bytes one layer's KV cache holds per position: fw_config_kv_width values of
 * value_bytes (4: a CPU's floats), or a GPU's bf16 row (2: fw_config_gpu_kv_cols). */
uint64_t fw_plan_kv_bytes(const fw_config *c, int value_bytes);

/* Memory of every rank of one replica: out[pp_rank * tp + tp_rank] (tp * pp
 * entries), by the same rules as fw_layout.mem (l->quant included). */
int fw_plan_mem_per_rank(const fw_config *c, const fw_layout *l, fw_mem_estimate *out, fw_err *e);

/* Bytes of the whole model as stored, each tensor once (MTP layers only if
 * with_mtp): by the config's types, or with q (not NULL) as fw_plan_request's
 * `weights`. What a checkpoint's tensors take, to compare with a release. */
int fw_plan_weight_bytes(const fw_config *c, const fw_quant_spec *q, bool with_mtp, uint64_t *bytes, fw_err *e);

#endif
