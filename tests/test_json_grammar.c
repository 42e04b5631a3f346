/* JSON output's automaton (runtime/engine/json_grammar.h): byte strings it
 * accepts, completes or refuses, for json_object and schemas; schema errors
 * naming their field; masks over DeepSeek-V3's real vocabulary against brute
 * force (every token's bytes fed from the state), cached and not, for states
 * reached through tokens that span several lexemes; random walks through the
 * masks that always end in JSON that jansson parses and the schema allows; the
 * sampler under a grammar (greedy with logprobs, sampled with penalties). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/text/tokenizer.h"
#include "runtime/engine/json_grammar.h"
#include "runtime/engine/sample.h"
#include "tests/check.h"

#define PATH "response_format.json_schema.schema"

static json_t *parse(const char *text) {
    json_error_t je;
    json_t *v = json_loads(text, 0, &je);
    if (!v) fprintf(stderr, "bad test schema: %s\n", je.text);
    return v;
}

/* 1: accepted and complete, 0: accepted as a prefix, -1: refused. */
static int run(const fw_json_nodes *g, const char *s, size_t n) {
    fw_json_state st;
    fw_json_start(g, &st);
    if (!fw_json_feed(g, &st, (const uint8_t *)s, n)) return -1;
    return fw_json_complete(&st) ? 1 : 0;
}

typedef struct bytes_case {
    const char *text;
    int want;
} bytes_case;

static void cases(const char *schema_text, const bytes_case *c) {
    json_t *schema = schema_text ? parse(schema_text) : NULL;
    fw_json_nodes g;
    fw_err e;
    if (fw_json_nodes_compile(&g, schema, PATH, &e)) {
        CHECK(0, "compile %s: %s", schema_text, e.msg);
        json_decref(schema);
        return;
    }
    for (; c->text; c++) {
        int got = run(&g, c->text, strlen(c->text));
        CHECK(got == c->want, "%s: '%s' gives %d, want %d", schema_text ? schema_text : "json_object", c->text, got,
              c->want);
    }
    fw_json_nodes_free(&g);
    json_decref(schema);
}

