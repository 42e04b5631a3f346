/* furrow serve: the connection guard of the HTTP listeners. libmicrohttpd 0.9.75
 * (Debian 12) has only an idle timeout, which a client sending its headers a
 * byte a second never reaches, and it closes a request line it cannot split
 * (no space: "GARBAGE", a TLS hello) without a word. The guard follows every
 * connection from accept to close (MHD_OPTION_NOTIFY_CONNECTION): at accept
 * it reads ahead (MSG_PEEK) the first request line and answers 400 to one
 * that is not "METHOD TARGET HTTP/x.y"; a watchdog thread cuts a connection
 * that has waited longer than the header timeout for a request's headers,
 * with 408 when part of one came. */
#ifndef FW_RUNTIME_SERVE_SERVE_GUARD_H
#define FW_RUNTIME_SERVE_SERVE_GUARD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h> /* microhttpd.h needs it first */
#include <microhttpd.h>

#include "runtime/serve/serve.h"

typedef struct fw_guard fw_guard;

/* A guard whose counts go to s's metrics; its watchdog runs until fw_guard_free. */
fw_guard *fw_guard_new(fw_serve *s, double header_timeout_s, fw_err *e);
/* Makes a daemon's listening socket hand over connections once their first
 * bytes are in (TCP_DEFER_ACCEPT), so the read-ahead at accept sees them. */
void fw_guard_listener(struct MHD_Daemon *d);
/* Once the daemons that use it have stopped. */
void fw_guard_free(fw_guard *g);

/* MHD_OPTION_NOTIFY_CONNECTION's callback; cls: the guard. */
void fw_guard_notify(void *cls, struct MHD_Connection *mc, void **socket_context,
                     enum MHD_ConnectionNotificationCode code);
/* The handler has a request's headers: the header clock stops. False when the
 * guard has already answered and ended the connection: the handler drops it. */
bool fw_guard_request_begin(struct MHD_Connection *mc);
/* The request ended (MHD_OPTION_NOTIFY_COMPLETED); unless the connection
 * closes now (last), the clock starts again for the next request's headers. */
void fw_guard_request_end(struct MHD_Connection *mc, bool last);
/* Answers and ends the connection now, from its handler, where the library
 * can no longer queue a response (a body found over the limit mid-upload);
 * the handler then returns MHD_NO. */
void fw_guard_close_with(struct MHD_Connection *mc, int status, const char *msg);

#endif
