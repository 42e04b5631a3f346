/* Embedding lookup: y (T, D) bf16 = rows ids[t] - vocab0 of emb (BF16 rows copied
 * exactly, FP8 rows dequantized with their block scales, F32 rows rounded); ids
 * outside the vocabulary shard give zero rows (the TP all-reduce adds the shards). */
#include "kernels/cuda/cuda_common.h"

#define EMBED_THREADS 256

template <int WT>
__global__ void __launch_bounds__(EMBED_THREADS)
embed_kernel(bf16 *__restrict__ y, fw_wview w, const int32_t *__restrict__ ids, int64_t D, int64_t rows, int64_t vocab0) {
    const int64_t t = blockIdx.x;
    const int64_t r = (int64_t)ids[t] - vocab0;
    const bool in = r >= 0 && r < rows;
    bf16 *yt = y + t * D;
    for (int64_t j = threadIdx.x; j < D; j += EMBED_THREADS) yt[j] = in ? fw_f2bf(fw_wget<WT>(w, r, j)) : fw_f2bf(0.0f);
}

extern "C" int fw_cuda_embed(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_weight *emb, const int32_t *ids, int64_t T, int64_t vocab0) {
    if (!emb || T < 0 || emb->rows < 0 || emb->cols < 0 || emb->ld < emb->cols)
        return fw_cuda_errf(ctx, "fw_cuda_embed: bad arguments (T %lld)", (long long)T);
    if (emb->type == FW_WTYPE_FP8 && !emb->scale) return fw_cuda_errf(ctx, "fw_cuda_embed: FP8 weight without scales");
    if (T == 0 || emb->cols == 0) return FW_CUDA_OK;
    if (T > 0x7fffffffLL) return fw_cuda_errf(ctx, "fw_cuda_embed: T %lld is too large for one launch", (long long)T);
    fw_wview v = fw_wview_of(emb);
    unsigned grid = (unsigned)T;
    switch (emb->type) {
    case FW_WTYPE_F32: embed_kernel<FW_WTYPE_F32><<<grid, EMBED_THREADS, 0, ctx->stream>>>(y, v, ids, emb->cols, emb->rows, vocab0); break;
    case FW_WTYPE_BF16: embed_kernel<FW_WTYPE_BF16><<<grid, EMBED_THREADS, 0, ctx->stream>>>(y, v, ids, emb->cols, emb->rows, vocab0); break;
    case FW_WTYPE_FP8: embed_kernel<FW_WTYPE_FP8><<<grid, EMBED_THREADS, 0, ctx->stream>>>(y, v, ids, emb->cols, emb->rows, vocab0); break;
    default: return fw_cuda_errf(ctx, "fw_cuda_embed: unknown weight type %d", (int)emb->type);
    }
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}
