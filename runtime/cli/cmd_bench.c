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
#include "runtime/cli/bench_comm.h"
#include "runtime/cli/bench_json.h"
#include "runtime/dist/energy.h"
#include <jansson.h>
#include "runtime/cli/bench_spec.h"
#include "runtime/engine/engine.h"

/* Sequences of one benchmark at most. */
#define FW_BENCH_MAX_BATCH 256

static void usage(FILE *f) {
    fprintf(f,
            "usage: [mpirun -np N] furrow bench --model DIR [options]\n"
            "       mpirun -np N furrow bench --comm FILE [--comm-max SIZE] [--comm-seconds S]\n\n"
            "Measures prefill and decode tokens/s on random token ids, the weight bytes streamed\n"
            "per decoded token, and this machine's copy/read bandwidth and FMA peak (measured\n"
            "by rank 0 before loading). Under mpirun: compute, all-reduce and pipeline time\n"
            "and bytes moved, per rank. The last line (\"figures\") holds the run's figures as\n"
            "key=value pairs for scripts (jobs/scaling). Energy per token of each phase comes from\n"
            "the nodes' counters (RAPL for the CPU packages where readable, NVML for GPUs), one rank\n"
            "of each node reading them; a counter not available is said so.\n\n"
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
            "  --json FILE                         also write the per-layer compute of the ranks' shares\n"
            "                                      (decode and prefill, communication taken out) as\n"
            "                                      \"furrow-compute\" JSON, for furrow plan --predict --compute\n"
            "  --comm FILE                         no model: measure send/recv, all-reduce and all-to-all\n"
            "                                      between the ranks of this job (within nodes, and across\n"
            "                                      them) at sizes from 16 B up (send/recv: 8 messages one\n"
            "                                      way, as pipeline hops go), fit each one's latency alpha\n"
            "                                      and time per byte beta (least squares), and write them\n"
            "                                      with the points as \"furrow-links\" JSON for furrow plan\n"
            "                                      --predict --links\n"
            "  --comm-max SIZE                     with --comm: the largest message (default 1MiB; x4 apart)\n"
            "  --comm-seconds S                    with --comm: repetitions per size fill about S seconds\n"
            "                                      in three rounds, the fastest kept (default 0.2)\n"
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
            "  --prefill LIST                      prefill lengths (default 4096; 0: none)\n"
            "  --iters N                           timed repetitions (default 5)\n"
            "  --tp-sim N                          one GPU runs rank 0's share of a tp N layout of the\n"
            "                                      whole model (its 1/N of the heads and of the routed\n"
            "                                      experts, the router over all of them) without the other\n"
            "                                      ranks; every step is run twice: all-reduces cost nothing,\n"
            "                                      then each waits as long as --sim-allreduce says\n"
            "  --sim-allreduce US,GBS              the all-reduce's model: US microseconds of latency plus\n"
            "                                      2 (N-1)/N x bytes at GBS GB/s of bus bandwidth (ring;\n"
            "                                      default 24,348: NCCL on 4 NVLink H200s, GPU.md)\n"
            "\nwith --speculative mtp:K (a checkpoint with an MTP layer; CPU or --device cuda): the step times that\n"
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
    /* The node's joules in each phase (CPU packages, GPUs) from its first rank; -1: no counter, or another rank. */
    double j_prefill[2], j_decode[2];
    double comm_prefill;       /* all-reduce, p2p and next-token seconds of the prefill */
    double t_other;            /* the next tokens' argmax and broadcast */
    double n_allreduce, ar_prefill, n_ar_prefill; /* all-reduces in all; seconds and count in the prefill */
} rank_stats;

/* The node's energy of a phase: the meter's totals now less those at its start. */
static void phase_joules(fw_energy *m, const double start[2], double out[2], double now[2]) {
    fw_energy_totals(m, &now[0], &now[1]);
    for (int k = 0; k < 2; k++) out[k] = now[k] < 0 ? -1 : now[k] - start[k];
}

/* ", X J/token (cpu A J, gpu B J)" of one phase over all nodes; nothing without counters. */
static void print_energy(const rank_stats *all, int n, bool decode, double tokens) {
    double j[2] = {-1, -1};
    for (int r = 0; r < n; r++)
        for (int k = 0; k < 2; k++) {
            double v = decode ? all[r].j_decode[k] : all[r].j_prefill[k];
            if (v >= 0) j[k] = (j[k] < 0 ? 0 : j[k]) + v;
        }
    if (j[0] < 0 && j[1] < 0) return;
    printf(", %.4g J/token (", ((j[0] > 0 ? j[0] : 0) + (j[1] > 0 ? j[1] : 0)) / tokens);
    if (j[0] >= 0) printf("cpu %.4g J", j[0]);
    if (j[1] >= 0) printf("%sgpu %.4g J", j[0] >= 0 ? ", " : "", j[1]);
    printf(")");
}

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
    double t_prefill = 0, t_decode = 0, load = 0, compute = 0, comm = 0, rss = 0, moved = 0, j_prefill = -1, j_decode = -1;
    for (int r = 0; r < n; r++) {
        const rank_stats *s = &all[r];
        for (int k = 0; k < 2; k++) {
            if (s->j_prefill[k] >= 0) j_prefill = (j_prefill < 0 ? 0 : j_prefill) + s->j_prefill[k];
            if (s->j_decode[k] >= 0) j_decode = (j_decode < 0 ? 0 : j_decode) + s->j_decode[k];
        }
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
           "rank_peak_mb=%.1f",
           n, en->layout.tp, en->layout.pp, en->layout.dp, (long long)B, (long long)P, (long long)N,
           dp * (double)(B * P) / t_prefill, dp * (double)(B * N) / t_decode, t_prefill, t_decode / (double)N, load,
           compute, comm, moved / 1e6, rss);
    if (j_prefill >= 0) printf(" prefill_j_tok=%.6g decode_j_tok=%.6g", j_prefill / (double)(B * P), j_decode / (double)(B * N));
    printf("\n");
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
    const char *json_path;     /* --json: furrow-compute output */
    const char *comm_path;     /* --comm: furrow-links output */
    uint64_t comm_max;
    double comm_seconds;
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
        {"iters", required_argument, 0, 'I'},     {"tp-sim", required_argument, 0, 'G'},
        {"sim-allreduce", required_argument, 0, 'A'},
        {"json-output", no_argument, 0, 'J'},     {"tokenizer", required_argument, 0, 'T'},
        {"json", required_argument, 0, 'j'},      {"comm", required_argument, 0, 'c'},
        {"comm-max", required_argument, 0, 'x'},  {"comm-seconds", required_argument, 0, 'S'},
        {"help", no_argument, 0, 'h'},        FW_CLI_ENGINE_OPTIONS, {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    fw_cli_engine_defaults(&a->eo);
    a->P = 128, a->N = 32, a->B = 1, a->ceilings = true;
    a->comm_max = 1 << 20, a->comm_seconds = 0.2;
    a->steps = (fw_bench_steps){.n_batch = 4, .batch = {1, 8, 64, 256}, .n_context = 2, .context = {1024, 4096},
                                .n_prefill = 1, .prefill = {4096}, .iters = 5, .sim_alpha_us = 24,
                                .sim_busbw_gbs = 348};
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
        case 'j': a->json_path = optarg; break;
        case 'c': a->comm_path = optarg; break;
        case 'x':
            bad = fw_cli_parse_size(optarg, "--comm-max", &a->comm_max, &e);
            if (!bad && (a->comm_max < 64 || a->comm_max > (UINT64_C(1) << 30)))
                bad = fw_errf(&e, "--comm-max: %s is outside 64 bytes to 1 GiB", optarg) != 0;
            break;
        case 'S': {
            char *end;
            a->comm_seconds = strtod(optarg, &end);
            if (end == optarg || *end || !(a->comm_seconds > 0 && a->comm_seconds <= 60))
                bad = fw_errf(&e, "--comm-seconds: expected seconds in (0, 60], got '%s'", optarg) != 0;
            break;
        }
        case 's': synthetic = optarg; break;
        case 'L': bad = fw_cli_parse_int(optarg, "--layers", 1, 1000, &layers, &e); break;
        case 'D': bad = fw_cli_parse_int(optarg, "--dense", 0, 1000, &dense, &e); break;
        case 'G': bad = fw_cli_parse_int(optarg, "--tp-sim", 1, 1024, &v, &e), a->eo.sim_tp = (int)v; break;
        case 'A': {
            char *end;
            a->steps.sim_alpha_us = strtod(optarg, &end);
            a->steps.sim_busbw_gbs = *end == ',' ? strtod(end + 1, &end) : 0;
            if (*end || a->steps.sim_alpha_us < 0 || a->steps.sim_busbw_gbs <= 0)
                bad = fw_errf(&e, "--sim-allreduce %s: want US,GBS (latency in microseconds, bus bandwidth in GB/s)",
                              optarg) != 0;
            break;
        }
        case 'I': bad = fw_cli_parse_int(optarg, "--iters", 1, 1000, &v, &e), a->steps.iters = (int)v; break;
        case 'B':
        case 'C':
        case 'F': {
            const bool batches = c == 'B', prefill = c == 'F';
            const char *flag = batches ? "--batches" : prefill ? "--prefill" : "--contexts";
            const int most = batches ? 8 : 4;
            bad = fw_cli_parse_ids(optarg, flag, 0, &list, &nlist, &e);
            if (!bad && (nlist < 1 || nlist > most)) bad = fw_errf(&e, "%s: 1 to %d values", flag, most) != 0;
            for (int64_t i = 0; !bad && i < nlist; i++) {
                if (list[i] < (prefill ? 0 : 1) || (batches && list[i] > FW_BENCH_MAX_BATCH) ||
                    (prefill && list[i] > (1 << 20)))
                    bad = fw_errf(&e, "%s: %d is out of range", flag, list[i]) != 0;
                else if (batches) a->steps.batch[i] = list[i];
                else if (prefill) a->steps.prefill[i] = list[i];
                else a->steps.context[i] = list[i];
            }
            if (batches) a->steps.n_batch = (int)nlist, a->batches_set = true;
            else if (prefill) a->steps.n_prefill = list && nlist == 1 && list[0] == 0 ? 0 : (int)nlist;
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
    if (a->comm_path && (a->eo.model_dir || optind < argc)) {
        fprintf(stderr, "furrow bench: --comm measures the links alone: no --model or --synthetic with it\n");
        return 2;
    }
    if (a->comm_path) return -1;
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
static void run_end_to_end(fw_world *w, fw_engine *en, const bench_args *a, rank_stats *mine, fw_energy *meter) {
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
    *mine = (rank_stats){.t_load = en->t_load, .j_prefill = {-1, -1}, .j_decode = {-1, -1}};
    per_token(en->model, &mine->tok_bytes, &mine->tok_params);

    double j0[2] = {0, 0}, j1[2] = {0, 0}, j2[2];
    MPI_Barrier(w->comm);
    if (meter) fw_energy_totals(meter, &j0[0], &j0[1]);
    double t0 = fw_now();
    if (fw_engine_forward_many(en, (int)B, in, lens, FW_ATTN_NAIVE, toks, &e)) fw_world_abort(w, "bench", e.msg);
    mine->t_prefill = fw_now() - t0;
    MPI_Barrier(w->comm); /* the node's energy of a phase is that of all its ranks */
    if (meter) phase_joules(meter, j0, mine->j_prefill, j1);
    mine->comm_prefill = en->comm.stats.t_allreduce + en->comm.stats.t_p2p + en->comm.stats.t_other;
    mine->ar_prefill = en->comm.stats.t_allreduce;
    mine->n_ar_prefill = (double)en->comm.stats.n_allreduce;
    t0 = fw_now();
    for (int64_t b = 0; b < B; b++) in[b] = &toks[b];
    for (int64_t i = 0; i < a->N; i++)
        if (fw_engine_forward_many(en, (int)B, in, ones, FW_ATTN_ABSORBED, toks, &e)) fw_world_abort(w, "bench", e.msg);
    mine->t_decode = fw_now() - t0;
    MPI_Barrier(w->comm);
    if (meter) phase_joules(meter, j1, mine->j_decode, j2);
    mine->t_allreduce = en->comm.stats.t_allreduce;
    mine->t_p2p = en->comm.stats.t_p2p;
    mine->t_other = en->comm.stats.t_other;
    mine->n_allreduce = (double)en->comm.stats.n_allreduce;
    mine->bytes_allreduce = (double)en->comm.stats.bytes_allreduce;
    mine->bytes_p2p = (double)en->comm.stats.bytes_p2p;
    struct rusage ru;
    mine->rss_mb = getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1e3 : 0; /* ru_maxrss: kB */
    free(ids);
}

/* Rank 0: the end-to-end figures from every rank's. */
static void report(const fw_world *w, const fw_engine *en, const bench_args *a, const fw_ceilings *ceil,
                   const rank_stats *all, const fw_energy *meter) {
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
    printf("prefill    %lld tokens: %.3f s, %.1f tokens/s", (long long)(B * P), t_prefill, prefill_tps);
    print_energy(all, w->size, false, (double)(B * P));
    printf(", %.1f GFLOP/s in matmuls", gflops);
    if (a->ceilings) printf(" (%.0f%% of FMA peak)", 100 * gflops / ceil->fma_gflops);
    printf("\ndecode     %lld tokens: %.3f s, %.2f tokens/s", (long long)(B * N), t_decode, decode_tps);
    print_energy(all, w->size, true, (double)(B * N));
    printf(", %.1f MB streamed per token, %.1f GB/s", (tok_bytes + kv_bytes) / 1e6, gbs);
    if (a->ceilings)
        printf(" (%.0f%% of read, %.0f%% of copy bandwidth)", 100 * gbs / ceil->read_gbs, 100 * gbs / ceil->copy_gbs);
    printf("\n");
    /* Rank 0's node: a counter it lacks is said so (J/token above is of the counters there are). */
    if (meter->rapl_why[0] || meter->nvml_why[0])
        printf("energy     not read: %s%s%s\n", meter->rapl_why,
               meter->rapl_why[0] && meter->nvml_why[0] ? "; " : "", meter->nvml_why);
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

/* Rank 0, --json: the per-layer compute of a rank's share, per forward (the
 * engine runs the sequences of a step one by one on CPU ranks): each stage's
 * slowest rank, communication taken out, summed over the stages and divided
 * by the layers; the mean time of an all-reduce (on one node: mostly the
 * ranks of a group waiting for each other, as cores are shared); and the
 * run's measured figures beside. */
static int write_compute_json(const fw_engine *en, const bench_args *a, const rank_stats *all, int n) {
    const fw_layout *l = &en->layout;
    double dec[FW_MAX_STAGES] = {0}, pre[FW_MAX_STAGES] = {0}, tpot = 0, ttft = 0, wd = 0, wp = 0;
    for (int r = 0; r < n; r++) {
        const rank_stats *s = &all[r];
        const int st = fw_layout_pp_rank(l, r);
        const double comm = s->t_allreduce + s->t_p2p + s->t_other;
        /* The mean all-reduce of each phase, the slowest rank's. */
        const double nd = s->n_allreduce - s->n_ar_prefill;
        if (s->n_ar_prefill > 0 && s->ar_prefill / s->n_ar_prefill > wp) wp = s->ar_prefill / s->n_ar_prefill;
        if (nd > 0 && (s->t_allreduce - s->ar_prefill) / nd > wd) wd = (s->t_allreduce - s->ar_prefill) / nd;
        const double cp = s->t_prefill - s->comm_prefill, cd = s->t_decode - (comm - s->comm_prefill);
        if (cp > pre[st]) pre[st] = cp;
        if (cd > dec[st]) dec[st] = cd;
        if (s->t_decode > tpot) tpot = s->t_decode;
        if (s->t_prefill > ttft) ttft = s->t_prefill;
    }
    double d = 0, p = 0;
    for (int s = 0; s < l->pp; s++) d += dec[s], p += pre[s];
    const double L = l->n_layers, fwd_dec = (double)(a->N * a->B), fwd_pre = (double)a->B;
    json_t *j = json_pack("{s:s,s:i,s:s,s:i,s:i,s:i,s:i,s:[{s:s,s:I,s:i,s:f,s:f,s:f},{s:s,s:I,s:I,s:f,s:f,s:f}],"
                          "s:{s:f,s:f,s:I,s:I,s:I}}",
                          "format", "furrow-compute", "version", 1, "model", a->eo.model_dir, "layers", l->n_layers,
                          "tp", l->tp, "pp", l->pp, "ranks", n, "steps",
                          "phase", "decode", "batch", (json_int_t)a->B, "tokens", 1, "layer_s", d / fwd_dec / L,
                          "fixed_s", 0.0, "wait_s", wd,
                          "phase", "prefill", "batch", (json_int_t)a->B, "tokens", (json_int_t)a->P, "layer_s",
                          p / fwd_pre / L, "fixed_s", 0.0, "wait_s", wp,
                          "measured", "tpot_s", tpot / (double)a->N, "ttft_s", ttft, "batch", (json_int_t)a->B,
                          "prompt", (json_int_t)a->P, "decode", (json_int_t)a->N);
    int rc = !j || json_dump_file(j, a->json_path, JSON_INDENT(1) | JSON_REAL_PRECISION(6));
    if (rc) fprintf(stderr, "furrow bench: cannot write %s\n", a->json_path);
    json_decref(j);
    return rc;
}

int fw_cmd_bench(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* rows reach a log before any abort */
    bench_args a;
    int st = parse_args(argc, argv, &a);
    if (st >= 0) return st;
    /* A backend with a step benchmark runs it (and measures its own ceilings). */
    if (a.comm_path) {
        fw_err e = {{0}};
        fw_world w;
        if (fw_world_init(&w, NULL, NULL, &e)) {
            fprintf(stderr, "furrow bench: %s\n", e.msg);
            return 1;
        }
        int rc = fw_bench_comm(&w, a.comm_path, (int64_t)a.comm_max, a.comm_seconds, &e);
        if (rc && w.rank == 0) fprintf(stderr, "furrow bench --comm: %s\n", e.msg);
        fw_world_finalize(&w);
        return rc ? 1 : 0;
    }
    const fw_backend *be = fw_engine_backend(a.eo.device);
    if (a.eo.speculative && a.eo.sim_tp > 1) {
        fprintf(stderr, "furrow bench: --speculative and --tp-sim are separate benchmarks; give one of them\n");
        return 2;
    }
    /* --speculative runs the engine's own steps on any backend (bench_spec.c) instead of the step benchmark. */
    const bool steps = be && be->bench_steps && !a.eo.speculative;
    if (steps) { /* the backend sizes its cache for the steps itself: the engine's is one sequence's */
        a.ceilings = false;
        a.eo.context = 1;
        a.eo.n_seqs = 1;
        a.steps.sim_tp = a.eo.sim_tp;
        a.steps.json_path = a.json_path;
    } else if (a.eo.sim_tp > 1) {
        fprintf(stderr, "furrow bench: --tp-sim needs a backend with a step benchmark (--device cuda)\n");
        return 2;
    } else if (a.eo.speculative) {
        if (!a.batches_set) a.steps = (fw_bench_steps){.n_batch = 3, .batch = {1, 8, 64}, .iters = a.steps.iters};
        a.eo.context = a.P + FW_BENCH_SPEC_STEPS + 2 * a.eo.speculative + 1;
        a.eo.n_seqs = 1;
        for (int i = 0; i < a.steps.n_batch; i++)
            if (a.steps.batch[i] > a.eo.n_seqs) a.eo.n_seqs = a.steps.batch[i];
        /* The engine's step buffers (hidden states, logits) hold context rows: a GPU verifies the whole batch's
         * 1 + K rows a sequence in one forward. */
        if (a.eo.context < (int64_t)a.eo.n_seqs * (1 + a.eo.speculative))
            a.eo.context = (int64_t)a.eo.n_seqs * (1 + a.eo.speculative);
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
        fw_energy meter; /* the node's counters, read by its first rank */
        if (w.local_rank == 0) {
            fw_energy_open(&meter, true);
            fw_energy_start(&meter, 10); /* a long phase cannot miss a RAPL wrap */
        }
        run_end_to_end(&w, &en, &a, &mine, w.local_rank == 0 ? &meter : NULL);
        if (w.local_rank == 0) fw_energy_close(&meter);
        rank_stats *all = w.rank == 0 ? malloc((size_t)w.size * sizeof *all) : NULL;
        if (w.rank == 0 && !all) fw_world_abort(&w, "bench", "out of memory");
        MPI_Gather(&mine, sizeof mine, MPI_BYTE, all, sizeof mine, MPI_BYTE, 0, w.comm);
        if (w.rank == 0) report(&w, &en, &a, &ceil, all, &meter);
        rc = w.rank == 0 && a.json ? json_output(&en, &a, all) : 0;
        if (w.rank == 0 && a.json_path && write_compute_json(&en, &a, all, w.size)) rc = 1;
        free(all);
    }
    fw_engine_free(&en);
    fw_world_finalize(&w);
    return rc;
}
