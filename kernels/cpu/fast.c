/* The fast CPU ops: OpenMP threads and, where the CPU has them, AVX2/FMA/F16C
 * kernels (and AVX-512 for INT4 matmuls) picked at run time (no -march flags: each SIMD function carries its own
 * target attribute). matmul and matmul_xw live in fast_matmul.c; this file holds
 * the smaller ops and the tables. */
#include "kernels/cpu/fast.h"
#include "kernels/cpu/simd.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Below this much work (elements touched) a parallel region costs more than it saves. */
#define PAR_MIN 32768

/* ---- element-wise and per-token ops (shared by both tables) ---- */

static void fast_embed(float *y, const fw_weight *emb, const int32_t *ids, int64_t T, int64_t vocab0) {
    const int64_t D = emb->cols;
#pragma omp parallel for schedule(static) if (T * D >= PAR_MIN)
    for (int64_t t = 0; t < T; t++) {
        int64_t r = (int64_t)ids[t] - vocab0;
        if (r >= 0 && r < emb->rows) fw_cpu_widen_row(y + t * D, emb, r, 0, D);
        else memset(y + t * D, 0, (size_t)D * sizeof(float));
    }
}

static void fast_rope(float *x, int64_t T, int64_t n_vec, int64_t tok_stride, int64_t vec_stride,
                      int64_t dim, const float *cos_tab, const float *sin_tab) {
    const int64_t half = dim / 2;
#pragma omp parallel for collapse(2) schedule(static) if (T * n_vec * dim >= PAR_MIN)
    for (int64_t t = 0; t < T; t++) {
        for (int64_t n = 0; n < n_vec; n++) {
            float *v = x + t * tok_stride + n * vec_stride;
            const float *ct = cos_tab + t * half, *st = sin_tab + t * half;
            for (int64_t i = 0; i < half; i++) {
                float a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * ct[i] - b * st[i];
                v[2 * i + 1] = a * st[i] + b * ct[i];
            }
        }
    }
}

static void fast_silu_mul(float *y, const float *g, const float *u, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void fast_add(float *y, const float *x, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= 4 * PAR_MIN)
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

#define ROUTE_MAX_E 1024

/* Index of the largest v[i] with !taken[i] (ties: lowest index); -1 if none. */
static int argmax_free(const float *v, const bool *taken, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!taken[i] && (best < 0 || v[i] > v[best])) best = i;
    return best;
}

/* One token of the router, the same arithmetic as the reference (ids must agree). */
static void route_token(int32_t *ids, float *w, const float *logits, const float *bias, const fw_route_params *p) {
    const int E = p->n_experts, K = p->top_k;
    const bool grouped = p->n_group > 1 && p->n_group <= E;
    const int G = grouped ? p->n_group : 1, TG = grouped ? p->topk_group : 1;
    const int gs = E / G;
    float s[ROUTE_MAX_E], sb[ROUTE_MAX_E], gscore[ROUTE_MAX_E];
    bool taken[ROUTE_MAX_E], keep[ROUTE_MAX_E];
    for (int e = 0; e < E; e++) {
        s[e] = 1.0f / (1.0f + expf(-logits[e]));
        sb[e] = s[e] + (bias ? bias[e] : 0.0f);
    }
    for (int g = 0; g < G; g++) { /* the group's two best biased scores */
        const float *v = sb + g * gs;
        int b1 = -1, b2 = -1;
        for (int i = 0; i < gs; i++) {
            if (b1 < 0 || v[i] > v[b1]) {
                b2 = b1;
                b1 = i;
            } else if (b2 < 0 || v[i] > v[b2]) {
                b2 = i;
            }
        }
        gscore[g] = (b1 >= 0 ? v[b1] : 0.0f) + (b2 >= 0 ? v[b2] : 0.0f);
    }
    memset(taken, 0, (size_t)G * sizeof(bool));
    memset(keep, 0, (size_t)G * sizeof(bool));
    for (int r = 0; r < TG && r < G; r++) {
        int g = argmax_free(gscore, taken, G);
        taken[g] = keep[g] = true;
    }
    for (int e = 0; e < E; e++) taken[e] = e / gs >= G || !keep[e / gs];
    float wsum = 0;
    for (int k = 0; k < K; k++) {
        int e = argmax_free(sb, taken, E);
        if (e < 0) {
            ids[k] = 0;
            w[k] = 0;
            continue;
        }
        taken[e] = true;
        ids[k] = e;
        w[k] = s[e];
        wsum += s[e];
    }
    for (int k = 0; k < K; k++) {
        float wk = w[k];
        if (p->norm_topk_prob) wk /= wsum + 1e-20f;
        w[k] = wk * p->routed_scaling_factor;
    }
}

