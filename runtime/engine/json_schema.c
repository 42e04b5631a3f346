/* JSON schema -> the automaton's nodes (runtime/engine/json_grammar.h). A
 * keyword of the subset is honoured; an annotation (description, title, ...)
 * is ignored; a validation keyword the automaton cannot honour is refused, with
 * the field's path, rather than silently producing output that fails it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/engine/json_grammar.h"

/* The nodes every grammar has, at these indices: what "any value" branches to. */
enum { G_ANY, G_OBJECT, G_ARRAY, G_STRING, G_NUMBER, G_BOOL, G_NULL, G_ROOT, G_FIXED };

/* Keywords whose meaning the automaton cannot enforce. */
static const char *const refused[] = {
    "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "$ref",
    "$defs", "definitions", "oneOf", "allOf", "not", "patternProperties", "propertyNames", "minProperties",
    "maxProperties", "uniqueItems", "prefixItems", "contains", "minContains", "maxContains", "if", "then", "else",
    "dependentRequired", "dependentSchemas", "unevaluatedProperties", "unevaluatedItems", "contentEncoding",
    "contentMediaType", "additionalItems", "dependencies", NULL};

static void set_bit(uint8_t *set, unsigned c) { set[c >> 3] |= (uint8_t)(1u << (c & 7)); }

static int add_node(fw_json_nodes *g, fw_json_kind kind, fw_err *e) {
    if (g->n >= FW_JSON_MAX_NODES) return fw_errf(e, "the schema has more than %d parts", FW_JSON_MAX_NODES), -1;
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 16;
        fw_json_node *v = realloc(g->v, (size_t)cap * sizeof *v);
        if (!v) return fw_errf(e, "out of memory"), -1;
        g->v = v, g->cap = cap;
    }
    fw_json_node *n = &g->v[g->n];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->max = -1;
    return g->n++;
}

/* Room for n texts and children in node i. */
static int alloc_parts(fw_json_nodes *g, int i, int n, fw_err *e) {
    fw_json_node *x = &g->v[i];
    x->n = n;
    x->text = calloc((size_t)n + 1, sizeof *x->text);
    x->len = calloc((size_t)n + 1, sizeof *x->len);
    x->child = calloc((size_t)n + 1, sizeof *x->child);
    x->required = calloc((size_t)n + 1, sizeof *x->required);
    if (!x->text || !x->len || !x->child || !x->required) return fw_errf(e, "out of memory");
    return FW_OK;
}

static void first_bytes(fw_json_nodes *g, int i) {
    fw_json_node *x = &g->v[i];
    memset(x->first, 0, sizeof x->first);
    switch (x->kind) {
    case FW_JN_OBJECT_ANY:
    case FW_JN_OBJECT: set_bit(x->first, '{'); break;
    case FW_JN_ARRAY: set_bit(x->first, '['); break;
    case FW_JN_STRING: set_bit(x->first, '"'); break;
    case FW_JN_NUMBER:
    case FW_JN_INTEGER:
        set_bit(x->first, '-');
        for (unsigned c = '0'; c <= '9'; c++) set_bit(x->first, c);
        break;
    case FW_JN_ENUM:
        for (int k = 0; k < x->n; k++) set_bit(x->first, (uint8_t)x->text[k][0]);
        break;
    case FW_JN_ANY:
        for (int k = G_OBJECT; k <= G_NULL; k++)
            for (int b = 0; b < 32; b++) x->first[b] |= g->v[k].first[b];
        break;
    case FW_JN_UNION:
        for (int k = 0; k < x->n; k++)
            for (int b = 0; b < 32; b++) x->first[b] |= g->v[x->child[k]].first[b];
        break;
    case FW_JN_ROOT: break;
    }
}

