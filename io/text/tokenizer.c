/* tokenizer.json / tokenizer_config.json -> fw_tokenizer, and the encode and
 * decode entry points. Loading refuses, by name, every part of tokenizer.json
 * that this implementation would run differently from the reference: another
 * model type, a normalizer, pre-tokenizer step or decoder it does not know, BPE
 * options (dropout, subword prefixes, byte fallback) it does not implement. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "io/base/fileutil.h"
#include "io/base/jsonutil.h"
#include "io/text/tok_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

typedef struct load_ctx {
    fw_tokenizer *t;
    const char *path;
    fw_err *e;
} load_ctx;


/* The value of key, NULL when absent or null. */
static json_t *get(const json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

/* A boolean option: absent/null means def. */
static int get_bool(load_ctx *c, const json_t *obj, const char *where, const char *key, bool def,
                    bool *out) {
    json_t *v = get(obj, key);
    if (!v) {
        *out = def;
        return FW_OK;
    }
    if (!json_is_boolean(v))
        return fw_errf(c->e, "%s: %s.%s is %s, expected a boolean", c->path, where, key, fw_json_type_name(v));
    *out = json_is_true(v);
    return FW_OK;
}

/* Tokenizer files are a few MB; anything past this is not one. */
#define TOK_JSON_MAX_BYTES ((size_t)1 << 30)

static json_t *load_json(const char *path, fw_err *e) {
    /* Read whole, then parse from memory: json_loadf reads a byte at a time. */
    char *buf;
    size_t size;
    if (fw_read_file(path, TOK_JSON_MAX_BYTES, &buf, &size, e)) return NULL;
    json_error_t je;
    json_t *root = json_loadb(buf, size, JSON_REJECT_DUPLICATES, &je);
    free(buf);
    if (!root) {
        if (je.line > 0) fw_errf(e, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        else fw_errf(e, "%s: %s", path, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        fw_errf(e, "%s: expected a JSON object at the top, got %s", path, fw_json_type_name(root));
        json_decref(root);
        return NULL;
    }
    return root;
}

/* A byte-level spelling ("Ġthe") -> its bytes (" the"); -1 when a character is
 * not one of the 256 byte characters. */
static int bytelevel_to_bytes(const char *s, size_t n, tok_buf *out) {
    out->n = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += tok_utf8_next(s + i, n - i, &cp);
        int b = tok_char_to_byte(cp);
        if (b < 0) return -1;
        char ch = (char)b;
        if (tok_buf_append(out, &ch, 1)) return -2;
    }
    return 0;
}

/* Records what id decodes to: the ByteLevel decoder maps each character of the
 * token back to its byte, or, when one of them is not a byte character (the
 * fullwidth bars of <｜User｜>), keeps the token's own UTF-8. */
static int set_decoded(load_ctx *c, int32_t id, const char *s, size_t n, tok_buf *tmp) {
    fw_tokenizer *t = c->t;
    int rc = bytelevel_to_bytes(s, n, tmp);
    if (rc == -2) return fw_errf(c->e, "%s: out of memory", c->path);
    const char *src = rc ? s : tmp->p;
    size_t len = rc ? n : tmp->n;
    if (t->dec_pool.n + len > UINT32_MAX) return fw_errf(c->e, "%s: the vocabulary is too large", c->path);
    t->dec_off[id] = (uint32_t)t->dec_pool.n;
    t->dec_len[id] = (uint32_t)len;
    if (tok_buf_append(&t->dec_pool, src, len)) return fw_errf(c->e, "%s: out of memory", c->path);
    t->flags[id] |= TOK_PRESENT;
    return FW_OK;
}

static int check_id(load_ctx *c, const json_t *v, const char *what, const char *name, int32_t *id) {
    if (!json_is_integer(v))
        return fw_errf(c->e, "%s: %s '%s': the id is %s, expected an integer", c->path, what, name,
                       fw_json_type_name(v));
    json_int_t x = json_integer_value(v);
    if (x < 0 || x >= TOK_ID_LIMIT)
        return fw_errf(c->e, "%s: %s '%s': id %lld is outside [0, %lld)", c->path, what, name,
                       (long long)x, (long long)TOK_ID_LIMIT);
    *id = (int32_t)x;
    return FW_OK;
}

static int load_model(load_ctx *c, const json_t *root, const json_t *added) {
    fw_tokenizer *t = c->t;
    json_t *model = get(root, "model");
    if (!model) return fw_errf(c->e, "%s: the 'model' field is missing", c->path);
    if (!json_is_object(model))
        return fw_errf(c->e, "%s: 'model' is %s, expected an object", c->path, fw_json_type_name(model));
    json_t *type = get(model, "type");
    if (!type) return fw_errf(c->e, "%s: model.type is missing (expected \"BPE\")", c->path);
    if (!json_is_string(type) || strcmp(json_string_value(type), "BPE"))
        return fw_errf(c->e, "%s: model.type is %s%s%s; only byte-level BPE is supported", c->path,
                       json_is_string(type) ? "'" : "",
                       json_is_string(type) ? json_string_value(type) : fw_json_type_name(type),
                       json_is_string(type) ? "'" : "");
    if (get(model, "dropout"))
        return fw_errf(c->e, "%s: model.dropout is set; BPE dropout is not supported", c->path);
    const char *empty_keys[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        json_t *v = get(model, empty_keys[k]);
        if (v && !(json_is_string(v) && !*json_string_value(v)))
            return fw_errf(c->e, "%s: model.%s is set; it is not supported", c->path, empty_keys[k]);
    }
    bool byte_fallback;
    if (get_bool(c, model, "model", "byte_fallback", false, &byte_fallback) ||
        get_bool(c, model, "model", "ignore_merges", false, &t->ignore_merges))
        return FW_ERR;
    if (byte_fallback)
        return fw_errf(c->e, "%s: model.byte_fallback is true; it is not supported", c->path);

    json_t *vocab = get(model, "vocab");
    if (!vocab) return fw_errf(c->e, "%s: model.vocab is missing", c->path);
    if (!json_is_object(vocab))
        return fw_errf(c->e, "%s: model.vocab is %s, expected an object", c->path, fw_json_type_name(vocab));
    json_t *merges = get(model, "merges");
    if (!merges) return fw_errf(c->e, "%s: model.merges is missing", c->path);
    if (!json_is_array(merges))
        return fw_errf(c->e, "%s: model.merges is %s, expected an array", c->path, fw_json_type_name(merges));

    /* The id space: vocabulary and added tokens. */
    const char *key;
    json_t *v;
    int64_t max_id = -1;
    json_object_foreach(vocab, key, v) {
        int32_t id;
        if (check_id(c, v, "model.vocab entry", key, &id)) return FW_ERR;
        if (id > max_id) max_id = id;
    }
    size_t i;
    json_array_foreach(added, i, v) {
        json_t *id = get(v, "id");
        if (json_is_integer(id) && json_integer_value(id) > max_id && json_integer_value(id) < TOK_ID_LIMIT)
            max_id = json_integer_value(id);
    }
    t->n_ids = max_id + 1;
    size_t nid = (size_t)t->n_ids;
    t->dec_off = calloc(nid ? nid : 1, sizeof *t->dec_off);
    t->dec_len = calloc(nid ? nid : 1, sizeof *t->dec_len);
    t->flags = calloc(nid ? nid : 1, 1);
    if (!t->dec_off || !t->dec_len || !t->flags || tok_strmap_init(&t->vocab, json_object_size(vocab)))
        return fw_errf(c->e, "%s: out of memory", c->path);

    tok_buf tmp = {0};
    int rc = FW_ERR;
    json_object_foreach(vocab, key, v) {
        int32_t id = (int32_t)json_integer_value(v);
        size_t n = strlen(key);
        if (set_decoded(c, id, key, n, &tmp)) goto done;
        int r = bytelevel_to_bytes(key, n, &tmp);
        if (r == -2) goto oom;
        /* Entries that are not byte-level spellings can never come out of the BPE;
         * they stay decodable but are not looked up. */
        if (r == 0 && tok_strmap_put(&t->vocab, tmp.p, tmp.n, id)) goto oom;
    }
    for (int b = 0; b < 256; b++) {
        char ch = (char)b;
        t->byte_id[b] = tok_strmap_get(&t->vocab, &ch, 1);
        if (t->byte_id[b] < 0) {
            fw_errf(c->e, "%s: model.vocab lacks the byte-level token of byte 0x%02x; not a byte-level BPE vocabulary",
                    c->path, b);
            goto done;
        }
    }

    if ((int64_t)json_array_size(merges) > TOK_ID_LIMIT) {
        fw_errf(c->e, "%s: model.merges has %zu entries; at most %lld are supported", c->path,
                json_array_size(merges), (long long)TOK_ID_LIMIT);
        goto done;
    }
    if (tok_merges_init(t, (int64_t)json_array_size(merges))) goto oom;
    tok_buf left = {0}, right = {0};
    json_array_foreach(merges, i, v) {
        const char *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        if (json_is_string(v)) { /* "a b" */
            const char *s = json_string_value(v), *sp = strchr(s, ' ');
            if (sp && !strchr(sp + 1, ' ')) a = s, na = (size_t)(sp - s), b = sp + 1, nb = strlen(b);
        } else if (json_is_array(v) && json_array_size(v) == 2 &&
                   json_is_string(json_array_get(v, 0)) && json_is_string(json_array_get(v, 1))) {
            a = json_string_value(json_array_get(v, 0)), na = strlen(a);
            b = json_string_value(json_array_get(v, 1)), nb = strlen(b);
        }
        if (!a) {
            fw_errf(c->e, "%s: model.merges[%zu] is not \"left right\" or [left, right]", c->path, i);
            goto merge_fail;
        }
        int32_t ia = -1, ib = -1, im = -1;
        int ra = bytelevel_to_bytes(a, na, &left), rb = bytelevel_to_bytes(b, nb, &right);
        if (ra == -2 || rb == -2) goto merge_oom;
        if (!ra) ia = tok_strmap_get(&t->vocab, left.p, left.n);
        if (!rb) ib = tok_strmap_get(&t->vocab, right.p, right.n);
        if (ia >= 0 && ib >= 0) {
            if (tok_buf_append(&left, right.p, right.n)) goto merge_oom;
            im = tok_strmap_get(&t->vocab, left.p, left.n);
        }
        if (ia < 0 || ib < 0 || im < 0) {
            fw_errf(c->e, "%s: model.merges[%zu] ('%.*s' + '%.*s'): %s is not in model.vocab", c->path,
                    i, (int)na, a, (int)nb, b,
                    ia < 0 ? "the left part" : ib < 0 ? "the right part" : "the merged token");
            goto merge_fail;
        }
        tok_merges_put(t, ia, ib, (int32_t)i, im);
    }
    free(left.p);
    free(right.p);
    rc = FW_OK;
    goto done;
merge_oom:
    fw_errf(c->e, "%s: out of memory", c->path);
merge_fail:
    free(left.p);
    free(right.p);
    goto done;
oom:
    fw_errf(c->e, "%s: out of memory", c->path);
done:
    free(tmp.p);
    return rc;
}

static int load_added(load_ctx *c, const json_t *added) {
    fw_tokenizer *t = c->t;
    if (tok_trie_init(&t->added_raw) || tok_trie_init(&t->added_norm))
        return fw_errf(c->e, "%s: out of memory", c->path);
    tok_buf tmp = {0};
    size_t i;
    json_t *v;
    json_array_foreach(added, i, v) {
        json_t *content = get(v, "content");
        if (!json_is_object(v) || !json_is_string(content) || !*json_string_value(content)) {
            free(tmp.p);
            return fw_errf(c->e, "%s: added_tokens[%zu] has no (non-empty) 'content' string", c->path, i);
        }
        const char *s = json_string_value(content);
        int32_t id;
        json_t *idv = get(v, "id");
        if (!idv) {
            free(tmp.p);
            return fw_errf(c->e, "%s: added_tokens[%zu] ('%s') has no 'id'", c->path, i, s);
        }
        if (check_id(c, idv, "added token", s, &id)) {
            free(tmp.p);
            return FW_ERR;
        }
        bool special, normalized, lstrip, rstrip, single_word;
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        if (get_bool(c, v, where, "special", false, &special) ||
            get_bool(c, v, where, "normalized", !special, &normalized) ||
            get_bool(c, v, where, "lstrip", false, &lstrip) ||
            get_bool(c, v, where, "rstrip", false, &rstrip) ||
            get_bool(c, v, where, "single_word", false, &single_word)) {
            free(tmp.p);
            return FW_ERR;
        }
        if (lstrip || rstrip || single_word) {
            free(tmp.p);
            return fw_errf(c->e, "%s: added token '%s' sets %s; that is not supported", c->path, s,
                           lstrip ? "lstrip" : rstrip ? "rstrip" : "single_word");
        }
        if (set_decoded(c, id, s, strlen(s), &tmp)) {
            free(tmp.p);
            return FW_ERR;
        }
        t->flags[id] |= TOK_ADDED | (special ? TOK_SPECIAL : 0);
        if (tok_trie_add(normalized ? &t->added_norm : &t->added_raw, s, strlen(s), id)) {
            free(tmp.p);
            return fw_errf(c->e, "%s: out of memory", c->path);
        }
    }
    free(tmp.p);
    return FW_OK;
}

/* Only the identity normalizer: null, or Sequence of nothing (nested allowed). */
static int check_normalizer(load_ctx *c, const json_t *n) {
    if (!n) return FW_OK;
    const char *type = json_string_value(get(n, "type"));
    if (type && !strcmp(type, "Sequence")) {
        json_t *list = get(n, "normalizers"), *v;
        size_t i;
        if (!json_is_array(list))
            return fw_errf(c->e, "%s: normalizer.normalizers is missing or not an array", c->path);
        json_array_foreach(list, i, v) if (check_normalizer(c, v)) return FW_ERR;
        return FW_OK;
    }
    return fw_errf(c->e, "%s: normalizer type '%s' is not supported (only none)", c->path,
                   type ? type : "(missing)");
}

/* The GPT-2 split of ByteLevel with use_regex = true. */
static const char *gpt2_pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int add_pretok(load_ctx *c, const json_t *p, int *seen_bytelevel) {
    fw_tokenizer *t = c->t;
    const char *type = json_string_value(get(p, "type"));
    if (!type) return fw_errf(c->e, "%s: a pre_tokenizer has no 'type'", c->path);
    if (!strcmp(type, "Sequence")) {
        json_t *list = get(p, "pretokenizers"), *v;
        size_t i;
        if (!json_is_array(list))
            return fw_errf(c->e, "%s: pre_tokenizer.pretokenizers is missing or not an array", c->path);
        json_array_foreach(list, i, v) if (add_pretok(c, v, seen_bytelevel)) return FW_ERR;
        return FW_OK;
    }
    if (*seen_bytelevel)
        return fw_errf(c->e, "%s: pre_tokenizer step '%s' comes after ByteLevel; ByteLevel must be the last step",
                       c->path, type);
    if (t->n_steps == TOK_MAX_STEPS)
        return fw_errf(c->e, "%s: more than %d pre_tokenizer steps", c->path, TOK_MAX_STEPS);
    if (!strcmp(type, "ByteLevel")) {
        bool prefix, use_regex;
        if (get_bool(c, p, "pre_tokenizer ByteLevel", "add_prefix_space", true, &prefix) ||
            get_bool(c, p, "pre_tokenizer ByteLevel", "use_regex", true, &use_regex))
            return FW_ERR;
        if (prefix)
            return fw_errf(c->e, "%s: pre_tokenizer ByteLevel.add_prefix_space is true; not supported", c->path);
        *seen_bytelevel = 1;
        if (use_regex &&
            tok_step_compile(t, &t->steps[t->n_steps++], gpt2_pattern, false, TOK_SPLIT_ISOLATED, c->e))
            return fw_err_prefix(c->e, "%s", c->path);
        return FW_OK;
    }
    if (!strcmp(type, "Split")) {
        json_t *pat = get(p, "pattern");
        const char *regex = json_string_value(get(pat, "Regex"));
        const char *lit = json_string_value(get(pat, "String"));
        if (!regex && !lit)
            return fw_errf(c->e, "%s: pre_tokenizer Split has no pattern.Regex or pattern.String", c->path);
        const char *beh = json_string_value(get(p, "behavior"));
        int behavior;
        if (beh && !strcmp(beh, "Isolated")) behavior = TOK_SPLIT_ISOLATED;
        else if (beh && !strcmp(beh, "Removed")) behavior = TOK_SPLIT_REMOVED;
        else
            return fw_errf(c->e, "%s: pre_tokenizer Split behavior '%s' is not supported (Isolated, Removed)",
                           c->path, beh ? beh : "(missing)");
        bool invert;
        if (get_bool(c, p, "pre_tokenizer Split", "invert", false, &invert)) return FW_ERR;
        if (invert) return fw_errf(c->e, "%s: pre_tokenizer Split.invert is true; not supported", c->path);
        if (tok_step_compile(t, &t->steps[t->n_steps], regex ? regex : lit, !regex, behavior, c->e))
            return fw_err_prefix(c->e, "%s: pre_tokenizer", c->path);
        t->n_steps++;
        return FW_OK;
    }
    return fw_errf(c->e, "%s: pre_tokenizer type '%s' is not supported (Sequence, Split, ByteLevel)",
                   c->path, type);
}

static int load_pipeline(load_ctx *c, const json_t *root) {
    if (check_normalizer(c, get(root, "normalizer"))) return FW_ERR;
    json_t *pre = get(root, "pre_tokenizer");
    if (!pre) return fw_errf(c->e, "%s: the 'pre_tokenizer' field is missing", c->path);
    int seen = 0;
    if (add_pretok(c, pre, &seen)) return FW_ERR;
    if (!seen)
        return fw_errf(c->e, "%s: the pre_tokenizer has no ByteLevel step; only byte-level BPE is supported",
                       c->path);
    json_t *dec = get(root, "decoder");
    if (!dec) return fw_errf(c->e, "%s: the 'decoder' field is missing", c->path);
    const char *type = json_string_value(get(dec, "type"));
    if (!type || strcmp(type, "ByteLevel"))
        return fw_errf(c->e, "%s: decoder type '%s' is not supported (only ByteLevel)", c->path,
                       type ? type : "(missing)");
    return FW_OK;
}

/* bos_token / eos_token: a string, or an AddedToken object with "content". */
static int config_token(load_ctx *c, const json_t *cfg, const char *key, char **text, int32_t *id) {
    json_t *v = get(cfg, key);
    if (!v) return FW_OK;
    if (json_is_object(v)) v = get(v, "content");
    if (!json_is_string(v))
        return fw_errf(c->e, "%s: %s is not a string or an object with 'content'", c->path, key);
    const char *s = json_string_value(v);
    int32_t found = fw_tokenizer_token_id(c->t, s);
    if (found < 0) return fw_errf(c->e, "%s: %s '%s' is not a token of the tokenizer", c->path, key, s);
    free(*text);
    *text = strdup(s);
    if (!*text) return fw_errf(c->e, "out of memory");
    *id = found;
    return FW_OK;
}

static int load_config(load_ctx *c) {
    fw_tokenizer *t = c->t;
    json_t *cfg = load_json(c->path, c->e);
    if (!cfg) return FW_ERR;
    int rc = FW_ERR;
    if (config_token(c, cfg, "bos_token", &t->bos_text, &t->bos) ||
        config_token(c, cfg, "eos_token", &t->eos_text, &t->eos) ||
        get_bool(c, cfg, "tokenizer_config", "add_bos_token", t->bos >= 0, &t->add_bos) ||
        get_bool(c, cfg, "tokenizer_config", "add_eos_token", false, &t->add_eos))
        goto done;
    json_t *tpl = get(cfg, "chat_template");
    if (json_is_array(tpl)) { /* [{"name": "default", "template": ...}, ...] */
        json_t *v, *pick = NULL;
        size_t i;
        json_array_foreach(tpl, i, v) {
            const char *name = json_string_value(get(v, "name"));
            if (name && !strcmp(name, "default")) pick = get(v, "template");
        }
        tpl = pick;
    }
    if (tpl && !json_is_string(tpl)) {
        fw_errf(c->e, "%s: chat_template is %s, expected a string", c->path, fw_json_type_name(tpl));
        goto done;
    }
    if (tpl && !(t->chat_template = strdup(json_string_value(tpl)))) {
        fw_errf(c->e, "out of memory");
        goto done;
    }
    rc = FW_OK;
done:
    json_decref(cfg);
    return rc;
}

int fw_tokenizer_load(fw_tokenizer **out, const char *path, const char *config_path, fw_err *e) {
    *out = NULL;
    fw_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return fw_errf(e, "out of memory");
    t->bos = t->eos = -1;
    load_ctx c = {t, path, e};
    json_t *root = load_json(path, e);
    if (!root) goto fail;
    json_t *added = get(root, "added_tokens");
    if (!added) {
        fw_errf(e, "%s: the 'added_tokens' field is missing", path);
        goto fail_root;
    }
    if (!json_is_array(added)) {
        fw_errf(e, "%s: 'added_tokens' is %s, expected an array", path, fw_json_type_name(added));
        goto fail_root;
    }
    if (load_model(&c, root, added) || load_added(&c, added) || load_pipeline(&c, root))
        goto fail_root;
    json_decref(root);
    root = NULL;
    if (!(t->path = strdup(path))) {
        fw_errf(e, "out of memory");
        goto fail;
    }

    /* DeepSeek's names when no config says otherwise. */
    static const char *bos_default = "<｜begin▁of▁sentence｜>", *eos_default = "<｜end▁of▁sentence｜>";
    if ((t->bos = fw_tokenizer_token_id(t, bos_default)) >= 0 && !(t->bos_text = strdup(bos_default)))
        goto oom;
    if ((t->eos = fw_tokenizer_token_id(t, eos_default)) >= 0 && !(t->eos_text = strdup(eos_default)))
        goto oom;
    t->add_bos = t->bos >= 0;
    if (config_path) {
        c.path = config_path;
        if (load_config(&c)) goto fail;
    }
    *out = t;
    return FW_OK;
oom:
    fw_errf(e, "out of memory");
    goto fail;
fail_root:
    json_decref(root);
fail:
    fw_tokenizer_free(t);
    return FW_ERR;
}

int fw_tokenizer_load_dir(fw_tokenizer **t, const char *dir, fw_err *e) {
    size_t n = strlen(dir) + 32;
    char *tok = malloc(n), *cfg = malloc(n);
    if (!tok || !cfg) {
        free(tok);
        free(cfg);
        return fw_errf(e, "out of memory");
    }
    snprintf(tok, n, "%s/tokenizer.json", dir);
    snprintf(cfg, n, "%s/tokenizer_config.json", dir);
    int rc = fw_tokenizer_load(t, tok, access(cfg, F_OK) == 0 ? cfg : NULL, e);
    free(tok);
    free(cfg);
    return rc;
}

void fw_tokenizer_free(fw_tokenizer *t) {
    if (!t) return;
    free(t->dec_off);
    free(t->dec_len);
    free(t->flags);
    free(t->dec_pool.p);
    tok_strmap_free(&t->vocab);
    tok_trie_free(&t->added_raw);
    tok_trie_free(&t->added_norm);
    tok_steps_free(t);
    tok_bpe_free(t);
    free(t->bos_text);
    free(t->eos_text);
    free(t->chat_template);
    free(t->path);
    free(t);
}

/* ---- encoding ---- */

/* pass 0: added tokens matched on the raw text; 1: on the normalized text (the
 * normalizer is the identity); 2: the pre-tokenizer and the BPE. */
static int encode_span(fw_tokenizer *t, const char *s, size_t n, int pass, tok_ids *out, fw_err *e) {
    if (!n) return FW_OK;
    if (pass == 2) return tok_pretokenize(t, s, n, out, e);
    const tok_trie *tr = pass == 0 ? &t->added_raw : &t->added_norm;
    if (!tr->count) return encode_span(t, s, n, pass + 1, out, e);
    size_t done = 0, i = 0;
    while (i < n) {
        if (tr->n_first == 1) { /* DeepSeek's all start with '<' */
            const char *p = memchr(s + i, tr->a_first, n - i);
            if (!p) break;
            i = (size_t)(p - s);
        } else if (!tr->first[(uint8_t)s[i]]) {
            i++;
            continue;
        }
        int32_t id;
        size_t len = tok_trie_longest(tr, s + i, n - i, &id);
        if (!len) {
            i++;
            continue;
        }
        if (encode_span(t, s + done, i - done, pass + 1, out, e)) return FW_ERR;
        if (tok_ids_push(out, id)) return fw_errf(e, "tokenizer: out of memory");
        i += len;
        done = i;
    }
    return encode_span(t, s + done, n - done, pass + 1, out, e);
}

int fw_tokenizer_encode(fw_tokenizer *t, const char *text, size_t len, bool add_special,
                        int32_t **ids, int64_t *n, fw_err *e) {
    *ids = NULL;
    *n = 0;
    size_t bad;
    if (fw_utf8_validate(text, len, &bad))
        return fw_errf(e, "tokenizer: the text is not valid UTF-8 (byte 0x%02x at offset %zu)",
                       (uint8_t)text[bad], bad);
    tok_ids out = {0};
    if (add_special && t->add_bos && t->bos >= 0 && tok_ids_push(&out, t->bos)) goto oom;
    if (encode_span(t, text, len, 0, &out, e)) {
        free(out.p);
        return FW_ERR;
    }
    if (add_special && t->add_eos && t->eos >= 0 && tok_ids_push(&out, t->eos)) goto oom;
    *ids = out.p;
    *n = out.n;
    return FW_OK;
oom:
    free(out.p);
    return fw_errf(e, "tokenizer: out of memory");
}

/* ---- decoding ---- */

/* The bytes of id, NULL when it has none or is skipped. */
static const char *token_bytes(const fw_tokenizer *t, int32_t id, bool skip_special, size_t *len) {
    if (id < 0 || id >= t->n_ids || !(t->flags[id] & TOK_PRESENT)) return NULL;
    if (skip_special && (t->flags[id] & TOK_SPECIAL)) return NULL;
    *len = t->dec_len[id];
    return t->dec_pool.p + t->dec_off[id];
}

int fw_tokenizer_decode(const fw_tokenizer *t, const int32_t *ids, int64_t n, bool skip_special,
                        char **text, size_t *len, fw_err *e) {
    *text = NULL;
    *len = 0;
    tok_buf raw = {0}, out = {0};
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0) {
            free(raw.p);
            return fw_errf(e, "tokenizer: decode: token id %d (position %lld) is negative", ids[i],
                           (long long)i);
        }
        size_t k;
        const char *b = token_bytes(t, ids[i], skip_special, &k);
        if (b && tok_buf_append(&raw, b, k)) goto oom;
    }
    if (!fw_utf8_validate(raw.p ? raw.p : "", raw.n, NULL)) {
        out = raw; /* well-formed: no repair needed */
        raw.p = NULL;
    } else {
        int oom;
        tok_utf8_lossy(raw.p, raw.n, true, &out, &oom);
        if (oom) goto oom;
    }
    if (tok_buf_append(&out, "", 1)) goto oom;
    free(raw.p);
    *text = out.p;
    *len = out.n - 1;
    return FW_OK;
oom:
    free(raw.p);
    free(out.p);
    return fw_errf(e, "tokenizer: out of memory");
}

