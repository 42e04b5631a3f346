#include "runtime/engine/runner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/base/clock.h"

void fw_runner_defaults(fw_sched_opts *o) {
    memset(o, 0, sizeof *o);
    o->block_size = 0; /* the backend's kv_block */
    o->max_batch = 32;
    o->max_queue = 256;
    o->token_budget = 512;
    o->max_context = 4096;
    o->prefix_cache = true;
}

int fw_runner_init(fw_runner *r, fw_engine *en, const fw_sched_opts *o, fw_err *e) {
    memset(r, 0, sizeof *r);
    r->en = en;
    r->leader = en->replica_rank == 0;
    r->max_batch = o->max_batch;
    fw_sched_opts so = *o;
    const fw_config *c = &en->model->cfg;
    so.vocab = c->vocab_size;
    so.eos = (int32_t)c->eos_token_id;
    const fw_backend *be = en->be;
    if (so.block_size <= 0) so.block_size = be->kv_block;
    if (so.n_blocks <= 0) {
        /* The backend's default (on a GPU as far as its free memory goes), the same
         * count on every rank of the replica. */
        int64_t n = be->kv_default(en->st, so.block_size, so.max_batch, so.max_context);
        MPI_Allreduce(MPI_IN_PLACE, &n, 1, MPI_INT64_T, MPI_MIN, en->replica);
        const int64_t one = (so.max_context + so.block_size - 1) / so.block_size;
        if (n < one)
            return fw_errf(e, "--device %s: its memory holds %lld KV blocks of %lld positions, a request of "
                              "--max-context %lld needs %lld: lower --max-context or use more ranks",
                           be->name, (long long)n, (long long)so.block_size, (long long)so.max_context,
                           (long long)one);
        so.n_blocks = n;
    }
    if (c->max_position_embeddings > 0 && so.max_context > c->max_position_embeddings && en->world->rank == 0)
        fprintf(stderr, "furrow: warning: a request may reach %lld positions (--max-context, or the prompt plus "
                "--max-tokens), beyond the model's max_position_embeddings %lld: positions past it were never "
                "trained\n", (long long)so.max_context, (long long)c->max_position_embeddings);
    if (en->context < so.token_budget)
        return fw_errf(e, "runner: the engine takes %lld tokens per call, the budget is %lld", (long long)en->context,
                       (long long)so.token_budget);
    /* The blocks are the backend's; the pool here hands out their ids. */
    if (fw_kv_pool_init_ids(&r->pool, so.n_blocks, so.block_size, e)) return FW_ERR;
    if (fw_engine_kv_pages(en, &r->pool, so.max_context, e)) {
        fw_kv_pool_free(&r->pool);
        return FW_ERR;
    }
    /* Decodes per forward: as many as the backend takes (runtime/model/backend.h). */
    r->group = be->decode_group > 0 && be->decode_group < so.max_batch ? be->decode_group : so.max_batch;
    r->out = calloc((size_t)so.max_batch, sizeof *r->out);
    r->best = calloc((size_t)so.max_batch, sizeof *r->best);
    r->best_tok = calloc((size_t)so.max_batch, sizeof *r->best_tok);
    r->best_at = calloc((size_t)so.max_batch, sizeof *r->best_at);
    r->wire_cap = 2 + 4 * (int64_t)so.max_batch + so.token_budget + so.max_batch * fw_kv_blocks_for(&r->pool, so.max_context);
    r->wire = malloc((size_t)r->wire_cap * sizeof *r->wire);
    r->top_ids = malloc((size_t)en->model->part.tp * FW_SAMPLE_TOP_MAX * sizeof *r->top_ids);
    r->top_vals = malloc((size_t)en->model->part.tp * FW_SAMPLE_TOP_MAX * sizeof *r->top_vals);
    if (r->leader) r->logits = malloc((size_t)r->group * (size_t)c->vocab_size * sizeof(float));
    r->step_ids = malloc((size_t)so.token_budget * sizeof *r->step_ids);
    r->step_tabs = malloc((size_t)r->group * (size_t)fw_kv_blocks_for(&r->pool, so.max_context) *
                          sizeof *r->step_tabs);
    r->q = calloc((size_t)r->group, sizeof *r->q);
    r->kv = calloc((size_t)r->group, sizeof *r->kv);
    r->kinds = calloc((size_t)r->group, sizeof *r->kinds);
    if (!r->out || !r->best || !r->best_tok || !r->best_at || !r->wire || !r->top_ids || !r->top_vals ||
        !r->step_ids || !r->step_tabs || !r->q || !r->kv || !r->kinds || (r->leader && !r->logits)) {
        fw_runner_free(r);
        return fw_errf(e, "runner: out of memory");
    }
    if (r->leader && fw_sched_init(&r->sched, &so, &r->pool, e)) {
        fw_runner_free(r);
        return FW_ERR;
    }
    return FW_OK;
}

