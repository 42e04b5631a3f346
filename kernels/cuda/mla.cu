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
 * Weights of any type and view (fw_wget), bf16 activations, fp32 accumulation;
 * BF16 and FP8 rows aligned for 8-value loads take the fast forms below. */
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

/* The fast forms, for weight rows loadable 8 values at a time (vec_ok):
 * - q_absorb: a block per head and 8 tokens; a thread owns 8 latent channels
 *   (one 8-value load per row of W_UK) over a slice of the dn rows, and the
 *   slices' partial sums meet in shared memory. C a power of two in [8, 1024].
 * - o_absorb: as above, a warp per output row, 8 values per load. */
#define QF_THREADS 128

template <int WT>
__global__ void __launch_bounds__(QF_THREADS)
q_absorb_fast_kernel(bf16 *__restrict__ q_lat, const bf16 *__restrict__ q, fw_wview w, int T, int H, int dn, int dv,
                     int R, int C) {
    extern __shared__ float sm[]; /* qs [MLA_TOK][dn], then part [slices][MLA_TOK][C] */
    float *qs = sm, *part = sm + MLA_TOK * dn;
    const int h = blockIdx.x, t0 = blockIdx.y * MLA_TOK, nt = min(MLA_TOK, T - t0), dqk = dn + R;
    for (int i = threadIdx.x; i < MLA_TOK * dn; i += QF_THREADS) {
        const int t = i / dn, d = i - t * dn;
        qs[i] = t < nt ? fw_bf2f(q[((int64_t)(t0 + t) * H + h) * dqk + d]) : 0.0f;
    }
    __syncthreads();
    const int chunks = C / 8, slices = QF_THREADS / chunks, ci = threadIdx.x % chunks, sl = threadIdx.x / chunks;
    const int c0 = 8 * ci, per = (dn + slices - 1) / slices, d0 = sl * per, d1 = min(dn, d0 + per);
    float acc[MLA_TOK][8];
#pragma unroll
    for (int t = 0; t < MLA_TOK; t++)
#pragma unroll
        for (int i = 0; i < 8; i++) acc[t][i] = 0.0f;
#pragma unroll 4
    for (int d = d0; d < d1; d++) {
        const int64_t row = (int64_t)h * (dn + dv) + d;
        float wv[8];
        fw_load8<WT>(w.data, row * w.ld + c0, wv);
        if (WT == FW_WTYPE_FP8) {
            const float sc = w.scale[((w.r0 + row) >> 7) * w.scale_ld + ((w.c0 + c0) >> 7)];
#pragma unroll
            for (int i = 0; i < 8; i++) wv[i] *= sc;
        }
#pragma unroll
        for (int t = 0; t < MLA_TOK; t++) {
            const float qv = qs[t * dn + d];
#pragma unroll
            for (int i = 0; i < 8; i++) acc[t][i] = fmaf(qv, wv[i], acc[t][i]);
        }
    }
#pragma unroll
    for (int t = 0; t < MLA_TOK; t++)
#pragma unroll
        for (int i = 0; i < 8; i++) part[(sl * MLA_TOK + t) * C + c0 + i] = acc[t][i];
    __syncthreads();
    for (int i = threadIdx.x; i < nt * C; i += QF_THREADS) {
        const int t = i / C, c = i - t * C;
        float v = 0.0f;
        for (int k = 0; k < slices; k++) v += part[(k * MLA_TOK + t) * C + c];
        q_lat[((int64_t)(t0 + t) * H + h) * C + c] = fw_f2bf(v);
    }
}

