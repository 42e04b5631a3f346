/* The performance model behind `furrow plan --predict`: a step's time is the
 * compute of the rank's share of its layers plus the time of the collectives
 * the layout needs, each an alpha-beta model (a latency per message step plus
 * seconds per byte) of the link class it crosses. The parameters are fitted to
 * measurements (`furrow bench --comm`, written as "furrow-links" JSON) or taken
 * from published figures; the equations are written out in PERFORMANCE.md. */
#ifndef FW_PARTITION_PERF_H
#define FW_PARTITION_PERF_H

#include <stdbool.h>
#include <stdint.h>

#include "io/base/err.h"
#include "partition/layout.h"

typedef enum fw_perf_coll {
    FW_PERF_SENDRECV = 0,      /* one message between two ranks */
    FW_PERF_ALLREDUCE,         /* every rank ends with the sum of every rank's n bytes */
    FW_PERF_ALLTOALL,          /* every rank sends n/size bytes to each rank */
    FW_PERF_N_COLL
} fw_perf_coll;

typedef enum fw_perf_class {
    FW_PERF_INTRA = 0,         /* ranks of one node: shared memory, NVLink */
    FW_PERF_INTER,             /* ranks of different nodes: TCP, InfiniBand, RoCE */
    FW_PERF_N_CLASS
} fw_perf_class;

/* "sendrecv", "allreduce", "alltoall"; "intra", "inter": their keys in JSON. */
const char *fw_perf_coll_name(fw_perf_coll k);
const char *fw_perf_class_name(fw_perf_class c);

#define FW_PERF_MAX_POINTS 24
/* alpha: seconds per message step; beta: seconds per byte a link carries.
 * With the measured points (bytes, seconds) of a group of `ranks` ranks, a
 * message of that group inside their range takes the segment between the two
 * nearest points (a local alpha-beta: links such as TCP through a token
 * bucket are not affine over four decades); elsewhere alpha and beta. */
typedef struct fw_perf_ab {
    double alpha, beta;
    bool set;
    int ranks, n_points;
    double m[FW_PERF_MAX_POINTS], t[FW_PERF_MAX_POINTS];
} fw_perf_ab;

typedef struct fw_perf_links {
    fw_perf_ab ab[FW_PERF_N_CLASS][FW_PERF_N_COLL];
    char source[160];          /* where the figures come from, for the report */
} fw_perf_links;

/* Coefficients of alpha and of bytes*beta in one collective over n ranks of
 * `bytes` (the buffer of one rank): send/recv 1 and 1; all-reduce
 * min(2(n-1), 2 ceil(log2 n)) (ring or tree latency, whichever is shorter, as
 * NCCL picks) and 2(n-1)/n (a ring's bus traffic); all-to-all n-1 and (n-1)/n. */
void fw_perf_coeffs(fw_perf_coll k, int n, double *c_alpha, double *c_beta);
/* Seconds of one collective, by the coefficients and the class's parameters
 * (or its measured points, as fw_perf_ab says); 0 for n < 2 or a parameter
 * pair that is not set. */
double fw_perf_coll_s(const fw_perf_links *L, fw_perf_coll k, fw_perf_class cls, int n, double bytes);

/* Least squares of t ~ a + b x, each point weighted by 1/t^2 (the relative
 * error counts, so microsecond latencies weigh as much as long transfers).
 * n >= 2 with two distinct x; a and b may come out negative only if the data
 * say so (the caller decides). */
int fw_perf_fit(const double *x, const double *t, int n, double *a, double *b, fw_err *e);

/* "furrow-links" JSON (written by furrow bench --comm): reads into L, classes
 * and collectives the file does not hold are left as they are. */
int fw_perf_links_load(fw_perf_links *L, const char *path, fw_err *e);
/* Published figures of a GPU system: "h100" or "h200" (8 GPUs of a node on
 * NVLink 4, 400 Gb/s InfiniBand per GPU between nodes); see PERFORMANCE.md. */
