/* furrow generate: prompts through the same runner as serve and batch jobs
 * (runtime/engine/runner.c): prefill, then decode token by token over the latent
 * KV cache; prints the text as it comes, or each sequence's ids as a JSON array,
 * speeds on stderr. Runs on one rank or under mpirun with any valid layout of
 * one replica (rank 0 prints). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "runtime/cli/cli.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/prompt.h"
#include "runtime/engine/runner.h"
#include "runtime/engine/sample.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: [mpirun -np N] furrow generate --model DIR (--prompt TEXT | --chat JSON | --prompt-tokens IDS)\n"
            "                                      [options]\n\n"
            "Generates up to --max-tokens tokens after the prompt (greedy unless --temperature\n"
            "is set). With --prompt or --chat the text streams to stdout as it is produced;\n"
            "with --prompt-tokens the ids are printed as a JSON array. Prefill and decode\n"
            "speeds go to stderr.\n\n"
            "options:\n"
            "  --model DIR                         furrow checkpoint\n"
            "  --prompt TEXT                       a text prompt (encoded with BOS by the model's tokenizer)\n"
            "  --chat JSON|@FILE                   OpenAI-style messages (or {\"messages\", \"tools\"}), rendered\n"
            "                                      in the chat format with the generation prompt\n"
            "  --chat-format v3|v3.1|v3.2          DeepSeek-V3's template, V3.1's (hybrid thinking) or V3.2's\n"
            "                                      encoding (default: from tokenizer_config.json's\n"
            "                                      chat_template, v3.2 for a V3.2 checkpoint without one)\n"
            "  --thinking on|off                   thinking mode of v3.1/v3.2 (default off, as their\n"
            "                                      templates; the reply then starts with its reasoning)\n"
            "  --prompt-tokens LIST                comma-separated prompt token ids; repeat it for several\n"
            "                                      sequences at once (one JSON array per line, in order;\n"
            "                                      their decodes share forward passes)\n"
            "  --max-tokens N                      tokens to generate (default 16)\n"
            "  --temperature T                     0 (default) is greedy\n"
            "  --top-p P                           nucleus sampling threshold (default 1: off)\n"
            "  --seed N                            sampling seed (default 0)\n"
            "  --ignore-eos                        keep going after the end-of-sentence token\n"
            "  --input FILE --output FILE          a batch job of JSONL requests (generate --input - --help)\n"
            FW_CLI_ENGINE_HELP
            "  -h, --help                          this help\n");
}

/* Rank 0 tokenizes the text prompt or chat and sends the ids to every rank; it
 * keeps the tokenizer for the output. All ranks return the same status. */
static int text_prompt(fw_world *w, const char *model_dir, const char *text, const fw_chat_opts *chat,
                       fw_tokenizer **tok, int32_t **ids, int64_t *T, fw_err *e) {
    int64_t n = -1;
    if (w->rank == 0) {
        fw_ckpt *ck;
        bool mapped = false;
        if (fw_ckpt_open(&ck, model_dir, e) == FW_OK) {
            int64_t vocab = fw_ckpt_config(ck)->vocab_size;
            const char *type = fw_config_has_indexer(fw_ckpt_config(ck)) ? "deepseek_v32" : NULL;
            fw_ckpt_close(ck);
            int64_t got;
            fw_chat_opts o = chat ? *chat : (fw_chat_opts){0};
            o.add_generation_prompt = true;
            if (fw_prompt_tokenizer(tok, model_dir, e) == FW_OK &&
                (!chat || fw_chat_format_resolve(*tok, type, chat->format, &o.format, e) == FW_OK) &&
                (!chat || !o.thinking || o.format != FW_CHAT_V3 ||
                 fw_errf(e, "--thinking on: the v3 chat format has no thinking mode (--chat-format v3.1 or v3.2)") == FW_OK) &&
                fw_prompt_encode(*tok, text, chat ? &o : NULL, vocab, ids, &got, &mapped, e) == FW_OK && (n = got) > 0 &&
                mapped)
                fprintf(stderr, "furrow generate: the tokenizer has more ids than the model's vocabulary (%lld): "
                                "prompt ids taken modulo %lld (a small synthetic model)\n",
                        (long long)vocab, (long long)vocab);
        }
    }
    MPI_Bcast(&n, 1, MPI_INT64_T, 0, w->comm);
    if (n < 0) {
        if (w->rank != 0) fw_errf(e, "rank 0 could not tokenize the prompt");
        return FW_ERR;
    }
    if (w->rank != 0 && !(*ids = malloc((size_t)n * sizeof(int32_t)))) fw_world_abort(w, "generate", "out of memory");
    MPI_Bcast(*ids, (int)n, MPI_INT32_T, 0, w->comm);
    *T = n;
    return FW_OK;
}

