/* The own matmul kernels, y (T, N) = x (T, K) . W^T for every weight type and view,
 * used where cuBLASLt is not (matmul.cu says when). Weights are widened to fp32 in
 * registers (FP8: times the scale of their 128 x 128 block), never in memory;
 * activations stay bf16; accumulation is fp32.
 *
 * - gemv (T <= 8, decode): KS warps per output row n (a block of 8 warps holds
 *   8 / KS rows) each stream one K slice of W's row once and keep T accumulators;
 *   the block adds the slices. Splitting the rows of small launches keeps them
 *   many blocks of equal work, so the last wave is not a few blocks on an idle
 *   GPU (o_proj's 7168 rows of 16 KB are 896 blocks of 8 rows, 1.4 waves, unsplit).
 *   FP8 and BF16 rows aligned for it are read wide: each lane has four 16-byte
 *   loads of W in flight (streamed past L1), FP8 scaled once per 16 products;
 *   else 8 elements per load, or one element per lane (odd views, odd ld).
 *   At batch 1, rows of at most 4 KB go two to a warp (gemv_pair_kernel).
 *   INT4 in whole 32-column pieces and groups: the tensor-core GEMV of int4_tc.h
 *   (gemv_int4_tc_kernel); other INT4 views one value at a time.
 * - tiled (T > 8): 64 x 64 output tiles, K in steps of 32 through shared memory,
 *   4 x 4 outputs per thread. Plain fp32 FMA: correct for every shape, not fast;
 *   the real model's shapes go to cuBLASLt. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/int4_tc.h"

#include <cooperative_groups.h>

#define GEMV_THREADS 256 /* 8 warps, 8 output rows per block */
#define TILE 64
#define TILE_K 32
#define TILED_THREADS 256

__device__ __forceinline__ void fw_store(bf16 *p, float v) { *p = fw_f2bf(v); }
__device__ __forceinline__ void fw_store(float *p, float v) { *p = v; }

#define WIDE_U 4 /* 16-byte loads of W in flight per lane (LOAD_WIDE) */

/* How a gemv lane reads W: one element, 8 elements (16 bytes of BF16, 8 of FP8),
 * or 16-byte pieces, WIDE_U in flight (16 FP8 or 8 BF16 values). */
enum { LOAD_ONE, LOAD_8, LOAD_WIDE };

