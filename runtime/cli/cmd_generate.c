/* furrow generate: prefill a prompt, then decode token by token over the latent
 * KV cache; prints the generated ids as a JSON array, speeds on stderr. Runs on
 * one rank or under mpirun with any valid layout (rank 0 prints). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "runtime/cli/cli.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/prompt.h"
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
            "  --chat JSON|@FILE                   OpenAI-style messages, rendered by DeepSeek-V3's chat\n"
            "                                      template with the generation prompt\n"
            "  --prompt-tokens LIST                comma-separated prompt token ids; repeat it for several\n"
            "                                      sequences at once (greedy; one JSON array per line, in\n"
            "                                      order; under pipeline parallelism they overlap in the\n"
            "                                      stages as micro-batches)\n"
            "  --max-tokens N                      tokens to generate (default 16)\n"
            "  --temperature T                     0 (default) is greedy\n"
            "  --top-p P                           nucleus sampling threshold (default 1: off)\n"
            "  --seed N                            sampling seed (default 0)\n"
            "  --ignore-eos                        keep going after the end-of-sentence token\n"
            "  --input FILE --output FILE          a batch job of JSONL requests (generate --input - --help)\n"
            FW_CLI_ENGINE_HELP
            "  -h, --help                          this help\n");
}

/* The next token on every rank: greedy through the distributed argmax, or sampled
 * on rank 0 from the gathered logits and broadcast. */
static int next_token(fw_engine *en, fw_sampler *s, const int32_t *ids, int64_t T, fw_attn_mode mode,
                      float *logits, int32_t *tok, fw_err *e) {
    if (s->p.temperature <= 0) return fw_engine_forward(en, ids, T, mode, 1, false, NULL, tok, e);
    if (fw_engine_forward(en, ids, T, mode, 1, true, logits, NULL, e)) return FW_ERR;
    if (en->replica_rank == 0) {
        fw_sample_out o;
        fw_sampler_next(s, logits, &o);
        fw_sampler_accept(s, *tok = o.id);
    }
    if (en->replica_size > 1 && MPI_Bcast(tok, 1, MPI_INT32_T, 0, en->replica) != MPI_SUCCESS)
        return fw_errf(e, "broadcasting the sampled token failed");
    return FW_OK;
}

/* Rank 0 tokenizes the text prompt or chat and sends the ids to every rank; it
 * keeps the tokenizer for the output. All ranks return the same status. */
