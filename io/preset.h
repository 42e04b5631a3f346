/* Model presets by name, as plan, synth and bench take them: synth's geometries
 * (io/synth.h: tiny, small, deepseek-v3) and kimi-k2 (io/preset_kimi.h), with the
 * weights each release ships. */
#ifndef FW_IO_PRESET_H
#define FW_IO_PRESET_H

#include "io/config.h"
#include "io/base/err.h"

/* The preset's config (cfg->json written), its weights as its config says: FP8
 * for deepseek-v3, BF16 for the rest; see fw_preset_weights. */
int fw_preset(const char *name, fw_config *out, fw_err *e);

/* The quantization spec (io/quant_spec.h) of the release's weights when its
 * config alone does not say it ("int4,group=32,experts" for kimi-k2), else NULL. */
const char *fw_preset_weights(const char *name);

/* The names, NULL-terminated, and the same as "tiny, small, ..." for messages. */
extern const char *const fw_preset_names[];
#define FW_PRESET_LIST "tiny, small, deepseek-v3, kimi-k2"

#endif
