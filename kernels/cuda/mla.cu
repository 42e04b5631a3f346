/* The two per-head projections of absorbed MLA, for all heads in one launch each
 * (the CPU path loops over heads with weight views):
 *
 * - q_absorb: q_lat[t, h, :] = q_nope[t, h, :] . W_UK(h), where W_UK(h) is rows
 *   h * (dn + dv) .. + dn of kv_b (dn x C): the query moved into the latent space.
 *   A thread per latent channel c, for 8 tokens at once, walks down W_UK(h)'s
 *   column c (coalesced across the warp); the queries sit in shared memory.
 * - o_absorb: o[t, h, :] = o_lat[t, h, :] . W_UV(h)^T, W_UV(h) the next dv rows
 *   (dv x C): a warp per output row streams it once for 8 tokens.
 *
 * Weights of any type and view (fw_wget), bf16 activations, fp32 accumulation;
 * BF16 and FP8 kv_b the tensor-core forms take (q_tc_ok, o_tc_ok: DeepSeek-V3's
 * and the tests' shapes) run on the tensor cores, reading the weights once per
 * 32 tokens; other BF16 and FP8 rows aligned for 8-value loads take the fast
 * forms below. */
#include <type_traits>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/tc.h"

#define MLA_TOK 8
#define Q_THREADS 128
#define O_THREADS 256

template <int WT>
__global__ void __launch_bounds__(Q_THREADS)
q_absorb_kernel(bf16 *__restrict__ q_lat, const bf16 *__restrict__ q, fw_wview w, int64_t T, int64_t H,
                int64_t dn, int64_t dv, int64_t R, int64_t C) {
    extern __shared__ float qs[]; /* [MLA_TOK][dn] */
    const int64_t h = blockIdx.y, t0 = (int64_t)blockIdx.z * MLA_TOK, dqk = dn + R;
    const int nt = (int)min((int64_t)MLA_TOK, T - t0);
    for (int64_t i = threadIdx.x; i < MLA_TOK * dn; i += Q_THREADS) {
        int64_t t = i / dn, d = i % dn;
        qs[i] = t < nt ? fw_bf2f(q[((t0 + t) * H + h) * dqk + d]) : 0.0f;
    }
    __syncthreads();
    const int64_t c = (int64_t)blockIdx.x * Q_THREADS + threadIdx.x;
    if (c >= C) return;
    float acc[MLA_TOK];
#pragma unroll
    for (int t = 0; t < MLA_TOK; t++) acc[t] = 0.0f;
    for (int64_t d = 0; d < dn; d++) {
        float wv = fw_wget<WT>(w, h * (dn + dv) + d, c);
#pragma unroll
        for (int t = 0; t < MLA_TOK; t++) acc[t] = fmaf(qs[t * dn + d], wv, acc[t]);
    }
#pragma unroll
    for (int t = 0; t < MLA_TOK; t++)
        if (t < nt) q_lat[((t0 + t) * H + h) * C + c] = fw_f2bf(acc[t]);
}

template <int WT>
__global__ void __launch_bounds__(O_THREADS)
o_absorb_kernel(bf16 *__restrict__ o, const bf16 *__restrict__ o_lat, fw_wview w, int64_t T, int64_t H, int64_t dn,
                int64_t dv, int64_t C) {
    const int lane = threadIdx.x & 31;
    const int64_t row = (int64_t)blockIdx.x * (O_THREADS / 32) + (threadIdx.x >> 5); /* h * dv + j */
    if (row >= H * dv) return;
    const int64_t h = row / dv, j = row % dv, t0 = (int64_t)blockIdx.y * MLA_TOK;
    const int nt = (int)min((int64_t)MLA_TOK, T - t0);
    float acc[MLA_TOK];
#pragma unroll
    for (int t = 0; t < MLA_TOK; t++) acc[t] = 0.0f;
    for (int64_t c = lane; c < C; c += 32) {
        float wv = fw_wget<WT>(w, h * (dn + dv) + dn + j, c);
#pragma unroll
        for (int t = 0; t < MLA_TOK; t++)
            if (t < nt) acc[t] = fmaf(fw_bf2f(o_lat[((t0 + t) * H + h) * C + c]), wv, acc[t]);
    }
#pragma unroll
    for (int t = 0; t < MLA_TOK; t++) {
        float v = fw_warp_sum(acc[t]);
        if (lane == 0 && t < nt) o[((t0 + t) * H + h) * dv + j] = fw_f2bf(v);
    }
}