template <int WT, int MT, int LOAD, typename OutT>
__global__ void __launch_bounds__(GEMV_THREADS, MT == 1 ? 5 : 1) /* one row: 40 warps an SM, bytes in flight */
gemv_kernel(OutT *__restrict__ y, const bf16 *__restrict__ x, fw_wview w, int T, int64_t N, int64_t K, int KS,
            int64_t kslice) {
    __shared__ float part[GEMV_THREADS / 32][MT];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t n = (int64_t)blockIdx.x * (GEMV_THREADS / 32 / KS) + warp / KS;
    const int64_t k_lo = (warp % KS) * kslice, k_hi = min(K, k_lo + kslice);
    float acc[MT];
#pragma unroll
    for (int t = 0; t < MT; t++) acc[t] = 0.0f;
    if (n >= N) {
        /* no row: nothing to add (warp-uniform) */
    } else if (LOAD == LOAD_WIDE) {
        constexpr int E = fw_piece<WT>::E;
        const uint8_t *row = (const uint8_t *)w.data + fw_wbyte<WT>(n * w.ld);
        const float *srow = WT == FW_WTYPE_FP8 ? w.scale + ((w.r0 + n) >> 7) * w.scale_ld : nullptr;
        for (int64_t k0 = k_lo + (int64_t)lane * E; k0 < k_hi; k0 += 32 * E * WIDE_U) {
            uint4 wv[WIDE_U];
#pragma unroll
            for (int u = 0; u < WIDE_U; u++) {
                const int64_t k = k0 + (int64_t)u * 32 * E;
                if (k < k_hi) wv[u] = __ldcs((const uint4 *)(row + fw_wbyte<WT>(k)));
            }
#pragma unroll
            for (int u = 0; u < WIDE_U; u++) {
                const int64_t k = k0 + (int64_t)u * 32 * E;
                if (k >= k_hi) break;
                float f[E];
                fw_unpack16<WT>(wv[u], f);
                const float s = WT == FW_WTYPE_FP8 ? srow[(w.c0 + k) >> 7] : 1.0f;
#pragma unroll
                for (int t = 0; t < MT; t++) {
                    if (t < T) {
                        float d = 0.0f;
#pragma unroll
                        for (int c = 0; c < E; c += 8) {
                            float xv[8];
                            fw_load8<FW_WTYPE_BF16>(x, t * K + k + c, xv);
#pragma unroll
                            for (int i = 0; i < 8; i++) d = fmaf(f[c + i], xv[i], d);
                        }
                        acc[t] = fmaf(d, s, acc[t]);
                    }
                }
            }
        }
    } else if (LOAD == LOAD_8) {
        /* K % 8 == 0 and, for FP8, c0 % 8 == 0: a chunk of 8 never straddles a block. */
        const float *srow = WT == FW_WTYPE_FP8 ? w.scale + ((w.r0 + n) >> 7) * w.scale_ld : nullptr;
        for (int64_t k = k_lo + (int64_t)lane * 8; k < k_hi; k += 32 * 8) {
            float wv[8];
            fw_load8<WT>(w.data, n * w.ld + k, wv);
            if (WT == FW_WTYPE_FP8) {
                float s = srow[(w.c0 + k) >> 7];
#pragma unroll
                for (int i = 0; i < 8; i++) wv[i] *= s;
            }
#pragma unroll
            for (int t = 0; t < MT; t++) {
                if (t < T) {
                    float xv[8];
                    fw_load8<FW_WTYPE_BF16>(x, t * K + k, xv);
#pragma unroll
                    for (int i = 0; i < 8; i++) acc[t] = fmaf(wv[i], xv[i], acc[t]);
                }
            }
        }
    } else {
        for (int64_t k = k_lo + lane; k < k_hi; k += 32) {
            float wv = fw_wget<WT>(w, n, k);
#pragma unroll
            for (int t = 0; t < MT; t++)
                if (t < T) acc[t] = fmaf(wv, fw_bf2f(x[t * K + k]), acc[t]);
        }
    }
#pragma unroll
    for (int t = 0; t < MT; t++) acc[t] = fw_warp_sum(acc[t]);
    if (KS == 1) {
        if (lane == 0 && n < N) {
#pragma unroll
            for (int t = 0; t < MT; t++)
                if (t < T) fw_store(y + t * N + n, acc[t]);
        }
        return;
    }
    if (lane == 0) {
#pragma unroll
        for (int t = 0; t < MT; t++) part[warp][t] = acc[t];
    }
    __syncthreads();
    /* Thread (r, t) adds row r's slices in order (the same sum whatever the timing). */
    const int r = threadIdx.x / MT, t = threadIdx.x % MT;
    const int64_t nr = (int64_t)blockIdx.x * (GEMV_THREADS / 32 / KS) + r;
    if (r < GEMV_THREADS / 32 / KS && t < T && nr < N) {
        float v = 0.0f;
        for (int k = 0; k < KS; k++) v += part[r * KS + k][t];
        fw_store(y + t * N + nr, v);
    }
}

/* Batch 1 over short rows (at most GEMV_PAIR_BYTES, unsliced): a warp reads rows
 * 2m and 2m + 1 together, WIDE_U loads in flight for each, so that its start-up
 * and reduction are paid once per two rows (q_b's 24576 rows of 1.5 KB are one
 * round trip of loads per warp). Each row's sum runs in gemv_kernel's order. */
