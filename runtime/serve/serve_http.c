/* The HTTP side of furrow serve (libmicrohttpd, one thread per connection):
 * routes, body limits, validation, OpenAI's response and error JSON, and
 * server-sent events. A thread waiting for its request's tokens wakes every
 * 100 ms to check whether its client hung up; a client gone frees its slot.
 * Two listeners share the handler: the main one and the admin one (/health
 * and /metrics only); runtime/http/guard.c bounds their header time. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* POLLRDHUP */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "runtime/serve/serve.h"
#include "runtime/http/guard.h"

/* The admin listener's connections: a few probes and scrapers at a time, and
 * no single address may take all of them. */
#define ADMIN_CONNS 16
#define ADMIN_CONNS_PER_IP 8

#if MHD_VERSION < 0x00097002
typedef int MHD_RESULT;
#else
typedef enum MHD_Result MHD_RESULT;
#endif

/* What a daemon's handler is given. */
typedef struct listener {
    fw_serve *s;
    bool admin;                /* /health and /metrics only */
} listener;

struct fw_http {
    fw_guard *guard;
    listener main_l, admin_l;
    struct MHD_Daemon *main_d, *admin_d;
    int port, admin_port;
};

typedef struct conn {
    fw_serve *s;
    struct MHD_Connection *mc;
    char *body;
    size_t len;
    bool early;                /* answered before its body: the connection closes after */
    int holders;               /* the request, and a streaming response */
    fw_http_job *h;
    char *out;                 /* SSE bytes not yet handed to MHD */
    size_t out_len, out_off;
    bool sent_role, finished;
} conn;

static void conn_drop(conn *c) {
    if (--c->holders > 0) return;
    fw_serve *s = c->s;
    if (c->h) {
        pthread_mutex_lock(&s->mu);
        if (!c->h->done) { /* the engine loop cancels it; the cancel list holds a reference */
            c->h->gone = true;
            c->h->refs++;
            c->h->cancel_next = s->cancels;
            s->cancels = c->h;
            pthread_cond_signal(&s->wake);
        }
        fw_http_job_release(s, c->h);
        s->answering--;
        pthread_mutex_unlock(&s->mu);
    }
    free(c->body);
    free(c->out);
    free(c);
}

static void count_status(fw_serve *s, int status) {
    pthread_mutex_lock(&s->mu);
    if (status > 0 && status < 600) s->status_count[status]++;
    pthread_mutex_unlock(&s->mu);
}

static MHD_RESULT send_text(conn *c, int status, const char *type, char *text) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", type);
    if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
    count_status(c->s, status);
    MHD_RESULT rc = MHD_queue_response(c->mc, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

static MHD_RESULT send_json(conn *c, int status, json_t *o) {
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) return MHD_NO;
    return send_text(c, status, "application/json", text);
}

static MHD_RESULT send_error(conn *c, int status, const char *msg) { return send_json(c, status, fw_error_json(status, msg)); }

/* True when the client closed its end. */
static bool hung_up(conn *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c->mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Waits (under s->mu) until the job has something new or is done; false if the client left. */
static bool wait_news(conn *c, bool streaming) {
    fw_http_job *h = c->h;
    for (;;) {
        if (h->done || h->error_status) return true;
        if (streaming && (fw_job_stream_news(&h->job, fw_job_ready(&h->job, false), false) ||
                          h->job.req.n_tokens - h->job.req.n_prompt > h->n_sent_tokens))
            return true;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&h->cv, &c->s->mu, &ts);
        if (!h->done && hung_up(c)) return false;
    }
}

static const char *object_name(const fw_job *j, bool chunk) {
    if (j->kind == FW_JOB_CHAT) return chunk ? "chat.completion.chunk" : "chat.completion";
    return "text_completion";
}

/* What one message or delta holds: content, and in a structured chat reply
 * reasoning_content and tool_calls. */
typedef struct parts {
    const char *content, *reasoning;
    size_t content_len, reasoning_len;
    json_t *calls;             /* taken */
    bool called;               /* finish_reason "tool_calls" */
} parts;

