#include "runtime/engine/spec_sample.h"

#include <math.h>

/* Salts of the three kinds of draw, apart from each other and from the plain draw's. */
#define SALT_DRAFT 0x6a09e667f3bcc908ull
#define SALT_ACCEPT 0xbb67ae8584caa73bull
#define SALT_TOKEN 0x3c6ef372fe94f82bull

bool fw_spec_sample_ok(const fw_sample_params *p) {
    return p->logprobs < 0 && p->presence_penalty == 0 && p->frequency_penalty == 0 && p->repetition_penalty == 1;
}

static bool finite_row(const float *x, int64_t V) {
    for (int64_t i = 0; i < V; i++)
        if (!isfinite(x[i])) return false;
    return true;
}

/* The inverse of the cumulative distribution of w (V, weights summing to sum) at u. */
static int32_t pick(const float *w, int64_t V, double sum, double u) {
    double t = u * sum, acc = 0;
    int32_t last = -1;
    for (int64_t i = 0; i < V; i++) {
        if (w[i] <= 0) continue;
        acc += w[i];
        last = (int32_t)i;
        if (acc > t) return last;
    }
    return last; /* rounding: the last token with weight */
}

int32_t fw_spec_draft(fw_sampler *s, const float *logits, int64_t index, float *q) {
    if (!finite_row(logits, s->V)) return -1;
    fw_sampler_probs(s, logits, q);
    return pick(q, s->V, 1.0, fw_sample_uniform(s->p.seed ^ SALT_DRAFT, index));
}

int32_t fw_spec_verify(fw_sampler *s, const float *rows, int nd, const int32_t *draft, const float *q, float *p,
                       int *n_acc) {
    const int64_t V = s->V, n0 = s->n_generated;
    *n_acc = 0;
    for (int j = 0; j <= nd; j++) {
        const float *row = rows + (int64_t)j * V;
        if (!finite_row(row, V)) return -1;
        fw_sampler_probs(s, row, p);
        const double u = fw_sample_uniform(s->p.seed ^ SALT_TOKEN, n0 + j);
        if (j == nd) return pick(p, V, 1.0, u); /* every draft accepted: one more from p */
        const float *qj = q + (int64_t)j * V;
        const int32_t x = draft[j];
        if (fw_sample_uniform(s->p.seed ^ SALT_ACCEPT, n0 + j) * qj[x] < p[x]) { /* u < p(x) / q(x) */
            (*n_acc)++;
            continue;
        }
        double sum = 0;
        for (int64_t i = 0; i < V; i++) sum += p[i] = p[i] > qj[i] ? p[i] - qj[i] : 0;
        if (!(sum > 0)) { /* p == q up to rounding: p itself */
            fw_sampler_probs(s, row, p);
            sum = 1;
        }
        return pick(p, V, sum, u);
    }
    return -1;
}
