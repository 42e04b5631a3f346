/* The scheduler's map of the KV blocks (rank 0; the ranks only see the tables it
 * sends): how many requests hold each block and, with the prefix cache on, which
 * full blocks hold which tokens, so requests with the same prefix share them
 * without a copy (vLLM's automatic prefix caching, SGLang's radix cache).
 *
 * A block is published once all its positions are computed, and never written
 * again: its key is the serial of the block before it in the sequence (0 for the
 * first) and its block_size tokens, so a match is exact, by comparison, whatever
 * the hash; a serial is never reused, so a block evicted and published again with
 * other tokens cannot be mistaken for its old self. A published block that no
 * request holds stays cached in an LRU queue and is evicted (unpublished) only
 * when no never-cached free block is left. */
#ifndef FW_RUNTIME_ENGINE_BLOCK_MAP_H
#define FW_RUNTIME_ENGINE_BLOCK_MAP_H

#include <stdbool.h>
#include <stdint.h>

#include "io/base/err.h"
#include "runtime/model/kvcache.h"

typedef struct fw_block_map {
    fw_kv_pool *pool;          /* the free ids: blocks that hold nothing worth keeping */
    bool caching;              /* --prefix-cache on */
    int64_t n_blocks, block_size;
    int32_t *ref;              /* (n_blocks) requests holding each block */
    uint64_t *serial;          /* (n_blocks) 0: not published */
    uint64_t *parent;          /* (n_blocks) the serial of the block before it */
    uint64_t *hash;            /* (n_blocks) of (parent, tokens) */
    int32_t *tokens;           /* (n_blocks, block_size) a published block's tokens */
    int32_t *bucket;           /* (n_buckets) first published block of each hash bucket, -1: none */
    int32_t *chain;            /* (n_blocks) the next block of the same bucket */
    int64_t n_buckets;
    int32_t *lru_prev, *lru_next; /* (n_blocks) published blocks no request holds, least recent first */
    int32_t lru_head, lru_tail;
    int64_t n_lru;             /* blocks in that queue: free, but cached */
    int64_t n_published;       /* cached blocks, held or not */
    uint64_t next_serial;
    /* Counters for /metrics. */
    int64_t evictions;         /* published blocks taken for other tokens */
    int64_t queried_tokens;    /* prompt tokens of requests at their first admission */
    int64_t hit_tokens;        /* of those, the ones found cached */
} fw_block_map;

int fw_block_map_init(fw_block_map *m, fw_kv_pool *pool, bool caching, fw_err *e);
void fw_block_map_free(fw_block_map *m);

/* Blocks a request could take now: free ones and cached ones nobody holds. */
static inline int64_t fw_block_map_available(const fw_block_map *m) { return m->pool->n_free + m->n_lru; }
/* Blocks held by requests. */
static inline int64_t fw_block_map_used(const fw_block_map *m) { return m->n_blocks - fw_block_map_available(m); }

/* A block for new positions, held once: a free one, else the least recently
 * used cached one (evicted); -1 when none is available. */
int32_t fw_block_map_take(fw_block_map *m);
/* One more holder of a block found by fw_block_map_match (out of the LRU queue). */
void fw_block_map_hold(fw_block_map *m, int32_t id);
/* One holder fewer; with none left a published block joins the LRU queue as the
 * most recent, any other goes back to the free ids. */
void fw_block_map_release(fw_block_map *m, int32_t id);

/* The cached blocks of the longest run of full blocks of `tokens` (at most
 * max_blocks) into ids, not yet held; returns how many. *n_idle: how many of
 * them no request holds (taking them makes that many fewer available); *chain:
 * the serial of the last (0 when none). */
int64_t fw_block_map_match(const fw_block_map *m, const int32_t *tokens, int64_t max_blocks, int32_t *ids,
                           int64_t *n_idle, uint64_t *chain);
/* Block `id` now holds block_size computed positions of `tokens` after the block
 * of serial `parent`: published unless the same block already is (then `id` stays
 * private and is freed with its request). Returns the serial of the cached one,
 * the parent of the sequence's next block. */
uint64_t fw_block_map_publish(fw_block_map *m, int32_t id, uint64_t parent, const int32_t *tokens);

#endif
