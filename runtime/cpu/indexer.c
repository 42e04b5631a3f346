#include "runtime/cpu/indexer.h"

#include <math.h>
#include <string.h>

#include "kernels/ops.h"

/* Rotates pairs (v[i], v[i + R/2]) (the indexer's RoPE; MLA's pairs are interleaved). */
static void rope_half(float *v, int64_t R, const float *cs, const float *sn) {
    const int64_t h = R / 2;
    for (int64_t i = 0; i < h; i++) {
        float a = v[i], b = v[i + h];
        v[i] = a * cs[i] - b * sn[i];
        v[i + h] = a * sn[i] + b * cs[i];
    }
}

void fw_indexer_project(const fw_model *m, const fw_layer *L, const float *x, const float *cq, int64_t T,
                        const float *cos_tab, const float *sin_tab, float *qi, float *w, float *keys,
                        int64_t k_stride) {
    const fw_config *c = &m->cfg;
    const int64_t ih = c->index_n_heads, id = c->index_head_dim, R = c->qk_rope_head_dim;
    m->ops->matmul(qi, cq, &L->ix_wq_b, T);
    m->ops->matmul(w, x, &L->ix_w, T);
    const float wscale = 1.0f / sqrtf((float)ih);
    for (int64_t i = 0; i < T * ih; i++) w[i] *= wscale;
    for (int64_t t = 0; t < T; t++) {
        const float *cs = cos_tab + t * R / 2, *sn = sin_tab + t * R / 2;
        for (int64_t h = 0; h < ih; h++) rope_half(qi + (t * ih + h) * id, R, cs, sn);
        /* wk's output straight into the cache row, then LayerNorm (eps 1e-6, with bias) in place */
        float *k = keys + t * k_stride;
        m->ops->matmul(k, x + t * c->hidden_size, &L->ix_wk, 1);
        double mu = 0, var = 0;
        for (int64_t d = 0; d < id; d++) mu += k[d];
        mu /= (double)id;
        for (int64_t d = 0; d < id; d++) var += (k[d] - mu) * (k[d] - mu);
        const float inv = (float)(1.0 / sqrt(var / (double)id + 1e-6));
        for (int64_t d = 0; d < id; d++) k[d] = (float)(k[d] - mu) * inv * L->ix_k_norm[d] + L->ix_k_bias[d];
        rope_half(k, R, cs, sn);
    }
}

void fw_indexer_scores(const fw_model *m, const float *qi, const float *w, const float *keys, int64_t k_stride,
                       int64_t p0, int64_t nq, uint16_t *keys16, float *logits, float *score, int64_t ld) {
    const fw_config *c = &m->cfg;
    const int64_t ih = c->index_n_heads, id = c->index_head_dim, S = p0 + nq;
    fw_weight kw = {.type = FW_WTYPE_F32, .rows = S, .cols = id, .ld = k_stride, .data = keys};
    if (keys16) {
        for (int64_t s = 0; s < S; s++)
            for (int64_t d = 0; d < id; d++) keys16[s * id + d] = fw_f32_to_bf16(keys[s * k_stride + d]);
        kw = (fw_weight){.type = FW_WTYPE_BF16, .rows = S, .cols = id, .ld = id, .data = keys16};
    }
    m->ops->matmul(logits, qi, &kw, nq * ih); /* (nq * ih, S) */
    const float scale = 1.0f / sqrtf((float)id);
#pragma omp parallel for schedule(static) if (nq > 1)
    for (int64_t q = 0; q < nq; q++) {
        float *row = score + q * ld;
        const int64_t n = p0 + q + 1;
        for (int64_t s = 0; s < n; s++) row[s] = 0;
        for (int64_t h = 0; h < ih; h++) {
            const float *lg = logits + (q * ih + h) * S, wh = w[q * ih + h];
            for (int64_t s = 0; s < n; s++) {
                const float d = lg[s] * scale;
                row[s] += d > 0 ? wh * d : 0.0f;
            }
        }
    }
}

/* The k-th largest of a[0..n) (1-based k), reordering a (Hoare's selection). */
static float kth_largest(float *a, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float pivot = a[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] > pivot) i++;
            while (a[j] < pivot) j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j], a[j] = t;
                i++, j--;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return a[want];
    }
    return a[want];
}

int64_t fw_indexer_topk(const float *score, int64_t S, int64_t k, float *tmp, int32_t *ids) {
    if (S <= k) {
        for (int64_t s = 0; s < S; s++) ids[s] = (int32_t)s;
        return S;
    }
    memcpy(tmp, score, (size_t)S * sizeof(float));
    const float thr = kth_largest(tmp, S, k);
    int64_t above = 0;
    for (int64_t s = 0; s < S; s++) above += score[s] > thr;
    int64_t ties = k - above, n = 0;   /* positions equal to the threshold that still fit */
    for (int64_t s = 0; s < S; s++)
        if (score[s] > thr || (score[s] == thr && ties-- > 0)) ids[n++] = (int32_t)s;
    return n;
}

float fw_indexer_fp8_round(float *v, int64_t id, uint8_t *q8) {
    for (int64_t h = 1; h < id; h *= 2)
        for (int64_t i = 0; i < id; i += 2 * h)
            for (int64_t j = i; j < i + h; j++) {
                const float a = v[j], b = v[j + h];
                v[j] = a + b, v[j + h] = a - b;
            }
    const float norm = 1.0f / sqrtf((float)id);
    float amax = 0;
    for (int64_t i = 0; i < id; i++) {
        v[i] *= norm;
        amax = fmaxf(amax, fabsf(v[i]));
    }
    int ex; /* x = m 2^ex, m in [0.5, 1): ceil(log2 x) is ex, or ex - 1 for m = 0.5 */
    const float m = frexpf(fmaxf(amax, 1e-4f) / 448.0f, &ex);
    const float scale = ldexpf(1.0f, m == 0.5f ? ex - 1 : ex);
    for (int64_t i = 0; i < id; i++) {
        const uint8_t b = fw_f32_to_fp8e4m3(v[i] / scale);
        if (q8) q8[i] = b;
        v[i] = fw_fp8e4m3_to_f32(b) * scale;
    }
    return scale;
}
