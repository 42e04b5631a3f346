/* DeepSeekMoE's routed experts on the device, with no host synchronisation (so a
 * decode step can be captured in a CUDA graph):
 *
 * - fw_cuda_moe_group: one block counts the (token, slot) pairs per local expert,
 *   scans the counts into row offsets, and writes the grouped row of every pair,
 *   the list of experts with few rows and the list of 64-row tiles of the others.
 * - fw_cuda_moe_matmul: every local expert's rows times its weights in two
 *   launches sized by upper bounds (blocks past the device-side counts exit):
 *   experts with at most MOE_SMALL rows (decode) stream their weights once in a
 *   warp-per-output-row kernel (16-byte loads, four in flight per lane); larger groups (prefill) run 64 x 64 tiles on the
 *   tensor cores (wmma bf16, fp32 accumulation). FP8 weights enter the tensor
 *   cores as their exact bf16 values, and each 128-wide K block's partial sum is
 *   multiplied by its block scale, so nothing is widened in memory.
 * - fw_cuda_moe_combine: y[t] += sum_j w[t, j] * expert output of slot j, in slot
 *   order, so the result does not depend on how pairs were grouped. */
#include <cub/block/block_scan.cuh>
#include <mma.h>

#include "kernels/cuda/cuda_common.h"

#define MOE_SMALL 8
#define MOE_BM 64
#define MOE_BN 64
#define MOE_BK 32
#define MOE_TILE_THREADS 128
#define MOE_GEMV_THREADS 256
#define GROUP_THREADS 1024

using namespace nvcuda;

static int64_t tile_cap(int64_t n_pairs) { return n_pairs / MOE_BM + n_pairs / (MOE_SMALL + 1) + 2; }

extern "C" size_t fw_cuda_moe_plan_bytes(int64_t n_pairs, int64_t n_exp) {
    int64_t ints = (n_exp + 1) + 2 * n_pairs + n_exp + 2 * tile_cap(n_pairs) + 2;
    return (size_t)ints * sizeof(int32_t);
}

/* Experts per thread in the scans: n_exp <= GROUP_THREADS * GROUP_ITEMS. */
#define GROUP_ITEMS 4

__global__ void __launch_bounds__(GROUP_THREADS)
moe_group_kernel(fw_cuda_moe_plan pl, const int32_t *__restrict__ ids, int P, int e0, int n_exp, int cap) {
    typedef cub::BlockScan<int, GROUP_THREADS> scan_t;
    __shared__ typename scan_t::TempStorage scan_tmp;
    __shared__ int totals[3];
    extern __shared__ int32_t sh[];
    int32_t *cnt = sh, *fill = sh + n_exp, *off = sh + 2 * n_exp; /* off: n_exp + 1 */
    for (int i = threadIdx.x; i < n_exp; i += blockDim.x) cnt[i] = 0, fill[i] = 0;
    __syncthreads();
    for (int p = threadIdx.x; p < P; p += blockDim.x) {
        int e = ids[p] - e0;
        if (e >= 0 && e < n_exp) atomicAdd(&cnt[e], 1);
    }
    __syncthreads();
    /* Three scans over the experts in order (thread i holds experts GROUP_ITEMS i ..):
     * row offsets, positions in the list of small experts, first tile of each. */
    int c[GROUP_ITEMS], rows[GROUP_ITEMS], small[GROUP_ITEMS], tiles[GROUP_ITEMS];
#pragma unroll
    for (int j = 0; j < GROUP_ITEMS; j++) {
        const int e = GROUP_ITEMS * threadIdx.x + j;
        c[j] = e < n_exp ? cnt[e] : 0;
        small[j] = c[j] > 0 && c[j] <= MOE_SMALL;
        tiles[j] = c[j] > MOE_SMALL ? (c[j] + MOE_BM - 1) / MOE_BM : 0;
    }
    scan_t(scan_tmp).ExclusiveSum(c, rows, totals[0]);
    __syncthreads();
    scan_t(scan_tmp).ExclusiveSum(small, small, totals[1]);
    __syncthreads();
    scan_t(scan_tmp).ExclusiveSum(tiles, tiles, totals[2]);
#pragma unroll
    for (int j = 0; j < GROUP_ITEMS; j++) {
        const int e = GROUP_ITEMS * threadIdx.x + j;
        if (e >= n_exp) break;
        off[e] = rows[j];
        pl.offsets[e] = rows[j];
        if (c[j] > 0 && c[j] <= MOE_SMALL) pl.small[small[j]] = e;
        for (int r = 0, nt = tiles[j]; c[j] > MOE_SMALL && r < c[j] && nt < cap; r += MOE_BM, nt++) {
            pl.tiles[2 * nt] = e;
            pl.tiles[2 * nt + 1] = r;
        }
    }
    __syncthreads(); /* totals and off are complete */
    if (threadIdx.x == 0) {
        off[n_exp] = totals[0];
        pl.offsets[n_exp] = totals[0];
        pl.counts[0] = totals[1];
        pl.counts[1] = min(totals[2], cap);
    }
    __syncthreads();
    for (int p = threadIdx.x; p < P; p += blockDim.x) {
        int e = ids[p] - e0, r = -1;
        if (e >= 0 && e < n_exp) {
            r = off[e] + atomicAdd(&fill[e], 1);
            pl.rows[r] = p;
        }
        pl.slot_row[p] = r;
    }
}

