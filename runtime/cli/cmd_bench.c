/* furrow bench: prefill and decode speed of the model in a checkpoint, next to
 * this machine's memory bandwidth and FMA peak measured in the same run. */
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "io/synth.h"
#include "kernels/cpu/ceilings.h"
#include "runtime/cli/cli.h"
#include "runtime/cli/bench_json.h"
#include "runtime/cli/bench_spec.h"
#include "runtime/engine/engine.h"

/* Sequences of one benchmark at most. */
#define FW_BENCH_MAX_BATCH 256

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
            "  --json-output                       also the sampler's time per token with a JSON output\n"
            "                                      mask (json_object, a schema) and without, beside the\n"
            "                                      decode step (needs the model's tokenizer, or --tokenizer)\n"
            "  --tokenizer DIR                     the tokenizer for --json-output (default: --model's)\n"
            "  --synthetic PRESET                  no checkpoint: random weights of a preset (tiny, small,\n"
            "                                      deepseek-v3) generated in place on each rank\n"
            "  --layers N                          with --synthetic: N layers (default: the preset's)\n"
            "  --dense N                           with --synthetic: the first N layers dense\n"
            "                                      (also in its text: PRESET[,layers=N][,dense=N][,seed=N]\n"
            "                                      [,fp8=0|1][,weights=SPEC], weights last: SPEC is\n"
            "                                      int4[,group=G][,experts][,head] or\n"
            "                                      int8[,experts][,head], e.g.\n"
            "                                      deepseek-v3,layers=4,dense=1,weights=int4,group=32)\n"
            "\nwith a backend that has a step benchmark, --device cuda (decode steps per batch\n"
            "and context, then a prefill; per-layer times split by region, against the GPU's\n"
            "copy bandwidth and bf16 GEMM rate measured in the same run):\n"
            "  --batches LIST                      decode batch sizes (default 1,8,64,256)\n"
            "  --contexts LIST                     cached positions per sequence (default 1024,4096)\n"
            "  --prefill N                         prefill length (default 4096; 0: none)\n"
            "  --iters N                           timed repetitions (default 5)\n"
            "\nwith --speculative mtp:K (a checkpoint with an MTP layer; CPU): the step times that\n"
            "speculative decoding trades at each of --batches (default 1,8,64) after --prompt\n"
            "cached positions, over --iters, and the decode speed-up they give at acceptance\n"
            "rates 0.6-0.9, after the drafts' acceptance along 32 greedy steps of the model\n"
            "(instead of the end-to-end run)\n"
            FW_CLI_ENGINE_HELP
            "  -h, --help                          this help\n");
}