static void fast_route(int32_t *ids, float *w, const float *logits, const float *bias, int64_t T,
                       const fw_route_params *p) {
    if (p->n_experts > ROUTE_MAX_E) {
        fw_ops_cpu_ref()->route(ids, w, logits, bias, T, p);
        return;
    }
    const int64_t E = p->n_experts, K = p->top_k;
#pragma omp parallel for schedule(static) if (T * E >= PAR_MIN)
    for (int64_t t = 0; t < T; t++) route_token(ids + t * K, w + t * K, logits + t * E, bias, p);
}

/* ---- rmsnorm ---- */

static void rmsnorm_generic(float *y, const float *x, const float *w, int64_t T, int64_t D, float eps) {
#pragma omp parallel for schedule(static) if (T * D >= PAR_MIN)
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * D;
        float *yt = y + t * D;
        float ss[8] = {0};
        int64_t d = 0;
        for (; d + 8 <= D; d += 8)
            for (int l = 0; l < 8; l++) ss[l] += xt[d + l] * xt[d + l];
        for (; d < D; d++) ss[0] += xt[d] * xt[d];
        float sum = ((ss[0] + ss[1]) + (ss[2] + ss[3])) + ((ss[4] + ss[5]) + (ss[6] + ss[7]));
        float r = 1.0f / sqrtf(sum / (float)D + eps);
        for (d = 0; d < D; d++) yt[d] = xt[d] * r * w[d];
    }
}

AVX2_INLINE __m256i tail_mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

AVX2_FN static void rmsnorm_avx2(float *y, const float *x, const float *w, int64_t T, int64_t D, float eps) {
#pragma omp parallel for schedule(static) if (T * D >= PAR_MIN)
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * D;
        float *yt = y + t * D;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int64_t d = 0;
        for (; d + 16 <= D; d += 16) {
            __m256 v0 = _mm256_loadu_ps(xt + d), v1 = _mm256_loadu_ps(xt + d + 8);
            a0 = _mm256_fmadd_ps(v0, v0, a0);
            a1 = _mm256_fmadd_ps(v1, v1, a1);
        }
        for (; d < D; d += 8) {
            __m256 v = _mm256_maskload_ps(xt + d, tail_mask(D - d));
            a0 = _mm256_fmadd_ps(v, v, a0);
        }
        const float r = 1.0f / sqrtf(hsum8(_mm256_add_ps(a0, a1)) / (float)D + eps);
        const __m256 vr = _mm256_set1_ps(r);
        for (d = 0; d + 8 <= D; d += 8)
            _mm256_storeu_ps(yt + d, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xt + d), vr), _mm256_loadu_ps(w + d)));
        for (; d < D; d++) yt[d] = xt[d] * r * w[d];
    }
}

/* ---- attention ----
 * Both forms reduce to: up to 4 queries against one sequence of key rows, with
 * online softmax over blocks of ATTN_SB keys, so no S-sized buffers. A query's
 * score with key s is (qa . ka[s] + qb . kb[s]) * scale (kb optional: the rope
 * part of absorbed MLA), its output the softmax-weighted sum of v[s]. Queries
 * sharing the key rows share their loads: in the naive form 4 tokens of one head,
 * in the absorbed form 4 heads of one token (the latent cache is per token). */

#define ATTN_SB 32
#define ATTN_QB 4

typedef struct attn_job {
    float *o[ATTN_QB];        /* (dv) each */
    const float *qa[ATTN_QB]; /* (da) each */
    const float *qb[ATTN_QB]; /* (db) each */
    int64_t nkeys[ATTN_QB];   /* keys [0, nkeys) visible to each query */
    const float *ka, *kb, *v;
    int64_t ka_stride, kb_stride, v_stride;
    int64_t da, db, dv;
    float scale;
} attn_job;

