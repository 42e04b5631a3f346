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
    int answering;             /* accepted requests whose response is not yet fully sent */
    /* Metrics. */
    uint64_t status_count[600];
    uint64_t prompt_tokens, generated_tokens;
    int running;
    int64_t kv_used, kv_total;
    fw_hist step_s, ttft_s;
} fw_serve;

/* The HTTP daemon. */
struct MHD_Daemon;
struct MHD_Daemon *fw_http_start(fw_serve *s, const char *host, int port, int timeout_s, int max_conns, int *bound,
                                 fw_err *e);
void fw_http_stop(struct MHD_Daemon *d);

/* Drops one holder of a job (under s->mu); frees it with the last. */
void fw_http_job_release(fw_serve *s, fw_http_job *h);
/* The Prometheus text of /metrics (malloc'd; under s->mu). */
char *fw_serve_metrics(const fw_serve *s);

#endif
