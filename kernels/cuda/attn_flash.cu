/* Causal prefill attention, fused (flash attention, as FlashAttention-2 lays out
 * the work): a block takes FA_BM queries of one head, 4 warps of 16 queries
 * each, and walks the keys in tiles of FA_BN. Per tile: S = Q K^T on the tensor
 * cores (bf16 mma, fp32 accumulators), the online softmax in fp32 registers, and
 * O += P V with P rounded to bf16 in registers (its accumulator layout is the A
 * operand's). The score matrix never reaches memory, so traffic and work space
 * stay O(T) whatever the length. K and V tiles are double-buffered through
 * cp.async: the next tile loads while this one is computed.
 *
 * A key has two parts (MLA: k_nope from the kv_b expansion, one per head, and
 * k_pe from the latent cache, shared by the heads); head dims are padded with
 * zeros to the kernel's DQ (q . k) and DV (v), instantiated for 64..256 and 64..128. */
#include "kernels/cuda/attn_flash.h"
#include "kernels/cuda/tc.h"

#include <math.h>

#define FA_BM 64
#define FA_BN 64
#define FA_THREADS 128

/* A row of a tile (D values) from up to two sources (d1 values at p1, then d2 at
 * p2), zeros past them and for rows outside the matrix (p1 == NULL); threads
 * `part` of `parts` share the row. VEC: whole 16-byte pieces by cp.async (the
 * host checked sizes and alignment; `any` is a global address for the
 * zero-filling copies, which read nothing); else plain loads. */
template <int D, bool VEC>
__device__ __forceinline__ void fa_load_row(bf16 *dst, const bf16 *p1, int d1, const bf16 *p2, int d2, int part,
                                            int parts, const bf16 *any) {
    if (VEC) {
        for (int c = part; c < D / 8; c += parts) {
            const int d = 8 * c;
            const bf16 *src = !p1 ? nullptr : d < d1 ? p1 + d : d < d1 + d2 ? p2 + (d - d1) : nullptr;
            fw_cp_async16(dst + d, src ? src : any, src ? 16 : 0);
        }
    } else {
        for (int d = part; d < D; d += parts) {
            bf16 v = fw_f2bf(0.0f);
            if (p1 && d < d1) v = p1[d];
            else if (p1 && d < d1 + d2) v = p2[d - d1];
            dst[d] = v;
        }
    }
}

/* Keys [s0, s0 + FA_BN) of head h into a K tile and a V tile. */
template <int DQ, int DV, bool VEC>
__device__ __forceinline__ void fa_load_kv(bf16 *Ks, bf16 *Vs, const fa_args &a, int64_t h, int64_t s0) {
    constexpr int QP = DQ + 8, VP = DV + 8;
    const fw_cuda_attn_kv &kv = a.kv;
    const int tid = threadIdx.x, per_row = FA_THREADS / FA_BN; /* threads sharing a row */
    const int r = tid / per_row, part = tid % per_row;
    const int64_t s = s0 + r;
    const bool in = s < a.S;
    fa_load_row<DQ, VEC>(Ks + r * QP, in ? kv.k1 + s * kv.k1_ss + h * kv.k1_hs : nullptr, (int)kv.d1,
                         in ? kv.k2 + s * kv.k2_ss + h * kv.k2_hs : nullptr, (int)kv.d2, part, per_row, a.q);
    fa_load_row<DV, VEC>(Vs + r * VP, in ? kv.v + s * kv.v_ss + h * kv.v_hs : nullptr, (int)kv.dv, nullptr, 0, part,
                         per_row, a.q);
}

