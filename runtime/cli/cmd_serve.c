/* furrow serve: an OpenAI-compatible HTTP server on rank 0 of any layout under
 * mpirun. Rank 0 runs the HTTP threads and the engine loop (admit the inbox,
 * cancel requests whose clients left, step); the other ranks follow its step
 * plans. SIGTERM (or SIGINT): new requests get 503, those in flight may finish
 * for --shutdown-grace seconds, the rest are cancelled, then every rank stops. */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/cli/cli.h"
#include "runtime/engine/prompt.h"
#include "runtime/engine/runner.h"
#include "runtime/route/route.h"
#include "runtime/serve/serve.h"
#include "runtime/serve/serve_register.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: [mpirun -np N] furrow serve --model DIR [options]\n\n"
            "Serves POST /v1/completions and /v1/chat/completions (stream: true gives server-sent\n"
            "events), GET /v1/models, /health and /metrics (Prometheus) on rank 0. Requests may ask\n"
            "for JSON output (response_format: json_object, or json_schema with a schema of the subset\n"
            "in README.md): sampling is then constrained so the output parses and validates. Chat\n"
            "requests may carry tools (tool_choice none, auto, required or a named function: a\n"
            "forced call is constrained to the function's parameters schema) and\n"
            "chat_template_kwargs: {\"thinking\": true} (v3.1, v3.2: reasoning_content is split out).\n\n"
            "options:\n"
            "  --model DIR                         furrow checkpoint\n"
            "  --host ADDR                         IPv4 address to listen on (default 127.0.0.1)\n"
            "  --port N                            TCP port (default 8000; 0: any free one)\n"
            "  --port-file FILE                    write the port there once listening\n"
            "  --served-model-name NAME            the model's name in the API (default: the folder's name)\n"
            "  --chat-format v3|v3.1|v3.2          how chats are rendered and replies split (default: from\n"
            "                                      tokenizer_config.json's chat_template, v3.2 for a V3.2\n"
            "                                      checkpoint without one)\n"
            "  --thinking on|off                   thinking mode of requests that do not say (v3.1, v3.2;\n"
            "                                      default off, as DeepSeek's templates)\n"
            "  --max-queue N                       requests waiting at most; more get 503 (default 64)\n"
            "  --max-body BYTES                    request body limit; more get 413 (default 1048576)\n"
            "  --http-timeout S                    idle connections close after S seconds (default 30)\n"
            "  --header-timeout S                  a request's headers must arrive within S seconds of the\n"
            "                                      connection (or of the previous response), else it is\n"
            "                                      closed, with 408 if part came (default 5, or half of\n"
            "                                      --http-timeout when smaller; below --http-timeout)\n"
            "  --max-connections N                 open connections at most (default 256)\n"
            "  --max-connections-per-ip N          open connections from one address at most (default half\n"
            "                                      of --max-connections; behind a proxy, raise it)\n"
            "  --admin-port N                      also serve GET /health and /metrics alone on this port,\n"
            "                                      with 16 connections of its own, so probes and scrapes\n"
            "                                      are answered while clients hold every main connection\n"
            "                                      (default: none; 0: any free one, printed at start)\n"
            "  --shutdown-grace S                  on SIGTERM, time for requests in flight (default 5)\n"
            "  --register URL                      join the `furrow route` at URL once ready (POST to its\n"
            "                                      /replicas, again every 5 s), leave it on SIGTERM\n"
            "  --registry DIR                      join routers reading this folder: a file named after\n"
            "                                      this replica's URL (written again within 5 s if it\n"
            "                                      goes), removed on SIGTERM\n"
            "  --advertise URL                     this replica's URL for --register/--registry (default\n"
            "                                      http://HOST:PORT, the host name when --host is 0.0.0.0)\n" FW_CLI_RUNNER_HELP
                FW_CLI_ENGINE_HELP "  -h, --help                          this help\n");
}

/* The one piece of global state: set by the signal handler, read by the loop. */
static volatile sig_atomic_t term_signal;
static void on_term(int sig) { term_signal = sig; }

static void on_token(fw_req *r, const fw_sample_out *o, void *arg) {
    fw_serve *s = arg;
    fw_http_job *h = r->user;
    pthread_mutex_lock(&s->mu);
    if (r->n_tokens - r->n_prompt == 1) h->t_first = fw_now(), fw_hist_add(&s->ttft_s, h->t_first - h->t_arrive);
    s->generated_tokens++;
    if (fw_job_token(&h->job, o)) fw_sched_stop(NULL, r, FW_FINISH_STOP);
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&s->mu);
}

