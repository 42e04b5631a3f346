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

/* Subcommands: each returns the process exit status. */
int fw_cmd_convert(int argc, char **argv);
int fw_cmd_info(int argc, char **argv);
int fw_cmd_synth(int argc, char **argv);
int fw_cmd_logits(int argc, char **argv);
int fw_cmd_generate(int argc, char **argv);
int fw_cmd_bench(int argc, char **argv);

/* --kernels fast|ref: picks the CPU op table. */
int fw_cli_parse_kernels(const char *text, const fw_ops **ops, fw_err *e);
/* Seconds on a monotonic clock. */
double fw_now(void);

#endif
