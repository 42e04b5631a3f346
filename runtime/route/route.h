/* furrow route: an OpenAI-compatible front over several `furrow serve`
 * replicas. The replica table (runtime/route/route_pool.c) is shared by the
 * HTTP threads (runtime/route/route_http.c), the upstream transfers
 * (runtime/route/route_proxy.c) and the prober (runtime/route/route_probe.c);
 * one mutex guards it. */
#ifndef FW_RUNTIME_ROUTE_ROUTE_H
#define FW_RUNTIME_ROUTE_ROUTE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "io/base/err.h"

/* Where a replica came from: how it may leave. */
typedef enum fw_rep_source { FW_REP_FLAG, FW_REP_POST, FW_REP_REGISTRY } fw_rep_source;

typedef struct fw_replica {
    char url[256];             /* http://host:port, no trailing slash */
    char job[64];              /* its Slurm job id when it said (the autoscaler cancels by it), or "" */
    fw_rep_source source;
    bool healthy;              /* passes its health checks */
    bool draining;             /* leaving: no new requests; forgotten once idle */
    bool held;                 /* drained by an operator: stays listed, registering again does not resume it */
    bool seen;                 /* the registry scan found its file this round */
    int fails;                 /* health checks failed in a row */
    double down_since;         /* out of service since (fw_now), 0 while healthy */
    char file[300];            /* its registry file's name, for a registry replica */
    int in_flight;             /* this router's requests on it now */
    /* From its /metrics, refreshed by the prober. */
    double queue, running, kv_used, kv_total;
    /* Its time-to-first-token histogram's sum and count at the last read, and
     * what came since the autoscaler last took it (ttft_new_*); ttft_last: the
     * mean of the last read's new requests. */
    bool ttft_seen;
    double ttft_sum_raw, ttft_count_raw, ttft_new_sum, ttft_new_n, ttft_last;
    /* Counters. */
    uint64_t requests, errors, retries_from, health_changes;
    uint64_t connects;         /* TCP connections opened to it for requests (the rest reused one) */
    struct fw_replica *next;
} fw_replica;

typedef struct fw_route_opts {
    int retries;               /* further replicas a request may try */
    double poll_s;             /* health and /metrics probe interval */
    int unhealthy_after;       /* failed checks in a row before a replica is taken out */
    double forget_s;           /* out of service this long: dropped from the table (0: never) */
    double connect_timeout_s, upstream_timeout_s;
    const char *registry;      /* folder of replica files, or NULL */
    size_t max_body;
    int max_conns;             /* client connections; more are answered 503 */
    /* The autoscaler (runtime/route/route_scale.c); off without up_cmd. */
    const char *up_cmd, *down_cmd;
    int min_replicas, max_replicas;
    double up_queue;           /* mean queue depth per replica in service that calls for one more */
    double up_ttft_s;          /* mean time to first token that calls for one more (0: not a reason) */
    double window_s;           /* how long busy (or idle) must last before a decision */
    double cooldown_s;         /* between decisions */
    double start_timeout_s;    /* a replica started but not joined after this no longer counts */
} fw_route_opts;

/* Idle upstream connections kept at most. */
#define FW_ROUTE_IDLE_MAX 64

/* A replica the autoscaler started that has not joined yet. */
typedef struct fw_starting {
    char job[64];
    double t;
} fw_starting;
#define FW_MAX_STARTING 64

typedef struct fw_route {
    pthread_mutex_t mu;
    fw_route_opts o;
    fw_replica *reps;          /* the table */
    unsigned rr;               /* rotates ties so equal replicas share the load */
    bool stopping;
    uint64_t status_count[600];
    uint64_t retries, no_replica;
    /* Idle libcurl handles, each with its open connection to a replica (route_conns.c), oldest first. */
    pthread_mutex_t conns_mu;
    struct fw_idle_curl {
        void *curl;
        char base[256];        /* the replica its connection goes to */
    } idle[FW_ROUTE_IDLE_MAX];
    int n_idle;
    int http_open;             /* client connections open */
    uint64_t http_cut;         /* cut by the header or body timeout */
    pthread_t prober;
    pthread_cond_t wake;       /* the prober sleeps here */
    bool prober_started;
    int workers;               /* upstream transfer threads alive (waited for at exit) */
    /* The autoscaler's state and counters. */
    fw_starting starting[FW_MAX_STARTING];
    int n_starting;
    double busy_since, idle_since, last_action;
    double slow_since;         /* the mean time to first token above the bound since */
    double mean_queue, mean_ttft;
    uint64_t scale_ups, scale_downs, scale_failures;
} fw_route;

/* Table operations; each takes s->mu itself. */
/* Adds (or, when known, revives) a replica; its URL is checked; job: its Slurm
 * job id or NULL. 1 added, 0 known, -1 bad URL or job id. */
