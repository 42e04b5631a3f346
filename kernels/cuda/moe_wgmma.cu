/* FP8 and INT4 experts' large groups (prefill) on Hopper's warpgroup MMA: one warpgroup
 * computes a plan tile's 64 grouped rows against 128 of the expert's outputs
 * (one FP8 scale block) as the transposed product outputs x rows, D = W . X^T,
 * in two m64n64k16 products per 16 of K. W is the A operand, in registers: each
 * lane reads its fragment's FP8 bytes from shared memory two at a time and widens
 * them to their exact bf16 values there (fw_fp8x4_to_bf16), so weights are never
 * widened in memory and the tensor cores see the same values as in moe.cu's
 * mma.sync tiles. X (bf16 rows, gathered token rows for the gate and up
 * projections) is the B operand, read by the tensor cores from 128-byte swizzled
 * shared memory. K advances 128 (a scale block) a stage through a 3-deep
 * cp.async ring; each block's products accumulate into `part`, then acc += scale
 * * part (DeepGEMM's promotion), the FP8 block scale being one number for the
 * CTA's 128 outputs. Two CTAs an SM: one's promotions and fragment loads overlap
 * the other's products.
 *
 * Measured (H200, DeepSeek-V3's experts at a 4096-token prefill): 257 / 233
 * TFLOP/s gate / down, against 229 / 209 by mma.sync. Widening the weights is
 * about a quarter of the time (Nsight: the ALU pipe half busy, two warps a
 * scheduler). 64 rows a CTA: 128 rows in two warpgroups (m64n128k16, each weight
 * widened once per 128 rows) would leave one CTA an SM and half-empty tiles, and
 * are slower.
 *
 * INT4 weights take the same tiles: a stage holds 16 words of each weight row,
 * each pair of nibbles becoming exact bf16 q with one logic op and one bf16
 * subtraction (tc.h), and groups of whole stages are promoted with each output
 * row's scale, exactly as the mma.sync tiles do. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/moe_tiles.h"
#include "kernels/cuda/tc.h"
#include "kernels/cuda/wgmma.h"

#define WG_BN 128     /* outputs per CTA: one FP8 scale block, two m64 products */
#define WG_BK 128     /* K per stage: one scale block */
#define WG_STAGES 3
#define WG_THREADS 128 /* one warpgroup */
#define WG_X_PANEL (MOE_BM * 128) /* 64 of K: MOE_BM swizzled rows of 128 bytes */
#define WG_X_BYTES (2 * WG_X_PANEL) /* 16 KiB */
#define WG_C_PITCH (2 * WG_BN + 16) /* the bf16 output tile's rows */

/* A stage's weight rows: FP8 128 bytes + 16, INT4 64 bytes (16 words) + 16, so
 * that the fragment loads of 8 rows hit distinct banks; stages a multiple of
 * 1024 bytes so the X panels stay aligned. */
template <int WT>
struct wg_layout {
    static constexpr bool I4 = WT == FW_WTYPE_INT4;
    static constexpr int W_ROW = I4 ? WG_BK / 2 : WG_BK, W_PITCH = W_ROW + 16;
    static constexpr int STAGE = WG_X_BYTES + WG_BN * W_PITCH; /* 34 KiB FP8, 26 KiB INT4 */
    static constexpr int SMEM = WG_STAGES * STAGE + 1024;      /* + room to align the ring to 1024 bytes */
    static_assert(STAGE % 1024 == 0 && MOE_BM * WG_C_PITCH <= WG_STAGES * STAGE, "stage layout");
};

/* The A fragment (tc.h's a0..a3) of output rows r, r + 8 at k-step j (16 of K)
 * of a stage's FP8 weights: bytes (2t, 2t + 1) and (2t + 8, 2t + 9) of each row. */
__device__ __forceinline__ void wg_w_frag(uint32_t (&a)[4], const uint8_t *ws, int r, int j, int t) {
    constexpr int P = wg_layout<FW_WTYPE_FP8>::W_PITCH;
    const uint8_t *p0 = ws + r * P + 16 * j + 2 * t, *p1 = p0 + 8 * P;
    const uint32_t q0 = (uint32_t) * (const uint16_t *)p0 | ((uint32_t) * (const uint16_t *)(p0 + 8) << 16);
    const uint32_t q1 = (uint32_t) * (const uint16_t *)p1 | ((uint32_t) * (const uint16_t *)(p1 + 8) << 16);
    fw_fp8x4_to_bf16(q0, a[0], a[2]);
    fw_fp8x4_to_bf16(q1, a[1], a[3]);
}

