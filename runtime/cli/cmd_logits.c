/* furrow logits: a full forward (prefill) over token ids; the logits at every
 * position go to an HDF5 file (dataset `logits`, (n_tokens, vocab) float32).
 * Runs on one rank or under mpirun with any valid layout. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/h5out.h"
#include "runtime/cli/cli.h"
#include "runtime/engine/engine.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: [mpirun -np N] furrow logits --model DIR --tokens ID,ID,... --out FILE.h5 [options]\n\n"
            "Runs the model over the tokens (one full forward) and writes dataset 'logits'\n"
            "(n_tokens, vocab) float32 and 'tokens' (n_tokens) int64 to FILE.h5 (rank 0 writes).\n\n"
            "options:\n"
            "  --model DIR                         furrow checkpoint (furrow convert or furrow synth)\n"
            "  --tokens LIST                       comma-separated token ids\n"
            "  --out FILE                          output HDF5 file (replaced once complete)\n"
            "  --attention naive|absorbed          prefill form of MLA (default naive)\n"
            FW_CLI_ENGINE_HELP
            "  -h, --help                          this help\n");
}

/* What the command line asks for. */
typedef struct logits_args {
    fw_engine_opts eo;
    const char *tokens, *out;
    fw_attn_mode mode;
} logits_args;

/* Parses the flags into a; -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, logits_args *a) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"tokens", required_argument, 0, 't'},
        {"out", required_argument, 0, 'o'},   {"attention", required_argument, 0, 'a'},
        {"help", no_argument, 0, 'h'},        FW_CLI_ENGINE_OPTIONS, {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    fw_cli_engine_defaults(&a->eo);
    a->mode = FW_ATTN_NAIVE;
    fw_err e = {{0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int r = fw_cli_engine_option(c, optarg, &a->eo, &e);
        if (r < 0) {
            fprintf(stderr, "furrow logits: %s\n", e.msg);
            return 2;
        }
        if (r) continue;
        switch (c) {
        case 'm': a->eo.model_dir = optarg; break;
        case 't': a->tokens = optarg; break;
        case 'o': a->out = optarg; break;
        case 'a':
            if (!strcmp(optarg, "naive")) a->mode = FW_ATTN_NAIVE;
            else if (!strcmp(optarg, "absorbed")) a->mode = FW_ATTN_ABSORBED;
            else {
                fprintf(stderr, "furrow logits: --attention: expected naive or absorbed, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!a->eo.model_dir || !a->tokens || !a->out || optind < argc) {
        fprintf(stderr, "furrow logits: --model, --tokens and --out are required%s\n",
                optind < argc ? " (and takes no positional arguments)" : "");
        usage(stderr);
        return 2;
    }
    return -1;
}

/* Rank 0: the logits and the tokens into the HDF5 file. */
static int write_output(const logits_args *a, const int32_t *ids, int64_t T, const float *logits, int64_t V,
                        fw_err *e) {
    int64_t *ids64 = malloc((size_t)T * sizeof(int64_t));
    if (!ids64) return fw_errf(e, "out of memory");
    for (int64_t i = 0; i < T; i++) ids64[i] = ids[i];
    fw_h5out *h5 = NULL;
    int bad = fw_h5out_create(&h5, a->out, e) || fw_h5out_f32(h5, "logits", logits, T, V, e) ||
              fw_h5out_i64(h5, "tokens", ids64, T, e) || fw_h5out_attr(h5, "model", a->eo.model_dir, e);
    fw_err close_err;
    if (h5 && fw_h5out_close(h5, &close_err) && !bad) bad = 1, *e = close_err;
    free(ids64);
    return bad ? FW_ERR : FW_OK;
}

int fw_cmd_logits(int argc, char **argv) {
    logits_args a;
    int st = parse_args(argc, argv, &a);
    if (st >= 0) return st;
    fw_err e = {{0}};
    int32_t *ids;
    int64_t T;
    if (fw_cli_parse_ids(a.tokens, "--tokens", 0, &ids, &T, &e)) {
        fprintf(stderr, "furrow logits: %s\n", e.msg);
        return 2;
    }

    struct stat out_st;   /* refused before the forward, not after it */
    if (stat(a.out, &out_st) == 0 && !S_ISREG(out_st.st_mode)) {
        fprintf(stderr, "furrow logits: --out %s: exists and is not a regular file\n", a.out);
        free(ids);
        return 2;
    }
    fw_world w;
    if (fw_world_init(&w, NULL, NULL, &e)) {
        fprintf(stderr, "furrow logits: %s\n", e.msg);
        free(ids);
        return 1;
    }
    a.eo.context = T;
    fw_engine en;
    int rc = 1;
    float *logits = NULL;
    if (fw_engine_init(&en, &w, &a.eo, &e)) {
        fw_world_report(&w, "logits", e.msg);
        goto free_engine;
    }
    const int64_t V = en.model->cfg.vocab_size;
    if (w.rank == 0 && !(logits = malloc((size_t)(T * V) * sizeof(float)))) {
        fw_errf(&e, "out of memory for %lld x %lld logits", (long long)T, (long long)V);
        fw_world_abort(&w, "logits", e.msg);
    }
    double t0 = fw_now();
    if (fw_engine_logits(&en, ids, T, a.mode, logits, &e)) {
        if (w.size > 1) fw_world_abort(&w, "logits", e.msg);
        fw_world_report(&w, "logits", e.msg);
        goto free_engine;
    }
    double dt = fw_now() - t0;
    rc = 0;
    if (w.rank == 0 && write_output(&a, ids, T, logits, V, &e)) {
        fprintf(stderr, "furrow logits: %s\n", e.msg);
        rc = 1;
    } else if (w.rank == 0) {
        fprintf(stderr, "furrow logits: %lld tokens in %.3f s (%.1f tokens/s; %d rank(s): tp %d, pp %d; kernels %s) -> %s\n",
                (long long)T, dt, (double)T / dt, w.size, en.layout.tp, en.layout.pp, a.eo.ops->name, a.out);
    }
    /* Rank 0's write result decides the exit status everywhere. */
    MPI_Bcast(&rc, 1, MPI_INT, 0, w.comm);
free_engine:
    fw_engine_free(&en);
    free(logits);
    free(ids);
    fw_world_finalize(&w);
    return rc;
}
