/* The pre-tokenizer: tokenizer.json's Split steps, run by PCRE2 (UTF, Unicode
 * properties, JIT when available). Each step splits every piece the previous
 * step produced, and each piece is the whole subject of the next step's search,
 * so a lookahead never sees past its piece, as in the reference.
 *
 * The reference compiles the patterns with Oniguruma. Two differences matter and
 * are translated away here: Oniguruma's \s lacks U+180E, which PCRE2's has; and
 * the reference's Unicode tables are newer (16.0) than those of the PCRE2 this
 * was built with (10.42: Unicode 14.0), so \p{L}, \p{M}, \p{N}, \p{P} and \p{S}
 * get the code points assigned since (CJK Extension H and I, new emoji, new
 * scripts) added explicitly. The table was measured from the reference itself
 * (tokenizers 0.23.2, the version that made the golden data): for every code
 * point, its Split with \p{X} against PCRE2's; the only differences were these
 * additions and U+180E. */
#include "io/text/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Oniguruma's Unicode \s: U+0009..U+000D, U+0085 and the Z categories. */
#define ONIG_SPACE "\\t-\\r\\x{85}\\p{Z}"

/* Code points in the reference's \p{X} but not in PCRE2 10.42's, sorted. */
static const struct {
    char cat;
    uint32_t lo, hi;
} newer_unicode[] = {
    {'M', 0x0897, 0x0897}, {'M', 0x0CF3, 0x0CF3}, {'M', 0x0ECE, 0x0ECE}, {'P', 0x1B4E, 0x1B4F},
    {'P', 0x1B7F, 0x1B7F}, {'L', 0x1C89, 0x1C8A}, {'S', 0x2427, 0x2429}, {'S', 0x2FFC, 0x2FFF},
    {'S', 0x31E4, 0x31E5}, {'S', 0x31EF, 0x31EF}, {'L', 0xA7CB, 0xA7CD}, {'L', 0xA7DA, 0xA7DC},
    {'L', 0x105C0, 0x105F3}, {'N', 0x10D40, 0x10D49}, {'L', 0x10D4A, 0x10D65},
    {'M', 0x10D69, 0x10D6D}, {'P', 0x10D6E, 0x10D6E}, {'L', 0x10D6F, 0x10D85},
    {'S', 0x10D8E, 0x10D8F}, {'L', 0x10EC2, 0x10EC4}, {'M', 0x10EFC, 0x10EFF},
    {'L', 0x1123F, 0x11240}, {'M', 0x11241, 0x11241}, {'L', 0x11380, 0x11389},
    {'L', 0x1138B, 0x1138B}, {'L', 0x1138E, 0x1138E}, {'L', 0x11390, 0x113B5},
    {'L', 0x113B7, 0x113B7}, {'M', 0x113B8, 0x113C0}, {'M', 0x113C2, 0x113C2},
    {'M', 0x113C5, 0x113C5}, {'M', 0x113C7, 0x113CA}, {'M', 0x113CC, 0x113D0},
    {'L', 0x113D1, 0x113D1}, {'M', 0x113D2, 0x113D2}, {'L', 0x113D3, 0x113D3},
    {'P', 0x113D4, 0x113D5}, {'P', 0x113D7, 0x113D8}, {'M', 0x113E1, 0x113E2},
    {'N', 0x116D0, 0x116E3}, {'P', 0x11B00, 0x11B09}, {'L', 0x11BC0, 0x11BE0},
    {'P', 0x11BE1, 0x11BE1}, {'N', 0x11BF0, 0x11BF9}, {'M', 0x11F00, 0x11F01},
    {'L', 0x11F02, 0x11F02}, {'M', 0x11F03, 0x11F03}, {'L', 0x11F04, 0x11F10},
    {'L', 0x11F12, 0x11F33}, {'M', 0x11F34, 0x11F3A}, {'M', 0x11F3E, 0x11F42},
    {'P', 0x11F43, 0x11F4F}, {'N', 0x11F50, 0x11F59}, {'M', 0x11F5A, 0x11F5A},
    {'L', 0x1342F, 0x1342F}, {'M', 0x13440, 0x13440}, {'L', 0x13441, 0x13446},
    {'M', 0x13447, 0x13455}, {'L', 0x13460, 0x143FA}, {'L', 0x16100, 0x1611D},
    {'M', 0x1611E, 0x1612F}, {'N', 0x16130, 0x16139}, {'L', 0x16D40, 0x16D6C},
    {'P', 0x16D6D, 0x16D6F}, {'N', 0x16D70, 0x16D79}, {'L', 0x18CFF, 0x18CFF},
    {'L', 0x1B132, 0x1B132}, {'L', 0x1B155, 0x1B155}, {'S', 0x1CC00, 0x1CCEF},
    {'N', 0x1CCF0, 0x1CCF9}, {'S', 0x1CD00, 0x1CEB3}, {'N', 0x1D2C0, 0x1D2D3},
    {'L', 0x1DF25, 0x1DF2A}, {'L', 0x1E030, 0x1E06D}, {'M', 0x1E08F, 0x1E08F},
    {'L', 0x1E4D0, 0x1E4EB}, {'M', 0x1E4EC, 0x1E4EF}, {'N', 0x1E4F0, 0x1E4F9},
    {'L', 0x1E5D0, 0x1E5ED}, {'M', 0x1E5EE, 0x1E5EF}, {'L', 0x1E5F0, 0x1E5F0},
    {'N', 0x1E5F1, 0x1E5FA}, {'P', 0x1E5FF, 0x1E5FF}, {'S', 0x1F6DC, 0x1F6DC},
    {'S', 0x1F774, 0x1F776}, {'S', 0x1F77B, 0x1F77F}, {'S', 0x1F7D9, 0x1F7D9},
    {'S', 0x1F8B2, 0x1F8BB}, {'S', 0x1F8C0, 0x1F8C1}, {'S', 0x1FA75, 0x1FA77},
    {'S', 0x1FA87, 0x1FA89}, {'S', 0x1FA8F, 0x1FA8F}, {'S', 0x1FAAD, 0x1FAAF},
    {'S', 0x1FABB, 0x1FABF}, {'S', 0x1FAC6, 0x1FAC6}, {'S', 0x1FACE, 0x1FACF},
    {'S', 0x1FADA, 0x1FADC}, {'S', 0x1FADF, 0x1FADF}, {'S', 0x1FAE8, 0x1FAE9},
    {'S', 0x1FAF7, 0x1FAF8}, {'S', 0x1FBCB, 0x1FBEF}, {'L', 0x2B739, 0x2B739},
    {'L', 0x2EBF0, 0x2EE5D}, {'L', 0x31350, 0x323AF},
};

