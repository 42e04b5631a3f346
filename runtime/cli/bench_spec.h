/* furrow bench --speculative mtp:K (runtime/cli/bench_spec.c): the decode,
 * verify and drafting step times at each batch, and the decode speed-up they
 * give at acceptance rates 0.6-0.9. */
#ifndef FW_RUNTIME_CLI_BENCH_SPEC_H
#define FW_RUNTIME_CLI_BENCH_SPEC_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/engine/engine.h"

/* On the engine's own caches (n_seqs >= every batch, context >= ctx + 2K + 1),
 * with the MTP layer loaded (en->speculative = K); collective over the replica;
 * rank 0 prints when print. */
int fw_bench_speculative(fw_engine *en, const int *batch, int n_batch, int64_t ctx, int iters, bool print,
                         fw_err *e);

#endif