static void bytes(void) {
    static const bytes_case any[] = {
        {"{}", 1}, {" \n{ }", 1}, {"{\"a\":1}", 1}, {"{\"a\" : [1, -2.5e+3, 0.0, \"x\\u00e9\\n\", true, null, {\"b\":{}}]}", 1},
        {"{\"\xc3\xa9\":\"\xe6\x97\xa5\xf0\x9f\x98\x80\"}", 1}, {"{\"a\":1", 0}, {"{\"a\":\"", 0}, {"{\"a\":tr", 0},
        {"{", 0}, {"", 0}, {"[1]", -1}, {"1", -1}, {"\"a\"", -1}, {"{\"a\":01}", -1}, {"{\"a\":1,}", -1},
        {"{\"a\" 1}", -1}, {"{\"a\":tru}", -1}, {"{\"a\":\"\x01\"}", -1}, {"{\"a\":\"\xc0\x80\"}", -1},
        {"{\"a\":\"\xed\xa0\x80\"}", -1}, {"{\"a\":\"\\ud800\"}", -1}, {"{\"a\":\"\\x\"}", -1}, {"{} ", -1},
        {"{}}", -1}, {"{\"a\":1}x", -1}, {"{\"a\":12345678901234567}", -1}, {"{\"a\":1234567890123456}", 1},
        {"{\"a\":1.}", -1}, {"{\"a\":1e}", -1}, {"{\"a\":1e1234}", -1}, {"{\"a\":-}", -1}, {"{'a':1}", -1},
        {"{\"a\":[1 2]}", -1}, {"{\"a\":nul}", -1}, {"{\"a\":[]}", 1}, {"{\"a\":[,]}", -1},
        /* whitespace: 20 in a row pass, 21 do not */
        {"{                    }", 1}, {"{                     }", -1}, {"{         \n          \"a\":1}", 1},
        {NULL, 0}};
    cases(NULL, any);
    static const bytes_case person[] = {
        {"{\"name\":\"bob\",\"age\":3}", 1}, {"{\"name\": \"bob\", \"age\": -3, \"tags\": [\"x\", \"y\"], \"ok\": true}", 1},
        {"{\"name\":\"bob\",\"age\":3,\"score\":2.5}", 1}, {"{\"name\":\"\",\"age\":0,\"ok\":false,\"score\":1e3}", 1},
        {"{\"age\":3}", -1}, {"{\"name\":\"bob\"}", -1}, {"{\"name\":\"bob\",\"age\":3,\"extra\":1}", -1},
        {"{\"name\":\"bobbyb\",\"age\":3}", -1}, {"{\"name\":\"bobby\",\"age\":3}", 1}, {"{\"name\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\",\"age\":3}", 1},
        {"{\"name\":\"a\",\"age\":1.5}", -1}, {"{\"name\":\"a\",\"age\":1e2}", -1}, {"{\"name\":\"a\",\"age\":\"1\"}", -1},
        {"{\"name\":\"a\",\"age\":1,\"tags\":[\"x\",\"y\",\"x\"]}", -1}, {"{\"name\":\"a\",\"age\":1,\"tags\":[\"z\"]}", -1},
        {"{\"name\":\"a\",\"age\":1,\"tags\":[]}", -1}, {"{\"age\":1,\"name\":\"a\"}", -1}, {"{\"nam\":\"a\",\"age\":1}", -1},
        {"{\"name\":\"a\",\"age\":1,\"ok\":null}", -1}, {"{\"name\":\"a\",\"age\":1,\"note\":null}", 1},
        {"{\"name\":\"a\",\"age\":1,\"note\":\"hi\"}", 1}, {"{\"name\":\"a\",\"age\":1,\"note\":3}", -1},
        {NULL, 0}};
    cases("{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":5},\"age\":{\"type\":"
          "\"integer\"},\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"x\",\"y\"]},\"minItems\":1,\"maxItems\":2},"
          "\"ok\":{\"type\":\"boolean\"},\"score\":{\"type\":\"number\"},\"note\":{\"type\":[\"string\",\"null\"]}},"
          "\"required\":[\"name\",\"age\"],\"additionalProperties\":false}",
          person);
    static const bytes_case nums[] = {{"{\"n\":1}", 1}, {"{\"n\":12}", 1}, {"{\"n\":123}", -1}, {"{\"n\":2}", -1},
                                      {"{\"n\":1 }", 1}, {"{\"k\":\"a\\\"b\",\"n\":12}", 1}, {"{\"k\":\"a\",\"n\":1}", -1},
                                      {NULL, 0}};
    cases("{\"type\":\"object\",\"properties\":{\"k\":{\"const\":\"a\\\"b\"},\"n\":{\"enum\":[1,12]}},\"required\":[\"n\"]}",
          nums);
    static const bytes_case nested[] = {{"{\"a\":{\"b\":[{\"c\":null}]}}", 1}, {"{\"a\":{\"b\":[{}]}}", -1},
                                        {"{\"a\":{\"b\":[]}}", 1}, {"{\"a\":{}}", -1}, {"{\"a\":[]}", -1}, {NULL, 0}};
    cases("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"object\",\"properties\":{\"b\":{\"type\":\"array\","
          "\"items\":{\"type\":\"object\",\"properties\":{\"c\":{\"type\":\"null\"}},\"required\":[\"c\"]}}},"
          "\"required\":[\"b\"]}},\"required\":[\"a\"]}",
          nested);
    static const bytes_case anyof[] = {{"{\"v\":\"s\"}", 1}, {"{\"v\":[1,2]}", 1}, {"{\"v\":[\"s\"]}", -1},
                                       {"{\"v\":true}", -1}, {"{\"v\":{\"x\":[]}}", 1}, {NULL, 0}};
    cases("{\"type\":\"object\",\"properties\":{\"v\":{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"array\",\"items\":"
          "{\"type\":\"integer\"}},{\"type\":\"object\"}]}},\"required\":[\"v\"]}",
          anyof);
}