/* Appends the ranges to add to \p{cat} (none for other categories). */
static int put_newer(tok_buf *out, char cat) {
    char r[40];
    for (size_t i = 0; i < sizeof newer_unicode / sizeof newer_unicode[0]; i++) {
        if (newer_unicode[i].cat != cat) continue;
        int n = snprintf(r, sizeof r, "\\x{%X}-\\x{%X}", (unsigned)newer_unicode[i].lo,
                         (unsigned)newer_unicode[i].hi);
        if (tok_buf_append(out, r, (size_t)n)) return -1;
    }
    return 0;
}

/* Rewrites \s, \S, \p{X} and \P{X} (X one of L M N P S; \P only outside a
 * class) as Oniguruma reads them; everything else is copied. */
static int translate(const char *pat, tok_buf *out) {
    size_t n = strlen(pat);
    int depth = 0; /* inside [...] (Oniguruma allows nested classes) */
    for (size_t i = 0; i < n; i++) {
        char c = pat[i];
        if (c == '\\' && i + 1 < n) {
            char d = pat[i + 1];
            int rc;
            bool prop = (d == 'p' || d == 'P') && i + 4 < n && pat[i + 2] == '{' && pat[i + 4] == '}' &&
                        strchr("LMNPS", pat[i + 3]);
            if (!depth && d == 's') {
                rc = tok_buf_append(out, "[" ONIG_SPACE "]", strlen(ONIG_SPACE) + 2);
            } else if (!depth && d == 'S') {
                rc = tok_buf_append(out, "[^" ONIG_SPACE "]", strlen(ONIG_SPACE) + 3);
            } else if (prop && (!depth || d == 'p')) {
                char cls[8] = {'\\', 'p', '{', pat[i + 3], '}'};
                rc = (!depth && tok_buf_append(out, d == 'P' ? "[^" : "[", d == 'P' ? 2 : 1)) ||
                     tok_buf_append(out, cls, 5) || put_newer(out, pat[i + 3]) ||
                     (!depth && tok_buf_append(out, "]", 1));
                i += 3;
            } else {
                rc = tok_buf_append(out, pat + i, 2);
            }
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

static int compile(const char *src, bool literal, pcre2_code **re, bool *jit, int *code,
                   PCRE2_SIZE *at) {
    *re = pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED,
                        PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0), code, at, NULL);
    if (!*re) return -1;
    *jit = pcre2_jit_compile(*re, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}

int tok_step_compile(fw_tokenizer *t, tok_step *st, const char *pattern, bool literal,
                     int behavior, fw_err *e) {
    tok_buf pat = {0};
    if (!literal && translate(pattern, &pat)) {
        free(pat.p);
        return fw_errf(e, "out of memory");
    }
    int code;
    PCRE2_SIZE at;
    int rc = compile(literal ? pattern : pat.p, literal, &st->re[0], &st->jit[0], &code, &at);
    free(pat.p);
    if (rc) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return fw_errf(e, "Split pattern '%s': %s (near offset %zu)", pattern, (char *)msg,
                       (size_t)at);
    }
    if (literal || compile(pattern, false, &st->re[1], &st->jit[1], &code, &at)) st->re[1] = NULL;
    st->behavior = behavior;
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
    for (int k = 0; k < t->n_steps; k++) {
        pcre2_code_free(t->steps[k].re[0]);
        pcre2_code_free(t->steps[k].re[1]);
    }
    t->n_steps = 0;
    pcre2_match_data_free(t->md);
    pcre2_match_context_free(t->mctx);
    pcre2_jit_stack_free(t->jit_stack);
    t->md = NULL;
    t->mctx = NULL;
    t->jit_stack = NULL;
}

bool tok_needs_onig_classes(const char *s, size_t n) {
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < n; i++) {
        if (u[i] < 0xE1) continue; /* every such code point is below U+1000 */
        uint32_t cp;
        size_t k = tok_utf8_next(s + i, n - i, &cp);
        if (cp == 0x180E) return true;
        size_t lo = 0, hi = sizeof newer_unicode / sizeof newer_unicode[0];
        while (lo < hi) { /* the first range that ends at or after cp */
            size_t mid = (lo + hi) / 2;
            if (newer_unicode[mid].hi < cp) lo = mid + 1;
            else hi = mid;
        }
        if (lo < sizeof newer_unicode / sizeof newer_unicode[0] && newer_unicode[lo].lo <= cp) return true;
        i += k - 1;
    }
    return false;
}

