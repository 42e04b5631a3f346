/* Rotary position embedding of MLA's rope dimensions: YaRN-corrected inverse
 * frequencies and per-position cos/sin tables. */
#ifndef FW_RUNTIME_MODEL_ROPE_H
#define FW_RUNTIME_MODEL_ROPE_H

#include <stdint.h>

#include "io/config.h"

/* inv_freq[i], i < qk_rope_head_dim / 2, with YaRN's ramp between interpolated
 * and extrapolated frequencies; *mscale multiplies cos and sin (transformers'
 * attention_factor: 1 when mscale == mscale_all_dim). */
void fw_rope_inv_freq(const fw_config *c, float *inv_freq, float *mscale);

/* cos_tab, sin_tab: (T, dim / 2) for positions pos0 .. pos0 + T - 1. */
void fw_rope_tables(const float *inv_freq, float mscale, int64_t dim, int64_t pos0, int64_t T,
                    float *cos_tab, float *sin_tab);

#endif
