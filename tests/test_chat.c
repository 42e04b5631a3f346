/* The chat template against the golden chat-template.jsonl (rendered by the
 * checkpoint's own Jinja template), its other features, and the refusals. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "io/text/chat.h"
#include "io/text/chat_reply.h"
#include "io/text/tokenizer.h"
#include "tests/check.h"

static void golden(fw_tokenizer *t, const char *shared) {
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/chat-template.jsonl", shared);
    FILE *f = fopen(path, "r");
    if (!f) {
        CHECK(0, "cannot open %s", path);
        return;
    }
    char *line = NULL;
    size_t cap = 0;
    int n_lines = 0, n_pass = 0, n_bad_golden = 0;
    while (getline(&line, &cap, f) > 0) {
        n_lines++;
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (!j) {
            CHECK(0, "line %d: bad JSON: %s", n_lines, je.text);
            continue;
        }
        char *msgs = json_dumps(json_object_get(j, "messages"), JSON_COMPACT);
        bool gen = json_is_true(json_object_get(j, "add_generation_prompt"));
        const char *want = json_string_value(json_object_get(j, "text"));
        json_t *want_ids = json_object_get(j, "ids");
        fw_err e = {{0}};
        char *text = NULL;
        size_t len;
        int ok = 1;
        if (fw_chat_render_json(t, msgs, strlen(msgs), gen, &text, &len, &e)) {
            CHECK(0, "line %d: render: %s", n_lines, e.msg);
            ok = 0;
        } else {
            int same = !strcmp(text, want) && len == strlen(want);
            CHECK(same, "line %d: rendered\n  '%s'\nwant\n  '%s'", n_lines, text, want);
            ok &= same;
        }
        int32_t *ids = NULL, *want_enc = NULL;
        int64_t n = 0, n_enc = 0;
        if (fw_chat_encode_json(t, msgs, strlen(msgs), gen, &ids, &n, &e) ||
            fw_tokenizer_encode(t, want, strlen(want), false, &want_enc, &n_enc, &e)) {
            CHECK(0, "line %d: encode: %s", n_lines, e.msg);
            ok = 0;
        } else {
            /* The ids must be the golden text's encoding (the encoder is checked
             * against tokenizer.jsonl, made by `tokenizers` itself). */
            int same = n == n_enc && !memcmp(ids, want_enc, (size_t)n * sizeof *ids);
            CHECK(same, "line %d: chat ids are not the encoding of the rendered text", n_lines);
            ok &= same;
            /* And the golden ids, wherever they are the golden text's tokens. Some
             * are not: transformers 5 loads this tokenizer as LlamaTokenizer with
             * a Metaspace pre-tokenizer (huggingface/transformers#45488), which
             * drops spaces and non-ASCII text; such ids do not decode to the
             * line's own text, and are reported, not compared. */
            int64_t nw = (int64_t)json_array_size(want_ids);
            int32_t *wids = malloc((size_t)(nw + 1) * sizeof *wids);
            for (int64_t i = 0; i < nw; i++)
                wids[i] = (int32_t)json_integer_value(json_array_get(want_ids, (size_t)i));
            char *round = NULL;
            size_t round_len;
            int consistent = !fw_tokenizer_decode(t, wids, nw, false, &round, &round_len, &e) &&
                             !strcmp(round, want);
            int same_golden = nw == n && !memcmp(ids, wids, (size_t)n * sizeof *ids);
            if (consistent) {
                CHECK(same_golden, "line %d: ids differ from the golden ids", n_lines);
                ok &= same_golden;
            } else {
                n_bad_golden++;
                fprintf(stderr,
                        "  line %d: the golden ids decode to '%s', not to the line's text: made by a "
                        "mis-loaded tokenizer (transformers#45488); checked against the text's encoding\n",
                        n_lines, round ? round : "?");
            }
            free(round);
            free(wids);
        }
        free(want_enc);
        n_pass += ok;
        free(ids);
        free(text);
        free(msgs);
        json_decref(j);
    }
    free(line);
    fclose(f);
    fprintf(stderr,
            "golden chat-template.jsonl: %d of %d lines pass (text and ids; %d lines' golden ids "
            "are not their text's tokens)\n",
            n_pass, n_lines, n_bad_golden);
    CHECK(n_lines >= 4, "only %d golden lines", n_lines);
}

