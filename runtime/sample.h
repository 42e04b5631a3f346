/* Picking the next token from logits. */
#ifndef FW_RUNTIME_SAMPLE_H
#define FW_RUNTIME_SAMPLE_H

#include <stdint.h>

/* The index of the largest logit (the lowest index among equals). */
int32_t fw_sample_argmax(const float *logits, int64_t V);

typedef struct fw_sampler {
    double temperature;   /* 0: greedy */
    double top_p;         /* 1: off */
    uint64_t state;       /* PRNG state (seeded) */
} fw_sampler;

void fw_sampler_init(fw_sampler *s, double temperature, double top_p, uint64_t seed);
/* Greedy when temperature is 0, else a draw from softmax(logits / T) within the
 * top-p nucleus. `work` holds 2 * V floats. */
int32_t fw_sample(fw_sampler *s, const float *logits, int64_t V, float *work);

#endif
