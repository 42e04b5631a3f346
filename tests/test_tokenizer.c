/* The tokenizer against the golden tokenizer.jsonl (encoded by Hugging Face
 * tokenizers): every line's ids and decoded text, streaming decode token by
 * token, the heap BPE against the linear one, and refusals of bad input. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "io/text/tok_internal.h"
#include "io/text/tokenizer.h"
#include "tests/check.h"

static char tok_path[4096], cfg_path[4096];

static void print_ids(const char *what, const int32_t *ids, int64_t n) {
    fprintf(stderr, "  %s:", what);
    for (int64_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fputc('\n', stderr);
}

/* Streams ids one by one; checks every chunk is well-formed UTF-8 and the
 * concatenation equals want. */
static void check_stream(const fw_tokenizer *t, const int32_t *ids, int64_t n, const char *want,
                         size_t want_len, int line) {
    fw_err e = {{0}};
    fw_detok_stream *s;
    if (fw_detok_stream_init(&s, t, false, &e)) {
        CHECK(0, "line %d: stream init: %s", line, e.msg);
        return;
    }
    tok_buf all = {0};
    for (int64_t i = 0; i <= n; i++) {
        const char *out;
        size_t len;
        int rc = i < n ? fw_detok_stream_push(s, ids[i], &out, &len, &e)
                       : fw_detok_stream_finish(s, &out, &len, &e);
        CHECK(rc == 0, "line %d: stream push %lld: %s", line, (long long)i, e.msg);
        CHECK(fw_utf8_validate(out, len, NULL) == 0, "line %d: stream chunk %lld is not valid UTF-8",
              line, (long long)i);
        tok_buf_append(&all, out, len);
    }
    CHECK(all.n == want_len && (!want_len || !memcmp(all.p, want, want_len)),
          "line %d: streamed text differs (%zu bytes vs %zu)", line, all.n, want_len);
    free(all.p);
    fw_detok_stream_free(s);
}

static int golden(fw_tokenizer *t, const char *shared) {
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/tokenizer.jsonl", shared);
    FILE *f = fopen(path, "r");
    if (!f) {
        CHECK(0, "cannot open %s", path);
        return 0;
    }
    char *line = NULL;
    size_t cap = 0;
    int n_lines = 0, n_pass = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *j = json_loads(line, JSON_ALLOW_NUL, &je);
        n_lines++;
        if (!j) {
            CHECK(0, "line %d: bad JSON: %s", n_lines, je.text);
            continue;
        }
        const char *text = json_string_value(json_object_get(j, "text"));
        size_t text_len = json_string_length(json_object_get(j, "text"));
        const char *dec = json_string_value(json_object_get(j, "decoded"));
        size_t dec_len = json_string_length(json_object_get(j, "decoded"));
        json_t *want = json_object_get(j, "ids");
        int64_t nw = (int64_t)json_array_size(want);
        int32_t *wids = malloc((size_t)(nw + 1) * sizeof *wids);
        for (int64_t i = 0; i < nw; i++) wids[i] = (int32_t)json_integer_value(json_array_get(want, (size_t)i));

        fw_err e = {{0}};
        int32_t *ids = NULL;
        int64_t n = 0;
        int ok = 1;
        if (fw_tokenizer_encode(t, text, text_len, false, &ids, &n, &e)) {
            CHECK(0, "line %d: encode: %s", n_lines, e.msg);
            ok = 0;
        } else {
            int same = n == nw && (!n || !memcmp(ids, wids, (size_t)n * sizeof *ids));
            CHECK(same, "line %d: ids differ for %.60s", n_lines, text);
            if (!same) {
                print_ids("got ", ids, n);
                print_ids("want", wids, nw);
                ok = 0;
            }
            /* again: now through the cache */
            int32_t *ids2;
            int64_t n2;
            CHECK(!fw_tokenizer_encode(t, text, text_len, false, &ids2, &n2, &e) && n2 == n &&
                      (!n || !memcmp(ids, ids2, (size_t)n * sizeof *ids)),
                  "line %d: second (cached) encode differs", n_lines);
            free(ids2);
        }
        char *out;
        size_t out_len;
        if (fw_tokenizer_decode(t, wids, nw, false, &out, &out_len, &e)) {
            CHECK(0, "line %d: decode: %s", n_lines, e.msg);
            ok = 0;
        } else {
            int same = out_len == dec_len && !memcmp(out, dec, dec_len);
            CHECK(same, "line %d: decoded text differs: '%s' vs '%s'", n_lines, out, dec);
            ok &= same;
            free(out);
        }
        check_stream(t, wids, nw, dec, dec_len, n_lines);
        n_pass += ok;
        free(ids);
        free(wids);
        json_decref(j);
    }
    free(line);
    fclose(f);
    fprintf(stderr, "golden tokenizer.jsonl: %d of %d lines pass\n", n_pass, n_lines);
    CHECK(n_lines >= 29, "only %d golden lines", n_lines);
    return n_lines;
}