int fw_runner_open(fw_runner *r, fw_engine *en, fw_world *w, fw_engine_opts *eo, const fw_sched_opts *so,
                   const char *job, fw_err *e) {
    memset(r, 0, sizeof *r);
    eo->context = so->token_budget;
    if (fw_engine_init(en, w, eo, e)) return FW_ERR;
    if (en->layout.dp != 1) return fw_errf(e, "%s one replica: pass --tp and --pp with tp x pp = ranks", job);
    return fw_runner_init(r, en, so, e);
}

void fw_runner_free(fw_runner *r) {
    if (r->leader) fw_sched_free(&r->sched);
    fw_kv_pool_free(&r->pool);
    free(r->wire);
    free(r->logits);
    free(r->out);
    free(r->best);
    free(r->best_tok);
    free(r->best_at);
    free(r->top_ids);
    free(r->top_vals);
    free(r->step_ids);
    free(r->step_tabs);
    free(r->q);
    free(r->kv);
    free(r->kinds);
    memset(r, 0, sizeof *r);
}

/* The plan on the wire: [n, length] then per entry (pos0, n, n_table, logits),
 * then each entry's token ids, then each entry's block table. */
static int64_t encode(fw_runner *r, const fw_step *st) {
    int64_t *w = r->wire, k = 2 + 4 * (int64_t)st->n;
    w[0] = st->n;
    for (int i = 0; i < st->n; i++) {
        const fw_step_entry *x = &st->e[i];
        int64_t nt = fw_kv_blocks_for(&r->pool, x->pos0 + x->n);
        int64_t *h = w + 2 + 4 * i;
        h[0] = x->pos0, h[1] = x->n, h[2] = nt;
        h[3] = x->logits | (int64_t)(x->logits == FW_STEP_TOP ? x->req->sp.top_k : 0) << 8; /* kind, and k */
        for (int64_t t = 0; t < x->n; t++) w[k++] = x->req->tokens[x->pos0 + t];
    }
    for (int i = 0; i < st->n; i++) {
        const fw_step_entry *x = &st->e[i];
        for (int64_t b = 0; b < w[2 + 4 * i + 2]; b++) w[k++] = x->req->table[b];
    }
    w[1] = k;
    return k;
}

/* Runs a group of consecutive entries [a, b) in one pass: each entry's tokens
 * and block table from the wire, then its token chosen from its row of logits
 * (the leader samples into r->out). */
