#include "runtime/engine/engine.h"
#include "runtime/model/kvcache.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "runtime/cpu/cpu.h"
#include "io/base/clock.h"

/* The layout for this job: every rank computes the same plan from the same
 * config and flags, so an invalid layout fails on every rank alike. */
static int plan_layout(fw_engine *en, const fw_engine_opts *o, fw_err *e) {
    fw_ckpt *ck;
    if (fw_ckpt_open(&ck, o->model_dir, e)) return FW_ERR;
    const bool sim = o->sim_tp > 1;
    if (sim && (en->world->size > 1 || (o->tp > 1 && o->tp != o->sim_tp) || o->pp > 1))
        return fw_errf(e, "--tp-sim %d runs one rank's share on one rank: start one rank, without --tp or --pp",
                       o->sim_tp);
    fw_plan_request req = {.world = sim ? o->sim_tp : en->world->size, .ranks_per_node = en->world->local_size,
                           .tp = sim ? o->sim_tp : o->tp, .pp = sim ? 1 : o->pp, .context = o->context, .batch = 1};
    int rc = fw_plan(fw_ckpt_config(ck), &req, &en->layout, e);
    fw_ckpt_close(ck);
    return rc;
}

/* The engine's own caches, in the backend's blocks: slot i owns blocks
 * [i * per, (i + 1) * per) of a cache sized for n_seqs x context. */
static int own_caches(fw_engine *en, int64_t context, fw_err *e) {
    const int64_t bs = en->be->kv_block, per = (context + bs - 1) / bs, nb = per * en->n_seqs;
    if (nb > INT32_MAX)
        return fw_errf(e, "KV cache: %d sequences of %lld positions need too many blocks", en->n_seqs,
                       (long long)context);
    en->tabs = malloc((size_t)nb * sizeof *en->tabs);
    if (!en->tabs) return fw_errf(e, "out of memory");
    for (int64_t i = 0; i < nb; i++) en->tabs[i] = (int32_t)i;
    for (int i = 0; i < en->n_seqs; i++) en->kvs[i] = (fw_kv){.cap = context, .table = en->tabs + i * per};
    return en->be->kv_init(en->st, nb, bs, context, e);
}

int fw_engine_kv_pages(fw_engine *en, const fw_kv_pool *pool, int64_t max_context, fw_err *e) {
    int rc = en->be->kv_init(en->st, pool->n_blocks, pool->block_size, max_context, e);
    for (int i = 0; i < en->n_seqs; i++) en->kvs[i].cap = 0; /* their blocks are the scheduler's now */
    if (!fw_world_all_ok(en->world, rc == FW_OK)) {
        if (rc == FW_OK) fw_errf(e, "another rank could not make its KV cache");
        return FW_ERR;
    }
    return FW_OK;
}

const fw_backend *fw_engine_backend(const char *device) {
    if (!device || !strcmp(device, "cpu")) return fw_cpu_backend();
    return fw_backend_find(device);
}

/* DeepSeek-V3.2's sparse attention runs on the CPU and CUDA backends. */
static int check_device(const fw_backend *be, const fw_config *c, bool index_exact, fw_err *e) {
    if (fw_config_has_indexer(c) && strcmp(be->name, "cpu") != 0 && strcmp(be->name, "cuda") != 0)
        return fw_errf(e, "--device %s: DeepSeek-V3.2 sparse attention (index_topk %d) has no %s path yet (the "
                          "indexer, top-k selection and sparse MLA kernels); run it with --device cpu",
                       be->name, c->index_topk, be->name);
    if (fw_config_has_indexer(c) && index_exact && strcmp(be->name, "cpu") != 0)
        return fw_errf(e, "--indexer exact: the %s backend scores with DeepSeek's FP8 indexer only (the exact "
                          "float32 path runs with --device cpu)", be->name);
    return FW_OK;
}

static int take_layer(void *arg, const fw_model *m, int l, fw_err *e) {
    fw_engine *en = arg;
    if (check_device(en->be, &m->cfg, en->index_exact, e)) return FW_ERR;
    fw_backend_place at = {.opts = &en->backend_opts, .local_rank = en->world->local_rank, .tp_comm = MPI_COMM_NULL};
    return en->be->take_layer(&en->st, m, &at, l, e);
}

