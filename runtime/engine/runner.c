#include "runtime/engine/runner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/base/clock.h"
#include "runtime/engine/spec_sample.h"

/* A plan entry's header on the wire: pos0, tokens (its own and its drafts),
 * blocks, flags (the logits kind, top_k << 8, drafts << 40, speculating << 44),
 * and the token after a chunk that samples none (-1 otherwise): the MTP
 * layer's input at the chunk's last position. */
#define HDR 5
#define FLAG_DRAFTS(f) ((int)(((f) >> 40) & 0xf))
#define FLAG_SPEC(f) ((((f) >> 44) & 1) != 0)

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
    so.speculative = en->speculative;
    if (so.speculative) so.prefix_cache = false; /* sched.h: a cached block's MTP rows depend on the next token */
    r->spec_k = so.speculative;
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
    /* Tokens per decode group: verifications take 1 + drafts each, and the CPU's
     * rows stay independent of each other up to its decode_group rows. */
    r->group_tokens = be->decode_group > 0 ? be->decode_group : so.token_budget;
    const int rows = so.max_batch * (FW_SPEC_MAX + 1);
    r->out = calloc((size_t)so.max_batch, sizeof *r->out);
    r->best = calloc((size_t)rows, sizeof *r->best);
    r->best_tok = calloc((size_t)rows, sizeof *r->best_tok);
    r->best_at = calloc((size_t)rows, sizeof *r->best_at);
    if (r->spec_k) {
        const int64_t D = c->hidden_size, n = so.token_budget + so.max_batch;
        r->spec = calloc((size_t)so.max_batch, sizeof *r->spec);
        r->gacc = calloc((size_t)r->group, sizeof *r->gacc);
        r->gtok = calloc((size_t)r->group, sizeof *r->gtok);
        r->mtp_ids = malloc((size_t)n * sizeof *r->mtp_ids);
        r->mtp_h = malloc((size_t)(n * D) * sizeof *r->mtp_h);
        r->mtp_hout = malloc((size_t)(n * D) * sizeof *r->mtp_hout);
        r->qm = calloc((size_t)r->group, sizeof *r->qm);
        r->kvm = calloc((size_t)r->group, sizeof *r->kvm);
        r->mtp_at = calloc((size_t)r->group, sizeof *r->mtp_at);
        r->wire_acc = calloc((size_t)r->group * (FW_SPEC_MAX + 2), sizeof *r->wire_acc);
        if (r->leader) r->probs = malloc((size_t)c->vocab_size * sizeof *r->probs);
        if (!r->spec || !r->gacc || !r->gtok || !r->mtp_ids || !r->mtp_h || !r->mtp_hout || !r->qm || !r->kvm || !r->mtp_at || !r->wire_acc ||
            (r->leader && !r->probs)) {
            fw_runner_free(r);
            return fw_errf(e, "runner: out of memory");
        }
    }
    r->wire_cap = 2 + HDR * (int64_t)so.max_batch + so.token_budget +
                  so.max_batch * fw_kv_blocks_for(&r->pool, so.max_context + FW_SPEC_MAX);
    r->wire = malloc((size_t)r->wire_cap * sizeof *r->wire);
    r->top_ids = malloc((size_t)en->model->part.tp * FW_SAMPLE_TOP_MAX * sizeof *r->top_ids);
    r->top_vals = malloc((size_t)en->model->part.tp * FW_SAMPLE_TOP_MAX * sizeof *r->top_vals);
    /* Rows a group gathers on the leader: with drafts to verify, 1 + K a sequence. */
    const int64_t lrows = r->spec_k ? (int64_t)r->group * (FW_SPEC_MAX + 1) : r->group;
    if (r->leader) r->logits = malloc((size_t)lrows * (size_t)c->vocab_size * sizeof(float));
    r->step_ids = malloc((size_t)so.token_budget * sizeof *r->step_ids);
    r->step_tabs = malloc((size_t)r->group * (size_t)fw_kv_blocks_for(&r->pool, so.max_context) *
                          sizeof *r->step_tabs);
    r->q = calloc((size_t)r->group, sizeof *r->q);
    r->kv = calloc((size_t)r->group, sizeof *r->kv);
    r->kinds = calloc((size_t)r->group, sizeof *r->kinds);
    r->toff = calloc((size_t)r->group, sizeof *r->toff);
    if (!r->out || !r->best || !r->best_tok || !r->best_at || !r->wire || !r->top_ids || !r->top_vals ||
        !r->step_ids || !r->step_tabs || !r->q || !r->kv || !r->kinds || !r->toff || (r->leader && !r->logits)) {
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
    free(r->toff);
    free(r->spec);
    free(r->gacc);
    free(r->gtok);
    free(r->mtp_ids);
    free(r->mtp_h);
    free(r->mtp_hout);
    free(r->qm);
    free(r->kvm);
    free(r->mtp_at);
    free(r->wire_acc);
    free(r->probs);
    memset(r, 0, sizeof *r);
}

