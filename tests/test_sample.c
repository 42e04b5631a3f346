/* The sampler against a plain reference written from the definitions in double
 * precision (penalties, softmax with temperature, sort, top-k, top-p, min-p):
 * the probabilities it draws from, the token it draws, its logprobs and top
 * alternatives, on several vocabulary sizes; seeded draws that do not depend on
 * what else is sampled; draw frequencies that follow the probabilities. */
#include "runtime/engine/sample.h"
#include "tests/check.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

static fw_sample_params params(double t, int k, double p, double minp, double pres, double freq, double rep) {
    fw_sample_params sp;
    fw_sample_params_default(&sp);
    sp.temperature = t, sp.top_k = k, sp.top_p = p, sp.min_p = minp;
    sp.presence_penalty = pres, sp.frequency_penalty = freq, sp.repetition_penalty = rep;
    return sp;
}

/* Penalised logits in double from the prompt and output token lists. */
static void ref_penalise(const fw_sample_params *sp, const float *logits, int V, const int32_t *prompt, int np,
                         const int32_t *out, int no, double *w) {
    for (int i = 0; i < V; i++) {
        int in_prompt = 0, count = 0;
        for (int j = 0; j < np; j++) in_prompt |= prompt[j] == i;
        for (int j = 0; j < no; j++) count += out[j] == i;
        double x = logits[i];
        if ((in_prompt || count) && sp->repetition_penalty != 1)
            x = x > 0 ? x / sp->repetition_penalty : x * sp->repetition_penalty;
        if (count) x -= sp->frequency_penalty * count + sp->presence_penalty;
        w[i] = x;
    }
}

static const double *ref_keys;
static int ref_desc(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    if (ref_keys[x] != ref_keys[y]) return ref_keys[x] < ref_keys[y] ? 1 : -1;
    return x - y;
}

/* The kept, normalised probabilities. */
static void ref_probs(const fw_sample_params *sp, const double *w, int V, double *p) {
    double mx = w[0];
    for (int i = 1; i < V; i++) mx = w[i] > mx ? w[i] : mx;
    if (sp->temperature <= 0) {
        int best = 0;
        for (int i = 1; i < V; i++) if (w[i] > w[best]) best = i;
        for (int i = 0; i < V; i++) p[i] = i == best;
        return;
    }
    double sum = 0;
    for (int i = 0; i < V; i++) sum += (p[i] = exp((w[i] - mx) / sp->temperature));
    for (int i = 0; i < V; i++) p[i] /= sum;
    int order[4096];
    for (int i = 0; i < V; i++) order[i] = i;
    ref_keys = p;
    qsort(order, (size_t)V, sizeof *order, ref_desc);
    int k = sp->top_k > 0 && sp->top_k < V ? sp->top_k : V;
    double kept = 0;
    for (int i = 0; i < k; i++) kept += p[order[i]];
    int n = 0;
    for (double acc = 0; n < k && (n == 0 || acc < sp->top_p * kept); n++) acc += p[order[n]];
    double top = p[order[0]];
    for (int i = n; i < V; i++) p[order[i]] = 0;
    for (int i = 0; i < V; i++) if (p[i] < sp->min_p * top) p[i] = 0;
    sum = 0;
    for (int i = 0; i < V; i++) sum += p[i];
    for (int i = 0; i < V; i++) p[i] /= sum;
}