static uint64_t weight_bytes(const fw_weight *w) {
    uint64_t b = (uint64_t)fw_wtype_bytes(w->type, w->rows, w->cols);
    if (w->type == FW_WTYPE_FP8) b += (uint64_t)(((w->rows + 127) / 128) * w->scale_ld) * 4;
    if (fw_wtype_grouped(w->type)) b += (uint64_t)(w->rows * ((w->cols + w->group - 1) / w->group)) * 2;
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

/* What the command line asks for. */
typedef struct bench_args {
    fw_engine_opts eo;
    int64_t P, N, B;           /* end to end: prompt, decoded tokens, sequences */
    bool ceilings;
    fw_bench_steps steps;      /* a backend's step benchmark */
    char spec[128];            /* --synthetic: the in-place model's spec */
    bool json;                 /* --json-output */
    bool batches_set;          /* --batches given */
    const char *tokenizer;
} bench_args;

/* Parses the flags into a; -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, bench_args *a) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"prompt", required_argument, 0, 'p'},
        {"decode", required_argument, 0, 'd'}, {"no-ceilings", no_argument, 0, 'n'},
        {"batch", required_argument, 0, 'b'},
        {"synthetic", required_argument, 0, 's'}, {"layers", required_argument, 0, 'L'},
        {"dense", required_argument, 0, 'D'},     {"batches", required_argument, 0, 'B'},
        {"contexts", required_argument, 0, 'C'},  {"prefill", required_argument, 0, 'F'},
        {"iters", required_argument, 0, 'I'},
        {"json-output", no_argument, 0, 'J'},     {"tokenizer", required_argument, 0, 'T'},
        {"help", no_argument, 0, 'h'},        FW_CLI_ENGINE_OPTIONS, {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    fw_cli_engine_defaults(&a->eo);
    a->P = 128, a->N = 32, a->B = 1, a->ceilings = true;
    a->steps = (fw_bench_steps){.n_batch = 4, .batch = {1, 8, 64, 256}, .n_context = 2, .context = {1024, 4096},
                                .prefill = 4096, .iters = 5};
    int64_t layers = 0, dense = -1, v;
    const char *synthetic = NULL;
    int32_t *list = NULL;
    int64_t nlist = 0;
    fw_err e = {{0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = fw_cli_engine_option(c, optarg, &a->eo, &e);
        if (bad > 0) continue;
        bad = bad < 0;
        switch (c) {
        case 'm': a->eo.model_dir = optarg; break;
        case 'p': bad = fw_cli_parse_int(optarg, "--prompt", 1, 1 << 20, &a->P, &e); break;
        case 'd': bad = fw_cli_parse_int(optarg, "--decode", 1, 1 << 20, &a->N, &e); break;
        case 'b': bad = fw_cli_parse_int(optarg, "--batch", 1, FW_BENCH_MAX_BATCH, &a->B, &e); break;
        case 'n': a->ceilings = false; break;
        case 'J': a->json = true; break;
        case 'T': a->tokenizer = optarg; break;
        case 's': synthetic = optarg; break;
        case 'L': bad = fw_cli_parse_int(optarg, "--layers", 1, 1000, &layers, &e); break;
        case 'D': bad = fw_cli_parse_int(optarg, "--dense", 0, 1000, &dense, &e); break;
        case 'F': bad = fw_cli_parse_int(optarg, "--prefill", 0, 1 << 20, &a->steps.prefill, &e); break;
        case 'I': bad = fw_cli_parse_int(optarg, "--iters", 1, 1000, &v, &e), a->steps.iters = (int)v; break;
        case 'B':
        case 'C': {
            const bool batches = c == 'B';
            const char *flag = batches ? "--batches" : "--contexts";
            const int most = batches ? 8 : 4;
            bad = fw_cli_parse_ids(optarg, flag, 0, &list, &nlist, &e);
            if (!bad && (nlist < 1 || nlist > most)) bad = fw_errf(&e, "%s: 1 to %d values", flag, most) != 0;
            for (int64_t i = 0; !bad && i < nlist; i++) {
                if (list[i] < 1 || (batches && list[i] > FW_BENCH_MAX_BATCH))
                    bad = fw_errf(&e, "%s: %d is out of range", flag, list[i]) != 0;
                else if (batches) a->steps.batch[i] = list[i];
                else a->steps.context[i] = list[i];
            }
            if (batches) a->steps.n_batch = (int)nlist, a->batches_set = true;
            else a->steps.n_context = (int)nlist;
            free(list);
            list = NULL;
            break;
        }
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
        /* --layers and --dense go before weights=, which takes the rest of the text. */
        const char *wq = strstr(synthetic, ",weights=");
        int n = snprintf(a->spec, sizeof a->spec, "%s%.*s", FW_SYNTH_PREFIX,
                         (int)(wq ? (size_t)(wq - synthetic) : strlen(synthetic)), synthetic);
        if (layers) n += snprintf(a->spec + n, sizeof a->spec - (size_t)n, ",layers=%lld", (long long)layers);
        if (dense >= 0) n += snprintf(a->spec + n, sizeof a->spec - (size_t)n, ",dense=%lld", (long long)dense);
        if (wq) snprintf(a->spec + n, sizeof a->spec - (size_t)n, "%s", wq);
        a->eo.model_dir = a->spec;
    }
    if (a->json && synthetic && !a->tokenizer) {
        fprintf(stderr, "furrow bench: --json-output with --synthetic needs --tokenizer DIR\n");
        return 2;
    }
    if (!a->eo.model_dir || optind < argc) {
        fprintf(stderr, "furrow bench: --model or --synthetic is required\n");
        usage(stderr);
        return 2;
    }
    return -1;
}

