/* furrow bench --json-output: what JSON output (runtime/engine/json_grammar.h)
 * adds to each sampled token, beside the decode step of the same run. The
 * sampler runs as the server's does on a full row of logits, with and without
 * a grammar, on rows of random logits (a random model's walk: long strings,
 * many states), for json_object and a schema. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "io/base/clock.h"
#include "runtime/cli/bench_json.h"
#include "runtime/engine/sample.h"

#define ROWS 16

static const char *const schema_text =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":16},\"age\":{\"type\":\"integer\"},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"red\",\"green\",\"blue\"]},\"maxItems\":4},\"score\":{\"type\":"
    "\"number\"},\"ok\":{\"type\":\"boolean\"}},\"required\":[\"name\",\"age\",\"ok\"]}";

/* Seconds per token of n tokens drawn by s from the rows (accepted; a finished value starts again). */
static double draw(fw_sampler *s, const float *rows, int64_t V, int64_t n, int32_t eos) {
    fw_sample_out o;
    double t0 = fw_now();
    for (int64_t i = 0; i < n; i++) {
        fw_sampler_next(s, rows + (i % ROWS) * V, &o);
        if (o.id == eos) fw_sampler_reset(s);
        else fw_sampler_accept(s, o.id);
    }
    return (fw_now() - t0) / (double)n;
}

int fw_bench_json(const fw_tokenizer *t, int64_t V, int32_t eos, int64_t n, double step_s, fw_err *e) {
    float *rows = malloc((size_t)ROWS * (size_t)V * sizeof *rows);
    if (!rows) return fw_errf(e, "out of memory");
    uint64_t x = 0x2545F4914F6CDD1Dull;
    for (int64_t i = 0; i < ROWS * V; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        rows[i] = (float)(x >> 40) / (float)(1 << 24) * 8.0f; /* logits in [0, 8) */
    }
    double t0 = fw_now();
    fw_json_cache *c;
    if (fw_json_cache_init(&c, t, V, eos, e)) {
        free(rows);
        return FW_ERR;
    }
    double t_tables = fw_now() - t0;
    json_error_t je;
    json_t *schema = json_loads(schema_text, 0, &je);
    int rc = FW_OK;
    fw_sample_params p;
    fw_sample_params_default(&p);
    p.temperature = 1, p.seed = 7;
    for (int k = 0; k < 2 && rc == FW_OK; k++) {
        fw_json_grammar *g;
        fw_sampler plain, json;
        t0 = fw_now();
        if (fw_json_grammar_get(c, k ? schema : NULL, "schema", &g, e)) {
            rc = FW_ERR;
            break;
        }
        double t_compile = fw_now() - t0;
        if (fw_sampler_init(&plain, &p, V, e) || fw_sampler_init(&json, &p, V, e) || fw_sampler_constrain(&json, g, e)) {
            fw_json_grammar_release(g);
            rc = FW_ERR;
            break;
        }
        double s_plain = draw(&plain, rows, V, n, eos);
        fw_sampler_reset(&plain);
        double s_cold = draw(&json, rows, V, n, eos);
        int64_t walks = json.mask_misses;
        double walk_s = json.mask_miss_s;
        /* The grammar's masks stay cached across requests: the steady cost, the
         * best of 3 passes (a shared machine's noise only adds). */
        double s_warm = 1e9, hit_s = 1e9;
        int64_t misses = 0;
        for (int rep = 0; rep < 3; rep++) {
            json.mask_hits = json.mask_misses = 0, json.mask_s = json.mask_miss_s = 0;
            fw_sampler_reset(&json);
            double s1 = draw(&json, rows, V, n, eos);
            double h1 = (json.mask_s - json.mask_miss_s) / (double)(json.mask_hits ? json.mask_hits : 1);
            if (s1 < s_warm) s_warm = s1;
            if (h1 < hit_s) hit_s = h1;
            misses += json.mask_misses;
        }
        s_plain = fmin(s_plain, draw(&plain, rows, V, n, eos));
        printf("json       %-11s V=%lld: a cached mask %.1f us/token (its look-up and the masked copy of the row, which replaces a plain copy), a trie walk %.2f ms "
               "(%lld in the first %lld tokens, %lld in the next %lld); sampling %.1f us/token without the mask, "
               "%.1f with (%.1f the first %lld); compiled in %.2f ms; decode step %.3f ms\n",
               k ? "json_schema" : "json_object", (long long)V,
               1e6 * hit_s, 1e3 * walk_s / (double)(walks ? walks : 1), (long long)walks, (long long)n, (long long)misses,
               3 * (long long)n, 1e6 * s_plain, 1e6 * s_warm, 1e6 * s_cold, (long long)n, 1e3 * t_compile, 1e3 * step_s);
        fw_sampler_free(&plain);
        fw_sampler_free(&json);
        fw_json_grammar_release(g);
    }
    if (rc == FW_OK) printf("json       vocabulary tables (token bytes, trie) built in %.1f ms\n", 1e3 * t_tables);
    json_decref(schema);
    fw_json_cache_free(c);
    free(rows);
    return rc;
}