/* The plan on the wire: [n, length] then per entry its header (HDR), then each
 * entry's token ids (its drafts after its own), then each entry's block table. */
static int64_t encode(fw_runner *r, const fw_step *st) {
    int64_t *w = r->wire, k = 2 + HDR * (int64_t)st->n;
    w[0] = st->n;
    for (int i = 0; i < st->n; i++) {
        const fw_step_entry *x = &st->e[i];
        const fw_req *q = x->req;
        int64_t nt = q->spec ? q->n_table : fw_kv_blocks_for(&r->pool, x->pos0 + x->n);
        int64_t *h = w + 2 + HDR * i;
        h[0] = x->pos0, h[1] = x->n + x->n_draft, h[2] = nt;
        h[3] = x->logits | (int64_t)(x->logits == FW_STEP_TOP ? q->sp.top_k : 0) << 8 | (int64_t)x->n_draft << 40 |
               (int64_t)q->spec << 44;
        h[4] = x->logits == FW_STEP_NONE && x->pos0 + x->n < q->n_tokens ? q->tokens[x->pos0 + x->n] : -1;
        for (int64_t t = 0; t < x->n; t++) w[k++] = q->tokens[x->pos0 + t];
        for (int t = 0; t < x->n_draft; t++) w[k++] = q->draft[t];
    }
    for (int i = 0; i < st->n; i++) {
        const fw_step_entry *x = &st->e[i];
        for (int64_t b = 0; b < w[2 + HDR * i + 2]; b++) w[k++] = x->req->table[b];
    }
    w[1] = k;
    return k;
}

/* The drafts of sampled requests among the x rows of MTP logits: drawn by the
 * leader from their distributions (kept for the verification), then sent to
 * every rank over the max-locs in best_tok. */
static int mtp_sampled_drafts(fw_runner *r, int a, int nm, int x, int depth, fw_err *e) {
    fw_engine *en = r->en;
    bool any = false;
    for (int m = 0; m < nm; m++) any |= r->qm[m].n_out && r->kinds[r->mtp_at[m]] == FW_STEP_FULL;
    if (!any) return FW_OK;
    if (fw_engine_rows_logits(en, x, r->logits, e)) return FW_ERR;
    if (r->leader) {
        const int64_t V = en->model->cfg.vocab_size;
        for (int m = 0, row = 0; m < nm; m++) {
            if (!r->qm[m].n_out) continue;
            const int g = r->mtp_at[m];
            if (r->kinds[g] == FW_STEP_FULL) {
                fw_req *req = r->sched.step.e[a + g].req;
                /* This draft's token index: after the step's accepted drafts and token. */
                const int64_t index = req->sampler.n_generated + r->gacc[g] + 1 + depth;
                r->best_tok[row] = fw_spec_draft(&req->sampler, r->logits + (int64_t)row * V, index,
                                                 req->draft_q + (int64_t)depth * V);
            }
            row++;
        }
    }
    if (en->replica_size > 1 && MPI_Bcast(r->best_tok, x, MPI_INT32_T, 0, en->replica) != MPI_SUCCESS)
        return fw_errf(e, "broadcasting the drafts failed");
    return FW_OK;
}

/* The MTP layer after a group's forward, for its speculating entries: over the
 * positions whose main rows the step made final (its own tokens and the drafts
 * accepted), each taking the token after it, and for those that sample, a draft
 * from the last position; with K = 2 once more on its own output and draft.
 * Every rank of the replica learns the drafts (the same max-loc as greedy). */
