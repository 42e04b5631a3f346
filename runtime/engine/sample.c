#include "runtime/engine/sample.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/clock.h"

int32_t fw_sample_argmax(const float *logits, int64_t V) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    return (int32_t)best;
}

void fw_sample_params_default(fw_sample_params *p) {
    memset(p, 0, sizeof *p);
    p->top_p = 1;
    p->repetition_penalty = 1;
    p->logprobs = -1;
}

int fw_sample_params_check(const fw_sample_params *p, fw_err *e) {
    if (!(p->temperature >= 0 && p->temperature <= 100)) return fw_errf(e, "temperature must be in [0, 100]");
    if (p->top_k < 0) return fw_errf(e, "top_k must be >= 0 (0: off)");
    if (!(p->top_p > 0 && p->top_p <= 1)) return fw_errf(e, "top_p must be in (0, 1]");
    if (!(p->min_p >= 0 && p->min_p <= 1)) return fw_errf(e, "min_p must be in [0, 1]");
    if (!(p->presence_penalty >= -2 && p->presence_penalty <= 2)) return fw_errf(e, "presence_penalty must be in [-2, 2]");
    if (!(p->frequency_penalty >= -2 && p->frequency_penalty <= 2))
        return fw_errf(e, "frequency_penalty must be in [-2, 2]");
    if (!(p->repetition_penalty > 0 && p->repetition_penalty <= 10))
        return fw_errf(e, "repetition_penalty must be in (0, 10]");
    if (p->logprobs < -1 || p->logprobs > FW_SAMPLE_MAX_LOGPROBS)
        return fw_errf(e, "logprobs must be in [0, %d]", FW_SAMPLE_MAX_LOGPROBS);
    return FW_OK;
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double fw_sample_uniform(uint64_t seed, int64_t n) {
    uint64_t h = mix64(mix64(seed + 0x9e3779b97f4a7c15ull) ^ ((uint64_t)n * 0xd1b54a32d192ed03ull));
    return (double)(h >> 11) * 0x1p-53;
}

int fw_sampler_init(fw_sampler *s, const fw_sample_params *p, int64_t V, fw_err *e) {
    memset(s, 0, sizeof *s);
    s->p = *p;
    s->V = V;
    s->work = malloc((size_t)V * sizeof(float));
    s->idx = malloc((size_t)V * sizeof(int32_t));
    if (p->presence_penalty != 0 || p->frequency_penalty != 0) s->counts = calloc((size_t)V, sizeof(int32_t));
    if (p->repetition_penalty != 1) s->seen = calloc((size_t)V, 1);
    if (!s->work || !s->idx || ((p->presence_penalty != 0 || p->frequency_penalty != 0) && !s->counts) ||
        (p->repetition_penalty != 1 && !s->seen)) {
        fw_sampler_free(s);
        return fw_errf(e, "sampler: out of memory for a vocabulary of %lld", (long long)V);
    }
    return FW_OK;
}

int fw_sampler_constrain(fw_sampler *s, fw_json_grammar *g, fw_err *e) {
    if (fw_json_grammar_vocab(g) != s->V)
        return fw_errf(e, "the JSON grammar is for %lld tokens, the sampler for %lld",
                       (long long)fw_json_grammar_vocab(g), (long long)s->V);
    if (!(s->js = malloc(sizeof *s->js))) return fw_errf(e, "out of memory");
    s->json = fw_json_grammar_ref(g);
    fw_json_start(fw_json_grammar_nodes(g), s->js);
    return FW_OK;
}

int fw_sampler_constrain_tool(fw_sampler *s, const fw_tool_guide *g, fw_err *e) {
    if (g->V != s->V)
        return fw_errf(e, "the tool guide is for %lld tokens, the sampler for %lld", (long long)g->V, (long long)s->V);
    if (!(s->ts = malloc(sizeof *s->ts))) return fw_errf(e, "out of memory");
    s->tool = g;
    fw_tool_guide_start(g, s->ts);
    return FW_OK;
}

void fw_sampler_free(fw_sampler *s) {
    fw_json_grammar_release(s->json);
    free(s->js);
    free(s->ts);
    free(s->work);
    free(s->idx);
    free(s->counts);
    free(s->seen);
    memset(s, 0, sizeof *s);
}

void fw_sampler_prompt(fw_sampler *s, const int32_t *ids, int64_t n) {
    if (!s->seen) return;
    for (int64_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < s->V) s->seen[ids[i]] |= 1;
}

void fw_sampler_accept(fw_sampler *s, int32_t id) {
    s->n_generated++;
    /* A token the mask allowed always advances the grammar; one it refused
     * (never chosen by fw_sampler_next) leaves the state as it was. */
    if (s->json) {
        fw_json_state t = *s->js;
        if (fw_json_grammar_accept(s->json, &t, id)) *s->js = t;
    }
    if (s->tool) fw_tool_guide_accept(s->tool, s->ts, id);
    if (id < 0 || id >= s->V) return;
    if (s->counts) s->counts[id]++;
    if (s->seen) s->seen[id] |= 2;
}

void fw_sampler_reset(fw_sampler *s) {
    s->n_generated = 0;
    if (s->json) fw_json_start(fw_json_grammar_nodes(s->json), s->js);
    if (s->tool) fw_tool_guide_start(s->tool, s->ts);
    if (s->counts) memset(s->counts, 0, (size_t)s->V * sizeof(int32_t));
    if (s->seen)
        for (int64_t i = 0; i < s->V; i++) s->seen[i] &= 1; /* the prompt's marks stay */
}

/* 8 floats as one vector (GCC and Clang's vector extension: SSE or AVX adds). */
typedef float lanes8 __attribute__((vector_size(32)));

/* For each byte of a mask word, what its 8 tokens' logits get added: 0 kept, -infinity refused. */
static float refuse_add[256][8];
static pthread_once_t refuse_once = PTHREAD_ONCE_INIT;
static void refuse_init(void) {
    for (int b = 0; b < 256; b++)
        for (int j = 0; j < 8; j++) refuse_add[b][j] = b >> j & 1 ? 0.0f : -INFINITY;
}

/* work = logits, -infinity for the tokens the JSON grammar refuses now. A state with no
 * token (a vocabulary without some byte) lets only EOS through, ending it. */
static void constrain(fw_sampler *s, fw_json_grammar *g, const fw_json_state *js, const float *logits) {
    double t0 = fw_now();
    bool hit;
    const uint64_t *m = fw_json_grammar_mask(g, js, &hit);
    if (!hit) s->mask_miss_s += fw_now() - t0;
    float *w = s->work;
    const int64_t V = s->V;
    uint64_t any = 0;
    pthread_once(&refuse_once, refuse_init);
    for (int64_t k = 0; k * 64 < V; k++) {
        uint64_t bits = m[k];
        int64_t i0 = k * 64, n = V - i0 < 64 ? V - i0 : 64;
        any |= bits;
        float *restrict x = w + i0;
        const float *restrict l = logits + i0;
        if (n < 64) {
            for (int64_t i = 0; i < n; i++) x[i] = bits >> i & 1 ? l[i] : -INFINITY;
        } else if (bits == ~0ull) { /* inside a string most words keep all their tokens */
            memcpy(x, l, 64 * sizeof *x);
        } else if (bits == 0) { /* between values most refuse all */
            for (int i = 0; i < 64; i++) x[i] = -INFINITY;
        } else {
            for (int b = 0; b < 8; b++) { /* 8 lanes at a time, branch-free: + 0 or + -infinity */
                lanes8 v, add;
                memcpy(&v, l + 8 * b, sizeof v);
                memcpy(&add, refuse_add[bits >> (8 * b) & 0xff], sizeof add);
                v += add;
                memcpy(x + 8 * b, &v, sizeof v);
            }
        }
    }
    if (!any) {
        int32_t eos = fw_json_grammar_eos(g);
        if (eos >= 0 && eos < V) w[eos] = 0;
    }
    s->mask_hits += hit, s->mask_misses += !hit;
    s->mask_s += fw_now() - t0;
}

/* work = logits where a forced tool call allows (its arguments: their grammar's mask). */
static void constrain_tool(fw_sampler *s, const float *logits) {
    fw_json_grammar *g = fw_tool_guide_grammar(s->tool, s->ts);
    if (g) {
        constrain(s, g, &s->ts->js, logits);
        if (s->tool->format == FW_CHAT_V32) { /* a parameter's value: its closing tag, never EOS */
            const int32_t end = fw_tool_guide_value_end(s->tool, s->ts), eos = s->tool->eos;
            if (eos >= 0 && eos < s->V) s->work[eos] = -INFINITY;
            if (end >= 0) s->work[end] = logits[end];
        }
        return;
    }
    int32_t ids[FW_TOOL_GUIDE_MAX];
    int n;
    fw_tool_guide_allowed(s->tool, s->ts, ids, &n);
    for (int64_t i = 0; i < s->V; i++) s->work[i] = -INFINITY;
    for (int k = 0; k < n; k++) s->work[ids[k]] = logits[ids[k]];
}

/* work = logits under the JSON mask, with the penalties applied. */
static void penalise(fw_sampler *s, const float *logits) {
    const int64_t V = s->V;
    float *w = s->work;
    if (s->tool) constrain_tool(s, logits);
    else if (s->json) constrain(s, s->json, s->js, logits); /* the copy with the mask in the same pass */
    else memcpy(w, logits, (size_t)V * sizeof(float));
    if (s->seen) {
        float rp = (float)s->p.repetition_penalty;
        for (int64_t i = 0; i < V; i++)
            if (s->seen[i]) w[i] = w[i] > 0 ? w[i] / rp : w[i] * rp;
    }
    if (s->counts) {
        float fp = (float)s->p.frequency_penalty, pp = (float)s->p.presence_penalty;
        for (int64_t i = 0; i < V; i++)
            if (s->counts[i]) w[i] -= fp * (float)s->counts[i] + pp;
    }
}

/* log-probabilities of the chosen id and the top alternatives, from work. */
static void logprobs(const fw_sampler *s, fw_sample_out *o) {
    const float *w = s->work;
    const int64_t V = s->V;
    float mx = w[fw_sample_argmax(w, V)];
    double sum = 0;
    for (int64_t i = 0; i < V; i++) sum += exp((double)(w[i] - mx));
    double lse = mx + log(sum);
    o->logprob = (float)(w[o->id] - lse);
    /* Insertion into a short sorted list: n <= 20, one pass over V. */
    int n = 0, want = s->p.logprobs;
    for (int64_t i = 0; i < V && want > 0; i++) {
        if (w[i] == -INFINITY || (n == want && !(w[i] > o->top[n - 1].logprob))) continue; /* masked */
        int j = n < want ? n++ : n - 1;
        while (j > 0 && o->top[j - 1].logprob < w[i]) {
            o->top[j] = o->top[j - 1];
            j--;
        }
        o->top[j].id = (int32_t)i;
        o->top[j].logprob = w[i];
    }
    for (int k = 0; k < n; k++) o->top[k].logprob = (float)(o->top[k].logprob - lse);
    o->n_top = n;
}

static const float *sort_keys;
static int by_prob_desc(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    float px = sort_keys[x], py = sort_keys[y];
    if (px != py) return px < py ? 1 : -1;
    return (x > y) - (x < y);
}

/* work = unnormalised kept probabilities (0 outside the kept set); returns their sum. */
static double filter(fw_sampler *s) {
    const int64_t V = s->V;
    float *w = s->work;
    float mx = w[fw_sample_argmax(w, V)];
    double inv_t = 1.0 / s->p.temperature, sum = 0;
    for (int64_t i = 0; i < V; i++) sum += (w[i] = (float)exp((double)(w[i] - mx) * inv_t));
    int64_t k = s->p.top_k > 0 && s->p.top_k < V ? s->p.top_k : V;
    if (k < V || s->p.top_p < 1) {
        for (int64_t i = 0; i < V; i++) s->idx[i] = (int32_t)i;
        sort_keys = w; /* qsort has no context argument; the sampler runs on one thread */
        qsort(s->idx, (size_t)V, sizeof *s->idx, by_prob_desc);
        double kept = 0;
        for (int64_t i = 0; i < k; i++) kept += w[s->idx[i]];
        int64_t n = k;
        if (s->p.top_p < 1) { /* the smallest prefix whose share reaches top_p */
            double acc = 0;
            for (n = 0; n < k && (n == 0 || acc < s->p.top_p * kept); n++) acc += w[s->idx[n]];
        }
        for (int64_t i = n; i < V; i++) w[s->idx[i]] = 0;
    }
    if (s->p.min_p > 0) { /* relative to the most likely token, which always stays */
        float floor_p = (float)s->p.min_p; /* w of the top token is exp(0) = 1 */
        for (int64_t i = 0; i < V; i++)
            if (w[i] < floor_p) w[i] = 0;
    }
    sum = 0;
    for (int64_t i = 0; i < V; i++) sum += w[i];
    return sum;
}

void fw_sampler_next(fw_sampler *s, const float *logits, fw_sample_out *out) {
    for (int64_t i = 0; i < s->V; i++)
        if (!isfinite(logits[i])) {
            *out = (fw_sample_out){.id = -1, .nonfinite = true};
            return;
        }
    out->nonfinite = false;
    penalise(s, logits);
    out->n_top = 0;
    out->logprob = 0;
    if (s->p.temperature <= 0) {
        out->id = fw_sample_argmax(s->work, s->V);
        if (s->p.logprobs >= 0) logprobs(s, out);
        return;
    }
    /* Logprobs need the penalised logits, which filter() overwrites: pick first, then recompute. */
    double sum = filter(s);
    double r = fw_sample_uniform(s->p.seed, s->n_generated) * sum, acc = 0;
    int64_t last = 0;
    out->id = -1;
    for (int64_t i = 0; i < s->V; i++) {
        if (s->work[i] <= 0) continue;
        last = i;
        acc += s->work[i];
        if (r < acc) {
            out->id = (int32_t)i;
            break;
        }
    }
    if (out->id < 0) out->id = (int32_t)last; /* rounding left r at the very top */
    if (s->p.logprobs >= 0) {
        penalise(s, logits);
        logprobs(s, out);
    }
}

void fw_sampler_probs(fw_sampler *s, const float *logits, float *probs) {
    penalise(s, logits);
    if (s->p.temperature <= 0) {
        int32_t id = fw_sample_argmax(s->work, s->V);
        memset(probs, 0, (size_t)s->V * sizeof(float));
        probs[id] = 1;
        return;
    }
    double sum = filter(s);
    for (int64_t i = 0; i < s->V; i++) probs[i] = (float)(s->work[i] / sum);
}

bool fw_sampler_top_only(const fw_sample_params *p, int32_t max_k) {
    return p->temperature > 0 && p->top_k >= 1 && p->top_k <= max_k && p->presence_penalty == 0 &&
           p->frequency_penalty == 0 && p->repetition_penalty == 1 && p->logprobs <= p->top_k;
}

typedef struct cand {
    float v, w;
    int32_t id;
} cand;

static int by_w_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->w != y->w) return x->w < y->w ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

