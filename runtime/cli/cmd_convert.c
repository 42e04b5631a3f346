/* furrow convert: a Hugging Face DeepSeek-V3 checkpoint -> a furrow checkpoint. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "io/convert.h"
#include "io/quant_spec.h"
#include "runtime/cli/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: furrow convert --hf DIR --out DIR [options]\n\n"
            "Converts a Hugging Face DeepSeek-V3 checkpoint (config.json and safetensors\n"
            "shards, BF16 or FP8 with 128x128 block scales) into a furrow checkpoint: HDF5\n"
            "files chunked for tensor-parallel reads (io/FORMAT.md). Every tensor is checked\n"
            "against config.json before anything is written; FP8 stays FP8. tokenizer.json\n"
            "and tokenizer_config.json are copied along when present.\n\n"
            "With --quantize, the linear weights of a BF16 or FP8 checkpoint (FP8 first\n"
            "dequantized with its block scales) are stored quantized instead: symmetric,\n"
            "round to nearest, one bf16 scale per row and group = absmax / 7.5 (INT4) or\n"
            "absmax / 127.5 (INT8), as compressed-tensors computes them. SPEC:\n"
            "  int4[,group=G][,experts][,head]   INT4, G input columns per scale (default\n"
            "                                    128, a multiple of 8 dividing every\n"
            "                                    quantized weight's)\n"
            "  int8[,experts][,head]             INT8, one scale per output channel\n"
            "  experts: only the routed experts; otherwise every projection but the\n"
            "  output head. head: the output head (lm_head) as well; by default it stays\n"
            "  as it is, as compressed-tensors checkpoints keep it. Embeddings, norms and\n"
            "  the router stay as they are.\n"
            "The relative RMS error of each weight and the sizes are reported at the end\n"
            "and recorded in the checkpoint's source (furrow info).\n\n"
            "options:\n"
            "  --hf DIR               the Hugging Face checkpoint directory\n"
            "  --out DIR              output directory (created; must not hold a checkpoint)\n"
            "  --layers-per-file N    N layers per data file (default: pack layers into\n"
            "                         files of about 4 GiB)\n"
            "  --quantize SPEC        quantize the weights as SPEC says (above)\n"
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

static void print_summary(const fw_quant_spec *q, const fw_quant_summary *s) {
    char spec[64];
    fw_quant_spec_str(q, spec, sizeof spec);
    printf("quantized %lld weights to %s: relative RMS error min %.4f, median %.4f, max %.4f (%s)\n",
           (long long)s->tensors, spec, s->rel_min, s->rel_median, s->rel_max, s->worst);
    printf("bytes: those weights %.2f MB -> %.2f MB; all tensors %.2f MB -> %.2f MB\n", (double)s->bytes_before / 1e6,
           (double)s->bytes_after / 1e6, (double)s->total_before / 1e6, (double)s->total_after / 1e6);
}

int fw_cmd_convert(int argc, char **argv) {
    static const struct option opts[] = {{"hf", required_argument, 0, 'i'},
                                         {"out", required_argument, 0, 'o'},
                                         {"layers-per-file", required_argument, 0, 'l'},
                                         {"quantize", required_argument, 0, 'Q'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *hf = NULL, *out = NULL;
    bool quiet = false, quantize = false;
    fw_quant_spec spec;
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
        case 'Q':
            if (fw_quant_spec_parse(&spec, optarg, &e)) {
                fprintf(stderr, "furrow convert: --quantize: %s\n", e.msg);
                return 2;
            }
            quantize = true;
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
    fw_quant_summary sum = {0};
    fw_convert_opts o = {.layers_per_file = (int)lpf, .progress = quiet ? NULL : print_progress,
                         .warn = print_warning, .quantize = quantize ? &spec : NULL, .summary = &sum};
    double t0 = fw_now();
    if (fw_convert(hf, out, &o, &e)) {
        fprintf(stderr, "furrow convert: %s\n", e.msg);
        return 1;
    }
    if (quantize) print_summary(&spec, &sum);
    if (!quiet) fprintf(stderr, "furrow convert: wrote %s in %.1f s\n", out, fw_now() - t0);
    return 0;
}
