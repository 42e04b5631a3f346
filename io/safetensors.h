/* Reading Hugging Face safetensors files and sharded checkpoint directories.
 *
 * A file is: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {...}}, then the data; offsets are relative to the end of the
 * header. Every field is validated against the file size before it is trusted
 * (offsets inside the data, no overlaps, end - begin == product(shape) * dtype
 * size with overflow checks); a corrupt file gets an error naming the file and
 * tensor. Files are mapped read-only; tensor data is never copied by the reader. */
#ifndef FW_IO_SAFETENSORS_H
#define FW_IO_SAFETENSORS_H

#include <stdbool.h>
#include <stdint.h>

#include "io/dtype.h"
#include "io/base/err.h"

#define FW_MAX_DIMS 8

typedef struct fw_st_tensor {
    char *name;
    fw_dtype dtype;
    int ndim;
    int64_t shape[FW_MAX_DIMS];
    uint64_t nbytes;
    const void *data;           /* inside the mapping */
} fw_st_tensor;

typedef struct fw_st_file {
    char *path;
    void *map;                  /* whole file, read-only */
    uint64_t size;
    bool mapped;                /* map is ours to unmap (fw_st_open), not borrowed */
    int n_tensors;
    fw_st_tensor *tensors;      /* sorted by name */
} fw_st_file;

int fw_st_open(fw_st_file *f, const char *path, fw_err *e);
/* The same from bytes in memory (the fuzzer's entry): f borrows buf, which must
 * outlive it; name stands for the path in errors. */
int fw_st_open_mem(fw_st_file *f, const void *buf, uint64_t size, const char *name, fw_err *e);
void fw_st_close(fw_st_file *f);
/* NULL when absent. */
const fw_st_tensor *fw_st_find(const fw_st_file *f, const char *name);

/* A Hugging Face model directory: model.safetensors.index.json (its weight_map
 * names a shard per tensor; every listed shard must exist and hold the tensors the
 * map puts there) or a single model.safetensors. */
typedef struct fw_st_dir {
    char *path;
    int n_files;
    fw_st_file *files;
    int n_tensors;
    const fw_st_tensor **tensors;   /* every tensor of every shard, sorted by name */
} fw_st_dir;

int fw_st_dir_open(fw_st_dir *d, const char *dir, fw_err *e);
void fw_st_dir_close(fw_st_dir *d);
/* NULL when absent. */
const fw_st_tensor *fw_st_dir_find(const fw_st_dir *d, const char *name);
/* The shard file that holds t (for messages). */
const char *fw_st_dir_file_of(const fw_st_dir *d, const fw_st_tensor *t);

#endif
