/* Compares furrow's DeepSeek-V3.2 forward (sparse attention through the
 * lightning indexer) with a reference of tests/golden_v32 (README.md there):
 * logits at every position of prompt + greedy tokens (full forward, both
 * attention forms, chunked prefill + cached decode), free-running greedy tokens,
 * the indexer's scores and selected positions of every layer and query, and
 * that dense attention over every position would fail the same comparison.
 * usage: golden_v32_check CHECKPOINT_DIR REFERENCE.h5 [ref|fast] */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/cpu.h"
#include "runtime/engine/sample.h"
#include "tests/check.h"
#include "tests/golden_ref.h"

#define LOGIT_TOL 1e-3   /* max |logit - ref| / max |ref| at each position */
#define MARGIN_TOL 1e-3  /* greedy tokens must match where the margin exceeds this */
#define SCORE_TOL 1e-4   /* index scores: max |score - ref| / max |ref| of the row */
/* The same with DeepSeek's FP8 rounding: float32 inputs land on the other side of
 * an e4m3 rounding boundary now and then (a code apart is 1/8 to 1/16 of a value). */
#define SCORE_TOL_FP8 1e-2
#define DENSE_MIN 1e-1   /* dense attention must miss the reference by at least this */

/* The reference's indexer over the T = prompt + greedy positions of one prompt. */
typedef struct ixref {
    int64_t layers, T, K;
    int32_t *ids;        /* (layers, T, K) ascending, -1 padded */
    double *rel;         /* (layers, T) relative margin of the k-th selection */
    float *scores;       /* (layers, T, T) lower triangle */
} ixref;

typedef struct probe_ctx {
    const ixref *r;
    int64_t rows, compared, mismatched;
    double score_err;
} probe_ctx;

static void *read_all(hid_t f, const char *path, hid_t type, size_t elem, int rank, hsize_t *dims) {
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    if (ds < 0) return NULL;
    hid_t sp = H5Dget_space(ds);
    void *buf = NULL;
    if (H5Sget_simple_extent_ndims(sp) == rank) {
        H5Sget_simple_extent_dims(sp, dims, NULL);
        size_t n = 1;
        for (int i = 0; i < rank; i++) n *= dims[i];
        buf = malloc(n * elem);
        if (buf && H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) free(buf), buf = NULL;
    }
    H5Sclose(sp);
    H5Dclose(ds);
    return buf;
}

static int load_ixref(hid_t f, int i, ixref *r) {
    char path[96];
    hsize_t d[3], d2[3], d3[3];
    snprintf(path, sizeof path, "/prompts/%d/index_topk_ids", i);
    r->ids = read_all(f, path, H5T_NATIVE_INT32, 4, 3, d);
    snprintf(path, sizeof path, "/prompts/%d/index_rel_margin", i);
    r->rel = read_all(f, path, H5T_NATIVE_DOUBLE, 8, 2, d2);
    snprintf(path, sizeof path, "/prompts/%d/index_scores", i);
    r->scores = read_all(f, path, H5T_NATIVE_FLOAT, 4, 3, d3);
    if (!r->ids || !r->rel || !r->scores) return -1;
    r->layers = (int64_t)d[0], r->T = (int64_t)d[1], r->K = (int64_t)d[2];
    return d2[0] == d[0] && d2[1] == d[1] && d3[0] == d[0] && d3[1] == d[1] && d3[2] == d[1] ? 0 : -1;
}

/* Every query whose indexer dropped positions: its scores against the
 * reference's, and its selection where the reference's margin is clear of the
 * score error measured on that very row. */
static void probe(void *arg, int layer, int64_t pos, int64_t S, const float *scores, int64_t n, const int32_t *ids) {
    probe_ctx *x = arg;
    const ixref *r = x->r;
    if (layer >= r->layers || pos >= r->T || S != pos + 1) {
        CHECK(0, "indexer probe: layer %d position %lld over %lld keys is outside the reference", layer,
              (long long)pos, (long long)S);
        return;
    }
    const float *ref = r->scores + (layer * r->T + pos) * r->T;
    double err = rel_err(scores, ref, S);
    x->score_err = fmax(x->score_err, err);
    x->rows++;
    const int32_t *rid = r->ids + (layer * r->T + pos) * r->K;
    if (r->rel[layer * r->T + pos] <= 4 * err + 1e-7) return; /* a near-tie at this row's precision */
    x->compared++;
    int64_t rn = 0;
    while (rn < r->K && rid[rn] >= 0) rn++;
    bool same = rn == n;
    for (int64_t j = 0; same && j < n; j++) same = ids[j] == rid[j];
    if (!same) {
        x->mismatched++;
        if (x->mismatched <= 5)
            printf("  layer %d position %lld: selection differs from the reference (relative margin %.3g, score "
                   "error %.3g)\n", layer, (long long)pos, r->rel[layer * r->T + pos], err);
    }
}

