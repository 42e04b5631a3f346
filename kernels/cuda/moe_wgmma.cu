/* FP8 experts' large groups (prefill) on Hopper's warpgroup MMA: one warpgroup
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
 * are slower. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/moe_tiles.h"
#include "kernels/cuda/tc.h"
#include "kernels/cuda/wgmma.h"

#define WG_BN 128     /* outputs per CTA: one FP8 scale block, two m64 products */
#define WG_BK 128     /* K per stage: one scale block */
#define WG_STAGES 3
#define WG_THREADS 128 /* one warpgroup */
#define WG_W_PITCH 144 /* FP8 weight rows of 128 bytes + 16: the 2-byte fragment loads of 8 rows hit distinct banks */
#define WG_X_PANEL (MOE_BM * 128)                    /* 64 of K: MOE_BM swizzled rows of 128 bytes */
#define WG_X_BYTES (2 * WG_X_PANEL)                  /* 16 KiB */
#define WG_STAGE (WG_X_BYTES + WG_BN * WG_W_PITCH)   /* 34 KiB, a multiple of 1024: panels stay aligned */
#define WG_SMEM (WG_STAGES * WG_STAGE + 1024)        /* + room to align the ring to 1024 bytes */
#define WG_C_PITCH (2 * WG_BN + 16)                  /* the bf16 output tile's rows */
static_assert(WG_STAGE % 1024 == 0 && MOE_BM * WG_C_PITCH <= WG_STAGES * WG_STAGE, "stage layout");

/* The A fragment (tc.h's a0..a3) of output rows r, r + 8 at K bytes kb .. kb + 15
 * of a stage's weights: bytes (2t, 2t + 1) and (2t + 8, 2t + 9) of each row. */
