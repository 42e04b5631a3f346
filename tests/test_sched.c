/* The scheduler with a stand-in model: the next token is a hash of the whole
 * sequence so far, and every step "writes" each computed position's content (a
 * hash of the sequence up to it) into the block its table names and checks that
 * every earlier position reads back its own: from its own blocks or, with the
 * prefix cache, from blocks another request with the same prefix computed. A
 * write must go to a block this request alone holds and that is not published.
 * Requests of mixed lengths, many sharing prefixes (ends mid-block, whole
 * prompts again), arrive over time, with caches from roomy to too small for all
 * (preemption, eviction), budgets from 1 token to plenty, the cache on and off;
 * every request must end with exactly the tokens it gets alone, no step may
 * exceed its budget or batch, and all blocks must be free at the end. The same
 * with speculation (mtp:1 and mtp:2): drafts written, verified, the rejected
 * ones rolled back. */
#include "runtime/engine/sched.h"
#include "tests/check.h"

#include <string.h>

#define V 97
#define N_REQ 24

typedef struct cell {
    uint64_t prefix;           /* hash of the tokens up to and with this position */
    int64_t pos;
} cell;

typedef struct world {
    fw_kv_pool pool;
    cell *cells;               /* (n_blocks * block_size) what each position holds */
    fw_req req[N_REQ];
    int32_t prompts[N_REQ][40];
    int finished[N_REQ], tokens_seen[N_REQ];
} world;

static uint64_t seq_hash(const int32_t *t, int64_t n) {
    uint64_t h = 1469598103934665603ull;
    for (int64_t i = 0; i < n; i++) h = (h ^ (uint64_t)t[i]) * 1099511628211ull;
    return h;
}

static int32_t next_of(const int32_t *t, int64_t n) { return (int32_t)(seq_hash(t, n) % V); }

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

/* Requests of the scheduler holding block b (in running or waiting tables). */
static int holders(const fw_sched *s, int32_t b) {
    int n = 0;
    for (int i = 0; i < s->n_running; i++)
        for (int64_t k = 0; k < s->running[i]->n_table; k++) n += s->running[i]->table[k] == b;
    for (int64_t q = 0; q < s->w_len; q++) {
        const fw_req *r = s->waiting[(s->w_head + q) % s->w_cap];
        for (int64_t k = 0; k < r->n_table; k++) n += r->table[k] == b;
    }
    return n;
}

/* Prompt i: random, or (every other one) an earlier prompt's first tokens (any
 * length: whole blocks, mid-block, all of it) and maybe tokens of its own. */
static void make_prompt(world *w, int i, int64_t max_context) {
    fw_req *r = &w->req[i];
    int32_t *p = w->prompts[i];
    int64_t n = 0;
    if (i > 0 && i % 2) {
        const fw_req *a = &w->req[check_rng_u32() % i];
        int64_t keep = 1 + check_rng_u32() % a->n_prompt;
        if (i % 6 == 1) keep = a->n_prompt; /* the whole prompt again */
        memcpy(p, a->prompt, (size_t)keep * sizeof *p);
        n = keep;
    }
    int64_t own = i % 6 == 1 ? 0 : check_rng_u32() % 14;
    if (n == 0) own = 1 + check_rng_u32() % 39;
    for (int64_t k = 0; k < own && n < 40; k++) p[n++] = (int32_t)(1 + check_rng_u32() % (V - 1));
    r->n_prompt = n < max_context ? n : max_context - 1;
    r->prompt = p;
}

/* With spec > 0 the requests speculate (fw_sched_opts.speculative): each entry
 * also writes its drafts' positions, the stand-in greedy verifies them, and a
 * stand-in draft model proposes the next ones, right two times in three. A
 * rejected draft's position counted as computed would be read back by a later
 * step as the sequence's own: the reads below catch it. */
static void run_spec(int64_t n_blocks, int64_t bs, int64_t budget, int max_batch, int64_t max_context, bool cache,
                     int spec);

static void run(int64_t n_blocks, int64_t bs, int64_t budget, int max_batch, int64_t max_context, bool cache) {
    run_spec(n_blocks, bs, budget, max_batch, max_context, cache, 0);
}

