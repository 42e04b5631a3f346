/* furrow bench: prefill and decode speed of the model in a checkpoint, next to
 * this machine's memory bandwidth and FMA peak measured in the same run. */
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <string.h>

#include "io/synth.h"
#include "kernels/cpu/ceilings.h"
#include "runtime/cli/cli.h"
#include "runtime/engine/engine.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: [mpirun -np N] furrow bench --model DIR [options]\n\n"
            "Measures prefill and decode tokens/s on random token ids, the weight bytes streamed\n"
            "per decoded token, and this machine's copy/read bandwidth and FMA peak (measured\n"
            "by rank 0 before loading). Under mpirun: compute, all-reduce and pipeline time\n"
            "and bytes moved, per rank. The last line (\"figures\") holds the run's figures as\n"
            "key=value pairs for scripts (jobs/scaling).\n\n"
            "options:\n"
            "  --model DIR                         furrow checkpoint (e.g. furrow synth --preset small)\n"
            "  --prompt N                          prefill length (default 128)\n"
            "  --decode N                          decoded tokens (default 32)\n"
            "  --batch B                           sequences at once (default 1); under pipeline\n"
            "                                      parallelism they overlap in the stages\n"
            "  --no-ceilings                       skip the bandwidth and FMA measurements\n"
            "  --synthetic PRESET                  no checkpoint: random weights of a preset (tiny, small,\n"
            "                                      deepseek-v3) generated in place on each rank\n"
            "  --layers N                          with --synthetic: N layers (default: the preset's)\n"
            "  --dense N                           with --synthetic: the first N layers dense\n"
            "\nwith --device cuda (GPU: decode steps per batch and context, then a prefill;\n"
            "per-layer times split by region, against the GPU's copy bandwidth and bf16\n"
            "GEMM rate measured in the same run):\n"
            "  --batches LIST                      decode batch sizes (default 1,8,64,256)\n"
            "  --contexts LIST                     cached positions per sequence (default 1024,4096)\n"
            "  --prefill N                         prefill length (default 4096; 0: none)\n"
            "  --iters N                           timed repetitions (default 5)\n"
            FW_CLI_ENGINE_HELP
            "  -h, --help                          this help\n");
}

static uint64_t weight_bytes(const fw_weight *w) {
    uint64_t b = (uint64_t)(w->rows * w->cols) * (uint64_t)fw_wtype_size(w->type);
    if (w->type == FW_WTYPE_FP8) b += (uint64_t)(((w->rows + 127) / 128) * w->scale_ld) * 4;
    return b;
}

/* Weight bytes one decoded token reads on this rank: everything it holds but the
 * routed experts the token does not use (k of E on average, spread over the
 * ranks that hold them) and all embedding rows but one; and the matmul
 * parameters the token touches here. */
static void per_token(const fw_model *m, double *bytes, double *params) {
    const fw_config *c = &m->cfg;
    const fw_part *p = &m->part;
    double held_routed = 0, used_routed = 0, prm = 0;
    for (int l = p->first_layer; l < p->first_layer + p->n_layers; l++) {
        const fw_layer *L = &m->layers[l];
        const fw_weight *att[] = {&L->q_a, &L->q_b, &L->kv_a, &L->kv_b, &L->o};
        for (size_t i = 0; i < sizeof att / sizeof att[0]; i++) prm += (double)(att[i]->rows * att[i]->cols);
        if (!L->moe) {
            prm += 3.0 * (double)(L->gate.rows * L->gate.cols);
            continue;
        }
        prm += (double)(L->router.rows * L->router.cols) + 3.0 * (double)(L->sh_gate.rows * L->sh_gate.cols);
        if (p->exp_n == 0) continue;
        const int x = p->exp_first;
        double one = (double)(weight_bytes(&L->exp_gate[x]) + weight_bytes(&L->exp_up[x]) + weight_bytes(&L->exp_down[x]));
        double share = (double)c->num_experts_per_tok * p->exp_n / c->n_routed_experts; /* expected experts used here */
        held_routed += one * p->exp_n;
        used_routed += one * share;
        prm += 3.0 * (double)(L->exp_gate[x].rows * L->exp_gate[x].cols) * share;
    }
    double embed = p->has_embed ? (double)weight_bytes(&m->embed) : 0;
    if (p->has_head) prm += (double)(m->head.rows * m->head.cols);
    *bytes = (double)m->weight_bytes - held_routed + used_routed - embed + (p->has_embed ? embed / (double)p->vocab : 0);
    *params = prm;
}

