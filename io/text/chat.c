/* DeepSeek's chat formats in C.
 *
 * V3 (the chat_template of DeepSeek-V3's tokenizer_config.json, kept verbatim
 * below and compared with the one the tokenizer carries) does, in order:
 *   1. gathers every system message's content, joined by "\n\n", wherever the
 *      messages stand in the list, and writes bos_token + that system prompt;
 *   2. for each message: user -> "<｜User｜>" + content; assistant with content
 *      null -> its tool_calls, the first as "<｜Assistant｜><｜tool▁calls▁begin｜>
 *      <｜tool▁call▁begin｜>" + type + "<｜tool▁sep｜>" + name + "\n```json\n" + arguments
 *      + "\n```<｜tool▁call▁end｜>", each later one as "\n<｜tool▁call▁begin｜>...
 *      <｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>"; assistant with
 *      content -> "<｜Assistant｜>" + content + EOS, or after tool outputs
 *      "<｜tool▁outputs▁end｜>" + content + EOS; tool -> the first of the whole
 *      conversation "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>" + content +
 *      "<｜tool▁output▁end｜>", later ones "\n<｜tool▁output▁begin｜>...";
 *   3. "<｜tool▁outputs▁end｜>" when the conversation ends in tool outputs, else
 *      with add_generation_prompt a final "<｜Assistant｜>".
 * The template's own quirks are kept, since the model saw them in training:
 * its "first call" flag and "first output" flag are never reset, so a single
 * call is never closed by <｜tool▁calls▁end｜>, a second assistant turn's calls
 * all start with "\n", and only the conversation's first tool output opens
 * <｜tool▁outputs▁begin｜>; an assistant message with content and tool_calls
 * writes only its content.
 *
 * V3.1 (DeepSeek-V3.1's template) differs: after a user turn, "<｜Assistant｜>"
 * then "</think>" (or "<think>" for a prefix message in thinking mode); tool calls
 * as "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>" + name + "<｜tool▁sep｜>" + arguments +
 * "<｜tool▁call▁end｜>"... + "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>" (the message's
 * content, if any, before them); tool outputs "<｜tool▁output▁begin｜>" + content +
 * "<｜tool▁output▁end｜>"; an assistant reply keeps only what follows its first
 * "</think>"; the generation prompt ("<｜Assistant｜>" + "<think>" in thinking
 * mode, "</think>" otherwise) only right after a user turn.
 *
 * V3.2 follows DeepSeek's encoder (encoding/encoding_dsv32.py of DeepSeek-V3.2):
 * every user turn ends "<｜Assistant｜>" + "</think>" (or "<think>" for the last one
 * in thinking mode); assistant turns are [reasoning + "</think>"] + content +
 * ["\n\n<｜DSML｜function_calls>..."] + EOS; tool outputs are "<result>" blocks
 * inside "\n\n<function_results>...</function_results>"; the tools are described
 * in the system message. It has no add_generation_prompt: the user turn carries it.
 *
 * Roles the templates ignore silently (anything else) are refused: a typo there
 * would otherwise vanish from the prompt. */
#include "io/text/chat.h"

#include <stdlib.h>
#include <string.h>

#include "io/text/tok_internal.h"

static const char deepseek_v3_template[] =
    "{% if not add_generation_prompt is defined %}"
    "{% set add_generation_prompt = false %}"
    "{% endif %}"
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, "
    "system_prompt='', is_first_sp=true) %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}"
    "{%- if ns.is_first_sp %}"
    "{% set ns.system_prompt = ns.system_prompt + message['content'] %}"
    "{% set ns.is_first_sp = false %}"
    "{%- else %}"
    "{% set ns.system_prompt = ns.system_prompt + '\n\n' + message['content'] %}"
    "{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}{{bos_token}}{{ns.system_prompt}}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}"
    "{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}"
    "{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is none %}"
    "{%- set ns.is_tool = false -%}"
    "{%- for tool in message['tool_calls']%}"
    "{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + "
    "tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + "
    "tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{%- set ns.is_first = true -%}"
    "{%- else %}{{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + "
    "tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + "
    "'```' + '<｜tool▁call▁end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is not none %}"
    "{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + "
    "'<｜end▁of▁sentence｜>'}}"
    "{%- set ns.is_tool = false -%}"
    "{%- else %}{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}"
    "{%- endif %}"
    "{%- endif %}"
    "{%- if message['role'] == 'tool' %}"
    "{%- set ns.is_tool = true -%}"
    "{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + "
    "message['content'] + '<｜tool▁output▁end｜>'}}"
    "{%- set ns.is_output_first = false %}"
    "{%- else %}{{'\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}"
    "{%- endif %}"
    "{%- endif %}"
    "{%- endfor -%}"
    "{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}"
    "{% endif %}"
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}"
    "{% endif %}";

