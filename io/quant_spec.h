/* What a user asks to store quantized: `convert --quantize`, `synth --weights`,
 * `bench --synthetic PRESET,weights=...` and `plan --weights` take the same text:
 *
 *   int4[,group=G][,experts][,head]   symmetric INT4, one bf16 scale per row and
 *                                     group of G input columns (default 128; a
 *                                     multiple of 8)
 *   int8[,experts][,head]             symmetric INT8, one bf16 scale per output
 *                                     channel
 *
 * `experts`: only the routed experts' weights (Kimi-K2's layout); otherwise every
 * linear projection but the output head. `head`: the output head as well
 * (lm_head, and an MTP layer's shared_head.head); left out, it stays as stored,
 * as compressed-tensors checkpoints keep it, since it is the projection most
 * sensitive to rounding. A head tied to the embeddings is never quantized; nor
 * are the embeddings, norms and router. */
#ifndef FW_IO_QUANT_SPEC_H
#define FW_IO_QUANT_SPEC_H

#include <stdbool.h>
#include <stdint.h>

#include "io/base/err.h"
#include "kernels/ops.h"

#define FW_QUANT_GROUP_DEFAULT 128

typedef struct fw_quant_spec {
    fw_wtype type;      /* FW_WTYPE_INT4 or FW_WTYPE_INT8 */
    int64_t group;      /* INT4: columns per scale; INT8: 0 (one scale per output channel) */
    bool experts_only;  /* only the routed experts */
    bool head;          /* the output head too */
} fw_quant_spec;

/* Parses `s` (the forms above); errors name the part that is wrong. */
int fw_quant_spec_parse(fw_quant_spec *q, const char *s, fw_err *e);

/* "int4,group=128" or "int8,experts,head": the spec written back, for reports. */
void fw_quant_spec_str(const fw_quant_spec *q, char *buf, size_t n);

/* Whether the spec covers the model tensor `name` (as io/model_tensors lists it,
 * "model.layers.3.mlp.experts.7.up_proj.weight"). */
bool fw_quant_spec_covers(const fw_quant_spec *q, const char *name);

#endif
