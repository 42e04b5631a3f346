/* furrow serve: the state shared by the HTTP threads (runtime/serve/serve_http.c)
 * and the engine loop on rank 0 (runtime/cli/cmd_serve.c). One mutex guards it:
 * HTTP threads put parsed requests in the inbox and wait on their own condition
 * variable; the engine loop submits them to the scheduler, runs steps, and the
 * scheduler's callbacks append text and wake the waiting threads. */
#ifndef FW_RUNTIME_SERVE_SERVE_H
#define FW_RUNTIME_SERVE_SERVE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "runtime/dist/energy.h"
#include "runtime/engine/job.h"

/* One HTTP request in flight: its job, and who still holds it (the HTTP thread
 * and, once submitted, the engine loop); freed by the last to let go. */
typedef struct fw_http_job {
    fw_job job;
    pthread_cond_t cv;
    int refs;
    bool done;                 /* finished: job.req.finish is set */
    bool gone;                 /* the client went away: the engine loop cancels it */
    int error_status;          /* the scheduler refused it at submit (0: no) */
    char error_msg[512];
    int64_t n_sent_tokens;     /* streamed so far */
    double t_arrive, t_first;  /* for time to first token */
    int64_t serial;
    struct fw_http_job *next;  /* inbox link */
    struct fw_http_job *cancel_next;
} fw_http_job;

/* Prometheus histogram with fixed buckets (seconds). */
#define FW_HIST_BUCKETS 12
typedef struct fw_hist {
    uint64_t count[FW_HIST_BUCKETS + 1];   /* the last one is +Inf */
    double sum;
    uint64_t n;
} fw_hist;
void fw_hist_add(fw_hist *h, double v);

typedef struct fw_serve {
    pthread_mutex_t mu;
    pthread_cond_t wake;       /* the engine loop waits here when idle */
    fw_http_job *inbox, *inbox_tail;
    int inbox_len;
    int max_queue;             /* inbox + the scheduler's waiting queue */
    int queued;                /* the scheduler's waiting queue, mirrored after each step */
    bool stopping;
    fw_job_ctx ctx;
    const char *model_name;
    int64_t max_context;
    size_t max_body;
    int64_t serial;
    fw_http_job *cancels;      /* gone clients, each holding a reference */
    fw_energy *energy;         /* this node's energy counters (rank 0's node), or NULL */
    struct fw_register *reg;   /* routers to leave on SIGTERM (runtime/serve/serve_register.h), or NULL */
    int answering;             /* accepted requests whose response is not yet fully sent */
    /* Metrics. */
    int http_open;             /* open connections, both listeners */
    uint64_t header_timeouts;  /* connections cut by --header-timeout */
    uint64_t status_count[600];
    uint64_t prompt_tokens, generated_tokens;
    int running;
    int64_t kv_used, kv_total;
    int64_t prefix_blocks;     /* the prefix cache (runtime/engine/block_map.h), mirrored after each step */
    uint64_t prefix_queried, prefix_hits, prefix_evictions;
    uint64_t json_requests, json_mask_hits, json_mask_misses; /* JSON output, counted as requests end */
    double json_mask_s;
    int spec_k;                /* --speculative mtp:K; 0: none */
    uint64_t spec_proposed[2], spec_accepted[2];  /* draft tokens by position in the step, mirrored after each */
    fw_hist step_s, ttft_s;
} fw_serve;

/* The HTTP listeners: the main one serves every route; the admin one (when
 * admin_port >= 0) only /health and /metrics, with its own few connections, so
 * probes and scrapes are answered while clients hold every main slot. */
typedef struct fw_http_opts {
    const char *host;          /* IPv4 address of both listeners */
    int port, admin_port;      /* 0: any free port; admin_port -1: no admin listener */
    int idle_timeout_s;        /* a silent connection closes */
    double header_timeout_s;   /* a request's headers must arrive within this */
    int max_conns, max_conns_per_ip;
} fw_http_opts;
typedef struct fw_http fw_http;
fw_http *fw_http_start(fw_serve *s, const fw_http_opts *o, fw_err *e);
/* The ports bound (the admin one -1 when there is none). */
int fw_http_port(const fw_http *h);
int fw_http_admin_port(const fw_http *h);
/* Stops both listeners, joining their connection threads. */
void fw_http_stop(fw_http *h);

/* Drops one holder of a job (under s->mu); frees it with the last. */
void fw_http_job_release(fw_serve *s, fw_http_job *h);
/* The Prometheus text of /metrics (malloc'd; under s->mu). */
char *fw_serve_metrics(const fw_serve *s);

#endif