/* The line only DeepSeek-V3.1's template has (llama.cpp tells it by the same). */
static const char v31_marker[] = "message['prefix'] is defined and message['prefix'] and thinking";

static const char user_tag[] = "<｜User｜>";
static const char assistant_tag[] = "<｜Assistant｜>";
static const char eos_tag[] = "<｜end▁of▁sentence｜>";
static const char think_open[] = "<think>";
static const char think_close[] = "</think>";

int fw_chat_format_parse(const char *name, fw_chat_format *f, fw_err *e) {
    if (!strcmp(name, "auto")) *f = FW_CHAT_AUTO;
    else if (!strcmp(name, "v3")) *f = FW_CHAT_V3;
    else if (!strcmp(name, "v3.1")) *f = FW_CHAT_V31;
    else if (!strcmp(name, "v3.2")) *f = FW_CHAT_V32;
    else return fw_errf(e, "unknown chat format '%s' (v3, v3.1, v3.2 or auto)", name);
    return FW_OK;
}

const char *fw_chat_format_name(fw_chat_format f) {
    return f == FW_CHAT_V3 ? "v3" : f == FW_CHAT_V31 ? "v3.1" : f == FW_CHAT_V32 ? "v3.2" : "auto";
}

int fw_chat_format_resolve(const fw_tokenizer *t, const char *model_type, fw_chat_format want, fw_chat_format *out,
                           fw_err *e) {
    if (want != FW_CHAT_AUTO) return *out = want, FW_OK;
    const char *tpl = t ? fw_tokenizer_chat_template(t) : NULL;
    if (tpl && strstr(tpl, v31_marker)) return *out = FW_CHAT_V31, FW_OK;
    if (tpl && strcmp(tpl, deepseek_v3_template))
        return fw_errf(e, "chat: the chat_template in tokenizer_config.json is neither DeepSeek-V3's nor V3.1's; "
                          "name the format (--chat-format v3|v3.1|v3.2) to render with one of furrow's "
                          "(see io/text/TOKENIZER.md)");
    *out = model_type && !strcmp(model_type, "deepseek_v32") && !tpl ? FW_CHAT_V32 : FW_CHAT_V3;
    return FW_OK;
}

static int put(tok_buf *b, const char *s) { return tok_buf_append(b, s, strlen(s)); }

/* A message's field as a string: NULL when absent or null. */
static const char *str(const json_t *m, const char *key) { return json_string_value(json_object_get(m, key)); }
static bool present(const json_t *m, const char *key) {
    const json_t *v = json_object_get(m, key);
    return v && !json_is_null(v);
}

/* A tool call's arguments as text: the string as it is (what the templates
 * concatenate), an object as compact JSON. Owned by the caller. */
static char *call_arguments(const json_t *call) {
    const json_t *a = json_object_get(json_object_get(call, "function"), "arguments");
    return json_is_string(a) ? strdup(json_string_value(a)) : json_dumps(a, JSON_COMPACT);
}