static int mtp_group(fw_runner *r, int a, int b, const int64_t *toff, fw_err *e) {
    fw_engine *en = r->en;
    const int64_t *w = r->wire, D = en->model->cfg.hidden_size;
    int nm = 0, nd = 0;
    int64_t t = 0;
    for (int g = 0; g < b - a; g++) {
        const int64_t *h = w + 2 + HDR * (a + g);
        if (!FLAG_SPEC(h[3])) continue;
        const int64_t pos0 = h[0], n = h[1] - FLAG_DRAFTS(h[3]);
        const int acc = r->gacc[g];
        const bool samples = r->kinds[g] != FW_STEP_NONE;
        int32_t last = samples ? r->gtok[g][acc] : (int32_t)h[4];
        if (last < 0) continue; /* not finite: the request ends */
        const int64_t Tm = n + acc;
        for (int64_t x = 1; x < n; x++) r->mtp_ids[t + x - 1] = r->step_ids[toff[g] + x];
        for (int x = 0; x < acc; x++) r->mtp_ids[t + n - 1 + x] = r->gtok[g][x];
        r->mtp_ids[t + Tm - 1] = last;
        memcpy(r->mtp_h + t * D, en->hidden + toff[g] * D, (size_t)(Tm * D) * sizeof(float));
        r->kvm[nm] = (fw_kv){.cap = r->kv[g].cap, .len = pos0, .table = r->kv[g].table};
        r->qm[nm] = (fw_seq_step){.kv = &r->kvm[nm], .T = Tm, .n_out = samples,
                                  .mode = Tm == 1 && pos0 > 0 ? FW_ATTN_ABSORBED : FW_ATTN_NAIVE};
        r->mtp_at[nm++] = g;
        nd += samples;
        t += Tm;
    }
    if (nm == 0) return FW_OK;
    if (fw_engine_mtp_seqs(en, nm, r->qm, r->mtp_ids, r->mtp_h, r->mtp_hout, e)) return FW_ERR;
    for (int depth = 0; depth < r->spec_k && nd > 0; depth++) {
        int x = 0;
        for (int m = 0; m < nm; m++)
            if (r->qm[m].n_out) {
                if (en->model->part.has_head) r->best[x] = fw_engine_shard_best(en, x);
                x++;
            }
        if (fw_engine_best_tokens(en, x, r->best, r->best_tok, e)) return FW_ERR;
        if (mtp_sampled_drafts(r, a, nm, x, depth, e)) return FW_ERR;
        /* The drafts, and the chained step's inputs: the draft and the layer's
         * output at the entry's last position, one position on. */
        int nc = 0;
        int64_t ti = 0, tc = 0;
        x = 0;
        for (int m = 0; m < nm; m++) {
            fw_seq_step *q = &r->qm[m];
            const int64_t last = ti + q->T - 1;
            ti += q->T;
            if (!q->n_out) continue;
            int32_t d = r->best_tok[x++];
            fw_spec_out *so = &r->spec[a + r->mtp_at[m]];
            if (d < 0) { /* no draft from non-finite logits */
                q->n_out = 0;
                continue;
            }
            if (r->leader) so->draft[so->n_draft++] = d;
            const bool room = q->kv->len < q->kv->cap && depth + 1 < r->spec_k;
            if (!room) {
                q->n_out = 0;
                continue;
            }
            r->mtp_ids[tc] = d;
            memmove(r->mtp_h + tc * D, r->mtp_hout + last * D, (size_t)D * sizeof(float));
            r->kvm[nc] = *q->kv;
            r->qm[nc] = (fw_seq_step){.kv = &r->kvm[nc], .T = 1, .n_out = 1, .mode = FW_ATTN_ABSORBED};
            r->mtp_at[nc++] = r->mtp_at[m];
            tc++;
        }
        nm = nd = nc;
        if (nc == 0) break;
        if (fw_engine_mtp_seqs(en, nc, r->qm, r->mtp_ids, r->mtp_h, r->mtp_hout, e)) return FW_ERR;
    }
    return FW_OK;
}

/* The leader's choices for a group's speculating sampled entries (drafts
 * accepted, the tokens) to every rank of the replica, into gacc and gtok. */