/* The choice of a response or of one SSE chunk (under s->mu). */
static json_t *choice(conn *c, parts *p, int64_t tok0, int64_t tok1, bool final, bool chunk) {
    const fw_job *j = &c->h->job;
    const char *text = p->content ? p->content : ""; /* no text yet: the first tokens may be held bytes */
    size_t len = p->content ? p->content_len : 0;
    json_t *ids = json_array();
    for (int64_t i = tok0; i < tok1; i++) json_array_append_new(ids, json_integer(j->req.tokens[j->req.n_prompt + i]));
    json_t *ch = json_pack("{s:i, s:o, s:o}", "index", 0, "token_ids", ids, "finish_reason",
                           !final ? json_null() : json_string(p->called ? "tool_calls" : fw_finish_name(j->req.finish)));
    if (j->kind == FW_JOB_CHAT) {
        json_t *m = json_object();
        if (!chunk || !c->sent_role) json_object_set_new(m, "role", json_string("assistant"));
        /* OpenAI: content null beside tool calls that came with no text */
        if (!chunk || len || !p->calls)
            json_object_set_new(m, "content", p->calls && !len && !chunk ? json_null() : json_stringn(text, len));
        if (j->thinking && (!chunk || p->reasoning_len))
            json_object_set_new(m, "reasoning_content", json_stringn(p->reasoning ? p->reasoning : "", p->reasoning_len));
        if (p->calls) json_object_set(m, "tool_calls", p->calls);
        json_object_set_new(ch, chunk ? "delta" : "message", m);
    } else {
        json_object_set_new(ch, "text", json_stringn(text, len));
    }
    json_decref(p->calls);
    p->calls = NULL;
    json_t *lp = j->logprobs ? json_array() : NULL;
    for (int64_t i = tok0; lp && i < tok1 && i < (int64_t)json_array_size(j->logprobs); i++)
        json_array_append(lp, json_array_get(j->logprobs, (size_t)i));
    json_object_set_new(ch, "logprobs", lp ? lp : json_null());
    return ch;
}

/* OpenAI's tool_calls entries of a parsed reply (non-streamed form). */
static json_t *calls_json(const fw_http_job *h, const fw_chat_reply *r) {
    json_t *a = json_array();
    for (int i = 0; a && i < r->n_calls; i++) {
        char id[64];
        snprintf(id, sizeof id, "call_%lld_%d", (long long)h->serial, i);
        json_array_append_new(a, json_pack("{s:i, s:s, s:s, s:{s:s, s:s}}", "index", i, "id", id, "type", "function",
                                           "function", "name", r->calls[i].name, "arguments", r->calls[i].arguments));
    }
    return a;
}

static json_t *envelope(conn *c, json_t *ch, bool usage) {
    const fw_job *j = &c->h->job;
    char id[64];
    snprintf(id, sizeof id, "%s-%lld", j->kind == FW_JOB_CHAT ? "chatcmpl" : "cmpl", (long long)c->h->serial);
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", id, "object", object_name(j, !usage || j->stream),
                          "created", (json_int_t)time(NULL), "model", c->s->model_name, "choices", ch);
    if (usage) {
        int64_t gen = j->req.n_tokens - j->req.n_prompt;
        json_object_set_new(o, "usage", json_pack("{s:I, s:I, s:I, s:{s:I}}", "prompt_tokens",
                                                  (json_int_t)j->req.n_prompt, "completion_tokens", (json_int_t)gen,
                                                  "total_tokens", (json_int_t)j->req.n_tokens, "prompt_tokens_details",
                                                  "cached_tokens", (json_int_t)j->req.cached_tokens));
    }
    return o;
}

static void out_append(conn *c, const char *s, size_t n) {
    char *b = realloc(c->out, c->out_len + n);
    if (!b) return;
    memcpy(b + c->out_len, s, n);
    c->out = b, c->out_len += n;
}

static void sse(conn *c, json_t *o) {
    char *t = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!t) return;
    out_append(c, "data: ", 6);
    out_append(c, t, strlen(t));
    out_append(c, "\n\n", 2);
    free(t);
}