static int check_tool_calls(const json_t *calls, size_t i, fw_err *e) {
    if (!json_is_array(calls)) return fw_errf(e, "chat: message %zu: 'tool_calls' must be an array", i);
    size_t k;
    const json_t *c;
    json_array_foreach(calls, k, c) {
        const json_t *f = json_object_get(c, "function"), *type = json_object_get(c, "type");
        if (!json_is_object(c) || !json_is_object(f))
            return fw_errf(e, "chat: message %zu: tool_calls[%zu] needs a 'function' object", i, k);
        if (type && !json_is_null(type) && !json_is_string(type))
            return fw_errf(e, "chat: message %zu: tool_calls[%zu].type must be a string", i, k);
        if (!json_is_string(json_object_get(f, "name")))
            return fw_errf(e, "chat: message %zu: tool_calls[%zu].function.name must be a string", i, k);
        const json_t *a = json_object_get(f, "arguments");
        if (!json_is_string(a) && !json_is_object(a))
            return fw_errf(e, "chat: message %zu: tool_calls[%zu].function.arguments must be a string (JSON text)", i,
                           k);
    }
    return FW_OK;
}

static int check_messages(const json_t *msgs, fw_chat_format f, fw_err *e) {
    if (!json_is_array(msgs))
        return fw_errf(e, "chat: expected a JSON array of messages (or an object with \"messages\")");
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m) {
        if (!json_is_object(m)) return fw_errf(e, "chat: message %zu is not an object", i);
        const char *role = str(m, "role");
        if (!role) return fw_errf(e, "chat: message %zu: 'role' is missing or not a string", i);
        bool dev = f == FW_CHAT_V32 && !strcmp(role, "developer");
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "tool") && !dev)
            return fw_errf(e, "chat: message %zu: unknown role '%s' (expected system, user, assistant or tool%s)", i,
                           role, f == FW_CHAT_V32 ? ", or developer" : "");
        const json_t *content = json_object_get(m, "content");
        if (json_is_array(content) || json_is_object(content))
            return fw_errf(e, "chat: message %zu (%s): content is %s; only string content is supported", i, role,
                           json_is_array(content) ? "an array of parts" : "an object");
        if (content && !json_is_null(content) && !json_is_string(content))
            return fw_errf(e, "chat: message %zu (%s): content is not a string", i, role);
        bool calls = present(m, "tool_calls");
        if (calls && strcmp(role, "assistant"))
            return fw_errf(e, "chat: message %zu (%s): only assistant messages carry tool_calls", i, role);
        if (calls && check_tool_calls(json_object_get(m, "tool_calls"), i, e)) return FW_ERR;
        /* content null is an assistant's tool-call turn (V3.2 writes it as ""); V3.2's
         * assistant turns in thinking mode may have only reasoning_content */
        bool may_lack = !strcmp(role, "assistant") && (calls || f == FW_CHAT_V32);
        if (!json_is_string(content) && !may_lack)
            return fw_errf(e, "chat: message %zu (%s): content is missing or null", i, role);
        const json_t *rc = json_object_get(m, "reasoning_content");
        if (rc && !json_is_null(rc) && !json_is_string(rc))
            return fw_errf(e, "chat: message %zu (%s): reasoning_content is not a string", i, role);
    }
    return FW_OK;
}

/* The system messages' contents joined by "\n\n", then the tools' description. */
static int system_prompt(tok_buf *b, const json_t *msgs, const char *tools_text) {
    int oom = 0;
    bool first = true;
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m) {
        if (strcmp(str(m, "role"), "system")) continue;
        if (!first) oom |= put(b, "\n\n");
        oom |= put(b, str(m, "content"));
        first = false;
    }
    if (tools_text) oom |= put(b, first ? "" : "\n\n") | put(b, tools_text);
    return oom;
}

