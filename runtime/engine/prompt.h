/* Turning a text prompt or a chat into token ids with the model's tokenizer (the
 * tokenizer.json beside the checkpoint), and the generated ids back into text. */
#ifndef FW_RUNTIME_ENGINE_PROMPT_H
#define FW_RUNTIME_ENGINE_PROMPT_H

#include <stdbool.h>
#include <stdint.h>

#include "io/base/err.h"
#include "io/text/chat.h"
#include "io/text/tokenizer.h"

/* Loads the tokenizer of the checkpoint in model_dir. */
int fw_prompt_tokenizer(fw_tokenizer **t, const char *model_dir, fw_err *e);

/* Encodes `text` (with BOS, as Hugging Face's tokenizer(text) does) or, when
 * chat is not NULL, renders `text` as a chat (OpenAI messages JSON, or an object
 * with "messages" and "tools", or @FILE holding it) in chat's format, with the
 * generation prompt. Ids at or past vocab (a small synthetic model with the full
 * tokenizer) are mapped modulo vocab; *mapped says so. */
int fw_prompt_encode(fw_tokenizer *t, const char *text, const fw_chat_opts *chat, int64_t vocab, int32_t **ids,
                     int64_t *n, bool *mapped, fw_err *e);

#endif