static void render_is(fw_tokenizer *t, const char *json, bool gen, const char *want) {
    fw_err e = {{0}};
    char *text = NULL;
    size_t len;
    if (fw_chat_render_json(t, json, strlen(json), gen, &text, &len, &e)) {
        CHECK(0, "render %s: %s", json, e.msg);
        return;
    }
    CHECK(!strcmp(text, want), "render %s:\n  got  '%s'\n  want '%s'", json, text, want);
    free(text);
}

/* What the template does beyond the golden lines: several system messages
 * (joined, hoisted in front), consecutive roles, a finished assistant turn,
 * no generation prompt, an empty conversation. */
static void features(fw_tokenizer *t) {
    render_is(t,
              "[{\"role\":\"system\",\"content\":\"A\"},{\"role\":\"user\",\"content\":\"u1\"},"
              "{\"role\":\"system\",\"content\":\"B\"},{\"role\":\"assistant\",\"content\":\"a1\"}]",
              false,
              "<｜begin▁of▁sentence｜>A\n\nB<｜User｜>u1<｜Assistant｜>a1<｜end▁of▁sentence｜>");
    render_is(t,
              "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"user\",\"content\":\"y\"},"
              "{\"role\":\"assistant\",\"content\":\"\"},{\"role\":\"assistant\",\"content\":\"z\"}]}",
              true,
              "<｜begin▁of▁sentence｜><｜User｜>x<｜User｜>y<｜Assistant｜><｜end▁of▁sentence｜>"
              "<｜Assistant｜>z<｜end▁of▁sentence｜><｜Assistant｜>");
    render_is(t, "[]", true, "<｜begin▁of▁sentence｜><｜Assistant｜>");
    render_is(t, "[{\"role\":\"user\",\"content\":\"a</think>b\",\"name\":\"ignored\"}]", false,
              "<｜begin▁of▁sentence｜><｜User｜>a</think>b");
    /* tool_calls null or [] is no tool call */
    render_is(t, "[{\"role\":\"assistant\",\"content\":\"ok\",\"tool_calls\":[]}]", false,
              "<｜begin▁of▁sentence｜><｜Assistant｜>ok<｜end▁of▁sentence｜>");

    /* the struct API, and encoding: BOS once, special tokens as ids */
    fw_chat_msg m[] = {{"system", "S", false}, {"user", "Hi", false}};
    fw_err e = {{0}};
    int32_t *ids;
    int64_t n;
    CHECK(!fw_chat_encode(t, m, 2, true, &ids, &n, &e), "%s", e.msg);
    CHECK(n >= 4 && ids[0] == 0 && ids[n - 1] == 128804 && ids[1] != 0, "chat ids");
    int users = 0;
    for (int64_t i = 0; i < n; i++) users += ids[i] == 128803;
    CHECK(users == 1, "one <｜User｜> id");
    free(ids);
}

static void refused(fw_tokenizer *t, const char *json, const char *want) {
    fw_err e = {{0}};
    char *text = NULL;
    size_t len;
    int rc = fw_chat_render_json(t, json, strlen(json), true, &text, &len, &e);
    CHECK(rc != 0 && !text, "accepted: %s", json);
    CHECK(strstr(e.msg, want), "message for %s: '%s' lacks '%s'", json, e.msg, want);
    if (rc) fprintf(stderr, "  refused as expected: %s\n", e.msg);
    free(text);
}

