/* One generation request as the server and the batch jobs see it: parsed and
 * validated from JSON (OpenAI's completion and chat fields), its scheduler
 * request, and the text it produces (streamed detokenization, stop strings,
 * logprobs), turned back into JSON. Rank 0 only. */
#ifndef FW_RUNTIME_ENGINE_JOB_H
#define FW_RUNTIME_ENGINE_JOB_H

#include <jansson.h>
#include <stdbool.h>

#include "io/text/chat.h"
#include "io/text/chat_reply.h"
#include "io/text/tokenizer.h"
#include "runtime/engine/json_grammar.h"
#include "runtime/engine/sched.h"
#include "runtime/engine/tool_guide.h"

#define FW_JOB_MAX_STOP 4
#define FW_JOB_MAX_STOP_LEN 128

typedef enum fw_job_kind {
    FW_JOB_COMPLETION,         /* "prompt": text or token ids */
    FW_JOB_CHAT,               /* "messages" */
    FW_JOB_BATCH,              /* a JSONL line: "id" and one of prompt, messages, prompt_tokens */
} fw_job_kind;

typedef struct fw_job_ctx {
    fw_tokenizer *tok;         /* NULL: token ids only */
    int64_t vocab;
    int64_t max_context;
    const char *model_name;    /* requests naming another model get 404 */
    fw_json_cache *json;       /* response_format's grammars; NULL: no tokenizer, no JSON output */
    fw_chat_format format;     /* the chat format (resolved; AUTO: the tokenizer's) */
    bool thinking;             /* thinking mode unless a request says (chat_template_kwargs.thinking) */
} fw_job_ctx;

typedef enum fw_tool_choice {
    FW_TOOL_CHOICE_NONE,       /* no tools, or tool_choice "none": the tools stay out of the prompt */
    FW_TOOL_CHOICE_AUTO,       /* the model may call one: its calls are parsed */
    FW_TOOL_CHOICE_REQUIRED,   /* "required" or a named function: the call is forced (runtime/engine/tool_guide.h) */
} fw_tool_choice;

/* Where a streamed chat reply stands (fw_job_stream_parts). */
typedef enum fw_job_part { FW_PART_REASONING, FW_PART_CONTENT, FW_PART_TOOLS } fw_job_part;

typedef struct fw_job {
    fw_req req;
    fw_job_kind kind;
    json_t *id;                /* batch: the line's id */
    bool stream;
    int32_t *prompt;
    char *stop[FW_JOB_MAX_STOP];
    int n_stop;
    size_t stop_max;           /* longest stop string */
    fw_detok_stream *ds;
    char *text;                /* generated text (up to a stop string) */
    size_t text_len, text_cap, sent;
    json_t *logprobs;          /* array of {id, logprob, top}, when asked */
    fw_chat_format format;     /* chat: the format the prompt was rendered in, the reply is split by */
    bool thinking;             /* chat: the reply begins with reasoning (reasoning_content) */
    fw_tool_choice tool_choice;
    json_t *tools;             /* the request's tools, when tool_choice is not none */
    fw_tool_guide *guide;      /* a forced call's */
    fw_job_part part;          /* streaming: the part text[sent...] belongs to */
    bool oom;
    void *user;
} fw_job;

/* Parses and checks a request. On failure returns FW_ERR with *status the HTTP
 * status (400 malformed or wrong type, 404 unknown model, 422 a value out of
 * range or a prompt the model cannot take) and the message in e. */
int fw_job_parse(fw_job *j, const json_t *body, fw_job_kind kind, const fw_job_ctx *c, int *status, fw_err *e);
/* The same from an HTTP request body: the bytes parsed as JSON (duplicate
 * keys refused), then fw_job_parse; invalid JSON is a 400 naming the byte. */
int fw_job_parse_body(fw_job *j, const char *body, size_t len, fw_job_kind kind, const fw_job_ctx *c, int *status,
                      fw_err *e);
void fw_job_free(fw_job *j);
/* A generated token: appends its text and logprobs; returns true when the
 * text now holds a stop string (cut there). */
bool fw_job_token(fw_job *j, const fw_sample_out *o);
/* The request ended: the detokenizer's held bytes join the text. */
void fw_job_end(fw_job *j);
/* Bytes of text that can be sent now: not a possible start of a stop string,
 * never half a UTF-8 character (everything once ended). */
size_t fw_job_ready(const fw_job *j, bool ended);
/* Whether the reply is split (reasoning, content, tool calls) rather than one text. */
bool fw_job_structured(const fw_job *j);
/* Streaming a structured reply: what of text[sent, ready) goes out now as
 * reasoning [*r0, *r1) and as content [*c0, *c1); the tool-call part is held
 * until the end (a malformed one then goes out as content). Moves sent. */
void fw_job_stream_parts(fw_job *j, size_t ready, bool ended, size_t *r0, size_t *r1, size_t *c0, size_t *c1);
/* Whether fw_job_stream_parts would send text now (no side effect). */
bool fw_job_stream_news(const fw_job *j, size_t ready, bool ended);
/* The whole reply, split (chat jobs; plain content otherwise). */
int fw_job_reply(const fw_job *j, fw_chat_reply *r, fw_err *e);
/* The batch result line: {id, text, tokens, finish_reason, usage[, logprobs]};
 * a chat line with tools or thinking adds content[, reasoning_content][, tool_calls]. */
json_t *fw_job_result(const fw_job *j);
/* {"error": {"message", "type", "param", "code"}} as OpenAI writes it. */
json_t *fw_error_json(int status, const char *message);

#endif
