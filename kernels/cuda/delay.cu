/* A stand-in for a collective that is not there (furrow bench --tp-sim): one
 * warp that spins on the GPU's global nanosecond timer, so the stream, and a CUDA
 * graph that captures it, waits as long as the collective would take. */
#include "kernels/cuda/delay.h"
#include "kernels/cuda/cuda_common.h"

static __device__ __forceinline__ uint64_t global_ns() {
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

__global__ void delay_kernel(uint64_t ns) {
    const uint64_t t0 = global_ns();
    while (global_ns() - t0 < ns) __nanosleep(256);
}

extern "C" int fw_cuda_delay(fw_cuda_ctx *ctx, double us) {
    if (us <= 0) return FW_CUDA_OK;
    delay_kernel<<<1, 32, 0, ctx->stream>>>((uint64_t)(us * 1e3));
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}
