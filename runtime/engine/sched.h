/* Continuous batching on rank 0: requests join and leave at every step. Each
 * step spends at most token_budget tokens: every running request first (a
 * decode is one token, a prompt is taken in chunks), then waiting requests in
 * arrival order while the batch has room and the pool has blocks for their
 * whole prompt. A running request that needs a block when none is free takes
 * one from the youngest running request, which is preempted: its blocks are
 * freed and its prompt and tokens so far are recomputed when it runs again.
 *
 * A request's tokens are its prompt followed by what it generated; n_computed
 * of them are in the KV cache. A step entry computes the next chunk, and when
 * that reaches the last token, the step samples a new one. So a prefill chunk,
 * a decode, and the recompute after a preemption are the same thing.
 *
 * With the prefix cache (runtime/engine/block_map.h), a request that is admitted
 * (first, or again after a preemption) starts with the cached full blocks of its
 * longest cached prefix in its table and n_computed past them: its first chunk
 * starts there, reading the earlier positions from the shared blocks. At most
 * n_tokens - 1 tokens come from the cache, so a prompt that is all cached still
 * computes its last token (and with it the rest of that block) for its logits.
 * Each block a step completes is published at commit. */
#ifndef FW_RUNTIME_ENGINE_SCHED_H
#define FW_RUNTIME_ENGINE_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/engine/block_map.h"
#include "runtime/model/kvcache.h"
#include "runtime/engine/sample.h"

#define FW_SCHED_MAX_STOP_IDS 16
#define FW_SCHED_BUSY 1
#define FW_SPEC_MAX 2          /* draft tokens a step at most (--speculative mtp:K) */        /* fw_sched_submit: the waiting queue is full */

typedef enum fw_finish {
    FW_FINISH_NONE,
    FW_FINISH_STOP,            /* EOS, a stop id or a stop string */
    FW_FINISH_LENGTH,          /* max_tokens or the maximum context */
    FW_FINISH_CANCEL,          /* the client went away, or the server stops */
    FW_FINISH_ERROR,           /* the model's logits were not finite: no token */
} fw_finish;

const char *fw_finish_name(fw_finish f);

typedef struct fw_req {
    /* Set by the caller before fw_sched_submit. */
    const int32_t *prompt;     /* copied at submit */
    int64_t n_prompt;
    int64_t max_tokens;        /* tokens to generate at most (> 0) */
    int32_t stop_ids[FW_SCHED_MAX_STOP_IDS];
    int n_stop_ids;
    bool ignore_eos;
    fw_sample_params sp;
    fw_json_grammar *json;     /* JSON output (runtime/engine/json_grammar.h); NULL: free text. The caller's reference */
    const fw_tool_guide *tool; /* a forced tool call (runtime/engine/tool_guide.h); NULL: none. The caller's */
    void *user;
    /* Kept by the scheduler. */
    int32_t *tokens;           /* (n_tokens) prompt, then generated */
    int64_t n_tokens, cap_tokens;
    int64_t n_computed;        /* tokens whose latent KV is in the cache */
    int32_t *table;            /* (n_table) block ids */
    int64_t n_table;
    fw_sampler sampler;
    fw_finish finish;
    bool stop_asked;
    fw_finish stop_reason;
    int64_t arrival;           /* submit order: the oldest runs first, the youngest is preempted first */
    int64_t n_preempted;
    int64_t n_keyed;           /* blocks of the table whose tokens the block map knows (found or published) */
    uint64_t chain;            /* the serial of the cached block for those, the next one's parent */
    int64_t cached_tokens;     /* prompt tokens found in the prefix cache at the first admission */
    bool spec;                 /* speculates: the MTP layer keeps its cache and drafts (greedy requests) */
    int32_t draft[FW_SPEC_MAX]; /* the MTP layer's guesses of the tokens after the last one */
    int n_draft;
    float *draft_q;            /* (FW_SPEC_MAX, vocab) sampled requests: the distributions the drafts came from */
} fw_req;

/* What went wrong for a request that finished with FW_FINISH_ERROR. */
void fw_finish_error(const fw_req *r, char *msg, size_t size);

