#include "runtime/model/kvcache.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int pool_init(fw_kv_pool *p, int64_t n_blocks, int64_t block_size, int64_t n_layers, int64_t width,
                     bool host, fw_err *e) {
    memset(p, 0, sizeof *p);
    if (n_blocks < 1 || block_size < 1 || n_blocks > INT32_MAX)
        return fw_errf(e, "KV cache: %lld blocks of %lld positions is not a cache", (long long)n_blocks,
                       (long long)block_size);
    p->block_size = block_size, p->n_blocks = n_blocks, p->n_layers = n_layers, p->width = width;
    unsigned long long bytes = sizeof(float);
    bool over = fw_mul_u64(bytes, (unsigned long long)n_blocks, &bytes) ||
                fw_mul_u64(bytes, (unsigned long long)n_layers, &bytes) ||
                fw_mul_u64(bytes, (unsigned long long)block_size, &bytes) ||
                fw_mul_u64(bytes, (unsigned long long)width, &bytes);
    /* Past the machine's memory an allocation may still succeed (overcommit)
     * and the job be killed later: refuse it here, by the numbers. */
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    unsigned long long phys = pages > 0 && page > 0 ? (unsigned long long)pages * (unsigned long long)page : 0;
    if (host && (over || (phys && bytes > phys)))
        return fw_errf(e, "KV cache: %lld blocks of %lld positions x %lld layers need %.1f GiB, more than this "
                          "machine's %.1f GiB of memory: lower --max-context, --max-batch or --kv-blocks",
                       (long long)n_blocks, (long long)block_size, (long long)n_layers,
                       (double)n_blocks * (double)n_layers * (double)block_size * (double)width * sizeof(float) / (1 << 30),
                       (double)phys / (1 << 30));
    p->data = host ? malloc(bytes ? (size_t)bytes : 1) : NULL;
    p->free_ids = malloc((size_t)n_blocks * sizeof(int32_t));
    if ((host && !p->data) || !p->free_ids) {
        fw_kv_pool_free(p);
        return fw_errf(e, "KV cache: out of memory for %lld blocks (%llu bytes)", (long long)n_blocks, bytes);
    }
    /* Lowest ids on top of the stack, so a fresh pool hands out 0, 1, 2, ... */
    for (int64_t i = 0; i < n_blocks; i++) p->free_ids[i] = (int32_t)(n_blocks - 1 - i);
    p->n_free = n_blocks;
    return FW_OK;
}

int fw_kv_pool_init(fw_kv_pool *p, int64_t n_blocks, int64_t block_size, int64_t n_layers, int64_t width,
                    fw_err *e) {
    return pool_init(p, n_blocks, block_size, n_layers, width, true, e);
}

int fw_kv_pool_init_ids(fw_kv_pool *p, int64_t n_blocks, int64_t block_size, fw_err *e) {
    return pool_init(p, n_blocks, block_size, 0, 0, false, e);
}

void fw_kv_pool_free(fw_kv_pool *p) {
    free(p->data);
    free(p->free_ids);
    memset(p, 0, sizeof *p);
}

int32_t fw_kv_pool_take(fw_kv_pool *p) { return p->n_free > 0 ? p->free_ids[--p->n_free] : -1; }

void fw_kv_pool_give(fw_kv_pool *p, int32_t id) {
    if (id >= 0 && id < p->n_blocks && p->n_free < p->n_blocks) p->free_ids[p->n_free++] = id;
}

void fw_kv_pool_gather(const fw_kv_pool *p, const int32_t *table, int64_t l, int64_t S, float *dst) {
    for (int64_t s = 0; s < S; s += p->block_size) {
        int64_t n = S - s < p->block_size ? S - s : p->block_size;
        memcpy(dst + s * p->width, fw_kv_pool_row(p, table, l, s), (size_t)(n * p->width) * sizeof(float));
    }
}

void fw_kv_pool_scatter(fw_kv_pool *p, const int32_t *table, int64_t l, int64_t pos0, int64_t T, const float *src) {
    for (int64_t t = 0; t < T;) {
        int64_t pos = pos0 + t, room = p->block_size - pos % p->block_size, n = T - t < room ? T - t : room;
        memcpy(fw_kv_pool_row(p, table, l, pos), src + t * p->width, (size_t)(n * p->width) * sizeof(float));
        t += n;
    }
}