/* Next bytes of the event stream: a chunk per batch of new tokens, the final
 * chunk with the finish reason and usage, then [DONE]. */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    conn *c = cls;
    (void)pos;
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        fw_serve *s = c->s;
        fw_http_job *h = c->h;
        pthread_mutex_lock(&s->mu);
        if (!wait_news(c, true)) {
            pthread_mutex_unlock(&s->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (h->error_status) {
            json_t *err = fw_error_json(h->error_status, h->error_msg);
            sse(c, err);
            c->finished = true;
        } else {
            fw_job *j = &h->job;
            size_t ready = fw_job_ready(j, h->done);
            int64_t n_gen = j->req.n_tokens - j->req.n_prompt;
            /* new tokens always make a chunk (their token_ids), a held tool call's too: a
             * stream that sent nothing for --http-timeout seconds would be cut */
            if (fw_job_stream_news(j, ready, h->done) || n_gen > h->n_sent_tokens || h->done) {
                size_t r0, r1, c0, c1;
                fw_job_stream_parts(j, ready, h->done, &r0, &r1, &c0, &c1);
                const char *t = j->text ? j->text : "";
                parts p = {.content = t + c0, .content_len = c1 - c0, .reasoning = t + r0, .reasoning_len = r1 - r0};
                if (h->done && j->part == FW_PART_TOOLS) { /* the calls, or the rest as text */
                    fw_chat_reply r;
                    fw_err e;
                    bool ok = fw_job_reply(j, &r, &e) == FW_OK;
                    if (ok && r.n_calls) {
                        if (p.content_len || p.reasoning_len) { /* what came before the calls first */
                            sse(c, envelope(c, choice(c, &p, h->n_sent_tokens, n_gen, false, true), false));
                            c->sent_role = true;
                            h->n_sent_tokens = n_gen;
                            p = (parts){0};
                        }
                        json_t *all = calls_json(h, &r);
                        for (size_t i = 0; i < json_array_size(all); i++) {
                            /* as OpenAI streams a call: index, id, type and name, then the arguments */
                            json_t *x = json_array_get(all, i), *fn = json_object_get(x, "function");
                            parts head = {.calls = json_pack("[{s:O, s:O, s:s, s:{s:O, s:s}}]", "index",
                                                             json_object_get(x, "index"), "id", json_object_get(x, "id"),
                                                             "type", "function", "function", "name",
                                                             json_object_get(fn, "name"), "arguments", "")};
                            sse(c, envelope(c, choice(c, &head, h->n_sent_tokens, h->n_sent_tokens, false, true), false));
                            c->sent_role = true;
                            parts args = {.calls = json_pack("[{s:O, s:{s:O}}]", "index", json_object_get(x, "index"),
                                                             "function", "arguments", json_object_get(fn, "arguments"))};
                            sse(c, envelope(c, choice(c, &args, h->n_sent_tokens, h->n_sent_tokens, false, true), false));
                        }
                        json_decref(all);
                        p.called = true;
                    } else {
                        p.content = t + j->sent, p.content_len = j->text_len - j->sent;
                    }
                    j->sent = j->text_len;
                    if (ok) fw_chat_reply_free(&r);
                }
                sse(c, envelope(c, choice(c, &p, h->n_sent_tokens, n_gen, h->done, true), h->done));
                c->sent_role = true;
                h->n_sent_tokens = n_gen;
            }
            if (h->done) c->finished = true;
        }
        pthread_mutex_unlock(&s->mu);
        if (c->finished) out_append(c, "data: [DONE]\n\n", 14);
    }
    size_t n = c->out_len - c->out_off < max ? c->out_len - c->out_off : max;
    memcpy(buf, c->out + c->out_off, n);
    c->out_off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) { conn_drop(cls); }

/* Queues a parsed job for the engine loop; a response on refusal. */
static MHD_RESULT submit(conn *c, fw_http_job *h) {
    fw_serve *s = c->s;
    pthread_mutex_lock(&s->mu);
    int refuse = s->stopping ? 1 : s->inbox_len + s->queued >= s->max_queue ? 2 : 0;
    if (!refuse) {
        h->refs = 2;
        h->serial = ++s->serial;
        if (s->inbox_tail) s->inbox_tail->next = h;
        else s->inbox = h;
        s->inbox_tail = h;
        s->inbox_len++;
        s->answering++;
        c->h = h;
        pthread_cond_signal(&s->wake);
    }
    pthread_mutex_unlock(&s->mu);
    if (refuse) {
        fw_job_free(&h->job);
        pthread_cond_destroy(&h->cv);
        free(h);
        return send_error(c, 503, refuse == 1 ? "the server is shutting down" : "the queue is full; retry later");
    }
    if (h->job.stream) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, c, stream_free);
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        c->holders++;
        count_status(s, 200);
        MHD_RESULT rc = MHD_queue_response(c->mc, 200, r);
        MHD_destroy_response(r);
        return rc;
    }
    pthread_mutex_lock(&s->mu);
    bool here = wait_news(c, false);
    json_t *o = NULL;
    int status = 200;
    if (here && h->error_status) status = h->error_status, o = fw_error_json(status, h->error_msg);
    else if (here) {
        parts p = {.content = h->job.text ? h->job.text : "", .content_len = h->job.text_len};
        fw_chat_reply r;
        fw_err e;
        bool split = fw_job_structured(&h->job) && fw_job_reply(&h->job, &r, &e) == FW_OK;
        if (split) {
            p = (parts){.content = r.content, .content_len = strlen(r.content), .reasoning = r.reasoning,
                        .reasoning_len = r.reasoning ? strlen(r.reasoning) : 0, .called = r.n_calls > 0,
                        .calls = r.n_calls ? calls_json(h, &r) : NULL};
            if (p.calls) /* the non-streamed form has no index */
                for (size_t i = 0; i < json_array_size(p.calls); i++) json_object_del(json_array_get(p.calls, i), "index");
        }
        o = envelope(c, choice(c, &p, 0, h->job.req.n_tokens - h->job.req.n_prompt, true, false), true);
        if (split) fw_chat_reply_free(&r);
    }
    pthread_mutex_unlock(&s->mu);
    return here ? send_json(c, status, o) : MHD_NO; /* MHD_NO closes a connection whose client left */
}