int fw_engine_init(fw_engine *en, fw_world *w, const fw_engine_opts *o, fw_err *e) {
    memset(en, 0, sizeof *en);
    en->world = w;
    en->replica = MPI_COMM_NULL;
    fw_comm_init_single(&en->comm);
    if (fw_topo_load(&en->topo, e) || fw_topo_bind(&en->topo, w->local_rank, w->local_size, e)) return FW_ERR;
    if (plan_layout(en, o, e)) return FW_ERR;
    const fw_layout *lay = &en->layout;
    const bool sim = o->sim_tp > 1; /* one rank: the world's layout is 1 x 1 x 1, the model's tp sim_tp */
    if (fw_world_set_layout(w, sim ? 1 : lay->tp, sim ? 1 : lay->pp, sim ? 1 : lay->dp, e)) return FW_ERR;
    MPI_Comm_split(w->comm, w->dp_rank, w->pp_rank * lay->tp + w->tp_rank, &en->replica);
    MPI_Comm_rank(en->replica, &en->replica_rank);
    MPI_Comm_size(en->replica, &en->replica_size);
    en->head_root = (lay->pp - 1) * lay->tp;
    en->backend_opts = o->backend;
    if (!(en->be = fw_engine_backend(o->device)))
        return fw_errf(e, "--device %s: this binary has no %s backend (configure --with-cuda builds furrow-cuda)",
                       o->device, o->device);

    en->index_exact = o->index_exact;
    double t0 = fw_now();
    /* A backend with its own copy takes each layer as soon as it is loaded, and the host copy is freed. */
    const fw_load_opts lo = {.verify = !o->no_verify, .mode = o->load};
    int rc = fw_model_load_streamed(&en->model, o->model_dir, o->ops, w->size > 1 || sim ? lay : NULL, w->pp_rank,
                                    w->tp_rank, &lo, en->be->take_layer ? take_layer : NULL, en, e);
    en->t_load = fw_now() - t0;
    if (rc == FW_OK) rc = check_device(en->be, &en->model->cfg, o->index_exact, e);
    if (rc == FW_OK) en->model->index_fp8 = !o->index_exact;
    en->speculative = o->speculative;
    if (rc == FW_OK && o->speculative > 0) {
        if (!en->be->forward_mtp)
            rc = fw_errf(e, "--speculative mtp: the %s backend cannot run the MTP layer yet", en->be->name);
        else
            rc = fw_model_load_mtp(en->model, o->model_dir, w->size > 1 ? lay : NULL, e);
    }
    if (rc == FW_OK && w->size > 1) rc = fw_comm_init(&en->comm, w->tp_comm, w->pp_comm, o->transport, e);
    en->n_seqs = o->n_seqs > 1 ? o->n_seqs : 1;
    en->context = o->context;
    en->kvs = calloc((size_t)en->n_seqs, sizeof *en->kvs);
    if (!en->kvs && rc == FW_OK) rc = fw_errf(e, "out of memory");
    /* Attaching may set up collectives (a GPU's NCCL): a rank that failed to load
     * (or to upload a layer) must not leave the others waiting there. */
    if (!fw_world_all_ok(w, rc == FW_OK)) {
        if (rc == FW_OK) fw_errf(e, "another rank failed to load its part of the model");
        return FW_ERR;
    }
    fw_backend_place at = {.opts = &en->backend_opts, .local_rank = w->local_rank,
                           .tp_comm = lay->tp > 1 && !sim ? w->tp_comm : MPI_COMM_NULL, .comm = &en->comm};
    rc = en->be->attach(&en->st, en->model, &at, e);
    if (rc == FW_OK) rc = own_caches(en, o->context, e);
    if (rc == FW_OK) {
        const fw_config *c = &en->model->cfg;
        en->hidden = malloc((size_t)(o->context * c->hidden_size) * sizeof(float));
        en->shard = malloc((size_t)(o->context * en->model->part.vocab) * sizeof(float));
        if (!en->hidden || !en->shard) rc = fw_errf(e, "out of memory for %lld positions", (long long)o->context);
    }
    /* Loading can fail on one rank only (its file, its memory): all learn of it. */
    if (!fw_world_all_ok(w, rc == FW_OK)) {
        if (rc == FW_OK) fw_errf(e, "another rank failed to load its part of the model");
        return FW_ERR;
    }
    if (fw_watchdog_start(&en->wd, w, o->watchdog, e)) return FW_ERR;
    en->comm.wd = en->wd;
    if (o->verbose) {
        unsigned long long mine[3] = {en->model->bytes_read, en->model->bytes_verified, en->model->bytes_mapped};
        unsigned long long *all = NULL;
        double t = en->t_load, *ts = NULL;
        char *mems = NULL;
        const int mlen = (int)sizeof en->topo.mem_note;
        if (w->rank == 0)
            all = malloc((size_t)w->size * sizeof mine), ts = malloc((size_t)w->size * sizeof *ts),
            mems = malloc((size_t)w->size * (size_t)mlen);
        MPI_Gather(mine, 3, MPI_UNSIGNED_LONG_LONG, all, 3, MPI_UNSIGNED_LONG_LONG, 0, w->comm);
        MPI_Gather(&t, 1, MPI_DOUBLE, ts, 1, MPI_DOUBLE, 0, w->comm);
        MPI_Gather(en->topo.mem_note, mlen, MPI_CHAR, mems, mlen, MPI_CHAR, 0, w->comm);
        if (w->rank == 0) {
            unsigned long long total = 0;
            for (int r = 0; r < w->size; r++) {
                fprintf(stderr, "rank %d (dp %d, pp %d, tp %d): read %llu bytes of weights in %.3f s, %llu of them "
                        "checked against their checksums, %llu mapped; memory %.*s\n", r, fw_layout_dp_rank(lay, r),
                        fw_layout_pp_rank(lay, r), fw_layout_tp_rank(lay, r), all[3 * r], ts[r], all[3 * r + 1],
                        all[3 * r + 2], mlen, mems + (size_t)r * (size_t)mlen);
                total += all[3 * r];
            }
            fprintf(stderr, "all ranks: read %llu bytes of weights\n", total);
            free(all);
            free(ts);
            free(mems);
        }
    }
    return FW_OK;
}

