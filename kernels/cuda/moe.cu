/* DeepSeekMoE's routed experts on the device, with no host synchronisation (so a
 * decode step can be captured in a CUDA graph):
 *
 * - fw_cuda_moe_group: one block counts the (token, slot) pairs per local expert,
 *   scans the counts into row offsets, and writes the grouped row of every pair,
 *   the list of experts with few rows (by class of row count) and the list of
 *   64-row tiles of the others.
 * - fw_cuda_moe_matmul: every local expert's rows times its weights in two
 *   launches sized by upper bounds (blocks past the device-side counts exit):
 *   experts with at most MOE_SMALL rows (decode) stream their weights once in a
 *   warp-per-output-row kernel (16-byte loads, four in flight per lane), one
 *   launch per class of row count (1, 2, 4, 8: the accumulators held); larger
 *   groups (prefill) run 64 x 128 tiles on the tensor cores (moe_mma_kernel:
 *   mma.sync bf16 with fp32 accumulation, fed by a 3-stage cp.async pipeline;
 *   FP8 weights on compute capability 9.0 take moe_wgmma.cu's warpgroup MMA).
 *   FP8 weights enter the tensor cores as their exact bf16 values, converted in
 *   registers, and each 128-wide K block's partial sum is multiplied by its block
 *   scale, so nothing is widened in memory. F32 weights and rows that are not
 *   16-byte aligned take the simpler wmma kernel (moe_tile_kernel).
 * - fw_cuda_moe_combine: y[t] += sum_j w[t, j] * expert output of slot j, in slot
 *   order, so the result does not depend on how pairs were grouped. */
#include <cub/block/block_scan.cuh>
#include <mma.h>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/tc.h"
#include "kernels/cuda/int4_tc.h"
#include "kernels/cuda/moe_tiles.h"

#define MOE_SMALL 8 /* 16 (9..16 rows in the tensor-core GEMV, not in tiles): the same at batch 256, 4.27 vs 4.26 ms a layer */
#define MOE_BN 64
#define MOE_BK 32
#define MOE_TILE_THREADS 128
#define MOE_GEMV_THREADS 256
#define GROUP_THREADS 1024

using namespace nvcuda;

/* The small experts by row count, in classes of at most 1, 2, 4 and MOE_SMALL
 * rows: each class has its own GEMV launch, whose accumulators are its width
 * (at batch 8, most of 256 experts get one row: the widest kernel would hold
 * 8 accumulators and a quarter of the warps). */
#define MOE_CLASSES 4
__host__ __device__ static inline int moe_class(int rows) { return rows <= 1 ? 0 : rows <= 2 ? 1 : rows <= 4 ? 2 : 3; }
/* plan.counts: [0] small experts, [1] tiles, [2 + c] the start of class c in plan.small, [2 + MOE_CLASSES] its end */
#define MOE_COUNTS (3 + MOE_CLASSES)

/* Tiles of MOE_BM rows: sum over experts with more than MOE_SMALL rows of
 * ceil(c / MOE_BM) <= n_pairs / MOE_BM + (the number of such experts). The bound
 * sizes the tile grid, whose blocks past the real count exit at once. */
static int64_t tile_cap(int64_t n_pairs, int64_t n_exp) {
    const int64_t big = n_pairs / (MOE_SMALL + 1);
    return n_pairs / MOE_BM + (n_exp < big ? n_exp : big) + 2;
}

extern "C" size_t fw_cuda_moe_plan_bytes(int64_t n_pairs, int64_t n_exp) {
    int64_t ints = (n_exp + 1) + 2 * n_pairs + n_exp + 2 * tile_cap(n_pairs, n_exp) + MOE_COUNTS;
    return (size_t)ints * sizeof(int32_t);
}

/* Experts per thread in the scans: n_exp <= GROUP_THREADS * GROUP_ITEMS. */
#define GROUP_ITEMS 4