static void run_spec(int64_t n_blocks, int64_t bs, int64_t budget, int max_batch, int64_t max_context, bool cache,
                     int spec) {
    world w;
    memset(&w, 0, sizeof w);
    fw_err e;
    CHECK(fw_kv_pool_init(&w.pool, n_blocks, bs, 1, 1, &e) == FW_OK, "%s", e.msg);
    w.cells = calloc((size_t)(n_blocks * bs), sizeof *w.cells);
    fw_sched s;
    fw_sched_opts o = {.n_blocks = n_blocks, .block_size = bs, .token_budget = budget, .max_batch = max_batch,
                       .max_queue = N_REQ, .max_context = max_context, .vocab = V, .eos = 0, .prefix_cache = cache,
                       .speculative = spec, .on_token = on_token, .on_finish = on_finish, .arg = &w};
    CHECK(fw_sched_init(&s, &o, &w.pool, &e) == FW_OK, "%s", e.msg);
    for (int i = 0; i < N_REQ; i++) {
        fw_req *r = &w.req[i];
        make_prompt(&w, i, max_context);
        r->max_tokens = 1 + check_rng_u32() % 30;
        if (i % 3 == 0) r->stop_ids[r->n_stop_ids++] = 5;
        fw_sample_params_default(&r->sp);
    }
    int submitted = 0, steps = 0;
    int64_t drafted = 0, accepted = 0;
    fw_sample_out out[64];
    fw_spec_out sp[64];
    int32_t seq[1024];
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
            const int nd = x->n_draft;
            CHECK(r->n_table * bs >= x->pos0 + x->n + nd, "request %lld: %lld blocks for %lld positions", (long long)id,
                  (long long)r->n_table, (long long)(x->pos0 + x->n + nd));
            CHECK(nd == 0 || (spec && x->n == 1 && x->logits != FW_STEP_NONE), "request %lld: %d drafts", (long long)id, nd);
            CHECK(x->pos0 < r->n_tokens, "request %lld: nothing left to compute for its logits", (long long)id);
            for (int64_t p = 0; p < x->pos0; p++) {
                cell c = w.cells[r->table[p / bs] * bs + p % bs];
                CHECK(c.prefix == seq_hash(r->tokens, p + 1) && c.pos == p,
                      "request %lld position %lld reads what another sequence wrote", (long long)id, (long long)p);
            }
            /* The entry's tokens, then its drafts: what the forward writes. */
            int64_t len = x->pos0 + x->n;
            memcpy(seq, r->tokens, (size_t)len * sizeof *seq);
            memcpy(seq + len, r->draft, (size_t)nd * sizeof *seq);
            for (int64_t p = x->pos0; p < len + nd; p++) {
                int32_t b = r->table[p / bs];
                CHECK(holders(&s, b) == 1 && s.map.ref[b] == 1 && (!cache || !s.map.serial[b]),
                      "request %lld writes position %lld into block %d, shared or published", (long long)id,
                      (long long)p, b);
                w.cells[b * bs + p % bs] = (cell){seq_hash(seq, p + 1), p};
            }
            if (x->logits == FW_STEP_NONE) continue;
            sp[k] = (fw_spec_out){0};
            while (sp[k].n_acc < nd && r->draft[sp[k].n_acc] == next_of(seq, len)) /* greedy verifies */
                sp[k].acc[sp[k].n_acc++] = seq[len], len++;
            drafted += nd, accepted += sp[k].n_acc;
            out[k] = (fw_sample_out){.id = next_of(seq, len)};
            seq[len++] = out[k].id;
            for (int d = 0; d < spec; d++) { /* the next drafts, wrong one time in three */
                int32_t t = next_of(seq, len);
                if ((seq_hash(seq, len) >> 7) % 3 == 0) t = (t + 1) % V;
                sp[k].draft[sp[k].n_draft++] = seq[len++] = t;
            }
        }
        fw_sched_commit_spec(&s, out, spec ? sp : NULL);
    }
    CHECK(submitted == N_REQ && fw_sched_pending(&s) == 0, "%lld requests still pending after %d steps",
          (long long)fw_sched_pending(&s), steps);
    CHECK(fw_block_map_available(&s.map) == n_blocks && fw_block_map_used(&s.map) == 0,
          "%lld of %lld blocks free at the end", (long long)fw_block_map_available(&s.map), (long long)n_blocks);
    CHECK(cache || w.pool.n_free == n_blocks, "%lld of %lld blocks free at the end, the cache off",
          (long long)w.pool.n_free, (long long)n_blocks);
    for (int64_t b = 0; b < n_blocks; b++) CHECK(s.map.ref[b] == 0, "block %lld held at the end", (long long)b);
    CHECK(!cache || s.map.n_published == s.map.n_lru, "%lld published blocks, %lld in the LRU queue",
          (long long)s.map.n_published, (long long)s.map.n_lru);
    CHECK(cache || s.map.hit_tokens == 0, "hits with the cache off");
    int64_t cached = 0;
    for (int i = 0; i < N_REQ; i++) {
        int32_t want[512];
        int64_t n = alone(&w, i, max_context, want);
        fw_req *r = &w.req[i];
        CHECK(w.finished[i] == 1, "request %d finished %d times", i, w.finished[i]);
        CHECK(r->n_tokens - r->n_prompt == n && !memcmp(r->tokens + r->n_prompt, want, (size_t)n * sizeof(int32_t)),
              "request %d: %lld tokens differ from its %lld alone (blocks %lld, budget %lld)", i,
              (long long)(r->n_tokens - r->n_prompt), (long long)n, (long long)n_blocks, (long long)budget);
        CHECK(w.tokens_seen[i] == n, "request %d: %d tokens reported, %lld made", i, w.tokens_seen[i], (long long)n);
        CHECK(r->cached_tokens % bs == 0 && r->cached_tokens < r->n_prompt, "request %d: %lld of %lld tokens cached", i,
              (long long)r->cached_tokens, (long long)r->n_prompt);
        cached += r->cached_tokens;
        bool stopped = n > 0 && (want[n - 1] == 0 || (r->n_stop_ids && want[n - 1] == r->stop_ids[0]));
        CHECK(r->finish == (stopped ? FW_FINISH_STOP : FW_FINISH_LENGTH), "request %d finished as %s", i,
              fw_finish_name(r->finish));
        fw_req_free(r);
    }
    CHECK(cached == s.map.hit_tokens, "the requests' cached tokens (%lld) are not the hits (%lld)", (long long)cached,
          (long long)s.map.hit_tokens);
    if (spec && budget > 1) CHECK(accepted > 0 && accepted < drafted, "%lld of %lld drafts accepted", (long long)accepted,
                                  (long long)drafted);
    fprintf(stderr, "blocks %lld x %lld, budget %lld, batch %d, context %lld, prefix cache %s: %d steps, %lld "
            "preemptions, %lld of %lld prompt tokens cached, %lld evictions; %lld of %lld drafts accepted (mtp:%d)\n",
            (long long)n_blocks, (long long)bs, (long long)budget, max_batch, (long long)max_context,
            cache ? "on" : "off", steps, (long long)s.n_preemptions, (long long)s.map.hit_tokens,
            (long long)s.map.queried_tokens, (long long)s.map.evictions, (long long)accepted, (long long)drafted, spec);
    fw_sched_free(&s);
    fw_kv_pool_free(&w.pool);
    free(w.cells);
}