static int render_v3(tok_buf *b, const json_t *msgs, bool gen) {
    bool is_first = false, is_tool = false, output_first = true;
    int oom = 0;
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *role = str(m, "role"), *content = str(m, "content");
        if (!strcmp(role, "user")) {
            is_tool = false;
            oom |= put(b, user_tag) | put(b, content);
        } else if (!strcmp(role, "assistant") && !content) {
            is_tool = false;
            size_t k;
            const json_t *c;
            json_array_foreach(json_object_get(m, "tool_calls"), k, c) {
                const char *type = str(c, "type") ? str(c, "type") : "function";
                const char *name = str(json_object_get(c, "function"), "name");
                char *args = call_arguments(c);
                if (!args) return -1;
                oom |= put(b, is_first ? "\n<｜tool▁call▁begin｜>" : "<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>");
                oom |= put(b, type) | put(b, "<｜tool▁sep｜>") | put(b, name) | put(b, "\n```json\n") | put(b, args) |
                       put(b, "\n```<｜tool▁call▁end｜>");
                if (is_first) oom |= put(b, "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>");
                is_first = true;
                free(args);
            }
        } else if (!strcmp(role, "assistant")) {
            oom |= put(b, is_tool ? "<｜tool▁outputs▁end｜>" : assistant_tag) | put(b, content) | put(b, eos_tag);
            is_tool = false;
        } else if (!strcmp(role, "tool")) {
            is_tool = true;
            oom |= put(b, output_first ? "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>" : "\n<｜tool▁output▁begin｜>") |
                   put(b, content) | put(b, "<｜tool▁output▁end｜>");
            output_first = false;
        }
    }
    if (is_tool) oom |= put(b, "<｜tool▁outputs▁end｜>");
    if (gen && !is_tool) oom |= put(b, assistant_tag);
    return oom;
}

static int render_v31(tok_buf *b, const json_t *msgs, bool gen, bool thinking) {
    bool is_first = false, is_tool = false, last_user = false;
    int oom = 0;
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *role = str(m, "role"), *content = str(m, "content");
        if (!strcmp(role, "user")) {
            is_tool = false, is_first = false, last_user = true;
            oom |= put(b, user_tag) | put(b, content);
        } else if (!strcmp(role, "assistant") && present(m, "tool_calls")) {
            if (last_user) oom |= put(b, "<｜Assistant｜></think>");
            last_user = false, is_first = false, is_tool = false;
            size_t k;
            const json_t *c;
            json_array_foreach(json_object_get(m, "tool_calls"), k, c) {
                char *args = call_arguments(c);
                if (!args) return -1;
                if (!is_first) oom |= put(b, content ? content : "") | put(b, "<｜tool▁calls▁begin｜>");
                oom |= put(b, "<｜tool▁call▁begin｜>") | put(b, str(json_object_get(c, "function"), "name")) |
                       put(b, "<｜tool▁sep｜>") | put(b, args) | put(b, "<｜tool▁call▁end｜>");
                is_first = true;
                free(args);
            }
            oom |= put(b, "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>");
        } else if (!strcmp(role, "assistant")) {
            if (last_user) {
                bool prefix = json_is_true(json_object_get(m, "prefix"));
                oom |= put(b, assistant_tag) | put(b, prefix && thinking ? think_open : think_close);
            }
            last_user = false;
            if (is_tool) {
                oom |= put(b, content) | put(b, eos_tag);
                is_tool = false;
            } else {
                const char *after = strstr(content, think_close);
                oom |= put(b, after ? after + strlen(think_close) : content) | put(b, eos_tag);
            }
        } else if (!strcmp(role, "tool")) {
            last_user = false, is_tool = true;
            oom |= put(b, "<｜tool▁output▁begin｜>") | put(b, content) | put(b, "<｜tool▁output▁end｜>");
        }
    }
    if (gen && last_user && !is_tool) oom |= put(b, assistant_tag) | put(b, thinking ? think_open : think_close);
    return oom;
}

/* ---- V3.2 (encoding_dsv32) ---- */

/* Python's json.dumps(v, ensure_ascii=False): ", " and ": " separators. */
static char *py_json(const json_t *v) { return json_dumps(v, JSON_ENCODE_ANY); }

static int put_owned(tok_buf *b, char *s) {
    int oom = !s || put(b, s);
    free(s);
    return oom;
}