__global__ void __launch_bounds__(GROUP_THREADS)
moe_group_kernel(fw_cuda_moe_plan pl, const int32_t *__restrict__ ids, int P, int T, int e0, int n_exp, int cap) {
    typedef cub::BlockScan<int, GROUP_THREADS> scan_t;
    typedef cub::BlockScan<unsigned long long, GROUP_THREADS> sscan_t;
    __shared__ typename scan_t::TempStorage scan_tmp;
    __shared__ typename sscan_t::TempStorage sscan_tmp;
    __shared__ unsigned long long class_tot;
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
    /* small: the expert's place in its class, as 16-bit fields of one 64-bit scan (n_exp < 65536);
     * classes wider than T's are launched for no batch, their experts (ids repeated within a token) go to T's */
    const int top = moe_class(T);
    int c[GROUP_ITEMS], rows[GROUP_ITEMS], tiles[GROUP_ITEMS];
    unsigned long long small[GROUP_ITEMS];
#pragma unroll
    for (int j = 0; j < GROUP_ITEMS; j++) {
        const int e = GROUP_ITEMS * threadIdx.x + j;
        c[j] = e < n_exp ? cnt[e] : 0;
        small[j] = c[j] > 0 && c[j] <= MOE_SMALL ? 1ull << (16 * min(moe_class(c[j]), top)) : 0ull;
        tiles[j] = c[j] > MOE_SMALL ? (c[j] + MOE_BM - 1) / MOE_BM : 0;
    }
    scan_t(scan_tmp).ExclusiveSum(c, rows, totals[0]);
    __syncthreads();
    scan_t(scan_tmp).ExclusiveSum(tiles, tiles, totals[2]);
    __syncthreads();
    sscan_t(sscan_tmp).ExclusiveSum(small, small, class_tot);
    __syncthreads(); /* class_tot is complete */
    int class0[MOE_CLASSES + 1]; /* the start of each class in pl.small */
    class0[0] = 0;
#pragma unroll
    for (int q = 0; q < MOE_CLASSES; q++) class0[q + 1] = class0[q] + (int)((class_tot >> (16 * q)) & 0xffff);
#pragma unroll
    for (int j = 0; j < GROUP_ITEMS; j++) {
        const int e = GROUP_ITEMS * threadIdx.x + j;
        if (e >= n_exp) break;
        off[e] = rows[j];
        pl.offsets[e] = rows[j];
        if (c[j] > 0 && c[j] <= MOE_SMALL) {
            const int q = min(moe_class(c[j]), top);
            pl.small[class0[q] + (int)((small[j] >> (16 * q)) & 0xffff)] = e;
        }
        for (int r = 0, nt = tiles[j]; c[j] > MOE_SMALL && r < c[j] && nt < cap; r += MOE_BM, nt++) {
            pl.tiles[2 * nt] = e;
            pl.tiles[2 * nt + 1] = r;
        }
    }
    __syncthreads(); /* totals and off are complete */
    if (threadIdx.x == 0) {
        off[n_exp] = totals[0];
        pl.offsets[n_exp] = totals[0];
        pl.counts[0] = class0[MOE_CLASSES];
        pl.counts[1] = min(totals[2], cap);
#pragma unroll
        for (int q = 0; q <= MOE_CLASSES; q++) pl.counts[2 + q] = class0[q];
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
    pl->tile_cap = tile_cap(P, n_exp);
    pl->offsets = m, m += n_exp + 1;
    pl->rows = m, m += P;
    pl->slot_row = m, m += P;
    pl->small = m, m += n_exp;
    pl->tiles = m, m += 2 * pl->tile_cap;
    pl->counts = m;
    size_t shmem = (size_t)(3 * n_exp + 1) * sizeof(int32_t);
    moe_group_kernel<<<1, GROUP_THREADS, shmem, ctx->stream>>>(*pl, ids, (int)P, (int)T, (int)e0, (int)n_exp,
                                                               (int)pl->tile_cap);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

/* How a lane reads W (as matmul_own.cu's gemv): one element, 8 elements, or
 * 16-byte pieces with MOE_WIDE_U in flight, streamed past L1 (FP8: 16 values,
 * scaled once per 16 products; BF16: 8). */
enum { MOE_LOAD_ONE, MOE_LOAD_8, MOE_LOAD_WIDE };
#define MOE_WIDE_U 4

/* Experts with 1..MOE_SMALL rows: a warp streams W_e's row n once for up to MT
 * of the expert's rows (more rows take further passes). MT is the width of the
 * expert's class of row count (moe_class), so batch 1 keeps one accumulator and
 * few registers: many warps per SM and so many bytes in flight, which is what a
 * GEMV's speed is. GU (the SwiGLU gate): the warp reads row n of the gate's and
 * of the up projection's weights (w0, w1) together, half the loads in flight for
 * each, and writes silu(g) * u. (Two weight rows per warp with all loads of each
 * in flight, for the down projection's short rows too, would leave fewer warps
 * per SM: slower at batch 1.) */
template <int WT, int LOAD, int MT, bool GU>
__global__ void __launch_bounds__(MOE_GEMV_THREADS, MT == 1 ? 4 : 1)
moe_gemv_kernel(bf16 *__restrict__ y, const bf16 *__restrict__ x, bool gather, int k, fw_wview w0, fw_wview w1,
                int64_t wstride, int64_t sstride, int64_t N, int64_t K, fw_cuda_moe_plan pl, int cls) {
    constexpr int NW = GU ? 2 : 1, U = MOE_WIDE_U / NW; /* the same 16-byte loads in flight either way */
    const int i0 = pl.counts[2 + cls] + (int)blockIdx.y;
    if (i0 >= pl.counts[3 + cls]) return;
    const int e = pl.small[i0], lane = threadIdx.x & 31;
    const int64_t n = (int64_t)blockIdx.x * (MOE_GEMV_THREADS / 32) + (threadIdx.x >> 5);
    if (n >= N) return;
    const fw_wview w[2] = {moe_expert_view<WT>(w0, e, wstride, sstride), moe_expert_view<WT>(GU ? w1 : w0, e, wstride, sstride)};
    for (int r0 = pl.offsets[e], rend = pl.offsets[e + 1]; r0 < rend; r0 += MT) {
        const int cnt = min(MT, rend - r0);
        const bf16 *xr[MT];
        float acc[NW][MT];
#pragma unroll
        for (int i = 0; i < MT; i++) {
            xr[i] = i < cnt ? moe_x_row(x, pl.rows, gather, k, r0 + i, K) : x;
#pragma unroll
            for (int j = 0; j < NW; j++) acc[j][i] = 0.0f;
        }
        if (LOAD == MOE_LOAD_WIDE) {
            constexpr int E = fw_piece<WT>::E;
            const uint8_t *row[NW];
            const float *srow[NW];
#pragma unroll
            for (int j = 0; j < NW; j++) {
                row[j] = (const uint8_t *)w[j].data + fw_wbyte<WT>(WT == FW_WTYPE_INT4 ? n * w[j].ld * 8 : n * w[j].ld); /* INT4: c0 0 */
                srow[j] = WT == FW_WTYPE_FP8 ? w[j].scale + (n >> 7) * w[j].scale_ld : nullptr;
            }
            for (int64_t k0 = (int64_t)lane * E; k0 < K; k0 += 32 * E * U) {
                uint4 wv[NW][U];
#pragma unroll
                for (int u = 0; u < U; u++) {
                    const int64_t kk = k0 + (int64_t)u * 32 * E;
#pragma unroll
                    for (int j = 0; j < NW; j++)
                        if (kk < K) wv[j][u] = __ldcs((const uint4 *)(row[j] + fw_wbyte<WT>(kk)));
                }
#pragma unroll
                for (int u = 0; u < U; u++) {
                    const int64_t kk = k0 + (int64_t)u * 32 * E;
                    if (kk >= K) break;
#pragma unroll
                    for (int j = 0; j < NW; j++) {
                        float f[E];
                        fw_unpack16<WT>(wv[j][u], f);
                        const float sc = WT == FW_WTYPE_FP8 ? srow[j][kk >> 7]
                                         : WT == FW_WTYPE_INT4 ? fw_int4_scale(w[j], n, kk) : 1.0f;
#pragma unroll
                        for (int i = 0; i < MT; i++) {
                            if (i >= cnt) break;
                            float d = 0.0f;
#pragma unroll
                            for (int c = 0; c < E; c += 8) {
                                float xv[8];
                                fw_load8<FW_WTYPE_BF16>(xr[i], kk + c, xv);
#pragma unroll
                                for (int q = 0; q < 8; q++) d = fmaf(f[c + q], xv[q], d);
                            }
                            acc[j][i] = fmaf(sc, d, acc[j][i]);
                        }
                    }
                }
            }
        } else if (LOAD == MOE_LOAD_8) {
            for (int64_t kk = (int64_t)lane * 8; kk < K; kk += 32 * 8) {
#pragma unroll
                for (int j = 0; j < NW; j++) {
                    float wv[8];
                    fw_load8<WT>(w[j].data, n * w[j].ld + kk, wv);
                    const float sc = WT == FW_WTYPE_FP8 ? w[j].scale[(n >> 7) * w[j].scale_ld + (kk >> 7)] : 1.0f;
#pragma unroll
                    for (int i = 0; i < MT; i++) {
                        if (i >= cnt) break;
                        float xv[8], d = 0.0f;
                        fw_load8<FW_WTYPE_BF16>(xr[i], kk, xv);
#pragma unroll
                        for (int q = 0; q < 8; q++) d = fmaf(wv[q], xv[q], d);
                        acc[j][i] = fmaf(sc, d, acc[j][i]);
                    }
                }
            }
        } else {
            for (int64_t kk = lane; kk < K; kk += 32) {
#pragma unroll
                for (int j = 0; j < NW; j++) {
                    const float wv = fw_wget<WT>(w[j], n, kk);
#pragma unroll
                    for (int i = 0; i < MT; i++)
                        if (i < cnt) acc[j][i] = fmaf(wv, fw_bf2f(xr[i][kk]), acc[j][i]);
                }
            }
        }
#pragma unroll
        for (int i = 0; i < MT; i++) {
            const float v0 = fw_warp_sum(acc[0][i]), v1 = NW == 2 ? fw_warp_sum(acc[NW - 1][i]) : 0.0f;
            if (lane != 0 || i >= cnt) continue;
            bf16 *yr = y + (int64_t)(r0 + i) * N;
            yr[n] = GU ? fw_swiglu(fw_f2bf(v0), fw_f2bf(v1)) : fw_f2bf(v0);
        }
    }
}

/* The tensor-core GEMVs' outputs: acc[j][q] (j: gate, up) is output n0 + g +
 * 8 (q / 2) of the expert's row 2t + q % 2; with GU silu(gate) * up is stored. */
template <bool GU>
__device__ __forceinline__ void moe_tc_store(bf16 *y, const float (&acc)[GU ? 2 : 1][4], int64_t n0, int g, int t,
                                             int r0, int cnt, int64_t N) {
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const int64_t n = n0 + g + 8 * (q >> 1);
        const int r = 2 * t + (q & 1);
        if (n >= N || r >= cnt) continue;
        y[(int64_t)(r0 + r) * N + n] = GU ? fw_swiglu(fw_f2bf(acc[0][q]), fw_f2bf(acc[GU ? 1 : 0][q])) : fw_f2bf(acc[0][q]);
    }
}

/* Experts of 2..MOE_SMALL rows with FP8 weights on the tensor cores, with no
 * shared memory: a warp computes 16 outputs x up to 8 rows as mma m16n8k16
 * products whose operands come straight from 16-byte loads. Per 64 of K, lane
 * (g, t) loads bytes 16t .. 16t+15 of weight rows g and g+8 and the same 16
 * values of row g of x; mma step s takes bytes 16t+4s .. 16t+4s+3, which stand
 * for the k = 2t, 2t+1, 2t+8, 2t+9 of the fragment layout (the same in A and B,
 * and a dot product does not depend on the order of k), as moe_mma_kernel
 * does. The CUDA-core kernel does 8 FMAs per weight byte at 8 rows, more than
 * the FMA units give at HBM speed; here the products cost nothing and the
 * kernel streams. One 128 x 128 scale per 64 of K (the warp's 16 rows lie in
 * one scale block). GU: gate and up weights, silu(g) * u written. */
template <bool GU>
__global__ void __launch_bounds__(MOE_GEMV_THREADS, 2)
moe_gemv_tc_kernel(bf16 *__restrict__ y, const bf16 *__restrict__ x, bool gather, int k, fw_wview w0, fw_wview w1,
                   int64_t wstride, int64_t sstride, int64_t N, int64_t K, fw_cuda_moe_plan pl, int cls_lo,
                   int cls_hi) {
    constexpr int NW = GU ? 2 : 1, U = GU ? 2 : 4; /* 64-wide K blocks in flight */
    const int i0 = pl.counts[2 + cls_lo] + (int)blockIdx.y;
    if (i0 >= pl.counts[3 + cls_hi]) return;
    const int e = pl.small[i0], lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int64_t n0 = ((int64_t)blockIdx.x * (MOE_GEMV_THREADS / 32) + (threadIdx.x >> 5)) * 16;
    if (n0 >= N) return;
    const int r0 = pl.offsets[e], cnt = min(MOE_SMALL, pl.offsets[e + 1] - r0);
    const uint8_t *wa[NW], *wb[NW];
    const float *srow[NW];
#pragma unroll
    for (int j = 0; j < NW; j++) {
        const fw_wview w = moe_expert_view<FW_WTYPE_FP8>(j ? w1 : w0, e, wstride, sstride);
        wa[j] = (const uint8_t *)w.data + min(n0 + g, N - 1) * w.ld + 16 * t; /* rows past N: loaded, not stored */
        wb[j] = (const uint8_t *)w.data + min(n0 + g + 8, N - 1) * w.ld + 16 * t;
        srow[j] = w.scale + (n0 >> 7) * w.scale_ld;
    }
    const bool has_x = g < cnt;
    const bf16 *xr = moe_x_row(x, pl.rows, gather, k, r0 + (has_x ? g : 0), K) + 16 * t;
    float acc[NW][4];
#pragma unroll
    for (int j = 0; j < NW; j++)
#pragma unroll
        for (int q = 0; q < 4; q++) acc[j][q] = 0.0f;
    const int nkb = (int)(K / 64);
    for (int kb0 = 0; kb0 < nkb; kb0 += U) {
        uint4 va[NW][U], vb[NW][U], xv[U][2];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int kb = kb0 + u;
            if (kb >= nkb) break;
#pragma unroll
            for (int j = 0; j < NW; j++) {
                va[j][u] = __ldcs((const uint4 *)(wa[j] + 64 * (int64_t)kb));
                vb[j][u] = __ldcs((const uint4 *)(wb[j] + 64 * (int64_t)kb));
            }
            if (has_x) {
                xv[u][0] = __ldg((const uint4 *)(xr + 64 * (int64_t)kb));
                xv[u][1] = __ldg((const uint4 *)(xr + 64 * (int64_t)kb + 8));
            } else {
                xv[u][0] = xv[u][1] = make_uint4(0u, 0u, 0u, 0u);
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int kb = kb0 + u;
            if (kb >= nkb) break;
            const uint32_t *xw0 = (const uint32_t *)&xv[u][0], *xw1 = (const uint32_t *)&xv[u][1];
#pragma unroll
            for (int j = 0; j < NW; j++) {
                const uint32_t *qa = (const uint32_t *)&va[j][u], *qb = (const uint32_t *)&vb[j][u];
                float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
                for (int st = 0; st < 4; st++) {
                    uint32_t a[4];
                    fw_fp8x4_to_bf16(qa[st], a[0], a[2]);
                    fw_fp8x4_to_bf16(qb[st], a[1], a[3]);
                    const uint32_t b0 = st < 2 ? xw0[2 * st] : xw1[2 * st - 4];
                    const uint32_t b1 = st < 2 ? xw0[2 * st + 1] : xw1[2 * st - 3];
                    fw_mma_bf16(part, a, b0, b1);
                }
                const float sc = __ldg(srow[j] + (kb >> 1));
#pragma unroll
                for (int q = 0; q < 4; q++) acc[j][q] = fmaf(sc, part[q], acc[j][q]);
            }
        }
    }
    moe_tc_store<GU>(y, acc, n0, g, t, r0, cnt, N);
}

/* INT4 experts of 1..MOE_SMALL rows on the tensor cores (int4_tc.h): a warp
 * computes 16 outputs x the expert's rows (x row g held by lane (g, t)) over a
 * slice of K; the block's warps are 8 / KS tiles of 16 outputs x KS slices,
 * added through shared memory in slice order (at batch 1 the 8 experts' rows
 * alone are too few warps to keep HBM busy). GU: gate and up weights,
 * silu(g) * u written. UNIT 128: K and the group whole 128s (int4_tc_dot128,
 * two chunks in flight a lane), else 32-column pieces. */
template <bool GU, int UNIT>
__global__ void __launch_bounds__(MOE_GEMV_THREADS, 2)
moe_gemv_tc_int4_kernel(bf16 *__restrict__ y, const bf16 *__restrict__ x, bool gather, int k, fw_wview w0, fw_wview w1,
                        int64_t wstride, int64_t sstride, int64_t N, int64_t K, fw_cuda_moe_plan pl, int cls_hi, int KS) {
    constexpr int NW = GU ? 2 : 1, WARPS = MOE_GEMV_THREADS / 32;
    __shared__ float red[WARPS][NW][4][32];
    const int i0 = pl.counts[2] + (int)blockIdx.y;
    if (i0 >= pl.counts[3 + cls_hi]) return; /* the whole block */
    const int e = pl.small[i0], lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int tiles = WARPS / KS, slice = warp % KS, P = (int)(K / UNIT);
    const int lo = P * slice / KS, hi = P * (slice + 1) / KS;
    const int64_t n0 = ((int64_t)blockIdx.x * tiles + warp / KS) * 16;
    const int r0 = pl.offsets[e], cnt = min(MOE_SMALL, pl.offsets[e + 1] - r0);
    float acc[NW][4];
#pragma unroll
    for (int j = 0; j < NW; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    if (n0 < N) {
        const bool has_x = g < cnt;
        const bf16 *xr = moe_x_row(x, pl.rows, gather, k, r0 + (has_x ? g : 0), K) + (UNIT / 4) * t;
        const int64_t ra = min(n0 + g, N - 1), rb = min(n0 + g + 8, N - 1); /* rows past N: read, not stored */
        const int lt = (UNIT / 32) * t; /* the lane's first word of a piece or chunk */
#pragma unroll
        for (int j = 0; j < NW; j++) {
            const fw_wview w = moe_expert_view<FW_WTYPE_INT4>(j ? w1 : w0, e, wstride, sstride);
            const uint32_t *words = (const uint32_t *)w.data;
            const bf16 *sa = w.gscale + ra * w.scale_ld, *sb = w.gscale + rb * w.scale_ld;
            if constexpr (UNIT == 128)
                int4_tc_dot128<2>(acc[j], words + ra * w.ld + lt, words + rb * w.ld + lt, sa, sb, xr, has_x, lo, hi,
                                  (int)(w.group / 128), 0);
            else
                int4_tc_dot(acc[j], words + ra * w.ld + lt, words + rb * w.ld + lt, sa, sb, xr, has_x, lo, hi,
                            (int)(w.group / 32), 0);
        }
    }
    if (KS > 1) {
#pragma unroll
        for (int j = 0; j < NW; j++)
#pragma unroll
            for (int q = 0; q < 4; q++) red[warp][j][q][lane] = acc[j][q];
        __syncthreads();
        if (slice != 0) return;
#pragma unroll
        for (int j = 0; j < NW; j++)
#pragma unroll
            for (int q = 0; q < 4; q++)
                for (int s2 = 1; s2 < KS; s2++) acc[j][q] += red[warp + s2][j][q][lane];
    }
    if (n0 < N) moe_tc_store<GU>(y, acc, n0, g, t, r0, cnt, N);
}

/* Slices of K for the INT4 small-expert GEMV: up to 8 while the launch has
 * fewer than 32 warps an SM of an H100 (experts: at most one a pair) and slices
 * keep at least 8 pieces (256 of K). */
static int moe_int4_slices(int64_t N, int64_t K, int64_t experts) {
    const int64_t warps = experts * fw_ceil_div(N, 16);
    int ks = 1;
    while (ks < 8 && warps * ks < 132 * 32 && K / (2 * ks) >= 256) ks *= 2;
    return ks;
}

/* Larger groups when moe_mma_kernel cannot take them (F32 weights, rows not
 * 16-byte aligned): a 64-row tile of one expert's rows times 64 outputs on the
 * tensor cores with wmma, A and B loaded element by element; 4 warps, each 32 x
 * 32 of the tile. */
template <int WT>
__global__ void __launch_bounds__(MOE_TILE_THREADS)
moe_tile_kernel(bf16 *__restrict__ y, const bf16 *__restrict__ x, bool gather, int k, fw_wview w0, int64_t wstride,
                int64_t sstride, int64_t N, int64_t K, fw_cuda_moe_plan pl, bool swiglu) {
    if ((int)blockIdx.y >= pl.counts[1]) return;
    const moe_tile tl = moe_tile_of(pl, blockIdx.y);
    const int e = tl.e, rbeg = tl.rbeg, cnt = tl.cnt;
    const int64_t n0 = (int64_t)blockIdx.x * MOE_BN;
    const fw_wview w = moe_expert_view<WT>(w0, e, wstride, sstride);
    __shared__ __align__(32) bf16 As[MOE_BM][MOE_BK + 8];
    __shared__ __align__(32) bf16 Bs[MOE_BN][MOE_BK + 8];
    __shared__ __align__(32) float Cs[MOE_BM][MOE_BN + 4];
    __shared__ const bf16 *arow[MOE_BM];
    const int tid = threadIdx.x, warp = tid >> 5, wm = warp >> 1, wn = warp & 1;
    if (tid < MOE_BM) arow[tid] = tid < cnt ? moe_x_row(x, pl.rows, gather, k, rbeg + tid, K) : nullptr;
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
                else if (WT == FW_WTYPE_INT4) bv = fw_wget<WT>(w, n, kk); /* q * scale, rounded to bf16 below */
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
        if (r >= cnt || n0 + c >= N) continue;
        bf16 *dst = y + (int64_t)(rbeg + r) * N + n0 + c;
        *dst = swiglu ? fw_swiglu(*dst, fw_f2bf(Cs[r][c])) : fw_f2bf(Cs[r][c]);
    }
}

/* ---- larger groups, fast path: mma.sync tiles fed by cp.async ----
 *
 * A CTA computes MOE_BM grouped rows x MOE_MMA_BN outputs of one expert with
 * MOE_MMA_WARPS warps, each 32 outputs x all MOE_BM rows (2 x 8 mma tiles of 16
 * outputs x 8 rows), so every weight element is read from shared memory (and,
 * for FP8, converted) by one warp only. K advances MOE_MMA_BK at a time through
 * a MOE_MMA_STAGES-deep ring of cp.async copies (zero-filled past the group's
 * rows, past N and past K). The FP8 -> bf16 conversion happens in registers
 * after each fragment load: every weight byte is converted once either way, and
 * this skips a shared-memory round trip (read FP8, write bf16, read bf16 again:
 * three times the bytes of the fragment loads) and a barrier per stage. */
#ifndef MOE_MMA_WARPS
#define MOE_MMA_WARPS 4 /* 8: 64 x 256 tiles, a quarter less L2 traffic per product, one CTA per SM */
#endif
#define MOE_MMA_BN (32 * MOE_MMA_WARPS) /* a multiple of 128: each warp's outputs in one FP8 scale block */
#define MOE_MMA_BK 64
#define MOE_MMA_STAGES 3
#define MOE_MMA_THREADS (32 * MOE_MMA_WARPS)
#define MOE_MMA_MIN_BLOCKS (MOE_MMA_WARPS == 4 ? 2 : 1) /* registers: up to 255 a thread */
static_assert(MOE_MMA_BN % FW_FP8_BLOCK == 0 && MOE_MMA_WARPS <= 8, "MOE_MMA_WARPS: 4 or 8");

/* Shared memory of one stage: A (MOE_BM x BK bf16) then B (BN x BK weights), rows
 * padded so that the fragment loads of 8 rows hit distinct banks: ldmatrix rows
 * 16 bytes apart mod 128 (pitch = 16 mod 128), the FP8 path's 8-byte X loads 32
 * apart (pitch 160: four rows of 32 bytes cover the 32 banks). The output tile is
 * staged in the same memory after the K loop. */
template <int WT>
struct moe_mma_smem {
    static constexpr int B_ROW = WT == FW_WTYPE_FP8 ? MOE_MMA_BK : WT == FW_WTYPE_BF16 ? 2 * MOE_MMA_BK : MOE_MMA_BK / 2;
    /* ldmatrix rows (BF16): 144; FP8's 8-byte X loads 32 apart: 160; INT4's
     * 16-byte X loads of two rows a quarter warp: 192 (64 apart mod 128) */
    static constexpr int A_PITCH = WT == FW_WTYPE_BF16 ? 2 * MOE_MMA_BK + 16
                                 : WT == FW_WTYPE_FP8  ? 2 * MOE_MMA_BK + 32 : 3 * MOE_MMA_BK;
    /* INT4: a warp reads word t of 8 rows: pitch 48 puts them in 32 banks */
    static constexpr int B_PITCH = B_ROW + 16;
    static constexpr int A_BYTES = MOE_BM * A_PITCH, B_BYTES = MOE_MMA_BN * B_PITCH;
    static constexpr int STAGE = A_BYTES + B_BYTES;
    static constexpr int BYTES = MOE_MMA_STAGES * STAGE;
    static constexpr int C_PITCH = 2 * MOE_MMA_BN + 16; /* bf16 output rows */
    static_assert(MOE_BM * C_PITCH <= BYTES, "the output tile fits in the pipeline's memory");
    static_assert(A_BYTES % 128 == 0 && STAGE % 128 == 0, "stages keep 128-byte alignment");
};

__device__ __forceinline__ uint2 lds64(uint32_t addr) {
    uint2 v;
    asm volatile("ld.shared.v2.u32 {%0, %1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "r"(addr));
    return v;
}

__device__ __forceinline__ uint32_t lds32(uint32_t addr) {
    uint32_t v;
    asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(v) : "r"(addr));
    return v;
}

__device__ __forceinline__ uint4 lds128(uint32_t addr) {
    uint4 v;
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(addr));
    return v;
}

