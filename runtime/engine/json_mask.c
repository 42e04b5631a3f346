/* Token masks of JSON grammars (runtime/engine/json_grammar.h): the vocabulary
 * trie, the walk that gives a state's mask, the per-grammar mask cache, and
 * the cache of grammars by schema text.
 *
 * As in XGrammar and llguidance, the expensive part (checking 128K tokens'
 * bytes) is done once per automaton state and reused: the trie shares the
 * work of tokens with a common prefix, and a refused byte cuts its subtree. */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/engine/json_grammar.h"

#define NONE UINT32_MAX
#define MAX_GRAMMARS 16        /* schemas compiled and kept */
#define MAX_MASKS 512          /* masks kept per grammar (16 KB each for 128K tokens) */
#define KEY_MAX (2 + FW_JSON_MAX_DEPTH * sizeof(fw_json_frame))

struct fw_json_cache {
    pthread_mutex_t mu;        /* the grammar list */
    int64_t V;
    int32_t eos;
    uint32_t *off;             /* (V + 1) token i's bytes: bytes[off[i], off[i + 1]); empty: never allowed */
    uint8_t *bytes;
    uint32_t longest;          /* bytes of the longest token */
    /* The trie: node 0 is the root; children in increasing byte order. */
    uint32_t *child, *sibling;
    int32_t *tok;              /* the first id ending at the node, -1 */
    int32_t *dup;              /* (V) the next id with the same bytes, -1 */
    uint8_t *byte;
    uint32_t n_nodes;
    fw_json_grammar *g[MAX_GRAMMARS];
    uint64_t tick;
};

typedef struct entry {
    uint64_t h;                /* 0: empty */
    uint32_t len, slot;
    uint8_t key[KEY_MAX];
} entry;

struct fw_json_grammar {
    fw_json_cache *c;
    char *text;                /* the schema as compact JSON; "" for json_object */
    atomic_int refs;           /* the cache's and each holder's; the last frees it (the cache may be gone) */
    uint64_t used;
    fw_json_nodes nodes;
    pthread_mutex_t mu;        /* the mask cache */
    int64_t words;             /* per mask */
    entry *tab;                /* (2 * MAX_MASKS) open addressing */
    uint64_t *masks;           /* (MAX_MASKS, words) */
    int n_masks;
    uint64_t *scratch;         /* a mask being built */
};

/* ---- the vocabulary ---- */

static const fw_json_cache *sort_c;
static int by_bytes(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    uint32_t la = sort_c->off[a + 1] - sort_c->off[a], lb = sort_c->off[b + 1] - sort_c->off[b];
    int r = memcmp(sort_c->bytes + sort_c->off[a], sort_c->bytes + sort_c->off[b], la < lb ? la : lb);
    if (r) return r;
    return la != lb ? (la < lb ? -1 : 1) : (a > b) - (a < b);
}

static int build_trie(fw_json_cache *c, fw_err *e) {
    int64_t V = c->V, total = c->off[V];
    int32_t *ids = malloc((size_t)V * sizeof *ids);
    uint32_t cap = (uint32_t)total + 1;
    c->child = malloc(cap * sizeof *c->child);
    c->sibling = malloc(cap * sizeof *c->sibling);
    c->tok = malloc(cap * sizeof *c->tok);
    c->byte = malloc(cap);
    c->dup = malloc((size_t)V * sizeof *c->dup);
    uint32_t *last = malloc(cap * sizeof *last); /* each node's last child */
    if (!ids || !c->child || !c->sibling || !c->tok || !c->byte || !c->dup || !last) {
        free(ids), free(last);
        return fw_errf(e, "out of memory for the vocabulary trie");
    }
    int64_t n = 0;
    for (int64_t i = 0; i < V; i++) {
        c->dup[i] = -1;
        if (c->off[i + 1] > c->off[i]) ids[n++] = (int32_t)i;
    }
    sort_c = c; /* qsort has no context argument; built once, on one thread */
    qsort(ids, (size_t)n, sizeof *ids, by_bytes);
    c->n_nodes = 1;
    c->child[0] = c->sibling[0] = last[0] = NONE, c->tok[0] = -1, c->byte[0] = 0;
    uint32_t path[256];
    path[0] = 0;
    int32_t prev = -1;
    for (int64_t k = 0; k < n; k++) {
        int32_t id = ids[k];
        const uint8_t *b = c->bytes + c->off[id];
        uint32_t len = c->off[id + 1] - c->off[id], lcp = 0;
        if (len > 255) continue; /* no tokenizer has those; the walk's path is bounded */
        if (prev >= 0) {
            uint32_t pl = c->off[prev + 1] - c->off[prev];
            const uint8_t *pb = c->bytes + c->off[prev];
            while (lcp < len && lcp < pl && pb[lcp] == b[lcp]) lcp++;
            if (lcp == len && pl == len) { /* the same bytes: chained after the first */
                int32_t x = c->tok[path[len]];
                while (c->dup[x] >= 0) x = c->dup[x];
                c->dup[x] = id;
                continue;
            }
        }
        for (uint32_t d = lcp; d < len; d++) { /* sorted: a new node is its parent's last child */
            uint32_t p = path[d], x = c->n_nodes++;
            c->child[x] = c->sibling[x] = last[x] = NONE, c->tok[x] = -1, c->byte[x] = b[d];
            if (last[p] == NONE) c->child[p] = x;
            else c->sibling[last[p]] = x;
            last[p] = x;
            path[d + 1] = x;
        }
        c->tok[path[len]] = id;
        prev = id;
    }
    free(ids), free(last);
    return FW_OK;
}

