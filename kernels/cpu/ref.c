/* The reference CPU ops: plain loops, float32 data, double accumulators where a
 * long sum is involved. Every other backend is checked against these, so clarity
 * wins over speed here. */
#include "kernels/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Widens row i of w into out[w->cols]. */
static void widen_row(float *out, const fw_weight *w, int64_t i) {
    for (int64_t j = 0; j < w->cols; j++) out[j] = fw_weight_get(w, i, j);
}

static void ref_embed(float *y, const fw_weight *emb, const int32_t *ids, int64_t T, int64_t vocab0) {
    int64_t D = emb->cols;
    for (int64_t t = 0; t < T; t++) {
        int64_t r = (int64_t)ids[t] - vocab0;
        if (r >= 0 && r < emb->rows) widen_row(y + t * D, emb, r);
        else memset(y + t * D, 0, (size_t)D * sizeof(float));
    }
}

static void ref_rmsnorm(float *y, const float *x, const float *w, int64_t T, int64_t D, float eps) {
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * D;
        float *yt = y + t * D;
        double ss = 0;
        for (int64_t d = 0; d < D; d++) ss += (double)xt[d] * xt[d];
        float r = (float)(1.0 / sqrt(ss / (double)D + (double)eps));
        for (int64_t d = 0; d < D; d++) yt[d] = xt[d] * r * w[d];
    }
}

static void ref_matmul(float *y, const float *x, const fw_weight *w, int64_t T) {
    int64_t N = w->rows, K = w->cols;
    float *row = malloc((size_t)(K > 0 ? K : 1) * sizeof(float));  /* (K) */
    if (!row) return;
    for (int64_t i = 0; i < N; i++) {
        widen_row(row, w, i);
        for (int64_t t = 0; t < T; t++) {
            const float *xt = x + t * K;
            double acc = 0;
            for (int64_t j = 0; j < K; j++) acc += (double)xt[j] * row[j];
            y[t * N + i] = (float)acc;
        }
    }
    free(row);
}

static void ref_matmul_xw(float *y, const float *x, const fw_weight *w, int64_t T) {
    int64_t K = w->rows, N = w->cols;
    float *row = malloc((size_t)(N > 0 ? N : 1) * sizeof(float));         /* (N) */
    double *acc = calloc((size_t)(T * N > 0 ? T * N : 1), sizeof(double)); /* (T, N) */
    if (!row || !acc) {
        free(row);
        free(acc);
        return;
    }
    for (int64_t i = 0; i < K; i++) {
        widen_row(row, w, i);
        for (int64_t t = 0; t < T; t++) {
            double xi = x[t * K + i];
            for (int64_t j = 0; j < N; j++) acc[t * N + j] += xi * row[j];
        }
    }
    for (int64_t n = 0; n < T * N; n++) y[n] = (float)acc[n];
    free(row);
    free(acc);
}

static void ref_rope(float *x, int64_t T, int64_t n_vec, int64_t tok_stride, int64_t vec_stride,
                     int64_t dim, const float *cos_tab, const float *sin_tab) {
    int64_t half = dim / 2;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t n = 0; n < n_vec; n++) {
            float *v = x + t * tok_stride + n * vec_stride;
            for (int64_t i = 0; i < half; i++) {
                float c = cos_tab[t * half + i], s = sin_tab[t * half + i];
                float a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * c - b * s;
                v[2 * i + 1] = a * s + b * c;
            }
        }
    }
}

/* In place: p[0..n) = softmax(p). */
static void softmax(float *p, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) mx = p[i] > mx ? p[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        p[i] = expf(p[i] - mx);
        sum += p[i];
    }
    for (int64_t i = 0; i < n; i++) p[i] = (float)(p[i] / sum);
}

static void ref_attn_naive(float *o, const float *q, const float *k, const float *v,
                           int64_t T, int64_t S, int64_t H, int64_t dqk, int64_t dv, float scale) {
    float *p = malloc((size_t)(S > 0 ? S : 1) * sizeof(float)); /* (S) */
    if (!p) return;
    for (int64_t t = 0; t < T; t++) {
        int64_t n = S - T + t + 1; /* keys [0, S - T + t] */
        for (int64_t h = 0; h < H; h++) {
            const float *qt = q + (t * H + h) * dqk;
            float *ot = o + (t * H + h) * dv;
            for (int64_t s = 0; s < n; s++) {
                const float *ks = k + (s * H + h) * dqk;
                double acc = 0;
                for (int64_t d = 0; d < dqk; d++) acc += (double)qt[d] * ks[d];
                p[s] = (float)acc * scale;
            }
            softmax(p, n);
            for (int64_t d = 0; d < dv; d++) {
                double acc = 0;
                for (int64_t s = 0; s < n; s++) acc += (double)p[s] * v[(s * H + h) * dv + d];
                ot[d] = (float)acc;
            }
        }
    }
    free(p);
}