static void refusals(fw_tokenizer *t, const char *shared) {
    refused(t, "[{\"role\":\"tool\"}]", "content is missing");
    refused(t, "[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"type\":\"function\"}]}]",
            "needs a 'function' object");
    refused(t, "[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"function\":{\"arguments\":\"{}\"}}]}]",
            "function.name must be a string");
    refused(t, "[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[]}]", "only assistant messages");
    refused(t, "[{\"role\":\"developer\",\"content\":\"x\"}]", "unknown role 'developer'");
    refused(t, "[{\"role\":\"user\"}]", "content is missing");
    refused(t, "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}]",
            "only string content");
    refused(t, "[{\"content\":\"x\"}]", "'role' is missing");
    refused(t, "[{\"role\":\"user\",\"content\":\"x\"}", "not valid JSON");
    refused(t, "{\"role\":\"user\"}", "expected a JSON array");

    /* invalid UTF-8 through the struct API */
    fw_chat_msg bad[] = {{"user", "ok \xC3", false}};
    fw_err e = {{0}};
    char *text;
    size_t len;
    CHECK(fw_chat_render(t, bad, 1, false, &text, &len, &e) && strstr(e.msg, "not valid UTF-8"),
          "bad UTF-8: %s", e.msg);

    /* a tokenizer_config.json with another template */
    const char *tmp = getenv("FURROW_TMP");
    char cfg[4096], tok[4096];
    snprintf(cfg, sizeof cfg, "%s/other-template.json", tmp ? tmp : ".");
    snprintf(tok, sizeof tok, "%s/tokenizer/deepseek-v3/tokenizer.json", shared);
    FILE *f = fopen(cfg, "w");
    CHECK(f != NULL, "cannot write %s", cfg);
    if (!f) return;
    fputs("{\"bos_token\": \"<｜begin▁of▁sentence｜>\", \"chat_template\": "
          "\"{% for m in messages %}{{ m['content'] }}{% endfor %}\"}",
          f);
    fclose(f);
    fw_tokenizer *t2;
    if (fw_tokenizer_load(&t2, tok, cfg, &e)) {
        CHECK(0, "load: %s", e.msg);
        return;
    }
    refused(t2, "[{\"role\":\"user\",\"content\":\"x\"}]", "neither DeepSeek-V3's nor V3.1's");
    fw_tokenizer_free(t2);
}

/* tests/chat_formats.jsonl: conversations rendered by DeepSeek-V3's and V3.1's
 * chat templates (jinja2 as transformers runs them) and by V3.2's encoder
 * (encoding_dsv32.py), with tool calls, tool outputs, thinking on and off; each
 * line's text must come out byte for byte, or the error it names. */
static void formats(fw_tokenizer *t) {
    const char *src = getenv("FURROW_SRCDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/chat_formats.jsonl", src ? src : ".");
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    int n = 0, pass = 0, per[4] = {0};
    while (getline(&line, &cap, f) > 0) {
        json_t *c = json_loads(line, 0, NULL);
        CHECK(c != NULL, "line %d is not JSON", n + 1);
        if (!c) continue;
        n++;
        fw_chat_opts o = {.add_generation_prompt = json_is_true(json_object_get(c, "add_generation_prompt")),
                          .thinking = json_is_true(json_object_get(c, "thinking")),
                          .tools = json_object_get(c, "tools")};
        fw_err e = {{0}};
        CHECK(!fw_chat_format_parse(json_string_value(json_object_get(c, "format")), &o.format, &e), "%s", e.msg);
        const char *want = json_string_value(json_object_get(c, "text"));
        const char *err = json_string_value(json_object_get(c, "error"));
        const char *name = json_string_value(json_object_get(c, "case"));
        char *text = NULL;
        size_t len;
        int rc = fw_chat_render_ex(t, json_object_get(c, "messages"), &o, &text, &len, &e);
        bool ok = err ? rc != 0 && strstr(e.msg, err) : rc == 0 && len == strlen(want) && !memcmp(text, want, len);
        CHECK(ok, "chat_formats line %d (%s, %s, thinking %d, gen %d):\n  got  '%s'\n  want '%s'", n, name,
              fw_chat_format_name(o.format), o.thinking, o.add_generation_prompt, rc ? e.msg : text,
              err ? err : want);
        pass += ok;
        per[o.format] += ok;
        /* V3's cases encode to the special tokens' ids, not to their text's pieces */
        if (ok && !err && o.format == FW_CHAT_V3 && strstr(want, "<｜tool▁call▁begin｜>")) {
            int32_t *ids;
            int64_t k;
            CHECK(!fw_chat_encode_ex(t, json_object_get(c, "messages"), &o, &ids, &k, &e), "%s", e.msg);
            int calls = 0, seps = 0;
            for (int64_t i = 0; i < k; i++) calls += ids[i] == 128808, seps += ids[i] == 128814;
            CHECK(calls > 0 && calls == seps, "line %d: %d <｜tool▁call▁begin｜> ids, %d <｜tool▁sep｜> ids", n, calls,
                  seps);
            free(ids);
        }
        free(text);
        json_decref(c);
    }
    free(line);
    fclose(f);
    fprintf(stderr, "chat_formats.jsonl: %d of %d lines pass (v3 %d, v3.1 %d, v3.2 %d)\n", pass, n, per[FW_CHAT_V3],
            per[FW_CHAT_V31], per[FW_CHAT_V32]);
    CHECK(n >= 50 && per[FW_CHAT_V3] > 0 && per[FW_CHAT_V31] > 0 && per[FW_CHAT_V32] > 0, "too few cases");
}

