/* One generation request as the server and the batch jobs see it: parsed and
 * validated from JSON (OpenAI's completion and chat fields), its scheduler
 * request, and the text it produces (streamed detokenization, stop strings,
 * logprobs), turned back into JSON. Rank 0 only. */
#ifndef FW_RUNTIME_ENGINE_JOB_H
#define FW_RUNTIME_ENGINE_JOB_H

#include <jansson.h>
#include <stdbool.h>

#include "io/text/tokenizer.h"
#include "runtime/engine/json_grammar.h"
#include "runtime/engine/sched.h"

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
} fw_job_ctx;

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
/* The batch result line: {id, text, tokens, finish_reason, usage[, logprobs]}. */
json_t *fw_job_result(const fw_job *j);
/* {"error": {"message", "type", "param", "code"}} as OpenAI writes it. */
json_t *fw_error_json(int status, const char *message);

#endif