/* The fast forms, for weight rows loadable 8 values at a time (vec_ok):
 * - q_absorb: a block per head and 8 tokens; a thread owns 8 latent channels
 *   (one 8-value load per row of W_UK) over a slice of the dn rows, and the
 *   slices' partial sums meet in shared memory. C a power of two in [8, 1024].
 * - o_absorb: as above, a warp per output row, 8 values per load. */
#define QF_THREADS 128

template <int WT>
__global__ void __launch_bounds__(QF_THREADS)
q_absorb_fast_kernel(bf16 *__restrict__ q_lat, const bf16 *__restrict__ q, fw_wview w, int T, int H, int dn, int dv,
                     int R, int C) {
    extern __shared__ float sm[]; /* qs [MLA_TOK][dn], then part [slices][MLA_TOK][C] */
    float *qs = sm, *part = sm + MLA_TOK * dn;
    const int h = blockIdx.x, t0 = blockIdx.y * MLA_TOK, nt = min(MLA_TOK, T - t0), dqk = dn + R;
    for (int i = threadIdx.x; i < MLA_TOK * dn; i += QF_THREADS) {
        const int t = i / dn, d = i - t * dn;
        qs[i] = t < nt ? fw_bf2f(q[((int64_t)(t0 + t) * H + h) * dqk + d]) : 0.0f;
    }
    __syncthreads();
    const int chunks = C / 8, slices = QF_THREADS / chunks, ci = threadIdx.x % chunks, sl = threadIdx.x / chunks;
    const int c0 = 8 * ci, per = (dn + slices - 1) / slices, d0 = sl * per, d1 = min(dn, d0 + per);
    float acc[MLA_TOK][8];
#pragma unroll
    for (int t = 0; t < MLA_TOK; t++)
#pragma unroll
        for (int i = 0; i < 8; i++) acc[t][i] = 0.0f;
#pragma unroll 4
    for (int d = d0; d < d1; d++) {
        const int64_t row = (int64_t)h * (dn + dv) + d;
        float wv[8];
        fw_load8<WT>(w.data, row * w.ld + c0, wv);
        if (WT == FW_WTYPE_FP8) {
            const float sc = w.scale[((w.r0 + row) >> 7) * w.scale_ld + ((w.c0 + c0) >> 7)];
#pragma unroll
            for (int i = 0; i < 8; i++) wv[i] *= sc;
        }
#pragma unroll
        for (int t = 0; t < MLA_TOK; t++) {
            const float qv = qs[t * dn + d];
#pragma unroll
            for (int i = 0; i < 8; i++) acc[t][i] = fmaf(qv, wv[i], acc[t][i]);
        }
    }
#pragma unroll
    for (int t = 0; t < MLA_TOK; t++)
#pragma unroll
        for (int i = 0; i < 8; i++) part[(sl * MLA_TOK + t) * C + c0 + i] = acc[t][i];
    __syncthreads();
    for (int i = threadIdx.x; i < nt * C; i += QF_THREADS) {
        const int t = i / C, c = i - t * C;
        float v = 0.0f;
        for (int k = 0; k < slices; k++) v += part[(k * MLA_TOK + t) * C + c];
        q_lat[((int64_t)(t0 + t) * H + h) * C + c] = fw_f2bf(v);
    }
}

template <int WT>
__global__ void __launch_bounds__(O_THREADS)
o_absorb_fast_kernel(bf16 *__restrict__ o, const bf16 *__restrict__ o_lat, fw_wview w, int64_t T, int64_t H,
                     int64_t dn, int64_t dv, int64_t C) {
    const int lane = threadIdx.x & 31;
    const int64_t row = (int64_t)blockIdx.x * (O_THREADS / 32) + (threadIdx.x >> 5); /* h * dv + j */
    if (row >= H * dv) return;
    const int64_t h = row / dv, j = row % dv, t0 = (int64_t)blockIdx.y * MLA_TOK, wr = h * (dn + dv) + dn + j;
    const int nt = (int)min((int64_t)MLA_TOK, T - t0);
    const float *srow = WT == FW_WTYPE_FP8 ? w.scale + ((w.r0 + wr) >> 7) * w.scale_ld : nullptr;
    float acc[MLA_TOK];
#pragma unroll
    for (int t = 0; t < MLA_TOK; t++) acc[t] = 0.0f;
    for (int64_t c = 8 * lane; c < C; c += 256) {
        float wv[8];
        fw_load8<WT>(w.data, wr * w.ld + c, wv);
        const float sc = WT == FW_WTYPE_FP8 ? srow[(w.c0 + c) >> 7] : 1.0f;
#pragma unroll
        for (int t = 0; t < MLA_TOK; t++) {
            if (t >= nt) break;
            float xv[8], d = 0.0f;
            fw_load8<FW_WTYPE_BF16>(o_lat, ((t0 + t) * H + h) * C + c, xv);
#pragma unroll
            for (int i = 0; i < 8; i++) d = fmaf(wv[i], xv[i], d);
            acc[t] = fmaf(d, sc, acc[t]);
        }
    }
#pragma unroll
    for (int t = 0; t < MLA_TOK; t++) {
        float v = fw_warp_sum(acc[t]);
        if (lane == 0 && t < nt) o[((t0 + t) * H + h) * dv + j] = fw_f2bf(v);
    }
}

