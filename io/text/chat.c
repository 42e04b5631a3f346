/* DeepSeek-V3's chat template in C. The template (kept verbatim below, and
 * compared with the one tokenizer_config.json carries) does, in order:
 *   1. gathers every system message's content, joined by "\n\n", wherever the
 *      messages stand in the list;
 *   2. writes bos_token, then that system prompt;
 *   3. for each message: user -> "<｜User｜>" + content; assistant with content ->
 *      "<｜Assistant｜>" + content + "<｜end▁of▁sentence｜>"; system -> nothing;
 *      consecutive messages of one role are written one after the other, with
 *      nothing merged; content is written as it is (this template has no
 *      "</think>" handling);
 *   4. with add_generation_prompt, a final "<｜Assistant｜>".
 * The tool parts (assistant messages with content null and tool_calls, role
 * "tool", "<｜tool▁outputs▁end｜>" after tool outputs) are refused, as are roles
 * the template ignores silently (anything but system, user, assistant, tool):
 * a typo there would otherwise vanish from the prompt. */
#include "io/text/chat.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

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

static const char user_tag[] = "<｜User｜>";
static const char assistant_tag[] = "<｜Assistant｜>";
static const char eos_tag[] = "<｜end▁of▁sentence｜>";

static int check_messages(const fw_chat_msg *msgs, int64_t n, fw_err *e) {
    for (int64_t i = 0; i < n; i++) {
        const fw_chat_msg *m = &msgs[i];
        if (!m->role) return fw_errf(e, "chat: message %lld has no role", (long long)i);
        if (!strcmp(m->role, "tool"))
            return fw_errf(e, "chat: message %lld: role 'tool' (a tool output): tool calls are not supported yet",
                           (long long)i);
        if (m->tool_calls)
            return fw_errf(e, "chat: message %lld: tool_calls: tool calls are not supported yet", (long long)i);
        if (strcmp(m->role, "system") && strcmp(m->role, "user") && strcmp(m->role, "assistant"))
            return fw_errf(e, "chat: message %lld: unknown role '%s' (expected system, user or assistant)",
                           (long long)i, m->role);
        if (!m->content)
            return fw_errf(e, "chat: message %lld (%s): content is missing or null", (long long)i, m->role);
        size_t bad;
        if (fw_utf8_validate(m->content, strlen(m->content), &bad))
            return fw_errf(e, "chat: message %lld (%s): content is not valid UTF-8 (offset %zu)",
                           (long long)i, m->role, bad);
    }
    return FW_OK;
}

static int put(tok_buf *b, const char *s) { return tok_buf_append(b, s, strlen(s)); }

int fw_chat_render(const fw_tokenizer *t, const fw_chat_msg *msgs, int64_t n,
                   bool add_generation_prompt, char **text, size_t *len, fw_err *e) {
    *text = NULL;
    *len = 0;
    const char *tpl = fw_tokenizer_chat_template(t);
    if (tpl && strcmp(tpl, deepseek_v3_template))
        return fw_errf(e, "chat: the chat_template in tokenizer_config.json is not DeepSeek-V3's; "
                          "furrow implements only that one (see io/text/TOKENIZER.md)");
    if (n < 0) return fw_errf(e, "chat: negative message count");
    if (check_messages(msgs, n, e)) return FW_ERR;

    tok_buf b = {0};
    int oom = put(&b, fw_tokenizer_bos_text(t));
    bool first_sp = true;
    for (int64_t i = 0; i < n && !oom; i++) {
        if (strcmp(msgs[i].role, "system")) continue;
        if (!first_sp) oom |= put(&b, "\n\n");
        oom |= put(&b, msgs[i].content);
        first_sp = false;
    }
    for (int64_t i = 0; i < n && !oom; i++) {
        if (!strcmp(msgs[i].role, "user")) {
            oom |= put(&b, user_tag) | put(&b, msgs[i].content);
        } else if (!strcmp(msgs[i].role, "assistant")) {
            oom |= put(&b, assistant_tag) | put(&b, msgs[i].content) | put(&b, eos_tag);
        }
    }
    if (add_generation_prompt) oom |= put(&b, assistant_tag);
    oom |= tok_buf_append(&b, "", 1);
    if (oom) {
        free(b.p);
        return fw_errf(e, "chat: out of memory");
    }
    *text = b.p;
    *len = b.n - 1;
    return FW_OK;
}

