/* The safetensors header parser (io/safetensors.c) on arbitrary bytes: the
 * 8-byte length, the JSON header and the offsets of its tensors. An accepted
 * file must keep what the reader promises its callers: every tensor's bytes
 * inside the data section and of the size its dtype and shape say, names
 * sorted and found. */
#include <string.h>

#include "fuzz/fuzz.h"
#include "io/safetensors.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fw_st_file f;
    fw_err e;
    if (fw_st_open_mem(&f, data, size, "fuzz.safetensors", &e) != FW_OK) {
        FUZZ_CHECK(e.msg[0] != '\0', "a refusal without a message");
        FUZZ_NOTE("refused: %s", e.msg);
        return 0;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
    const uint8_t *lo = data + 8 + hlen, *hi = data + size;
    for (int i = 0; i < f.n_tensors; i++) {
        const fw_st_tensor *t = &f.tensors[i];
        const uint8_t *p = t->data;
        FUZZ_CHECK(p >= lo && p <= hi && t->nbytes <= (uint64_t)(hi - p), "tensor '%s' outside the data", t->name);
        uint64_t n = fw_dtype_size(t->dtype);
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= FW_MAX_DIMS, "tensor '%s' has %d dimensions", t->name, t->ndim);
        for (int d = 0; d < t->ndim; d++) n *= (uint64_t)t->shape[d];
        FUZZ_CHECK(n == t->nbytes, "tensor '%s': %llu bytes, shape says %llu", t->name,
                   (unsigned long long)t->nbytes, (unsigned long long)n);
        FUZZ_CHECK(i == 0 || strcmp(f.tensors[i - 1].name, t->name) < 0, "names not sorted at '%s'", t->name);
        FUZZ_CHECK(fw_st_find(&f, t->name) == t, "fw_st_find misses '%s'", t->name);
    }
    FUZZ_NOTE("accepted: %d tensors", f.n_tensors);
    fw_st_close(&f);
    return 0;
}
