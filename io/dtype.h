/* Element types of tensors on disk (safetensors, furrow HDF5 checkpoints). */
#ifndef FW_IO_DTYPE_H
#define FW_IO_DTYPE_H

#include <stddef.h>

typedef enum fw_dtype {
    FW_DTYPE_INVALID = 0,
    FW_DTYPE_F32,
    FW_DTYPE_F16,
    FW_DTYPE_BF16,
    FW_DTYPE_F8_E4M3,   /* e4m3fn: bias 7, max 448, no inf */
    FW_DTYPE_F64,
    FW_DTYPE_I64,
    FW_DTYPE_I32,
    FW_DTYPE_I16,
    FW_DTYPE_I8,
    FW_DTYPE_U8,
    FW_DTYPE_BOOL,
} fw_dtype;

/* Bytes per element (0 for FW_DTYPE_INVALID). */
size_t fw_dtype_size(fw_dtype t);
/* The safetensors name ("BF16", "F8_E4M3", ...). */
const char *fw_dtype_name(fw_dtype t);
/* From a safetensors name; FW_DTYPE_INVALID if unknown. */
fw_dtype fw_dtype_from_name(const char *name);

#endif
