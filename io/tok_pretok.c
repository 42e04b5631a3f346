/* The pre-tokenizer: tokenizer.json's Split steps, run by PCRE2 (UTF, Unicode
 * properties, JIT when available). Each step splits every piece the previous
 * step produced, and each piece is the whole subject of the next step's search,
 * so a lookahead never sees past its piece, as in the reference. The reference
 * compiles the patterns with Oniguruma; the only syntax the two read differently
 * here is \s / \S, which this file spells out as Oniguruma defines them. */
#include "io/tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* Oniguruma's Unicode \s: U+0009..U+000D, U+0085 and the Z categories. PCRE2's
 * (with PCRE2_UCP) also matches U+180E. */
#define ONIG_SPACE "\\t-\\r\\x{85}\\p{Z}"

/* Rewrites \s and \S outside character classes; everything else is copied. */
static int translate(const char *pat, tok_buf *out) {
    size_t n = strlen(pat);
    int depth = 0; /* inside [...] (Oniguruma allows nested classes) */
    for (size_t i = 0; i < n; i++) {
        char c = pat[i];
        if (c == '\\' && i + 1 < n) {
            char d = pat[i + 1];
            int rc;
            if (!depth && d == 's') rc = tok_buf_append(out, "[" ONIG_SPACE "]", strlen(ONIG_SPACE) + 2);
            else if (!depth && d == 'S') rc = tok_buf_append(out, "[^" ONIG_SPACE "]", strlen(ONIG_SPACE) + 3);
            else rc = tok_buf_append(out, pat + i, 2);
            if (rc) return -1;
            i++;
            continue;
        }
        if (c == '[') {
            depth++;
            /* a ']' right after '[' or '[^' is a literal */
            size_t j = i + 1;
            if (j < n && pat[j] == '^') j++;
            if (j < n && pat[j] == ']') {
                if (tok_buf_append(out, pat + i, j + 1 - i)) return -1;
                i = j;
                continue;
            }
        } else if (c == ']' && depth) {
            depth--;
        }
        if (tok_buf_append(out, &c, 1)) return -1;
    }
    return tok_buf_append(out, "", 1);
}

int tok_step_compile(fw_tokenizer *t, tok_step *st, const char *pattern, bool literal,
                     int behavior, fw_err *e) {
    tok_buf pat = {0};
    const char *src = pattern;
    if (!literal) {
        if (translate(pattern, &pat)) {
            free(pat.p);
            return fw_errf(e, "out of memory");
        }
        src = pat.p;
    }
    int code;
    PCRE2_SIZE at;
    st->re = pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED,
                           PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0), &code, &at, NULL);
    free(pat.p);
    if (!st->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return fw_errf(e, "Split pattern '%s': %s (near offset %zu)", pattern, (char *)msg,
                       (size_t)at);
    }
    st->behavior = behavior;
    st->jit = pcre2_jit_compile(st->re, PCRE2_JIT_COMPLETE) == 0;
    if (!t->md) {
        t->md = pcre2_match_data_create(16, NULL);
        t->mctx = pcre2_match_context_create(NULL);
        t->jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
        if (!t->md || !t->mctx || !t->jit_stack) return fw_errf(e, "out of memory");
        pcre2_jit_stack_assign(t->mctx, NULL, t->jit_stack);
    }
    return FW_OK;
}

void tok_steps_free(fw_tokenizer *t) {
    for (int k = 0; k < t->n_steps; k++) pcre2_code_free(t->steps[k].re);
    t->n_steps = 0;
    pcre2_match_data_free(t->md);
    pcre2_match_context_free(t->mctx);
    pcre2_jit_stack_free(t->jit_stack);
    t->md = NULL;
    t->mctx = NULL;
    t->jit_stack = NULL;
}

/* The next match in s[start, n): 1 found ([*a, *b)), 0 none, -1 error. */
static int step_find(fw_tokenizer *t, const tok_step *st, const char *s, size_t n, size_t start,
                     size_t *a, size_t *b, fw_err *e) {
    int rc = st->jit ? pcre2_jit_match(st->re, (PCRE2_SPTR)s, n, start, 0, t->md, t->mctx)
                     : pcre2_match(st->re, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, t->md,
                                   t->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        fw_errf(e, "tokenizer: pre-tokenizer regex failed on a piece of %zu bytes: %s", n,
                (char *)msg);
        return -1;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
    *a = ov[0];
    *b = ov[1];
    return 1;
}

static int run_steps(fw_tokenizer *t, int k, const char *s, size_t n, tok_ids *out, fw_err *e) {
    if (!n) return FW_OK;
    if (k == t->n_steps) return tok_bpe_word(t, s, n, out, e);
    const tok_step *st = &t->steps[k];
    size_t pos = 0, done = 0, a, b;
    while (pos < n) {
        int f = step_find(t, st, s, n, pos, &a, &b, e);
        if (f < 0) return FW_ERR;
        if (!f) break;
        if (b == a) { /* an empty match splits nothing: step over one character */
            uint32_t cp;
            pos = a + tok_utf8_next(s + a, n - a, &cp);
            continue;
        }
        if (a > done && run_steps(t, k + 1, s + done, a - done, out, e)) return FW_ERR;
        if (st->behavior == TOK_SPLIT_ISOLATED && run_steps(t, k + 1, s + a, b - a, out, e))
            return FW_ERR;
        done = pos = b;
    }
    return done < n ? run_steps(t, k + 1, s + done, n - done, out, e) : FW_OK;
}

int tok_pretokenize(fw_tokenizer *t, const char *s, size_t n, tok_ids *out, fw_err *e) {
    return run_steps(t, 0, s, n, out, e);
}
