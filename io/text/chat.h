/* DeepSeek-V3's chat format: the chat_template of its tokenizer_config.json,
 * implemented in C (no Jinja). What it covers and what it refuses is in
 * io/text/TOKENIZER.md; in short: system, user and assistant messages with string
 * content, add_generation_prompt; tool calls and tool outputs are refused
 * ("chat: tool calls are not supported yet"). */
#ifndef FW_IO_TEXT_CHAT_H
#define FW_IO_TEXT_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/base/err.h"
#include "io/text/tokenizer.h"

typedef struct fw_chat_msg {
    const char *role;     /* "system", "user", "assistant" ("tool" is refused) */
    const char *content;  /* UTF-8; NULL only in an assistant tool-call message (refused) */
    bool tool_calls;      /* the message carries tool_calls (refused) */
} fw_chat_msg;

/* Renders the conversation as the template does (BOS, the system prompts joined
 * by a blank line, <｜User｜>..., <｜Assistant｜>...<｜end▁of▁sentence｜>, and a
 * final <｜Assistant｜> when add_generation_prompt). *text is malloc'd and
 * NUL-terminated. Refuses a tokenizer whose tokenizer_config.json carries another
 * template than DeepSeek-V3's. */
int fw_chat_render(const fw_tokenizer *t, const fw_chat_msg *msgs, int64_t n,
                   bool add_generation_prompt, char **text, size_t *len, fw_err *e);
/* The same from JSON text: an array of {"role", "content"[, "tool_calls"]}
 * objects (OpenAI's messages), or an object with such a "messages" array. */
int fw_chat_render_json(const fw_tokenizer *t, const char *json, size_t json_len,
                        bool add_generation_prompt, char **text, size_t *len, fw_err *e);

/* Render, then encode without adding special tokens (BOS is in the text). */
int fw_chat_encode(fw_tokenizer *t, const fw_chat_msg *msgs, int64_t n, bool add_generation_prompt,
                   int32_t **ids, int64_t *n_ids, fw_err *e);
int fw_chat_encode_json(fw_tokenizer *t, const char *json, size_t json_len,
                        bool add_generation_prompt, int32_t **ids, int64_t *n_ids, fw_err *e);

#endif