template <int DQ, int DV, bool VEC>
__global__ void __launch_bounds__(FA_THREADS) attn_flash_kernel(fa_args a) {
    constexpr int QP = DQ + 8, VP = DV + 8; /* +16 bytes a row: ldmatrix rows fall in distinct banks */
    constexpr int NT = FA_BN / 8, KQ = DQ / 16, NO = DV / 8;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16 *Qs = (bf16 *)fa_smem;       /* [FA_BM][QP] */
    bf16 *Ks = Qs + FA_BM * QP;       /* [2][FA_BN][QP] */
    bf16 *Vs = Ks + 2 * FA_BN * QP;   /* [2][FA_BN][VP] */
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int mi = lane >> 3, mr = lane & 7; /* ldmatrix: which matrix this lane addresses, which row */
    const int64_t h = blockIdx.y;
    const int64_t q0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * FA_BM; /* the longest rows first */
    const int64_t off = a.S - a.T;                                    /* query t sits at position off + t */
    const int64_t kend = min(a.S, off + q0 + FA_BM);                  /* keys any row of the block sees */
    const int ntiles = (int)fw_ceil_div(kend, FA_BN);

    { /* Q tile: FA_BM rows, two threads a row */
        const int r = tid >> 1;
        const int64_t t = q0 + r;
        const bf16 *qr = t < a.T ? a.q + t * a.q_ts + h * (a.kv.d1 + a.kv.d2) : nullptr;
        fa_load_row<DQ, VEC>(Qs + r * QP, qr, (int)(a.kv.d1 + a.kv.d2), nullptr, 0, tid & 1, 2, a.q);
    }
    fa_load_kv<DQ, DV, VEC>(Ks, Vs, a, h, 0);
    fw_cp_async_commit();

    uint32_t qf[KQ][4];
    float oacc[NO][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < NO; i++) oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.0f;
    /* The two rows this thread holds, as positions: the last key each may see. */
    const int64_t lim0 = off + q0 + warp * 16 + g, lim1 = lim0 + 8;

    for (int j = 0; j < ntiles; j++) {
        const int st = j & 1;
        if (j + 1 < ntiles) {
            fa_load_kv<DQ, DV, VEC>(Ks + (st ^ 1) * FA_BN * QP, Vs + (st ^ 1) * FA_BN * VP, a, h, (int64_t)(j + 1) * FA_BN);
            fw_cp_async_commit();
            fw_cp_async_wait<1>();
        } else {
            fw_cp_async_wait<0>();
        }
        __syncthreads();
        if (j == 0) {
#pragma unroll
            for (int kt = 0; kt < KQ; kt++)
                fw_ldmatrix_x4(qf[kt], Qs + (warp * 16 + (mi & 1) * 8 + mr) * QP + kt * 16 + (mi >> 1) * 8);
        }
        const bf16 *Kt = Ks + st * FA_BN * QP, *Vt = Vs + st * FA_BN * VP;

        float s[NT][4];
#pragma unroll
        for (int i = 0; i < NT; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
        for (int kt = 0; kt < KQ; kt++)
#pragma unroll
            for (int np = 0; np < NT / 2; np++) {
                uint32_t b[4];
                fw_ldmatrix_x4(b, Kt + (np * 16 + (mi >> 1) * 8 + mr) * QP + kt * 16 + (mi & 1) * 8);
                fw_mma_bf16(s[2 * np], qf[kt], b[0], b[1]);
                fw_mma_bf16(s[2 * np + 1], qf[kt], b[2], b[3]);
            }

        /* Causal mask where the tile passes a row's last key (only the diagonal tiles). */
        const int64_t k0 = (int64_t)j * FA_BN;
        if (k0 + FA_BN - 1 > off + q0) {
#pragma unroll
            for (int i = 0; i < NT; i++)
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    const int64_t key = k0 + i * 8 + 2 * t4 + (c & 1);
                    if (key > (c < 2 ? lim0 : lim1)) s[i][c] = -INFINITY;
                }
        }

        /* Online softmax per row (g: c0, c1; g + 8: c2, c3); a row's four threads agree. */
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            float mx = -INFINITY;
#pragma unroll
            for (int i = 0; i < NT; i++) mx = fmaxf(mx, fmaxf(s[i][2 * rr], s[i][2 * rr + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            /* Finite: every row sees key 0, in the first tile. */
            const float m_new = fmaxf(m[rr], mx * a.scale_log2);
            const float alpha = exp2f(m[rr] - m_new);
            float sum = 0.0f;
#pragma unroll
            for (int i = 0; i < NT; i++)
#pragma unroll
                for (int c = 2 * rr; c < 2 * rr + 2; c++) {
                    const float p = exp2f(s[i][c] * a.scale_log2 - m_new);
                    s[i][c] = p;
                    sum += p;
                }
            l[rr] = l[rr] * alpha + sum; /* this thread's part; the row's four are summed at the end */
            m[rr] = m_new;
#pragma unroll
            for (int i = 0; i < NO; i++) oacc[i][2 * rr] *= alpha, oacc[i][2 * rr + 1] *= alpha;
        }

        /* O += P V: score tiles 2kt, 2kt + 1 form the A operand of key step kt. P
         * goes in as two bf16 parts, hi + lo, so it enters with about 16
         * significant bits instead of 8 (bf16 P alone moved the golden tiny
         * model's logits past a router tie); V is read once for both. */
#pragma unroll
        for (int kt = 0; kt < FA_BN / 16; kt++) {
            const float *p4[4] = {&s[2 * kt][0], &s[2 * kt][2], &s[2 * kt + 1][0], &s[2 * kt + 1][2]};
            uint32_t pa[4], pl[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const __nv_bfloat162 hi = __floats2bfloat162_rn(p4[i][0], p4[i][1]);
                const float2 hf = __bfloat1622float2(hi);
                pa[i] = *(const uint32_t *)&hi;
                pl[i] = fw_pack_bf16(p4[i][0] - hf.x, p4[i][1] - hf.y);
            }
#pragma unroll
            for (int np = 0; np < NO / 2; np++) {
                uint32_t b[4];
                fw_ldmatrix_x4_trans(b, Vt + (kt * 16 + (mi & 1) * 8 + mr) * VP + np * 16 + (mi >> 1) * 8);
                fw_mma_bf16(oacc[2 * np], pa, b[0], b[1]);
                fw_mma_bf16(oacc[2 * np + 1], pa, b[2], b[3]);
                fw_mma_bf16(oacc[2 * np], pl, b[0], b[1]);
                fw_mma_bf16(oacc[2 * np + 1], pl, b[2], b[3]);
            }
        }
        __syncthreads(); /* this stage is consumed before the next prefetch overwrites it */
    }

#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        l[rr] += __shfl_xor_sync(0xffffffffu, l[rr], 1);
        l[rr] += __shfl_xor_sync(0xffffffffu, l[rr], 2);
        l[rr] = 1.0f / l[rr];
    }
    const int64_t dv = a.kv.dv;
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        const int64_t t = q0 + warp * 16 + g + 8 * rr;
        if (t >= a.T) continue;
        bf16 *orow = a.o + t * a.o_ts + h * dv;
#pragma unroll
        for (int i = 0; i < NO; i++) {
            const int d = i * 8 + 2 * t4;
            if (d < dv) orow[d] = fw_f2bf(oacc[i][2 * rr] * l[rr]);
            if (d + 1 < dv) orow[d + 1] = fw_f2bf(oacc[i][2 * rr + 1] * l[rr]);
        }
    }
}

