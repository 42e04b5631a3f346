/* furrow route's HTTP front (libmicrohttpd, a thread per connection): the
 * OpenAI routes go to a replica (runtime/route/route_proxy.c) and their answer
 * comes back as it arrives, a stream chunk by chunk; /replicas is where
 * replicas join (POST) and leave (DELETE), /replicas/drain and /resume where an
 * operator holds one out; /health, /metrics and GET /replicas describe the
 * router. The connection guard (runtime/http/guard.h) bounds what a slow or
 * hostile client can hold: headers and body within their timeouts, a declared
 * body over --max-body refused before it comes, connections beyond
 * --max-connections answered 503. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* POLLRDHUP */
#endif
#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/engine/job.h"
#include "runtime/http/guard.h"
#include "runtime/route/route.h"

#if MHD_VERSION < 0x00097002
typedef int MHD_RESULT;
#else
typedef enum MHD_Result MHD_RESULT;
#endif

struct fw_route_http {
    struct MHD_Daemon *d;
    fw_guard *guard;
    int port;
};

typedef struct conn {
    fw_route *s;
    char *body;
    size_t len;
    bool early;                /* answered before its body came: the connection closes after */
} conn;

/* What a streaming response's callback holds. */
typedef struct stream {
    fw_proxy *p;
    struct MHD_Connection *mc;
} stream;

