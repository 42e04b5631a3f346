/* Hugging Face DeepSeek-V3 checkpoint (config.json + safetensors, BF16, FP8 with
 * 128x128 block scales, or compressed-tensors INT4) -> furrow checkpoint (io/FORMAT.md).
 *
 * Everything is checked before anything is written: every tensor the config
 * implies must be there with its shape and an allowed dtype (BF16 or F32 for
 * plain tensors; in an FP8 checkpoint, F8_E4M3 plus an F32 weight_scale_inv of
 * [ceil(out/128), ceil(in/128)] for every linear weight but the router gate,
 * embeddings and heads; in a compressed-tensors pack-quantized checkpoint, each
 * module the config quantizes as weight_packed I32 [out, in/8], weight_scale
 * BF16 [out, in/G] and weight_shape [out, in], and no other: written packed by
 * fw_ckpt_write_int4). F16 is refused (DeepSeek never ships it; widening to F32
 * would double the size). MTP layers are optional, each all or nothing. Unknown
 * tensors are reported through `warn` and skipped. Data is copied as stored: FP8
 * stays FP8; with `quantize`, the linear weights it covers (io/quant_spec.h) of a
 * BF16 or FP8 checkpoint are quantized to INT4 or INT8 instead (io/quantize.h;
 * FP8 first dequantized with its block scales), the source attribute says so and
 * `summary` gets the errors. tokenizer.json and tokenizer_config.json, when
 * present, are copied beside furrow.h5. On error nothing is left in out_dir but
 * what was there. */
#ifndef FW_IO_CONVERT_H
#define FW_IO_CONVERT_H

#include "io/base/err.h"
#include "io/quant_spec.h"

/* What `quantize` did: per weight, the relative RMS error ||W - dequant|| / ||W||. */
typedef struct fw_quant_summary {
    int64_t tensors;                        /* weights quantized */
    double rel_min, rel_median, rel_max;
    char worst[128];                        /* the weight of rel_max */
    int64_t bytes_before, bytes_after;      /* those weights as stored in the input (FP8: with scales), as written */
    int64_t total_before, total_after;      /* every tensor written */
} fw_quant_summary;

typedef struct fw_convert_opts {
    int layers_per_file;                            /* 0: the writer's default (pack by size) */
    void (*progress)(void *user, const char *line); /* one line per layer; may be NULL */
    void (*warn)(void *user, const char *line);     /* skipped tensors, absent MTP layers; may be NULL */
    const fw_quant_spec *quantize;                  /* NULL: store as the input does */
    fw_quant_summary *summary;                      /* with quantize: filled in; may be NULL */
    void *user;
} fw_convert_opts;

int fw_convert(const char *hf_dir, const char *out_dir, const fw_convert_opts *o, fw_err *e);

#endif
