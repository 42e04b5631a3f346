/* Tokenizer helpers: growable buffers, a byte-string hash map, the added-token
 * trie, the GPT-2 byte <-> character mapping and UTF-8 checks and repair. */
#include "io/text/tok_internal.h"

#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

/* ---- buffers ---- */

int tok_buf_reserve(tok_buf *b, size_t extra) {
    if (b->cap - b->n >= extra) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->n < extra) {
        if (cap > SIZE_MAX / 2) return -1;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int tok_buf_append(tok_buf *b, const void *src, size_t n) {
    if (tok_buf_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
    return 0;
}

int tok_ids_grow(tok_ids *v, int64_t extra) {
    int64_t cap = v->cap ? v->cap : 64;
    while (cap - v->n < extra) {
        if (cap > INT64_MAX / 8) return -1;
        cap *= 2;
    }
    int32_t *p = realloc(v->p, (size_t)cap * sizeof *p);
    if (!p) return -1;
    v->p = p;
    v->cap = cap;
    return 0;
}

/* ---- byte-string map ---- */

static uint64_t key_hash(const void *key, size_t len) {
    uint64_t h = XXH3_64bits(key, len);
    return h ? h : 1;
}

int tok_strmap_init(tok_strmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    size_t cap = 64;
    while (cap < 2 * expected) cap *= 2;
    m->hash = calloc(cap, sizeof *m->hash);
    m->off = malloc(cap * sizeof *m->off);
    m->len = malloc(cap * sizeof *m->len);
    m->val = malloc(cap * sizeof *m->val);
    m->cap = cap;
    if (!m->hash || !m->off || !m->len || !m->val) {
        tok_strmap_free(m);
        return -1;
    }
    return 0;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->hash);
    free(m->off);
    free(m->len);
    free(m->val);
    free(m->pool.p);
    memset(m, 0, sizeof *m);
}

static size_t strmap_find(const tok_strmap *m, uint64_t h, const void *key, size_t len) {
    size_t mask = m->cap - 1, i = (size_t)h & mask;
    while (m->hash[i]) {
        if (m->hash[i] == h && m->len[i] == len && !memcmp(m->pool.p + m->off[i], key, len))
            return i;
        i = (i + 1) & mask;
    }
    return i;
}

static int strmap_grow(tok_strmap *m) {
    tok_strmap g = {0};
    g.cap = m->cap * 2;
    g.hash = calloc(g.cap, sizeof *g.hash);
    g.off = malloc(g.cap * sizeof *g.off);
    g.len = malloc(g.cap * sizeof *g.len);
    g.val = malloc(g.cap * sizeof *g.val);
    if (!g.hash || !g.off || !g.len || !g.val) {
        free(g.hash), free(g.off), free(g.len), free(g.val);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->hash[i]) continue;
        size_t j = (size_t)m->hash[i] & (g.cap - 1);
        while (g.hash[j]) j = (j + 1) & (g.cap - 1);
        g.hash[j] = m->hash[i], g.off[j] = m->off[i], g.len[j] = m->len[i], g.val[j] = m->val[i];
    }
    free(m->hash), free(m->off), free(m->len), free(m->val);
    m->hash = g.hash, m->off = g.off, m->len = g.len, m->val = g.val, m->cap = g.cap;
    return 0;
}

int tok_strmap_put(tok_strmap *m, const void *key, size_t len, int32_t val) {
    if (len > UINT32_MAX || m->pool.n + len > UINT32_MAX) return -1;
    if (2 * (m->count + 1) > m->cap && strmap_grow(m)) return -1;
    uint64_t h = key_hash(key, len);
    size_t i = strmap_find(m, h, key, len);
    if (!m->hash[i]) {
        uint32_t off = (uint32_t)m->pool.n;
        if (tok_buf_append(&m->pool, key, len)) return -1;
        m->hash[i] = h, m->off[i] = off, m->len[i] = (uint32_t)len;
        m->count++;
    }
    m->val[i] = val;
    return 0;
}

int32_t tok_strmap_get(const tok_strmap *m, const void *key, size_t len) {
    if (!m->cap) return -1;
    size_t i = strmap_find(m, key_hash(key, len), key, len);
    return m->hash[i] ? m->val[i] : -1;
}

/* ---- added-token trie ---- */

int tok_trie_init(tok_trie *tr) {
    memset(tr, 0, sizeof *tr);
    tr->cap = 256;
    tr->nodes = malloc((size_t)tr->cap * sizeof *tr->nodes);
    if (!tr->nodes) return -1;
    tr->nodes[0] = (tok_trie_node){-1, -1, -1, 0};
    tr->n = 1;
    return 0;
}

void tok_trie_free(tok_trie *tr) {
    free(tr->nodes);
    memset(tr, 0, sizeof *tr);
}

