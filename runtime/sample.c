#include "runtime/sample.h"

#include <math.h>
#include <stdlib.h>

int32_t fw_sample_argmax(const float *logits, int64_t V) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    return (int32_t)best;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void fw_sampler_init(fw_sampler *s, double temperature, double top_p, uint64_t seed) {
    s->temperature = temperature;
    s->top_p = top_p;
    s->state = seed;
}

static int by_prob_desc(const void *a, const void *b) {
    float pa = ((const float *)a)[0], pb = ((const float *)b)[0];
    return (pa < pb) - (pa > pb);
}

int32_t fw_sample(fw_sampler *s, const float *logits, int64_t V, float *work) {
    if (s->temperature <= 0) return fw_sample_argmax(logits, V);
    float mx = logits[fw_sample_argmax(logits, V)];
    double sum = 0;
    for (int64_t i = 0; i < V; i++) {
        float p = expf((float)((logits[i] - mx) / s->temperature));
        work[2 * i] = p;               /* (probability, id) pairs */
        work[2 * i + 1] = (float)i;
        sum += p;
    }
    int64_t n = V;
    if (s->top_p < 1) {
        qsort(work, (size_t)V, 2 * sizeof(float), by_prob_desc);
        double acc = 0;
        for (n = 0; n < V && acc < s->top_p * sum; n++) acc += work[2 * n];
        sum = acc;
    }
    double r = (double)(splitmix64(&s->state) >> 11) * 0x1p-53 * sum, acc = 0;
    for (int64_t i = 0; i < n; i++) {
        acc += work[2 * i];
        if (r < acc) return (int32_t)work[2 * i + 1];
    }
    return (int32_t)work[2 * (n - 1) + 1];
}
