#include "runtime/engine/sched.h"
#include "runtime/engine/spec_sample.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *fw_finish_name(fw_finish f) {
    switch (f) {
    case FW_FINISH_STOP: return "stop";
    case FW_FINISH_LENGTH: return "length";
    case FW_FINISH_CANCEL: return "cancelled";
    case FW_FINISH_ERROR: return "error";
    default: return "none";
    }
}

void fw_finish_error(const fw_req *r, char *msg, size_t size) {
    snprintf(msg, size, "the model's logits for generated token %lld were not finite (NaN or infinity): the "
             "request was stopped; the weights or the computation are broken (try `furrow info --verify`)",
             (long long)(r->n_tokens - r->n_prompt + 1));
}

int fw_sched_init(fw_sched *s, const fw_sched_opts *o, fw_kv_pool *pool, fw_err *e) {
    memset(s, 0, sizeof *s);
    s->o = *o;
    s->pool = pool;
    if (o->max_batch < 1 || o->max_queue < 0 || o->token_budget < 1 || o->max_context < 2)
        return fw_errf(e, "scheduler: bad limits (batch %d, queue %d, budget %lld, context %lld)", o->max_batch,
                       o->max_queue, (long long)o->token_budget, (long long)o->max_context);
    /* One request alone must always fit, or it could wait forever. */
    if (fw_kv_blocks_for(pool, o->max_context) > pool->n_blocks)
        return fw_errf(e, "scheduler: the KV cache (%lld blocks of %lld) is smaller than the maximum context %lld",
                       (long long)pool->n_blocks, (long long)pool->block_size, (long long)o->max_context);
    if (fw_block_map_init(&s->map, pool, o->prefix_cache, e)) return FW_ERR;
    s->w_cap = (int64_t)o->max_queue + o->max_batch;
    s->waiting = calloc((size_t)s->w_cap, sizeof *s->waiting);
    s->running = calloc((size_t)o->max_batch, sizeof *s->running);
    s->step.e = calloc((size_t)o->max_batch, sizeof *s->step.e);
    if (!s->waiting || !s->running || !s->step.e) {
        fw_sched_free(s);
        return fw_errf(e, "scheduler: out of memory");
    }
    return FW_OK;
}

void fw_sched_free(fw_sched *s) {
    fw_block_map_free(&s->map);
    free(s->waiting);
    free(s->running);
    free(s->step.e);
    memset(s, 0, sizeof *s);
}

void fw_req_free(fw_req *r) {
    free(r->draft_q);
    r->draft_q = NULL;
    free(r->tokens);
    free(r->table);
    fw_sampler_free(&r->sampler);
    r->tokens = NULL, r->table = NULL;
}

static fw_step_logits logits_kind(const fw_req *r);

