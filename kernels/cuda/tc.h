/* Tensor-core and asynchronous-copy primitives of sm_80+ as inline PTX (CUDA C++
 * only): cp.async 16-byte copies with zero fill, ldmatrix, and the bf16
 * m16n8k16 mma with fp32 accumulators. Fragment layouts (PTX ISA, "mma.m16n8k16"):
 * lane = 4 * g + t; A (16 x 16, row-major) a0 = (g, 2t..2t+1), a1 = (g + 8, 2t..),
 * a2 = (g, 2t + 8..), a3 = (g + 8, 2t + 8..); B (16 x 8, k x n) b0 = (2t..2t+1, g),
 * b1 = (2t + 8.., g); C (16 x 8) c0, c1 = (g, 2t..2t+1), c2, c3 = (g + 8, 2t..). */
#ifndef FW_KERNELS_CUDA_TC_H
#define FW_KERNELS_CUDA_TC_H

#include <cuda_bf16.h>
#include <stdint.h>

__device__ __forceinline__ uint32_t fw_smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* 16 bytes global -> shared, bypassing L1; src_bytes < 16 fills the rest with
 * zeros (0: all zeros, src is not read). */
__device__ __forceinline__ void fw_cp_async16(void *dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(fw_smem_addr(dst)), "l"(src), "r"(src_bytes));
}
/* The same at a shared-window address (fw_smem_addr), with the L2 128-byte prefetch hint. */
__device__ __forceinline__ void fw_cp_async16_at(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
/* 4 bytes global -> shared (shared-window address), through L1; src_bytes 0: zero. */
__device__ __forceinline__ void fw_cp_async4_at(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void fw_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
/* Waits until at most N committed groups are still in flight. */
template <int N>
__device__ __forceinline__ void fw_cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* Four 8x8 b16 matrices; lane i gives the address of row i % 8 of matrix i / 8. */
__device__ __forceinline__ void fw_ldmatrix_x4(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(fw_smem_addr(p)));
}
/* The same from a shared-window address (fw_smem_addr), for address arithmetic kept in 32 bits. */
__device__ __forceinline__ void fw_ldmatrix_x4(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
/* Two 8x8 b16 matrices; lanes 0..15 give the row addresses. */
__device__ __forceinline__ void fw_ldmatrix_x2(uint32_t r[2], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(fw_smem_addr(p)));
}
/* Four 8x8 b16 matrices, each transposed. */
__device__ __forceinline__ void fw_ldmatrix_x4_trans(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(fw_smem_addr(p)));
}

/* 2^x by the SFU alone (denormal results flush to zero: a softmax weight below
 * 2^-126 of its row's largest, nothing a bf16 output could show). */
__device__ __forceinline__ float fw_exp2_ftz(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

/* c += a . b: 16 x 16 bf16 times 16 x 8 bf16, fp32 accumulators. */
__device__ __forceinline__ void fw_mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* INT4 nibbles 0 and 1 of w as the exact bf16x2 of q = nibble - 8 (low half:
 * nibble 0): 128 + nibble is bf16 0x4300 | nibble, less 136. */
__device__ __forceinline__ uint32_t int4x2_to_bf16x2(uint32_t w) {
    const uint32_t v = (w & 0xFu) | ((w << 12) & 0xF0000u) | 0x43004300u;
    const __nv_bfloat162 r = __hsub2(*(const __nv_bfloat162 *)&v, __floats2bfloat162_rn(136.0f, 136.0f));
    return *(const uint32_t *)&r;
}

/* Four e4m3 bytes (low byte first) -> their exact bf16 values as two bf16x2 (bytes
 * 0, 1 and 2, 3; low half first). Each byte moves to the top of a 16-bit half
 * (sign in place), its exponent and mantissa shift down by 4 into bf16's fields:
 * that is the value times 2^-120 for normals and subnormals alike (exponent bias
 * 7 vs 127), and one bf16 multiply by 2^120 (exact, subnormal inputs included)
 * restores it. 0x7F / 0xFF (NaN) become +-480; checkpoints hold none. */
__device__ __forceinline__ void fw_fp8x4_to_bf16(uint32_t q, uint32_t &lo, uint32_t &hi) {
    uint32_t a = __byte_perm(q, 0u, 0x1404), b = __byte_perm(q, 0u, 0x3424); /* [0 b0 0 b1], [0 b2 0 b3] */
    a = (a & 0x80008000u) | ((a >> 4) & 0x07F007F0u);
    b = (b & 0x80008000u) | ((b >> 4) & 0x07F007F0u);
    const __nv_bfloat162 two120 = __halves2bfloat162(__ushort_as_bfloat16(0x7B80), __ushort_as_bfloat16(0x7B80));
    __nv_bfloat162 va = __hmul2(*(const __nv_bfloat162 *)&a, two120), vb = __hmul2(*(const __nv_bfloat162 *)&b, two120);
    lo = *(const uint32_t *)&va;
    hi = *(const uint32_t *)&vb;
}

/* Two floats as a bf16 pair, lo in the low half (the lower column). */
__device__ __forceinline__ uint32_t fw_pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

#endif
