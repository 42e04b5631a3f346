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

int fw_tool_guide_build(fw_tool_guide **out, fw_chat_format f, const json_t *tools, const int *idx, fw_tokenizer *t,
                        fw_json_cache *cache, int64_t V, fw_err *e) {
    *out = NULL;
    size_t n = json_array_size(tools);
    if (f != FW_CHAT_V3 && f != FW_CHAT_V31)
        return fw_errf(e, "a forced tool call is not supported in the %s chat format", fw_chat_format_name(f));
    if (n == 0 || n > FW_TOOL_GUIDE_MAX) return fw_errf(e, "a forced tool call needs 1 to %d tools", FW_TOOL_GUIDE_MAX);
    fw_tool_guide *g = calloc(1, sizeof *g);
    if (!g) return fw_errf(e, "out of memory");
    g->V = V;
    g->seq = calloc(n, sizeof *g->seq);
    g->len = calloc(n, sizeof *g->len);
    g->args = calloc(n, sizeof *g->args);
    if (!g->seq || !g->len || !g->args) {
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
                 f == FW_CHAT_V3 ? "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>%s\n```json\n"
                                 : "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>%s<｜tool▁sep｜>",
                 name);
        snprintf(path, sizeof path, "tools[%d].function.parameters", idx ? idx[i] : (int)i);
        if (tokens(t, open, V, &g->seq[i], &g->len[i], e) ||
            fw_json_grammar_get(cache, params && !json_is_null(params) ? params : NULL, path, &g->args[i], e)) {
            fw_tool_guide_free(g);
            return FW_ERR;
        }
    }
    g->eos = fw_json_grammar_eos(g->args[0]);
    if (tokens(t, f == FW_CHAT_V3 ? "\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>" : "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
               V, &g->close, &g->n_close, e)) {
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
    }
    free(g->seq), free(g->len), free(g->args), free(g->close);
    free(g);
}

static bool alive(const fw_tool_state *s, int i) { return s->alive[i / 64] >> (i % 64) & 1; }

void fw_tool_guide_start(const fw_tool_guide *g, fw_tool_state *s) {
    memset(s, 0, sizeof *s);
    s->phase = FW_TOOL_NAME;
    s->chosen = -1;
    for (int i = 0; i < g->n; i++) s->alive[i / 64] |= 1ull << (i % 64);
}

void fw_tool_guide_allowed(const fw_tool_guide *g, const fw_tool_state *s, int32_t *ids, int *n) {
    *n = 0;
    if (s->phase == FW_TOOL_NAME) {
        for (int i = 0; i < g->n; i++) {
            if (!alive(s, i) || s->pos >= g->len[i]) continue;
            int32_t id = g->seq[i][s->pos];
            bool dup = false;
            for (int k = 0; k < *n && !dup; k++) dup = ids[k] == id;
            if (!dup) ids[(*n)++] = id;
        }
    } else if (s->phase == FW_TOOL_CLOSE) {
        ids[(*n)++] = g->close[s->pos];
    } else if (s->phase == FW_TOOL_EOS) {
        ids[(*n)++] = g->eos;
    }
}

fw_json_grammar *fw_tool_guide_grammar(const fw_tool_guide *g, const fw_tool_state *s) {
    return s->phase == FW_TOOL_ARGS ? g->args[s->chosen] : NULL;
}

static void enter_close(const fw_tool_guide *g, fw_tool_state *s) {
    s->phase = g->n_close ? FW_TOOL_CLOSE : FW_TOOL_EOS;
    s->pos = 0;
}

void fw_tool_guide_accept(const fw_tool_guide *g, fw_tool_state *s, int32_t id) {
    switch (s->phase) {
    case FW_TOOL_NAME:
        for (int i = 0; i < g->n; i++)
            if (alive(s, i) && (s->pos >= g->len[i] || g->seq[i][s->pos] != id)) s->alive[i / 64] &= ~(1ull << (i % 64));
        s->pos++;
        for (int i = 0; i < g->n; i++)
            if (alive(s, i) && s->pos == g->len[i]) {
                s->chosen = i;
                s->phase = FW_TOOL_ARGS;
                fw_json_start(fw_json_grammar_nodes(g->args[i]), &s->js);
                break;
            }
        break;
    case FW_TOOL_ARGS: {
        fw_json_state t = s->js;
        if (!fw_json_grammar_accept(g->args[s->chosen], &t, id)) break;
        s->js = t;
        if (fw_json_complete(&s->js)) enter_close(g, s);
        break;
    }
    case FW_TOOL_CLOSE:
        if (id == g->close[s->pos] && ++s->pos == g->n_close) s->phase = FW_TOOL_EOS;
        break;
    case FW_TOOL_EOS:
        break;
    }
}