/* ---- the tensor-core forms (BF16 and FP8 kv_b) ----
 *
 * Both read every weight once per launch for up to 8 NTM tokens (a token group;
 * the grid's last dimension walks the groups), as the mma's A operand: weights
 * are the 16 rows of an m16n8k16 tile, 8 tokens its n. FP8 bytes become their
 * exact bf16 values in registers (fw_fp8x4_to_bf16), products accumulate in
 * fp32, and the FP8 block scales multiply fp32 partial sums: the results equal
 * the fp32 forms' up to the order of the additions. A warp issues all of its
 * weight loads (up to 128 rows or 512 bytes of k) before anything waits, so a
 * launch has most of the 8 MiB of DeepSeek-V3's W_UK or W_UV in flight at
 * once; the head's activations are staged in shared memory meanwhile.
 *
 * A dot product does not depend on the order of k, so each side picks the order
 * of k inside an mma that its loads give, the other side takes the same: in
 * q_absorb a lane holds rows d0 + 4t .. + 3 (t = lane % 4) at 4 columns, in
 * o_absorb 16 bytes of k of a row; the activations' (k 2t, 2t+1) and (k 2t+8,
 * 2t+9) pairs are then 4 consecutive values, one 8-byte shared load. */
#define TC_TOK 8    /* tokens of an n8 tile */
#define QT_WARPS 4  /* q_absorb: a warp per 32 latent channels */
#define QT_KS 8     /* q_absorb: k-steps (16 rows of W_UK each) loaded at once */
#define OT_WARPS 4  /* o_absorb: a warp per 16 rows of W_UV */
#define OT_WIN 8    /* o_absorb: 16-byte loads of a row in flight per lane */

/* Shared rows of activations: a pitch (bytes) of `mod` mod 128, so that the 8
 * rows one fragment load touches fall on distinct banks. */
static int64_t tc_pitch(int64_t bytes, int64_t mod) { return fw_round_up(bytes, 128) + mod; }

/* q_absorb: q_lat^T (C x tokens) = W_UK(h)^T (C x dn) . q_nope^T. A warp computes
 * 32 latent channels (two m16 tiles) x the group's tokens; lane (g, t) loads 4
 * bytes (FP8) or 8 (BF16) at channels col = 4 g .. 4 g + 3 of rows d0 + 4t ..
 * d0 + 4t + 3 per k-step: m-tile i's row g is channel col + i, row g + 8 channel
 * col + 2 + i, and the lane's outputs are its 4 channels x tokens (2t, 2t + 1).
 * FP8: every head's dn rows lie in one 128-row scale block (checked by the
 * caller), so one scale per lane multiplies the finished sums. */
template <int WT, int NTM>
__global__ void __launch_bounds__(32 * QT_WARPS, 4)
q_absorb_tc_kernel(bf16 *__restrict__ q_lat, const bf16 *__restrict__ q, fw_wview w, int T, int H, int dn, int dv,
                   int R, int C, int pitch) {
    constexpr bool FP8 = WT == FW_WTYPE_FP8;
    constexpr int ES = FP8 ? 1 : 2;
    typedef typename std::conditional<FP8, uint32_t, uint2>::type raw_t; /* 4 channels of a row */
    extern __shared__ __align__(16) unsigned char qt_sm[];
    bf16 *qs = (bf16 *)qt_sm; /* [TC_TOK NTM][pitch]: the group's q_nope, zero past dn and T */
    const int h = blockIdx.y, t0 = blockIdx.z * TC_TOK * NTM, ntok = min(TC_TOK * NTM, T - t0);
    const int lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const int col = (blockIdx.x * QT_WARPS + (threadIdx.x >> 5)) * 32 + 4 * g;
    const int nks = (dn + 15) / 16, dqk = dn + R;
    const int64_t row0 = (int64_t)h * (dn + dv);
    raw_t raw[QT_KS][4];
    auto load = [&](int ks0) {
#pragma unroll
        for (int s = 0; s < QT_KS; s++)
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const int d = 16 * (ks0 + s) + 4 * tq + r;
                raw[s][r] = raw_t{};
                if (col < C && d < dn) /* rows past dn (and k-steps past the last) stay zero */
                    raw[s][r] = __ldg((const raw_t *)((const char *)w.data + ((row0 + d) * w.ld + col) * ES));
            }
    };
    load(0);
    const int kp = 16 * nks;
    for (int i = threadIdx.x; i < TC_TOK * NTM * kp; i += 32 * QT_WARPS) {
        const int tok = i / kp, d = i - tok * kp;
        qs[tok * pitch + d] = tok < ntok && d < dn ? q[((int64_t)(t0 + tok) * H + h) * dqk + d] : fw_f2bf(0.0f);
    }
    __syncthreads();
    float acc[NTM][2][4];