/* An enum node of JSON texts. */
static int enum_node(fw_json_nodes *g, const json_t *const *vals, int n, const char *path, fw_err *e) {
    int i = add_node(g, FW_JN_ENUM, e);
    if (i < 0 || alloc_parts(g, i, n, e)) return -1;
    for (int k = 0; k < n; k++) {
        char *t = json_dumps(vals[k], JSON_COMPACT | JSON_ENCODE_ANY);
        if (!t) return fw_errf(e, "out of memory"), -1;
        g->v[i].text[k] = t;
        g->v[i].len[k] = (uint32_t)strlen(t);
        if (g->v[i].len[k] > FW_JSON_MAX_LITERAL)
            return fw_errf(e, "%s: a value of %u bytes as JSON; at most %d", path, g->v[i].len[k], FW_JSON_MAX_LITERAL), -1;
        for (int j = 0; j < k; j++)
            if (!strcmp(g->v[i].text[j], t)) return fw_errf(e, "%s: the value %s appears twice", path, t), -1;
    }
    first_bytes(g, i);
    return i;
}

static int generic(fw_json_nodes *g, fw_err *e) {
    static const fw_json_kind kind[] = {[G_ANY] = FW_JN_ANY, [G_OBJECT] = FW_JN_OBJECT_ANY, [G_ARRAY] = FW_JN_ARRAY,
                                         [G_STRING] = FW_JN_STRING, [G_NUMBER] = FW_JN_NUMBER, [G_ROOT] = FW_JN_ROOT};
    for (int k = 0; k < G_FIXED; k++) {
        int i;
        if (k == G_BOOL || k == G_NULL) { /* literals: enums of their JSON text */
            json_t *v[2] = {k == G_BOOL ? json_true() : json_null(), json_false()};
            i = enum_node(g, (const json_t *const *)v, k == G_BOOL ? 2 : 1, k == G_BOOL ? "boolean" : "null", e);
        } else {
            i = add_node(g, kind[k], e);
            if (i >= 0 && (k == G_ARRAY || k == G_ROOT) && alloc_parts(g, i, 1, e)) return FW_ERR;
        }
        if (i != k) return FW_ERR;
    }
    g->v[G_ARRAY].child[0] = G_ANY;
    for (int k = G_OBJECT; k <= G_NUMBER; k++) first_bytes(g, k);
    first_bytes(g, G_ANY);
    return FW_OK;
}

/* A non-negative integer keyword, or -1 when absent. */
static int count_kw(const json_t *s, const char *kw, const char *path, int64_t *out, fw_err *e) {
    const json_t *v = json_object_get(s, kw);
    *out = -1;
    if (!v) return FW_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > UINT32_MAX / 2)
        return fw_errf(e, "%s.%s: must be a non-negative integer", path, kw);
    *out = json_integer_value(v);
    return FW_OK;
}

static int compile(fw_json_nodes *g, const json_t *s, const char *path, int depth, fw_err *e);

/* Whether a JSON value has the type named t. */
static bool of_type(const json_t *v, const char *t) {
    if (!strcmp(t, "object")) return json_is_object(v);
    if (!strcmp(t, "array")) return json_is_array(v);
    if (!strcmp(t, "string")) return json_is_string(v);
    if (!strcmp(t, "integer")) return json_is_integer(v);
    if (!strcmp(t, "number")) return json_is_number(v);
    if (!strcmp(t, "boolean")) return json_is_boolean(v);
    return json_is_null(v);
}

