/* compressed-tensors quantization_config: parsing and module matching. */
#include "io/quant_ct.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
/* (the build's config.h defines it too, but from io/ "config.h" is io/config.h) */
#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include "io/base/jsonutil.h"
#include "io/model_tensors.h"

/* A target or ignore entry: an exact module name, "re:" + a regex, or the class
 * "Linear". */
typedef struct ct_entry {
    char *text;            /* the name or the regex, without "re:" */
    pcre2_code *re;        /* NULL: exact name or class */
    bool linear_class;
} ct_entry;

typedef struct ct_group {
    int64_t group_size;    /* 0: channel */
    ct_entry *targets;
    int n_targets;
} ct_group;

struct fw_ct_scheme {
    ct_group *groups;
    int n_groups;
    ct_entry *ignore;
    int n_ignore;
    pcre2_match_data *md;
};

#define Q "quantization_config."

static json_t *get(const json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static int entry_parse(ct_entry *en, const json_t *v, const char *src, const char *where, fw_err *e) {
    if (!json_is_string(v))
        return fw_errf(e, "%s: %s must hold strings, not %s", src, where, fw_json_type_name(v));
    const char *s = json_string_value(v);
    bool re = strncmp(s, "re:", 3) == 0;
    if (!(en->text = strdup(re ? s + 3 : s))) return fw_errf(e, "%s: out of memory", src);
    en->linear_class = !re && strcmp(s, "Linear") == 0;
    if (!re) return FW_OK;
    int code;
    PCRE2_SIZE at;
    en->re = pcre2_compile((PCRE2_SPTR)en->text, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED, &code, &at, NULL);
    if (!en->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return fw_errf(e, "%s: %s entry '%s' is not a valid regular expression (at offset %zu: %s)", src, where, s,
                       (size_t)at, (const char *)msg);
    }
    return FW_OK;
}

static int list_parse(ct_entry **out, int *n, const json_t *v, bool required, const char *src, const char *where,
                      fw_err *e) {
    *out = NULL;
    *n = 0;
    if (!v) return required ? fw_errf(e, "%s: required key '%s' is missing", src, where) : FW_OK;
    if (!json_is_array(v)) return fw_errf(e, "%s: key '%s' must be a list, not %s", src, where, fw_json_type_name(v));
    size_t k = json_array_size(v);
    if (required && k == 0) return fw_errf(e, "%s: key '%s' is an empty list", src, where);
    if (k > 100000) return fw_errf(e, "%s: key '%s' has %zu entries (at most 100000)", src, where, k);
    if (!(*out = calloc(k + 1, sizeof **out))) return fw_errf(e, "%s: out of memory", src);
    for (size_t i = 0; i < k; i++) /* counted first: a failed entry's text is freed with the rest */
        if ((*n)++, entry_parse(&(*out)[i], json_array_get(v, i), src, where, e)) return FW_ERR;
    return FW_OK;
}

/* A key that must be absent or null: what furrow does not implement. */
static int want_null(const json_t *obj, const char *key, const char *src, const char *where, const char *what,
                     fw_err *e) {
    if (!get(obj, key)) return FW_OK;
    return fw_errf(e, "%s: %s%s is set: %s is not supported (only INT4 weights with unquantized activations)", src,
                   where, key, what);
}

static int weights_parse(ct_group *g, const json_t *w, const char *src, const char *where, fw_err *e) {
    if (!w) return fw_errf(e, "%s: %sweights is missing or null: only weight quantization is supported", src, where);
    if (!json_is_object(w))
        return fw_errf(e, "%s: %sweights must be an object, not %s", src, where, fw_json_type_name(w));
    json_t *bits = get(w, "num_bits"), *type = get(w, "type"), *sym = get(w, "symmetric"), *st = get(w, "strategy");
    if (!json_is_integer(bits))
        return fw_errf(e, "%s: %sweights.num_bits must be an integer", src, where);
    if (json_integer_value(bits) != 4)
        return fw_errf(e, "%s: %sweights.num_bits is %lld: only 4-bit weights are supported%s", src, where,
                       (long long)json_integer_value(bits), json_integer_value(bits) == 8 ? " (8 is not supported yet)" : "");
    if (type && (!json_is_string(type) || strcmp(json_string_value(type), "int") != 0))
        return fw_errf(e, "%s: %sweights.type must be \"int\" (float quantization is not supported)", src, where);
    if (!json_is_true(sym))
        return fw_errf(e, "%s: %sweights.symmetric is not true: asymmetric quantization (zero points) is not "
                          "supported", src, where);
    if (json_is_true(get(w, "dynamic")))
        return fw_errf(e, "%s: %sweights.dynamic is true: only static weight scales are supported", src, where);
    json_t *ao = get(w, "actorder");
    if (ao && !json_is_false(ao))
        return fw_errf(e, "%s: %sweights.actorder is set: activation ordering (g_idx) is not supported", src, where);
    if (want_null(w, "block_structure", src, where, "weights.block_structure", e)) return FW_ERR;
    const char *s = json_is_string(st) ? json_string_value(st) : "";
    if (!strcmp(s, "channel")) {
        g->group_size = 0;
        return FW_OK;
    }
    if (strcmp(s, "group") != 0)
        return fw_errf(e, "%s: %sweights.strategy is '%s': only \"group\" and \"channel\" are supported", src, where,
                       json_is_string(st) ? s : "(not a string)");
    json_t *gs = get(w, "group_size");
    if (!json_is_integer(gs) || json_integer_value(gs) <= 0 || json_integer_value(gs) % 8 != 0 ||
        json_integer_value(gs) > (1 << 24))
        return fw_errf(e, "%s: %sweights.group_size must be a positive multiple of 8 for strategy \"group\"", src,
                       where);
    g->group_size = json_integer_value(gs);
    return FW_OK;
}

int fw_ct_parse(fw_ct_scheme **out, const json_t *q, const char *src, fw_err *e) {
    *out = NULL;
    fw_ct_scheme *s = calloc(1, sizeof *s);
    if (!s) return fw_errf(e, "%s: out of memory", src);
    int rc = FW_OK;
    json_t *fmt = get(q, "format"), *st = get(q, "quantization_status"), *groups = get(q, "config_groups");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "pack-quantized") != 0)
        rc = fw_errf(e, "%s: " Q "format is '%s': only \"pack-quantized\" compressed-tensors checkpoints are "
                        "supported", src, json_is_string(fmt) ? json_string_value(fmt) : "(missing)");
    else if (st && (!json_is_string(st) || strcmp(json_string_value(st), "compressed") != 0))
        rc = fw_errf(e, "%s: " Q "quantization_status must be \"compressed\" (packed weights)", src);
    else if (want_null(q, "kv_cache_scheme", src, Q, "KV-cache quantization", e))
        rc = FW_ERR;
    else if (!json_is_object(groups) || json_object_size(groups) == 0)
        rc = fw_errf(e, "%s: " Q "config_groups must be a non-empty object", src);
    else if (!(s->groups = calloc(json_object_size(groups), sizeof *s->groups)))
        rc = fw_errf(e, "%s: out of memory", src);
    const char *key;
    json_t *g;
    if (rc == FW_OK) {
        json_object_foreach((json_t *)groups, key, g) {
            char where[200], list[220];
            snprintf(where, sizeof where, Q "config_groups.%s.", key);
            snprintf(list, sizeof list, "%stargets", where);
            ct_group *cg = &s->groups[s->n_groups++];
            if (!json_is_object(g)) {
                rc = fw_errf(e, "%s: %s must be an object", src, where);
                break;
            }
            if (want_null(g, "input_activations", src, where, "activation quantization", e) ||
                want_null(g, "output_activations", src, where, "output activation quantization", e) ||
                weights_parse(cg, get(g, "weights"), src, where, e) ||
                list_parse(&cg->targets, &cg->n_targets, get(g, "targets"), true, src, list, e)) {
                rc = FW_ERR;
                break;
            }
        }
    }
    if (rc == FW_OK) rc = list_parse(&s->ignore, &s->n_ignore, get(q, "ignore"), false, src, Q "ignore", e);
    if (rc == FW_OK && !(s->md = pcre2_match_data_create(1, NULL))) rc = fw_errf(e, "%s: out of memory", src);
    if (rc != FW_OK) {
        fw_ct_free(s);
        return rc;
    }
    *out = s;
    return FW_OK;
}