#define GEMV_PAIR_BYTES 4096
template <int WT, typename OutT>
__global__ void __launch_bounds__(GEMV_THREADS, 3)
gemv_pair_kernel(OutT *__restrict__ y, const bf16 *__restrict__ x, fw_wview w, int64_t N, int64_t K) {
    constexpr int E = fw_piece<WT>::E;
    const int lane = threadIdx.x & 31;
    const int64_t n0 = 2 * ((int64_t)blockIdx.x * (GEMV_THREADS / 32) + (threadIdx.x >> 5));
    if (n0 >= N) return;
    const bool has1 = n0 + 1 < N;
    const uint8_t *row[2];
    const float *srow[2];
#pragma unroll
    for (int j = 0; j < 2; j++) {
        const int64_t n = has1 ? n0 + j : n0; /* a missing second row reads the first's */
        row[j] = (const uint8_t *)w.data + fw_wbyte<WT>(n * w.ld);
        srow[j] = WT == FW_WTYPE_FP8 ? w.scale + ((w.r0 + n) >> 7) * w.scale_ld : nullptr;
    }
    float acc[2] = {0.0f, 0.0f};
    for (int64_t k0 = (int64_t)lane * E; k0 < K; k0 += 32 * E * WIDE_U) {
        uint4 wv[2][WIDE_U];
#pragma unroll
        for (int u = 0; u < WIDE_U; u++) {
            const int64_t k = k0 + (int64_t)u * 32 * E;
#pragma unroll
            for (int j = 0; j < 2; j++)
                if (k < K) wv[j][u] = __ldcs((const uint4 *)(row[j] + fw_wbyte<WT>(k)));
        }
#pragma unroll
        for (int u = 0; u < WIDE_U; u++) {
            const int64_t k = k0 + (int64_t)u * 32 * E;
            if (k >= K) break;
#pragma unroll
            for (int j = 0; j < 2; j++) {
                float f[E];
                fw_unpack16<WT>(wv[j][u], f);
                const float s = WT == FW_WTYPE_FP8 ? srow[j][(w.c0 + k) >> 7] : 1.0f;
                float d = 0.0f;
#pragma unroll
                for (int c = 0; c < E; c += 8) {
                    float xv[8];
                    fw_load8<FW_WTYPE_BF16>(x, k + c, xv);
#pragma unroll
                    for (int i = 0; i < 8; i++) d = fmaf(f[c + i], xv[i], d);
                }
                acc[j] = fmaf(d, s, acc[j]);
            }
        }
    }
    acc[0] = fw_warp_sum(acc[0]);
    acc[1] = fw_warp_sum(acc[1]);
    if (lane == 0) {
        fw_store(y + n0, acc[0]);
        if (has1) fw_store(y + n0 + 1, acc[1]);
    }
}

template <int WT, typename OutT>
__global__ void __launch_bounds__(TILED_THREADS)
tiled_kernel(OutT *__restrict__ y, const bf16 *__restrict__ x, fw_wview w, int64_t T, int64_t N, int64_t K) {
    /* [k][row], one column of padding so the transposed stores hit distinct banks. */
    __shared__ float xs[TILE_K][TILE + 1];
    __shared__ float ws[TILE_K][TILE + 1];
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int64_t n0 = (int64_t)blockIdx.x * TILE, m0 = (int64_t)blockIdx.y * TILE;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += TILE_K) {
        /* A warp loads 32 consecutive k of one row: coalesced. */
#pragma unroll
        for (int i = 0; i < TILE * TILE_K / TILED_THREADS; i++) {
            int idx = tid + i * TILED_THREADS, r = idx / TILE_K, kk = idx % TILE_K;
            int64_t k = k0 + kk, m = m0 + r, n = n0 + r;
            xs[kk][r] = (m < T && k < K) ? fw_bf2f(x[m * K + k]) : 0.0f;
            ws[kk][r] = (n < N && k < K) ? fw_wget<WT>(w, n, k) : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int kk = 0; kk < TILE_K; kk++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                a[i] = xs[kk][ty + 16 * i];
                b[i] = ws[kk][tx + 16 * i];
            }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int64_t m = m0 + ty + 16 * i;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int64_t n = n0 + tx + 16 * j;
            if (m < T && n < N) fw_store(y + m * N + n, acc[i][j]);
        }
    }
}

/* Slices per row: a launch of fewer than GEMV_FEW_BLOCKS blocks (two waves of an
 * H200 at 5 blocks an SM) splits its rows in 2, 4 or 8 while slices keep at
 * least GEMV_SLICE_BYTES (short-lived warps wait on memory more than they read)
 * and whole 16-element pieces, 8 at most. */
#define GEMV_FEW_BLOCKS 1320
#define GEMV_SLICE_BYTES 1024
#define GEMV_MAX_SLICES 8
static int gemv_slices(int64_t N, int64_t K, int64_t es) {
    int ks = 1;
    while (ks < GEMV_MAX_SLICES && fw_ceil_div(N, GEMV_THREADS / 32 / ks) < GEMV_FEW_BLOCKS &&
           K * es / (2 * ks) >= GEMV_SLICE_BYTES && K % (16 * 2 * ks) == 0)
        ks *= 2;
    return ks;
}