static void errors(void) {
    static const char *const bad[][2] = {
        {"[]", PATH ": a schema must be an object"},
        {"{\"type\":\"array\"}", PATH ".type: the top-level schema must be of type \"object\""},
        {"{\"type\":\"object\",\"properties\":{\"age\":{\"type\":\"int\"}}}", PATH ".properties.age.type: unknown type 'int'"},
        {"{\"type\":\"object\",\"properties\":{\"age\":{\"type\":7}}}", PATH ".properties.age.type: must be"},
        {"{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\",\"pattern\":\"a+\"}}}",
         PATH ".properties.s.pattern: not supported"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"number\",\"minimum\":0}}}", PATH ".properties.n.minimum: not supported"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/x\"}}}", PATH ".properties.a.$ref: not supported"},
        {"{\"type\":\"object\",\"required\":[\"x\"],\"properties\":{}}", PATH ".required[0]: 'x' is not in properties"},
        {"{\"type\":\"object\",\"required\":\"x\"}", PATH ".required: must be an array of strings"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\",\"minItems\":-1}}}", PATH ".properties.a.minItems: must be a non-negative"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}}}", PATH ".properties.a.minItems: 3 is more"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"enum\":[]}}}", PATH ".properties.a.enum: must be an array of 1 to"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"enum\":[1]}}}", PATH ".properties.a.enum: value 0 is not of"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}}}",
         PATH ".properties.a.anyOf: alternatives 0 and 1"},
        {"{\"type\":\"object\",\"properties\":{\"a\":3}}", PATH ".properties.a: a schema must be an object"},
        {"{\"type\":\"object\",\"properties\":[]}", PATH ".properties: must be an object"},
        {"{\"type\":\"object\",\"additionalProperties\":1}", PATH ".additionalProperties: must be a boolean or a schema"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":[\"string\",\"string\"]}}}", PATH ".properties.a.type: 'string' appears twice"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        json_t *s = parse(bad[k][0]);
        fw_json_nodes g;
        fw_err e = {{0}};
        int rc = fw_json_nodes_compile(&g, s, PATH, &e);
        CHECK(rc == FW_ERR && strstr(e.msg, bad[k][1]), "%s: rc %d, '%s' lacks '%s'", bad[k][0], rc, e.msg, bad[k][1]);
        if (rc == FW_OK) fw_json_nodes_free(&g);
        json_decref(s);
    }
    /* Too deep: 25 nested objects. */
    char deep[2048] = "";
    for (int k = 0; k < 25; k++) strcat(deep, "{\"type\":\"object\",\"properties\":{\"a\":");
    strcat(deep, "{\"type\":\"null\"}");
    for (int k = 0; k < 25; k++) strcat(deep, "}}");
    json_t *s = parse(deep);
    fw_json_nodes g;
    fw_err e = {{0}};
    int rc = fw_json_nodes_compile(&g, s, PATH, &e);
    CHECK(rc == FW_ERR && strstr(e.msg, "nested more than"), "deep schema: %s", e.msg);
    json_decref(s);
}

static int64_t count_bits(const uint64_t *m, int64_t words) {
    int64_t n = 0;
    for (int64_t k = 0; k < words; k++) n += __builtin_popcountll(m[k]);
    return n;
}

/* Feeds text token by token as the tokenizer splits it (tokens spanning lexemes),
 * checking the mask against brute force before each token and that the token is in it. */
static void masks_along(fw_json_grammar *jg, fw_tokenizer *t, const char *text, int64_t *checked) {
    const fw_json_nodes *g = fw_json_grammar_nodes(jg);
    int64_t V = fw_json_grammar_vocab(jg), words = (V + 63) / 64;
    uint64_t *brute = malloc((size_t)words * sizeof *brute);
    int32_t *ids;
    int64_t n;
    fw_err e;
    CHECK(fw_tokenizer_encode(t, text, strlen(text), false, &ids, &n, &e) == FW_OK, "encode: %s", e.msg);
    fw_json_state s;
    fw_json_start(g, &s);
    for (int64_t i = 0; i <= n; i++) {
        bool hit;
        const uint64_t *m = fw_json_grammar_mask(jg, &s, &hit);
        fw_json_grammar_mask_brute(jg, &s, brute);
        CHECK(!memcmp(m, brute, (size_t)words * sizeof *m), "%s: the mask after %lld tokens (%lld allowed) differs from "
              "brute force (%lld)", text, (long long)i, (long long)count_bits(m, words), (long long)count_bits(brute, words));
        const uint64_t *again = fw_json_grammar_mask(jg, &s, &hit);
        CHECK(hit && !memcmp(again, brute, (size_t)words * sizeof *m), "%s: the cached mask after %lld tokens", text, (long long)i);
        (*checked)++;
        int32_t id = i < n ? ids[i] : 1; /* then EOS */
        CHECK(m[id >> 6] >> (id & 63) & 1, "%s: token %d (%lld of %lld) not in the mask", text, id, (long long)i, (long long)n);
        if (i < n) CHECK(fw_json_grammar_accept(jg, &s, id), "%s: token %d refused", text, id);
    }
    CHECK(fw_json_complete(&s), "%s: not complete", text);
    free(ids);
    free(brute);
}

