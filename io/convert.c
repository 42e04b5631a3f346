#include "io/convert.h"
#include "io/base/fileutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/config.h"
#include "io/model_tensors.h"
#include "io/safetensors.h"

static const char *const tokenizer_files[] = {"tokenizer.json", "tokenizer_config.json"};
#define N_TOKENIZER_FILES 2

typedef struct conv {
    const char *hf, *out;
    const fw_convert_opts *o;
    fw_config cfg;
    fw_st_dir st;
    bool st_open;
    fw_model_tensor *m;
    int64_t n;
    bool *skip_layer;           /* MTP layers absent from the input */
} conv;

static void say(void (*fn)(void *, const char *), void *user, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(void (*fn)(void *, const char *), void *user, const char *fmt, ...) {
    if (!fn) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fn(user, line);
}

static void shape_str(char *buf, size_t size, int nd, const int64_t *v) {
    int n = snprintf(buf, size, "[");
    for (int i = 0; i < nd && n > 0 && (size_t)n < size; i++)
        n += snprintf(buf + n, size - (size_t)n, "%s%lld", i ? ", " : "", (long long)v[i]);
    if (n > 0 && (size_t)n < size) snprintf(buf + n, size - (size_t)n, "]");
}

static bool same_shape(const fw_st_tensor *t, int nd, const int64_t *shape) {
    if (t->ndim != nd) return false;
    for (int i = 0; i < nd; i++)
        if (t->shape[i] != shape[i]) return false;
    return true;
}

static int err_shape(conv *c, const fw_st_tensor *t, int nd, const int64_t *want, const char *dims, fw_err *e) {
    char got[160], exp[160];
    shape_str(got, sizeof got, t->ndim, t->shape);
    shape_str(exp, sizeof exp, nd, want);
    return fw_errf(e, "tensor '%s' has shape %s in %s, but config.json implies %s = %s", t->name, got,
                   fw_st_dir_file_of(&c->st, t), dims, exp);
}

/* One expected tensor: present, right shape, allowed dtype (and its scales). */
static int check_tensor(conv *c, const fw_model_tensor *m, const fw_st_tensor *t, fw_err *e) {
    if (!same_shape(t, m->ndim, m->shape)) return err_shape(c, t, m->ndim, m->shape, m->dims, e);
    const char *file = fw_st_dir_file_of(&c->st, t);
    if (m->quantized && c->cfg.fp8) {
        if (t->dtype != FW_DTYPE_F8_E4M3)
            return fw_errf(e, "tensor '%s' is %s in %s, but config.json's quantization_config says FP8: expected "
                              "F8_E4M3 with a weight_scale_inv", t->name, fw_dtype_name(t->dtype), file);
        char sname[sizeof m->name + 16];
        snprintf(sname, sizeof sname, "%s_scale_inv", m->name);
        const fw_st_tensor *s = fw_st_dir_find(&c->st, sname);
        int64_t want[2];
        fw_model_tensor_scale_shape(&c->cfg, m->shape, want);
        if (!s) return fw_errf(e, "tensor '%s' is F8_E4M3 but '%s' (its block scales) is missing from %s", t->name,
                               sname, c->hf);
        if (!same_shape(s, 2, want))
            return err_shape(c, s, 2, want, "[ceil(rows / 128), ceil(cols / 128)] of its weight", e);
        if (s->dtype != FW_DTYPE_F32)
            return fw_errf(e, "tensor '%s' is %s in %s; block scales must be F32", sname, fw_dtype_name(s->dtype),
                           fw_st_dir_file_of(&c->st, s));
        return FW_OK;
    }
    if (t->dtype == FW_DTYPE_BF16 || t->dtype == FW_DTYPE_F32) return FW_OK;
    if (t->dtype == FW_DTYPE_F8_E4M3)
        return fw_errf(e, "tensor '%s' is F8_E4M3 in %s, but %s (config.json has no FP8 quantization_config)",
                       t->name, file, m->quantized ? "the model is not quantized" : "this tensor is never quantized");
    if (t->dtype == FW_DTYPE_F16)
        return fw_errf(e, "tensor '%s' is F16 in %s: furrow keeps BF16 or F32 as stored and does not convert F16 "
                          "(re-save the checkpoint in bfloat16)", t->name, file);
    return fw_errf(e, "tensor '%s' is %s in %s; expected BF16 or F32", t->name, fw_dtype_name(t->dtype), file);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Input tensors the model does not use: reported and skipped. */
static int report_unknown(conv *c, fw_err *e) {
    char **names = malloc((size_t)(2 * c->n + 1) * sizeof *names);
    char *scales = malloc((size_t)(c->n + 1) * (sizeof c->m->name + 16));
    if (!names || !scales) {
        free(names);
        free(scales);
        return fw_errf(e, "%s: out of memory", c->hf);
    }
    int64_t k = 0;
    for (int64_t i = 0; i < c->n; i++) {
        names[k++] = c->m[i].name;
        if (c->m[i].quantized && c->cfg.fp8) {
            char *s = scales + i * (int64_t)(sizeof c->m->name + 16);
            snprintf(s, sizeof c->m->name + 16, "%s_scale_inv", c->m[i].name);
            names[k++] = s;
        }
    }
    qsort(names, (size_t)k, sizeof *names, cmp_str);
    int64_t skipped = 0;
    for (int i = 0; i < c->st.n_tensors; i++) {
        const char *name = c->st.tensors[i]->name;
        if (bsearch(&name, names, (size_t)k, sizeof *names, cmp_str)) continue;
        if (skipped++ < 20)
            say(c->o ? c->o->warn : NULL, c->o ? c->o->user : NULL, "skipping tensor '%s' (%s): not part of the model",
                name, fw_st_dir_file_of(&c->st, c->st.tensors[i]));
    }
    if (skipped > 20)
        say(c->o ? c->o->warn : NULL, c->o ? c->o->user : NULL, "skipped %lld unknown tensors in all",
            (long long)skipped);
    free(names);
    free(scales);
    return FW_OK;
}

static int check_all(conv *c, fw_err *e) {
    const int L = c->cfg.num_hidden_layers, nl = L + c->cfg.num_nextn_predict_layers;
    if (!(c->skip_layer = calloc((size_t)nl + 1, sizeof *c->skip_layer))) return fw_errf(e, "out of memory");
    /* An MTP layer is converted when any of its tensors is there; then all must be. */
    for (int l = L; l < nl; l++) {
        bool any = false;
        for (int64_t i = 0; i < c->n && !any; i++) any = c->m[i].layer == l && fw_st_dir_find(&c->st, c->m[i].name);
        c->skip_layer[l] = !any;
        if (!any)
            say(c->o ? c->o->warn : NULL, c->o ? c->o->user : NULL,
                "MTP layer %d (num_nextn_predict_layers) is not in %s: converting without it", l, c->hf);
    }
    for (int64_t i = 0; i < c->n; i++) {
        const fw_model_tensor *m = &c->m[i];
        if (m->layer >= 0 && c->skip_layer[m->layer]) continue;
        const fw_st_tensor *t = fw_st_dir_find(&c->st, m->name);
        if (!t) {
            char exp[64];
            shape_str(exp, sizeof exp, m->ndim, m->shape);
            return fw_errf(e, "tensor '%s' %s is missing from %s (config.json: %d layers%s)", m->name, exp, c->hf,
                           L, m->mtp ? " + MTP" : "");
        }
        if (check_tensor(c, m, t, e)) return FW_ERR;
    }
    return report_unknown(c, e);
}

static int copy_tokenizer(conv *c, fw_ckpt_writer *w, fw_err *e) {
    for (int i = 0; i < N_TOKENIZER_FILES; i++) {
        char from[4200];
        snprintf(from, sizeof from, "%s/%s", c->hf, tokenizer_files[i]);
        struct stat st;
        if (lstat(from, &st) != 0) continue;
        if (fw_ckpt_writer_add_file(w, from, tokenizer_files[i], e)) return FW_ERR;
    }
    return FW_OK;
}

static int write_tensor(conv *c, fw_ckpt_writer *w, const char *name, fw_err *e) {
    const fw_st_tensor *t = fw_st_dir_find(&c->st, name);
    return fw_ckpt_write(w, t->name, t->dtype, t->ndim, t->shape, t->data, e);
}

static int write_all(conv *c, fw_ckpt_writer *w, fw_err *e) {
    const int nl = c->cfg.num_hidden_layers + c->cfg.num_nextn_predict_layers;
    char sname[sizeof c->m->name + 16];
    for (int64_t i = 0; i < c->n; i++) {
        const fw_model_tensor *m = &c->m[i];
        if (m->layer >= 0 && c->skip_layer[m->layer]) continue;
        if (write_tensor(c, w, m->name, e)) return FW_ERR;
        if (m->quantized && c->cfg.fp8) {
            snprintf(sname, sizeof sname, "%s_scale_inv", m->name);
            if (write_tensor(c, w, sname, e)) return FW_ERR;
        }
        if (m->layer >= 0 && (i + 1 == c->n || c->m[i + 1].layer != m->layer))
            say(c->o ? c->o->progress : NULL, c->o ? c->o->user : NULL, "layer %d/%d%s converted", m->layer + 1, nl,
                m->mtp ? " (MTP)" : "");
    }
    return FW_OK;
}

static int convert(conv *c, fw_err *e) {
    char path[4200];
    struct stat st;
    if (stat(c->hf, &st) != 0 || !S_ISDIR(st.st_mode))
        return fw_errf(e, "%s: not a directory (expected a Hugging Face checkpoint directory)", c->hf);
    snprintf(path, sizeof path, "%s/config.json", c->hf);
    if (stat(path, &st) != 0)
        return fw_errf(e, "%s: no config.json (a Hugging Face checkpoint holds config.json and *.safetensors)",
                       c->hf);
    /* Fail fast, before reading anything big, when the output is taken. */
    snprintf(path, sizeof path, "%s/furrow.h5", c->out);
    if (stat(path, &st) == 0)
        return fw_errf(e, "%s already exists: %s holds a furrow checkpoint (remove it or choose another output "
                          "directory)", path, c->out);
    snprintf(path, sizeof path, "%s/config.json", c->hf);
    if (fw_config_load(&c->cfg, path, e)) return FW_ERR;
    if (fw_st_dir_open(&c->st, c->hf, e)) return FW_ERR;
    c->st_open = true;
    /* Every tensor but the optional MTP layers' must be in the shards: a config
     * whose products ask for more is refused before anything is sized from it. */
    fw_config no_mtp = c->cfg;
    no_mtp.num_nextn_predict_layers = 0;
    int64_t need = fw_model_tensor_count(&no_mtp);
    if (need > c->st.n_tensors)
        return fw_errf(e, "%s/config.json describes %lld tensors (num_hidden_layers %d, n_routed_experts %lld), "
                          "but the checkpoint's shards hold %d: the config does not match the weights", c->hf,
                       (long long)need, c->cfg.num_hidden_layers, (long long)c->cfg.n_routed_experts,
                       c->st.n_tensors);
    if (fw_model_tensors(&c->cfg, &c->m, &c->n, e) || check_all(c, e)) return FW_ERR;

    fw_ckpt_writer *w;
    if (fw_ckpt_writer_open(&w, c->out, &c->cfg, e)) return FW_ERR;
    char src[4200];
    char *abs = realpath(c->hf, NULL);
    snprintf(src, sizeof src, "Hugging Face checkpoint %s", abs ? abs : c->hf);
    free(abs);
    int rc = fw_ckpt_writer_set_source(w, src, e);
    if (rc == FW_OK && c->o && c->o->layers_per_file > 0)
        rc = fw_ckpt_writer_set_layers_per_file(w, c->o->layers_per_file, e);
    if (rc == FW_OK) rc = write_all(c, w, e);
    if (rc == FW_OK) rc = copy_tokenizer(c, w, e);
    if (rc != FW_OK) {
        fw_ckpt_writer_abort(w);   /* removes everything written */
        return FW_ERR;
    }
    return fw_ckpt_writer_close(w, e);
}

int fw_convert(const char *hf_dir, const char *out_dir, const fw_convert_opts *o, fw_err *e) {
    conv c = {.hf = hf_dir, .out = out_dir, .o = o};
    int rc = convert(&c, e);
    free(c.m);
    free(c.skip_layer);
    if (c.st_open) fw_st_dir_close(&c.st);
    fw_config_free(&c.cfg);
    return rc;
}
