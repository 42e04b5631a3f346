/* The paged latent KV cache: one pool of fixed-size blocks shared by all the
 * sequences of a replica, a free list, and per-sequence block tables. A block
 * holds block_size positions of every layer of the stage: (n_layers, block_size,
 * C + R) floats. Rank 0's scheduler assigns blocks and sends the tables with each
 * step, so every rank's pool holds the same positions in the same blocks. */
#ifndef FW_RUNTIME_MODEL_KVCACHE_H
#define FW_RUNTIME_MODEL_KVCACHE_H

#include <stdint.h>

#include "io/base/err.h"

/* Positions per block unless the scheduler is told otherwise. */
#define FW_KV_BLOCK_SIZE 16
/* On a GPU: the decode attention copies whole 64-key tiles per page (FlashMLA's
 * block size too); smaller blocks take more copies. */
#define FW_KV_DEVICE_BLOCK_SIZE 64

typedef struct fw_kv_pool {
    int64_t block_size;        /* positions per block */
    int64_t n_blocks;
    int64_t n_layers, width;   /* the stage's layers; width = C + R */
    float *data;               /* (n_blocks, n_layers, block_size, width) */
    int32_t *free_ids;         /* (n_blocks) stack of free block ids */
    int64_t n_free;
} fw_kv_pool;

int fw_kv_pool_init(fw_kv_pool *p, int64_t n_blocks, int64_t block_size, int64_t n_layers, int64_t width,
                    fw_err *e);
/* The block ids only (data NULL): a device holds the blocks themselves. */
int fw_kv_pool_init_ids(fw_kv_pool *p, int64_t n_blocks, int64_t block_size, fw_err *e);
void fw_kv_pool_free(fw_kv_pool *p);
/* A free block's id, or -1 when none is left. */
int32_t fw_kv_pool_take(fw_kv_pool *p);
void fw_kv_pool_give(fw_kv_pool *p, int32_t id);
/* Blocks needed for n positions. */
static inline int64_t fw_kv_blocks_for(const fw_kv_pool *p, int64_t n) { return (n + p->block_size - 1) / p->block_size; }

/* Row `pos` of layer l of a sequence whose block table is `table`. */
static inline float *fw_kv_pool_row(const fw_kv_pool *p, const int32_t *table, int64_t l, int64_t pos) {
    int64_t b = table[pos / p->block_size], r = pos % p->block_size;
    return p->data + ((b * p->n_layers + l) * p->block_size + r) * p->width;
}

/* Copies positions [0, S) of layer l into dst (S, width), block by block: the
 * attention ops read one contiguous latent sequence. */
void fw_kv_pool_gather(const fw_kv_pool *p, const int32_t *table, int64_t l, int64_t S, float *dst);
/* Writes src (T, width) at positions [pos0, pos0 + T) of layer l. */
void fw_kv_pool_scatter(fw_kv_pool *p, const int32_t *table, int64_t l, int64_t pos0, int64_t T, const float *src);

#endif
