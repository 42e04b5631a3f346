/* Speculative decoding's pieces on the GPU against the CPU (bf16 activations
 * against float32), on a checkpoint with an MTP layer:
 * - the final-normed hidden states a step hands the MTP layer (hidden_out);
 * - the MTP layer's logits and output from the same hidden states, over a
 *   prompt in one pass (naive MLA), and again a chunk then one position at a
 *   time over the layer's own cache rows (absorbed);
 * - a verification step (1 + K tokens of a sequence in one absorbed forward,
 *   every row's logits) equal to K + 1 one-token decode steps; replayed as a
 *   CUDA graph after a rollback (the length set back, the rows written again);
 *   and batched with another sequence of another length.
 * Routing near-ties (gpu_golden_check.c) may move a position's logits by a
 * large fraction in bf16: bounds are on the share of positions, the worst is
 * printed.
 * usage: gpu_mtp_check DIR   (exit 77: no GPU) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/cpu.h"
#include "runtime/cuda/gpu_model.h"
#include "tests/check.h"

#define N_TOK 24
#define CAP 64
#define BLOCK 16
#define GPU_TOL 6e-2   /* GPU vs CPU per position: max |a - b| / max |b| */
#define SAME_TOL 3e-2  /* GPU vs GPU in other shapes (other GEMM and split orders) */
#define SHARE 0.9      /* of the positions within the bound */

/* max |a - b| / max |b| over n values. */
static double rel(const float *a, const float *b, int64_t n) {
    double d = 0, m = 0;
    for (int64_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i])), m = fmax(m, fabs((double)b[i]));
    return m > 0 ? d / m : d;
}

