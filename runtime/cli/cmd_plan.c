/* furrow plan: the layout a job would use (tp x pp x dp, stages, experts, memory
 * per rank, rank map), computed from a config alone: nothing is launched. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/model_tensors.h"
#include "io/synth.h"
#include "io/quant_spec.h"
#include "partition/plan.h"
#include "runtime/cli/cli.h"
#include "runtime/cli/plan_predict.h"

#define GB 1e9

static void usage(FILE *f) {
    fprintf(f,
            "usage: furrow plan (--model DIR | --config FILE | --preset NAME) --nodes N --ranks-per-node G\n"
            "                   [--tp N] [--pp N] [--mem-per-rank SIZE] [--context L] [--batch B]\n"
            "                   [--weights SPEC] [--device cpu|cuda] [--speculative mtp:K]\n"
            "                   [--predict [--compute FILE] [--links FILE] [--system h100|h200]\n"
            "                    [--predict-nodes LIST] [--predict-batches LIST] [--predict-prefill N]]\n\n"
            "Prints how the model would be split over N x G ranks: tensor x pipeline x data\n"
            "parallel sizes, the layers of each pipeline stage and its share of the work, the\n"
            "routed experts of each tensor-parallel rank, the memory of the fullest rank, the\n"
            "room left for the KV cache and the rank map. Nothing is launched.\n\n"
            "options:\n"
            "  --model DIR                    a furrow checkpoint (its embedded config)\n"
            "  --config FILE                  a Hugging Face config.json\n"
            "  --preset NAME                  tiny, tiny-v32, small, deepseek-v3 (the 671B config, FP8),\n"
            "                                 deepseek-v3.2 (the same with the V3.2 indexer) or\n"
            "                                 kimi-k2 (Kimi-K2-Thinking: 1T, INT4 routed experts)\n"
            "  --nodes N                      nodes (default 1)\n"
            "  --ranks-per-node G             ranks (GPUs) per node (default 1)\n"
            "  --tp, --tensor-parallel-size N    (default: chosen, see below)\n"
            "  --pp, --pipeline-parallel-size N  (default: chosen, see below)\n"
            "  --mem-per-rank SIZE            memory one rank may use: 141G, 80GiB, 512M (G = 10^9,\n"
            "                                 GiB = 2^30 bytes); default: not checked\n"
            "  --context L                    tokens per sequence for the KV cache (default 4096, or\n"
            "                                 max_position_embeddings if smaller)\n"
            "  --batch B                      sequences in flight (default 1)\n"
            "  --weights SPEC                 how the weights are stored, for the estimate:\n"
            "                                   bf16, fp8 (e4m3, 128x128 block scales),\n"
            "                                   int4[,group=G][,experts][,head] (8 values per int32\n"
            "                                   word, a bf16 scale per row and G columns, default\n"
            "                                   128), int8[,experts][,head] (a bf16 scale per output\n"
            "                                   channel);\n"
            "                                 int4/int8 cover every linear weight but the output\n"
            "                                 head, or with ',experts' the routed experts only, and\n"
            "                                 with ',head' the output head too; the rest stays as\n"
            "                                 the preset or config stores it.\n"
            "                                 Default: as stored (a checkpoint's or config's types:\n"
            "                                 fp8, compressed-tensors INT4, bf16; deepseek-v3 fp8;\n"
            "                                 kimi-k2 int4,group=32,experts as Moonshot ships it).\n"
            "                                 With --model/--config it overrides the stored types\n"
            "                                 for the estimate (what a converted copy would need)\n"
            "                                 and says so\n"
            "  --dtype fp8|bf16               the same as --weights fp8|bf16\n"
            "  --device cpu|cuda              where the ranks run: KV cache and activations in fp32\n"
            "                                 (cpu, default) or bf16 (cuda)\n"
            "  --speculative mtp:K            plan for speculative decoding with K = 1 or 2 draft\n"
            "                                 tokens a step: the MTP layer's weights and KV cache on\n"
            "                                 the last stage, decode steps of batch x (1 + K) tokens\n"
            "                                 (without it the MTP layer is never loaded and not counted)\n"
            "  --predict                      instead of the plan: the performance model's step time,\n"
            "                                 tokens/s and latency for the layouts the planner picks\n"
            "                                 on each of --predict-nodes (same ranks per node, --tp,\n"
            "                                 --pp, --mem-per-rank, --context; each row's batch in\n"
            "                                 the memory plan), at each decode batch and a prefill\n"
            "                                 (PERFORMANCE.md: the equations); measured compute +\n"
            "                                 alpha-beta collectives\n"
            "  --compute FILE                 per-layer compute of a rank's share: furrow-compute JSON\n"
            "                                 (furrow bench --json); default with --device cuda: one\n"
            "                                 H100's per-layer figures (GPU.md) split over tp (decode\n"
            "                                 scaled by the copy bandwidth for --system h200)\n"
            "  --links FILE                   link figures measured by furrow bench --comm\n"
            "                                 (furrow-links JSON); override --system's\n"
            "  --system h100|h200             published NVLink 4 / 400 Gb/s InfiniBand figures of\n"
            "                                 HGX H100 / H200 nodes (default with --device cuda: h100)\n"
            "  --predict-nodes LIST           node counts (default 1,2,4,8,16)\n"
            "  --predict-batches LIST         decode batches (default 1,8,64,256)\n"
            "  --predict-prefill N            prefill tokens (default 4096; 0: none)\n"
            "  --predict-prefill-batch B      sequences of the prefill (default 1)\n"
            "  --nics-per-node N              links out of a node, shared by a stage's tp ranks for\n"
            "                                 the hops to the next stage (default: one per rank, as\n"
            "                                 rail-optimized GPU nodes have)\n"
            "  -h, --help                     this help\n\n"
            "Automatic choice: tp is the largest divisor of G that the model allows (heads,\n"
            "vocabulary, dense and shared-expert sizes divisible by tp; tp <= routed experts)\n"
            "and that divides the world, so tensor parallelism stays inside a node; pp is the\n"
            "smallest divisor of N*G/tp whose layout fits --mem-per-rank (without it: N*G/tp);\n"
            "the rest are data-parallel replicas: dp = N*G / (tp*pp).\n"
            "Stages are contiguous layer ranges that balance the matmul parameters a decode\n"
            "token touches (the head counts for the last stage). Memory: the weight slices in\n"
            "their stored types (FP8 block scales, INT4/INT8 scales included), the latent KV\n"
            "cache of the stage's layers (context x batch x (kv_lora_rank + qk_rope_head_dim\n"
            "[+ index_head_dim for DeepSeek-V3.2's indexer keys]) x 4 bytes; on a GPU bf16, the\n"
            "indexer's key as index_head_dim e4m3 bytes + 16) and an activation estimate (one\n"
            "prefill chunk of up to 2048 tokens or a decode step); the runtime and communication\n"
            "buffers are not counted: leave headroom. KV room: what --mem-per-rank leaves after\n"
            "weights and activations on the tightest rank, in tokens of KV cache (all sequences\n"
            "together).\n");
}

/* Bytes with a unit that keeps 3 significant digits (decimal units). */
static const char *bytes(char *b, size_t n, uint64_t v) {
    const double x = (double)v;
    if (v == 0) snprintf(b, n, "0");
    else if (x >= 1e9) snprintf(b, n, "%.2f GB", x / 1e9);
    else if (x >= 1e6) snprintf(b, n, "%.2f MB", x / 1e6);
    else snprintf(b, n, "%.2f kB", x / 1e3);
    return b;
}

