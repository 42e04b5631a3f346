/* furrow info: what a furrow checkpoint holds; --verify checks every checksum. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/checkpoint.h"
#include "io/model_tensors.h"
#include "runtime/cli/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: furrow info DIR [options]\n\n"
            "Summarises the furrow checkpoint in DIR: the model's geometry, parameter\n"
            "count, bytes by dtype, and its data files with their layer ranges.\n\n"
            "options:\n"
            "  --verify     recompute every tensor's checksum (reads everything)\n"
            "  --tensors    list every tensor: name, dtype, shape, file\n"
            "  -h, --help   this help\n");
}

#define MAX_DTYPES 16

typedef struct info_file {
    char *name;
    int first, last;            /* layer range; -1: none */
    bool base;                  /* holds tensors outside the layers */
} info_file;

typedef struct info_acc {
    const fw_config *cfg;
    bool list;
    int64_t tensors, params, mtp_params;
    int64_t bytes[MAX_DTYPES];
    int64_t int4_weights;       /* INT4 weights (their "_packed" tensors) */
    char int4_label[32];        /* their `quantization`, or "several group sizes" */
    int64_t int8_weights;       /* INT8 weights (their "_int8" tensors) */
    char int8_label[32];        /* likewise */
    info_file *files;
    int n_files;
} info_acc;

static void human(char *buf, size_t size, double v, const char *const *units) {
    int u = 0;
    while (v >= 1000 && units[u + 1]) v /= 1000, u++;
    snprintf(buf, size, u ? "%.2f %s" : "%.0f%s", v, units[u]);
}

static void human_bytes(char *buf, size_t size, double v) {
    static const char *const units[] = {" B", "KB", "MB", "GB", "TB", NULL};
    human(buf, size, v, units);
}

static void human_count(char *buf, size_t size, double v) {
    static const char *const units[] = {"", "K", "M", "B", "T", NULL};
    human(buf, size, v, units);
}

static int visit(void *user, const char *name, const fw_tensor_info *in, const char *file) {
    info_acc *a = user;
    int64_t n = 1;
    for (int i = 0; i < in->ndim; i++) n *= in->shape[i];
    size_t len = strlen(name);
    bool scale = (len > 10 && !strcmp(name + len - 10, "_scale_inv")) || (len > 6 && !strcmp(name + len - 6, "_scale"));
    int layer = fw_model_tensor_layer(name);
    a->tensors++;
    if (len > 7 && !strcmp(name + len - 7, "_packed")) { /* eight INT4 parameters per word */
        n *= 8;
        if (a->int4_weights++ == 0) snprintf(a->int4_label, sizeof a->int4_label, "%s", in->quant);
        else if (strcmp(a->int4_label, in->quant) != 0) snprintf(a->int4_label, sizeof a->int4_label, "several group sizes");
    }
    if (len > 5 && !strcmp(name + len - 5, "_int8")) {
        if (a->int8_weights++ == 0) snprintf(a->int8_label, sizeof a->int8_label, "%s", in->quant);
        else if (strcmp(a->int8_label, in->quant) != 0) snprintf(a->int8_label, sizeof a->int8_label, "several group sizes");
    }
    if (!scale) {
        a->params += n;
        if (layer >= a->cfg->num_hidden_layers) a->mtp_params += n;
    }
    if ((int)in->dtype < MAX_DTYPES) a->bytes[in->dtype] += (n / (len > 7 && !strcmp(name + len - 7, "_packed") ? 8 : 1)) * (int64_t)fw_dtype_size(in->dtype);

    info_file *f = NULL;
    for (int i = 0; i < a->n_files && !f; i++)
        if (!strcmp(a->files[i].name, file)) f = &a->files[i];
    if (!f) {
        info_file *v = realloc(a->files, (size_t)(a->n_files + 1) * sizeof *v);
        if (!v) return 1;
        a->files = v;
        f = &v[a->n_files++];
        *f = (info_file){.name = strdup(file), .first = -1, .last = -1};
        if (!f->name) return 1;
    }
    if (layer < 0) f->base = true;
    else {
        if (f->first < 0 || layer < f->first) f->first = layer;
        if (layer > f->last) f->last = layer;
    }
    if (a->list) {
        printf("  %-64s %-8s [", name, fw_dtype_name(in->dtype));
        for (int i = 0; i < in->ndim; i++) printf("%s%lld", i ? ", " : "", (long long)in->shape[i]);
        printf("]  %s\n", file);
    }
    return 0;
}

static int cmp_file(const void *x, const void *y) {
    const info_file *a = x, *b = y;
    if (a->base != b->base) return a->base ? -1 : 1;
    return a->first - b->first;
}