/* A token from the mask by the test's random stream; EOS as soon as allowed. */
static int32_t pick(const uint64_t *m, int64_t V, int32_t eos) {
    if (m[eos >> 6] >> (eos & 63) & 1) return eos;
    int64_t n = 0;
    for (int64_t k = 0; k < (V + 63) / 64; k++) n += __builtin_popcountll(m[k]);
    if (n == 0) return -1;
    int64_t r = check_rng_u32() % n;
    for (int64_t i = 0; i < V; i++)
        if (m[i >> 6] >> (i & 63) & 1 && r-- == 0) return (int32_t)i;
    return -1;
}

/* Random token walks through the masks of a bounded schema: each ends (EOS) in
 * text that jansson parses, with the required keys and the types. */
static void walks(fw_json_cache *c, fw_tokenizer *t, int64_t V) {
    json_t *schema = parse("{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},\"name\":{\"type\":\"string\","
                           "\"maxLength\":6},\"kind\":{\"enum\":[\"cat\",\"dog\",\"caterpillar\"]},\"tags\":{\"type\":"
                           "\"array\",\"items\":{\"type\":\"boolean\"},\"maxItems\":3},\"w\":{\"type\":[\"number\",\"null\"]}},"
                           "\"required\":[\"id\",\"name\",\"kind\"],\"additionalProperties\":false}");
    fw_json_grammar *jg;
    fw_err e;
    if (fw_json_grammar_get(c, schema, PATH, &jg, &e)) {
        CHECK(0, "grammar: %s", e.msg);
        return;
    }
    int complete = 0;
    for (int w = 0; w < 40; w++) {
        fw_json_state s;
        fw_json_start(fw_json_grammar_nodes(jg), &s);
        char *text = NULL;
        size_t len = 0;
        int32_t id;
        for (int step = 0; step < 400; step++) {
            bool hit;
            id = pick(fw_json_grammar_mask(jg, &s, &hit), V, 1);
            if (id < 0 || id == 1) break;
            CHECK(fw_json_grammar_accept(jg, &s, id), "walk %d: token %d from the mask refused", w, id);
            size_t n;
            const char *b = fw_tokenizer_token(t, id, &n);
            text = realloc(text, len + n + 1);
            memcpy(text + len, b, n);
            len += n;
            text[len] = 0;
        }
        CHECK(id == 1, "walk %d: no end after 400 tokens: %.*s", w, (int)len, text);
        if (id == 1) {
            json_error_t je;
            json_t *v = json_loadb(text, len, 0, &je);
            CHECK(v && json_is_integer(json_object_get(v, "id")) && json_is_string(json_object_get(v, "name")) &&
                      json_string_length(json_object_get(v, "name")) <= 24 && json_is_string(json_object_get(v, "kind")),
                  "walk %d: %s", w, text);
            const char *kind = json_string_value(json_object_get(v, "kind"));
            CHECK(kind && (!strcmp(kind, "cat") || !strcmp(kind, "dog") || !strcmp(kind, "caterpillar")), "walk %d: %s", w, text);
            complete += v != NULL;
            json_decref(v);
        }
        free(text);
    }
    CHECK(complete == 40, "%d of 40 walks gave the schema's JSON", complete);
    fw_json_grammar_release(jg);
    json_decref(schema);
}

/* The sampler under a grammar: greedy with logprobs, sampled with top-p and a
 * penalty: every chosen token and every alternative is in the state's mask,
 * the probabilities are zero outside it, and the tokens make the schema's JSON. */