typedef struct fw_sched_opts {
    int64_t n_blocks, block_size;
    int64_t token_budget;      /* tokens computed per step at most */
    int max_batch;             /* running requests at most */
    int max_queue;             /* waiting requests at most */
    int64_t max_context;       /* prompt + generated tokens at most */
    int64_t vocab;
    int32_t eos;
    bool prefix_cache;         /* share full blocks between requests with the same prefix */
    int speculative;           /* draft tokens a step for greedy requests (the runner's MTP layer); 0: none.
                                * A cached block's MTP rows depend on the token after it: no prefix cache then */
    /* Called on every generated token (o->id), then on a request leaving the
     * scheduler (finish set); after on_finish the scheduler forgets it. */
    void (*on_token)(fw_req *r, const fw_sample_out *o, void *arg);
    void (*on_finish)(fw_req *r, void *arg);
    void *arg;
} fw_sched_opts;

/* One step: per request, compute tokens[pos0, pos0 + n) and maybe sample. */
typedef enum fw_step_logits {
    FW_STEP_NONE,              /* a prompt chunk before the last */
    FW_STEP_ARGMAX,            /* greedy without penalties or logprobs: a max-loc across the shards */
    FW_STEP_FULL,              /* the whole row of logits on rank 0, for its sampler */
    FW_STEP_TOP,               /* top_k <= FW_SAMPLE_TOP_MAX, no penalties: the shards' top_k candidates */
} fw_step_logits;

/* A speculating request's step entry also carries its drafts: the forward
 * runs its n tokens then the n_draft drafts after them and verifies them. */
typedef struct fw_step_entry {
    fw_req *req;
    int64_t pos0, n;
    fw_step_logits logits;
    int n_draft;
} fw_step_entry;

/* What a speculating entry's step gave besides its token (fw_sample_out): the
 * drafts accepted (the tokens before it) and the next step's drafts. */
typedef struct fw_spec_out {
    int n_acc;
    int32_t acc[FW_SPEC_MAX];
    int n_draft;
    int32_t draft[FW_SPEC_MAX];
} fw_spec_out;

typedef struct fw_step {
    int n;
    fw_step_entry *e;          /* (max_batch) */
    int64_t n_tokens;
} fw_step;

typedef struct fw_sched {
    fw_sched_opts o;
    fw_kv_pool *pool;          /* block accounting only: the data is the runner's */
    fw_block_map map;          /* who holds each block; the prefix cache */
    fw_req **waiting;          /* FIFO ring (max_queue + max_batch: preempted requests return to its head) */
    int64_t w_head, w_len, w_cap;
    fw_req **running;          /* (max_batch) by arrival */
    int n_running;
    int64_t arrivals;
    int64_t n_preemptions;
    int64_t spec_proposed[FW_SPEC_MAX], spec_accepted[FW_SPEC_MAX];  /* drafts by position in the step */
    fw_step step;
} fw_sched;

int fw_sched_init(fw_sched *s, const fw_sched_opts *o, fw_kv_pool *pool, fw_err *e);
void fw_sched_free(fw_sched *s);
/* Queues a request. FW_ERR: it can never run (message says why);
 * FW_SCHED_BUSY: the queue is full now. */
int fw_sched_submit(fw_sched *s, fw_req *r, fw_err *e);
/* Ends a request at the next step (a stop string, a client gone). */
void fw_sched_stop(fw_sched *s, fw_req *r, fw_finish why);
/* Plans the next step (n == 0: nothing to do). */
const fw_step *fw_sched_plan(fw_sched *s);
/* Records the step's sampled tokens (out[i] for entry i where it sampled). */
void fw_sched_commit(fw_sched *s, const fw_sample_out *out);
/* The same with speculation: spec[i] for entry i (NULL: none speculated). */
void fw_sched_commit_spec(fw_sched *s, const fw_sample_out *out, const fw_spec_out *spec);
/* Requests waiting and running. */
static inline int64_t fw_sched_pending(const fw_sched *s) { return s->w_len + s->n_running; }
/* Frees a request's scheduler memory (after on_finish, by its owner). */
void fw_req_free(fw_req *r);

#endif