static const char *count(char *b, size_t n, double x) {
    if (x >= 1e9) snprintf(b, n, "%.1fB", x / 1e9);
    else snprintf(b, n, "%.1fM", x / 1e6);
    return b;
}

/* "int4 (group 32) for the routed experts, the rest bf16": how the weights are
 * stored, as the estimate counts them. */
static void describe_weights(const fw_config *c, const fw_quant_spec *q, char *b, size_t n) {
    const char *rest = c->fp8 ? "fp8 (e4m3, 128x128 block scales)" : "bf16";
    /* (fp8: the linear weights; embeddings, norms, router and head stay bf16) */
    if (q) {
        char g[32] = "";
        if (q->type == FW_WTYPE_INT4) snprintf(g, sizeof g, " (group %lld)", (long long)q->group);
        else snprintf(g, sizeof g, " (per channel)");
        const char *what = q->experts_only ? (q->head ? "the routed experts and the head" : "the routed experts")
                                           : (q->head ? "every linear weight" : "every linear weight but the head");
        snprintf(b, n, "%s%s for %s, the rest %s", q->type == FW_WTYPE_INT4 ? "int4" : "int8", g, what,
                 q->experts_only ? rest
                 : q->head       ? "(embeddings, norms, router) bf16"
                                 : "(embeddings, norms, router, head) bf16");
    } else if (c->int4) {
        snprintf(b, n, "int4 where its compressed-tensors quantization_config says, the rest bf16");
    } else {
        snprintf(b, n, "%s", rest);
    }
}

