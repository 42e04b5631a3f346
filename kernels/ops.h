/* The op table: every compute op the model uses, as function pointers, one table
 * per backend (ggml-backend style). The model code calls only these, so the same
 * CPU forward (runtime/cpu) runs on the reference or the fast CPU ops; the CUDA
 * backend (runtime/cuda) calls the kernels of kernels/cuda directly.
 *
 * Conventions: activations are float32, row-major; T is the number of tokens;
 * counts and offsets are int64_t. Weights stay in their stored format (F32, BF16,
 * FP8 e4m3 with 128x128 block scales, INT4 or INT8 with bf16 group scales) and
 * are widened inside the kernels. */
#ifndef FW_KERNELS_OPS_H
#define FW_KERNELS_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum fw_wtype {
    FW_WTYPE_F32 = 0,
    FW_WTYPE_BF16,
    FW_WTYPE_FP8,        /* e4m3fn, dequantized as fp8 * scale[block] */
    FW_WTYPE_INT4,       /* symmetric int4, 8 per int32 word, dequantized as q * bf16 scale[group] */
    FW_WTYPE_INT8,       /* symmetric int8, dequantized as q * bf16 scale[group] (group = cols: per channel) */
} fw_wtype;

#define FW_FP8_BLOCK 128

/* INT4 and INT8: integer values times a bf16 scale per row and group of columns. */
static inline bool fw_wtype_grouped(fw_wtype t) { return t == FW_WTYPE_INT4 || t == FW_WTYPE_INT8; }

/* Bytes per stored unit that `ld` counts: an element, or for INT4 an int32 word
 * of 8 elements. */
static inline size_t fw_wtype_size(fw_wtype t) {
    return t == FW_WTYPE_F32 || t == FW_WTYPE_INT4 ? 4 : t == FW_WTYPE_BF16 ? 2 : 1;
}
/* Bytes of the values of a rows x cols weight (without scales). */
static inline size_t fw_wtype_bytes(fw_wtype t, int64_t rows, int64_t cols) {
    return t == FW_WTYPE_INT4 ? (size_t)(rows * ((cols + 7) / 8)) * 4 : (size_t)(rows * cols) * fw_wtype_size(t);
}

/* A weight matrix [rows, cols] (rows = outputs of matmul), or a view of one:
 * element (i, j) is at data + (i * ld + j) * element size. For FP8, `scale` is the
 * block-scale grid of the whole parent tensor ([ceil(parent_rows/128)] x scale_ld),
 * and (r0, c0) is the view's origin inside the parent, so element (i, j) has scale
 * scale[((r0 + i) / 128) * scale_ld + (c0 + j) / 128].
 *
 * INT4 (compressed-tensors pack-quantized): `data` is row 0 of the view, `ld`
 * int32 words per row, and c0 the view's first column within those rows; with
 * c = c0 + j, element (i, j) is q * gscale[i * scale_ld + c / group], where
 * q = ((data[i * ld + c / 8] >> 4 (c % 8)) & 15) - 8 (lowest column in the
 * lowest nibble). q * scale is exact in float32 and is never rounded to bf16.
 *
 * INT8 (symmetric, per output channel or per group): as INT4, `data` is row 0 of
 * the view and c0 its first column, with `ld` int8 elements per row: element
 * (i, j) is ((const int8_t *)data)[i * ld + c] * gscale[i * scale_ld + c / group],
 * c = c0 + j (q in [-128, 127], exact in float32). Per channel, group is the
 * parent's columns, so every column of a row shares gscale[i * scale_ld]. */
typedef struct fw_weight {
    fw_wtype type;
    int64_t rows, cols;
    int64_t ld;
    const void *data;
    const float *scale;
    int64_t scale_ld;
    int64_t r0, c0;
    const uint16_t *gscale;    /* INT4, INT8: bf16 group scales */
    int64_t group;             /* INT4, INT8: columns per scale (INT4: a multiple of 8) */
} fw_weight;

/* A view of rows [row0, row0 + nrows) and columns [col0, col0 + ncols) of w. */
fw_weight fw_weight_view(const fw_weight *w, int64_t row0, int64_t nrows, int64_t col0, int64_t ncols);
/* The dequantized value of element (i, j) (slow; for tests and references). */
float fw_weight_get(const fw_weight *w, int64_t i, int64_t j);

/* out[rows, cols] = w as bf16 (each q * scale rounded to nearest even). The GPU's
 * interim path for INT4 and INT8 until it has their kernels; the CPU never rounds. */
void fw_weight_to_bf16(const fw_weight *w, uint16_t *out);

