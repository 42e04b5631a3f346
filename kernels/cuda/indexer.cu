/* DeepSeek-V3.2's lightning indexer on the GPU (indexer.h): keys and queries
 * rounded to FP8 as DeepSeek's inference code does, scores and the top-k
 * selection. Rounding: a block of 128 threads holds a vector, a value a thread;
 * the Hadamard butterflies run in runtime/cpu/indexer.c's order (warp shuffles,
 * then shared memory), so the codes are the CPU's for the same input. Scores: a
 * block takes one query and IX_SW x 32 positions, the query's codes as bf16 in
 * shared memory (exact), a warp 32 keys as the B operand of m16n8k16 bf16 MMAs
 * (heads are M, keys N, the head dimension K, in an order of the sum that lets a
 * thread load its key bytes in two 16-byte loads), then relu, the heads' weights
 * and a shuffle reduction over the heads. Selection: a block takes one query; a
 * radix select over the scores' order-preserving 32-bit keys finds the k-th
 * largest in four 8-bit passes, then one ordered pass compacts the chosen
 * positions (block-wide prefix counts). */
#include "kernels/cuda/indexer.h"
#include "kernels/cuda/mla_decode.h"
#include "kernels/cuda/tc.h"

#include <cuda_fp8.h>
#include <math.h>

#define IX_D 128        /* index_head_dim: the threads of a rounding block, the K of the scores */
#define IX_SW 8         /* warps of the score kernel, 32 positions each */
#define IX_QLD 132      /* bf16 a query row in shared memory: 33 8-byte units, see q_unit */
#define IX_SEL 512      /* threads of the select kernel */

