/* furrow synth: a checkpoint of random weights of any DeepSeek-V3 geometry. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "io/base/fileutil.h"
#include "io/synth.h"
#include "io/text/tokenizer.h"
#include "runtime/cli/cli.h"
#include "io/text/data.h"

#define SYNTH_FORCE_BYTES (64LL << 30)   /* above this, --force is needed */

static void usage(FILE *f) {
    fprintf(f,
            "usage: furrow synth --out DIR [options]\n\n"
            "Writes a furrow checkpoint of random weights (deterministic from --seed):\n"
            "linear weights normal(0, 1/sqrt(in)), norms 1, router bias uniform(0, 0.1).\n\n"
            "geometry (a preset or a config.json, then overrides):\n"
            "  --preset NAME           tiny (default; golden A: hidden 256, 3 layers, 16 experts),\n"
            "                          tiny-v32 (tiny with DeepSeek-V3.2's indexer: 8 heads of\n"
            "                          128, top 32 positions; its LayerNorm bias 0),\n"
            "                          small (hidden 2048, 4 layers, 32 experts: 1.7 GB BF16),\n"
            "                          deepseek-v3 (671B, FP8: ~690 GB, needs --force),\n"
            "                          kimi-k2 (1T, INT4 experts in groups of 32: ~594 GB)\n"
            "  --config FILE           start from a Hugging Face config.json instead\n"
            "  --layers N              num_hidden_layers\n"
            "  --dense N               first_k_dense_replace (leading dense layers)\n"
            "  --hidden N              hidden_size\n"
            "  --heads N               num_attention_heads\n"
            "  --experts N             n_routed_experts (0: a dense model)\n"
            "  --top-k N               num_experts_per_tok\n"
            "  --vocab N               vocab_size\n"
            "  --intermediate N        intermediate_size (dense layers)\n"
            "  --moe-intermediate N    moe_intermediate_size (one expert)\n"
            "  --mtp N                 num_nextn_predict_layers\n"
            "  --fp8 / --bf16          FP8 e4m3 weights with 128x128 block scales, or BF16\n"
            "  --weights SPEC          quantized weights instead: int4[,group=G][,experts][,head]\n"
            "                          or int8[,experts][,head] (as convert --quantize): q\n"
            "                          uniform over the range, bf16 scales giving the same\n"
            "                          spread\n\n"
            "output:\n"
            "  --out DIR               output directory (created; must not hold a checkpoint)\n"
            "  --seed N                random seed (default 1)\n"
            "  --layers-per-file N     N layers per data file (default: ~4 GiB files)\n"
            "  --tokenizer DIR|none    tokenizer.json (+ tokenizer_config.json) to put beside the\n"
            "                          weights (default: the shipped DeepSeek-V3 tokenizer)\n"
            "  --force                 write more than 64 GiB\n"
            "  -q, --quiet             no progress lines\n"
            "  -h, --help              this help\n");
}

static void print_progress(void *user, const char *line) {
    (void)user;
    fprintf(stderr, "furrow synth: %s\n", line);
}

enum {
    OPT_PRESET = 256, OPT_CONFIG, OPT_LAYERS, OPT_DENSE, OPT_HIDDEN, OPT_HEADS, OPT_EXPERTS, OPT_TOPK,
    OPT_VOCAB, OPT_INTER, OPT_MOE_INTER, OPT_MTP, OPT_FP8, OPT_BF16, OPT_SEED, OPT_LPF, OPT_FORCE,
    OPT_TOKENIZER, OPT_WEIGHTS,
};

/* Keeps routing consistent after --experts / --top-k: groups must divide the
 * experts with at least two per group, and the kept groups must hold top-k. */
static void fix_routing(fw_config *c) {
    int E = c->n_routed_experts;
    if (E <= 0) return;
    if (c->num_experts_per_tok > E) c->num_experts_per_tok = E;
    if (c->num_experts_per_tok < 1) c->num_experts_per_tok = 1;
    int g = c->n_group > 0 ? c->n_group : 1;
    while (g > 1 && (E % g != 0 || E / g < 2)) g--;
    c->n_group = g;
    if (c->topk_group > g || c->topk_group < 1) c->topk_group = g;
    while (c->topk_group < g && c->topk_group * (E / g) < c->num_experts_per_tok) c->topk_group++;
    if (c->moe_intermediate_size <= 0) c->moe_intermediate_size = c->hidden_size;
}