/* d = a . b (the first product of a K block: no zeroing of d beforehand). */
__device__ __forceinline__ void mma_bf16_zc(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%10, %10, %10, %10};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(0.0f));
}

/* One stage (BK of K) of a warp's 32 outputs x MOE_BM rows, as the transposed
 * product d[m16 tile: 16 outputs][n8 tile: 8 rows] += W . X^T (zero: the stage's
 * first product overwrites d), the weights being the mma's A operand. w_frag,
 * x_frag: this lane's fragment offsets in the stage at s0 (moe_mma_kernel). */
template <int WT>
__device__ __forceinline__ void moe_mma_stage(float (&d)[2][8][4], uint32_t s0, uint32_t w_frag, uint32_t x_frag,
                                              bool zero) {
    typedef moe_mma_smem<WT> L;
#pragma unroll
    for (int kk = 0; kk < MOE_MMA_BK; kk += 16) {
        uint32_t a[2][4], b[8][2];
        if (WT == FW_WTYPE_FP8) {
            /* q[m]: output row 8 m + lane / 4, bytes k = 4t .. 4t+3 -> bf16 (4t, 4t+1), (4t+2, 4t+3):
             * A's (row g, kpos 2t..) and (row g, kpos 2t+8..); X's pair at the same k in one 8-byte load. */
            uint32_t q[4];
            fw_ldmatrix_x4(q, s0 + w_frag + kk);
#pragma unroll
            for (int i = 0; i < 2; i++) {
                fw_fp8x4_to_bf16(q[2 * i], a[i][0], a[i][2]);
                fw_fp8x4_to_bf16(q[2 * i + 1], a[i][1], a[i][3]);
            }
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const uint2 v = lds64(s0 + x_frag + 8 * j * L::A_PITCH + 2 * kk);
                b[j][0] = v.x, b[j][1] = v.y;
            }
        } else {
#pragma unroll
            for (int i = 0; i < 2; i++) fw_ldmatrix_x4(a[i], s0 + w_frag + 16 * i * L::B_PITCH + 2 * kk);
#pragma unroll
            for (int j = 0; j < 4; j++) {
                uint32_t q[4];
                fw_ldmatrix_x4(q, s0 + x_frag + 16 * j * L::A_PITCH + 2 * kk);
                b[2 * j][0] = q[0], b[2 * j][1] = q[1], b[2 * j + 1][0] = q[2], b[2 * j + 1][1] = q[3];
            }
        }
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int j = 0; j < 8; j++) {
                if (zero && kk == 0) mma_bf16_zc(d[i][j], a[i], b[j]);
                else fw_mma_bf16(d[i][j], a[i], b[j][0], b[j][1]);
            }
    }
}

