/* Round-to-nearest symmetric quantization of a float32 weight into furrow's INT4
 * and INT8 forms (io/FORMAT.md), for `convert --quantize`.
 *
 * As compressed-tensors (llm-compressor's min-max observer; calculate_qparams and
 * calculate_range in compressed_tensors/quantization/utils/helpers.py, _quantize
 * in lifecycle/forward.py), per row and group of G columns:
 *   scale = max(absmax / ((qmax - qmin) / 2), FLT_EPSILON)
 *         = absmax / 7.5 for INT4 ([-8, 7]), absmax / 127.5 for INT8 ([-128, 127]),
 * rounded to bf16 (nearest even) first, then
 *   q = clamp(round_half_even(w / scale), qmin, qmax)
 * with the rounded scale, so q * stored scale is exactly what a reader computes.
 * The largest positive value of a group lands on 7.5 (127.5) and is clamped to 7
 * (127); an all-zero group gets FLT_EPSILON and dequantizes to 0. */
#ifndef FW_IO_QUANTIZE_H
#define FW_IO_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>

/* What a quantization cost: sums over the tensor of (w - q * scale)^2 and w^2
 * (the relative RMS error is sqrt(err2 / ref2)). */
typedef struct fw_quant_error {
    double err2, ref2;
} fw_quant_error;

/* The bf16 scale of a group whose largest magnitude is amax, for integers in
 * [qmin, qmax]. */
uint16_t fw_quant_scale(float amax, int qmin, int qmax);

/* w [rows, cols] row-major, G dividing cols (INT4: also a multiple of 8):
 * packed [rows, cols / 8] (column 8j + i of a row in bits 4i..4i+3 of word j, as
 * q + 8), scale [rows, cols / G]. false when w holds NaN or an infinity. */
bool fw_quantize_int4(const float *w, int64_t rows, int64_t cols, int64_t G, uint32_t *packed, uint16_t *scale,
                      fw_quant_error *err);
/* Likewise into q [rows, cols] int8; G = cols: one scale per output channel. */
bool fw_quantize_int8(const float *w, int64_t rows, int64_t cols, int64_t G, int8_t *q, uint16_t *scale,
                      fw_quant_error *err);

#endif
