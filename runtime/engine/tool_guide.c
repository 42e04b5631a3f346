#include "runtime/engine/tool_guide.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The text's tokens, each checked against the model's vocabulary. */
static int tokens(fw_tokenizer *t, const char *text, int64_t V, int32_t **ids, int64_t *n, fw_err *e) {
    if (fw_tokenizer_encode(t, text, strlen(text), false, ids, n, e)) return FW_ERR;
    for (int64_t i = 0; i < *n; i++)
        if ((*ids)[i] >= V) {
            fw_errf(e, "this model's vocabulary (%lld tokens) lacks the tool-call token %d of its chat format",
                    (long long)V, (*ids)[i]);
            free(*ids);
            *ids = NULL;
            return FW_ERR;
        }
    return FW_OK;
}

/* V3.2: function i's parameters, from the properties of its `parameters` schema. */
static int v32_params(fw_tool_guide *g, int i, const json_t *params, const char *path, fw_tokenizer *t,
                      fw_json_cache *cache, fw_err *e) {
    const json_t *props = json_object_get(params, "properties"), *req = json_object_get(params, "required");
    if (props && !json_is_object(props)) return fw_errf(e, "%s.properties must be an object", path);
    const size_t n = json_object_size(props);
    if (n >= FW_TOOL_GUIDE_MAX)
        return fw_errf(e, "%s.properties: %zu properties, a forced call in the v3.2 format writes at most %d", path,
                       n, FW_TOOL_GUIDE_MAX - 1);
    for (size_t k = 0; k < json_array_size(req); k++) {
        const char *key = json_string_value(json_array_get(req, k));
        if (!key || !json_object_get(props, key))
            return fw_errf(e, "%s.required[%zu] is not among the properties: a forced call cannot write it", path, k);
    }
    if (n && !(g->params[i] = calloc(n, sizeof *g->params[i]))) return fw_errf(e, "out of memory");
    const char *key;
    const json_t *sub;
    json_object_foreach((json_t *)props, key, sub) {
        fw_tool_param *p = &g->params[i][g->n_params[i]++];
        for (size_t k = 0; k < json_array_size(req); k++)
            p->required |= !strcmp(key, json_string_value(json_array_get(req, k)));
        if (strchr(key, '"') || strchr(key, '<'))
            return fw_errf(e, "%s.properties: the name '%s' cannot be written in a DSML tag", path, key);
        size_t lo = strlen(key) + 64, lp = strlen(path) + strlen(key) + 16;
        char *open = malloc(lo), *sp = malloc(lp);
        if (!open || !sp) {
            free(open), free(sp);
            return fw_errf(e, "out of memory");
        }
        snprintf(open, lo, "<｜DSML｜parameter name=\"%s\" string=\"false\">", key);
        snprintf(sp, lp, "%s.properties.%s", path, key);
        int rc = tokens(t, open, g->V, &p->open, &p->n_open, e) || fw_json_grammar_get_any(cache, sub, sp, &p->value, e);
        free(open), free(sp);
        if (rc) return FW_ERR;
    }
    return FW_OK;
}

