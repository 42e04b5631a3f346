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
 * scheduler). Tried: 128 rows a CTA in two warpgroups (m64n128k16, each weight
 * widened once per 128 rows): slower, 9.9 vs 9.3 ms of MoE GEMMs a prefill layer
 * and 5.1 vs 4.1 ms a batch-256 decode layer (one CTA an SM; half-empty tiles). */
#include "kernels/cuda/barrier.h"
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


/* FP8 activations (DeepSeek's act_quant: per row per 128 channels, fw_cuda_quant_act)
 * times FP8 weights, both read by the tensor cores from shared memory (e4m3
 * m64n64k32, twice the bf16 rate, nothing converted): xq rows of K bytes, xs their
 * scales [K / 128][M] (row fastest). A stage: X 64 rows x 128 bytes, W 128 rows x
 * 128 bytes (both swizzled), and the 64 rows' scales of the block; the promotion
 * multiplies by the weight block's scale times each row's. */
#define WF_X_BYTES (MOE_BM * WG_BK)                  /* 8 KiB */
#define WF_W_BYTES (WG_BN * WG_BK)                   /* 16 KiB: two m64 blocks of 8 KiB */
#define WF_STAGE (WF_X_BYTES + WF_W_BYTES + 1024)    /* + the scales (256 bytes), keeping 1024 alignment */
#define WF_STAGES 4
#define WF_SMEM (WF_STAGES * WF_STAGE + 1024)
static_assert(MOE_BM * WG_C_PITCH <= WF_STAGES * WF_STAGE, "the output tile fits in the ring");

