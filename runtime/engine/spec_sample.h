/* Speculative sampling (Leviathan et al. 2023; Chen et al. 2023): drafts drawn
 * from the MTP layer's distribution q, each accepted with probability
 * min(1, p(x) / q(x)) under the model's distribution p, the first rejected one
 * replaced by a draw from norm(max(0, p - q)), and a token from p after the
 * drafts when all were accepted: the tokens have p's distribution exactly. p and
 * q are the request's sampler's (temperature, top-k, top-p, min-p), so only
 * requests without penalties, logprobs or JSON output take this path (their p
 * does not change with the tokens accepted within the step). The draws use the
 * request's seed and each token's index, salted apart from the plain draw's. */
#ifndef FW_RUNTIME_ENGINE_SPEC_SAMPLE_H
#define FW_RUNTIME_ENGINE_SPEC_SAMPLE_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/engine/sample.h"

/* Whether a request with these parameters may speculate (greedy or sampled). */
bool fw_spec_sample_ok(const fw_sample_params *p);

/* A draft for generated-token index `index` from the MTP layer's logits (V):
 * q (V) the distribution it was drawn from, kept for the verification; -1 when
 * the logits are not finite. */
int32_t fw_spec_draft(fw_sampler *s, const float *logits, int64_t index, float *q);

/* Verifies nd drafts (draft[j] drawn from q + j * V for index n_generated + j)
 * against the model's rows (nd + 1, V): *n_acc accepted, and the token after
 * them (a residual draw at the first rejection, else a draw from the last row);
 * -1 (nonfinite) when a row needed is not finite. p: (V) scratch. */
int32_t fw_spec_verify(fw_sampler *s, const float *rows, int nd, const int32_t *draft, const float *q, float *p,
                       int *n_acc);

#endif