/* Online-softmax update for one block: sc[0 : nb] turns into probabilities
 * relative to the new running max; returns the factor for the old sums. */
static inline float softmax_block(float *sc, int64_t nb, float *m, float *l) {
    float bm = -INFINITY;
    for (int64_t s = 0; s < nb; s++) bm = sc[s] > bm ? sc[s] : bm;
    const float mn = bm > *m ? bm : *m;
    const float alpha = *m == -INFINITY ? 0.0f : expf(*m - mn);
    float sum = 0;
    for (int64_t s = 0; s < nb; s++) {
        sc[s] = sc[s] == -INFINITY ? 0.0f : expf(sc[s] - mn);
        sum += sc[s];
    }
    *m = mn;
    *l = *l * alpha + sum;
    return alpha;
}

static float dot_generic(const float *a, const float *b, int64_t n) {
    float s[4] = {0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int l = 0; l < 4; l++) s[l] += a[i + l] * b[i + l];
    for (; i < n; i++) s[0] += a[i] * b[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

static void attn_core_generic(const attn_job *j, int nq) {
    float sc[ATTN_QB][ATTN_SB], m[ATTN_QB], l[ATTN_QB];
    int64_t nmax = 0;
    for (int q = 0; q < nq; q++) {
        memset(j->o[q], 0, (size_t)j->dv * sizeof(float));
        m[q] = -INFINITY;
        l[q] = 0;
        nmax = j->nkeys[q] > nmax ? j->nkeys[q] : nmax;
    }
    for (int64_t s0 = 0; s0 < nmax; s0 += ATTN_SB) {
        const int64_t nb = nmax - s0 < ATTN_SB ? nmax - s0 : ATTN_SB;
        for (int q = 0; q < nq; q++) {
            for (int64_t s = 0; s < nb; s++) {
                const int64_t k = s0 + s;
                if (k >= j->nkeys[q]) {
                    sc[q][s] = -INFINITY;
                    continue;
                }
                float d = dot_generic(j->qa[q], j->ka + k * j->ka_stride, j->da);
                if (j->db) d += dot_generic(j->qb[q], j->kb + k * j->kb_stride, j->db);
                sc[q][s] = d * j->scale;
            }
            const float alpha = softmax_block(sc[q], nb, &m[q], &l[q]);
            float *o = j->o[q];
            for (int64_t d = 0; d < j->dv; d++) o[d] *= alpha;
            for (int64_t s = 0; s < nb; s++) {
                const float *vs = j->v + (s0 + s) * j->v_stride;
                for (int64_t d = 0; d < j->dv; d++) o[d] += sc[q][s] * vs[d];
            }
        }
    }
    for (int q = 0; q < nq; q++) {
        const float inv = l[q] > 0 ? 1.0f / l[q] : 0.0f;
        for (int64_t d = 0; d < j->dv; d++) j->o[q][d] *= inv;
    }
}

/* exp(x) to about 2 ulp (Cephes' expf: 2^n times a degree-5 polynomial on
 * [-ln2/2, ln2/2]); below the normal range (masked scores: -inf) it gives 0. */
AVX2_INLINE __m256 exp256(__m256 x) {
    const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3365478515625f), _CMP_LT_OQ);
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f)), _mm256_set1_ps(-87.3365478515625f));
    __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(tiny, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/* softmax_block with the exponentials 8 at a time; sc has room for ATTN_SB. */
AVX2_FN static float softmax_block_avx2(float *sc, int64_t nb, float *m, float *l) {
    for (int64_t s = nb; s < ((nb + 7) & ~(int64_t)7); s++) sc[s] = -INFINITY; /* pad: exp gives 0 */
    float bm = -INFINITY;
    for (int64_t s = 0; s < nb; s++) bm = sc[s] > bm ? sc[s] : bm;
    const float mn = bm > *m ? bm : *m;
    const float alpha = *m == -INFINITY ? 0.0f : expf(*m - mn);
    *m = mn;
    if (mn == -INFINITY) { /* every key so far masked */
        for (int64_t s = 0; s < nb; s++) sc[s] = 0;
        *l = 0;
        return alpha;
    }
    const __m256 vm = _mm256_set1_ps(mn);
    __m256 sum = _mm256_setzero_ps();
    for (int64_t s = 0; s < nb; s += 8) {
        __m256 p = exp256(_mm256_sub_ps(_mm256_loadu_ps(sc + s), vm));
        _mm256_storeu_ps(sc + s, p);
        sum = _mm256_add_ps(sum, p);
    }
    *l = *l * alpha + hsum8(sum);
    return alpha;
}

/* out[q] += a[q] . b for q < NQ: one pass over b serves every query. */
AVX2_INLINE void dot_nq(float *out, const float *const *a, const float *b, int64_t n, const int NQ) {
    __m256 acc[ATTN_QB];
#pragma GCC unroll 4
    for (int q = 0; q < NQ; q++) acc[q] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 bv = _mm256_loadu_ps(b + i);
#pragma GCC unroll 4
        for (int q = 0; q < NQ; q++) acc[q] = _mm256_fmadd_ps(_mm256_loadu_ps(a[q] + i), bv, acc[q]);
    }
    if (i < n) {
        const __m256i mk = tail_mask(n - i);
        const __m256 bv = _mm256_maskload_ps(b + i, mk);
#pragma GCC unroll 4
        for (int q = 0; q < NQ; q++) acc[q] = _mm256_fmadd_ps(_mm256_maskload_ps(a[q] + i, mk), bv, acc[q]);
    }
    if (NQ == 4) {
        __m256 ab = _mm256_hadd_ps(acc[0], acc[1]), cd = _mm256_hadd_ps(acc[2], acc[3]);
        __m256 abcd = _mm256_hadd_ps(ab, cd);
        __m128 r = _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
        _mm_storeu_ps(out, _mm_add_ps(_mm_loadu_ps(out), r));
    } else {
#pragma GCC unroll 4
        for (int q = 0; q < NQ; q++) out[q] += hsum8(acc[q]);
    }
}