/* MoE routing parameters (DeepSeek-V3 noaux_tc with sigmoid scores). */
typedef struct fw_route_params {
    int n_experts;            /* E */
    int top_k;                /* experts per token */
    int n_group, topk_group;  /* group-limited selection */
    bool norm_topk_prob;
    float routed_scaling_factor;
} fw_route_params;

typedef struct fw_ops {
    const char *name;

    /* y[T, D] = rows ids[t] - vocab0 of emb (emb.rows = the vocabulary shard);
     * ids outside [vocab0, vocab0 + emb.rows) give zero rows. */
    void (*embed)(float *y, const fw_weight *emb, const int32_t *ids, int64_t T, int64_t vocab0);

    /* y[T, D] = x / sqrt(mean(x^2) + eps) * w. y may equal x. */
    void (*rmsnorm)(float *y, const float *x, const float *w, int64_t T, int64_t D, float eps);

    /* y[T, W.rows] = x[T, W.cols] . W^T  (x rows have stride W.cols, y rows W.rows). */
    void (*matmul)(float *y, const float *x, const fw_weight *w, int64_t T);

    /* y[T, W.cols] = x[T, W.rows] . W  (the transposed use; absorbed MLA's q . W_UK). */
    void (*matmul_xw)(float *y, const float *x, const fw_weight *w, int64_t T);

    /* Rotates interleaved pairs (v[2i], v[2i+1]) of `dim` values in place:
     * for token t and vector n, v = x + t * tok_stride + n * vec_stride;
     * y[2i] = v[2i] cos - v[2i+1] sin, y[2i+1] = v[2i] sin + v[2i+1] cos, with
     * cos = cos_tab[t * dim/2 + i], sin = sin_tab[t * dim/2 + i]. */
    void (*rope)(float *x, int64_t T, int64_t n_vec, int64_t tok_stride, int64_t vec_stride,
                 int64_t dim, const float *cos_tab, const float *sin_tab);

    /* Naive MLA attention (prefill): o[T, H, dv] from q[T, H, dqk], k[S, H, dqk],
     * v[S, H, dv]. The T queries are the last T of S positions: query t sees keys
     * [0, S - T + t]. Softmax in float32 with `scale`. */
    void (*attn_naive)(float *o, const float *q, const float *k, const float *v,
                       int64_t T, int64_t S, int64_t H, int64_t dqk, int64_t dv, float scale);

    /* Absorbed MLA attention (decode) over the latent cache: scores
     * (q_lat[t,h] . c[s] + q_pe[t,h] . pe[s]) * scale, causal as attn_naive;
     * o_lat[T, H, C] = softmax-weighted sum of c[s]. c: [S, C] with row stride
     * c_stride; pe: [S, R] with row stride pe_stride. */
    void (*attn_absorbed)(float *o_lat, const float *q_lat, const float *q_pe,
                          const float *c, int64_t c_stride, const float *pe, int64_t pe_stride,
                          int64_t T, int64_t S, int64_t H, int64_t C, int64_t R, float scale);

    /* y[n] = silu(g[n]) * u[n]. y may equal g. */
    void (*silu_mul)(float *y, const float *g, const float *u, int64_t n);

    /* y[n] += x[n]. */
    void (*add)(float *y, const float *x, int64_t n);

    /* MoE router on router logits[T, E]: s = sigmoid(logits); selection by
     * s + bias with group-limited top-k; weights = s at the chosen experts,
     * normalised if norm_topk_prob, times routed_scaling_factor.
     * ids[T, top_k], w[T, top_k]. */
    void (*route)(int32_t *ids, float *w, const float *logits, const float *bias,
                  int64_t T, const fw_route_params *p);
} fw_ops;

/* The plain-loop reference ops (the truth for every other backend). */
const fw_ops *fw_ops_cpu_ref(void);
/* The fast CPU ops: SIMD picked at run time from the CPU's features, OpenMP threads. */
const fw_ops *fw_ops_cpu_fast(void);

/* Element conversions shared by the CPU kernels and tests. */
float fw_bf16_to_f32(uint16_t h);
uint16_t fw_f32_to_bf16(float f);          /* round to nearest even */
float fw_fp8e4m3_to_f32(uint8_t b);
/* The INT4 value in column k (0..7) of a packed word: -8..7. */
static inline int fw_int4_get(uint32_t word, int k) { return (int)((word >> (4 * k)) & 15u) - 8; }
uint8_t fw_f32_to_fp8e4m3(float f);        /* round to nearest even, saturate at 448 */

#endif
