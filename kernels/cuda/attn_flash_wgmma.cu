/* Causal prefill attention on Hopper's warpgroup MMA (sm_90a), the work laid out
 * as FlashAttention-3 does: a CTA takes FW_BM = 128 queries of one head in two
 * warpgroups of 64, and walks the keys in tiles of 64. Per tile, per
 * warpgroup: S = Q K^T by wgmma (Q in registers, K read by the tensor cores
 * from 128-byte swizzled shared memory), the online softmax on S's fp32
 * accumulators, and O += P V by wgmma with P in registers (an accumulator's
 * layout is the A operand's) and V read as an "MN-major" operand, its rows as
 * stored. Two overlaps: S_j and P_{j-1} V_{j-1} are issued together and the
 * softmax of S_j runs while P_{j-1} V_{j-1} is still on the tensor cores
 * (intra-warpgroup pipelining), and the two warpgroups take turns issuing, so
 * one's softmax runs under the other's products (ping-pong). K and V tiles come
 * through a 5-stage cp.async ring on mbarriers, three tiles ahead, every thread
 * copying a quarter of four rows; no CTA-wide barrier in the loop.
 *
 * The numbers are those of attn_flash.cu's mma.sync kernel: bf16 operands, fp32
 * accumulators and softmax, P as hi + lo bf16 parts.
 *
 * Measured (H200, T 4096, DeepSeek-V3's 128 heads, q.k 192, v 128, causal):
 * 2.24 ms, 307 TFLOP/s of the causal half, against 4.93 ms by mma.sync in the
 * same run. Nsight: the largest stall is waiting on the tensor cores' results
 * (wait 1.32 a issue), then barriers (0.63, the turns); the hi + lo P doubles P V
 * (bf16 P: about 13% faster; off by default, see attn_flash.cu). */
#include "kernels/cuda/attn_flash.h"
#include "kernels/cuda/barrier.h"
#include "kernels/cuda/tc.h"
#include "kernels/cuda/wgmma.h"

#include <math.h>

#define FW_BN 64                 /* keys a tile */
#define FW_BM 128                /* queries a CTA: two warpgroups of 64 */
#define FW_THREADS 256
#define FW_STAGES 5              /* the K/V ring */
#define FW_LOOK 3                /* tiles loaded ahead: at the end of tile j's softmax, tile j + 3 */
#define FW_PANEL (FW_BN * 128)   /* 64 values of each of a tile's rows: FW_BN swizzled rows of 128 bytes */

template <int DQ, int DV>
struct fw_fa_layout {
    static constexpr int K_BYTES = DQ / 64 * FW_PANEL; /* [DQ / 64 panels][FW_BN keys][128 bytes] */
    static constexpr int V_BYTES = DV / 64 * FW_PANEL;
    static constexpr int STAGE = K_BYTES + V_BYTES;
    static constexpr int BARS = FW_STAGES * STAGE;                  /* full[FW_STAGES], empty[FW_STAGES]: mbarriers */
    static constexpr int SMEM = BARS + 16 * FW_STAGES + 1024;       /* + room to align to 1024 */
    static_assert(DQ % 64 == 0 && DV % 64 == 0, "panels stay 1024-byte aligned");
    static_assert(SMEM <= 227 * 1024, "fits an SM's shared memory");
};

/* Byte offset of 16-byte piece c of row r in a tile of panels (the swizzle). */
__device__ __forceinline__ uint32_t fw_fa_swz(int r, int c) {
    return (uint32_t)((c >> 3) * FW_PANEL + r * 128 + (((c & 7) ^ (r & 7)) << 4));
}

/* Keys [s0, s0 + FW_BN) of head h: K (d1 values from k1, d2 from k2, zeros to
 * DQ) and V (dv values, zeros to DV) into a stage; rows past S are zeros. The
 * copies that read nothing still name a valid address (a.q). */
template <int DQ, int DV>
__device__ __forceinline__ void fw_fa_load_kv(uint32_t st, const fa_args &a, int64_t h, int64_t s0) {
    using L = fw_fa_layout<DQ, DV>;
    static_assert(FW_THREADS == 4 * FW_BN && DQ % 32 == 0 && DV % 32 == 0, "four threads a row, pieces c = part + 4 i");
    const fw_cuda_attn_kv &kv = a.kv;
    const int r = threadIdx.x >> 2, part = threadIdx.x & 3;
    const int64_t s = s0 + r;
    const bool in = s < a.S;
    const bf16 *k1 = kv.k1 + s * kv.k1_ss + h * kv.k1_hs, *k2 = kv.k2 + s * kv.k2_ss + h * kv.k2_hs - kv.d1;
    const bf16 *v = kv.v + s * kv.v_ss + h * kv.v_hs;
#pragma unroll
    for (int i = 0; i < DQ / 32; i++) {
        const int c = part + 4 * i, d = 8 * c;
        const bool ok = in && d < kv.d1 + kv.d2;
        fw_cp_async16_at(st + fw_fa_swz(r, c), ok ? (d < kv.d1 ? k1 : k2) + d : a.q, ok ? 16 : 0);
    }
#pragma unroll
    for (int i = 0; i < DV / 32; i++) {
        const int c = part + 4 * i, d = 8 * c;
        const bool ok = in && d < kv.dv;
        fw_cp_async16_at(st + L::K_BYTES + fw_fa_swz(r, c), ok ? v + d : a.q, ok ? 16 : 0);
    }
}

