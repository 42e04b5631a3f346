/* The connection guard of furrow's HTTP listeners (furrow serve, furrow
 * route). libmicrohttpd 0.9.75 (Debian 12) has only an idle timeout, which a
 * client sending its headers a byte a second never reaches, it closes a
 * request line it cannot split (no space: "GARBAGE", a TLS hello) without a
 * word, and past its connection limit it closes new connections unanswered.
 * The guard follows every connection from accept to close
 * (MHD_OPTION_NOTIFY_CONNECTION): at accept it reads ahead (MSG_PEEK) the
 * first request line and answers 400 to one that is not "METHOD TARGET
 * HTTP/x.y", and marks a connection beyond its own limit, which the handler
 * answers 503; a watchdog thread cuts a connection that has waited longer than
 * the header timeout for a request's headers, or the body timeout for its
 * body, with 408 when part of one came. */
#ifndef FW_RUNTIME_HTTP_GUARD_H
#define FW_RUNTIME_HTTP_GUARD_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h> /* microhttpd.h needs it first */
#include <microhttpd.h>

#include "io/base/err.h"

/* Where the guard counts what it does: the server's own counters, under its mutex. */
typedef struct fw_guard_counts {
    pthread_mutex_t *mu;
    uint64_t *status;          /* [600]: responses by status */
    int *open;                 /* open connections */
    uint64_t *cut;             /* connections cut by a header or body timeout */
} fw_guard_counts;

typedef struct fw_guard_opts {
    double header_timeout_s;   /* a request's headers must arrive within this */
    double body_timeout_s;     /* and its body within this of its headers (0: no bound) */
    int max_open;              /* connections beyond this many are answered 503 (0: no limit) */
} fw_guard_opts;

typedef struct fw_guard fw_guard;

/* A guard counting into *counts (copied); its watchdog runs until fw_guard_free. */
fw_guard *fw_guard_new(const fw_guard_counts *counts, const fw_guard_opts *o, fw_err *e);
/* Makes a daemon's listening socket hand over connections once their first
 * bytes are in (TCP_DEFER_ACCEPT), so the read-ahead at accept sees them. */
void fw_guard_listener(struct MHD_Daemon *d);
/* Once the daemons that use it have stopped. */
void fw_guard_free(fw_guard *g);

/* MHD_OPTION_NOTIFY_CONNECTION's callback; cls: the guard. */
void fw_guard_notify(void *cls, struct MHD_Connection *mc, void **socket_context,
                     enum MHD_ConnectionNotificationCode code);
/* The handler has a request's headers: the header clock stops (the body clock
 * starts). False when the guard has already answered and ended the
 * connection: the handler drops it. */
bool fw_guard_request_begin(struct MHD_Connection *mc);
/* The handler has the request's whole body: the body clock stops. */
void fw_guard_body_done(struct MHD_Connection *mc);
/* True for a connection accepted beyond max_open: the handler answers 503 and
 * ends it (as for an early answer, fw_guard_request_end's last). */
bool fw_guard_over_limit(struct MHD_Connection *mc);
/* The request ended (MHD_OPTION_NOTIFY_COMPLETED); unless the connection
 * closes now (last), the clock starts again for the next request's headers. */
void fw_guard_request_end(struct MHD_Connection *mc, bool last);
/* Answers and ends the connection now, from its handler, where the library
 * can no longer queue a response (a body found over the limit mid-upload);
 * the handler then returns MHD_NO. */
void fw_guard_close_with(struct MHD_Connection *mc, int status, const char *msg);

/* A declared body the server will not take, from the request's headers: 413
 * over max_body (up to 2^64-1, which the library takes for "length unknown"
 * and waits on), 400 for Content-Length headers that disagree or are not a
 * number; 0 when it may come. msg: the reason. */
int fw_guard_length_check(struct MHD_Connection *mc, size_t max_body, char *msg, size_t n);

#endif
