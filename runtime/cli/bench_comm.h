/* furrow bench --comm: the alpha-beta parameters of the links between the
 * ranks of this job, measured over MPI and written as "furrow-links" JSON for
 * furrow plan --predict (partition/perf.h). */
#ifndef FW_RUNTIME_CLI_BENCH_COMM_H
#define FW_RUNTIME_CLI_BENCH_COMM_H

#include <stdint.h>

#include "io/base/err.h"
#include "runtime/dist/world.h"

/* Collective over the world. Send/recv (ping-pong of rank 0 with a rank of its
 * node and with one of another node), all-reduce and all-to-all (within each
 * node at once, and over the whole world when it spans nodes), at message
 * sizes from 16 bytes to max_bytes (x4 apart), `seconds` of repetitions per
 * size at most; fits alpha and beta per collective and link class and rank 0
 * writes them to `path` and prints a table. */
int fw_bench_comm(fw_world *w, const char *path, int64_t max_bytes, double seconds, fw_err *e);

#endif
