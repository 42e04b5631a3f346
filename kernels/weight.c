/* Weight views, element access (f32, bf16, fp8 e4m3fn, int4, int8) and the element
 * conversions (bf16, fp8 e4m3fn <-> f32). */
#include "kernels/ops.h"

#include <math.h>
#include <string.h>

fw_weight fw_weight_view(const fw_weight *w, int64_t row0, int64_t nrows, int64_t col0, int64_t ncols) {
    fw_weight v = *w;
    v.rows = nrows;
    v.cols = ncols;
    if (fw_wtype_grouped(w->type)) {  /* columns counted in c0 (an INT4 offset may fall inside a word) */
        v.data = (const char *)w->data + (size_t)(row0 * w->ld) * fw_wtype_size(w->type);
        v.gscale = w->gscale + row0 * w->scale_ld;
        v.r0 = w->r0 + row0;
        v.c0 = w->c0 + col0;
        return v;
    }
    v.data = (const char *)w->data + (size_t)(row0 * w->ld + col0) * fw_wtype_size(w->type);
    v.r0 = w->r0 + row0;
    v.c0 = w->c0 + col0;
    return v;
}

float fw_weight_get(const fw_weight *w, int64_t i, int64_t j) {
    int64_t off = i * w->ld + j;
    switch (w->type) {
    case FW_WTYPE_F32: return ((const float *)w->data)[off];
    case FW_WTYPE_BF16: return fw_bf16_to_f32(((const uint16_t *)w->data)[off]);
    case FW_WTYPE_FP8: {
        float s = w->scale[((w->r0 + i) / FW_FP8_BLOCK) * w->scale_ld + (w->c0 + j) / FW_FP8_BLOCK];
        return fw_fp8e4m3_to_f32(((const uint8_t *)w->data)[off]) * s;
    }
    case FW_WTYPE_INT4: {
        const int64_t c = w->c0 + j;
        uint32_t word = ((const uint32_t *)w->data)[i * w->ld + c / 8];
        return (float)fw_int4_get(word, (int)(c % 8)) * fw_bf16_to_f32(w->gscale[i * w->scale_ld + c / w->group]);
    }
    case FW_WTYPE_INT8: {
        const int64_t c = w->c0 + j;
        return (float)((const int8_t *)w->data)[i * w->ld + c] * fw_bf16_to_f32(w->gscale[i * w->scale_ld + c / w->group]);
    }
    }
    return NAN;
}

void fw_weight_to_bf16(const fw_weight *w, uint16_t *out) {
    for (int64_t i = 0; i < w->rows; i++)
        for (int64_t j = 0; j < w->cols; j++) out[i * w->cols + j] = fw_f32_to_bf16(fw_weight_get(w, i, j));
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float fw_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t fw_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    /* Round to nearest, ties to even; overflow carries into the exponent (to inf). */
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float fw_fp8e4m3_to_f32(uint8_t b) {
    int sign = b >> 7, e = (b >> 3) & 15, m = b & 7;
    float v;
    if (e == 15 && m == 7) return NAN;  /* e4m3fn: no infinities, only this NaN */
    if (e == 0) v = ldexpf((float)m, -9);  /* subnormal: m/8 * 2^-6 */
    else v = ldexpf(1.0f + m / 8.0f, e - 7);
    return sign ? -v : v;
}

uint8_t fw_f32_to_fp8e4m3(float f) {
    uint32_t u = f32_bits(f);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80);
    float a = fabsf(f);
    if (isnan(f)) return sign | 0x7F;
    if (a >= 448.0f) return sign | 0x7E;  /* saturate, inf included */
    if (a < 0x1p-6f) {
        /* Subnormal range: a multiple of 2^-9; rintf rounds ties to even. A result
         * of 8 is the smallest normal, 0x08, so the code is the same. */
        return sign | (uint8_t)rintf(a * 512.0f);
    }
    uint32_t ua = f32_bits(a);
    ua += 0x7FFFFu + ((ua >> 20) & 1u);  /* keep 3 mantissa bits, ties to even */
    int e = (int)(ua >> 23) - 127 + 7;
    uint32_t code = ((uint32_t)e << 3) | ((ua >> 20) & 7u);
    if (code > 0x7E) code = 0x7E;
    return sign | (uint8_t)code;
}
