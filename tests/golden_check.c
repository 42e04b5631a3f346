/* Compares the model in a furrow checkpoint with a golden reference.h5 (computed
 * by transformers in float64): logits at every prompt position, the KV-cached
 * decode path teacher-forced on the reference's greedy tokens, free-running
 * greedy tokens, and cached decode against a full forward.
 * usage: golden_check CHECKPOINT_DIR REFERENCE.h5 [ref|fast|avx512|avx2|generic] */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/fast.h"
#include "runtime/cpu/cpu.h"
#include "runtime/engine/sample.h"
#include "tests/check.h"
#include "tests/golden_ref.h"

/* Suggested tolerances of shared/golden/README.md. */
#define LOGIT_TOL 1e-3      /* max |logit - ref| / max |ref| */
#define MARGIN_TOL 1e-3     /* greedy tokens must match where the margin exceeds this */
#define SELF_TOL 1e-4       /* cached decode vs full forward, relative to max |logit| */

static void check_prompt(fw_model *m, const prompt *p, int idx) {
    fw_err e = {{0}};
    const int64_t V = p->V, L = p->n_tok, G = p->n_greedy;
    CHECK(V == m->cfg.vocab_size, "prompt %d: reference vocab %lld, model %lld", idx, (long long)V,
          (long long)m->cfg.vocab_size);
    if (V != m->cfg.vocab_size) return;
    float *logits = malloc((size_t)((L + G) * V) * sizeof(float));
    fw_kv kv;
    CHECK(fw_kv_init(&kv, m, L + G, &e) == FW_OK, "%s", e.msg);

    /* 1. Full forward over the prompt, both attention forms, against the reference. */
    for (int mode = 0; mode < 2; mode++) {
        kv.len = 0;
        int rc = fw_model_forward(m, NULL, &kv, p->tokens, NULL, L, mode ? FW_ATTN_ABSORBED : FW_ATTN_NAIVE, logits, L, &e);
        CHECK(rc == FW_OK, "prompt %d: forward failed: %s", idx, e.msg);
        /* At every position against that position's max|ref| (README-w4's reading
         * of the tolerance, stricter than over the whole prompt). */
        double err = 0;
        for (int64_t i = 0; i < L; i++) err = fmax(err, rel_err(logits + i * V, p->logits + i * V, V));
        printf("prompt %d (%lld tokens), %s prefill: worst position's max|logit - ref| / max|ref| = %.3g\n", idx,
               (long long)L, mode ? "absorbed" : "naive", err);
        CHECK(err < LOGIT_TOL, "prompt %d: %s prefill logits differ from the reference by %.3g", idx,
              mode ? "absorbed" : "naive", err);
    }

    /* 2. Teacher-forced cached decode: prefill, then feed the reference's greedy
     * tokens one by one (absorbed attention over the latent cache). */
    float *decode = malloc((size_t)(G * V) * sizeof(float));
    kv.len = 0;
    CHECK(fw_model_forward(m, NULL, &kv, p->tokens, NULL, L, FW_ATTN_NAIVE, decode, 1, &e) == FW_OK, "%s", e.msg);
    for (int64_t g = 1; g < G; g++)
        CHECK(fw_model_forward(m, NULL, &kv, &p->greedy[g - 1], NULL, 1, FW_ATTN_ABSORBED, decode + g * V, 1, &e) == FW_OK,
              "%s", e.msg);
    double worst = 0;
    for (int64_t g = 0; g < G; g++) worst = fmax(worst, rel_err(decode + g * V, p->greedy_logits + g * V, V));
    printf("prompt %d: teacher-forced decode of %lld tokens: max rel error vs greedy_logits = %.3g\n", idx,
           (long long)G, worst);
    CHECK(worst < LOGIT_TOL, "prompt %d: cached decode logits differ from greedy_logits by %.3g", idx, worst);

    /* 3. Cached decode equals a full forward over prompt + greedy tokens. */
    int32_t *all = malloc((size_t)(L + G) * sizeof(int32_t));
    memcpy(all, p->tokens, (size_t)L * sizeof(int32_t));
    memcpy(all + L, p->greedy, (size_t)G * sizeof(int32_t));
    kv.len = 0;
    CHECK(fw_model_forward(m, NULL, &kv, all, NULL, L + G - 1, FW_ATTN_NAIVE, logits, L + G - 1, &e) == FW_OK, "%s", e.msg);
    double self = rel_err(decode, logits + (L - 1) * V, G * V);
    printf("prompt %d: cached decode vs full forward: %.3g\n", idx, self);
    CHECK(self < SELF_TOL, "prompt %d: cached decode differs from the full forward by %.3g", idx, self);

    /* 4. Free-running greedy decode: tokens equal wherever the margin allows. */
    kv.len = 0;
    float *last = malloc((size_t)V * sizeof(float));
    CHECK(fw_model_forward(m, NULL, &kv, p->tokens, NULL, L, FW_ATTN_NAIVE, last, 1, &e) == FW_OK, "%s", e.msg);
    int64_t compared = 0;
    for (int64_t g = 0; g < G; g++) {
        int32_t tok = fw_sample_argmax(last, V);
        if (tok != p->greedy[g] && p->margin[g] <= MARGIN_TOL) {
            printf("prompt %d: step %lld is a near-tie (margin %.2g) that flipped; stopping there\n", idx,
                   (long long)g, p->margin[g]);
            break;
        }
        CHECK(tok == p->greedy[g], "prompt %d: greedy step %lld: got %d, reference %d (margin %.3g)", idx,
              (long long)g, tok, p->greedy[g], p->margin[g]);
        if (tok != p->greedy[g]) break;
        compared++;
        if (g + 1 < G)
            CHECK(fw_model_forward(m, NULL, &kv, &tok, NULL, 1, FW_ATTN_ABSORBED, last, 1, &e) == FW_OK, "%s", e.msg);
    }
    printf("prompt %d: %lld of %lld greedy tokens equal the reference\n", idx, (long long)compared, (long long)G);
    free(last);
    free(all);
    free(decode);
    free(logits);
    fw_kv_free(&kv);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: golden_check CHECKPOINT_DIR REFERENCE.h5 [ref|fast|avx512|avx2|generic]\n");
        return 2;
    }
    /* Each kernel set this CPU can run, forced: fast is the best of them. */
    const char *k = argc > 3 ? argv[3] : "fast";
    const fw_ops *ops = !strcmp(k, "ref")       ? fw_ops_cpu_ref()
                        : !strcmp(k, "generic") ? fw_ops_cpu_fast_generic()
                        : !strcmp(k, "avx2")    ? (fw_cpu_has_avx2() ? fw_ops_cpu_fast_avx2() : NULL)
                        : !strcmp(k, "avx512")  ? (fw_cpu_has_avx512() ? fw_ops_cpu_fast_avx512() : NULL)
                        : !strcmp(k, "fast")    ? fw_ops_cpu_fast()
                                                : NULL;
    if (!ops && (!strcmp(k, "avx2") || !strcmp(k, "avx512"))) {
        printf("SKIP: this CPU cannot run the %s kernels\n", k);
        return 0;
    }
    if (!ops) {
        fprintf(stderr, "golden_check: unknown kernel set '%s'\n", k);
        return 2;
    }
    fw_err e = {{0}};
    fw_model *m;
    if (fw_model_load(&m, argv[1], ops, NULL, 0, 0, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    hid_t f = H5Fopen(argv[2], H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0, "cannot open %s", argv[2]);
    int n = 0;
    for (int i = 0; f >= 0; i++) {
        prompt p = {0};
        if (!has_prompt(f, i)) break;
        CHECK(load_prompt(f, i, &p) == 0, "%s: cannot read prompt %d", argv[2], i);
        check_prompt(m, &p, i);
        free_prompt(&p);
        n++;
    }
    CHECK(n > 0, "%s holds no prompts", argv[2]);
    printf("%d prompts checked with kernels '%s'\n", n, ops->name);
    if (f >= 0) H5Fclose(f);
    fw_model_free(m);
    return check_result();
}