__global__ void __launch_bounds__(WG_THREADS, 2)
moe_wgmma_fp8_kernel(bf16 *__restrict__ y, const uint8_t *__restrict__ xq, const float *__restrict__ xs, int64_t M,
                     bool gather, int k, fw_wview w0, int64_t wstride, int64_t sstride, int64_t N, int64_t K,
                     fw_cuda_moe_plan pl, bool y_vec, bool swiglu) {
#if FW_HAVE_WGMMA
    if ((int)blockIdx.y >= pl.counts[1]) return;
    const moe_tile tl = moe_tile_of(pl, blockIdx.y);
    const int e = tl.e, rbeg = tl.rbeg, cnt = tl.cnt;
    const int64_t n0 = (int64_t)blockIdx.x * WG_BN;
    const fw_wview w = moe_expert_view<FW_WTYPE_FP8>(w0, e, wstride, sstride);
    extern __shared__ __align__(128) uint8_t wf_smem[];
    const uint32_t raw = fw_smem_addr(wf_smem), pad = (1024 - (raw & 1023)) & 1023;
    uint8_t *sm = wf_smem + pad;
    const uint32_t sbase = raw + pad;
    const int tid = threadIdx.x, t = tid & 3;

    /* Copies: chunk c = tid % 8 of X rows tid / 8 + 16 i and of W rows tid / 8 +
     * 16 i, at chunk c ^ (row % 8) (the same for all i); thread tid < 64 copies
     * row tid's scale. Rows past the tile or past N: 0 bytes (zero fill). */
    const int c = tid & 7, r0 = tid >> 3;
    const uint32_t sw = (uint32_t)((c ^ (r0 & 7)) << 4);
    int xrow[MOE_BM / 16];
#pragma unroll
    for (int i = 0; i < MOE_BM / 16; i++) {
        const int r = r0 + 16 * i;
        xrow[i] = r < cnt ? moe_x_index(pl.rows, gather, k, rbeg + r) : -1;
    }
    const int srow_x = tid < cnt ? moe_x_index(pl.rows, gather, k, rbeg + tid) : -1; /* tid < 64 only */
    const uint8_t *wsrc = (const uint8_t *)w.data + (n0 + r0) * w.ld + 16 * c;
    auto load = [&](int st, int kb) {
        const uint32_t s0 = sbase + st * WF_STAGE;
        const int64_t k0 = (int64_t)kb * WG_BK;
#pragma unroll
        for (int i = 0; i < MOE_BM / 16; i++)
            fw_cp_async16_at(s0 + (r0 + 16 * i) * 128 + sw, xq + (int64_t)(xrow[i] < 0 ? 0 : xrow[i]) * K + k0 + 16 * c,
                             xrow[i] < 0 ? 0 : 16);
#pragma unroll
        for (int i = 0; i < WG_BN / 16; i++) {
            const bool in = n0 + r0 + 16 * i < N;
            fw_cp_async16_at(s0 + WF_X_BYTES + (r0 + 16 * i) * 128 + sw,
                             in ? wsrc + (int64_t)16 * i * w.ld + k0 : (const uint8_t *)w.data, in ? 16 : 0);
        }
        if (tid < MOE_BM)
            fw_cp_async4_at(s0 + WF_X_BYTES + WF_W_BYTES + 4 * tid, xs + (int64_t)kb * M + (srow_x < 0 ? 0 : srow_x),
                            srow_x < 0 ? 0 : 4);
    };

    const int nk = (int)(K / WG_BK);
#pragma unroll
    for (int s = 0; s < WF_STAGES - 1; s++) {
        if (s < nk) load(s, s);
        fw_cp_async_commit();
    }
    const float *wsc = w.scale + (n0 >> 7) * w.scale_ld;
    float acc[2][32], part[2][32];
#pragma unroll
    for (int m = 0; m < 2; m++)
#pragma unroll
        for (int i = 0; i < 32; i++) acc[m][i] = 0.0f;

    for (int kb = 0; kb < nk; kb++) {
        fw_cp_async_wait<WF_STAGES - 2>();
        fw_wgmma_fence_smem();
        __syncthreads(); /* block kb is everyone's; kb - 1's stage is free (its products waited for) */
        if (kb + WF_STAGES - 1 < nk) load((kb + WF_STAGES - 1) % WF_STAGES, kb + WF_STAGES - 1);
        fw_cp_async_commit();
        const float sc = __ldg(wsc + kb);
        const int st = kb % WF_STAGES;
        const uint32_t xs0 = sbase + st * WF_STAGE, ws0 = xs0 + WF_X_BYTES;
        fw_wgmma_fence();
#pragma unroll
        for (int j = 0; j < WG_BK / 32; j++) {
            const uint64_t db = fw_wgmma_desc(xs0 + 32 * j);
#pragma unroll
            for (int m = 0; m < 2; m++) fw_wgmma_m64n64k32_e4m3_ss(part[m], fw_wgmma_desc(ws0 + m * 8192 + 32 * j), db, j > 0);
        }
        fw_wgmma_commit();
        /* The row scales this thread's columns need (rows 8 i + 2t, + 1), while the products run. */
        const float *rs = (const float *)(sm + st * WF_STAGE + WF_X_BYTES + WF_W_BYTES);
        float s2[8][2];
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const float2 v = *(const float2 *)(rs + 8 * i + 2 * t);
            s2[i][0] = sc * v.x, s2[i][1] = sc * v.y;
        }
        fw_wgmma_wait<0>();
#pragma unroll
        for (int m = 0; m < 2; m++)
#pragma unroll
            for (int i = 0; i < 32; i++) {
                fw_wgmma_pin(part[m][i]);
                acc[m][i] = fmaf(s2[i / 4][i & 1], part[m][i], acc[m][i]);
            }
    }
    fw_cp_async_wait<0>();
    __syncthreads(); /* the ring is free for the output tile */
    wg_store(acc, sm, y, rbeg, cnt, n0, N, y_vec, swiglu);
#else
    __trap();
#endif
}

/* FP8 activations times FP8 weights, warp-specialized as DeepGEMM runs them: a
 * CTA takes a plan tile's 64 rows against 256 outputs in three warpgroups. The
 * first produces: the tensor memory accelerator copies each stage's 256 x 128
 * weight bytes (two boxes of 128 rows, 128-byte swizzled, from a 3-D tensor map
 * over the stacked experts, rows past N zero-filled), and its 128 threads copy
 * the tile's 64 gathered rows of X and their scales by cp.async, arriving on the
 * stage's mbarrier as they land. The other two consume: each multiplies the X
 * rows (A, m64) by its 128 outputs' weights (B, n128, one scale block) in
 * m64n128k32 e4m3 products, hands the stage back, and promotes the block's sums
 * by weight scale x row scale while the other warpgroup's products run. No
 * barrier of the whole CTA inside the K loop. */