static void check_case(const fw_sample_params *sp, int V, const char *name) {
    float logits[4096], probs[4096];
    double w[4096], ref[4096];
    int32_t prompt[8], out[12];
    for (int i = 0; i < V; i++) logits[i] = 3 * check_rng_uniform();
    for (int j = 0; j < 8; j++) prompt[j] = (int32_t)(check_rng_u32() % (uint32_t)V);
    for (int j = 0; j < 12; j++) out[j] = (int32_t)(check_rng_u32() % (uint32_t)V);
    fw_sampler s;
    fw_err e;
    fw_sample_params p = *sp;
    p.seed = check_rng_u32();
    p.logprobs = 5;
    CHECK(fw_sampler_init(&s, &p, V, &e) == FW_OK, "%s", e.msg);
    fw_sampler_prompt(&s, prompt, 8);
    for (int j = 0; j < 12; j++) fw_sampler_accept(&s, out[j]);

    ref_penalise(&p, logits, V, prompt, 8, out, 12, w);
    ref_probs(&p, w, V, ref);
    fw_sampler_probs(&s, logits, probs);
    double worst = 0;
    for (int i = 0; i < V; i++) worst = fmax(worst, fabs(probs[i] - ref[i]));
    CHECK(worst < 1e-5, "%s V=%d: probabilities differ from the reference by %g", name, V, worst);

    /* The draw is the inverse CDF, in id order, at the request's uniform for draw 12. */
    double u = fw_sample_uniform(p.seed, 12), acc = 0;
    int want = -1;
    for (int i = 0; i < V && want < 0; i++)
        if (ref[i] > 0 && u < (acc += ref[i])) want = i;
    fw_sample_out o;
    fw_sampler_next(&s, logits, &o);
    double margin = fmin(fabs(u - acc), fabs(u - (acc - (want >= 0 ? ref[want] : 0))));
    CHECK(o.id == want || margin < 1e-5, "%s V=%d: drew %d, the reference %d", name, V, o.id, want);

    /* logprobs: log-softmax of the penalised logits, before temperature. */
    double mx = w[0], sum = 0;
    for (int i = 1; i < V; i++) mx = fmax(mx, w[i]);
    for (int i = 0; i < V; i++) sum += exp(w[i] - mx);
    double lse = mx + log(sum);
    CHECK(fabs(o.logprob - (w[o.id] - lse)) < 1e-4, "%s: logprob %g, reference %g", name, o.logprob, w[o.id] - lse);
    int n_top = V < 5 ? V : 5;
    CHECK(o.n_top == n_top, "%s: %d alternatives, expected %d", name, o.n_top, n_top);
    int order[4096];
    for (int i = 0; i < V; i++) order[i] = i;
    ref_keys = w;
    qsort(order, (size_t)V, sizeof *order, ref_desc);
    for (int k = 0; k < o.n_top; k++)
        CHECK(o.top[k].id == order[k] && fabs(o.top[k].logprob - (w[order[k]] - lse)) < 1e-4,
              "%s: alternative %d is %d (%g), reference %d (%g)", name, k, o.top[k].id, o.top[k].logprob, order[k],
              w[order[k]] - lse);
    fw_sampler_free(&s);
}

/* Two requests sampled interleaved give what each gives alone; the same seed
 * gives the same tokens, and a reset (preemption) replays them. */
static void check_seeds(void) {
    enum { V = 300, N = 40 };
    static float logits[N][V];
    for (int t = 0; t < N; t++)
        for (int i = 0; i < V; i++) logits[t][i] = 2 * check_rng_uniform();
    fw_sample_params a = params(0.9, 50, 0.95, 0.01, 0.3, 0.2, 1.1), b = params(1.3, 0, 1, 0, 0, 0, 1);
    a.seed = 7, b.seed = 8;
    int32_t alone_a[N], alone_b[N], mixed_a[N], mixed_b[N], replay[N];
    fw_sampler sa, sb;
    fw_err e;
    fw_sample_out o;
    fw_sampler_init(&sa, &a, V, &e);
    for (int t = 0; t < N; t++) fw_sampler_next(&sa, logits[t], &o), fw_sampler_accept(&sa, alone_a[t] = o.id);
    fw_sampler_reset(&sa);
    for (int t = 0; t < N; t++) fw_sampler_next(&sa, logits[t], &o), fw_sampler_accept(&sa, replay[t] = o.id);
    fw_sampler_free(&sa);
    fw_sampler_init(&sb, &b, V, &e);
    for (int t = 0; t < N; t++) fw_sampler_next(&sb, logits[t], &o), fw_sampler_accept(&sb, alone_b[t] = o.id);
    fw_sampler_free(&sb);
    fw_sampler_init(&sa, &a, V, &e);
    fw_sampler_init(&sb, &b, V, &e);
    for (int t = 0; t < N; t++) {
        fw_sampler_next(&sb, logits[t], &o), fw_sampler_accept(&sb, mixed_b[t] = o.id);
        fw_sampler_next(&sa, logits[t], &o), fw_sampler_accept(&sa, mixed_a[t] = o.id);
    }
    fw_sampler_free(&sa);
    fw_sampler_free(&sb);
    CHECK(!memcmp(alone_a, mixed_a, sizeof alone_a) && !memcmp(alone_b, mixed_b, sizeof alone_b),
          "interleaved requests drew other tokens than alone");
    CHECK(!memcmp(alone_a, replay, sizeof replay), "a reset request drew other tokens");
    CHECK(memcmp(alone_a, alone_b, sizeof alone_a), "two seeds drew the same %d tokens", N);
}