static int object(fw_json_nodes *g, const json_t *s, const char *path, int depth, fw_err *e) {
    const json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    const json_t *add = json_object_get(s, "additionalProperties");
    char sub[1024];
    if (add && !json_is_boolean(add) && !json_is_object(add))
        return fw_errf(e, "%s.additionalProperties: must be a boolean or a schema", path), -1;
    if (props && !json_is_object(props)) return fw_errf(e, "%s.properties: must be an object", path), -1;
    if (req && !json_is_array(req)) return fw_errf(e, "%s.required: must be an array of strings", path), -1;
    size_t nr = req ? json_array_size(req) : 0;
    for (size_t k = 0; k < nr; k++) {
        const json_t *r = json_array_get(req, k);
        if (!json_is_string(r)) return fw_errf(e, "%s.required[%zu]: must be a string", path, k), -1;
        if (!props || !json_object_get(props, json_string_value(r)))
            return fw_errf(e, "%s.required[%zu]: '%s' is not in properties", path, k, json_string_value(r)), -1;
    }
    /* Without properties: any object, unless none may be added. (With them,
     * only those are written: that satisfies additionalProperties whatever it is.) */
    if (!props && !json_is_false(add)) return G_OBJECT;
    if (!props) { /* {} only */
        int i = add_node(g, FW_JN_OBJECT, e);
        if (i >= 0) first_bytes(g, i);
        return i;
    }
    size_t n = json_object_size(props);
    if (n > FW_JSON_MAX_PROPS) return fw_errf(e, "%s.properties: %zu properties; at most %d", path, n, FW_JSON_MAX_PROPS), -1;
    int i = add_node(g, FW_JN_OBJECT, e);
    if (i < 0 || alloc_parts(g, i, (int)n, e)) return -1;
    const char *key;
    const json_t *v;
    int k = 0;
    json_object_foreach((json_t *)props, key, v) { /* jansson keeps insertion order: the schema's */
        snprintf(sub, sizeof sub, "%s.properties.%s", path, key);
        json_t *name = json_string(key);
        char *t = name ? json_dumps(name, JSON_ENCODE_ANY) : NULL;
        json_decref(name);
        if (!t) return fw_errf(e, "out of memory"), -1;
        size_t len = strlen(t) - 2; /* without the quotes */
        memmove(t, t + 1, len);
        t[len] = 0;
        g->v[i].text[k] = t;
        g->v[i].len[k] = (uint32_t)len;
        if (len > FW_JSON_MAX_NAME) return fw_errf(e, "%s: the name has %zu bytes; at most %d", sub, len, FW_JSON_MAX_NAME), -1;
        for (size_t r = 0; r < nr; r++)
            if (!strcmp(json_string_value(json_array_get(req, r)), key)) g->v[i].required[k] = true;
        int c = compile(g, v, sub, depth + 1, e);
        if (c < 0) return -1;
        g->v[i].child[k++] = c;
    }
    first_bytes(g, i);
    return i;
}

static int array(fw_json_nodes *g, const json_t *s, const char *path, int depth, fw_err *e) {
    int64_t lo, hi;
    char sub[1024];
    if (count_kw(s, "minItems", path, &lo, e) || count_kw(s, "maxItems", path, &hi, e)) return -1;
    if (hi >= 0 && lo > hi) return fw_errf(e, "%s.minItems: %lld is more than maxItems %lld", path, (long long)lo, (long long)hi), -1;
    const json_t *items = json_object_get(s, "items");
    int c = G_ANY;
    if (items) {
        snprintf(sub, sizeof sub, "%s.items", path);
        if ((c = compile(g, items, sub, depth + 1, e)) < 0) return -1;
    }
    if (c == G_ANY && lo <= 0 && hi < 0) return G_ARRAY;
    int i = add_node(g, FW_JN_ARRAY, e);
    if (i < 0 || alloc_parts(g, i, 1, e)) return -1;
    g->v[i].child[0] = c;
    g->v[i].min = lo < 0 ? 0 : lo;
    g->v[i].max = hi;
    first_bytes(g, i);
    return i;
}

static int string(fw_json_nodes *g, const json_t *s, const char *path, fw_err *e) {
    int64_t lo, hi;
    if (count_kw(s, "minLength", path, &lo, e) || count_kw(s, "maxLength", path, &hi, e)) return -1;
    if (hi >= 0 && lo > hi)
        return fw_errf(e, "%s.minLength: %lld is more than maxLength %lld", path, (long long)lo, (long long)hi), -1;
    if (lo <= 0 && hi < 0) return G_STRING;
    int i = add_node(g, FW_JN_STRING, e);
    if (i < 0) return -1;
    g->v[i].min = lo < 0 ? 0 : lo;
    g->v[i].max = hi;
    first_bytes(g, i);
    return i;
}