template <int WT>
__global__ void __launch_bounds__(O_THREADS)
o_absorb_fast_kernel(bf16 *__restrict__ o, const bf16 *__restrict__ o_lat, fw_wview w, int64_t T, int64_t H,
                     int64_t dn, int64_t dv, int64_t C) {
    const int lane = threadIdx.x & 31;
    const int64_t row = (int64_t)blockIdx.x * (O_THREADS / 32) + (threadIdx.x >> 5); /* h * dv + j */
    if (row >= H * dv) return;
    const int64_t h = row / dv, j = row % dv, t0 = (int64_t)blockIdx.y * MLA_TOK, wr = h * (dn + dv) + dn + j;
    const int nt = (int)min((int64_t)MLA_TOK, T - t0);
    const float *srow = WT == FW_WTYPE_FP8 ? w.scale + ((w.r0 + wr) >> 7) * w.scale_ld : nullptr;
    float acc[MLA_TOK];
#pragma unroll
    for (int t = 0; t < MLA_TOK; t++) acc[t] = 0.0f;
    for (int64_t c = 8 * lane; c < C; c += 256) {
        float wv[8];
        fw_load8<WT>(w.data, wr * w.ld + c, wv);
        const float sc = WT == FW_WTYPE_FP8 ? srow[(w.c0 + c) >> 7] : 1.0f;
#pragma unroll
        for (int t = 0; t < MLA_TOK; t++) {
            if (t >= nt) break;
            float xv[8], d = 0.0f;
            fw_load8<FW_WTYPE_BF16>(o_lat, ((t0 + t) * H + h) * C + c, xv);
#pragma unroll
            for (int i = 0; i < 8; i++) d = fmaf(wv[i], xv[i], d);
            acc[t] = fmaf(d, sc, acc[t]);
        }
    }
#pragma unroll
    for (int t = 0; t < MLA_TOK; t++) {
        float v = fw_warp_sum(acc[t]);
        if (lane == 0 && t < nt) o[((t0 + t) * H + h) * dv + j] = fw_f2bf(v);
    }
}

/* Rows of kv_b loadable 8 values at a time: BF16 16-byte, FP8 8-byte aligned
 * pieces, FP8 pieces inside one scale block. */
static bool vec_ok(const fw_weight *w, const void *x) {
    const int64_t es = (int64_t)fw_wtype_size(w->type);
    return (w->type == FW_WTYPE_BF16 || w->type == FW_WTYPE_FP8) && w->cols % 8 == 0 && w->ld % 8 == 0 &&
           fw_ptr_align(w->data) >= (unsigned)(8 * es) && (w->type != FW_WTYPE_FP8 || w->c0 % 8 == 0) &&
           fw_ptr_align(x) >= 16;
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
    fw_wview v = fw_wview_of(kv_b);
    bf16 *y = (bf16 *)q_lat;
    const bf16 *x = (const bf16 *)q;
    const size_t shf = (size_t)(MLA_TOK * dn + MLA_TOK * 8 * QF_THREADS) * sizeof(float);
    if (vec_ok(kv_b, q) && C >= 8 && C <= 8 * QF_THREADS && (C & (C - 1)) == 0 && shf <= 48 * 1024 &&
        H * (dn + dv) < 0x7fffffffLL) {
        dim3 g((unsigned)H, (unsigned)fw_ceil_div(T, MLA_TOK));
        if (kv_b->type == FW_WTYPE_BF16)
            q_absorb_fast_kernel<FW_WTYPE_BF16><<<g, QF_THREADS, shf, ctx->stream>>>(y, x, v, (int)T, (int)H, (int)dn, (int)dv, (int)R, (int)C);
        else q_absorb_fast_kernel<FW_WTYPE_FP8><<<g, QF_THREADS, shf, ctx->stream>>>(y, x, v, (int)T, (int)H, (int)dn, (int)dv, (int)R, (int)C);
        FW_CUDA_LAUNCHED(ctx);
        return FW_CUDA_OK;
    }
    dim3 g((unsigned)fw_ceil_div(C, Q_THREADS), (unsigned)H, (unsigned)fw_ceil_div(T, MLA_TOK));
    size_t sh = (size_t)(MLA_TOK * dn) * sizeof(float);
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
    if (vec_ok(kv_b, o_lat)) {
        if (kv_b->type == FW_WTYPE_BF16) o_absorb_fast_kernel<FW_WTYPE_BF16><<<g, O_THREADS, 0, ctx->stream>>>(y, x, v, T, H, dn, dv, C);
        else o_absorb_fast_kernel<FW_WTYPE_FP8><<<g, O_THREADS, 0, ctx->stream>>>(y, x, v, T, H, dn, dv, C);
        FW_CUDA_LAUNCHED(ctx);
        return FW_CUDA_OK;
    }
    if (kv_b->type == FW_WTYPE_F32) o_absorb_kernel<FW_WTYPE_F32><<<g, O_THREADS, 0, ctx->stream>>>(y, x, v, T, H, dn, dv, C);
    else if (kv_b->type == FW_WTYPE_BF16) o_absorb_kernel<FW_WTYPE_BF16><<<g, O_THREADS, 0, ctx->stream>>>(y, x, v, T, H, dn, dv, C);
    else o_absorb_kernel<FW_WTYPE_FP8><<<g, O_THREADS, 0, ctx->stream>>>(y, x, v, T, H, dn, dv, C);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}