/* Per-rank figures gathered on rank 0. */
typedef struct rank_stats {
    double t_prefill, t_decode, t_allreduce, t_p2p, bytes_allreduce, bytes_p2p, tok_bytes, tok_params, t_load, rss_mb;
} rank_stats;

static void print_ranks(const fw_engine *en, const rank_stats *all, int n, int64_t P, int64_t N) {
    printf("rank  dp pp tp  load s  compute s  allreduce s  p2p s  MB moved/step  weight MB/token  peak MB\n");
    for (int r = 0; r < n; r++) {
        const rank_stats *s = &all[r];
        double total = s->t_prefill + s->t_decode, comm = s->t_allreduce + s->t_p2p;
        printf("%4d  %2d %2d %2d  %6.2f  %9.3f  %11.3f  %5.3f  %13.3f  %15.1f  %7.1f\n", r, fw_layout_dp_rank(&en->layout, r),
               fw_layout_pp_rank(&en->layout, r), fw_layout_tp_rank(&en->layout, r), s->t_load, total - comm,
               s->t_allreduce, s->t_p2p, (s->bytes_allreduce + s->bytes_p2p) / 1e6 / (double)(1 + N), s->tok_bytes / 1e6, s->rss_mb);
    }
    (void)P;
}

/* One line of key=value pairs: throughput over all replicas (the slowest rank
 * sets the pace), TTFT (the batch's prefill) and TPOT, and the worst rank's
 * load, compute, communication time and peak memory. */
static void print_figures(const fw_engine *en, const rank_stats *all, int n, int64_t B, int64_t P, int64_t N) {
    double t_prefill = 0, t_decode = 0, load = 0, compute = 0, comm = 0, rss = 0, moved = 0;
    for (int r = 0; r < n; r++) {
        const rank_stats *s = &all[r];
        double c = s->t_allreduce + s->t_p2p;
#define FW_MAX(a, b) ((b) > (a) ? (b) : (a))
        t_prefill = FW_MAX(t_prefill, s->t_prefill);
        t_decode = FW_MAX(t_decode, s->t_decode);
        load = FW_MAX(load, s->t_load);
        compute = FW_MAX(compute, s->t_prefill + s->t_decode - c);
        comm = FW_MAX(comm, c);
        rss = FW_MAX(rss, s->rss_mb);
#undef FW_MAX
        moved += s->bytes_allreduce + s->bytes_p2p;
    }
    const double dp = en->layout.dp;
    printf("figures    ranks=%d tp=%d pp=%d dp=%d batch=%lld prompt=%lld decode=%lld prefill_tok_s=%.2f "
           "decode_tok_s=%.2f ttft_s=%.4f tpot_s=%.5f load_s=%.3f compute_s=%.3f comm_s=%.3f moved_mb=%.3f "
           "rank_peak_mb=%.1f\n",
           n, en->layout.tp, en->layout.pp, en->layout.dp, (long long)B, (long long)P, (long long)N,
           dp * (double)(B * P) / t_prefill, dp * (double)(B * N) / t_decode, t_prefill, t_decode / (double)N, load,
           compute, comm, moved / 1e6, rss);
}

