/* Synthetic checkpoints: random weights of any DeepSeek-V3 geometry, written as a
 * furrow checkpoint, for tests and benchmarks. Deterministic from the seed:
 * every tensor (and every 64-row block of it) has its own stream derived from the
 * seed and the tensor's name, so the result does not depend on thread count.
 *
 * Values ("normal" is a sum of four uniforms: bell-shaped, |z| < 3.5, fast):
 * linear weights normal(0, 1/sqrt(in)) (activations stay O(1) through
 * many layers), embeddings normal(0, 1), norms 1, e_score_correction_bias
 * uniform(0, 0.1) (positive, so routing is well defined). With cfg->fp8 the
 * quantized weights are e4m3 values of 64 * normal(0, 1) with random per-block
 * scales around sigma / 64 (the dequantized weight has about the same spread).
 * With a quantization spec (io/quant_spec.h) the weights it covers are INT4 or
 * INT8 directly: q uniform over the type's range, bf16 scales per row and group
 * around sigma / sd(q) (again about the same spread). */
#ifndef FW_IO_SYNTH_H
#define FW_IO_SYNTH_H

#include <stdint.h>

#include "io/config.h"
#include "io/quant_spec.h"
#include "io/base/err.h"

/* Geometries by name:
 *   tiny         golden A: hidden 256, 3 layers (1 dense + 2 MoE), 4 heads, 16 experts top-4, vocab 2048
 *   small        hidden 2048, 4 layers (1 dense + 3 MoE), 16 heads, 32 experts top-4 + 1 shared,
 *                expert dim 1024, vocab 32768: 0.83B parameters, 1.66 GB in BF16
 *   deepseek-v3  the published 671B config (FP8, 61 layers + 1 MTP layer)
 *   deepseek-v3.2 the same with DeepSeek-V3.2's indexer (64 heads of 128, top 2048)
 *   kimi-k2      Moonshot's Kimi-K2-Thinking (1T: 384 experts, 64 heads; io/preset_kimi.h) */
int fw_synth_preset(const char *name, fw_config *out, fw_err *e);
/* The quantization spec of the release's weights where its config alone does not
 * say it ("int4,group=32,experts" for kimi-k2), else NULL. */
const char *fw_synth_preset_weights(const char *name);
/* The preset names, NULL-terminated (for usage messages). */
extern const char *const fw_synth_preset_names[];

/* Rebuilds cfg->json from the config's fields (keeping keys furrow does not read,
 * when cfg->json already holds a config.json), then re-parses it so the result is
 * exactly what a reader of the checkpoint will see. Call after changing fields. */
int fw_synth_config_json(fw_config *cfg, fw_err *e);

/* Bytes the checkpoint's tensors will take (weights and scales; the weights q
 * covers packed as INT4 or INT8, NULL: none). */
int64_t fw_synth_bytes(const fw_config *cfg, const fw_quant_spec *q);

typedef struct fw_synth_opts {
    int layers_per_file;                            /* 0: the writer's default */
    const fw_quant_spec *weights;                   /* INT4 / INT8 weights; NULL: as the config says */
    void (*progress)(void *user, const char *line); /* one line per layer; may be NULL */
    void *user;
} fw_synth_opts;

int fw_synth(const fw_config *cfg, uint64_t seed, const char *out_dir, fw_err *e);
int fw_synth_with(const fw_config *cfg, uint64_t seed, const char *out_dir, const fw_synth_opts *o, fw_err *e);

/* The synthetic model without a checkpoint on disk: fw_ckpt_open of a "directory"
 * "synth:PRESET[,layers=N][,dense=N][,seed=N][,fp8=0|1][,weights=SPEC]" (dense:
 * leading dense layers; weights: a quantization spec, io/quant_spec.h, last,
 * since it takes the rest of the text, commas included:
 * "synth:deepseek-v3,layers=4,weights=int4,group=32,experts") gives a checkpoint
 * whose tensors are generated on read, bit for bit what fw_synth writes with
 * that config, seed and spec; a slice costs only the 64-row blocks it touches, so
 * each rank makes just its part. MTP layers are left out. */
#define FW_SYNTH_PREFIX "synth:"
typedef struct fw_ckpt fw_ckpt;
int fw_synth_open(fw_ckpt **out, const char *spec, fw_err *e);

#endif
