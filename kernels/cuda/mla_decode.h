/* What the decode-attention kernels share: their arguments, the paged cache's
 * row lookup, and the warpgroup-MMA split kernel's launcher
 * (mla_decode_wgmma.cu, sm_90a) that mla_decode.cu calls on compute capability
 * 9.0. */
#ifndef FW_KERNELS_CUDA_MLA_DECODE_H
#define FW_KERNELS_CUDA_MLA_DECODE_H

#include "kernels/cuda/cuda_common.h"

struct md_args {
    bf16 *o;                  /* (T, H, C) */
    const bf16 *q_lat, *q_pe; /* (T, H, C), (T, H, R) */
    fw_cuda_pages pg;         /* rows: c (C) then pe (R) */
    const int32_t *q_seq, *q_len; /* per query: table row, keys it sees; NULL: 0 and S - T + t + 1 */
    int64_t T, S, H, C, R;
    int splits, wp;           /* splits per query; padded row length of the key tile */
    float scale;
    float *part;              /* (T, H, splits, C) */
    float2 *ml;               /* (T, H, splits): running max, sum of exponentials */
};

/* Row p of table row s. */
__device__ static inline const bf16 *page_row(const fw_cuda_pages &pg, int64_t s, int64_t p) {
    const int64_t b = pg.table[s * pg.max_blocks + p / pg.block];
    return (const bf16 *)pg.base + b * pg.block_stride + (p % pg.block) * pg.W;
}

/* Heads a CTA of the warpgroup-MMA kernel takes (the M of its products). */
#define FW_MLA_WG_HEADS 64

/* Whether that kernel has an instance for latent width C and rope width R. */
static inline bool fw_cuda_mla_wgmma_fits(int64_t C, int64_t R) { return R == 64 && (C == 512 || C == 256); }

/* Whether it can copy from these pages (rows and blocks in 16-byte pieces, which
 * the caller checks): the tensor memory accelerator reads boxes of whole 64-key
 * tiles, so blocks of at least 16 positions that divide 64 or are multiples of it. */
bool fw_cuda_mla_wgmma_pages_fit(const fw_cuda_pages *pg);

/* Launches its split kernel (a.splits set, queries in 16-byte pieces). */
int fw_cuda_mla_split_wgmma(fw_cuda_ctx *ctx, const md_args &a);

#endif
