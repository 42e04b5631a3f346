#include "runtime/dist/world.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A process that no launcher started (no mpirun, srun or PMI variables) is a job
 * of one rank: Open MPI would fork an orted for it and start UCX's PML, ~0.35 s of
 * its 0.4 s MPI_Init here, with no peer to reach. The user's own OMPI_MCA_
 * settings win; other MPIs ignore these names. set[] says which it set: MPI_Init
 * has read them once it returns, and they are taken out again then, so that no
 * job this process starts (furrow route's scale commands) inherits them. */
static const char *const singleton_mca[][2] = {{"OMPI_MCA_ess_singleton_isolated", "1"}, {"OMPI_MCA_pml", "ob1"}};
enum { N_SINGLETON_MCA = sizeof singleton_mca / sizeof *singleton_mca };

static void singleton_defaults(bool set[N_SINGLETON_MCA]) {
    static const char *const launched[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_FD"};
    for (int i = 0; i < N_SINGLETON_MCA; i++) set[i] = false;
    for (size_t i = 0; i < sizeof launched / sizeof *launched; i++)
        if (getenv(launched[i])) return;
    for (int i = 0; i < N_SINGLETON_MCA; i++)
        if (!getenv(singleton_mca[i][0])) set[i] = setenv(singleton_mca[i][0], singleton_mca[i][1], 0) == 0;
}

int fw_world_init(fw_world *w, int *argc, char ***argv, fw_err *e) {
    memset(w, 0, sizeof *w);
    w->cart = w->tp_comm = w->pp_comm = w->dp_comm = w->node_comm = MPI_COMM_NULL;
    int inited = 0, provided;
    MPI_Initialized(&inited);
    if (!inited) {
        bool set[N_SINGLETON_MCA];
        singleton_defaults(set);
        /* FUNNELED: only the main thread calls MPI; OpenMP threads compute. */
        int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        for (int i = 0; i < N_SINGLETON_MCA; i++)
            if (set[i]) unsetenv(singleton_mca[i][0]);
        if (rc != MPI_SUCCESS) return fw_errf(e, "MPI_Init_thread failed");
        w->initialized_mpi = true;
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &w->comm);
    /* Errors come back as codes so a rank can report before the job ends. */
    MPI_Comm_set_errhandler(w->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(w->comm, &w->rank);
    MPI_Comm_size(w->comm, &w->size);
    MPI_Comm_split_type(w->comm, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &w->node_comm);
    MPI_Comm_rank(w->node_comm, &w->local_rank);
    MPI_Comm_size(w->node_comm, &w->local_size);
    if (gethostname(w->host, sizeof w->host - 1)) snprintf(w->host, sizeof w->host, "unknown");
    w->tp = w->pp = w->dp = 1;
    return FW_OK;
}

int fw_world_set_layout(fw_world *w, int tp, int pp, int dp, fw_err *e) {
    if (tp * pp * dp != w->size)
        return fw_errf(e, "layout tp %d x pp %d x dp %d needs %d ranks, the job has %d", tp, pp, dp,
                       tp * pp * dp, w->size);
    int dims[3] = {dp, pp, tp}, periods[3] = {0, 0, 0};
    /* No reordering: world rank r keeps coordinates (r / (tp*pp), r / tp % pp, r % tp),
     * so consecutive ranks (one node under mpirun's default mapping) share a TP group. */
    if (MPI_Cart_create(w->comm, 3, dims, periods, 0, &w->cart) != MPI_SUCCESS)
        return fw_errf(e, "MPI_Cart_create failed for (dp %d, pp %d, tp %d)", dp, pp, tp);
    int keep_tp[3] = {0, 0, 1}, keep_pp[3] = {0, 1, 0}, keep_dp[3] = {1, 0, 0};
    MPI_Cart_sub(w->cart, keep_tp, &w->tp_comm);
    MPI_Cart_sub(w->cart, keep_pp, &w->pp_comm);
    MPI_Cart_sub(w->cart, keep_dp, &w->dp_comm);
    int coords[3];
    MPI_Cart_coords(w->cart, w->rank, 3, coords);
    w->dp_rank = coords[0];
    w->pp_rank = coords[1];
    w->tp_rank = coords[2];
    w->tp = tp;
    w->pp = pp;
    w->dp = dp;
    return FW_OK;
}

void fw_world_report(const fw_world *w, const char *what, const char *msg) {
    if (w->size > 1) fprintf(stderr, "furrow %s: rank %d (%s): %s\n", what, w->rank, w->host, msg);
    else fprintf(stderr, "furrow %s: %s\n", what, msg);
}

void fw_world_abort(const fw_world *w, const char *what, const char *msg) {
    fprintf(stderr, "furrow %s: rank %d (%s): %s\n", what, w->rank, w->host, msg);
    fflush(stderr);
    MPI_Abort(w->comm != MPI_COMM_NULL ? w->comm : MPI_COMM_WORLD, 1);
    exit(1); /* not reached */
}

bool fw_world_all_ok(const fw_world *w, bool ok) {
    int mine = ok ? 1 : 0, all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, w->comm);
    return all == 1;
}

void fw_world_finalize(fw_world *w) {
    MPI_Comm *comms[] = {&w->tp_comm, &w->pp_comm, &w->dp_comm, &w->cart, &w->node_comm, &w->comm};
    for (size_t i = 0; i < sizeof comms / sizeof comms[0]; i++)
        if (*comms[i] != MPI_COMM_NULL) MPI_Comm_free(comms[i]);
    if (w->initialized_mpi) MPI_Finalize();
}