/* Rows [0, L) against `logits`, rows [L - 1, L + G - 1) against `greedy_logits`. */
static double seq_err(const prompt *p, const float *out, int64_t first, int64_t n) {
    const int64_t V = p->V, L = p->n_tok;
    double err = 0;
    for (int64_t r = first; r < first + n; r++) {
        const float *o = out + (r - first) * V;
        if (r < L) err = fmax(err, rel_err(o, p->logits + r * V, V));
        if (r >= L - 1 && r - (L - 1) < p->n_greedy) err = fmax(err, rel_err(o, p->greedy_logits + (r - L + 1) * V, V));
    }
    return err;
}

static void check_prompt(fw_model *m, const prompt *p, const ixref *r, int idx) {
    fw_err e = {{0}};
    const int64_t V = p->V, L = p->n_tok, G = p->n_greedy, T = L + G, K = m->cfg.index_topk;
    CHECK(V == m->cfg.vocab_size && r->T == T && r->K == K && r->layers == m->cfg.num_hidden_layers,
          "prompt %d: reference shapes (vocab %lld, T %lld, topk %lld, layers %lld) do not fit the model", idx,
          (long long)V, (long long)r->T, (long long)r->K, (long long)r->layers);
    if (V != m->cfg.vocab_size || r->T != T || r->K != K || r->layers != m->cfg.num_hidden_layers) return;
    int32_t *all = malloc((size_t)T * sizeof(int32_t));
    memcpy(all, p->tokens, (size_t)L * sizeof(int32_t));
    memcpy(all + L, p->greedy, (size_t)G * sizeof(int32_t));
    float *out = malloc((size_t)(T * V) * sizeof(float));
    fw_kv kv;
    CHECK(fw_kv_init(&kv, m, T, &e) == FW_OK, "%s", e.msg);
    probe_ctx px = {.r = r};
    m->index_probe = probe, m->index_probe_arg = &px;

    /* 1. One forward over prompt + greedy tokens, both attention forms. */
    for (int mode = 0; mode < 2; mode++) {
        kv.len = 0;
        CHECK(fw_model_forward(m, NULL, &kv, all, NULL, T - 1, mode ? FW_ATTN_ABSORBED : FW_ATTN_NAIVE, out, T - 1,
                               &e) == FW_OK, "prompt %d: %s", idx, e.msg);
        double err = seq_err(p, out, 0, T - 1);
        printf("prompt %d (%lld + %lld tokens), %s forward: worst position's max|logit - ref| / max|ref| = %.3g\n",
               idx, (long long)L, (long long)G, mode ? "absorbed" : "naive", err);
        CHECK(err < LOGIT_TOL, "prompt %d: %s forward differs from the reference by %.3g", idx,
              mode ? "absorbed" : "naive", err);
    }

    /* 2. Prefill in two chunks (the second starts before index_topk positions and
     * ends after), then teacher-forced cached decode of the greedy tokens. */
    const int64_t c1 = L > 24 ? 24 : L;
    kv.len = 0;
    CHECK(fw_model_forward(m, NULL, &kv, all, NULL, c1, FW_ATTN_NAIVE, out, c1, &e) == FW_OK, "%s", e.msg);
    if (L > c1)
        CHECK(fw_model_forward(m, NULL, &kv, all + c1, NULL, L - c1, FW_ATTN_NAIVE, out + c1 * V, L - c1, &e) == FW_OK,
              "%s", e.msg);
    for (int64_t t = L; t < T - 1; t++)
        CHECK(fw_model_forward(m, NULL, &kv, all + t, NULL, 1, FW_ATTN_ABSORBED, out + t * V, 1, &e) == FW_OK, "%s",
              e.msg);
    double err = seq_err(p, out, 0, T - 1);
    printf("prompt %d: prefill %lld + %lld, cached decode of %lld: worst position %.3g\n", idx, (long long)c1,
           (long long)(L - c1), (long long)(G - 1), err);
    CHECK(err < LOGIT_TOL, "prompt %d: chunked prefill + cached decode differ from the reference by %.3g", idx, err);

    /* 3. Free-running greedy decode: tokens equal wherever the margin allows. */
    kv.len = 0;
    float *last = out;
    CHECK(fw_model_forward(m, NULL, &kv, p->tokens, NULL, L, FW_ATTN_NAIVE, last, 1, &e) == FW_OK, "%s", e.msg);
    int64_t same = 0;
    for (int64_t g = 0; g < G; g++) {
        int32_t tok = fw_sample_argmax(last, V);
        if (tok != p->greedy[g]) {
            CHECK(p->margin[g] <= MARGIN_TOL, "prompt %d: greedy step %lld: got %d, reference %d (margin %.3g)", idx,
                  (long long)g, tok, p->greedy[g], p->margin[g]);
            break;
        }
        same++;
        if (g + 1 < G)
            CHECK(fw_model_forward(m, NULL, &kv, &tok, NULL, 1, FW_ATTN_ABSORBED, last, 1, &e) == FW_OK, "%s", e.msg);
    }
    printf("prompt %d: %lld of %lld greedy tokens equal the reference\n", idx, (long long)same, (long long)G);

    /* 4. The indexer, over everything above. */
    const int64_t sparse = T - 1 > K ? T - 1 - K : 0; /* rows that drop positions, per layer and pass */
    printf("prompt %d: %lld indexer rows probed, score error %.3g, %lld selections compared, %lld differ\n", idx,
           (long long)px.rows, px.score_err, (long long)px.compared, (long long)px.mismatched);
    CHECK(px.mismatched == 0, "prompt %d: %lld selections differ from the reference's", idx, (long long)px.mismatched);
    CHECK(px.score_err < (m->index_fp8 ? SCORE_TOL_FP8 : SCORE_TOL),
          "prompt %d: index scores differ from the reference by %.3g", idx, px.score_err);
    CHECK(px.rows >= 3 * sparse * r->layers, "prompt %d: %lld indexer rows probed, expected at least %lld", idx,
          (long long)px.rows, (long long)(3 * sparse * r->layers));
    CHECK(px.compared * 10 >= px.rows * 9, "prompt %d: only %lld of %lld selections were clear enough to compare",
          idx, (long long)px.compared, (long long)px.rows);
    m->index_probe = NULL;

    /* 5. Attention over every position (selection skipped) must fail this comparison. */
    if (sparse > 0) {
        m->cfg.index_topk = (int)T; /* every query keeps every earlier position */
        kv.len = 0;
        CHECK(fw_model_forward(m, NULL, &kv, all, NULL, T - 1, FW_ATTN_NAIVE, out, T - 1, &e) == FW_OK, "%s", e.msg);
        m->cfg.index_topk = (int)K;
        double dense = seq_err(p, out, 0, T - 1);
        /* How far dense attention lands at the prompt positions that drop some (the GPU check's bounds). */
        int64_t n_far = 0, within = 0;
        double *errs = malloc((size_t)L * sizeof *errs);
        for (int64_t t = K; errs && t < L; t++) {
            errs[n_far] = rel_err(out + t * V, p->logits + t * V, V);
            within += errs[n_far++] <= 0.12;
        }
        printf("prompt %d: dense attention over every position would differ by %.3g (positions %lld.. of the prompt: "
               "%lld of %lld within 0.12)\n", idx, dense, (long long)K, (long long)within, (long long)n_far);
        free(errs);
        CHECK(dense > DENSE_MIN, "prompt %d: dense attention differs by only %.3g: the test cannot see selection",
              idx, dense);
    }
    fw_kv_free(&kv);
    free(out);
    free(all);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: golden_v32_check CHECKPOINT_DIR REFERENCE.h5 [ref|fast] [exact|fp8]\n");
        return 2;
    }
    const fw_ops *ops = argc > 3 && !strcmp(argv[3], "ref") ? fw_ops_cpu_ref() : fw_ops_cpu_fast();
    fw_err e = {{0}};
    fw_model *m;
    if (fw_model_load(&m, argv[1], ops, NULL, 0, 0, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    CHECK(fw_config_has_indexer(&m->cfg), "%s has no indexer (not a DeepSeek-V3.2 checkpoint)", argv[1]);
    m->index_fp8 = argc > 4 && !strcmp(argv[4], "fp8"); /* against reference-dsfp8.h5 */
    hid_t f = H5Fopen(argv[2], H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0, "cannot open %s", argv[2]);
    int n = 0, sparse = 0;
    for (int i = 0; f >= 0 && has_prompt(f, i); i++) {
        prompt p = {0};
        ixref r = {0};
        CHECK(load_prompt(f, i, &p) == 0 && load_ixref(f, i, &r) == 0, "%s: cannot read prompt %d", argv[2], i);
        if (p.tokens && r.ids) check_prompt(m, &p, &r, i);
        sparse += p.n_tok > m->cfg.index_topk;
        free_prompt(&p);
        free(r.ids), free(r.rel), free(r.scores);
        n++;
    }
    CHECK(n > 0 && sparse > 0, "%s holds %d prompts, %d longer than index_topk", argv[2], n, sparse);
    printf("%d prompts checked with kernels '%s', %s indexer\n", n, ops->name, m->index_fp8 ? "FP8" : "exact");
    if (f >= 0) H5Fclose(f);
    fw_model_free(m);
    return check_result();
}
