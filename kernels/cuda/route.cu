/* The MoE router (DeepSeek-V3 noaux_tc), all fp32, one warp per token, following
 * the CPU reference step by step so the choices are the same: s = sigmoid(logit);
 * biased s' = s + bias selects; group score = the sum of the group's two best s';
 * the topk_group best groups stay; top_k experts by s' among them; weights = s at
 * the chosen experts (normalised if asked) times routed_scaling_factor. Every
 * argmax takes the largest value and, among equal ones, the lowest index, exactly
 * as the reference's sequential scan (the order of the ids matches too).
 *
 * Up to 256 experts in groups that split the warp evenly (DeepSeek-V3: 8 x 32)
 * take route_fast_kernel: the scores stay in registers and every argmax is two
 * warp reductions. Other shapes take route_kernel (shared memory, any E, G). */
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

/* ---- the fast form: E = 32 nv (nv <= 8) experts in registers ----
 *
 * Lane l holds experts l nv .. l nv + nv - 1, so a group of E / G experts is the
 * 32 / G consecutive lanes (G dividing 32): its two best values meet in an xor
 * butterfly inside those lanes. Every argmax is two warp reductions on a key
 * that orders as the float (ties: the lowest index, as the sequential scan):
 * the largest key, then the lowest index holding it. Key 0 is "taken or
 * dropped"; a NaN score gets 1, below every number. */
#define RF_MAXV 8

__device__ __forceinline__ uint32_t rf_key(float v) {
    uint32_t u = __float_as_uint(v + 0.0f); /* -0 -> +0: they compare equal */
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return v != v ? 1u : u;
}

/* sm_80+ warp reductions (the build targets sm_90). */
__device__ __forceinline__ uint32_t rf_warp_max(uint32_t v) { return __reduce_max_sync(0xffffffffu, v); }
__device__ __forceinline__ uint32_t rf_warp_min(uint32_t v) { return __reduce_min_sync(0xffffffffu, v); }

__global__ void __launch_bounds__(32 * ROUTE_WARPS)
route_fast_kernel(int32_t *__restrict__ ids, float *__restrict__ w, const float *__restrict__ logits,
                  const float *__restrict__ bias, int64_t T, int E, int K, int G, int TG, bool norm, float factor) {
    const int lane = threadIdx.x & 31;
    const int64_t t = (int64_t)blockIdx.x * ROUTE_WARPS + (threadIdx.x >> 5);
    if (t >= T) return; /* warp-uniform */
    const int nv = E >> 5, e0 = lane * nv, gl = 32 / G; /* lanes per group */
    float s[RF_MAXV];
    uint32_t key[RF_MAXV];
    float b1 = -INFINITY, b2 = -INFINITY; /* this lane's two best biased scores */
#pragma unroll
    for (int i = 0; i < RF_MAXV; i++) {
        s[i] = 0.0f, key[i] = 0;
        if (i < nv) {
            s[i] = 1.0f / (1.0f + expf(-logits[t * E + e0 + i]));
            const float sb = s[i] + (bias ? bias[e0 + i] : 0.0f);
            key[i] = rf_key(sb);
            if (sb > b1) b2 = b1, b1 = sb;
            else if (sb > b2) b2 = sb;
        }
    }
    if (TG < G) {
        /* Group score: the sum of the group's two best (as values, whichever of
         * equal ones the scan picks), summed in the reference's order. */
        for (int o = 1; o < gl; o <<= 1) {
            const float o1 = __shfl_xor_sync(0xffffffffu, b1, o), o2 = __shfl_xor_sync(0xffffffffu, b2, o);
            b2 = fmaxf(fminf(b1, o1), fmaxf(b2, o2));
            b1 = fmaxf(b1, o1);
        }
        const float gscore = nv * gl >= 2 ? 0.0f + b1 + b2 : 0.0f + b1;
        /* The TG best groups, ties to the lower group; every lane of a group holds its key. */
        uint32_t gkey = rf_key(gscore);
        bool keep = false;
        for (int r = 0; r < TG; r++) {
            const uint32_t m = rf_warp_max(gkey);
            const uint32_t g = rf_warp_min(gkey == m ? (uint32_t)(lane / gl) : 0xffffffffu);
            if ((uint32_t)(lane / gl) == g) keep = true, gkey = 0;
        }
        if (!keep) {
#pragma unroll
            for (int i = 0; i < RF_MAXV; i++) key[i] = 0;
        }
    }
    /* top_k rounds; lane k keeps the k-th choice. */
    float wsum = 0.0f, my_w = 0.0f;
    int my_id = 0;
    for (int k = 0; k < K; k++) {
        uint32_t bk = 0, bi = 0xffffffffu;
#pragma unroll
        for (int i = 0; i < RF_MAXV; i++) /* ascending, strict >: the lane's lowest index */
            if (key[i] > bk) bk = key[i], bi = (uint32_t)(e0 + i);
        const uint32_t m = rf_warp_max(bk);
        if (m == 0) continue; /* fewer candidates than top_k: pad (id 0, weight 0), as the reference */
        const uint32_t e = rf_warp_min(bk == m ? bi : 0xffffffffu);
        float se = 0.0f;
#pragma unroll
        for (int i = 0; i < RF_MAXV; i++)
            if (e == (uint32_t)(e0 + i)) se = s[i], key[i] = 0;
        se = __shfl_sync(0xffffffffu, se, (int)e / nv);
        wsum += se; /* the same order as the reference's sum */
        if (lane == k) my_id = (int)e, my_w = se;
    }
    if (lane < K) {
        if (norm) my_w /= wsum + 1e-20f;
        ids[t * K + lane] = my_id;
        w[t * K + lane] = my_w * factor;
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
    int64_t blocks = fw_ceil_div(T, ROUTE_WARPS);
    if (blocks > 0x7fffffffLL) return fw_cuda_errf(ctx, "fw_cuda_route: T %lld is too large", (long long)T);
    if (E % 32 == 0 && E <= 32 * RF_MAXV && G <= 32 && 32 % G == 0 && K <= 32) {
        route_fast_kernel<<<(unsigned)blocks, 32 * ROUTE_WARPS, 0, ctx->stream>>>(
            ids, w, logits, bias, T, E, K, G, TG, p->norm_topk_prob, p->routed_scaling_factor);
        FW_CUDA_LAUNCHED(ctx);
        return FW_CUDA_OK;
    }
    size_t per = route_smem_per_warp(E, G);
    if (per * ROUTE_WARPS > 48 * 1024)
        return fw_cuda_errf(ctx, "fw_cuda_route: %d experts need more shared memory than this kernel takes", E);
    route_kernel<<<(unsigned)blocks, 32 * ROUTE_WARPS, per * ROUTE_WARPS, ctx->stream>>>(
        ids, w, logits, bias, T, E, K, G, TG, p->norm_topk_prob, p->routed_scaling_factor, per);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}
