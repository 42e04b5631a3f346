/* Small helpers shared by the subcommands: parsing lists and sizes from flags. */
#ifndef FW_RUNTIME_CLI_CLI_H
#define FW_RUNTIME_CLI_CLI_H

#include <stdint.h>

#include "io/base/clock.h"
#include "io/base/err.h"
#include "kernels/ops.h"

/* Parses "5,17,3" into a malloc'd array of ids in [0, limit) (limit <= 0: no
 * bound). Names `flag` in errors. */
int fw_cli_parse_ids(const char *text, const char *flag, int64_t limit, int32_t **ids,
                     int64_t *n, fw_err *e);
/* Parses a non-negative integer flag value. */
int fw_cli_parse_int(const char *text, const char *flag, int64_t min, int64_t max, int64_t *out,
                     fw_err *e);
/* Parses a size flag value: "141G", "80GiB", "512M", "1.5T", "4096" (decimal
 * units, G = 10^9, unless "iB"). */
int fw_cli_parse_size(const char *text, const char *flag, uint64_t *out, fw_err *e);
/* Parses a float flag value. */
int fw_cli_parse_double(const char *text, const char *flag, double *out, fw_err *e);

/* Runs the subcommand argv[1] (runtime/cli/dispatch.c); the process exit status. */
int fw_main(int argc, char **argv);

/* Subcommands: each returns the process exit status. */
int fw_cmd_convert(int argc, char **argv);
int fw_cmd_info(int argc, char **argv);
int fw_cmd_synth(int argc, char **argv);
int fw_cmd_logits(int argc, char **argv);
int fw_cmd_generate(int argc, char **argv);
int fw_cmd_generate_batch(int argc, char **argv); /* generate --input (runtime/cli/cmd_batch.c) */
int fw_cmd_serve(int argc, char **argv);
int fw_cmd_route(int argc, char **argv);
int fw_cmd_bench(int argc, char **argv);
int fw_cmd_plan(int argc, char **argv);
int fw_cmd_topo(int argc, char **argv);
int fw_cmd_doctor(int argc, char **argv);
int fw_cmd_tokenize(int argc, char **argv);
int fw_cmd_detokenize(int argc, char **argv);

/* --kernels fast|ref|avx512|avx2|generic: picks the CPU op table. */
int fw_cli_parse_kernels(const char *text, const fw_ops **ops, fw_err *e);

/* getopt_long codes of the options shared by several commands; above any
 * character, so they never clash with a command's own short options. */
enum fw_cli_opt {
    FW_OPT_TP = 1000,
    FW_OPT_PP,
    FW_OPT_PP_TRANSPORT,
    FW_OPT_KERNELS,
    FW_OPT_VERBOSE,
    FW_OPT_DEVICE,
    FW_OPT_CUDA_GRAPHS,
    FW_OPT_CUDA_STREAMS,
    FW_OPT_COLLECTIVE_TIMEOUT,
    FW_OPT_NO_VERIFY,
    FW_OPT_WATCHDOG,
    FW_OPT_SPECULATIVE,
    FW_OPT_LOAD,
    FW_OPT_INDEXER,
    FW_OPT_KV_BLOCKS = 1100,
    FW_OPT_BLOCK_SIZE,
    FW_OPT_MAX_BATCH,
    FW_OPT_TOKEN_BUDGET,
    FW_OPT_MAX_CONTEXT,
    FW_OPT_PREFIX_CACHE,
};

/* Options shared by the commands that run the model under mpirun: getopt_long
 * entries (spliced into each command's table), their help text, and a parser
 * for them. */
#define FW_CLI_ENGINE_OPTIONS                                                                     \
    {"tp", required_argument, 0, FW_OPT_TP}, {"tensor-parallel-size", required_argument, 0, FW_OPT_TP}, \
    {"pp", required_argument, 0, FW_OPT_PP}, {"pipeline-parallel-size", required_argument, 0, FW_OPT_PP}, \
    {"pp-transport", required_argument, 0, FW_OPT_PP_TRANSPORT},                                  \
    {"kernels", required_argument, 0, FW_OPT_KERNELS}, {"verbose", no_argument, 0, FW_OPT_VERBOSE}, \
    {"device", required_argument, 0, FW_OPT_DEVICE}, {"cuda-graphs", required_argument, 0, FW_OPT_CUDA_GRAPHS}, \
    {"cuda-streams", required_argument, 0, FW_OPT_CUDA_STREAMS},                                  \
    {"collective-timeout", required_argument, 0, FW_OPT_COLLECTIVE_TIMEOUT},                      \
    {"no-verify", no_argument, 0, FW_OPT_NO_VERIFY}, {"watchdog", required_argument, 0, FW_OPT_WATCHDOG}, \
    {"speculative", required_argument, 0, FW_OPT_SPECULATIVE}, \
    {"load", required_argument, 0, FW_OPT_LOAD}, {"indexer", required_argument, 0, FW_OPT_INDEXER}
