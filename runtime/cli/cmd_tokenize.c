/* furrow tokenize / furrow detokenize: text <-> token ids with a checkpoint's
 * tokenizer (or a tokenizer.json given directly); --bench measures encoding. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/base/fileutil.h"
#include "io/text/chat.h"
#include "io/text/tokenizer.h"
#include "runtime/cli/cli.h"

static void tokenize_usage(FILE *f) {
    fprintf(f,
            "usage: furrow tokenize (--model DIR | --tokenizer FILE) (TEXT | --file F) [options]\n\n"
            "Encodes UTF-8 text with DeepSeek-V3's tokenizer and prints the ids as a JSON array.\n"
            "Added tokens written in the text (<｜User｜>, ...) become their ids.\n\n"
            "options:\n"
            "  --model DIR             furrow checkpoint: DIR/tokenizer.json (+ tokenizer_config.json)\n"
            "  --tokenizer FILE        a tokenizer.json; tokenizer_config.json beside it is used too\n"
            "  --tokenizer-config FILE the tokenizer_config.json to use with --tokenizer\n"
            "  --file F                read the text from F instead of the command line\n"
            "  --add-special           prepend BOS (as tokenizer_config.json's add_bos_token says)\n"
            "  --chat                  the text is a JSON array of OpenAI messages (or {\"messages\",\n"
            "                          \"tools\", \"chat_template_kwargs\"}): render it in the chat\n"
            "                          format and encode that\n"
            "  --chat-format v3|v3.1|v3.2  with --chat: the format (default: the tokenizer's template)\n"
            "  --thinking              with --chat: thinking mode (v3.1, v3.2)\n"
            "  --generation-prompt     with --chat: end with <｜Assistant｜> (add_generation_prompt)\n"
            "  --render                with --chat: print the rendered text instead of ids\n"
            "  --chunk BYTES           encode the text in pieces of at most BYTES, each ending\n"
            "                          after a newline where there is one (default 0: whole text)\n"
            "  --bench                 print encode throughput (MB/s) instead of the ids\n"
            "  -h, --help              this help\n");
}

static void detokenize_usage(FILE *f) {
    fprintf(f,
            "usage: furrow detokenize (--model DIR | --tokenizer FILE) ID,ID,... [options]\n\n"
            "Decodes token ids (comma-separated; a JSON array works too) and prints the text\n"
            "followed by a newline.\n\n"
            "options:\n"
            "  --model DIR             furrow checkpoint: DIR/tokenizer.json\n"
            "  --tokenizer FILE        a tokenizer.json\n"
            "  --skip-special          leave out special tokens (BOS, EOS, ...)\n"
            "  -h, --help              this help\n");
}

/* --model DIR, or --tokenizer FILE with the config given or beside it. */
static int load(fw_tokenizer **t, const char *model_dir, const char *tok_file, const char *cfg_file,
                fw_err *e) {
    if (model_dir) return fw_tokenizer_load_dir(t, model_dir, e);
    char *guess = NULL;
    if (!cfg_file) {
        const char *slash = strrchr(tok_file, '/');
        size_t dir = slash ? (size_t)(slash - tok_file + 1) : 0;
        guess = malloc(dir + 32);
        if (!guess) return fw_errf(e, "out of memory");
        snprintf(guess, dir + 32, "%.*stokenizer_config.json", (int)dir, tok_file);
        if (access(guess, F_OK) == 0) cfg_file = guess;
    }
    int rc = fw_tokenizer_load(t, tok_file, cfg_file, e);
    free(guess);
    return rc;
}

/* End of the chunk that starts at i: at most `chunk` bytes, cut after the last
 * newline inside, else at a UTF-8 character boundary. jobs/bench_tokenizer.sh
 * cuts the same way for Hugging Face tokenizers. */