/* The backend's step benchmark, on one pipeline stage. */
static void run_steps(fw_world *w, fw_engine *en, const bench_args *a, double t_start) {
    fw_err e = {{0}};
    if (en->layout.pp > 1) fw_world_abort(w, "bench", "the step benchmark runs one pipeline stage (pp 1)");
    MPI_Barrier(w->comm);
    if (w->rank == 0)
        printf("model      %s: %d layers, %.2f GB of weights on rank 0; tp %d; start-up %.1f s (read or "
               "generate, upload, NCCL; slowest rank)\n", a->eo.model_dir, en->model->cfg.num_hidden_layers,
               (double)en->model->weight_bytes / 1e9, en->layout.tp, fw_now() - t_start);
    if (fw_engine_bench_steps(en, &a->steps, w->rank == 0, &e)) fw_world_abort(w, "bench", e.msg);
}

/* Prefill of B prompts of P random ids, then N decode steps, through the engine:
 * this rank's times and traffic. */
static void run_end_to_end(fw_world *w, fw_engine *en, const bench_args *a, rank_stats *mine) {
    fw_err e = {{0}};
    const int64_t V = en->model->cfg.vocab_size, B = a->B, P = a->P;
    int32_t *ids = malloc((size_t)(B * P) * sizeof(int32_t));
    if (!ids) fw_world_abort(w, "bench", "out of memory");
    uint64_t x = 88172645463325252ull; /* xorshift: fixed pseudo-random prompts */
    for (int64_t i = 0; i < B * P; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = (int32_t)(x % (uint64_t)V);
    }
    const int32_t *in[FW_BENCH_MAX_BATCH];
    int64_t lens[FW_BENCH_MAX_BATCH], ones[FW_BENCH_MAX_BATCH];
    int32_t toks[FW_BENCH_MAX_BATCH];
    for (int64_t b = 0; b < B; b++) in[b] = ids + b * P, lens[b] = P, ones[b] = 1;
    *mine = (rank_stats){.t_load = en->t_load};
    per_token(en->model, &mine->tok_bytes, &mine->tok_params);

    MPI_Barrier(w->comm);
    double t0 = fw_now();
    if (fw_engine_forward_many(en, (int)B, in, lens, FW_ATTN_NAIVE, toks, &e)) fw_world_abort(w, "bench", e.msg);
    mine->t_prefill = fw_now() - t0;
    t0 = fw_now();
    for (int64_t b = 0; b < B; b++) in[b] = &toks[b];
    for (int64_t i = 0; i < a->N; i++)
        if (fw_engine_forward_many(en, (int)B, in, ones, FW_ATTN_ABSORBED, toks, &e)) fw_world_abort(w, "bench", e.msg);
    mine->t_decode = fw_now() - t0;
    mine->t_allreduce = en->comm.stats.t_allreduce;
    mine->t_p2p = en->comm.stats.t_p2p;
    mine->bytes_allreduce = (double)en->comm.stats.bytes_allreduce;
    mine->bytes_p2p = (double)en->comm.stats.bytes_p2p;
    struct rusage ru;
    mine->rss_mb = getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1e3 : 0; /* ru_maxrss: kB */
    free(ids);
}