/* The node of one type name. */
static int one_type(fw_json_nodes *g, const json_t *s, const char *t, const char *path, int depth, fw_err *e) {
    if (!strcmp(t, "object")) return object(g, s, path, depth, e);
    if (!strcmp(t, "array")) return array(g, s, path, depth, e);
    if (!strcmp(t, "string")) return string(g, s, path, e);
    if (!strcmp(t, "number")) return G_NUMBER;
    if (!strcmp(t, "integer")) {
        int i = add_node(g, FW_JN_INTEGER, e);
        if (i >= 0) first_bytes(g, i);
        return i;
    }
    if (!strcmp(t, "boolean")) return G_BOOL;
    if (!strcmp(t, "null")) return G_NULL;
    return fw_errf(e, "%s.type: unknown type '%s' (object, array, string, number, integer, boolean, null)", path, t), -1;
}

/* A union of alternatives, which must start with different bytes. */
static int union_node(fw_json_nodes *g, const int *alt, int n, const char *path, fw_err *e) {
    if (n == 1) return alt[0];
    for (int a = 0; a < n; a++)
        for (int b = a + 1; b < n; b++)
            for (int k = 0; k < 32; k++)
                if (g->v[alt[a]].first[k] & g->v[alt[b]].first[k])
                    return fw_errf(e, "%s: alternatives %d and %d can start with the same character; only alternatives "
                                      "of different types (or enums starting differently) are supported",
                                   path, a, b),
                           -1;
    int i = add_node(g, FW_JN_UNION, e);
    if (i < 0 || alloc_parts(g, i, n, e)) return -1;
    memcpy(g->v[i].child, alt, (size_t)n * sizeof *alt);
    first_bytes(g, i);
    return i;
}

static int compile(fw_json_nodes *g, const json_t *s, const char *path, int depth, fw_err *e) {
    char sub[1024];
    if (json_is_true(s)) return G_ANY;
    if (!json_is_object(s)) return fw_errf(e, "%s: a schema must be an object", path), -1;
    if (depth > FW_JSON_MAX_DEPTH - 4) return fw_errf(e, "%s: nested more than %d levels deep", path, FW_JSON_MAX_DEPTH - 4), -1;
    for (int k = 0; refused[k]; k++)
        if (json_object_get(s, refused[k]))
            return fw_errf(e, "%s.%s: not supported (JSON output honours type, properties, required, "
                              "additionalProperties, items, minItems, maxItems, minLength, maxLength, enum, const, "
                              "anyOf)",
                           path, refused[k]),
                   -1;
    const json_t *type = json_object_get(s, "type"), *en = json_object_get(s, "enum"), *cn = json_object_get(s, "const");
    const json_t *any = json_object_get(s, "anyOf");
    const char *types[8];
    int nt = 0;
    snprintf(sub, sizeof sub, "%s.type", path);
    if (type && json_is_string(type)) types[nt++] = json_string_value(type);
    else if (type && json_is_array(type) && json_array_size(type) > 0 && json_array_size(type) <= 7) {
        for (size_t k = 0; k < json_array_size(type); k++) {
            const json_t *t = json_array_get(type, k);
            if (!json_is_string(t)) return fw_errf(e, "%s[%zu]: must be a string", sub, k), -1;
            types[nt++] = json_string_value(t);
        }
    } else if (type) return fw_errf(e, "%s: must be a type name or an array of 1 to 7 of them", sub), -1;
    if (en || cn) {
        const char *kw = en ? "enum" : "const";
        snprintf(sub, sizeof sub, "%s.%s", path, kw);
        if (en && cn) return fw_errf(e, "%s: enum and const together are not supported", sub), -1;
        if (en && (!json_is_array(en) || json_array_size(en) == 0 || json_array_size(en) > FW_JSON_MAX_PROPS))
            return fw_errf(e, "%s: must be an array of 1 to %d values", sub, FW_JSON_MAX_PROPS), -1;
        int n = en ? (int)json_array_size(en) : 1;
        const json_t *vals[FW_JSON_MAX_PROPS];
        for (int k = 0; k < n; k++) {
            vals[k] = en ? json_array_get(en, (size_t)k) : cn;
            bool ok = nt == 0;
            for (int t = 0; t < nt; t++) ok |= of_type(vals[k], types[t]);
            if (!ok) return fw_errf(e, "%s: value %d is not of the schema's type", sub, k), -1;
        }
        return enum_node(g, vals, n, sub, e);
    }
    if (any) {
        snprintf(sub, sizeof sub, "%s.anyOf", path);
        if (type) return fw_errf(e, "%s: anyOf with type beside it is not supported", sub), -1;
        if (!json_is_array(any) || json_array_size(any) == 0 || json_array_size(any) > 8)
            return fw_errf(e, "%s: must be an array of 1 to 8 schemas", sub), -1;
        int alt[8], n = (int)json_array_size(any);
        for (int k = 0; k < n; k++) {
            char one[1040];
            snprintf(one, sizeof one, "%s[%d]", sub, k);
            if ((alt[k] = compile(g, json_array_get(any, (size_t)k), one, depth, e)) < 0) return -1;
        }
        return union_node(g, alt, n, sub, e);
    }
    if (nt == 0) { /* no type: what the keywords imply, else anything */
        if (json_object_get(s, "properties") || json_object_get(s, "required")) types[nt++] = "object";
        else if (json_object_get(s, "items")) types[nt++] = "array";
        else return G_ANY;
    }
    bool has_number = false;
    for (int t = 0; t < nt; t++) has_number |= !strcmp(types[t], "number");
    int alt[8], n = 0;
    for (int t = 0; t < nt; t++) {
        if (has_number && !strcmp(types[t], "integer")) continue; /* a number covers it */
        for (int k = 0; k < t; k++)
            if (!strcmp(types[k], types[t])) return fw_errf(e, "%s.type: '%s' appears twice", path, types[t]), -1;
        if ((alt[n++] = one_type(g, s, types[t], path, depth, e)) < 0) return -1;
    }
    snprintf(sub, sizeof sub, "%s.type", path);
    return union_node(g, alt, n, sub, e);
}

