/* Absorbed MLA attention over the latent cache for many queries at once, each
 * with its own sequence and length (flash-decoding): a block takes one query,
 * MLA_HG heads (a warp each) and one split of its keys, so a decode step of one
 * sequence still fills the GPU, and the key tile it loads into shared memory
 * serves all its heads (the cache is shared by the heads; the head groups of one
 * query are neighbours in the grid, so they also share L2). Per tile of 32 keys:
 * lane j scores key j against the warp's head (fp32 dot over C + R), the warp
 * updates its online softmax, then each lane adds p_j * c_j to its C / 32
 * output channels. Each split writes its unnormalised sums and (max, sum of
 * exponentials); a second kernel merges the splits. The cache is paged
 * (fw_cuda_pages): a tile's rows may come from two blocks, so each tile looks up
 * its rows' addresses once into shared memory. */
#include "kernels/cuda/mla_decode.h"
#include "kernels/cuda/tc.h"

#include <math.h>

#define MLA_HG 8 /* heads per block: one warp each */
#define MLA_KT 32
#define MLA_THREADS (32 * MLA_HG)
#define MLA_MAX_NA 16 /* C <= 512 */

/* VEC: rows of C + R values in whole 16-byte pieces at 16-byte aligned
 * addresses, loaded as such (the host checks); else one value per load. Index
 * arithmetic is 32-bit: a tile and a head group are small. */
template <int NA, bool VEC>
__global__ void __launch_bounds__(MLA_THREADS) mla_split_kernel(md_args a) {
    extern __shared__ __align__(16) unsigned char sm_raw[];
    const int Wd = (int)(a.C + a.R), wp = a.wp;
    bf16 *qs = (bf16 *)sm_raw;            /* [MLA_HG][Wd] */
    bf16 *ks = qs + MLA_HG * Wd;          /* [MLA_KT][wp] */
    __shared__ const bf16 *rowp[MLA_KT];  /* the tile's rows in the pages */
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int64_t t = blockIdx.y, h0 = (int64_t)blockIdx.x * MLA_HG, h = h0 + warp;
    const int split = blockIdx.z;
    const bool hv = h < a.H;
    const int64_t seq = a.q_seq ? a.q_seq[t] : 0;
    const int64_t n = a.q_len ? a.q_len[t] : a.S - a.T + t + 1;
    /* This query's keys split evenly (in whole tiles), so short ones use every split. */
    const int64_t span = fw_round_up(fw_ceil_div(n, a.splits), MLA_KT);
    const int64_t s0 = split * span, s1 = min(s0 + span, n);
    for (int i = tid; i < MLA_HG * Wd; i += MLA_THREADS) {
        const int hi = i / Wd, d = i - hi * Wd;
        const int64_t hh = h0 + hi;
        bf16 v = fw_f2bf(0.0f);
        if (hh < a.H) v = d < a.C ? a.q_lat[(t * a.H + hh) * a.C + d] : a.q_pe[(t * a.H + hh) * a.R + d - a.C];
        qs[i] = v;
    }
    float m = -INFINITY, l = 0.0f, acc[NA];
#pragma unroll
    for (int i = 0; i < NA; i++) acc[i] = 0.0f;
    for (int64_t s = s0; s < s1; s += MLA_KT) {
        const int nk = (int)min((int64_t)MLA_KT, s1 - s);
        __syncthreads(); /* the previous tile is consumed (and qs written) */
        if (tid < MLA_KT) rowp[tid] = tid < nk ? page_row(a.pg, seq, s + tid) : NULL;
        __syncthreads();
        if (VEC) { /* 16 bytes per load, stored as 4-byte words (the padded rows are word-aligned) */
            const int wq = Wd / 8;
            for (int i = tid; i < MLA_KT * wq; i += MLA_THREADS) {
                const int j = i / wq, c = i - j * wq;
                const uint4 v = j < nk ? *(const uint4 *)(rowp[j] + 8 * c) : make_uint4(0, 0, 0, 0);
                uint32_t *dst = (uint32_t *)(ks + j * wp + 8 * c);
                dst[0] = v.x, dst[1] = v.y, dst[2] = v.z, dst[3] = v.w;
            }
        } else {
            for (int i = tid; i < MLA_KT * Wd; i += MLA_THREADS) {
                const int j = i / Wd, d = i - j * Wd;
                ks[j * wp + d] = j < nk ? rowp[j][d] : fw_f2bf(0.0f);
            }
        }
        __syncthreads();
        if (!hv) continue; /* warp-uniform */
        float sc = -INFINITY;
        if (lane < nk) {
            const __nv_bfloat162 *q2 = (const __nv_bfloat162 *)(qs + warp * Wd);
            const __nv_bfloat162 *k2 = (const __nv_bfloat162 *)(ks + lane * a.wp);
            float dot = 0.0f;
            float dot2 = 0.0f; /* two chains: the FMAs overlap */
#pragma unroll 8
            for (int d = 0; d < Wd / 2; d++) {
                float2 qv = __bfloat1622float2(q2[d]), kv = __bfloat1622float2(k2[d]);
                dot = fmaf(qv.x, kv.x, dot);
                dot2 = fmaf(qv.y, kv.y, dot2);
            }
            sc = (dot + dot2) * a.scale;
        }
        const float m_new = fmaxf(m, fw_warp_max(sc)); /* finite: lane 0 always has a key */
        const float alpha = expf(m - m_new), p = lane < nk ? expf(sc - m_new) : 0.0f;
        l = l * alpha + fw_warp_sum(p);
        m = m_new;
#pragma unroll
        for (int i = 0; i < NA; i++) acc[i] *= alpha;
        for (int j = 0; j < nk; j++) {
            const float pj = __shfl_sync(0xffffffffu, p, j);
            const bf16 *kr = ks + j * wp;
#pragma unroll
            for (int i = 0; i < NA; i++) {
                const int d = lane + 32 * i;
                if (d < (int)a.C) acc[i] = fmaf(pj, fw_bf2f(kr[d]), acc[i]);
            }
        }
    }
    if (!hv) return;
    const int64_t pi = (t * a.H + h) * a.splits + split;
#pragma unroll
    for (int i = 0; i < NA; i++) {
        int64_t d = lane + 32 * i;
        if (d < a.C) a.part[pi * a.C + d] = acc[i];
    }
    if (lane == 0) a.ml[pi] = make_float2(m, l);
}

