/* The tensors of a DeepSeek-V3 checkpoint, derived from its config: Hugging Face
 * name, shape, whether an FP8 checkpoint stores it as F8_E4M3 with block scales,
 * and its tensor-parallel role. convert checks a checkpoint against this list,
 * synth writes it, and the checkpoint writer takes roles and chunk units from it. */
#ifndef FW_IO_MODEL_TENSORS_H
#define FW_IO_MODEL_TENSORS_H

#include <stdbool.h>
#include <stdint.h>

#include "io/config.h"
#include "io/base/err.h"

/* How a tensor is split across a tensor-parallel group (ARCHITECTURE.md, Parallelism). */
typedef enum fw_tp_role {
    FW_TP_REPLICATED = 0,   /* every rank holds all of it: norms, q_a/kv_a, router */
    FW_TP_COLUMN,           /* output rows split: q_b/q_proj, kv_b, dense/shared gate+up */
    FW_TP_ROW,              /* input columns split, then all-reduce: o_proj, down */
    FW_TP_VOCAB,            /* vocabulary rows split: embed_tokens, lm_head */
    FW_TP_EXPERT,           /* one routed expert, owned whole by one rank */
} fw_tp_role;

const char *fw_tp_role_name(fw_tp_role r);

typedef struct fw_model_tensor {
    char name[112];         /* "model.layers.3.mlp.experts.17.down_proj.weight" */
    int ndim;               /* 1 or 2 */
    int64_t shape[2];
    const char *dims;       /* the shape in config keys, for messages: "[intermediate_size, hidden_size]" */
    fw_tp_role role;
    bool quantized;         /* F8_E4M3 + "<name>_scale_inv" in an FP8 checkpoint */
    bool f32;               /* stored F32 in the hub checkpoints (e_score_correction_bias) */
    int layer;              /* -1: not in a layer (embed, final norm, head) */
    bool mtp;               /* multi-token-prediction layer: optional, run only to speculate */
} fw_model_tensor;

/* Every tensor a checkpoint of this config holds, in model order (embed, layers
 * 0.., final norm, head, then the MTP layers). The weight_scale_inv tensors are not
 * listed: see fw_model_tensor_scale_shape. *out is malloc'd. */
int fw_model_tensors(const fw_config *c, fw_model_tensor **out, int64_t *n, fw_err *e);
/* How many fw_model_tensors lists (MTP layers included), without listing them. */
int64_t fw_model_tensor_count(const fw_config *c);
/* Tensors a model may have: Kimi-K2 (384 experts, 61 layers) has ~71k; the
 * bound keeps an absurd config from listing billions. */
#define FW_MODEL_TENSORS_MAX (1 << 20)

/* Shape of the block scales of a quantized [rows, cols] weight: ceil by the
 * config's fp8_block (128 x 128). */
void fw_model_tensor_scale_shape(const fw_config *c, const int64_t shape[2], int64_t out[2]);

/* The role of a tensor from its name alone ("..._scale_inv", "..._packed",
 * "..._int8" and "..._scale" take their weight's role). *head_unit: for tensors split by attention head, one head's rows
 * (q_b_proj/q_proj: qk_head_dim; kv_b_proj: qk_nope + v_head) or columns (o_proj:
 * v_head_dim); 0 for everything else. */
fw_tp_role fw_model_tensor_role(const fw_config *c, const char *name, int64_t *head_unit);

/* Whether the weight `name` ("<module>.weight") is an nn.Linear's in transformers'
 * DeepSeek-V3: every projection and head; not the embeddings, norms or router
 * (what a quantization_config's "Linear" target means). */
bool fw_model_tensor_is_linear(const char *name);

/* Layer index from "model.layers.<N>." (N may be an MTP layer); -1 otherwise. */
int fw_model_tensor_layer(const char *name);

/* Parameters of the stored model (weights only, not scales), by config. */
int64_t fw_model_param_count(const fw_config *c, bool with_mtp);
/* Parameters used per token: routed experts counted num_experts_per_tok of E. */
int64_t fw_model_active_param_count(const fw_config *c);

#endif
