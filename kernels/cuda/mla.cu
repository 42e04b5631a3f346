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
 * Weights of any type and view (fw_wget), bf16 activations, fp32 accumulation. */
#include "kernels/cuda/cuda_common.h"

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

static int check_shape(fw_cuda_ctx *ctx, const char *op, const fw_weight *kv_b, int64_t T, int64_t H, int64_t dn,
                       int64_t dv, int64_t C) {
    if (T < 0 || H < 1 || dn < 1 || dv < 1 || C < 1 || kv_b->rows < H * (dn + dv) || kv_b->cols != C ||
        fw_ceil_div(T, MLA_TOK) > 65535 || H > 65535)
        return fw_cuda_errf(ctx, "%s: bad shape (T %lld, H %lld, dn %lld, dv %lld, C %lld; kv_b %lld x %lld)", op,
                            (long long)T, (long long)H, (long long)dn, (long long)dv, (long long)C,
                            (long long)kv_b->rows, (long long)kv_b->cols);
    return FW_CUDA_OK;
}

extern "C" int fw_cuda_mla_q_absorb(fw_cuda_ctx *ctx, fw_bf16 *q_lat, const fw_bf16 *q, const fw_weight *kv_b,
                                    int64_t T, int64_t H, int64_t dn, int64_t dv, int64_t R, int64_t C) {
    if (check_shape(ctx, "fw_cuda_mla_q_absorb", kv_b, T, H, dn, dv, C) || R < 0) return FW_CUDA_ERR;
    if (T == 0) return FW_CUDA_OK;
    dim3 g((unsigned)fw_ceil_div(C, Q_THREADS), (unsigned)H, (unsigned)fw_ceil_div(T, MLA_TOK));
    size_t sh = (size_t)(MLA_TOK * dn) * sizeof(float);
    fw_wview v = fw_wview_of(kv_b);
    bf16 *y = (bf16 *)q_lat;
    const bf16 *x = (const bf16 *)q;
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
    if (kv_b->type == FW_WTYPE_F32) o_absorb_kernel<FW_WTYPE_F32><<<g, O_THREADS, 0, ctx->stream>>>(y, x, v, T, H, dn, dv, C);
    else if (kv_b->type == FW_WTYPE_BF16) o_absorb_kernel<FW_WTYPE_BF16><<<g, O_THREADS, 0, ctx->stream>>>(y, x, v, T, H, dn, dv, C);
    else o_absorb_kernel<FW_WTYPE_FP8><<<g, O_THREADS, 0, ctx->stream>>>(y, x, v, T, H, dn, dv, C);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}