int fw_route_add(fw_route *s, const char *url, const char *job, fw_rep_source src, fw_err *e);
/* Drops the replicas out of service for --forget-after seconds (a registry
 * replica's file too, if it still names it: a live replica writes it again). */
void fw_route_forget_dead(fw_route *s);
/* The replica leaves: no new requests, forgotten when the last running one ends. 0, or -1 unknown. */
int fw_route_leave(fw_route *s, const char *url);
/* An operator drains a replica (it stays listed, draining, until resumed) or resumes it. 0, or -1 unknown. */
int fw_route_hold(fw_route *s, const char *url, bool hold);
/* Picks the least-loaded healthy, non-draining replica whose URL is not in
 * `avoid` (n of them) and counts a request in flight on it; copies its URL.
 * NULL if none. The replica stays in the table until fw_route_done. */
fw_replica *fw_route_pick(fw_route *s, const char (*avoid)[256], int n_avoid, char *url, size_t n);
/* A request on r ended: ok, or not; replica_failed: the replica failed it
 * (taken out of service until a check passes); moved: it goes to another. */
void fw_route_done(fw_route *s, fw_replica *r, bool ok, bool replica_failed, bool moved);
/* The JSON list of replicas (malloc'd) for GET /replicas; the Prometheus text for /metrics. */
char *fw_route_list_json(fw_route *s);
char *fw_route_metrics(fw_route *s);
/* Parses a replica's /metrics text into r's load fields (under s->mu). */
void fw_route_parse_metrics(fw_replica *r, const char *text);
/* Normalizes a replica URL into out ("http://host:port"); -1 with e set if it is not one. */
int fw_route_url(const char *in, char *out, size_t n, fw_err *e);

/* One autoscaler decision (each probe round): start a replica (--scale-up)
 * when the mean queue depth or the mean time to first token stays above its
 * bound, or fewer than the minimum are in service or starting; drain and stop
 * an idle one (--scale-down). */
void fw_route_autoscale(fw_route *s);

/* The prober thread: health checks, /metrics, the registry folder. */
int fw_route_probe_start(fw_route *s, fw_err *e);
void fw_route_probe_stop(fw_route *s);
/* One scan of the registry folder (also done by the prober each round). */
void fw_route_scan_registry(fw_route *s);

/* The connections to the replicas, kept open between requests so a request
 * does not pay a TCP connect (runtime/route/route_conns.c). take: a CURL
 * handle (options reset) whose open connection, if any, goes to base, or a new
 * one; NULL out of memory. give: back to the pool after a transfer to base
 * (keep false: its connection is not worth keeping, the handle is freed). */
void fw_route_conns_init(fw_route *s);
void fw_route_conns_free(fw_route *s);
void *fw_route_curl_take(fw_route *s, const char *base);
void fw_route_curl_give(fw_route *s, void *curl, const char *base, bool keep);

/* The upstream side of one client request (runtime/route/route_proxy.c). */
typedef struct fw_proxy fw_proxy;
/* Starts forwarding `body` (taken) to `path` on the least-loaded replica, with
 * retries on others while nothing has come back yet. */
fw_proxy *fw_proxy_start(fw_route *s, const char *method, const char *path, char *body, size_t len);
/* Asked every 100 ms while the client waits: true when it has left. */
typedef bool (*fw_proxy_gone_fn)(void *arg);
/* Waits until the answer is committed: its status and content type are known
 * and its first bytes came (all of it for a non-streaming answer). False if
 * the client left first. */
bool fw_proxy_wait_head(fw_proxy *p, int *status, const char **content_type, fw_proxy_gone_fn gone, void *arg);
/* Copies up to max bytes of the answer into buf, waiting for them; 0 at the
 * end, -1 when the upstream failed mid-answer or the client left. */
long fw_proxy_read(fw_proxy *p, char *buf, size_t max, fw_proxy_gone_fn gone, void *arg);
/* The client is gone or done: drops the caller's hold (the transfer stops). */
void fw_proxy_release(fw_proxy *p);

/* The HTTP front. */
typedef struct fw_route_http fw_route_http;
typedef struct fw_route_http_opts {
    const char *host;          /* IPv4 address */
    int port;                  /* 0: any free one */
    int idle_timeout_s;        /* a silent connection closes */
    double header_timeout_s;   /* a request's headers must arrive within this */
    double body_timeout_s;     /* its body within this of its headers */
} fw_route_http_opts;
fw_route_http *fw_route_http_start(fw_route *s, const fw_route_http_opts *o, fw_err *e);
int fw_route_http_port(const fw_route_http *h);
void fw_route_http_stop(fw_route_http *h);

#endif