static MHD_RESULT generate(conn *c, fw_job_kind kind) {
    fw_http_job *h = calloc(1, sizeof *h);
    if (!h) return send_error(c, 500, "out of memory");
    int status;
    fw_err e;
    if (fw_job_parse_body(&h->job, c->body, c->len, kind, &c->s->ctx, &status, &e)) {
        fw_job_free(&h->job);
        free(h);
        return send_error(c, status, e.msg);
    }
    pthread_cond_init(&h->cv, NULL);
    h->job.user = h;
    h->job.req.user = h;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    h->t_arrive = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    return submit(c, h);
}

static MHD_RESULT get_route(conn *c, const char *url) {
    fw_serve *s = c->s;
    if (!strcmp(url, "/health")) {
        pthread_mutex_lock(&s->mu);
        bool stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        return stopping ? send_error(c, 503, "shutting down") : send_json(c, 200, json_pack("{s:s}", "status", "ok"));
    }
    if (!strcmp(url, "/v1/models"))
        return send_json(c, 200, json_pack("{s:s, s:[{s:s, s:s, s:i, s:s, s:I}]}", "object", "list", "data", "id",
                                           s->model_name, "object", "model", "created", 0, "owned_by", "furrow",
                                           "max_model_len", (json_int_t)s->max_context));
    if (!strcmp(url, "/metrics")) {
        pthread_mutex_lock(&s->mu);
        s->status_count[200]++; /* counts itself */
        char *text = fw_serve_metrics(s);
        s->status_count[200]--;
        pthread_mutex_unlock(&s->mu);
        return text ? send_text(c, 200, "text/plain; version=0.0.4", text) : MHD_NO;
    }
    return send_error(c, 404, "no such route");
}

/* The admin listener's routes. */
static MHD_RESULT admin_route(conn *c, const char *url, const char *method) {
    bool known = !strcmp(url, "/health") || !strcmp(url, "/metrics");
    if (!known) return send_error(c, 404, "the admin port serves GET /health and /metrics only");
    if (strcmp(method, "GET")) return send_error(c, 405, "use GET");
    return get_route(c, url);
}

static MHD_RESULT handler(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                          const char *version, const char *data, size_t *size, void **state) {
    const listener *l = cls;
    fw_serve *s = l->s;
    conn *c = *state;
    (void)version;
    if (!c) { /* headers are in: set up; refuse a declared body that cannot be taken before it comes */
        if (!fw_guard_request_begin(mc) || !(c = calloc(1, sizeof *c))) return MHD_NO;
        c->s = s, c->mc = mc, c->holders = 1;
        *state = c;
        char msg[160];
        int status = fw_guard_length_check(mc, s->max_body, msg, sizeof msg);
        if (!status) return MHD_YES;
        c->early = true;
        return send_error(c, status, msg);
    }
    if (*size) {
        if (c->len + *size > s->max_body) { /* a chunked body: too late to queue a response */
            char msg[128];
            snprintf(msg, sizeof msg, "the body is over the limit of %zu bytes (--max-body)", s->max_body);
            fw_guard_close_with(mc, 413, msg);
            return MHD_NO;
        }
        char *b = realloc(c->body, c->len + *size + 1);
        if (!b) return MHD_NO;
        memcpy(b + c->len, data, *size);
        c->body = b, c->len += *size;
        *size = 0;
        return MHD_YES;
    }
    if (l->admin) return admin_route(c, url, method);
    bool post = !strcmp(method, "POST"), get = !strcmp(method, "GET");
    if (!strcmp(url, "/v1/completions") || !strcmp(url, "/v1/chat/completions")) {
        if (!post) return send_error(c, 405, "use POST");
        return generate(c, url[4] == 'c' && url[5] == 'h' ? FW_JOB_CHAT : FW_JOB_COMPLETION);
    }
    if (!get) return send_error(c, strcmp(url, "/health") && strcmp(url, "/metrics") && strcmp(url, "/v1/models") ? 404 : 405,
                                "no such route");
    return get_route(c, url);
}

