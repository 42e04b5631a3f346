/* DeepSeek-V3.2's lightning indexer on the CPU (DeepSeek Sparse Attention): per
 * token an indexer key beside the latent cache, per query the index scores of
 * every visible position and the top index_topk of them, which MLA then attends
 * to (tests/golden_v32/README.md states the forward). The exact path is float32
 * without DeepSeek's FP8 rounding of q and k (transformers' semantics); the FP8
 * path rounds them as DeepSeek's inference code does (the GPU's arithmetic). */
#ifndef FW_RUNTIME_CPU_INDEXER_H
#define FW_RUNTIME_CPU_INDEXER_H

#include <stdint.h>

#include "runtime/model/model.h"

/* For T tokens: queries qi (T, ih * id) from the q latent cq (T, q_lora), head
 * weights w (T, ih) (weights_proj * ih^-1/2) and keys (T rows of stride
 * k_stride, id values each) from the layer's normed input x (T, D); the first
 * qk_rope_head_dim values of each query head and key rotated with non-interleaved
 * RoPE at the token's angles (cos/sin tables as the model's, (T, R / 2)). */
void fw_indexer_project(const fw_model *m, const fw_layer *L, const float *x, const float *cq, int64_t T,
                        const float *cos_tab, const float *sin_tab, float *qi, float *w, float *keys,
                        int64_t k_stride);

/* Index scores of nq consecutive queries of one sequence, at positions p0 ..
 * p0 + nq - 1 (qi (nq, ih * id), w (nq, ih)), over its keys 0 .. p0 + nq - 1
 * (rows of stride k_stride): row q of score (stride ld) gets
 * score[s] = sum_h w[h] relu(id^-1/2 q_h . k_s) for s <= p0 + q (the rest of
 * the row is left alone). The dot products are one matmul of the queries' heads
 * against the keys into logits: nq * ih * (p0 + nq) floats of scratch. With
 * keys16 ((p0 + nq) * id of scratch) the keys go through it as bf16, the faster
 * matmul: exact only for keys that bf16 holds, as fw_indexer_fp8_round's. */
void fw_indexer_scores(const fw_model *m, const float *qi, const float *w, const float *keys, int64_t k_stride,
                       int64_t p0, int64_t nq, uint16_t *keys16, float *logits, float *score, int64_t ld);

/* The min(k, S) positions with the largest scores, ascending, into ids; returns
 * how many. Ties at the boundary go to the earlier positions. tmp: S floats. */
int64_t fw_indexer_topk(const float *score, int64_t S, int64_t k, float *tmp, int32_t *ids);

/* DeepSeek's FP8 rounding of one indexer query head or key (id values, in
 * place): the Hadamard rotation (Sylvester order, scaled by id^-1/2), then e4m3
 * with a power-of-two scale 2^ceil(log2(max(amax, 1e-4) / 448)). v becomes the
 * dequantized values, q8 (if not NULL) the e4m3 codes; returns the scale. The
 * rotation is orthogonal, so exact-path scores over rounded q and k are
 * DeepSeek's fp8_index scores. id a power of two. */
float fw_indexer_fp8_round(float *v, int64_t id, uint8_t *q8);

#endif
