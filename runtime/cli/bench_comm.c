/* furrow bench --comm: measures send/recv, all-reduce and all-to-all between
 * this job's ranks at several message sizes and fits the alpha-beta model of
 * partition/perf.h to each (least squares), per link class. */
#include "runtime/cli/bench_comm.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/clock.h"
#include "partition/perf.h"

#define FW_COMM_MAX_SIZES 24

typedef struct comm_op {
    fw_perf_coll kind;
    MPI_Comm comm;             /* all-reduce, all-to-all: the group of this rank */
    int peer;                  /* send/recv: rank 0's partner (world ranks) */
    int n;                     /* ranks of the group the fit is for */
} comm_op;

static bool active(const fw_world *w, const comm_op *op) {
    return op->kind != FW_PERF_SENDRECV || w->rank == 0 || w->rank == op->peer;
}

/* Send/recv: messages one way back to back, then an empty reply, as a
 * pipeline stage passes the sequences of a step to the next. */
#define FW_COMM_WINDOW 8

/* One operation of `bytes` per rank. */
static void run_once(const fw_world *w, const comm_op *op, float *a, float *b, int64_t bytes) {
    const int count = (int)(bytes / 4);
    switch (op->kind) {
    case FW_PERF_SENDRECV:
        for (int i = 0; i < FW_COMM_WINDOW; i++) {
            if (w->rank == 0) MPI_Send(a, count, MPI_FLOAT, op->peer, 91, w->comm);
            else if (w->rank == op->peer) MPI_Recv(b, count, MPI_FLOAT, 0, 91, w->comm, MPI_STATUS_IGNORE);
        }
        if (w->rank == 0) MPI_Recv(b, 0, MPI_FLOAT, op->peer, 92, w->comm, MPI_STATUS_IGNORE);
        else if (w->rank == op->peer) MPI_Send(b, 0, MPI_FLOAT, 0, 92, w->comm);
        break;
    case FW_PERF_ALLREDUCE: MPI_Allreduce(a, b, count, MPI_FLOAT, MPI_SUM, op->comm); break;
    default: {
        int n;
        MPI_Comm_size(op->comm, &n);
        MPI_Alltoall(a, count / n, MPI_FLOAT, b, count / n, MPI_FLOAT, op->comm);
    }
    }
}

/* Seconds per operation: repetitions that fill about `seconds` (3 to 1000 of
 * them) in three rounds, the slowest rank's mean of each round, the fastest
 * round kept (the least disturbed on a shared machine, as the runs it
 * predicts are chosen: jobs/scaling). */
static double time_op(const fw_world *w, const comm_op *op, float *a, float *b, int64_t bytes, double seconds) {
    const bool on = active(w, op);
    MPI_Barrier(w->comm);
    if (on) run_once(w, op, a, b, bytes); /* warm-up: connections, buffers */
    MPI_Barrier(w->comm);
    double t = fw_now();
    if (on) run_once(w, op, a, b, bytes);
    t = fw_now() - t;
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, w->comm);
    int iters = t > 0 ? (int)(seconds / 3 / t) : 1000;
    iters = iters < 3 ? 3 : iters > 1000 ? 1000 : iters;
    double best = INFINITY;
    for (int round = 0; round < 3; round++) {
        MPI_Barrier(w->comm);
        t = fw_now();
        for (int i = 0; on && i < iters; i++) run_once(w, op, a, b, bytes);
        t = (fw_now() - t) / iters;
        MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, w->comm);
        if (t < best) best = t;
    }
    return op->kind == FW_PERF_SENDRECV ? best / FW_COMM_WINDOW : best;
}

/* Measures op at every size, fits, and adds {alpha_s, beta_s_per_byte, ranks,
 * points} to cls (rank 0). */
static void measure(const fw_world *w, const comm_op *op, const char *name, const int64_t *sizes, int n_sizes,
                    float *a, float *b, double seconds, json_t *cls) {
    double x[FW_COMM_MAX_SIZES], t[FW_COMM_MAX_SIZES];
    int m = 0;
    for (int i = 0; i < n_sizes; i++) {
        if (op->kind == FW_PERF_ALLTOALL && sizes[i] < 4 * op->n) continue; /* a value to each rank at least */
        /* All-to-all: what each rank sends in all, a whole number of values per rank. */
        const int64_t bytes = op->kind == FW_PERF_ALLTOALL ? sizes[i] / (4 * op->n) * (4 * op->n) : sizes[i];
        x[m] = (double)bytes;
        t[m++] = time_op(w, op, a, b, bytes, seconds);
    }
    if (w->rank != 0) return;
    double A, B, ca, cb;
    fw_err fe = {{0}};
    if (fw_perf_fit(x, t, m, &A, &B, &fe)) { /* reported, not fatal: the other ranks go on measuring */
        printf("%-22s left out: %s\n", name, fe.msg);
        return;
    }
    fw_perf_coeffs(op->kind, op->n, &ca, &cb);
    const double alpha = A > 0 ? A / ca : 0, beta = B / cb;
    printf("%-22s %3d ranks  alpha %8.2f us  beta %10.4g s/B (%8.3f GB/s)  ", name, op->n, alpha * 1e6, beta,
           beta > 0 ? 1e-9 / beta : INFINITY);
    for (int i = 0; i < m; i++) printf("%s%.0f:%.1f", i ? " " : "[bytes:us ", x[i], t[i] * 1e6);
    printf("]\n");
    if (!(beta > 0)) {
        printf("%-22s no positive time per byte in these points: left out\n", name);
        return;
    }
    json_t *pts = json_array();
    for (int i = 0; i < m; i++) json_array_append_new(pts, json_pack("[f,f]", x[i], t[i]));
    json_object_set_new(cls, fw_perf_coll_name(op->kind),
                        json_pack("{s:f,s:f,s:i,s:o}", "alpha_s", alpha, "beta_s_per_byte", beta, "ranks", op->n,
                                  "points", pts));
}