/* JSON messages -> fw_chat_msg array pointing into root. */
static int parse_messages(const char *json, size_t json_len, json_t **root, fw_chat_msg **msgs,
                          int64_t *n, fw_err *e) {
    json_error_t je;
    *msgs = NULL;
    *n = 0;
    *root = json_loadb(json, json_len, 0, &je);
    if (!*root)
        return fw_errf(e, "chat: messages are not valid JSON (line %d, column %d: %s)", je.line,
                       je.column, je.text);
    json_t *list = *root;
    if (json_is_object(list)) list = json_object_get(list, "messages");
    if (!json_is_array(list))
        return fw_errf(e, "chat: expected a JSON array of messages (or an object with \"messages\")");
    size_t count = json_array_size(list);
    *msgs = calloc(count ? count : 1, sizeof **msgs);
    if (!*msgs) return fw_errf(e, "chat: out of memory");
    size_t i;
    json_t *m;
    json_array_foreach(list, i, m) {
        fw_chat_msg *out = &(*msgs)[i];
        if (!json_is_object(m)) return fw_errf(e, "chat: message %zu is not an object", i);
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        json_t *calls = json_object_get(m, "tool_calls");
        if (!json_is_string(role)) return fw_errf(e, "chat: message %zu: 'role' is missing or not a string", i);
        out->role = json_string_value(role);
        if (json_is_array(content) || json_is_object(content))
            return fw_errf(e, "chat: message %zu (%s): content is %s; only string content is supported",
                           i, out->role, json_is_array(content) ? "an array of parts" : "an object");
        if (content && !json_is_null(content) && !json_is_string(content))
            return fw_errf(e, "chat: message %zu (%s): content is not a string", i, out->role);
        out->content = json_string_value(content);
        out->tool_calls = calls && !json_is_null(calls) && !(json_is_array(calls) && !json_array_size(calls));
    }
    *n = (int64_t)count;
    return FW_OK;
}

int fw_chat_render_json(const fw_tokenizer *t, const char *json, size_t json_len,
                        bool add_generation_prompt, char **text, size_t *len, fw_err *e) {
    json_t *root;
    fw_chat_msg *msgs;
    int64_t n;
    *text = NULL;
    *len = 0;
    int rc = parse_messages(json, json_len, &root, &msgs, &n, e);
    if (!rc) rc = fw_chat_render(t, msgs, n, add_generation_prompt, text, len, e);
    free(msgs);
    json_decref(root);
    return rc;
}

int fw_chat_encode(fw_tokenizer *t, const fw_chat_msg *msgs, int64_t n, bool add_generation_prompt,
                   int32_t **ids, int64_t *n_ids, fw_err *e) {
    char *text;
    size_t len;
    *ids = NULL;
    *n_ids = 0;
    if (fw_chat_render(t, msgs, n, add_generation_prompt, &text, &len, e)) return FW_ERR;
    int rc = fw_tokenizer_encode(t, text, len, false, ids, n_ids, e);
    free(text);
    return rc;
}

int fw_chat_encode_json(fw_tokenizer *t, const char *json, size_t json_len,
                        bool add_generation_prompt, int32_t **ids, int64_t *n_ids, fw_err *e) {
    char *text;
    size_t len;
    *ids = NULL;
    *n_ids = 0;
    if (fw_chat_render_json(t, json, json_len, add_generation_prompt, &text, &len, e)) return FW_ERR;
    int rc = fw_tokenizer_encode(t, text, len, false, ids, n_ids, e);
    free(text);
    return rc;
}
