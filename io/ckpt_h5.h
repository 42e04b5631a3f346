/* HDF5 plumbing shared by the checkpoint reader and writer (private to io/):
 * element types, scalar attributes, tensor names <-> dataset paths, and HDF5's
 * error stack turned into an fw_err message. */
#ifndef FW_IO_CKPT_H5_H
#define FW_IO_CKPT_H5_H

#include <hdf5.h>
#include <stdbool.h>
#include <stdint.h>

#include "io/dtype.h"
#include "io/base/err.h"

#define FW_CKPT_FORMAT_NAME "furrow-checkpoint"
#define FW_CKPT_ROOT "furrow.h5"

/* Stops HDF5 from printing its error stack to stderr: errors become fw_err
 * messages instead. Process-wide; idempotent. */
void fw_h5_quiet(void);

/* fw_errf plus ": " and HDF5's innermost error description. Call it right after
 * the failing HDF5 call (the next HDF5 call clears the stack). */
int fw_h5_errf(fw_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The errno of the system call behind the last HDF5 error (from HDF5's error
 * stack; call it before the next HDF5 call), 0 if none is recorded. */
int fw_h5_errno(void);

/* Call after a write to the file failed and before closing anything in it: the
 * closes that follow then cannot fail (nor crash HDF5 1.10 at exit). The file
 * on disk is left for the caller to unlink. */
void fw_h5_abandon(hid_t fid);

/* The HDF5 file type of a dtype (a new id for H5Tclose): BF16 and F16 as custom
 * little-endian floats, F8_E4M3 as U8 (HDF5 floats cannot say "no inf"). Negative
 * if the dtype cannot be stored. */
hid_t fw_h5_type(fw_dtype t);

/* Scalar attributes; 0 on success, negative on an HDF5 error. */
int fw_h5_put_str(hid_t obj, const char *name, const char *value);
int fw_h5_put_i64(hid_t obj, const char *name, int64_t v);
int fw_h5_put_u64(hid_t obj, const char *name, uint64_t v);
/* String attribute (fixed or variable length) as a malloc'd string; NULL if absent
 * or not a string. */
/* A uint64 array attribute of n elements; get fails unless it has exactly n. */
int fw_h5_put_u64_array(hid_t obj, const char *name, const uint64_t *v, int64_t n);
int fw_h5_get_u64_array(hid_t obj, const char *name, uint64_t *v, int64_t n);
char *fw_h5_get_str(hid_t obj, const char *name);
int fw_h5_get_i64(hid_t obj, const char *name, int64_t *v);
int fw_h5_get_u64(hid_t obj, const char *name, uint64_t *v);

/* "model.layers.3.mlp.gate.weight" -> "/model/layers/3/mlp/gate/weight". A name
 * is valid when it is non-empty, has no '/', and no empty '.'-separated part. */
bool fw_ckpt_name_valid(const char *name);
void fw_ckpt_name_to_path(const char *name, char *path, size_t size);

#endif