int fw_sched_submit(fw_sched *s, fw_req *r, fw_err *e) {
    const fw_sched_opts *o = &s->o;
    if (r->n_prompt < 1) return fw_errf(e, "the prompt is empty");
    if (r->n_prompt >= o->max_context)
        return fw_errf(e, "the prompt has %lld tokens; the maximum context is %lld", (long long)r->n_prompt,
                       (long long)o->max_context);
    if (r->max_tokens < 1) return fw_errf(e, "max_tokens must be at least 1");
    for (int64_t i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= o->vocab)
            return fw_errf(e, "prompt token %d is outside the vocabulary [0, %lld)", r->prompt[i], (long long)o->vocab);
    if (fw_sample_params_check(&r->sp, e)) return FW_ERR;
    if (s->w_len >= o->max_queue) return FW_SCHED_BUSY;
    int64_t total = r->n_prompt + r->max_tokens;
    r->cap_tokens = total < o->max_context ? total : o->max_context;
    r->tokens = malloc((size_t)r->cap_tokens * sizeof(int32_t));
    r->table = malloc((size_t)fw_kv_blocks_for(s->pool, r->cap_tokens) * sizeof(int32_t));
    bool ok = r->tokens && r->table && fw_sampler_init(&r->sampler, &r->sp, o->vocab, e) == FW_OK;
    if (ok && ((r->json && fw_sampler_constrain(&r->sampler, r->json, e)) ||
               (r->tool && fw_sampler_constrain_tool(&r->sampler, r->tool, e)))) {
        fw_sampler_free(&r->sampler);
        ok = false;
    }
    if (!ok) {
        free(r->tokens), free(r->table);
        r->tokens = NULL, r->table = NULL;
        return fw_errf(e, "out of memory for a request");
    }
    memcpy(r->tokens, r->prompt, (size_t)r->n_prompt * sizeof(int32_t));
    fw_sampler_prompt(&r->sampler, r->prompt, r->n_prompt);
    r->n_tokens = r->n_prompt;
    r->n_computed = 0, r->n_table = 0, r->n_keyed = 0, r->chain = 0, r->cached_tokens = 0;
    r->n_preempted = 0;
    r->finish = FW_FINISH_NONE, r->stop_asked = false;
    /* Greedy requests speculate, and sampled ones whose distribution the tokens
     * of a step do not change (runtime/engine/spec_sample.h). */
    r->spec = o->speculative > 0 && !r->json && fw_spec_sample_ok(&r->sp);
    r->n_draft = 0;
    if (r->spec && r->sp.temperature > 0 && !r->draft_q &&
        !(r->draft_q = malloc((size_t)FW_SPEC_MAX * (size_t)o->vocab * sizeof(float)))) {
        fw_sampler_free(&r->sampler);
        free(r->tokens), free(r->table);
        r->tokens = NULL, r->table = NULL;
        return fw_errf(e, "out of memory for a request");
    }
    r->arrival = s->arrivals++;
    s->waiting[(s->w_head + s->w_len++) % s->w_cap] = r;
    return FW_OK;
}

void fw_sched_stop(fw_sched *s, fw_req *r, fw_finish why) {
    (void)s;
    if (!r->stop_asked) r->stop_asked = true, r->stop_reason = why;
}

/* Drops the request's references, last block first: a cached block joins the
 * LRU queue with its content, and the blocks of a prefix (the most shared) are
 * the last of the request's to be evicted. */
static void release_blocks(fw_sched *s, fw_req *r) {
    for (int64_t i = r->n_table - 1; i >= 0; i--) fw_block_map_release(&s->map, r->table[i]);
    r->n_table = 0, r->n_keyed = 0, r->chain = 0;
    r->n_computed = 0;
    r->n_draft = 0; /* the MTP layer's cache is recomputed with the rest */
}

static void finish(fw_sched *s, fw_req *r, fw_finish why) {
    release_blocks(s, r);
    r->finish = why;
    if (s->o.on_finish) s->o.on_finish(r, s->o.arg);
}

static void remove_running(fw_sched *s, int i) {
    memmove(s->running + i, s->running + i + 1, (size_t)(s->n_running - i - 1) * sizeof *s->running);
    s->n_running--;
}

/* The youngest running request goes back to the head of the queue. */
static void preempt_youngest(fw_sched *s) {
    fw_req *r = s->running[s->n_running - 1];
    s->n_running--;
    release_blocks(s, r);
    r->n_preempted++;
    s->n_preemptions++;
    s->w_head = (s->w_head + s->w_cap - 1) % s->w_cap;
    s->waiting[s->w_head] = r;
    s->w_len++;
}

static bool grow_table(fw_sched *s, fw_req *r, int64_t upto) {
    int64_t need = fw_kv_blocks_for(s->pool, upto);
    if (need - r->n_table > fw_block_map_available(&s->map)) return false;
    while (r->n_table < need) r->table[r->n_table++] = fw_block_map_take(&s->map);
    return true;
}

/* A waiting request starts with the cached blocks of its longest cached prefix
 * (n_tokens - 1 at most: its last token is computed for its logits) when the
 * pool has blocks for the rest of its tokens; false: not now. */