static int text_prompt(fw_world *w, const char *model_dir, const char *text, bool chat, fw_tokenizer **tok,
                       int32_t **ids, int64_t *T, fw_err *e) {
    int64_t n = -1;
    if (w->rank == 0) {
        fw_ckpt *ck;
        bool mapped = false;
        if (fw_ckpt_open(&ck, model_dir, e) == FW_OK) {
            int64_t vocab = fw_ckpt_config(ck)->vocab_size;
            fw_ckpt_close(ck);
            int64_t got;
            if (fw_prompt_tokenizer(tok, model_dir, e) == FW_OK &&
                fw_prompt_encode(*tok, text, chat, vocab, ids, &got, &mapped, e) == FW_OK && (n = got) > 0 && mapped)
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

/* Several token-id prompts at once, greedy: one engine with a cache per
 * sequence; each step runs every sequence through the pipeline back to back. */
static int generate_many(fw_engine_opts *eo, const char **prompts, int n, int64_t max_tokens, int ignore_eos) {
    fw_err e = {{0}};
    int32_t *ids[FW_MAX_SEQS] = {0}, *out = NULL, next[FW_MAX_SEQS];
    int64_t T[FW_MAX_SEQS], one[FW_MAX_SEQS], done_at[FW_MAX_SEQS];
    int64_t longest = 0;
    for (int i = 0; i < n; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--prompt-tokens (sequence %d)", i);
        if (fw_cli_parse_ids(prompts[i], flag, 0, &ids[i], &T[i], &e)) {
            fprintf(stderr, "furrow generate: %s\n", e.msg);
            for (int k = 0; k < i; k++) free(ids[k]);
            return 2;
        }
        if (T[i] > longest) longest = T[i];
        one[i] = 1;
        done_at[i] = max_tokens;
    }
    fw_world w;
    if (fw_world_init(&w, NULL, NULL, &e)) {
        fprintf(stderr, "furrow generate: %s\n", e.msg);
        for (int i = 0; i < n; i++) free(ids[i]);
        return 1;
    }
    eo->context = longest + max_tokens;
    eo->n_seqs = n;
    fw_engine en;
    int rc = 1;
    if (fw_engine_init(&en, &w, eo, &e)) {
        fw_world_report(&w, "generate", e.msg);
        goto done;
    }
    if (!(out = malloc((size_t)(n * (max_tokens + 1)) * sizeof(int32_t)))) fw_world_abort(&w, "generate", "out of memory");
    double t0 = fw_now(), t_prefill = 0;
    /* A finished sequence (EOS) keeps its slot; what it produces after is dropped. */
    for (int64_t step = 0; step < max_tokens; step++) {
        const int32_t *in[FW_MAX_SEQS];
        for (int i = 0; i < n; i++) in[i] = step == 0 ? ids[i] : &out[i * (max_tokens + 1) + step - 1];
        if (fw_engine_forward_many(&en, n, in, step == 0 ? T : one, step == 0 ? FW_ATTN_NAIVE : FW_ATTN_ABSORBED,
                                   next, &e))
            fw_world_abort(&w, "generate", e.msg);
        if (step == 0) t_prefill = fw_now() - t0, t0 = fw_now();
        int live = 0;
        for (int i = 0; i < n; i++) {
            out[i * (max_tokens + 1) + step] = next[i];
            if (done_at[i] == max_tokens && next[i] == en.model->cfg.eos_token_id && !ignore_eos) done_at[i] = step + 1;
            live += done_at[i] > step + 1;
        }
        if (!live) break;
    }
    double t_decode = fw_now() - t0;
    if (w.rank == 0) {
        int64_t total = 0;
        for (int i = 0; i < n; i++) {
            printf("[");
            for (int64_t k = 0; k < done_at[i]; k++) printf("%s%d", k ? ", " : "", out[i * (max_tokens + 1) + k]);
            printf("]\n");
            total += done_at[i];
        }
        fflush(stdout);
        fprintf(stderr, "furrow generate: %d sequences; prefill %.3f s; decode %.3f s (%.2f tokens/s over all); "
                        "%d rank(s): tp %d, pp %d\n",
                n, t_prefill, t_decode, t_decode > 0 ? (double)(total - n) / t_decode : 0.0, w.size, en.layout.tp,
                en.layout.pp);
    }
    rc = 0;
done:
    fw_engine_free(&en);
    free(out);
    for (int i = 0; i < n; i++) free(ids[i]);
    fw_world_finalize(&w);
    return rc;
}

int fw_cmd_generate(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},       {"prompt-tokens", required_argument, 0, 'p'},
        {"max-tokens", required_argument, 0, 'n'},  {"temperature", required_argument, 0, 'T'},
        {"top-p", required_argument, 0, 'P'},       {"seed", required_argument, 0, 's'},
        {"ignore-eos", no_argument, 0, 'i'},        {"help", no_argument, 0, 'h'},
        {"prompt", required_argument, 0, 'x'},      {"chat", required_argument, 0, 'c'},
        FW_CLI_ENGINE_OPTIONS,                      {0, 0, 0, 0}};
    const char *prompt = NULL, *text = NULL, *chat = NULL;
    const char *prompts[FW_MAX_SEQS];
    int n_prompts = 0;
    fw_engine_opts eo;
    fw_cli_engine_defaults(&eo);
    int64_t max_tokens = 16, seed = 0;
    double temperature = 0, top_p = 1;
    int ignore_eos = 0;
    fw_err e = {{0}};
    int c;
    for (int i = 1; i < argc; i++) /* a batch job: its own options */
        if (!strcmp(argv[i], "--input") || !strncmp(argv[i], "--input=", 8)) return fw_cmd_generate_batch(argc, argv);
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = fw_cli_engine_option(c, optarg, &eo, &e);
        if (bad > 0) continue;
        bad = bad < 0;
        switch (c) {
        case 'm': eo.model_dir = optarg; break;
        case 'p':
            if (n_prompts == FW_MAX_SEQS) bad = fw_errf(&e, "--prompt-tokens: at most %d sequences", FW_MAX_SEQS) != 0;
            else prompt = prompts[n_prompts++] = optarg;
            break;
        case 'x': text = optarg; break;
        case 'c': chat = optarg; break;
        case 'n': bad = fw_cli_parse_int(optarg, "--max-tokens", 0, 1 << 30, &max_tokens, &e); break;
        case 'T': bad = fw_cli_parse_double(optarg, "--temperature", &temperature, &e) ||
                        (temperature < 0 && fw_errf(&e, "--temperature must be >= 0"));
                  break;
        case 'P': bad = fw_cli_parse_double(optarg, "--top-p", &top_p, &e) ||
                        ((top_p <= 0 || top_p > 1) && fw_errf(&e, "--top-p must be in (0, 1]"));
                  break;
        case 's': bad = fw_cli_parse_int(optarg, "--seed", 0, INT64_MAX, &seed, &e); break;
        case 'i': ignore_eos = 1; break;
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
    if (!eo.model_dir || (!!prompt + !!text + !!chat) != 1 || optind < argc) {
        fprintf(stderr, "furrow generate: --model and one of --prompt, --chat, --prompt-tokens are required\n");
        usage(stderr);
        return 2;
    }
    if (n_prompts > 1) {
        if (temperature > 0) {
            fprintf(stderr, "furrow generate: several --prompt-tokens run greedy only (sampling per sequence comes "
                            "with the batching scheduler)\n");
            return 2;
        }
        return generate_many(&eo, prompts, n_prompts, max_tokens, ignore_eos);
    }
    int32_t *ids = NULL;
    int64_t T = 0;
    if (prompt && fw_cli_parse_ids(prompt, "--prompt-tokens", 0, &ids, &T, &e)) {
        fprintf(stderr, "furrow generate: %s\n", e.msg);
        return 2;
    }

    fw_world w;
    if (fw_world_init(&w, NULL, NULL, &e)) {
        fprintf(stderr, "furrow generate: %s\n", e.msg);
        free(ids);
        return 1;
    }
    fw_tokenizer *tok_text = NULL;
    if (!prompt && text_prompt(&w, eo.model_dir, text ? text : chat, chat != NULL, &tok_text, &ids, &T, &e)) {
        if (w.rank == 0) fprintf(stderr, "furrow generate: %s\n", e.msg);
        fw_tokenizer_free(tok_text);
        free(ids);
        fw_world_finalize(&w);
        return 1;
    }
    eo.context = T + max_tokens;
    fw_engine en;
    int rc = 1;
    int32_t *out = malloc((size_t)(max_tokens + 1) * sizeof(int32_t));
    float *logits = NULL;
    fw_sampler sampler = {0};
    int64_t n_out = 0;
    if (fw_engine_init(&en, &w, &eo, &e)) {
        fw_world_report(&w, "generate", e.msg);
        goto done;
    }
    const int64_t V = en.model->cfg.vocab_size;
    logits = malloc((size_t)V * sizeof(float));
    if (!logits || !out) fw_world_abort(&w, "generate", "out of memory");
    fw_sample_params sp;
    fw_sample_params_default(&sp);
    sp.temperature = temperature, sp.top_p = top_p, sp.seed = (uint64_t)seed;
    if (fw_sampler_init(&sampler, &sp, V, &e)) fw_world_abort(&w, "generate", e.msg);

    double t0 = fw_now(), t_prefill = 0;
    int32_t tok;
    int fail = 0;
    fw_detok_stream *stream = NULL;
    if (tok_text && fw_detok_stream_init(&stream, tok_text, true, &e)) fw_world_abort(&w, "generate", e.msg);
    if (max_tokens > 0) {
        fail = next_token(&en, &sampler, ids, T, FW_ATTN_NAIVE, logits, &tok, &e);
        t_prefill = fw_now() - t0;
        t0 = fw_now();
        while (!fail) {
            out[n_out++] = tok;
            if (stream) emit(stream, tok, false);
            if ((tok == en.model->cfg.eos_token_id && !ignore_eos) || n_out == max_tokens) break;
            fail = next_token(&en, &sampler, &tok, 1, FW_ATTN_ABSORBED, logits, &tok, &e);
        }
    }
    double t_decode = fw_now() - t0;
    if (fail) {
        if (w.size > 1) fw_world_abort(&w, "generate", e.msg);
        fw_world_report(&w, "generate", e.msg);
        goto done;
    }
    if (stream) {
        emit(stream, 0, true);
        printf("\n");
    } else if (w.rank == 0) {
        printf("[");
        for (int64_t i = 0; i < n_out; i++) printf("%s%d", i ? ", " : "", out[i]);
        printf("]\n");
    }
    if (w.rank == 0) {
        fflush(stdout);
        fprintf(stderr,
                "furrow generate: prefill %lld tokens in %.3f s (%.1f tokens/s); decode %lld tokens in %.3f s "
                "(%.2f tokens/s); %d rank(s): tp %d, pp %d; kernels %s\n",
                (long long)T, t_prefill, t_prefill > 0 ? (double)T / t_prefill : 0.0, (long long)(n_out > 0 ? n_out - 1 : 0),
                t_decode, n_out > 1 ? (double)(n_out - 1) / t_decode : 0.0, w.size, en.layout.tp, en.layout.pp,
                eo.ops->name);
    }
    rc = 0;
done:
    fw_sampler_free(&sampler);
    fw_engine_free(&en);
    fw_detok_stream_free(stream);
    fw_tokenizer_free(tok_text);
    free(out);
    free(logits);
    free(ids);
    fw_world_finalize(&w);
    return rc;
}