static void print_model(const fw_config *c, const char *what, const fw_quant_spec *q) {
    int moe = 0;
    for (int l = 0; l < c->num_hidden_layers; l++) moe += fw_config_layer_is_moe(c, l);
    printf("model:   %s: %d layers (%d dense, %d MoE), %d heads, %d routed experts (top %d), vocab %lld\n",
           what, c->num_hidden_layers, c->num_hidden_layers - moe, moe, c->num_attention_heads,
           c->n_routed_experts, c->num_experts_per_tok, (long long)c->vocab_size);
    char a[32], b[32], w[160], t[32];
    describe_weights(c, q, w, sizeof w);
    printf("         %s parameters run (%s per token), weights stored %s\n",
           count(a, sizeof a, (double)fw_model_param_count(c, false)),
           count(b, sizeof b, (double)fw_model_active_param_count(c)), w);
    uint64_t all, run;
    fw_err e;
    if (fw_plan_weight_bytes(c, q, true, &all, &e) == FW_OK && fw_plan_weight_bytes(c, q, false, &run, &e) == FW_OK) {
        printf("         weights: %s in all", bytes(t, sizeof t, all));
        if (all != run) printf(", %s without the MTP layers (not run)", bytes(a, sizeof a, run));
        printf("\n");
    }
}

static void print_stages(const fw_layout *l) {
    double total = 0;
    for (int s = 0; s < l->pp; s++) total += l->stages[s].cost;
    printf("\nstage  layers           embed  head  cost share  memory (fullest rank)\n");
    for (int s = 0; s < l->pp; s++) {
        const fw_stage *st = &l->stages[s];
        char range[32];
        snprintf(range, sizeof range, "%d-%d (%d)", st->first_layer, st->first_layer + st->n_layers - 1,
                 st->n_layers);
        char m[32];
        printf("%5d  %-15s  %-5s  %-4s  %9.1f%%  %11s\n", s, range, st->has_embed ? "yes" : "-",
               st->has_head ? "yes" : "-", 100 * st->cost / total, bytes(m, sizeof m, st->mem_max));
    }
}

static void print_experts(const fw_layout *l, const fw_config *c) {
    if (c->n_routed_experts <= 0) return;
    int f0, n0;
    fw_layout_experts(l, c, 0, &f0, &n0);
    bool even = c->n_routed_experts % l->tp == 0;
    printf("\nrouted experts: %d per MoE layer over tp %d: ", c->n_routed_experts, l->tp);
    if (even) {
        printf("%d per rank (tp rank r: experts [%d r, %d r + %d))\n", n0, n0, n0, n0);
        return;
    }
    printf("%d or %d per rank (expert e on tp rank floor(e * %d / %d))\n", l->experts_per_rank_max - 1,
           l->experts_per_rank_max, l->tp, c->n_routed_experts);
    for (int r = 0; r < l->tp && r < 16; r++) {
        int f, n;
        fw_layout_experts(l, c, r, &f, &n);
        printf("  tp rank %d: experts %d-%d (%d)\n", r, f, f + n - 1, n);
    }
    if (l->tp > 16) printf("  ...\n");
}

