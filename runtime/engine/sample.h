/* Picking the next token from logits: penalties, temperature, top-k, top-p,
 * min-p, a per-request seeded draw, and log-probabilities with alternatives.
 *
 * The order is vLLM's: penalties change the logits, then logprobs are read
 * (log-softmax of the penalised logits, before temperature), then temperature,
 * then the top-k, top-p and min-p filters, then the draw. The draw for the n-th
 * generated token uses a counter-based random number hash(seed, n), so a request
 * gets the same tokens whatever else is in the batch, and again after it was
 * preempted and recomputed. */
#ifndef FW_RUNTIME_ENGINE_SAMPLE_H
#define FW_RUNTIME_ENGINE_SAMPLE_H

#include <stdbool.h>
#include <stdint.h>

#include "io/base/err.h"
#include "runtime/engine/json_grammar.h"
#include "runtime/engine/tool_guide.h"

/* The index of the largest logit (the lowest index among equals). */
int32_t fw_sample_argmax(const float *logits, int64_t V);

#define FW_SAMPLE_MAX_LOGPROBS 20
#define FW_SAMPLE_TOP_MAX 64   /* top_k up to this samples from the shards' candidates */

typedef struct fw_sample_params {
    double temperature;        /* 0: greedy */
    int32_t top_k;             /* 0: off */
    double top_p;              /* 1: off; (0, 1] */
    double min_p;              /* 0: off; [0, 1] */
    double presence_penalty;   /* OpenAI's: subtracted once from every generated token's logit */
    double frequency_penalty;  /* OpenAI's: subtracted per occurrence among generated tokens */
    double repetition_penalty; /* CTRL's: > 1 discourages tokens of the prompt or the output; 1: off */
    uint64_t seed;
    int32_t logprobs;          /* -1: none; 0..FW_SAMPLE_MAX_LOGPROBS: the chosen token's and that many alternatives */
} fw_sample_params;

/* Greedy, no penalties, no logprobs. */
void fw_sample_params_default(fw_sample_params *p);
/* Checks ranges; names the bad field in the message. */
int fw_sample_params_check(const fw_sample_params *p, fw_err *e);

typedef struct fw_logprob {
    int32_t id;
    float logprob;
} fw_logprob;

typedef struct fw_sample_out {
    int32_t id;
    bool nonfinite;                           /* the logits held NaN or infinity: no id */
    float logprob;                            /* of id (if params.logprobs >= 0) */
    int n_top;                                /* alternatives, by decreasing logprob */
    fw_logprob top[FW_SAMPLE_MAX_LOGPROBS];
} fw_sample_out;

/* One request's sampling state. */
typedef struct fw_sampler {
    fw_sample_params p;
    int64_t V;
    int64_t n_generated;       /* tokens accepted so far: the draw counter */
    int32_t *counts;           /* (V) occurrences among generated tokens; NULL without penalties */
    uint8_t *seen;             /* (V) bit 0: in the prompt, bit 1: in the output; NULL without repetition penalty */
    float *work;               /* (V) penalised logits, then probabilities */
    int32_t *idx;              /* (V) candidate ids */
    fw_json_grammar *json;     /* JSON output: tokens outside the grammar's mask are never chosen */
    fw_json_state *js;         /* the grammar's state after the accepted tokens */
    const fw_tool_guide *tool; /* a forced tool call (the request's; outlives the sampler) */
    fw_tool_state *ts;
    int64_t mask_hits, mask_misses;
    double mask_s;             /* time spent on masks (look-up or walk, and applying) */
    double mask_miss_s;        /* of which the look-ups that walked the trie */
} fw_sampler;

int fw_sampler_init(fw_sampler *s, const fw_sample_params *p, int64_t V, fw_err *e);
void fw_sampler_free(fw_sampler *s);
/* Constrains the choice to a JSON grammar (a reference is taken). */
int fw_sampler_constrain(fw_sampler *s, fw_json_grammar *g, fw_err *e);
/* Constrains the choice to a tool call (runtime/engine/tool_guide.h). */
int fw_sampler_constrain_tool(fw_sampler *s, const fw_tool_guide *g, fw_err *e);
/* Marks the prompt's tokens (for the repetition penalty). */
void fw_sampler_prompt(fw_sampler *s, const int32_t *ids, int64_t n);
/* Records a generated token: the penalties and the draw counter see it. */
void fw_sampler_accept(fw_sampler *s, int32_t id);
/* Back to no generated tokens (a preempted request recomputes from its prompt). */
void fw_sampler_reset(fw_sampler *s);
/* Chooses the next token from logits (V) without accepting it. A row holding NaN
 * or infinity gives no token: out->nonfinite, id -1 (so does a non-finite lse
 * for fw_sampler_next_top). */
void fw_sampler_next(fw_sampler *s, const float *logits, fw_sample_out *out);

/* True when the request's choice needs only its top_k largest logits and their
 * log-sum-exp: top_k in [1, max_k], no penalties, logprobs <= top_k. Then the
 * vocabulary shards send their top_k candidates, never the whole row. */
bool fw_sampler_top_only(const fw_sample_params *p, int32_t max_k);
/* The same choice as fw_sampler_next from candidates: ids/vals (n) hold at least
 * the top_k largest logits of the row (any order; sorted in place), lse the
 * log-sum-exp of the whole row (for logprobs). */
void fw_sampler_next_top(fw_sampler *s, int32_t *ids, float *vals, int64_t n, double lse, fw_sample_out *out);

/* The probabilities the draw uses (V, zero outside the kept set, summing to 1)
 * after penalties, temperature and filters; for the tests' reference. Greedy
 * gives a one-hot vector. */
void fw_sampler_probs(fw_sampler *s, const float *logits, float *probs);
/* The uniform number in [0, 1) of draw n for a seed. */
double fw_sample_uniform(uint64_t seed, int64_t n);

#endif
