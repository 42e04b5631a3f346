/* Weights mapped from the checkpoint's files instead of read (private to io/;
 * io/FORMAT.md, "Mapping"): where a dataset's elements lie in its file as one
 * row-major run, and read-only mappings of whole data files, shared through the
 * page cache by every process of a node that maps them. */
#ifndef FW_IO_CKPT_MAP_H
#define FW_IO_CKPT_MAP_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "io/base/err.h"

/* One data file mapped read-only, whole; counted references (the checkpoint's
 * own, and one per holder of a pointer into it). */
struct fw_ckpt_mapping {
    int refs;
    const unsigned char *base;
    size_t size;               /* the file's size when it was mapped */
    char *path;
};

/* Maps `path`; one reference. */
int fw_mapping_open(struct fw_ckpt_mapping **out, const char *path, fw_err *e);

/* Where dataset d (ndim, shape, esize bytes per element) keeps its elements as
 * one row-major run: 0 and *off (the byte offset in its file) when it does; 1
 * and *why when it does not (compact, filtered, chunks that cut rows or are not
 * consecutive in the file, not allocated); -1 on an HDF5 error. Contiguous
 * datasets qualify, and so do chunked ones whose chunks are whole rows stored
 * one after another in grid order (what the writer produces for every tensor
 * but the row-parallel ones). */
int fw_h5_data_run(hid_t d, int ndim, const int64_t *shape, size_t esize, uint64_t *off, const char **why);

#endif