static int v32_tools_text(tok_buf *b, const json_t *tools) {
    char *schemas = NULL;
    tok_buf sb = {0};
    size_t k;
    const json_t *t;
    int oom = 0;
    json_array_foreach(tools, k, t) {
        if (k) oom |= put(&sb, "\n");
        oom |= put_owned(&sb, py_json(json_object_get(t, "function")));
    }
    oom |= tok_buf_append(&sb, "", 1);
    schemas = sb.p;
    if (oom) return free(schemas), -1;
    oom |= put(b, "## Tools\n\nYou have access to a set of tools you can use to answer the user's question.\n"
                  "You can invoke functions by writing a \"<｜DSML｜function_calls>\" block like the following as "
                  "part of your reply to the user:\n"
                  "<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"$FUNCTION_NAME\">\n"
                  "<｜DSML｜parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</｜DSML｜parameter>\n"
                  "...\n</｜DSML｜invoke>\n<｜DSML｜invoke name=\"$FUNCTION_NAME2\">\n...\n</｜DSML｜invoke>\n"
                  "</｜DSML｜function_calls>\n\n"
                  "String and scalar parameters should be specified as is without any escaping or quotes, while lists "
                  "and objects should use JSON format. The \"string\" attribute should be set to \"true\" for string "
                  "type parameters and \"false\" for other types (numbers, booleans, arrays, objects).\n\n"
                  "If the thinking_mode is enabled, then after function results you should strongly consider "
                  "outputting a thinking block. Here is an example:\n\n"
                  "<｜DSML｜function_calls>\n...\n</｜DSML｜function_calls>\n\n<function_results>\n...\n"
                  "</function_results>\n\n<think>...thinking about results</think>\n\n"
                  "Here are the functions available in JSONSchema format:\n<functions>\n");
    oom |= put(b, schemas) | put(b, "\n</functions>\n");
    free(schemas);
    return oom;
}

static int v32_call(tok_buf *b, const json_t *c, fw_err *e) {
    char *text = call_arguments(c);
    json_t *args = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (!json_is_object(args)) {
        json_decref(args);
        return fw_errf(e, "chat: a tool call's function.arguments must be a JSON object (V3.2 writes its members)");
    }
    int oom = put(b, "<｜DSML｜invoke name=\"") | put(b, str(json_object_get(c, "function"), "name")) | put(b, "\">\n");
    const char *key;
    json_t *v;
    bool first = true;
    json_object_foreach(args, key, v) {
        if (!first) oom |= put(b, "\n");
        first = false;
        oom |= put(b, "<｜DSML｜parameter name=\"") | put(b, key) | put(b, "\" string=\"") |
               put(b, json_is_string(v) ? "true" : "false") | put(b, "\">");
        oom |= json_is_string(v) ? put(b, json_string_value(v)) : put_owned(b, py_json(v));
        oom |= put(b, "</｜DSML｜parameter>");
    }
    oom |= put(b, "\n</｜DSML｜invoke>");
    json_decref(args);
    return oom ? fw_errf(e, "chat: out of memory") : FW_OK;
}