/* Ids from the reference (tokenizers 0.23.2) for text the golden lines lack:
 * code points newer than PCRE2's Unicode tables (CJK Extension H U+31350, emoji
 * U+1FAE8 and U+1FA77, U+1C89, U+A7CC), U+180E (a space to PCRE2, not to
 * Oniguruma), U+0085 and U+2028, digits of other scripts. */
static void reference_cases(fw_tokenizer *t) {
    static const struct {
        const char *text;
        int32_t ids[16];
        int n;
    } cases[] = {
        {"\xE6\x96\xB0 \xF0\xB1\x8D\x90\xF0\xB1\x8D\x91 \xE5\xAD\x97",
         {1043, 86387, 112, 238, 241, 175, 112, 238, 242, 223, 2024}, 11},
        {"shaking \xF0\x9F\xAB\xA8 and pink \xF0\x9F\xA9\xB7 heart",
         {3037, 1690, 7351, 107, 104, 305, 23952, 7351, 105, 118, 4082}, 11},
        {"a\xE1\xA0\x8E" "b \xE1\xA0\x8E c", {67, 115522, 239, 68, 223, 115522, 239, 274}, 8},
        {"x\xC2\x85" "y\xE2\x80\xA8" "z", {90, 129, 230, 91, 300, 104, 92}, 7},
        {"\xE1\xB2\x89\xE1\xB2\x8A \xEA\x9F\x8C", {160, 113, 234, 160, 113, 235, 2297, 256, 237}, 9},
        {"\xD9\xA3\xD9\xA4\xD9\xA5 \xE0\xA5\xA7\xE0\xA5\xA8\xE0\xA5\xA9 \xC2\xBD\xC2\xB2",
         {127056, 152, 100, 152, 101, 223, 26020, 35712, 47045, 223, 23951, 1628}, 12},
        {"  \t\n\r\n  x", {262, 7028, 204, 201, 223, 1527}, 6},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        fw_err e = {{0}};
        int32_t *ids;
        int64_t n;
        if (fw_tokenizer_encode(t, cases[c].text, strlen(cases[c].text), false, &ids, &n, &e)) {
            CHECK(0, "reference case %zu: %s", c, e.msg);
            continue;
        }
        int same = n == cases[c].n && !memcmp(ids, cases[c].ids, (size_t)n * sizeof *ids);
        CHECK(same, "reference case %zu: ids differ", c);
        if (!same) {
            print_ids("got ", ids, n);
            print_ids("want", cases[c].ids, cases[c].n);
        }
        free(ids);
    }
}

/* Streaming where characters are split across byte tokens, and ill-formed
 * sequences, against the whole decode. */
static void stream_edges(fw_tokenizer *t) {
    const unsigned char cases[][12] = {
        {0xE6, 0xB7, 0xB1, 0xF0, 0x9F, 0x98, 0x80, 'a', 0},  /* 深, 😀, a: split per byte */
        {0xE6, 0xB7, 'x', 0xF0, 0x9F, 0},                    /* truncated characters */
        {0x80, 0xBF, 0xC0, 0xAF, 0xED, 0xA0, 0x80, 0},       /* lone continuations, overlong, surrogate */
        {0xF4, 0x90, 0x80, 0x80, 0xF5, 'z', 0},              /* beyond U+10FFFF */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int32_t ids[12];
        int64_t n = 0;
        for (const unsigned char *p = cases[c]; *p; p++) ids[n++] = t->byte_id[*p];
        fw_err e = {{0}};
        char *want;
        size_t want_len;
        CHECK(!fw_tokenizer_decode(t, ids, n, false, &want, &want_len, &e), "decode: %s", e.msg);
        CHECK(!fw_utf8_validate(want, want_len, NULL), "case %zu: decode is not valid UTF-8", c);
        check_stream(t, ids, n, want, want_len, -(int)c);
        free(want);
    }
    /* U+FFFD counts as from_utf8_lossy makes them: E6 B7 'x' -> FFFD x; F0 9F at the end -> FFFD */
    int32_t ids[5] = {t->byte_id[0xE6], t->byte_id[0xB7], t->byte_id['x'], t->byte_id[0xF0], t->byte_id[0x9F]};
    fw_err e = {{0}};
    char *out;
    size_t len;
    CHECK(!fw_tokenizer_decode(t, ids, 5, false, &out, &len, &e), "%s", e.msg);
    CHECK(len == 7 && !memcmp(out, "\xEF\xBF\xBDx\xEF\xBF\xBD", 7), "lossy repair: got %zu bytes", len);
    free(out);
}

