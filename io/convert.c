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
#include "io/convert_quant.h"
#include "io/model_tensors.h"
#include "io/quant_ct.h"
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
    fw_ct_scheme *ct;           /* compressed-tensors quantization_config, if any */
    int64_t *group;             /* [n]: an INT4 weight's group size, 0 for the rest */
    const fw_quant_spec *q;     /* --quantize, or NULL */
    fw_cq_acc cq;               /* its errors and sizes */
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

#define WARN(c, ...) say((c)->o ? (c)->o->warn : NULL, (c)->o ? (c)->o->user : NULL, __VA_ARGS__)

/* "X.weight_shape": I64 or I32 [2] holding [out, in]. */
static int check_weight_shape(conv *c, const fw_model_tensor *m, const char *hname, fw_err *e) {
    const fw_st_tensor *h = fw_st_dir_find(&c->st, hname);
    if (!h) return fw_errf(e, "tensor '%s_packed' is packed INT4 but '%s' is missing from %s", m->name, hname, c->hf);
    if ((h->dtype != FW_DTYPE_I64 && h->dtype != FW_DTYPE_I32) || h->ndim != 1 || h->shape[0] != 2) {
        char got[160];
        shape_str(got, sizeof got, h->ndim, h->shape);
        return fw_errf(e, "tensor '%s' in %s must be I64 or I32 [2] ([out, in]), not %s %s", hname,
                       fw_st_dir_file_of(&c->st, h), fw_dtype_name(h->dtype), got);
    }
    int64_t v[2];
    for (int i = 0; i < 2; i++) {
        if (h->dtype == FW_DTYPE_I64) memcpy(&v[i], (const char *)h->data + 8 * i, 8);
        else {
            int32_t x;
            memcpy(&x, (const char *)h->data + 4 * i, 4);
            v[i] = x;
        }
    }
    if (v[0] != m->shape[0] || v[1] != m->shape[1])
        return fw_errf(e, "tensor '%s' is [%lld, %lld] in %s, but config.json implies %s = [%lld, %lld]", hname,
                       (long long)v[0], (long long)v[1], fw_st_dir_file_of(&c->st, h), m->dims,
                       (long long)m->shape[0], (long long)m->shape[1]);
    return FW_OK;
}

/* Model tensor i in a compressed-tensors checkpoint: FW_OK and c->group[i] set
 * when it is a packed INT4 weight whose three tensors agree with the config and
 * with each other; 1 when the config leaves it unquantized and the shards agree. */