void fw_engine_free(fw_engine *en) {
    fw_watchdog_stop(en->wd);
    if (en->be && en->st) en->be->detach(en->st);
    fw_comm_free(&en->comm);
    free(en->tabs);
    free(en->kvs);
    fw_model_free(en->model);
    free(en->hidden);
    free(en->shard);
    fw_topo_free(&en->topo);
    if (en->replica != MPI_COMM_NULL) MPI_Comm_free(&en->replica);
    memset(en, 0, sizeof *en);
}

/* The last stage's shards of (n_out, V/tp) logits into (n_out, V) on replica rank 0. */
static int gather_logits(fw_engine *en, int64_t n_out, float *logits, fw_err *e) {
    const fw_part *p = &en->model->part;
    const int64_t Vl = p->vocab, V = Vl * p->tp;
    fw_world *w = en->world;
    bool last = p->pp_rank == p->pp - 1;
    if (en->replica_size == 1) {
        memcpy(logits, en->shard, (size_t)(n_out * V) * sizeof(float));
        return FW_OK;
    }
    float *all = NULL;
    fw_watch_note(en->wd, "gathering the logits on rank 0");
    if (last) {
        if (p->tp_rank == 0 && !(all = malloc((size_t)(n_out * V) * sizeof(float))))
            return fw_errf(e, "out of memory gathering logits");
        /* Rows of the gather are (tp, n_out, Vl); transposed below. */
        int rc = MPI_Gather(en->shard, (int)(n_out * Vl), MPI_FLOAT, all, (int)(n_out * Vl), MPI_FLOAT, 0, w->tp_comm);
        if (rc != MPI_SUCCESS) {
            free(all);
            return fw_errf(e, "gathering the logits shards failed");
        }
    }
    const int64_t n = n_out * V;
    int ok = MPI_SUCCESS;
    if (last && p->tp_rank == 0) {
        /* Rank 0 takes them in place; another head rank stages them, then sends. */
        float *full = en->replica_rank == 0 ? logits : malloc((size_t)n * sizeof(float));
        if (!full) {
            free(all);
            return fw_errf(e, "out of memory staging the logits");
        }
        for (int r = 0; r < p->tp; r++)
            for (int64_t t = 0; t < n_out; t++)
                memcpy(full + t * V + r * Vl, all + (r * n_out + t) * Vl, (size_t)Vl * sizeof(float));
        free(all);
        if (en->replica_rank != 0) {
            ok = MPI_Send(full, (int)n, MPI_FLOAT, 0, FW_TAG_LOGITS, en->replica);
            free(full);
        }
    } else if (en->replica_rank == 0) {
        ok = MPI_Recv(logits, (int)n, MPI_FLOAT, en->head_root, FW_TAG_LOGITS, en->replica, MPI_STATUS_IGNORE);
    }
    fw_watch_note(en->wd, NULL);
    return ok == MPI_SUCCESS ? FW_OK : fw_errf(e, "sending the logits to rank 0 failed");
}

/* The last stage's (value, id) of the largest logit in its shard of one row. */
typedef struct maxloc {
    float v;
    int i;
} maxloc;

