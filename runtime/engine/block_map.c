#include "runtime/engine/block_map.h"

#include <stdlib.h>
#include <string.h>

int fw_block_map_init(fw_block_map *m, fw_kv_pool *pool, bool caching, fw_err *e) {
    memset(m, 0, sizeof *m);
    m->pool = pool, m->caching = caching;
    m->n_blocks = pool->n_blocks, m->block_size = pool->block_size;
    m->lru_head = m->lru_tail = -1;
    m->next_serial = 1;
    const size_t n = (size_t)m->n_blocks;
    m->ref = calloc(n, sizeof *m->ref);
    if (!m->ref) return fw_errf(e, "scheduler: out of memory for the block map");
    if (!caching) return FW_OK;
    m->n_buckets = 1;
    while (m->n_buckets < 2 * m->n_blocks) m->n_buckets *= 2;
    m->serial = calloc(n, sizeof *m->serial);
    m->parent = calloc(n, sizeof *m->parent);
    m->hash = calloc(n, sizeof *m->hash);
    m->tokens = malloc(n * (size_t)m->block_size * sizeof *m->tokens);
    m->bucket = malloc((size_t)m->n_buckets * sizeof *m->bucket);
    m->chain = malloc(n * sizeof *m->chain);
    m->lru_prev = malloc(n * sizeof *m->lru_prev);
    m->lru_next = malloc(n * sizeof *m->lru_next);
    if (!m->serial || !m->parent || !m->hash || !m->tokens || !m->bucket || !m->chain || !m->lru_prev ||
        !m->lru_next) {
        fw_block_map_free(m);
        return fw_errf(e, "scheduler: out of memory for the prefix cache of %lld blocks", (long long)n);
    }
    for (int64_t i = 0; i < m->n_buckets; i++) m->bucket[i] = -1;
    return FW_OK;
}

void fw_block_map_free(fw_block_map *m) {
    free(m->ref), free(m->serial), free(m->parent), free(m->hash), free(m->tokens);
    free(m->bucket), free(m->chain), free(m->lru_prev), free(m->lru_next);
    memset(m, 0, sizeof *m);
}

/* FNV-1a over the parent's serial and the tokens, then a final mix: the bucket
 * only; a match is decided by comparing. */
static uint64_t key_hash(uint64_t parent, const int32_t *tokens, int64_t n) {
    uint64_t h = 1469598103934665603ull ^ parent;
    for (int64_t i = 0; i < n; i++) h = (h ^ (uint32_t)tokens[i]) * 1099511628211ull;
    h ^= h >> 33, h *= 0xff51afd7ed558ccdull, h ^= h >> 33;
    return h;
}

static int32_t find(const fw_block_map *m, uint64_t parent, const int32_t *tokens, uint64_t h) {
    for (int32_t b = m->bucket[h & (uint64_t)(m->n_buckets - 1)]; b >= 0; b = m->chain[b])
        if (m->hash[b] == h && m->parent[b] == parent &&
            !memcmp(m->tokens + b * m->block_size, tokens, (size_t)m->block_size * sizeof *tokens))
            return b;
    return -1;
}

static void lru_unlink(fw_block_map *m, int32_t b) {
    int32_t p = m->lru_prev[b], n = m->lru_next[b];
    if (p >= 0) m->lru_next[p] = n;
    else m->lru_head = n;
    if (n >= 0) m->lru_prev[n] = p;
    else m->lru_tail = p;
    m->n_lru--;
}

static void lru_append(fw_block_map *m, int32_t b) {
    m->lru_prev[b] = m->lru_tail, m->lru_next[b] = -1;
    if (m->lru_tail >= 0) m->lru_next[m->lru_tail] = b;
    else m->lru_head = b;
    m->lru_tail = b;
    m->n_lru++;
}

/* Forgets what block b holds: out of its bucket. */
static void unpublish(fw_block_map *m, int32_t b) {
    int32_t *at = &m->bucket[m->hash[b] & (uint64_t)(m->n_buckets - 1)];
    while (*at != b) at = &m->chain[*at];
    *at = m->chain[b];
    m->serial[b] = 0;
    m->n_published--;
}

int32_t fw_block_map_take(fw_block_map *m) {
    int32_t b = fw_kv_pool_take(m->pool);
    if (b < 0 && m->n_lru > 0) { /* free blocks ran out: the least recently used cached one */
        b = m->lru_head;
        lru_unlink(m, b);
        unpublish(m, b);
        m->evictions++;
    }
    if (b >= 0) m->ref[b] = 1;
    return b;
}

void fw_block_map_hold(fw_block_map *m, int32_t id) {
    if (m->ref[id]++ == 0) lru_unlink(m, id); /* only published blocks are found idle */
}

void fw_block_map_release(fw_block_map *m, int32_t id) {
    if (--m->ref[id] > 0) return;
    if (m->caching && m->serial[id]) lru_append(m, id);
    else fw_kv_pool_give(m->pool, id);
}

int64_t fw_block_map_match(const fw_block_map *m, const int32_t *tokens, int64_t max_blocks, int32_t *ids,
                           int64_t *n_idle, uint64_t *chain) {
    int64_t n = 0, idle = 0;
    uint64_t parent = 0;
    if (m->caching)
        for (; n < max_blocks; n++) {
            const int32_t *t = tokens + n * m->block_size;
            int32_t b = find(m, parent, t, key_hash(parent, t, m->block_size));
            if (b < 0) break;
            ids[n] = b;
            idle += m->ref[b] == 0;
            parent = m->serial[b];
        }
    *n_idle = idle, *chain = parent;
    return n;
}

uint64_t fw_block_map_publish(fw_block_map *m, int32_t id, uint64_t parent, const int32_t *tokens) {
    if (!m->caching) return 0;
    uint64_t h = key_hash(parent, tokens, m->block_size);
    int32_t b = find(m, parent, tokens, h);
    if (b >= 0) return m->serial[b]; /* computed twice (two requests at once): the first stays the cached one */
    m->serial[id] = m->next_serial++;
    m->parent[id] = parent, m->hash[id] = h;
    memcpy(m->tokens + id * m->block_size, tokens, (size_t)m->block_size * sizeof *tokens);
    int32_t *head = &m->bucket[h & (uint64_t)(m->n_buckets - 1)];
    m->chain[id] = *head, *head = id;
    m->n_published++;
    return m->serial[id];
}