int tok_trie_add(tok_trie *tr, const char *s, size_t len, int32_t id) {
    if (!len) return -1;
    int32_t cur = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = tr->nodes[cur].child;
        while (c >= 0 && tr->nodes[c].byte != b) c = tr->nodes[c].sibling;
        if (c < 0) {
            if (tr->n == tr->cap) {
                if (tr->cap > INT32_MAX / 2) return -1;
                tok_trie_node *p = realloc(tr->nodes, (size_t)tr->cap * 2 * sizeof *p);
                if (!p) return -1;
                tr->nodes = p;
                tr->cap *= 2;
            }
            c = tr->n++;
            tr->nodes[c] = (tok_trie_node){-1, tr->nodes[cur].child, -1, b};
            tr->nodes[cur].child = c;
        }
        cur = c;
    }
    if (tr->nodes[cur].id < 0) tr->count++;
    tr->nodes[cur].id = id;
    if (!tr->first[(uint8_t)s[0]]) {
        tr->first[(uint8_t)s[0]] = true;
        tr->n_first++;
        tr->a_first = (uint8_t)s[0];
    }
    return 0;
}

size_t tok_trie_longest(const tok_trie *tr, const char *s, size_t len, int32_t *id) {
    size_t best = 0;
    int32_t cur = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = tr->nodes[cur].child;
        while (c >= 0 && tr->nodes[c].byte != b) c = tr->nodes[c].sibling;
        if (c < 0) break;
        cur = c;
        if (tr->nodes[cur].id >= 0) {
            best = i + 1;
            *id = tr->nodes[cur].id;
        }
    }
    return best;
}

/* ---- the GPT-2 byte <-> character mapping ----
 * Printable bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) map to themselves; the 68
 * others, in byte order, to U+0100 onwards: 0x00..0x20 -> U+0100..U+0120 ('Ġ' is
 * the space), 0x7F..0xA0 -> U+0121..U+0142, 0xAD -> U+0143. */

uint32_t tok_byte_to_char(uint8_t b) {
    if (b <= 0x20) return 256u + b;
    if (b >= 0x7F && b <= 0xA0) return 256u + 33u + (b - 0x7Fu);
    if (b == 0xAD) return 256u + 67u;
    return b;
}

int tok_char_to_byte(uint32_t c) {
    if (c < 256) {
        if (c <= 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return -1;
        return (int)c;
    }
    if (c <= 256 + 32) return (int)(c - 256);
    if (c <= 256 + 66) return (int)(c - 256 - 33 + 0x7F);
    if (c == 256 + 67) return 0xAD;
    return -1;
}

/* ---- UTF-8 ---- */

enum { U8_VALID, U8_INVALID, U8_INCOMPLETE };

/* Classifies the sequence at s (n >= 1) as Unicode's "maximal subpart" rule (and
 * Rust's from_utf8_lossy) does: *used is the character's length when valid, the
 * length of the ill-formed prefix to replace by one U+FFFD when invalid, and the
 * bytes seen when the input ends inside a well-formed prefix. */
static int utf8_classify(const uint8_t *s, size_t n, size_t *used) {
    uint8_t b0 = s[0];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b0 < 0x80) {
        *used = 1;
        return U8_VALID;
    }
    if (b0 < 0xC2 || b0 > 0xF4) {
        *used = 1;
        return U8_INVALID;
    }
    if (b0 < 0xE0) {
        need = 2;
    } else if (b0 < 0xF0) {
        need = 3;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;
    } else {
        need = 4;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    }
    for (size_t i = 1; i < need; i++) {
        if (i >= n) {
            *used = i;
            return U8_INCOMPLETE;
        }
        if (s[i] < lo || s[i] > hi) {
            *used = i;
            return U8_INVALID;
        }
        lo = 0x80, hi = 0xBF;
    }
    *used = need;
    return U8_VALID;
}

int fw_utf8_validate(const char *s, size_t n, size_t *bad_offset) {
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        /* eight ASCII bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, u + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t used;
        if (utf8_classify(u + i, n - i, &used) != U8_VALID) {
            if (bad_offset) *bad_offset = i;
            return -1;
        }
        i += used;
    }
    return 0;
}

size_t tok_utf8_next(const char *s, size_t n, uint32_t *cp) {
    const uint8_t *u = (const uint8_t *)s;
    if (u[0] < 0x80 || n < 2) {
        *cp = u[0];
        return 1;
    }
    if (u[0] < 0xE0) {
        *cp = ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
        return 2;
    }
    if (u[0] < 0xF0 && n >= 3) {
        *cp = ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
        return 3;
    }
    if (n >= 4) {
        *cp = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
              ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
        return 4;
    }
    *cp = u[0];
    return 1;
}

size_t tok_utf8_lossy(const char *s, size_t n, bool final, tok_buf *out, int *oom) {
    static const char repl[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0, run = 0; /* s[run, i) is valid and not yet copied */
    *oom = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t used;
        int k = utf8_classify(u + i, n - i, &used);
        if (k == U8_VALID) {
            i += used;
            continue;
        }
        if (k == U8_INCOMPLETE && !final) break;
        if (tok_buf_append(out, s + run, i - run) || tok_buf_append(out, repl, 3)) {
            *oom = 1;
            return 0;
        }
        i += used;
        run = i;
    }
    if (tok_buf_append(out, s + run, i - run)) *oom = 1;
    return i;
}