AVX2_INLINE void attn_core_avx2(const attn_job *j, const int NQ) {
    float sc[ATTN_QB][ATTN_SB], m[ATTN_QB], l[ATTN_QB], alpha[ATTN_QB];
    int64_t nmax = 0;
#pragma GCC unroll 4
    for (int q = 0; q < NQ; q++) {
        memset(j->o[q], 0, (size_t)j->dv * sizeof(float));
        m[q] = -INFINITY;
        l[q] = 0;
        nmax = j->nkeys[q] > nmax ? j->nkeys[q] : nmax;
    }
    for (int64_t s0 = 0; s0 < nmax; s0 += ATTN_SB) {
        const int64_t nb = nmax - s0 < ATTN_SB ? nmax - s0 : ATTN_SB;
        for (int64_t s = 0; s < nb; s++) {
            const int64_t k = s0 + s;
            float d[ATTN_QB] = {0};
            dot_nq(d, j->qa, j->ka + k * j->ka_stride, j->da, NQ);
            if (j->db) dot_nq(d, j->qb, j->kb + k * j->kb_stride, j->db, NQ);
#pragma GCC unroll 4
            for (int q = 0; q < NQ; q++) sc[q][s] = k < j->nkeys[q] ? d[q] * j->scale : -INFINITY;
        }
#pragma GCC unroll 4
        for (int q = 0; q < NQ; q++) alpha[q] = softmax_block_avx2(sc[q], nb, &m[q], &l[q]);
        /* o[q] = o[q] * alpha[q] + sum_s p[q][s] v[s], 8 output values at a time. */
        for (int64_t d = 0; d < j->dv; d += 8) {
            const __m256i mk = tail_mask(j->dv - d);
            const bool full = d + 8 <= j->dv;
            __m256 acc[ATTN_QB];
#pragma GCC unroll 4
            for (int q = 0; q < NQ; q++) {
                __m256 o = full ? _mm256_loadu_ps(j->o[q] + d) : _mm256_maskload_ps(j->o[q] + d, mk);
                acc[q] = _mm256_mul_ps(o, _mm256_set1_ps(alpha[q]));
            }
            const float *vp = j->v + s0 * j->v_stride + d;
            for (int64_t s = 0; s < nb; s++, vp += j->v_stride) {
                const __m256 vv = full ? _mm256_loadu_ps(vp) : _mm256_maskload_ps(vp, mk);
#pragma GCC unroll 4
                for (int q = 0; q < NQ; q++) acc[q] = _mm256_fmadd_ps(_mm256_set1_ps(sc[q][s]), vv, acc[q]);
            }
#pragma GCC unroll 4
            for (int q = 0; q < NQ; q++) {
                if (full) _mm256_storeu_ps(j->o[q] + d, acc[q]);
                else _mm256_maskstore_ps(j->o[q] + d, mk, acc[q]);
            }
        }
    }
#pragma GCC unroll 4
    for (int q = 0; q < NQ; q++) {
        const float inv = l[q] > 0 ? 1.0f / l[q] : 0.0f;
        for (int64_t d = 0; d < j->dv; d++) j->o[q][d] *= inv;
    }
}