template <int WT, int MT, typename OutT>
static void launch_gemv(int vec, OutT *y, const bf16 *x, const fw_wview &w, int T, int64_t N, int64_t K, int ks,
                        cudaStream_t st) {
    if constexpr (MT == 1 && (WT == FW_WTYPE_BF16 || WT == FW_WTYPE_FP8)) {
        if (vec == LOAD_WIDE && ks == 1 && K * (WT == FW_WTYPE_FP8 ? 1 : 2) <= GEMV_PAIR_BYTES) {
            gemv_pair_kernel<WT, OutT><<<(unsigned)fw_ceil_div(N, 2 * (GEMV_THREADS / 32)), GEMV_THREADS, 0, st>>>(y, x, w, N, K);
            return;
        }
    }
    const unsigned blocks = (unsigned)fw_ceil_div(N, GEMV_THREADS / 32 / ks);
    const int64_t kslice = K / ks;
    if constexpr (WT == FW_WTYPE_BF16 || WT == FW_WTYPE_FP8) {
        if (vec == LOAD_WIDE) {
            gemv_kernel<WT, MT, LOAD_WIDE, OutT><<<blocks, GEMV_THREADS, 0, st>>>(y, x, w, T, N, K, ks, kslice);
            return;
        }
    }
    if constexpr (WT != FW_WTYPE_INT4) {
        if (vec != LOAD_ONE) {
            gemv_kernel<WT, MT, LOAD_8, OutT><<<blocks, GEMV_THREADS, 0, st>>>(y, x, w, T, N, K, ks, kslice);
            return;
        }
    }
    gemv_kernel<WT, MT, LOAD_ONE, OutT><<<blocks, GEMV_THREADS, 0, st>>>(y, x, w, T, N, K, ks, kslice);
}

template <int WT, typename OutT>
static void launch_own(bool gemv, int vec, OutT *y, const bf16 *x, const fw_wview &w, int64_t T, int64_t N,
                       int64_t K, int ks, cudaStream_t st) {
    if (gemv) {
        int t = (int)T;
        if (t <= 1) launch_gemv<WT, 1>(vec, y, x, w, t, N, K, ks, st);
        else if (t <= 2) launch_gemv<WT, 2>(vec, y, x, w, t, N, K, ks, st);
        else if (t <= 4) launch_gemv<WT, 4>(vec, y, x, w, t, N, K, ks, st);
        else launch_gemv<WT, 8>(vec, y, x, w, t, N, K, ks, st);
    } else {
        dim3 grid((unsigned)fw_ceil_div(N, TILE), (unsigned)fw_ceil_div(T, TILE));
        tiled_kernel<WT, OutT><<<grid, TILED_THREADS, 0, st>>>(y, x, w, T, N, K);
    }
}

template <typename OutT>
static void launch_typed(int wt, bool gemv, int vec, OutT *y, const bf16 *x, const fw_wview &w, int64_t T,
                         int64_t N, int64_t K, int ks, cudaStream_t st) {
    if (wt == FW_WTYPE_F32) launch_own<FW_WTYPE_F32>(gemv, vec, y, x, w, T, N, K, ks, st);
    else if (wt == FW_WTYPE_BF16) launch_own<FW_WTYPE_BF16>(gemv, vec, y, x, w, T, N, K, ks, st);
    else if (wt == FW_WTYPE_FP8) launch_own<FW_WTYPE_FP8>(gemv, vec, y, x, w, T, N, K, ks, st);
    else launch_own<FW_WTYPE_INT4>(gemv, vec, y, x, w, T, N, K, ks, st);
}

/* INT4 at T <= 8 on the tensor cores (int4_tc.h): the block's 8 warps are 8 / KS
 * tiles of 16 rows x KS slices of K, the slices added through shared memory in
 * slice order. A warp takes 16 rows where the other GEMVs take one, so a small N
 * is few tiles: there a cluster of C blocks (C > 1) splits K once more, and the
 * first block of the cluster adds the others' sums from their shared memory.
 * K, the view's first column and the group whole 32s (UNIT 32: pieces), or whole
 * 128s with 16-byte aligned rows (UNIT 128: chunks, one in flight a lane and
 * four blocks an SM, the fastest of the forms measured on an H100: GPU.md). */