extern "C" int fw_cuda_moe_group(fw_cuda_ctx *ctx, fw_cuda_moe_plan *pl, void *mem, const int32_t *ids, int64_t T,
                                 int64_t k, int64_t e0, int64_t n_exp) {
    int64_t P = T * k;
    if (T < 0 || k < 1 || n_exp < 1 || e0 < 0 || P > 0x7fffffffLL || n_exp > GROUP_THREADS * GROUP_ITEMS)
        return fw_cuda_errf(ctx, "fw_cuda_moe_group: bad shape (T %lld, k %lld, experts %lld)", (long long)T,
                            (long long)k, (long long)n_exp);
    int32_t *m = (int32_t *)mem;
    pl->n_pairs = P;
    pl->n_exp = n_exp;
    pl->tile_cap = tile_cap(P);
    pl->offsets = m, m += n_exp + 1;
    pl->rows = m, m += P;
    pl->slot_row = m, m += P;
    pl->small = m, m += n_exp;
    pl->tiles = m, m += 2 * pl->tile_cap;
    pl->counts = m;
    size_t shmem = (size_t)(3 * n_exp + 1) * sizeof(int32_t);
    moe_group_kernel<<<1, GROUP_THREADS, shmem, ctx->stream>>>(*pl, ids, (int)P, (int)e0, (int)n_exp,
                                                               (int)pl->tile_cap);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

/* Expert e's weights: w0's data advanced by e * wstride elements, its scales by e * sstride. */
template <int WT>
__device__ __forceinline__ fw_wview expert_view(fw_wview w, int e, int64_t wstride, int64_t sstride) {
    int64_t es = WT == FW_WTYPE_F32 ? 4 : WT == FW_WTYPE_BF16 ? 2 : 1;
    w.data = (const char *)w.data + (int64_t)e * wstride * es;
    if (WT == FW_WTYPE_FP8) w.scale += (int64_t)e * sstride;
    return w;
}

__device__ __forceinline__ const bf16 *x_row(const bf16 *x, const int32_t *rows, bool gather, int k, int r,
                                             int64_t K) {
    return x + (int64_t)(gather ? rows[r] / k : r) * K;
}

/* How a lane reads W (as matmul_own.cu's gemv): one element, 8 elements, or
 * 16-byte pieces with MOE_WIDE_U in flight, streamed past L1 (FP8: 16 values,
 * scaled once per 16 products; BF16: 8). */
enum { MOE_LOAD_ONE, MOE_LOAD_8, MOE_LOAD_WIDE };
#define MOE_WIDE_U 4

/* Experts with 1..MOE_SMALL rows: a warp per output row n streams W_e's row once. */
template <int WT, int LOAD>
__global__ void __launch_bounds__(MOE_GEMV_THREADS)
moe_gemv_kernel(bf16 *__restrict__ y, const bf16 *__restrict__ x, bool gather, int k, fw_wview w0, int64_t wstride,
                int64_t sstride, int64_t N, int64_t K, fw_cuda_moe_plan pl) {
    if ((int)blockIdx.y >= pl.counts[0]) return;
    const int e = pl.small[blockIdx.y], lane = threadIdx.x & 31;
    const int64_t n = (int64_t)blockIdx.x * (MOE_GEMV_THREADS / 32) + (threadIdx.x >> 5);
    if (n >= N) return;
    const int r0 = pl.offsets[e], cnt = pl.offsets[e + 1] - r0;
    const fw_wview w = expert_view<WT>(w0, e, wstride, sstride);
    const bf16 *xr[MOE_SMALL];
    float acc[MOE_SMALL];
#pragma unroll
    for (int i = 0; i < MOE_SMALL; i++) {
        xr[i] = i < cnt ? x_row(x, pl.rows, gather, k, r0 + i, K) : x;
        acc[i] = 0.0f;
    }
    if (LOAD == MOE_LOAD_WIDE) {
        constexpr int E = WT == FW_WTYPE_FP8 ? 16 : 8, ES = WT == FW_WTYPE_FP8 ? 1 : 2;
        const uint8_t *row = (const uint8_t *)w.data + n * w.ld * ES;
        const float *srow = WT == FW_WTYPE_FP8 ? w.scale + (n >> 7) * w.scale_ld : nullptr;
        for (int64_t k0 = (int64_t)lane * E; k0 < K; k0 += 32 * E * MOE_WIDE_U) {
            uint4 wv[MOE_WIDE_U];
#pragma unroll
            for (int u = 0; u < MOE_WIDE_U; u++) {
                const int64_t kk = k0 + (int64_t)u * 32 * E;
                if (kk < K) wv[u] = __ldcs((const uint4 *)(row + kk * ES));
            }
#pragma unroll
            for (int u = 0; u < MOE_WIDE_U; u++) {
                const int64_t kk = k0 + (int64_t)u * 32 * E;
                if (kk >= K) break;
                float f[E];
                fw_unpack16<WT>(wv[u], f);
                const float sc = WT == FW_WTYPE_FP8 ? srow[kk >> 7] : 1.0f;
#pragma unroll
                for (int i = 0; i < MOE_SMALL; i++) {
                    if (i >= cnt) break;
                    float d = 0.0f;
#pragma unroll
                    for (int c = 0; c < E; c += 8) {
                        float xv[8];
                        fw_load8<FW_WTYPE_BF16>(xr[i], kk + c, xv);
#pragma unroll
                        for (int q = 0; q < 8; q++) d = fmaf(f[c + q], xv[q], d);
                    }
                    acc[i] = fmaf(sc, d, acc[i]);
                }
            }
        }
    } else if (LOAD == MOE_LOAD_8) {
        const float *srow = WT == FW_WTYPE_FP8 ? w.scale + (n >> 7) * w.scale_ld : nullptr;
        for (int64_t kk = (int64_t)lane * 8; kk < K; kk += 32 * 8) {
            float wv[8];
            fw_load8<WT>(w.data, n * w.ld + kk, wv);
            const float sc = WT == FW_WTYPE_FP8 ? srow[kk >> 7] : 1.0f;
#pragma unroll
            for (int i = 0; i < MOE_SMALL; i++) {
                if (i >= cnt) break;
                float xv[8], d = 0.0f;
                fw_load8<FW_WTYPE_BF16>(xr[i], kk, xv);
#pragma unroll
                for (int q = 0; q < 8; q++) d = fmaf(wv[q], xv[q], d);
                acc[i] = fmaf(sc, d, acc[i]);
            }
        }
    } else {
        for (int64_t kk = lane; kk < K; kk += 32) {
            float wv = fw_wget<WT>(w, n, kk);
#pragma unroll
            for (int i = 0; i < MOE_SMALL; i++)
                if (i < cnt) acc[i] = fmaf(wv, fw_bf2f(xr[i][kk]), acc[i]);
        }
    }
#pragma unroll
    for (int i = 0; i < MOE_SMALL; i++) {
        float v = fw_warp_sum(acc[i]);
        if (lane == 0 && i < cnt) y[(int64_t)(r0 + i) * N + n] = fw_f2bf(v);
    }
}

/* Larger groups: a 64-row tile of one expert's rows times 64 outputs on the tensor
 * cores; 4 warps, each 32 x 32 of the tile. */
template <int WT>
__global__ void __launch_bounds__(MOE_TILE_THREADS)
moe_tile_kernel(bf16 *__restrict__ y, const bf16 *__restrict__ x, bool gather, int k, fw_wview w0, int64_t wstride,
                int64_t sstride, int64_t N, int64_t K, fw_cuda_moe_plan pl) {
    if ((int)blockIdx.y >= pl.counts[1]) return;
    const int e = pl.tiles[2 * blockIdx.y], rbeg = pl.offsets[e] + pl.tiles[2 * blockIdx.y + 1];
    const int cnt = min(MOE_BM, pl.offsets[e + 1] - rbeg);
    const int64_t n0 = (int64_t)blockIdx.x * MOE_BN;
    const fw_wview w = expert_view<WT>(w0, e, wstride, sstride);
    __shared__ __align__(32) bf16 As[MOE_BM][MOE_BK + 8];
    __shared__ __align__(32) bf16 Bs[MOE_BN][MOE_BK + 8];
    __shared__ __align__(32) float Cs[MOE_BM][MOE_BN + 4];
    __shared__ const bf16 *arow[MOE_BM];
    const int tid = threadIdx.x, warp = tid >> 5, wm = warp >> 1, wn = warp & 1;
    if (tid < MOE_BM) arow[tid] = tid < cnt ? x_row(x, pl.rows, gather, k, rbeg + tid, K) : nullptr;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2], part[2][2];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.0f), wmma::fill_fragment(part[i][j], 0.0f);
    __syncthreads();
    /* Each thread loads 16 consecutive k of one row of A and of B per step. */
    const int lr = tid >> 1, lk = (tid & 1) * 16;
    for (int64_t k0 = 0; k0 < K; k0 += MOE_BK) {
        const bf16 *a = arow[lr];
        const int64_t n = n0 + lr;
#pragma unroll
        for (int i = 0; i < 16; i++) {
            int64_t kk = k0 + lk + i;
            As[lr][lk + i] = (a && kk < K) ? a[kk] : fw_f2bf(0.0f);
            float bv = 0.0f;
            if (n < N && kk < K) {
                int64_t off = n * w.ld + kk;
                if (WT == FW_WTYPE_FP8) bv = fw_fp8_to_f32(((const uint8_t *)w.data)[off]); /* exact in bf16 */
                else if (WT == FW_WTYPE_BF16) bv = fw_bf2f(((const bf16 *)w.data)[off]);
                else bv = ((const float *)w.data)[off];
            }
            Bs[lr][lk + i] = fw_f2bf(bv);
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < MOE_BK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb[2];
#pragma unroll
            for (int i = 0; i < 2; i++) wmma::load_matrix_sync(fa[i], &As[wm * 32 + i * 16][kk], MOE_BK + 8);
#pragma unroll
            for (int j = 0; j < 2; j++) wmma::load_matrix_sync(fb[j], &Bs[wn * 32 + j * 16][kk], MOE_BK + 8);
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 2; j++) {
                    if (WT == FW_WTYPE_FP8) wmma::mma_sync(part[i][j], fa[i], fb[j], part[i][j]);
                    else wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
                }
        }
        __syncthreads();
        /* FP8: the tile's rows lie in one 128-row scale block (n0 % 64 == 0, r0 == 0);
         * close a K block's partial sum with its scale. */
        if (WT == FW_WTYPE_FP8 && ((k0 + MOE_BK) % FW_FP8_BLOCK == 0 || k0 + MOE_BK >= K)) {
            const float s = w.scale[(n0 >> 7) * w.scale_ld + (k0 >> 7)];
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 2; j++) {
#pragma unroll
                    for (int q = 0; q < acc[i][j].num_elements; q++) acc[i][j].x[q] += s * part[i][j].x[q];
                    wmma::fill_fragment(part[i][j], 0.0f);
                }
        }
    }
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++)
            wmma::store_matrix_sync(&Cs[wm * 32 + i * 16][wn * 32 + j * 16], acc[i][j], MOE_BN + 4,
                                    wmma::mem_row_major);
    __syncthreads();
    for (int idx = tid; idx < MOE_BM * MOE_BN; idx += MOE_TILE_THREADS) {
        int r = idx / MOE_BN, c = idx % MOE_BN;
        if (r < cnt && n0 + c < N) y[(int64_t)(rbeg + r) * N + n0 + c] = fw_f2bf(Cs[r][c]);
    }
}

