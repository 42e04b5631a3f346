/* DeepSeek-V3.2's lightning indexer on the GPU (kernels/cuda/indexer.cu): the
 * index keys written into the paged cache beside the latent rows, the index
 * scores of each query over its visible positions, and the top-k selection as
 * cache rows, which fw_cuda_mla_decode then attends to (a table of one-row
 * blocks). The arithmetic is runtime/cpu/indexer.c's, in fp32: keys are stored
 * as fp32 in the cache row (2 bf16 slots a value). */
#ifndef FW_KERNELS_CUDA_INDEXER_H
#define FW_KERNELS_CUDA_INDEXER_H

#include "kernels/cuda/ops_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* For T tokens: k (T, id) = wk's output; LayerNorm (eps, weight w, bias b), the
 * first R values rotated in halves (pairs (i, i + R/2)) at the token's angles
 * (cos/sin (T, R/2)), written as fp32 at bf16 column col0 of the token's cache
 * row (table row q_seq[t], position q_len[t] - 1). */
int fw_cuda_index_keys(fw_cuda_ctx *ctx, const fw_cuda_pages *pg, int64_t col0, const float *k, const float *w,
                       const float *b, float eps, const float *cos_tab, const float *sin_tab, const int32_t *q_seq,
                       const int32_t *q_len, int64_t T, int64_t id, int64_t R);

/* q (T, ih, id) in place: each head's first R values rotated in halves. */
int fw_cuda_index_rope_q(fw_cuda_ctx *ctx, float *q, const float *cos_tab, const float *sin_tab, int64_t T,
                         int64_t ih, int64_t id, int64_t R);

/* score (T, ld): for query t and position s < q_len[t] (keys as fw_cuda_index_keys
 * wrote them), sum over heads h of w[t, h] ih^-1/2 relu(id^-1/2 q[t, h] . k_s);
 * -inf for s >= q_len[t] up to ld. ih is 8, 16, 32 or 64. */
int fw_cuda_index_scores(fw_cuda_ctx *ctx, float *score, int64_t ld, const float *q, const float *w,
                         const fw_cuda_pages *pg, int64_t col0, const int32_t *q_seq, const int32_t *q_len, int64_t T,
                         int64_t ih, int64_t id);

/* For queries t = t0 .. t0 + T - 1 (their scores: rows t - t0 of score), query
 * t's min(k, q_len[t]) positions with the largest scores (all of them when
 * q_len[t] <= k; ties at the boundary go to the earlier positions), in
 * ascending order, as cache rows (block id x block + offset, through table row
 * q_seq[t]) into sel[t] (rows of k); n_sel[t] their count and row[t] = t (the
 * table row of query t in sel, for fw_cuda_mla_decode). */
int fw_cuda_index_topk(fw_cuda_ctx *ctx, int32_t *sel, int32_t *n_sel, int32_t *row, const float *score, int64_t ld,
                       const fw_cuda_pages *pg, const int32_t *q_seq, const int32_t *q_len, int64_t t0, int64_t T,
                       int64_t k);

/* kv_append for `width` columns from col0 of each row (rows (T, width)). */
int fw_cuda_kv_append_cols(fw_cuda_ctx *ctx, const fw_cuda_pages *pg, int64_t col0, const fw_bf16 *rows,
                           int64_t width, const int32_t *q_seq, const int32_t *q_len, int64_t T);

#ifdef __cplusplus
}
#endif

#endif
