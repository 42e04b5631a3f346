/* furrow bench --speculative mtp:K: the step times speculative decoding trades,
 * measured as the scheduler runs them (runtime/engine/runner.c), and the decode
 * speed-up they give at acceptance rates DeepSeek reports:
 *   t1  a decode step: every sequence one token (groups of the backend's
 *       decode_group sequences);
 *   tv  a verify step: 1 + K tokens a sequence, every row's max-loc (groups of
 *       decode_group / (1 + K) sequences, as the runner's token bound makes them);
 *   td  drafting: the MTP layer over 1 + K positions a sequence (the most a step
 *       makes final) and a draft, then K - 1 chained steps of one position.
 * Each the fastest of --iters runs after one untimed.
 * With each draft accepted with probability a when those before it were, a step
 * gives 1 + a + ... + a^K tokens, so the speed-up over plain decoding is
 *   (1 + a + ... + a^K) * t1 / (tv + td). */
#include "runtime/cli/bench_spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/clock.h"

typedef struct spec_bench {
    fw_engine *en;
    int K, B;
    int64_t ctx;
    fw_seq_step *q;
    fw_kv *kv;
    int32_t *ids;
    fw_engine_best *best;
    int32_t *tok;
} spec_bench;

/* The max-locs of the first n rows of the shard, every rank, as greedy takes them. */
static int argmax_rows(spec_bench *s, int n, fw_err *e) {
    if (s->en->model->part.has_head)
        for (int i = 0; i < n; i++) s->best[i] = fw_engine_shard_best(s->en, i);
    return fw_engine_best_tokens(s->en, n, s->best, s->tok, e);
}

/* Sequences [a, a + n) at position ctx: T tokens each through the model (and
 * the MTP layer when mtp), n_out rows of logits each, their max-locs. */
static int step(spec_bench *s, int a, int n, int64_t T, int64_t n_out, bool mtp, fw_err *e) {
    for (int i = 0; i < n; i++) {
        s->kv[i] = s->en->kvs[a + i];
        s->kv[i].len = s->ctx;
        s->q[i] = (fw_seq_step){.kv = &s->kv[i], .T = T, .n_out = n_out, .mode = FW_ATTN_ABSORBED,
                                .hidden_out = !mtp && n_out > 1};
    }
    int rc = mtp ? fw_engine_mtp_seqs(s->en, n, s->q, s->ids, s->en->hidden, NULL, e)
                 : fw_engine_stage_seqs(s->en, n, s->q, s->ids, e);
    return rc ? FW_ERR : argmax_rows(s, (int)(n * n_out), e);
}

/* Drafting for sequences [a, a + n): the MTP layer over 1 + K positions, then
 * K - 1 chained one-position steps. */
static int draft(spec_bench *s, int a, int n, fw_err *e) {
    if (step(s, a, n, s->K + 1, 1, true, e)) return FW_ERR;
    for (int k = 1; k < s->K; k++) {
        for (int i = 0; i < n; i++) {
            s->kv[i].len = s->ctx + s->K + k;
            s->q[i] = (fw_seq_step){.kv = &s->kv[i], .T = 1, .n_out = 1, .mode = FW_ATTN_ABSORBED};
        }
        if (fw_engine_mtp_seqs(s->en, n, s->q, s->ids, s->en->hidden, NULL, e) || argmax_rows(s, n, e)) return FW_ERR;
    }
    return FW_OK;
}

/* Seconds per step of all B sequences, in groups of g: the fastest of iters
 * after one untimed (a shared machine's other work only ever adds time). */
static int timed(spec_bench *s, int g, int64_t T, int64_t n_out, int what, int iters, double *sec, fw_err *e) {
    *sec = 0;
    for (int it = 0; it <= iters; it++) {
        MPI_Barrier(s->en->replica);
        double t0 = fw_now();
        for (int a = 0; a < s->B; a += g) {
            int n = s->B - a < g ? s->B - a : g;
            if (what == 2 ? draft(s, a, n, e) : step(s, a, n, T, n_out, false, e)) return FW_ERR;
        }
        MPI_Barrier(s->en->replica);
        double t = fw_now() - t0;
        if (it == 1 || (it > 1 && t < *sec)) *sec = t;
    }
    return FW_OK;
}

/* The drafts' acceptance along n greedy steps of sequence 0 from position ctx:
 * each step's token, then the MTP layer's draft (and the chained one) for the
 * tokens after it, compared with what the next steps choose. */