static int render_v32(tok_buf *b, const json_t *msgs, const json_t *tools, bool thinking, fw_err *e) {
    int64_t n = (int64_t)json_array_size(msgs), last_user = -1;
    for (int64_t i = n - 1; i >= 0 && last_user < 0; i--) {
        const char *r = str(json_array_get(msgs, (size_t)i), "role");
        if (!strcmp(r, "user") || !strcmp(r, "developer")) last_user = i;
    }
    int oom = 0;
    /* The request's tools go with the first system message, one made if there is none. */
    bool tools_pending = tools && json_array_size(tools);
    if (tools_pending && (n == 0 || strcmp(str(json_array_get(msgs, 0), "role"), "system"))) {
        oom |= put(b, "\n\n") | v32_tools_text(b, tools); /* an empty system message's "" + "\n\n" + tools */
        tools_pending = false;
    }
    for (int64_t i = 0; i < n && !oom; i++) {
        const json_t *m = json_array_get(msgs, (size_t)i);
        const char *role = str(m, "role"), *content = str(m, "content");
        if (!strcmp(role, "system")) {
            oom |= put(b, content ? content : "");
            const json_t *own = json_object_get(m, "tools");
            if (tools_pending || json_array_size(own)) oom |= put(b, "\n\n") | v32_tools_text(b, tools_pending ? tools : own);
            tools_pending = false;
        } else if (!strcmp(role, "user") || !strcmp(role, "developer")) {
            oom |= put(b, user_tag);
            if (!strcmp(role, "developer")) {
                if (!content || !*content) return fw_errf(e, "chat: message %lld (developer) has no content", (long long)i);
                oom |= put(b, "\n\n# The user's message is: ");
            }
            oom |= put(b, content) | put(b, assistant_tag) | put(b, i == last_user && thinking ? think_open : think_close);
        } else if (!strcmp(role, "tool")) {
            int64_t prev = i - 1;
            while (prev >= 0 && !strcmp(str(json_array_get(msgs, (size_t)prev), "role"), "tool")) prev--;
            const json_t *am = prev >= 0 ? json_array_get(msgs, (size_t)prev) : NULL;
            if (!am || strcmp(str(am, "role"), "assistant"))
                return fw_errf(e, "chat: message %lld (tool) does not follow an assistant message with tool_calls",
                               (long long)i);
            int64_t order = i - prev, calls = (int64_t)json_array_size(json_object_get(am, "tool_calls"));
            if (calls < order)
                return fw_errf(e, "chat: message %lld (tool): more tool outputs than the assistant's %lld tool calls",
                               (long long)i, (long long)calls);
            if (order == 1) oom |= put(b, "\n\n<function_results>");
            oom |= put(b, "\n<result>") | put(b, content) | put(b, "</result>");
            if (order == calls)
                oom |= put(b, "\n</function_results>\n\n") | put(b, i >= last_user && thinking ? think_open : think_close);
        } else { /* assistant */
            const json_t *calls = json_object_get(m, "tool_calls");
            bool has_calls = json_array_size(calls) > 0;
            if (thinking && i > last_user) {
                const char *r = str(m, "reasoning_content");
                if (!(r && *r) && !has_calls)
                    return fw_errf(e, "chat: message %lld (assistant) after the last user message has neither "
                                      "reasoning_content nor tool_calls (V3.2's thinking mode needs one)",
                                   (long long)i);
                oom |= put(b, r ? r : "") | put(b, think_close);
            }
            oom |= put(b, content ? content : "");
            if (has_calls) {
                oom |= put(b, "\n\n<｜DSML｜function_calls>\n");
                size_t k;
                const json_t *c;
                json_array_foreach(calls, k, c) {
                    if (k) oom |= put(b, "\n");
                    if (v32_call(b, c, e)) return FW_ERR;
                }
                oom |= put(b, "\n</｜DSML｜function_calls>");
            }
            oom |= put(b, eos_tag);
        }
    }
    return oom ? fw_errf(e, "chat: out of memory") : FW_OK;
}

/* ---- tools in the system prompt (V3, V3.1) ---- */

static int check_tools(const json_t *tools, fw_err *e) {
    if (!json_is_array(tools)) return fw_errf(e, "'tools' must be an array");
    size_t k;
    const json_t *t;
    json_array_foreach(tools, k, t) {
        const json_t *f = json_object_get(t, "function");
        if (!json_is_object(t) || !json_is_object(f) || !json_is_string(json_object_get(f, "name")))
            return fw_errf(e, "'tools[%zu]' needs a 'function' object with a string 'name'", k);
    }
    return FW_OK;
}

int fw_chat_tools_text(fw_chat_format f, const json_t *tools, char **text, fw_err *e) {
    *text = NULL;
    if (check_tools(tools, e)) return FW_ERR;
    tok_buf b = {0};
    int oom = 0;
    if (f == FW_CHAT_V32) {
        oom = v32_tools_text(&b, tools);
    } else {
        /* DeepSeek-V3.1's model card ("ToolCall"): the tools and the call format, in the system prompt. */
        oom |= put(&b, "## Tools\nYou have access to the following tools:\n");
        size_t k;
        const json_t *t;
        json_array_foreach(tools, k, t) {
            const json_t *fn = json_object_get(t, "function");
            const json_t *params = json_object_get(fn, "parameters");
            const char *desc = str(fn, "description");
            oom |= put(&b, "\n### ") | put(&b, str(fn, "name")) | put(&b, "\nDescription: ") | put(&b, desc ? desc : "") |
                   put(&b, "\n\nParameters: ");
            oom |= params ? put_owned(&b, py_json(params)) : put(&b, "{}");
            oom |= put(&b, "\n");
        }
        oom |= put(&b, "\nIMPORTANT: ALWAYS adhere to this exact format for tool use:\n");
        oom |= put(&b, f == FW_CHAT_V31 ? "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>tool_call_name<｜tool▁sep｜>"
                                          "tool_call_arguments<｜tool▁call▁end｜>{{additional_tool_calls}}"
                                          "<｜tool▁calls▁end｜>\n"
                                        : "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>"
                                          "tool_call_name\n```json\ntool_call_arguments\n```<｜tool▁call▁end｜>"
                                          "{{additional_tool_calls}}<｜tool▁calls▁end｜>\n");
        oom |= put(&b, "\nWhere:\n\n- `tool_call_name` must be an exact match to one of the available tools\n"
                       "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema\n"
                       "- For multiple tool calls, chain them directly without separators or spaces\n");
    }
    oom |= tok_buf_append(&b, "", 1);
    if (oom) {
        free(b.p);
        return fw_errf(e, "chat: out of memory");
    }
    *text = b.p;
    return FW_OK;
}

