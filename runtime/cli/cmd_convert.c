/* furrow convert: a Hugging Face DeepSeek-V3 checkpoint -> a furrow checkpoint. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "io/convert.h"
#include "runtime/cli/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: furrow convert --hf DIR --out DIR [options]\n\n"
            "Converts a Hugging Face DeepSeek-V3 checkpoint (config.json and safetensors\n"
            "shards, BF16 or FP8 with 128x128 block scales) into a furrow checkpoint: HDF5\n"
            "files chunked for tensor-parallel reads (io/FORMAT.md). Every tensor is checked\n"
            "against config.json before anything is written; FP8 stays FP8. tokenizer.json\n"
            "and tokenizer_config.json are copied along when present.\n\n"
            "options:\n"
            "  --hf DIR               the Hugging Face checkpoint directory\n"
            "  --out DIR              output directory (created; must not hold a checkpoint)\n"
            "  --layers-per-file N    N layers per data file (default: pack layers into\n"
            "                         files of about 4 GiB)\n"
            "  -q, --quiet            no progress lines\n"
            "  -h, --help             this help\n");
}

static void print_progress(void *user, const char *line) {
    (void)user;
    fprintf(stderr, "furrow convert: %s\n", line);
}

static void print_warning(void *user, const char *line) {
    (void)user;
    fprintf(stderr, "furrow convert: warning: %s\n", line);
}

int fw_cmd_convert(int argc, char **argv) {
    static const struct option opts[] = {{"hf", required_argument, 0, 'i'},
                                         {"out", required_argument, 0, 'o'},
                                         {"layers-per-file", required_argument, 0, 'l'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *hf = NULL, *out = NULL;
    bool quiet = false;
    int64_t lpf = 0;
    fw_err e = {{0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case 'i': hf = optarg; break;
        case 'o': out = optarg; break;
        case 'l':
            if (fw_cli_parse_int(optarg, "--layers-per-file", 1, 1000000, &lpf, &e)) {
                fprintf(stderr, "furrow convert: %s\n", e.msg);
                return 2;
            }
            break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "furrow convert: unknown option or missing value: '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (!hf || !out || optind < argc) {
        fprintf(stderr, "furrow convert: --hf and --out are required%s\n",
                optind < argc ? " (and it takes no positional arguments)" : "");
        usage(stderr);
        return 2;
    }
    fw_convert_opts o = {.layers_per_file = (int)lpf, .progress = quiet ? NULL : print_progress,
                         .warn = print_warning};
    double t0 = fw_now();
    if (fw_convert(hf, out, &o, &e)) {
        fprintf(stderr, "furrow convert: %s\n", e.msg);
        return 1;
    }
    if (!quiet) fprintf(stderr, "furrow convert: wrote %s in %.1f s\n", out, fw_now() - t0);
    return 0;
}