/* The shard's max-loc; a row holding NaN or infinity gives {+inf, -1}, which
 * wins the max-loc across shards, so the token is -1: not finite. */
static maxloc shard_max(const fw_engine *en, const float *row) {
    const fw_part *p = &en->model->part;
    maxloc m = {row[0], (int)p->vocab0};
    bool finite = true;
    for (int64_t i = 0; i < p->vocab; i++) {
        finite &= isfinite(row[i]);
        if (row[i] > m.v) m.v = row[i], m.i = (int)(p->vocab0 + i);
    }
    return finite ? m : (maxloc){INFINITY, -1};
}

/* Greedy tokens of n sequences from their shard maxima: a max-loc over the
 * vocabulary shards (ties go to the lowest id, as a plain argmax), then a
 * broadcast to the whole replica. */
static int greedy_tokens(fw_engine *en, int n, maxloc *mine, int32_t *next, fw_err *e) {
    const fw_part *p = &en->model->part;
    const double t0 = fw_now();  /* counted as communication (fw_comm_stats.t_other) */
    if (p->pp_rank == p->pp - 1) {
        fw_watch_note(en->wd, "the argmax across the vocabulary shards");
        if (p->tp > 1 && MPI_Allreduce(MPI_IN_PLACE, mine, n, MPI_FLOAT_INT, MPI_MAXLOC, en->world->tp_comm) != MPI_SUCCESS)
            return fw_errf(e, "the distributed argmax failed");
        for (int i = 0; i < n; i++) next[i] = mine[i].i;
    }
    fw_watch_note(en->wd, "the broadcast of the next tokens");
    if (en->replica_size > 1 && MPI_Bcast(next, n, MPI_INT32_T, en->head_root, en->replica) != MPI_SUCCESS)
        return fw_errf(e, "broadcasting the next tokens failed");
    fw_watch_note(en->wd, NULL);
    if (p->tp > 1 || en->replica_size > 1) {
        en->comm.stats.t_other += fw_now() - t0;
        en->comm.stats.bytes_other += (uint64_t)n * (sizeof(maxloc) + sizeof(int32_t));
    }
    return FW_OK;
}

static int check_ids(const fw_engine *en, const fw_kv *kv, const int32_t *ids, int64_t T, fw_err *e) {
    if (kv->len + T > kv->cap)
        return fw_errf(e, "context is full: %lld + %lld tokens exceed %lld positions", (long long)kv->len,
                       (long long)T, (long long)kv->cap);
    /* Checked on every rank before any transfer, so a bad id cannot leave a stage waiting. */
    for (int64_t t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= en->model->cfg.vocab_size)
            return fw_errf(e, "token id %d is outside the vocabulary [0, %lld)", ids[t],
                           (long long)en->model->cfg.vocab_size);
    return FW_OK;
}

/* This rank's stage for one sequence: receive, run its layers, pass on. */
static int stage_forward(fw_engine *en, fw_kv *kv, const int32_t *ids, int64_t T, fw_attn_mode mode,
                         int64_t n_out, fw_err *e) {
    const fw_part *p = &en->model->part;
    const int64_t D = en->model->cfg.hidden_size;
    if (!p->has_embed && fw_comm_recv_prev(&en->comm, en->hidden, T * D, e)) return FW_ERR;
    fw_seq_step q = {.kv = kv, .T = T, .n_out = n_out, .mode = mode};
    if (en->be->forward(en->st, 1, &q, ids, en->hidden, en->shard, e)) return FW_ERR;
    if (!p->has_head && fw_comm_send_next(&en->comm, en->hidden, T * D, e)) return FW_ERR;
    return FW_OK;
}

/* n sequences through a single-stage replica in one forward. */
static int forward_together(fw_engine *en, int n, const int32_t *const *ids, const int64_t *T, fw_attn_mode mode,
                            maxloc *best, fw_err *e) {
    const int64_t Vl = en->model->part.vocab;
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += T[i];
    fw_seq_step *q = calloc((size_t)n, sizeof *q);
    int32_t *all = malloc((size_t)total * sizeof *all);
    float *logits = malloc((size_t)(n * Vl) * sizeof(float));
    int rc = !q || !all || !logits ? fw_errf(e, "out of memory") : FW_OK;
    for (int i = 0, t = 0; i < n && rc == FW_OK; t += (int)T[i], i++) {
        q[i] = (fw_seq_step){.kv = &en->kvs[i], .T = T[i], .n_out = 1, .mode = mode};
        memcpy(all + t, ids[i], (size_t)T[i] * sizeof *all);
    }
    if (rc == FW_OK) rc = en->be->forward(en->st, n, q, all, en->hidden, logits, e);
    for (int i = 0; i < n && rc == FW_OK; i++) best[i] = shard_max(en, logits + i * Vl);
    free(q);
    free(all);
    free(logits);
    return rc;
}

