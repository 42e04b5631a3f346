/* The round-to-nearest quantizer of io/quantize.h. */
#include "io/quantize.h"

#include <float.h>
#include <math.h>

#include "kernels/ops.h"

uint16_t fw_quant_scale(float amax, int qmin, int qmax) {
    float s = amax / ((float)(qmax - qmin) / 2.0f);
    return fw_f32_to_bf16(s > FLT_EPSILON ? s : FLT_EPSILON);
}

/* One row into INT8 values q8[cols] or INT4 words p4[cols / 8], and its scales;
 * false on a non-finite value. */
static bool quantize_row(const float *w, int64_t cols, int64_t G, int bits, int8_t *q8, uint32_t *p4,
                         uint16_t *scale, fw_quant_error *err) {
    const int qmin = -(1 << (bits - 1)), qmax = (1 << (bits - 1)) - 1;
    if (p4)
        for (int64_t j = 0; j < cols / 8; j++) p4[j] = 0;
    for (int64_t g = 0; g < cols / G; g++) {
        const float *x = w + g * G;
        float amax = 0;
        for (int64_t j = 0; j < G; j++) {
            if (!isfinite(x[j])) return false;
            amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        }
        scale[g] = fw_quant_scale(amax, qmin, qmax);
        const float s = fw_bf16_to_f32(scale[g]);
        for (int64_t j = 0; j < G; j++) {
            float v = rintf(x[j] / s);   /* nearest, ties to even (the default rounding mode), as torch.round */
            v = v < (float)qmin ? (float)qmin : v > (float)qmax ? (float)qmax : v;
            const int64_t c = g * G + j;
            if (p4) p4[c / 8] |= (uint32_t)((int)v + 8) << (4 * (c % 8));
            else q8[c] = (int8_t)v;
            const double d = (double)x[j] - (double)(v * s);
            err->err2 += d * d;
            err->ref2 += (double)x[j] * x[j];
        }
    }
    return true;
}

/* Rows in parallel (each row's result is its own), the error sums reduced. */
static bool quantize(const float *w, int64_t rows, int64_t cols, int64_t G, int bits, void *values, uint16_t *scale,
                     fw_quant_error *err) {
    double e2 = 0, r2 = 0;
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : e2, r2) reduction(| : bad) if (rows * cols >= (1 << 18))
    for (int64_t r = 0; r < rows; r++) {
        fw_quant_error re = {0, 0};
        bad |= !quantize_row(w + r * cols, cols, G, bits, bits == 8 ? (int8_t *)values + r * cols : NULL,
                             bits == 4 ? (uint32_t *)values + r * (cols / 8) : NULL, scale + r * (cols / G), &re);
        e2 += re.err2, r2 += re.ref2;
    }
    err->err2 = e2, err->ref2 = r2;
    return bad == 0;
}

bool fw_quantize_int4(const float *w, int64_t rows, int64_t cols, int64_t G, uint32_t *packed, uint16_t *scale,
                      fw_quant_error *err) {
    return quantize(w, rows, cols, G, 4, packed, scale, err);
}

bool fw_quantize_int8(const float *w, int64_t rows, int64_t cols, int64_t G, int8_t *q, uint16_t *scale,
                      fw_quant_error *err) {
    return quantize(w, rows, cols, G, 8, q, scale, err);
}
