/* Communication between the ranks of one model replica on CPU ranks: the TP
 * all-reduce (MPI), the pipeline transfers between stages (MPI or UCX), and
 * counters of the time and bytes each rank spends on them. */
#ifndef FW_RUNTIME_DIST_COMM_H
#define FW_RUNTIME_DIST_COMM_H

#include <mpi.h>
#include <stdint.h>

#include "io/base/err.h"
#include "runtime/dist/watchdog.h"

/* Tags of the point-to-point messages within a replica, one per kind, so a
 * message can never be taken for another's. */
enum fw_mpi_tag {
    FW_TAG_HIDDEN = 17,        /* a stage's hidden states to the next stage */
    FW_TAG_LOGITS = 23,        /* the last stage's full logits rows to replica rank 0 */
    FW_TAG_TOP = 24,           /* the last stage's top-k candidates to replica rank 0 */
};

typedef enum fw_pp_transport {
    FW_PP_MPI = 0,
    FW_PP_UCX,
} fw_pp_transport;

typedef struct fw_comm_stats {
    double t_allreduce, t_p2p, t_other;  /* seconds */
    uint64_t bytes_allreduce, bytes_p2p, bytes_other;
    int64_t n_allreduce, n_p2p;
} fw_comm_stats;

typedef struct fw_comm {
    MPI_Comm tp;               /* MPI_COMM_NULL or size 1: nothing to reduce */
    int tp_size;
    MPI_Comm pp;               /* this rank's pipeline: same dp and tp, all stages */
    int pp_size, pp_rank;
    fw_pp_transport transport;
    struct fw_ucx *ucx;        /* UCX endpoints to the neighbouring stages */
    fw_watchdog *wd;           /* told where a rank waits (NULL: none) */
    fw_comm_stats stats;
} fw_comm;

/* A comm for one rank alone (no MPI calls). */
void fw_comm_init_single(fw_comm *c);
/* Sets up the TP and PP groups (collective over the world when UCX is used). */
int fw_comm_init(fw_comm *c, MPI_Comm tp, MPI_Comm pp, fw_pp_transport transport, fw_err *e);
void fw_comm_free(fw_comm *c);

/* buf[n] = sum over the TP group of buf[n]. */
int fw_comm_allreduce(fw_comm *c, float *buf, int64_t n, fw_err *e);
/* Pipeline: hidden states to the next stage / from the previous one. */
int fw_comm_send_next(fw_comm *c, const float *buf, int64_t n, fw_err *e);
int fw_comm_recv_prev(fw_comm *c, float *buf, int64_t n, fw_err *e);

/* UCX transport (runtime/dist/comm_ucx.c): tagged messages between neighbouring stages. */
int fw_ucx_init(fw_comm *c, fw_err *e);
int fw_ucx_send(fw_comm *c, int peer, const void *buf, size_t bytes, fw_err *e);
int fw_ucx_recv(fw_comm *c, int peer, void *buf, size_t bytes, fw_err *e);
void fw_ucx_free(fw_comm *c);

#endif