template <int DQ, int DV>
static int fa_launch(fw_cuda_ctx *ctx, const fa_args &a, bool vec) {
    const size_t smem = (size_t)(FA_BM * (DQ + 8) + 2 * FA_BN * (DQ + 8) + 2 * FA_BN * (DV + 8)) * sizeof(bf16);
    void (*kern)(fa_args) = vec ? attn_flash_kernel<DQ, DV, true> : attn_flash_kernel<DQ, DV, false>;
    FW_CUDA_CHECK(ctx, cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid((unsigned)fw_ceil_div(a.T, FA_BM), (unsigned)a.H);
    kern<<<grid, FA_THREADS, smem, ctx->stream>>>(a);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

static bool al16(const void *p, int64_t stride_elems) {
    return ((uintptr_t)p % 16) == 0 && (stride_elems * (int64_t)sizeof(bf16)) % 16 == 0;
}

extern "C" int fw_cuda_attn_flash(fw_cuda_ctx *ctx, fw_bf16 *o, const fw_bf16 *q, const fw_cuda_attn_kv *kv, int64_t T,
                                  int64_t S, int64_t H, float scale) {
    const int64_t dqk = kv->d1 + kv->d2;
    if (T < 0 || S < T || H < 1 || kv->d1 < 1 || kv->d2 < 0 || kv->dv < 1 || dqk > 256 || kv->dv > 128 ||
        H > 65535 || fw_ceil_div(T, FA_BM) > 0x7fffffffLL)
        return fw_cuda_errf(ctx, "fw_cuda_attn_flash: bad shape (T %lld, S %lld, H %lld, q.k %lld, v %lld; at most 256 and 128)",
                            (long long)T, (long long)S, (long long)H, (long long)dqk, (long long)kv->dv);
    if (T == 0) return FW_CUDA_OK;
    fa_args a;
    a.o = (bf16 *)o;
    a.q = (const bf16 *)q;
    a.kv = *kv;
    a.T = T, a.S = S, a.H = H;
    a.q_ts = H * dqk, a.o_ts = H * kv->dv;
    a.scale_log2 = scale * 1.4426950408889634f;
    /* 16-byte pieces: every part's rows and head offsets whole pieces, pointers aligned. */
    const bool vec = kv->d1 % 8 == 0 && kv->d2 % 8 == 0 && kv->dv % 8 == 0 && al16(q, dqk) &&
                     al16(kv->k1, kv->k1_ss) && al16(kv->k1, kv->k1_hs) && al16(kv->v, kv->v_ss) &&
                     al16(kv->v, kv->v_hs) && (kv->d2 == 0 || (al16(kv->k2, kv->k2_ss) && al16(kv->k2, kv->k2_hs)));
    /* Hopper: the warpgroup-MMA kernel (attn_flash_wgmma.cu) where it has an instance. */
    if (vec && ctx->cc_major == 9 && ctx->cc_minor == 0 && !ctx->opt.flash_mma && dqk <= 192 && (uintptr_t)o % 4 == 0) {
        ctx->last_flash_path = "wgmma";
        const int dq = dqk <= 64 && kv->dv <= 64 ? 64 : dqk <= 128 ? 128 : 192;
        return fw_cuda_attn_flash_wgmma(ctx, a, dq, dq == 64 ? 64 : 128);
    }
    ctx->last_flash_path = "mma.sync";
    if (dqk <= 64 && kv->dv <= 64) return fa_launch<64, 64>(ctx, a, vec);
    if (dqk <= 128 && kv->dv <= 128) return fa_launch<128, 128>(ctx, a, vec);
    if (dqk <= 192) return fa_launch<192, 128>(ctx, a, vec);
    return fa_launch<256, 128>(ctx, a, vec);
}