struct fw_detok_stream {
    const fw_tokenizer *t;
    bool skip_special;
    char pend[4]; /* a well-formed but incomplete character, at most 3 bytes */
    size_t npend;
    tok_buf work, out;
};

int fw_detok_stream_init(fw_detok_stream **s, const fw_tokenizer *t, bool skip_special, fw_err *e) {
    *s = calloc(1, sizeof **s);
    if (!*s) return fw_errf(e, "out of memory");
    (*s)->t = t;
    (*s)->skip_special = skip_special;
    return FW_OK;
}

int fw_detok_stream_push(fw_detok_stream *s, int32_t id, const char **out, size_t *out_len,
                         fw_err *e) {
    *out = "";
    *out_len = 0;
    if (id < 0) return fw_errf(e, "tokenizer: decode: token id %d is negative", id);
    size_t k;
    const char *b = token_bytes(s->t, id, s->skip_special, &k);
    if (!b || !k) return FW_OK;
    const char *src = b;
    size_t n = k;
    if (s->npend) {
        s->work.n = 0;
        if (tok_buf_append(&s->work, s->pend, s->npend) || tok_buf_append(&s->work, b, k))
            return fw_errf(e, "tokenizer: out of memory");
        src = s->work.p;
        n = s->work.n;
    }
    s->out.n = 0;
    int oom;
    size_t used = tok_utf8_lossy(src, n, false, &s->out, &oom);
    if (oom) return fw_errf(e, "tokenizer: out of memory");
    s->npend = n - used; /* < 4 by construction */
    memmove(s->pend, src + used, s->npend);
    *out = s->out.p ? s->out.p : "";
    *out_len = s->out.n;
    return FW_OK;
}

