/* The DeepSeek-V3 model on one rank: its weights (kept in their stored format),
 * the latent KV cache, and the forward pass over the kernels op table. */
#ifndef FW_RUNTIME_MODEL_H
#define FW_RUNTIME_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "io/config.h"
#include "io/err.h"
#include "kernels/ops.h"

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

typedef struct fw_model {
    fw_config cfg;
    const fw_ops *ops;
    fw_weight embed;           /* (V, D) */
    fw_weight head;            /* (V, D) */
    float *final_norm;         /* (D) */
    fw_layer *layers;          /* [num_hidden_layers] */
    float *rope_inv_freq;      /* (R / 2) YaRN-corrected */
    float rope_mscale;         /* multiplies cos and sin (1 for DeepSeek-V3) */
    float softmax_scale;
    uint64_t weight_bytes;     /* bytes of weights held */
    void **allocs;             /* everything loaded, for fw_model_free */
    int64_t n_allocs, cap_allocs;
} fw_model;

/* Loads every weight of the checkpoint in `dir` (MTP layers are not loaded). */
int fw_model_load(fw_model **out, const char *dir, const fw_ops *ops, fw_err *e);
void fw_model_free(fw_model *m);

/* The latent KV cache of one sequence: per layer and position, the normalised
 * compressed KV (C = kv_lora_rank values) then the rotated k_pe (R values). */
typedef struct fw_kv {
    int64_t cap;               /* positions allocated */
    int64_t len;               /* positions filled */
    int64_t n_layers, width;   /* width = C + R */
    float *data;               /* (n_layers, cap, width) */
} fw_kv;

int fw_kv_init(fw_kv *kv, const fw_model *m, int64_t cap, fw_err *e);
void fw_kv_free(fw_kv *kv);

typedef enum fw_attn_mode {
    FW_ATTN_NAIVE,     /* expand keys and values from the latent cache (prefill) */
    FW_ATTN_ABSORBED,  /* attend in the latent space (decode) */
} fw_attn_mode;

/* Runs T tokens at positions kv->len .. kv->len + T - 1, appends them to the
 * cache, and writes the logits of the last n_out tokens to logits (n_out, V). */
int fw_model_forward(fw_model *m, fw_kv *kv, const int32_t *ids, int64_t T, fw_attn_mode mode,
                     float *logits, int64_t n_out, fw_err *e);

#endif
