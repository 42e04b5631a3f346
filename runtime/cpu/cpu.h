/* The CPU backend: the model's forward over the kernels/ op table (reference or
 * fast), on the host weights, with a host pool for the latent cache. */
#ifndef FW_RUNTIME_CPU_CPU_H
#define FW_RUNTIME_CPU_CPU_H

#include "runtime/dist/comm.h"
#include "runtime/model/backend.h"
#include "runtime/model/kvcache.h"
#include "runtime/model/model.h"

/* Its entry in the backend table (runtime/cpu/cpu_backend.c). */
const fw_backend *fw_cpu_backend(void);

/* Several sequences in one pass (forward.c): their tokens (ids, hidden: all T of
 * the first sequence, then the second's, ...) go through the projections, the
 * FFN and the head together, and through attention one sequence at a time over
 * its own blocks of `pool`. The first stage embeds `ids`; other stages read the
 * previous stage's output from `hidden`. The last stage writes logits (sum of
 * n_out, vocabulary shard), in sequence order; other stages write their output
 * to `hidden`. comm does the TP all-reduces (NULL: none). */
int fw_model_forward_seqs(fw_model *m, fw_comm *comm, fw_kv_pool *pool, int n, const fw_seq_step *q,
                          const int32_t *ids, float *hidden, float *logits, fw_err *e);

/* The MTP layer (m->mtp, last stage) over n sequences' T tokens each: ids the
 * next token of each position (t_{i+1}), h_in (sum T, D) the main model's
 * final-normed hidden states of those positions (fw_seq_step.hidden_out) or the
 * layer's own h_out of the position before; its cache rows are the pool's layer
 * after the stage's (fw_model_kv_layers). Writes h_out (sum T, D; NULL: not
 * wanted), the layer's output before shared_head.norm, and logits (sum n_out,
 * vocab shard) for t_{i+2}. Advances each cache's length. */
int fw_model_forward_mtp(fw_model *m, fw_comm *comm, fw_kv_pool *pool, int n, const fw_seq_step *q,
                         const int32_t *ids, const float *h_in, float *h_out, float *logits, fw_err *e);

/* A sequence of at most cap positions with blocks of its own (tests and tools
 * that run the model without an engine), and the forward of T of its tokens:
 * the logits of the last n_out. */
int fw_kv_init(fw_kv *kv, const fw_model *m, int64_t cap, fw_err *e);
void fw_kv_free(fw_kv *kv);
int fw_model_forward(fw_model *m, fw_comm *comm, fw_kv *kv, const int32_t *ids, float *hidden, int64_t T,
                     fw_attn_mode mode, float *logits, int64_t n_out, fw_err *e);

#endif