int fw_json_cache_init(fw_json_cache **out, const fw_tokenizer *t, int64_t V, int32_t eos, fw_err *e) {
    fw_json_cache *c = calloc(1, sizeof *c);
    *out = NULL;
    if (!c || !(c->off = malloc((size_t)(V + 1) * sizeof *c->off))) {
        free(c);
        return fw_errf(e, "out of memory for the JSON output tables");
    }
    pthread_mutex_init(&c->mu, NULL);
    c->V = V, c->eos = eos;
    size_t total = 0, cap = 1 << 20;
    c->bytes = malloc(cap);
    for (int64_t i = 0; i < V && c->bytes; i++) {
        size_t len = 0;
        const char *b = fw_tokenizer_token(t, (int32_t)i, &len);
        c->off[i] = (uint32_t)total;
        if (!b || fw_tokenizer_is_special(t, (int32_t)i) || i == eos) len = 0;
        if (total + len > cap) {
            uint8_t *nb = realloc(c->bytes, cap *= 2);
            if (!nb) free(c->bytes);
            c->bytes = nb;
            if (!nb) break;
        }
        if (len) memcpy(c->bytes + total, b, len);
        total += len;
        if (len > c->longest) c->longest = (uint32_t)len;
    }
    c->off[V] = (uint32_t)total;
    if (!c->bytes || build_trie(c, e)) {
        if (!c->bytes) fw_errf(e, "out of memory for the JSON output tables");
        fw_json_cache_free(c);
        return FW_ERR;
    }
    *out = c;
    return FW_OK;
}

static void grammar_free(fw_json_grammar *g) {
    fw_json_nodes_free(&g->nodes);
    pthread_mutex_destroy(&g->mu);
    free(g->text), free(g->tab), free(g->masks), free(g->scratch);
    free(g);
}

void fw_json_cache_free(fw_json_cache *c) {
    if (!c) return;
    for (int i = 0; i < MAX_GRAMMARS; i++) fw_json_grammar_release(c->g[i]);
    pthread_mutex_destroy(&c->mu);
    free(c->off), free(c->bytes), free(c->child), free(c->sibling), free(c->tok), free(c->dup), free(c->byte);
    free(c);
}

/* ---- grammars ---- */

int fw_json_grammar_get(fw_json_cache *c, const json_t *schema, const char *path, fw_json_grammar **out, fw_err *e) {
    *out = NULL;
    /* before the cache: a value grammar of the same text may be there */
    return fw_json_schema_object_root(schema, path, e) ? FW_ERR : fw_json_grammar_get_any(c, schema, path, out, e);
}

int fw_json_grammar_get_any(fw_json_cache *c, const json_t *schema, const char *path, fw_json_grammar **out,
                            fw_err *e) {
    *out = NULL;
    /* Keys stay in their order: properties are written in it. */
    char *text = schema ? json_dumps(schema, JSON_COMPACT) : strdup("");
    if (!text) return fw_errf(e, "out of memory");
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < MAX_GRAMMARS; i++)
        if (c->g[i] && !strcmp(c->g[i]->text, text)) {
            *out = fw_json_grammar_ref(c->g[i]);
            c->g[i]->used = ++c->tick;
            pthread_mutex_unlock(&c->mu);
            free(text);
            return FW_OK;
        }
    pthread_mutex_unlock(&c->mu);
    /* Compiled outside the lock: another thread may compile the same schema; the first kept wins nothing more. */
    fw_json_grammar *g = calloc(1, sizeof *g);
    if (!g) {
        free(text);
        return fw_errf(e, "out of memory");
    }
    pthread_mutex_init(&g->mu, NULL);
    g->c = c, g->text = text;
    atomic_init(&g->refs, 1);
    g->words = (c->V + 63) / 64;
    if (fw_json_nodes_compile_any(&g->nodes, schema, path, e)) {
        grammar_free(g);
        return FW_ERR;
    }
    g->tab = calloc(2 * MAX_MASKS, sizeof *g->tab);
    g->scratch = malloc((size_t)g->words * sizeof *g->scratch);
    if (!g->tab || !g->scratch) {
        grammar_free(g);
        return fw_errf(e, "out of memory");
    }
    pthread_mutex_lock(&c->mu);
    int slot = 0;
    for (int i = 0; i < MAX_GRAMMARS; i++) { /* a free slot, else the least recently used */
        if (!c->g[i]) {
            slot = i;
            break;
        }
        if (c->g[i]->used < c->g[slot]->used) slot = i;
    }
    fw_json_grammar_release(c->g[slot]);
    c->g[slot] = fw_json_grammar_ref(g);
    g->used = ++c->tick;
    pthread_mutex_unlock(&c->mu);
    *out = g;
    return FW_OK;
}

