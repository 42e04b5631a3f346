/* The DeepSeek-V3 model on one rank, as every backend sees it: the host weights
 * of this rank's part (kept in their stored format; a GPU backend copies them),
 * the KV cache's per-sequence view, and the step descriptor of a forward. */
#ifndef FW_RUNTIME_MODEL_MODEL_H
#define FW_RUNTIME_MODEL_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "io/config.h"
#include "io/base/err.h"
#include "kernels/ops.h"
#include "partition/plan.h"

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
    /* DeepSeek-V3.2's lightning indexer (cfg.index_topk > 0), replicated on every rank. */
    fw_weight ix_wq_b;         /* (ih * id, q_lora): indexer queries from MLA's q latent */
    fw_weight ix_wk;           /* (id, D): the indexer key, one per token */
    float *ix_k_norm, *ix_k_bias;  /* (id) LayerNorm of the key */
    fw_weight ix_w;            /* (ih, D) weights_proj: per-head weights */
    fw_weight gate, up, down;  /* dense FFN: (I, D), (I, D), (D, I) */
    fw_weight router;          /* (E, D) */
    float *router_bias;        /* (E) e_score_correction_bias */
    fw_weight *exp_gate, *exp_up, *exp_down;   /* [E]: (Ie, D), (Ie, D), (D, Ie) */
    fw_weight sh_gate, sh_up, sh_down;         /* shared experts: (Is, D), (Is, D), (D, Is) */
} fw_layer;

/* DeepSeek-V3's multi-token-prediction module, model.layers.{num_hidden_layers}:
 * for position i, x = eh_proj(cat(enorm(embed(t_{i+1})), hnorm(h_i))) with h_i
 * the main model's final-normed hidden state (or the module's own output when it
 * is chained on its own draft), then a full decoder layer over its own latent
 * cache, then shared_head.norm and shared_head.head give logits for t_{i+2}.
 * Held by the last stage only, vocabulary rows split as the model's. */
typedef struct fw_mtp {
    fw_layer layer;            /* MLA + the dense or MoE FFN, as a main layer */
    fw_weight embed;           /* (vocab shard, D) its embed_tokens (the model's in DeepSeek's checkpoints) */
    float *enorm, *hnorm;      /* (D) */
    fw_weight eh_proj;         /* (D, 2 D) */
    float *head_norm;          /* (D) shared_head.norm */
    fw_weight head;            /* (vocab shard, D) shared_head.head */
} fw_mtp;

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
    fw_mtp *mtp;               /* the first MTP layer (fw_model_load_mtp, last stage), or NULL */
    float *rope_inv_freq;      /* (R / 2) YaRN-corrected */
    float rope_mscale;         /* multiplies cos and sin (1 for DeepSeek-V3) */
    float softmax_scale;
    uint64_t weight_bytes;     /* bytes of weights held */
    uint64_t bytes_read;       /* bytes read from the checkpoint */
    uint64_t bytes_verified;   /* of those, checked against their chunk checksums */
    uint64_t bytes_mapped;     /* of bytes_read, mapped from the files rather than copied */
    /* Optional, set by tests: called by the CPU forward with each MoE layer's
     * router logits (T, E) and chosen experts (T, top_k) (the GPU parity test
     * measures how close each token's routing was to another choice). */
    void (*route_probe)(void *arg, const struct fw_layer *L, const fw_route_params *p, int64_t T,
                        const float *logits, const int32_t *ids);
    void *route_probe_arg;
    /* Optional, set by tests: called by the CPU forward for each query whose
     * indexer dropped positions (DeepSeek-V3.2): its index scores over positions
     * 0..S-1 and the n selected ones, ascending. */
    void (*index_probe)(void *arg, int layer, int64_t pos, int64_t S, const float *scores, int64_t n,
                        const int32_t *ids);
    void *index_probe_arg;
    /* DeepSeek-V3.2's indexer with DeepSeek's FP8 rounding of q and k (the GPU's
     * arithmetic) instead of the exact float32 path; set by tests on the CPU. */
    bool index_fp8;
    void **allocs;             /* everything loaded, for fw_model_free */
    int64_t n_allocs, cap_allocs;
    bool map;                  /* loading maps slices where it can (FW_LOAD_MMAP) */
    struct fw_ckpt_mapping **maps;   /* the mapped data files weights point into, released by fw_model_free */
    int n_maps;
} fw_model;