template <int DQ, int DV>
__global__ void __launch_bounds__(FW_THREADS, 1) attn_flash_wgmma_kernel(fa_args a) {
#if FW_HAVE_WGMMA
    using L = fw_fa_layout<DQ, DV>;
    constexpr int KQ = DQ / 16, NV = DV / 64, KV = FW_BN / 16;
    extern __shared__ __align__(128) uint8_t fw_fa_smem[];
    const uint32_t raw = fw_smem_addr(fw_fa_smem), ring = raw + ((1024 - (raw & 1023)) & 1023);
    const uint32_t full = ring + L::BARS, empty = full + 8 * FW_STAGES; /* mbarriers of stage st at + 8 st */
    const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int64_t h = blockIdx.y, dqk = a.kv.d1 + a.kv.d2;
    const int64_t q0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * FW_BM; /* the longest rows first */
    const int64_t off = a.S - a.T;                                    /* query t sits at position off + t */
    const int ntiles = (int)fw_ceil_div(min(a.S, off + q0 + FW_BM), FW_BN);
    /* This warpgroup's queries. Both walk all the CTA's tiles (the first
     * warpgroup's last one is masked whole, when T is a multiple of 64): the
     * products stay in uniform control flow, which wgmma needs to overlap. */
    const int64_t wq0 = q0 + 64 * wg;

    /* Stage st holds tiles st, st + FW_STAGES, ...: full[st] completes a phase
     * when every thread's copies of its tile have landed, empty[st] when every
     * thread is done reading it. */
    if (tid == 0) {
        for (int st = 0; st < FW_STAGES; st++) fw_mbar_init(full + 8 * st, FW_THREADS), fw_mbar_init(empty + 8 * st, FW_THREADS);
    }
    __syncthreads();
    auto stage = [&](int j) { return ring + (uint32_t)(j % FW_STAGES) * L::STAGE; };
    auto load = [&](int j) { /* this thread's copies of tile j, once its stage is free */
        if (j >= FW_STAGES) fw_mbar_wait(empty + 8 * (j % FW_STAGES), (uint32_t)(j / FW_STAGES - 1) & 1);
        fw_fa_load_kv<DQ, DV>(stage(j), a, h, (int64_t)j * FW_BN);
        fw_mbar_arrive_cp_async(full + 8 * (j % FW_STAGES));
    };
#pragma unroll
    for (int j = 0; j < FW_LOOK; j++)
        if (j < ntiles) load(j);

    /* Q straight into the A fragments (read once): rows g, g + 8 of this warp,
     * zeros past T and past dqk (whole 16-byte pieces, so pairs are in or out). */
    uint32_t qf[KQ][4], pa[KV][4] = {}, pl[KV][4] = {};
    {
        const int64_t t0 = wq0 + 16 * warp + g;
        const uint32_t *r0 = t0 < a.T ? (const uint32_t *)(a.q + t0 * a.q_ts + h * dqk) : nullptr;
        const uint32_t *r1 = t0 + 8 < a.T ? (const uint32_t *)(a.q + (t0 + 8) * a.q_ts + h * dqk) : nullptr;
#pragma unroll
        for (int kt = 0; kt < KQ; kt++) {
            const int c0 = 16 * kt + 2 * t4, c1 = c0 + 8;
            qf[kt][0] = r0 && c0 < dqk ? __ldg(r0 + c0 / 2) : 0u;
            qf[kt][1] = r1 && c0 < dqk ? __ldg(r1 + c0 / 2) : 0u;
            qf[kt][2] = r0 && c1 < dqk ? __ldg(r0 + c1 / 2) : 0u;
            qf[kt][3] = r1 && c1 < dqk ? __ldg(r1 + c1 / 2) : 0u;
        }
    }
    float o[NV][32], s[32], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
#pragma unroll
    for (int c = 0; c < NV; c++)
#pragma unroll
        for (int i = 0; i < 32; i++) o[c][i] = 0.0f;
    /* The two rows this thread holds, as positions: the last key each may see. */
    const int64_t lim0 = off + wq0 + 16 * warp + g, lim1 = lim0 + 8;

    /* Tile j's S, masked where the tile passes a row's last key (only the
     * diagonal tiles), to its softmax numerators; alpha: each row's rescale of O.
     * s[4 i + c]: row g (c < 2) or g + 8, key 8 i + 2 t4 + (c & 1) of the tile.
     * Finite maxima: every row sees key 0, in tile 0. */
    auto softmax = [&](int j, float (&alpha)[2]) {
        const int64_t k0 = (int64_t)j * FW_BN;
        if (k0 + FW_BN - 1 > off + wq0) {
#pragma unroll
            for (int i = 0; i < FW_BN / 8; i++)
#pragma unroll
                for (int c = 0; c < 4; c++)
                    if (k0 + 8 * i + 2 * t4 + (c & 1) > (c < 2 ? lim0 : lim1)) s[4 * i + c] = -INFINITY;
        }
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            float mx = -INFINITY;
#pragma unroll
            for (int i = 0; i < FW_BN / 8; i++) mx = fmaxf(mx, fmaxf(s[4 * i + 2 * rr], s[4 * i + 2 * rr + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_new = fmaxf(m[rr], mx * a.scale_log2);
            alpha[rr] = fw_exp2_ftz(m[rr] - m_new);
            float sum = 0.0f;
#pragma unroll
            for (int i = 0; i < FW_BN / 8; i++)
#pragma unroll
                for (int c = 2 * rr; c < 2 * rr + 2; c++) {
                    const float p = fw_exp2_ftz(s[4 * i + c] * a.scale_log2 - m_new);
                    s[4 * i + c] = p;
                    sum += p;
                }
            l[rr] = l[rr] * alpha[rr] + sum; /* this thread's part; the row's four are summed at the end */
            m[rr] = m_new;
        }
    };
    /* The numerators as the A operand of key step kt (S's n8 tiles 2 kt, 2 kt + 1),
     * as hi + lo bf16 parts: about 16 significant bits (see attn_flash.cu). */
    auto to_p = [&]() {
#pragma unroll
        for (int kt = 0; kt < KV; kt++)
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const float x0 = s[8 * kt + 2 * q], x1 = s[8 * kt + 2 * q + 1];
                const __nv_bfloat162 hi = __floats2bfloat162_rn(x0, x1);
                const float2 hf = __bfloat1622float2(hi);
                pa[kt][q] = *(const uint32_t *)&hi;
                pl[kt][q] = fw_pack_bf16(x0 - hf.x, x1 - hf.y);
            }
    };

    /* Tile j's products: S = Q K^T, O += P V (P: this tile's). */
    auto issue_s = [&](int j) {
        const uint32_t ks = stage(j);
#pragma unroll
        for (int kt = 0; kt < KQ; kt++)
            fw_wgmma_m64n64k16_rs(s, qf[kt], fw_wgmma_desc(ks + (kt >> 2) * FW_PANEL + (kt & 3) * 32), kt > 0);
        fw_wgmma_commit();
    };
    auto issue_pv = [&](int j) {
        const uint32_t vs = stage(j) + L::K_BYTES;
#pragma unroll
        for (int kt = 0; kt < KV; kt++) {
            if (NV == 2) { /* v 128: one m64n128 product over both column blocks */
                const uint64_t vd = fw_wgmma_desc_mn(vs + kt * 16 * 128, FW_PANEL);
                fw_wgmma_m64n128k16_rs<1>(o[0], o[NV - 1], pa[kt], vd, true);
                fw_wgmma_m64n128k16_rs<1>(o[0], o[NV - 1], pl[kt], vd, true);
            } else {
#pragma unroll
            for (int c = 0; c < NV; c++) {
                const uint64_t vd = fw_wgmma_desc(vs + c * FW_PANEL + kt * 16 * 128);
                fw_wgmma_m64n64k16_rs<1>(o[c], pa[kt], vd, true);
                fw_wgmma_m64n64k16_rs<1>(o[c], pl[kt], vd, true);
            }
            }
        }
        fw_wgmma_commit();
    };
    /* Waits for tile j's copies (everyone's) and makes them visible to the tensor cores. */
    auto wait_tile = [&](int j) {
        fw_mbar_wait(full + 8 * (j % FW_STAGES), (uint32_t)(j / FW_STAGES) & 1);
        fw_wgmma_fence_smem();
    };
    /* The two warpgroups take turns issuing products (FlashAttention-3's
     * ping-pong): one's softmax runs while the other's products do. Named
     * barrier 1 + w: warpgroup w's turn. */
    auto my_turn = [&]() { fw_bar_sync(1 + wg, FW_THREADS); };
    auto your_turn = [&]() { fw_bar_arrive(1 + (wg ^ 1), FW_THREADS); };
    auto pin_s = [&]() { fw_wgmma_pin(s), fw_wgmma_pin(qf); };
    auto pin_pv = [&]() { fw_wgmma_pin(o), fw_wgmma_pin(pa), fw_wgmma_pin(pl); };

    /* Tile 0: S_0 alone. Then tile j: S_j with P_{j-1} V_{j-1}. Then the last
     * P V. After each softmax, tile j - 1's stage is released and this thread's
     * copies of tile j + FW_LOOK start. The second warpgroup gives the first
     * the first turn, and takes no turn after its last. */
    if (wg == 1) your_turn();
    wait_tile(0);
    my_turn();
    fw_wgmma_fence();
    issue_s(0);
    your_turn();
    fw_wgmma_wait<0>();
    pin_s();
    float alpha[2];
    softmax(0, alpha);
    to_p();
    if (FW_LOOK < ntiles) load(FW_LOOK);
    for (int j = 1; j < ntiles; j++) {
        wait_tile(j);
        my_turn();
        fw_wgmma_fence();
        issue_s(j);
        issue_pv(j - 1);
        your_turn();
        fw_wgmma_wait<1>(); /* S_j is done; P_{j-1} V_{j-1} may still run */
        pin_s();
        softmax(j, alpha);
        fw_wgmma_wait<0>(); /* P_{j-1} V_{j-1} is in O; its P registers and tile j - 1 are free */
        pin_pv();
        fw_mbar_arrive(empty + 8 * ((j - 1) % FW_STAGES));
        /* Rescale O only where a row's maximum moved: after the first tiles, rarely. */
        if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) {
#pragma unroll
            for (int c = 0; c < NV; c++)
#pragma unroll
                for (int i = 0; i < 32; i++) o[c][i] *= alpha[(i >> 1) & 1]; /* s[4 i + q]: row g + 8 for q >= 2 */
        }
        to_p();
        if (j + FW_LOOK < ntiles) load(j + FW_LOOK);
    }
    my_turn();
    fw_wgmma_fence();
    issue_pv(ntiles - 1);
    if (wg == 0) your_turn();
    fw_wgmma_wait<0>();
    pin_pv();

#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        l[rr] += __shfl_xor_sync(0xffffffffu, l[rr], 1);
        l[rr] += __shfl_xor_sync(0xffffffffu, l[rr], 2);
        l[rr] = 1.0f / l[rr];
    }
    const int64_t dv = a.kv.dv;
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        const int64_t t = wq0 + 16 * warp + g + 8 * rr;
        if (t >= a.T) continue;
        bf16 *orow = a.o + t * a.o_ts + h * dv;