int fw_chat_render_ex(const fw_tokenizer *t, const json_t *msgs, const fw_chat_opts *o, char **text, size_t *len,
                      fw_err *e) {
    *text = NULL;
    *len = 0;
    fw_chat_format f;
    if (fw_chat_format_resolve(t, NULL, o->format, &f, e) || check_messages(msgs, f, e)) return FW_ERR;
    const json_t *tools = o->tools && json_array_size(o->tools) ? o->tools : NULL;
    char *tools_text = NULL;
    if (tools && f != FW_CHAT_V32 && fw_chat_tools_text(f, tools, &tools_text, e)) return FW_ERR;
    if (tools && f == FW_CHAT_V32 && check_tools(tools, e)) return FW_ERR;

    tok_buf b = {0};
    int oom = 0, rc = FW_OK;
    if (f == FW_CHAT_V32) {
        rc = render_v32(&b, msgs, tools, o->thinking, e);
        if (!rc) { /* BOS in front */
            tok_buf out = {0};
            oom |= put(&out, fw_tokenizer_bos_text(t)) | tok_buf_append(&out, b.p ? b.p : "", b.n);
            free(b.p);
            b = out;
        }
    } else {
        oom |= put(&b, fw_tokenizer_bos_text(t)) | system_prompt(&b, msgs, tools_text);
        if (!oom) oom |= f == FW_CHAT_V31 ? render_v31(&b, msgs, o->add_generation_prompt, o->thinking)
                                          : render_v3(&b, msgs, o->add_generation_prompt);
    }
    free(tools_text);
    if (!rc) oom |= tok_buf_append(&b, "", 1);
    if (rc || oom) {
        free(b.p);
        return rc ? rc : fw_errf(e, "chat: out of memory");
    }
    *text = b.p;
    *len = b.n - 1;
    return FW_OK;
}

int fw_chat_encode_ex(fw_tokenizer *t, const json_t *msgs, const fw_chat_opts *o, int32_t **ids, int64_t *n_ids,
                      fw_err *e) {
    char *text;
    size_t len;
    *ids = NULL;
    *n_ids = 0;
    if (fw_chat_render_ex(t, msgs, o, &text, &len, e)) return FW_ERR;
    int rc = fw_tokenizer_encode(t, text, len, false, ids, n_ids, e);
    free(text);
    return rc;
}

/* JSON text -> the messages array (and the object's tools and thinking switch). */
static int load_chat(const char *json, size_t json_len, json_t **root, const json_t **msgs, fw_chat_opts *o,
                     fw_err *e) {
    json_error_t je;
    *root = json_loadb(json, json_len, 0, &je);
    if (!*root)
        return fw_errf(e, "chat: messages are not valid JSON (line %d, column %d: %s)", je.line, je.column, je.text);
    *msgs = *root;
    if (json_is_object(*root)) {
        *msgs = json_object_get(*root, "messages");
        const json_t *tools = json_object_get(*root, "tools");
        if (tools && !json_is_null(tools)) o->tools = tools;
        const json_t *kw = json_object_get(*root, "chat_template_kwargs");
        const json_t *th = json_object_get(kw, "thinking");
        if (kw && !json_is_object(kw)) return fw_errf(e, "chat: 'chat_template_kwargs' must be an object");
        if (th && !json_is_boolean(th)) return fw_errf(e, "chat: 'chat_template_kwargs.thinking' must be true or false");
        if (th) o->thinking = json_is_true(th);
    }
    if (!json_is_array(*msgs))
        return fw_errf(e, "chat: expected a JSON array of messages (or an object with \"messages\")");
    return FW_OK;
}