template <int WT>
static void launch_moe(bf16 *y, const bf16 *x, bool gather, int k, const fw_wview &w, int64_t wstride,
                       int64_t sstride, int64_t N, int64_t K, const fw_cuda_moe_plan &pl, cudaStream_t st) {
    int64_t small_cap = pl.n_exp < pl.n_pairs ? pl.n_exp : pl.n_pairs;
    const int64_t es = (int64_t)fw_wtype_size((fw_wtype)WT);
    /* 8-element loads need 8-aligned rows of W (every expert) and of x. */
    const bool vec = K % 8 == 0 && w.ld % 8 == 0 && wstride % 8 == 0 && fw_ptr_align(w.data) >= (unsigned)(8 * es) &&
                     fw_ptr_align(x) >= 16;
    /* 16-byte chunks of W: rows and expert strides 16-byte aligned, FP8 chunks inside a scale block. */
    const bool wide = vec && WT != FW_WTYPE_F32 && K % 16 == 0 && (w.ld * es) % 16 == 0 && (wstride * es) % 16 == 0 &&
                      fw_ptr_align(w.data) >= 16;
    if (small_cap > 0) {
        dim3 g((unsigned)fw_ceil_div(N, MOE_GEMV_THREADS / 32), (unsigned)small_cap);
        if (wide) moe_gemv_kernel<WT, MOE_LOAD_WIDE><<<g, MOE_GEMV_THREADS, 0, st>>>(y, x, gather, k, w, wstride, sstride, N, K, pl);
        else if (vec) moe_gemv_kernel<WT, MOE_LOAD_8><<<g, MOE_GEMV_THREADS, 0, st>>>(y, x, gather, k, w, wstride, sstride, N, K, pl);
        else moe_gemv_kernel<WT, MOE_LOAD_ONE><<<g, MOE_GEMV_THREADS, 0, st>>>(y, x, gather, k, w, wstride, sstride, N, K, pl);
    }
    if (pl.n_pairs > MOE_SMALL) {
        dim3 g((unsigned)fw_ceil_div(N, MOE_BN), (unsigned)pl.tile_cap);
        moe_tile_kernel<WT><<<g, MOE_TILE_THREADS, 0, st>>>(y, x, gather, k, w, wstride, sstride, N, K, pl);
    }
}

