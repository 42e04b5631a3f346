/* The scheduler with a stand-in model: the next token is a hash of the whole
 * sequence so far, and every step "writes" each computed position's (request,
 * position, token) into the block its table names and checks that every earlier
 * position reads back its own. Requests of mixed lengths arrive over time, with
 * caches from roomy to too small for all (preemption), budgets from 1 token to
 * plenty; every request must end with exactly the tokens it gets alone, no step
 * may exceed its budget or batch, and all blocks must be free at the end. */
#include "runtime/engine/sched.h"
#include "tests/check.h"

#include <string.h>

#define V 97
#define N_REQ 24

typedef struct cell {
    int64_t req, pos;
    int32_t tok;
} cell;

typedef struct world {
    fw_kv_pool pool;
    cell *cells;               /* (n_blocks * block_size) what each position holds */
    fw_req req[N_REQ];
    int32_t prompts[N_REQ][40];
    int finished[N_REQ], tokens_seen[N_REQ];
} world;

static int32_t next_of(const int32_t *t, int64_t n) {
    uint64_t h = 1469598103934665603ull;
    for (int64_t i = 0; i < n; i++) h = (h ^ (uint64_t)t[i]) * 1099511628211ull;
    return (int32_t)(h % V);
}

static void on_token(fw_req *r, const fw_sample_out *o, void *arg) {
    world *w = arg;
    (void)o;
    w->tokens_seen[r - w->req]++;
}

static void on_finish(fw_req *r, void *arg) {
    world *w = arg;
    w->finished[r - w->req]++;
}

/* What request i generates alone. */
static int64_t alone(world *w, int i, int64_t max_context, int32_t *out) {
    fw_req *r = &w->req[i];
    int32_t seq[512];
    int64_t n = r->n_prompt, k = 0;
    memcpy(seq, r->prompt, (size_t)n * sizeof(int32_t));
    while (k < r->max_tokens && n < max_context) {
        int32_t t = next_of(seq, n);
        seq[n++] = out[k++] = t;
        if (t == 0 || (r->n_stop_ids && t == r->stop_ids[0])) break;
    }
    return k;
}

static void run(int64_t n_blocks, int64_t bs, int64_t budget, int max_batch, int64_t max_context) {
    world w;
    memset(&w, 0, sizeof w);
    fw_err e;
    CHECK(fw_kv_pool_init(&w.pool, n_blocks, bs, 1, 1, &e) == FW_OK, "%s", e.msg);
    w.cells = calloc((size_t)(n_blocks * bs), sizeof *w.cells);
    fw_sched s;
    fw_sched_opts o = {.n_blocks = n_blocks, .block_size = bs, .token_budget = budget, .max_batch = max_batch,
                       .max_queue = N_REQ, .max_context = max_context, .vocab = V, .eos = 0,
                       .on_token = on_token, .on_finish = on_finish, .arg = &w};
    CHECK(fw_sched_init(&s, &o, &w.pool, &e) == FW_OK, "%s", e.msg);
    for (int i = 0; i < N_REQ; i++) {
        fw_req *r = &w.req[i];
        r->n_prompt = 1 + check_rng_u32() % 39;
        if (r->n_prompt >= max_context) r->n_prompt = max_context - 1;
        for (int64_t k = 0; k < r->n_prompt; k++) w.prompts[i][k] = (int32_t)(1 + check_rng_u32() % (V - 1));
        r->prompt = w.prompts[i];
        r->max_tokens = 1 + check_rng_u32() % 30;
        if (i % 3 == 0) r->stop_ids[r->n_stop_ids++] = 5;
        fw_sample_params_default(&r->sp);
    }
    int submitted = 0, steps = 0;
    fw_sample_out out[64];
    while ((submitted < N_REQ || fw_sched_pending(&s) > 0) && steps < 100000) {
        if (submitted < N_REQ && (steps % 3 == 0)) /* arrivals between steps */
            CHECK(fw_sched_submit(&s, &w.req[submitted++], &e) == FW_OK, "submit: %s", e.msg);
        const fw_step *st = fw_sched_plan(&s);
        steps++;
        CHECK(st->n_tokens <= budget && st->n <= max_batch, "step of %lld tokens, %d requests", (long long)st->n_tokens,
              st->n);
        for (int k = 0; k < st->n; k++) {
            const fw_step_entry *x = &st->e[k];
            fw_req *r = x->req;
            int64_t id = r - w.req;
            CHECK(x->pos0 == r->n_computed && x->n >= 1 && x->pos0 + x->n <= r->n_tokens, "bad entry");
            CHECK(r->n_table * bs >= x->pos0 + x->n, "request %lld: %lld blocks for %lld positions", (long long)id,
                  (long long)r->n_table, (long long)(x->pos0 + x->n));
            for (int64_t p = 0; p < x->pos0; p++) {
                cell c = w.cells[r->table[p / bs] * bs + p % bs];
                CHECK(c.req == id && c.pos == p && c.tok == r->tokens[p], "request %lld position %lld reads another's",
                      (long long)id, (long long)p);
            }
            for (int64_t p = x->pos0; p < x->pos0 + x->n; p++)
                w.cells[r->table[p / bs] * bs + p % bs] = (cell){id, p, r->tokens[p]};
            if (x->logits != FW_STEP_NONE) out[k].id = next_of(r->tokens, r->n_tokens);
        }
        fw_sched_commit(&s, out);
    }
    CHECK(submitted == N_REQ && fw_sched_pending(&s) == 0, "%lld requests still pending after %d steps",
          (long long)fw_sched_pending(&s), steps);
    CHECK(w.pool.n_free == n_blocks, "%lld of %lld blocks free at the end", (long long)w.pool.n_free,
          (long long)n_blocks);
    for (int i = 0; i < N_REQ; i++) {
        int32_t want[512];
        int64_t n = alone(&w, i, max_context, want);
        fw_req *r = &w.req[i];
        CHECK(w.finished[i] == 1, "request %d finished %d times", i, w.finished[i]);
        CHECK(r->n_tokens - r->n_prompt == n && !memcmp(r->tokens + r->n_prompt, want, (size_t)n * sizeof(int32_t)),
              "request %d: %lld tokens differ from its %lld alone (blocks %lld, budget %lld)", i,
              (long long)(r->n_tokens - r->n_prompt), (long long)n, (long long)n_blocks, (long long)budget);
        CHECK(w.tokens_seen[i] == n, "request %d: %d tokens reported, %lld made", i, w.tokens_seen[i], (long long)n);
        bool stopped = n > 0 && (want[n - 1] == 0 || (r->n_stop_ids && want[n - 1] == r->stop_ids[0]));
        CHECK(r->finish == (stopped ? FW_FINISH_STOP : FW_FINISH_LENGTH), "request %d finished as %s", i,
              fw_finish_name(r->finish));
        fw_req_free(r);
    }
    fprintf(stderr, "blocks %lld x %lld, budget %lld, batch %d, context %lld: %d steps, %lld preemptions\n",
            (long long)n_blocks, (long long)bs, (long long)budget, max_batch, (long long)max_context, steps,
            (long long)s.n_preemptions);
    fw_sched_free(&s);
    fw_kv_pool_free(&w.pool);
    free(w.cells);
}