int fw_detok_stream_finish(fw_detok_stream *s, const char **out, size_t *out_len, fw_err *e) {
    s->out.n = 0;
    int oom;
    tok_utf8_lossy(s->pend, s->npend, true, &s->out, &oom);
    if (oom) return fw_errf(e, "tokenizer: out of memory");
    s->npend = 0;
    *out = s->out.p ? s->out.p : "";
    *out_len = s->out.n;
    return FW_OK;
}

void fw_detok_stream_free(fw_detok_stream *s) {
    if (!s) return;
    free(s->work.p);
    free(s->out.p);
    free(s);
}

/* ---- accessors ---- */

int32_t fw_tokenizer_bos(const fw_tokenizer *t) { return t->bos; }
int32_t fw_tokenizer_eos(const fw_tokenizer *t) { return t->eos; }
const char *fw_tokenizer_bos_text(const fw_tokenizer *t) { return t->bos_text ? t->bos_text : ""; }
int64_t fw_tokenizer_n_ids(const fw_tokenizer *t) { return t->n_ids; }
const char *fw_tokenizer_chat_template(const fw_tokenizer *t) { return t->chat_template; }

const char *fw_tokenizer_token(const fw_tokenizer *t, int32_t id, size_t *len) {
    return token_bytes(t, id, false, len);
}

bool fw_tokenizer_is_special(const fw_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids && (t->flags[id] & TOK_SPECIAL);
}

int32_t fw_tokenizer_token_id(const fw_tokenizer *t, const char *token) {
    size_t n = strlen(token);
    if (!n) return -1;
    int32_t id;
    if (tok_trie_longest(&t->added_raw, token, n, &id) == n) return id;
    if (tok_trie_longest(&t->added_norm, token, n, &id) == n) return id;
    tok_buf b = {0};
    id = bytelevel_to_bytes(token, n, &b) ? -1 : tok_strmap_get(&t->vocab, b.p, b.n);
    free(b.p);
    return id;
}
