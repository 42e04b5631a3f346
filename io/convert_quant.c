/* Quantizing a weight at convert time (io/convert_quant.h). */
#include "io/convert_quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/quantize.h"

int fw_cq_check(const fw_quant_spec *q, const fw_model_tensor *m, fw_err *e) {
    if (m->ndim != 2) return fw_errf(e, "tensor '%s' is not a matrix and cannot be quantized", m->name);
    char spec[64];
    fw_quant_spec_str(q, spec, sizeof spec);
    if (q->type == FW_WTYPE_INT4 && m->shape[1] % q->group)
        return fw_errf(e, "tensor '%s' [%lld, %lld]: its %lld input columns are not a multiple of the group size %lld "
                          "(quantization %s); choose a group that divides them", m->name, (long long)m->shape[0],
                       (long long)m->shape[1], (long long)m->shape[1], (long long)q->group, spec);
    return FW_OK;
}

/* t as float32 [rows, cols]: BF16 and F32 widened, FP8 times its block scale
 * (safetensors data may be unaligned: read by memcpy). */
static void widen(const fw_st_tensor *t, const fw_st_tensor *scale_inv, float *out) {
    const int64_t rows = t->shape[0], cols = t->shape[1];
    const char *d = t->data;
    float lut[256];
    if (t->dtype == FW_DTYPE_F8_E4M3)
        for (int b = 0; b < 256; b++) lut[b] = fw_fp8e4m3_to_f32((uint8_t)b);
    const int64_t sld = scale_inv ? scale_inv->shape[1] : 0;
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 18))
    for (int64_t r = 0; r < rows; r++) {
        float *o = out + r * cols;
        if (t->dtype == FW_DTYPE_F32) {
            memcpy(o, d + (size_t)(r * cols) * 4, (size_t)cols * 4);
        } else if (t->dtype == FW_DTYPE_BF16) {
            for (int64_t c = 0; c < cols; c++) {
                uint16_t h;
                memcpy(&h, d + (size_t)(r * cols + c) * 2, 2);
                o[c] = fw_bf16_to_f32(h);
            }
        } else { /* F8_E4M3: fp8 * scale_inv[r / 128][c / 128] in float32, as fw_weight_get */
            for (int64_t c = 0; c < cols; c++) {
                float s;
                memcpy(&s, (const char *)scale_inv->data + (size_t)((r / FW_FP8_BLOCK) * sld + c / FW_FP8_BLOCK) * 4, 4);
                o[c] = lut[(uint8_t)d[r * cols + c]] * s;
            }
        }
    }
}

int fw_cq_write(fw_ckpt_writer *w, const fw_quant_spec *q, const fw_model_tensor *m, const fw_st_tensor *t,
                const fw_st_tensor *scale_inv, const char *src, fw_cq_acc *acc, fw_err *e) {
    const int64_t rows = m->shape[0], cols = m->shape[1], G = q->type == FW_WTYPE_INT4 ? q->group : cols;
    const size_t vbytes = q->type == FW_WTYPE_INT4 ? (size_t)(rows * cols / 2) : (size_t)(rows * cols);
    float *x = malloc((size_t)(rows * cols) * sizeof *x + 1);
    void *values = malloc(vbytes + 1);
    uint16_t *scale = malloc((size_t)(rows * (cols / G)) * 2 + 2);
    if (acc->n == acc->cap) {
        int64_t cap = acc->cap ? 2 * acc->cap : 256;
        double *r = realloc(acc->rel, (size_t)cap * sizeof *r);
        if (r) acc->rel = r, acc->cap = cap;
    }
    int rc = FW_OK;
    fw_quant_error qe = {0, 0};
    if (!x || !values || !scale || acc->n == acc->cap) {
        rc = fw_errf(e, "tensor '%s' [%lld, %lld]: out of memory quantizing it", m->name, (long long)rows,
                     (long long)cols);
    } else {
        widen(t, scale_inv, x);
        bool ok = q->type == FW_WTYPE_INT4 ? fw_quantize_int4(x, rows, cols, G, values, scale, &qe)
                                           : fw_quantize_int8(x, rows, cols, G, values, scale, &qe);
        if (!ok)
            rc = fw_errf(e, "tensor '%s' in %s holds NaN or an infinity%s: it cannot be quantized", m->name, src,
                         scale_inv ? " (after its block scales)" : "");
        else if (q->type == FW_WTYPE_INT4)
            rc = fw_ckpt_write_int4(w, m->name, m->shape, G, values, scale, e);
        else
            rc = fw_ckpt_write_int8(w, m->name, m->shape, G, values, scale, e);
    }
    free(x);
    free(values);
    free(scale);
    if (rc != FW_OK) return rc;
    const double rel = qe.ref2 > 0 ? sqrt(qe.err2 / qe.ref2) : 0.0;
    acc->rel[acc->n++] = rel;
    fw_quant_summary *s = &acc->sum;
    if (s->tensors++ == 0 || rel > s->rel_max) {
        s->rel_max = rel;
        snprintf(s->worst, sizeof s->worst, "%s", m->name);
    }
    s->bytes_before += (int64_t)t->nbytes + (scale_inv ? (int64_t)scale_inv->nbytes : 0);
    s->bytes_after += (int64_t)vbytes + rows * (cols / G) * 2;
    return FW_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void fw_cq_finish(fw_cq_acc *acc) {
    if (acc->n > 0) {
        qsort(acc->rel, (size_t)acc->n, sizeof *acc->rel, cmp_double);
        acc->sum.rel_min = acc->rel[0];
        acc->sum.rel_median = acc->n % 2 ? acc->rel[acc->n / 2] : (acc->rel[acc->n / 2 - 1] + acc->rel[acc->n / 2]) / 2;
    }
    free(acc->rel);
    acc->rel = NULL;
    acc->n = acc->cap = 0;
}