/* One step of the scheduler with the stand-in model. */
static const fw_step *step_once(fw_sched *s) {
    fw_sample_out out[8];
    const fw_step *st = fw_sched_plan(s);
    for (int k = 0; k < st->n; k++) out[k] = (fw_sample_out){.id = next_of(st->e[k].req->tokens, st->e[k].req->n_tokens)};
    fw_sched_commit(s, out);
    return st;
}

static void drain(fw_sched *s) {
    for (int steps = 0; fw_sched_pending(s) > 0 && steps < 1000; steps++) step_once(s);
}

/* The block map's decisions, one by one (blocks of 4): a prompt seen before is
 * found but for its last token's block; a longer one reuses the shared blocks
 * copy-free, those of the first request's generated tokens too; a cached block
 * is evicted only once no free block is left, least recently used first. */
static void check_reuse(void) {
    fw_kv_pool pool;
    fw_err e;
    fw_kv_pool_init(&pool, 10, 4, 1, 1, &e);
    fw_sched s;
    fw_sched_opts o = {.n_blocks = 10, .block_size = 4, .token_budget = 64, .max_batch = 2, .max_queue = 4,
                       .max_context = 24, .vocab = V, .eos = -1, .prefix_cache = true};
    CHECK(fw_sched_init(&s, &o, &pool, &e) == FW_OK, "%s", e.msg);
    int32_t p[10], q[13], z[23], y[16];
    for (int i = 0; i < 10; i++) p[i] = 1 + i;
    for (int i = 0; i < 23; i++) z[i] = 50 + i;
    for (int i = 0; i < 16; i++) y[i] = 80 + i;
    fw_req a = {.prompt = p, .n_prompt = 10, .max_tokens = 3}, b = a, c = {.prompt = q, .n_prompt = 13, .max_tokens = 3};
    fw_req d = {.prompt = z, .n_prompt = 23, .max_tokens = 1}, f = d, g = {.prompt = y, .n_prompt = 16, .max_tokens = 1};
    fw_req *all[] = {&a, &b, &c, &d, &f, &g};
    for (int i = 0; i < 6; i++) fw_sample_params_default(&all[i]->sp);

    CHECK(fw_sched_submit(&s, &a, &e) == FW_OK, "%s", e.msg);
    drain(&s); /* 12 positions computed (the 13th token is never fed back): blocks 0-2, all published */
    CHECK(a.cached_tokens == 0 && s.map.n_published == 3 && s.map.n_lru == 3 && pool.n_free == 7,
          "the first request: %lld cached, %lld published, %lld free", (long long)a.cached_tokens,
          (long long)s.map.n_published, (long long)pool.n_free);
    /* The same 10 tokens: 2 blocks found (8 < 10), the last 2 tokens computed. */
    CHECK(fw_sched_submit(&s, &b, &e) == FW_OK, "%s", e.msg);
    const fw_step *st = step_once(&s);
    CHECK(st->n == 1 && st->e[0].pos0 == 8 && st->e[0].n == 2 && b.cached_tokens == 8 && b.table[0] == a.table[0] &&
          b.table[1] == a.table[1], "a repeated prompt: pos0 %lld", (long long)st->e[0].pos0);
    fw_sched_stop(&s, &b, FW_FINISH_CANCEL);
    step_once(&s);
    /* a's prompt and generated tokens (13): a's 3 blocks, the last token computed alone. */
    memcpy(q, a.tokens, sizeof q);
    CHECK(fw_sched_submit(&s, &c, &e) == FW_OK, "%s", e.msg);
    st = step_once(&s);
    CHECK(st->n == 1 && st->e[0].pos0 == 12 && st->e[0].n == 1 && c.cached_tokens == 12,
          "a's prompt and generated tokens: pos0 %lld, %lld cached", (long long)st->e[0].pos0,
          (long long)c.cached_tokens);
    fw_sched_stop(&s, &c, FW_FINISH_CANCEL);
    step_once(&s);
    /* 23 new tokens need 6 blocks: 7 are free, so nothing is evicted. */
    CHECK(fw_sched_submit(&s, &d, &e) == FW_OK, "%s", e.msg);
    drain(&s);
    CHECK(s.map.evictions == 0 && s.map.n_published == 3 + 5 && pool.n_free == 2, "%lld evictions, %lld published",
          (long long)s.map.evictions, (long long)s.map.n_published);
    /* 16 new tokens: the 2 free blocks, then the 2 least recently used cached ones (a's, not d's). */
    CHECK(fw_sched_submit(&s, &g, &e) == FW_OK, "%s", e.msg);
    drain(&s);
    CHECK(g.cached_tokens == 0 && s.map.evictions == 2, "%lld evictions", (long long)s.map.evictions);
    CHECK(fw_sched_submit(&s, &f, &e) == FW_OK, "%s", e.msg);
    st = step_once(&s);
    CHECK(st->n == 1 && st->e[0].pos0 == 20 && f.cached_tokens == 20, "d's blocks after g: %lld cached",
          (long long)f.cached_tokens);
    drain(&s);
    CHECK(fw_block_map_available(&s.map) == 10 && fw_block_map_used(&s.map) == 0, "blocks left held");
    for (int i = 0; i < 6; i++) fw_req_free(all[i]);
    fw_sched_free(&s);
    fw_kv_pool_free(&pool);
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
    for (int cache = 0; cache < 2; cache++) {
        run(64, 16, 256, 16, 128, cache);   /* roomy */
        run(12, 8, 64, 16, 96, cache);      /* tight: preemptions, evictions */
        run(7, 4, 5, 3, 28, cache);         /* tiny budget, tiny batch, short context */
        run(40, 1, 1, 4, 40, cache);        /* one token per step */
        run(24, 4, 16, 2, 48, cache);       /* small blocks, two at a time: hits and evictions */
    }
    for (int spec = 1; spec <= 2; spec++) { /* speculation: drafts verified, the rejected ones rolled back */
        run_spec(64, 16, 256, 16, 128, false, spec);
        run_spec(12, 8, 64, 16, 96, false, spec);
        run_spec(7, 4, 5, 3, 28, false, spec);
        run_spec(24, 4, 16, 2, 48, false, spec);
    }
    check_reuse();
    check_refusals();
    return check_result();
}