/* Streams the text a new token completes (rank 0 only holds a stream). */
static void emit(fw_detok_stream *s, int32_t tok, bool finish) {
    const char *piece;
    size_t len;
    fw_err e;
    int rc = finish ? fw_detok_stream_finish(s, &piece, &len, &e) : fw_detok_stream_push(s, tok, &piece, &len, &e);
    if (rc == FW_OK && len) {
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
    }
}

#define FW_MAX_SEQS 256

/* What the command line asks for. */
typedef struct gen_args {
    fw_engine_opts eo;
    const char *prompts[FW_MAX_SEQS];  /* --prompt-tokens, one per sequence */
    int n_prompts;
    const char *text, *chat;
    int64_t max_tokens, seed;
    double temperature, top_p;
    bool ignore_eos;
    fw_chat_opts chat_opts;    /* --chat-format, --thinking */
} gen_args;

/* Parses the flags into a; -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, gen_args *a) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},       {"prompt-tokens", required_argument, 0, 'p'},
        {"max-tokens", required_argument, 0, 'n'},  {"temperature", required_argument, 0, 'T'},
        {"top-p", required_argument, 0, 'P'},       {"seed", required_argument, 0, 's'},
        {"ignore-eos", no_argument, 0, 'i'},        {"help", no_argument, 0, 'h'},
        {"prompt", required_argument, 0, 'x'},      {"chat", required_argument, 0, 'c'},
        {"chat-format", required_argument, 0, 0x3C0}, {"thinking", required_argument, 0, 0x3C1},
        FW_CLI_ENGINE_OPTIONS,                      {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    fw_cli_engine_defaults(&a->eo);
    a->max_tokens = 16, a->top_p = 1;
    fw_err e = {{0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = fw_cli_engine_option(c, optarg, &a->eo, &e);
        if (bad > 0) continue;
        bad = bad < 0;
        switch (c) {
        case 'm': a->eo.model_dir = optarg; break;
        case 'p':
            if (a->n_prompts == FW_MAX_SEQS) bad = fw_errf(&e, "--prompt-tokens: at most %d sequences", FW_MAX_SEQS) != 0;
            else a->prompts[a->n_prompts++] = optarg;
            break;
        case 'x': a->text = optarg; break;
        case 'c': a->chat = optarg; break;
        case 'n': bad = fw_cli_parse_int(optarg, "--max-tokens", 0, 1 << 30, &a->max_tokens, &e); break;
        case 'T': bad = fw_cli_parse_double(optarg, "--temperature", &a->temperature, &e) ||
                        (!(a->temperature >= 0) && fw_errf(&e, "--temperature must be >= 0"));
                  break;
        case 'P': bad = fw_cli_parse_double(optarg, "--top-p", &a->top_p, &e) ||
                        (!(a->top_p > 0 && a->top_p <= 1) && fw_errf(&e, "--top-p must be in (0, 1]"));
                  break;
        case 's': bad = fw_cli_parse_int(optarg, "--seed", 0, INT64_MAX, &a->seed, &e); break;
        case 'i': a->ignore_eos = true; break;
        case 0x3C0: bad = fw_chat_format_parse(optarg, &a->chat_opts.format, &e) && fw_err_prefix(&e, "--chat-format"); break;
        case 0x3C1:
            bad = strcmp(optarg, "on") && strcmp(optarg, "off") && fw_errf(&e, "--thinking must be on or off");
            a->chat_opts.thinking = !strcmp(optarg, "on");
            break;
        case 'h': usage(stdout); return 0;
        default:
            if (!bad) {
                usage(stderr);
                return 2;
            }
        }
        if (bad) {
            fprintf(stderr, "furrow generate: %s\n", e.msg);
            return 2;
        }
    }
    if (!a->eo.model_dir || (!!a->n_prompts + !!a->text + !!a->chat) != 1 || optind < argc) {
        fprintf(stderr, "furrow generate: --model and one of --prompt, --chat, --prompt-tokens are required\n");
        usage(stderr);
        return 2;
    }
    return -1;
}

/* One sequence as the leader sees it: its request, then what it generated. */
typedef struct gen_seq {
    fw_req req;
    int32_t *ids;              /* the prompt */
    int64_t n_ids;
    int32_t *out;              /* (max_tokens) */
    int64_t n_out;
} gen_seq;

typedef struct gen_run {
    gen_seq *seqs;
    int n;
    fw_detok_stream *stream;   /* text prompts: the text as it is produced */
} gen_run;

static void on_token(fw_req *r, const fw_sample_out *o, void *arg) {
    gen_run *g = arg;
    gen_seq *s = r->user;
    s->out[s->n_out++] = o->id;
    if (g->stream) emit(g->stream, o->id, false);
}

