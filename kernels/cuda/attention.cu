/* MLA attention, both forms, with one kernel: a block per (query token, head),
 * causal (query t of the last T of S positions sees keys [0, S - T + t]), scores
 * and softmax in fp32 with an online softmax over chunks of keys, fp32 output
 * accumulators, bf16 in and out.
 *
 * - naive (prefill): score = q[t,h] . k[s,h], output sum p v[s,h];
 * - absorbed (decode): score = q_lat[t,h] . c[s] + q_pe[t,h] . pe[s], output sum p c[s]
 *   (the latent cache is shared by all heads).
 * Per chunk of keys: each warp takes keys in turn (lanes split the dot product),
 * the block rescales its accumulators by exp(m_old - m_new), then each thread adds
 * p * value for its output dimensions (consecutive threads, consecutive dims). */
#include "kernels/cuda/cuda_common.h"

#include <math.h>

#define ATT_THREADS 128
#define ATT_WARPS (ATT_THREADS / 32)
#define ATT_CHUNK 128 /* keys per chunk: their scores sit in shared memory */
#define ATT_MAX_DV (8 * ATT_THREADS)

/* Where the operands of query (t, h) and key s are. Query parts: q1 (d1 values) and
 * q2 (d2, may be 0) at (t * H + h) * d. Key parts: k + s * k_ss + h * k_hs. Values:
 * v + s * v_ss + h * v_hs, dv of them. Output: o + (t * H + h) * dv. */
struct attn_args {
    const bf16 *q1, *q2;
    int64_t d1, d2;
    const bf16 *k1, *k2;
    int64_t k1_ss, k1_hs, k2_ss, k2_hs;
    const bf16 *v;
    int64_t v_ss, v_hs, dv;
    bf16 *o;
    int64_t T, S, H;
    float scale;
};

template <int NACC>
__global__ void __launch_bounds__(ATT_THREADS) attn_kernel(attn_args a) {
    extern __shared__ float sm[]; /* q (d1 + d2) | p (ATT_CHUNK) */
    float *qs = sm, *p = sm + a.d1 + a.d2;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int64_t t = blockIdx.x / a.H, h = blockIdx.x % a.H;
    const int64_t n = a.S - a.T + t + 1; /* keys this query sees */

    const bf16 *q1 = a.q1 + (t * a.H + h) * a.d1, *q2 = a.q2 + (t * a.H + h) * a.d2;
    for (int64_t d = tid; d < a.d1; d += ATT_THREADS) qs[d] = fw_bf2f(q1[d]);
    for (int64_t d = tid; d < a.d2; d += ATT_THREADS) qs[a.d1 + d] = fw_bf2f(q2[d]);
    __syncthreads();
    const bf16 *k1 = a.k1 + h * a.k1_hs, *k2 = a.k2 + h * a.k2_hs, *v = a.v + h * a.v_hs;

    float m = -INFINITY, l = 0.0f, acc[NACC];
#pragma unroll
    for (int i = 0; i < NACC; i++) acc[i] = 0.0f;
    for (int64_t c0 = 0; c0 < n; c0 += ATT_CHUNK) {
        const int cn = (int)(n - c0 < ATT_CHUNK ? n - c0 : ATT_CHUNK);
        for (int j = warp; j < cn; j += ATT_WARPS) {
            const int64_t s = c0 + j;
            const bf16 *kr1 = k1 + s * a.k1_ss, *kr2 = k2 + s * a.k2_ss;
            float dot = 0.0f;
            for (int64_t d = lane; d < a.d1; d += 32) dot = fmaf(qs[d], fw_bf2f(kr1[d]), dot);
            for (int64_t d = lane; d < a.d2; d += 32) dot = fmaf(qs[a.d1 + d], fw_bf2f(kr2[d]), dot);
            dot = fw_warp_sum(dot);
            if (lane == 0) p[j] = dot * a.scale;
        }
        __syncthreads();
        /* Every warp reduces the chunk the same way, so m and l agree in all threads. */
        float cm = -INFINITY;
        for (int j = lane; j < cn; j += 32) cm = fmaxf(cm, p[j]);
        cm = fw_warp_max(cm);
        const float m_new = fmaxf(m, cm);
        const float alpha = expf(m - m_new); /* 0 on the first chunk (m = -inf) */
        __syncthreads();                     /* all maxima read before p is overwritten */
        for (int j = tid; j < cn; j += ATT_THREADS) p[j] = expf(p[j] - m_new);
        __syncthreads();
        float cs = 0.0f;
        for (int j = lane; j < cn; j += 32) cs += p[j];
        cs = fw_warp_sum(cs);
        l = l * alpha + cs;
        m = m_new;
#pragma unroll
        for (int i = 0; i < NACC; i++) acc[i] *= alpha;
        for (int j = 0; j < cn; j++) {
            const float pj = p[j];
            const bf16 *vr = v + (c0 + j) * a.v_ss;
#pragma unroll
            for (int i = 0; i < NACC; i++) {
                int64_t d = tid + i * ATT_THREADS;
                if (d < a.dv) acc[i] = fmaf(pj, fw_bf2f(vr[d]), acc[i]);
            }
        }
        __syncthreads(); /* p is reused by the next chunk */
    }
    bf16 *o = a.o + (t * a.H + h) * a.dv;
    const float inv = 1.0f / l;
#pragma unroll
    for (int i = 0; i < NACC; i++) {
        int64_t d = tid + i * ATT_THREADS;
        if (d < a.dv) o[d] = fw_f2bf(acc[i] * inv);
    }
}