/* Half a stage (32 of K) of the INT4 tile into d (zero: the half starts a scale
 * group, its first product overwrites d), as two mma steps u. Lane (g, t) takes
 * k = 8t + 4u .. 8t + 4u + 3 of the half for the fragment slots {2t, 2t+1, 2t+8,
 * 2t+9} of step u (a dot product does not depend on the order of k): nibbles
 * 4u .. 4u+3 of word t of each weight row's half, and X's values at the same k
 * (one 16-byte load serves both steps). wq[i][h]: word t of output row
 * 16 i + g + 8 h; xs: this lane's X bytes of the half (row g, k 8t). */
__device__ __forceinline__ void moe_mma_int4_half(float (&d)[2][8][4], const uint32_t (&wq)[2][2], uint32_t xs,
                                                  bool zero) {
    uint4 xv[8];
#pragma unroll
    for (int j = 0; j < 8; j++) xv[j] = lds128(xs + 8 * j * moe_mma_smem<FW_WTYPE_INT4>::A_PITCH);
#pragma unroll
    for (int u = 0; u < 2; u++) {
        uint32_t a[2][4];
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const uint32_t nib = wq[i][h] >> (16 * u);
                a[i][h] = int4x2_to_bf16x2(nib);
                a[i][2 + h] = int4x2_to_bf16x2(nib >> 8);
            }
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const uint32_t b[2] = {u ? xv[j].z : xv[j].x, u ? xv[j].w : xv[j].y};
#pragma unroll
            for (int i = 0; i < 2; i++) {
                if (zero && u == 0) mma_bf16_zc(d[i][j], a[i], b);
                else fw_mma_bf16(d[i][j], a[i], b[0], b[1]);
            }
        }
    }
}

