/* What the MoE tile kernels share (moe.cu's mma.sync tiles, moe_wgmma.cu's
 * warpgroup MMA tiles): the plan's tile height, where an expert's weights and a
 * grouped row's input are, and the store of an output tile staged in shared
 * memory. CUDA C++ only. */
#ifndef FW_KERNELS_CUDA_MOE_TILES_H
#define FW_KERNELS_CUDA_MOE_TILES_H

#include "kernels/cuda/cuda_common.h"

#define MOE_BM 64 /* grouped rows per tile of the plan (fw_cuda_moe_group) */

/* Expert e's weights: w0's data advanced by e * wstride elements (INT4: words),
 * its scales by e * sstride. */
template <int WT>
__device__ __forceinline__ fw_wview moe_expert_view(fw_wview w, int e, int64_t wstride, int64_t sstride) {
    int64_t es = WT == FW_WTYPE_F32 || WT == FW_WTYPE_INT4 ? 4 : WT == FW_WTYPE_BF16 ? 2 : 1;
    w.data = (const char *)w.data + (int64_t)e * wstride * es;
    if (WT == FW_WTYPE_FP8) w.scale += (int64_t)e * sstride;
    if (WT == FW_WTYPE_INT4) w.gscale += (int64_t)e * sstride;
    return w;
}

/* The plan's tile t: its expert, first grouped row and row count (at most MOE_BM). */
struct moe_tile {
    int e, rbeg, cnt;
};
__device__ __forceinline__ moe_tile moe_tile_of(const fw_cuda_moe_plan &pl, int t) {
    moe_tile tl;
    tl.e = pl.tiles[2 * t];
    tl.rbeg = pl.offsets[tl.e] + pl.tiles[2 * t + 1];
    tl.cnt = min(MOE_BM, pl.offsets[tl.e + 1] - tl.rbeg);
    return tl;
}

/* The input row index of grouped row r: the pair's token row (gather) or r itself. */
__device__ __forceinline__ int moe_x_index(const int32_t *rows, bool gather, int k, int r) {
    return gather ? rows[r] / k : r;
}
__device__ __forceinline__ const bf16 *moe_x_row(const bf16 *x, const int32_t *rows, bool gather, int k, int r,
                                                 int64_t K) {
    return x + (int64_t)moe_x_index(rows, gather, k, r) * K;
}

/* A tile's outputs staged as bf16 in shared memory (cs: [row][BN outputs], pitch
 * bytes a row) to y's grouped rows rbeg .. rbeg + cnt - 1, columns n0 .. n0 + BN
 * - 1 (those < N), in 16-byte pieces of 8 outputs where y_vec (N % 8 == 0, y
 * aligned). With swiglu, y holds the gate's outputs, which become silu(gate) *
 * these. THREADS threads store, tid their index among them. */
template <int BN, int THREADS, int BM = MOE_BM>
__device__ __forceinline__ void moe_tile_store(bf16 *y, const uint8_t *cs, int pitch, int rbeg, int cnt, int64_t n0,
                                               int64_t N, bool y_vec, bool swiglu, int tid) {
    constexpr int CPR = BN / 8;
    for (int c = tid; c < BM * CPR; c += THREADS) {
        const int r = c / CPR, col = (c % CPR) * 8;
        const int64_t n = n0 + col;
        if (r >= cnt) break; /* r grows with c */
        if (n >= N) continue;
        uint4 v = *(const uint4 *)(cs + r * pitch + 2 * col);
        bf16 *dst = y + (int64_t)(rbeg + r) * N + n;
        if (y_vec && n + 8 <= N) {
            if (swiglu) { /* dst holds the gate's outputs */
                const uint4 gv = *(const uint4 *)dst;
                const bf16 *g8 = (const bf16 *)&gv;
                bf16 *u8 = (bf16 *)&v;
#pragma unroll
                for (int q = 0; q < 8; q++) u8[q] = fw_swiglu(g8[q], u8[q]);
            }
            *(uint4 *)dst = v;
        } else {
            const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int q = 0; q < 8; q++) {
                if (n + q >= N) break;
                const bf16 o = __ushort_as_bfloat16((unsigned short)(u[q / 2] >> (16 * (q % 2))));
                dst[q] = swiglu ? fw_swiglu(dst[q], o) : o;
            }
        }
    }
}

/* moe_wgmma.cu: FP8 or INT4 (wt) experts' tiles on the warpgroup MMA with bf16
 * activations (sm_90a; the caller checks the device is 9.0). Fits: K in whole
 * 128-wide stages, rows of W (every expert's) and of x 16-byte aligned; INT4
 * groups of 32, 64 or whole stages. */
bool moe_wgmma_fits(int wt, const bf16 *x, const fw_wview &w, int64_t wstride, int64_t K);
cudaError_t moe_wgmma_launch(int wt, bf16 *y, const bf16 *x, bool gather, int k, const fw_wview &w, const fw_wview *wu,
                             int64_t wstride, int64_t sstride, int64_t N, int64_t K, const fw_cuda_moe_plan &pl,
                             cudaStream_t st);
/* moe_fp8.cu: the same tiles (same fits) with FP8 activations: xq, x's M rows
 * quantized per 128 channels (fw_cuda_quant_act), scales xs. Needs the driver's
 * tensor-map encoder (moe_fp8_available). */
bool moe_fp8_available(void);
cudaError_t moe_fp8_launch(bf16 *y, const uint8_t *xq, const float *xs, int64_t M, bool gather, int k, const fw_wview &w,
                           const fw_wview *wu, int64_t wstride, int64_t sstride, int64_t N, int64_t K,
                           const fw_cuda_moe_plan &pl, cudaStream_t st);

#endif
