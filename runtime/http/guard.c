/* The connection guard (guard.h). Answers go out before the library's
 * connection thread could write or close (at accept, in the header wait, or
 * from the handler); the library shuts the socket's write side before it
 * reports a connection closed, so nothing can be answered then. Whether a
 * client sent bytes that nothing answered comes from the socket's counters
 * (TCP_INFO), so an idle keep-alive connection that is cut gets no stray 408.
 *
 * A connection answered before its body came (413) lingers: the guard keeps
 * the socket (a dup of it) and discards what the client still sends for a
 * while, as nginx's lingering close does; closed with unread bytes, the socket
 * would send a reset, and a client still sending its body (Python's
 * http.client, requests) would see a broken pipe instead of the 413. */
#include <errno.h>
#include <jansson.h>
#include <linux/tcp.h> /* struct tcp_info with byte counters, TCP_DEFER_ACCEPT; glibc's header lacks the counters */
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "io/base/clock.h"
#include "runtime/engine/job.h" /* fw_error_json */
#include "runtime/http/guard.h"

/* Bytes of the first request line read ahead at accept; a longer line is left to the library. */
#define PEEK_BYTES 8192
/* Lingering sockets at most (more are closed at once), and for how long. */
#define LINGER_MAX 256
#define LINGER_S 5.0

typedef struct guard_conn {
    fw_guard *g;
    int fd;
    double t_wait;        /* when it began waiting for a request's headers */
    uint64_t rx0, tx0;    /* the socket's bytes received and sent by then */
    bool in_request;      /* the handler has the headers */
    bool body_done;       /* and the body */
    bool over;            /* accepted beyond max_open: answered 503 by the handler */
    double t_request;     /* when the headers came */
    bool done;            /* answered and ended, or closing after this request */
    bool linger;          /* answered early: drain what still comes after the library closes */
    struct guard_conn *prev, *next;
} guard_conn;

struct fw_guard {
    fw_guard_counts n;
    fw_guard_opts o;
    int n_open;           /* connections in the list */
    pthread_mutex_t mu;   /* the lists and every record's fields */
    pthread_t watchdog;
    bool stop;
    guard_conn *head;
    struct lingering {
        int fd;
        double t_end;
    } linger[LINGER_MAX]; /* appended by the library's threads, removed by the watchdog */
    int n_linger;
};

/* Bytes received and sent on the socket so far; false where the kernel does not say. */
static bool tcp_bytes(int fd, uint64_t *rx, uint64_t *tx) {
    struct tcp_info ti;
    socklen_t n = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &n) ||
        n < offsetof(struct tcp_info, tcpi_bytes_sent) + sizeof ti.tcpi_bytes_sent)
        return false;
    *rx = ti.tcpi_bytes_received, *tx = ti.tcpi_bytes_sent;
    return true;
}

/* Under g->mu: the clock starts for the next request's headers. */
static void wait_headers(guard_conn *c) {
    c->t_wait = fw_now();
    c->in_request = false;
    if (!tcp_bytes(c->fd, &c->rx0, &c->tx0)) c->rx0 = c->tx0 = UINT64_MAX; /* never "unanswered" */
}

/* True when bytes came since the clock started and nothing was sent back. */
static bool unanswered(const guard_conn *c) {
    uint64_t rx, tx;
    return c->rx0 != UINT64_MAX && tcp_bytes(c->fd, &rx, &tx) && rx > c->rx0 && tx == c->tx0;
}

static void count(const fw_guard_counts *n, int status, int opened, uint64_t cut) {
    pthread_mutex_lock(n->mu);
    if (status > 0 && status < 600) n->status[status]++;
    *n->open += opened;
    *n->cut += cut;
    pthread_mutex_unlock(n->mu);
}

/* Writes an error response and ends the socket's write side, and its read
 * side unless the handler's thread ends the connection itself (read_too
 * false): the library's thread then reads end-of-file, its writes fail, and
 * it closes. */
static void answer_and_end(const fw_guard_counts *s, int fd, int status, const char *msg, bool read_too) {
    json_t *o = fw_error_json(status, msg);
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (body) {
        char head[256];
        const char *reason = MHD_get_reason_phrase_for((unsigned)status);
        int n = snprintf(head, sizeof head,
                         "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\n\r\n",
                         status, reason && *reason ? reason : "Error", strlen(body));
        if (send(fd, head, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT | MSG_MORE) == n)
            (void)send(fd, body, strlen(body), MSG_NOSIGNAL | MSG_DONTWAIT);
        free(body);
    }
    shutdown(fd, read_too ? SHUT_RDWR : SHUT_WR);
    count(s, status, 0, 0);
}