static int by_v_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

static int by_id(const void *a, const void *b) {
    const cand *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

/* Mirrors filter() and the draw of fw_sampler_next step by step (same float and
 * double operations in the same order), so both give the same token. */
void fw_sampler_next_top(fw_sampler *s, int32_t *ids, float *vals, int64_t n, double lse, fw_sample_out *out) {
    if (!isfinite(lse)) { /* a NaN or infinity anywhere in the row */
        *out = (fw_sample_out){.id = -1, .nonfinite = true};
        return;
    }
    out->nonfinite = false;
    cand one[256], *c = n <= 256 ? one : malloc((size_t)n * sizeof *c);
    if (!c) { /* out of memory: the best candidate */
        out->id = ids[0], out->logprob = 0, out->n_top = 0;
        return;
    }
    float mx = vals[0];
    for (int64_t i = 0; i < n; i++) {
        c[i] = (cand){vals[i], 0, ids[i]};
        if (vals[i] > mx) mx = vals[i];
    }
    double inv_t = 1.0 / s->p.temperature;
    for (int64_t i = 0; i < n; i++) c[i].w = (float)exp((double)(c[i].v - mx) * inv_t);
    out->n_top = 0;
    out->logprob = 0;
    if (s->p.logprobs >= 0) { /* alternatives by logit, as logprobs() */
        qsort(c, (size_t)n, sizeof *c, by_v_desc);
        for (int k = 0; k < s->p.logprobs && k < n; k++)
            out->top[out->n_top++] = (fw_logprob){c[k].id, (float)(c[k].v - lse)};
    }
    qsort(c, (size_t)n, sizeof *c, by_w_desc);
    int64_t k = s->p.top_k < n ? s->p.top_k : n, m = k;
    double kept = 0;
    for (int64_t i = 0; i < k; i++) kept += c[i].w;
    if (s->p.top_p < 1) {
        double acc = 0;
        for (m = 0; m < k && (m == 0 || acc < s->p.top_p * kept); m++) acc += c[m].w;
    }
    if (s->p.min_p > 0)
        for (int64_t i = 0; i < m; i++)
            if (c[i].w < (float)s->p.min_p) c[i].w = 0;
    qsort(c, (size_t)m, sizeof *c, by_id);
    double sum = 0;
    for (int64_t i = 0; i < m; i++) sum += c[i].w;
    double r = fw_sample_uniform(s->p.seed, s->n_generated) * sum, acc = 0;
    out->id = -1;
    int32_t last = c[0].id;
    float last_v = c[0].v;
    for (int64_t i = 0; i < m && out->id < 0; i++) {
        if (c[i].w <= 0) continue;
        last = c[i].id, last_v = c[i].v;
        acc += c[i].w;
        if (r < acc) out->id = c[i].id, out->logprob = (float)(c[i].v - lse);
    }
    if (out->id < 0) out->id = last, out->logprob = (float)(last_v - lse);
    if (s->p.logprobs < 0) out->logprob = 0;
    if (c != one) free(c);
}