#define FW_CLI_ENGINE_HELP                                                      \
    "  --tp N, --tensor-parallel-size N    ranks per tensor-parallel group (default: automatic)\n" \
    "  --pp N, --pipeline-parallel-size N  pipeline stages (default: automatic)\n"        \
    "  --pp-transport ucx|mpi              transfers between stages (default: ucx if built)\n" \
    "  --device cpu|cuda                   where the model runs (default cpu; cuda: one GPU per\n" \
    "                                      rank, by node-local rank; needs furrow-cuda)\n"      \
    "  --kernels fast|ref                  fast (default) or the reference paths: the CPU's plain\n" \
    "                                      ops; on a GPU own GEMMs with bf16 activations (no\n"  \
    "                                      cuBLASLt, no FP8 activations); on a CPU also\n"       \
    "                                      avx512|avx2|generic: fast's kernels of that level\n"  \
    "                                      (fast picks the best, AVX512-BF16 where present)\n"   \
    "  --cuda-graphs on|off                decode steps as CUDA graphs (default on)\n"          \
    "  --cuda-streams 1|2                  2 (default): a layer's independent work overlaps on a\n" \
    "                                      second stream; 1: one stream (profiling, debugging)\n" \
    "  --collective-timeout S              a GPU collective stuck S seconds fails the job\n"    \
    "                                      (default 300)\n"                                     \
    "  --no-verify                         skip the checksums of the slices each rank reads (on by\n" \
    "                                      default: a damaged checkpoint is refused by name)\n"  \
    "  --load mmap|read                    mmap (default): map the weights from the checkpoint's\n" \
    "                                      files where they are stored as one aligned run (shared\n" \
    "                                      with the node's other ranks through the page cache; a\n" \
    "                                      warm start reads nothing), reading the rest; read: read\n" \
    "                                      every slice into memory of its own\n"                 \
    "  --watchdog S                        a rank making no progress for S seconds in a step (or\n" \
    "                                      waiting S seconds for a stopped rank) ends the job,\n" \
    "                                      naming it (default 300; 0: off; loading is not timed)\n" \
    "  --verbose                           report the bytes each rank reads\n"                     \
    "  --speculative mtp:K                 K = 1 or 2 draft tokens a step from the model's MTP\n"  \
    "                                      layer, verified in one forward (greedy, and sampled\n"    \
    "                                      without penalties or logprobs; CPU and GPU)\n" \
    "  --indexer fp8|exact                 DeepSeek-V3.2's index scores: fp8 (default), DeepSeek's\n" \
    "                                      arithmetic (q and k Hadamard-rotated and rounded to\n" \
    "                                      e4m3, as its inference code and the GPU do); exact:\n" \
    "                                      float32 without the rounding (transformers'; CPU only)\n"
/* --speculative mtp:K (K = 1 or 2) into *k. */
int fw_cli_parse_speculative(const char *arg, int *k, fw_err *e);
struct fw_engine_opts;
/* Handles one of FW_CLI_ENGINE_OPTIONS; returns 1 if `code` was one, -1 on a bad value. */
int fw_cli_engine_option(int code, const char *arg, struct fw_engine_opts *o, fw_err *e);
/* Defaults for the engine options. */
void fw_cli_engine_defaults(struct fw_engine_opts *o);

/* The scheduler's limits for a serving replica (serve, batch jobs). */
#define FW_CLI_RUNNER_OPTIONS                                                                    \
    {"kv-blocks", required_argument, 0, FW_OPT_KV_BLOCKS},                                       \
    {"block-size", required_argument, 0, FW_OPT_BLOCK_SIZE},                                     \
    {"max-batch", required_argument, 0, FW_OPT_MAX_BATCH},                                       \
    {"token-budget", required_argument, 0, FW_OPT_TOKEN_BUDGET},                                 \
    {"max-context", required_argument, 0, FW_OPT_MAX_CONTEXT},                                   \
    {"prefix-cache", required_argument, 0, FW_OPT_PREFIX_CACHE}
#define FW_CLI_RUNNER_HELP                                                                       \
    "  --max-context N                     prompt + generated tokens per request (default 4096)\n" \
    "  --kv-blocks N                       blocks of the paged KV cache (default: room for\n"     \
    "                                      max-batch requests of 512 tokens on the CPU; on a\n"   \
    "                                      GPU of max-context tokens, as its memory allows)\n"     \
    "  --block-size N                      positions per KV block (default 16, on a GPU 64)\n"    \
    "  --max-batch N                       requests running at once (default 32)\n"               \
    "  --token-budget N                    tokens computed per step: decodes plus prompt chunks\n" \
    "                                      (default 512)\n"                                        \
    "  --prefix-cache on|off               requests with the same prefix share its full KV blocks\n" \
    "                                      instead of computing them again; cached blocks stay\n"  \
    "                                      until the pool runs out of free ones (default on)\n"
struct fw_sched_opts;
/* 1: handled, 0: not one of FW_CLI_RUNNER_OPTIONS, -1: bad value. */
int fw_cli_runner_option(int code, const char *arg, struct fw_sched_opts *o, fw_err *e);

#endif