#define WS_BN 256                                /* outputs a CTA: 128 (one scale block) a consumer */
#define WS_THREADS 384                           /* producer + two consumers */
#define WS_STAGES 5
#define WS_X_BYTES (MOE_BM * WG_BK)              /* 8 KiB */
#define WS_W_BOX (128 * WG_BK)                   /* 16 KiB: one consumer's weights a stage */
#define WS_STAGE (WS_X_BYTES + 2 * WS_W_BOX + 1024) /* + the rows' scales (256 bytes), keeping 1024 alignment */
#define WS_BARS (WS_STAGES * WS_STAGE)
#define WS_SMEM (WS_BARS + 2 * WS_STAGES * 8 + 1024) /* + full and empty mbarriers, + room to align */
#define WS_C_PITCH (2 * WS_BN + 16)
#define WS_BAR_OUT 1                             /* named barrier of the two consumers */
static_assert(MOE_BM * WS_C_PITCH <= WS_BARS && WS_SMEM <= 227 * 1024, "fp8 ws layout");

__global__ void __launch_bounds__(WS_THREADS, 1)
moe_fp8_ws_kernel(const __grid_constant__ CUtensorMap tw, bf16 *__restrict__ y, const uint8_t *__restrict__ xq,
                  const float *__restrict__ xs, int64_t M, bool gather, int k, const float *__restrict__ wscale,
                  int64_t scale_ld, int64_t sstride, int64_t N, int64_t K, fw_cuda_moe_plan pl, bool y_vec, bool swiglu) {
#if FW_HAVE_WGMMA
    if ((int)blockIdx.y >= pl.counts[1]) return;
    const moe_tile tl = moe_tile_of(pl, blockIdx.y);
    const int e = tl.e, rbeg = tl.rbeg, cnt = tl.cnt;
    const int n0 = (int)blockIdx.x * WS_BN;
    extern __shared__ __align__(128) uint8_t ws_smem[];
    const uint32_t raw = fw_smem_addr(ws_smem), pad = (1024 - (raw & 1023)) & 1023;
    uint8_t *sm = ws_smem + pad;
    const uint32_t sbase = raw + pad, full = sbase + WS_BARS, empty = full + 8 * WS_STAGES;
    const int tid = threadIdx.x, wt = tid & 127;
    const int wg = __shfl_sync(0xffffffffu, tid >> 7, 0); /* warp-uniform, as the compiler sees it */
    const int nk = (int)(K / WG_BK);
    if (tid == 0)
        for (int s = 0; s < WS_STAGES; s++) {
            fw_mbar_init(full + 8 * s, 128 + 1); /* the producers' cp.async arrivals + the weights' byte count */
            fw_mbar_init(empty + 8 * s, 8);      /* each consumer warp */
        }
    __syncthreads();

    if (wg == 0) {
        /* X: chunk c of rows r0 + 16 i at chunk c ^ (row % 8); thread wt < 64 copies row wt's
         * scale. Rows past the tile: 0 bytes (zero fill) from a row that exists. */
        const int c = wt & 7, r0 = wt >> 3;
        const uint32_t sw = (uint32_t)((c ^ (r0 & 7)) << 4);
        const uint8_t *src[MOE_BM / 16];
#pragma unroll
        for (int i = 0; i < MOE_BM / 16; i++) {
            const int r = r0 + 16 * i;
            src[i] = r < cnt ? xq + (int64_t)moe_x_index(pl.rows, gather, k, rbeg + r) * K + 16 * c : nullptr;
        }
        const int srow = wt < cnt ? moe_x_index(pl.rows, gather, k, rbeg + wt) : -1; /* wt < 64 only */
        for (int kb = 0; kb < nk; kb++) {
            const int s = kb % WS_STAGES;
            const uint32_t s0 = sbase + s * WS_STAGE, bar = full + 8 * s;
            fw_mbar_wait(empty + 8 * s, (uint32_t)((kb / WS_STAGES) & 1) ^ 1); /* the first round passes */
            fw_mbar_expect_tx(wt == 0, bar, 2 * WS_W_BOX);
            fw_tma_load_3d(wt == 0, s0 + WS_X_BYTES, &tw, bar, kb * WG_BK, n0, e);
            fw_tma_load_3d(wt == 0, s0 + WS_X_BYTES + WS_W_BOX, &tw, bar, kb * WG_BK, n0 + 128, e);
#pragma unroll
            for (int i = 0; i < MOE_BM / 16; i++)
                fw_cp_async16_at(s0 + (r0 + 16 * i) * 128 + sw, src[i] ? src[i] + (int64_t)kb * WG_BK : xq, src[i] ? 16 : 0);
            if (wt < MOE_BM)
                fw_cp_async4_at(s0 + WS_X_BYTES + 2 * WS_W_BOX + 4 * wt, xs + (int64_t)kb * M + (srow < 0 ? 0 : srow),
                                srow < 0 ? 0 : 4);
            fw_mbar_arrive_cp_async(bar);
        }
        fw_cp_async_wait<0>();
        return;
    }

    const int ci = wg - 1, warp = wt >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    /* This warpgroup's scale block row; none past N (its weights are zeros). */
    const int nb = (n0 >> 7) + ci;
    const bool n_in = (int64_t)nb * 128 < N;
    const float *wsc = wscale + (int64_t)e * sstride + (int64_t)(n_in ? nb : 0) * scale_ld;
    float acc[2][32], part[2][32];
#pragma unroll
    for (int h = 0; h < 2; h++)
#pragma unroll
        for (int i = 0; i < 32; i++) acc[h][i] = 0.0f;
    for (int kb = 0; kb < nk; kb++) {
        const int s = kb % WS_STAGES;
        const float sc = n_in ? __ldg(wsc + kb) : 0.0f;
        const uint32_t xs0 = sbase + s * WS_STAGE, ws0 = xs0 + WS_X_BYTES + ci * WS_W_BOX;
        fw_mbar_wait(full + 8 * s, (uint32_t)(kb / WS_STAGES) & 1);
        fw_wgmma_fence_smem(); /* X came by cp.async (the generic proxy); the products read it */
        fw_wgmma_fence();
#pragma unroll
        for (int j = 0; j < WG_BK / 32; j++)
            fw_wgmma_m64n128k32_e4m3_ss(part[0], part[1], fw_wgmma_desc(xs0 + 32 * j), fw_wgmma_desc(ws0 + 32 * j), j > 0);
        fw_wgmma_commit();
        /* This thread's rows' scales (rows 16 warp + g, + 8) while the products run. */
        const float *rs = (const float *)(sm + s * WS_STAGE + WS_X_BYTES + 2 * WS_W_BOX);
        const float s_lo = sc * rs[16 * warp + g], s_hi = sc * rs[16 * warp + g + 8];
        fw_wgmma_wait<0>();
        __syncwarp();
        if (lane == 0) fw_mbar_arrive(empty + 8 * s);
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
            for (int i = 0; i < 32; i++) {
                fw_wgmma_pin(part[h][i]);
                acc[h][i] = fmaf((i & 2) ? s_hi : s_lo, part[h][i], acc[h][i]);
            }
    }
    /* Both consumers are past their last stage (and every copy was consumed): the ring holds the output tile. */
    fw_bar_sync(WS_BAR_OUT, 256);
#pragma unroll
    for (int h = 0; h < 2; h++)
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int col = 128 * ci + 64 * h + 8 * i + 2 * t, r = 16 * warp + g;
            *(__nv_bfloat162 *)(sm + r * WS_C_PITCH + 2 * col) = __floats2bfloat162_rn(acc[h][4 * i], acc[h][4 * i + 1]);
            *(__nv_bfloat162 *)(sm + (r + 8) * WS_C_PITCH + 2 * col) =
                __floats2bfloat162_rn(acc[h][4 * i + 2], acc[h][4 * i + 3]);
        }
    fw_bar_sync(WS_BAR_OUT, 256);
    moe_tile_store<WS_BN, 256>(y, sm, WS_C_PITCH, rbeg, cnt, n0, N, y_vec, swiglu, tid - 128);