#pragma unroll
    for (int nt = 0; nt < NTM; nt++)
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) acc[nt][i][j] = 0.0f;
    for (int ks0 = 0; ks0 < nks; ks0 += QT_KS) {
        if (ks0 > 0) load(ks0);
#pragma unroll
        for (int s = 0; s < QT_KS; s++) {
            if (ks0 + s >= nks) break;
            /* a[i] = m-tile i: (channel col + i | col + 2 + i) x (rows 4t, 4t+1 | 4t+2, 4t+3) */
            uint32_t a[2][4];
            if constexpr (FP8) {
                fw_fp8x4_to_bf16(__byte_perm(raw[s][0], raw[s][1], 0x5140), a[0][0], a[1][0]);
                fw_fp8x4_to_bf16(__byte_perm(raw[s][0], raw[s][1], 0x7362), a[0][1], a[1][1]);
                fw_fp8x4_to_bf16(__byte_perm(raw[s][2], raw[s][3], 0x5140), a[0][2], a[1][2]);
                fw_fp8x4_to_bf16(__byte_perm(raw[s][2], raw[s][3], 0x7362), a[0][3], a[1][3]);
            } else {
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    const uint32_t sel = i ? 0x7632 : 0x5410; /* channel col + i of two rows */
                    a[i][0] = __byte_perm(raw[s][0].x, raw[s][1].x, sel);
                    a[i][1] = __byte_perm(raw[s][0].y, raw[s][1].y, sel);
                    a[i][2] = __byte_perm(raw[s][2].x, raw[s][3].x, sel);
                    a[i][3] = __byte_perm(raw[s][2].y, raw[s][3].y, sel);
                }
            }
            const int d0 = 16 * (ks0 + s) + 4 * tq;
#pragma unroll
            for (int nt = 0; nt < NTM; nt++) {
                if (TC_TOK * nt >= ntok) break;
                const uint2 b = *(const uint2 *)&qs[(TC_TOK * nt + g) * pitch + d0];
                fw_mma_bf16(acc[nt][0], a[0], b.x, b.y);
                fw_mma_bf16(acc[nt][1], a[1], b.x, b.y);
            }
        }
    }
    if (col >= C) return;
    const float sc = FP8 ? w.scale[((w.r0 + row0) >> 7) * w.scale_ld + ((w.c0 + col) >> 7)] : 1.0f;
#pragma unroll
    for (int nt = 0; nt < NTM; nt++)
#pragma unroll
        for (int u = 0; u < 2; u++) { /* tokens 2t, 2t + 1: fragment entries u, 2 + u */
            const int tok = TC_TOK * nt + 2 * tq + u;
            if (tok >= ntok) continue;
            uint2 v;
            v.x = fw_pack_bf16(sc * acc[nt][0][u], sc * acc[nt][1][u]);
            v.y = fw_pack_bf16(sc * acc[nt][0][2 + u], sc * acc[nt][1][2 + u]);
            *(uint2 *)&q_lat[((int64_t)(t0 + tok) * H + h) * C + col] = v;
        }
}

/* o_absorb: o^T (dv x tokens) = W_UV(h) (dv x C) . o_lat^T. A warp computes 16
 * rows (an m16 tile) x the group's tokens; lane (g, t) loads rows g and g + 8,
 * 16 bytes at k = kb + VPL t of each window of 4 VPL k (FP8: 64, BF16: 32), whose
 * 4-value pieces are the A fragments of its SW k-steps. FP8: a window lies in one
 * 128-column scale block (c0 % 64 == 0); the products of a block go to part,
 * then acc += (row's scale) * part. */
