/* Checks a checkpoint made by `convert --quantize` against the same model
 * converted unquantized and against the golden reference:
 *  1. every INT4/INT8 weight, as the loader reads it, is bit for bit the
 *     quantization formula (compressed-tensors', written out here) applied to the
 *     unquantized model's weight as the loader reads that (FP8: times its block
 *     scales); the weights the spec leaves alone are identical;
 *  2. the logits at every prompt position against reference.h5: the median over
 *     positions of max|logit - ref| / max|ref| is printed with the worst one, and
 *     must stay under MEDIAN_BOUND (the median, because a perturbation can swap
 *     a near-tied expert and move one position's logits by ~0.3, README.md);
 *  3. the next-token choice (argmax) equals the reference's at every position
 *     whose top-1 minus top-2 logit exceeds MARGIN * max|ref|;
 *  4. the fast kernels' logits equal, within 1e-4 of max|logit|, those of the
 *     reference ops (plain loops that widen each weight element, double sums) on
 *     the same quantized weights, the head included.
 * It prints how the head is stored ("head: INT4, group 32"), for the caller.
 * usage: quant_check QUANTIZED_DIR UNQUANTIZED_DIR REFERENCE.h5 MEDIAN_BOUND MARGIN */
#include <float.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/cpu.h"
#include "runtime/engine/sample.h"
#include "tests/check.h"
#include "tests/golden_ref.h"

static int64_t n_quant, n_plain;

/* q against the formula on w (same shape); plain weights must be equal. */
static void check_weight(const fw_weight *q, const fw_weight *w, const char *what) {
    CHECK(q->rows == w->rows && q->cols == w->cols, "%s: shape differs", what);
    if (q->rows != w->rows || q->cols != w->cols) return;
    int64_t bad = 0;
    if (!fw_wtype_grouped(q->type)) {
        for (int64_t i = 0; i < w->rows; i++)
            for (int64_t j = 0; j < w->cols; j++) bad += fw_weight_get(q, i, j) != fw_weight_get(w, i, j);
        CHECK(bad == 0, "%s: %lld elements of an unquantized weight differ", what, (long long)bad);
        n_plain++;
        return;
    }
    const int qmax = q->type == FW_WTYPE_INT4 ? 7 : 127, qmin = -qmax - 1;
    for (int64_t i = 0; i < w->rows; i++)
        for (int64_t g0 = 0; g0 < w->cols; g0 += q->group) {
            float amax = 0;
            for (int64_t j = g0; j < g0 + q->group; j++) amax = fmaxf(amax, fabsf(fw_weight_get(w, i, j)));
            const float s = fw_bf16_to_f32(fw_f32_to_bf16(fmaxf(amax / ((float)(qmax - qmin) * 0.5f), FLT_EPSILON)));
            for (int64_t j = g0; j < g0 + q->group; j++) {
                const double v = fmin(fmax(nearbyint((double)(fw_weight_get(w, i, j) / s)), qmin), qmax);
                bad += fw_weight_get(q, i, j) != (float)v * s;
            }
        }
    CHECK(bad == 0, "%s: %lld elements differ from the formula", what, (long long)bad);
    n_quant++;
}