#else
    __trap();
#endif
}

/* The tensor map of the stacked experts' FP8 weights w (K x N x n_exp bytes, rows
 * w.ld apart, experts wstride apart): boxes of 128 K x 128 rows, 128-byte swizzle. */
static bool moe_weight_map(CUtensorMap *tm, const fw_wview &w, int64_t wstride, int64_t N, int64_t K, int64_t n_exp) {
    PFN_cuTensorMapEncodeTiled_v12000 enc = fw_tma_encoder();
    const cuuint64_t dims[3] = {(cuuint64_t)K, (cuuint64_t)N, (cuuint64_t)n_exp};
    const cuuint64_t strides[2] = {(cuuint64_t)w.ld, (cuuint64_t)wstride};
    const cuuint32_t box[3] = {WG_BK, 128, 1}, estr[3] = {1, 1, 1};
    return enc && enc(tm, CU_TENSOR_MAP_DATA_TYPE_UINT8, 3, (void *)w.data, dims, strides, box, estr,
                      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

bool moe_wgmma_fits(const bf16 *x, const fw_wview &w, int64_t wstride, int64_t K) {
    return K % WG_BK == 0 && w.ld % 16 == 0 && wstride % 16 == 0 && fw_ptr_align(w.data) >= 16 && fw_ptr_align(x) >= 16;
}

/* The gate pass, then with wu the up pass finishing the gate's outputs in place;
 * bf16 x, or with xq its FP8 rows and scales (M rows). */
cudaError_t moe_wgmma_launch(bf16 *y, const bf16 *x, const uint8_t *xq, const float *xs, int64_t M, bool gather, int k,
                             const fw_wview &w, const fw_wview *wu, int64_t wstride, int64_t sstride, int64_t N,
                             int64_t K, const fw_cuda_moe_plan &pl, cudaStream_t st) {
    const bool y_vec = N % 8 == 0 && fw_ptr_align(y) >= 16;
    dim3 grid((unsigned)fw_ceil_div(N, WG_BN), (unsigned)pl.tile_cap);
    cudaError_t err = xq ? cudaFuncSetAttribute(moe_wgmma_fp8_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, WF_SMEM)
                         : cudaFuncSetAttribute(moe_wgmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, WG_SMEM);
    if (err != cudaSuccess) return err;
    static const bool old_fp8 = getenv("FURROW_CUDA_MOE_FP8_V1") != nullptr; /* TEMPORARY A/B */
    if (xq && !old_fp8) {
        err = cudaFuncSetAttribute(moe_fp8_ws_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, WS_SMEM);
        if (err != cudaSuccess) return err;
        dim3 gw((unsigned)fw_ceil_div(N, WS_BN), (unsigned)pl.tile_cap);
        for (int p = 0; p < (wu ? 2 : 1); p++) {
            const fw_wview &wp = p ? *wu : w;
            CUtensorMap tm;
            if (!moe_weight_map(&tm, wp, wstride, N, K, pl.n_exp)) return cudaErrorInvalidValue;
            moe_fp8_ws_kernel<<<gw, WS_THREADS, WS_SMEM, st>>>(tm, y, xq, xs, M, gather, k, wp.scale, wp.scale_ld, sstride,
                                                               N, K, pl, y_vec, p == 1);
        }
        return cudaGetLastError();
    }
    for (int p = 0; p < (wu ? 2 : 1); p++) {
        if (xq)
            moe_wgmma_fp8_kernel<<<grid, WG_THREADS, WF_SMEM, st>>>(y, xq, xs, M, gather, k, p ? *wu : w, wstride, sstride,
                                                                    N, K, pl, y_vec, p == 1);
        else
            moe_wgmma_kernel<<<grid, WG_THREADS, WG_SMEM, st>>>(y, x, gather, k, p ? *wu : w, wstride, sstride, N, K, pl,
                                                                y_vec, p == 1);
    }
    return cudaGetLastError();
}