static void ref_attn_absorbed(float *o_lat, const float *q_lat, const float *q_pe,
                              const float *c, int64_t c_stride, const float *pe, int64_t pe_stride,
                              int64_t T, int64_t S, int64_t H, int64_t C, int64_t R, float scale) {
    float *p = malloc((size_t)(S > 0 ? S : 1) * sizeof(float)); /* (S) */
    if (!p) return;
    for (int64_t t = 0; t < T; t++) {
        int64_t n = S - T + t + 1;
        for (int64_t h = 0; h < H; h++) {
            const float *ql = q_lat + (t * H + h) * C;
            const float *qp = q_pe + (t * H + h) * R;
            float *ot = o_lat + (t * H + h) * C;
            for (int64_t s = 0; s < n; s++) {
                double acc = 0;
                for (int64_t d = 0; d < C; d++) acc += (double)ql[d] * c[s * c_stride + d];
                for (int64_t d = 0; d < R; d++) acc += (double)qp[d] * pe[s * pe_stride + d];
                p[s] = (float)acc * scale;
            }
            softmax(p, n);
            for (int64_t d = 0; d < C; d++) {
                double acc = 0;
                for (int64_t s = 0; s < n; s++) acc += (double)p[s] * c[s * c_stride + d];
                ot[d] = (float)acc;
            }
        }
    }
    free(p);
}

static void ref_silu_mul(float *y, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void ref_add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

/* Index of the largest v[i] with !taken[i] (ties: lowest index); -1 if none. */
static int argmax_free(const float *v, const bool *taken, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!taken[i] && (best < 0 || v[i] > v[best])) best = i;
    return best;
}

static void ref_route(int32_t *ids, float *w, const float *logits, const float *bias,
                      int64_t T, const fw_route_params *p) {
    int E = p->n_experts, K = p->top_k;
    /* n_group <= 1 (or more groups than experts) means no group limiting. */
    bool grouped = p->n_group > 1 && p->n_group <= E;
    int G = grouped ? p->n_group : 1;
    int TG = grouped ? p->topk_group : 1;
    int gs = E / G;
    float *s = malloc((size_t)E * sizeof(float));      /* sigmoid scores (E) */
    float *sb = malloc((size_t)E * sizeof(float));     /* biased, for selection (E) */
    float *gscore = malloc((size_t)G * sizeof(float)); /* (G) */
    bool *taken = malloc((size_t)(E > G ? E : G) * sizeof(bool));
    bool *keep = malloc((size_t)G * sizeof(bool));
    if (!s || !sb || !gscore || !taken || !keep) goto out;
    for (int64_t t = 0; t < T; t++) {
        for (int e = 0; e < E; e++) {
            s[e] = 1.0f / (1.0f + expf(-logits[t * E + e]));
            sb[e] = s[e] + (bias ? bias[e] : 0.0f);
        }
        /* Group score: the sum of the group's two best biased scores. */
        for (int g = 0; g < G; g++) {
            memset(taken, 0, (size_t)gs * sizeof(bool));
            float sum = 0;
            for (int r = 0; r < 2 && r < gs; r++) {
                int b = argmax_free(sb + g * gs, taken, gs);
                taken[b] = true;
                sum += sb[g * gs + b];
            }
            gscore[g] = sum;
        }
        memset(taken, 0, (size_t)G * sizeof(bool));
        memset(keep, 0, (size_t)G * sizeof(bool));
        for (int r = 0; r < TG && r < G; r++) {
            int g = argmax_free(gscore, taken, G);
            taken[g] = keep[g] = true;
        }
        /* Experts of dropped groups are excluded from the top-k. */
        for (int e = 0; e < E; e++) taken[e] = e / gs >= G || !keep[e / gs];
        float wsum = 0;
        for (int k = 0; k < K; k++) {
            int e = argmax_free(sb, taken, E);
            if (e < 0) { /* fewer candidates than top_k: pad harmlessly */
                ids[t * K + k] = 0;
                w[t * K + k] = 0;
                continue;
            }
            taken[e] = true;
            ids[t * K + k] = e;
            w[t * K + k] = s[e];
            wsum += s[e];
        }
        for (int k = 0; k < K; k++) {
            float wk = w[t * K + k];
            if (p->norm_topk_prob) wk /= wsum + 1e-20f;
            w[t * K + k] = wk * p->routed_scaling_factor;
        }
    }
out:
    free(s);
    free(sb);
    free(gscore);
    free(taken);
    free(keep);
}

static const fw_ops ref_ops = {
    .name = "cpu-ref",
    .embed = ref_embed,
    .rmsnorm = ref_rmsnorm,
    .matmul = ref_matmul,
    .matmul_xw = ref_matmul_xw,
    .rope = ref_rope,
    .attn_naive = ref_attn_naive,
    .attn_absorbed = ref_attn_absorbed,
    .silu_mul = ref_silu_mul,
    .add = ref_add,
    .route = ref_route,
};

const fw_ops *fw_ops_cpu_ref(void) { return &ref_ops; }
