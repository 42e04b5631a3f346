#include "runtime/model/backend.h"

#include <string.h>

/* The backends linked into this binary: the CPU's, and CUDA's in furrow-cuda. */
#define FW_MAX_BACKENDS 4
static const fw_backend *registered[FW_MAX_BACKENDS];

void fw_backend_register(const fw_backend *b) {
    for (int i = 0; i < FW_MAX_BACKENDS; i++) {
        if (registered[i] == b) return;
        if (!registered[i]) {
            registered[i] = b;
            return;
        }
    }
}

const fw_backend *fw_backend_find(const char *name) {
    for (int i = 0; i < FW_MAX_BACKENDS && registered[i]; i++)
        if (!strcmp(registered[i]->name, name)) return registered[i];
    return NULL;
}
