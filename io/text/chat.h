/* DeepSeek's chat formats in C (no Jinja): V3's and V3.1's chat_template (the
 * text of their tokenizer_config.json) and V3.2's encoder (DeepSeek ships it as
 * Python, encoding/encoding_dsv32.py, in place of a template). What each covers
 * is in io/text/TOKENIZER.md; in short: system, user, assistant (with
 * tool_calls) and tool messages with string content, add_generation_prompt,
 * V3.1/V3.2's thinking switch, and the request's tools described in the
 * system prompt. */
#ifndef FW_IO_TEXT_CHAT_H
#define FW_IO_TEXT_CHAT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/base/err.h"
#include "io/text/tokenizer.h"

typedef enum fw_chat_format {
    FW_CHAT_AUTO = 0,          /* from tokenizer_config.json's chat_template (fw_chat_format_resolve) */
    FW_CHAT_V3,
    FW_CHAT_V31,               /* hybrid thinking: <think> / </think> after <｜Assistant｜> */
    FW_CHAT_V32,               /* encoding_dsv32: DSML tool calls, <function_results> */
} fw_chat_format;

/* "v3", "v3.1", "v3.2" (and "auto"); FW_ERR for anything else. */
int fw_chat_format_parse(const char *name, fw_chat_format *f, fw_err *e);
const char *fw_chat_format_name(fw_chat_format f);
/* AUTO becomes the tokenizer's format: V3.1 when its chat_template is V3.1's
 * (told by the line only V3.1's has), V3 when it is V3's or absent; `model_type`
 * "deepseek_v32" (config.json; may be NULL) gives V3.2, whose tokenizer_config
 * carries no template. Another template text is refused unless a format is named. */
int fw_chat_format_resolve(const fw_tokenizer *t, const char *model_type, fw_chat_format want, fw_chat_format *out,
                           fw_err *e);

typedef struct fw_chat_opts {
    fw_chat_format format;     /* AUTO: fw_chat_format_resolve without a model type */
    bool add_generation_prompt;
    bool thinking;             /* V3.1 and V3.2: thinking mode (both default to off, as their templates do) */
    const json_t *tools;       /* OpenAI's tools array, described in the system prompt; NULL: none */
} fw_chat_opts;

/* Renders messages (OpenAI's array of {"role", "content", "tool_calls",
 * "reasoning_content", "prefix"}) as the format does. *text is malloc'd and
 * NUL-terminated; BOS is in it. */
int fw_chat_render_ex(const fw_tokenizer *t, const json_t *messages, const fw_chat_opts *o, char **text, size_t *len,
                      fw_err *e);
/* Render, then encode without adding special tokens. */
int fw_chat_encode_ex(fw_tokenizer *t, const json_t *messages, const fw_chat_opts *o, int32_t **ids, int64_t *n_ids,
                      fw_err *e);

/* The text that tells the model its tools (appended to the system prompt). */
int fw_chat_tools_text(fw_chat_format f, const json_t *tools, char **text, fw_err *e);

/* The older entry points, V3 unless the tokenizer's template says otherwise. */
typedef struct fw_chat_msg {
    const char *role;     /* "system", "user", "assistant" */
    const char *content;
    bool tool_calls;      /* unused: tool calls go through the JSON entry points */
} fw_chat_msg;
int fw_chat_render(const fw_tokenizer *t, const fw_chat_msg *msgs, int64_t n,
                   bool add_generation_prompt, char **text, size_t *len, fw_err *e);
/* JSON text: an array of messages, or an object with "messages" (and
 * optionally "tools", and "chat_template_kwargs": {"thinking": bool}). */
int fw_chat_render_json(const fw_tokenizer *t, const char *json, size_t json_len,
                        bool add_generation_prompt, char **text, size_t *len, fw_err *e);
int fw_chat_encode(fw_tokenizer *t, const fw_chat_msg *msgs, int64_t n, bool add_generation_prompt,
                   int32_t **ids, int64_t *n_ids, fw_err *e);
int fw_chat_encode_json(fw_tokenizer *t, const char *json, size_t json_len,
                        bool add_generation_prompt, int32_t **ids, int64_t *n_ids, fw_err *e);
/* The same with options: format and thinking from o (o->tools is replaced by
 * the object's "tools" when it has them; its "chat_template_kwargs.thinking"
 * wins over o->thinking). */
int fw_chat_encode_json_ex(fw_tokenizer *t, const char *json, size_t json_len, const fw_chat_opts *o, int32_t **ids,
                           int64_t *n_ids, fw_err *e);
int fw_chat_render_json_ex(const fw_tokenizer *t, const char *json, size_t json_len, const fw_chat_opts *o,
                           char **text, size_t *len, fw_err *e);

#endif