/* The same split on the tensor cores (as FlashMLA: the heads of a query share
 * the latent keys, so they form the M dimension of a GEMM): a block takes one
 * query, TC_HG heads and one split, 4 warps. Per tile of TC_BN keys, loaded by
 * cp.async while the previous tile is computed: warp w scores keys 8w..8w+7
 * against all TC_HG heads (bf16 mma over C + R, fp32) into shared memory; every
 * warp then runs the same online softmax over the tile's scores and adds P (bf16)
 * times its C / 4 channels of the keys' latent part. Same splits and outputs as
 * mla_split_kernel. Needs C % 64 == 0, (C + R) % 16 == 0, rows in 16-byte pieces. */
#define TC_HG 16
#define TC_BN 32
#define TC_THREADS 128
#define TC_SP (TC_BN + 4) /* score row pitch (floats) */

static size_t tc_smem(int64_t C, int64_t R) {
    const int64_t kp = C + R + 8; /* +16 bytes a row: ldmatrix rows in distinct banks */
    return (size_t)((TC_HG + 2 * TC_BN) * kp) * sizeof(bf16) + (size_t)(TC_HG * TC_SP) * sizeof(float);
}

/* Keys [k0, k0 + TC_BN) of this split (rows past s1 zero) into a tile. */
__device__ __forceinline__ void tc_load_keys(bf16 *Kt, const md_args &a, int64_t seq, int64_t k0, int64_t s1, int kp) {
    const int Wd = (int)(a.C + a.R), parts = TC_THREADS / TC_BN, r = threadIdx.x / parts;
    const int64_t p = k0 + r;
    const bf16 *src = p < s1 ? page_row(a.pg, seq, p) : nullptr;
    for (int c = threadIdx.x % parts; c < Wd / 8; c += parts)
        fw_cp_async16(Kt + r * kp + 8 * c, src ? src + 8 * c : a.q_lat, src ? 16 : 0);
}