static int attn_launch(fw_cuda_ctx *ctx, const char *op, const attn_args &a) {
    if (a.T < 0 || a.H < 0 || a.S < a.T || a.d1 < 0 || a.d2 < 0 || a.dv < 0)
        return fw_cuda_errf(ctx, "%s: bad shape (T %lld, S %lld, H %lld): need S >= T", op, (long long)a.T,
                            (long long)a.S, (long long)a.H);
    if (a.dv > ATT_MAX_DV) return fw_cuda_errf(ctx, "%s: value width %lld > %d", op, (long long)a.dv, ATT_MAX_DV);
    size_t smem = (size_t)(a.d1 + a.d2 + ATT_CHUNK) * sizeof(float);
    if (smem > 48 * 1024) return fw_cuda_errf(ctx, "%s: query width %lld too large", op, (long long)(a.d1 + a.d2));
    if (a.T == 0 || a.H == 0 || a.dv == 0) return FW_CUDA_OK;
    if (a.T * a.H > 0x7fffffffLL) return fw_cuda_errf(ctx, "%s: T * H too large for one launch", op);
    unsigned grid = (unsigned)(a.T * a.H);
    int64_t nacc = fw_ceil_div(a.dv, ATT_THREADS);
    if (nacc <= 1) attn_kernel<1><<<grid, ATT_THREADS, smem, ctx->stream>>>(a);
    else if (nacc <= 2) attn_kernel<2><<<grid, ATT_THREADS, smem, ctx->stream>>>(a);
    else if (nacc <= 4) attn_kernel<4><<<grid, ATT_THREADS, smem, ctx->stream>>>(a);
    else attn_kernel<8><<<grid, ATT_THREADS, smem, ctx->stream>>>(a);
    FW_CUDA_LAUNCHED(ctx);
    return FW_CUDA_OK;
}

extern "C" int fw_cuda_attn_naive(fw_cuda_ctx *ctx, fw_bf16 *o, const fw_bf16 *q, const fw_bf16 *k, const fw_bf16 *v,
                                  int64_t T, int64_t S, int64_t H, int64_t dqk, int64_t dv, float scale) {
    attn_args a;
    a.q1 = q, a.q2 = q, a.d1 = dqk, a.d2 = 0;      /* q (T, H, dqk) */
    a.k1 = k, a.k2 = k;                            /* k (S, H, dqk) */
    a.k1_ss = H * dqk, a.k1_hs = dqk, a.k2_ss = 0, a.k2_hs = 0;
    a.v = v, a.v_ss = H * dv, a.v_hs = dv, a.dv = dv; /* v (S, H, dv) */
    a.o = o, a.T = T, a.S = S, a.H = H, a.scale = scale;
    return attn_launch(ctx, "fw_cuda_attn_naive", a);
}

extern "C" int fw_cuda_attn_absorbed(fw_cuda_ctx *ctx, fw_bf16 *o_lat, const fw_bf16 *q_lat, const fw_bf16 *q_pe,
                                     const fw_bf16 *c, int64_t c_stride, const fw_bf16 *pe, int64_t pe_stride,
                                     int64_t T, int64_t S, int64_t H, int64_t C, int64_t R, float scale) {
    attn_args a;
    a.q1 = q_lat, a.q2 = q_pe, a.d1 = C, a.d2 = R; /* q_lat (T, H, C), q_pe (T, H, R) */
    a.k1 = c, a.k2 = pe;                           /* c (S, C), pe (S, R): one per position, all heads */
    a.k1_ss = c_stride, a.k1_hs = 0, a.k2_ss = pe_stride, a.k2_hs = 0;
    a.v = c, a.v_ss = c_stride, a.v_hs = 0, a.dv = C;
    a.o = o_lat, a.T = T, a.S = S, a.H = H, a.scale = scale;
    return attn_launch(ctx, "fw_cuda_attn_absorbed", a);
}