template <int WT, int NTM>
__global__ void __launch_bounds__(32 * OT_WARPS)
o_absorb_tc_kernel(bf16 *__restrict__ o, const bf16 *__restrict__ o_lat, fw_wview w, int T, int H, int dn, int dv,
                   int C, int pitch) {
    constexpr bool FP8 = WT == FW_WTYPE_FP8;
    constexpr int ES = FP8 ? 1 : 2, VPL = 16 / ES, KW = 4 * VPL, SW = KW / 16;
    extern __shared__ __align__(16) unsigned char ot_sm[];
    bf16 *xs = (bf16 *)ot_sm; /* [TC_TOK NTM][pitch]: the group's o_lat, zero past C and T */
    const int h = blockIdx.x, t0 = blockIdx.z * TC_TOK * NTM, ntok = min(TC_TOK * NTM, T - t0);
    const int lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const int ja = 16 * (blockIdx.y * OT_WARPS + (threadIdx.x >> 5)) + g, jb = ja + 8; /* this lane's rows */
    const int nwin = (C + KW - 1) / KW, cp = KW * nwin;
    const int64_t row0 = (int64_t)h * (dn + dv) + dn;
    uint4 raw[OT_WIN][2]; /* [window][row ja, jb] */
    auto load = [&](int w0) {
#pragma unroll
        for (int i = 0; i < OT_WIN; i++)
#pragma unroll
            for (int r = 0; r < 2; r++) {
                const int j = r ? jb : ja, k = KW * (w0 + i) + VPL * tq;
                raw[i][r] = make_uint4(0, 0, 0, 0);
                if (j < dv && k < C) /* C % VPL == 0: a lane's 16 bytes are all in or all out */
                    raw[i][r] = __ldg((const uint4 *)((const char *)w.data + ((row0 + j) * w.ld + k) * ES));
            }
    };
    load(0);
    for (int i = threadIdx.x; i < TC_TOK * NTM * (cp / 8); i += 32 * OT_WARPS) {
        const int tok = i / (cp / 8), c = 8 * (i - tok * (cp / 8));
        uint4 v = make_uint4(0, 0, 0, 0);
        if (tok < ntok && c < C) v = __ldg((const uint4 *)&o_lat[((int64_t)(t0 + tok) * H + h) * C + c]);
        *(uint4 *)&xs[tok * pitch + c] = v;
    }
    __syncthreads();
    if (16 * (ja / 16) >= dv) return; /* a warp past the last m-tile (after the barrier) */
    float acc[NTM][4], part[NTM][4];
#pragma unroll
    for (int nt = 0; nt < NTM; nt++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[nt][j] = part[nt][j] = 0.0f;
    for (int w0 = 0; w0 < nwin; w0 += OT_WIN) {
        if (w0 > 0) load(w0);
#pragma unroll
        for (int i = 0; i < OT_WIN; i++) {
            if (w0 + i >= nwin) break;
            const int kb = KW * (w0 + i);
            /* a[s]: k-step s = values 4s .. 4s + 3 of the lane's 16 bytes, rows ja | jb */
            uint32_t a[SW][4];
            const uint32_t *ra = (const uint32_t *)&raw[i][0], *rb = (const uint32_t *)&raw[i][1];
#pragma unroll
            for (int s = 0; s < SW; s++) {
                if constexpr (FP8) {
                    fw_fp8x4_to_bf16(ra[s], a[s][0], a[s][2]);
                    fw_fp8x4_to_bf16(rb[s], a[s][1], a[s][3]);
                } else {
                    a[s][0] = ra[2 * s], a[s][2] = ra[2 * s + 1];
                    a[s][1] = rb[2 * s], a[s][3] = rb[2 * s + 1];
                }
            }
#pragma unroll
            for (int nt = 0; nt < NTM; nt++) {
                if (TC_TOK * nt >= ntok) break;
                /* the same k of token g: (b0, b1) of step s = its values 4s .. 4s + 3 */
                const bf16 *xr = &xs[(TC_TOK * nt + g) * pitch + kb + VPL * tq];
                uint32_t b[2 * SW];
                *(uint4 *)&b[0] = *(const uint4 *)xr;
                if (SW == 4) *(uint4 *)&b[4] = *(const uint4 *)(xr + 8);
#pragma unroll
                for (int s = 0; s < SW; s++) fw_mma_bf16(FP8 ? part[nt] : acc[nt], a[s], b[2 * s], b[2 * s + 1]);
            }
            if (FP8 && (w0 + i == nwin - 1 || ((w.c0 + kb + KW) & (FW_FP8_BLOCK - 1)) == 0)) {
                /* the end of a scale block: fold its partial sums in with the rows' scales */
                const int64_t sb = (w.c0 + kb) >> 7;
                const float sa = ja < dv ? w.scale[((w.r0 + row0 + ja) >> 7) * w.scale_ld + sb] : 0.0f;
                const float sbb = jb < dv ? w.scale[((w.r0 + row0 + jb) >> 7) * w.scale_ld + sb] : 0.0f;
#pragma unroll
                for (int nt = 0; nt < NTM; nt++) {
                    acc[nt][0] = fmaf(sa, part[nt][0], acc[nt][0]), acc[nt][1] = fmaf(sa, part[nt][1], acc[nt][1]);
                    acc[nt][2] = fmaf(sbb, part[nt][2], acc[nt][2]), acc[nt][3] = fmaf(sbb, part[nt][3], acc[nt][3]);
#pragma unroll
                    for (int j = 0; j < 4; j++) part[nt][j] = 0.0f;
                }
            }
        }
    }
#pragma unroll
    for (int nt = 0; nt < NTM; nt++)
#pragma unroll
        for (int u = 0; u < 4; u++) { /* entries (row ja | jb) x (token 2t | 2t + 1) */
            const int tok = TC_TOK * nt + 2 * tq + (u & 1), j = u < 2 ? ja : jb;
            if (tok < ntok && j < dv) o[((int64_t)(t0 + tok) * H + h) * dv + j] = fw_f2bf(acc[nt][u]);
        }
}

/* Rows of kv_b loadable 8 values at a time: BF16 16-byte, FP8 8-byte aligned
 * pieces, FP8 pieces inside one scale block. */
static bool vec_ok(const fw_weight *w, const void *x) {
    const int64_t es = (int64_t)fw_wtype_size(w->type);
    return (w->type == FW_WTYPE_BF16 || w->type == FW_WTYPE_FP8) && w->cols % 8 == 0 && w->ld % 8 == 0 &&
           fw_ptr_align(w->data) >= (unsigned)(8 * es) && (w->type != FW_WTYPE_FP8 || w->c0 % 8 == 0) &&
           fw_ptr_align(x) >= 16;
}

static int check_shape(fw_cuda_ctx *ctx, const char *op, const fw_weight *kv_b, int64_t T, int64_t H, int64_t dn,
                       int64_t dv, int64_t C) {
    if (T < 0 || H < 1 || dn < 1 || dv < 1 || C < 1 || kv_b->rows < H * (dn + dv) || kv_b->cols != C ||
        fw_ceil_div(T, MLA_TOK) > 65535 || H > 65535)
        return fw_cuda_errf(ctx, "%s: bad shape (T %lld, H %lld, dn %lld, dv %lld, C %lld; kv_b %lld x %lld)", op,
                            (long long)T, (long long)H, (long long)dn, (long long)dv, (long long)C,
                            (long long)kv_b->rows, (long long)kv_b->cols);
    return FW_CUDA_OK;
}

/* kv_b for q_absorb_tc_kernel: BF16 or FP8 rows loadable 4 channels at a time
 * (4 or 8 bytes), 8-byte aligned outputs; FP8: a lane's 4 channels in one scale
 * block, and each head's dn rows in one 128-row scale block (h mod 128 covers
 * every offset a head can start at). */
static bool q_tc_ok(const fw_weight *w, const void *q_lat, int64_t H, int64_t dn, int64_t dv, int64_t C) {
    const bool fp8 = w->type == FW_WTYPE_FP8;
    if ((!fp8 && w->type != FW_WTYPE_BF16) || C % 4 != 0 || w->ld % 4 != 0 ||
        fw_ptr_align(w->data) < (fp8 ? 4u : 8u) || fw_ptr_align(q_lat) < 8 || H * (dn + dv) > 0x7fffffffLL)
        return false;
    if (fp8) {
        if (w->c0 % 4 != 0) return false;
        for (int64_t h = 0; h < H && h < FW_FP8_BLOCK; h++)
            if ((w->r0 + h * (dn + dv)) % FW_FP8_BLOCK + dn > FW_FP8_BLOCK) return false;
    }
    return true;
}

/* kv_b for o_absorb_tc_kernel: BF16 or FP8 rows in 16-byte pieces (FP8: C % 16,
 * and 64-column windows inside scale blocks), o_lat in 16-byte pieces. */
static bool o_tc_ok(const fw_weight *w, const void *o_lat, int64_t H, int64_t dn, int64_t dv, int64_t C) {
    const bool fp8 = w->type == FW_WTYPE_FP8;
    const int64_t es = (int64_t)fw_wtype_size(w->type);
    return (fp8 || w->type == FW_WTYPE_BF16) && C % (16 / es) == 0 && C % 8 == 0 && (w->ld * es) % 16 == 0 &&
           fw_ptr_align(w->data) >= 16 && fw_ptr_align(o_lat) >= 16 && (!fp8 || w->c0 % 64 == 0) &&
           H * (dn + dv) <= 0x7fffffffLL && fw_ceil_div(dv, 16 * OT_WARPS) <= 65535;
}

/* Tokens per launch group: 32 from 9 tokens on (4 n8 tiles: weights read once
 * per 32 tokens, 4 products per converted fragment), else 8; with the staged
 * activations (rows of pitch bytes) inside the default 48 KiB. 0: does not fit. */
static int tc_ntm(int64_t T, int64_t pitch) {
    int ntm = T > TC_TOK ? 4 : 1;
    if (TC_TOK * ntm * pitch > 48 * 1024) ntm = 1;
    return TC_TOK * ntm * pitch > 48 * 1024 ? 0 : ntm;
}

template <int WT>
static void q_tc_launch(fw_cuda_ctx *ctx, int ntm, int64_t pitch, bf16 *y, const bf16 *x, const fw_wview &v, int64_t T,
                        int64_t H, int64_t dn, int64_t dv, int64_t R, int64_t C) {
    dim3 g((unsigned)fw_ceil_div(C, 32 * QT_WARPS), (unsigned)H, (unsigned)fw_ceil_div(T, TC_TOK * ntm));
    const size_t sh = (size_t)(TC_TOK * ntm * pitch);
    auto k = ntm == 4 ? q_absorb_tc_kernel<WT, 4> : q_absorb_tc_kernel<WT, 1>;
    k<<<g, 32 * QT_WARPS, sh, ctx->stream>>>(y, x, v, (int)T, (int)H, (int)dn, (int)dv, (int)R, (int)C, (int)(pitch / 2));
}

template <int WT>
static void o_tc_launch(fw_cuda_ctx *ctx, int ntm, int64_t pitch, bf16 *y, const bf16 *x, const fw_wview &v, int64_t T,
                        int64_t H, int64_t dn, int64_t dv, int64_t C) {
    dim3 g((unsigned)H, (unsigned)fw_ceil_div(dv, 16 * OT_WARPS), (unsigned)fw_ceil_div(T, TC_TOK * ntm));
    const size_t sh = (size_t)(TC_TOK * ntm * pitch);
    auto k = ntm == 4 ? o_absorb_tc_kernel<WT, 4> : o_absorb_tc_kernel<WT, 1>;
    k<<<g, 32 * OT_WARPS, sh, ctx->stream>>>(y, x, v, (int)T, (int)H, (int)dn, (int)dv, (int)C, (int)(pitch / 2));
}

extern "C" int fw_cuda_mla_q_absorb(fw_cuda_ctx *ctx, fw_bf16 *q_lat, const fw_bf16 *q, const fw_weight *kv_b,
                                    int64_t T, int64_t H, int64_t dn, int64_t dv, int64_t R, int64_t C) {
    if (check_shape(ctx, "fw_cuda_mla_q_absorb", kv_b, T, H, dn, dv, C) || R < 0) return FW_CUDA_ERR;
    if (T == 0) return FW_CUDA_OK;
    fw_wview v = fw_wview_of(kv_b);
    bf16 *y = (bf16 *)q_lat;
    const bf16 *x = (const bf16 *)q;
    if (q_tc_ok(kv_b, q_lat, H, dn, dv, C)) {
        const int64_t pitch = tc_pitch(2 * fw_round_up(dn, 16), 32);
        const int ntm = tc_ntm(T, pitch);
        if (ntm > 0) {
            if (kv_b->type == FW_WTYPE_BF16) q_tc_launch<FW_WTYPE_BF16>(ctx, ntm, pitch, y, x, v, T, H, dn, dv, R, C);
            else q_tc_launch<FW_WTYPE_FP8>(ctx, ntm, pitch, y, x, v, T, H, dn, dv, R, C);
            FW_CUDA_LAUNCHED(ctx);
            return FW_CUDA_OK;
        }
    }
    const size_t shf = (size_t)(MLA_TOK * dn + MLA_TOK * 8 * QF_THREADS) * sizeof(float);
    if (vec_ok(kv_b, q) && C >= 8 && C <= 8 * QF_THREADS && (C & (C - 1)) == 0 && shf <= 48 * 1024 &&
        H * (dn + dv) < 0x7fffffffLL) {
        dim3 g((unsigned)H, (unsigned)fw_ceil_div(T, MLA_TOK));
        if (kv_b->type == FW_WTYPE_BF16)
            q_absorb_fast_kernel<FW_WTYPE_BF16><<<g, QF_THREADS, shf, ctx->stream>>>(y, x, v, (int)T, (int)H, (int)dn, (int)dv, (int)R, (int)C);
        else q_absorb_fast_kernel<FW_WTYPE_FP8><<<g, QF_THREADS, shf, ctx->stream>>>(y, x, v, (int)T, (int)H, (int)dn, (int)dv, (int)R, (int)C);
        FW_CUDA_LAUNCHED(ctx);
        return FW_CUDA_OK;
    }
    dim3 g((unsigned)fw_ceil_div(C, Q_THREADS), (unsigned)H, (unsigned)fw_ceil_div(T, MLA_TOK));
    size_t sh = (size_t)(MLA_TOK * dn) * sizeof(float);
    if (kv_b->type == FW_WTYPE_F32) q_absorb_kernel<FW_WTYPE_F32><<<g, Q_THREADS, sh, ctx->stream>>>(y, x, v, T, H, dn, dv, R, C);
    else if (kv_b->type == FW_WTYPE_BF16) q_absorb_kernel<FW_WTYPE_BF16><<<g, Q_THREADS, sh, ctx->stream>>>(y, x, v, T, H, dn, dv, R, C);
    else q_absorb_kernel<FW_WTYPE_FP8><<<g, Q_THREADS, sh, ctx->stream>>>(y, x, v, T, H, dn, dv, R, C);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

extern "C" int fw_cuda_mla_o_absorb(fw_cuda_ctx *ctx, fw_bf16 *o, const fw_bf16 *o_lat, const fw_weight *kv_b,
                                    int64_t T, int64_t H, int64_t dn, int64_t dv, int64_t C) {
    if (check_shape(ctx, "fw_cuda_mla_o_absorb", kv_b, T, H, dn, dv, C)) return FW_CUDA_ERR;
    if (T == 0) return FW_CUDA_OK;
    dim3 g((unsigned)fw_ceil_div(H * dv, O_THREADS / 32), (unsigned)fw_ceil_div(T, MLA_TOK));
    fw_wview v = fw_wview_of(kv_b);
    bf16 *y = (bf16 *)o;
    const bf16 *x = (const bf16 *)o_lat;
    if (o_tc_ok(kv_b, o_lat, H, dn, dv, C)) {
        const int64_t pitch = tc_pitch(2 * fw_round_up(C, kv_b->type == FW_WTYPE_FP8 ? 64 : 32),
                                       kv_b->type == FW_WTYPE_FP8 ? 16 : 64);
        const int ntm = tc_ntm(T, pitch);
        if (ntm > 0) {
            if (kv_b->type == FW_WTYPE_BF16) o_tc_launch<FW_WTYPE_BF16>(ctx, ntm, pitch, y, x, v, T, H, dn, dv, C);
            else o_tc_launch<FW_WTYPE_FP8>(ctx, ntm, pitch, y, x, v, T, H, dn, dv, C);
            FW_CUDA_LAUNCHED(ctx);
            return FW_CUDA_OK;
        }
    }
    if (vec_ok(kv_b, o_lat)) {
        if (kv_b->type == FW_WTYPE_BF16) o_absorb_fast_kernel<FW_WTYPE_BF16><<<g, O_THREADS, 0, ctx->stream>>>(y, x, v, T, H, dn, dv, C);
        else o_absorb_fast_kernel<FW_WTYPE_FP8><<<g, O_THREADS, 0, ctx->stream>>>(y, x, v, T, H, dn, dv, C);
        FW_CUDA_LAUNCHED(ctx);
        return FW_CUDA_OK;
    }
    if (kv_b->type == FW_WTYPE_F32) o_absorb_kernel<FW_WTYPE_F32><<<g, O_THREADS, 0, ctx->stream>>>(y, x, v, T, H, dn, dv, C);
    else if (kv_b->type == FW_WTYPE_BF16) o_absorb_kernel<FW_WTYPE_BF16><<<g, O_THREADS, 0, ctx->stream>>>(y, x, v, T, H, dn, dv, C);
    else o_absorb_kernel<FW_WTYPE_FP8><<<g, O_THREADS, 0, ctx->stream>>>(y, x, v, T, H, dn, dv, C);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}
