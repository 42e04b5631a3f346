/* Byte-level BPE over one pre-token: start from the one-byte tokens and apply the
 * merge of lowest rank (the leftmost on ties) until none applies, as the
 * reference's Word::merge_all does. Short words use a linear scan over the pair
 * ranks; long ones a heap of candidate merges over a linked list of symbols.
 * Results go through a cache of pre-token bytes -> ids. */
#include "io/text/tok_internal.h"

#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

/* Words up to this many bytes take the linear O(n^2) scan: cheaper than a heap
 * for the short words that make up almost all text. */
#define TOK_BPE_LINEAR_MAX 64

typedef struct tok_heap_item {
    int32_t rank, pos;
} tok_heap_item;

/* ---- merges: (left, right) -> rank ---- */

static inline size_t merge_slot(uint64_t key, size_t mask) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return (size_t)(h ^ (h >> 29)) & mask;
}

/* The rank of merging a then b, INT32_MAX when there is no such merge. */
static inline int32_t merge_rank(const fw_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)a << TOK_ID_BITS | (uint64_t)b;
    size_t i = merge_slot(key, t->merge_mask);
    for (;;) {
        tok_merge m = t->merges[i];
        if (m == TOK_MERGE_EMPTY) return INT32_MAX;
        if (m >> TOK_ID_BITS == key) return (int32_t)(m & (TOK_ID_LIMIT - 1));
        i = (i + 1) & t->merge_mask;
    }
}

int tok_merges_init(fw_tokenizer *t, int64_t n) {
    size_t cap = 1024;
    while (cap < (size_t)n * 2) cap *= 2;
    t->merges = malloc(cap * sizeof *t->merges);
    t->merge_to = malloc((size_t)(n ? n : 1) * sizeof *t->merge_to);
    if (!t->merges || !t->merge_to) return -1;
    for (size_t i = 0; i < cap; i++) t->merges[i] = TOK_MERGE_EMPTY;
    t->merge_mask = cap - 1;
    t->n_merge_ranks = n;
    return 0;
}

/* a, b, merged < TOK_ID_LIMIT and rank < the n given to init (the loader
 * checks). A pair given twice keeps its last rank, as the reference's HashMap
 * does. */
void tok_merges_put(fw_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t merged) {
    uint64_t key = (uint64_t)a << TOK_ID_BITS | (uint64_t)b;
    size_t i = merge_slot(key, t->merge_mask);
    while (t->merges[i] != TOK_MERGE_EMPTY && t->merges[i] >> TOK_ID_BITS != key)
        i = (i + 1) & t->merge_mask;
    if (t->merges[i] == TOK_MERGE_EMPTY) t->n_merges++;
    t->merges[i] = key << TOK_ID_BITS | (uint64_t)rank;
    t->merge_to[rank] = merged;
}

/* ---- scratch ---- */

static int scratch_reserve(fw_tokenizer *t, size_t n) {
    if (n <= t->scratch_cap) return 0;
    size_t cap = t->scratch_cap ? t->scratch_cap : 256;
    while (cap < n) cap *= 2;
    int32_t **arrs[] = {&t->sym, &t->rank, &t->prev, &t->next};
    for (size_t k = 0; k < sizeof arrs / sizeof arrs[0]; k++) {
        int32_t *p = realloc(*arrs[k], cap * sizeof(int32_t));
        if (!p) return -1;
        *arrs[k] = p;
    }
    tok_heap_item *h = realloc(t->heap, cap * 3 * sizeof *h);
    if (!h) return -1;
    t->heap = h;
    t->heap_cap = cap * 3;
    t->scratch_cap = cap;
    return 0;
}

/* ---- the linear version ---- */

static int bpe_linear(fw_tokenizer *t, size_t n, tok_ids *out) {
    int32_t *sym = t->sym, *rank = t->rank;
    size_t m = n;
    for (size_t i = 0; i + 1 < m; i++) rank[i] = merge_rank(t, sym[i], sym[i + 1]);
    while (m > 1) {
        int32_t best = INT32_MAX;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < m; i++)
            if (rank[i] < best) best = rank[i], bi = i;
        if (best == INT32_MAX) break;
        sym[bi] = t->merge_to[best];
        /* drop symbol bi+1 and pair bi+1 */
        size_t tail = m - (bi + 2);
        memmove(sym + bi + 1, sym + bi + 2, tail * sizeof *sym);
        if (tail) memmove(rank + bi + 1, rank + bi + 2, (tail - 1) * sizeof *rank);
        m--;
        if (bi > 0) rank[bi - 1] = merge_rank(t, sym[bi - 1], sym[bi]);
        if (bi + 1 < m) rank[bi] = merge_rank(t, sym[bi], sym[bi + 1]);
    }
    if (tok_ids_reserve(out, (int64_t)m)) return -1;
    memcpy(out->p + out->n, sym, m * sizeof *sym);
    out->n += (int64_t)m;
    return 0;
}

/* ---- the heap version ---- */

