/* DeepSeek-V3.2's lightning indexer on the GPU (indexer.h): keys, query RoPE,
 * scores and the top-k selection. Scores: a block takes one query and 128
 * positions, the query's heads in shared memory, a thread one key (its fp32 row
 * read once, every head's dot product in registers). Selection: a block takes
 * one query; a radix select over the scores' order-preserving 32-bit keys finds
 * the k-th largest in four 8-bit passes, then one ordered pass compacts the
 * chosen positions (block-wide prefix counts). */
#include "kernels/cuda/indexer.h"
#include "kernels/cuda/mla_decode.h"

#include <math.h>

#define IX_KEYS 128     /* positions per block of the score kernel */
#define IX_SEL 512      /* threads of the select kernel */

__device__ static inline float *key_row(const fw_cuda_pages &pg, int64_t col0, int64_t s, int64_t p) {
    return (float *)((bf16 *)page_row(pg, s, p) + col0);
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

__global__ void index_keys_kernel(fw_cuda_pages pg, int64_t col0, const float *__restrict__ k,
                                  const float *__restrict__ w, const float *__restrict__ b, float eps,
                                  const float *__restrict__ cos_tab, const float *__restrict__ sin_tab,
                                  const int32_t *__restrict__ q_seq, const int32_t *__restrict__ q_len, int id, int R) {
    __shared__ float red[32];
    extern __shared__ float sk[];
    const int64_t t = blockIdx.x;
    const int i = threadIdx.x;
    const float v = i < id ? k[t * id + i] : 0.0f;
    const float mu = block_sum(v, red) / (float)id;
    const float d = i < id ? v - mu : 0.0f;
    const float inv = rsqrtf(block_sum(d * d, red) / (float)id + eps);
    if (i < id) sk[i] = d * inv * w[i] + b[i];
    __syncthreads();
    if (i >= id) return;
    const int h = R / 2;
    const float *cs = cos_tab + t * h, *sn = sin_tab + t * h;
    float out = sk[i];
    if (i < h) out = sk[i] * cs[i] - sk[i + h] * sn[i];
    else if (i < R) out = sk[i - h] * sn[i - h] + sk[i] * cs[i - h];
    key_row(pg, col0, q_seq[t], q_len[t] - 1)[i] = out;
}

__global__ void index_rope_q_kernel(float *q, const float *__restrict__ cos_tab, const float *__restrict__ sin_tab,
                                    int64_t T, int ih, int id, int R) {
    const int h = R / 2;
    for (int64_t x = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; x < T * ih * h; x += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = x / ((int64_t)ih * h);
        const int rem = (int)(x - t * ih * h), hd = rem / h, i = rem - hd * h;
        float *v = q + (t * ih + hd) * id;
        const float c = cos_tab[t * h + i], s = sin_tab[t * h + i], a = v[i], bb = v[i + h];
        v[i] = a * c - bb * s;
        v[i + h] = a * s + bb * c;
    }
}

/* VEC: the key rows and their fp32 keys 16-byte aligned, id a multiple of 4:
 * four values of a key and of each head's query a load (four FMAs a shared
 * memory read instead of one). */
template <int IH, bool VEC>
__global__ void __launch_bounds__(IX_KEYS) index_scores_kernel(float *score, int64_t ld, const float *__restrict__ q,
                                                               const float *__restrict__ w, fw_cuda_pages pg,
                                                               int64_t col0, const int32_t *__restrict__ q_seq,
                                                               const int32_t *__restrict__ q_len, int id) {
    extern __shared__ __align__(16) float qs[]; /* [IH][id], then [IH] weights */
    float *ws = qs + IH * id;
    const int64_t t = blockIdx.y;
    const float scale = rsqrtf((float)id), wscale = rsqrtf((float)IH);
    for (int i = threadIdx.x; i < IH * id; i += blockDim.x) qs[i] = q[t * IH * id + i];
    for (int i = threadIdx.x; i < IH; i += blockDim.x) ws[i] = w[t * IH + i] * wscale;
    __syncthreads();
    const int64_t s = (int64_t)blockIdx.x * IX_KEYS + threadIdx.x, n = q_len[t];
    if (s >= ld) return;
    if (s >= n) {
        score[t * ld + s] = -INFINITY;
        return;
    }
    const float *k = key_row(pg, col0, q_seq[t], s);
    float acc[IH];
#pragma unroll
    for (int h = 0; h < IH; h++) acc[h] = 0.0f;
    if (VEC) {
        for (int d = 0; d < id; d += 4) {
            const float4 kv = *(const float4 *)(k + d);
#pragma unroll
            for (int h = 0; h < IH; h++) {
                const float4 qv = *(const float4 *)(qs + h * id + d);
                acc[h] += qv.x * kv.x + qv.y * kv.y + qv.z * kv.z + qv.w * kv.w;
            }
        }
    } else {
        for (int d = 0; d < id; d++) {
            const float kv = k[d];
#pragma unroll
            for (int h = 0; h < IH; h++) acc[h] += qs[h * id + d] * kv;
        }
    }
    float r = 0.0f;
#pragma unroll
    for (int h = 0; h < IH; h++) {
        const float dd = acc[h] * scale;
        if (dd > 0.0f) r += ws[h] * dd;
    }
    score[t * ld + s] = r;
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

extern "C" int fw_cuda_index_keys(fw_cuda_ctx *ctx, const fw_cuda_pages *pg, int64_t col0, const float *k,
                                  const float *w, const float *b, float eps, const float *cos_tab,
                                  const float *sin_tab, const int32_t *q_seq, const int32_t *q_len, int64_t T,
                                  int64_t id, int64_t R) {
    if (T < 0 || id < 1 || id > 1024 || R < 0 || R % 2 || R > id || !pages_ok(pg) || col0 < 0 ||
        col0 + 2 * id > pg->W || col0 % 2)
        return fw_cuda_errf(ctx, "fw_cuda_index_keys: bad shape (T %lld, id %lld, R %lld, col0 %lld, W %lld)",
                            (long long)T, (long long)id, (long long)R, (long long)col0, (long long)pg->W);
    if (T == 0) return FW_CUDA_OK;
    const int threads = (int)fw_round_up(id, 32);
    index_keys_kernel<<<(unsigned)T, threads, (size_t)id * sizeof(float), ctx->stream>>>(
        *pg, col0, k, w, b, eps, cos_tab, sin_tab, q_seq, q_len, (int)id, (int)R);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

extern "C" int fw_cuda_index_rope_q(fw_cuda_ctx *ctx, float *q, const float *cos_tab, const float *sin_tab, int64_t T,
                                    int64_t ih, int64_t id, int64_t R) {
    if (T < 0 || ih < 1 || R < 0 || R % 2 || R > id)
        return fw_cuda_errf(ctx, "fw_cuda_index_rope_q: bad shape (T %lld, ih %lld, id %lld, R %lld)", (long long)T,
                            (long long)ih, (long long)id, (long long)R);
    if (T == 0 || R == 0) return FW_CUDA_OK;
    index_rope_q_kernel<<<fw_grid_1d(T * ih * (R / 2), 256), 256, 0, ctx->stream>>>(q, cos_tab, sin_tab, T, (int)ih,
                                                                                     (int)id, (int)R);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

extern "C" int fw_cuda_index_scores(fw_cuda_ctx *ctx, float *score, int64_t ld, const float *q, const float *w,
                                    const fw_cuda_pages *pg, int64_t col0, const int32_t *q_seq, const int32_t *q_len,
                                    int64_t T, int64_t ih, int64_t id) {
    const size_t smem = (size_t)(ih * id + ih) * sizeof(float);
    if (T < 0 || T > 65535 || ld < 1 || id < 1 || !pages_ok(pg) || col0 < 0 || col0 + 2 * id > pg->W ||
        smem > 48 * 1024)
        return fw_cuda_errf(ctx, "fw_cuda_index_scores: bad shape (T %lld, ld %lld, ih %lld, id %lld)", (long long)T,
                            (long long)ld, (long long)ih, (long long)id);
    if (T == 0) return FW_CUDA_OK;
    const dim3 grid((unsigned)fw_ceil_div(ld, IX_KEYS), (unsigned)T);
    const bool vec = id % 4 == 0 && (pg->W * 2) % 16 == 0 && (pg->block_stride * 2) % 16 == 0 && (col0 * 2) % 16 == 0 &&
                     fw_ptr_align(pg->base) >= 16;
#define IX_SCORES(N)                                                                                             \
    (vec ? index_scores_kernel<N, true><<<grid, IX_KEYS, smem, ctx->stream>>>(score, ld, q, w, *pg, col0, q_seq,   \
                                                                               q_len, (int)id)                  \
         : index_scores_kernel<N, false><<<grid, IX_KEYS, smem, ctx->stream>>>(score, ld, q, w, *pg, col0, q_seq,  \
                                                                                q_len, (int)id))
    switch (ih) {
    case 8: IX_SCORES(8); break;
    case 16: IX_SCORES(16); break;
    case 32: IX_SCORES(32); break;
    case 64: IX_SCORES(64); break;
    default: return fw_cuda_errf(ctx, "fw_cuda_index_scores: %lld indexer heads (8, 16, 32 or 64 run)", (long long)ih);
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
