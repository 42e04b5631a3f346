/* furrow generate: prefill a prompt, then decode token by token over the latent
 * KV cache; prints the generated ids as a JSON array, speeds on stderr. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cli.h"
#include "runtime/model.h"
#include "runtime/sample.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: furrow generate --model DIR --prompt-tokens ID,ID,... [options]\n\n"
            "Generates up to --max-tokens tokens after the prompt (greedy unless --temperature\n"
            "is set) and prints their ids as a JSON array on stdout. Prefill and decode\n"
            "speeds go to stderr.\n\n"
            "options:\n"
            "  --model DIR          furrow checkpoint\n"
            "  --prompt-tokens LIST comma-separated prompt token ids\n"
            "  --max-tokens N       tokens to generate (default 16)\n"
            "  --temperature T      0 (default) is greedy\n"
            "  --top-p P            nucleus sampling threshold (default 1: off)\n"
            "  --seed N             sampling seed (default 0)\n"
            "  --ignore-eos         keep going after the end-of-sentence token\n"
            "  --kernels K          fast (default) or ref\n"
            "  -h, --help           this help\n");
}

int fw_cmd_generate(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},       {"prompt-tokens", required_argument, 0, 'p'},
        {"max-tokens", required_argument, 0, 'n'},  {"temperature", required_argument, 0, 'T'},
        {"top-p", required_argument, 0, 'P'},       {"seed", required_argument, 0, 's'},
        {"ignore-eos", no_argument, 0, 'i'},        {"kernels", required_argument, 0, 'k'},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
    const char *model_dir = NULL, *prompt = NULL;
    const fw_ops *ops = fw_ops_cpu_fast();
    int64_t max_tokens = 16, seed = 0;
    double temperature = 0, top_p = 1;
    int ignore_eos = 0;
    fw_err e = {{0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'p': prompt = optarg; break;
        case 'n': bad = fw_cli_parse_int(optarg, "--max-tokens", 0, 1 << 30, &max_tokens, &e); break;
        case 'T': bad = fw_cli_parse_double(optarg, "--temperature", &temperature, &e) ||
                        (temperature < 0 && fw_errf(&e, "--temperature must be >= 0"));
                  break;
        case 'P': bad = fw_cli_parse_double(optarg, "--top-p", &top_p, &e) ||
                        ((top_p <= 0 || top_p > 1) && fw_errf(&e, "--top-p must be in (0, 1]"));
                  break;
        case 's': bad = fw_cli_parse_int(optarg, "--seed", 0, INT64_MAX, &seed, &e); break;
        case 'i': ignore_eos = 1; break;
        case 'k': bad = fw_cli_parse_kernels(optarg, &ops, &e); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "furrow generate: %s\n", e.msg);
            return 2;
        }
    }
    if (!model_dir || !prompt || optind < argc) {
        fprintf(stderr, "furrow generate: --model and --prompt-tokens are required\n");
        usage(stderr);
        return 2;
    }

    int rc = 1;
    fw_model *m = NULL;
    fw_kv kv = {0};
    int32_t *ids = NULL, *out = NULL;
    float *logits = NULL, *work = NULL;
    int64_t T, n_out = 0;
    if (fw_model_load(&m, model_dir, ops, &e)) goto done;
    const int64_t V = m->cfg.vocab_size;
    if (fw_cli_parse_ids(prompt, "--prompt-tokens", V, &ids, &T, &e) ||
        fw_kv_init(&kv, m, T + max_tokens, &e))
        goto done;
    logits = malloc((size_t)V * sizeof(float));
    work = malloc((size_t)(2 * V) * sizeof(float));
    out = malloc((size_t)(max_tokens + 1) * sizeof(int32_t));
    if (!logits || !work || !out) {
        fw_errf(&e, "out of memory");
        goto done;
    }
    fw_sampler sampler;
    fw_sampler_init(&sampler, temperature, top_p, (uint64_t)seed);

    double t0 = fw_now();
    if (fw_model_forward(m, &kv, ids, T, FW_ATTN_NAIVE, logits, 1, &e)) goto done;
    double t_prefill = fw_now() - t0;
    t0 = fw_now();
    while (n_out < max_tokens) {
        int32_t tok = fw_sample(&sampler, logits, V, work);
        out[n_out++] = tok;
        if ((tok == m->cfg.eos_token_id && !ignore_eos) || n_out == max_tokens) break;
        if (fw_model_forward(m, &kv, &tok, 1, FW_ATTN_ABSORBED, logits, 1, &e)) goto done;
    }
    double t_decode = fw_now() - t0;

    printf("[");
    for (int64_t i = 0; i < n_out; i++) printf("%s%d", i ? ", " : "", out[i]);
    printf("]\n");
    fprintf(stderr, "furrow generate: prefill %lld tokens in %.3f s (%.1f tokens/s); "
                    "decode %lld tokens in %.3f s (%.1f tokens/s); kernels %s\n",
            (long long)T, t_prefill, (double)T / t_prefill, (long long)(n_out - 1), t_decode,
            n_out > 1 ? (double)(n_out - 1) / t_decode : 0.0, ops->name);
    rc = 0;
done:
    if (rc) fprintf(stderr, "furrow generate: %s\n", e.msg);
    free(out);
    free(work);
    free(logits);
    free(ids);
    fw_kv_free(&kv);
    fw_model_free(m);
    return rc;
}