static void on_finish(fw_req *r, void *arg) {
    fw_serve *s = arg;
    fw_http_job *h = r->user;
    pthread_mutex_lock(&s->mu);
    fw_job_end(&h->job);
    if (r->json) {
        s->json_requests++;
        s->json_mask_hits += (uint64_t)r->sampler.mask_hits, s->json_mask_misses += (uint64_t)r->sampler.mask_misses;
        s->json_mask_s += r->sampler.mask_s;
    }
    if (r->finish == FW_FINISH_ERROR) {
        h->error_status = 500;
        fw_finish_error(r, h->error_msg, sizeof h->error_msg);
    }
    h->done = true;
    pthread_cond_signal(&h->cv);
    fw_http_job_release(s, h);
    pthread_mutex_unlock(&s->mu);
}

/* Under s->mu: new requests into the scheduler, gone clients out of it. */
static void admit(fw_serve *s, fw_runner *run) {
    for (fw_http_job *h; (h = s->inbox);) {
        s->inbox = h->next;
        if (!s->inbox) s->inbox_tail = NULL;
        s->inbox_len--;
        fw_err e;
        int rc = h->gone ? FW_ERR : fw_sched_submit(&run->sched, &h->job.req, &e);
        if (rc == FW_OK) {
            s->prompt_tokens += (uint64_t)h->job.req.n_prompt;
            continue;
        }
        h->error_status = rc == FW_SCHED_BUSY ? 503 : 422;
        snprintf(h->error_msg, sizeof h->error_msg, "%.500s", h->gone ? "cancelled" : rc == FW_SCHED_BUSY ? "the queue is full" : e.msg);
        h->done = true;
        pthread_cond_signal(&h->cv);
        fw_http_job_release(s, h);
    }
    for (fw_http_job *h; (h = s->cancels);) {
        s->cancels = h->cancel_next;
        if (!h->done) fw_sched_stop(&run->sched, &h->job.req, FW_FINISH_CANCEL);
        fw_http_job_release(s, h);
    }
}

static void cancel_all(fw_sched *sc) {
    for (int i = 0; i < sc->n_running; i++) fw_sched_stop(sc, sc->running[i], FW_FINISH_CANCEL);
    for (int64_t k = 0; k < sc->w_len; k++) fw_sched_stop(sc, sc->waiting[(sc->w_head + k) % sc->w_cap], FW_FINISH_CANCEL);
}

static int engine_loop(fw_serve *s, fw_runner *run, double grace, fw_err *e) {
    double t_stop = 0;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        admit(s, run);
        if (term_signal && !s->stopping) {
            s->stopping = true, t_stop = fw_now();
            fprintf(stderr, "furrow serve: signal %d: finishing %lld requests in flight (up to %g s)\n", (int)term_signal,
                    (long long)fw_sched_pending(&run->sched), grace);
            if (s->reg) { /* routers stop sending first; what still comes gets 503 and goes elsewhere */
                pthread_mutex_unlock(&s->mu);
                fw_register_leave(s->reg);
                pthread_mutex_lock(&s->mu);
            }
        }
        if (s->stopping && fw_now() - t_stop > grace) cancel_all(&run->sched);
        int64_t pending = fw_sched_pending(&run->sched);
        if (pending == 0 && s->stopping) {
            pthread_mutex_unlock(&s->mu);
            return FW_OK;
        }
        if (pending == 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100 * 1000 * 1000;
            if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
            pthread_cond_timedwait(&s->wake, &s->mu, &ts);
            pthread_mutex_unlock(&s->mu);
            if (fw_runner_idle(run, e)) return FW_ERR;
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        int n;
        if (fw_runner_step(run, &n, e)) return FW_ERR;
        pthread_mutex_lock(&s->mu);
        if (n > 0) fw_hist_add(&s->step_s, run->last_step_s);
        s->queued = (int)run->sched.w_len;
        s->running = run->sched.n_running;
        const fw_block_map *m = &run->sched.map;
        s->kv_used = fw_block_map_used(m);
        s->prefix_blocks = m->n_published;
        s->prefix_queried = (uint64_t)m->queried_tokens, s->prefix_hits = (uint64_t)m->hit_tokens;
        s->prefix_evictions = (uint64_t)m->evictions;
        s->spec_k = run->spec_k;
        for (int j = 0; j < run->spec_k && j < 2; j++)
            s->spec_proposed[j] = (uint64_t)run->sched.spec_proposed[j],
            s->spec_accepted[j] = (uint64_t)run->sched.spec_accepted[j];
        pthread_mutex_unlock(&s->mu);
    }
}