int fw_ct_from_json(fw_ct_scheme **out, const char *config_json, const char *src, fw_err *e) {
    *out = NULL;
    json_error_t je;
    json_t *root = json_loads(config_json ? config_json : "", 0, &je);
    if (!root) return fw_errf(e, "%s: invalid JSON at line %d: %s", src, je.line, je.text);
    json_t *q = get(root, "quantization_config");
    json_t *m = q ? get(q, "quant_method") : NULL;
    int rc = FW_OK;
    if (json_is_string(m) && strcmp(json_string_value(m), "compressed-tensors") == 0) rc = fw_ct_parse(out, q, src, e);
    json_decref(root);
    return rc;
}

static void entries_free(ct_entry *v, int n) {
    for (int i = 0; i < n; i++) {
        free(v[i].text);
        if (v[i].re) pcre2_code_free(v[i].re);
    }
    free(v);
}

void fw_ct_free(fw_ct_scheme *s) {
    if (!s) return;
    for (int i = 0; i < s->n_groups; i++) entries_free(s->groups[i].targets, s->groups[i].n_targets);
    free(s->groups);
    entries_free(s->ignore, s->n_ignore);
    if (s->md) pcre2_match_data_free(s->md);
    free(s);
}

/* By name or regex (class entries never match here). */
static bool match_name(const fw_ct_scheme *s, const ct_entry *en, const char *name) {
    if (en->re) return pcre2_match(en->re, (PCRE2_SPTR)name, strlen(name), 0, 0, s->md, NULL) >= 0;
    return !en->linear_class && strcmp(en->text, name) == 0;
}

bool fw_ct_quantized(const fw_ct_scheme *s, const char *name, bool linear, int64_t *group) {
    *group = 0;
    if (!s) return false;
    for (int i = 0; i < s->n_ignore; i++)
        if (match_name(s, &s->ignore[i], name) || (linear && s->ignore[i].linear_class)) return false;
    /* A name or regex target wins over a class target. */
    for (int pass = 0; pass < 2; pass++)
        for (int gi = 0; gi < s->n_groups; gi++)
            for (int i = 0; i < s->groups[gi].n_targets; i++) {
                const ct_entry *t = &s->groups[gi].targets[i];
                if (pass == 0 ? match_name(s, t, name) : linear && t->linear_class) {
                    *group = s->groups[gi].group_size;
                    return true;
                }
            }
    return false;
}

bool fw_ct_weight_quantized(const fw_ct_scheme *s, const char *weight, int64_t *group) {
    *group = 0;
    if (!fw_model_tensor_is_linear(weight)) return false;
    char module[256];
    snprintf(module, sizeof module, "%.*s", (int)strlen(weight) - 7, weight);   /* less ".weight" */
    return fw_ct_quantized(s, module, true, group);
}

int64_t fw_ct_first_group(const fw_ct_scheme *s) { return s && s->n_groups ? s->groups[0].group_size : 0; }
