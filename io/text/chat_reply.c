/* Reply parsing (io/text/chat_reply.h). The call syntaxes:
 *   V3:   <｜tool▁calls▁begin｜>(<｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>)+<｜tool▁calls▁end｜>
 *   V3.1: <｜tool▁calls▁begin｜>(<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>)+<｜tool▁calls▁end｜>
 *   V3.2: \n\n<｜DSML｜function_calls>\n(<｜DSML｜invoke name="NAME">\n(<｜DSML｜parameter name="K"
 *         string="true|false">V</｜DSML｜parameter>\n)*</｜DSML｜invoke>\n)+</｜DSML｜function_calls>
 * Whitespace between the calls is allowed; after the last marker only whitespace. */
#include "io/text/chat_reply.h"

#include <stdlib.h>
#include <string.h>

const char fw_chat_think_end[] = "</think>";
static const char think_begin[] = "<think>";

const char *fw_chat_tool_marker(fw_chat_format f) {
    return f == FW_CHAT_V32 ? "\n\n<｜DSML｜function_calls" : "<｜tool▁calls▁begin｜>";
}

const char *fw_chat_find(const char *text, size_t len, const char *marker) {
    size_t m = strlen(marker);
    for (size_t i = 0; i + m <= len; i++)
        if (text[i] == marker[0] && !memcmp(text + i, marker, m)) return text + i;
    return NULL;
}

size_t fw_chat_marker_tail(const char *text, size_t len, const char *marker) {
    size_t m = strlen(marker);
    for (size_t k = m - 1 < len ? m - 1 : len; k > 0; k--)
        if (!memcmp(text + len - k, marker, k)) return k;
    return 0;
}

typedef struct cur {
    const char *p, *end;
} cur;

static void skip_ws(cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t')) c->p++;
}
static bool eat(cur *c, const char *s) {
    size_t n = strlen(s);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n)) return false;
    c->p += n;
    return true;
}
/* The text up to marker (moved past it); false when there is none. */
static bool until(cur *c, const char *marker, const char **s, size_t *n) {
    const char *hit = fw_chat_find(c->p, (size_t)(c->end - c->p), marker);
    if (!hit) return false;
    *s = c->p, *n = (size_t)(hit - c->p);
    c->p = hit + strlen(marker);
    return true;
}
static void trim(const char **s, size_t *n) {
    while (*n && strchr(" \n\r\t", (*s)[0])) (*s)++, (*n)--;
    while (*n && strchr(" \n\r\t", (*s)[*n - 1])) (*n)--;
}

static bool known(const json_t *tools, const char *name, size_t n) {
    size_t k;
    const json_t *t;
    json_array_foreach(tools, k, t) {
        const char *x = json_string_value(json_object_get(json_object_get(t, "function"), "name"));
        if (x && strlen(x) == n && !memcmp(x, name, n)) return true;
    }
    return false;
}

static bool add_call(fw_chat_reply *r, const json_t *tools, const char *name, size_t nn, const char *args, size_t na) {
    if (!nn || !known(tools, name, nn)) return false;
    json_t *a = json_loadb(args, na, JSON_REJECT_DUPLICATES, NULL);
    bool obj = json_is_object(a);
    json_decref(a);
    if (!obj) return false;
    fw_chat_call *v = realloc(r->calls, (size_t)(r->n_calls + 1) * sizeof *v);
    if (!v) return false;
    r->calls = v;
    v[r->n_calls].name = strndup(name, nn);
    v[r->n_calls].arguments = strndup(args, na);
    if (!v[r->n_calls].name || !v[r->n_calls].arguments) {
        free(v[r->n_calls].name), free(v[r->n_calls].arguments);
        return false;
    }
    r->n_calls++;
    return true;
}

/* V3 and V3.1 calls from just after <｜tool▁calls▁begin｜>. */
static bool parse_v3(cur *c, bool v31, const json_t *tools, fw_chat_reply *r) {
    for (;;) {
        skip_ws(c);
        if (r->n_calls && eat(c, "<｜tool▁calls▁end｜>")) break;
        if (!eat(c, "<｜tool▁call▁begin｜>")) return false;
        const char *name, *args, *body;
        size_t nn, na, nb;
        if (!v31) {
            const char *type;
            size_t nt;
            if (!until(c, "<｜tool▁sep｜>", &type, &nt)) return false;
            trim(&type, &nt);
            if (nt != 8 || memcmp(type, "function", 8)) return false;
        }
        if (!until(c, "<｜tool▁call▁end｜>", &body, &nb)) return false;
        if (v31) {
            cur b = {body, body + nb};
            if (!until(&b, "<｜tool▁sep｜>", &name, &nn)) return false;
            args = b.p, na = (size_t)(b.end - b.p);
        } else { /* NAME\n```json\nARGS\n``` */
            cur b = {body, body + nb};
            if (!until(&b, "```json", &name, &nn)) return false;
            args = b.p, na = (size_t)(b.end - b.p);
            trim(&args, &na);
            if (na < 3 || memcmp(args + na - 3, "```", 3)) return false;
            na -= 3;
        }
        trim(&name, &nn);
        trim(&args, &na);
        if (!add_call(r, tools, name, nn, args, na)) return false;
    }
    skip_ws(c);
    return c->p == c->end;
}

