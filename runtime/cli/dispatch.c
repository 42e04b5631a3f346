/* furrow's subcommands, dispatched from argv[1]; shared by `furrow` and
 * `furrow-cuda` (which registers the CUDA backend first). */
#include "config.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "runtime/cli/cli.h"
#include "runtime/model/backend.h"

typedef struct fw_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} fw_command;

static const fw_command commands[] = {
    {"convert", fw_cmd_convert, "convert a Hugging Face DeepSeek checkpoint to furrow's HDF5 format"},
    {"info", fw_cmd_info, "summarise a furrow checkpoint; --verify checks every checksum"},
    {"synth", fw_cmd_synth, "write a checkpoint of random weights of any DeepSeek-V3 geometry"},
    {"logits", fw_cmd_logits, "run a full forward over token ids and write the logits (HDF5)"},
    {"generate", fw_cmd_generate, "generate tokens from a prompt (greedy by default)"},
    {"serve", fw_cmd_serve, "serve an OpenAI-compatible HTTP API (rank 0 of any layout under mpirun)"},
    {"route", fw_cmd_route, "spread OpenAI requests over several serve replicas (least-loaded, health, retries)"},
    {"bench", fw_cmd_bench, "measure prefill and decode speed against memory bandwidth"},
    {"tokenize", fw_cmd_tokenize, "encode text (or a chat) with the model's tokenizer; print the ids"},
    {"detokenize", fw_cmd_detokenize, "decode token ids to text"},
    {"topo", fw_cmd_topo, "show the machine (hwloc) and where each rank is bound"},
    {"doctor", fw_cmd_doctor, "check this node before a job (kernel settings, limits, disk, MPI, GPUs)"},
    {"plan", fw_cmd_plan, "print the parallel layout (tp x pp x dp, stages, experts, memory) for a cluster"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: furrow <command> [options]   (furrow <command> --help for its options)\n\n"
               "DeepSeek-V3-class inference on HPC clusters.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nfurrow %s\n", PACKAGE_VERSION);
}

/* `--device cuda` in a binary without the CUDA backend: run furrow-cuda from the
 * same folder in this process's place (before MPI starts), with the same argv.
 * `plan` only uses the flag for its estimate and runs anywhere. */
static int hand_to_device_binary(char **argv) {
    bool wants = false;
    if (argv[0] && argv[1] && !strcmp(argv[1], "plan")) return 0;
    for (char **a = argv; *a; a++)
        if ((!strcmp(*a, "--device") && a[1] && !strcmp(a[1], "cuda")) || !strcmp(*a, "--device=cuda")) wants = true;
    if (!wants || fw_backend_find("cuda")) return 0;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 16);
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        strcpy(slash ? slash + 1 : self, "furrow-cuda");
        if (access(self, X_OK) == 0) {
            execv(self, argv);
            fprintf(stderr, "furrow: --device cuda: could not run %s\n", self);
            return 1;
        }
    }
    fprintf(stderr, "furrow: --device cuda needs furrow-cuda next to furrow: this build has no CUDA backend "
                    "(./configure --with-cuda)\n");
    return 1;
}

int fw_main(int argc, char **argv) {
    if (hand_to_device_binary(argv)) return 1;
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("furrow %s\n", PACKAGE_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "furrow: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