static bool admit(fw_sched *s, fw_req *r) {
    const int64_t bs = s->pool->block_size;
    int64_t idle;
    uint64_t chain;
    int64_t n = fw_block_map_match(&s->map, r->tokens, (r->n_tokens - 1) / bs, r->table, &idle, &chain);
    if (fw_kv_blocks_for(s->pool, r->n_tokens) - n > fw_block_map_available(&s->map) - idle) return false;
    for (int64_t i = 0; i < n; i++) fw_block_map_hold(&s->map, r->table[i]);
    r->n_table = n, r->n_keyed = n, r->chain = chain;
    r->n_computed = n * bs;
    if (r->n_preempted == 0) { /* what the client is told, and the hit rate: prompts as they arrive */
        r->cached_tokens = n * bs;
        s->map.queried_tokens += r->n_prompt;
        s->map.hit_tokens += n * bs;
    }
    return true;
}

/* Publishes the blocks of the request that are now full. */
static void publish_full(fw_sched *s, fw_req *r) {
    const int64_t bs = s->pool->block_size;
    for (; s->map.caching && (r->n_keyed + 1) * bs <= r->n_computed; r->n_keyed++)
        r->chain = fw_block_map_publish(&s->map, r->table[r->n_keyed], r->chain, r->tokens + r->n_keyed * bs);
}

/* A request with JSON output takes the whole row to the leader's sampler,
 * where its mask applies (on a GPU too: the max-loc and top-k on the device
 * know nothing of it). */
static fw_step_logits logits_kind(const fw_req *r) {
    const fw_sample_params *p = &r->sp;
    if (r->json || r->tool || (r->spec && p->temperature > 0)) return FW_STEP_FULL; /* speculative sampling: rank 0's rows */
    bool plain = p->temperature <= 0 && p->logprobs < 0 && p->presence_penalty == 0 && p->frequency_penalty == 0 &&
                 p->repetition_penalty == 1;
    return plain ? FW_STEP_ARGMAX : fw_sampler_top_only(p, FW_SAMPLE_TOP_MAX) ? FW_STEP_TOP : FW_STEP_FULL;
}

static void add_entry(fw_sched *s, fw_req *r, int64_t n, int nd) {
    fw_step_entry *x = &s->step.e[s->step.n++];
    x->req = r, x->pos0 = r->n_computed, x->n = n, x->n_draft = nd;
    x->logits = r->n_computed + n == r->n_tokens ? logits_kind(r) : FW_STEP_NONE;
    s->step.n_tokens += n + nd;
}

/* Drafts a decode verifies: as many as it has, while the request has room for
 * them and the token after them (its tokens, max_tokens). */
static int drafts_now(const fw_sched *s, const fw_req *r, int64_t n, int64_t budget) {
    if (!r->spec || n != 1 || r->n_computed + 1 != r->n_tokens) return 0;
    int64_t room = r->cap_tokens - r->n_tokens - 1, left = r->max_tokens - (r->n_tokens - r->n_prompt) - 1;
    int64_t nd = r->n_draft;
    if (nd > room) nd = room;
    if (nd > left) nd = left;
    if (nd > budget - 1) nd = budget - 1;
    (void)s;
    return nd > 0 ? (int)nd : 0;
}

/* Positions a speculating entry may write: its tokens, its drafts and the
 * chained MTP step's one after them, within the request's table. */
static int64_t table_upto(const fw_sched *s, const fw_req *r, int64_t n, int nd) {
    int64_t upto = r->n_computed + n + nd + (r->spec ? s->o.speculative - 1 : 0);
    return upto < r->cap_tokens ? upto : r->cap_tokens;
}

/* Running requests that were asked to stop (or finished) end, freeing their blocks. */
static void leave_stopped(fw_sched *s) {
    for (int i = 0; i < s->n_running;)
        if (s->running[i]->stop_asked) {
            fw_req *r = s->running[i];
            remove_running(s, i);
            finish(s, r, r->stop_reason);
        } else {
            i++;
        }
}