int fw_perf_links_builtin(fw_perf_links *L, const char *system, fw_err *e);

/* Seconds of one all-reduce given w, the wait measured beside the compute:
 * the longer of the transfer and w (a rank that loses its core while the
 * transfer runs loses nothing). */
double fw_perf_allreduce_s(const fw_perf_links *L, fw_perf_class cls, int n, double bytes, double wait_s);

/* Compute of one rank's share at one step kind, per layer, and the fixed cost
 * of a step on the last stage (embedding, head, sampling). */
typedef struct fw_perf_compute_row {
    bool prefill;
    int64_t batch;             /* sequences (decode) */
    int64_t tokens;            /* tokens of the step: batch (decode) or the prompt (prefill) */
    double layer_s;            /* one layer of the rank's share */
    double fixed_s;
    double wait_s;             /* seconds an all-reduce costs beyond its transfer: the ranks of a
                                  group reaching it apart (CPU ranks sharing cores); 0 on GPUs */
} fw_perf_compute_row;

#define FW_PERF_MAX_ROWS 64
typedef struct fw_perf_compute {
    int tp;                    /* the share the figures were measured at */
    fw_perf_compute_row rows[FW_PERF_MAX_ROWS];
    int n_rows;
    char source[160];
} fw_perf_compute;

/* "furrow-compute" JSON (furrow bench --json, or a GPU bench that writes the
 * same keys): format, version 1, tp, steps[] of {phase, batch, tokens, layer_s,
 * fixed_s, wait_s} (fixed_s and wait_s optional: 0; wait_s: the mean all-reduce
 * of the measured run, its ranks reaching it apart on shared cores). */
int fw_perf_compute_load(fw_perf_compute *C, const char *path, fw_err *e);
/* The per-layer figures of one H100 recorded in GPU.md (a whole layer at tp 1,
 * context 1024, and the 4096-token prefill); system "h200": the decode rows
 * scaled by the copy bandwidths measured on an H100 and an H200. */
void fw_perf_compute_builtin(fw_perf_compute *C, const char *system);
/* Per-layer compute of the share at tp for a step of `tokens` tokens: the row
 * of the same kind with the nearest token count, scaled by the tokens (prefill
 * only) and by measured tp / tp (the layer's work splits evenly over the tp
 * ranks); *wait_s the row's as it is. -1 if there is no row of that kind. */
double fw_perf_layer_s(const fw_perf_compute *C, bool prefill, int64_t tokens, int tp, double *fixed_s,
                       double *wait_s);

/* One predicted step. */
typedef struct fw_perf_step {
    double compute_s, allreduce_s, p2p_s, other_s;   /* of the critical path */
    double step_s;             /* the time of one decode step or one prefill (latency) */
    double tokens_s;           /* over all dp replicas */
} fw_perf_step;

typedef struct fw_perf_req {
    bool prefill;
    int64_t batch;             /* sequences of a replica */
    int64_t tokens;            /* tokens per sequence in this step: 1 (decode) or the prompt */
    int64_t hidden;            /* hidden size */
    int value_bytes;           /* bytes of an activation on the wire (4 CPU, 2 GPU) */
    int ranks_per_node;
    int nics_per_node;         /* links out of a node: a stage's tp ranks share them for the hops
                                  to the next stage (0: one per rank) */
    bool together;             /* a one-stage replica runs the batch in one forward */
} fw_perf_req;

/* Predicts one step of the layout: every stage's layers, its tp all-reduces
 * (the embedding's and two per layer, hidden x tokens values each), the
 * hidden states between stages (send/recv), and the next tokens' broadcast.
 * One stage: the batch in one forward. Several: the engine passes the
 * sequences one by one so the stages overlap (batch + pp - 1 slots of the
 * slowest stage). */
int fw_perf_predict(const fw_layout *l, const fw_perf_compute *C, const fw_perf_links *L, const fw_perf_req *r,
                    fw_perf_step *out, fw_err *e);

#endif