/* The tools' description in the system prompt (V3 and V3.1: DeepSeek-V3.1's
 * model card; V3.2: the encoder's, covered by the cases above). */
static void tools_prompt(fw_tokenizer *t) {
    const char *json = "{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"u\"}],"
                       "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":\"d\","
                       "\"parameters\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}}}}}]}";
    for (int v = FW_CHAT_V3; v <= FW_CHAT_V31; v++) {
        fw_chat_opts o = {.format = (fw_chat_format)v, .add_generation_prompt = true};
        fw_err e = {{0}};
        char *text = NULL;
        size_t len;
        CHECK(!fw_chat_render_json_ex(t, json, strlen(json), &o, &text, &len, &e), "%s", e.msg);
        if (!text) continue;
        const char *want = v == FW_CHAT_V3 ? "<｜begin▁of▁sentence｜>S\n\n## Tools\nYou have access to the following tools:\n"
                                             "\n### f\nDescription: d\n\nParameters: {\"type\": \"object\", \"properties\": "
                                             "{\"a\": {\"type\": \"string\"}}}\n\nIMPORTANT: ALWAYS adhere to this exact "
                                             "format for tool use:\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>"
                                           : "<｜begin▁of▁sentence｜>S\n\n## Tools\nYou have access to the following tools:\n"
                                             "\n### f\nDescription: d\n\nParameters: {\"type\": \"object\", \"properties\": "
                                             "{\"a\": {\"type\": \"string\"}}}\n\nIMPORTANT: ALWAYS adhere to this exact "
                                             "format for tool use:\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>tool_call_name<｜tool▁sep｜>";
        CHECK(!strncmp(text, want, strlen(want)), "tools in the %s system prompt:\n%s", fw_chat_format_name(o.format), text);
        const char *tail = v == FW_CHAT_V3 ? "chain them directly without separators or spaces\n<｜User｜>u<｜Assistant｜>"
                                           : "chain them directly without separators or spaces\n<｜User｜>u<｜Assistant｜></think>";
        CHECK(len > strlen(tail) && !strcmp(text + len - strlen(tail), tail), "the %s prompt's end: %s",
              fw_chat_format_name(o.format), text);
        free(text);
    }
}

static const char reply_tools[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}]";

/* One reply parsed: its content, reasoning (NULL: none) and calls ("name args|name args"). */
static void reply_is(fw_chat_format f, bool thinking, const char *text, const char *content, const char *reasoning,
                     const char *calls) {
    json_t *tools = json_loads(reply_tools, 0, NULL);
    fw_chat_reply r;
    fw_err e = {{0}};
    CHECK(!fw_chat_reply_parse(f, text, strlen(text), thinking, true, tools, &r, &e), "%s", e.msg);
    char got[1024] = "";
    for (int i = 0; i < r.n_calls; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s %s", i ? "|" : "", r.calls[i].name,
                 r.calls[i].arguments);
    CHECK(r.content && !strcmp(r.content, content), "%s reply %s: content '%s', want '%s'", fw_chat_format_name(f),
          text, r.content, content);
    CHECK(reasoning ? r.reasoning && !strcmp(r.reasoning, reasoning) : !r.reasoning,
          "%s reply %s: reasoning '%s', want '%s'", fw_chat_format_name(f), text, r.reasoning ? r.reasoning : "(none)",
          reasoning ? reasoning : "(none)");
    CHECK(!strcmp(got, calls), "%s reply %s: calls '%s', want '%s'", fw_chat_format_name(f), text, got, calls);
    fw_chat_reply_free(&r);
    json_decref(tools);
}