/* One tile (blockIdx.y: the plan's tile list) x 128 outputs (blockIdx.x). The
 * mma computes the transposed tile (outputs x rows) so that FP8 fragments need no
 * register moves: ldmatrix of the FP8 rows gives a lane the 4 bytes k = 4t ..
 * 4t+3 of an output row (t = lane % 4) per 16 k, not the k = 2t, 2t+1, 2t+8,
 * 2t+9 of the mma's layout; as a dot product does not depend on the order of k,
 * the lane takes X's values at the same k (one 8-byte load, exactly the B
 * fragment's register pair), which is that order of k on both sides. BF16: the
 * standard ldmatrix fragments. */
template <int WT>
__global__ void __launch_bounds__(MOE_MMA_THREADS, MOE_MMA_MIN_BLOCKS)
moe_mma_kernel(bf16 *__restrict__ y, const bf16 *__restrict__ x, bool gather, int k, fw_wview w0, int64_t wstride,
               int64_t sstride, int64_t N, int64_t K, fw_cuda_moe_plan pl, bool y_vec, bool swiglu) {
    typedef moe_mma_smem<WT> L;
    constexpr bool FP8 = WT == FW_WTYPE_FP8, INT4 = WT == FW_WTYPE_INT4;
    constexpr int A_CPR = 2 * MOE_MMA_BK / 16, B_CPR = L::B_ROW / 16; /* 16-byte chunks per row */
    constexpr int A_RPP = MOE_MMA_THREADS / A_CPR, B_RPP = MOE_MMA_THREADS / B_CPR;  /* rows per pass */
    constexpr int A_IT = MOE_BM / A_RPP, B_IT = MOE_MMA_BN / B_RPP;
    if ((int)blockIdx.y >= pl.counts[1]) return;
    const moe_tile tl = moe_tile_of(pl, blockIdx.y);
    const int e = tl.e, rbeg = tl.rbeg, cnt = tl.cnt;
    const int64_t n0 = (int64_t)blockIdx.x * MOE_MMA_BN;
    const fw_wview w = moe_expert_view<WT>(w0, e, wstride, sstride);
    extern __shared__ __align__(128) uint8_t moe_sm[];
    const uint32_t sbase = (uint32_t)__cvta_generic_to_shared(moe_sm);
    const int tid = threadIdx.x, lane = tid & 31, wn0 = (tid >> 5) * 32, g = lane >> 2, t = lane & 3;

    /* The chunks this thread copies each stage, at addresses fixed for the CTA:
     * A rows tid / A_CPR + A_RPP i (x's row computed once), B rows tid / B_CPR +
     * B_RPP i. Rows past the group or past N copy 0 bytes (zero fill) from a row
     * that exists (the tile's first, the expert's first output). */
    const int a_col = (tid % A_CPR) * 8, b_col = (tid % B_CPR) * fw_piece<WT>::E; /* in elements */
    const char *asrc[A_IT], *bsrc[B_IT];
    int abytes[A_IT], bbytes[B_IT];
#pragma unroll
    for (int i = 0; i < A_IT; i++) {
        const int r = tid / A_CPR + A_RPP * i;
        abytes[i] = r < cnt ? 16 : 0;
        asrc[i] = (const char *)(moe_x_row(x, pl.rows, gather, k, rbeg + (r < cnt ? r : 0), K) + a_col);
    }
#pragma unroll
    for (int i = 0; i < B_IT; i++) {
        const int64_t n = n0 + tid / B_CPR + B_RPP * i;
        bbytes[i] = n < N ? 16 : 0;
        bsrc[i] = (const char *)w.data + fw_wbyte<WT>((n < N ? n : 0) * w.ld * (INT4 ? 8 : 1) + b_col);
    }
    const uint32_t a_dst = (tid / A_CPR) * L::A_PITCH + (tid % A_CPR) * 16;
    const uint32_t b_dst = L::A_BYTES + (tid / B_CPR) * L::B_PITCH + (tid % B_CPR) * 16;
    auto load = [&](int st, int kt) {
        const int64_t k0 = (int64_t)kt * MOE_MMA_BK;
        const uint32_t s0 = sbase + st * L::STAGE;
        if (k0 + MOE_MMA_BK <= K) {
#pragma unroll
            for (int i = 0; i < A_IT; i++) fw_cp_async16_at(s0 + a_dst + i * A_RPP * L::A_PITCH, asrc[i] + 2 * k0, abytes[i]);
#pragma unroll
            for (int i = 0; i < B_IT; i++)
                fw_cp_async16_at(s0 + b_dst + i * B_RPP * L::B_PITCH, bsrc[i] + fw_wbyte<WT>(k0), bbytes[i]);
        } else { /* the K tail: chunks past K read nothing (from the row's start) */
            const bool ak = a_col < K - k0, bk = b_col < K - k0;
#pragma unroll
            for (int i = 0; i < A_IT; i++)
                fw_cp_async16_at(s0 + a_dst + i * A_RPP * L::A_PITCH, ak ? asrc[i] + 2 * k0 : asrc[i], ak ? abytes[i] : 0);
#pragma unroll
            for (int i = 0; i < B_IT; i++)
                fw_cp_async16_at(s0 + b_dst + i * B_RPP * L::B_PITCH, bk ? bsrc[i] + fw_wbyte<WT>(k0) : bsrc[i], bk ? bbytes[i] : 0);
        }
    };

    /* Fragment offsets of this lane inside a stage. FP8: ldmatrix x4 of the warp's
     * 32 weight rows (lane -> row wn0 + lane), 8-byte X loads of rows g (+ 8 j) at
     * k = 4t. BF16: ldmatrix x4 of W (rows lane % 16, k 8 (lane / 16): an A
     * fragment) and of X (two n8 tiles: rows 8 (lane / 16) + lane % 8, k 8 (lane / 8 % 2)). */
    const uint32_t w_frag = FP8    ? L::A_BYTES + (wn0 + lane) * L::B_PITCH
                            : INT4 ? L::A_BYTES + (wn0 + g) * L::B_PITCH + 4 * t
                                   : L::A_BYTES + (wn0 + (lane & 15)) * L::B_PITCH + 16 * (lane >> 4);
    const uint32_t x_frag = FP8    ? g * L::A_PITCH + 8 * t
                            : INT4 ? g * L::A_PITCH + 16 * t
                                   : (8 * (lane >> 4) + (lane & 7)) * L::A_PITCH + 16 * ((lane >> 3) & 1);
    float acc[2][8][4]; /* [16 outputs][8 rows][fragment] */
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int q = 0; q < 4; q++) acc[i][j][q] = 0.0f;

    const int nk = (int)fw_ceil_div(K, MOE_MMA_BK);