static void sampler(fw_json_cache *c, fw_tokenizer *t, int64_t V) {
    json_t *schema = parse("{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\"},\"s\":{\"type\":\"string\","
                           "\"maxLength\":5}},\"required\":[\"n\",\"s\"]}");
    fw_json_grammar *g;
    fw_err e;
    CHECK(fw_json_grammar_get(c, schema, PATH, &g, &e) == FW_OK, "grammar: %s", e.msg);
    float *logits = malloc((size_t)V * sizeof *logits), *probs = malloc((size_t)V * sizeof *probs);
    for (int mode = 0; mode < 2; mode++) {
        fw_sample_params p;
        fw_sample_params_default(&p);
        if (mode == 0) p.logprobs = 5;
        else p.temperature = 1, p.top_p = 0.9, p.repetition_penalty = 1.3, p.seed = 3;
        fw_sampler s;
        CHECK(fw_sampler_init(&s, &p, V, &e) == FW_OK && fw_sampler_constrain(&s, g, &e) == FW_OK, "sampler: %s", e.msg);
        char text[4096];
        size_t len = 0;
        int32_t eos = fw_tokenizer_eos(t), id = -1;
        for (int step = 0; step < 300 && id != eos; step++) {
            for (int64_t i = 0; i < V; i++) logits[i] = 4.0f * check_rng_uniform();
            bool hit;
            const uint64_t *m = fw_json_grammar_mask(g, s.js, &hit);
            uint64_t *mask = malloc((size_t)((V + 63) / 64) * sizeof *mask);
            memcpy(mask, m, (size_t)((V + 63) / 64) * sizeof *mask);
            fw_sampler_probs(&s, logits, probs);
            double sum = 0, outside = 0;
            for (int64_t i = 0; i < V; i++) {
                sum += probs[i];
                if (!(mask[i >> 6] >> (i & 63) & 1)) outside += probs[i];
            }
            CHECK(fabs(sum - 1) < 1e-4 && outside == 0, "mode %d step %d: probabilities sum %g, %g outside the mask", mode,
                  step, sum, outside);
            fw_sample_out o;
            fw_sampler_next(&s, logits, &o);
            id = o.id;
            CHECK(id >= 0 && mask[id >> 6] >> (id & 63) & 1, "mode %d step %d: token %d outside the mask", mode, step, id);
            for (int k = 0; k < o.n_top; k++)
                CHECK(mask[o.top[k].id >> 6] >> (o.top[k].id & 63) & 1 && isfinite(o.top[k].logprob),
                      "mode %d step %d: alternative %d (%g) outside the mask", mode, step, o.top[k].id, o.top[k].logprob);
            free(mask);
            fw_sampler_accept(&s, id);
            size_t n = 0;
            const char *b = id == eos ? "" : fw_tokenizer_token(t, id, &n);
            if (len + n < sizeof text) memcpy(text + len, b, n), len += n;
        }
        text[len] = 0;
        json_t *v = json_loads(text, 0, NULL);
        CHECK(id == eos && v && json_is_integer(json_object_get(v, "n")) && json_is_string(json_object_get(v, "s")),
              "mode %d: the sampler's output '%s'", mode, text);
        json_decref(v);
        fw_sampler_free(&s);
    }
    free(logits), free(probs);
    fw_json_grammar_release(g);
    json_decref(schema);
}

