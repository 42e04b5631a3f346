/* furrow route: an OpenAI-compatible HTTP front spreading requests over
 * several `furrow serve` replicas (runtime/route). SIGTERM or SIGINT stops it. */
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
#include "runtime/route/route.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: furrow route [--replica URL]... [--registry DIR] [options]\n\n"
            "Spreads POST /v1/completions and /v1/chat/completions over `furrow serve` replicas, each\n"
            "request to the least-loaded one in service (its /metrics: queue, running requests, KV use;\n"
            "plus this router's requests on it). Streams pass through as they come. A request that\n"
            "failed on a replica before any of its answer came back is sent to another.\n"
            "Replicas join with --replica, a POST to /replicas ({\"url\": ...}; `furrow serve --register`\n"
            "does it), or a file in the --registry folder (`furrow serve --registry`); they leave\n"
            "(drain: no new requests, the running ones finish) with DELETE /replicas?url=... or when\n"
            "their file goes away. POST /replicas/drain?url=... holds one out (it stays listed) until\n"
            "POST /replicas/resume?url=.... Also GET /v1/models (a replica's), /health, /metrics, and\n"
            "GET /replicas (each replica's state as JSON).\n\n"
            "options:\n"
            "  --replica URL                       a replica (http://HOST:PORT); repeatable\n"
            "  --registry DIR                      folder of replica files (one a replica, its URL on\n"
            "                                      the first line), read every --poll-interval\n"
            "  --host ADDR                         IPv4 address to listen on (default 127.0.0.1)\n"
            "  --port N                            TCP port (default 8080; 0: any free one)\n"
            "  --port-file FILE                    write the port there once listening\n"
            "  --retries N                         other replicas a failed request may try (default 2)\n"
            "  --poll-interval S                   health checks and /metrics reads (default 1)\n"
            "  --unhealthy-after N                 failed checks in a row that take a replica out of\n"
            "                                      service (default 2; a failed connection does at once)\n"
            "  --forget-after S                    a replica out of service this long is dropped from the\n"
            "                                      table, and its registry file removed (a requeued replica\n"
            "                                      comes back on a new port; default 300; 0: never)\n"
            "  --connect-timeout S                 connecting to a replica (default 2)\n"
            "  --upstream-timeout S                a whole request on a replica (default 0: none)\n"
            "  --max-connections N                 open client connections at most (default 512); a few\n"
            "                                      more are accepted only to be answered 503\n"
            "  --http-timeout S                    idle client connections close (default 60)\n"
            "  --header-timeout S                  a request's headers must arrive within S seconds\n"
            "                                      (default 10); else 408 and the connection closes\n"
            "  --body-timeout S                    its body within S seconds of its headers (default 30)\n"
            "  --max-body BYTES                    request body limit; more get 413, a declared length at\n"
            "                                      once (default 1048576)\n"
            "\nautoscaling (off without --scale-up):\n"
            "  --scale-up CMD                      shell command that starts one replica (e.g. sbatch\n"
            "                                      --parsable jobs/slurm/replica.sbatch ... --register URL);\n"
            "                                      the first word it prints is taken as the job id\n"
            "  --scale-down CMD                    shell command that stops the replica of job $FURROW_JOB\n"
            "                                      (URL $FURROW_REPLICA), e.g. 'scancel $FURROW_JOB'; the\n"
            "                                      replica is drained first. Replicas say their job id when\n"
            "                                      they register (furrow serve reads SLURM_JOB_ID)\n"
            "  --min-replicas N                    in service or starting, at least (default 1)\n"
            "  --max-replicas N                    in service or starting, at most (default 4)\n"
            "  --scale-up-queue Q                  one more replica when the mean queue depth of those in\n"
            "                                      service stays above Q (default 4)\n"
            "  --scale-latency-ms MS               one more replica when the mean time to first token on\n"
            "                                      those in service (their /metrics) stays above MS\n"
            "                                      (default 0: latency is no reason)\n"
            "  --scale-window S                    how long busy, or all idle, must last (default 30)\n"
            "  --cooldown S                        between two decisions (default 60)\n"
            "  --start-timeout S                   a replica started but not joined after S seconds no\n"
            "                                      longer counts as starting (default 600)\n"
            "  -h, --help                          this help\n");
}

static volatile sig_atomic_t term_signal;
static void on_term(int sig) { term_signal = sig; }

typedef struct route_args {
    fw_route_opts o;
    const char *host, *port_file;
    int64_t port, max_conns, timeout;
    double header_timeout, body_timeout;
    const char **replicas;
    int n_replicas;
} route_args;

static int positive_seconds(const char *text, const char *flag, double lo, double *out, fw_err *e) {
    if (fw_cli_parse_double(text, flag, out, e)) return FW_ERR;
    if (!(*out >= lo && *out <= 86400)) return fw_errf(e, "%s must be between %g and 86400 seconds", flag, lo);
    return FW_OK;
}

