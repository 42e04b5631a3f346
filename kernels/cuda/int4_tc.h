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

#define INT4_TC_U 4 /* pieces in flight per lane */

/* acc (the mma's C fragment: rows a, b x x rows 2t, 2t + 1) += pieces [p0, p1) of
 * rows a and b (wa, wb: the rows' words at the view's column 0, plus t) times x
 * (xr: x row g at column 0, plus 8t; zeros where !has_x); sa, sb: the rows' group
 * scales from the parent's column 0, pg pieces a group, the view starting pofs
 * pieces into the row. */
__device__ __forceinline__ void int4_tc_dot(float (&acc)[4], const uint32_t *__restrict__ wa,
                                            const uint32_t *__restrict__ wb, const bf16 *__restrict__ sa,
                                            const bf16 *__restrict__ sb, const bf16 *__restrict__ xr, bool has_x,
                                            int p0, int p1, int pg, int pofs) {
    int gi = (p0 + pofs) / pg, left = pg - (p0 + pofs) % pg; /* the group of p0 and its pieces from p0 on */
    float sca = fw_bf2f(__ldg(sa + gi)), scb = fw_bf2f(__ldg(sb + gi));
    float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int p = p0; p < p1; p += INT4_TC_U) {
        uint32_t qa[INT4_TC_U], qb[INT4_TC_U];
        uint4 xv[INT4_TC_U];
#pragma unroll
        for (int u = 0; u < INT4_TC_U; u++) {
            if (p + u >= p1) break;
            qa[u] = __ldg(wa + 4 * (int64_t)(p + u));
            qb[u] = __ldg(wb + 4 * (int64_t)(p + u));
            xv[u] = has_x ? __ldg((const uint4 *)(xr + 32 * (int64_t)(p + u))) : make_uint4(0u, 0u, 0u, 0u);
        }
#pragma unroll
        for (int u = 0; u < INT4_TC_U; u++) {
            if (p + u >= p1) break;
#pragma unroll
            for (int s = 0; s < 2; s++) {
                const uint32_t na = qa[u] >> (16 * s), nb = qb[u] >> (16 * s);
                const uint32_t a[4] = {int4x2_to_bf16x2(na), int4x2_to_bf16x2(nb), int4x2_to_bf16x2(na >> 8),
                                       int4x2_to_bf16x2(nb >> 8)};
                fw_mma_bf16(part, a, s ? xv[u].z : xv[u].x, s ? xv[u].w : xv[u].y);
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
    }
}

#endif