static int acceptance(spec_bench *s, int n, int64_t *acc, int64_t *tried, fw_err *e) {
    fw_engine *en = s->en;
    const int64_t D = en->model->cfg.hidden_size;
    int32_t *g = calloc((size_t)n, sizeof *g), *d = calloc((size_t)n * 2, sizeof *d), cur = s->ids[s->ctx];
    float *h = malloc((size_t)D * sizeof *h);
    int rc = FW_ERR;
    if (!g || !d || !h) {
        fw_errf(e, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        s->kv[0] = en->kvs[0];
        s->kv[0].len = s->ctx + i;
        s->q[0] = (fw_seq_step){.kv = &s->kv[0], .T = 1, .n_out = 1, .mode = FW_ATTN_ABSORBED, .hidden_out = true};
        if (fw_engine_stage_seqs(en, 1, s->q, &cur, e) || argmax_rows(s, 1, e)) goto done;
        g[i] = cur = s->tok[0];
        int32_t in = cur;
        const float *hin = en->hidden;
        for (int k = 0; k < s->K; k++) { /* the draft of token i + 2 + k */
            s->kv[0].len = s->ctx + i + k;
            s->q[0] = (fw_seq_step){.kv = &s->kv[0], .T = 1, .n_out = 1, .mode = FW_ATTN_ABSORBED};
            if (fw_engine_mtp_seqs(en, 1, s->q, &in, hin, h, e) || argmax_rows(s, 1, e)) goto done;
            d[i * 2 + k] = in = s->tok[0];
            hin = h;
        }
    }
    /* As the scheduler counts them: draft k is accepted when it and those before it match. */
    for (int i = 0; i + s->K < n; i++)
        for (int k = 0, ok = 1; k < s->K; k++) {
            tried[k]++;
            ok = ok && d[i * 2 + k] == g[i + 1 + k];
            acc[k] += ok;
        }
    rc = FW_OK;
done:
    free(g), free(d), free(h);
    return rc;
}

int fw_bench_speculative(fw_engine *en, const int *batch, int n_batch, int64_t ctx, int iters, bool print,
                         fw_err *e) {
    const int K = en->speculative, dg = en->be->decode_group;
    int Bmax = 0;
    for (int i = 0; i < n_batch; i++) Bmax = batch[i] > Bmax ? batch[i] : Bmax;
    if (Bmax > en->n_seqs || ctx + FW_BENCH_SPEC_STEPS + 2 * K + 1 > en->context)
        return fw_errf(e, "speculative bench: the engine holds %d sequences of %lld positions", en->n_seqs,
                       (long long)en->context);
    spec_bench s = {.en = en, .K = K, .ctx = ctx};
    const int64_t rows = (int64_t)Bmax * (K + 1);
    s.q = calloc((size_t)Bmax, sizeof *s.q);
    s.kv = calloc((size_t)Bmax, sizeof *s.kv);
    s.ids = calloc((size_t)(rows > ctx ? rows : ctx + 1), sizeof *s.ids);
    s.best = calloc((size_t)rows, sizeof *s.best);
    s.tok = calloc((size_t)rows, sizeof *s.tok);
    int rc = FW_ERR;
    if (!s.q || !s.kv || !s.ids || !s.best || !s.tok) {
        fw_errf(e, "out of memory");
        goto done;
    }
    const int64_t V = en->model->cfg.vocab_size;
    for (int64_t i = 0; i < (rows > ctx ? rows : ctx + 1); i++) s.ids[i] = (int32_t)((i * 7919 + 11) % V);
    /* Every sequence's prompt, and its MTP rows, before any timing. */
    for (int i = 0; i < Bmax; i++) {
        s.kv[0] = en->kvs[i];
        s.kv[0].len = 0;
        s.q[0] = (fw_seq_step){.kv = &s.kv[0], .T = ctx, .n_out = 0, .mode = FW_ATTN_NAIVE, .hidden_out = true};
        if (fw_engine_stage_seqs(en, 1, s.q, s.ids, e)) goto done;
        s.kv[0].len = 0;
        if (fw_engine_mtp_seqs(en, 1, s.q, s.ids, en->hidden, NULL, e)) goto done;
    }
    int64_t acc[2] = {0}, tried[2] = {0};
    if (acceptance(&s, FW_BENCH_SPEC_STEPS, acc, tried, e)) goto done;
    if (print)
        for (int k = 0; k < K; k++)
            printf("draft %d accepted %lld of %lld (%.3f) along %d greedy steps of this model\n", k + 1,
                   (long long)acc[k], (long long)tried[k], tried[k] ? (double)acc[k] / (double)tried[k] : 0.0,
                   FW_BENCH_SPEC_STEPS);
    if (print)
        printf("speculative mtp:%d at %lld cached positions, fastest of %d; ms per step of the whole batch: t1 a "
               "decode step, tv a verify step (1 + %d tokens a sequence), td the MTP layer's drafting\n"
               "speed-up = (1 + a + ... + a^%d) * t1 / (tv + td) at acceptance a per draft\n"
               "%6s %10s %10s %10s %8s %8s %8s %8s\n",
               K, (long long)ctx, iters, K, K, "batch", "t1_ms", "tv_ms", "td_ms", "a=0.6", "a=0.7", "a=0.8", "a=0.9");
    for (int bi = 0; bi < n_batch; bi++) {
        s.B = batch[bi];
        const int g1 = dg > 0 ? dg : s.B, gv = dg > 0 ? (dg / (K + 1) > 0 ? dg / (K + 1) : 1) : s.B;
        double t1, tv, td;
        if (timed(&s, g1, 1, 1, 0, iters, &t1, e) || timed(&s, gv, K + 1, K + 1, 1, iters, &tv, e) ||
            timed(&s, gv, 0, 0, 2, iters, &td, e))
            goto done;
        if (!print) continue;
        printf("%6d %10.3f %10.3f %10.3f", s.B, t1 * 1e3, tv * 1e3, td * 1e3);
        for (int ai = 6; ai <= 9; ai++) {
            double a = ai / 10.0, tokens = 0, p = 1;
            for (int k = 0; k <= K; k++) tokens += p, p *= a;
            printf(" %8.2f", tokens * t1 / (tv + td));
        }
        printf("\n");
    }
    rc = FW_OK;
done:
    free(s.q), free(s.kv), free(s.ids), free(s.best), free(s.tok);
    return rc;
}