static void print_summary(const char *dir, fw_ckpt *ck, const info_acc *a) {
    const fw_config *c = fw_ckpt_config(ck);
    int L = c->num_hidden_layers, moe = 0;
    for (int l = 0; l < L; l++) moe += fw_config_layer_is_moe(c, l);
    char b1[32], b2[32], b3[32];
    printf("checkpoint   %s (furrow checkpoint, format_version %d)\n", dir, FW_CKPT_FORMAT_VERSION);
    if (*fw_ckpt_source(ck)) printf("source       %s\n", fw_ckpt_source(ck));
    printf("layers       %d (%d dense, %d MoE)", L, L - moe, moe);
    if (c->num_nextn_predict_layers) printf(" + %d MTP (the draft of --speculative mtp:K)", c->num_nextn_predict_layers);
    printf("\n");
    printf("dims         hidden %lld, vocab %lld, dense FFN %lld%s\n", (long long)c->hidden_size,
           (long long)c->vocab_size, (long long)c->intermediate_size, c->tie_word_embeddings ? ", tied embeddings" : "");
    printf("attention    MLA, %d heads; ", c->num_attention_heads);
    if (c->q_lora_rank) printf("q_lora %d, ", c->q_lora_rank);
    else printf("q_proj (no q_lora), ");
    printf("kv_lora %d; qk %d + %d rope, v %d\n", c->kv_lora_rank, c->qk_nope_head_dim, c->qk_rope_head_dim,
           c->v_head_dim);
    if (fw_config_has_indexer(c))
        printf("sparse       DeepSeek-V3.2 indexer: %d heads of %d, top %d positions per query\n", c->index_n_heads,
               c->index_head_dim, c->index_topk);
    if (c->n_routed_experts)
        printf("experts      %d routed, top-%d (%d groups, top-%d), %d shared; expert FFN %lld\n",
               c->n_routed_experts, c->num_experts_per_tok, c->n_group, c->topk_group, c->n_shared_experts,
               (long long)c->moe_intermediate_size);
    const char *rest = c->fp8 ? "FP8 e4m3 with 128x128 block scales (quantization fp8_e4m3_block128)" : "unquantized";
    if (a->int4_weights || a->int8_weights) {
        printf("weights     ");
        if (a->int4_weights)
            printf(" %lld INT4 (symmetric, %s; I32 words of 8 values + BF16 group scales);", (long long)a->int4_weights,
                   a->int4_label);
        if (a->int8_weights)
            printf(" %lld INT8 (symmetric, %s; I8 values + BF16 scales);", (long long)a->int8_weights, a->int8_label);
        printf(" the rest %s\n", rest);
    } else {
        printf("weights      %s\n", rest);
    }
    human_count(b1, sizeof b1, (double)a->params);
    printf("parameters   %lld (%s) total", (long long)a->params, b1);
    if (a->mtp_params) {
        human_count(b2, sizeof b2, (double)(a->params - a->mtp_params));
        printf(", %s without MTP", b2);
    }
    human_count(b3, sizeof b3, (double)fw_model_active_param_count(c));
    printf("; %s activated per token\n", b3);
    int64_t total = 0;
    printf("bytes       ");
    for (int t = 0; t < MAX_DTYPES; t++) {
        if (!a->bytes[t]) continue;
        human_bytes(b1, sizeof b1, (double)a->bytes[t]);
        printf(" %s %s (%lld),", fw_dtype_name((fw_dtype)t), b1, (long long)a->bytes[t]);
        total += a->bytes[t];
    }
    human_bytes(b1, sizeof b1, (double)total);
    printf(" total %s\n", b1);
    printf("files        %d data files + furrow.h5 (%lld tensors)\n", a->n_files, (long long)a->tensors);
    for (int i = 0; i < a->n_files; i++) {
        const info_file *f = &a->files[i];
        char path[4200], range[64] = "";
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, f->name);
        human_bytes(b1, sizeof b1, stat(path, &st) == 0 ? (double)st.st_size : 0);
        int n = f->base ? snprintf(range, sizeof range, "embed, norm, head") : 0;
        if (f->first >= 0 && f->first == f->last)
            snprintf(range + n, sizeof range - (size_t)n, "%slayer %d%s", n ? "; " : "", f->first,
                     f->first >= L ? " (MTP)" : "");
        else if (f->first >= 0)
            snprintf(range + n, sizeof range - (size_t)n, "%slayers %d-%d%s", n ? "; " : "", f->first, f->last,
                     f->first >= L ? " (MTP)" : "");
        printf("  %-22s %10s   %s\n", f->name, b1, range);
    }
}

int fw_cmd_info(int argc, char **argv) {
    static const struct option opts[] = {{"verify", no_argument, 0, 'v'},
                                         {"tensors", no_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    bool verify = false, list = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'v': verify = true; break;
        case 't': list = true; break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "furrow info: unknown option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "furrow info: expected one checkpoint directory\n");
        usage(stderr);
        return 2;
    }
    const char *dir = argv[optind];
    fw_err e = {{0}};
    fw_ckpt *ck;
    if (fw_ckpt_open(&ck, dir, &e)) {
        fprintf(stderr, "furrow info: %s\n", e.msg);
        return 1;
    }
    info_acc a = {.cfg = fw_ckpt_config(ck), .list = list};
    if (list) printf("tensors\n");
    int rc = fw_ckpt_foreach(ck, visit, &a, &e);
    if (rc) {
        if (rc != FW_ERR) snprintf(e.msg, sizeof e.msg, "out of memory");
        fprintf(stderr, "furrow info: %s\n", e.msg);
    } else {
        qsort(a.files, (size_t)a.n_files, sizeof *a.files, cmp_file);
        print_summary(dir, ck, &a);
        if (verify) {
            fflush(stdout);
            double t0 = fw_now();
            if (fw_ckpt_verify(ck, &e)) {
                printf("verify       FAILED\n");
                fprintf(stderr, "furrow info: verify: %s\n", e.msg);
                rc = 1;
            } else {
                printf("verify       OK: %lld checksums match (%.1f s)\n", (long long)a.tensors, fw_now() - t0);
            }
        }
    }
    for (int i = 0; i < a.n_files; i++) free(a.files[i].name);
    free(a.files);
    fw_ckpt_close(ck);
    return rc ? 1 : 0;
}
