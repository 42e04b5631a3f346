/* The model configuration: Hugging Face config.json keys of DeepSeek-V3 (and the
 * DeepSeek-V2/V3 family, V3.2's indexer keys included), parsed with jansson. Unknown keys are ignored; missing
 * required keys are named in the error; keys that re-saved configs drop
 * (scoring_func, topk_method, moe_layer_freq, ...) take DeepSeek-V3's values;
 * values furrow does not implement (softmax gating, ...) are refused by name. */
#ifndef FW_IO_CONFIG_H
#define FW_IO_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "io/base/err.h"

typedef struct fw_yarn {
    bool enabled;                      /* rope_scaling.type == "yarn" */
    double factor;                     /* e.g. 40 */
    int64_t original_max_position;     /* original_max_position_embeddings, e.g. 4096 */
    double beta_fast, beta_slow;       /* 32, 1 */
    double mscale, mscale_all_dim;     /* 1, 1 */
} fw_yarn;

typedef struct fw_config {
    int64_t vocab_size;                /* V: 129280 */
    int64_t hidden_size;               /* D: 7168 */
    int64_t intermediate_size;         /* dense FFN: 18432 */
    int64_t moe_intermediate_size;     /* one expert: 2048 */
    int num_hidden_layers;             /* 61 (the MTP layers come after these) */
    int num_attention_heads;           /* H: 128 */
    int num_key_value_heads;           /* 128 (MLA: equal to H) */
    int n_routed_experts;              /* E: 256; 0 = no MoE layers */
    int n_shared_experts;              /* 1 */
    int num_experts_per_tok;           /* k: 8 */
    int n_group, topk_group;           /* 8, 4 */
    int first_k_dense_replace;         /* 3: layers [0, 3) are dense */
    int moe_layer_freq;                /* 1 */
    double routed_scaling_factor;      /* 2.5 */
    bool norm_topk_prob;               /* true */
    int q_lora_rank;                   /* 1536; 0 = plain q_proj (config null) */
    int kv_lora_rank;                  /* 512 */
    int qk_nope_head_dim;              /* 128 */
    int qk_rope_head_dim;              /* 64 */
    int v_head_dim;                    /* 128 */
    double rms_norm_eps;               /* 1e-6 */
    double rope_theta;                 /* 10000 (top level or inside rope_scaling) */
    int64_t max_position_embeddings;   /* 163840 */
    fw_yarn yarn;
    int index_n_heads;                 /* DeepSeek-V3.2 DSA indexer: 64; 0 = no indexer (dense MLA) */
    int index_head_dim;                /* 128 (a power of two: the indexer rotates q and k by a Hadamard) */
    int index_topk;                    /* 2048 earlier tokens kept per query; 0 = dense MLA */
    int num_nextn_predict_layers;      /* MTP layers stored after the main ones (the first drafts for --speculative) */
    bool tie_word_embeddings;          /* false for DeepSeek-V3 */
    int64_t bos_token_id, eos_token_id;
    bool fp8;                          /* quantization_config: fp8 e4m3 */
    int fp8_block[2];                  /* weight_block_size, [128, 128] */
    bool int4;                         /* compressed-tensors pack-quantized INT4 (io/quant_ct.h) */
    char *json;                        /* the config.json text as read (owned) */
} fw_config;

/* Parses config.json text. `source` names it in errors (a path). */
int fw_config_parse(fw_config *c, const char *json_text, const char *source, fw_err *e);
/* Reads and parses a config.json file. */
int fw_config_load(fw_config *c, const char *path, fw_err *e);
void fw_config_free(fw_config *c);

/* Derived values. */
/* DeepSeek-V3.2 (DeepSeek Sparse Attention): a lightning indexer per layer. */
static inline bool fw_config_has_indexer(const fw_config *c) { return c->index_topk > 0; }
static inline int fw_config_qk_head_dim(const fw_config *c) { return c->qk_nope_head_dim + c->qk_rope_head_dim; }
/* Floats the cache holds per position and layer: the latent (kv_lora_rank), the
 * rotated k_pe (qk_rope_head_dim) and, with an indexer, its key (index_head_dim),
 * all in one row so that the indexer's keys are paged with the latent. */
static inline int64_t fw_config_kv_width(const fw_config *c) {
    return (int64_t)c->kv_lora_rank + c->qk_rope_head_dim + (c->index_topk > 0 ? c->index_head_dim : 0);
}
/* A GPU cache row in bf16 columns (runtime/cuda/gpu_model.c): the latent and
 * k_pe, then, with an indexer, from a 16-byte aligned column, the key's
 * index_head_dim e4m3 codes, its fp32 scale and padding to 16 bytes
 * (kernels/cuda/indexer.h). */
static inline int64_t fw_config_gpu_index_col(const fw_config *c) {
    return ((int64_t)c->kv_lora_rank + c->qk_rope_head_dim + 7) / 8 * 8;
}
static inline int64_t fw_config_gpu_kv_cols(const fw_config *c) {
    return c->index_topk > 0 ? fw_config_gpu_index_col(c) + c->index_head_dim / 2 + 8
                             : (int64_t)c->kv_lora_rank + c->qk_rope_head_dim;
}
/* Layer l (0-based, l < num_hidden_layers) uses the MoE FFN. */
static inline bool fw_config_layer_is_moe(const fw_config *c, int l) {
    return c->n_routed_experts > 0 && l >= c->first_k_dense_replace &&
           (c->moe_layer_freq <= 1 || l % c->moe_layer_freq == 0);
}
/* Softmax scale of MLA: qk_head_dim^-0.5, times mscale^2 with YaRN. */
double fw_config_softmax_scale(const fw_config *c);

#endif