int main(void) {
    bytes();
    errors();
    const char *shared = getenv("FURROW_SHARED");
    if (!shared) {
        fprintf(stderr, "FURROW_SHARED is not set: the vocabulary checks are skipped\n");
        return check_result();
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tokenizer/deepseek-v3", shared);
    fw_tokenizer *t;
    fw_err e;
    if (fw_tokenizer_load_dir(&t, dir, &e)) SKIP("%s", e.msg);
    const int64_t V = 129280; /* DeepSeek-V3's embedding rows: past the tokenizer's ids, tokens without bytes */
    fw_json_cache *c;
    CHECK(fw_json_cache_init(&c, t, V, fw_tokenizer_eos(t), &e) == FW_OK, "cache: %s", e.msg);
    fw_json_grammar *any, *person;
    CHECK(fw_json_grammar_get(c, NULL, PATH, &any, &e) == FW_OK, "json_object: %s", e.msg);
    json_t *schema = parse("{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":40},"
                           "\"age\":{\"type\":\"integer\"},\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"red\","
                           "\"green\"]}}},\"required\":[\"name\",\"age\"]}");
    CHECK(fw_json_grammar_get(c, schema, PATH, &person, &e) == FW_OK, "schema: %s", e.msg);
    fw_json_grammar *same;
    CHECK(fw_json_grammar_get(c, schema, PATH, &same, &e) == FW_OK && same == person,
          "the same schema compiles once (cached by its text)");
    fw_json_grammar_release(same);
    /* The same properties in another order: another grammar, written in that order. */
    json_t *swapped = parse("{\"type\":\"object\",\"properties\":{\"age\":{\"type\":\"integer\"},\"name\":{\"type\":"
                            "\"string\",\"maxLength\":40},\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"red\","
                            "\"green\"]}}},\"required\":[\"name\",\"age\"]}");
    CHECK(fw_json_grammar_get(c, swapped, PATH, &same, &e) == FW_OK && same != person, "another order, another grammar");
    fw_json_state st;
    fw_json_start(fw_json_grammar_nodes(same), &st);
    CHECK(fw_json_feed(fw_json_grammar_nodes(same), &st, (const uint8_t *)"{\"age\":1,\"name\":\"x\"}", 20) &&
              fw_json_complete(&st), "the swapped schema's order");
    fw_json_grammar_release(same);
    json_decref(swapped);
    int64_t checked = 0;
    masks_along(any, t, "{\"a\": [1, 2.5, \"x y\", {\"b\": null}], \"c\": true}", &checked);
    masks_along(any, t, "{\n  \"list\": [\n    {\"k\": \"\xe6\x97\xa5\xe6\x9c\xac\"},\n    {}\n  ]\n}", &checked);
    masks_along(person, t, "{\"name\": \"Ada Lovelace\", \"age\": 36, \"tags\": [\"red\", \"green\"]}", &checked);
    masks_along(person, t, "{\"name\":\"\",\"age\":-7}", &checked);
    /* Counters past the longest token (128 bytes) share a mask-cache key: those
     * masks, found for other counts, must still equal brute force. */
    fw_json_grammar *counted;
    json_t *long_schema = parse("{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\",\"minLength\":150,"
                                "\"maxLength\":300},\"a\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"},"
                                "\"minItems\":2,\"maxItems\":200}},\"required\":[\"s\",\"a\"]}");
    CHECK(fw_json_grammar_get(c, long_schema, PATH, &counted, &e) == FW_OK, "long schema: %s", e.msg);
    char text[8192] = "{\"s\": \"";
    for (int k = 0; k < 26; k++) strcat(text, k % 3 ? "abcdefgh " : "\u00e9t\u00e9 ");
    strcat(text, "\", \"a\": [");
    for (int k = 0; k < 199; k++) sprintf(text + strlen(text), "%d,", k * 7);
    strcat(text, "5]}");
    masks_along(counted, t, text, &checked);
    fw_json_grammar_release(counted);
    json_decref(long_schema);
    fprintf(stderr, "%lld masks equal brute force over %lld tokens\n", (long long)checked, (long long)V);

    /* Tokens that span lexemes: "\"," closes a string and starts the next key; EOS only when complete. */
    fw_json_state s;
    fw_json_start(fw_json_grammar_nodes(any), &s);
    CHECK(fw_json_feed(fw_json_grammar_nodes(any), &s, (const uint8_t *)"{\"a\":\"x", 7), "prefix");
    bool hit;
    const uint64_t *m = fw_json_grammar_mask(any, &s, &hit);
    int32_t qc = fw_tokenizer_token_id(t, "\","), eos = fw_tokenizer_eos(t);
    CHECK(qc >= 0 && m[qc >> 6] >> (qc & 63) & 1, "the token '\",' inside a string");
    CHECK(!(m[eos >> 6] >> (eos & 63) & 1), "EOS inside a string");
    fw_json_grammar_release(any);
    fw_json_grammar_release(person);
    json_decref(schema);
    walks(c, t, V);
    sampler(c, t, V);
    fw_json_cache_free(c);
    fw_tokenizer_free(t);
    return check_result();
}
