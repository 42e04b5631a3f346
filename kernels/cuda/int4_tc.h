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

/* acc += a group's products (rows a: part[0..1], b: part[2..3]) times the rows'
 * scales; part restarts at 0. */
__device__ __forceinline__ void int4_tc_promote(float (&acc)[4], float (&part)[4], float sca, float scb) {
    acc[0] = fmaf(sca, part[0], acc[0]), acc[1] = fmaf(sca, part[1], acc[1]);
    acc[2] = fmaf(scb, part[2], acc[2]), acc[3] = fmaf(scb, part[3], acc[3]);
    part[0] = part[1] = part[2] = part[3] = 0.0f;
}

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
                int4_tc_promote(acc, part, sca, scb);
                if (left == 0 && p + u + 1 < p1) {
                    gi++, left = pg;
                    sca = fw_bf2f(__ldg(sa + gi)), scb = fw_bf2f(__ldg(sb + gi));
                }
            }
        }
    }
}

/* Nibbles j and j + 4 of w (columns j and j + 4 of its 8) as bf16x2 of q - 8:
 * one mask-and-or (128 + q is exact in bf16) and one subtraction. */
__device__ __forceinline__ uint32_t int4_pair_to_bf16x2(uint32_t w, int j) {
    const uint32_t v = ((w >> (4 * j)) & 0x000F000Fu) | 0x43004300u;
    const __nv_bfloat162 r = __hsub2(*(const __nv_bfloat162 *)&v, __floats2bfloat162_rn(136.0f, 136.0f));
    return *(const uint32_t *)&r;
}

/* x's columns j and j + 4 of 8 (xv: columns 0..7 as bf16) as bf16x2, the B
 * operand that matches int4_pair_to_bf16x2. */
__device__ __forceinline__ uint32_t bf16_pair_of8(const uint4 &xv, int j) {
    const uint32_t lo = j < 2 ? xv.x : xv.y, hi = j < 2 ? xv.z : xv.w;
    return __byte_perm(lo, hi, (j & 1) ? 0x7632 : 0x5410);
}

/* The same product over 128-column chunks where a chunk lies in one scale group
 * (G a multiple of 128): lane (g, t) takes words 4t .. 4t + 3 of a chunk (one
 * 16-byte load a row; the warp's loads are whole 32-byte sectors) and x's
 * columns 32t .. 32t + 31. Word 4t + u feeds mma steps (u, s): fragment slots
 * {2t, 2t+1} take its columns (2s, 2s + 4) and slots {2t+8, 2t+9} columns
 * (2s + 1, 2s + 5), in A and B alike (the order of k in a product depends on t
 * alone), so that a pair of nibbles widens with one mask-and-or. wa, wb: the
 * rows' words at the view's column 0, plus 4t; sa, sb: their scales from the
 * parent's column 0; xr: x row g at column 0, plus 32t. Chunks [c0, c1), cg
 * chunks a group, the view cofs chunks into the row; CU chunks in flight. */
template <int CU>
__device__ __forceinline__ void int4_tc_dot128(float (&acc)[4], const uint32_t *__restrict__ wa,
                                               const uint32_t *__restrict__ wb, const bf16 *__restrict__ sa,
                                               const bf16 *__restrict__ sb, const bf16 *__restrict__ xr, bool has_x,
                                               int c0, int c1, int cg, int cofs) {
    int gi = (c0 + cofs) / cg, left = cg - (c0 + cofs) % cg;
    float sca = fw_bf2f(__ldg(sa + gi)), scb = fw_bf2f(__ldg(sb + gi));
    float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int c = c0; c < c1; c += CU) {
        uint4 qa[CU], qb[CU], xv[CU][4];
#pragma unroll
        for (int v = 0; v < CU; v++) {
            if (c + v >= c1) break;
            qa[v] = __ldcs((const uint4 *)(wa + 16 * (int64_t)(c + v)));
            qb[v] = __ldcs((const uint4 *)(wb + 16 * (int64_t)(c + v)));
#pragma unroll
            for (int u = 0; u < 4; u++)
                xv[v][u] = has_x ? __ldg((const uint4 *)(xr + 128 * (int64_t)(c + v) + 8 * u)) : make_uint4(0u, 0u, 0u, 0u);
        }
#pragma unroll
        for (int v = 0; v < CU; v++) {
            if (c + v >= c1) break;
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const uint32_t wau = (&qa[v].x)[u], wbu = (&qb[v].x)[u];
#pragma unroll
                for (int s = 0; s < 2; s++) {
                    const uint32_t a[4] = {int4_pair_to_bf16x2(wau, 2 * s), int4_pair_to_bf16x2(wbu, 2 * s),
                                           int4_pair_to_bf16x2(wau, 2 * s + 1), int4_pair_to_bf16x2(wbu, 2 * s + 1)};
                    fw_mma_bf16(part, a, bf16_pair_of8(xv[v][u], 2 * s), bf16_pair_of8(xv[v][u], 2 * s + 1));
                }
            }
            if (--left == 0 || c + v + 1 == c1) { /* the group (or the range) ends: promote */
                int4_tc_promote(acc, part, sca, scb);
                if (left == 0 && c + v + 1 < c1) {
                    gi++, left = cg;
                    sca = fw_bf2f(__ldg(sa + gi)), scb = fw_bf2f(__ldg(sb + gi));
                }
            }
        }
    }
}

#endif
