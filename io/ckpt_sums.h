/* The checksums that make a furrow checkpoint verifiable on every read (private
 * to io/; io/FORMAT.md, "Integrity"): XXH3-64 of each chunk of a dataset, so a
 * rank checks exactly the slices it reads, and the manifest checksum that ties
 * the root's config and link table to the tensors' checksums. */
#ifndef FW_IO_CKPT_SUMS_H
#define FW_IO_CKPT_SUMS_H

#include <stddef.h>
#include <stdint.h>

/* Chunks in the grid of a tensor `shape` cut into `chunk` (ndim 1..8). */
int64_t fw_chunk_count(int ndim, const int64_t *shape, const int64_t *chunk);

/* XXH3-64 of every chunk of a whole tensor in memory (row-major), in the grid's
 * row-major order, into sums[fw_chunk_count]. A chunk's bytes are its elements
 * inside the tensor, row-major within the chunk. */
void fw_chunk_sums(const void *data, int ndim, const int64_t *shape, const int64_t *chunk, size_t esize,
                   uint64_t *sums);

/* Checks the chunks lying wholly inside the hyperslab [start, start + count)
 * that `buf` holds (row-major, dims `count`) against sums. Returns the grid
 * index of the first chunk that differs, or -1; *checked = bytes that matched. */
int64_t fw_chunk_check(const void *buf, int ndim, const int64_t *shape, const int64_t *chunk, size_t esize,
                       const int64_t *start, const int64_t *count, const uint64_t *sums, uint64_t *checked);

/* The manifest checksum: XXH3-64 over the config text, then for each tensor in
 * name order its name, data file, dataset path and whole-tensor checksum. */
typedef struct fw_manifest_entry {
    const char *name, *file, *obj;
    uint64_t checksum;
} fw_manifest_entry;
uint64_t fw_manifest_checksum(const char *config_json, const fw_manifest_entry *t, int64_t n);

#endif
