/* furrow generate --input prompts.jsonl --output results.jsonl: a batch job
 * through the continuous-batching scheduler. One request per input line, one
 * result line per id, written whole with one write() and synced. A rerun reads
 * the output first: ids already there are skipped, and a torn last line (the
 * job was killed while writing it) is cut off, so kill -9 at any moment then a
 * rerun leaves exactly one complete line per id. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/base/fileutil.h"
#include "runtime/cli/cli.h"
#include "runtime/engine/prompt.h"
#include "runtime/engine/job.h"
#include "runtime/engine/runner.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: [mpirun -np N] furrow generate --model DIR --input PROMPTS.jsonl --output RESULTS.jsonl [options]\n\n"
            "One request per input line: {\"id\": ..., one of \"prompt\" (text or token ids), \"messages\"\n"
            "(a chat) or \"prompt_tokens\", and OpenAI sampling fields: max_tokens (default 16),\n"
            "temperature (default 1), top_p, top_k, min_p, presence_penalty, frequency_penalty,\n"
            "repetition_penalty, seed, stop, stop_token_ids, ignore_eos, logprobs, response_format\n"
            "(json_object, or json_schema: JSON output, README.md), and with messages tools,\n"
            "tool_choice, chat_template_kwargs}. One result line per id: {id, text, tokens,\n"
            "finish_reason, usage[, logprobs][, content, reasoning_content, tool_calls]} or {id, error}.\n"
            "Rerun the same command after an interruption: ids already in the output are skipped.\n\n"
            "options:\n"
            "  --model DIR                         furrow checkpoint\n"
            "  --input FILE, --output FILE         requests in, results out (appended)\n"
            "  --progress SECONDS                  a progress line this often when stderr is not a\n"
            "                                      terminal (default 10; a bar on a terminal)\n"
            "  --chat-format v3|v3.1|v3.2          how messages are rendered and replies split (default:\n"
            "                                      from the tokenizer's chat_template, v3.2 for V3.2)\n"
            "  --thinking on|off                   thinking mode of lines that do not say (v3.1, v3.2)\n" FW_CLI_RUNNER_HELP
                FW_CLI_ENGINE_HELP "  -h, --help                          this help\n");
}

/* Id keys as compact JSON text, sorted, for the resume lookup. */
typedef struct idset {
    char **k;
    size_t n, cap;
} idset;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool idset_has(const idset *s, const char *key) {
    return s->n && bsearch(&key, s->k, s->n, sizeof *s->k, cmp_str) != NULL;
}

static int idset_add(idset *s, const json_t *id) {
    if (s->n == s->cap) {
        char **k = realloc(s->k, (s->cap = s->cap ? 2 * s->cap : 256) * sizeof *k);
        if (!k) return FW_ERR;
        s->k = k;
    }
    return (s->k[s->n++] = json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY)) ? FW_OK : FW_ERR;
}

static void idset_free(idset *s) {
    for (size_t i = 0; i < s->n; i++) free(s->k[i]);
    free(s->k);
}

/* Opens the output for appending and takes it for this job alone: a second job
 * on the same file would write every id twice. Where the file system has no
 * locks, the job goes on without one. */
static int own_output(const char *path, int *fd, fw_err *e) {
    /* Non-blocking: a FIFO without a reader fails at once instead of hanging. */
    if ((*fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NONBLOCK | O_CLOEXEC, 0644)) < 0)
        return fw_errf(e, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) return fw_errf(e, "%s: not a regular file", path);
    if (flock(*fd, LOCK_EX | LOCK_NB) == 0) return FW_OK;
    if (errno == EWOULDBLOCK) return fw_errf(e, "%s: another batch job is writing it", path);
    fprintf(stderr, "furrow generate: %s: no lock (%s); make sure no other job writes it\n", path, strerror(errno));
    return FW_OK;
}