__device__ static inline uint8_t *key_row(const fw_cuda_pages &pg, int64_t col0, int64_t s, int64_t p) {
    return (uint8_t *)((bf16 *)page_row(pg, s, p) + col0);
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); red: 32 floats. */
__device__ static float block_sum(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    __syncthreads(); /* red is free (an earlier call has read it) */
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ static float block_max(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Value i of the vector (thread i of IX_D) after the non-interleaved RoPE of its
 * first R values; sv: IX_D floats of shared memory. */
__device__ static float rope_half(float v, float *sv, const float *cs, const float *sn, int R) {
    const int i = threadIdx.x, h = R / 2;
    __syncthreads(); /* sv is free */
    sv[i] = v;
    __syncthreads();
    if (i < h) return sv[i] * cs[i] - sv[i + h] * sn[i];
    if (i < R) return sv[i - h] * sn[i - h] + sv[i] * cs[i - h];
    return v;
}

/* DeepSeek's FP8 rounding of the block's vector (fw_indexer_fp8_round): the
 * Hadamard rotation times norm, then e4m3 at a power-of-two scale. Returns
 * thread i's code, the scale in *scale. sv, red: shared memory. */
__device__ static uint8_t fp8_round(float v, float norm, float *sv, float *red, float *scale) {
    const int i = threadIdx.x;
    for (int h = 1; h < 32; h <<= 1) {
        const float o = __shfl_xor_sync(0xffffffffu, v, h);
        v = (i & h) ? o - v : v + o;
    }
    for (int h = 32; h < IX_D; h <<= 1) {
        __syncthreads();
        sv[i] = v;
        __syncthreads();
        const float o = sv[i ^ h];
        v = (i & h) ? o - v : v + o;
    }
    v *= norm;
    const float amax = block_max(fabsf(v), red);
    int ex; /* amax / 448 = m 2^ex, m in [0.5, 1): ceil(log2) is ex, or ex - 1 for m = 0.5 */
    const float m = frexpf(fmaxf(amax, 1e-4f) / 448.0f, &ex);
    const float sc = ldexpf(1.0f, m == 0.5f ? ex - 1 : ex);
    *scale = sc;
    return (uint8_t)__nv_cvt_float_to_fp8(v / sc, __NV_SATFINITE, __NV_E4M3);
}

__global__ void __launch_bounds__(IX_D) index_keys_kernel(fw_cuda_pages pg, int64_t col0, const float *__restrict__ k,
                                                          const float *__restrict__ w, const float *__restrict__ b,
                                                          float eps, float norm, const float *__restrict__ cos_tab,
                                                          const float *__restrict__ sin_tab,
                                                          const int32_t *__restrict__ q_seq,
                                                          const int32_t *__restrict__ q_len, int R) {
    __shared__ float red[32], sv[IX_D];
    const int64_t t = blockIdx.x;
    const int i = threadIdx.x;
    const float v = k[t * IX_D + i];
    const float mu = block_sum(v, red) / (float)IX_D;
    const float d = v - mu;
    const float inv = rsqrtf(block_sum(d * d, red) / (float)IX_D + eps);
    const float x = rope_half(d * inv * w[i] + b[i], sv, cos_tab + t * (R / 2), sin_tab + t * (R / 2), R);
    float scale;
    const uint8_t code = fp8_round(x, norm, sv, red, &scale);
    uint8_t *row = key_row(pg, col0, q_seq[t], q_len[t] - 1);
    row[i] = code;
    if (i == 0) *(float *)(row + IX_D) = scale;
}

__global__ void __launch_bounds__(IX_D) index_queries_kernel(uint8_t *q8, float *w, const float *__restrict__ q,
                                                             const float *__restrict__ cos_tab,
                                                             const float *__restrict__ sin_tab, int ih, int R,
                                                             float norm, float wscale) {
    __shared__ float red[32], sv[IX_D];
    const int64_t th = blockIdx.x, t = th / ih; /* (token, head) */
    const int i = threadIdx.x;
    const float x = rope_half(q[th * IX_D + i], sv, cos_tab + t * (R / 2), sin_tab + t * (R / 2), R);
    float scale;
    q8[th * IX_D + i] = fp8_round(x, norm, sv, red, &scale);
    if (i == 0) w[th] *= wscale * scale;
}

/* The 8-byte unit (4 bf16) u of a query row r in shared memory: rows of 33 units
 * and bit 4 of u folded into bit 2, so that the 16 lanes of a half-warp, which
 * read units 8 t4 + j of rows g (t4, g < 4), hit 16 different bank pairs. */
__device__ static inline int q_unit(int r, int u) { return r * (IX_QLD / 4) + (u ^ ((u >> 2) & 4)); }

/* MT 16-row tiles of heads (ih <= 16 MT; rows past ih are zero). */
template <int MT>
__global__ void __launch_bounds__(IX_SW * 32) index_scores_kernel(float *score, int64_t ld,
                                                                  const uint8_t *__restrict__ q8,
                                                                  const float *__restrict__ w, fw_cuda_pages pg,
                                                                  int64_t col0, const int32_t *__restrict__ q_seq,
                                                                  const int32_t *__restrict__ q_len, int ih) {
    __shared__ __align__(16) uint2 qs[MT * 16 * (IX_QLD / 4)];
    __shared__ float ws[MT * 16];
    const int64_t t = blockIdx.y, n = q_len[t], seq = q_seq[t];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    for (int i = tid; i < MT * 16 * (IX_D / 4); i += blockDim.x) {
        const int r = i / (IX_D / 4), u = i % (IX_D / 4);
        uint32_t lo = 0, hi = 0;
        if (r < ih) fw_fp8x4_to_bf16(*(const uint32_t *)(q8 + (t * ih + r) * IX_D + 4 * u), lo, hi);
        qs[q_unit(r, u)] = make_uint2(lo, hi);
    }
    for (int i = tid; i < MT * 16; i += blockDim.x) ws[i] = i < ih ? w[t * ih + i] : 0.0f;
    __syncthreads();
    const int64_t base = (int64_t)blockIdx.x * (IX_SW * 32) + warp * 32;
    if (base >= ld) return;
    /* Key g of each 8-key tile: thread t4 holds its bytes 32 t4 .. 32 t4 + 31. */
    uint4 kb[4][2];
#pragma unroll
    for (int nt = 0; nt < 4; nt++) {
        const int64_t s = base + nt * 8 + g;
        kb[nt][0] = kb[nt][1] = make_uint4(0, 0, 0, 0);
        if (s < n) {
            const uint4 *kr = (const uint4 *)(key_row(pg, col0, seq, s) + 32 * t4);
            kb[nt][0] = kr[0], kb[nt][1] = kr[1];
        }
    }
    float acc[4][MT][4];
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int mi = 0; mi < MT; mi++) acc[nt][mi][0] = acc[nt][mi][1] = acc[nt][mi][2] = acc[nt][mi][3] = 0.0f;
    /* Step j: head dimensions 32 t4 + 4 j .. + 3 as the K rows (2 t4, 2 t4 + 1) and (2 t4 + 8, 2 t4 + 9). */
#pragma unroll
    for (int j = 0; j < 8; j++) {
        uint32_t b[4][2];
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            const uint4 &v = kb[nt][j >> 2];
            const uint32_t word = (j & 3) == 0 ? v.x : (j & 3) == 1 ? v.y : (j & 3) == 2 ? v.z : v.w;
            fw_fp8x4_to_bf16(word, b[nt][0], b[nt][1]);
        }
#pragma unroll
        for (int mi = 0; mi < MT; mi++) {
            const uint2 lo = qs[q_unit(mi * 16 + g, 8 * t4 + j)], hi = qs[q_unit(mi * 16 + g + 8, 8 * t4 + j)];
            const uint32_t a[4] = {lo.x, hi.x, lo.y, hi.y};
#pragma unroll
            for (int nt = 0; nt < 4; nt++) fw_mma_bf16(acc[nt][mi], a, b[nt][0], b[nt][1]);
        }
    }
#pragma unroll
    for (int nt = 0; nt < 4; nt++) {
        float p0 = 0.0f, p1 = 0.0f; /* keys 2 t4 and 2 t4 + 1 of the tile, over this thread's heads */
#pragma unroll
        for (int mi = 0; mi < MT; mi++) {
            const float w0 = ws[mi * 16 + g], w1 = ws[mi * 16 + g + 8];
            p0 += fmaxf(acc[nt][mi][0], 0.0f) * w0 + fmaxf(acc[nt][mi][2], 0.0f) * w1;
            p1 += fmaxf(acc[nt][mi][1], 0.0f) * w0 + fmaxf(acc[nt][mi][3], 0.0f) * w1;
        }
#pragma unroll
        for (int o = 4; o < 32; o <<= 1) {
            p0 += __shfl_xor_sync(0xffffffffu, p0, o);
            p1 += __shfl_xor_sync(0xffffffffu, p1, o);
        }
        if (g == 0) {
            const int64_t s = base + nt * 8 + 2 * t4;
            const float pv[2] = {p0, p1};
#pragma unroll
            for (int x = 0; x < 2; x++)
                if (s + x < n) score[t * ld + s + x] = pv[x] * *(const float *)(key_row(pg, col0, seq, s + x) + IX_D);
                else if (s + x < ld) score[t * ld + s + x] = -INFINITY;
        }
    }
}

