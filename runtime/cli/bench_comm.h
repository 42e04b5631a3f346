/* furrow bench --comm: the alpha-beta parameters of the links between the
 * ranks of this job, measured over MPI and written as "furrow-links" JSON for
 * furrow plan --predict (partition/perf.h). */
#ifndef FW_RUNTIME_CLI_BENCH_COMM_H
#define FW_RUNTIME_CLI_BENCH_COMM_H

#include <stdint.h>

#include "io/base/err.h"
#include "runtime/dist/world.h"

/* Collective over the world. Send/recv (rank 0 to a rank of its node and to
 * one of another node, 8 messages back to back then an empty reply: seconds
 * per message), all-reduce and all-to-all (within each
 * node at once, and over the whole world when it spans nodes), at message
 * sizes from 16 bytes to max_bytes (x4 apart), about `seconds` of repetitions
 * per size (three rounds, the fastest kept); fits alpha and beta per collective and link class and rank 0
 * writes them to `path` and prints a table. */
int fw_bench_comm(fw_world *w, const char *path, int64_t max_bytes, double seconds, fw_err *e);

#endif