static int spec_full(fw_runner *r, int a, int b, fw_err *e) {
    const int64_t *w = r->wire;
    const int W = FW_SPEC_MAX + 2;
    int n = 0;
    for (int g = 0; g < b - a; g++) {
        if (r->kinds[g] != FW_STEP_FULL || !FLAG_SPEC(w[2 + HDR * (a + g) + 3])) continue;
        int32_t *m = r->wire_acc + n++ * W;
        if (r->leader) {
            const fw_spec_out *so = &r->spec[a + g];
            m[0] = so->n_acc;
            memcpy(m + 1, so->acc, (size_t)so->n_acc * sizeof *m);
            m[1 + so->n_acc] = r->out[a + g].nonfinite ? -1 : r->out[a + g].id;
        }
    }
    if (n > 0 && r->en->replica_size > 1 &&
        MPI_Bcast(r->wire_acc, n * W, MPI_INT32_T, 0, r->en->replica) != MPI_SUCCESS)
        return fw_errf(e, "broadcasting the accepted drafts failed");
    for (int g = 0, k = 0; g < b - a; g++) {
        if (r->kinds[g] != FW_STEP_FULL || !FLAG_SPEC(w[2 + HDR * (a + g) + 3])) continue;
        const int32_t *m = r->wire_acc + k++ * W;
        r->gacc[g] = m[0];
        memcpy(r->gtok[g], m + 1, (size_t)(m[0] + 1) * sizeof *m);
    }
    return FW_OK;
}

/* Runs a group of consecutive entries [a, b) in one pass: each entry's tokens
 * and block table from the wire, then its token chosen from its row of logits
 * (the leader samples into r->out); a speculating entry's drafts are verified
 * from its rows, the longest run that greedy would have chosen is accepted
 * (every rank decides alike from the same max-locs), and the MTP layer drafts
 * the next step's. */
static int run_group(fw_runner *r, int a, int b, int64_t ktok, int64_t ktab, fw_err *e) {
    fw_engine *en = r->en;
    const int64_t *w = r->wire;
    fw_seq_step *q = r->q;
    fw_kv *kv = r->kv;
    int *kinds = r->kinds, rows = 0, nb = 0;
    int64_t t = 0, tb = 0, *toff = r->toff;
    bool spec = false;
    for (int i = a; i < b; i++) {
        const int64_t *h = w + 2 + HDR * i;
        int64_t pos0 = h[0], T = h[1], nt = h[2];
        int g = i - a, nd = FLAG_DRAFTS(h[3]);
        kinds[g] = (int)(h[3] & 0xff);
        for (int64_t x = 0; x < T; x++) r->step_ids[t + x] = (int32_t)w[ktok + t + x];
        for (int64_t x = 0; x < nt; x++) r->step_tabs[tb + x] = (int32_t)w[ktab + tb + x];
        kv[g] = (fw_kv){.cap = nt * r->pool.block_size, .len = pos0, .table = r->step_tabs + tb};
        q[g] = (fw_seq_step){.kv = &kv[g], .T = T, .n_out = kinds[g] != FW_STEP_NONE ? 1 + nd : 0,
                             .mode = (T == 1 || nd > 0) && pos0 > 0 ? FW_ATTN_ABSORBED : FW_ATTN_NAIVE,
                             .hidden_out = FLAG_SPEC(h[3])};
        toff[g] = t;
        spec |= FLAG_SPEC(h[3]);
        t += T, tb += nt;
    }
    if (fw_engine_stage_seqs(en, b - a, q, r->step_ids, e)) return FW_ERR;
    bool full = false;
    for (int g = 0; g < b - a; g++) {
        int i = a + g;
        if (kinds[g] == FW_STEP_ARGMAX) {
            for (int64_t j = 0; j < q[g].n_out; j++) {
                if (en->model->part.has_head) r->best[nb] = fw_engine_shard_best(en, rows + (int)j);
                r->best_at[nb++] = i;
            }
        } else if (kinds[g] == FW_STEP_TOP) {
            int k = (int)((w[2 + HDR * i + 3] >> 8) & 0xffffffff);
            int64_t nc = 0;
            double lse = 0;
            if (fw_engine_row_top(en, rows, k, r->top_ids, r->top_vals, &nc, &lse, e)) return FW_ERR;
            if (r->leader) fw_sampler_next_top(&r->sched.step.e[i].req->sampler, r->top_ids, r->top_vals, nc, lse, &r->out[i]);
        }
        full |= kinds[g] == FW_STEP_FULL;
        rows += (int)q[g].n_out;
    }
    if (full) { /* the group's rows on the leader, for the requests that need a whole row */
        if (fw_engine_rows_logits(en, rows, r->logits, e)) return FW_ERR;
        const int64_t V = en->model->cfg.vocab_size;
        for (int g = 0, row = 0; g < b - a; row += (int)q[g].n_out, g++) {
            if (!r->leader || kinds[g] != FW_STEP_FULL) continue;
            fw_req *req = r->sched.step.e[a + g].req;
            const float *lg = r->logits + (int64_t)row * V;
            const int nd = FLAG_DRAFTS(w[2 + HDR * (a + g) + 3]);
            if (!FLAG_SPEC(w[2 + HDR * (a + g) + 3]) || nd == 0) {
                fw_sampler_next(&req->sampler, lg, &r->out[a + g]);
                if (r->spec) r->spec[a + g] = (fw_spec_out){0};
                continue;
            }
            int acc;
            int32_t tok = fw_spec_verify(&req->sampler, lg, nd, r->step_ids + toff[g] + (q[g].T - nd), req->draft_q,
                                         r->probs, &acc);
            r->out[a + g] = (fw_sample_out){.id = tok, .nonfinite = tok < 0};
            r->spec[a + g] = (fw_spec_out){.n_acc = acc};
            memcpy(r->spec[a + g].acc, r->step_ids + toff[g] + (q[g].T - nd), (size_t)acc * sizeof(int32_t));
        }
        /* Every rank learns what the leader's samplers chose for the speculating
         * requests: the MTP layer runs from there. */
        if (spec && spec_full(r, a, b, e)) return FW_ERR;
    }
    if (nb > 0) {
        if (fw_engine_best_tokens(en, nb, r->best, r->best_tok, e)) return FW_ERR;
        for (int x = 0; x < nb;) {
            const int i = r->best_at[x], g = i - a, nd = FLAG_DRAFTS(w[2 + HDR * i + 3]);
            const int32_t *tok = r->best_tok + x, *draft = r->step_ids + toff[g] + (q[g].T - nd);
            int acc = 0; /* drafts equal to what greedy chose before them */
            while (acc < nd && tok[acc] >= 0 && tok[acc] == draft[acc]) acc++;
            if (spec) {
                r->gacc[g] = acc;
                memcpy(r->gtok[g], tok, (size_t)(acc + 1) * sizeof *tok);
            }
            if (r->leader && r->spec) {
                r->spec[i] = (fw_spec_out){.n_acc = acc};
                memcpy(r->spec[i].acc, tok, (size_t)acc * sizeof *tok);
            }
            r->out[i] = (fw_sample_out){.id = tok[acc], .nonfinite = tok[acc] < 0};
            x += 1 + nd;
        }
    }
    if (spec) {
        for (int g = 0; g < b - a; g++)
            if (kinds[g] != FW_STEP_ARGMAX && kinds[g] != FW_STEP_FULL) r->gacc[g] = 0;
        if (mtp_group(r, a, b, toff, e)) return FW_ERR;
    }
    return FW_OK;
}