static int check_prompts(const gen_run *g, int64_t vocab, fw_err *e) {
    for (int i = 0; i < g->n; i++)
        for (int64_t t = 0; t < g->seqs[i].n_ids; t++)
            if (g->seqs[i].ids[t] < 0 || g->seqs[i].ids[t] >= vocab)
                return fw_errf(e, "sequence %d: prompt token %d is outside the vocabulary [0, %lld)", i,
                               g->seqs[i].ids[t], (long long)vocab);
    return FW_OK;
}

/* The runner's limits for these sequences: each prompt in one chunk, all of them
 * at once; the blocks come with the backend (sched_blocks). */
static void sched_limits(const gen_args *a, const gen_seq *seqs, int n, fw_sched_opts *so) {
    fw_runner_defaults(so);
    int64_t longest = 0;
    for (int i = 0; i < n; i++)
        if (seqs[i].n_ids > longest) longest = seqs[i].n_ids;
    so->max_batch = n;
    so->max_queue = n;
    so->max_context = longest + (a->max_tokens > 0 ? a->max_tokens : 1);
    so->token_budget = longest > n ? longest : n;
}

/* Blocks of the backend's size for every sequence at full length: nothing is preempted. */
static void sched_blocks(const gen_args *a, const gen_seq *seqs, int n, int64_t block, fw_sched_opts *so) {
    int64_t blocks = 0;
    for (int i = 0; i < n; i++) blocks += (seqs[i].n_ids + a->max_tokens + block - 1) / block;
    so->block_size = block;
    so->n_blocks = blocks > 0 ? blocks : 1;
}

/* Leader: submits the sequences, steps until all have finished. The first step
 * runs the prompts (and gives each its first token): the prefill time. */
static int lead(fw_runner *run, gen_run *g, const gen_args *a, double *t_prefill, double *t_decode, fw_err *e) {
    fw_sample_params sp;
    fw_sample_params_default(&sp);
    sp.temperature = a->temperature, sp.top_p = a->top_p, sp.seed = (uint64_t)a->seed;
    for (int i = 0; i < g->n && a->max_tokens > 0; i++) {
        fw_req *r = &g->seqs[i].req;
        *r = (fw_req){.prompt = g->seqs[i].ids, .n_prompt = g->seqs[i].n_ids, .max_tokens = a->max_tokens,
                      .ignore_eos = a->ignore_eos, .sp = sp, .user = &g->seqs[i]};
        int rc = fw_sched_submit(&run->sched, r, e);
        if (rc != FW_OK) return rc == FW_SCHED_BUSY ? fw_errf(e, "the scheduler's queue is full") : FW_ERR;
    }
    double t0 = fw_now();
    *t_prefill = *t_decode = 0;
    for (int64_t step = 0; fw_sched_pending(&run->sched) > 0; step++) {
        int n;
        if (fw_runner_step(run, &n, e)) return FW_ERR;
        if (step == 0) *t_prefill = fw_now() - t0, t0 = fw_now();
    }
    *t_decode = fw_now() - t0;
    const fw_sched *s = &run->sched;
    for (int j = 0; j < run->spec_k; j++)
        fprintf(stderr, "furrow generate: draft %d accepted %lld of %lld (%.3f)\n", j + 1,
                (long long)s->spec_accepted[j], (long long)s->spec_proposed[j],
                s->spec_proposed[j] ? (double)s->spec_accepted[j] / (double)s->spec_proposed[j] : 0.0);
    for (int i = 0; i < g->n && a->max_tokens > 0; i++)
        if (g->seqs[i].req.finish == FW_FINISH_ERROR) {
            char msg[512];
            fw_finish_error(&g->seqs[i].req, msg, sizeof msg);
            return fw_errf(e, "sequence %d: %s", i, msg);
        }
    return FW_OK;
}

static void report(const fw_world *w, const fw_engine *en, const gen_args *a, const gen_run *g, double t_prefill,
                   double t_decode) {
    if (g->stream) {
        emit(g->stream, 0, true);
        printf("\n");
    } else {
        for (int i = 0; i < g->n; i++) {
            printf("[");
            for (int64_t k = 0; k < g->seqs[i].n_out; k++) printf("%s%d", k ? ", " : "", g->seqs[i].out[k]);
            printf("]\n");
        }
    }
    fflush(stdout);
    int64_t prompt = 0, decoded = 0;
    for (int i = 0; i < g->n; i++) {
        prompt += g->seqs[i].n_ids;
        decoded += g->seqs[i].n_out > 0 ? g->seqs[i].n_out - 1 : 0;
    }
    fprintf(stderr,
            "furrow generate: %d sequence(s); prefill %lld tokens in %.3f s (%.1f tokens/s); decode %lld tokens in "
            "%.3f s (%.2f tokens/s over all); %d rank(s): tp %d, pp %d; kernels %s\n",
            g->n, (long long)prompt, t_prefill, t_prefill > 0 ? (double)prompt / t_prefill : 0.0, (long long)decoded,
            t_decode, t_decode > 0 ? (double)decoded / t_decode : 0.0, w->size, en->layout.tp, en->layout.pp,
            a->eo.ops->name);
}