/* Frequencies of 40000 draws (one per draw counter) within 0.01 of the probabilities. */
static void check_frequencies(void) {
    const float logits[5] = {1.0f, 0.5f, -0.2f, 0.9f, -3.0f};
    fw_sample_params p = params(0.8, 0, 1, 0, 0, 0, 1);
    p.seed = 12345;
    fw_sampler s;
    fw_err e;
    float probs[5];
    int hits[5] = {0};
    fw_sampler_init(&s, &p, 5, &e);
    fw_sampler_probs(&s, logits, probs);
    for (int t = 0; t < 40000; t++) {
        fw_sample_out o;
        fw_sampler_next(&s, logits, &o);
        hits[o.id]++;
        s.n_generated++;
    }
    for (int i = 0; i < 5; i++)
        CHECK(fabs(hits[i] / 40000.0 - probs[i]) < 0.01, "token %d drawn %.4f of the time, probability %.4f", i,
              hits[i] / 40000.0, probs[i]);
    fw_sampler_free(&s);
}

/* A row holding NaN or infinity gives no token, greedy or sampled, full row or
 * candidates; the next sound row gives one again. */
static void check_nonfinite(void) {
    const float bad[2][4] = {{0.1f, NAN, 0.3f, 0.2f}, {0.1f, 0.2f, INFINITY, 0.3f}};
    const float good[4] = {0.1f, 0.9f, 0.3f, 0.2f};
    for (int k = 0; k < 2; k++) {
        fw_sample_params p = params(k ? 0.8 : 0, 0, 1, 0, 0, 0, 1);
        fw_sampler s;
        fw_err e;
        fw_sample_out o;
        fw_sampler_init(&s, &p, 4, &e);
        for (int r = 0; r < 2; r++) {
            fw_sampler_next(&s, bad[r], &o);
            CHECK(o.nonfinite && o.id == -1, "row %d (temperature %g): id %d", r, p.temperature, o.id);
            fw_sampler_next(&s, good, &o);
            CHECK(!o.nonfinite && o.id >= 0 && o.id < 4, "sound row after a bad one: id %d", o.id);
        }
        int32_t ids[2] = {1, 2};
        float vals[2] = {0.9f, 0.3f};
        fw_sampler_next_top(&s, ids, vals, 2, NAN, &o);
        CHECK(o.nonfinite && o.id == -1, "candidates with a NaN lse: id %d", o.id);
        fw_sampler_free(&s);
    }
}

