/* Absorbed MLA decode attention on Hopper's warpgroup MMA (sm_90a), the work laid
 * out as FlashMLA does: a CTA takes 64 heads of one query (the M of every
 * product: the heads share the latent keys) and one split of its keys, in
 * tiles of 64 keys whose rows (C latent + 64 rope values) are read by the
 * tensor cores from 128-byte swizzled shared memory. Two warpgroups:
 *
 * - the first computes S = Q K^T (Q kept in shared memory, both operands read
 *   from there), the online softmax in fp32 registers, hands P (bf16) and the
 *   rows' rescale factors to the second through shared memory, and adds P times
 *   the first half of the latent columns to its O;
 * - the second adds P times the second half of the columns to its O, and its
 *   first warp has the tensor memory accelerator copy the key tiles from the
 *   pages (two stages; one mbarrier a 64-column panel, so S starts on a tile's
 *   first panel while the rest land).
 *
 * The first warpgroup issues S of the next tile right behind its P V, so the
 * tensor cores have work while it waits; the two P V halves run side by side.
 * With C = 512 each warpgroup's O is 64 x 256 fp32, 128 registers a thread,
 * which is why the columns and not the keys are split between them. Each split
 * writes its unnormalised sums and (max, sum of exponentials) as mla_decode.cu's
 * kernels do, and the same merge follows. */
#include "kernels/cuda/barrier.h"
#include "kernels/cuda/mla_decode.h"
#include "kernels/cuda/tc.h"
#include "kernels/cuda/wgmma.h"

#include <math.h>

#define DW_BN 64                       /* keys a tile */
#define DW_THREADS 256
#define DW_PANEL (64 * 128)            /* 64 columns of 64 rows: 64 swizzled rows of 128 bytes */
#define DW_X_WORDS 18                  /* handed over per thread a tile: P (16 words), 2 rescale factors */
/* Named barriers (0 is __syncthreads), each of both warpgroups but the last. */
#define DW_BAR_P_FULL 1                /* P of a tile is in the hand-over buffer */
#define DW_BAR_P_EMPTY 2               /* the second warpgroup has read it */
#define DW_BAR_STAGE 3                 /* the first warpgroup's P V of a tile is done: its stage may refill */
#define DW_BAR_Q 4                     /* the first warpgroup's copies of Q have landed (128 threads) */

template <int C>
struct dw_layout {
    static constexpr int R = 64, NP = (C + R) / 64; /* panels of 64 columns a row */
    static constexpr int TILE = NP * DW_PANEL;      /* Q (64 heads) and each key stage (64 keys) */
    static constexpr int X = 3 * TILE;              /* the hand-over buffer, [DW_X_WORDS][128] words */
    static constexpr int BARS = X + DW_X_WORDS * 128 * 4; /* full[2][NP]: mbarriers, one a stage's panel */
    static constexpr int SMEM = BARS + 2 * NP * 8 + 1024; /* + room to align to 1024 */
    static_assert(SMEM <= 227 * 1024, "fits an SM's shared memory");
};

/* Byte offset of 16-byte piece c of row r in a tile of panels (the swizzle). */
__device__ __forceinline__ uint32_t dw_swz(int r, int c) {
    return (uint32_t)((c >> 3) * DW_PANEL + r * 128 + (((c & 7) ^ (r & 7)) << 4));
}

/* tm: the layer's pool as (C + R values, pg.block rows, blocks), 128-byte
 * swizzled boxes of 64 values x boxr rows (boxr = min(pg.block, 64), which
 * divides 64 or is divided by pg.block). */
