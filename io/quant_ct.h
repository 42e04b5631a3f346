/* compressed-tensors "pack-quantized" quantization_config (llm-compressor's
 * format, as Kimi-K2-Thinking ships it): symmetric INT4 weights packed eight to
 * an int32 with one BF16 scale per row and group of G input columns, activations
 * unquantized. Parsed from config.json's quantization_config and matched against
 * module names the way compressed-tensors and vLLM do: `ignore` first, then a
 * name or "re:" target (Python re.match: anchored at the start only), then the
 * class target "Linear". Anything else the format can say (asymmetric, activation
 * or KV-cache quantization, 8 bits, act-order) is refused naming the field. */
#ifndef FW_IO_QUANT_CT_H
#define FW_IO_QUANT_CT_H

#include <stdbool.h>
#include <stdint.h>

#include "io/base/err.h"

struct json_t;
typedef struct fw_ct_scheme fw_ct_scheme;

/* Parses quantization_config `q` (quant_method "compressed-tensors"). `src`
 * names config.json in errors. */
int fw_ct_parse(fw_ct_scheme **out, const struct json_t *q, const char *src, fw_err *e);
/* The scheme of a config.json text; *out NULL when it has no compressed-tensors
 * quantization_config. */
int fw_ct_from_json(fw_ct_scheme **out, const char *config_json, const char *src, fw_err *e);
void fw_ct_free(fw_ct_scheme *s);

/* Whether module `name` ("model.layers.1.mlp.experts.3.gate_proj") is quantized;
 * `linear`: the module is an nn.Linear in transformers' DeepSeek-V3 (every
 * projection and head, not the router or the embeddings). *group: the config
 * group's group size, 0 for the "channel" strategy (one scale per row). */
bool fw_ct_quantized(const fw_ct_scheme *s, const char *name, bool linear, int64_t *group);

/* Whether the model tensor `weight` ("....gate_proj.weight", as io/model_tensors
 * lists it) is stored quantized: its module (the name less ".weight") by
 * fw_ct_quantized, as an nn.Linear when the tensor is one. */
bool fw_ct_weight_quantized(const fw_ct_scheme *s, const char *weight, int64_t *group);

/* The first config group's group size (0: channel), for size estimates. */
int64_t fw_ct_first_group(const fw_ct_scheme *s);

#endif