#pragma unroll
    for (int s = 0; s < MOE_MMA_STAGES - 1; s++) {
        if (s < nk) load(s, s);
        fw_cp_async_commit();
    }
    /* Wait for stage kt, then refill the stage that kt - 1 used. */
    auto next = [&](int kt) {
        fw_cp_async_wait<MOE_MMA_STAGES - 2>(); /* stage kt has landed (this thread's copies) */
        __syncthreads();                     /* ... everyone's; and stage kt - 1 is free */
        if (kt + MOE_MMA_STAGES - 1 < nk) load((kt + MOE_MMA_STAGES - 1) % MOE_MMA_STAGES, kt + MOE_MMA_STAGES - 1);
        fw_cp_async_commit();
        return sbase + (kt % MOE_MMA_STAGES) * L::STAGE;
    };
    if constexpr (FP8) {
        /* Per 128 of K (SPB stages; the last block may be shorter): the products
         * into part, then acc += scale * part. The warp's 32 outputs lie in one
         * 128-row scale block. */
        constexpr int SPB = FW_FP8_BLOCK / MOE_MMA_BK;
        const float *srow = w.scale + ((n0 + wn0) >> 7) * w.scale_ld;
        for (int kb = 0; kb * SPB < nk; kb++) {
            const float sc = __ldg(srow + kb); /* used SPB stages later: latency hidden */
            float part[2][8][4];
#pragma unroll
            for (int u = 0; u < SPB; u++)
                if (u == 0 || kb * SPB + u < nk) moe_mma_stage<WT>(part, next(kb * SPB + u), w_frag, x_frag, u == 0);
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 8; j++)
#pragma unroll
                    for (int q = 0; q < 4; q++) acc[i][j][q] = fmaf(sc, part[i][j][q], acc[i][j][q]);
        }
    } else if constexpr (INT4) {
        /* Per scale group (G a multiple of 32, the experts' c0 0): the products of
         * its halves of stages into part, then acc += scale * part, each output
         * row with its own scale. Rows past N read row N - 1's scales (unused). */
        const int pg = (int)(w.group / 32); /* halves of a stage a group */
        int gi = 0, left = pg;
        const bf16 *gs[2][2];
        float sc[2][2];
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int h = 0; h < 2; h++) gs[i][h] = w.gscale + min(n0 + wn0 + 16 * i + g + 8 * h, N - 1) * w.scale_ld;
        float part[2][8][4];
        for (int kt = 0; kt < nk; kt++) {
            const uint32_t s0 = next(kt);
#pragma unroll
            for (int half = 0; half < 2; half++) {
                const int64_t k = (int64_t)kt * MOE_MMA_BK + 32 * half;
                if (k >= K) break;
                const bool first = left == pg, last = left == 1 || k + 32 >= K;
                uint32_t wq[2][2];
#pragma unroll
                for (int i = 0; i < 2; i++)
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        if (first) sc[i][h] = fw_bf2f(gs[i][h][gi]);
                        wq[i][h] = lds32(s0 + w_frag + (16 * i + 8 * h) * L::B_PITCH + 16 * half);
                    }
                moe_mma_int4_half(part, wq, s0 + x_frag + 64 * half, first);
                if (last) {
#pragma unroll
                    for (int i = 0; i < 2; i++)
#pragma unroll
                        for (int j = 0; j < 8; j++)
#pragma unroll
                            for (int q = 0; q < 4; q++) acc[i][j][q] = fmaf(sc[i][q >> 1], part[i][j][q], acc[i][j][q]);
                }
                if (--left == 0) gi++, left = pg;
            }
        }
    } else {
        for (int kt = 0; kt < nk; kt++) moe_mma_stage<WT>(acc, next(kt), w_frag, x_frag, false);
    }
    fw_cp_async_wait<0>();
    __syncthreads(); /* the pipeline's memory is free for the output tile */

    /* Output: the transposed fragments as bf16 into shared memory [row][output]
     * (acc[i][j]: outputs wn0 + 16 i + g (+ 8), rows 8 j + 2t (+ 1)), then
     * 16-byte pieces of 8 outputs to y; only rows < cnt and columns < N. With
     * swiglu, y holds the gate's outputs, which become silu(gate) * these. */
    uint8_t *cs = moe_sm;
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const int r = 8 * j + 2 * t + (q & 1), c = wn0 + 16 * i + g + 8 * (q >> 1);
                *(bf16 *)(cs + r * L::C_PITCH + 2 * c) = fw_f2bf(acc[i][j][q]);
            }
    __syncthreads();
    moe_tile_store<MOE_MMA_BN, MOE_MMA_THREADS>(y, cs, L::C_PITCH, rbeg, cnt, n0, N, y_vec, swiglu, threadIdx.x);
}

/* Whether moe_mma_kernel takes the tiles: BF16 or FP8 weights whose rows (every
 * expert's) start 16-byte aligned and whose K is whole 16-byte chunks (FP8: 16
 * values, BF16: 8), and x rows 16-byte aligned. */
template <int WT>
static bool moe_mma_fits(const bf16 *x, const fw_wview &w, int64_t wstride, int64_t K) {
    const int64_t es = (int64_t)fw_wtype_size((fw_wtype)WT);
    if (WT == FW_WTYPE_INT4) /* whole 16-byte pieces (32 values) in whole scale groups */
        return K % 32 == 0 && w.group % 32 == 0 && w.c0 == 0 && (w.ld * 4) % 16 == 0 && (wstride * 4) % 16 == 0 &&
               fw_ptr_align(w.data) >= 16 && fw_ptr_align(x) >= 16;
    return WT != FW_WTYPE_F32 && (K * es) % 16 == 0 && K % 8 == 0 && (w.ld * es) % 16 == 0 &&
           (wstride * es) % 16 == 0 && fw_ptr_align(w.data) >= 16 && fw_ptr_align(x) >= 16;
}

/* One launch per class of small experts up to T's (wider ones can have none:
 * a token's k experts are distinct), MT the class's width. */
template <int WT, int LOAD, bool GU>
static void launch_gemv(bool tc, int64_t N, int64_t n_exp, cudaStream_t st, int64_t T, bf16 *y, const bf16 *x,
                        bool gather, int k, const fw_wview &w0, const fw_wview &w1, int64_t wstride, int64_t sstride,
                        int64_t K, const fw_cuda_moe_plan &pl) {
    const int top = moe_class((int)(T < MOE_SMALL ? T : MOE_SMALL));
    const dim3 blocks((unsigned)fw_ceil_div(N, MOE_GEMV_THREADS / 32));
    int last = top; /* the last class on the CUDA cores */
    if constexpr (WT == FW_WTYPE_INT4 && LOAD == MOE_LOAD_WIDE) {
        /* every class (batch 1 too) in one tensor-core launch: experts with rows at most n_pairs */
        if (tc) {
            const int64_t experts = n_exp < pl.n_pairs ? n_exp : pl.n_pairs;
            /* whole 128-column chunks in whole groups (tc: 16-byte aligned rows): int4_tc_dot128 */
            const int unit = K % 128 == 0 && w0.group % 128 == 0 ? 128 : 32;
            const int ks = moe_int4_slices(N, K, experts);
            const dim3 g((unsigned)fw_ceil_div(N, 16 * (MOE_GEMV_THREADS / 32 / ks)), (unsigned)experts);
            if (unit == 128)
                moe_gemv_tc_int4_kernel<GU, 128><<<g, MOE_GEMV_THREADS, 0, st>>>(y, x, gather, k, w0, w1, wstride, sstride, N, K, pl, top, ks);
            else
                moe_gemv_tc_int4_kernel<GU, 32><<<g, MOE_GEMV_THREADS, 0, st>>>(y, x, gather, k, w0, w1, wstride, sstride, N, K, pl, top, ks);
            return;
        }
    }
    if constexpr (WT == FW_WTYPE_FP8 && LOAD == MOE_LOAD_WIDE) {
        /* classes 1..top (contiguous in pl.small) in one tensor-core launch */
        if (tc && top >= 1 && K % 64 == 0) {
            const int64_t cap = pl.n_pairs / 2;
            const dim3 g((unsigned)fw_ceil_div(N, 16 * (MOE_GEMV_THREADS / 32)), (unsigned)(n_exp < cap ? n_exp : cap));
            moe_gemv_tc_kernel<GU><<<g, MOE_GEMV_THREADS, 0, st>>>(y, x, gather, k, w0, w1, wstride, sstride, N, K, pl, 1, top);
            last = 0;
        }
    }
    for (int q = 0; q <= last; q++) {
        /* experts of class q: at most n_pairs / (its fewest rows) */
        const int64_t fewest = q == 0 ? 1 : (1 << (q - 1)) + 1, cap = pl.n_pairs / fewest;
        const dim3 g(blocks.x, (unsigned)(n_exp < cap ? n_exp : cap));
        if (g.y == 0) continue;
#define MOE_GEMV(MT) moe_gemv_kernel<WT, LOAD, MT, GU><<<g, MOE_GEMV_THREADS, 0, st>>>(y, x, gather, k, w0, w1, wstride, sstride, N, K, pl, q)
        if (q == 0) MOE_GEMV(1);
        else if (q == 1) MOE_GEMV(2);
        else if (q == 2) MOE_GEMV(4);
        else MOE_GEMV(MOE_SMALL);
#undef MOE_GEMV
    }
}