int fw_bench_comm(fw_world *w, const char *path, int64_t max_bytes, double seconds, fw_err *e) {
    int64_t sizes[FW_COMM_MAX_SIZES];
    int n_sizes = 0;
    for (int64_t s = 16; s <= max_bytes && n_sizes < FW_COMM_MAX_SIZES; s *= 4) sizes[n_sizes++] = s;
    if (n_sizes < 2) return fw_errf(e, "--comm-max: %lld bytes leaves fewer than two sizes from 16 bytes", (long long)max_bytes);
    /* Nodes: each node's first rank counts one; rank 0's partners. */
    int leader = w->local_rank == 0, nodes = 0, min_local = w->local_size;
    MPI_Allreduce(&leader, &nodes, 1, MPI_INT, MPI_SUM, w->comm);
    MPI_Allreduce(MPI_IN_PLACE, &min_local, 1, MPI_INT, MPI_MIN, w->comm);
    int same = w->size, other = w->size; /* lowest world rank beside 0 on its node / off it */
    int *on0 = malloc((size_t)w->size * sizeof *on0);
    float *a = malloc((size_t)max_bytes + 64), *b = malloc((size_t)max_bytes + 64);
    if (!on0 || !a || !b) {
        free(on0), free(a), free(b);
        return fw_errf(e, "out of memory for %lld-byte buffers", (long long)max_bytes);
    }
    for (int64_t i = 0; i < max_bytes / 4; i++) a[i] = 1.0f;
    /* Who shares rank 0's node: rank 0 broadcasts its host's node communicator's view. */
    int mine_on0 = 0;
    {
        int r0 = w->rank == 0 ? 1 : 0, any = 0;
        MPI_Allreduce(&r0, &any, 1, MPI_INT, MPI_MAX, w->node_comm); /* 1 on rank 0's node */
        mine_on0 = any;
    }
    MPI_Allgather(&mine_on0, 1, MPI_INT, on0, 1, MPI_INT, w->comm);
    for (int r = w->size - 1; r > 0; r--) {
        if (on0[r]) same = r;
        else other = r;
    }
    free(on0);

    json_t *root = json_object(), *links = json_object(), *cls[FW_PERF_N_CLASS] = {json_object(), json_object()};
    int rc = FW_OK;
    if (w->rank == 0)
        printf("comm       %d ranks on %d node(s), %d to %d per node; sizes 16 B to %lld B, ~%.2f s each\n", w->size,
               nodes, min_local, w->size - (nodes - 1) * min_local, (long long)sizes[n_sizes - 1], seconds);
    struct { comm_op op; fw_perf_class c; const char *name; bool run; } plan[] = {
        {{FW_PERF_SENDRECV, MPI_COMM_NULL, same, 2}, FW_PERF_INTRA, "sendrecv intra-node", same < w->size},
        {{FW_PERF_ALLREDUCE, w->node_comm, 0, min_local}, FW_PERF_INTRA, "allreduce intra-node", min_local >= 2},
        {{FW_PERF_ALLTOALL, w->node_comm, 0, min_local}, FW_PERF_INTRA, "alltoall intra-node", min_local >= 2},
        {{FW_PERF_SENDRECV, MPI_COMM_NULL, other, 2}, FW_PERF_INTER, "sendrecv inter-node", other < w->size},
        {{FW_PERF_ALLREDUCE, w->comm, 0, w->size}, FW_PERF_INTER, "allreduce inter-node", nodes >= 2},
        {{FW_PERF_ALLTOALL, w->comm, 0, w->size}, FW_PERF_INTER, "alltoall inter-node", nodes >= 2},
    };
    /* Within nodes every node measures at once (each its own group): what tp
     * groups inside nodes do; the fit is of rank 0's node. */
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++)
        if (plan[i].run) measure(w, &plan[i].op, plan[i].name, sizes, n_sizes, a, b, seconds, cls[plan[i].c]);
    free(a), free(b);
    if (w->rank == 0 && rc == FW_OK) {
        for (int c = 0; c < FW_PERF_N_CLASS; c++) {
            if (json_object_size(cls[c])) json_object_set(links, fw_perf_class_name((fw_perf_class)c), cls[c]);
        }
        json_object_set_new(root, "format", json_string("furrow-links"));
        json_object_set_new(root, "version", json_integer(1));
        json_object_set_new(root, "ranks", json_integer(w->size));
        json_object_set_new(root, "nodes", json_integer(nodes));
        json_object_set_new(root, "ranks_per_node_min", json_integer(min_local));
        json_object_set_new(root, "seconds_per_size", json_real(seconds));
        json_object_set(root, "links", links);
        if (!json_object_size(links)) rc = fw_errf(e, "one rank alone: no link to measure (run it under mpirun)");
        else if (json_dump_file(root, path, JSON_INDENT(1) | JSON_REAL_PRECISION(6)))
            rc = fw_errf(e, "cannot write %s", path);
        else printf("comm       fitted parameters written to %s\n", path);
    }
    for (int c = 0; c < FW_PERF_N_CLASS; c++) json_decref(cls[c]);
    json_decref(links);
    json_decref(root);
    /* Every rank learns whether rank 0 succeeded. */
    int ok = rc == FW_OK;
    MPI_Bcast(&ok, 1, MPI_INT, 0, w->comm);
    if (!ok && rc == FW_OK) rc = fw_errf(e, "rank 0 failed (see its message)");
    return rc;
}