/* The top-k path (candidates from shards) picks what the full row picks. */
static void check_top_only(void) {
    enum { V = 3000, TP = 3 };
    static float logits[V];
    int same = 0, total = 0;
    for (int round = 0; round < 60; round++) {
        for (int i = 0; i < V; i++) logits[i] = 4 * check_rng_uniform();
        if (round % 5 == 0) logits[17] = logits[2000] = logits[100]; /* equal logits across shards */
        fw_sample_params p = params(0.3 + 0.05 * (round % 30), 1 + round % 40, round % 3 ? 0.9 : 1,
                                    round % 4 ? 0 : 0.05, 0, 0, 1);
        p.seed = (uint64_t)round * 77;
        p.logprobs = round % 2 ? p.top_k < 5 ? p.top_k : 5 : -1;
        CHECK(fw_sampler_top_only(&p, 64), "round %d: not top-only", round);
        fw_sampler full, top;
        fw_err e;
        fw_sampler_init(&full, &p, V, &e);
        fw_sampler_init(&top, &p, V, &e);
        /* Each of TP shards of V / TP ids offers its own top_k, as the ranks do. */
        int32_t ids[TP * 64];
        float vals[TP * 64];
        int n = 0;
        double lse_parts[TP], mx = -1e30, acc = 0;
        for (int r = 0; r < TP; r++) {
            int lo = r * V / TP, hi = (r + 1) * V / TP;
            for (int k = 0; k < p.top_k; k++) {
                int best = -1;
                for (int i = lo; i < hi; i++) {
                    bool taken = false;
                    for (int j = n - k; j < n; j++) taken |= ids[j] == i;
                    if (!taken && (best < 0 || logits[i] > logits[best])) best = i;
                }
                ids[n] = best, vals[n++] = logits[best];
            }
            double m = -1e30, sum = 0;
            for (int i = lo; i < hi; i++) m = fmax(m, logits[i]);
            for (int i = lo; i < hi; i++) sum += exp(logits[i] - m);
            lse_parts[r] = m + log(sum);
            mx = fmax(mx, lse_parts[r]);
        }
        for (int r = 0; r < TP; r++) acc += exp(lse_parts[r] - mx);
        for (int t = 0; t < 5; t++) {
            fw_sample_out a, b;
            fw_sampler_next(&full, logits, &a);
            int32_t ids2[TP * 64];
            float vals2[TP * 64];
            memcpy(ids2, ids, sizeof ids2), memcpy(vals2, vals, sizeof vals2);
            fw_sampler_next_top(&top, ids2, vals2, n, mx + log(acc), &b);
            total++;
            same += a.id == b.id;
            CHECK(a.id == b.id && fabs(a.logprob - b.logprob) < 1e-4 && a.n_top == b.n_top,
                  "round %d draw %d: full row %d (%g), top-k %d (%g)", round, t, a.id, a.logprob, b.id, b.logprob);
            for (int k = 0; k < a.n_top && k < b.n_top; k++)
                CHECK(a.top[k].id == b.top[k].id, "round %d: alternative %d differs", round, k);
            fw_sampler_accept(&full, a.id);
            fw_sampler_accept(&top, b.id);
        }
        fw_sampler_free(&full);
        fw_sampler_free(&top);
    }
    fprintf(stderr, "top-k from shards: %d of %d draws equal the full row's\n", same, total);
    fw_sample_params pen = params(1, 10, 1, 0, 0.5, 0, 1), nok = params(1, 0, 1, 0, 0, 0, 1);
    CHECK(!fw_sampler_top_only(&pen, 64) && !fw_sampler_top_only(&nok, 64), "penalties or no top_k need the full row");
}

static void check_params(void) {
    fw_err e;
    fw_sample_params ok = params(1, 5, 0.5, 0.1, 1, -1, 1.2);
    CHECK(fw_sample_params_check(&ok, &e) == FW_OK, "%s", e.msg);
    fw_sample_params bad[] = {params(-1, 0, 1, 0, 0, 0, 1), params(1, -2, 1, 0, 0, 0, 1), params(1, 0, 0, 0, 0, 0, 1),
                              params(1, 0, 1.5, 0, 0, 0, 1), params(1, 0, 1, 2, 0, 0, 1), params(1, 0, 1, 0, 3, 0, 1),
                              params(1, 0, 1, 0, 0, -2.5, 1), params(1, 0, 1, 0, 0, 0, 0), params(NAN, 0, 1, 0, 0, 0, 1)};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(fw_sample_params_check(&bad[i], &e) == FW_ERR, "bad parameters %zu accepted", i);
}

int main(void) {
    const int sizes[] = {1, 2, 7, 100, 1000, 4096};
    const fw_sample_params cases[] = {
        params(0, 0, 1, 0, 0, 0, 1),        params(0, 0, 1, 0, 0.5, 0.4, 1.3), params(1, 0, 1, 0, 0, 0, 1),
        params(0.7, 10, 1, 0, 0, 0, 1),     params(1.2, 0, 0.9, 0, 0, 0, 1),  params(1, 0, 1, 0.2, 0, 0, 1),
        params(0.5, 40, 0.8, 0.05, 0, 0, 1), params(1, 0, 1, 0, 1.5, 0.7, 1), params(1, 3, 0.3, 0, -0.5, 0, 1.5),
        params(2, 0, 1, 0, 0, 0.9, 0.8),
    };
    const char *names[] = {"greedy", "greedy+penalties", "t1", "topk", "topp", "minp", "all filters",
                           "presence+frequency", "topk+topp+rep", "t2+frequency+rep<1"};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (size_t v = 0; v < sizeof sizes / sizeof sizes[0]; v++) check_case(&cases[c], sizes[v], names[c]);
    check_seeds();
    check_frequencies();
    check_params();
    check_top_only();
    check_nonfinite();
    return check_result();
}
