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
 * - the second copies the key tiles (cp.async, arriving on a tile's mbarrier;
 *   two stages, the next tile lands while this one is computed), and adds P
 *   times the second half of the columns to its O.
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
    static constexpr int BARS = X + DW_X_WORDS * 128 * 4; /* full[2]: mbarriers */
    static constexpr int SMEM = BARS + 16 + 1024;   /* + room to align to 1024 */
    static_assert(SMEM <= 227 * 1024, "fits an SM's shared memory");
};

/* Byte offset of 16-byte piece c of row r in a tile of panels (the swizzle). */
__device__ __forceinline__ uint32_t dw_swz(int r, int c) {
    return (uint32_t)((c >> 3) * DW_PANEL + r * 128 + (((c & 7) ^ (r & 7)) << 4));
}

__device__ __forceinline__ float dw_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

template <int C>
__global__ void __launch_bounds__(DW_THREADS, 1) mla_split_wgmma_kernel(md_args a) {
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
    const int64_t n = a.q_len ? a.q_len[t] : a.S - a.T + t + 1;
    const int64_t span = fw_round_up(fw_ceil_div(n, a.splits), DW_BN);
    const int64_t s0 = split * span, s1 = min(s0 + span, n);
    /* Warp-uniform as the compiler sees it: the products sit in branches on it. */
    const int ntiles = __shfl_sync(0xffffffffu, s1 > s0 ? (int)fw_ceil_div(s1 - s0, DW_BN) : 0, 0);

    if (tid == 0) fw_mbar_init(full, 128), fw_mbar_init(full + 8, 128);
    __syncthreads();
    auto stage = [&](int j) { return ring + (uint32_t)(j & 1) * L::TILE; };
    /* The second warpgroup's copies of tile j: two threads a row, rows past s1 zeros. */
    auto load = [&](int j) {
        const int r = wt >> 1, part = wt & 1;
        const int64_t p = s0 + (int64_t)j * DW_BN + r;
        const bf16 *src = p < s1 ? page_row(a.pg, seq, p) : nullptr;
        const uint32_t st = stage(j);
#pragma unroll
        for (int i = 0; i < NP * 4; i++) {
            const int c = part + 2 * i;
            fw_cp_async16_at(st + dw_swz(r, c), src ? src + 8 * c : a.q_lat, src ? 16 : 0);
        }
        fw_mbar_arrive_cp_async(full + 8 * (j & 1));
    };
    auto wait_tile = [&](int j) {
        fw_mbar_wait(full + 8 * (j & 1), (uint32_t)(j >> 1) & 1);
        fw_wgmma_fence_smem();
    };

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
    auto pin_pv = [&]() {
#pragma unroll
        for (int c = 0; c < NPV; c++)
#pragma unroll
            for (int i = 0; i < 32; i++) fw_wgmma_pin(o[c][i]);
#pragma unroll
        for (int kt = 0; kt < KV; kt++)
#pragma unroll
            for (int q = 0; q < 4; q++) fw_wgmma_pin(pa[kt][q]);
    };
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
        }
        const float sl2 = a.scale * 1.4426950408889634f;
        float s[32];
        auto issue_s = [&](int j) {
            const uint32_t ks = stage(j);
#pragma unroll
            for (int kt = 0; kt < KS; kt++) {
                const uint32_t off = (uint32_t)((kt >> 2) * DW_PANEL + (kt & 3) * 32);
                fw_wgmma_m64n64k16_ss(s, fw_wgmma_desc(qs + off), fw_wgmma_desc(ks + off), kt > 0);
            }
            fw_wgmma_commit();
        };
        if (ntiles > 0) {
            wait_tile(0);
            fw_wgmma_fence();
            issue_s(0);
        }
        for (int j = 0; j < ntiles; j++) {
            fw_wgmma_wait<0>(); /* S_j (and P_{j-1} V_{j-1}) done */
#pragma unroll
            for (int i = 0; i < 32; i++) fw_wgmma_pin(s[i]);
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
                alpha[rr] = dw_exp2(m[rr] - m_new);
                float sum = 0.0f;
#pragma unroll
                for (int i = 0; i < DW_BN / 8; i++)
#pragma unroll
                    for (int q = 2 * rr; q < 2 * rr + 2; q++) {
                        const float p = dw_exp2(s[4 * i + q] * sl2 - m_new);
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
                wait_tile(j + 1);
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
            wait_tile(j); /* landed (the first warpgroup saw it); makes it visible to this one's products */
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

template <int C>
static int dw_launch(fw_cuda_ctx *ctx, const md_args &a) {
    const int smem = dw_layout<C>::SMEM;
    FW_CUDA_CHECK(ctx, cudaFuncSetAttribute(mla_split_wgmma_kernel<C>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    dim3 grid((unsigned)fw_ceil_div(a.H, FW_MLA_WG_HEADS), (unsigned)a.T, (unsigned)a.splits);
    mla_split_wgmma_kernel<C><<<grid, DW_THREADS, smem, ctx->stream>>>(a);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

int fw_cuda_mla_split_wgmma(fw_cuda_ctx *ctx, const md_args &a) {
    if (a.R == 64 && a.C == 512) return dw_launch<512>(ctx, a);
    if (a.R == 64 && a.C == 256) return dw_launch<256>(ctx, a);
    return fw_cuda_errf(ctx, "fw_cuda_mla_split_wgmma: no kernel for C %lld, R %lld", (long long)a.C, (long long)a.R);
}