/* True when the client closed its end (asked while its answer is awaited). */
static bool hung_up(void *arg) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(arg, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static MHD_RESULT send_text(fw_route *s, struct MHD_Connection *mc, int status, const char *type, char *text) {
    if (!text) return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", type);
    if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
    pthread_mutex_lock(&s->mu);
    s->status_count[status]++;
    pthread_mutex_unlock(&s->mu);
    MHD_RESULT rc = MHD_queue_response(mc, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

static MHD_RESULT send_json(fw_route *s, struct MHD_Connection *mc, int status, json_t *o) {
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return send_text(s, mc, status, "application/json", text);
}

static MHD_RESULT send_error(fw_route *s, struct MHD_Connection *mc, int status, const char *msg) {
    return send_json(s, mc, status, fw_error_json(status, msg));
}

static ssize_t reader(void *cls, uint64_t pos, char *buf, size_t max) {
    stream *st = cls;
    (void)pos;
    long k = fw_proxy_read(st->p, buf, max, hung_up, st->mc);
    return k > 0 ? (ssize_t)k : k == 0 ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void reader_free(void *cls) {
    stream *st = cls;
    fw_proxy_release(st->p);
    free(st);
}

/* Hands the request to a replica and answers with what it sends back. */
static MHD_RESULT forward(conn *c, struct MHD_Connection *mc, const char *method, const char *url) {
    fw_route *s = c->s;
    fw_proxy *p = fw_proxy_start(s, method, url, c->body, c->len);
    c->body = NULL;
    if (!p) return send_error(s, mc, 500, "out of memory");
    int status;
    const char *type;
    stream *st = NULL;
    struct MHD_Response *r = NULL;
    if (!fw_proxy_wait_head(p, &status, &type, hung_up, mc) || !(st = malloc(sizeof *st)) ||
        !(r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, reader, (*st = (stream){p, mc}, st),
                                                reader_free))) {
        free(st);
        fw_proxy_release(p); /* the client left: the transfer stops, the replica cancels */
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    if (!strncmp(type, "text/event-stream", 17)) MHD_add_response_header(r, "Cache-Control", "no-cache");
    if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
    pthread_mutex_lock(&s->mu);
    if (status >= 100 && status < 600) s->status_count[status]++;
    pthread_mutex_unlock(&s->mu);
    MHD_RESULT rc = MHD_queue_response(mc, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

/* The field of a /replicas call: ?NAME=... or a JSON body {NAME: ...}. */
static const char *replica_arg(conn *c, struct MHD_Connection *mc, const char *name, json_t **hold) {
    const char *q = MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND, name);
    if (q) return q;
    if (!*hold && c->body) *hold = json_loadb(c->body, c->len, 0, NULL);
    json_t *u = json_object_get(*hold, name);
    return json_is_string(u) ? json_string_value(u) : NULL;
}

/* /replicas (op 0): list, join, leave; /replicas/drain (1), /replicas/resume (2). */
static MHD_RESULT replicas(conn *c, struct MHD_Connection *mc, const char *method, int op) {
    fw_route *s = c->s;
    if (!op && !strcmp(method, "GET")) return send_text(s, mc, 200, "application/json", fw_route_list_json(s));
    bool post = !strcmp(method, "POST");
    if (!post && strcmp(method, "DELETE")) return send_error(s, mc, 405, "use GET, POST or DELETE");
    json_t *hold = NULL;
    const char *url = replica_arg(c, mc, "url", &hold), *job = replica_arg(c, mc, "job", &hold);
    MHD_RESULT rc;
    fw_err e;
    char norm[256];
    if (!url) {
        rc = send_error(s, mc, 400, "name the replica: ?url=http://HOST:PORT or a JSON body {\"url\": ...}");
    } else if (fw_route_url(url, norm, sizeof norm, &e)) {
        rc = send_error(s, mc, 400, e.msg);
    } else if (op) {
        rc = fw_route_hold(s, norm, op == 1) ? send_error(s, mc, 404, "no such replica")
                                             : send_json(s, mc, 200, json_pack("{s:s, s:b}", "url", norm, "draining", op == 1));
    } else if (post) {
        int added = fw_route_add(s, norm, job, FW_REP_POST, &e);
        rc = added < 0 ? send_error(s, mc, 400, e.msg)
                       : send_json(s, mc, 200, json_pack("{s:s, s:b}", "url", norm, "added", added));
    } else if (fw_route_leave(s, norm)) {
        rc = send_error(s, mc, 404, "no such replica");
    } else {
        rc = send_json(s, mc, 200, json_pack("{s:s, s:b}", "url", norm, "draining", 1));
    }
    json_decref(hold);
    return rc;
}

static MHD_RESULT handler(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                          const char *version, const char *data, size_t *size, void **state) {
    fw_route *s = cls;
    conn *c = *state;
    (void)version;
    if (!c) { /* headers are in: refuse a connection over the limit, or a declared body too big, before it comes */
        if (!fw_guard_request_begin(mc) || !(c = calloc(1, sizeof *c))) return MHD_NO;
        c->s = s;
        *state = c;
        char msg[160];
        int status = 0;
        if (fw_guard_over_limit(mc)) {
            status = 503;
            snprintf(msg, sizeof msg, "too many connections (--max-connections %d); retry later", s->o.max_conns);
        } else {
            status = fw_guard_length_check(mc, s->o.max_body, msg, sizeof msg);
        }
        if (!status) return MHD_YES;
        c->early = true;
        return send_error(s, mc, status, msg);
    }
    if (*size) {
        if (c->len + *size > s->o.max_body) { /* a chunked body: too late to queue a response */
            char msg[128];
            snprintf(msg, sizeof msg, "the body is over the limit of %zu bytes (--max-body)", s->o.max_body);
            fw_guard_close_with(mc, 413, msg);
            return MHD_NO;
        }
        char *b = realloc(c->body, c->len + *size + 1);
        if (!b) return MHD_NO;
        memcpy(b + c->len, data, *size);
        c->body = b, c->len += *size, b[c->len] = 0;
        *size = 0;
        return MHD_YES;
    }
    fw_guard_body_done(mc);
    bool get = !strcmp(method, "GET");
    if (!strcmp(url, "/v1/completions") || !strcmp(url, "/v1/chat/completions"))
        return strcmp(method, "POST") ? send_error(s, mc, 405, "use POST") : forward(c, mc, "POST", url);
    if (!strcmp(url, "/replicas")) return replicas(c, mc, method, 0);
    if (!strcmp(url, "/replicas/drain") || !strcmp(url, "/replicas/resume"))
        return strcmp(method, "POST") ? send_error(s, mc, 405, "use POST") : replicas(c, mc, method, url[10] == 'd' ? 1 : 2);
    bool known = !strcmp(url, "/v1/models") || !strcmp(url, "/health") || !strcmp(url, "/metrics");
    if (!known) return send_error(s, mc, 404, "no such route");
    if (!get) return send_error(s, mc, 405, "use GET");
    if (!strcmp(url, "/v1/models")) return forward(c, mc, "GET", url);
    if (!strcmp(url, "/metrics")) return send_text(s, mc, 200, "text/plain; version=0.0.4", fw_route_metrics(s));
    pthread_mutex_lock(&s->mu);
    int up = 0;
    for (fw_replica *r = s->reps; r; r = r->next) up += r->healthy && !r->draining;
    pthread_mutex_unlock(&s->mu);
    return up ? send_json(s, mc, 200, json_pack("{s:s, s:i}", "status", "ok", "replicas_in_service", up))
              : send_error(s, mc, 503, "no replica is in service");
}

static void completed(void *cls, struct MHD_Connection *mc, void **state, enum MHD_RequestTerminationCode why) {
    conn *c = *state;
    (void)cls;
    fw_guard_request_end(mc, why != MHD_REQUEST_TERMINATED_COMPLETED_OK || (c && c->early));
    if (c) free(c->body), free(c);
    *state = NULL;
}

fw_route_http *fw_route_http_start(fw_route *s, const fw_route_http_opts *o, fw_err *e) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    if (inet_pton(AF_INET, o->host, &a.sin_addr) != 1) {
        fw_errf(e, "--host: '%s' is not an IPv4 address", o->host);
        return NULL;
    }
    fw_route_http *h = calloc(1, sizeof *h);
    if (!h) {
        fw_errf(e, "out of memory");
        return NULL;
    }
    fw_guard_counts gc = {.mu = &s->mu, .status = s->status_count, .open = &s->http_open, .cut = &s->http_cut};
    fw_guard_opts go = {.header_timeout_s = o->header_timeout_s, .body_timeout_s = o->body_timeout_s,
                        .max_open = s->o.max_conns};
    if (!(h->guard = fw_guard_new(&gc, &go, e))) {
        free(h);
        return NULL;
    }
    /* Beyond --max-connections the library still takes a few more, for the guard to answer 503. */
    unsigned hard = (unsigned)s->o.max_conns + (unsigned)(s->o.max_conns / 8 > 16 ? s->o.max_conns / 8 : 16);
    h->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                            (uint16_t)o->port, NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->idle_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
                            hard, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_NOTIFY_CONNECTION,
                            fw_guard_notify, h->guard, MHD_OPTION_END);
    if (!h->d) {
        fw_errf(e, "cannot listen on %s:%d", o->host, o->port);
        fw_guard_free(h->guard);
        free(h);
        return NULL;
    }
    fw_guard_listener(h->d);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : o->port;
    return h;
}

int fw_route_http_port(const fw_route_http *h) { return h->port; }

void fw_route_http_stop(fw_route_http *h) {
    if (!h) return;
    MHD_stop_daemon(h->d);
    fw_guard_free(h->guard); /* after the daemon: its last connections are closed */
    free(h);
}
