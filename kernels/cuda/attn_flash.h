/* What the two prefill attention kernels share: their arguments, and the
 * warpgroup-MMA launcher (attn_flash_wgmma.cu, sm_90a) that attn_flash.cu
 * calls on compute capability 9.0. */
#ifndef FW_KERNELS_CUDA_ATTN_FLASH_H
#define FW_KERNELS_CUDA_ATTN_FLASH_H

#include "kernels/cuda/cuda_common.h"

struct fa_args {
    bf16 *o;
    const bf16 *q;
    fw_cuda_attn_kv kv;
    int64_t T, S, H, q_ts, o_ts;
    float scale_log2; /* softmax scale * log2(e): exp2 of scaled differences */
};

/* The kernel padded to q.k width dq (64, 128 or 192) and v width dv (64 or 128):
 * rows, head offsets and pointers in whole 16-byte pieces, o 4-byte aligned. */
int fw_cuda_attn_flash_wgmma(fw_cuda_ctx *ctx, const fa_args &a, int dq, int dv);

#endif
