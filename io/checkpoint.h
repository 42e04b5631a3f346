/* furrow checkpoints: HDF5 files written by `furrow convert` / `furrow synth`,
 * read by every rank (each reading only its slices). The byte layout is specified
 * in io/FORMAT.md. Tensors are named with their Hugging Face names
 * ("model.layers.3.mlp.experts.17.down_proj.weight"); an FP8 weight's block scales
 * are the tensor "<name>_scale_inv" (i.e. "...weight_scale_inv"), as in the hub. */
#ifndef FW_IO_CHECKPOINT_H
#define FW_IO_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/config.h"
#include "io/dtype.h"
#include "io/base/err.h"

#define FW_CKPT_FORMAT_VERSION 2
/* The writer places every object of at least this many bytes (each tensor's
 * data, each chunk) at a multiple of it in its file. */
#define FW_CKPT_ALIGN 64

typedef struct fw_tensor_info {
    fw_dtype dtype;
    int ndim;
    int64_t shape[8];
    char quant[32];            /* the `quantization` attribute ("int4_sym_group32", "int8_sym_channel"); "" if none */
} fw_tensor_info;

typedef struct fw_ckpt fw_ckpt;

/* Opens a model: a checkpoint directory (fw_ckpt_open_dir), or a synthetic model
 * generated on read, "synth:..." (io/synth.h). io/ckpt_open.c. */
int fw_ckpt_open(fw_ckpt **out, const char *dir, fw_err *e);
/* Opens the checkpoint directory: checks the format version, parses the embedded
 * config. Nothing else is read until asked for. */
int fw_ckpt_open_dir(fw_ckpt **out, const char *dir, fw_err *e);

/* A checkpoint whose tensors are produced on read (io/synth's in-place synthetic
 * model): n tensors with their infos; gen fills dst with the hyperslab (start,
 * count) of `name`, and is called once with name == NULL at close to release
 * `user`. Takes the config (and its json) over. */
typedef int (*fw_ckpt_gen_fn)(void *user, const char *name, const fw_tensor_info *info, const int64_t *start,
                              const int64_t *count, void *dst, fw_err *e);
int fw_ckpt_open_generated(fw_ckpt **out, const char *label, fw_config *cfg, const char *const *names,
                           const fw_tensor_info *infos, int64_t n, fw_ckpt_gen_fn gen, void *user, fw_err *e);
void fw_ckpt_close(fw_ckpt *ck);
const fw_config *fw_ckpt_config(const fw_ckpt *ck);

/* Reads check every whole chunk they cover against its stored checksum (on by
 * default; a generated checkpoint has none). Every read also checks that the
 * dataset is the one the root records (its checksum attribute). */
void fw_ckpt_set_verify(fw_ckpt *ck, bool on);
/* Bytes of chunks checked so far by reads. */
uint64_t fw_ckpt_bytes_verified(const fw_ckpt *ck);

/* Info about a tensor; FW_ERR naming the tensor and checkpoint if it is absent. */
int fw_ckpt_info(const fw_ckpt *ck, const char *name, fw_tensor_info *info, fw_err *e);
bool fw_ckpt_has(const fw_ckpt *ck, const char *name);

/* Reads the hyperslab start[0..ndim) + count[0..ndim) of a tensor, in elements,
 * into dst (raw element bytes of the stored dtype, row-major). start and count
 * NULL: the whole tensor. */
int fw_ckpt_read(fw_ckpt *ck, const char *name, const int64_t *start, const int64_t *count,
                 void *dst, fw_err *e);

/* Mapping instead of reading (io/FORMAT.md, "Mapping"): the data files mapped
 * read-only and shared, so that ranks of a node share the page cache's copy and a
 * warm start reads nothing. A mapping lives until its last holder releases it. */
typedef struct fw_ckpt_mapping fw_ckpt_mapping;
void fw_ckpt_mapping_release(fw_ckpt_mapping *m);
#define FW_CKPT_NOT_MAPPED 1
/* Points *data at the hyperslab (start, count, as fw_ckpt_read) inside the
 * mapped data file, after the same checks as fw_ckpt_read (identity, and its
 * whole chunks against their checksums when verifying), and gives the caller a
 * reference to the mapping in *hold. FW_CKPT_NOT_MAPPED with *why when the slice
 * is not one run of the file, 64-byte aligned (a column slice, a filtered,
 * compact or differently chunked dataset, a generated checkpoint): read it
 * instead. A dataset whose data would lie past the end of its file is an error
 * naming it (a truncated file), never a fault on first touch. */
