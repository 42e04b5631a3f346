/* Moonshot's Kimi-K2 (Kimi-K2-Thinking) geometry: a DeepseekV3ForCausalLM with
 * 384 routed experts, 64 heads, one expert group and one dense layer; one of
 * io/synth.c's presets, in a file of its own for its sourced numbers. */
#ifndef FW_IO_PRESET_KIMI_H
#define FW_IO_PRESET_KIMI_H

#include "io/config.h"

/* The release's INT4 weights as a quantization spec (io/quant_spec.h): the routed
 * experts in groups of 32, everything else BF16. */
#define FW_PRESET_KIMI_K2_WEIGHTS "int4,group=32,experts"

/* Fills every field of *c (BF16: no quantization); c->json is left NULL, for
 * fw_synth_config_json to write. */
void fw_preset_kimi_k2(fw_config *c);

#endif