const fw_step *fw_sched_plan(fw_sched *s) {
    s->step.n = 0, s->step.n_tokens = 0;
    /* Requests asked to stop leave now, from either list. */
    leave_stopped(s);
    for (int64_t k = 0, n = s->w_len; k < n; k++) {
        fw_req *r = s->waiting[s->w_head];
        s->w_head = (s->w_head + 1) % s->w_cap, s->w_len--;
        if (r->stop_asked) finish(s, r, r->stop_reason);
        else s->waiting[(s->w_head + s->w_len++) % s->w_cap] = r;
    }
    int64_t budget = s->o.token_budget;
    /* Running requests, oldest first; blocks come from the youngest when short. */
    for (int i = 0; i < s->n_running && budget > 0; i++) {
        fw_req *r = s->running[i];
        int64_t n = r->n_tokens - r->n_computed;
        if (n > budget) n = budget;
        int nd = drafts_now(s, r, n, budget);
        while (s->n_running > i && !grow_table(s, r, table_upto(s, r, n, nd))) preempt_youngest(s);
        if (i >= s->n_running) break; /* it was the youngest itself */
        add_entry(s, r, n, nd);
        budget -= n + nd;
    }
    /* Waiting requests in order while there is room, budget and blocks for the whole prompt. */
    while (s->w_len > 0 && budget > 0 && s->n_running < s->o.max_batch) {
        fw_req *r = s->waiting[s->w_head];
        if (!admit(s, r)) break;
        int64_t n = r->n_tokens - r->n_computed < budget ? r->n_tokens - r->n_computed : budget;
        if (!grow_table(s, r, table_upto(s, r, n, 0))) grow_table(s, r, r->n_computed + n);
        s->w_head = (s->w_head + 1) % s->w_cap, s->w_len--;
        s->running[s->n_running++] = r;
        add_entry(s, r, n, 0);
        budget -= n;
    }
    return &s->step;
}

static bool is_stop_id(const fw_req *r, int32_t id, int32_t eos) {
    if (id == eos && !r->ignore_eos) return true;
    for (int i = 0; i < r->n_stop_ids; i++)
        if (r->stop_ids[i] == id) return true;
    return false;
}

/* Appends a generated token; false when the request is done. */
static bool push_token(fw_sched *s, fw_req *r, const fw_sample_out *o) {
    int32_t id = o->id;
    r->tokens[r->n_tokens++] = id;
    fw_sampler_accept(&r->sampler, id);
    if (s->o.on_token) s->o.on_token(r, o, s->o.arg);
    if (r->stop_asked) return false; /* a stop string: leaves at the next plan */
    if (is_stop_id(r, id, s->o.eos)) fw_sched_stop(s, r, FW_FINISH_STOP);
    else if (r->n_tokens - r->n_prompt >= r->max_tokens || r->n_tokens >= s->o.max_context)
        fw_sched_stop(s, r, FW_FINISH_LENGTH);
    return !r->stop_asked;
}

void fw_sched_commit(fw_sched *s, const fw_sample_out *out) { fw_sched_commit_spec(s, out, NULL); }

void fw_sched_commit_spec(fw_sched *s, const fw_sample_out *out, const fw_spec_out *spec) {
    for (int i = 0; i < s->step.n; i++) {
        fw_step_entry *x = &s->step.e[i];
        fw_req *r = x->req;
        const fw_spec_out *sp = spec && r->spec ? &spec[i] : NULL;
        r->n_computed += x->n;
        r->n_draft = 0;
        if (x->logits == FW_STEP_NONE || !out[i].nonfinite) publish_full(s, r);
        if (x->logits == FW_STEP_NONE) continue;
        for (int j = 0; j < x->n_draft; j++) s->spec_proposed[j]++;
        bool going = true;
        /* The accepted drafts: their latent rows are in the cache already. */
        for (int j = 0; sp && j < sp->n_acc && going; j++) {
            s->spec_accepted[j]++;
            r->n_computed++;
            publish_full(s, r);
            going = push_token(s, r, &(fw_sample_out){.id = sp->acc[j]});
        }
        if (!going) continue;
        if (out[i].nonfinite) { /* never a token drawn from NaNs, nor a block shared */
            fw_sched_stop(s, r, FW_FINISH_ERROR);
            continue;
        }
        if (push_token(s, r, &out[i]) && sp) {
            r->n_draft = sp->n_draft;
            memcpy(r->draft, sp->draft, sizeof r->draft);
        }
    }
    /* Finished requests leave now, so their blocks are free for the next plan. */
    leave_stopped(s);
}
