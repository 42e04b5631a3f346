/* Synchronization inside a CTA finer than __syncthreads, as inline PTX (sm_90):
 * mbarriers (8 bytes of shared memory, at a shared-window address) that count
 * arrivals per phase, cp.async copies arriving on one when they land, tensor
 * memory accelerator copies counted on one in bytes, and named barriers by which
 * warpgroups take turns. */
#ifndef FW_KERNELS_CUDA_BARRIER_H
#define FW_KERNELS_CUDA_BARRIER_H

#include <stdint.h>

/* A phase completes after `count` arrivals; then the next begins. Before any
 * thread uses it (a __syncthreads between). */
__device__ __forceinline__ void fw_mbar_init(uint32_t bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void fw_mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
/* One arrival, made when all this thread's earlier cp.async copies have landed
 * (counted in the init count: .noinc). */
__device__ __forceinline__ void fw_mbar_arrive_cp_async(uint32_t bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
/* If `on`: one arrival that also announces `bytes` more to come from the tensor
 * memory accelerator (fw_tma_load_3d) before the phase can complete. The
 * condition is a predicate, not a branch: code before a warpgroup MMA stays in
 * uniform control flow, which the MMA needs to run without serializing. */
__device__ __forceinline__ void fw_mbar_expect_tx(bool on, uint32_t bar, uint32_t bytes) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %0, 0;\n@p mbarrier.arrive.expect_tx.shared::cta.b64 _, [%1], %2;\n}\n"
                 ::"r"((int)on), "r"(bar), "r"(bytes) : "memory");
}
/* If `on`: the box at coordinates (x, y, z) of tensor map `tmap` (a
 * __grid_constant__ kernel parameter) into shared memory at dst, counted on
 * mbarrier bar. */
__device__ __forceinline__ void fw_tma_load_3d(bool on, uint32_t dst, const void *tmap, uint32_t bar, int x, int y, int z) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %0, 0;\n"
                 "@p cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%1], [%2, {%4, %5, %6}], [%3];\n}\n"
                 ::"r"((int)on), "r"(dst), "l"((uint64_t)tmap), "r"(bar), "r"(x), "r"(y), "r"(z)
                 : "memory");
}
/* Until the phase of parity `parity` (phase number & 1) has completed. */
__device__ __forceinline__ void fw_mbar_wait(uint32_t bar, uint32_t parity) {
    uint32_t done = 0;
    while (!done)
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
}

/* Named barrier `id` (1..15; 0 is __syncthreads) of `threads` threads in all:
 * sync waits for them, arrive counts this warp without waiting. */
__device__ __forceinline__ void fw_bar_sync(int id, int threads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void fw_bar_arrive(int id, int threads) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

#endif
