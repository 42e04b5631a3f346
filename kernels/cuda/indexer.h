/* DeepSeek-V3.2's lightning indexer on the GPU (kernels/cuda/indexer.cu): the
 * index keys written into the paged cache beside the latent rows, the index
 * scores of each query over its visible positions, and the top-k selection as
 * cache rows, which fw_cuda_mla_decode then attends to (a table of one-row
 * blocks). The arithmetic is DeepSeek's FP8 indexer (runtime/cpu/indexer.h's
 * FP8 path): keys in the cache row as e4m3 codes and a scale. */
#ifndef FW_KERNELS_CUDA_INDEXER_H
#define FW_KERNELS_CUDA_INDEXER_H

#include "kernels/cuda/ops_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bf16 columns an index key takes in a cache row: id e4m3 codes, the fp32
 * scale, padding to 16 bytes. */
static inline int64_t fw_cuda_index_key_cols(int64_t id) { return id / 2 + 8; }

/* For T tokens: k (T, id) = wk's output; LayerNorm (eps, weight w, bias b), the
 * first R values rotated in halves (pairs (i, i + R/2)) at the token's angles
 * (cos/sin (T, R/2)), then DeepSeek's FP8 rounding (Hadamard, e4m3 with a
 * power-of-two scale: runtime/cpu/indexer.h's fw_indexer_fp8_round), stored at
 * bf16 column col0 (16-byte aligned) of the token's cache row (table row
 * q_seq[t], position q_len[t] - 1): the id codes, then the scale as fp32.
 * id is 128 (the block has id threads). */
int fw_cuda_index_keys(fw_cuda_ctx *ctx, const fw_cuda_pages *pg, int64_t col0, const float *k, const float *w,
                       const float *b, float eps, const float *cos_tab, const float *sin_tab, const int32_t *q_seq,
                       const int32_t *q_len, int64_t T, int64_t id, int64_t R);

/* The queries q (T, ih, id) as the keys above (rotation, then FP8 rounding per
 * head) into q8 (T, ih, id) e4m3 codes; each head's weight w (T, ih, weights_proj's
 * output) in place times ih^-1/2 id^-1/2 and the head's scale, so that a score
 * is sum_h w'[h] relu(q8_h . k8) times the key's scale. */
int fw_cuda_index_queries(fw_cuda_ctx *ctx, uint8_t *q8, float *w, const float *q, const float *cos_tab,
                          const float *sin_tab, int64_t T, int64_t ih, int64_t id, int64_t R);

/* score (T, ld): for query t and position s < q_len[t], the key's scale times
 * sum over heads of w[t, h] relu(q8[t, h] . k8_s) (products exact, fp32 sums,
 * by bf16 tensor-core MMAs); -inf for s >= q_len[t] up to ld. ih <= 64, id 128. */
int fw_cuda_index_scores(fw_cuda_ctx *ctx, float *score, int64_t ld, const uint8_t *q8, const float *w,
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
