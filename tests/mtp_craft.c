/* Makes a checkpoint whose MTP layer drafts well, for the speculative decoding
 * tests (random weights accept almost nothing):
 *   mtp_craft SRC DST EPS [SHARP]
 * copies SRC (BF16 or F32, with an MTP layer) to DST with every main layer's
 * o_proj and down projections scaled by EPS: the main model is then close to a
 * bigram model, its next token mostly f(last token), with EPS of context in it.
 * The MTP layer becomes that bigram model exactly: eh_proj = [I | 0] takes the
 * normed embedding of t_{i+1} alone, its own o_proj and down projections are 0,
 * and its embedding, shared_head.norm and shared_head.head are the model's. Its
 * drafts are right wherever the context does not change the main model's pick,
 * so a run accepts many drafts and rejects some. SHARP (default 1) multiplies
 * the MTP layer's head: its distribution then differs from the model's at a
 * temperature, as a test of speculative sampling wants. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/dtype.h"
#include "io/model_tensors.h"
#include "kernels/ops.h"

typedef struct ctx {
    fw_ckpt *src;
    fw_ckpt_writer *w;
    const fw_config *c;
    double eps, sharp;
    fw_err *e;
} ctx;

static bool ends(const char *s, const char *tail) {
    size_t n = strlen(s), k = strlen(tail);
    return n >= k && !strcmp(s + n - k, tail);
}

static float get(const void *d, fw_dtype t, int64_t i) {
    return t == FW_DTYPE_BF16 ? fw_bf16_to_f32(((const uint16_t *)d)[i]) : ((const float *)d)[i];
}

static void put(void *d, fw_dtype t, int64_t i, float v) {
    if (t == FW_DTYPE_BF16) ((uint16_t *)d)[i] = fw_f32_to_bf16(v);
    else ((float *)d)[i] = v;
}

/* The tensor `name` of the source, whole, in its stored bytes. */
static void *read_all(ctx *x, const char *name, fw_tensor_info *in) {
    if (fw_ckpt_info(x->src, name, in, x->e)) return NULL;
    int64_t n = 1;
    for (int i = 0; i < in->ndim; i++) n *= in->shape[i];
    void *d = malloc((size_t)n * fw_dtype_size(in->dtype) + 1);
    if (!d || fw_ckpt_read(x->src, name, NULL, NULL, d, x->e)) {
        free(d);
        return NULL;
    }
    return d;
}

static int copy(void *user, const char *name, const fw_tensor_info *info, const char *file) {
    (void)file;
    ctx *x = user;
    const int L = x->c->num_hidden_layers, l = fw_model_tensor_layer(name);
    const bool mtp = l >= L;
    char from[160] = "";
    fw_tensor_info in;
    if (mtp && ends(name, ".embed_tokens.weight")) snprintf(from, sizeof from, "model.embed_tokens.weight");
    else if (mtp && ends(name, ".shared_head.norm.weight")) snprintf(from, sizeof from, "model.norm.weight");
    else if (mtp && ends(name, ".shared_head.head.weight"))
        snprintf(from, sizeof from, x->c->tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
    void *d = read_all(x, from[0] ? from : name, &in);
    if (!d) return FW_ERR;
    if (in.dtype != FW_DTYPE_BF16 && in.dtype != FW_DTYPE_F32 && info->ndim == 2 &&
        (ends(name, "o_proj.weight") || ends(name, "down_proj.weight") || ends(name, "eh_proj.weight"))) {
        free(d);
        return fw_errf(x->e, "%s: mtp_craft takes BF16 or F32 weights", name);
    }
    int64_t n = 1;
    for (int i = 0; i < in.ndim; i++) n *= in.shape[i];
    if (ends(name, "self_attn.o_proj.weight") || ends(name, "down_proj.weight")) {
        const double f = mtp ? 0 : x->eps;
        for (int64_t i = 0; i < n; i++) put(d, in.dtype, i, (float)(f * get(d, in.dtype, i)));
    } else if (mtp && ends(name, ".shared_head.head.weight") && x->sharp != 1) {
        for (int64_t i = 0; i < n; i++) put(d, in.dtype, i, (float)(x->sharp * get(d, in.dtype, i)));
    } else if (ends(name, "eh_proj.weight")) { /* [I | 0]: the embedding half alone */
        const int64_t D = in.shape[0];
        for (int64_t r = 0; r < D; r++)
            for (int64_t k = 0; k < 2 * D; k++) put(d, in.dtype, r * 2 * D + k, k == r ? 1.0f : 0.0f);
    }
    int rc = fw_ckpt_write(x->w, name, in.dtype, in.ndim, in.shape, d, x->e);
    free(d);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: mtp_craft SRC DST EPS [SHARP]\n");
        return 2;
    }
    fw_err e;
    ctx x = {.eps = atof(argv[3]), .sharp = argc == 5 ? atof(argv[4]) : 1, .e = &e};
    if (fw_ckpt_open(&x.src, argv[1], &e)) return fprintf(stderr, "mtp_craft: %s\n", e.msg), 1;
    x.c = fw_ckpt_config(x.src);
    if (x.c->num_nextn_predict_layers < 1) return fprintf(stderr, "mtp_craft: %s has no MTP layer\n", argv[1]), 1;
    char tok[4096];
    snprintf(tok, sizeof tok, "%s/tokenizer.json", argv[1]);
    FILE *f = fopen(tok, "r");
    if (fw_ckpt_writer_open(&x.w, argv[2], x.c, &e) ||
        (f && (fclose(f), fw_ckpt_writer_add_file(x.w, tok, "tokenizer.json", &e))) ||
        fw_ckpt_foreach(x.src, copy, &x, &e) || fw_ckpt_writer_close(x.w, &e)) {
        fprintf(stderr, "mtp_craft: %s\n", e.msg);
        return 1;
    }
    fw_ckpt_close(x.src);
    return 0;
}
