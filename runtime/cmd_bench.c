/* furrow bench: prefill and decode speed of the model in a checkpoint, next to
 * this machine's memory bandwidth and FMA peak measured in the same run. */
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime/ceilings.h"
#include "runtime/cli.h"
#include "runtime/model.h"
#include "runtime/sample.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: furrow bench --model DIR [options]\n\n"
            "Measures prefill and decode tokens/s on random token ids, the weight bytes streamed\n"
            "per decoded token, and this machine's copy/read bandwidth and FMA peak.\n\n"
            "options:\n"
            "  --model DIR        furrow checkpoint (e.g. from furrow synth --preset small)\n"
            "  --prompt N         prefill length (default 128)\n"
            "  --decode N         decoded tokens (default 32)\n"
            "  --kernels K        fast (default) or ref\n"
            "  --no-ceilings      skip the bandwidth and FMA measurements\n"
            "  -h, --help         this help\n");
}

static uint64_t weight_bytes(const fw_weight *w) {
    static const int elem[] = {[FW_WTYPE_F32] = 4, [FW_WTYPE_BF16] = 2, [FW_WTYPE_FP8] = 1};
    uint64_t b = (uint64_t)(w->rows * w->cols) * (uint64_t)elem[w->type];
    if (w->type == FW_WTYPE_FP8) b += (uint64_t)(((w->rows + 127) / 128) * w->scale_ld) * 4;
    return b;
}

/* Weight bytes one decoded token reads: everything but the unused routed experts
 * and all embedding rows but one. Also the matmul parameters a token touches. */
static void per_token(const fw_model *m, uint64_t *bytes, uint64_t *params) {
    const fw_config *c = &m->cfg;
    uint64_t routed = 0, routed_used = 0;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const fw_layer *L = &m->layers[l];
        if (!L->moe) continue;
        uint64_t one = weight_bytes(&L->exp_gate[0]) + weight_bytes(&L->exp_up[0]) + weight_bytes(&L->exp_down[0]);
        routed += one * (uint64_t)c->n_routed_experts;
        routed_used += one * (uint64_t)c->num_experts_per_tok;
    }
    uint64_t embed = weight_bytes(&m->embed);
    *bytes = m->weight_bytes - routed + routed_used - embed + embed / (uint64_t)c->vocab_size;
    /* Parameters ~ bytes / element size; count from shapes instead for accuracy. */
    uint64_t p = 0;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const fw_layer *L = &m->layers[l];
        const fw_weight *att[] = {&L->q_a, &L->q_b, &L->kv_a, &L->kv_b, &L->o};
        for (size_t i = 0; i < sizeof att / sizeof att[0]; i++) p += (uint64_t)(att[i]->rows * att[i]->cols);
        if (!L->moe) {
            p += 3 * (uint64_t)(L->gate.rows * L->gate.cols);
        } else {
            p += (uint64_t)(L->router.rows * L->router.cols);
            p += 3 * (uint64_t)(L->sh_gate.rows * L->sh_gate.cols);
            p += 3 * (uint64_t)(L->exp_gate[0].rows * L->exp_gate[0].cols) * (uint64_t)c->num_experts_per_tok;
        }
    }
    p += (uint64_t)(m->head.rows * m->head.cols);
    *params = p;
}

