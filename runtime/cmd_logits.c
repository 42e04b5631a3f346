/* furrow logits: a full forward (prefill) over token ids; the logits at every
 * position go to an HDF5 file (dataset `logits`, (n_tokens, vocab) float32). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/h5out.h"
#include "runtime/cli.h"
#include "runtime/model.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: furrow logits --model DIR --tokens ID,ID,... --out FILE.h5 [options]\n\n"
            "Runs the model over the tokens (one full forward) and writes dataset 'logits'\n"
            "(n_tokens, vocab) float32 and 'tokens' (n_tokens) int64 to FILE.h5.\n\n"
            "options:\n"
            "  --model DIR         furrow checkpoint (from furrow convert or furrow synth)\n"
            "  --tokens LIST       comma-separated token ids\n"
            "  --out FILE          output HDF5 file (overwritten)\n"
            "  --attention MODE    naive (default: expand K/V) or absorbed (latent-space MLA)\n"
            "  --kernels K         fast (default) or ref (plain reference loops)\n"
            "  -h, --help          this help\n");
}

int fw_cmd_logits(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"tokens", required_argument, 0, 't'},
        {"out", required_argument, 0, 'o'},   {"attention", required_argument, 0, 'a'},
        {"kernels", required_argument, 0, 'k'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *model_dir = NULL, *tokens = NULL, *out = NULL;
    const fw_ops *ops = fw_ops_cpu_fast();
    fw_attn_mode mode = FW_ATTN_NAIVE;
    fw_err e = {{0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 't': tokens = optarg; break;
        case 'o': out = optarg; break;
        case 'a':
            if (!strcmp(optarg, "naive")) mode = FW_ATTN_NAIVE;
            else if (!strcmp(optarg, "absorbed")) mode = FW_ATTN_ABSORBED;
            else {
                fprintf(stderr, "furrow logits: --attention: expected naive or absorbed, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'k':
            if (fw_cli_parse_kernels(optarg, &ops, &e)) {
                fprintf(stderr, "furrow logits: %s\n", e.msg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!model_dir || !tokens || !out || optind < argc) {
        fprintf(stderr, "furrow logits: --model, --tokens and --out are required%s\n",
                optind < argc ? " (and takes no positional arguments)" : "");
        usage(stderr);
        return 2;
    }

    int rc = 1;
    fw_model *m = NULL;
    fw_kv kv = {0};
    int32_t *ids = NULL;
    float *logits = NULL;
    int64_t *ids64 = NULL;
    fw_h5out *h5 = NULL;
    int64_t T;
    if (fw_model_load(&m, model_dir, ops, &e)) goto done;
    const int64_t V = m->cfg.vocab_size;
    if (fw_cli_parse_ids(tokens, "--tokens", V, &ids, &T, &e) || fw_kv_init(&kv, m, T, &e)) goto done;
    logits = malloc((size_t)(T * V) * sizeof(float));
    ids64 = malloc((size_t)T * sizeof(int64_t));
    if (!logits || !ids64) {
        fw_errf(&e, "out of memory for %lld x %lld logits", (long long)T, (long long)V);
        goto done;
    }
    double t0 = fw_now();
    if (fw_model_forward(m, &kv, ids, T, mode, logits, T, &e)) goto done;
    double dt = fw_now() - t0;
    for (int64_t i = 0; i < T; i++) ids64[i] = ids[i];
    if (fw_h5out_create(&h5, out, &e) || fw_h5out_f32(h5, "logits", logits, T, V, &e) ||
        fw_h5out_i64(h5, "tokens", ids64, T, &e) || fw_h5out_attr(h5, "model", model_dir, &e) ||
        fw_h5out_close(h5, &e))
        goto done;
    h5 = NULL;
    fprintf(stderr, "furrow logits: %lld tokens in %.3f s (%.1f tokens/s, kernels %s) -> %s\n",
            (long long)T, dt, (double)T / dt, ops->name, out);
    rc = 0;
done:
    if (rc) fprintf(stderr, "furrow logits: %s\n", e.msg);
    if (h5) fw_h5out_close(h5, &e);
    free(ids64);
    free(logits);
    free(ids);
    fw_kv_free(&kv);
    fw_model_free(m);
    return rc;
}
