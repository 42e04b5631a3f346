/* The body of an OpenAI request as `furrow serve` gets it (fw_job_parse_body,
 * runtime/engine/job.c: JSON, fields, the prompt through the shipped tokenizer
 * or the chat template), without a server. The first byte picks the endpoint
 * (completion, chat, batch line: its low bits modulo 3) and the model (top
 * bit: a small vocabulary and context, as a synthetic model has); the rest is
 * the body. An accepted request must be one the scheduler takes; a refused
 * one gets a 4xx and a message. The prompt's own ids are then fed back as the
 * generated tokens, through the stop strings, and, with a response_format,
 * through its grammar: each token's mask bit must say what feeding it does. */
#define _GNU_SOURCE  /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "io/text/data.h"
#include "runtime/engine/job.h"

static fw_tokenizer *tok;
static fw_json_cache *json_small, *json_full; /* the two vocabularies' grammars */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    tok = fuzz_shipped_tokenizer("fuzz_request");
    fw_err e;
    if (fw_json_cache_init(&json_small, tok, 1000, 1, &e) || fw_json_cache_init(&json_full, tok, 129280, 1, &e)) {
        fprintf(stderr, "fuzz_request: %s\n", e.msg);
        abort();
    }
    return 0;
}

/* The first prompt ids as output: the mask allows a token exactly when the
 * grammar takes it (then it is taken). */
static void check_grammar(fw_json_grammar *g, const fw_req *r) {
    fw_json_state s;
    fw_json_start(fw_json_grammar_nodes(g), &s);
    for (int64_t i = 0; i < r->n_prompt && i < 8; i++) {
        bool hit;
        const uint64_t *m = fw_json_grammar_mask(g, &s, &hit);
        int32_t id = r->prompt[i];
        fw_json_state t = s;
        bool takes = fw_json_grammar_accept(g, &t, id), allowed = m[id >> 6] >> (id & 63) & 1;
        FUZZ_CHECK(takes == allowed, "token %d: the mask says %d, the grammar %d", id, allowed, takes);
        if (takes) s = t;
    }
}

static void check_accepted(fw_job *j, const fw_job_ctx *c) {
    const fw_req *r = &j->req;
    fw_err e;
    FUZZ_CHECK(r->n_prompt >= 1 && r->n_prompt < c->max_context, "prompt of %lld tokens", (long long)r->n_prompt);
    for (int64_t i = 0; i < r->n_prompt; i++)
        FUZZ_CHECK(r->prompt[i] >= 0 && r->prompt[i] < c->vocab, "prompt id %d", r->prompt[i]);
    FUZZ_CHECK(r->max_tokens >= 1 && r->max_tokens <= c->max_context, "max_tokens %lld", (long long)r->max_tokens);
    FUZZ_CHECK(r->n_stop_ids >= 0 && r->n_stop_ids <= FW_SCHED_MAX_STOP_IDS, "%d stop ids", r->n_stop_ids);
    for (int i = 0; i < r->n_stop_ids; i++)
        FUZZ_CHECK(r->stop_ids[i] >= 0 && r->stop_ids[i] < c->vocab, "stop id %d", r->stop_ids[i]);
    FUZZ_CHECK(fw_sample_params_check(&r->sp, &e) == FW_OK, "the scheduler would refuse it: %s", e.msg);
    FUZZ_CHECK(j->n_stop >= 0 && j->n_stop <= FW_JOB_MAX_STOP, "%d stop strings", j->n_stop);
    for (int i = 0; i < j->n_stop; i++) {
        size_t n = strlen(j->stop[i]);
        FUZZ_CHECK(n >= 1 && n <= j->stop_max && n <= FW_JOB_MAX_STOP_LEN, "stop string %d of %zu bytes", i, n);
    }
    /* The prompt as the output: the text must never keep a stop string. */
    int64_t n = r->n_prompt < 256 ? r->n_prompt : 256;
    bool stopped = false;
    for (int64_t i = 0; i < n && !stopped; i++) {
        fw_sample_out o = {.id = r->prompt[i], .n_top = 0};
        stopped = fw_job_token(j, &o);
        FUZZ_CHECK(fw_job_ready(j, false) <= j->text_len, "ready past the text");
    }
    fw_job_end(j);
    for (int i = 0; i < j->n_stop; i++)
        FUZZ_CHECK(!j->text || !memmem(j->text, j->text_len, j->stop[i], strlen(j->stop[i])),
                   "the text keeps stop string %d", i);
    FUZZ_CHECK(fw_job_ready(j, true) == j->text_len, "not all text ready at the end");
    if (r->json) {
        FUZZ_CHECK(fw_json_grammar_vocab(r->json) == c->vocab, "a grammar for %lld tokens", (long long)fw_json_grammar_vocab(r->json));
        FUZZ_CHECK(!r->ignore_eos, "JSON output with ignore_eos");
        check_grammar(r->json, r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const fw_job_kind kinds[3] = {FW_JOB_COMPLETION, FW_JOB_CHAT, FW_JOB_BATCH};
    bool small = data[0] & 0x80;
    fw_job_ctx c = {.tok = tok, .vocab = small ? 1000 : 129280, .max_context = small ? 64 : 4096,
                    .model_name = "furrow-fuzz", .json = small ? json_small : json_full};
    fw_job j;
    int status = 0;
    fw_err e;
    if (fw_job_parse_body(&j, (const char *)data + 1, size - 1, kinds[(data[0] & 0x7f) % 3], &c, &status, &e) ==
        FW_OK) {
        FUZZ_CHECK(status == 200, "accepted with status %d", status);
        check_accepted(&j, &c);
        FUZZ_NOTE("accepted: %lld prompt tokens, text '%.40s'", (long long)j.req.n_prompt, j.text ? j.text : "");
    } else {
        FUZZ_CHECK(status == 400 || status == 404 || status == 422, "status %d: %s", status, e.msg);
        FUZZ_CHECK(e.msg[0] != '\0', "a refusal without a message");
        FUZZ_NOTE("refused: %s", e.msg);
    }
    fw_job_free(&j);
    return 0;
}
