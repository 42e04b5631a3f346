/* Pipeline transfers over UCX tagged messages: one worker per rank, endpoints to
 * the previous and next stage, worker addresses exchanged over MPI once. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/dist/comm.h"

#ifdef FW_HAVE_UCX
#include <ucp/api/ucp.h>

#define FW_UCX_TAG 0xf0770000ull

typedef struct fw_ucx {
    ucp_context_h ctx;
    ucp_worker_h worker;
    ucp_ep_h ep_prev, ep_next;
} fw_ucx;

static int ucx_error(fw_err *e, ucs_status_t s, const char *what) {
    return fw_errf(e, "UCX %s: %s", what, ucs_status_string(s));
}

/* Progresses the worker until the request completes. */
static ucs_status_t wait_request(ucp_worker_h w, void *req) {
    if (req == NULL) return UCS_OK;
    if (UCS_PTR_IS_ERR(req)) return UCS_PTR_STATUS(req);
    ucs_status_t s;
    while ((s = ucp_request_check_status(req)) == UCS_INPROGRESS) ucp_worker_progress(w);
    ucp_request_free(req);
    return s;
}

static ucs_status_t connect_ep(fw_ucx *u, const void *addr, ucp_ep_h *ep) {
    ucp_ep_params_t p = {.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS,
                         .address = (const ucp_address_t *)addr};
    return ucp_ep_create(u->worker, &p, ep);
}

int fw_ucx_init(fw_comm *c, fw_err *e) {
    fw_ucx *u = calloc(1, sizeof *u);
    if (!u) return fw_errf(e, "UCX: out of memory");
    c->ucx = u;
    ucp_params_t params = {.field_mask = UCP_PARAM_FIELD_FEATURES, .features = UCP_FEATURE_TAG};
    ucp_config_t *cfg;
    ucs_status_t s = ucp_config_read(NULL, NULL, &cfg);
    if (s != UCS_OK) return ucx_error(e, s, "config");
    s = ucp_init(&params, cfg, &u->ctx);
    ucp_config_release(cfg);
    if (s != UCS_OK) return ucx_error(e, s, "init");
    ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE, .thread_mode = UCS_THREAD_MODE_SINGLE};
    if ((s = ucp_worker_create(u->ctx, &wp, &u->worker)) != UCS_OK) return ucx_error(e, s, "worker");

    ucp_address_t *addr;
    size_t len;
    if ((s = ucp_worker_get_address(u->worker, &addr, &len)) != UCS_OK) return ucx_error(e, s, "address");
    /* Every stage of this pipeline learns every other stage's worker address. */
    int mylen = (int)len, *lens = malloc((size_t)c->pp_size * sizeof(int)), *offs = malloc((size_t)c->pp_size * sizeof(int));
    MPI_Allgather(&mylen, 1, MPI_INT, lens, 1, MPI_INT, c->pp);
    int total = 0;
    for (int i = 0; i < c->pp_size; i++) offs[i] = total, total += lens[i];
    char *all = malloc((size_t)total);
    MPI_Allgatherv(addr, mylen, MPI_BYTE, all, lens, offs, MPI_BYTE, c->pp);
    ucp_worker_release_address(u->worker, addr);
    s = UCS_OK;
    if (c->pp_rank > 0) s = connect_ep(u, all + offs[c->pp_rank - 1], &u->ep_prev);
    if (s == UCS_OK && c->pp_rank + 1 < c->pp_size) s = connect_ep(u, all + offs[c->pp_rank + 1], &u->ep_next);
    free(all);
    free(lens);
    free(offs);
    if (s != UCS_OK) return ucx_error(e, s, "endpoint");
    MPI_Barrier(c->pp); /* everyone connected before the first message */
    return FW_OK;
}

int fw_ucx_send(fw_comm *c, int peer, const void *buf, size_t bytes, fw_err *e) {
    fw_ucx *u = c->ucx;
    ucp_ep_h ep = peer == c->pp_rank + 1 ? u->ep_next : u->ep_prev;
    ucp_request_param_t p = {0};
    void *req = ucp_tag_send_nbx(ep, buf, bytes, FW_UCX_TAG | (ucp_tag_t)c->pp_rank, &p);
    ucs_status_t s = wait_request(u->worker, req);
    return s == UCS_OK ? FW_OK : ucx_error(e, s, "send to the next stage");
}

int fw_ucx_recv(fw_comm *c, int peer, void *buf, size_t bytes, fw_err *e) {
    fw_ucx *u = c->ucx;
    ucp_tag_recv_info_t info = {0};
    ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_RECV_INFO, .recv_info.tag_info = &info};
    void *req = ucp_tag_recv_nbx(u->worker, buf, bytes, FW_UCX_TAG | (ucp_tag_t)peer, (ucp_tag_t)-1, &p);
    ucs_status_t s = wait_request(u->worker, req);
    if (s != UCS_OK) return ucx_error(e, s, "receive from the previous stage");
    if (req == NULL || info.length == 0) return FW_OK; /* completed in place: length not reported */
    if (info.length != bytes)
        return fw_errf(e, "UCX: stage %d sent %zu bytes, expected %zu", peer, info.length, bytes);
    return FW_OK;
}

static void close_ep(fw_ucx *u, ucp_ep_h ep) {
    if (!ep) return;
    ucp_request_param_t p = {0}; /* flush mode: both sides finish what is in flight */
    wait_request(u->worker, ucp_ep_close_nbx(ep, &p));
}

void fw_ucx_free(fw_comm *c) {
    fw_ucx *u = c->ucx;
    if (!u) return;
    if (c->pp != MPI_COMM_NULL) MPI_Barrier(c->pp); /* no peer still sending */
    close_ep(u, u->ep_prev);
    close_ep(u, u->ep_next);
    if (u->worker) ucp_worker_destroy(u->worker);
    if (u->ctx) ucp_cleanup(u->ctx);
    free(u);
    c->ucx = NULL;
}

#else

int fw_ucx_init(fw_comm *c, fw_err *e) {
    (void)c;
    return fw_errf(e, "--pp-transport ucx: this furrow was built without UCX (configure --with-ucx)");
}
int fw_ucx_send(fw_comm *c, int peer, const void *buf, size_t bytes, fw_err *e) {
    (void)c, (void)peer, (void)buf, (void)bytes;
    return fw_errf(e, "built without UCX");
}
int fw_ucx_recv(fw_comm *c, int peer, void *buf, size_t bytes, fw_err *e) {
    (void)c, (void)peer, (void)buf, (void)bytes;
    return fw_errf(e, "built without UCX");
}
void fw_ucx_free(fw_comm *c) { (void)c; }

#endif