/* The model carries the real DeepSeek-V3 tokenizer (--tokenizer DIR, default the
 * shipped one; "none" for no tokenizer). A vocabulary smaller than the
 * tokenizer's means generate maps text ids modulo it: said here once. */
static int copy_tokenizer(const char *dir, const char *out, const fw_config *cfg, bool quiet, fw_err *e) {
    char buf[4096];
    if (dir && !strcmp(dir, "none")) return FW_OK;
    if (!dir && !(dir = fw_data_tokenizer_dir(buf, sizeof buf))) {
        if (!quiet) fprintf(stderr, "furrow synth: no shipped tokenizer found; the model has none (use --tokenizer DIR)\n");
        return FW_OK;
    }
    static const char *files[] = {"tokenizer.json", "tokenizer_config.json"};
    for (size_t i = 0; i < 2; i++) {
        char from[4200], to[4200];
        snprintf(from, sizeof from, "%s/%s", dir, files[i]);
        snprintf(to, sizeof to, "%s/%s", out, files[i]);
        if (access(from, R_OK) != 0 && i == 1) break; /* the config is optional */
        if (fw_copy_file(from, to, e)) return FW_ERR;
    }
    if (!quiet && cfg->vocab_size < FW_DEEPSEEK_V3_TOKENS)
        fprintf(stderr, "furrow synth: the tokenizer has %d tokens, this model's vocabulary %lld: text prompts map ids modulo %lld\n",
                FW_DEEPSEEK_V3_TOKENS, (long long)cfg->vocab_size, (long long)cfg->vocab_size);
    return FW_OK;
}

