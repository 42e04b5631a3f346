/* The INT4 GEMV of up to 8 rows of x on the tensor cores, shared by the dense
 * matmul (matmul_own.cu) and the MoE experts of few rows (moe.cu). On the CUDA
 * cores an INT4 weight costs about five instructions a value (unpack, widen x,
 * FMA), so the GEMV is bound by issue at half of HBM's speed; as mma A fragments
 * it costs one conversion per two values and the products are free.
 *
 * A warp computes 16 weight rows (a: row g, b: row g + 8 of the mma's A) times up
 * to 8 rows of x (the B columns, x row g held by lane (g, t)). Per 32 of K (a
 * piece: 4 words a weight row), lane (g, t) loads word t of rows a and b and the
 * 8 values of x at k = 8t .. 8t + 7; mma step u takes k = 8t + 4u .. 8t + 4u + 3
 * for its fragment slots {2t, 2t+1, 2t+8, 2t+9} (a dot product does not depend on
 * the order of k). Each piece lies in one scale group (G a multiple of 32), so a
 * group's products are summed in part and promoted with the row's scale, exactly
 * as the CPU reference's q * scale in fp32 (bf16 products are exact). CUDA C++. */
#ifndef FW_KERNELS_CUDA_INT4_TC_H
#define FW_KERNELS_CUDA_INT4_TC_H

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/tc.h"

#define INT4_TC_U 8 /* pieces a lane loads ahead: the next U while the current U multiply */

/* acc (the mma's C fragment: rows a, b x x rows 2t, 2t + 1) += pieces [p0, p1) of
 * rows a and b (wa, wb: the rows' words at the view's column 0, plus t) times x
 * (xr: x row g at column 0, plus 8t; zeros where !has_x); sa, sb: the rows' group
 * scales from the parent's column 0, pg pieces a group, the view starting pofs
 * pieces into the row. The weights are double-buffered in registers: a lane
 * keeps U pieces' loads (2 x 4 bytes each) in flight while it multiplies the
 * previous U, so HBM sees a steady queue rather than bursts (x, read by every
 * warp, comes from L1). */
__device__ __forceinline__ void int4_tc_dot(float (&acc)[4], const uint32_t *__restrict__ wa,
                                            const uint32_t *__restrict__ wb, const bf16 *__restrict__ sa,
                                            const bf16 *__restrict__ sb, const bf16 *__restrict__ xr, bool has_x,
                                            int p0, int p1, int pg, int pofs) {
    constexpr int U = INT4_TC_U;
    int gi = (p0 + pofs) / pg, left = pg - (p0 + pofs) % pg; /* the group of p0 and its pieces from p0 on */
    float sca = fw_bf2f(__ldg(sa + gi)), scb = fw_bf2f(__ldg(sb + gi));
    float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    uint32_t qa[U], qb[U];
#pragma unroll
    for (int u = 0; u < U; u++)
        if (p0 + u < p1) qa[u] = __ldg(wa + 4 * (int64_t)(p0 + u)), qb[u] = __ldg(wb + 4 * (int64_t)(p0 + u));
    for (int p = p0; p < p1; p += U) {
        uint32_t na[U], nb[U]; /* the next U pieces (used next round only where loaded) */
#pragma unroll
        for (int u = 0; u < U; u++)
            if (p + U + u < p1)
                na[u] = __ldg(wa + 4 * (int64_t)(p + U + u)), nb[u] = __ldg(wb + 4 * (int64_t)(p + U + u));
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (p + u >= p1) break;
            const uint4 xv = has_x ? __ldg((const uint4 *)(xr + 32 * (int64_t)(p + u))) : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
            for (int s = 0; s < 2; s++) {
                const uint32_t a4 = qa[u] >> (16 * s), b4 = qb[u] >> (16 * s);
                const uint32_t a[4] = {int4x2_to_bf16x2(a4), int4x2_to_bf16x2(b4), int4x2_to_bf16x2(a4 >> 8),
                                       int4x2_to_bf16x2(b4 >> 8)};
                fw_mma_bf16(part, a, s ? xv.z : xv.x, s ? xv.w : xv.y);
            }
            if (--left == 0 || p + u + 1 == p1) { /* the group (or the range) ends: promote */
                acc[0] = fmaf(sca, part[0], acc[0]), acc[1] = fmaf(sca, part[1], acc[1]);
                acc[2] = fmaf(scb, part[2], acc[2]), acc[3] = fmaf(scb, part[3], acc[3]);
                part[0] = part[1] = part[2] = part[3] = 0.0f;
                if (left == 0 && p + u + 1 < p1) {
                    gi++, left = pg;
                    sca = fw_bf2f(__ldg(sa + gi)), scb = fw_bf2f(__ldg(sb + gi));
                }
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) qa[u] = na[u], qb[u] = nb[u];
    }
}

#endif