#pragma unroll
        for (int c = 0; c < NV; c++)
#pragma unroll
            for (int i = 0; i < 8; i++) {
                const int d = 64 * c + 8 * i + 2 * t4; /* dv is whole 16-byte pieces: d, d + 1 both in or out */
                if (d < dv)
                    *(__nv_bfloat162 *)(orow + d) =
                        __floats2bfloat162_rn(o[c][4 * i + 2 * rr] * l[rr], o[c][4 * i + 2 * rr + 1] * l[rr]);
            }
    }
#else
    (void)a;
    __trap(); /* built without sm_90a code: the host never launches this */
#endif
}

template <int DQ, int DV>
static int fw_fa_launch(fw_cuda_ctx *ctx, const fa_args &a) {
    const int smem = fw_fa_layout<DQ, DV>::SMEM;
    void (*kern)(fa_args) = attn_flash_wgmma_kernel<DQ, DV>;
    FW_CUDA_CHECK(ctx, cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    dim3 grid((unsigned)fw_ceil_div(a.T, FW_BM), (unsigned)a.H);
    kern<<<grid, FW_THREADS, smem, ctx->stream>>>(a);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

int fw_cuda_attn_flash_wgmma(fw_cuda_ctx *ctx, const fa_args &a, int dq, int dv) {
    if (dq == 64 && dv == 64) return fw_fa_launch<64, 64>(ctx, a);
    if (dq == 128 && dv == 128) return fw_fa_launch<128, 128>(ctx, a);
    if (dq == 192 && dv == 128) return fw_fa_launch<192, 128>(ctx, a);
    return fw_cuda_errf(ctx, "fw_cuda_attn_flash_wgmma: no kernel for q.k %d, v %d", dq, dv);
}
