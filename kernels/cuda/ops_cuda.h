/* The CUDA op table: the ops of kernels/ops.h on DEVICE pointers, with bf16
 * activations and fp32 accumulation (ARCHITECTURE.md, Numerics). Router logits and
 * weights, norm weights and statistics, softmax and the RoPE cos/sin tables stay
 * fp32. Weights are the same fw_weight struct as on the CPU (views with ld and a
 * block-scale origin r0, c0), with `data` and `scale` in device memory.
 *
 * Every op is enqueued on ctx->stream and returns FW_CUDA_OK (0) or FW_CUDA_ERR
 * (-1, the values of FW_OK / FW_ERR) with a message naming the file, line and
 * call in ctx->err. Launch errors are caught at once; errors of a kernel while it
 * runs show up at the next fw_cuda_sync (or any later call on the stream).
 * Nothing here exits, and there is no global state: everything hangs off ctx.
 *
 * Usable from C (the bf16 type is then its 16 bits) and from CUDA C++. */
#ifndef FW_KERNELS_CUDA_OPS_CUDA_H
#define FW_KERNELS_CUDA_OPS_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
#include <cuda_bf16.h>
typedef __nv_bfloat16 fw_bf16;
extern "C" {
#else
typedef uint16_t fw_bf16; /* the bits of a __nv_bfloat16 (fw_f32_to_bf16 makes them) */
#endif

#include "kernels/ops.h"

#define FW_CUDA_OK 0
#define FW_CUDA_ERR (-1)

/* Which implementation a matmul ran (ctx->last_mm_path after each call). */
typedef enum fw_cuda_mm_path {
    FW_CUDA_MM_NONE = 0,
    FW_CUDA_MM_LT_BF16, /* cuBLASLt, bf16 weights, fp32 compute */
    FW_CUDA_MM_LT_FP8,  /* cuBLASLt block-scaled FP8: activations quantized per token per 128 */
    FW_CUDA_MM_GEMV,    /* own kernel, T <= 8: a warp per output row, weights widened in registers */
    FW_CUDA_MM_TILED,   /* own kernel, 64 x 64 output tiles, weights widened per tile */
} fw_cuda_mm_path;

/* FW_CUDA_MM_OWN never calls cuBLASLt (tests of the own kernels, debugging). */
typedef enum fw_cuda_mm_policy { FW_CUDA_MM_AUTO = 0, FW_CUDA_MM_OWN } fw_cuda_mm_policy;

typedef struct fw_cuda_plans fw_cuda_plans; /* cached cuBLASLt descriptors (matmul.cu) */

/* At one or two rows (decode) an FP8 weight is read once by the own GEMV, with bf16
 * activations, faster than cuBLASLt's block-scaled GEMM (which pads M and
 * quantizes the activations first): furrow bench --device cuda measures both. */
#define FW_CUDA_FP8_GEMV_ROWS 2

/* Which kernels the ops choose. fw_cuda_ctx_init sets the defaults (the fastest
 * kernels of the device); the reference paths (--kernels ref: FW_CUDA_MM_OWN) and
 * the op tests set the others. The kernels a flag below turns off stay because
 * they run where the default cannot (a GPU other than compute capability 9.0,
 * which lacks the warpgroup MMA) and the op tests compare every one with the CPU
 * reference. A second context on another stream of the same device copies them
 * whole. */
typedef struct fw_cuda_opts {
    fw_cuda_mm_policy mm_policy;
    int fp8_gemv_rows;   /* FP8 matmuls (BF16: small, fp32 out) of at most this many rows take the own GEMV, not
                          * cuBLASLt (FW_CUDA_FP8_GEMV_ROWS) */
    bool mla_cuda_cores; /* decode attention on the CUDA cores, not the tensor cores */
    bool mla_mma;        /* decode attention by mma.sync, not the warpgroup MMA of 9.0 */
    bool moe_gemv_cores; /* FP8 experts of 2..8 rows on the CUDA cores, not the tensor cores */
    bool moe_tiles_mma;  /* FP8 experts' tiles by mma.sync, not the warpgroup MMA of 9.0 */
    bool moe_act_fp8;    /* FP8 experts' tiles (9.0) with FP8 activations per 128 channels, as DeepSeek's act_quant,
                          * DeepGEMM and cuBLASLt's block-scaled FP8 (the dense matmuls) do; the default under
                          * FW_CUDA_MM_AUTO; off (or FW_CUDA_MM_OWN): bf16 activations, exact */
    bool flash_mma;      /* prefill attention by mma.sync, not the warpgroup MMA of 9.0 */
} fw_cuda_opts;

/* One per device and stream; not shared between host threads. */

typedef struct fw_cuda_ctx {
    int device;
    int cc_major, cc_minor;
    char device_name[256];
    cudaStream_t stream;
    bool own_stream;
    cublasLtHandle_t lt;
    void *lt_ws; /* cuBLASLt workspace */
    size_t lt_ws_bytes;
    void *scratch; /* per-op temporaries: fp8 activations, scales, padded outputs */
    size_t scratch_bytes;
    fw_cuda_plans *plans;
    void (*plans_free)(fw_cuda_plans *); /* set with plans by their maker (matmul.cu) */
    fw_cuda_opts opt;
    fw_cuda_mm_path last_mm_path;
    const char *last_mla_path; /* which ran last (fw_cuda_mla_decode), and its splits per query */
    int last_mla_splits;
    const char *last_flash_path; /* which ran last (fw_cuda_attn_flash) */
    char err[1024];
} fw_cuda_ctx;

/* *n = the number of usable devices; 0 (and FW_CUDA_OK) where there is no driver
 * or no GPU, so callers can skip. */
int fw_cuda_device_count(int *n);

/* Binds `device`, creates the cuBLASLt handle and workspace. stream == NULL: the
 * context creates (and later destroys) a non-blocking stream of its own. */
int fw_cuda_ctx_init(fw_cuda_ctx *ctx, int device, cudaStream_t stream);
void fw_cuda_ctx_free(fw_cuda_ctx *ctx);
/* Grows the scratch space to at least `bytes` now (ops grow it on demand, which
 * synchronizes the stream and cannot happen during CUDA graph capture). */
int fw_cuda_ctx_reserve(fw_cuda_ctx *ctx, size_t bytes);
/* Waits for the stream; reports errors of kernels that already ran. */
int fw_cuda_sync(fw_cuda_ctx *ctx);

/* Device memory (synchronous copies on ctx->stream). */
int fw_cuda_malloc(fw_cuda_ctx *ctx, void **p, size_t bytes);
void fw_cuda_free(void *p);
int fw_cuda_upload(fw_cuda_ctx *ctx, void *dst, const void *src, size_t bytes);
int fw_cuda_download(fw_cuda_ctx *ctx, void *dst, const void *src, size_t bytes);
/* height rows of width bytes, host rows spitch apart to device rows dpitch apart. */
int fw_cuda_upload2d(fw_cuda_ctx *ctx, void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                     size_t height);

/* Element conversions on the device (round to nearest even), at boundaries/tests. */
int fw_cuda_f32_to_bf16(fw_cuda_ctx *ctx, fw_bf16 *y, const float *x, int64_t n);
int fw_cuda_bf16_to_f32(fw_cuda_ctx *ctx, float *y, const fw_bf16 *x, int64_t n);

/* A device copy of a host weight (or view): `w` describes it (device data and
 * scales); the copy has row stride `ld` (0: cols rounded up to 16, which keeps FP8
 * rows cuBLASLt-aligned) and, for FP8, the scale blocks that cover the view, the
 * grid zero-padded to multiples of 4 blocks both ways (scale_ld a multiple of 4:
 * cuBLASLt's layout, so a whole uploaded FP8 weight is used in place; views of it
 * get their scales repacked per call), and the origin's offset within its 128 x 128
 * block kept in w.r0, w.c0. Views of w (fw_weight_view) work as on the CPU. On
 * failure nothing stays allocated. */
typedef struct fw_cuda_weight {
    fw_weight w;
    void *data_alloc;
    void *scale_alloc; /* FP8 block scales (f32) or INT4 group scales (bf16) */
} fw_cuda_weight;

int fw_cuda_weight_upload(fw_cuda_ctx *ctx, fw_cuda_weight *dw, const fw_weight *hw, int64_t ld);
void fw_cuda_weight_free(fw_cuda_weight *dw);

/* ---- the ops (the table below points at these) ---- */

/* y (T, D) = rows ids[t] - vocab0 of emb (D = emb.cols); ids (device) outside
 * [vocab0, vocab0 + emb.rows) give zero rows. */
int fw_cuda_embed(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_weight *emb, const int32_t *ids, int64_t T, int64_t vocab0);
/* y (T, D) = x / sqrt(mean(x^2) + eps) * w, statistics in fp32; w (D) fp32. y may equal x. */
int fw_cuda_rmsnorm(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_bf16 *x, const float *w, int64_t T, int64_t D, float eps);
/* y (T, W.rows) = x (T, W.cols) . W^T. Path: see matmul.cu. */
int fw_cuda_matmul(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_bf16 *x, const fw_weight *w, int64_t T);
/* The same with fp32 output (router logits). */
int fw_cuda_matmul_f32(fw_cuda_ctx *ctx, float *y, const fw_bf16 *x, const fw_weight *w, int64_t T);
/* y (T, W.cols) = x (T, W.rows) . W (absorbed MLA's q . W_UK). */
int fw_cuda_matmul_xw(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_bf16 *x, const fw_weight *w, int64_t T);
/* Interleaved-pair rotation in place, strided as fw_ops.rope; cos/sin (T, dim/2) fp32. */
int fw_cuda_rope(fw_cuda_ctx *ctx, fw_bf16 *x, int64_t T, int64_t n_vec, int64_t tok_stride, int64_t vec_stride,
                 int64_t dim, const float *cos_tab, const float *sin_tab);
/* As fw_ops.attn_naive: o (T, H, dv) from q (T, H, dqk), k (S, H, dqk), v (S, H, dv). */
int fw_cuda_attn_naive(fw_cuda_ctx *ctx, fw_bf16 *o, const fw_bf16 *q, const fw_bf16 *k, const fw_bf16 *v,
                       int64_t T, int64_t S, int64_t H, int64_t dqk, int64_t dv, float scale);
/* As fw_ops.attn_absorbed: o_lat (T, H, C) over the latent cache c (S, C; row stride
 * c_stride) and pe (S, R; row stride pe_stride). */
int fw_cuda_attn_absorbed(fw_cuda_ctx *ctx, fw_bf16 *o_lat, const fw_bf16 *q_lat, const fw_bf16 *q_pe,
                          const fw_bf16 *c, int64_t c_stride, const fw_bf16 *pe, int64_t pe_stride,
                          int64_t T, int64_t S, int64_t H, int64_t C, int64_t R, float scale);
/* y = silu(g) * u (n); y may equal g. */
int fw_cuda_silu_mul(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_bf16 *g, const fw_bf16 *u, int64_t n);
/* y += x (n). */
int fw_cuda_add(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_bf16 *x, int64_t n);
/* As fw_ops.route, all fp32: logits (T, E), bias (E) or NULL, ids/w (T, top_k). */
int fw_cuda_route(fw_cuda_ctx *ctx, int32_t *ids, float *w, const float *logits, const float *bias, int64_t T,
                  const fw_route_params *p);

/* ---- ops of the model runtime beyond the CPU table (one launch where the CPU loops) ---- */

/* fw_cuda_rmsnorm over rows with strides ldx, ldy (the c_kv part of each cache row). */
int fw_cuda_rmsnorm_ld(fw_cuda_ctx *ctx, fw_bf16 *y, int64_t ldy, const fw_bf16 *x, int64_t ldx, const float *w,
                       int64_t T, int64_t D, float eps);
/* Absorbed MLA's projections for all H heads (mla.cu); kv_b (H * (dn + dv), C):
 * q_lat (T, H, C) = q_nope . W_UK(h) with q (T, H, dn + R);
 * o (T, H, dv) = o_lat (T, H, C) . W_UV(h)^T. */
int fw_cuda_mla_q_absorb(fw_cuda_ctx *ctx, fw_bf16 *q_lat, const fw_bf16 *q, const fw_weight *kv_b, int64_t T,
                         int64_t H, int64_t dn, int64_t dv, int64_t R, int64_t C);
int fw_cuda_mla_o_absorb(fw_cuda_ctx *ctx, fw_bf16 *o, const fw_bf16 *o_lat, const fw_weight *kv_b, int64_t T,
                         int64_t H, int64_t dn, int64_t dv, int64_t C);

/* A paged latent cache as the kernels read it: rows of C + R values (row stride
 * W) in blocks of `block` positions; row p of table row s (a sequence of the
 * step) lies at base + table[s * max_blocks + p / block] * block_stride +
 * (p % block) * W. base is this layer's block 0. A contiguous cache per sequence
 * is the case block = its capacity, table[s] = s, block_stride = sequence stride. */
typedef struct fw_cuda_pages {
    fw_bf16 *base;
    int64_t W, block, block_stride, max_blocks;
    const int32_t *table; /* device memory */
} fw_cuda_pages;

/* Absorbed MLA attention for T queries at once (mla_decode.cu, flash-decoding):
 * query t reads table row q_seq[t] of the paged cache up to its first q_len[t]
 * positions; with q_seq = q_len = NULL, table row 0 and causal (query t of the
 * last T of S sees S - T + t + 1 keys). o_lat (T, H, C) as fw_cuda_attn_absorbed.
 * `work` holds fw_cuda_mla_work_bytes(T, H, S, C) bytes; S bounds every length. */
size_t fw_cuda_mla_work_bytes(int64_t T, int64_t H, int64_t S, int64_t C);
int fw_cuda_mla_decode(fw_cuda_ctx *ctx, fw_bf16 *o_lat, const fw_bf16 *q_lat, const fw_bf16 *q_pe,
                       const fw_cuda_pages *pg, const int32_t *q_seq, const int32_t *q_len, int64_t T, int64_t S,
                       int64_t H, int64_t C, int64_t R, float scale, void *work);

/* The keys and values of prefill attention, for key position s and head h: the
 * key is d1 values at k1 + s * k1_ss + h * k1_hs, then d2 at k2 + s * k2_ss +
 * h * k2_hs (MLA: k_nope per head, then k_pe shared by the heads, k2_hs = 0); the
 * value dv values at v + s * v_ss + h * v_hs. */
typedef struct fw_cuda_attn_kv {
    const fw_bf16 *k1, *k2, *v;
    int64_t d1, d2, dv;
    int64_t k1_ss, k1_hs, k2_ss, k2_hs, v_ss, v_hs;
} fw_cuda_attn_kv;

/* Causal prefill attention as fw_cuda_attn_naive, fused (attn_flash.cu): T
 * queries q (T, H, d1 + d2), the last T of S positions (query t sees keys
 * 0 .. S - T + t), o (T, H, dv). Scores and softmax stay in fp32 registers, so no
 * work space. d1 + d2 <= 256, dv <= 128. */
int fw_cuda_attn_flash(fw_cuda_ctx *ctx, fw_bf16 *o, const fw_bf16 *q, const fw_cuda_attn_kv *kv, int64_t T,
                       int64_t S, int64_t H, float scale);

/* Row t of rows (T, W) into table row q_seq[t] of the paged cache at position
 * q_len[t] - 1: the new tokens' latent rows, with positions read on the device so
 * a captured decode step stays valid. */
int fw_cuda_kv_append(fw_cuda_ctx *ctx, const fw_cuda_pages *pg, const fw_bf16 *rows, const int32_t *q_seq,
                      const int32_t *q_len, int64_t T);
/* Positions [0, S) of table row `seq` (a host index) into dst (S, W), contiguous:
 * the prefill attention reads one sequence's latents in one piece. */
int fw_cuda_kv_gather(fw_cuda_ctx *ctx, fw_bf16 *dst, const fw_cuda_pages *pg, int64_t seq, int64_t S);

/* Routed experts without a host sync (moe.cu). The plan groups the n_pairs = T * k
 * (token, slot) pairs of ids (T, k) whose expert lies in [e0, e0 + n_exp): local
 * expert e owns grouped rows offsets[e] .. offsets[e + 1] - 1; rows[r] is the pair
 * of grouped row r; slot_row[pair] its grouped row or -1 (another rank's expert).
 * It lives in device memory of fw_cuda_moe_plan_bytes(n_pairs, n_exp) bytes. */
typedef struct fw_cuda_moe_plan {
    int64_t n_pairs, n_exp, tile_cap;
    int32_t *offsets, *rows, *slot_row, *small, *tiles, *counts;
} fw_cuda_moe_plan;

size_t fw_cuda_moe_plan_bytes(int64_t n_pairs, int64_t n_exp);
int fw_cuda_moe_group(fw_cuda_ctx *ctx, fw_cuda_moe_plan *plan, void *mem, const int32_t *ids, int64_t T, int64_t k,
                      int64_t e0, int64_t n_exp);
/* For every grouped row r of local expert e: y[r] (N) = x_r . W_e^T, where x_r is
 * x[rows[r] / k] with `gather` (token rows) or x[r] (grouped rows), and W_e is w0
 * (N x K, expert 0) with its data moved by e * wstride elements and its scales by
 * e * sstride floats (experts stacked in one allocation). FP8: w0.r0 = w0.c0 = 0.
 * y has room for n_pairs rows; rows past the local pairs are not written. */
int fw_cuda_moe_matmul(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_bf16 *x, bool gather, int64_t k, const fw_weight *w0,
                       int64_t wstride, int64_t sstride, const fw_cuda_moe_plan *plan);
/* The SwiGLU gate of every pair's token row: y[r] (N) = silu(x_r . G_e^T) * (x_r . U_e^T),
 * each product rounded to bf16 first (as fw_cuda_silu_mul on two fw_cuda_moe_matmul
 * outputs), in one pass over the weights for experts of few rows; gate and up
 * stacks of the same shape, type and strides. */
int fw_cuda_moe_swiglu(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_bf16 *x, int64_t k, const fw_weight *gate,
                       const fw_weight *up, int64_t wstride, int64_t sstride, const fw_cuda_moe_plan *plan);
/* xg (grouped rows, D) = x[rows[r] / k]: the tokens in expert order (for one GEMM
 * per expert on large batches). */
int fw_cuda_moe_gather(fw_cuda_ctx *ctx, fw_bf16 *xg, const fw_bf16 *x, const fw_cuda_moe_plan *plan, int64_t k,
                       int64_t D);
/* y (T, D) += sum over slots j (in order) of w[t, j] * ye[slot_row[t * k + j]], local slots only. */
int fw_cuda_moe_combine(fw_cuda_ctx *ctx, fw_bf16 *y, const fw_bf16 *ye, const float *w,
                        const fw_cuda_moe_plan *plan, int64_t T, int64_t k, int64_t D);


#ifdef __cplusplus
}
#endif

#endif