static bool tchar(unsigned char ch) { /* RFC 9110's token characters */
    return (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* The first request line among the n bytes read ahead: 1 when it is
 * "METHOD TARGET HTTP/d.d", 0 when it is not, -1 when it is not all there. */
static int request_line_ok(const unsigned char *b, size_t n) {
    size_t i = 0;
    while (i < n && (b[i] == '\r' || b[i] == '\n')) i++; /* empty lines before a request are allowed */
    const unsigned char *eol = memchr(b + i, '\n', n - i);
    if (!eol) return -1;
    size_t end = (size_t)(eol - b);
    if (end > i && b[end - 1] == '\r') end--;
    size_t m = i;
    while (m < end && tchar(b[m])) m++;
    if (m == i || m == end || b[m] != ' ') return 0;
    size_t t = ++m;
    while (m < end && b[m] > ' ' && b[m] != 0x7f) m++; /* the target: no spaces or control bytes */
    if (m == t || m == end || b[m] != ' ') return 0;
    m++;
    return end - m == 8 && !memcmp(b + m, "HTTP/", 5) && b[m + 5] >= '0' && b[m + 5] <= '9' && b[m + 6] == '.' &&
           b[m + 7] >= '0' && b[m + 7] <= '9';
}

/* Under g->mu: cuts the connections whose headers, or body, are overdue. */
static void cut_overdue(fw_guard *g, const char *msg, const char *body_msg) {
    double now = fw_now();
    uint64_t n_cut = 0;
    for (guard_conn *c = g->head; c; c = c->next) {
        if (c->done) continue;
        if (c->in_request) {
            if (c->body_done || !(g->o.body_timeout_s > 0) || now - c->t_request < g->o.body_timeout_s) continue;
            c->done = true, n_cut++;
            answer_and_end(&g->n, c->fd, 408, body_msg, true);
            continue;
        }
        if (now - c->t_wait < g->o.header_timeout_s) continue;
        c->done = true, n_cut++;
        if (unanswered(c)) answer_and_end(&g->n, c->fd, 408, msg, true); /* part of a request came */
        else shutdown(c->fd, SHUT_RDWR);                             /* an idle connection */
    }
    if (n_cut) count(&g->n, 0, 0, n_cut);
}

/* Under g->mu: discards what came on the first n lingering sockets (polled in
 * pf) and closes those whose client closed or whose time is up. */
static void drain(fw_guard *g, const struct pollfd *pf, int n) {
    char sink[65536];
    double now = fw_now();
    for (int i = n - 1; i >= 0; i--) {
        bool end = now > g->linger[i].t_end;
        for (int k = 0; !end && pf[i].revents && k < 64; k++) {
            ssize_t r = recv(g->linger[i].fd, sink, sizeof sink, MSG_DONTWAIT);
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            if (r <= 0) end = true;
        }
        if (!end) continue;
        close(g->linger[i].fd);
        g->linger[i] = g->linger[--g->n_linger];
    }
}

/* Every 100 ms or when a lingering socket has bytes: cuts overdue headers,
 * drains lingering sockets. */
static void *watch(void *arg) {
    fw_guard *g = arg;
    char msg[128], body_msg[128];
    snprintf(msg, sizeof msg, "the request's headers did not arrive within %g s (--header-timeout)",
             g->o.header_timeout_s);
    snprintf(body_msg, sizeof body_msg, "the request's body did not arrive within %g s (--body-timeout)",
             g->o.body_timeout_s);
    struct pollfd pf[LINGER_MAX];
    pthread_mutex_lock(&g->mu);
    while (!g->stop) {
        cut_overdue(g, msg, body_msg);
        int n = g->n_linger;
        for (int i = 0; i < n; i++) pf[i] = (struct pollfd){.fd = g->linger[i].fd, .events = POLLIN};
        pthread_mutex_unlock(&g->mu);
        if (poll(pf, (nfds_t)n, 100) < 0) memset(pf, 0, sizeof pf[0] * (size_t)n);
        pthread_mutex_lock(&g->mu);
        drain(g, pf, n);
    }
    for (int i = 0; i < g->n_linger; i++) close(g->linger[i].fd);
    g->n_linger = 0;
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

fw_guard *fw_guard_new(const fw_guard_counts *counts, const fw_guard_opts *o, fw_err *e) {
    fw_guard *g = calloc(1, sizeof *g);
    if (!g) {
        fw_errf(e, "out of memory");
        return NULL;
    }
    g->n = *counts, g->o = *o;
    pthread_mutex_init(&g->mu, NULL);
    if (pthread_create(&g->watchdog, NULL, watch, g)) {
        fw_errf(e, "cannot start the HTTP header watchdog thread");
        pthread_mutex_destroy(&g->mu);
        free(g);
        return NULL;
    }
    return g;
}

void fw_guard_free(fw_guard *g) {
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    g->stop = true;
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->watchdog, NULL); /* within a poll's 100 ms */
    pthread_mutex_destroy(&g->mu);
    free(g);
}

void fw_guard_listener(struct MHD_Daemon *d) {
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
    int secs = 1; /* a client that sends nothing yet is handed over after about this anyway */
    if (di) (void)setsockopt(di->listen_fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof secs);
}

void fw_guard_notify(void *cls, struct MHD_Connection *mc, void **socket_context,
                     enum MHD_ConnectionNotificationCode code) {
    fw_guard *g = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        guard_conn *c = ci ? calloc(1, sizeof *c) : NULL;
        *socket_context = c;
        if (!c) return; /* unguarded: only the idle timeout bounds it */
        c->g = g, c->fd = ci->connect_fd;
        /* The connection's thread has not read yet: what came is still in the socket. */
        unsigned char b[PEEK_BYTES];
        ssize_t n = recv(c->fd, b, sizeof b, MSG_PEEK | MSG_DONTWAIT);
        if (n > 0 && request_line_ok(b, (size_t)n) == 0) {
            c->done = true;
            answer_and_end(&g->n, c->fd, 400, "malformed request line: expected METHOD TARGET HTTP/1.1", true);
        }
        pthread_mutex_lock(&g->mu);
        c->over = g->o.max_open > 0 && g->n_open >= g->o.max_open;
        g->n_open++;
        wait_headers(c);
        if (c->rx0 != UINT64_MAX) c->rx0 = c->tx0 = 0; /* what came before accept is part of the request */
        c->next = g->head;
        if (g->head) g->head->prev = c;
        g->head = c;
        pthread_mutex_unlock(&g->mu);
        count(&g->n, 0, 1, 0);
        return;
    }
    guard_conn *c = *socket_context;
    if (code != MHD_CONNECTION_NOTIFY_CLOSED || !c) return;
    *socket_context = NULL;
    pthread_mutex_lock(&g->mu); /* out of the list before the library closes the socket */
    g->n_open--;
    if (c->prev) c->prev->next = c->next;
    else g->head = c->next;
    if (c->next) c->next->prev = c->prev;
    if (c->linger && g->n_linger < LINGER_MAX && !g->stop) { /* the library closes its descriptor, not the socket */
        int fd = dup(c->fd);
        if (fd >= 0) g->linger[g->n_linger++] = (struct lingering){.fd = fd, .t_end = fw_now() + LINGER_S};
    }
    pthread_mutex_unlock(&g->mu);
    count(&g->n, 0, -1, 0);
    free(c);
}

static guard_conn *find(struct MHD_Connection *mc) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

bool fw_guard_request_begin(struct MHD_Connection *mc) {
    guard_conn *c = find(mc);
    if (!c) return true;
    pthread_mutex_lock(&c->g->mu);
    c->in_request = true, c->body_done = false, c->t_request = fw_now();
    bool open = !c->done;
    pthread_mutex_unlock(&c->g->mu);
    return open;
}

void fw_guard_request_end(struct MHD_Connection *mc, bool last) {
    guard_conn *c = find(mc);
    if (!c) return;
    pthread_mutex_lock(&c->g->mu);
    wait_headers(c);
    c->done = c->done || last;
    c->linger = c->linger || last;
    pthread_mutex_unlock(&c->g->mu);
}

void fw_guard_close_with(struct MHD_Connection *mc, int status, const char *msg) {
    guard_conn *c = find(mc);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!c || !ci) return;
    pthread_mutex_lock(&c->g->mu);
    c->done = c->linger = true;
    pthread_mutex_unlock(&c->g->mu);
    answer_and_end(&c->g->n, ci->connect_fd, status, msg, false);
}