/* The same of INT4 weights: words 2j (k 0..7 of the step) and 2j + 1 of each
 * row, nibbles 2t, 2t + 1 of each, as exact bf16 q. */
__device__ __forceinline__ void wg_w_frag_int4(uint32_t (&a)[4], const uint8_t *ws, int r, int j, int t) {
    constexpr int P = wg_layout<FW_WTYPE_INT4>::W_PITCH;
    const uint2 p = *(const uint2 *)(ws + r * P + 8 * j), q = *(const uint2 *)(ws + (r + 8) * P + 8 * j);
    a[0] = int4x2_to_bf16x2(p.x >> (8 * t)), a[1] = int4x2_to_bf16x2(q.x >> (8 * t));
    a[2] = int4x2_to_bf16x2(p.y >> (8 * t)), a[3] = int4x2_to_bf16x2(q.y >> (8 * t));
}

/* The CTA's outputs (acc[m][4 i + q]: output 64 m + 16 warp + g (+ 8 for q >=
 * 2), row 8 i + 2t (+ 1 for odd q)) as bf16 through shared memory (the ring,
 * free: the caller waited for its copies and products) to y. */
__device__ __forceinline__ void wg_store(const float (&acc)[2][32], uint8_t *cs, bf16 *y, int rbeg, int cnt, int64_t n0,
                                         int64_t N, bool y_vec, bool swiglu) {
    const int tid = threadIdx.x, warp = tid >> 5, g = (tid & 31) >> 2, t = tid & 3;
#pragma unroll
    for (int m = 0; m < 2; m++)
#pragma unroll
        for (int i = 0; i < 8; i++)
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const int r = 8 * i + 2 * t + (q & 1), c = 64 * m + 16 * warp + g + 8 * (q >> 1);
                *(bf16 *)(cs + r * WG_C_PITCH + 2 * c) = fw_f2bf(acc[m][4 * i + q]);
            }
    __syncthreads();
    moe_tile_store<WG_BN, WG_THREADS>(y, cs, WG_C_PITCH, rbeg, cnt, n0, N, y_vec, swiglu, threadIdx.x);
}

/* WT FP8: one scale a stage for the CTA's 128 outputs. WT INT4, SCALED false
 * (groups of whole stages): each output row's group scale a stage, the same
 * promotion with a scale per accumulator row. INT4, SCALED (groups of 32 or 64,
 * several a stage): the fragments are q * scale rounded to bf16 once, as the
 * dequantized copy cuBLASLt reads, and nothing is promoted. */