static void completed(void *cls, struct MHD_Connection *mc, void **state, enum MHD_RequestTerminationCode why) {
    conn *c = *state;
    (void)cls;
    fw_guard_request_end(mc, why != MHD_REQUEST_TERMINATED_COMPLETED_OK || (c && c->early));
    if (c) conn_drop(c);
    *state = NULL;
}

static struct MHD_Daemon *listen_on(listener *l, fw_guard *g, struct sockaddr_in *a, int port, int timeout_s,
                                    int max_conns, int per_ip) {
    a->sin_port = htons((uint16_t)port);
    return MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                            (uint16_t)port, NULL, NULL, handler, l, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)a,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)timeout_s, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)max_conns, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)per_ip,
                            MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_NOTIFY_CONNECTION,
                            fw_guard_notify, g, MHD_OPTION_END);
}

static int bound_port(struct MHD_Daemon *d, int asked) {
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    return di ? di->port : asked;
}

fw_http *fw_http_start(fw_serve *s, const fw_http_opts *o, fw_err *e) {
    struct sockaddr_in a = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, o->host, &a.sin_addr) != 1) {
        fw_errf(e, "--host: '%s' is not an IPv4 address", o->host);
        return NULL;
    }
    fw_http *h = calloc(1, sizeof *h);
    if (!h) {
        fw_errf(e, "out of memory");
        return NULL;
    }
    h->main_l = (listener){.s = s}, h->admin_l = (listener){.s = s, .admin = true};
    h->admin_port = -1;
    fw_guard_counts gc = {.mu = &s->mu, .status = s->status_count, .open = &s->http_open, .cut = &s->header_timeouts};
    if (!(h->guard = fw_guard_new(&gc, &(fw_guard_opts){.header_timeout_s = o->header_timeout_s}, e))) {
        free(h);
        return NULL;
    }
    h->main_d = listen_on(&h->main_l, h->guard, &a, o->port, o->idle_timeout_s, o->max_conns, o->max_conns_per_ip);
    if (!h->main_d) {
        fw_errf(e, "cannot listen on %s:%d", o->host, o->port);
        fw_http_stop(h);
        return NULL;
    }
    fw_guard_listener(h->main_d);
    h->port = bound_port(h->main_d, o->port);
    if (o->admin_port >= 0) {
        h->admin_d = listen_on(&h->admin_l, h->guard, &a, o->admin_port, o->idle_timeout_s, ADMIN_CONNS,
                               ADMIN_CONNS_PER_IP);
        if (!h->admin_d) {
            fw_errf(e, "--admin-port: cannot listen on %s:%d", o->host, o->admin_port);
            fw_http_stop(h);
            return NULL;
        }
        fw_guard_listener(h->admin_d);
        h->admin_port = bound_port(h->admin_d, o->admin_port);
    }
    return h;
}

int fw_http_port(const fw_http *h) { return h->port; }
int fw_http_admin_port(const fw_http *h) { return h->admin_port; }

void fw_http_stop(fw_http *h) {
    if (!h) return;
    if (h->admin_d) MHD_stop_daemon(h->admin_d);
    if (h->main_d) MHD_stop_daemon(h->main_d);
    fw_guard_free(h->guard); /* after the daemons: their last connections are closed */
    free(h);
}

void fw_http_job_release(fw_serve *s, fw_http_job *h) {
    (void)s;
    if (--h->refs > 0) return;
    fw_job_free(&h->job);
    pthread_cond_destroy(&h->cv);
    free(h);
}