static const char *base_name(const char *dir) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    static char name[256]; /* the name outlives this call; one model per process */
    size_t b = n;
    while (b > 0 && dir[b - 1] != '/') b--;
    snprintf(name, sizeof name, "%.*s", (int)(n - b), dir + b);
    return name;
}

/* What the command line asks for. */
typedef struct serve_args {
    fw_engine_opts eo;
    fw_sched_opts so;
    const char *host, *port_file, *name, *router, *registry, *advertise;
    int64_t port, admin_port, max_queue, max_body, timeout, max_conns, max_conns_per_ip;
    double grace, header_timeout;
    fw_chat_format chat_format;
    bool thinking;
} serve_args;

/* Parses the flags into a; -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, serve_args *a) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},          {"host", required_argument, 0, 'H'},
        {"port", required_argument, 0, 'p'},           {"port-file", required_argument, 0, 'f'},
        {"served-model-name", required_argument, 0, 'n'}, {"max-queue", required_argument, 0, 'q'},
        {"max-body", required_argument, 0, 'b'},       {"http-timeout", required_argument, 0, 't'},
        {"max-connections", required_argument, 0, 'c'}, {"shutdown-grace", required_argument, 0, 'g'},
        {"header-timeout", required_argument, 0, 'T'}, {"max-connections-per-ip", required_argument, 0, 'i'},
        {"admin-port", required_argument, 0, 'a'},     {"register", required_argument, 0, 'r'},
        {"registry", required_argument, 0, 'R'},       {"advertise", required_argument, 0, 'A'},
        {"chat-format", required_argument, 0, 0x3C0},  {"thinking", required_argument, 0, 0x3C1},
        {"help", no_argument, 0, 'h'},                 FW_CLI_ENGINE_OPTIONS,
        FW_CLI_RUNNER_OPTIONS,                             {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    fw_cli_engine_defaults(&a->eo);
    fw_runner_defaults(&a->so);
    a->host = "127.0.0.1";
    a->port = 8000, a->max_queue = 64, a->max_body = 1 << 20, a->timeout = 30, a->max_conns = 256;
    a->grace = 5, a->header_timeout = 0, a->max_conns_per_ip = 0, a->admin_port = -1; /* 0: by the other flags */
    fw_err e = {{0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = fw_cli_engine_option(c, optarg, &a->eo, &e);
        if (!bad) bad = fw_cli_runner_option(c, optarg, &a->so, &e);
        if (bad > 0) continue;
        bad = bad < 0;
        switch (c) {
        case 'm': a->eo.model_dir = optarg; break;
        case 'H': a->host = optarg; break;
        case 'p': bad = fw_cli_parse_int(optarg, "--port", 0, 65535, &a->port, &e) != 0; break;
        case 'f': a->port_file = optarg; break;
        case 'r': {
            char u[256];
            bad = fw_route_url(optarg, u, sizeof u, &e) != 0 && fw_err_prefix(&e, "--register");
            a->router = optarg;
            break;
        }
        case 'R': a->registry = optarg; break;
        case 'A': {
            char u[256];
            bad = fw_route_url(optarg, u, sizeof u, &e) != 0 && fw_err_prefix(&e, "--advertise");
            a->advertise = optarg;
            break;
        }
        case 'n': a->name = optarg; break;
        case 'q': bad = fw_cli_parse_int(optarg, "--max-queue", 1, 1 << 20, &a->max_queue, &e) != 0; break;
        case 'b': bad = fw_cli_parse_int(optarg, "--max-body", 64, 1 << 30, &a->max_body, &e) != 0; break;
        case 't': bad = fw_cli_parse_int(optarg, "--http-timeout", 1, 3600, &a->timeout, &e) != 0; break;
        case 'c': bad = fw_cli_parse_int(optarg, "--max-connections", 1, 65536, &a->max_conns, &e) != 0; break;
        case 'i': bad = fw_cli_parse_int(optarg, "--max-connections-per-ip", 1, 65536, &a->max_conns_per_ip, &e) != 0; break;
        case 'a': bad = fw_cli_parse_int(optarg, "--admin-port", 0, 65535, &a->admin_port, &e) != 0; break;
        case 'T':
            bad = fw_cli_parse_double(optarg, "--header-timeout", &a->header_timeout, &e) != 0 ||
                  (!(a->header_timeout > 0 && a->header_timeout <= 3600) &&
                   fw_errf(&e, "--header-timeout must be more than 0 and at most 3600 seconds"));
            break;
        case 'g':
            bad = fw_cli_parse_double(optarg, "--shutdown-grace", &a->grace, &e) != 0 ||
                  (!(a->grace >= 0) && fw_errf(&e, "--shutdown-grace must be >= 0 seconds"));
            break;
        case 0x3C0: bad = fw_chat_format_parse(optarg, &a->chat_format, &e) && fw_err_prefix(&e, "--chat-format"); break;
        case 0x3C1:
            bad = strcmp(optarg, "on") && strcmp(optarg, "off") && fw_errf(&e, "--thinking must be on or off");
            a->thinking = !strcmp(optarg, "on");
            break;
        case 'h': usage(stdout); return 0;
        default:
            if (!bad) {
                usage(stderr);
                return 2;
            }
        }
        if (bad) {
            fprintf(stderr, "furrow serve: %s\n", e.msg);
            return 2;
        }
    }
    if (!a->eo.model_dir || optind < argc) {
        fprintf(stderr, "furrow serve: --model is required\n");
        usage(stderr);
        return 2;
    }
    if (!a->header_timeout) a->header_timeout = a->timeout < 10 ? (double)a->timeout / 2 : 5;
    if (!a->max_conns_per_ip) a->max_conns_per_ip = a->max_conns > 1 ? a->max_conns / 2 : 1;
    if ((a->header_timeout >= (double)a->timeout &&
         fw_errf(&e, "--header-timeout %g must be below --http-timeout %lld (the idle timeout would end slow headers "
                     "first, unanswered)", a->header_timeout, (long long)a->timeout)) ||
        (a->max_conns_per_ip > a->max_conns &&
         fw_errf(&e, "--max-connections-per-ip %lld is over --max-connections %lld", (long long)a->max_conns_per_ip,
                 (long long)a->max_conns)) ||
        (a->admin_port > 0 && a->admin_port == a->port &&
         fw_errf(&e, "--admin-port %lld is --port too; the admin listener needs a port of its own",
                 (long long)a->admin_port))) {
        fprintf(stderr, "furrow serve: %s\n", e.msg);
        return 2;
    }
    a->so.max_queue = (int)a->max_queue;
    return -1;
}