static size_t chunk_end(const char *s, size_t n, size_t i, size_t chunk) {
    if (!chunk || n - i <= chunk) return n;
    size_t j = i + chunk;
    for (size_t k = j; k > i; k--)
        if (s[k - 1] == '\n') return k;
    while (j > i + 1 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
    return j;
}

int fw_cmd_tokenize(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},       {"tokenizer", required_argument, 0, 't'},
        {"tokenizer-config", required_argument, 0, 'c'}, {"file", required_argument, 0, 'f'},
        {"add-special", no_argument, 0, 'a'},       {"chat", no_argument, 0, 'C'},
        {"generation-prompt", no_argument, 0, 'g'}, {"render", no_argument, 0, 'r'},
        {"chunk", required_argument, 0, 'k'},       {"bench", no_argument, 0, 'b'},
        {"chat-format", required_argument, 0, 'F'}, {"thinking", no_argument, 0, 'T'},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
    fw_chat_opts chat_opts = {0};
    const char *model_dir = NULL, *tok_file = NULL, *cfg_file = NULL, *file = NULL;
    bool add_special = false, chat = false, gen_prompt = false, render = false, bench = false;
    int64_t chunk = 0;
    fw_err e = {{0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 't': tok_file = optarg; break;
        case 'c': cfg_file = optarg; break;
        case 'f': file = optarg; break;
        case 'a': add_special = true; break;
        case 'C': chat = true; break;
        case 'g': gen_prompt = true; break;
        case 'r': render = true; break;
        case 'b': bench = true; break;
        case 'T': chat_opts.thinking = true; break;
        case 'F':
            if (fw_chat_format_parse(optarg, &chat_opts.format, &e)) {
                fprintf(stderr, "furrow tokenize: --chat-format: %s\n", e.msg);
                return 2;
            }
            break;
        case 'k':
            if (fw_cli_parse_int(optarg, "--chunk", 0, INT64_MAX, &chunk, &e)) {
                fprintf(stderr, "furrow tokenize: %s\n", e.msg);
                return 2;
            }
            break;
        case 'h': tokenize_usage(stdout); return 0;
        default: tokenize_usage(stderr); return 2;
        }
    }
    const char *why = NULL;
    if (!model_dir == !tok_file) why = "give one of --model and --tokenizer";
    else if (cfg_file && !tok_file) why = "--tokenizer-config goes with --tokenizer";
    else if (!file && optind != argc - 1) why = "give the text as one argument, or --file";
    else if (file && optind != argc) why = "give the text as an argument or --file, not both";
    else if ((gen_prompt || render || chat_opts.format || chat_opts.thinking) && !chat)
        why = "--generation-prompt, --render, --chat-format and --thinking go with --chat";
    else if (bench && (chat || !file)) why = "--bench needs --file (and no --chat)";
    if (why) {
        fprintf(stderr, "furrow tokenize: %s\n", why);
        tokenize_usage(stderr);
        return 2;
    }

    int rc = 1;
    fw_tokenizer *t = NULL;
    char *text = NULL, *rendered = NULL;
    size_t len = 0;
    int32_t *all = NULL, *wrap = NULL;
    int64_t n_all = 0, cap_all = 0, n_wrap = 0, n_pre = 0;
    if (load(&t, model_dir, tok_file, cfg_file, &e)) goto done;
    if (file) {
        if (fw_read_file(file, SIZE_MAX, &text, &len, &e)) goto done;
    } else {
        if (!(text = strdup(argv[optind]))) {
            fw_errf(&e, "out of memory");
            goto done;
        }
        len = strlen(text);
    }
    if (chat) {
        size_t rlen;
        chat_opts.add_generation_prompt = gen_prompt;
        if (fw_chat_render_json_ex(t, text, len, &chat_opts, &rendered, &rlen, &e)) goto done;
        if (render) {
            fwrite(rendered, 1, rlen, stdout);
            putchar('\n');
            rc = 0;
            goto done;
        }
        free(text);
        text = rendered;
        rendered = NULL;
        len = rlen;
    }

    /* The special tokens add_special wraps a text in ([BOS], or as the config
     * says), so that chunks are encoded plain and wrapped once. */
    if (add_special && fw_tokenizer_encode(t, "", 0, true, &wrap, &n_wrap, &e)) goto done;
    n_pre = n_wrap > 0 && wrap[0] == fw_tokenizer_bos(t) ? 1 : 0;
    double t0 = fw_now();
    for (size_t i = 0; i <= len;) {
        size_t j = chunk_end(text, len, i, (size_t)chunk);
        int32_t *ids;
        int64_t n;
        bool first = i == 0, last = j == len;
        if (fw_tokenizer_encode(t, text + i, j - i, false, &ids, &n, &e)) {
            if (chunk) fw_err_prefix(&e, "chunk at byte %zu", i);
            goto done;
        }
        if (n_all + n + n_wrap > cap_all) {
            int64_t cap = cap_all ? cap_all : 1024;
            while (cap < n_all + n + n_wrap) cap *= 2;
            int32_t *p = realloc(all, (size_t)cap * sizeof *p);
            if (!p) {
                free(ids);
                fw_errf(&e, "out of memory");
                goto done;
            }
            all = p;
            cap_all = cap;
        }
        if (first && n_pre) all[n_all++] = wrap[0];
        if (n) memcpy(all + n_all, ids, (size_t)n * sizeof *ids);
        n_all += n;
        free(ids);
        if (last) {
            for (int64_t k = n_pre; k < n_wrap; k++) all[n_all++] = wrap[k];
            break;
        }
        i = j;
    }
    double dt = fw_now() - t0;
    if (bench) {
        printf("furrow tokenize: %zu bytes -> %lld tokens in %.3f s: %.2f MB/s (%.0f tokens/s), "
               "chunk %lld\n",
               len, (long long)n_all, dt, dt > 0 ? (double)len / 1e6 / dt : 0.0,
               dt > 0 ? (double)n_all / dt : 0.0, (long long)chunk);
    } else {
        putchar('[');
        for (int64_t i = 0; i < n_all; i++) printf(i ? ", %d" : "%d", all[i]);
        printf("]\n");
    }
    rc = 0;
done:
    if (rc) fprintf(stderr, "furrow tokenize: %s\n", e.msg);
    free(wrap);
    free(all);
    free(rendered);
    free(text);
    fw_tokenizer_free(t);
    return rc;
}