static int parse_args(int argc, char **argv, route_args *a) {
    static const struct option opts[] = {
        {"replica", required_argument, 0, 'r'},        {"registry", required_argument, 0, 'R'},
        {"host", required_argument, 0, 'H'},           {"port", required_argument, 0, 'p'},
        {"port-file", required_argument, 0, 'f'},      {"retries", required_argument, 0, 'n'},
        {"poll-interval", required_argument, 0, 'i'},  {"unhealthy-after", required_argument, 0, 'u'},
        {"connect-timeout", required_argument, 0, 'c'}, {"upstream-timeout", required_argument, 0, 'U'},
        {"max-connections", required_argument, 0, 'C'}, {"http-timeout", required_argument, 0, 't'},
        {"max-body", required_argument, 0, 'b'},       {"help", no_argument, 0, 'h'},
        {"scale-up", required_argument, 0, 1},         {"scale-down", required_argument, 0, 2},
        {"min-replicas", required_argument, 0, 3},     {"max-replicas", required_argument, 0, 4},
        {"scale-up-queue", required_argument, 0, 5},   {"scale-window", required_argument, 0, 6},
        {"cooldown", required_argument, 0, 7},         {"start-timeout", required_argument, 0, 8},
        {"forget-after", required_argument, 0, 9},     {"header-timeout", required_argument, 0, 10},
        {"body-timeout", required_argument, 0, 11},    {"scale-latency-ms", required_argument, 0, 12},
        {0, 0, 0, 0}};
    a->host = "127.0.0.1";
    a->port = 8080, a->max_conns = 512, a->timeout = 60, a->header_timeout = 10, a->body_timeout = 30;
    a->o = (fw_route_opts){.retries = 2, .poll_s = 1, .unhealthy_after = 2, .connect_timeout_s = 2,
                           .max_body = 1 << 20, .forget_s = 300, .min_replicas = 1, .max_replicas = 4, .up_queue = 4,
                           .window_s = 30, .cooldown_s = 60, .start_timeout_s = 600};
    bool scale_flags = false;
    fw_err e = {{0}};
    int64_t v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'r': {
            char u[256];
            bad = fw_route_url(optarg, u, sizeof u, &e) != 0;
            if (bad) fw_err_prefix(&e, "--replica");
            const char **r = realloc(a->replicas, (size_t)(a->n_replicas + 1) * sizeof *r);
            if (!r) return 1;
            a->replicas = r, r[a->n_replicas++] = optarg;
            break;
        }
        case 'R': a->o.registry = optarg; break;
        case 'H': a->host = optarg; break;
        case 'p': bad = fw_cli_parse_int(optarg, "--port", 0, 65535, &a->port, &e) != 0; break;
        case 'f': a->port_file = optarg; break;
        case 'n':
            bad = fw_cli_parse_int(optarg, "--retries", 0, 16, &v, &e) != 0;
            a->o.retries = (int)v;
            break;
        case 'i': bad = positive_seconds(optarg, "--poll-interval", 0.05, &a->o.poll_s, &e) != 0; break;
        case 'u':
            bad = fw_cli_parse_int(optarg, "--unhealthy-after", 1, 1000, &v, &e) != 0;
            a->o.unhealthy_after = (int)v;
            break;
        case 'c': bad = positive_seconds(optarg, "--connect-timeout", 0.01, &a->o.connect_timeout_s, &e) != 0; break;
        case 'U': bad = positive_seconds(optarg, "--upstream-timeout", 0, &a->o.upstream_timeout_s, &e) != 0; break;
        case 'C': bad = fw_cli_parse_int(optarg, "--max-connections", 1, 65536, &a->max_conns, &e) != 0; break;
        case 't': bad = fw_cli_parse_int(optarg, "--http-timeout", 1, 3600, &a->timeout, &e) != 0; break;
        case 'b':
            bad = fw_cli_parse_int(optarg, "--max-body", 64, 1 << 30, &v, &e) != 0;
            a->o.max_body = (size_t)v;
            break;
        case 1: a->o.up_cmd = optarg; break;
        case 2: a->o.down_cmd = optarg; break;
        case 3:
            bad = fw_cli_parse_int(optarg, "--min-replicas", 0, 1000, &v, &e) != 0;
            a->o.min_replicas = (int)v, scale_flags = true;
            break;
        case 4:
            bad = fw_cli_parse_int(optarg, "--max-replicas", 1, 1000, &v, &e) != 0;
            a->o.max_replicas = (int)v, scale_flags = true;
            break;
        case 5:
            bad = fw_cli_parse_double(optarg, "--scale-up-queue", &a->o.up_queue, &e) != 0 ||
                  (!(a->o.up_queue >= 0) && fw_errf(&e, "--scale-up-queue must be >= 0"));
            scale_flags = true;
            break;
        case 6: bad = positive_seconds(optarg, "--scale-window", 0, &a->o.window_s, &e) != 0, scale_flags = true; break;
        case 7: bad = positive_seconds(optarg, "--cooldown", 0, &a->o.cooldown_s, &e) != 0, scale_flags = true; break;
        case 8:
            bad = positive_seconds(optarg, "--start-timeout", 1, &a->o.start_timeout_s, &e) != 0, scale_flags = true;
            break;
        case 9: bad = positive_seconds(optarg, "--forget-after", 0, &a->o.forget_s, &e) != 0; break;
        case 10: bad = positive_seconds(optarg, "--header-timeout", 0.1, &a->header_timeout, &e) != 0; break;
        case 11: bad = positive_seconds(optarg, "--body-timeout", 0.1, &a->body_timeout, &e) != 0; break;
        case 12: {
            double ms;
            bad = fw_cli_parse_double(optarg, "--scale-latency-ms", &ms, &e) != 0 ||
                  (!(ms >= 0 && ms <= 3600e3) && fw_errf(&e, "--scale-latency-ms must be between 0 and 3600000"));
            a->o.up_ttft_s = ms / 1e3, scale_flags = true;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "furrow route: %s\n", e.msg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "furrow route: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    const char *wrong = NULL;
    if (!a->o.up_cmd != !a->o.down_cmd) wrong = "--scale-up and --scale-down go together";
    else if (scale_flags && !a->o.up_cmd) wrong = "the autoscaling flags need --scale-up and --scale-down";
    else if (a->o.min_replicas > a->o.max_replicas) wrong = "--min-replicas is above --max-replicas";
    else if (a->header_timeout >= (double)a->timeout)
        wrong = "--header-timeout must be below --http-timeout (the idle timeout would end slow headers first, unanswered)";
    if (wrong) {
        fprintf(stderr, "furrow route: %s\n", wrong);
        return 2;
    }
    if (!a->n_replicas && !a->o.registry && !a->o.up_cmd)
        fprintf(stderr, "furrow route: no --replica and no --registry: waiting for replicas to POST /replicas\n");
    return -1;
}

static int write_port(const char *file, int port, fw_err *e) {
    errno = 0;
    FILE *f = fopen(file, "w");
    bool ok = f && fprintf(f, "%d\n", port) > 0;
    if (f && fclose(f)) ok = false;
    return ok ? FW_OK : fw_errf(e, "--port-file %s: %s", file, strerror(errno ? errno : EIO));
}

int fw_cmd_route(int argc, char **argv) {
    route_args a = {0};
    int st = parse_args(argc, argv, &a);
    if (st >= 0) {
        free(a.replicas);
        return st;
    }
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    fw_route s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.wake, NULL);
    fw_route_conns_init(&s);
    s.o = a.o;
    fw_err e = {{0}};
    int rc = FW_OK;
    for (int i = 0; i < a.n_replicas && !rc; i++) rc = fw_route_add(&s, a.replicas[i], NULL, FW_REP_FLAG, &e) < 0;
    fw_route_http *h = NULL;
    s.o.max_conns = (int)a.max_conns;
    fw_route_http_opts ho = {.host = a.host, .port = (int)a.port, .idle_timeout_s = (int)a.timeout,
                             .header_timeout_s = a.header_timeout, .body_timeout_s = a.body_timeout};
    if (!rc && !(h = fw_route_http_start(&s, &ho, &e))) rc = FW_ERR;
    if (!rc && a.port_file) rc = write_port(a.port_file, fw_route_http_port(h), &e);
    if (!rc)
        fprintf(stderr, "furrow route: on http://%s:%d; %d replica(s) given%s%s%s; pid %d\n", a.host,
                fw_route_http_port(h), a.n_replicas, a.o.registry ? ", registry " : "",
                a.o.registry ? a.o.registry : "", a.o.up_cmd ? "; autoscaling" : "", (int)getpid());
    if (!rc) rc = fw_route_probe_start(&s, &e);
    if (rc) {
        fprintf(stderr, "furrow route: %s\n", e.msg);
    } else {
        while (!term_signal) nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
        fprintf(stderr, "furrow route: signal %d: stopping\n", (int)term_signal);
    }
    fw_route_http_stop(h); /* joins the connection threads, whose transfers end with them */
    fw_route_probe_stop(&s);
    pthread_mutex_lock(&s.mu); /* transfers whose clients left end at curl's next progress call */
    while (s.workers) pthread_cond_wait(&s.wake, &s.mu);
    pthread_mutex_unlock(&s.mu);
    fw_route_conns_free(&s); /* no transfer is left */
    for (fw_replica *r; (r = s.reps);) s.reps = r->next, free(r);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.wake);
    curl_global_cleanup();
    free(a.replicas);
    return rc ? 1 : 0;
}
