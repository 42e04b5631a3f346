/* furrow bench --speculative mtp:K (runtime/cli/bench_spec.c): the decode,
 * verify and drafting step times at each batch, and the decode speed-up they
 * give at acceptance rates 0.6-0.9; first, the drafts' acceptance along a few
 * greedy steps of the model itself. */
#ifndef FW_RUNTIME_CLI_BENCH_SPEC_H
#define FW_RUNTIME_CLI_BENCH_SPEC_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/engine/engine.h"

/* Greedy steps over which the drafts' acceptance is counted first. */
#define FW_BENCH_SPEC_STEPS 32

/* On the engine's own caches (n_seqs >= every batch, context >= ctx +
 * FW_BENCH_SPEC_STEPS + 2K + 1),
 * with the MTP layer loaded (en->speculative = K); collective over the replica;
 * rank 0 prints when print. */
int fw_bench_speculative(fw_engine *en, const int *batch, int n_batch, int64_t ctx, int iters, bool print,
                         fw_err *e);

#endif