__device__ __forceinline__ void wg_w_frag(uint32_t (&a)[4], const uint8_t *ws, int r, int kb, int t) {
    const uint8_t *p0 = ws + r * WG_W_PITCH + kb + 2 * t, *p1 = p0 + 8 * WG_W_PITCH;
    const uint32_t q0 = (uint32_t) * (const uint16_t *)p0 | ((uint32_t) * (const uint16_t *)(p0 + 8) << 16);
    const uint32_t q1 = (uint32_t) * (const uint16_t *)p1 | ((uint32_t) * (const uint16_t *)(p1 + 8) << 16);
    fw_fp8x4_to_bf16(q0, a[0], a[2]);
    fw_fp8x4_to_bf16(q1, a[1], a[3]);
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

__global__ void __launch_bounds__(WG_THREADS, 2)
moe_wgmma_kernel(bf16 *__restrict__ y, const bf16 *__restrict__ x, bool gather, int k, fw_wview w0, int64_t wstride,
                 int64_t sstride, int64_t N, int64_t K, fw_cuda_moe_plan pl, bool y_vec, bool swiglu) {
#if FW_HAVE_WGMMA
    if ((int)blockIdx.y >= pl.counts[1]) return;
    const moe_tile tl = moe_tile_of(pl, blockIdx.y);
    const int e = tl.e, rbeg = tl.rbeg, cnt = tl.cnt;
    const int64_t n0 = (int64_t)blockIdx.x * WG_BN;
    const fw_wview w = moe_expert_view<FW_WTYPE_FP8>(w0, e, wstride, sstride);
    extern __shared__ __align__(128) uint8_t wg_smem[];
    const uint32_t raw = fw_smem_addr(wg_smem), pad = (1024 - (raw & 1023)) & 1023;
    uint8_t *sm = wg_smem + pad;
    const uint32_t sbase = raw + pad;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;

    /* This thread's copies each stage. X: chunk xc (of 16 per 128-wide row: panel
     * xc / 8) of rows xr + 8 i; the swizzle depends on the row mod 8, the same for
     * all i. W: chunk wc of weight rows wr + 16 i. Rows past the tile or past N
     * copy 0 bytes (zero fill) from a row that exists. */
    const int xc = tid & 15, xr = tid >> 4, wc = tid & 7, wr = tid >> 3;
    const uint32_t x_dst = (xc >> 3) * WG_X_PANEL + xr * 128 + (((xc & 7) ^ (xr & 7)) << 4);
    int xrow[MOE_BM / 8]; /* input row index of each copied row, -1: past the tile */
#pragma unroll
    for (int i = 0; i < MOE_BM / 8; i++) {
        const int r = xr + 8 * i;
        xrow[i] = r < cnt ? moe_x_index(pl.rows, gather, k, rbeg + r) : -1;
    }
    const uint8_t *wsrc = (const uint8_t *)w.data + (n0 + wr) * w.ld + 16 * wc;
    auto load = [&](int st, int kb) {
        const uint32_t s0 = sbase + st * WG_STAGE;
        const int64_t k0 = (int64_t)kb * WG_BK;
#pragma unroll
        for (int i = 0; i < MOE_BM / 8; i++) {
            const bf16 *src = x + (int64_t)(xrow[i] < 0 ? 0 : xrow[i]) * K + k0 + 8 * xc;
            fw_cp_async16_at(s0 + x_dst + i * 8 * 128, src, xrow[i] < 0 ? 0 : 16);
        }
#pragma unroll
        for (int i = 0; i < WG_BN / 16; i++) {
            const bool in = n0 + wr + 16 * i < N;
            const uint8_t *src = in ? wsrc + (int64_t)16 * i * w.ld + k0 : (const uint8_t *)w.data;
            fw_cp_async16_at(s0 + WG_X_BYTES + (wr + 16 * i) * WG_W_PITCH + 16 * wc, src, in ? 16 : 0);
        }
    };

    const int nk = (int)(K / WG_BK);
#pragma unroll
    for (int s = 0; s < WG_STAGES - 1; s++) {
        if (s < nk) load(s, s);
        fw_cp_async_commit();
    }
    const float *srow = w.scale + (n0 >> 7) * w.scale_ld;
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
        const float sc = __ldg(srow + kb);
        const int st = kb % WG_STAGES;
        const uint32_t xs = sbase + st * WG_STAGE;
        const uint8_t *ws = sm + st * WG_STAGE + WG_X_BYTES;
        /* Two groups of 4 k-steps: the second's fragments load while the first's products run. */
        uint32_t a[2][4][2][4]; /* [half][k-step][m64][fragment] */
#pragma unroll
        for (int h = 0; h < 2; h++) {
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int m = 0; m < 2; m++) wg_w_frag(a[h][j][m], ws, 64 * m + 16 * warp + g, 16 * (4 * h + j), t);
            fw_wgmma_fence();
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const uint64_t desc = fw_wgmma_desc(xs + h * WG_X_PANEL + 32 * j);
#pragma unroll
                for (int m = 0; m < 2; m++) fw_wgmma_m64n64k16_rs(part[m], a[h][j][m], desc, h > 0 || j > 0);
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
                fw_wgmma_pin(part[m][i]);
                acc[m][i] = fmaf(sc, part[m][i], acc[m][i]);
            }
    }
    fw_cp_async_wait<0>();
    __syncthreads(); /* the ring is free for the output tile */

    wg_store(acc, sm, y, rbeg, cnt, n0, N, y_vec, swiglu);
#else
    __trap(); /* built without sm_90a code: the host never launches this */
#endif
}

bool moe_wgmma_fits(const bf16 *x, const fw_wview &w, int64_t wstride, int64_t K) {
    return K % WG_BK == 0 && w.ld % 16 == 0 && wstride % 16 == 0 && fw_ptr_align(w.data) >= 16 && fw_ptr_align(x) >= 16;
}

/* The gate pass, then with wu the up pass finishing the gate's outputs in place. */
cudaError_t moe_wgmma_launch(bf16 *y, const bf16 *x, bool gather, int k, const fw_wview &w, const fw_wview *wu,
                             int64_t wstride, int64_t sstride, int64_t N, int64_t K, const fw_cuda_moe_plan &pl,
                             cudaStream_t st) {
    const bool y_vec = N % 8 == 0 && fw_ptr_align(y) >= 16;
    dim3 grid((unsigned)fw_ceil_div(N, WG_BN), (unsigned)pl.tile_cap);
    cudaError_t err = cudaFuncSetAttribute(moe_wgmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, WG_SMEM);
    if (err != cudaSuccess) return err;
    for (int p = 0; p < (wu ? 2 : 1); p++)
        moe_wgmma_kernel<<<grid, WG_THREADS, WG_SMEM, st>>>(y, x, gather, k, p ? *wu : w, wstride, sstride, N, K, pl,
                                                            y_vec, p == 1);
    return cudaGetLastError();
}