int fw_cmd_generate(int argc, char **argv) {
    for (int i = 1; i < argc; i++) /* a batch job: its own options */
        if (!strcmp(argv[i], "--input") || !strncmp(argv[i], "--input=", 8)) return fw_cmd_generate_batch(argc, argv);
    gen_args a;
    int st = parse_args(argc, argv, &a);
    if (st >= 0) return st;

    fw_err e = {{0}};
    gen_run g = {0};
    g.n = a.n_prompts ? a.n_prompts : 1;
    if (!(g.seqs = calloc((size_t)g.n, sizeof *g.seqs))) {
        fprintf(stderr, "furrow generate: out of memory\n");
        return 1;
    }
    for (int i = 0; i < a.n_prompts; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, a.n_prompts > 1 ? "--prompt-tokens (sequence %d)" : "--prompt-tokens", i);
        if (fw_cli_parse_ids(a.prompts[i], flag, 0, &g.seqs[i].ids, &g.seqs[i].n_ids, &e)) {
            fprintf(stderr, "furrow generate: %s\n", e.msg);
            for (int k = 0; k < i; k++) free(g.seqs[k].ids);
            free(g.seqs);
            return 2;
        }
    }
    fw_world w;
    if (fw_world_init(&w, NULL, NULL, &e)) {
        fprintf(stderr, "furrow generate: %s\n", e.msg);
        for (int i = 0; i < g.n; i++) free(g.seqs[i].ids);
        free(g.seqs);
        return 1;
    }
    int rc = 1;
    fw_tokenizer *tok_text = NULL;
    fw_engine en;
    fw_runner run;
    if (!a.n_prompts && text_prompt(&w, a.eo.model_dir, a.text ? a.text : a.chat, a.chat ? &a.chat_opts : NULL, &tok_text,
                                    &g.seqs[0].ids, &g.seqs[0].n_ids, &e)) {
        if (w.rank == 0) fprintf(stderr, "furrow generate: %s\n", e.msg);
        goto no_engine;
    }
    for (int i = 0; i < g.n; i++)
        if (!(g.seqs[i].out = malloc((size_t)(a.max_tokens + 1) * sizeof *g.seqs[i].out)))
            fw_world_abort(&w, "generate", "out of memory");
    fw_sched_opts so;
    sched_limits(&a, g.seqs, g.n, &so);
    so.on_token = on_token, so.arg = &g;
    /* Every data-parallel replica runs the prompts; world rank 0 prints. */
    memset(&run, 0, sizeof run);
    a.eo.context = so.token_budget;
    int ok = fw_engine_init(&en, &w, &a.eo, &e);
    if (ok == FW_OK) {
        sched_blocks(&a, g.seqs, g.n, en.be->kv_block, &so);
        ok = fw_runner_init(&run, &en, &so, &e);
    }
    if (!fw_world_all_ok(&w, ok == FW_OK)) {
        fw_world_report(&w, "generate", ok ? e.msg : "another rank failed to start");
        goto done;
    }
    /* Every rank holds the prompts: each refuses a bad one alike, before any step. */
    if (check_prompts(&g, en.model->cfg.vocab_size, &e)) {
        fw_world_report(&w, "generate", e.msg);
        goto done;
    }
    if (run.leader) {
        if (w.rank == 0 && tok_text && fw_detok_stream_init(&g.stream, tok_text, true, &e))
            fw_world_abort(&w, "generate", e.msg);
        double t_prefill = 0, t_decode = 0;
        if (lead(&run, &g, &a, &t_prefill, &t_decode, &e))
            fw_world_abort(&w, "generate", e.msg); /* followers wait in a broadcast: end them too */
        fw_runner_stop(&run);
        if (w.rank == 0) report(&w, &en, &a, &g, t_prefill, t_decode);
    } else if (fw_runner_follow(&run, &e)) {
        fw_world_abort(&w, "generate", e.msg);
    }
    rc = 0;
done:
    fw_runner_free(&run);
    fw_engine_free(&en);
no_engine:
    fw_detok_stream_free(g.stream);
    fw_tokenizer_free(tok_text);
    for (int i = 0; i < g.n; i++) {
        fw_req_free(&g.seqs[i].req);
        free(g.seqs[i].ids);
        free(g.seqs[i].out);
    }
    free(g.seqs);
    fw_world_finalize(&w);
    return rc;
}