/* Rank 0: the end-to-end figures from every rank's. */
static void report(const fw_world *w, const fw_engine *en, const bench_args *a, const fw_ceilings *ceil,
                   const rank_stats *all) {
    const fw_config *cf = &en->model->cfg;
    const int64_t B = a->B, P = a->P, N = a->N;
    /* One replica's ranks together stream its bytes; the slowest rank sets the pace. */
    double tok_bytes = 0, tok_params = 0, t_prefill = 0, t_decode = 0;
    int replica = en->layout.tp * en->layout.pp;
    for (int r = 0; r < replica; r++) {
        tok_bytes += all[r].tok_bytes;
        tok_params += all[r].tok_params;
        if (all[r].t_prefill > t_prefill) t_prefill = all[r].t_prefill;
        if (all[r].t_decode > t_decode) t_decode = all[r].t_decode;
    }
    const double weights = (double)en->model->weight_bytes;
    const double prefill_tps = (double)(B * P) / t_prefill, decode_tps = (double)(B * N) / t_decode;
    const double gflops = 2.0 * tok_params * prefill_tps / 1e9;
    const double kv_width = (double)fw_config_kv_width(cf);
    const double kv_bytes = (double)cf->num_hidden_layers * (double)(P + N / 2) * kv_width * 4;
    const double gbs = (tok_bytes + kv_bytes) * decode_tps / 1e9;
    printf("model      %s: %d layers, hidden %lld, %d routed experts (top-%d), %.2f GB of weights on rank 0\n",
           a->eo.model_dir, cf->num_hidden_layers, (long long)cf->hidden_size, cf->n_routed_experts,
           cf->num_experts_per_tok, weights / 1e9);
    printf("setup      %d rank(s): tp %d, pp %d, dp %d; kernels %s; %d thread(s) on rank 0 (cores %s)\n", w->size,
           en->layout.tp, en->layout.pp, en->layout.dp, a->eo.ops->name, en->topo.threads, en->topo.cpuset);
    if (a->ceilings)
        printf("machine    copy %.1f GB/s (read+write), read %.1f GB/s, fp32 FMA peak %.1f GFLOP/s (%d threads)\n",
               ceil->copy_gbs, ceil->read_gbs, ceil->fma_gflops, ceil->threads);
    if (B > 1) printf("batch      %lld sequences, each with its own cache\n", (long long)B);
    printf("prefill    %lld tokens: %.3f s, %.1f tokens/s, %.1f GFLOP/s in matmuls", (long long)(B * P), t_prefill,
           prefill_tps, gflops);
    if (a->ceilings) printf(" (%.0f%% of FMA peak)", 100 * gflops / ceil->fma_gflops);
    printf("\ndecode     %lld tokens: %.3f s, %.2f tokens/s, %.1f MB streamed per token, %.1f GB/s", (long long)(B * N),
           t_decode, decode_tps, (tok_bytes + kv_bytes) / 1e6, gbs);
    if (a->ceilings)
        printf(" (%.0f%% of read, %.0f%% of copy bandwidth)", 100 * gbs / ceil->read_gbs, 100 * gbs / ceil->copy_gbs);
    printf("\n");
    if (w->size > 1) print_ranks(en, all, w->size, P, N);
    print_figures(en, all, w->size, B, P, N);
}

/* Rank 0, --json-output: at the model's vocabulary, and at the tokenizer's
 * whole one when the model has fewer rows (a small test model). */
static int json_output(const fw_engine *en, const bench_args *a, const rank_stats *all) {
    fw_tokenizer *t;
    fw_err e = {{0}};
    if (fw_tokenizer_load_dir(&t, a->tokenizer ? a->tokenizer : a->eo.model_dir, &e)) {
        fprintf(stderr, "furrow bench: --json-output: %s\n", e.msg);
        return 1;
    }
    double step = 0;
    for (int r = 0; r < en->layout.tp * en->layout.pp; r++)
        if (all[r].t_decode > step) step = all[r].t_decode;
    step /= (double)a->N;
    const fw_config *c = &en->model->cfg;
    int rc = fw_bench_json(t, c->vocab_size, (int32_t)c->eos_token_id, 2000, step, &e);
    if (rc == FW_OK && fw_tokenizer_n_ids(t) > c->vocab_size)
        rc = fw_bench_json(t, fw_tokenizer_n_ids(t), fw_tokenizer_eos(t), 2000, step, &e);
    if (rc) fprintf(stderr, "furrow bench: --json-output: %s\n", e.msg);
    fw_tokenizer_free(t);
    return rc ? 1 : 0;
}