/* The small groups' kernels for a load width. */
template <int WT, bool GU>
static void launch_small(int load, bool tc, int64_t N, int64_t n_groups, cudaStream_t st, int64_t T, bf16 *y,
                         const bf16 *x, bool gather, int k, const fw_wview &w0, const fw_wview &w1, int64_t wstride,
                         int64_t sstride, int64_t K, const fw_cuda_moe_plan &pl) {
    if constexpr (WT != FW_WTYPE_F32) {
        if (load == MOE_LOAD_WIDE)
            return launch_gemv<WT, MOE_LOAD_WIDE, GU>(tc, N, n_groups, st, T, y, x, gather, k, w0, w1, wstride, sstride, K, pl);
    }
    if constexpr (WT != FW_WTYPE_INT4) { /* INT4 reads whole 16-byte pieces or single values */
        if (load == MOE_LOAD_8)
            return launch_gemv<WT, MOE_LOAD_8, GU>(false, N, n_groups, st, T, y, x, gather, k, w0, w1, wstride, sstride, K, pl);
    }
    launch_gemv<WT, MOE_LOAD_ONE, GU>(false, N, n_groups, st, T, y, x, gather, k, w0, w1, wstride, sstride, K, pl);
}

/* y = x . W^T for every pair's row; with wu (the SwiGLU gate: w the gate's
 * weights, wu the up projection's, the same shape and strides), y = silu(x . W^T)
 * * (x . Wu^T), the up tiles finishing in place on the gate tiles' outputs.
 * wgmma: the tiles go to moe_wgmma.cu (moe_launch checked device and shapes),
 * with x's FP8 rows where xq has them. */
/* x's rows quantized to FP8 for the tiles (q NULL: none): M rows, scales s. */
struct moe_xq {
    const uint8_t *q;
    const float *s;
    int64_t M;
};

template <int WT>
static cudaError_t launch_moe(bf16 *y, const bf16 *x, bool gather, int k, const fw_wview &w, const fw_wview *wu,
                              int64_t wstride, int64_t sstride, int64_t N, int64_t K, const fw_cuda_moe_plan &pl,
                              bool tc, bool wgmma, const moe_xq &xq, cudaStream_t st) {
    const int64_t es = (int64_t)fw_wtype_size((fw_wtype)WT), T = pl.n_pairs / k;
    /* 8-element loads need 8-aligned rows of W (every expert) and of x. */
    const bool vec = K % 8 == 0 && w.ld % 8 == 0 && wstride % 8 == 0 && fw_ptr_align(w.data) >= (unsigned)(8 * es) &&
                     (!wu || fw_ptr_align(wu->data) >= (unsigned)(8 * es)) && fw_ptr_align(x) >= 16;
    /* 16-byte chunks of W: rows and expert strides 16-byte aligned, FP8 chunks inside a scale block,
     * INT4 chunks (32 values) inside a scale group. */
    const bool wide = vec && WT != FW_WTYPE_F32 && K % 16 == 0 && (w.ld * es) % 16 == 0 && (wstride * es) % 16 == 0 &&
                      fw_ptr_align(w.data) >= 16 && (!wu || fw_ptr_align(wu->data) >= 16) &&
                      (WT != FW_WTYPE_INT4 || (K % 32 == 0 && w.c0 == 0 && w.group % 32 == 0));
    {
        const int load = wide ? MOE_LOAD_WIDE : vec ? MOE_LOAD_8 : MOE_LOAD_ONE;
        const fw_wview &w1 = wu ? *wu : w;
        if (wu) launch_small<WT, true>(load, tc, N, pl.n_exp, st, T, y, x, gather, k, w, w1, wstride, sstride, K, pl);
        else launch_small<WT, false>(load, tc, N, pl.n_exp, st, T, y, x, gather, k, w, w1, wstride, sstride, K, pl);
    }
    if (pl.n_pairs <= MOE_SMALL) return cudaSuccess;
    const int passes = wu ? 2 : 1; /* gate tiles, then up tiles finishing the gate */
    if constexpr (WT == FW_WTYPE_FP8 || WT == FW_WTYPE_INT4) {
        if (WT == FW_WTYPE_FP8 && wgmma && xq.q) /* moe_launch checked the device and the shapes */
            return moe_fp8_launch(y, xq.q, xq.s, xq.M, gather, k, w, wu, wstride, sstride, N, K, pl, st);
        if (wgmma) return moe_wgmma_launch(WT, y, x, gather, k, w, wu, wstride, sstride, N, K, pl, st);
    }
    if constexpr (WT != FW_WTYPE_F32) {
        if (moe_mma_fits<WT>(x, w, wstride, K) && (!wu || moe_mma_fits<WT>(x, *wu, wstride, K))) {
            typedef moe_mma_smem<WT> L;
            /* More than the default 48 KiB of dynamic shared memory: set per device, so per call. */
            cudaError_t err = cudaFuncSetAttribute(moe_mma_kernel<WT>, cudaFuncAttributeMaxDynamicSharedMemorySize, L::BYTES);
            if (err != cudaSuccess) return err;
            const bool y_vec = N % 8 == 0 && fw_ptr_align(y) >= 16;
            dim3 g((unsigned)fw_ceil_div(N, MOE_MMA_BN), (unsigned)pl.tile_cap);
            for (int p = 0; p < passes; p++)
                moe_mma_kernel<WT><<<g, MOE_MMA_THREADS, L::BYTES, st>>>(y, x, gather, k, p ? *wu : w, wstride, sstride, N,
                                                                         K, pl, y_vec, p == 1);
            return cudaSuccess;
        }
    }
    dim3 g((unsigned)fw_ceil_div(N, MOE_BN), (unsigned)pl.tile_cap);
    for (int p = 0; p < passes; p++)
        moe_tile_kernel<WT><<<g, MOE_TILE_THREADS, 0, st>>>(y, x, gather, k, p ? *wu : w, wstride, sstride, N, K, pl, p == 1);
    return cudaSuccess;
}

static int moe_check(fw_cuda_ctx *ctx, const char *op, const fw_weight *w0, int64_t k, const fw_cuda_moe_plan *pl) {
    const int64_t N = w0->rows, K = w0->cols;
    if (N < 1 || K < 1 || k < 1 || pl->n_pairs % k != 0 || pl->tile_cap > 65535 || pl->n_exp > 65535)
        return fw_cuda_errf(ctx, "%s: bad shape (N %lld, K %lld, %lld pairs, k %lld)", op, (long long)N, (long long)K,
                            (long long)pl->n_pairs, (long long)k);
    if (w0->type == FW_WTYPE_FP8 && (w0->r0 != 0 || w0->c0 != 0))
        return fw_cuda_errf(ctx, "%s: FP8 expert weights must start at a scale block", op);
    if (w0->type == FW_WTYPE_INT4 && (w0->c0 != 0 || !w0->gscale || w0->group < 8 || w0->group % 8))
        return fw_cuda_errf(ctx, "%s: INT4 expert weights must start at a word and have group scales", op);
    if (w0->type != FW_WTYPE_F32 && w0->type != FW_WTYPE_BF16 && w0->type != FW_WTYPE_FP8 && w0->type != FW_WTYPE_INT4)
        return fw_cuda_errf(ctx, "%s: unknown weight type %d", op, (int)w0->type);
    return FW_CUDA_OK;
}

