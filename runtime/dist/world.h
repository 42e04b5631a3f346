/* The MPI world of a furrow job: rank coordinates (dp, pp, tp) with tp fastest,
 * the TP / PP / DP communicators from a Cartesian communicator, and the
 * node-local rank. No global state: the handle is passed to whoever needs it. */
#ifndef FW_RUNTIME_DIST_WORLD_H
#define FW_RUNTIME_DIST_WORLD_H

#include <mpi.h>
#include <stdbool.h>

#include "io/base/err.h"

typedef struct fw_world {
    int rank, size;
    MPI_Comm comm;             /* a duplicate of MPI_COMM_WORLD */
    MPI_Comm cart;             /* (dp, pp, tp), tp fastest */
    MPI_Comm tp_comm, pp_comm, dp_comm;
    int tp, pp, dp;            /* group sizes */
    int tp_rank, pp_rank, dp_rank;
    MPI_Comm node_comm;        /* ranks sharing this node's memory */
    int local_rank, local_size;
    char host[256];
    bool initialized_mpi;      /* we called MPI_Init, so we finalize */
} fw_world;

/* Initialises MPI (singleton when not under mpirun/srun) and the node-local rank. */
int fw_world_init(fw_world *w, int *argc, char ***argv, fw_err *e);
/* Builds the Cartesian (dp, pp, tp) communicator and its sub-communicators. */
int fw_world_set_layout(fw_world *w, int tp, int pp, int dp, fw_err *e);
/* Ends the job from one rank with a message naming it: prints, then MPI_Abort. */
void fw_world_abort(const fw_world *w, const char *what, const char *msg) __attribute__((noreturn));
/* Prints "furrow WHAT: MSG", with the rank when the job has several. */
void fw_world_report(const fw_world *w, const char *what, const char *msg);
/* True on every rank iff `ok` on every rank (collective). */
bool fw_world_all_ok(const fw_world *w, bool ok);
void fw_world_finalize(fw_world *w);

#endif
