#include "runtime/dist/comm.h"

#include <string.h>

#include "io/base/clock.h"

void fw_comm_init_single(fw_comm *c) {
    memset(c, 0, sizeof *c);
    c->tp = c->pp = MPI_COMM_NULL;
    c->tp_size = c->pp_size = 1;
}

int fw_comm_init(fw_comm *c, MPI_Comm tp, MPI_Comm pp, fw_pp_transport transport, fw_err *e) {
    fw_comm_init_single(c);
    c->tp = tp;
    c->pp = pp;
    if (tp != MPI_COMM_NULL) MPI_Comm_size(tp, &c->tp_size);
    if (pp != MPI_COMM_NULL) {
        MPI_Comm_size(pp, &c->pp_size);
        MPI_Comm_rank(pp, &c->pp_rank);
    }
    c->transport = transport;
    if (transport == FW_PP_UCX && c->pp_size > 1) return fw_ucx_init(c, e);
    return FW_OK;
}

void fw_comm_free(fw_comm *c) {
    if (c->ucx) fw_ucx_free(c);
}

static int mpi_error(fw_err *e, int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return fw_errf(e, "%s failed: %s", what, msg);
}

int fw_comm_allreduce(fw_comm *c, float *buf, int64_t n, fw_err *e) {
    if (c->tp_size <= 1) return FW_OK;
    double t0 = fw_now();
    fw_watch_note(c->wd, "the TP all-reduce");
    /* Chunks below INT_MAX elements: MPI counts are int. */
    for (int64_t off = 0; off < n; off += 1 << 30) {
        int cnt = (int)(n - off < (1 << 30) ? n - off : 1 << 30);
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + off, cnt, MPI_FLOAT, MPI_SUM, c->tp);
        if (rc != MPI_SUCCESS) return mpi_error(e, rc, "TP all-reduce");
    }
    fw_watch_note(c->wd, NULL);
    c->stats.t_allreduce += fw_now() - t0;
    c->stats.bytes_allreduce += (uint64_t)n * sizeof(float);
    c->stats.n_allreduce++;
    return FW_OK;
}

static int p2p(fw_comm *c, float *buf, int64_t n, int peer, int send, fw_err *e) {
    double t0 = fw_now();
    size_t bytes = (size_t)n * sizeof(float);
    int rc = FW_OK;
    fw_watch_note(c->wd, send ? "sending hidden states to the next pipeline stage"
                              : "waiting for hidden states from the previous pipeline stage");
    if (c->transport == FW_PP_UCX) {
        rc = send ? fw_ucx_send(c, peer, buf, bytes, e) : fw_ucx_recv(c, peer, buf, bytes, e);
    } else {
        for (int64_t off = 0; off < n && rc == FW_OK; off += 1 << 30) {
            int cnt = (int)(n - off < (1 << 30) ? n - off : 1 << 30);
            int r = send ? MPI_Send(buf + off, cnt, MPI_FLOAT, peer, FW_TAG_HIDDEN, c->pp)
                         : MPI_Recv(buf + off, cnt, MPI_FLOAT, peer, FW_TAG_HIDDEN, c->pp, MPI_STATUS_IGNORE);
            if (r != MPI_SUCCESS) rc = mpi_error(e, r, send ? "pipeline send" : "pipeline receive");
        }
    }
    fw_watch_note(c->wd, NULL);
    c->stats.t_p2p += fw_now() - t0;
    c->stats.bytes_p2p += bytes;
    c->stats.n_p2p++;
    return rc;
}

int fw_comm_send_next(fw_comm *c, const float *buf, int64_t n, fw_err *e) {
    return p2p(c, (float *)buf, n, c->pp_rank + 1, 1, e);
}

int fw_comm_recv_prev(fw_comm *c, float *buf, int64_t n, fw_err *e) {
    return p2p(c, buf, n, c->pp_rank - 1, 0, e);
}