int fw_cmd_detokenize(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"tokenizer", required_argument, 0, 't'},
        {"skip-special", no_argument, 0, 's'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *model_dir = NULL, *tok_file = NULL;
    bool skip_special = false;
    fw_err e = {{0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 't': tok_file = optarg; break;
        case 's': skip_special = true; break;
        case 'h': detokenize_usage(stdout); return 0;
        default: detokenize_usage(stderr); return 2;
        }
    }
    if (!model_dir == !tok_file || optind != argc - 1) {
        fprintf(stderr, "furrow detokenize: %s\n", !model_dir == !tok_file
                                                       ? "give one of --model and --tokenizer"
                                                       : "give the ids as one argument");
        detokenize_usage(stderr);
        return 2;
    }
    /* "[5, 17]" -> "5,17" */
    char *list = strdup(argv[optind]);
    if (!list) {
        fprintf(stderr, "furrow detokenize: out of memory\n");
        return 1;
    }
    size_t k = 0;
    for (const char *p = argv[optind]; *p; p++)
        if (!strchr("[] \t\r\n", *p)) list[k++] = *p;
    list[k] = 0;
    int32_t *ids = NULL;
    int64_t n = 0;
    if (fw_cli_parse_ids(list, "ids", 0, &ids, &n, &e)) {
        free(list);
        fprintf(stderr, "furrow detokenize: %s\n", e.msg);
        return 2;
    }
    free(list);

    int rc = 1;
    fw_tokenizer *t = NULL;
    char *text = NULL;
    size_t len;
    if (load(&t, model_dir, tok_file, NULL, &e)) goto done;
    for (int64_t i = 0; i < n; i++) {
        size_t tl;
        if (!fw_tokenizer_token(t, ids[i], &tl)) {
            fw_errf(&e, "token id %d has no token in the tokenizer (ids run to %lld)", ids[i],
                    (long long)fw_tokenizer_n_ids(t) - 1);
            goto done;
        }
    }
    if (fw_tokenizer_decode(t, ids, n, skip_special, &text, &len, &e)) goto done;
    fwrite(text, 1, len, stdout);
    putchar('\n');
    rc = 0;
done:
    if (rc) fprintf(stderr, "furrow detokenize: %s\n", e.msg);
    free(text);
    free(ids);
    fw_tokenizer_free(t);
    return rc;
}