/* The KV cache that fits beside the weights and activations, in tokens: the
 * smallest over the ranks of a replica (a stage with more layers needs more per
 * token). -1 when some rank has no room at all. */
static int64_t kv_room(const fw_config *c, const fw_layout *l, uint64_t avail, uint64_t *bytes_left) {
    const int n = l->tp * l->pp;
    fw_mem_estimate *m = calloc((size_t)n, sizeof *m);
    fw_err e;
    int64_t best = INT64_MAX;
    *bytes_left = 0;
    if (!m || fw_plan_mem_per_rank(c, l, m, &e)) {
        free(m);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const uint64_t used = m[i].weights + m[i].activations;
        if (used >= avail) {
            best = -1;
            break;
        }
        const bool mtp_here = l->mtp && i / l->tp == l->pp - 1; /* the MTP layer's cache too */
        const uint64_t per_token = fw_plan_kv_bytes(c, l->value_bytes) *
                                   (uint64_t)(l->stages[i / l->tp].n_layers + mtp_here);
        const int64_t tokens = (int64_t)((avail - used) / per_token);
        if (tokens < best) best = tokens, *bytes_left = avail - used;
    }
    free(m);
    return best;
}

static void print_memory(const fw_config *c, const fw_layout *l, uint64_t avail) {
    const fw_mem_estimate *m = &l->mem;
    printf("\nmemory of the fullest rank (stage %d, tp rank %d; context %lld x batch %lld", l->mem_pp_rank,
           l->mem_tp_rank, (long long)l->context, (long long)l->batch);
    if (l->mtp) printf("; speculative mtp:%d, the MTP layer on stage %d", l->mtp, l->pp - 1);
    printf("):\n");
    char b[6][32], kinds[200] = "";
    const struct { const char *name; uint64_t v; } k[] = {
        {"int4", m->weights_int4}, {"int8", m->weights_int8}, {"fp8", m->weights_fp8},
        {"bf16", m->weights_bf16}, {"f32", m->weights_f32}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        if (!k[i].v) continue;
        size_t u = strlen(kinds);
        snprintf(kinds + u, sizeof kinds - u, "%s%s %s", u ? ", " : "", k[i].name, bytes(b[1], 32, k[i].v));
    }
    if (m->weights_scales) {
        size_t u = strlen(kinds);
        snprintf(kinds + u, sizeof kinds - u, "; of which scales %s", bytes(b[1], 32, m->weights_scales));
    }
    printf("  weights      %11s  (%s)\n", bytes(b[0], 32, m->weights), kinds);
    printf("  KV cache     %11s\n", bytes(b[0], 32, m->kv_cache));
    printf("  activations  %11s\n", bytes(b[0], 32, m->activations));
    if (!avail) {
        printf("  total        %11s  (no --mem-per-rank: not checked)\n", bytes(b[0], 32, m->total));
        return;
    }
    printf("  total        %11s  of %s available (%.0f%%)\n", bytes(b[0], 32, m->total), bytes(b[1], 32, avail),
           100.0 * (double)m->total / (double)avail);
    uint64_t left;
    const int64_t tokens = kv_room(c, l, avail, &left);
    if (tokens >= 0)
        printf("  KV room      %11s  after weights and activations on the tightest rank: %lld tokens of KV\n"
               "                            cache, %.1f x context %lld x batch %lld\n",
               bytes(b[0], 32, left), (long long)tokens, (double)tokens / ((double)l->context * (double)l->batch),
               (long long)l->context, (long long)l->batch);
}