AVX2_FN static void attn_run_avx2(const attn_job *j, int nq) {
    switch (nq) {
    case 4: attn_core_avx2(j, 4); break;
    case 3: attn_core_avx2(j, 3); break;
    case 2: attn_core_avx2(j, 2); break;
    default: attn_core_avx2(j, 1); break;
    }
}

typedef void (*attn_run_fn)(const attn_job *j, int nq);

static void attn_naive_with(attn_run_fn run, float *o, const float *q, const float *k, const float *v,
                            int64_t T, int64_t S, int64_t H, int64_t dqk, int64_t dv, float scale) {
    const int64_t ntb = (T + ATTN_QB - 1) / ATTN_QB;
    /* Later token blocks see more keys: dynamic scheduling evens the load. */
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (T * S * H * (dqk + dv) >= PAR_MIN)
    for (int64_t tb = 0; tb < ntb; tb++) {
        for (int64_t h = 0; h < H; h++) {
            attn_job j = {.ka = k + h * dqk, .v = v + h * dv, .ka_stride = H * dqk, .v_stride = H * dv,
                          .da = dqk, .db = 0, .dv = dv, .scale = scale};
            const int64_t t0 = tb * ATTN_QB;
            const int nq = (int)(T - t0 < ATTN_QB ? T - t0 : ATTN_QB);
            for (int i = 0; i < nq; i++) {
                j.o[i] = o + ((t0 + i) * H + h) * dv;
                j.qa[i] = q + ((t0 + i) * H + h) * dqk;
                j.qb[i] = NULL;
                j.nkeys[i] = S - T + t0 + i + 1;
            }
            run(&j, nq);
        }
    }
}

static void attn_absorbed_with(attn_run_fn run, float *o_lat, const float *q_lat, const float *q_pe,
                               const float *c, int64_t c_stride, const float *pe, int64_t pe_stride,
                               int64_t T, int64_t S, int64_t H, int64_t C, int64_t R, float scale) {
    const int64_t nhb = (H + ATTN_QB - 1) / ATTN_QB;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (T * S * H * (2 * C + R) >= PAR_MIN)
    for (int64_t t = 0; t < T; t++) {
        for (int64_t hb = 0; hb < nhb; hb++) {
            attn_job j = {.ka = c, .kb = pe, .v = c, .ka_stride = c_stride, .kb_stride = pe_stride,
                          .v_stride = c_stride, .da = C, .db = R, .dv = C, .scale = scale};
            const int64_t h0 = hb * ATTN_QB;
            const int nq = (int)(H - h0 < ATTN_QB ? H - h0 : ATTN_QB);
            for (int i = 0; i < nq; i++) {
                j.o[i] = o_lat + (t * H + h0 + i) * C;
                j.qa[i] = q_lat + (t * H + h0 + i) * C;
                j.qb[i] = q_pe + (t * H + h0 + i) * R;
                j.nkeys[i] = S - T + t + 1;
            }
            run(&j, nq);
        }
    }
}