template <int C>
__global__ void __launch_bounds__(DW_THREADS, 1) mla_split_wgmma_kernel(const __grid_constant__ CUtensorMap tm, md_args a,
                                                                         int boxr) {
#if FW_HAVE_WGMMA
    using L = dw_layout<C>;
    constexpr int R = L::R, NP = L::NP, KS = (C + R) / 16, KV = DW_BN / 16;
    constexpr int NPV = C / 2 / 64; /* panels of O a warpgroup holds */
    extern __shared__ __align__(128) uint8_t dw_smem[];
    const uint32_t raw = fw_smem_addr(dw_smem), qs = raw + ((1024 - (raw & 1023)) & 1023);
    const uint32_t ring = qs + L::TILE, full = qs + L::BARS;
    uint32_t *xw = (uint32_t *)(dw_smem + (qs - raw) + L::X);
    const int tid = threadIdx.x, wt = tid & 127, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int wg = __shfl_sync(0xffffffffu, tid >> 7, 0); /* warp-uniform, as the compiler sees it */
    const int warp = wt >> 5;
    const int64_t t = blockIdx.y, h0 = (int64_t)blockIdx.x * FW_MLA_WG_HEADS;
    const int split = blockIdx.z;
    const int64_t seq = a.q_seq ? a.q_seq[t] : 0;
    /* Warp-uniform as the compiler sees it (a load is not): the products sit in branches on them. */
    const int64_t n = __shfl_sync(0xffffffffu, (long long)(a.q_len ? a.q_len[t] : a.S - a.T + t + 1), 0);
    const int64_t span = fw_round_up(fw_ceil_div(n, a.splits), DW_BN);
    const int64_t s0 = split * span, s1 = min(s0 + span, n);
    /* Warp-uniform as the compiler sees it: the products sit in branches on it. */
    const int ntiles = __shfl_sync(0xffffffffu, s1 > s0 ? (int)fw_ceil_div(s1 - s0, DW_BN) : 0, 0);

    if (tid == 0) {
        for (int i = 0; i < 2 * NP; i++) fw_mbar_init(full + 8 * i, 1);
    }
    __syncthreads();
    auto stage = [&](int j) { return ring + (uint32_t)(j & 1) * L::TILE; };
    auto bar = [&](int j, int p) { return full + 8 * (uint32_t)((j & 1) * NP + p); };
    /* Tile j by the second warpgroup's first warp, panel by panel: the boxes of
     * rows below s1 (the rest of a last tile is zeroed by its reader). Lane p
     * announces panel p's bytes, then lane i copies boxes i, i + 32, ... */
    auto load = [&](int j) {
        const int64_t k0 = s0 + (int64_t)j * DW_BN;
        const int nbox = DW_BN / boxr, left = (int)(s1 - k0), nv = min(nbox, (left + boxr - 1) / boxr);
        const uint32_t st = stage(j);
        fw_mbar_expect_tx(wt < NP, bar(j, wt < NP ? wt : 0), (uint32_t)(nv * boxr * 128));
        __syncwarp();
#pragma unroll
        for (int it = 0; it < (NP * 4 + 31) / 32; it++) { /* nbox <= 4 */
            const int i = wt + 32 * it;
            const bool on = wt < 32 && i < NP * nv;
            const int p = on ? i / nv : 0, b = on ? i - p * nv : 0;
            const int pos = (int)k0 + b * boxr, bs = (int)a.pg.block; /* 32-bit: a 64-bit division is a call */
            const int blk = a.pg.table[seq * a.pg.max_blocks + pos / bs];
            fw_tma_load_3d(on, st + (uint32_t)(p * DW_PANEL + b * boxr * 128), &tm, bar(j, p), 64 * p, pos % bs, blk);
        }
    };
    auto wait_panel = [&](int j, int p) { fw_mbar_wait(bar(j, p), (uint32_t)(j >> 1) & 1); };

    float o[NPV][32];
#pragma unroll
    for (int c = 0; c < NPV; c++)
#pragma unroll
        for (int i = 0; i < 32; i++) o[c][i] = 0.0f;
    uint32_t pa[KV][4];
    float alpha[2] = {1.0f, 1.0f};
    /* O (this warpgroup's columns) += P V over tile j. */
    auto issue_pv = [&](int j) {
        const uint32_t vs = stage(j) + (uint32_t)(wg * NPV) * DW_PANEL;
#pragma unroll
        for (int kt = 0; kt < KV; kt++)
#pragma unroll
            for (int c = 0; c < NPV; c += 2)
                fw_wgmma_m64n128k16_rs<1>(o[c], o[c + 1], pa[kt], fw_wgmma_desc_mn(vs + c * DW_PANEL + kt * 2048, DW_PANEL),
                                          true);
        fw_wgmma_commit();
    };
    auto pin_pv = [&]() { fw_wgmma_pin(o), fw_wgmma_pin(pa); };
    /* Rescale O only where a row's maximum moved: after the first tiles, rarely. */
    auto rescale = [&]() {
        if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) {
#pragma unroll
            for (int c = 0; c < NPV; c++)
#pragma unroll
                for (int i = 0; i < 32; i++) o[c][i] *= alpha[(i >> 1) & 1]; /* o[4 i' + q]: row g + 8 for q >= 2 */
        }
    };

    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    if (wg == 0) {
        /* Q: 64 heads (zeros past H) of q_lat then q_pe, two threads a row. */
        {
            const int r = wt >> 1, part = wt & 1;
            const int64_t h = h0 + r;
            const bf16 *ql = h < a.H ? a.q_lat + (t * a.H + h) * C : nullptr, *qp = h < a.H ? a.q_pe + (t * a.H + h) * R : nullptr;
#pragma unroll
            for (int i = 0; i < NP * 4; i++) {
                const int c = part + 2 * i, d = 8 * c;
                const bf16 *src = !ql ? nullptr : d < C ? ql + d : qp + (d - C);
                fw_cp_async16_at(qs + dw_swz(r, c), src ? src : a.q_lat, src ? 16 : 0);
            }
            fw_cp_async_commit();
            fw_cp_async_wait<0>();
            fw_bar_sync(DW_BAR_Q, 128);
            fw_wgmma_fence_smem();
        }
        const float sl2 = a.scale * 1.4426950408889634f;
        float s[32];
        /* Tile j ready for the products: each panel as it lands; a last tile
         * whole, then its rows from s1 on zeroed (they may hold any bits, and
         * P V would take 0 x NaN for NaN). */
        auto issue_s = [&](int j) {
            const uint32_t ks = stage(j);
            const int64_t k0 = s0 + (int64_t)j * DW_BN;
            const int valid = (int)min((int64_t)DW_BN, s1 - k0);
            if (valid < DW_BN) {
                for (int p = 0; p < NP; p++) wait_panel(j, p);
                uint4 *z = (uint4 *)(dw_smem + (ks - raw));
                for (int i = wt; i < NP * (DW_BN - valid) * 8; i += 128) {
                    const int pn = i / ((DW_BN - valid) * 8), r = valid + (i / 8) % (DW_BN - valid), c = i % 8;
                    z[(pn * DW_PANEL + r * 128 + c * 16) / 16] = make_uint4(0, 0, 0, 0);
                }
                fw_wgmma_fence_smem();
                fw_bar_sync(DW_BAR_Q, 128);
            }
#pragma unroll
            for (int kt = 0; kt < KS; kt++) {
                if ((kt & 3) == 0 && valid == DW_BN) wait_panel(j, kt >> 2);
                const uint32_t off = (uint32_t)((kt >> 2) * DW_PANEL + (kt & 3) * 32);
                fw_wgmma_m64n64k16_ss(s, fw_wgmma_desc(qs + off), fw_wgmma_desc(ks + off), kt > 0);
            }
            fw_wgmma_commit();
        };
        if (ntiles > 0) {
            fw_wgmma_fence();
            issue_s(0);
        }
        for (int j = 0; j < ntiles; j++) {
            fw_wgmma_wait<0>(); /* S_j (and P_{j-1} V_{j-1}) done */
            fw_wgmma_pin(s);
            pin_pv();
            /* s[4 i + q]: head g + 8 (q >> 1) of this warp's 16, key 8 i + 2 t4 + (q & 1). */
            const int64_t k0 = s0 + (int64_t)j * DW_BN;
            if (k0 + DW_BN > s1) {
#pragma unroll
                for (int i = 0; i < DW_BN / 8; i++)
#pragma unroll
                    for (int q = 0; q < 4; q++)
                        if (k0 + 8 * i + 2 * t4 + (q & 1) >= s1) s[4 * i + q] = -INFINITY;
            }
#pragma unroll
            for (int rr = 0; rr < 2; rr++) {
                float mx = -INFINITY;
#pragma unroll
                for (int i = 0; i < DW_BN / 8; i++) mx = fmaxf(mx, fmaxf(s[4 * i + 2 * rr], s[4 * i + 2 * rr + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float m_new = fmaxf(m[rr], mx * sl2); /* finite: key k0 is in every tile */
                alpha[rr] = fw_exp2_ftz(m[rr] - m_new);
                float sum = 0.0f;
#pragma unroll
                for (int i = 0; i < DW_BN / 8; i++)
#pragma unroll
                    for (int q = 2 * rr; q < 2 * rr + 2; q++) {
                        const float p = fw_exp2_ftz(s[4 * i + q] * sl2 - m_new);
                        s[4 * i + q] = p;
                        sum += p;
                    }
                l[rr] = l[rr] * alpha[rr] + sum; /* this thread's part; the row's four are summed at the end */
                m[rr] = m_new;
            }
            rescale();
            /* P as the A operand of key step kt: S's n8 tiles 2 kt, 2 kt + 1. */
#pragma unroll
            for (int kt = 0; kt < KV; kt++)
#pragma unroll
                for (int q = 0; q < 4; q++) pa[kt][q] = fw_pack_bf16(s[8 * kt + 2 * q], s[8 * kt + 2 * q + 1]);
            if (j > 0) fw_bar_sync(DW_BAR_P_EMPTY, DW_THREADS);
#pragma unroll
            for (int w = 0; w < 16; w++) xw[w * 128 + wt] = pa[w >> 2][w & 3];
            xw[16 * 128 + wt] = __float_as_uint(alpha[0]), xw[17 * 128 + wt] = __float_as_uint(alpha[1]);
            fw_bar_arrive(DW_BAR_P_FULL, DW_THREADS);
            fw_wgmma_fence();
            issue_pv(j);
            if (j + 1 < ntiles) {
                issue_s(j + 1);
                fw_wgmma_wait<1>(); /* P_j V_j done; S_{j+1} may still run */
            } else {
                fw_wgmma_wait<0>();
            }
            pin_pv();
            if (j + 2 < ntiles) fw_bar_arrive(DW_BAR_STAGE, DW_THREADS);
        }
    } else {
        if (ntiles > 0) load(0);
        if (ntiles > 1) load(1);
        for (int j = 0; j < ntiles; j++) {
            fw_bar_sync(DW_BAR_P_FULL, DW_THREADS);
#pragma unroll
            for (int w = 0; w < 16; w++) pa[w >> 2][w & 3] = xw[w * 128 + wt];
            alpha[0] = __uint_as_float(xw[16 * 128 + wt]), alpha[1] = __uint_as_float(xw[17 * 128 + wt]);
            if (j + 1 < ntiles) fw_bar_arrive(DW_BAR_P_EMPTY, DW_THREADS);
            rescale();
            for (int p = 0; p < NP; p++) wait_panel(j, p); /* landed (the first warpgroup waited already) */
            fw_wgmma_fence_smem(); /* and the zeroed rows of a last tile */
            fw_wgmma_fence();
            issue_pv(j);
            fw_wgmma_wait<0>();
            pin_pv();
            if (j + 2 < ntiles) {
                fw_bar_sync(DW_BAR_STAGE, DW_THREADS);
                load(j + 2);
            }
        }
    }

    /* The split's sums of this warpgroup's columns, and (first warpgroup) each head's (max, sum). */
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        const int64_t h = h0 + 16 * warp + g + 8 * rr;
        if (wg == 0) {
            l[rr] += __shfl_xor_sync(0xffffffffu, l[rr], 1);
            l[rr] += __shfl_xor_sync(0xffffffffu, l[rr], 2);
        }
        if (h >= a.H) continue;
        const int64_t pi = (t * a.H + h) * a.splits + split;
        float *dst = a.part + pi * C + wg * (C / 2);
#pragma unroll
        for (int c = 0; c < NPV; c++)
#pragma unroll
            for (int i = 0; i < 8; i++)
                *(float2 *)(dst + 64 * c + 8 * i + 2 * t4) = make_float2(o[c][4 * i + 2 * rr], o[c][4 * i + 2 * rr + 1]);
        if (wg == 0 && t4 == 0) a.ml[pi] = make_float2(m[rr] * 0.6931471805599453f, l[rr]); /* natural units */
    }
#else
    (void)a;
    __trap(); /* built without sm_90a code: the host never launches this */
#endif
}

bool fw_cuda_mla_wgmma_pages_fit(const fw_cuda_pages *pg) {
    return pg->block >= 16 && (pg->block % 64 == 0 || 64 % pg->block == 0) && fw_tma_encoder();
}

template <int C>
static int dw_launch(fw_cuda_ctx *ctx, const md_args &a) {
    const int smem = dw_layout<C>::SMEM, boxr = (int)(a.pg.block < 64 ? a.pg.block : 64);
    CUtensorMap tm;
    const cuuint64_t dims[3] = {(cuuint64_t)(C + 64), (cuuint64_t)a.pg.block, (cuuint64_t)1 << 24};
    const cuuint64_t strides[2] = {(cuuint64_t)a.pg.W * 2, (cuuint64_t)a.pg.block_stride * 2};
    const cuuint32_t box[3] = {64, (cuuint32_t)boxr, 1}, estr[3] = {1, 1, 1};
    PFN_cuTensorMapEncodeTiled_v12000 enc = fw_tma_encoder();
    if (!enc || enc(&tm, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, a.pg.base, dims, strides, box, estr,
                    CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                    CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS)
        return fw_cuda_errf(ctx, "fw_cuda_mla_split_wgmma: no tensor map for the cache (block %lld, W %lld)",
                            (long long)a.pg.block, (long long)a.pg.W);
    FW_CUDA_CHECK(ctx, cudaFuncSetAttribute(mla_split_wgmma_kernel<C>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    dim3 grid((unsigned)fw_ceil_div(a.H, FW_MLA_WG_HEADS), (unsigned)a.T, (unsigned)a.splits);
    mla_split_wgmma_kernel<C><<<grid, DW_THREADS, smem, ctx->stream>>>(tm, a, boxr);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

int fw_cuda_mla_split_wgmma(fw_cuda_ctx *ctx, const md_args &a) {
    if (a.R == 64 && a.C == 512) return dw_launch<512>(ctx, a);
    if (a.R == 64 && a.C == 256) return dw_launch<256>(ctx, a);
    return fw_cuda_errf(ctx, "fw_cuda_mla_split_wgmma: no kernel for C %lld, R %lld", (long long)a.C, (long long)a.R);
}