int fw_json_schema_object_root(const json_t *schema, const char *path, fw_err *e) {
    if (!schema) return FW_OK;
    if (!json_is_object(schema)) return fw_errf(e, "%s: a schema must be an object", path);
    const json_t *t = json_object_get(schema, "type");
    if (!json_is_string(t) || strcmp(json_string_value(t), "object"))
        return fw_errf(e, "%s.type: the top-level schema must be of type \"object\"", path);
    return FW_OK;
}

int fw_json_nodes_compile(fw_json_nodes *g, const json_t *schema, const char *path, fw_err *e) {
    memset(g, 0, sizeof *g);
    return fw_json_schema_object_root(schema, path, e) ? FW_ERR : fw_json_nodes_compile_any(g, schema, path, e);
}

int fw_json_nodes_compile_any(fw_json_nodes *g, const json_t *schema, const char *path, fw_err *e) {
    memset(g, 0, sizeof *g);
    if (generic(g, e)) goto fail;
    int root = G_OBJECT;
    if (schema) {
        if (!json_is_object(schema)) {
            fw_errf(e, "%s: a schema must be an object", path);
            goto fail;
        }
        if ((root = compile(g, schema, path, 1, e)) < 0) goto fail;
    }
    g->v[G_ROOT].child[0] = root;
    g->root = G_ROOT;
    return FW_OK;
fail:
    fw_json_nodes_free(g);
    return FW_ERR;
}

void fw_json_nodes_free(fw_json_nodes *g) {
    for (int i = 0; i < g->n; i++) {
        fw_json_node *x = &g->v[i];
        if (x->text)
            for (int k = 0; k < x->n; k++) free(x->text[k]);
        free(x->text), free(x->len), free(x->child), free(x->required);
    }
    free(g->v);
    memset(g, 0, sizeof *g);
}