static void attn_naive_avx2(float *o, const float *q, const float *k, const float *v,
                            int64_t T, int64_t S, int64_t H, int64_t dqk, int64_t dv, float scale) {
    attn_naive_with(attn_run_avx2, o, q, k, v, T, S, H, dqk, dv, scale);
}

static void attn_naive_generic(float *o, const float *q, const float *k, const float *v,
                               int64_t T, int64_t S, int64_t H, int64_t dqk, int64_t dv, float scale) {
    attn_naive_with(attn_core_generic, o, q, k, v, T, S, H, dqk, dv, scale);
}

static void attn_absorbed_avx2(float *o_lat, const float *q_lat, const float *q_pe,
                               const float *c, int64_t c_stride, const float *pe, int64_t pe_stride,
                               int64_t T, int64_t S, int64_t H, int64_t C, int64_t R, float scale) {
    attn_absorbed_with(attn_run_avx2, o_lat, q_lat, q_pe, c, c_stride, pe, pe_stride, T, S, H, C, R, scale);
}

static void attn_absorbed_generic(float *o_lat, const float *q_lat, const float *q_pe,
                                  const float *c, int64_t c_stride, const float *pe, int64_t pe_stride,
                                  int64_t T, int64_t S, int64_t H, int64_t C, int64_t R, float scale) {
    attn_absorbed_with(attn_core_generic, o_lat, q_lat, q_pe, c, c_stride, pe, pe_stride, T, S, H, C, R, scale);
}

/* ---- tables ---- */

/* The ops every x86 table shares: all but the matmuls run the AVX2 kernels. */
#define FAST_AVX2_OPS                                                                                        \
    .embed = fast_embed, .rmsnorm = rmsnorm_avx2, .rope = fast_rope, .attn_naive = attn_naive_avx2,          \
    .attn_absorbed = attn_absorbed_avx2, .silu_mul = fast_silu_mul, .add = fast_add, .route = fast_route

static const fw_ops fast_avx2_ops = {
    .name = "cpu-fast-avx2",
    .matmul = fw_cpu_matmul_avx2,
    .matmul_xw = fw_cpu_matmul_xw_avx2,
    FAST_AVX2_OPS
};

/* AVX2's but the matmuls on AVX-512 (INT4 and INT8 weights; BF16 and FP8 prefill
 * over exactly widened tiles) and INT4's matmul_xw. */
static const fw_ops fast_avx512_ops = {
    .name = "cpu-fast-avx512",
    .matmul = fw_cpu_matmul_avx512,
    .matmul_xw = fw_cpu_matmul_xw_avx512,
    FAST_AVX2_OPS
};

/* AVX-512's, with BF16 and FP8 weights' matmuls on vdpbf16ps (the activations
 * split into bf16 parts: fast_bf16.c). */
static const fw_ops fast_avx512bf16_ops = {
    .name = "cpu-fast-avx512bf16",
    .matmul = fw_cpu_matmul_avx512bf16,
    .matmul_xw = fw_cpu_matmul_xw_avx512,
    FAST_AVX2_OPS
};

static const fw_ops fast_generic_ops = {
    .name = "cpu-fast-generic",
    .embed = fast_embed,
    .rmsnorm = rmsnorm_generic,
    .matmul = fw_cpu_matmul_generic,
    .matmul_xw = fw_cpu_matmul_xw_generic,
    .rope = fast_rope,
    .attn_naive = attn_naive_generic,
    .attn_absorbed = attn_absorbed_generic,
    .silu_mul = fast_silu_mul,
    .add = fast_add,
    .route = fast_route,
};

const fw_ops *fw_ops_cpu_fast_generic(void) { return &fast_generic_ops; }

const fw_ops *fw_ops_cpu_fast_avx2(void) { return &fast_avx2_ops; }

const fw_ops *fw_ops_cpu_fast_avx512(void) { return &fast_avx512_ops; }

const fw_ops *fw_ops_cpu_fast(void) {
    return fw_cpu_has_avx512bf16() ? &fast_avx512bf16_ops
           : fw_cpu_has_avx512()   ? &fast_avx512_ops
           : fw_cpu_has_avx2()     ? &fast_avx2_ops
                                   : &fast_generic_ops;
}
