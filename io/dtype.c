#include "io/dtype.h"

#include <string.h>

/* One row per type, indexed by the enum; keeps size and name in one place. */
static const struct {
    const char *name;
    size_t size;
} dtype_table[] = {
    [FW_DTYPE_INVALID] = {"INVALID", 0},
    [FW_DTYPE_F32] = {"F32", 4},
    [FW_DTYPE_F16] = {"F16", 2},
    [FW_DTYPE_BF16] = {"BF16", 2},
    [FW_DTYPE_F8_E4M3] = {"F8_E4M3", 1},
    [FW_DTYPE_F64] = {"F64", 8},
    [FW_DTYPE_I64] = {"I64", 8},
    [FW_DTYPE_I32] = {"I32", 4},
    [FW_DTYPE_I16] = {"I16", 2},
    [FW_DTYPE_I8] = {"I8", 1},
    [FW_DTYPE_U8] = {"U8", 1},
    [FW_DTYPE_BOOL] = {"BOOL", 1},
};

#define DTYPE_COUNT ((int)(sizeof dtype_table / sizeof dtype_table[0]))

_Static_assert(sizeof dtype_table / sizeof dtype_table[0] == FW_DTYPE_BOOL + 1,
               "dtype_table must list every fw_dtype");

static int dtype_valid(fw_dtype t) { return (int)t > 0 && (int)t < DTYPE_COUNT; }

size_t fw_dtype_size(fw_dtype t) { return dtype_valid(t) ? dtype_table[t].size : 0; }

const char *fw_dtype_name(fw_dtype t) {
    return dtype_valid(t) ? dtype_table[t].name : dtype_table[FW_DTYPE_INVALID].name;
}

fw_dtype fw_dtype_from_name(const char *name) {
    if (!name) return FW_DTYPE_INVALID;
    for (int i = 1; i < DTYPE_COUNT; i++)
        if (strcmp(name, dtype_table[i].name) == 0) return (fw_dtype)i;
    return FW_DTYPE_INVALID;
}