/* Order-preserving: a > b as floats iff key(a) > key(b) as unsigned. */
__device__ static inline uint32_t order_key(float f) {
    const uint32_t u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* Exclusive prefix count of flag over the block, in thread order; *total: the block's count. */
__device__ static int block_excl_count(bool flag, int *warp_sums, int *total) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    const unsigned ball = __ballot_sync(0xffffffffu, flag);
    const int in_warp = __popc(ball & ((1u << lane) - 1u));
    __syncthreads(); /* warp_sums is free */
    if (lane == 0) warp_sums[warp] = __popc(ball);
    __syncthreads();
    int before = 0, all = 0;
    for (int i = 0; i < nw; i++) {
        before += i < warp ? warp_sums[i] : 0;
        all += warp_sums[i];
    }
    *total = all;
    return before + in_warp;
}

__device__ static inline int32_t cache_row(const fw_cuda_pages &pg, int64_t seq, int64_t p) {
    return (int32_t)(pg.table[seq * pg.max_blocks + p / pg.block] * pg.block + p % pg.block);
}

__global__ void __launch_bounds__(IX_SEL) index_topk_kernel(int32_t *sel, int32_t *n_sel, int32_t *row,
                                                            const float *__restrict__ score, int64_t ld,
                                                            fw_cuda_pages pg, const int32_t *__restrict__ q_seq,
                                                            const int32_t *__restrict__ q_len, int64_t t0, int64_t k) {
    __shared__ unsigned hist[256];
    __shared__ uint32_t prefix_s, want_s;
    __shared__ int warp_sums[32];
    const int64_t t = t0 + blockIdx.x, n = q_len[t], seq = q_seq[t];
    const float *sc = score + (int64_t)blockIdx.x * ld;
    int32_t *out = sel + t * k;
    if (threadIdx.x == 0) n_sel[t] = (int32_t)(n < k ? n : k), row[t] = (int32_t)t;
    if (n <= k) {
        for (int64_t p = threadIdx.x; p < n; p += blockDim.x) out[p] = cache_row(pg, seq, p);
        return;
    }
    /* The k-th largest key, 8 bits a pass from the top: want counts down to its rank among equal keys. */
    uint32_t prefix = 0, mask = 0;
    if (threadIdx.x == 0) want_s = (uint32_t)k;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
        __syncthreads();
        for (int64_t p = threadIdx.x; p < n; p += blockDim.x) {
            const uint32_t key = order_key(sc[p]);
            if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            uint32_t cum = 0, want = want_s;
            int bin = 255;
            for (; bin > 0; bin--) {
                if (cum + hist[bin] >= want) break;
                cum += hist[bin];
            }
            want_s = want - cum;
            prefix_s = prefix | ((uint32_t)bin << shift);
        }
        __syncthreads();
        prefix = prefix_s;
        mask |= 255u << shift;
    }
    const uint32_t thr = prefix;
    const int ties = (int)want_s; /* keys equal to thr that are taken, the earliest first */
    int tie_base = 0, out_base = 0;
    for (int64_t p0 = 0; p0 < n; p0 += blockDim.x) {
        const int64_t p = p0 + threadIdx.x;
        const uint32_t key = p < n ? order_key(sc[p]) : 0u;
        const bool tie = p < n && key == thr;
        int tie_total, out_total;
        const int tie_rank = tie_base + block_excl_count(tie, warp_sums, &tie_total);
        const bool take = p < n && (key > thr || (tie && tie_rank < ties));
        const int at = out_base + block_excl_count(take, warp_sums, &out_total);
        if (take) out[at] = cache_row(pg, seq, p);
        tie_base += tie_total, out_base += out_total;
    }
}