template <typename OutT, int UNIT>
__global__ void __launch_bounds__(GEMV_THREADS, UNIT == 128 ? 4 : 1)
gemv_int4_tc_kernel(OutT *__restrict__ y, const bf16 *__restrict__ x, fw_wview w, int T, int64_t N, int64_t K, int KS,
                    int C) {
    __shared__ float part[GEMV_THREADS / 32][4][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int tiles = GEMV_THREADS / 32 / KS, crank = (int)blockIdx.x % C, slice = crank * KS + warp % KS;
    const int64_t n0 = ((int64_t)(blockIdx.x / C) * tiles + warp / KS) * 16;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (n0 < N) {
        const int64_t ra = min(n0 + g, N - 1), rb = min(n0 + g + 8, N - 1); /* rows past N: read, not stored */
        const int P = (int)(K / UNIT), S = KS * C, cw = (int)(w.c0 / 8);
        const int lo = (int)((int64_t)P * slice / S), hi = (int)((int64_t)P * (slice + 1) / S);
        const uint32_t *words = (const uint32_t *)w.data;
        const bf16 *xr = x + (int64_t)(g < T ? g : 0) * K, *sa = w.gscale + ra * w.scale_ld, *sb = w.gscale + rb * w.scale_ld;
        if constexpr (UNIT == 128)
            int4_tc_dot128<1>(acc, words + ra * w.ld + cw + 4 * t, words + rb * w.ld + cw + 4 * t, sa, sb, xr + 32 * t,
                              g < T, lo, hi, (int)(w.group / 128), (int)(w.c0 / 128));
        else
            int4_tc_dot(acc, words + ra * w.ld + cw + t, words + rb * w.ld + cw + t, sa, sb, xr + 8 * t, g < T, lo, hi,
                        (int)(w.group / 32), (int)(w.c0 / 32));
    }
    const bool first = warp % KS == 0; /* holds the block's sums of its tile */
    if (KS > 1) {
#pragma unroll
        for (int q = 0; q < 4; q++) part[warp][q][lane] = acc[q];
        __syncthreads();
        if (first) {
#pragma unroll
            for (int q = 0; q < 4; q++)
                for (int s = 1; s < KS; s++) acc[q] += part[warp + s][q][lane];
        }
    }
    if (C > 1) { /* every thread of the cluster reaches both syncs */
        namespace cg = cooperative_groups;
        cg::cluster_group cl = cg::this_cluster();
        __syncthreads(); /* part's reads are done before it is overwritten */
        if (first)
#pragma unroll
            for (int q = 0; q < 4; q++) part[warp][q][lane] = acc[q];
        cl.sync();
        if (crank == 0 && first)
            for (int r = 1; r < C; r++) {
                const float(*rp)[4][32] = cl.map_shared_rank(part, r);
#pragma unroll
                for (int q = 0; q < 4; q++) acc[q] += rp[warp][q][lane];
            }
        cl.sync(); /* the others' shared memory stays until it was read */
    }
    if (!first || crank != 0) return;
    /* acc[q]: row n0 + g + 8 (q / 2), token 2t + q % 2 */
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const int64_t n = n0 + g + 8 * (q >> 1);
        const int tok = 2 * t + (q & 1);
        if (n < N && tok < T) fw_store(y + tok * N + n, acc[q]);
    }
}

/* Slices for the INT4 tensor-core GEMV (K in units of `unit` columns): up to 8
 * warps while the launch is under two blocks an SM of an H200 and slices keep at
 * least 256 columns; then, where the launch has under 64 blocks, clusters of up
 * to 8 blocks while the launch stays under two an SM and slices keep 128 (slices
 * may differ by a unit). Past that the cluster's reduction costs more than it
 * gains (H100, GPU.md, one kernel: N 576 x K 7168 from 36 blocks to 144 8.6 -> 7.4 us,
 * but 2048 x 7168 from 128 to 256 9.1 -> 16.0 us). */
static void int4_tc_slices(int64_t N, int64_t K, int unit, int *ks_out, int *c_out) {
    const int64_t P = K / unit;
    int ks = 1, c = 1;
    while (ks < 8 && fw_ceil_div(N, 16 * (GEMV_THREADS / 32 / ks)) < 264 && P * unit / (2 * ks) >= 256) ks *= 2;
    const int64_t blocks = fw_ceil_div(N, 16 * (GEMV_THREADS / 32 / ks));
    while (blocks < 64 && c < 8 && blocks * c < 264 && P * unit / (2 * ks * c) >= 128 && P >= 2 * ks * c) c *= 2;
    *ks_out = ks, *c_out = c;
}