int fw_cmd_bench(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"prompt", required_argument, 0, 'p'},
        {"decode", required_argument, 0, 'd'}, {"kernels", required_argument, 0, 'k'},
        {"no-ceilings", no_argument, 0, 'n'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *model_dir = NULL;
    const fw_ops *ops = fw_ops_cpu_fast();
    int64_t P = 128, N = 32;
    int ceilings = 1;
    fw_err e = {{0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'p': bad = fw_cli_parse_int(optarg, "--prompt", 1, 1 << 20, &P, &e); break;
        case 'd': bad = fw_cli_parse_int(optarg, "--decode", 1, 1 << 20, &N, &e); break;
        case 'k': bad = fw_cli_parse_kernels(optarg, &ops, &e); break;
        case 'n': ceilings = 0; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "furrow bench: %s\n", e.msg);
            return 2;
        }
    }
    if (!model_dir || optind < argc) {
        fprintf(stderr, "furrow bench: --model is required\n");
        usage(stderr);
        return 2;
    }

    fw_ceilings ceil = {0};
    if (ceilings && fw_ceilings_measure(&ceil, (size_t)1 << 30)) {
        fprintf(stderr, "furrow bench: out of memory for the bandwidth measurement\n");
        return 1;
    }
    int rc = 1;
    fw_model *m = NULL;
    fw_kv kv = {0};
    int32_t *ids = NULL;
    float *logits = NULL;
    if (fw_model_load(&m, model_dir, ops, &e)) goto done;
    const fw_config *cf = &m->cfg;
    const int64_t V = cf->vocab_size;
    ids = malloc((size_t)P * sizeof(int32_t));
    logits = malloc((size_t)V * sizeof(float));
    if (!ids || !logits || fw_kv_init(&kv, m, P + N, &e)) {
        if (!e.msg[0]) fw_errf(&e, "out of memory");
        goto done;
    }
    uint64_t x = 88172645463325252ull; /* xorshift: fixed pseudo-random prompt */
    for (int64_t i = 0; i < P; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = (int32_t)(x % (uint64_t)V);
    }
    uint64_t tok_bytes, tok_params;
    per_token(m, &tok_bytes, &tok_params);

    double t0 = fw_now();
    if (fw_model_forward(m, &kv, ids, P, FW_ATTN_NAIVE, logits, 1, &e)) goto done;
    double t_prefill = fw_now() - t0;
    t0 = fw_now();
    for (int64_t i = 0; i < N; i++) {
        int32_t tok = fw_sample_argmax(logits, V);
        if (fw_model_forward(m, &kv, &tok, 1, FW_ATTN_ABSORBED, logits, 1, &e)) goto done;
    }
    double t_decode = fw_now() - t0;

    double prefill_tps = (double)P / t_prefill, decode_tps = (double)N / t_decode;
    double gflops = 2.0 * (double)tok_params * prefill_tps / 1e9;
    /* Latent KV read per decoded token, on average over the decode. */
    double kv_bytes = (double)cf->num_hidden_layers * (double)(P + N / 2) * (double)kv.width * 4;
    double gbs = ((double)tok_bytes + kv_bytes) * decode_tps / 1e9;
    printf("model      %s: %lld layers, hidden %lld, %d routed experts (top-%d), %.2f GB of weights\n",
           model_dir, (long long)cf->num_hidden_layers, (long long)cf->hidden_size, cf->n_routed_experts,
           cf->num_experts_per_tok, (double)m->weight_bytes / 1e9);
    printf("setup      kernels %s, %d OpenMP threads\n", ops->name, omp_get_max_threads());
    if (ceilings)
        printf("machine    copy %.1f GB/s (read+write), read %.1f GB/s, fp32 FMA peak %.1f GFLOP/s\n",
               ceil.copy_gbs, ceil.read_gbs, ceil.fma_gflops);
    printf("prefill    %lld tokens: %.3f s, %.1f tokens/s, %.1f GFLOP/s in matmuls", (long long)P, t_prefill,
           prefill_tps, gflops);
    if (ceilings) printf(" (%.0f%% of FMA peak)", 100 * gflops / ceil.fma_gflops);
    printf("\ndecode     %lld tokens: %.3f s, %.2f tokens/s, %.1f MB streamed per token, %.1f GB/s", (long long)N,
           t_decode, decode_tps, ((double)tok_bytes + kv_bytes) / 1e6, gbs);
    if (ceilings)
        printf(" (%.0f%% of read, %.0f%% of copy bandwidth)", 100 * gbs / ceil.read_gbs, 100 * gbs / ceil.copy_gbs);
    printf("\n");
    rc = 0;
done:
    if (rc) fprintf(stderr, "furrow bench: %s\n", e.msg);
    free(logits);
    free(ids);
    fw_kv_free(&kv);
    fw_model_free(m);
    return rc;
}