template <int WT, bool SCALED>
__global__ void __launch_bounds__(WG_THREADS, 2)
moe_wgmma_kernel(bf16 *__restrict__ y, const bf16 *__restrict__ x, bool gather, int k, fw_wview w0, int64_t wstride,
                 int64_t sstride, int64_t N, int64_t K, fw_cuda_moe_plan pl, bool y_vec, bool swiglu) {
#if FW_HAVE_WGMMA
    typedef wg_layout<WT> L;
    constexpr bool I4 = L::I4;
    if ((int)blockIdx.y >= pl.counts[1]) return;
    const moe_tile tl = moe_tile_of(pl, blockIdx.y);
    const int e = tl.e, rbeg = tl.rbeg, cnt = tl.cnt;
    const int64_t n0 = (int64_t)blockIdx.x * WG_BN;
    const fw_wview w = moe_expert_view<WT>(w0, e, wstride, sstride);
    extern __shared__ __align__(128) uint8_t wg_smem[];
    const uint32_t raw = fw_smem_addr(wg_smem), pad = (1024 - (raw & 1023)) & 1023;
    uint8_t *sm = wg_smem + pad;
    const uint32_t sbase = raw + pad;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;

    /* This thread's copies each stage. X: chunk xc (of 16 per 128-wide row: panel
     * xc / 8) of rows xr + 8 i; the swizzle depends on the row mod 8, the same for
     * all i. W: chunk wc of weight rows wr + WR i (FP8 8 chunks a row, INT4 4).
     * Rows past the tile or past N copy 0 bytes (zero fill) from a row that exists. */
    constexpr int WCH = L::W_ROW / 16, WR = WG_THREADS / WCH;
    const int xc = tid & 15, xr = tid >> 4, wc = tid % WCH, wr = tid / WCH;
    const uint32_t x_dst = (xc >> 3) * WG_X_PANEL + xr * 128 + (((xc & 7) ^ (xr & 7)) << 4);
    int xrow[MOE_BM / 8]; /* input row index of each copied row, -1: past the tile */
#pragma unroll
    for (int i = 0; i < MOE_BM / 8; i++) {
        const int r = xr + 8 * i;
        xrow[i] = r < cnt ? moe_x_index(pl.rows, gather, k, rbeg + r) : -1;
    }
    const int64_t w_ld = I4 ? 4 * w.ld : w.ld; /* bytes a row */
    const uint8_t *wsrc = (const uint8_t *)w.data + (n0 + wr) * w_ld + 16 * wc;
    auto load = [&](int st, int kb) {
        const uint32_t s0 = sbase + st * L::STAGE;
        const int64_t k0 = (int64_t)kb * WG_BK;
#pragma unroll
        for (int i = 0; i < MOE_BM / 8; i++) {
            const bf16 *src = x + (int64_t)(xrow[i] < 0 ? 0 : xrow[i]) * K + k0 + 8 * xc;
            fw_cp_async16_at(s0 + x_dst + i * 8 * 128, src, xrow[i] < 0 ? 0 : 16);
        }
#pragma unroll
        for (int i = 0; i < WG_BN / WR; i++) {
            const bool in = n0 + wr + WR * i < N;
            const uint8_t *src = in ? wsrc + (int64_t)WR * i * w_ld + k0 * L::W_ROW / WG_BK : (const uint8_t *)w.data;
            fw_cp_async16_at(s0 + WG_X_BYTES + (wr + WR * i) * L::W_PITCH + 16 * wc, src, in ? 16 : 0);
        }
    };

    const int nk = (int)(K / WG_BK);
#pragma unroll
    for (int s = 0; s < WG_STAGES - 1; s++) {
        if (s < nk) load(s, s);
        fw_cp_async_commit();
    }
    /* INT4: where the scales of this thread's outputs 64 m + 16 warp + g + 8 h
     * start (rows past N read row N - 1; an expert's scales fit 32 bits) */
    int srow[2][2];
    if constexpr (I4) {
#pragma unroll
        for (int m = 0; m < 2; m++)
#pragma unroll
            for (int h = 0; h < 2; h++)
                srow[m][h] = (int)(min(n0 + 64 * m + 16 * warp + g + 8 * h, N - 1) * w.scale_ld);
    }
    float acc[2][32], part[2][32];
#pragma unroll
    for (int m = 0; m < 2; m++)
#pragma unroll
        for (int i = 0; i < 32; i++) acc[m][i] = 0.0f;

    for (int kb = 0; kb < nk; kb++) {
        fw_cp_async_wait<WG_STAGES - 2>(); /* block kb has landed (this thread's copies) */
        fw_wgmma_fence_smem();
        __syncthreads();                  /* ... everyone's; and kb - 1's stage is free (its products waited for) */
        if (kb + WG_STAGES - 1 < nk) load((kb + WG_STAGES - 1) % WG_STAGES, kb + WG_STAGES - 1);
        fw_cp_async_commit();
        float sc[2][2]; /* the promotion's scale of each accumulator row (FP8: one for all) */
        if constexpr (!I4) {
            sc[0][0] = __ldg(w.scale + (n0 >> 7) * w.scale_ld + kb);
            sc[0][1] = sc[1][0] = sc[1][1] = sc[0][0];
        } else if constexpr (!SCALED) {
#pragma unroll
            for (int m = 0; m < 2; m++)
#pragma unroll
                for (int h = 0; h < 2; h++) sc[m][h] = fw_bf2f(__ldg(w.gscale + srow[m][h] + kb / (int)(w.group / WG_BK)));
        }
        const int st = kb % WG_STAGES;
        const uint32_t xs = sbase + st * L::STAGE;
        const uint8_t *ws = sm + st * L::STAGE + WG_X_BYTES;
        /* Two groups of 4 k-steps: the second's fragments load while the first's products run. */
        uint32_t a[2][4][2][4]; /* [half][k-step][m64][fragment] */
#pragma unroll
        for (int h = 0; h < 2; h++) {
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int m = 0; m < 2; m++) {
                    const int r = 64 * m + 16 * warp + g, step = 4 * h + j;
                    if constexpr (!I4) {
                        wg_w_frag(a[h][j][m], ws, r, step, t);
                    } else {
                        wg_w_frag_int4(a[h][j][m], ws, r, step, t);
                        if constexpr (SCALED) { /* q * scale of rows r, r + 8 in this step's group */
                            const int gi = (kb * WG_BK + 16 * step) >> (w.group == 32 ? 5 : 6);
                            const __nv_bfloat162 s0 = __bfloat162bfloat162(__ldg(w.gscale + srow[m][0] + gi)),
                                                 s1 = __bfloat162bfloat162(__ldg(w.gscale + srow[m][1] + gi));
#pragma unroll
                            for (int q = 0; q < 4; q++) {
                                __nv_bfloat162 v = __hmul2(*(const __nv_bfloat162 *)&a[h][j][m][q], q & 1 ? s1 : s0);
                                a[h][j][m][q] = *(const uint32_t *)&v;
                            }
                        }
                    }
                }
            fw_wgmma_fence();
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const uint64_t desc = fw_wgmma_desc(xs + h * WG_X_PANEL + 32 * j);
#pragma unroll
                for (int m = 0; m < 2; m++) {
                    if constexpr (SCALED) fw_wgmma_m64n64k16_rs(acc[m], a[h][j][m], desc, true);
                    else fw_wgmma_m64n64k16_rs(part[m], a[h][j][m], desc, h > 0 || j > 0);
                }
            }
            fw_wgmma_commit();
        }
        fw_wgmma_wait<0>();
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int m = 0; m < 2; m++)
#pragma unroll
                    for (int q = 0; q < 4; q++) fw_wgmma_pin(a[h][j][m][q]);