static void print_ranks(const fw_layout *l, int rpn) {
    printf("\nrank map (tp fastest, then pp, then dp; node = rank / %d):\n", rpn);
    if (l->world <= 64) {
        printf("  rank  node  dp  pp  tp\n");
        for (int r = 0; r < l->world; r++)
            printf("  %4d  %4d  %2d  %2d  %2d\n", r, r / rpn, fw_layout_dp_rank(l, r), fw_layout_pp_rank(l, r),
                   fw_layout_tp_rank(l, r));
        return;
    }
    /* Large worlds: one line per tp group, the first and last few. */
    const int groups = l->world / l->tp;
    printf("  ranks          nodes      dp  pp  tp\n");
    for (int g = 0; g < groups; g++) {
        if (groups > 16 && g == 8) printf("  ... (%d tp groups in all)\n", groups);
        if (groups > 16 && g >= 8 && g < groups - 8) continue;
        int r0 = g * l->tp, r1 = r0 + l->tp - 1;
        char ranks[32], nodes[32];
        snprintf(ranks, sizeof ranks, "%d-%d", r0, r1);
        if (r0 / rpn == r1 / rpn) snprintf(nodes, sizeof nodes, "%d", r0 / rpn);
        else snprintf(nodes, sizeof nodes, "%d-%d", r0 / rpn, r1 / rpn);
        printf("  %-13s  %-9s  %2d  %2d  0-%d\n", ranks, nodes, fw_layout_dp_rank(l, r0), fw_layout_pp_rank(l, r0),
               l->tp - 1);
    }
}