static int run_group(fw_runner *r, int a, int b, int64_t ktok, int64_t ktab, fw_err *e) {
    fw_engine *en = r->en;
    const int64_t *w = r->wire;
    fw_seq_step *q = r->q;
    fw_kv *kv = r->kv;
    int *kinds = r->kinds, rows = 0, nb = 0;
    int64_t t = 0, tb = 0;
    for (int i = a; i < b; i++) {
        const int64_t *h = w + 2 + 4 * i;
        int64_t pos0 = h[0], T = h[1], nt = h[2];
        int g = i - a;
        kinds[g] = (int)(h[3] & 0xff);
        for (int64_t x = 0; x < T; x++) r->step_ids[t + x] = (int32_t)w[ktok + t + x];
        for (int64_t x = 0; x < nt; x++) r->step_tabs[tb + x] = (int32_t)w[ktab + tb + x];
        kv[g] = (fw_kv){.cap = nt * r->pool.block_size, .len = pos0, .table = r->step_tabs + tb};
        q[g] = (fw_seq_step){.kv = &kv[g], .T = T, .n_out = kinds[g] != FW_STEP_NONE,
                             .mode = T == 1 && pos0 > 0 ? FW_ATTN_ABSORBED : FW_ATTN_NAIVE};
        t += T, tb += nt;
    }
    if (fw_engine_stage_seqs(en, b - a, q, r->step_ids, e)) return FW_ERR;
    bool full = false;
    for (int g = 0; g < b - a; g++) {
        int i = a + g;
        if (kinds[g] == FW_STEP_ARGMAX) {
            if (en->model->part.has_head) r->best[nb] = fw_engine_shard_best(en, rows);
            r->best_at[nb++] = i;
        } else if (kinds[g] == FW_STEP_TOP) {
            int k = (int)(w[2 + 4 * i + 3] >> 8);
            int64_t nc = 0;
            double lse = 0;
            if (fw_engine_row_top(en, rows, k, r->top_ids, r->top_vals, &nc, &lse, e)) return FW_ERR;
            if (r->leader) fw_sampler_next_top(&r->sched.step.e[i].req->sampler, r->top_ids, r->top_vals, nc, lse, &r->out[i]);
        }
        full |= kinds[g] == FW_STEP_FULL;
        rows += kinds[g] != FW_STEP_NONE;
    }
    if (full) { /* the group's rows on the leader, for the requests that need a whole row */
        if (fw_engine_rows_logits(en, rows, r->logits, e)) return FW_ERR;
        for (int g = 0, row = 0; g < b - a; row += kinds[g] != FW_STEP_NONE, g++)
            if (r->leader && kinds[g] == FW_STEP_FULL)
                fw_sampler_next(&r->sched.step.e[a + g].req->sampler, r->logits + (int64_t)row * en->model->cfg.vocab_size,
                                &r->out[a + g]);
    }
    if (nb > 0) {
        if (fw_engine_best_tokens(en, nb, r->best, r->best_tok, e)) return FW_ERR;
        for (int x = 0; x < nb; x++)
            r->out[r->best_at[x]] = (fw_sample_out){.id = r->best_tok[x], .nonfinite = r->best_tok[x] < 0};
    }
    return FW_OK;
}

/* Runs a decoded plan on this rank: decodes (one token after a cached prefix)
 * in groups of up to r->group, every other entry alone. */
static int execute(fw_runner *r, fw_err *e) {
    const int64_t *w = r->wire;
    int n = (int)w[0];
    int64_t ktok = 2 + 4 * (int64_t)n, ktab = ktok;
    for (int i = 0; i < n; i++) ktab += w[2 + 4 * i + 1];
    for (int a = 0; a < n;) {
        int b = a + 1;
        bool decode = w[2 + 4 * a + 1] == 1 && w[2 + 4 * a] > 0;
        while (decode && b < n && b - a < r->group && w[2 + 4 * b + 1] == 1 && w[2 + 4 * b] > 0) b++;
        if (run_group(r, a, b, ktok, ktab, e)) return FW_ERR;
        for (int i = a; i < b; i++) ktok += w[2 + 4 * i + 1], ktab += w[2 + 4 * i + 2];
        a = b;
    }
    return FW_OK;
}

