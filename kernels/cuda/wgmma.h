/* Hopper's warpgroup MMA (wgmma, sm_90a only) as inline PTX: shared-memory
 * matrix descriptors for the 128-byte swizzle, and the bf16 m64n64k16 product
 * with A in registers (PTX ISA, "Asynchronous Warpgroup Level Matrix Multiply").
 * A warpgroup is 4 consecutive warps; warp w holds rows 16 w .. 16 w + 15 of A
 * and of D in the m16n8k16 fragment layouts of tc.h: A a0..a3 as mma's, D's n8
 * tile i in d[4 i .. 4 i + 3] as mma's c0..c3. B (K x N) is read from shared
 * memory "K-major" (each of its N columns K-contiguous), as rows of 128 bytes
 * whose 16-byte chunk c of row r sits at chunk c ^ (r % 8) (the 128-byte
 * swizzle, on 1024-byte aligned groups of 8 rows).
 *
 * The products run asynchronously: registers given to them (A and D) must stay
 * untouched until fw_wgmma_wait says they are done, which the compiler does not
 * know; fw_wgmma_pin tells it that they are live and changed there. Only under
 * __CUDA_ARCH_FEAT_SM90_ALL (code for sm_90a): elsewhere the instructions do not
 * exist, and the kernels using them trap (the host launches them only on 9.0). */
#ifndef FW_KERNELS_CUDA_WGMMA_H
#define FW_KERNELS_CUDA_WGMMA_H

#include <stdint.h>

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FW_HAVE_WGMMA 1
#else
#define FW_HAVE_WGMMA 0
#endif

/* Descriptor of a K-major operand at shared-window address `addr` (1024-byte
 * aligned group start, or that plus 32-byte steps along K inside the 128-byte
 * rows): 128-byte swizzle (mode 1, bits 62-63), 1024 bytes between groups of 8
 * rows (stride, bits 32-45, in 16-byte units); the leading offset is unused. */
__device__ __forceinline__ uint64_t fw_wgmma_desc(uint32_t addr) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

/* The same for an MN-major operand wider than 64: its 64-wide column blocks
 * (each 128-byte swizzled rows, 1024 bytes a group of 8 K rows) `lbo` bytes apart. */
__device__ __forceinline__ uint64_t fw_wgmma_desc_mn(uint32_t addr, uint32_t lbo) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)((lbo >> 4) & 0x3FFF) << 16) | ((uint64_t)(1024 >> 4) << 32) |
           ((uint64_t)1 << 62);
}