/* Rank 0: the tokenizer, the server's limits, the HTTP listeners and the port file. */
static fw_http *start_http(fw_serve *s, const serve_args *a, const fw_world *w, const fw_engine *en,
                                     const fw_runner *run, fw_tokenizer **tok, fw_err *e) {
    fw_err te;
    if (fw_prompt_tokenizer(tok, a->eo.model_dir, &te)) *tok = NULL; /* token ids still work */
    s->model_name = a->name ? a->name : base_name(a->eo.model_dir);
    s->max_queue = (int)a->max_queue, s->max_body = (size_t)a->max_body, s->max_context = run->sched.o.max_context;
    s->kv_total = run->pool.n_blocks;
    s->ctx = (fw_job_ctx){.tok = *tok, .vocab = en->model->cfg.vocab_size, .max_context = s->max_context,
                          .model_name = s->model_name, .thinking = a->thinking};
    fw_err fe;
    if (fw_chat_format_resolve(*tok, fw_config_has_indexer(&en->model->cfg) ? "deepseek_v32" : NULL, a->chat_format,
                               &s->ctx.format, &fe))
        fprintf(stderr, "furrow serve: %s; chat requests will be refused\n", fe.msg);
    if (a->thinking && s->ctx.format == FW_CHAT_V3) {
        fw_errf(e, "--thinking on: the v3 chat format has no thinking mode (--chat-format v3.1 or v3.2)");
        return NULL;
    }
    if (*tok && fw_json_cache_init(&s->ctx.json, *tok, en->model->cfg.vocab_size,
                                   (int32_t)en->model->cfg.eos_token_id, e))
        return NULL;
    fw_http_opts ho = {.host = a->host, .port = (int)a->port, .admin_port = (int)a->admin_port,
                       .idle_timeout_s = (int)a->timeout, .header_timeout_s = a->header_timeout,
                       .max_conns = (int)a->max_conns, .max_conns_per_ip = (int)a->max_conns_per_ip};
    fw_http *d = fw_http_start(s, &ho, e);
    if (!d) return NULL;
    int bound = fw_http_port(d);
    if (a->port_file) { /* scripts wait for it: a port file that cannot be written is an error */
        errno = 0;
        FILE *pf = fopen(a->port_file, "w");
        bool ok = pf && fprintf(pf, "%d\n", bound) > 0;
        if (pf && fclose(pf)) ok = false;
        if (!ok) {
            fw_errf(e, "--port-file %s: %s", a->port_file, strerror(errno ? errno : EIO));
            fw_http_stop(d);
            return NULL;
        }
    }
    char admin[96] = "";
    if (fw_http_admin_port(d) >= 0)
        snprintf(admin, sizeof admin, "; /health and /metrics also on http://%s:%d", a->host, fw_http_admin_port(d));
    fprintf(stderr, "furrow serve: '%s' on http://%s:%d%s; %d rank(s): tp %d, pp %d; %lld KV blocks of %lld; pid %d\n",
            s->model_name, a->host, bound, admin, w->size, en->layout.tp, en->layout.pp, (long long)run->pool.n_blocks,
            (long long)run->pool.block_size, (int)getpid());
    return d;
}

