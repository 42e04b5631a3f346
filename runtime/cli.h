/* Small helpers shared by the subcommands: parsing lists and sizes from flags. */
#ifndef FW_RUNTIME_CLI_H
#define FW_RUNTIME_CLI_H

#include <stdint.h>

#include "io/err.h"
#include "kernels/ops.h"

/* Parses "5,17,3" into a malloc'd array of ids in [0, limit) (limit <= 0: no
 * bound). Names `flag` in errors. */
int fw_cli_parse_ids(const char *text, const char *flag, int64_t limit, int32_t **ids,
                     int64_t *n, fw_err *e);
/* Parses a non-negative integer flag value. */
int fw_cli_parse_int(const char *text, const char *flag, int64_t min, int64_t max, int64_t *out,
                     fw_err *e);
/* Parses a float flag value. */
int fw_cli_parse_double(const char *text, const char *flag, double *out, fw_err *e);

/* Runs the subcommand argv[1] (runtime/dispatch.c); the process exit status. */
int fw_main(int argc, char **argv);

/* Subcommands: each returns the process exit status. */
int fw_cmd_convert(int argc, char **argv);
int fw_cmd_info(int argc, char **argv);
int fw_cmd_synth(int argc, char **argv);
int fw_cmd_logits(int argc, char **argv);
int fw_cmd_generate(int argc, char **argv);
int fw_cmd_generate_batch(int argc, char **argv); /* generate --input (runtime/cmd_batch.c) */
int fw_cmd_serve(int argc, char **argv);
int fw_cmd_bench(int argc, char **argv);
int fw_cmd_plan(int argc, char **argv);
int fw_cmd_topo(int argc, char **argv);
int fw_cmd_tokenize(int argc, char **argv);
int fw_cmd_detokenize(int argc, char **argv);

/* --kernels fast|ref: picks the CPU op table. */
int fw_cli_parse_kernels(const char *text, const fw_ops **ops, fw_err *e);
/* Seconds on a monotonic clock. */
double fw_now(void);

/* Options shared by the commands that run the model under mpirun: getopt_long
 * entries (spliced into each command's table), their help text, and a parser
 * for them. Codes are >= 1000 so they never clash with a command's own. */
#define FW_CLI_ENGINE_OPTIONS                                                   \
    {"tp", required_argument, 0, 1000}, {"tensor-parallel-size", required_argument, 0, 1000}, \
    {"pp", required_argument, 0, 1001}, {"pipeline-parallel-size", required_argument, 0, 1001}, \
    {"pp-transport", required_argument, 0, 1002}, {"kernels", required_argument, 0, 1003}, \
    {"verbose", no_argument, 0, 1004}, {"device", required_argument, 0, 1005}
#define FW_CLI_ENGINE_HELP                                                      \
    "  --tp N, --tensor-parallel-size N    ranks per tensor-parallel group (default: automatic)\n" \
    "  --pp N, --pipeline-parallel-size N  pipeline stages (default: automatic)\n"        \
    "  --pp-transport ucx|mpi              transfers between stages (default: ucx if built)\n" \
    "  --kernels fast|ref                  CPU kernels (default fast)\n"                    \
    "  --device cpu|cuda                   where the model runs (default cpu; cuda: one GPU per\n" \
    "                                      rank, by node-local rank; needs furrow-cuda)\n"      \
    "  --verbose                           report the bytes each rank reads\n"
struct fw_engine_opts;
/* Handles one of FW_CLI_ENGINE_OPTIONS; returns 1 if `code` was one, -1 on a bad value. */
int fw_cli_engine_option(int code, const char *arg, struct fw_engine_opts *o, fw_err *e);
/* Defaults for the engine options. */
void fw_cli_engine_defaults(struct fw_engine_opts *o);

#endif