/* The heap BPE must agree with the linear one on words of every length. */
static void bpe_paths(fw_tokenizer *t) {
    const char *words[] = {"wordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordwordword",
                           " internationalization", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                           "深度求索发布了新的大语言模型深度求索发布了新的大语言模型", "                                ",
                           "\xF0\x9F\x98\x80\xF0\x9F\x9A\x80\xE2\x80\x8D\xF0\x9F\x91\xA9"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        tok_ids a = {0}, b = {0};
        fw_err e = {{0}};
        size_t n = strlen(words[i]);
        CHECK(!tok_bpe_merge(t, words[i], n, false, &a, &e), "%s", e.msg);
        CHECK(!tok_bpe_merge(t, words[i], n, true, &b, &e), "%s", e.msg);
        CHECK(a.n == b.n && !memcmp(a.p, b.p, (size_t)a.n * sizeof *a.p), "word %zu: heap BPE differs", i);
        free(a.p);
        free(b.p);
    }
}

static void api(fw_tokenizer *t) {
    CHECK(fw_tokenizer_bos(t) == 0, "bos %d", fw_tokenizer_bos(t));
    CHECK(fw_tokenizer_eos(t) == 1, "eos %d", fw_tokenizer_eos(t));
    CHECK(fw_tokenizer_n_ids(t) == 128815, "n_ids %lld", (long long)fw_tokenizer_n_ids(t));
    CHECK(fw_tokenizer_token_id(t, "<｜User｜>") == 128803, "User id");
    CHECK(fw_tokenizer_token_id(t, "Ġt") >= 0, "byte-level lookup");
    CHECK(fw_tokenizer_is_special(t, 0) && !fw_tokenizer_is_special(t, 128803), "special flags");
    CHECK(fw_tokenizer_chat_template(t) != NULL, "chat template");
    size_t len;
    const char *b = fw_tokenizer_token(t, fw_tokenizer_token_id(t, "Ġt"), &len);
    CHECK(b && len == 2 && !memcmp(b, " t", 2), "token bytes");
    CHECK(fw_tokenizer_token(t, 128900, &len) == NULL, "hole has no token");

    fw_err e = {{0}};
    int32_t *ids;
    int64_t n;
    CHECK(!fw_tokenizer_encode(t, "Hello", 5, true, &ids, &n, &e) && n >= 2 && ids[0] == 0,
          "add_special prepends BOS");
    free(ids);
    /* skip_special; holes decode to nothing */
    int32_t seq[] = {0, 19923, 128900, 1};
    char *out;
    CHECK(!fw_tokenizer_decode(t, seq, 4, true, &out, &len, &e) && !strcmp(out, "Hello"),
          "skip_special decode: '%s'", out);
    free(out);
    CHECK(!fw_tokenizer_decode(t, seq, 4, false, &out, &len, &e) &&
              !strcmp(out, "<｜begin▁of▁sentence｜>Hello<｜end▁of▁sentence｜>"),
          "decode with specials: '%s'", out);
    free(out);
    int32_t neg = -3;
    CHECK(fw_tokenizer_decode(t, &neg, 1, false, &out, &len, &e) && strstr(e.msg, "-3"),
          "negative id refused: %s", e.msg);
    /* empty text */
    CHECK(!fw_tokenizer_encode(t, "", 0, false, &ids, &n, &e) && n == 0, "empty text");
    free(ids);
    /* a NUL inside the text is a character like any other */
    CHECK(!fw_tokenizer_encode(t, "a\0b", 3, false, &ids, &n, &e) && n >= 2, "NUL in text: %s", e.msg);
    free(ids);
}

/* Writes tokenizer.json with one change made by edit() into $FURROW_TMP. */
static int write_variant(const char *dir, const char *name, void (*edit)(json_t *), char *out, size_t n) {
    json_error_t je;
    json_t *root = json_load_file(tok_path, 0, &je);
    if (!root) return -1;
    edit(root);
    snprintf(out, n, "%s/%s", dir, name);
    int rc = json_dump_file(root, out, JSON_COMPACT);
    json_decref(root);
    return rc;
}