/* Rank 0: joins the routers of --register and --registry under this replica's URL. */
static int join_routers(fw_serve *s, const serve_args *a, int port, fw_err *e) {
    if (!a->router && !a->registry) return FW_OK;
    char self[256], host[200];
    if (a->advertise) {
        fw_route_url(a->advertise, self, sizeof self, e);
    } else {
        if (strcmp(a->host, "0.0.0.0")) snprintf(host, sizeof host, "%s", a->host);
        else if (gethostname(host, sizeof host)) snprintf(host, sizeof host, "localhost");
        host[sizeof host - 1] = 0;
        snprintf(self, sizeof self, "http://%s:%d", host, port);
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    s->reg = fw_register_start(a->router, a->registry, self, getenv("SLURM_JOB_ID"), e);
    return s->reg ? FW_OK : FW_ERR;
}

/* Every request has ended: let their last bytes go out (bounded) before the
 * connections close. */
static void drain(fw_serve *s) {
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&s->mu);
        int left = s->answering;
        pthread_mutex_unlock(&s->mu);
        if (!left) break;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
}

int fw_cmd_serve(int argc, char **argv) {
    serve_args a;
    int st = parse_args(argc, argv, &a);
    if (st >= 0) return st;
    /* Every rank: a signal only sets the flag; rank 0 decides, the others follow its plans. */
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    fw_err e = {{0}};
    fw_world w;
    if (fw_world_init(&w, NULL, NULL, &e)) {
        fprintf(stderr, "furrow serve: %s\n", e.msg);
        return 1;
    }
    fw_engine en;
    fw_runner run;
    fw_serve s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.wake, NULL);
    fw_http *d = NULL;
    fw_tokenizer *tok = NULL;
    a.so.on_token = on_token, a.so.on_finish = on_finish, a.so.arg = &s;
    int rc = fw_runner_open(&run, &en, &w, &a.eo, &a.so, "serve runs", &e);
    fw_energy energy;
    if (w.rank == 0) { /* /metrics' joules: this node's counters, sampled often enough not to miss a RAPL wrap */
        fw_energy_open(&energy, true);
        if (energy.rapl_why[0] || energy.nvml_why[0])
            fprintf(stderr, "furrow serve: energy: %s%s%s\n", energy.rapl_why, energy.rapl_why[0] && energy.nvml_why[0] ? "; " : "",
                    energy.nvml_why);
        fw_energy_start(&energy, 10);
        s.energy = &energy;
    }
    if (rc == FW_OK && w.rank == 0 && !(d = start_http(&s, &a, &w, &en, &run, &tok, &e))) rc = FW_ERR;
    if (rc == FW_OK && w.rank == 0) rc = join_routers(&s, &a, fw_http_port(d), &e);
    if (!fw_world_all_ok(&w, rc == FW_OK)) {
        fw_world_report(&w, "serve", rc ? e.msg : "another rank failed to start");
        rc = FW_ERR;
        goto out;
    }
    if (run.leader) {
        rc = engine_loop(&s, &run, a.grace, &e);
        if (rc) fw_world_abort(&w, "serve", e.msg);
        fw_runner_stop(&run);
        drain(&s);
        fw_http_stop(d); /* joins the connection threads */
        d = NULL;
        fprintf(stderr, "furrow serve: stopped; %llu tokens generated\n", (unsigned long long)s.generated_tokens);
    } else if (fw_runner_follow(&run, &e)) {
        fw_world_abort(&w, "serve", e.msg);
    } else {
        fprintf(stderr, "furrow serve: rank %d stopped\n", w.rank);
    }
out:
    fw_register_free(s.reg); /* leaves, if a failure ended the loop */
    fw_http_stop(d);
    fw_runner_free(&run);
    fw_json_cache_free(s.ctx.json); /* the server is done with its tables */
    fw_engine_free(&en);
    fw_tokenizer_free(tok);
    if (s.energy) fw_energy_close(s.energy);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.wake);
    fw_world_finalize(&w);
    return rc ? 1 : 0;
}