/* Refusals at submit: too long, empty, out of the vocabulary; a full queue is busy. */
static void check_refusals(void) {
    fw_kv_pool pool;
    fw_err e;
    fw_kv_pool_init(&pool, 8, 4, 1, 1, &e);
    fw_sched s;
    fw_sched_opts o = {.n_blocks = 8, .block_size = 4, .token_budget = 8, .max_batch = 2, .max_queue = 1,
                       .max_context = 16, .vocab = V, .eos = 0};
    CHECK(fw_sched_init(&s, &o, &pool, &e) == FW_OK, "%s", e.msg);
    int32_t p[20] = {1, 2, 3}, bad[2] = {1, V};
    fw_req r = {.prompt = p, .n_prompt = 16, .max_tokens = 4};
    fw_sample_params_default(&r.sp);
    CHECK(fw_sched_submit(&s, &r, &e) == FW_ERR, "a prompt as long as the context was accepted");
    r.n_prompt = 0;
    CHECK(fw_sched_submit(&s, &r, &e) == FW_ERR, "an empty prompt was accepted");
    r.prompt = bad, r.n_prompt = 2;
    CHECK(fw_sched_submit(&s, &r, &e) == FW_ERR, "a token outside the vocabulary was accepted");
    fw_req a = {.prompt = p, .n_prompt = 3, .max_tokens = 4}, b = a;
    fw_sample_params_default(&a.sp), fw_sample_params_default(&b.sp);
    CHECK(fw_sched_submit(&s, &a, &e) == FW_OK, "%s", e.msg);
    CHECK(fw_sched_submit(&s, &b, &e) == FW_SCHED_BUSY, "a full queue took another request");
    fw_sched_stop(&s, &a, FW_FINISH_CANCEL);
    CHECK(fw_sched_plan(&s)->n == 0 && fw_sched_pending(&s) == 0 && a.finish == FW_FINISH_CANCEL, "cancel");
    fw_req_free(&a);
    o.max_context = 64; /* more than 8 blocks of 4 hold */
    fw_sched s2;
    CHECK(fw_sched_init(&s2, &o, &pool, &e) == FW_ERR, "a cache smaller than one context was accepted");
    fw_sched_free(&s);
    fw_kv_pool_free(&pool);
}

int main(void) {
    run(64, 16, 256, 16, 128);   /* roomy */
    run(12, 8, 64, 16, 96);      /* tight: preemptions */
    run(7, 4, 5, 3, 28);         /* tiny budget, tiny batch, short context */
    run(40, 1, 1, 4, 40);        /* one token per step */
    check_refusals();
    return check_result();
}