/* Reads the output of an earlier run: the ids it completed; cuts a torn tail. */
static int resume(const char *path, idset *done, fw_err *e) {
    FILE *f = fopen(path, "r+");
    if (!f) return errno == ENOENT ? FW_OK : fw_errf(e, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long good = 0, lineno = 0;
    int rc = FW_OK;
    while (rc == FW_OK && (len = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (line[len - 1] != '\n') break; /* torn: killed while writing it */
        json_error_t je;
        json_t *o = json_loadb(line, (size_t)len, JSON_ALLOW_NUL, &je);
        const json_t *id = json_object_get(o, "id");
        if (!id) rc = fw_errf(e, "%s:%ld: not a result line; refusing to append to it", path, lineno);
        else if (idset_add(done, id)) rc = fw_errf(e, "out of memory");
        json_decref(o);
        good += len;
    }
    free(line);
    if (rc == FW_OK && ftell(f) != good && ftruncate(fileno(f), good))
        rc = fw_errf(e, "%s: cannot cut the torn last line: %s", path, strerror(errno));
    fclose(f);
    if (done->n) qsort(done->k, done->n, sizeof *done->k, cmp_str);
    return rc;
}

/* The pending input lines, parsed (JSON only; fields are checked at submit). */
typedef struct input {
    json_t **line;
    long *lineno;
    size_t n, cap;
} input;

static int read_input(const char *path, const idset *done, input *in, size_t *n_done, fw_err *e) {
    int fd;
    if (fw_open_regular(path, &fd, NULL, e)) return FW_ERR;   /* never a FIFO, device or folder */
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return fw_errf(e, "%s: %s", path, strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int rc = FW_OK;
    idset seen = {0};
    while (rc == FW_OK && (len = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)len) continue;
        json_error_t je;
        json_t *o = json_loadb(line, (size_t)len, JSON_ALLOW_NUL, &je);
        const json_t *id = json_object_get(o, "id");
        if (!o) rc = fw_errf(e, "%s:%ld: %s", path, lineno, je.text);
        else if (!json_is_string(id) && !json_is_integer(id))
            rc = fw_errf(e, "%s:%ld: each line needs an \"id\" (string or integer)", path, lineno);
        else if (idset_add(&seen, id)) rc = fw_errf(e, "out of memory");
        if (rc) {
            json_decref(o);
            break;
        }
        if (idset_has(done, seen.k[seen.n - 1])) {
            (*n_done)++;
            json_decref(o);
            continue;
        }
        if (in->n == in->cap) {
            in->cap = in->cap ? 2 * in->cap : 256;
            json_t **l = realloc(in->line, in->cap * sizeof *l);
            long *ln = realloc(in->lineno, in->cap * sizeof *ln);
            if (l) in->line = l;
            if (ln) in->lineno = ln;
            if (!l || !ln) {
                json_decref(o);
                rc = fw_errf(e, "out of memory");
                break;
            }
        }
        in->line[in->n] = o, in->lineno[in->n++] = lineno;
    }
    free(line);
    fclose(f);
    if (rc == FW_OK) { /* the same id twice would give two result lines */
        if (seen.n) qsort(seen.k, seen.n, sizeof *seen.k, cmp_str);
        for (size_t i = 1; i < seen.n && rc == FW_OK; i++)
            if (!strcmp(seen.k[i], seen.k[i - 1])) rc = fw_errf(e, "%s: the id %s appears twice", path, seen.k[i]);
    }
    idset_free(&seen);
    return rc;
}

typedef struct batch {
    int fd;
    const char *path;
    size_t n_total, n_done;
    int64_t gen_tokens;
    double t0, t_report, every;
    bool tty;
    int fail;
    fw_err e;
} batch;

/* One whole line, then fsync: after a crash it is either all there or cut as torn. */
static void write_line(batch *b, json_t *o) {
    if (b->fail) { /* the first error is the one reported; nothing more is appended */
        json_decref(o);
        return;
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) {
        b->fail = fw_errf(&b->e, "out of memory");
        return;
    }
    size_t n = strlen(s);
    s[n] = '\n'; /* json_dumps' NUL becomes the newline; written as n + 1 bytes */
    off_t start = lseek(b->fd, 0, SEEK_END);   /* the job holds the file: appends land here */
    for (size_t off = 0; off < n + 1;) {
        ssize_t w = write(b->fd, s + off, n + 1 - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            b->fail = fw_errf(&b->e, "%s: cannot write a result line: %s (the %zu lines before it are complete)",
                              b->path, w < 0 ? strerror(errno) : "no progress", b->n_done);
            break;
        }
        off += (size_t)w;
    }
    free(s);
    if (!b->fail && fdatasync(b->fd))
        b->fail = fw_errf(&b->e, "%s: cannot write a result line: sync: %s (the %zu lines before it are complete)",
                          b->path, strerror(errno), b->n_done);
    /* A full disk or an I/O error: the half-written line goes, so the file holds
     * whole lines only (a rerun would cut it too). */
    if (b->fail && start >= 0 && ftruncate(b->fd, start) != 0)
        fprintf(stderr, "furrow generate: %s: cannot cut the unfinished line: %s\n", b->path, strerror(errno));
    b->n_done++;
}

static void on_token(fw_req *r, const fw_sample_out *o, void *arg) {
    fw_job *j = r->user;
    (void)arg;
    if (fw_job_token(j, o)) fw_sched_stop(NULL, r, FW_FINISH_STOP);
}

static void on_finish(fw_req *r, void *arg) {
    batch *b = arg;
    fw_job *j = r->user;
    fw_job_end(j);
    b->gen_tokens += r->n_tokens - r->n_prompt;
    write_line(b, fw_job_result(j));
    fw_job_free(j);
    free(j);
}

static void progress(batch *b, bool last) {
    double now = fw_now(), dt = now - b->t0;
    if (!last && now - b->t_report < (b->tty ? 0.5 : b->every)) return;
    b->t_report = now;
    double rate = dt > 0 ? (double)b->gen_tokens / dt : 0;
    size_t left = b->n_total - b->n_done;
    double per = b->n_done ? dt / (double)b->n_done : 0;
    fprintf(stderr, "%s%zu/%zu requests done, %.1f tokens/s, ETA %.0f s%s", b->tty ? "\r" : "furrow generate: ",
            b->n_done, b->n_total, rate, per * (double)left, b->tty && !last ? "   " : "\n");
}

/* Leader: parse, submit while the queue takes them, step until all are written. */
static int lead(fw_runner *run, batch *b, input *in, const fw_job_ctx *ctx) {
    size_t next = 0;
    while (!b->fail && (next < in->n || fw_sched_pending(&run->sched) > 0)) {
        while (next < in->n && run->sched.w_len < run->sched.o.max_queue) {
            fw_job *j = calloc(1, sizeof *j);
            int status;
            fw_err e;
            if (!j) return fw_errf(&b->e, "out of memory");
            if (fw_job_parse(j, in->line[next], FW_JOB_BATCH, ctx, &status, &e) == FW_OK) {
                j->req.user = j;
                int rc = fw_sched_submit(&run->sched, &j->req, &e);
                if (rc == FW_OK) j = NULL;
                else if (rc == FW_SCHED_BUSY) { /* cannot happen: the queue had room */
                    fw_job_free(j);
                    free(j);
                    break;
                }
            }
            if (j) { /* refused: the error is its result, so a rerun does not retry it */
                json_t *o = fw_error_json(status == 200 ? 422 : status, e.msg);
                json_object_set(o, "id", json_object_get(in->line[next], "id"));
                fprintf(stderr, "furrow generate: line %ld: %s\n", in->lineno[next], e.msg);
                write_line(b, o);
                fw_job_free(j);
                free(j);
            }
            next++;
        }
        int n;
        if (fw_runner_step(run, &n, &b->e)) return FW_ERR;
        progress(b, false);
    }
    return b->fail;
}

int fw_cmd_generate_batch(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},  {"input", required_argument, 0, 'i'},
                                         {"output", required_argument, 0, 'o'}, {"progress", required_argument, 0, 'p'},
                                         {"help", no_argument, 0, 'h'},         FW_CLI_ENGINE_OPTIONS,
                                         {"chat-format", required_argument, 0, 0x3C0},
                                         {"thinking", required_argument, 0, 0x3C1},
                                         FW_CLI_RUNNER_OPTIONS,                     {0, 0, 0, 0}};
    fw_chat_format chat_format = FW_CHAT_AUTO;
    bool thinking = false;
    fw_engine_opts eo;
    fw_cli_engine_defaults(&eo);
    fw_sched_opts so;
    fw_runner_defaults(&so);
    const char *in_path = NULL, *out_path = NULL;
    double every = 10;
    fw_err e = {{0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = fw_cli_engine_option(c, optarg, &eo, &e);
        if (!bad) bad = fw_cli_runner_option(c, optarg, &so, &e);
        if (bad > 0) continue;
        bad = bad < 0;
        switch (c) {
        case 'm': eo.model_dir = optarg; break;
        case 'i': in_path = optarg; break;
        case 'o': out_path = optarg; break;
        case 'p':
            bad = fw_cli_parse_double(optarg, "--progress", &every, &e) != 0 ||
                  (!(every > 0) && fw_errf(&e, "--progress must be a positive number of seconds"));
            break;
        case 0x3C0: bad = fw_chat_format_parse(optarg, &chat_format, &e) && fw_err_prefix(&e, "--chat-format"); break;
        case 0x3C1:
            bad = strcmp(optarg, "on") && strcmp(optarg, "off") && fw_errf(&e, "--thinking must be on or off");
            thinking = !strcmp(optarg, "on");
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
    if (!eo.model_dir || !in_path || !out_path || optind < argc) {
        fprintf(stderr, "furrow generate: --model, --input and --output are required\n");
        usage(stderr);
        return 2;
    }
    fw_world w;
    if (fw_world_init(&w, NULL, NULL, &e)) {
        fprintf(stderr, "furrow generate: %s\n", e.msg);
        return 1;
    }
    idset done = {0};
    input in = {0};
    batch b = {.fd = -1, .path = out_path, .every = every, .tty = isatty(2)};
    fw_tokenizer *tok = NULL;
    int rc = FW_OK;
    if (w.rank == 0) {
        rc = fw_check_regular(in_path, &e) || own_output(out_path, &b.fd, &e) || resume(out_path, &done, &e) ||
             read_input(in_path, &done, &in, &b.n_done, &e);
        b.n_total = b.n_done + in.n;
        fw_err te;
        if (rc == FW_OK && fw_prompt_tokenizer(&tok, eo.model_dir, &te)) tok = NULL; /* token ids still work */
    }
    if (!fw_world_all_ok(&w, rc == FW_OK)) {
        if (w.rank == 0) fprintf(stderr, "furrow generate: %s\n", e.msg);
        goto out;
    }
    fw_engine en;
    fw_runner run;
    so.on_token = on_token, so.on_finish = on_finish, so.arg = &b;
    rc = fw_runner_open(&run, &en, &w, &eo, &so, "batch jobs run", &e);
    if (!fw_world_all_ok(&w, rc == FW_OK)) {
        fw_world_report(&w, "generate", rc ? e.msg : "another rank failed to start");
        rc = FW_ERR;
        goto engine_out;
    }
    b.t0 = b.t_report = fw_now();
    if (run.leader) {
        fw_job_ctx ctx = {.tok = tok, .vocab = en.model->cfg.vocab_size, .max_context = so.max_context,
                          .thinking = thinking};
        fw_err fe;
        if (fw_chat_format_resolve(tok, fw_config_has_indexer(&en.model->cfg) ? "deepseek_v32" : NULL, chat_format,
                                   &ctx.format, &fe))
            fprintf(stderr, "furrow generate: %s; lines with messages will be refused\n", fe.msg);
        if (thinking && ctx.format == FW_CHAT_V3)
            fw_world_abort(&w, "generate", "--thinking on: the v3 chat format has no thinking mode (--chat-format v3.1 or v3.2)");
        if (b.n_done) fprintf(stderr, "furrow generate: %zu of %zu ids already in %s\n", b.n_done, b.n_total, out_path);
        rc = tok && fw_json_cache_init(&ctx.json, tok, en.model->cfg.vocab_size, (int32_t)en.model->cfg.eos_token_id,
                                       &b.e)
                 ? FW_ERR
                 : lead(&run, &b, &in, &ctx);
        fw_json_cache_free(ctx.json); /* the jobs and their grammars are gone */
        if (rc) fw_world_abort(&w, "generate", b.e.msg); /* followers wait in a broadcast: end them too */
        fw_runner_stop(&run);
        progress(&b, true);
        const fw_block_map *m = &run.sched.map;
        fprintf(stderr, "furrow generate: %lld steps, %lld tokens computed, %lld preemptions; prefix cache %s: %lld of "
                        "%lld prompt tokens cached, %lld evictions; %d rank(s): tp %d, pp %d\n",
                (long long)run.steps, (long long)run.tokens, (long long)run.sched.n_preemptions,
                m->caching ? "on" : "off", (long long)m->hit_tokens, (long long)m->queried_tokens,
                (long long)m->evictions, w.size, en.layout.tp, en.layout.pp);
    } else if (fw_runner_follow(&run, &e)) {
        fw_world_abort(&w, "generate", e.msg);
    }
    fw_runner_free(&run);
engine_out:
    fw_engine_free(&en);
out:
    if (b.fd >= 0) close(b.fd);
    for (size_t i = 0; i < in.n; i++) json_decref(in.line[i]);
    free(in.line);
    free(in.lineno);
    idset_free(&done);
    fw_tokenizer_free(tok);
    fw_world_finalize(&w);
    return rc ? 1 : 0;
}