int fw_tool_guide_build(fw_tool_guide **out, fw_chat_format f, const json_t *tools, const int *idx, fw_tokenizer *t,
                        fw_json_cache *cache, int64_t V, fw_err *e) {
    *out = NULL;
    size_t n = json_array_size(tools);
    if (f != FW_CHAT_V3 && f != FW_CHAT_V31 && f != FW_CHAT_V32)
        return fw_errf(e, "a forced tool call is not supported in the %s chat format", fw_chat_format_name(f));
    if (n == 0 || n > FW_TOOL_GUIDE_MAX) return fw_errf(e, "a forced tool call needs 1 to %d tools", FW_TOOL_GUIDE_MAX);
    fw_tool_guide *g = calloc(1, sizeof *g);
    if (!g) return fw_errf(e, "out of memory");
    g->format = f;
    g->V = V;
    g->eos = fw_json_cache_eos(cache);
    g->seq = calloc(n, sizeof *g->seq);
    g->len = calloc(n, sizeof *g->len);
    g->args = calloc(n, sizeof *g->args);
    g->params = calloc(n, sizeof *g->params);
    g->n_params = calloc(n, sizeof *g->n_params);
    if (!g->seq || !g->len || !g->args || !g->params || !g->n_params) {
        fw_tool_guide_free(g);
        return fw_errf(e, "out of memory");
    }
    g->n = (int)n;
    for (size_t i = 0; i < n; i++) {
        const json_t *fn = json_object_get(json_array_get(tools, i), "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        const json_t *params = json_object_get(fn, "parameters");
        char open[512], path[96];
        snprintf(open, sizeof open,
                 f == FW_CHAT_V3    ? "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>%s\n```json\n"
                 : f == FW_CHAT_V31 ? "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>%s<｜tool▁sep｜>"
                                    : "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"%s\">\n",
                 name);
        snprintf(path, sizeof path, "tools[%d].function.parameters", idx ? idx[i] : (int)i);
        if (params && json_is_null(params)) params = NULL;
        if (tokens(t, open, V, &g->seq[i], &g->len[i], e) ||
            (f == FW_CHAT_V32 ? v32_params(g, (int)i, params, path, t, cache, e)
                              : fw_json_grammar_get(cache, params, path, &g->args[i], e))) {
            fw_tool_guide_free(g);
            return FW_ERR;
        }
    }
    const char *close = f == FW_CHAT_V3    ? "\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
                        : f == FW_CHAT_V31 ? "<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
                                           : "</｜DSML｜invoke>\n</｜DSML｜function_calls>";
    if (tokens(t, close, V, &g->close, &g->n_close, e) ||
        (f == FW_CHAT_V32 && tokens(t, "</｜DSML｜parameter>\n", V, &g->pclose, &g->n_pclose, e))) {
        fw_tool_guide_free(g);
        return FW_ERR;
    }
    *out = g;
    return FW_OK;
}

void fw_tool_guide_free(fw_tool_guide *g) {
    if (!g) return;
    for (int i = 0; i < g->n; i++) {
        free(g->seq[i]);
        fw_json_grammar_release(g->args[i]);
        for (int k = 0; g->params && k < g->n_params[i]; k++) {
            free(g->params[i][k].open);
            fw_json_grammar_release(g->params[i][k].value);
        }
        if (g->params) free(g->params[i]);
    }
    free(g->seq), free(g->len), free(g->args), free(g->params), free(g->n_params), free(g->close), free(g->pclose);
    free(g);
}

static bool alive(const fw_tool_state *s, int i) { return s->alive[i / 64] >> (i % 64) & 1; }
static void set_alive(fw_tool_state *s, int i) { s->alive[i / 64] |= 1ull << (i % 64); }
static void drop(fw_tool_state *s, int i) { s->alive[i / 64] &= ~(1ull << (i % 64)); }

void fw_tool_guide_start(const fw_tool_guide *g, fw_tool_state *s) {
    memset(s, 0, sizeof *s);
    s->phase = FW_TOOL_NAME;
    s->chosen = -1;
    for (int i = 0; i < g->n; i++) set_alive(s, i);
}

/* The token sequences the name and parameter phases choose among: candidate k's
 * tokens and their count. Name: function k's opening. V3.2 parameter: k <
 * n_params parameter k's opening tag, k == n_params the call's closing tokens. */
static int candidates(const fw_tool_guide *g, const fw_tool_state *s) {
    return s->phase == FW_TOOL_NAME ? g->n : g->n_params[s->chosen] + 1;
}

static const int32_t *cand(const fw_tool_guide *g, const fw_tool_state *s, int k, int64_t *len) {
    if (s->phase == FW_TOOL_NAME) return *len = g->len[k], g->seq[k];
    const int np = g->n_params[s->chosen];
    if (k == np) return *len = g->n_close, g->close;
    return *len = g->params[s->chosen][k].n_open, g->params[s->chosen][k].open;
}

/* Drops the candidates that do not continue with id; returns the one id
 * completes, or -1. */
static int narrow(const fw_tool_guide *g, fw_tool_state *s, int32_t id) {
    const int m = candidates(g, s);
    for (int k = 0; k < m; k++) {
        int64_t len;
        const int32_t *seq = cand(g, s, k, &len);
        if (alive(s, k) && (s->pos >= len || seq[s->pos] != id)) drop(s, k);
    }
    s->pos++;
    for (int k = 0; k < m; k++) {
        int64_t len;
        cand(g, s, k, &len);
        if (alive(s, k) && s->pos == len) return k;
    }
    return -1;
}

/* V3.2: the choice after the invoke tag or a parameter: parameters next .. the first required one (none
 * skipped), and the closing tokens once none required is left. */
static void enter_param(const fw_tool_guide *g, fw_tool_state *s) {
    const int np = g->n_params[s->chosen];
    s->phase = FW_TOOL_PARAM;
    s->pos = 0;
    memset(s->alive, 0, sizeof s->alive);
    int k = s->next;
    for (; k < np; k++) {
        set_alive(s, k);
        if (g->params[s->chosen][k].required) break;
    }
    if (k >= np) set_alive(s, np);
}

void fw_tool_guide_allowed(const fw_tool_guide *g, const fw_tool_state *s, int32_t *ids, int *n) {
    *n = 0;
    if (s->phase == FW_TOOL_NAME || s->phase == FW_TOOL_PARAM) {
        const int m = candidates(g, s);
        for (int i = 0; i < m; i++) {
            int64_t len;
            const int32_t *seq = cand(g, s, i, &len);
            if (!alive(s, i) || s->pos >= len) continue;
            int32_t id = seq[s->pos];
            bool dup = false;
            for (int k = 0; k < *n && !dup; k++) dup = ids[k] == id;
            if (!dup) ids[(*n)++] = id;
        }
    } else if (s->phase == FW_TOOL_PCLOSE) {
        ids[(*n)++] = g->pclose[s->pos];
    } else if (s->phase == FW_TOOL_CLOSE) {
        ids[(*n)++] = g->close[s->pos];
    } else if (s->phase == FW_TOOL_EOS) {
        ids[(*n)++] = g->eos;
    }
}

fw_json_grammar *fw_tool_guide_grammar(const fw_tool_guide *g, const fw_tool_state *s) {
    if (s->phase != FW_TOOL_ARGS) return NULL;
    return g->format == FW_CHAT_V32 ? g->params[s->chosen][s->param].value : g->args[s->chosen];
}

int32_t fw_tool_guide_value_end(const fw_tool_guide *g, const fw_tool_state *s) {
    if (g->format != FW_CHAT_V32 || s->phase != FW_TOOL_ARGS) return -1;
    return fw_json_can_end(fw_json_grammar_nodes(g->params[s->chosen][s->param].value), &s->js) ? g->pclose[0] : -1;
}

static void enter_close(const fw_tool_guide *g, fw_tool_state *s) {
    s->phase = g->n_close ? FW_TOOL_CLOSE : FW_TOOL_EOS;
    s->pos = 0;
}

void fw_tool_guide_accept(const fw_tool_guide *g, fw_tool_state *s, int32_t id) {
    switch (s->phase) {
    case FW_TOOL_NAME: {
        const int i = narrow(g, s, id);
        if (i < 0) break;
        s->chosen = i;
        if (g->format == FW_CHAT_V32) {
            s->next = 0;
            enter_param(g, s);
        } else {
            s->phase = FW_TOOL_ARGS;
            fw_json_start(fw_json_grammar_nodes(g->args[i]), &s->js);
        }
        break;
    }
    case FW_TOOL_PARAM: {
        const int k = narrow(g, s, id);
        if (k < 0) break;
        if (k == g->n_params[s->chosen]) {
            s->phase = FW_TOOL_EOS;
        } else {
            s->param = k, s->next = k + 1;
            s->phase = FW_TOOL_ARGS;
            fw_json_start(fw_json_grammar_nodes(g->params[s->chosen][k].value), &s->js);
        }
        break;
    }
    case FW_TOOL_ARGS: {
        fw_json_state t = s->js;
        if (g->format == FW_CHAT_V32) {
            if (id != g->eos && fw_json_grammar_accept(g->params[s->chosen][s->param].value, &t, id)) {
                s->js = t;
            } else if (id == fw_tool_guide_value_end(g, s)) {
                s->phase = FW_TOOL_PCLOSE, s->pos = 1;
                if (s->pos == g->n_pclose) enter_param(g, s);
            }
            break;
        }
        if (!fw_json_grammar_accept(g->args[s->chosen], &t, id)) break;
        s->js = t;
        if (fw_json_complete(&s->js)) enter_close(g, s);
        break;
    }
    case FW_TOOL_PCLOSE:
        if (id == g->pclose[s->pos] && ++s->pos == g->n_pclose) enter_param(g, s);
        break;
    case FW_TOOL_CLOSE:
        if (id == g->close[s->pos] && ++s->pos == g->n_close) s->phase = FW_TOOL_EOS;
        break;
    case FW_TOOL_EOS:
        break;
    }
}