int fw_cmd_bench(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"prompt", required_argument, 0, 'p'},
        {"decode", required_argument, 0, 'd'}, {"no-ceilings", no_argument, 0, 'n'},
        {"batch", required_argument, 0, 'b'},
        {"synthetic", required_argument, 0, 's'}, {"layers", required_argument, 0, 'L'},
        {"dense", required_argument, 0, 'D'},     {"batches", required_argument, 0, 'B'},
        {"contexts", required_argument, 0, 'C'},  {"prefill", required_argument, 0, 'F'},
        {"iters", required_argument, 0, 'I'},
        {"help", no_argument, 0, 'h'},        FW_CLI_ENGINE_OPTIONS, {0, 0, 0, 0}};
    setvbuf(stdout, NULL, _IOLBF, 0); /* rows reach a log before any abort */
    fw_engine_opts eo;
    fw_cli_engine_defaults(&eo);
    int64_t P = 128, N = 32, B = 1, layers = 0, dense = -1;
    int ceilings = 1;
    const char *synthetic = NULL;
    char spec[128];
    fw_dev_bench db = {.n_batch = 4, .batch = {1, 8, 64, 256}, .n_context = 2, .context = {1024, 4096},
                       .prefill = 4096, .iters = 5};
    int32_t *list = NULL;
    int64_t nlist = 0, v;
    fw_err e = {{0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = fw_cli_engine_option(c, optarg, &eo, &e);
        if (bad > 0) continue;
        bad = bad < 0;
        switch (c) {
        case 'm': eo.model_dir = optarg; break;
        case 'p': bad = fw_cli_parse_int(optarg, "--prompt", 1, 1 << 20, &P, &e); break;
        case 'd': bad = fw_cli_parse_int(optarg, "--decode", 1, 1 << 20, &N, &e); break;
        case 'b': bad = fw_cli_parse_int(optarg, "--batch", 1, 256, &B, &e); break;
        case 'n': ceilings = 0; break;
        case 's': synthetic = optarg; break;
        case 'L': bad = fw_cli_parse_int(optarg, "--layers", 1, 1000, &layers, &e); break;
        case 'D': bad = fw_cli_parse_int(optarg, "--dense", 0, 1000, &dense, &e); break;
        case 'F': bad = fw_cli_parse_int(optarg, "--prefill", 0, 1 << 20, &db.prefill, &e); break;
        case 'I': bad = fw_cli_parse_int(optarg, "--iters", 1, 1000, &v, &e), db.iters = (int)v; break;
        case 'B':
        case 'C':
            bad = fw_cli_parse_ids(optarg, c == 'B' ? "--batches" : "--contexts", 0, &list, &nlist, &e);
            if (!bad && (nlist < 1 || nlist > (c == 'B' ? 8 : 4)))
                bad = fw_errf(&e, "%s: 1 to %d values", c == 'B' ? "--batches" : "--contexts",
                              c == 'B' ? 8 : 4) != 0;
            for (int64_t i = 0; !bad && i < nlist; i++) {
                if (list[i] < 1 || (c == 'B' && list[i] > 256))
                    bad = fw_errf(&e, "%s: %d is out of range", c == 'B' ? "--batches" : "--contexts", list[i]) != 0;
                else if (c == 'B') db.batch[i] = list[i];
                else db.context[i] = list[i];
            }
            if (c == 'B') db.n_batch = (int)nlist;
            else db.n_context = (int)nlist;
            free(list);
            list = NULL;
            break;
        case 'h': usage(stdout); return 0;
        default:
            if (!bad) {
                usage(stderr);
                return 2;
            }
        }
        if (bad) {
            fprintf(stderr, "furrow bench: %s\n", e.msg);
            return 2;
        }
    }
    if (synthetic) { /* the in-place synthetic model (io/synth.h) */
        int n = snprintf(spec, sizeof spec, "%s%s", FW_SYNTH_PREFIX, synthetic);
        if (layers) n += snprintf(spec + n, sizeof spec - (size_t)n, ",layers=%lld", (long long)layers);
        if (dense >= 0) snprintf(spec + n, sizeof spec - (size_t)n, ",dense=%lld", (long long)dense);
        eo.model_dir = spec;
    }
    if (!eo.model_dir || optind < argc) {
        fprintf(stderr, "furrow bench: --model or --synthetic is required\n");
        usage(stderr);
        return 2;
    }

    fw_world w;
    if (fw_world_init(&w, NULL, NULL, &e)) {
        fprintf(stderr, "furrow bench: %s\n", e.msg);
        return 1;
    }
    const bool device = eo.device && strcmp(eo.device, "cpu");
    if (device) ceilings = 0; /* the device measures its own */
    fw_ceilings ceil = {0};
    /* Measured on rank 0 alone before the model loads, so nothing competes. */
    if (ceilings && w.rank == 0 && fw_ceilings_measure(&ceil, (size_t)1 << 30)) {
        fprintf(stderr, "furrow bench: out of memory for the bandwidth measurement\n");
        ceilings = 0;
    }
    eo.context = P + N;
    eo.n_seqs = (int)B;
    if (device) {
        eo.context = db.prefill;
        eo.n_seqs = 1;
        for (int i = 0; i < db.n_context; i++) eo.context = db.context[i] + 1 > eo.context ? db.context[i] + 1 : eo.context;
        for (int i = 0; i < db.n_batch; i++) eo.n_seqs = db.batch[i] > eo.n_seqs ? db.batch[i] : eo.n_seqs;
    }
    fw_engine en;
    int rc = 1;
    int32_t *ids = NULL;
    const double t_start = fw_now();
    if (fw_engine_init(&en, &w, &eo, &e)) {
        fw_world_report(&w, "bench", e.msg);
        goto done;
    }
    if (device) {
        if (en.layout.pp > 1) fw_world_abort(&w, "bench", "--device: the device benchmark runs one pipeline stage (pp 1)");
        MPI_Barrier(w.comm);
        if (w.rank == 0)
            printf("model      %s: %d layers, %.2f GB of weights on rank 0; tp %d; start-up %.1f s (read or "
                   "generate, upload, NCCL; slowest rank)\n", eo.model_dir, en.model->cfg.num_hidden_layers,
                   (double)en.model->weight_bytes / 1e9, en.layout.tp, fw_now() - t_start);
        if (en.dev_be->bench(en.dev, &db, w.rank == 0, &e)) fw_world_abort(&w, "bench", e.msg);
        rc = 0;
        goto done;
    }
    const fw_config *cf = &en.model->cfg;
    const int64_t V = cf->vocab_size;
    if (!(ids = malloc((size_t)(B * P) * sizeof(int32_t)))) fw_world_abort(&w, "bench", "out of memory");
    uint64_t x = 88172645463325252ull; /* xorshift: fixed pseudo-random prompts */
    for (int64_t i = 0; i < B * P; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = (int32_t)(x % (uint64_t)V);
    }
    const int32_t *in[256];
    int64_t lens[256], ones[256];
    int32_t toks[256];
    for (int64_t b = 0; b < B; b++) in[b] = ids + b * P, lens[b] = P, ones[b] = 1;
    rank_stats mine = {.t_load = en.t_load};
    per_token(en.model, &mine.tok_bytes, &mine.tok_params);

    MPI_Barrier(w.comm);
    double t0 = fw_now();
    if (fw_engine_forward_many(&en, (int)B, in, lens, FW_ATTN_NAIVE, toks, &e)) fw_world_abort(&w, "bench", e.msg);
    mine.t_prefill = fw_now() - t0;
    t0 = fw_now();
    for (int64_t b = 0; b < B; b++) in[b] = &toks[b];
    for (int64_t i = 0; i < N; i++)
        if (fw_engine_forward_many(&en, (int)B, in, ones, FW_ATTN_ABSORBED, toks, &e)) fw_world_abort(&w, "bench", e.msg);
    mine.t_decode = fw_now() - t0;
    mine.t_allreduce = en.comm.stats.t_allreduce;
    mine.t_p2p = en.comm.stats.t_p2p;
    mine.bytes_allreduce = (double)en.comm.stats.bytes_allreduce;
    mine.bytes_p2p = (double)en.comm.stats.bytes_p2p;
    struct rusage ru;
    mine.rss_mb = getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1e3 : 0; /* ru_maxrss: kB */

    rank_stats *all = w.rank == 0 ? malloc((size_t)w.size * sizeof *all) : NULL;
    MPI_Gather(&mine, sizeof mine, MPI_BYTE, all, sizeof mine, MPI_BYTE, 0, w.comm);
    if (w.rank == 0) {
        /* One replica's ranks together stream its bytes; the slowest rank sets the pace. */
        double tok_bytes = 0, tok_params = 0, t_prefill = 0, t_decode = 0, weights = 0;
        int replica = en.layout.tp * en.layout.pp;
        for (int r = 0; r < replica; r++) {
            tok_bytes += all[r].tok_bytes;
            tok_params += all[r].tok_params;
            if (all[r].t_prefill > t_prefill) t_prefill = all[r].t_prefill;
            if (all[r].t_decode > t_decode) t_decode = all[r].t_decode;
        }
        weights = (double)en.model->weight_bytes;
        double prefill_tps = (double)(B * P) / t_prefill, decode_tps = (double)(B * N) / t_decode;
        double gflops = 2.0 * tok_params * prefill_tps / 1e9;
        double kv_bytes = (double)cf->num_hidden_layers * (double)(P + N / 2) * (double)en.kvs[0].width * 4;
        double gbs = (tok_bytes + kv_bytes) * decode_tps / 1e9;
        printf("model      %s: %d layers, hidden %lld, %d routed experts (top-%d), %.2f GB of weights on rank 0\n",
               eo.model_dir, cf->num_hidden_layers, (long long)cf->hidden_size, cf->n_routed_experts,
               cf->num_experts_per_tok, weights / 1e9);
        printf("setup      %d rank(s): tp %d, pp %d, dp %d; kernels %s; %d thread(s) on rank 0 (cores %s)\n", w.size,
               en.layout.tp, en.layout.pp, en.layout.dp, eo.ops->name, en.topo.threads, en.topo.cpuset);
        if (ceilings)
            printf("machine    copy %.1f GB/s (read+write), read %.1f GB/s, fp32 FMA peak %.1f GFLOP/s (%d threads)\n",
                   ceil.copy_gbs, ceil.read_gbs, ceil.fma_gflops, ceil.threads);
        if (B > 1) printf("batch      %lld sequences, each with its own cache\n", (long long)B);
        printf("prefill    %lld tokens: %.3f s, %.1f tokens/s, %.1f GFLOP/s in matmuls", (long long)(B * P), t_prefill,
               prefill_tps, gflops);
        if (ceilings) printf(" (%.0f%% of FMA peak)", 100 * gflops / ceil.fma_gflops);
        printf("\ndecode     %lld tokens: %.3f s, %.2f tokens/s, %.1f MB streamed per token, %.1f GB/s", (long long)(B * N),
               t_decode, decode_tps, (tok_bytes + kv_bytes) / 1e6, gbs);
        if (ceilings)
            printf(" (%.0f%% of read, %.0f%% of copy bandwidth)", 100 * gbs / ceil.read_gbs, 100 * gbs / ceil.copy_gbs);
        printf("\n");
        if (w.size > 1) print_ranks(&en, all, w.size, P, N);
        print_figures(&en, all, w.size, B, P, N);
        free(all);
    }
    rc = 0;
done:
    fw_engine_free(&en);
    free(ids);
    fw_world_finalize(&w);
    return rc;
}