extern "C" int fw_cuda_moe_matmul(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_bf16 *x, bool gather, int64_t k,
                                  const fw_weight *w0, int64_t wstride, int64_t sstride, const fw_cuda_moe_plan *pl) {
    const int64_t N = w0->rows, K = w0->cols;
    if (N < 1 || K < 1 || k < 1 || pl->tile_cap > 65535 || pl->n_exp > 65535)
        return fw_cuda_errf(ctx, "fw_cuda_moe_matmul: bad shape (N %lld, K %lld, %lld pairs)", (long long)N,
                            (long long)K, (long long)pl->n_pairs);
    if (w0->type == FW_WTYPE_FP8 && (w0->r0 != 0 || w0->c0 != 0))
        return fw_cuda_errf(ctx, "fw_cuda_moe_matmul: FP8 expert weights must start at a scale block");
    if (pl->n_pairs == 0) return FW_CUDA_OK;
    fw_wview v = fw_wview_of(w0);
    const bf16 *xb = (const bf16 *)x;
    bf16 *yb = (bf16 *)y;
    if (w0->type == FW_WTYPE_F32) launch_moe<FW_WTYPE_F32>(yb, xb, gather, (int)k, v, wstride, sstride, N, K, *pl, ctx->stream);
    else if (w0->type == FW_WTYPE_BF16) launch_moe<FW_WTYPE_BF16>(yb, xb, gather, (int)k, v, wstride, sstride, N, K, *pl, ctx->stream);
    else launch_moe<FW_WTYPE_FP8>(yb, xb, gather, (int)k, v, wstride, sstride, N, K, *pl, ctx->stream);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

__global__ void moe_combine_kernel(bf16 *__restrict__ y, const bf16 *__restrict__ ye, const float *__restrict__ w,
                                   const int32_t *__restrict__ slot_row, int64_t T, int k, int64_t D) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < T * D; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / D, d = i % D;
        float acc = fw_bf2f(y[i]);
        for (int j = 0; j < k; j++) {
            int r = slot_row[t * k + j];
            if (r >= 0) acc = fmaf(w[t * k + j], fw_bf2f(ye[(int64_t)r * D + d]), acc);
        }
        y[i] = fw_f2bf(acc);
    }
}

