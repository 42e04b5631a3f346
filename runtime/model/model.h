/* The DeepSeek-V3 model on one rank: its weights (kept in their stored format),
 * the latent KV cache, and the forward pass over the kernels op table. */
#ifndef FW_RUNTIME_MODEL_MODEL_H
#define FW_RUNTIME_MODEL_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "io/config.h"
#include "io/base/err.h"
#include "kernels/ops.h"
#include "partition/plan.h"
#include "runtime/dist/comm.h"

typedef struct fw_layer {
    bool moe;
    float *attn_norm;          /* (D) input_layernorm */
    float *ffn_norm;           /* (D) post_attention_layernorm */
    fw_weight q_a;             /* (q_lora, D); q_lora_rank == 0: unused */
    float *q_a_norm;           /* (q_lora) */
    fw_weight q_b;             /* (H * dqk, q_lora), or q_proj (H * dqk, D) */
    fw_weight kv_a;            /* (C + R, D) kv_a_proj_with_mqa */
    float *kv_a_norm;          /* (C) */
    fw_weight kv_b;            /* (H * (dn + dv), C) */
    fw_weight o;               /* (D, H * dv) */
    fw_weight gate, up, down;  /* dense FFN: (I, D), (I, D), (D, I) */
    fw_weight router;          /* (E, D) */
    float *router_bias;        /* (E) e_score_correction_bias */
    fw_weight *exp_gate, *exp_up, *exp_down;   /* [E]: (Ie, D), (Ie, D), (D, Ie) */
    fw_weight sh_gate, sh_up, sh_down;         /* shared experts: (Is, D), (Is, D), (D, Is) */
} fw_layer;

/* This rank's part of the model (all of it on a single rank). */
typedef struct fw_part {
    int tp, tp_rank, pp, pp_rank;
    int first_layer, n_layers;  /* the stage's layers */
    bool has_embed, has_head;   /* first / last stage */
    int64_t heads;              /* attention heads held: H / tp */
    int64_t vocab0, vocab;      /* vocabulary rows held: [vocab0, vocab0 + vocab) */
    int exp_first, exp_n;       /* routed experts held */
} fw_part;

typedef struct fw_model {
    fw_config cfg;
    fw_part part;
    const fw_ops *ops;
    fw_weight embed;           /* (V, D) */
    fw_weight head;            /* (V, D) */
    float *final_norm;         /* (D) */
    fw_layer *layers;          /* [num_hidden_layers]; only the stage's are loaded */
    float *rope_inv_freq;      /* (R / 2) YaRN-corrected */
    float rope_mscale;         /* multiplies cos and sin (1 for DeepSeek-V3) */
    float softmax_scale;
    uint64_t weight_bytes;     /* bytes of weights held */
    uint64_t bytes_read;       /* bytes read from the checkpoint */
    float *route_margin;       /* optional, set by tests: per token of a forward, the smallest
                                * routing gap over its MoE layers (forward.c) */
    void **allocs;             /* everything loaded, for fw_model_free */
    int64_t n_allocs, cap_allocs;
} fw_model;

/* Loads this rank's slices of the checkpoint in `dir` for the rank at (pp_rank,
 * tp_rank) of `layout`, or everything when layout is NULL. MTP layers are not
 * loaded. Each tensor slice is one hyperslab read. */
int fw_model_load(fw_model **out, const char *dir, const fw_ops *ops, const fw_layout *layout,
                  int pp_rank, int tp_rank, fw_err *e);
void fw_model_free(fw_model *m);

/* Called with each layer as soon as it is loaded. FW_OK: the callee has its own
 * copy (a device's), and the loader frees the layer's host weights, so a rank
 * never holds its whole part twice. The layer keeps only its `moe` flag. */
typedef int (*fw_layer_taken_fn)(void *arg, const fw_model *m, int l, fw_err *e);
/* fw_model_load, handing every layer to `taken` (NULL: keep them all). */
int fw_model_load_streamed(fw_model **out, const char *dir, const fw_ops *ops, const fw_layout *lay, int pp_rank,
                           int tp_rank, fw_layer_taken_fn taken, void *arg, fw_err *e);

struct fw_kv_pool;

/* The latent KV cache of one sequence: per layer and position, the normalised
 * compressed KV (C = kv_lora_rank values) then the rotated k_pe (R values), held
 * in the blocks of a paged pool named by the sequence's block table
 * (runtime/model/kvcache.h). The scheduler's sequences share one pool; fw_kv_init
 * gives a sequence a pool of its own. */
typedef struct fw_kv {
    int64_t cap;               /* positions its blocks hold: table entries x block size */
    int64_t len;               /* positions filled */
    int64_t n_layers, width;   /* the stage's layers; width = C + R */
    struct fw_kv_pool *pool;   /* the blocks */
    const int32_t *table;      /* (cap / block size) block ids */
    struct fw_kv_pool *own;    /* fw_kv_init's private pool and table, freed by fw_kv_free */
    int32_t *own_table;
} fw_kv;

/* A sequence of at most cap positions with a private pool. */
int fw_kv_init(fw_kv *kv, const fw_model *m, int64_t cap, fw_err *e);
void fw_kv_free(fw_kv *kv);

typedef enum fw_attn_mode {
    FW_ATTN_NAIVE,     /* expand keys and values from the latent cache (prefill) */
    FW_ATTN_ABSORBED,  /* attend in the latent space (decode) */
} fw_attn_mode;

/* Runs this rank's stage for T tokens at positions kv->len .. kv->len + T - 1 and
 * appends them to the cache. The first stage embeds `ids`; other stages read the
 * previous stage's output from `hidden` (T, D). The last stage writes the logits
 * of the last n_out tokens over its vocabulary shard to logits (n_out, part.vocab);
 * other stages write their output to `hidden`. comm does the TP all-reduces. */
int fw_model_forward(fw_model *m, fw_comm *comm, fw_kv *kv, const int32_t *ids, float *hidden,
                     int64_t T, fw_attn_mode mode, float *logits, int64_t n_out, fw_err *e);

/* One sequence's part of a step of several. */
typedef struct fw_seq_step {
    fw_kv *kv;
    int64_t T;                 /* its tokens, at positions kv->len .. */
    int64_t n_out;             /* logits of its last n_out tokens */
    fw_attn_mode mode;
} fw_seq_step;

/* Several sequences in one pass: their tokens (ids, hidden: all T of the first
 * sequence, then the second's, ...) go through the projections, the FFN and the
 * head together, and through attention one sequence at a time over its own
 * cache. logits: (sum of n_out, vocabulary shard), in sequence order.
 * fw_model_forward is the case of one. */
int fw_model_forward_seqs(fw_model *m, fw_comm *comm, int n, const fw_seq_step *q, const int32_t *ids,
                          float *hidden, float *logits, fw_err *e);

#endif
