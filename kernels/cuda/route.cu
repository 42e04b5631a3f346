/* The MoE router (DeepSeek-V3 noaux_tc), all fp32, one warp per token, following
 * the CPU reference step by step so the choices are the same: s = sigmoid(logit);
 * biased s' = s + bias selects; group score = the sum of the group's two best s';
 * the topk_group best groups stay; top_k experts by s' among them; weights = s at
 * the chosen experts (normalised if asked) times routed_scaling_factor. Every
 * argmax takes the largest value and, among equal ones, the lowest index, exactly
 * as the reference's sequential scan (the order of the ids matches too). */
#include "kernels/cuda/cuda_common.h"

#define ROUTE_WARPS 4

/* argmax over v[0..n) with !taken[i], ties to the lowest index; -1 if none. Every
 * lane gets the same answer: (value, -index) is a total order, so the butterfly
 * reduction is exact whatever the pairing. */
__device__ int warp_argmax_free(const float *v, const unsigned char *taken, int n) {
    const int lane = threadIdx.x & 31;
    float bv = 0.0f;
    int bi = -1;
    for (int i = lane; i < n; i += 32) /* ascending, strict >: lowest index per lane */
        if (!taken[i] && (bi < 0 || v[i] > bv)) {
            bv = v[i];
            bi = i;
        }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) {
            bv = ov;
            bi = oi;
        }
    }
    return bi;
}

/* Shared memory per warp: s, sb (E floats), gscore (G floats), taken (E), keep and
 * gtaken (G bytes). */
static size_t route_smem_per_warp(int E, int G) {
    size_t b = (size_t)(2 * E + G) * sizeof(float) + (size_t)E + 2 * (size_t)G;
    return (b + 15) & ~(size_t)15;
}

__global__ void route_kernel(int32_t *__restrict__ ids, float *__restrict__ w, const float *__restrict__ logits,
                             const float *__restrict__ bias, int64_t T, int E, int K, int G, int TG, bool norm,
                             float factor, size_t smem_per_warp) {
    extern __shared__ __align__(16) unsigned char smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t t = (int64_t)blockIdx.x * ROUTE_WARPS + warp;
    if (t >= T) return; /* warp-uniform */
    unsigned char *base = smem + warp * smem_per_warp;
    float *s = (float *)base, *sb = s + E, *gscore = sb + E;
    unsigned char *taken = (unsigned char *)(gscore + G), *keep = taken + E, *gtaken = keep + G;
    const int gs = E / G;

    for (int e = lane; e < E; e += 32) {
        float v = 1.0f / (1.0f + expf(-logits[t * E + e]));
        s[e] = v;
        sb[e] = v + (bias ? bias[e] : 0.0f);
        taken[e] = 0;
    }
    for (int g = lane; g < G; g += 32) keep[g] = gtaken[g] = 0;
    __syncwarp();
    /* Group score: the sum of the group's two best biased scores. */
    for (int g = 0; g < G; g++) {
        float sum = 0.0f;
        for (int r = 0; r < 2 && r < gs; r++) {
            int b = warp_argmax_free(sb + g * gs, taken + g * gs, gs);
            __syncwarp();
            if (lane == 0) taken[g * gs + b] = 1;
            __syncwarp();
            sum += sb[g * gs + b];
        }
        if (lane == 0) gscore[g] = sum;
    }
    __syncwarp();
    for (int r = 0; r < TG && r < G; r++) {
        int g = warp_argmax_free(gscore, gtaken, G);
        __syncwarp();
        if (lane == 0) gtaken[g] = keep[g] = 1;
        __syncwarp();
    }
    /* Experts of dropped groups are out of the top-k. */
    for (int e = lane; e < E; e += 32) taken[e] = !keep[e / gs];
    __syncwarp();
    float wsum = 0.0f;
    for (int k = 0; k < K; k++) {
        int e = warp_argmax_free(sb, taken, E);
        __syncwarp();
        if (e < 0) { /* fewer candidates than top_k: pad harmlessly, as the reference */
            if (lane == 0) {
                ids[t * K + k] = 0;
                w[t * K + k] = 0.0f;
            }
            continue;
        }
        if (lane == 0) {
            taken[e] = 1;
            ids[t * K + k] = e;
            w[t * K + k] = s[e];
        }
        __syncwarp();
        wsum += s[e]; /* the same order as the reference's sum */
    }
    __syncwarp();
    if (lane == 0) {
        for (int k = 0; k < K; k++) {
            float wk = w[t * K + k];
            if (norm) wk /= wsum + 1e-20f;
            w[t * K + k] = wk * factor;
        }
    }
}

extern "C" int fw_cuda_route(fw_cuda_ctx *ctx, int32_t *ids, float *w, const float *logits, const float *bias, int64_t T,
                             const fw_route_params *p) {
    int E = p->n_experts, K = p->top_k;
    int G = p->n_group > 1 ? p->n_group : 1;
    int TG = p->n_group > 1 ? p->topk_group : 1;
    if (T < 0 || E < 1 || K < 0 || E % G != 0 || TG < 1)
        return fw_cuda_errf(ctx, "fw_cuda_route: bad parameters (T %lld, experts %d, top_k %d, groups %d, topk_group %d)",
                            (long long)T, E, K, G, TG);
    if (T == 0 || K == 0) return FW_CUDA_OK;
    size_t per = route_smem_per_warp(E, G);
    if (per * ROUTE_WARPS > 48 * 1024)
        return fw_cuda_errf(ctx, "fw_cuda_route: %d experts need more shared memory than this kernel takes", E);
    int64_t blocks = fw_ceil_div(T, ROUTE_WARPS);
    if (blocks > 0x7fffffffLL) return fw_cuda_errf(ctx, "fw_cuda_route: T %lld is too large", (long long)T);
    route_kernel<<<(unsigned)blocks, 32 * ROUTE_WARPS, per * ROUTE_WARPS, ctx->stream>>>(
        ids, w, logits, bias, T, E, K, G, TG, p->norm_topk_prob, p->routed_scaling_factor, per);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}