static int moe_launch(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_bf16 *x, bool gather, int64_t k, const fw_weight *w0,
                      const fw_weight *wu, int64_t wstride, int64_t sstride, const fw_cuda_moe_plan *pl) {
    const int64_t N = w0->rows, K = w0->cols;
    if (pl->n_pairs == 0) return FW_CUDA_OK;
    const bool tc = !ctx->opt.moe_gemv_cores;
    fw_wview v = fw_wview_of(w0), vu = wu ? fw_wview_of(wu) : v;
    const fw_wview *pu = wu ? &vu : nullptr;
    const bf16 *xb = (const bf16 *)x;
    bf16 *yb = (bf16 *)y;
    /* FP8 and INT4 tiles on the warpgroup MMA: 9.0 (sm_90a code only) and shapes it takes. */
    const int wt = (int)w0->type;
    const bool wgmma = (wt == FW_WTYPE_FP8 || wt == FW_WTYPE_INT4) && ctx->cc_major == 9 && ctx->cc_minor == 0 &&
                       !ctx->opt.moe_tiles_mma && moe_wgmma_fits(wt, xb, v, wstride, K) &&
                       (!wu || moe_wgmma_fits(wt, xb, vu, wstride, K));
    moe_xq xq = {nullptr, nullptr, 0};
    if (wgmma && wt == FW_WTYPE_FP8 && ctx->opt.moe_act_fp8 && ctx->opt.mm_policy == FW_CUDA_MM_AUTO && pl->n_pairs > MOE_SMALL &&
        moe_fp8_available()) {
        const int64_t M = gather ? pl->n_pairs / k : pl->n_pairs, KBp = fw_round_up(K / FW_FP8_BLOCK, 4);
        const size_t qbytes = (size_t)fw_round_up(M * K, 256), need = qbytes + (size_t)(KBp * M) * sizeof(float);
        /* While a graph is captured the scratch cannot grow: the step's eager warm-up (same shapes) grew it. */
        cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
        FW_CUDA_CHECK(ctx, cudaStreamIsCapturing(ctx->stream, &cap));
        if (cap == cudaStreamCaptureStatusNone || need <= ctx->scratch_bytes) {
            void *mem;
            if (fw_cuda_scratch(ctx, need, &mem)) return FW_CUDA_ERR;
            uint8_t *q = (uint8_t *)mem;
            float *sc = (float *)(q + qbytes);
            if (fw_cuda_quant_act(ctx, q, sc, xb, M, M, K)) return FW_CUDA_ERR;
            xq = {q, sc, M};
        }
    }
    if (w0->type == FW_WTYPE_F32) FW_CUDA_CHECK(ctx, launch_moe<FW_WTYPE_F32>(yb, xb, gather, (int)k, v, pu, wstride, sstride, N, K, *pl, tc, wgmma, xq, ctx->stream));
    else if (w0->type == FW_WTYPE_BF16) FW_CUDA_CHECK(ctx, launch_moe<FW_WTYPE_BF16>(yb, xb, gather, (int)k, v, pu, wstride, sstride, N, K, *pl, tc, wgmma, xq, ctx->stream));
    else if (w0->type == FW_WTYPE_FP8) FW_CUDA_CHECK(ctx, launch_moe<FW_WTYPE_FP8>(yb, xb, gather, (int)k, v, pu, wstride, sstride, N, K, *pl, tc, wgmma, xq, ctx->stream));
    else FW_CUDA_CHECK(ctx, launch_moe<FW_WTYPE_INT4>(yb, xb, gather, (int)k, v, pu, wstride, sstride, N, K, *pl, tc, wgmma, xq, ctx->stream));
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

extern "C" int fw_cuda_moe_matmul(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_bf16 *x, bool gather, int64_t k,
                                  const fw_weight *w0, int64_t wstride, int64_t sstride, const fw_cuda_moe_plan *pl) {
    if (moe_check(ctx, "fw_cuda_moe_matmul", w0, k, pl)) return FW_CUDA_ERR;
    return moe_launch(ctx, y, x, gather, k, w0, nullptr, wstride, sstride, pl);
}

extern "C" int fw_cuda_moe_swiglu(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_bf16 *x, int64_t k, const fw_weight *gate,
                                  const fw_weight *up, int64_t wstride, int64_t sstride, const fw_cuda_moe_plan *pl) {
    if (moe_check(ctx, "fw_cuda_moe_swiglu", gate, k, pl) || moe_check(ctx, "fw_cuda_moe_swiglu", up, k, pl))
        return FW_CUDA_ERR;
    if (up->type != gate->type || up->rows != gate->rows || up->cols != gate->cols || up->ld != gate->ld ||
        up->scale_ld != gate->scale_ld)
        return fw_cuda_errf(ctx, "fw_cuda_moe_swiglu: the gate and up weights differ in type or shape");
    return moe_launch(ctx, y, x, true, k, gate, up, wstride, sstride, pl);
}

/* A thread per 8 channels of a token (VEC, 16-byte pieces) or per channel; the
 * slots unrolled so that their loads are in flight together (a decode step is 8
 * rows of 7168 per token). */
template <bool VEC>
__global__ void moe_combine_kernel(bf16 *__restrict__ y, const bf16 *__restrict__ ye, const float *__restrict__ w,
                                   const int32_t *__restrict__ slot_row, int64_t T, int k, int64_t D) {
    constexpr int V = VEC ? 8 : 1;
    const int64_t DV = D / V;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < T * DV; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / DV, d = (i % DV) * V;
        bf16 *yt = y + t * D + d;
        float acc[V];
        if constexpr (VEC) {
            const uint4 u = *(const uint4 *)yt;
#pragma unroll
            for (int q = 0; q < V; q++) acc[q] = fw_bf2f(((const bf16 *)&u)[q]);
        } else {
            acc[0] = fw_bf2f(*yt);
        }
#pragma unroll 8
        for (int j = 0; j < k; j++) {
            const int r = slot_row[t * k + j];
            if (r < 0) continue;
            const float wj = w[t * k + j];
            const bf16 *src = ye + (int64_t)r * D + d;
            if constexpr (VEC) {
                const uint4 u = *(const uint4 *)src;
#pragma unroll
                for (int q = 0; q < V; q++) acc[q] = fmaf(wj, fw_bf2f(((const bf16 *)&u)[q]), acc[q]);
            } else {
                acc[0] = fmaf(wj, fw_bf2f(*src), acc[0]);
            }
        }
        if constexpr (VEC) {
            uint4 u;
#pragma unroll
            for (int q = 0; q < V; q++) ((bf16 *)&u)[q] = fw_f2bf(acc[q]);
            *(uint4 *)yt = u;
        } else {
            *yt = fw_f2bf(acc[0]);
        }
    }
}

extern "C" int fw_cuda_moe_combine(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_bf16 *ye, const float *w,
                                   const fw_cuda_moe_plan *pl, int64_t T, int64_t k, int64_t D) {
    if (T < 0 || k < 1 || D < 1 || T * k != pl->n_pairs)
        return fw_cuda_errf(ctx, "fw_cuda_moe_combine: bad shape (T %lld, k %lld, D %lld)", (long long)T,
                            (long long)k, (long long)D);
    if (T == 0) return FW_CUDA_OK;
    /* 128 threads a block: a decode step's 896 threads of 8 channels spread over 7 SMs */
    if (D % 8 == 0 && fw_ptr_align(y) >= 16 && fw_ptr_align(ye) >= 16)
        moe_combine_kernel<true><<<fw_grid_1d(T * D / 8, 128), 128, 0, ctx->stream>>>((bf16 *)y, (const bf16 *)ye, w,
                                                                                      pl->slot_row, T, (int)k, D);
    else moe_combine_kernel<false><<<fw_grid_1d(T * D, 128), 128, 0, ctx->stream>>>((bf16 *)y, (const bf16 *)ye, w,
                                                                                    pl->slot_row, T, (int)k, D);
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