static inline bool heap_less(const tok_heap_item *a, const tok_heap_item *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(tok_heap_item *h, size_t *n, tok_heap_item it) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&it, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static tok_heap_item heap_pop(tok_heap_item *h, size_t *n) {
    tok_heap_item top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

/* A rank identifies its merge (one pair), so an item is still valid when the
 * pair now at its position has the item's rank. */
static int bpe_heap(fw_tokenizer *t, size_t n, tok_ids *out) {
    int32_t *sym = t->sym, *prev = t->prev, *next = t->next;
    tok_heap_item *h = t->heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        int32_t r = merge_rank(t, sym[i], sym[i + 1]);
        if (r != INT32_MAX) heap_push(h, &hn, (tok_heap_item){r, (int32_t)i});
    }
    /* n-1 items to start, at most two more per merge and n-1 merges: the heap
     * never holds more than 3n items (the scratch has room for that). */
    while (hn) {
        tok_heap_item top = heap_pop(h, &hn);
        int32_t p = top.pos, q = next[p], r;
        if (sym[p] < 0 || q < 0 || merge_rank(t, sym[p], sym[q]) != top.rank) continue;
        sym[p] = t->merge_to[top.rank];
        sym[q] = -1;
        next[p] = next[q];
        if (next[q] >= 0) prev[next[q]] = p;
        if (prev[p] >= 0 && (r = merge_rank(t, sym[prev[p]], sym[p])) != INT32_MAX)
            heap_push(h, &hn, (tok_heap_item){r, prev[p]});
        if (next[p] >= 0 && (r = merge_rank(t, sym[p], sym[next[p]])) != INT32_MAX)
            heap_push(h, &hn, (tok_heap_item){r, p});
    }
    for (int32_t i = 0; i >= 0; i = next[i])
        if (tok_ids_push(out, sym[i])) return -1;
    return 0;
}

int tok_bpe_merge(fw_tokenizer *t, const char *w, size_t n, bool force_heap, tok_ids *out,
                  fw_err *e) {
    if (!n) return FW_OK;
    if (n > INT32_MAX / 4) return fw_errf(e, "tokenizer: a pre-token of %zu bytes is too long", n);
    if (scratch_reserve(t, n)) return fw_errf(e, "tokenizer: out of memory");
    for (size_t i = 0; i < n; i++) t->sym[i] = t->byte_id[(uint8_t)w[i]];
    int rc = (n <= TOK_BPE_LINEAR_MAX && !force_heap) ? bpe_linear(t, n, out) : bpe_heap(t, n, out);
    return rc ? fw_errf(e, "tokenizer: out of memory") : FW_OK;
}

/* ---- the cache ---- */

_Static_assert(sizeof(tok_cache_entry) == 64, "a cache entry is one cache line");

void tok_bpe_free(fw_tokenizer *t) {
    free(t->cache.slots);
    t->cache.slots = NULL;
    t->cache.count = 0;
    free(t->merges);
    free(t->merge_to);
    t->merge_to = NULL;
    free(t->sym);
    free(t->rank);
    free(t->prev);
    free(t->next);
    free(t->heap);
    t->merges = NULL;
    t->sym = t->rank = t->prev = t->next = NULL;
    t->heap = NULL;
    t->scratch_cap = t->heap_cap = 0;
}

int tok_bpe_word(fw_tokenizer *t, const char *w, size_t n, tok_ids *out, fw_err *e) {
    if (n == 1) {
        if (tok_ids_push(out, t->byte_id[(uint8_t)w[0]])) return fw_errf(e, "tokenizer: out of memory");
        return FW_OK;
    }
    if (t->ignore_merges) {
        int32_t id = tok_strmap_get(&t->vocab, w, n);
        if (id >= 0) {
            if (tok_ids_push(out, id)) return fw_errf(e, "tokenizer: out of memory");
            return FW_OK;
        }
    }
    if (n > TOK_CACHE_KEY_MAX) return tok_bpe_merge(t, w, n, false, out, e);

    tok_cache *c = &t->cache;
    if (!c->slots && !(c->slots = calloc(TOK_CACHE_SLOTS, sizeof *c->slots)))
        return tok_bpe_merge(t, w, n, false, out, e);
    uint64_t h = XXH3_64bits(w, n);
    if (!h) h = 1;
    const size_t mask = TOK_CACHE_SLOTS - 1;
    size_t i = (size_t)h & mask;
    for (; c->slots[i].hash; i = (i + 1) & mask) {
        const tok_cache_entry *s = &c->slots[i];
        if (s->hash == h && s->key_len == n && !memcmp(s->key, w, n)) {
            if (tok_ids_reserve(out, s->n_ids)) return fw_errf(e, "tokenizer: out of memory");
            memcpy(out->p + out->n, s->ids, (size_t)s->n_ids * sizeof *s->ids);
            out->n += s->n_ids;
            return FW_OK;
        }
    }
    int64_t start = out->n;
    if (tok_bpe_merge(t, w, n, false, out, e)) return FW_ERR;
    int64_t k = out->n - start;
    if (k <= TOK_CACHE_IDS_MAX && c->count < TOK_CACHE_SLOTS / 2) {
        tok_cache_entry *s = &c->slots[i];
        s->hash = h;
        s->key_len = (uint8_t)n;
        s->n_ids = (uint8_t)k;
        memcpy(s->key, w, n);
        memcpy(s->ids, out->p + start, (size_t)k * sizeof *s->ids);
        c->count++;
    }
    return FW_OK;
}