fw_json_grammar *fw_json_grammar_ref(fw_json_grammar *g) {
    atomic_fetch_add(&g->refs, 1);
    return g;
}

void fw_json_grammar_release(fw_json_grammar *g) {
    if (g && atomic_fetch_sub(&g->refs, 1) == 1) grammar_free(g);
}

const fw_json_nodes *fw_json_grammar_nodes(const fw_json_grammar *g) { return &g->nodes; }
int64_t fw_json_grammar_vocab(const fw_json_grammar *g) { return g->c->V; }
int32_t fw_json_grammar_eos(const fw_json_grammar *g) { return g->c->eos; }
int32_t fw_json_cache_eos(const fw_json_cache *c) { return c->eos; }

bool fw_json_grammar_accept(const fw_json_grammar *g, fw_json_state *s, int32_t id) {
    const fw_json_cache *c = g->c;
    if (id == c->eos) return fw_json_complete(s);
    if (id < 0 || id >= c->V || c->off[id + 1] == c->off[id]) return false;
    return fw_json_feed(&g->nodes, s, c->bytes + c->off[id], c->off[id + 1] - c->off[id]);
}

/* ---- masks ---- */

static void set_id(uint64_t *m, int32_t id) { m[id >> 6] |= 1ull << (id & 63); }

/* The tokens below trie node x allowed from state s (after x's bytes). */
static void walk(const fw_json_cache *c, const fw_json_nodes *g, uint32_t x, const fw_json_state *s, uint64_t *m) {
    size_t used = offsetof(fw_json_state, f) + (size_t)s->depth * sizeof(fw_json_frame);
    for (uint32_t y = c->child[x]; y != NONE; y = c->sibling[y]) {
        fw_json_state t;
        memcpy(&t, s, used);
        if (!fw_json_feed(g, &t, &c->byte[y], 1)) continue;
        for (int32_t id = c->tok[y]; id >= 0; id = c->dup[id]) set_id(m, id);
        if (c->child[y] != NONE) walk(c, g, y, &t, m);
    }
}

static void compute(const fw_json_grammar *g, const fw_json_state *s, uint64_t *m) {
    const fw_json_cache *c = g->c;
    memset(m, 0, (size_t)g->words * sizeof *m);
    walk(c, &g->nodes, 0, s, m);
    if (c->eos >= 0 && c->eos < c->V && fw_json_complete(s)) set_id(m, c->eos);
}

void fw_json_grammar_mask_brute(const fw_json_grammar *g, const fw_json_state *s, uint64_t *m) {
    const fw_json_cache *c = g->c;
    memset(m, 0, (size_t)g->words * sizeof *m);
    for (int64_t i = 0; i < c->V; i++) {
        fw_json_state t = *s;
        if (fw_json_grammar_accept(g, &t, (int32_t)i)) set_id(m, (int32_t)i);
    }
}

static uint64_t hash(const uint8_t *k, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ k[i]) * 0x100000001b3ull;
    return h | 1; /* 0 marks an empty entry */
}

const uint64_t *fw_json_grammar_mask(fw_json_grammar *g, const fw_json_state *s, bool *hit) {
    uint8_t key[KEY_MAX];
    size_t len = fw_json_key(&g->nodes, s, g->c->longest, key);
    uint64_t h = hash(key, len);
    const uint64_t cap = 2 * MAX_MASKS;
    pthread_mutex_lock(&g->mu);
    uint64_t i = h % cap;
    for (; g->tab[i].h; i = (i + 1) % cap)
        if (g->tab[i].h == h && g->tab[i].len == len && !memcmp(g->tab[i].key, key, len)) {
            const uint64_t *m = g->masks + (size_t)g->tab[i].slot * (size_t)g->words;
            pthread_mutex_unlock(&g->mu);
            *hit = true;
            return m;
        }
    *hit = false;
    if (!g->masks) g->masks = malloc((size_t)MAX_MASKS * (size_t)g->words * sizeof *g->masks);
    if (!g->masks) { /* no room to keep it: computed each time */
        compute(g, s, g->scratch);
        pthread_mutex_unlock(&g->mu);
        return g->scratch;
    }
    if (g->n_masks == MAX_MASKS) { /* full: start again (a grammar that visits this many states is rare) */
        memset(g->tab, 0, (size_t)cap * sizeof *g->tab);
        g->n_masks = 0;
        i = h % cap;
    }
    entry *x = &g->tab[i];
    x->h = h, x->len = (uint32_t)len, x->slot = (uint32_t)g->n_masks++;
    memcpy(x->key, key, len);
    uint64_t *m = g->masks + (size_t)x->slot * (size_t)g->words;
    compute(g, s, m);
    pthread_mutex_unlock(&g->mu);
    return m;
}
