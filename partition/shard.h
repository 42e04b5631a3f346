/* Which part of each checkpoint tensor a rank reads: the loader turns each slice
 * into one HDF5 hyperslab, so every rank reads only its own bytes. */
#ifndef FW_PARTITION_SHARD_H
#define FW_PARTITION_SHARD_H

#include <stdbool.h>
#include <stdint.h>

#include "io/config.h"
#include "io/base/err.h"
#include "partition/layout.h"

typedef struct fw_slice {
    bool needed;               /* false: this rank holds none of the tensor */
    int ndim;                  /* 1 or 2, as the tensor */
    int64_t start[2], count[2];/* the hyperslab, in elements */
} fw_slice;

/* The slice of tensor `name` (Hugging Face name; a "..._scale_inv" tensor gets the
 * block rows/columns that cover its weight's slice; an INT4 weight's "..._packed"
 * words, an INT8 weight's "..._int8" values and their "..._scale" groups get its
 * slice in words, elements and groups, and a column slice that is not whole
 * groups is refused naming the tensor, tp and group size, except that a weight
 * with one scale per row keeps that whole column in every slice)
 * with full shape `shape` for the
 * rank at (pp_rank, tp_rank) of the layout:
 *  - not in this rank's stage (layer outside its range; embed off stage 0; final
 *    norm and head off the last stage; MTP layers never): not needed;
 *  - column-parallel (q_b_proj / q_proj, kv_b_proj, dense and shared gate/up):
 *    rows [r * rows/tp, (r+1) * rows/tp);
 *  - row-parallel (o_proj, dense and shared down): columns likewise;
 *  - vocab-parallel (embed_tokens, lm_head): rows [r * V/tp, (r+1) * V/tp);
 *  - routed experts: whole if the expert is this tp rank's, else not needed;
 *  - everything else (norms, q_a_proj, kv_a_proj_with_mqa, router, bias): whole. */
int fw_shard_slice(const fw_config *c, const fw_layout *l, int pp_rank, int tp_rank, const char *name,
                   int ndim, const int64_t *shape, fw_slice *out, fw_err *e);
/* fw_shard_slice for a run that speculates with the MTP layers: their tensors are
 * on the last stage, split as the main layers' (embed_tokens and
 * shared_head.head by vocabulary rows, eh_proj and the norms whole). */
int fw_shard_slice_mtp(const fw_config *c, const fw_layout *l, int pp_rank, int tp_rank, const char *name,
                       int ndim, const int64_t *shape, fw_slice *out, fw_err *e);

#endif