__global__ void kv_append_cols_kernel(fw_cuda_pages pg, int64_t col0, const bf16 *__restrict__ rows, int64_t width,
                                      const int32_t *__restrict__ q_seq, const int32_t *__restrict__ q_len, int64_t T) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < T * width; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / width, d = i % width;
        ((bf16 *)page_row(pg, q_seq[t], q_len[t] - 1))[col0 + d] = rows[i];
    }
}

static bool pages_ok(const fw_cuda_pages *pg) { return pg->W >= 1 && pg->block >= 1 && pg->max_blocks >= 1 && pg->table; }

/* The index key at col0: id codes and the fp32 scale, inside the row, 16-byte aligned. */
static bool key_cols_ok(const fw_cuda_pages *pg, int64_t col0, int64_t id) {
    return col0 >= 0 && col0 + fw_cuda_index_key_cols(id) <= pg->W && (col0 * 2) % 16 == 0 && (pg->W * 2) % 16 == 0 &&
           (pg->block_stride * 2) % 16 == 0 && fw_ptr_align(pg->base) >= 16;
}

extern "C" int fw_cuda_index_keys(fw_cuda_ctx *ctx, const fw_cuda_pages *pg, int64_t col0, const float *k,
                                  const float *w, const float *b, float eps, const float *cos_tab,
                                  const float *sin_tab, const int32_t *q_seq, const int32_t *q_len, int64_t T,
                                  int64_t id, int64_t R) {
    if (T < 0 || id != IX_D || R < 0 || R % 2 || R > id || !pages_ok(pg) || !key_cols_ok(pg, col0, id))
        return fw_cuda_errf(ctx, "fw_cuda_index_keys: bad shape (T %lld, id %lld, R %lld, col0 %lld, W %lld)",
                            (long long)T, (long long)id, (long long)R, (long long)col0, (long long)pg->W);
    if (T == 0) return FW_CUDA_OK;
    index_keys_kernel<<<(unsigned)T, IX_D, 0, ctx->stream>>>(*pg, col0, k, w, b, eps, 1.0f / sqrtf((float)id), cos_tab,
                                                             sin_tab, q_seq, q_len, (int)R);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

extern "C" int fw_cuda_index_queries(fw_cuda_ctx *ctx, uint8_t *q8, float *w, const float *q, const float *cos_tab,
                                     const float *sin_tab, int64_t T, int64_t ih, int64_t id, int64_t R) {
    if (T < 0 || ih < 1 || id != IX_D || R < 0 || R % 2 || R > id || T * ih > 0x7fffffff)
        return fw_cuda_errf(ctx, "fw_cuda_index_queries: bad shape (T %lld, ih %lld, id %lld, R %lld)", (long long)T,
                            (long long)ih, (long long)id, (long long)R);
    if (T == 0) return FW_CUDA_OK;
    const float norm = 1.0f / sqrtf((float)id), wscale = 1.0f / sqrtf((float)ih) / sqrtf((float)id);
    index_queries_kernel<<<(unsigned)(T * ih), IX_D, 0, ctx->stream>>>(q8, w, q, cos_tab, sin_tab, (int)ih, (int)R,
                                                                       norm, wscale);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

extern "C" int fw_cuda_index_scores(fw_cuda_ctx *ctx, float *score, int64_t ld, const uint8_t *q8, const float *w,
                                    const fw_cuda_pages *pg, int64_t col0, const int32_t *q_seq, const int32_t *q_len,
                                    int64_t T, int64_t ih, int64_t id) {
    if (T < 0 || T > 65535 || ld < 1 || id != IX_D || ih < 1 || ih > 64 || !pages_ok(pg) ||
        !key_cols_ok(pg, col0, id))
        return fw_cuda_errf(ctx, "fw_cuda_index_scores: bad shape (T %lld, ld %lld, ih %lld, id %lld, col0 %lld)",
                            (long long)T, (long long)ld, (long long)ih, (long long)id, (long long)col0);
    if (T == 0) return FW_CUDA_OK;
    const dim3 grid((unsigned)fw_ceil_div(ld, IX_SW * 32), (unsigned)T);
    const int mt = (int)fw_ceil_div(ih, 16);
#define IX_SCORES(M)                                                                                           \
    index_scores_kernel<M><<<grid, IX_SW * 32, 0, ctx->stream>>>(score, ld, q8, w, *pg, col0, q_seq, q_len, (int)ih)
    switch (mt) {
    case 1: IX_SCORES(1); break;
    case 2: IX_SCORES(2); break;
    case 3: IX_SCORES(3); break;
    default: IX_SCORES(4); break;
    }
#undef IX_SCORES
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

extern "C" int fw_cuda_index_topk(fw_cuda_ctx *ctx, int32_t *sel, int32_t *n_sel, int32_t *row, const float *score,
                                  int64_t ld, const fw_cuda_pages *pg, const int32_t *q_seq, const int32_t *q_len,
                                  int64_t t0, int64_t T, int64_t k) {
    if (T < 0 || t0 < 0 || k < 1 || ld < 1 || !pages_ok(pg))
        return fw_cuda_errf(ctx, "fw_cuda_index_topk: bad shape (T %lld, k %lld, ld %lld)", (long long)T, (long long)k,
                            (long long)ld);
    if (T == 0) return FW_CUDA_OK;
    index_topk_kernel<<<(unsigned)T, IX_SEL, 0, ctx->stream>>>(sel, n_sel, row, score, ld, *pg, q_seq, q_len, t0, k);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

extern "C" int fw_cuda_kv_append_cols(fw_cuda_ctx *ctx, const fw_cuda_pages *pg, int64_t col0, const fw_bf16 *rows,
                                      int64_t width, const int32_t *q_seq, const int32_t *q_len, int64_t T) {
    if (T < 0 || width < 1 || col0 < 0 || col0 + width > pg->W || !pages_ok(pg))
        return fw_cuda_errf(ctx, "fw_cuda_kv_append_cols: bad shape (T %lld, columns %lld..%lld of %lld)",
                            (long long)T, (long long)col0, (long long)(col0 + width), (long long)pg->W);
    if (T == 0) return FW_CUDA_OK;
    kv_append_cols_kernel<<<fw_grid_1d(T * width, 256), 256, 0, ctx->stream>>>(*pg, col0, (const bf16 *)rows, width,
                                                                                 q_seq, q_len, T);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}
