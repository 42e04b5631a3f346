#include "io/ckpt_sums.h"

#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

int64_t fw_chunk_count(int ndim, const int64_t *shape, const int64_t *chunk) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= chunk[i] > 0 ? (shape[i] + chunk[i] - 1) / chunk[i] : 0;
    return n;
}

/* Feeds the region [off, off + len) of a row-major buffer with dims `dims` to
 * st, row by row of the last dimension. */
static void hash_region(XXH3_state_t *st, const unsigned char *buf, int nd, const int64_t *dims, size_t esize,
                        const int64_t *off, const int64_t *len) {
    int64_t idx[8] = {0};
    for (int i = 0; i < nd; i++)
        if (len[i] <= 0) return;
    for (;;) {
        int64_t at = 0;
        for (int i = 0; i < nd; i++) at = at * dims[i] + off[i] + (i < nd - 1 ? idx[i] : 0);
        XXH3_64bits_update(st, buf + (size_t)at * esize, (size_t)len[nd - 1] * esize);
        int i = nd - 2;
        while (i >= 0 && ++idx[i] == len[i]) idx[i--] = 0;
        if (i < 0) return;
    }
}

/* The chunk at grid coordinates g: its offset and extent within the tensor. */
static void chunk_box(int nd, const int64_t *shape, const int64_t *chunk, const int64_t *g, int64_t *off,
                      int64_t *len) {
    for (int i = 0; i < nd; i++) {
        off[i] = g[i] * chunk[i];
        len[i] = shape[i] - off[i] < chunk[i] ? shape[i] - off[i] : chunk[i];
    }
}

void fw_chunk_sums(const void *data, int ndim, const int64_t *shape, const int64_t *chunk, size_t esize,
                   uint64_t *sums) {
    int64_t n = fw_chunk_count(ndim, shape, chunk), grid[8] = {0}, g[8] = {0}, off[8] = {0}, len[8] = {0};
    for (int i = 0; i < ndim; i++) grid[i] = (shape[i] + chunk[i] - 1) / chunk[i];
    XXH3_state_t st;
    for (int64_t k = 0; k < n; k++) {
        chunk_box(ndim, shape, chunk, g, off, len);
        XXH3_64bits_reset(&st);
        hash_region(&st, data, ndim, shape, esize, off, len);
        sums[k] = XXH3_64bits_digest(&st);
        for (int i = ndim - 1; i >= 0 && ++g[i] == grid[i]; i--) g[i] = 0;
    }
}

int64_t fw_chunk_check(const void *buf, int ndim, const int64_t *shape, const int64_t *chunk, size_t esize,
                       const int64_t *start, const int64_t *count, const uint64_t *sums, uint64_t *checked) {
    int64_t lo[8] = {0}, grid[8] = {0}, span[8] = {0}, total = 1;
    *checked = 0;
    for (int i = 0; i < ndim; i++) {
        /* Whole chunks only: those starting at or after start, ending by its end
         * (the tensor's last, shorter chunk ends at the tensor's end). */
        grid[i] = (shape[i] + chunk[i] - 1) / chunk[i];
        lo[i] = (start[i] + chunk[i] - 1) / chunk[i];
        int64_t end = start[i] + count[i], hi = end == shape[i] ? grid[i] : end / chunk[i];
        if (lo[i] >= hi) return -1;
        span[i] = hi - lo[i];
        total *= span[i];
    }
    /* Chunks are hashed independently, so the threads split them: a mapped
     * load's checksums are most of its time, and each chunk's first touch
     * faults its pages in on the thread that hashes it. Only a large slab:
     * below ~1 ms of hashing, a parallel region's barrier costs as much when
     * another process holds a core (a routed expert's slab is ~1 MB). */
    uint64_t slab = esize;
    for (int i = 0; i < ndim; i++) slab *= (uint64_t)count[i];
    int64_t first_bad = total;
    uint64_t ok_bytes = 0;
#pragma omp parallel for schedule(dynamic, 4) reduction(min : first_bad) reduction(+ : ok_bytes) \
    if (total > 8 && slab >= (16u << 20))
    for (int64_t j = 0; j < total; j++) {
        int64_t g[8], off[8], len[8], rel[8], k = 0, r = j;
        for (int i = ndim - 1; i >= 0; i--) g[i] = lo[i] + r % span[i], r /= span[i];
        for (int i = 0; i < ndim; i++) k = k * grid[i] + g[i];
        chunk_box(ndim, shape, chunk, g, off, len);
        for (int i = 0; i < ndim; i++) rel[i] = off[i] - start[i];
        XXH3_state_t st;
        XXH3_64bits_reset(&st);
        hash_region(&st, buf, ndim, count, esize, rel, len);
        if (XXH3_64bits_digest(&st) != sums[k]) {
            if (j < first_bad) first_bad = j;
            continue;
        }
        uint64_t b = esize;
        for (int i = 0; i < ndim; i++) b *= (uint64_t)len[i];
        ok_bytes += b;
    }
    *checked = ok_bytes;
    if (first_bad == total) return -1;
    int64_t g[8], k = 0;
    for (int i = ndim - 1; i >= 0; i--) g[i] = lo[i] + first_bad % span[i], first_bad /= span[i];
    for (int i = 0; i < ndim; i++) k = k * grid[i] + g[i];
    return k;
}

uint64_t fw_manifest_checksum(const char *config_json, const fw_manifest_entry *t, int64_t n) {
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    /* Each string with its terminating NUL, so no two lists hash alike by
     * moving a boundary. */
    XXH3_64bits_update(&st, config_json, strlen(config_json) + 1);
    for (int64_t i = 0; i < n; i++) {
        XXH3_64bits_update(&st, t[i].name, strlen(t[i].name) + 1);
        XXH3_64bits_update(&st, t[i].file, strlen(t[i].file) + 1);
        XXH3_64bits_update(&st, t[i].obj, strlen(t[i].obj) + 1);
        unsigned char le[8];
        for (int b = 0; b < 8; b++) le[b] = (unsigned char)(t[i].checksum >> (8 * b));
        XXH3_64bits_update(&st, le, sizeof le);
    }
    return XXH3_64bits_digest(&st);
}