static int check_int4(conv *c, int64_t i, fw_err *e) {
    const fw_model_tensor *m = &c->m[i];
    char module[sizeof m->name], pname[sizeof m->name + 16], sname[sizeof m->name + 16], hname[sizeof m->name + 16];
    snprintf(module, sizeof module, "%.*s", (int)strlen(m->name) - 7, m->name);   /* less ".weight" */
    snprintf(pname, sizeof pname, "%s_packed", m->name);
    snprintf(sname, sizeof sname, "%s_scale", m->name);
    snprintf(hname, sizeof hname, "%s_shape", m->name);
    int64_t cg;
    bool q = fw_ct_weight_quantized(c->ct, m->name, &cg);
    const fw_st_tensor *p = fw_st_dir_find(&c->st, pname), *plain = fw_st_dir_find(&c->st, m->name);
    if (!p) {
        if (q) return fw_errf(e, "config.json's quantization_config quantizes module '%s', but %s has no '%s' "
                                 "(its packed INT4 values)%s", module, c->hf, pname,
                              plain ? "; it holds the unquantized weight instead" : "");
        return 1;
    }
    const char *file = fw_st_dir_file_of(&c->st, p);
    if (!q)
        return fw_errf(e, "tensor '%s' is packed INT4 in %s, but config.json's quantization_config leaves module "
                          "'%s' unquantized (it matches `ignore`, or no target)", pname, file, module);
    if (plain)
        return fw_errf(e, "module '%s' has both '%s' and '%s' in %s: a quantized Linear has no plain weight", module,
                       m->name, pname, c->hf);
    const int64_t out = m->shape[0], in = m->shape[1];
    if (in % 8)
        return fw_errf(e, "tensor '%s': %s has %lld input columns, not a multiple of 8, so it cannot be packed "
                          "eight to an int32", pname, m->name, (long long)in);
    if (p->dtype != FW_DTYPE_I32)
        return fw_errf(e, "tensor '%s' is %s in %s; packed INT4 values must be I32", pname, fw_dtype_name(p->dtype),
                       file);
    const int64_t pw[2] = {out, in / 8};
    if (!same_shape(p, 2, pw)) return err_shape(c, p, 2, pw, "[out, in / 8] of its weight", e);
    const fw_st_tensor *s = fw_st_dir_find(&c->st, sname);
    if (!s) return fw_errf(e, "tensor '%s' is packed INT4 but '%s' (its group scales) is missing from %s", pname,
                           sname, c->hf);
    if (s->dtype != FW_DTYPE_BF16)
        return fw_errf(e, "tensor '%s' is %s in %s; INT4 group scales must be BF16", sname, fw_dtype_name(s->dtype),
                       fw_st_dir_file_of(&c->st, s));
    if (s->ndim != 2 || s->shape[0] != out || s->shape[1] <= 0) {
        const int64_t sw[2] = {out, in / (cg > 0 ? cg : in)};
        return err_shape(c, s, 2, sw, "[out, in / group_size] of its weight", e);
    }
    if (in % s->shape[1])
        return fw_errf(e, "tensor '%s' has %lld groups per row in %s, which does not divide the %lld input columns of "
                          "%s: no whole group size", sname, (long long)s->shape[1], fw_st_dir_file_of(&c->st, s),
                       (long long)in, m->name);
    const int64_t G = in / s->shape[1];
    if (G % 8)
        return fw_errf(e, "tensor '%s': group size %lld (%lld columns / %lld groups) is not a multiple of 8, which "
                          "furrow does not support", sname, (long long)G, (long long)in, (long long)s->shape[1]);
    if (check_weight_shape(c, m, hname, e)) return FW_ERR;
    /* The shapes are the truth: a checkpoint may carry several group sizes. */
    if (G != (cg > 0 ? cg : in))
        WARN(c, "module '%s': config.json's quantization_config gives group_size %lld, its scales' shape gives %lld; "
                "using the shapes", module, (long long)(cg > 0 ? cg : in), (long long)G);
    c->group[i] = G;
    return FW_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Input tensors the model does not use: reported and skipped. */
static int report_unknown(conv *c, fw_err *e) {
    char **names = malloc((size_t)(3 * c->n + 1) * sizeof *names);
    char *scales = malloc((size_t)(3 * c->n + 1) * (sizeof c->m->name + 16));
    if (!names || !scales) {
        free(names);
        free(scales);
        return fw_errf(e, "%s: out of memory", c->hf);
    }
    int64_t k = 0;
    const size_t sz = sizeof c->m->name + 16;
    for (int64_t i = 0, ns = 0; i < c->n; i++) {
        if (c->group[i] > 0) {  /* an INT4 weight: its three tensors */
            static const char *const suffix[3] = {"_packed", "_scale", "_shape"};
            for (int j = 0; j < 3; j++, ns++) {
                snprintf(scales + ns * (int64_t)sz, sz, "%s%s", c->m[i].name, suffix[j]);
                names[k++] = scales + ns * (int64_t)sz;
            }
            continue;
        }
        names[k++] = c->m[i].name;
        if (c->m[i].quantized && c->cfg.fp8) {
            char *s = scales + ns++ * (int64_t)sz;
            snprintf(s, sz, "%s_scale_inv", c->m[i].name);
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

/* A model tensor is in the shards, plain or as packed INT4. */
static bool m_present(conv *c, const fw_model_tensor *m) {
    char pname[sizeof m->name + 16];
    snprintf(pname, sizeof pname, "%s_packed", m->name);
    return fw_st_dir_find(&c->st, m->name) || fw_st_dir_find(&c->st, pname);
}

static int check_all(conv *c, fw_err *e) {
    const int L = c->cfg.num_hidden_layers, nl = L + c->cfg.num_nextn_predict_layers;
    if (!(c->skip_layer = calloc((size_t)nl + 1, sizeof *c->skip_layer)) ||
        !(c->group = calloc((size_t)c->n + 1, sizeof *c->group)))
        return fw_errf(e, "out of memory");
    if (c->cfg.int4 && c->q)
        return fw_errf(e, "%s is already quantized (config.json's quantization_config is compressed-tensors "
                          "pack-quantized INT4): --quantize takes a BF16 or FP8 checkpoint", c->hf);
    if (c->cfg.int4 && fw_ct_from_json(&c->ct, c->cfg.json, c->hf, e)) return FW_ERR;
    /* An MTP layer is converted when any of its tensors is there; then all must be. */
    for (int l = L; l < nl; l++) {
        bool any = false;
        for (int64_t i = 0; i < c->n && !any; i++) any = c->m[i].layer == l && m_present(c, &c->m[i]);
        c->skip_layer[l] = !any;
        if (!any)
            say(c->o ? c->o->warn : NULL, c->o ? c->o->user : NULL,
                "MTP layer %d (num_nextn_predict_layers) is not in %s: converting without it", l, c->hf);
    }
    for (int64_t i = 0; i < c->n; i++) {
        const fw_model_tensor *m = &c->m[i];
        if (m->layer >= 0 && c->skip_layer[m->layer]) continue;
        if (c->ct && m->ndim == 2) {
            int r = check_int4(c, i, e);
            if (r == FW_ERR) return FW_ERR;
            if (r == FW_OK) continue;
        }
        const fw_st_tensor *t = fw_st_dir_find(&c->st, m->name);
        if (!t) {
            char exp[64];
            shape_str(exp, sizeof exp, m->ndim, m->shape);
            return fw_errf(e, "tensor '%s' %s is missing from %s (config.json: %d layers%s)", m->name, exp, c->hf,
                           L, m->mtp ? " + MTP" : "");
        }
        if (check_tensor(c, m, t, e)) return FW_ERR;
        if (c->q && fw_quant_spec_covers(c->q, m->name) && fw_cq_check(c->q, m, e)) return FW_ERR;
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
    c->cq.sum.total_before += (int64_t)t->nbytes;
    c->cq.sum.total_after += (int64_t)t->nbytes;
    return fw_ckpt_write(w, t->name, t->dtype, t->ndim, t->shape, t->data, e);
}

/* A weight --quantize covers (with its FP8 block scales, which it replaces). */
static int write_quantized(conv *c, fw_ckpt_writer *w, const fw_model_tensor *m, fw_err *e) {
    char sname[sizeof m->name + 16];
    snprintf(sname, sizeof sname, "%s_scale_inv", m->name);
    const fw_st_tensor *t = fw_st_dir_find(&c->st, m->name);
    const fw_st_tensor *s = m->quantized && c->cfg.fp8 ? fw_st_dir_find(&c->st, sname) : NULL;
    const int64_t before = c->cq.sum.bytes_before, after = c->cq.sum.bytes_after;
    if (fw_cq_write(w, c->q, m, t, s, fw_st_dir_file_of(&c->st, t), &c->cq, e)) return FW_ERR;
    c->cq.sum.total_before += c->cq.sum.bytes_before - before;
    c->cq.sum.total_after += c->cq.sum.bytes_after - after;
    return FW_OK;
}

static int write_all(conv *c, fw_ckpt_writer *w, fw_err *e) {
    const int nl = c->cfg.num_hidden_layers + c->cfg.num_nextn_predict_layers;
    char sname[sizeof c->m->name + 16];
    for (int64_t i = 0; i < c->n; i++) {
        const fw_model_tensor *m = &c->m[i];
        if (m->layer >= 0 && c->skip_layer[m->layer]) continue;
        if (c->q && fw_quant_spec_covers(c->q, m->name)) {
            if (write_quantized(c, w, m, e)) return FW_ERR;
        } else if (c->group[i] > 0) {
            char pname[sizeof m->name + 16];
            snprintf(pname, sizeof pname, "%s_packed", m->name);
            snprintf(sname, sizeof sname, "%s_scale", m->name);
            if (fw_ckpt_write_int4(w, m->name, m->shape, c->group[i], fw_st_dir_find(&c->st, pname)->data,
                                   fw_st_dir_find(&c->st, sname)->data, e))
                return FW_ERR;
        } else if (write_tensor(c, w, m->name, e)) {
            return FW_ERR;
        }
        if (m->quantized && c->cfg.fp8 && !(c->q && fw_quant_spec_covers(c->q, m->name))) {
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
    if (rc == FW_OK && c->q) { /* what was quantized, and how well, in the root's `source` */
        fw_cq_finish(&c->cq);
        char spec[64];
        fw_quant_spec_str(c->q, spec, sizeof spec);
        size_t n = strlen(src);
        snprintf(src + n, sizeof src - n, "; quantized by furrow convert --quantize %s: %lld weights, relative RMS "
                 "error median %.4f, max %.4f (%s)", spec, (long long)c->cq.sum.tensors, c->cq.sum.rel_median,
                 c->cq.sum.rel_max, c->cq.sum.worst);
        rc = fw_ckpt_writer_set_source(w, src, e);
        if (c->o->summary) *c->o->summary = c->cq.sum;
    }
    if (rc == FW_OK) rc = copy_tokenizer(c, w, e);
    if (rc != FW_OK) {
        fw_ckpt_writer_abort(w);   /* removes everything written */
        return FW_ERR;
    }
    return fw_ckpt_writer_close(w, e);
}

int fw_convert(const char *hf_dir, const char *out_dir, const fw_convert_opts *o, fw_err *e) {
    conv c = {.hf = hf_dir, .out = out_dir, .o = o, .q = o ? o->quantize : NULL};
    int rc = convert(&c, e);
    fw_cq_finish(&c.cq);
    free(c.m);
    free(c.skip_layer);
    free(c.group);
    fw_ct_free(c.ct);
    if (c.st_open) fw_st_dir_close(&c.st);
    fw_config_free(&c.cfg);
    return rc;
}
