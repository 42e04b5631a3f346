/* How a serve replica tells routers it is there (runtime/route): a POST of
 * its URL to a router's /replicas, repeated every few seconds so a router
 * started or restarted later learns of it, and/or a file in a registry folder
 * on shared storage (written whole, then renamed into place; written again if
 * it goes missing: a router removes the files of replicas it could not reach
 * for a long time). Leaving is a DELETE and the file's removal: the router
 * drains the replica. */
#ifndef FW_RUNTIME_SERVE_SERVE_REGISTER_H
#define FW_RUNTIME_SERVE_SERVE_REGISTER_H

#include "io/base/err.h"

typedef struct fw_register fw_register;
/* router and registry may each be NULL (not both); job: the Slurm job id the
 * replica runs in, or NULL (routers' autoscalers stop replicas by it). The
 * registry file is written before this returns; the router is called from a
 * thread. */
fw_register *fw_register_start(const char *router, const char *registry, const char *self_url, const char *job,
                               fw_err *e);
/* Leaves (once): DELETE at the router, the registry file removed. */
void fw_register_leave(fw_register *r);
/* Leaves if not yet done, stops the thread, frees. */
void fw_register_free(fw_register *r);

#endif