extern "C" int fw_cuda_moe_combine(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_bf16 *ye, const float *w,
                                   const fw_cuda_moe_plan *pl, int64_t T, int64_t k, int64_t D) {
    if (T < 0 || k < 1 || D < 1 || T * k != pl->n_pairs)
        return fw_cuda_errf(ctx, "fw_cuda_moe_combine: bad shape (T %lld, k %lld, D %lld)", (long long)T,
                            (long long)k, (long long)D);
    if (T == 0) return FW_CUDA_OK;
    moe_combine_kernel<<<fw_grid_1d(T * D, 256), 256, 0, ctx->stream>>>((bf16 *)y, (const bf16 *)ye, w, pl->slot_row,
                                                                       T, (int)k, D);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

__global__ void moe_gather_kernel(bf16 *__restrict__ xg, const bf16 *__restrict__ x, fw_cuda_moe_plan pl, int k,
                                  int64_t D) {
    const int64_t n = (int64_t)pl.offsets[pl.n_exp] * D;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        xg[i] = x[(int64_t)(pl.rows[i / D] / k) * D + i % D];
}

extern "C" int fw_cuda_moe_gather(fw_cuda_ctx *ctx, fw_bf16 *xg, const fw_bf16 *x, const fw_cuda_moe_plan *pl,
                                  int64_t k, int64_t D) {
    if (k < 1 || D < 1) return fw_cuda_errf(ctx, "fw_cuda_moe_gather: bad shape (k %lld, D %lld)", (long long)k, (long long)D);
    if (pl->n_pairs == 0) return FW_CUDA_OK;
    moe_gather_kernel<<<fw_grid_1d(pl->n_pairs * D, 256), 256, 0, ctx->stream>>>((bf16 *)xg, (const bf16 *)x, *pl,
                                                                                (int)k, D);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}