void fw_guard_body_done(struct MHD_Connection *mc) {
    guard_conn *c = find(mc);
    if (!c) return;
    pthread_mutex_lock(&c->g->mu);
    c->body_done = true;
    pthread_mutex_unlock(&c->g->mu);
}

bool fw_guard_over_limit(struct MHD_Connection *mc) {
    guard_conn *c = find(mc);
    return c && c->over; /* set once, before the handler runs */
}

/* The Content-Length headers of a request, as fw_guard_length_check sees them. */
typedef struct lengths {
    const char *first;
    bool differ;
} lengths;

#if MHD_VERSION < 0x00097002
typedef int MHD_RESULT;
#else
typedef enum MHD_Result MHD_RESULT;
#endif

static MHD_RESULT length_seen(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    lengths *l = cls;
    (void)kind;
    if (strcasecmp(key, "Content-Length") || !value) return MHD_YES;
    if (!l->first) l->first = value;
    else if (strcmp(l->first, value)) l->differ = true;
    return MHD_YES;
}

int fw_guard_length_check(struct MHD_Connection *mc, size_t max_body, char *msg, size_t n) {
    lengths l = {0};
    MHD_get_connection_values(mc, MHD_HEADER_KIND, length_seen, &l);
    if (!l.first) return 0;
    if (l.differ) {
        snprintf(msg, n, "the request has Content-Length headers that disagree");
        return 400;
    }
    size_t digits = strspn(l.first, "0123456789");
    if (!digits || l.first[digits]) {
        snprintf(msg, n, "Content-Length is not a number of bytes");
        return 400;
    }
    errno = 0;
    unsigned long long v = strtoull(l.first, NULL, 10);
    if (errno == ERANGE || v > max_body) {
        snprintf(msg, n, "the body (Content-Length %.24s) is over the limit of %zu bytes (--max-body)", l.first,
                 max_body);
        return 413;
    }
    return 0;
}