static int bcast(fw_runner *r, fw_err *e) {
    fw_engine *en = r->en;
    if (en->replica_size == 1) return FW_OK;
    /* A follower that has heard from the leader expects a plan or a heartbeat
     * within the watchdog's bound. */
    bool watch = !r->leader && r->heard;
    if (watch) fw_watch_begin(en->wd, "waiting for the next step plan (or heartbeat) from replica rank 0");
    if (r->leader) r->t_sent = fw_now();
    /* The header without spinning: an idle server's followers wait here, polling
     * with short sleeps after a moment, so they leave the cores to others. */
    MPI_Request req;
    int done = 0;
    if (MPI_Ibcast(r->wire, 2, MPI_INT64_T, 0, en->replica, &req) != MPI_SUCCESS)
        return fw_errf(e, "broadcasting the step plan failed");
    for (long spins = 0; !done; spins++) {
        if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return fw_errf(e, "broadcasting the step plan failed");
        if (!done && spins > 2000) nanosleep(&(struct timespec){0, 200 * 1000}, NULL);
    }
    r->heard = true;
    fw_watch_note(en->wd, "the broadcast of the step plan");
    int rc = FW_OK;
    if (r->wire[0] > 0 && (r->wire[1] > r->wire_cap ||
                           MPI_Bcast(r->wire + 2, (int)(r->wire[1] - 2), MPI_INT64_T, 0, en->replica) != MPI_SUCCESS))
        rc = fw_errf(e, "broadcasting the step plan failed");
    fw_watch_note(en->wd, NULL);
    if (watch) fw_watch_end(en->wd);
    return rc;
}

/* The step as the watchdog reports it. */
static void watch_step(fw_runner *r) {
    char what[128];
    int64_t tokens = 0;
    for (int i = 0; i < r->wire[0]; i++) tokens += r->wire[2 + 4 * i + 1];
    snprintf(what, sizeof what, "step %lld (%lld sequences, %lld tokens)", (long long)r->steps + 1,
             (long long)r->wire[0], (long long)tokens);
    fw_watch_begin(r->en->wd, what);
}

int fw_runner_step(fw_runner *r, int *n, fw_err *e) {
    double t0 = fw_now();
    const fw_step *st = fw_sched_plan(&r->sched);
    *n = st->n;
    if (st->n == 0) return FW_OK;
    encode(r, st);
    watch_step(r);
    int rc = bcast(r, e) || execute(r, e) ? FW_ERR : FW_OK;
    fw_watch_end(r->en->wd);
    if (rc) return FW_ERR;
    fw_sched_commit(&r->sched, r->out);
    r->steps++;
    r->tokens += st->n_tokens;
    r->last_step_s = fw_now() - t0;
    return FW_OK;
}

/* Both sides of a heartbeat: a barrier over the replica, watched. */
static int heartbeat_barrier(fw_runner *r, fw_err *e) {
    fw_watch_begin(r->en->wd, "a heartbeat between the ranks of the replica");
    int rc = MPI_Barrier(r->en->replica) == MPI_SUCCESS ? FW_OK : fw_errf(e, "the heartbeat barrier failed");
    fw_watch_end(r->en->wd);
    return rc;
}

int fw_runner_idle(fw_runner *r, fw_err *e) {
    fw_engine *en = r->en;
    double every = fw_watchdog_seconds(en->wd) / 4;
    if (en->replica_size == 1 || !(every > 0) || fw_now() - r->t_sent < every) return FW_OK;
    r->wire[0] = 0, r->wire[1] = 2;
    if (bcast(r, e)) return FW_ERR;
    return heartbeat_barrier(r, e);
}

void fw_runner_stop(fw_runner *r) {
    fw_err e;
    r->wire[0] = -1, r->wire[1] = 2;
    bcast(r, &e);
}

int fw_runner_follow(fw_runner *r, fw_err *e) {
    for (;;) {
        if (bcast(r, e)) return FW_ERR;
        if (r->wire[0] < 0) return FW_OK;
        if (r->wire[0] == 0) { /* a heartbeat */
            if (heartbeat_barrier(r, e)) return FW_ERR;
            continue;
        }
        watch_step(r);
        int rc = execute(r, e);
        fw_watch_end(r->en->wd);
        if (rc) return FW_ERR;
        r->steps++;
    }
}