static void check_weights(const fw_model *q, const fw_model *m) {
    char what[160];
    check_weight(&q->head, &m->head, "head");
    if (fw_wtype_grouped(q->head.type))
        printf("head: %s, group %lld\n", q->head.type == FW_WTYPE_INT4 ? "INT4" : "INT8", (long long)q->head.group);
    else
        printf("head: unquantized\n");
    for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
        const fw_layer *a = &q->layers[l], *b = &m->layers[l];
        const fw_weight *qa[] = {&a->q_a, &a->q_b, &a->kv_a, &a->kv_b, &a->o, &a->gate, &a->up, &a->down,
                                 &a->router, &a->sh_gate, &a->sh_up, &a->sh_down};
        const fw_weight *qb[] = {&b->q_a, &b->q_b, &b->kv_a, &b->kv_b, &b->o, &b->gate, &b->up, &b->down,
                                 &b->router, &b->sh_gate, &b->sh_up, &b->sh_down};
        for (int k = 0; k < 12; k++) {
            if (!qb[k]->data) continue;
            snprintf(what, sizeof what, "layer %d weight %d", l, k);
            check_weight(qa[k], qb[k], what);
        }
        for (int x = 0; b->moe && x < m->part.exp_n; x++) {
            snprintf(what, sizeof what, "layer %d expert %d", l, x);
            check_weight(&a->exp_gate[x], &b->exp_gate[x], what);
            check_weight(&a->exp_up[x], &b->exp_up[x], what);
            check_weight(&a->exp_down[x], &b->exp_down[x], what);
        }
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Top-1 minus top-2 of n values. */
static double margin(const float *v, int64_t n) {
    double a = -INFINITY, b = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (v[i] > a) b = a, a = v[i];
        else if (v[i] > b) b = v[i];
    }
    return a - b;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: quant_check QUANTIZED_DIR UNQUANTIZED_DIR REFERENCE.h5 MEDIAN_BOUND MARGIN\n");
        return 2;
    }
    const double bound = atof(argv[4]), mfrac = atof(argv[5]);
    fw_err e = {{0}};
    fw_model *q, *m, *qr;
    if (fw_model_load(&q, argv[1], fw_ops_cpu_fast(), NULL, 0, 0, &e) ||
        fw_model_load(&qr, argv[1], fw_ops_cpu_ref(), NULL, 0, 0, &e) ||
        fw_model_load(&m, argv[2], fw_ops_cpu_fast(), NULL, 0, 0, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    check_weights(q, m);
    printf("%lld quantized weights equal the formula on the unquantized ones; %lld others identical\n",
           (long long)n_quant, (long long)n_plain);
    CHECK(n_quant > 0, "no quantized weights in %s", argv[1]);

    hid_t f = H5Fopen(argv[3], H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0, "cannot open %s", argv[3]);
    double *errs = NULL, fast_ref = 0;
    int64_t n = 0, clear = 0, equal = 0;
    for (int i = 0; f >= 0 && has_prompt(f, i); i++) {
        prompt p = {0};
        CHECK(load_prompt(f, i, &p) == 0, "%s: cannot read prompt %d", argv[3], i);
        const int64_t L = p.n_tok, V = p.V;
        float *logits = malloc((size_t)(L * V) * sizeof *logits);
        errs = realloc(errs, (size_t)(n + L) * sizeof *errs);
        fw_kv kv;
        CHECK(fw_kv_init(&kv, q, L, &e) == FW_OK, "%s", e.msg);
        CHECK(fw_model_forward(q, NULL, &kv, p.tokens, NULL, L, FW_ATTN_NAIVE, logits, L, &e) == FW_OK, "%s", e.msg);
        fw_kv_free(&kv);
        float *slow = malloc((size_t)(L * V) * sizeof *slow);
        CHECK(fw_kv_init(&kv, qr, L, &e) == FW_OK, "%s", e.msg);
        CHECK(fw_model_forward(qr, NULL, &kv, p.tokens, NULL, L, FW_ATTN_NAIVE, slow, L, &e) == FW_OK, "%s", e.msg);
        for (int64_t t = 0; t < L; t++) fast_ref = fmax(fast_ref, rel_err(logits + t * V, slow + t * V, V));
        free(slow);
        for (int64_t t = 0; t < L; t++) {
            const float *r = p.logits + t * V;
            errs[n++] = rel_err(logits + t * V, r, V);
            double mx = 0;
            for (int64_t v = 0; v < V; v++) mx = fmax(mx, fabs(r[v]));
            if (margin(r, V) <= mfrac * mx) continue;
            clear++;
            equal += fw_sample_argmax(logits + t * V, V) == fw_sample_argmax(r, V);
        }
        fw_kv_free(&kv);
        free(logits);
        free_prompt(&p);
    }
    CHECK(n > 0, "%s holds no prompts", argv[3]);
    printf("fast kernels vs reference ops on the quantized weights: max|logit - ref| / max|ref| %.2g (bound 1e-4)\n",
           fast_ref);
    CHECK(fast_ref <= 1e-4, "the fast kernels' logits differ from the reference ops' by %.3g", fast_ref);
    if (n > 0) {
        qsort(errs, (size_t)n, sizeof *errs, cmp_double);
        const double med = errs[n / 2], worst = errs[n - 1];
        printf("logits vs reference over %lld positions: max|logit - ref| / max|ref| median %.4f, max %.4f "
               "(bound on the median %.4f)\n", (long long)n, med, worst, bound);
        CHECK(med <= bound, "median relative logit error %.4f exceeds %.4f", med, bound);
        printf("next-token argmax equals the reference's at %lld of %lld positions with margin > %.3g of max|ref|\n",
               (long long)equal, (long long)clear, mfrac);
        CHECK(equal == clear, "%lld of %lld clear-margin positions choose another token", (long long)(clear - equal),
              (long long)clear);
    }
    free(errs);
    if (f >= 0) H5Fclose(f);
    fw_model_free(q);
    fw_model_free(qr);
    fw_model_free(m);
    return check_result();
}
