/* furrow: one binary, several subcommands. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "runtime/cli.h"

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
    {"bench", fw_cmd_bench, "measure prefill and decode speed against memory bandwidth"},
    {"tokenize", fw_cmd_tokenize, "encode text (or a chat) with the model's tokenizer; print the ids"},
    {"detokenize", fw_cmd_detokenize, "decode token ids to text"},
    {"topo", fw_cmd_topo, "show the machine (hwloc) and where each rank is bound"},
    {"plan", fw_cmd_plan, "print the parallel layout (tp x pp x dp, stages, experts, memory) for a cluster"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: furrow <command> [options]   (furrow <command> --help for its options)\n\n"
               "DeepSeek-V3-class inference on HPC clusters.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nfurrow %s\n", PACKAGE_VERSION);
}

int main(int argc, char **argv) {
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