int fw_cmd_plan(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},       {"config", required_argument, 0, 'c'},
        {"preset", required_argument, 0, 'p'},      {"nodes", required_argument, 0, 'n'},
        {"ranks-per-node", required_argument, 0, 'g'}, {"tp", required_argument, 0, 't'},
        {"tensor-parallel-size", required_argument, 0, 't'}, {"pp", required_argument, 0, 'P'},
        {"pipeline-parallel-size", required_argument, 0, 'P'}, {"mem-per-rank", required_argument, 0, 'M'},
        {"context", required_argument, 0, 'L'},     {"batch", required_argument, 0, 'B'},
        {"dtype", required_argument, 0, 'd'},       {"help", no_argument, 0, 'h'},
        {"device", required_argument, 0, 'D'},      {"weights", required_argument, 0, 'W'},
        {"predict", no_argument, 0, 'X'},           {"compute", required_argument, 0, 'C'},
        {"links", required_argument, 0, 'K'},       {"system", required_argument, 0, 'S'},
        {"predict-nodes", required_argument, 0, 'N'}, {"predict-batches", required_argument, 0, 'b'},
        {"predict-prefill", required_argument, 0, 'f'}, {"predict-prefill-batch", required_argument, 0, 'F'},
        {"nics-per-node", required_argument, 0, 'I'}, {"speculative", required_argument, 0, 'Q'},
        {0, 0, 0, 0}};
    const char *model_dir = NULL, *config_path = NULL, *preset = NULL, *weights = NULL;
    int64_t nodes = 1, rpn = 1, tp = 0, pp = 0, context = 0, batch = 1;
    int value_bytes = 4, mtp = 0;
    uint64_t mem = 0;
    fw_quant_spec spec;
    fw_err e = {{0}};
    int c, bad = 0;
    bool predict = false;
    fw_predict_opts po = {.nodes = {1, 2, 4, 8, 16}, .n_nodes = 5, .batches = {1, 8, 64, 256}, .n_batches = 4,
                          .prefill = 4096, .prefill_batch = 1};
    int32_t *list = NULL;
    int64_t nlist = 0, v = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'c': config_path = optarg; break;
        case 'p': preset = optarg; break;
        case 'n': bad = fw_cli_parse_int(optarg, "--nodes", 1, 1 << 20, &nodes, &e); break;
        case 'g': bad = fw_cli_parse_int(optarg, "--ranks-per-node", 1, 1 << 16, &rpn, &e); break;
        case 't': bad = fw_cli_parse_int(optarg, "--tp", 1, 1 << 20, &tp, &e); break;
        case 'P': bad = fw_cli_parse_int(optarg, "--pp", 1, 1 << 20, &pp, &e); break;
        case 'M': bad = fw_cli_parse_size(optarg, "--mem-per-rank", &mem, &e); break;
        case 'L': bad = fw_cli_parse_int(optarg, "--context", 1, INT64_C(1) << 40, &context, &e); break;
        case 'B': bad = fw_cli_parse_int(optarg, "--batch", 1, INT64_C(1) << 30, &batch, &e); break;
        case 'd':
            weights = optarg;
            if (strcmp(optarg, "fp8") && strcmp(optarg, "bf16")) bad = fw_errf(&e, "--dtype: expected fp8 or bf16, got '%s'", optarg);
            break;
        case 'W':
            weights = optarg;
            if (strcmp(optarg, "fp8") && strcmp(optarg, "bf16") && fw_quant_spec_parse(&spec, optarg, &e))
                bad = fw_err_prefix(&e, "--weights: expected bf16, fp8, int4[,group=G][,experts][,head] or int8[,experts][,head]");
            break;
        case 'D':
            if (!strcmp(optarg, "cuda")) value_bytes = 2;
            else if (strcmp(optarg, "cpu")) bad = fw_errf(&e, "--device: expected cpu or cuda, got '%s'", optarg);
            break;
        case 'Q': bad = fw_cli_parse_speculative(optarg, &mtp, &e); break;
        case 'X': predict = true; break;
        case 'C': po.compute = optarg; break;
        case 'K': po.links = optarg; break;
        case 'S':
            po.system = optarg;
            if (strcmp(optarg, "h100") && strcmp(optarg, "h200")) bad = fw_errf(&e, "--system: expected h100 or h200, got '%s'", optarg);
            break;
        case 'f': bad = fw_cli_parse_int(optarg, "--predict-prefill", 0, 1 << 24, &po.prefill, &e); break;
        case 'I': bad = fw_cli_parse_int(optarg, "--nics-per-node", 1, 1 << 10, &v, &e), po.nics_per_node = (int)v; break;
        case 'F': bad = fw_cli_parse_int(optarg, "--predict-prefill-batch", 1, 1 << 20, &po.prefill_batch, &e); break;
        case 'N':
        case 'b': {
            const char *flag = c == 'N' ? "--predict-nodes" : "--predict-batches";
            bad = fw_cli_parse_ids(optarg, flag, 0, &list, &nlist, &e);
            if (!bad && (nlist < 1 || nlist > FW_PREDICT_MAX)) bad = fw_errf(&e, "%s: 1 to %d values", flag, FW_PREDICT_MAX);
            for (int64_t i = 0; !bad && i < nlist; i++) {
                if (list[i] < 1 || list[i] > (1 << 20)) bad = fw_errf(&e, "%s: %d is out of range", flag, list[i]);
                else if (c == 'N') po.nodes[i] = list[i];
                else po.batches[i] = list[i];
            }
            if (c == 'N') po.n_nodes = (int)nlist;
            else po.n_batches = (int)nlist;
            free(list);
            list = NULL;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "furrow plan: %s\n", e.msg);
            return 2;
        }
    }
    if (!!model_dir + !!config_path + !!preset != 1 || optind < argc) {
        fprintf(stderr, "furrow plan: give exactly one of --model, --config, --preset%s\n",
                optind < argc ? " (and no positional arguments)" : "");
        usage(stderr);
        return 2;
    }
    if (nodes * rpn > (1 << 24)) {
        fprintf(stderr, "furrow plan: %lld nodes x %lld ranks is too many\n", (long long)nodes, (long long)rpn);
        return 2;
    }

    int rc = 1;
    fw_ckpt *ck = NULL;
    fw_config cfg;
    bool owned = false;
    char what[1100];
    fw_layout *l = NULL;
    if (model_dir) {
        if (fw_ckpt_open(&ck, model_dir, &e)) goto done;
        cfg = *fw_ckpt_config(ck);  /* shallow: ck owns its strings */
        snprintf(what, sizeof what, "%s", model_dir);
    } else if (config_path) {
        if (fw_config_load(&cfg, config_path, &e)) goto done;
        owned = true;
        snprintf(what, sizeof what, "%s", config_path);
    } else {
        if (fw_synth_preset(preset, &cfg, &e)) goto done;
        owned = true;
        snprintf(what, sizeof what, "preset %s", preset);
        /* The release's weights unless --weights says otherwise. */
        if (!weights && fw_synth_preset_weights(preset)) {
            weights = fw_synth_preset_weights(preset);
            if (fw_quant_spec_parse(&spec, weights, &e)) goto done;
        }
    }
    const fw_quant_spec *q = NULL;
    char note[1400] = "";
    if (weights) {
        const char *stored = cfg.int4 ? "compressed-tensors int4" : cfg.fp8 ? "fp8" : "bf16";
        const bool same = !strcmp(weights, stored);
        if (!preset && !same)
            snprintf(note, sizeof note, "note:    weights counted as %s (--weights), not as %s stores them (%s): "
                     "what a converted copy would need\n", weights, what, stored);
        if (!strcmp(weights, "bf16")) cfg.fp8 = cfg.int4 = false;
        else if (!strcmp(weights, "fp8")) cfg.fp8 = true, cfg.int4 = false, cfg.fp8_block[0] = cfg.fp8_block[1] = 128;
        else q = &spec;
    }

    /* Default context: 4096 tokens, or the model's limit if shorter. */
    if (!context) context = cfg.max_position_embeddings > 0 && cfg.max_position_embeddings < 4096
                                ? cfg.max_position_embeddings : 4096;
    fw_plan_request rq = {.world = (int)(nodes * rpn), .ranks_per_node = (int)rpn, .tp = (int)tp, .pp = (int)pp,
                          .mem_per_rank = mem, .context = context, .batch = batch, .value_bytes = value_bytes,
                          .mtp = mtp, .weights = q};
    l = malloc(sizeof *l);
    if (!l) {
        fw_errf(&e, "out of memory");
        goto done;
    }
    if (!predict && (po.compute || po.links || po.system)) {
        fw_errf(&e, "--compute, --links and --system go with --predict");
        goto done;
    }
    if (predict) {
        if (!po.system && !po.links && value_bytes == 2) po.system = "h100";
        print_model(&cfg, what, q);
        fputs(note, stdout);
        printf("cluster: nodes of %lld rank%s", (long long)rpn, rpn > 1 ? "s" : "");
        if (mem) printf(", %.1f GB per rank", mem / GB);
        printf("; context %lld, plan batch %lld\n", (long long)context, (long long)batch);
        if (fw_plan_predict(&cfg, &rq, &po, &e) == FW_OK) rc = 0;
        goto done;
    }
    print_model(&cfg, what, q);
    fputs(note, stdout);
    printf("cluster: %lld node%s x %lld rank%s = %d ranks", (long long)nodes, nodes > 1 ? "s" : "", (long long)rpn,
           rpn > 1 ? "s" : "", rq.world);
    if (mem) printf(", %.1f GB (%.1f GiB) per rank\n", mem / GB, mem / 1073741824.0);
    else printf(", memory per rank not given\n");
    fflush(stdout);
    if (fw_plan(&cfg, &rq, l, &e)) goto done;

    printf("layout:  tp %d x pp %d x dp %d", l->tp, l->pp, l->dp);
    if (l->tp_auto || l->pp_auto)
        printf("   (%s%s%s)", l->tp_auto ? "tp: largest valid divisor of the ranks per node" : "",
               l->tp_auto && l->pp_auto ? "; " : "",
               l->pp_auto ? (mem ? "pp: fewest stages that fit" : "pp: all remaining ranks") : "");
    printf("\n");
    if (l->tp > rpn || rpn % l->tp)
        printf("note:    a tp group of %d spans nodes of %lld ranks: tensor-parallel traffic leaves the node\n",
               l->tp, (long long)rpn);
    if (value_bytes == 2 && l->mem.weights_int8)
        printf("note:    furrow-cuda uploads INT8 weights as BF16 for now (until W8A16 kernels exist); this\n"
               "         estimate is for them kept as stored, as CPU ranks keep them\n");
    print_stages(l);
    print_experts(l, &cfg);
    print_memory(&cfg, l, mem);
    print_ranks(l, (int)rpn);
    rc = 0;
done:
    if (rc) fprintf(stderr, "furrow plan: %s\n", e.msg);
    free(l);
    if (owned) fw_config_free(&cfg);
    if (ck) fw_ckpt_close(ck);
    return rc;
}