#pragma unroll
        for (int m = 0; m < 2; m++)
#pragma unroll
            for (int i = 0; i < 32; i++) {
                if constexpr (SCALED) {
                    fw_wgmma_pin(acc[m][i]);
                } else {
                    fw_wgmma_pin(part[m][i]);
                    acc[m][i] = fmaf(sc[m][(i & 3) >> 1], part[m][i], acc[m][i]);
                }
            }
    }
    fw_cp_async_wait<0>();
    __syncthreads(); /* the ring is free for the output tile */

    wg_store(acc, sm, y, rbeg, cnt, n0, N, y_vec, swiglu);
#else
    __trap(); /* built without sm_90a code: the host never launches this */
#endif
}

bool moe_wgmma_fits(int wt, const bf16 *x, const fw_wview &w, int64_t wstride, int64_t K) {
    if (K % WG_BK || fw_ptr_align(w.data) < 16 || fw_ptr_align(x) < 16) return false;
    if (wt == FW_WTYPE_INT4) /* rows of whole 16-byte words, groups of 32, 64 or whole stages */
        return w.c0 == 0 && w.ld % 4 == 0 && wstride % 4 == 0 &&
               (w.group == 32 || w.group == 64 || w.group % WG_BK == 0);
    return w.ld % 16 == 0 && wstride % 16 == 0;
}

template <int WT, bool SCALED>
static cudaError_t wg_launch(bf16 *y, const bf16 *x, bool gather, int k, const fw_wview &w, const fw_wview *wu,
                             int64_t wstride, int64_t sstride, int64_t N, int64_t K, const fw_cuda_moe_plan &pl,
                             cudaStream_t st) {
    const bool y_vec = N % 8 == 0 && fw_ptr_align(y) >= 16;
    dim3 grid((unsigned)fw_ceil_div(N, WG_BN), (unsigned)pl.tile_cap);
    cudaError_t err = cudaFuncSetAttribute(moe_wgmma_kernel<WT, SCALED>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           wg_layout<WT>::SMEM);
    if (err != cudaSuccess) return err;
    for (int p = 0; p < (wu ? 2 : 1); p++)
        moe_wgmma_kernel<WT, SCALED><<<grid, WG_THREADS, wg_layout<WT>::SMEM, st>>>(
            y, x, gather, k, p ? *wu : w, wstride, sstride, N, K, pl, y_vec, p == 1);
    return cudaGetLastError();
}

/* The gate pass, then with wu the up pass finishing the gate's outputs in place. */
cudaError_t moe_wgmma_launch(int wt, bf16 *y, const bf16 *x, bool gather, int k, const fw_wview &w, const fw_wview *wu,
                             int64_t wstride, int64_t sstride, int64_t N, int64_t K, const fw_cuda_moe_plan &pl,
                             cudaStream_t st) {
    if (wt != FW_WTYPE_INT4) return wg_launch<FW_WTYPE_FP8, false>(y, x, gather, k, w, wu, wstride, sstride, N, K, pl, st);
    if (w.group % WG_BK == 0) return wg_launch<FW_WTYPE_INT4, false>(y, x, gather, k, w, wu, wstride, sstride, N, K, pl, st);
    return wg_launch<FW_WTYPE_INT4, true>(y, x, gather, k, w, wu, wstride, sstride, N, K, pl, st);
}