template <typename OutT, int UNIT>
static cudaError_t launch_int4_tc(OutT *y, const bf16 *x, const fw_wview &w, int T, int64_t N, int64_t K, cudaStream_t st) {
    int ks, c;
    int4_tc_slices(N, K, UNIT, &ks, &c);
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)(fw_ceil_div(N, 16 * (GEMV_THREADS / 32 / ks)) * c));
    cfg.blockDim = dim3(GEMV_THREADS);
    cfg.stream = st;
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = (unsigned)c, attr.val.clusterDim.y = 1, attr.val.clusterDim.z = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, gemv_int4_tc_kernel<OutT, UNIT>, y, x, w, T, N, K, ks, c);
}

template <typename OutT>
static cudaError_t launch_int4_tc(OutT *y, const bf16 *x, const fw_wview &w, int T, int64_t N, int64_t K, cudaStream_t st) {
    const bool chunks = K % 128 == 0 && w.c0 % 128 == 0 && w.group % 128 == 0 && w.ld % 4 == 0 &&
                        fw_ptr_align(w.data) >= 16 && fw_ptr_align(x) >= 16;
    return chunks ? launch_int4_tc<OutT, 128>(y, x, w, T, N, K, st) : launch_int4_tc<OutT, 32>(y, x, w, T, N, K, st);
}

int fw_cuda_mm_own(fw_cuda_ctx *ctx, void *y, bool y_f32, const bf16 *x, const fw_weight *w, int64_t T) {
    int64_t N = w->rows, K = w->cols;
    bool gemv = T <= 8;
    if (!gemv && fw_ceil_div(T, TILE) > 65535)
        return fw_cuda_errf(ctx, "fw_cuda_matmul: T %lld is too large for one launch", (long long)T);
    if (gemv && fw_ceil_div(N, GEMV_THREADS / 32) > 0x7fffffffLL)
        return fw_cuda_errf(ctx, "fw_cuda_matmul: N %lld is too large for one launch", (long long)N);
    int64_t es = (int64_t)fw_wtype_size(w->type);
    fw_wview v = fw_wview_of(w);
    /* INT4 in whole 32-column pieces of whole groups, x rows 16-byte aligned: the tensor cores */
    if (gemv && w->type == FW_WTYPE_INT4 && K % 32 == 0 && w->c0 % 32 == 0 && w->group % 32 == 0 &&
        fw_ptr_align(x) >= 16 && fw_ptr_align(w->data) >= 4) {
        FW_CUDA_CHECK(ctx, y_f32 ? launch_int4_tc((float *)y, x, v, (int)T, N, K, ctx->stream)
                                 : launch_int4_tc((bf16 *)y, x, v, (int)T, N, K, ctx->stream));
        FW_CUDA_LAUNCHED(ctx);
        ctx->last_mm_path = FW_CUDA_MM_GEMV;
        return FW_CUDA_OK;
    }
    /* 8-element loads need every W row, every x row and each 8-chunk aligned
     * (LOAD_8); the wide form's 16-byte pieces of W hold 16 FP8 values, which
     * must not straddle a 128-column scale block (LOAD_WIDE). Other INT4: one
     * value at a time. */
    const bool load8 = K % 8 == 0 && fw_ptr_align(x) >= 16 && fw_ptr_align(w->data) >= 16 &&
                       (w->ld * es) % 16 == 0 && (w->type != FW_WTYPE_FP8 || w->c0 % 8 == 0);
    const bool wide = w->type == FW_WTYPE_BF16 || (w->type == FW_WTYPE_FP8 && K % 16 == 0 && w->c0 % 16 == 0);
    const int vec = !load8 || w->type == FW_WTYPE_INT4 ? LOAD_ONE : wide ? LOAD_WIDE : LOAD_8;
    const int ks = gemv && w->type != FW_WTYPE_INT4 ? gemv_slices(N, K, es) : 1;
    if (y_f32) launch_typed(w->type, gemv, vec, (float *)y, x, v, T, N, K, ks, ctx->stream);
    else launch_typed(w->type, gemv, vec, (bf16 *)y, x, v, T, N, K, ks, ctx->stream);
    FW_CUDA_LAUNCHED(ctx);
    ctx->last_mm_path = gemv ? FW_CUDA_MM_GEMV : FW_CUDA_MM_TILED;
    return FW_CUDA_OK;
}