int fw_ckpt_map(fw_ckpt *ck, const char *name, const int64_t *start, const int64_t *count, const void **data,
                fw_ckpt_mapping **hold, const char **why, fw_err *e);
/* Bytes handed out by fw_ckpt_map so far. */
uint64_t fw_ckpt_bytes_mapped(const fw_ckpt *ck);

/* Tensors in the checkpoint, for `furrow info`: calls fn for each, in name order. */
typedef int (*fw_ckpt_visit_fn)(void *user, const char *name, const fw_tensor_info *info,
                                const char *file);
int fw_ckpt_foreach(fw_ckpt *ck, fw_ckpt_visit_fn fn, void *user, fw_err *e);

/* Recomputes every dataset's checksum and its chunks' and compares them with the
 * stored ones (the root's record and the manifest were checked at open). */
int fw_ckpt_verify(fw_ckpt *ck, fw_err *e);

/* What the checkpoint was made from (the root's `source` attribute; "" if none). */
const char *fw_ckpt_source(const fw_ckpt *ck);

/* Writing (convert, synth). */
typedef struct fw_ckpt_writer fw_ckpt_writer;
int fw_ckpt_writer_open(fw_ckpt_writer **out, const char *dir, const fw_config *cfg, fw_err *e);
/* Writes one tensor (any order). Picks its file from its layer index, its chunk
 * shape from its parallel role, and stores its checksum. */
int fw_ckpt_write(fw_ckpt_writer *w, const char *name, fw_dtype dtype, int ndim,
                  const int64_t *shape, const void *data, fw_err *e);
/* Writes an INT4 weight `weight` ("<module>.weight", [rows, cols]) as two
 * tensors (io/FORMAT.md, "INT4 weights"): "<weight>_packed", I32 [rows, cols/8],
 * eight values q + 8 per word, lowest column in the lowest nibble; and
 * "<weight>_scale", BF16 [rows, cols/group]. Chunked at group boundaries. */
int fw_ckpt_write_int4(fw_ckpt_writer *w, const char *weight, const int64_t shape[2], int64_t group,
                       const void *packed, const void *scale, fw_err *e);
/* Writes an INT8 weight (io/FORMAT.md, "INT8 weights"): "<weight>_int8", I8
 * [rows, cols]; "<weight>_scale", BF16 [rows, cols/group] (group = cols: one
 * scale per output channel). */
int fw_ckpt_write_int8(fw_ckpt_writer *w, const char *weight, const int64_t shape[2], int64_t group,
                       const int8_t *values, const uint16_t *scale, fw_err *e);
/* The `quantization` label of an INT8 weight's values: "int8_sym_channel" when
 * group == cols, else "int8_sym_group<G>". */
void fw_int8_label(int64_t cols, int64_t group, char *buf, size_t n);
/* Options, before the first fw_ckpt_write. Layers per data file: n > 0 puts n
 * consecutive layers in each file; 0 (the default) packs consecutive layers into
 * files of about FW_CKPT_FILE_BYTES (a layer bigger than that gets its own). */
#define FW_CKPT_FILE_BYTES (4LL << 30)
int fw_ckpt_writer_set_layers_per_file(fw_ckpt_writer *w, int n, fw_err *e);
/* What the checkpoint is made from, stored as the root's `source` attribute. */
int fw_ckpt_writer_set_source(fw_ckpt_writer *w, const char *source, fw_err *e);
/* Copies a tokenizer file (name: tokenizer*.json) into the checkpoint; it
 * appears with the rest. Refused when the destination already has one. */
int fw_ckpt_writer_add_file(fw_ckpt_writer *w, const char *from, const char *name, fw_err *e);
/* Finishes the files and writes the root index. FW_ERR leaves no valid checkpoint. */
int fw_ckpt_writer_close(fw_ckpt_writer *w, fw_err *e);
/* Abandons a failed write (removes partial files). */
void fw_ckpt_writer_abort(fw_ckpt_writer *w);

#endif