int fw_engine_forward_many(fw_engine *en, int n, const int32_t *const *ids, const int64_t *T, fw_attn_mode mode,
                           int32_t *next, fw_err *e) {
    if (n < 1 || n > en->n_seqs) return fw_errf(e, "%d sequences, the engine holds %d", n, en->n_seqs);
    for (int i = 0; i < n; i++)
        if (check_ids(en, &en->kvs[i], ids[i], T[i], e)) return fw_err_prefix(e, "sequence %d", i);
    maxloc *best = calloc((size_t)n, sizeof *best);
    if (!best) return fw_errf(e, "out of memory");
    int n_done = 0;
    int rc = FW_OK;
    fw_watch_begin(en->wd, "a forward pass");
    if (en->layout.pp == 1 && en->be->decode_group == 0) {
        /* One stage on a backend that batches any sequences: all in one forward.
         * Otherwise one by one, so that the stages overlap (micro-batches). */
        rc = forward_together(en, n, ids, T, mode, best, e);
        n_done = n;
    }
    for (int i = n_done; i < n && rc == FW_OK; i++) {
        rc = stage_forward(en, &en->kvs[i], ids[i], T[i], mode, 1, e);
        if (rc == FW_OK && en->model->part.has_head) best[i] = shard_max(en, en->shard);
    }
    if (rc == FW_OK) rc = greedy_tokens(en, n, best, next, e);
    fw_watch_end(en->wd);
    free(best);
    return rc;
}

int fw_engine_logits(fw_engine *en, const int32_t *ids, int64_t T, fw_attn_mode mode, float *logits, fw_err *e) {
    fw_kv *kv = &en->kvs[0];
    if (check_ids(en, kv, ids, T, e)) return FW_ERR;
    fw_watch_begin(en->wd, "a forward pass");
    int rc = stage_forward(en, kv, ids, T, mode, T, e);
    if (rc == FW_OK) rc = gather_logits(en, T, logits, e);
    fw_watch_end(en->wd);
    return rc;
}

int fw_engine_stage_seqs(fw_engine *en, int n, const fw_seq_step *q, const int32_t *ids, fw_err *e) {
    const fw_part *p = &en->model->part;
    const int64_t D = en->model->cfg.hidden_size;
    int64_t T = 0;
    for (int i = 0; i < n; T += q[i].T, i++)
        if (check_ids(en, q[i].kv, ids + T, q[i].T, e)) return fw_err_prefix(e, "sequence %d of the step", i);
    if (T > en->context)
        return fw_errf(e, "a step of %lld tokens exceeds the engine's %lld", (long long)T, (long long)en->context);
    if (!p->has_embed && fw_comm_recv_prev(&en->comm, en->hidden, T * D, e)) return FW_ERR;
    if (en->be->forward(en->st, n, q, ids, en->hidden, en->shard, e)) return FW_ERR;
    if (!p->has_head && fw_comm_send_next(&en->comm, en->hidden, T * D, e)) return FW_ERR;
    return FW_OK;
}

int fw_engine_mtp_seqs(fw_engine *en, int n, const fw_seq_step *q, const int32_t *ids, const float *h_in,
                       float *h_out, fw_err *e) {
    if (!en->model->part.has_head) return FW_OK;
    return en->be->forward_mtp(en->st, n, q, ids, h_in, h_out, en->shard, e);
}

fw_engine_best fw_engine_shard_best(const fw_engine *en, int row) {
    maxloc m = shard_max(en, en->shard + (int64_t)row * en->model->part.vocab);
    return (fw_engine_best){m.v, m.i};
}

int fw_engine_best_tokens(fw_engine *en, int n, fw_engine_best *best, int32_t *next, fw_err *e) {
    _Static_assert(sizeof(fw_engine_best) == sizeof(maxloc), "fw_engine_best is maxloc");
    return greedy_tokens(en, n, (maxloc *)best, next, e);
}

int fw_engine_rows_logits(fw_engine *en, int n, float *logits, fw_err *e) { return gather_logits(en, n, logits, e); }

int fw_engine_bench_steps(fw_engine *en, const fw_bench_steps *req, bool print, fw_err *e) {
    if (!en->be->bench_steps) return fw_errf(e, "the %s backend has no step benchmark", en->be->name);
    return en->be->bench_steps(en->st, req, print, e);
}