/* V3.2's DSML from just after "\n\n<｜DSML｜function_calls". */
static bool parse_v32(cur *c, const json_t *tools, fw_chat_reply *r) {
    if (!eat(c, ">")) return false;
    for (;;) {
        skip_ws(c);
        if (r->n_calls && eat(c, "</｜DSML｜function_calls>")) break;
        if (!eat(c, "<｜DSML｜invoke name=\"")) return false;
        const char *name;
        size_t nn;
        if (!until(c, "\">", &name, &nn)) return false;
        json_t *args = json_object();
        bool ok = args != NULL;
        for (;;) {
            skip_ws(c);
            if (eat(c, "</｜DSML｜invoke>")) break;
            const char *key, *flag, *val;
            size_t nk, nf, nv;
            ok = ok && eat(c, "<｜DSML｜parameter name=\"") && until(c, "\" string=\"", &key, &nk) &&
                 until(c, "\">", &flag, &nf) && until(c, "</｜DSML｜parameter>", &val, &nv);
            if (!ok) break;
            char *k = strndup(key, nk);
            json_t *v = NULL;
            if (nf == 4 && !memcmp(flag, "true", 4)) v = json_stringn(val, nv);
            else if (nf == 5 && !memcmp(flag, "false", 5)) v = json_loadb(val, nv, JSON_DECODE_ANY, NULL);
            ok = k && v && !json_object_get(args, k) && !json_object_set_new(args, k, v);
            if (!ok) json_decref(v);
            free(k);
            if (!ok) break;
        }
        char *text = ok ? json_dumps(args, JSON_COMPACT) : NULL;
        json_decref(args);
        ok = ok && text && add_call(r, tools, name, nn, text, strlen(text));
        free(text);
        if (!ok) return false;
    }
    skip_ws(c);
    return c->p == c->end;
}

int fw_chat_reply_parse(fw_chat_format f, const char *text, size_t len, bool thinking, bool parse_tools,
                        const json_t *tools, fw_chat_reply *r, fw_err *e) {
    memset(r, 0, sizeof *r);
    const char *rest = text;
    size_t n = len;
    if (thinking) {
        if (n >= strlen(think_begin) && !memcmp(rest, think_begin, strlen(think_begin)))
            rest += strlen(think_begin), n -= strlen(think_begin);
        const char *end = fw_chat_find(rest, n, fw_chat_think_end);
        size_t nr = end ? (size_t)(end - rest) : n;
        if (!(r->reasoning = strndup(rest, nr))) return fw_errf(e, "out of memory");
        if (end) n -= nr + strlen(fw_chat_think_end), rest = end + strlen(fw_chat_think_end);
        else n = 0;
    }
    const char *marker = fw_chat_tool_marker(f);
    const char *at = parse_tools ? fw_chat_find(rest, n, marker) : NULL;
    if (at) {
        cur c = {at + strlen(marker), rest + n};
        bool ok = f == FW_CHAT_V32 ? parse_v32(&c, tools, r) : parse_v3(&c, f == FW_CHAT_V31, tools, r);
        if (!ok) { /* the whole reply is text */
            for (int i = 0; i < r->n_calls; i++) free(r->calls[i].name), free(r->calls[i].arguments);
            free(r->calls);
            r->calls = NULL, r->n_calls = 0;
            at = NULL;
        }
    }
    if (!(r->content = strndup(rest, at ? (size_t)(at - rest) : n))) {
        fw_chat_reply_free(r);
        return fw_errf(e, "out of memory");
    }
    return FW_OK;
}

void fw_chat_reply_free(fw_chat_reply *r) {
    for (int i = 0; i < r->n_calls; i++) free(r->calls[i].name), free(r->calls[i].arguments);
    free(r->calls);
    free(r->content);
    free(r->reasoning);
    memset(r, 0, sizeof *r);
}