/* Replies as the model writes them, and malformed ones: those are plain content. */
static void replies(void) {
    const char *v3 = "Sure.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
                     "{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n"
                     "```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    reply_is(FW_CHAT_V3, false, v3, "Sure.", NULL, "get_weather {\"city\": \"Paris\"}|get_time {}");
    reply_is(FW_CHAT_V31, false,
             "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{\"tz\":\"UTC\"}<｜tool▁call▁end｜>"
             "<｜tool▁calls▁end｜>",
             "", NULL, "get_time {\"tz\":\"UTC\"}");
    reply_is(FW_CHAT_V31, true, "<think>hmm</think>ok<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{}"
                                "<｜tool▁call▁end｜><｜tool▁calls▁end｜>  \n",
             "ok", "hmm", "get_time {}");
    reply_is(FW_CHAT_V32, true,
             "plan</think>Let me look.\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
             "<｜DSML｜parameter name=\"city\" string=\"true\">Oslo \"N\"</｜DSML｜parameter>\n"
             "<｜DSML｜parameter name=\"days\" string=\"false\">[1, 2]</｜DSML｜parameter>\n</｜DSML｜invoke>\n"
             "</｜DSML｜function_calls>",
             "Let me look.", "plan", "get_weather {\"city\":\"Oslo \\\"N\\\"\",\"days\":[1,2]}");
    /* thinking: everything is reasoning until </think> */
    reply_is(FW_CHAT_V31, true, "still thinking", "", "still thinking", "");
    reply_is(FW_CHAT_V31, false, "a</think>b", "a</think>b", NULL, "");
    /* malformed calls: the whole reply comes back as content */
    const char *bad[] = {
        "x<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": ", /* cut */
        "x<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": }\n```"
        "<｜tool▁call▁end｜><｜tool▁calls▁end｜>", /* bad JSON */
        "x<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>launch\n```json\n{}\n```"
        "<｜tool▁call▁end｜><｜tool▁calls▁end｜>", /* not a tool of the request */
        "x<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```"
        "<｜tool▁call▁end｜><｜tool▁calls▁end｜> and more", /* text after the calls */
        "x<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>retrieval<｜tool▁sep｜>get_time\n```json\n{}\n```"
        "<｜tool▁call▁end｜><｜tool▁calls▁end｜>", /* not a function */
        "x<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n{}<｜tool▁call▁end｜>"
        "<｜tool▁calls▁end｜>", /* no ```json fence */
        "x<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n[1]\n```"
        "<｜tool▁call▁end｜><｜tool▁calls▁end｜>", /* arguments not an object */
        "x<｜tool▁calls▁begin｜><｜tool▁calls▁end｜>", /* no call */
        "x<｜tool▁calls▁begin｜>", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) reply_is(FW_CHAT_V3, false, bad[i], bad[i], NULL, "");
    reply_is(FW_CHAT_V31, false, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_time{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
             "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_time{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>", NULL, "");
    const char *dsml_dup = "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_time\">\n"
                           "<｜DSML｜parameter name=\"a\" string=\"false\">1</｜DSML｜parameter>\n"
                           "<｜DSML｜parameter name=\"a\" string=\"false\">2</｜DSML｜parameter>\n</｜DSML｜invoke>\n"
                           "</｜DSML｜function_calls>";
    reply_is(FW_CHAT_V32, false, dsml_dup, dsml_dup, NULL, ""); /* a parameter twice */
    const char *dsml_bad = "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_time\">\n"
                           "<｜DSML｜parameter name=\"a\" string=\"false\">nope</｜DSML｜parameter>\n</｜DSML｜invoke>\n"
                           "</｜DSML｜function_calls>";
    reply_is(FW_CHAT_V32, false, dsml_bad, dsml_bad, NULL, ""); /* a non-string value that is not JSON */
    /* a stream's held-back end: the longest tail that begins a marker */
    CHECK(fw_chat_marker_tail("abc</thi", 8, "</think>") == 5, "marker tail");
    CHECK(fw_chat_marker_tail("abc</think", 10, "</think>") == 7 && fw_chat_marker_tail("abc", 3, "</think>") == 0,
          "marker tail");
}

int main(void) {
    const char *shared = getenv("FURROW_SHARED");
    if (!shared) SKIP("FURROW_SHARED is not set");
    char tok[4096], cfg[4096];
    snprintf(tok, sizeof tok, "%s/tokenizer/deepseek-v3/tokenizer.json", shared);
    snprintf(cfg, sizeof cfg, "%s/tokenizer/deepseek-v3/tokenizer_config.json", shared);
    FILE *f = fopen(tok, "r");
    if (!f) SKIP("%s is missing", tok);
    fclose(f);
    fw_tokenizer *t;
    fw_err e = {{0}};
    if (fw_tokenizer_load(&t, tok, cfg, &e)) {
        fprintf(stderr, "load: %s\n", e.msg);
        return 1;
    }
    golden(t, shared);
    features(t);
    formats(t);
    tools_prompt(t);
    replies();
    refusals(t, shared);
    fw_tokenizer_free(t);
    return check_result();
}