template <int CW>
__global__ void __launch_bounds__(TC_THREADS) mla_split_tc_kernel(md_args a) {
    constexpr int NO = CW / 8; /* output n-tiles per warp */
    extern __shared__ __align__(16) unsigned char sm_raw[];
    const int Wd = (int)(a.C + a.R), kp = Wd + 8;
    bf16 *Qs = (bf16 *)sm_raw;                    /* [TC_HG][kp] */
    bf16 *Ks = Qs + TC_HG * kp;                   /* [2][TC_BN][kp] */
    float *Ss = (float *)(Ks + 2 * TC_BN * kp);   /* [TC_HG][TC_SP] */
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int mi = lane >> 3, mr = lane & 7;
    const int64_t t = blockIdx.y, h0 = (int64_t)blockIdx.x * TC_HG;
    const int split = blockIdx.z;
    const int64_t seq = a.q_seq ? a.q_seq[t] : 0;
    const int64_t n = a.q_len ? a.q_len[t] : a.S - a.T + t + 1;
    const int64_t span = fw_round_up(fw_ceil_div(n, a.splits), MLA_KT);
    const int64_t s0 = split * span, s1 = min(s0 + span, n);
    const int ntiles = s1 > s0 ? (int)fw_ceil_div(s1 - s0, TC_BN) : 0;

    for (int i = tid; i < TC_HG * (Wd / 8); i += TC_THREADS) { /* the heads' queries, zeros past H */
        const int r = i / (Wd / 8), d = 8 * (i % (Wd / 8));
        const int64_t hh = h0 + r;
        const bf16 *src = hh >= a.H ? nullptr
                          : d < a.C ? a.q_lat + (t * a.H + hh) * a.C + d
                                    : a.q_pe + (t * a.H + hh) * a.R + (d - a.C);
        fw_cp_async16(Qs + r * kp + d, src ? src : a.q_lat, src ? 16 : 0);
    }
    if (ntiles > 0) tc_load_keys(Ks, a, seq, s0, s1, kp);
    fw_cp_async_commit();

    const float sl2 = a.scale * 1.4426950408889634f; /* exp2 of scaled differences */
    float o[NO][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < NO; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    for (int j = 0; j < ntiles; j++) {
        const int64_t k0 = s0 + (int64_t)j * TC_BN;
        if (j + 1 < ntiles) {
            tc_load_keys(Ks + ((j + 1) & 1) * TC_BN * kp, a, seq, k0 + TC_BN, s1, kp);
            fw_cp_async_commit();
            fw_cp_async_wait<1>();
        } else {
            fw_cp_async_wait<0>();
        }
        __syncthreads();
        const bf16 *Kt = Ks + (j & 1) * TC_BN * kp;
        float sc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int kt = 0; kt < Wd / 16; kt++) {
            uint32_t qa[4], b[2];
            fw_ldmatrix_x4(qa, Qs + ((mi & 1) * 8 + mr) * kp + kt * 16 + (mi >> 1) * 8);
            fw_ldmatrix_x2(b, Kt + (warp * 8 + mr) * kp + kt * 16 + (mi & 1) * 8);
            fw_mma_bf16(sc, qa, b[0], b[1]);
        }
        Ss[g * TC_SP + warp * 8 + 2 * t4] = sc[0], Ss[g * TC_SP + warp * 8 + 2 * t4 + 1] = sc[1];
        Ss[(g + 8) * TC_SP + warp * 8 + 2 * t4] = sc[2], Ss[(g + 8) * TC_SP + warp * 8 + 2 * t4 + 1] = sc[3];
        __syncthreads();
        /* The tile's scores in the A-operand layout: n-tile i holds keys 8i + 2t4, +1. */
        float p[TC_BN / 8][4];
#pragma unroll
        for (int i = 0; i < TC_BN / 8; i++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const int col = i * 8 + 2 * t4 + (c & 1);
                p[i][c] = k0 + col < s1 ? Ss[(g + 8 * (c >> 1)) * TC_SP + col] * sl2 : -INFINITY;
            }
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            float mx = -INFINITY;
#pragma unroll
            for (int i = 0; i < TC_BN / 8; i++) mx = fmaxf(mx, fmaxf(p[i][2 * rr], p[i][2 * rr + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_new = fmaxf(m[rr], mx); /* finite: a tile holds at least key k0 */
            const float alpha = exp2f(m[rr] - m_new);
            float sum = 0.0f;
#pragma unroll
            for (int i = 0; i < TC_BN / 8; i++)
#pragma unroll
                for (int c = 2 * rr; c < 2 * rr + 2; c++) {
                    p[i][c] = exp2f(p[i][c] - m_new);
                    sum += p[i][c];
                }
            l[rr] = l[rr] * alpha + sum; /* this thread's part; the four of a row are summed at the end */
            m[rr] = m_new;
#pragma unroll
            for (int i = 0; i < NO; i++) o[i][2 * rr] *= alpha, o[i][2 * rr + 1] *= alpha;
        }
#pragma unroll
        for (int kt = 0; kt < TC_BN / 16; kt++) {
            const uint32_t pa[4] = {fw_pack_bf16(p[2 * kt][0], p[2 * kt][1]), fw_pack_bf16(p[2 * kt][2], p[2 * kt][3]),
                                    fw_pack_bf16(p[2 * kt + 1][0], p[2 * kt + 1][1]),
                                    fw_pack_bf16(p[2 * kt + 1][2], p[2 * kt + 1][3])};
#pragma unroll
            for (int np = 0; np < NO / 2; np++) {
                uint32_t b[4];
                fw_ldmatrix_x4_trans(b, Kt + (kt * 16 + (mi & 1) * 8 + mr) * kp + warp * CW + np * 16 + (mi >> 1) * 8);
                fw_mma_bf16(o[2 * np], pa, b[0], b[1]);
                fw_mma_bf16(o[2 * np + 1], pa, b[2], b[3]);
            }
        }
        __syncthreads(); /* scores and this stage consumed */
    }
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        const int64_t h = h0 + g + 8 * rr;
        l[rr] += __shfl_xor_sync(0xffffffffu, l[rr], 1);
        l[rr] += __shfl_xor_sync(0xffffffffu, l[rr], 2);
        if (h >= a.H) continue;
        const int64_t pi = (t * a.H + h) * a.splits + split;
        float *dst = a.part + pi * a.C + warp * CW;
#pragma unroll
        for (int i = 0; i < NO; i++) *(float2 *)(dst + i * 8 + 2 * t4) = make_float2(o[i][2 * rr], o[i][2 * rr + 1]);
        if (warp == 0 && t4 == 0) a.ml[pi] = make_float2(m[rr] * 0.6931471805599453f, l[rr]); /* natural units */
    }
}

/* o[t, h] = sum over splits of exp(m_s - M) part_s / sum of exp(m_s - M) l_s:
 * the splits' weights once into shared memory, then a thread per channel (VEC: per
 * 4 channels, 16-byte loads), the splits' loads unrolled so that many are in
 * flight: the sum runs over up to 64 splits, in split order either way. */
#define MERGE_THREADS 128
template <bool VEC>
__global__ void __launch_bounds__(MERGE_THREADS) mla_merge_kernel(md_args a) {
    __shared__ float wgt[64]; /* splits <= 64 */
    const int64_t th = blockIdx.x;
    const float2 *ml = a.ml + th * a.splits;
    if (threadIdx.x < 32) {
        float M = -INFINITY;
        for (int s = threadIdx.x; s < a.splits; s += 32) M = fmaxf(M, ml[s].x);
        M = fw_warp_max(M);
        float L = 0.0f;
        for (int s = threadIdx.x; s < a.splits; s += 32) {
            const float e = ml[s].y > 0.0f ? expf(ml[s].x - M) : 0.0f;
            wgt[s] = e;
            L += e * ml[s].y;
        }
        L = fw_warp_sum(L);
        for (int s = threadIdx.x; s < a.splits; s += 32) wgt[s] /= L;
    }
    __syncthreads();
    const float *part = a.part + th * a.splits * a.C;
    if constexpr (VEC) {
        const int C4 = (int)a.C / 4;
        for (int d = threadIdx.x; d < C4; d += MERGE_THREADS) {
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 8
            for (int s = 0; s < a.splits; s++) {
                const float ws = wgt[s];
                if (ws > 0.0f) {
                    const float4 p = __ldcs((const float4 *)(part + (int64_t)s * a.C) + d);
                    v.x = fmaf(ws, p.x, v.x), v.y = fmaf(ws, p.y, v.y), v.z = fmaf(ws, p.z, v.z), v.w = fmaf(ws, p.w, v.w);
                }
            }
            bf16 *o = a.o + th * a.C + 4 * d;
            o[0] = fw_f2bf(v.x), o[1] = fw_f2bf(v.y), o[2] = fw_f2bf(v.z), o[3] = fw_f2bf(v.w);
        }
    } else {
        for (int d = threadIdx.x; d < (int)a.C; d += MERGE_THREADS) {
            float v = 0.0f;
#pragma unroll 8
            for (int s = 0; s < a.splits; s++)
                if (wgt[s] > 0.0f) v = fmaf(wgt[s], part[(int64_t)s * a.C + d], v);
            a.o[th * a.C + d] = fw_f2bf(v);
        }
    }
}

/* Splits per query: enough blocks for about two waves on a large GPU, given the
 * blocks a query's heads take. Not a function of the cache length (a short
 * query leaves its last splits empty), so a sequence's sums run in the same
 * order whatever cache the step was sized for: one request alone gives the same
 * tokens from the scheduler's pool as from the engine's own cache. */
static int splits_for(int64_t T, int64_t head_blocks) {
    int64_t blocks = T * head_blocks, want = fw_ceil_div(264, blocks > 0 ? blocks : 1);
    return (int)(want < 1 ? 1 : want > 64 ? 64 : want);
}


/* The warpgroup-MMA kernel's blocks hold more heads, so it splits more: the work
 * space is sized for it. */
extern "C" size_t fw_cuda_mla_work_bytes(int64_t T, int64_t H, int64_t S, int64_t C) {
    (void)S;
    int64_t n = T * H * splits_for(T, fw_ceil_div(H, FW_MLA_WG_HEADS));
    return (size_t)(n * C) * sizeof(float) + (size_t)n * sizeof(float2) + 256;
}

template <bool VEC>
static void launch_split(int na, dim3 grid, size_t smem, cudaStream_t st, const md_args &a) {
    if (na <= 2) mla_split_kernel<2, VEC><<<grid, MLA_THREADS, smem, st>>>(a);
    else if (na <= 4) mla_split_kernel<4, VEC><<<grid, MLA_THREADS, smem, st>>>(a);
    else if (na <= 8) mla_split_kernel<8, VEC><<<grid, MLA_THREADS, smem, st>>>(a);
    else mla_split_kernel<16, VEC><<<grid, MLA_THREADS, smem, st>>>(a);
}

extern "C" int fw_cuda_mla_decode(fw_cuda_ctx *ctx, fw_bf16 *o_lat, const fw_bf16 *q_lat, const fw_bf16 *q_pe,
                                  const fw_cuda_pages *pg, const int32_t *q_seq, const int32_t *q_len, int64_t T,
                                  int64_t S, int64_t H, int64_t C, int64_t R, float scale, void *work) {
    const int64_t W = pg->W;
    if (T < 0 || S < 1 || H < 1 || C < 1 || R < 0 || C % 2 || R % 2 || W < C + R || C > 32 * MLA_MAX_NA ||
        (!q_len && S < T) || pg->block < 1 || pg->max_blocks < 1 || !pg->table)
        return fw_cuda_errf(ctx, "fw_cuda_mla_decode: bad shape (T %lld, S %lld, H %lld, C %lld, R %lld, W %lld)",
                            (long long)T, (long long)S, (long long)H, (long long)C, (long long)R, (long long)W);
    if (T == 0) return FW_CUDA_OK;
    if (T > 65535) return fw_cuda_errf(ctx, "fw_cuda_mla_decode: %lld queries in one launch", (long long)T);
    md_args a;
    a.o = (bf16 *)o_lat, a.q_lat = (const bf16 *)q_lat, a.q_pe = (const bf16 *)q_pe, a.pg = *pg;
    a.q_seq = q_seq, a.q_len = q_len;
    a.T = T, a.S = S, a.H = H, a.C = C, a.R = R, a.scale = scale;
    const bool vec = (C + R) % 8 == 0 && W % 8 == 0 && pg->block_stride % 8 == 0 && fw_ptr_align(pg->base) >= 16;
    const bool q_vec = fw_ptr_align(q_lat) >= 16 && fw_ptr_align(q_pe) >= 16 && C % 8 == 0 && R % 8 == 0;
    const bool tc = vec && q_vec && C % 64 == 0 && C <= 512 && (C + R) % 16 == 0 && !ctx->opt.mla_cuda_cores;
    const bool wg = tc && ctx->cc_major == 9 && ctx->cc_minor == 0 && !ctx->opt.mla_mma && fw_cuda_mla_wgmma_fits(C, R) &&
                    fw_cuda_mla_wgmma_pages_fit(pg);
    a.splits = wg ? splits_for(T, fw_ceil_div(H, FW_MLA_WG_HEADS)) : splits_for(T, fw_ceil_div(H, MLA_HG));
    ctx->last_mla_splits = a.splits;
    /* Key rows padded to an odd number of 4-byte words: lanes reading key j hit distinct banks. */
    a.wp = (int)(C + R + 2);
    if ((a.wp / 2) % 2 == 0) a.wp += 2;
    int64_t n = T * H * a.splits;
    a.part = (float *)work;
    a.ml = (float2 *)((char *)work + fw_round_up((int64_t)(n * C) * (int64_t)sizeof(float), 256));
    if (wg) {
        if (fw_cuda_mla_split_wgmma(ctx, a) != FW_CUDA_OK) return FW_CUDA_ERR;
        ctx->last_mla_path = "warpgroup MMA";
    } else if (tc) {
        const size_t smem = tc_smem(C, R);
        dim3 grid((unsigned)fw_ceil_div(H, TC_HG), (unsigned)T, (unsigned)a.splits);
        void (*kern)(md_args) = C == 512 ? mla_split_tc_kernel<128> : C == 256 ? mla_split_tc_kernel<64>
                                : C == 128 ? mla_split_tc_kernel<32> : mla_split_tc_kernel<16>;
        FW_CUDA_CHECK(ctx, cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        kern<<<grid, TC_THREADS, smem, ctx->stream>>>(a);
        ctx->last_mla_path = "tensor cores";
    } else {
        size_t smem = (size_t)(MLA_HG * (C + R) + MLA_KT * a.wp) * sizeof(bf16);
        if (smem > 48 * 1024) return fw_cuda_errf(ctx, "fw_cuda_mla_decode: C + R = %lld too wide", (long long)(C + R));
        dim3 grid((unsigned)fw_ceil_div(H, MLA_HG), (unsigned)T, (unsigned)a.splits);
        int na = (int)fw_ceil_div(C, 32);
        if (vec) launch_split<true>(na, grid, smem, ctx->stream, a);
        else launch_split<false>(na, grid, smem, ctx->stream, a);
        ctx->last_mla_path = vec ? "cuda cores, 16-byte loads" : "cuda cores";
    }
    FW_CUDA_LAUNCHED(ctx);
    if (T * H > 0x7fffffffLL) return fw_cuda_errf(ctx, "fw_cuda_mla_decode: T * H too large");
    /* part rows are C floats from a 256-byte aligned work space (fw_cuda_mla_work_bytes) */
    if (a.C % 4 == 0 && fw_ptr_align(a.part) >= 16)
        mla_merge_kernel<true><<<(unsigned)(T * H), MERGE_THREADS, 0, ctx->stream>>>(a);
    else mla_merge_kernel<false><<<(unsigned)(T * H), MERGE_THREADS, 0, ctx->stream>>>(a);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

__global__ void kv_append_kernel(fw_cuda_pages pg, const bf16 *__restrict__ rows, const int32_t *__restrict__ q_seq,
                                 const int32_t *__restrict__ q_len, int64_t T) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < T * pg.W; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / pg.W, d = i % pg.W;
        ((bf16 *)page_row(pg, q_seq[t], q_len[t] - 1))[d] = rows[i];
    }
}

extern "C" int fw_cuda_kv_append(fw_cuda_ctx *ctx, const fw_cuda_pages *pg, const fw_bf16 *rows, const int32_t *q_seq,
                                 const int32_t *q_len, int64_t T) {
    if (T < 0 || pg->W < 1 || pg->block < 1 || !pg->table)
        return fw_cuda_errf(ctx, "fw_cuda_kv_append: bad shape (T %lld, W %lld)", (long long)T, (long long)pg->W);
    if (T == 0) return FW_CUDA_OK;
    kv_append_kernel<<<fw_grid_1d(T * pg->W, 256), 256, 0, ctx->stream>>>(*pg, (const bf16 *)rows, q_seq, q_len, T);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

__global__ void kv_gather_kernel(bf16 *dst, fw_cuda_pages pg, int64_t seq, int64_t S) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < S * pg.W; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t p = i / pg.W, d = i % pg.W;
        dst[i] = page_row(pg, seq, p)[d];
    }
}

extern "C" int fw_cuda_kv_gather(fw_cuda_ctx *ctx, fw_bf16 *dst, const fw_cuda_pages *pg, int64_t seq, int64_t S) {
    if (S < 0 || seq < 0 || pg->W < 1 || pg->block < 1 || !pg->table || S > pg->max_blocks * pg->block)
        return fw_cuda_errf(ctx, "fw_cuda_kv_gather: bad shape (S %lld, W %lld, %lld blocks of %lld)", (long long)S,
                            (long long)pg->W, (long long)pg->max_blocks, (long long)pg->block);
    if (S == 0) return FW_CUDA_OK;
    kv_gather_kernel<<<fw_grid_1d(S * pg->W, 256), 256, 0, ctx->stream>>>((bf16 *)dst, *pg, seq, S);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}
