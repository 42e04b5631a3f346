/* furrow bench --json-output: JSON output's cost per sampled token. */
#ifndef FW_RUNTIME_CLI_BENCH_JSON_H
#define FW_RUNTIME_CLI_BENCH_JSON_H

#include <stdint.h>

#include "io/base/err.h"
#include "io/text/tokenizer.h"

/* Prints a line per grammar (json_object, a schema): the sampler's time per
 * token with and without the mask over V tokens, the mask's share and cache
 * hits, beside step_s, the decode step of the same run. */
int fw_bench_json(const fw_tokenizer *t, int64_t V, int32_t eos, int64_t n, double step_s, fw_err *e);

#endif
