/* Writing result arrays (logits, token ids) to small HDF5 files. */
#ifndef FW_IO_H5OUT_H
#define FW_IO_H5OUT_H

#include <stdint.h>

#include "io/base/err.h"

typedef struct fw_h5out fw_h5out;

/* Creates an HDF5 file for results, under a temporary name beside `path`:
 * close renames it to `path` (replacing it), or removes it after any error. */
int fw_h5out_create(fw_h5out **out, const char *path, fw_err *e);
/* Writes dataset `name` of float32 (rows, cols); cols == 0 means 1-D (rows). */
int fw_h5out_f32(fw_h5out *f, const char *name, const float *data, int64_t rows, int64_t cols, fw_err *e);
/* Writes a 1-D int64 dataset. */
int fw_h5out_i64(fw_h5out *f, const char *name, const int64_t *data, int64_t n, fw_err *e);
/* Writes a string attribute on the root group. */
int fw_h5out_attr(fw_h5out *f, const char *name, const char *value, fw_err *e);
/* Finishes the file; after any failed write it only removes it (and fails). */
int fw_h5out_close(fw_h5out *f, fw_err *e);

#endif