__device__ __forceinline__ void fw_wgmma_fence() {
#if FW_HAVE_WGMMA
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
/* Makes this thread's shared-memory writes (cp.async included) visible to the
 * tensor cores' operand reads (the async proxy); before the barrier that
 * publishes them. */
__device__ __forceinline__ void fw_wgmma_fence_smem() {
#if FW_HAVE_WGMMA
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void fw_wgmma_commit() {
#if FW_HAVE_WGMMA
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
/* Waits until at most N committed groups are in flight. */
template <int N>
__device__ __forceinline__ void fw_wgmma_wait() {
#if FW_HAVE_WGMMA
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
__device__ __forceinline__ void fw_wgmma_pin(float &r) { asm volatile("" : "+f"(r)::"memory"); }
__device__ __forceinline__ void fw_wgmma_pin(uint32_t &r) { asm volatile("" : "+r"(r)::"memory"); }
/* The same for every element of an array of accumulators or fragments. */
template <typename X, int N>
__device__ __forceinline__ void fw_wgmma_pin(X (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) fw_wgmma_pin(r[i]);
}

/* The 64 x 64 fp32 accumulator d[32]: its asm operands %0..%31 and their constraints. */
#define FW_WGMMA_D32_REGS                                                                                             \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                                        \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define FW_WGMMA_D32(d)                                                                                               \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),         \
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),         \
        "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),        \
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])

/* d (64 x 64, fp32) = a (64 x 16 bf16, registers) . B (16 x 64 bf16 at descriptor b)
 * + (acc ? d : 0). TRANS_B 1: B is "MN-major" instead, each of its 16 K rows 64
 * contiguous N values (one 128-byte swizzled row; rows 8 .. 15 at the next 1024
 * bytes), as a row-major V tile is for O += P V. */
template <int TRANS_B = 0>
__device__ __forceinline__ void fw_wgmma_m64n64k16_rs(float (&d)[32], const uint32_t (&a)[4], uint64_t b, bool acc) {
#if FW_HAVE_WGMMA
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
                 FW_WGMMA_D32_REGS ", "
                 "{%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
                 : FW_WGMMA_D32(d)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"((int)acc), "n"(TRANS_B));
#else
    (void)d, (void)a, (void)b, (void)acc;
#endif
}

/* d (64 x 64, fp32) = A (64 x 16 bf16 at descriptor a) . B (16 x 64 bf16 at
 * descriptor b) + (acc ? d : 0); both K-major, both read from shared memory. */
__device__ __forceinline__ void fw_wgmma_m64n64k16_ss(float (&d)[32], uint64_t a, uint64_t b, bool acc) {
#if FW_HAVE_WGMMA
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
                 FW_WGMMA_D32_REGS ", "
                 "%32, %33, p, 1, 1, 0, 0;\n}\n"
                 : FW_WGMMA_D32(d)
                 : "l"(a), "l"(b), "r"((int)acc));
#else
    (void)d, (void)a, (void)b, (void)acc;
#endif
}

/* d (64 x 128, fp32, as two 64 x 64 halves d0 | d1) = a (64 x 16 bf16, registers)
 * . B (16 x 128 bf16 at descriptor b) + (acc ? d : 0); B MN-major (TRANS_B 1),
 * its two 64-wide halves `lbo` bytes apart (fw_wgmma_desc_mn). */
#define FW_WGMMA_D64_REGS "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
template <int TRANS_B>
__device__ __forceinline__ void fw_wgmma_m64n128k16_rs(float (&d0)[32], float (&d1)[32], const uint32_t (&a)[4], uint64_t b,
                                                       bool acc) {
#if FW_HAVE_WGMMA
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
                 FW_WGMMA_D64_REGS ", "
                 "{%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
                 : FW_WGMMA_D32(d0), FW_WGMMA_D32(d1)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"((int)acc), "n"(TRANS_B));
#else
    (void)d0, (void)d1, (void)a, (void)b, (void)acc;
#endif
}

/* d (64 x 64, fp32) = A (64 x 32 e4m3 at descriptor a) . B (32 x 64 e4m3 at
 * descriptor b) + (acc ? d : 0); both K-major (32 bytes of K a row). */
__device__ __forceinline__ void fw_wgmma_m64n64k32_e4m3_ss(float (&d)[32], uint64_t a, uint64_t b, bool acc) {
#if FW_HAVE_WGMMA
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k32.f32.e4m3.e4m3 "
                 FW_WGMMA_D32_REGS ", "
                 "%32, %33, p, 1, 1;\n}\n"
                 : FW_WGMMA_D32(d)
                 : "l"(a), "l"(b), "r"((int)acc));
#else
    (void)d, (void)a, (void)b, (void)acc;
#endif
}

/* setmaxnreg: this warpgroup's registers a thread from here on (a multiple of 8 in
 * 24..256), given back to or taken from the SM's pool; every thread of the
 * warpgroup executes it, in a kernel whose launch bounds cap its registers. */
template <int N>
__device__ __forceinline__ void fw_wgmma_regs_dec() {
#if FW_HAVE_WGMMA
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}
template <int N>
__device__ __forceinline__ void fw_wgmma_regs_inc() {
#if FW_HAVE_WGMMA
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}

#endif
