/* A generated reply split as vLLM's and SGLang's DeepSeek parsers split it:
 * reasoning_content (thinking mode: the text before the first "</think>", all
 * of it while none came), content, and tool calls written in the format's
 * tokens. A tool-call part that does not parse (cut off, bad JSON, an unknown
 * function, text after it) leaves the whole reply as content: a malformed
 * call is returned as text, never half a call. */
#ifndef FW_IO_TEXT_CHAT_REPLY_H
#define FW_IO_TEXT_CHAT_REPLY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "io/base/err.h"
#include "io/text/chat.h"

typedef struct fw_chat_call {
    char *name;
    char *arguments;           /* JSON object text, as OpenAI's function.arguments */
} fw_chat_call;

typedef struct fw_chat_reply {
    char *content;             /* NUL-terminated */
    char *reasoning;           /* NULL unless thinking */
    fw_chat_call *calls;
    int n_calls;
} fw_chat_reply;

/* tools: the request's tools array (calls must name one of them); NULL with
 * parse_tools false: no tool calls are looked for. f must be resolved. */
int fw_chat_reply_parse(fw_chat_format f, const char *text, size_t len, bool thinking, bool parse_tools,
                        const json_t *tools, fw_chat_reply *r, fw_err *e);
void fw_chat_reply_free(fw_chat_reply *r);

/* What starts the tool calls in format f's output. */
const char *fw_chat_tool_marker(fw_chat_format f);
extern const char fw_chat_think_end[];
/* The length of the longest end of text[0, len) that begins marker (a marker
 * that may still be completing: a stream holds those bytes back). */
size_t fw_chat_marker_tail(const char *text, size_t len, const char *marker);
/* The first occurrence of marker in text[0, len), or NULL. */
const char *fw_chat_find(const char *text, size_t len, const char *marker);

#endif