/* The next match in s[start, n): 1 found ([*a, *b)), 0 none, -1 error. */
static int step_find(fw_tokenizer *t, const tok_step *st, int v, const char *s, size_t n,
                     size_t start, size_t *a, size_t *b, fw_err *e) {
    int rc = st->jit[v] ? pcre2_jit_match(st->re[v], (PCRE2_SPTR)s, n, start, 0, t->md, t->mctx)
                        : pcre2_match(st->re[v], (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK,
                                      t->md, t->mctx);
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

/* v: which compiled form of the patterns to run (see tok_step). */
static int run_steps(fw_tokenizer *t, int k, int v, const char *s, size_t n, tok_ids *out,
                     fw_err *e) {
    if (!n) return FW_OK;
    if (k == t->n_steps) return tok_bpe_word(t, s, n, out, e);
    const tok_step *st = &t->steps[k];
    int w = st->re[v] ? v : 0;
    size_t pos = 0, done = 0, a, b;
    while (pos < n) {
        int f = step_find(t, st, w, s, n, pos, &a, &b, e);
        if (f < 0) return FW_ERR;
        if (!f) break;
        if (b == a) { /* an empty match splits nothing: step over one character */
            uint32_t cp;
            pos = a + tok_utf8_next(s + a, n - a, &cp);
            continue;
        }
        if (a > done && run_steps(t, k + 1, v, s + done, a - done, out, e)) return FW_ERR;
        if (st->behavior == TOK_SPLIT_ISOLATED && run_steps(t, k + 1, v, s + a, b - a, out, e))
            return FW_ERR;
        done = pos = b;
    }
    return done < n ? run_steps(t, k + 1, v, s + done, n - done, out, e) : FW_OK;
}

int tok_pretokenize(fw_tokenizer *t, const char *s, size_t n, tok_ids *out, fw_err *e) {
    return run_steps(t, 0, tok_needs_onig_classes(s, n) ? 0 : 1, s, n, out, e);
}