static void edit_wordpiece(json_t *r) { json_object_set_new(json_object_get(r, "model"), "type", json_string("WordPiece")); }
static void edit_no_merges(json_t *r) { json_object_del(json_object_get(r, "model"), "merges"); }
static void edit_no_vocab(json_t *r) { json_object_del(json_object_get(r, "model"), "vocab"); }
static void edit_decoder(json_t *r) {
    json_object_set_new(json_object_get(r, "decoder"), "type", json_string("WordPiece"));
}
static void edit_bad_regex(json_t *r) {
    json_t *seq = json_object_get(json_object_get(r, "pre_tokenizer"), "pretokenizers");
    json_object_set_new(json_object_get(json_array_get(seq, 0), "pattern"), "Regex", json_string("\\p{N"));
}
static void edit_bad_merge(json_t *r) {
    json_array_set_new(json_object_get(json_object_get(r, "model"), "merges"), 5, json_string("Ġt qqqqzzz"));
}

static void errors(const fw_tokenizer *tk) {
    (void)tk;
    const char *tmp = getenv("FURROW_TMP");
    if (!tmp) tmp = ".";
    struct {
        const char *file;
        void (*edit)(json_t *);
        const char *want; /* in the message */
    } cases[] = {
        {"wordpiece.json", edit_wordpiece, "model.type is 'WordPiece'"},
        {"no-merges.json", edit_no_merges, "model.merges is missing"},
        {"no-vocab.json", edit_no_vocab, "model.vocab is missing"},
        {"decoder.json", edit_decoder, "decoder type 'WordPiece'"},
        {"bad-regex.json", edit_bad_regex, "Split pattern"},
        {"bad-merge.json", edit_bad_merge, "model.merges[5]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[4096];
        if (write_variant(tmp, cases[i].file, cases[i].edit, path, sizeof path)) {
            CHECK(0, "cannot write %s", cases[i].file);
            continue;
        }
        fw_tokenizer *t = NULL;
        fw_err e = {{0}};
        int rc = fw_tokenizer_load(&t, path, NULL, &e);
        CHECK(rc != 0 && t == NULL, "%s: loaded", cases[i].file);
        CHECK(strstr(e.msg, cases[i].want) && strstr(e.msg, cases[i].file),
              "%s: message '%s' lacks '%s'", cases[i].file, e.msg, cases[i].want);
        fprintf(stderr, "  refused as expected: %s\n", e.msg);
    }
    fw_tokenizer *t = NULL;
    fw_err e = {{0}};
    char path[4096];
    snprintf(path, sizeof path, "%s/does-not-exist.json", tmp);
    CHECK(fw_tokenizer_load(&t, path, NULL, &e) && strstr(e.msg, "does-not-exist.json"),
          "missing file: %s", e.msg);
    fprintf(stderr, "  refused as expected: %s\n", e.msg);
    /* a config whose bos_token is not a token */
    snprintf(path, sizeof path, "%s/bad-config.json", tmp);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("{\"bos_token\": \"<nope>\"}", f);
        fclose(f);
    }
    CHECK(fw_tokenizer_load(&t, tok_path, path, &e) && strstr(e.msg, "bos_token '<nope>'"),
          "bad bos: %s", e.msg);
    fprintf(stderr, "  refused as expected: %s\n", e.msg);
}

static void bad_text(fw_tokenizer *t) {
    const char *bad[] = {"abc\xff", "\xC3(", "ok \xE6\xB7", "\xED\xA0\x80 surrogate", "\xC0\xAF overlong"};
    size_t at[] = {3, 0, 3, 0, 0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fw_err e = {{0}};
        int32_t *ids;
        int64_t n;
        char want[64];
        snprintf(want, sizeof want, "offset %zu", at[i]);
        CHECK(fw_tokenizer_encode(t, bad[i], strlen(bad[i]), false, &ids, &n, &e) &&
                  strstr(e.msg, "not valid UTF-8") && strstr(e.msg, want),
              "bad text %zu: '%s'", i, e.msg);
    }
}

int main(void) {
    const char *shared = getenv("FURROW_SHARED");
    if (!shared) SKIP("FURROW_SHARED is not set");
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer/deepseek-v3/tokenizer.json", shared);
    snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer/deepseek-v3/tokenizer_config.json", shared);
    FILE *f = fopen(tok_path, "r");
    if (!f) SKIP("%s is missing", tok_path);
    fclose(f);

    fw_tokenizer *t;
    fw_err e = {{0}};
    if (fw_tokenizer_load(&t, tok_path, cfg_path, &e)) {
        fprintf(stderr, "load: %s\n", e.msg);
        return 1;
    }
    golden(t, shared);
    reference_cases(t);
    stream_edges(t);
    bpe_paths(t);
    api(t);
    bad_text(t);
    errors(t);
    fw_tokenizer_free(t);
    return check_result();
}