/* Decodes go in groups: one token after a cached prefix, or a verification of
 * drafts after it. */
static bool decode_like(const int64_t *h) { return h[0] > 0 && (h[1] == 1 || FLAG_DRAFTS(h[3]) > 0); }

/* Runs a decoded plan on this rank: decodes in groups of up to r->group entries
 * and r->group_tokens tokens, every other entry alone. */
static int execute(fw_runner *r, fw_err *e) {
    const int64_t *w = r->wire;
    int n = (int)w[0];
    int64_t ktok = 2 + HDR * (int64_t)n, ktab = ktok;
    for (int i = 0; i < n; i++) ktab += w[2 + HDR * i + 1];
    for (int a = 0; a < n;) {
        int b = a + 1;
        bool decode = decode_like(w + 2 + HDR * a);
        int64_t tokens = w[2 + HDR * a + 1];
        while (decode && b < n && b - a < r->group && decode_like(w + 2 + HDR * b) &&
               tokens + w[2 + HDR * b + 1] <= r->group_tokens)
            tokens += w[2 + HDR * b++ + 1];
        if (run_group(r, a, b, ktok, ktab, e)) return FW_ERR;
        for (int i = a; i < b; i++) ktok += w[2 + HDR * i + 1], ktab += w[2 + HDR * i + 2];
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
    for (int i = 0; i < r->wire[0]; i++) tokens += r->wire[2 + HDR * i + 1];
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
    if (r->spec_k) fw_sched_commit_spec(&r->sched, r->out, r->spec);
    else fw_sched_commit(&r->sched, r->out);
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