/* Loads this rank's slices of the checkpoint in `dir` for the rank at (pp_rank,
 * tp_rank) of `layout`, or everything when layout is NULL. MTP layers are not
 * loaded. Each tensor slice is one hyperslab read, checked against its chunk
 * checksums; a NaN or infinity in a norm, a block scale or the router bias is
 * an error naming the tensor. */
int fw_model_load(fw_model **out, const char *dir, const fw_ops *ops, const fw_layout *layout,
                  int pp_rank, int tp_rank, fw_err *e);
void fw_model_free(fw_model *m);
/* Loads the first MTP layer into m->mtp on the stage that holds the head (does
 * nothing on others): an error naming the tensor when the checkpoint has none
 * (num_nextn_predict_layers 0, or converted without it). */
int fw_model_load_mtp(fw_model *m, const char *dir, const fw_layout *layout, fw_err *e);

/* How weights come from the checkpoint. */
typedef enum fw_load_mode {
    FW_LOAD_MMAP,  /* mapped read-only from the files where their layout allows (one aligned run), else read */
    FW_LOAD_READ,  /* every slice read into memory of its own */
} fw_load_mode;
typedef struct fw_load_opts {
    bool verify;               /* check every slice's whole chunks against their checksums */
    fw_load_mode mode;
} fw_load_opts;

/* Called with each layer as soon as it is loaded. FW_OK: the callee has its own
 * copy (a device's), and the loader frees the layer's host weights, so a rank
 * never holds its whole part twice. The layer keeps only its `moe` flag. */
typedef int (*fw_layer_taken_fn)(void *arg, const fw_model *m, int l, fw_err *e);
/* fw_model_load, handing every layer to `taken` (NULL: keep them all), with
 * options (NULL: verify, map). A mapped layer handed to `taken` stays mapped
 * (the page cache's pages, not the rank's memory). */
int fw_model_load_streamed(fw_model **out, const char *dir, const fw_ops *ops, const fw_layout *lay, int pp_rank,
                           int tp_rank, const fw_load_opts *lo, fw_layer_taken_fn taken, void *arg, fw_err *e);

/* One sequence's view of the paged latent KV cache (runtime/model/kvcache.h): per
 * layer and position, the normalised compressed KV (C = kv_lora_rank values)
 * then the rotated k_pe (R values), in the blocks its table names. The blocks
 * themselves are the backend's (fw_backend.kv_init); the scheduler hands out
 * their ids. fw_kv_init (runtime/cpu/cpu.h) gives a sequence blocks of its own. */
typedef struct fw_kv {
    int64_t cap;               /* positions its blocks hold: table entries x block size */
    int64_t len;               /* positions filled */
    const int32_t *table;      /* (cap / block size) block ids */
    struct fw_kv_pool *own;    /* fw_kv_init's private blocks and table, freed by fw_kv_free */
    int32_t *own_table;
} fw_kv;

typedef enum fw_attn_mode {
    FW_ATTN_NAIVE,     /* expand keys and values from the latent cache (prefill) */
    FW_ATTN_ABSORBED,  /* attend in the latent space (decode) */
} fw_attn_mode;

/* One sequence's part of a step of the model (every backend's forward): T tokens
 * at positions kv->len .. kv->len + T - 1, the logits of its last n_out. */
typedef struct fw_seq_step {
    fw_kv *kv;
    int64_t T;
    int64_t n_out;
    fw_attn_mode mode;
    bool hidden_out;           /* the last stage also writes the final-normed hidden state of each of the T
                                * rows to `hidden`, at the sequence's offset (the MTP layer's input) */
} fw_seq_step;

/* Layers of the stage's cache: its own, and the MTP layer's after them where it is loaded. */
static inline int fw_model_kv_layers(const fw_model *m) { return m->part.n_layers + (m->mtp ? 1 : 0); }

#endif