int fw_cmd_bench(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* rows reach a log before any abort */
    bench_args a;
    int st = parse_args(argc, argv, &a);
    if (st >= 0) return st;
    /* A backend with a step benchmark runs it (and measures its own ceilings). */
    const fw_backend *be = fw_engine_backend(a.eo.device);
    const bool steps = be && be->bench_steps;
    if (steps) {
        a.ceilings = false;
        a.eo.context = a.steps.prefill;
        a.eo.n_seqs = 1;
        for (int i = 0; i < a.steps.n_context; i++)
            if (a.steps.context[i] + 1 > a.eo.context) a.eo.context = a.steps.context[i] + 1;
        for (int i = 0; i < a.steps.n_batch; i++)
            if (a.steps.batch[i] > a.eo.n_seqs) a.eo.n_seqs = a.steps.batch[i];
    } else if (a.eo.speculative) {
        if (!a.batches_set) a.steps = (fw_bench_steps){.n_batch = 3, .batch = {1, 8, 64}, .iters = a.steps.iters};
        a.eo.context = a.P + FW_BENCH_SPEC_STEPS + 2 * a.eo.speculative + 1;
        a.eo.n_seqs = 1;
        for (int i = 0; i < a.steps.n_batch; i++)
            if (a.steps.batch[i] > a.eo.n_seqs) a.eo.n_seqs = a.steps.batch[i];
        a.ceilings = false;
    } else {
        a.eo.context = a.P + a.N;
        a.eo.n_seqs = (int)a.B;
    }

    fw_err e = {{0}};
    fw_world w;
    if (fw_world_init(&w, NULL, NULL, &e)) {
        fprintf(stderr, "furrow bench: %s\n", e.msg);
        return 1;
    }
    fw_ceilings ceil = {0};
    /* Measured on rank 0 alone before the model loads, so nothing competes. */
    if (a.ceilings && w.rank == 0 && fw_ceilings_measure(&ceil, (size_t)1 << 30)) {
        fprintf(stderr, "furrow bench: out of memory for the bandwidth measurement\n");
        a.ceilings = false;
    }
    fw_engine en;
    int rc = 1;
    const double t_start = fw_now();
    if (fw_engine_init(&en, &w, &a.eo, &e)) {
        fw_world_report(&w, "bench", e.msg);
    } else if (steps) {
        run_steps(&w, &en, &a, t_start);
        rc = 0;
    } else if (a.eo.speculative) {
        if (fw_bench_speculative(&en, a.steps.batch, a.steps.n_batch, a.P, a.steps.iters, w.rank == 0, &e))
            fw_world_abort(&w, "bench", e.msg);
        rc = 0;
    } else {
        rank_stats mine;
        run_end_to_end(&w, &en, &a, &mine);
        rank_stats *all = w.rank == 0 ? malloc((size_t)w.size * sizeof *all) : NULL;
        if (w.rank == 0 && !all) fw_world_abort(&w, "bench", "out of memory");
        MPI_Gather(&mine, sizeof mine, MPI_BYTE, all, sizeof mine, MPI_BYTE, 0, w.comm);
        if (w.rank == 0) report(&w, &en, &a, &ceil, all);
        rc = w.rank == 0 && a.json ? json_output(&en, &a, all) : 0;
        free(all);
    }
    fw_engine_free(&en);
    fw_world_finalize(&w);
    return rc;
}