int fw_cmd_synth(int argc, char **argv) {
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'},          {"preset", required_argument, 0, OPT_PRESET},
        {"config", required_argument, 0, OPT_CONFIG}, {"layers", required_argument, 0, OPT_LAYERS},
        {"dense", required_argument, 0, OPT_DENSE},   {"hidden", required_argument, 0, OPT_HIDDEN},
        {"heads", required_argument, 0, OPT_HEADS},   {"experts", required_argument, 0, OPT_EXPERTS},
        {"top-k", required_argument, 0, OPT_TOPK},    {"vocab", required_argument, 0, OPT_VOCAB},
        {"intermediate", required_argument, 0, OPT_INTER},
        {"moe-intermediate", required_argument, 0, OPT_MOE_INTER},
        {"mtp", required_argument, 0, OPT_MTP},       {"fp8", no_argument, 0, OPT_FP8},
        {"bf16", no_argument, 0, OPT_BF16},           {"seed", required_argument, 0, OPT_SEED},
        {"layers-per-file", required_argument, 0, OPT_LPF},
        {"tokenizer", required_argument, 0, OPT_TOKENIZER},
        {"weights", required_argument, 0, OPT_WEIGHTS},
        {"force", no_argument, 0, OPT_FORCE},         {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
    /* Overrides are applied after the preset or config is loaded. */
    int64_t layers = -1, dense = -1, hidden = -1, heads = -1, experts = -1, topk = -1, vocab = -1, inter = -1,
            moe_inter = -1, mtp = -1, seed = 1, lpf = 0;
    const char *out = NULL, *preset = NULL, *config = NULL, *tokenizer = NULL;
    int fp8 = -1;
    bool force = false, quiet = false, quant = false;
    fw_quant_spec weights;
    fw_err e = {{0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        int64_t *dst = NULL, lo = 1, hi = 1 << 30;
        const char *flag = NULL;
        switch (c) {
        case 'o': out = optarg; break;
        case OPT_PRESET: preset = optarg; break;
        case OPT_CONFIG: config = optarg; break;
        case OPT_LAYERS: dst = &layers, flag = "--layers"; break;
        case OPT_DENSE: dst = &dense, flag = "--dense", lo = 0; break;
        case OPT_HIDDEN: dst = &hidden, flag = "--hidden"; break;
        case OPT_HEADS: dst = &heads, flag = "--heads"; break;
        case OPT_EXPERTS: dst = &experts, flag = "--experts", lo = 0; break;
        case OPT_TOPK: dst = &topk, flag = "--top-k"; break;
        case OPT_VOCAB: dst = &vocab, flag = "--vocab"; break;
        case OPT_INTER: dst = &inter, flag = "--intermediate"; break;
        case OPT_MOE_INTER: dst = &moe_inter, flag = "--moe-intermediate"; break;
        case OPT_MTP: dst = &mtp, flag = "--mtp", lo = 0; break;
        case OPT_SEED: dst = &seed, flag = "--seed", lo = 0, hi = INT64_MAX; break;
        case OPT_LPF: dst = &lpf, flag = "--layers-per-file"; break;
        case OPT_FP8: fp8 = 1; break;
        case OPT_BF16: fp8 = 0; break;
        case OPT_TOKENIZER: tokenizer = optarg; break;
        case OPT_WEIGHTS:
            if (fw_quant_spec_parse(&weights, optarg, &e)) {
                fprintf(stderr, "furrow synth: --weights: %s\n", e.msg);
                return 2;
            }
            quant = true;
            break;
        case OPT_FORCE: force = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "furrow synth: unknown option or missing value: '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
        if (dst && fw_cli_parse_int(optarg, flag, lo, hi, dst, &e)) {
            fprintf(stderr, "furrow synth: %s\n", e.msg);
            return 2;
        }
    }
    if (!out || optind < argc || (preset && config)) {
        fprintf(stderr, "furrow synth: %s\n",
                !out ? "--out is required" : optind < argc ? "no positional arguments are taken"
                                                           : "--preset and --config exclude each other");
        usage(stderr);
        return 2;
    }

    fw_config cfg;
    if (config ? fw_config_load(&cfg, config, &e)
               : fw_synth_preset(preset ? preset : "tiny", &cfg, &e)) {
        fprintf(stderr, "furrow synth: %s\n", e.msg);
        return 1;
    }
    const char *release = preset && !config ? fw_synth_preset_weights(preset) : NULL;
    if (!quant && release && fw_quant_spec_parse(&weights, release, &e) == FW_OK)
        quant = true; /* the release's own weights unless --weights says */
    if (layers >= 0) {
        cfg.num_hidden_layers = (int)layers;
        if (cfg.first_k_dense_replace > layers) cfg.first_k_dense_replace = (int)layers;
    }
    if (dense >= 0) cfg.first_k_dense_replace = (int)(dense < cfg.num_hidden_layers ? dense : cfg.num_hidden_layers);
    if (hidden >= 0) cfg.hidden_size = hidden;
    if (heads >= 0) cfg.num_attention_heads = cfg.num_key_value_heads = (int)heads;
    if (experts >= 0) cfg.n_routed_experts = (int)experts;
    if (topk >= 0) cfg.num_experts_per_tok = (int)topk;
    if (vocab >= 0) cfg.vocab_size = vocab;
    if (inter >= 0) cfg.intermediate_size = inter;
    if (moe_inter >= 0) cfg.moe_intermediate_size = moe_inter;
    if (mtp >= 0) cfg.num_nextn_predict_layers = (int)mtp;
    if (fp8 >= 0) cfg.fp8 = fp8;
    if (cfg.fp8 && cfg.fp8_block[0] <= 0) cfg.fp8_block[0] = cfg.fp8_block[1] = 128;
    if (cfg.intermediate_size <= 0) cfg.intermediate_size = 4 * cfg.hidden_size;
    fix_routing(&cfg);
    if (cfg.bos_token_id >= cfg.vocab_size) cfg.bos_token_id = 0;
    if (cfg.eos_token_id >= cfg.vocab_size) cfg.eos_token_id = cfg.vocab_size > 1 ? 1 : 0;

    int rc = 1;
    if (fw_synth_config_json(&cfg, &e)) {
        fprintf(stderr, "furrow synth: the resulting config is not valid: %s\n", e.msg);
        goto done;
    }
    int64_t bytes = fw_synth_bytes(&cfg, quant ? &weights : NULL);
    if (bytes > SYNTH_FORCE_BYTES && !force) {
        fprintf(stderr, "furrow synth: this model is %.1f GB; pass --force to write it\n", (double)bytes / 1e9);
        goto done;
    }
    fw_synth_opts o = {.layers_per_file = (int)lpf, .progress = quiet ? NULL : print_progress,
                       .weights = quant ? &weights : NULL};
    double t0 = fw_now();
    if (fw_synth_with(&cfg, (uint64_t)seed, out, &o, &e)) {
        fprintf(stderr, "furrow synth: %s\n", e.msg);
        goto done;
    }
    if (copy_tokenizer(tokenizer, out, &cfg, quiet, &e)) {
        fprintf(stderr, "furrow synth: %s\n", e.msg);
        goto done;
    }
    if (!quiet)
        fprintf(stderr, "furrow synth: wrote %s (%.2f GB) in %.1f s\n", out, (double)bytes / 1e9, fw_now() - t0);
    rc = 0;
done:
    fw_config_free(&cfg);
    return rc;
}