static int64_t argmax(const float *x, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Rows a and b (rows of width w) compared row by row: the share within tol,
 * printed with the worst and the argmax agreement. */
static void rows_check(const char *what, const float *a, const float *b, int64_t rows, int64_t w, double tol) {
    int64_t within = 0, same_max = 0;
    double worst = 0;
    for (int64_t r = 0; r < rows; r++) {
        double x = rel(a + r * w, b + r * w, w);
        within += x < tol, worst = fmax(worst, x);
        same_max += argmax(a + r * w, w) == argmax(b + r * w, w);
    }
    const double share = (double)within / (double)rows;
    printf("%s: %lld rows, %.1f%% within %.2g, worst %.3g, argmax equal in %lld\n", what, (long long)rows,
           100 * share, tol, worst, (long long)same_max);
    CHECK(share >= SHARE, "%s: only %.1f%% of rows within %.2g (worst %.3g)", what, 100 * share, tol, worst);
}

static int32_t tables[4][CAP / BLOCK];

static fw_kv gkv(int s, int64_t len) { return (fw_kv){.cap = CAP, .len = len, .table = tables[s]}; }

#define GPU(call) CHECK((call) == FW_OK, "%s", e.msg)

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gpu_mtp_check DIR\n");
        return 2;
    }
    int n_dev = 0;
    if (fw_cuda_device_count(&n_dev) || n_dev == 0) {
        printf("SKIP: no GPU\n");
        return 77;
    }
    fw_err e = {{0}};
    fw_model *m;
    if (fw_model_load(&m, argv[1], fw_ops_cpu_fast(), NULL, 0, 0, &e) || fw_model_load_mtp(m, argv[1], NULL, &e)) {
        fprintf(stderr, "gpu_mtp_check: %s\n", e.msg);
        return 1;
    }
    const int64_t D = m->cfg.hidden_size, V = m->cfg.vocab_size, n = N_TOK - 1;
    fw_gpu_model g;
    const fw_backend_opts opts = {.graphs = true, .streams = 2, .collective_timeout = 300};
    if (fw_gpu_model_init(&g, m, 0, &opts, &e) || fw_gpu_kv_init(&g, 4 * (CAP / BLOCK), BLOCK, CAP, &e)) {
        fprintf(stderr, "gpu_mtp_check: %s\n", e.msg);
        return 1;
    }
    printf("%s\n", g.desc);
    CHECK(g.mtp != NULL && g.kv_layers == m->part.n_layers + 1, "the MTP layer and its cache layer are on the GPU");
    for (int s = 0; s < 4; s++)
        for (int j = 0; j < CAP / BLOCK; j++) tables[s][j] = (int32_t)(4 * (CAP / BLOCK) - 1 - (s + 4 * j)); /* interleaved */

    int32_t tok[N_TOK];
    for (int i = 0; i < N_TOK; i++) tok[i] = (int32_t)((i * 7919 + 13) % V);
    float *hid = malloc((size_t)(N_TOK * D) * sizeof(float)), *lg = malloc((size_t)(N_TOK * V) * sizeof(float));
    float *ghid = malloc((size_t)(N_TOK * D) * sizeof(float)), *glg = malloc((size_t)(N_TOK * V) * sizeof(float));
    float *ml = malloc((size_t)(n * V) * sizeof(float)), *gml = malloc((size_t)(n * V) * sizeof(float));
    float *gml2 = malloc((size_t)(n * V) * sizeof(float));
    float *ho = malloc((size_t)(n * D) * sizeof(float)), *gho = malloc((size_t)(n * D) * sizeof(float));
    CHECK(hid && lg && ghid && glg && ml && gml && gml2 && ho && gho, "out of memory");

    /* The main model's prompt on both, with its hidden states out. */
    fw_kv kv;
    if (fw_kv_init(&kv, m, CAP, &e)) return fprintf(stderr, "gpu_mtp_check: %s\n", e.msg), 1;
    fw_seq_step s = {.kv = &kv, .T = N_TOK, .n_out = N_TOK, .mode = FW_ATTN_NAIVE, .hidden_out = true};
    CHECK(fw_model_forward_seqs(m, NULL, kv.own, 1, &s, tok, hid, lg, &e) == FW_OK, "CPU forward: %s", e.msg);
    fw_kv k0 = gkv(0, 0);
    fw_gpu_seg seg = {&k0, tok, N_TOK, N_TOK, true};
    GPU(fw_gpu_forward(&g, 1, &seg, ghid, FW_ATTN_NAIVE, glg, &e));
    CHECK(k0.len == N_TOK, "the GPU forward advances the length (%lld)", (long long)k0.len);
    rows_check("main logits, GPU vs CPU", glg, lg, N_TOK, V, GPU_TOL);
    rows_check("final-normed hidden states (hidden_out), GPU vs CPU", ghid, hid, N_TOK, D, GPU_TOL);

    /* The MTP layer over positions 0..n-1 from the CPU's hidden states, both. */
    fw_kv km = kv;
    km.len = 0;
    fw_seq_step sm = {.kv = &km, .T = n, .n_out = n, .mode = FW_ATTN_NAIVE};
    CHECK(fw_model_forward_mtp(m, NULL, kv.own, 1, &sm, tok + 1, hid, ho, ml, &e) == FW_OK, "CPU MTP: %s", e.msg);
    fw_kv gm = gkv(0, 0);
    seg = (fw_gpu_seg){&gm, tok + 1, n, n, false};
    GPU(fw_gpu_forward_mtp(&g, 1, &seg, hid, gho, FW_ATTN_NAIVE, gml, &e));
    CHECK(gm.len == n, "the GPU's MTP forward advances the length (%lld)", (long long)gm.len);
    rows_check("MTP logits, one pass, GPU vs CPU", gml, ml, n, V, GPU_TOL);
    rows_check("MTP output before shared_head.norm, GPU vs CPU", gho, ho, n, D, GPU_TOL);
    /* A chunk of 5, then one position at a time over the MTP layer's cache rows. */
    gm.len = 0;
    seg = (fw_gpu_seg){&gm, tok + 1, 5, 5, false};
    GPU(fw_gpu_forward_mtp(&g, 1, &seg, hid, NULL, FW_ATTN_NAIVE, gml2, &e));
    for (int64_t i = 5; i < n; i++) {
        seg = (fw_gpu_seg){&gm, tok + 1 + i, 1, 1, false};
        GPU(fw_gpu_forward_mtp(&g, 1, &seg, hid + i * D, NULL, FW_ATTN_ABSORBED, gml2 + i * V, &e));
    }
    rows_check("MTP logits, chunk + decode (absorbed), GPU vs CPU", gml2, ml, n, V, GPU_TOL);
    rows_check("MTP logits, chunk + decode vs one pass, GPU", gml2, gml, n, V, SAME_TOL);
    /* The main model's rows must not have moved: the MTP layer writes its own cache layer. */
    k0.len = N_TOK - 1;
    seg = (fw_gpu_seg){&k0, tok + N_TOK - 1, 1, 1, false};
    GPU(fw_gpu_forward(&g, 1, &seg, NULL, FW_ATTN_ABSORBED, glg, &e));
    rows_check("last position decoded again after the MTP layer ran, GPU vs CPU", glg, lg + (N_TOK - 1) * V, 1, V,
               GPU_TOL);

    /* Verification: the prefix, then 3 tokens in one absorbed step (every row),
     * against 3 one-token decode steps of another sequence with the same prefix. */
    const int64_t P = N_TOK - 3, K1 = 3;
    /* vlg: the three runs of sequence 1's verification, then the batched one's two sequences. */
    float *vlg = malloc((size_t)(5 * K1 * V) * sizeof(float)), *dlg = malloc((size_t)(K1 * V) * sizeof(float));
    float *vh = malloc((size_t)(2 * K1 * D) * sizeof(float)), *dh = malloc((size_t)(K1 * D) * sizeof(float));
    float *bh = malloc((size_t)(2 * K1 * D) * sizeof(float));
    CHECK(vlg && dlg && vh && dh && bh, "out of memory");
    fw_kv k1 = gkv(1, 0), k2 = gkv(2, 0), k3 = gkv(3, 0);
    fw_gpu_seg pre[2] = {{&k1, tok, P, 0, false}, {&k2, tok, P, 0, false}};
    GPU(fw_gpu_forward(&g, 2, pre, NULL, FW_ATTN_NAIVE, NULL, &e));
    for (int64_t j = 0; j < K1; j++) {
        seg = (fw_gpu_seg){&k2, tok + P + j, 1, 1, true};
        GPU(fw_gpu_forward(&g, 1, &seg, dh + j * D, FW_ATTN_ABSORBED, dlg + j * V, &e));
    }
    rows_check("decode steps after the prefix, GPU vs CPU", dlg, lg + P * V, K1, V, GPU_TOL);
    /* Three times from the same length: the first eager, then captured as a
     * graph (on the second, or the third where the first grew the scratch) and
     * replayed. */
    for (int it = 0; it < 3; it++) {
        k1.len = P;
        seg = (fw_gpu_seg){&k1, tok + P, K1, K1, true};
        GPU(fw_gpu_forward(&g, 1, &seg, vh + (it ? K1 * D : 0), FW_ATTN_ABSORBED, vlg + (int64_t)it * K1 * V, &e));
        CHECK(k1.len == P + K1, "the verification advances the length by %lld (%lld)", (long long)K1,
              (long long)(k1.len - P));
    }
    const int key = (int)(((K1 - 1) * 2 + 1) * (FW_GPU_MAX_GRAPH_BATCH + 1) + 1);
    printf("verification step of %lld tokens: CUDA graph %s\n", (long long)K1,
           g.graph_exec[key] ? "captured and replayed" : "not captured (eager)");
    CHECK(g.graph_exec[key] != NULL, "the verification step of one sequence was not captured as a CUDA graph");
    rows_check("verification rows vs one-token decode steps, GPU", vlg, dlg, K1, V, SAME_TOL);
    rows_check("verification hidden states vs decode steps', GPU", vh, dh, K1, D, SAME_TOL);
    for (int it = 1; it < 3; it++) {
        const double x = rel(vlg + (int64_t)it * K1 * V, vlg, K1 * V);
        printf("verification run %d vs the first (eager): %.3g\n", it + 1, x);
        CHECK(x < 1e-5, "the graph of the verification step differs from its eager run (%.3g)", x);
    }
    CHECK(rel(vh + K1 * D, vh, K1 * D) < 1e-5, "the graph's hidden states differ from the eager run's");
    /* Batched: after a rollback of sequence 1, it and a sequence of another
     * length (a shorter prefix) verify in one forward; each row as alone. */
    const int64_t P3 = P - 6;
    seg = (fw_gpu_seg){&k3, tok, P3, 0, false};
    GPU(fw_gpu_forward(&g, 1, &seg, NULL, FW_ATTN_NAIVE, NULL, &e));
    float *alone3 = malloc((size_t)(K1 * V) * sizeof(float));
    CHECK(alone3 != NULL, "out of memory");
    seg = (fw_gpu_seg){&k3, tok + P3, K1, K1, true};
    GPU(fw_gpu_forward(&g, 1, &seg, bh, FW_ATTN_ABSORBED, alone3, &e));
    k1.len = P, k3.len = P3;
    fw_gpu_seg both[2] = {{&k1, tok + P, K1, K1, true}, {&k3, tok + P3, K1, K1, true}};
    GPU(fw_gpu_forward(&g, 2, both, bh, FW_ATTN_ABSORBED, vlg + 3 * K1 * V, &e));
    rows_check("batched verification, sequence 1 vs alone", vlg + 3 * K1 * V, vlg, K1, V, SAME_TOL);
    rows_check("batched verification, sequence 2 vs alone", vlg + 4 * K1 * V, alone3, K1, V,
               SAME_TOL);
    rows_check("batched verification, sequence 2 vs CPU", alone3, lg + P3 * V, K1, V, GPU_TOL);

    free(alone3), free(vlg), free(dlg), free(vh), free(dh), free(bh);
    free(hid), free(lg), free(ghid), free(glg), free(ml), free(gml), free(gml2), free(ho), free(gho);
    fw_kv_free(&kv);
    fw_gpu_model_free(&g);
    fw_model_free(m);
    if (check_failures_) {
        printf("gpu_mtp_check: %d checks failed\n", check_failures_);
        return 1;
    }
    printf("gpu_mtp_check: all checks passed\n");
    return 0;
}