int fw_chat_render_json_ex(const fw_tokenizer *t, const char *json, size_t json_len, const fw_chat_opts *o,
                           char **text, size_t *len, fw_err *e) {
    json_t *root;
    const json_t *msgs = NULL;
    fw_chat_opts opts = *o;
    *text = NULL;
    *len = 0;
    int rc = load_chat(json, json_len, &root, &msgs, &opts, e);
    if (!rc) rc = fw_chat_render_ex(t, msgs, &opts, text, len, e);
    json_decref(root);
    return rc;
}

int fw_chat_encode_json_ex(fw_tokenizer *t, const char *json, size_t json_len, const fw_chat_opts *o, int32_t **ids,
                           int64_t *n_ids, fw_err *e) {
    char *text;
    size_t len;
    *ids = NULL;
    *n_ids = 0;
    if (fw_chat_render_json_ex(t, json, json_len, o, &text, &len, e)) return FW_ERR;
    int rc = fw_tokenizer_encode(t, text, len, false, ids, n_ids, e);
    free(text);
    return rc;
}

int fw_chat_render_json(const fw_tokenizer *t, const char *json, size_t json_len, bool add_generation_prompt,
                        char **text, size_t *len, fw_err *e) {
    fw_chat_opts o = {.add_generation_prompt = add_generation_prompt};
    return fw_chat_render_json_ex(t, json, json_len, &o, text, len, e);
}

int fw_chat_encode_json(fw_tokenizer *t, const char *json, size_t json_len, bool add_generation_prompt,
                        int32_t **ids, int64_t *n_ids, fw_err *e) {
    fw_chat_opts o = {.add_generation_prompt = add_generation_prompt};
    return fw_chat_encode_json_ex(t, json, json_len, &o, ids, n_ids, e);
}

int fw_chat_render(const fw_tokenizer *t, const fw_chat_msg *msgs, int64_t n, bool add_generation_prompt,
                   char **text, size_t *len, fw_err *e) {
    *text = NULL;
    *len = 0;
    if (n < 0) return fw_errf(e, "chat: negative message count");
    json_t *a = json_array();
    for (int64_t i = 0; a && i < n; i++) {
        if (!msgs[i].role) return json_decref(a), fw_errf(e, "chat: message %lld has no role", (long long)i);
        size_t bad;
        if (msgs[i].content && fw_utf8_validate(msgs[i].content, strlen(msgs[i].content), &bad))
            return json_decref(a), fw_errf(e, "chat: message %lld (%s): content is not valid UTF-8 (offset %zu)",
                                           (long long)i, msgs[i].role, bad);
        if (msgs[i].tool_calls)
            return json_decref(a), fw_errf(e, "chat: message %lld: tool_calls go through the JSON entry points",
                                           (long long)i);
        json_t *m = json_pack("{s:s, s:s?}", "role", msgs[i].role, "content", msgs[i].content);
        if (!m || json_array_append_new(a, m)) return json_decref(a), fw_errf(e, "chat: out of memory");
    }
    if (!a) return fw_errf(e, "chat: out of memory");
    fw_chat_opts o = {.add_generation_prompt = add_generation_prompt};
    int rc = fw_chat_render_ex(t, a, &o, text, len, e);
    json_decref(a);
    return rc;
}

int fw_chat_encode(fw_tokenizer *t, const fw_chat_msg *msgs, int64_t n, bool add_generation_prompt, int32_t **ids,
                   int64_t *n_ids, fw_err *e) {
    char *text;
    size_t len;
    *ids = NULL;
    *n_ids = 0;
    if (fw_chat_render(t, msgs, n, add_generation_prompt, &text, &len, e)) return FW_ERR;
    int rc = fw_tokenizer_encode(t, text, len, false, ids, n_ids, e);
    free(text);
    return rc;
}
