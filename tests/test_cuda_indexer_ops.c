/* The GPU's DeepSeek-V3.2 indexer ops (kernels/cuda/indexer.h) against the CPU's
 * (runtime/cpu/indexer.c) and a plain LayerNorm + RoPE here: keys rounded to FP8
 * (fw_indexer_fp8_round) and written into a paged cache after the latent, the
 * latent columns untouched; queries rotated and rounded, their weights scaled;
 * scores over each query's visible positions against a float64 sum over the
 * GPU's own codes; the top-k as cache rows exactly as fw_indexer_topk picks
 * positions (ties included, earliest first), for queries that see fewer and
 * more positions than k. */
#include <math.h>
#include <string.h>

#include "runtime/cpu/indexer.h"
#include "kernels/cuda/indexer.h"
#include "tests/check.h"
#include "tests/cuda_test.h"

/* The plain key: LayerNorm (eps 1e-6, weight, bias) then halves rotated over the first R. */
static void ref_key(float *k, int64_t id, int64_t R, const float *w, const float *b, const float *cs, const float *sn) {
    double mu = 0, var = 0;
    for (int64_t d = 0; d < id; d++) mu += k[d];
    mu /= (double)id;
    for (int64_t d = 0; d < id; d++) var += (k[d] - mu) * (k[d] - mu);
    const double inv = 1.0 / sqrt(var / (double)id + 1e-6);
    for (int64_t d = 0; d < id; d++) k[d] = (float)((k[d] - mu) * inv) * w[d] + b[d];
    for (int64_t i = 0; i < R / 2; i++) {
        const float a = k[i], c = k[i + R / 2];
        k[i] = a * cs[i] - c * sn[i], k[i + R / 2] = a * sn[i] + c * cs[i];
    }
}

/* FP8 roundings of vectors against the CPU's: the GPU's float32 LayerNorm and
 * RoPE put a value on the other side of an e4m3 rounding boundary now and then,
 * so codes may differ by one step (a scale by one power of two, rarely). */
typedef struct round_stats {
    int64_t values, codes_off, far, vectors, scales_off;
} round_stats;

static void round_compare(round_stats *st, const uint8_t *got, float gs, const uint8_t *want, float ws, int64_t n) {
    st->vectors++;
    st->scales_off += gs != ws;
    for (int64_t i = 0; i < n; i++) {
        st->values++;
        if (got[i] == want[i]) continue;
        st->codes_off++;
        const float a = fw_fp8e4m3_to_f32(got[i]) * gs, b = fw_fp8e4m3_to_f32(want[i]) * ws;
        /* one e4m3 step: 1/8 of the value, or 2^-9 of the scale near zero */
        st->far += fabsf(a - b) > fmaxf(0.13f * fmaxf(fabsf(a), fabsf(b)), ldexpf(fmaxf(gs, ws), -8));
    }
}

static void round_check(const round_stats *st, const char *op, const char *shape) {
    CHECK(st->far == 0 && st->codes_off * 100 <= st->values && st->scales_off * 100 <= st->vectors,
          "%s %s: %lld of %lld codes differ (%lld by more than a step), %lld of %lld scales", op, shape,
          (long long)st->codes_off, (long long)st->values, (long long)st->far, (long long)st->scales_off,
          (long long)st->vectors);
    printf("%-16s %-48s %lld of %lld codes one step off, %lld of %lld scales\n", op, shape, (long long)st->codes_off,
           (long long)st->values, (long long)st->scales_off, (long long)st->vectors);
}

/* nseq sequences of lens[s] positions in pages of bs rows (a shuffled block table);
 * queries: each sequence's last position, and every position of sequence 0. */
static void check_indexer(int nseq, const int64_t *lens, int64_t ih, int64_t id, int64_t R, int64_t K, int64_t bs,
                          int64_t score_rows) {
    char shape[128];
    const int64_t C = 64, col0 = (C + R + 7) / 8 * 8, W = col0 + fw_cuda_index_key_cols(id);
    int64_t cap = 0, npos = 0;
    for (int s = 0; s < nseq; s++) cap = lens[s] > cap ? lens[s] : cap, npos += lens[s];
    snprintf(shape, sizeof shape, "seqs %d cap %lld ih %lld id %lld R %lld k %lld block %lld", nseq, (long long)cap,
             (long long)ih, (long long)id, (long long)R, (long long)K, (long long)bs);
    const int64_t mb = (cap + bs - 1) / bs, nblk = nseq * mb + 3;
    int32_t *tab = malloc((size_t)(nseq * mb) * 4), *perm = malloc((size_t)nblk * 4);
    for (int64_t i = 0; i < nblk; i++) perm[i] = (int32_t)i;
    for (int64_t i = nblk - 1; i > 0; i--) {
        int64_t j = check_rng_u32() % (uint64_t)(i + 1);
        int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int64_t i = 0; i < nseq * mb; i++) tab[i] = perm[i];
    /* Per position (all sequences in order): raw key, angles, its sequence and length. */
    float *kraw = hrand_bf16(npos * id, 2.0f), *lnw = hrand_bf16(id, 1.0f), *lnb = hrand_bf16(id, 0.5f);
    float *cs = hnew(npos * R / 2), *sn = hnew(npos * R / 2);
    int32_t *seq = malloc((size_t)npos * 4), *len = malloc((size_t)npos * 4);
    for (int s = 0, t = 0; s < nseq; s++)
        for (int64_t p = 0; p < lens[s]; p++, t++) {
            seq[t] = s, len[t] = (int32_t)(p + 1);
            for (int64_t i = 0; i < R / 2; i++) {
                const double a = (double)p * pow(10000.0, -2.0 * (double)i / (double)R);
                cs[t * R / 2 + i] = (float)cos(a), sn[t * R / 2 + i] = (float)sin(a);
            }
        }
    /* The pool starts random (bf16): the latent columns must survive the key writes. */
    float *pool0 = hrand_bf16(nblk * bs * W, 1.0f);
    dbuf dpool = dbf16(pool0, nblk * bs * W), dtab = dnew((size_t)(nseq * mb) * 4);
    dbuf dk = df32(kraw, npos * id), dw = df32(lnw, id), db = df32(lnb, id), dcs = df32(cs, npos * R / 2),
         dsn = df32(sn, npos * R / 2), dseq = dnew((size_t)npos * 4), dlen = dnew((size_t)npos * 4);
    CU(fw_cuda_upload(&ctx, dp(dtab), tab, (size_t)(nseq * mb) * 4));
    CU(fw_cuda_upload(&ctx, dp(dseq), seq, (size_t)npos * 4));
    CU(fw_cuda_upload(&ctx, dp(dlen), len, (size_t)npos * 4));
    const fw_cuda_pages pg = {dp(dpool), W, bs, bs * W, mb, dp(dtab)};
    uint16_t *pool = malloc((size_t)(nblk * bs * W) * 2);
    uint8_t *kcode = malloc((size_t)(npos * id)), *rcode = malloc((size_t)id);
    float *kscale = hnew(npos), *ref = hnew(id);
    if (op_ok(fw_cuda_index_keys(&ctx, &pg, col0, dp(dk), dp(dw), dp(db), 1e-6f, dp(dcs), dp(dsn), dp(dseq), dp(dlen),
                                 npos, id, R), "index_keys")) {
        CU(fw_cuda_download(&ctx, pool, dp(dpool), (size_t)(nblk * bs * W) * 2));
        int64_t moved = 0;
        round_stats st = {0};
        for (int64_t t = 0; t < npos; t++) {
            const int64_t row = (int64_t)tab[seq[t] * mb + (len[t] - 1) / bs] * bs + (len[t] - 1) % bs;
            const uint8_t *kr = (const uint8_t *)(pool + row * W + col0);
            memcpy(kcode + t * id, kr, (size_t)id);
            memcpy(&kscale[t], kr + id, 4);
            memcpy(ref, kraw + t * id, (size_t)id * 4);
            ref_key(ref, id, R, lnw, lnb, cs + t * R / 2, sn + t * R / 2);
            const float rs = fw_indexer_fp8_round(ref, id, rcode);
            round_compare(&st, kcode + t * id, kscale[t], rcode, rs, id);
            for (int64_t d = 0; d < col0; d++) moved += fw_bf16_to_f32(pool[row * W + d]) != pool0[row * W + d];
        }
        round_check(&st, "index_keys", shape);
        CHECK(moved == 0, "index_keys %s: %lld latent values changed", shape, (long long)moved);
    }
    /* Queries: every position of sequence 0, then the last of each other sequence. */
    const int64_t T = lens[0] + nseq - 1;
    if (score_rows > T) score_rows = T;
    int32_t *qseq = malloc((size_t)T * 4), *qlen = malloc((size_t)T * 4);
    int64_t *first = calloc((size_t)nseq, sizeof *first); /* each sequence's first position in the list */
    for (int s = 1; s < nseq; s++) first[s] = first[s - 1] + lens[s - 1];
    float *qcs = hnew(T * R / 2), *qsn = hnew(T * R / 2);
    for (int64_t t = 0; t < T; t++) {
        const int64_t pos = t < lens[0] ? t : first[t - lens[0] + 1] + lens[t - lens[0] + 1] - 1;
        qseq[t] = seq[pos], qlen[t] = len[pos];
        memcpy(qcs + t * R / 2, cs + pos * R / 2, (size_t)(R / 2) * 4);
        memcpy(qsn + t * R / 2, sn + pos * R / 2, (size_t)(R / 2) * 4);
    }
    float *q = hrand_bf16(T * ih * id, 1.0f), *qref = hnew(T * ih * id);
    float *w = hrand_bf16(T * ih, 1.0f);
    memcpy(qref, q, (size_t)(T * ih * id) * 4);
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < ih; h++) {
            float *v = qref + (t * ih + h) * id;
            for (int64_t i = 0; i < R / 2; i++) {
                const float a = v[i], c = v[i + R / 2], co = qcs[t * R / 2 + i], si = qsn[t * R / 2 + i];
                v[i] = a * co - c * si, v[i + R / 2] = a * si + c * co;
            }
        }
    dbuf dq = df32(q, T * ih * id), diw = df32(w, T * ih), dqcs = df32(qcs, T * R / 2), dqsn = df32(qsn, T * R / 2);
    dbuf dq8 = dnew((size_t)(T * ih * id));
    dbuf dqseq = dnew((size_t)T * 4), dqlen = dnew((size_t)T * 4), dscore = dnew((size_t)(score_rows * cap) * 4);
    dbuf dsel = dnew((size_t)(T * K) * 4), dnsel = dnew((size_t)T * 4), drow = dnew((size_t)T * 4);
    CU(fw_cuda_upload(&ctx, dp(dqseq), qseq, (size_t)T * 4));
    CU(fw_cuda_upload(&ctx, dp(dqlen), qlen, (size_t)T * 4));
    /* The CPU's rounding of the rotated queries, and the weights it implies. */
    uint8_t *qcode = malloc((size_t)(T * ih * id)), *qcref = malloc((size_t)(T * ih * id));
    float *wgpu = hnew(T * ih), *wref = hnew(T * ih), *qs_ref = hnew(T * ih);
    for (int64_t i = 0; i < T * ih; i++) {
        qs_ref[i] = fw_indexer_fp8_round(qref + i * id, id, qcref + i * id);
        wref[i] = w[i] / sqrtf((float)ih) / sqrtf((float)id) * qs_ref[i];
    }
    if (op_ok(fw_cuda_index_queries(&ctx, dp(dq8), dp(diw), dp(dq), dp(dqcs), dp(dqsn), T, ih, id, R),
              "index_queries")) {
        CU(fw_cuda_download(&ctx, qcode, dp(dq8), (size_t)(T * ih * id)));
        CU(fw_cuda_download(&ctx, wgpu, dp(diw), (size_t)(T * ih) * 4));
        round_stats st = {0};
        int64_t bad_w = 0;
        for (int64_t i = 0; i < T * ih; i++) {
            /* the scale a head's weight carries: the GPU's, read back from it */
            const float gs = w[i] != 0 ? wgpu[i] / (w[i] / sqrtf((float)ih) / sqrtf((float)id)) : qs_ref[i];
            round_compare(&st, qcode + i * id, gs, qcref + i * id, qs_ref[i], id);
            bad_w += w[i] != 0 && fabsf(wgpu[i] - wref[i]) > 1e-6f * fabsf(wref[i]) && gs == qs_ref[i];
        }
        round_check(&st, "index_queries", shape);
        CHECK(bad_w == 0, "index_queries %s: %lld head weights off", shape, (long long)bad_w);
    }
    float *sc = hnew(score_rows * cap), *scref = hnew(cap), *tmp = hnew(cap);
    float *kval = hnew(npos * id), *qval = hnew(T * ih * id); /* the codes' values */
    for (int64_t i = 0; i < npos * id; i++) kval[i] = fw_fp8e4m3_to_f32(kcode[i]);
    for (int64_t i = 0; i < T * ih * id; i++) qval[i] = fw_fp8e4m3_to_f32(qcode[i]);
    int32_t *sel = malloc((size_t)(T * K) * 4), *nsel = malloc((size_t)T * 4), *row = malloc((size_t)T * 4);
    int32_t *pick = malloc((size_t)K * 4);
    int64_t bad_sel = 0, bad_inf = 0;
    double worst = 0;
    for (int64_t t0 = 0; t0 < T; t0 += score_rows) {
        const int64_t n = T - t0 < score_rows ? T - t0 : score_rows;
        if (!op_ok(fw_cuda_index_scores(&ctx, dp(dscore), cap, (uint8_t *)dp(dq8) + t0 * ih * id,
                                        (float *)dp(diw) + t0 * ih, &pg, col0, (int32_t *)dp(dqseq) + t0,
                                        (int32_t *)dp(dqlen) + t0, n, ih, id), "index_scores") ||
            !op_ok(fw_cuda_index_topk(&ctx, dp(dsel), dp(dnsel), dp(drow), dp(dscore), cap, &pg, dp(dqseq), dp(dqlen),
                                      t0, n, K), "index_topk"))
            break;
        CU(fw_cuda_download(&ctx, sc, dp(dscore), (size_t)(n * cap) * 4));
        for (int64_t j = 0; j < n; j++) {
            const int64_t t = t0 + j, S = qlen[t];
            /* float64 over the GPU's own codes: key scale x sum_h w'_h relu(q8_h . k8) */
            const float *kc = kval + first[qseq[t]] * id;
            for (int64_t p = 0; p < S; p++) {
                double acc = 0;
                for (int64_t h = 0; h < ih; h++) {
                    double d = 0;
                    for (int64_t i = 0; i < id; i++) d += (double)qval[(t * ih + h) * id + i] * kc[p * id + i];
                    if (d > 0) acc += (double)wgpu[t * ih + h] * d;
                }
                scref[p] = (float)(acc * kscale[first[qseq[t]] + p]);
            }
            double num = 0, den = 0;
            for (int64_t p = 0; p < S; p++)
                num += (sc[j * cap + p] - scref[p]) * (sc[j * cap + p] - scref[p]), den += scref[p] * scref[p];
            worst = fmax(worst, num / fmax(den, 1e-30));
            for (int64_t p = S; p < cap; p++) bad_inf += !isinf(sc[j * cap + p]) || sc[j * cap + p] > 0;
        }
    }
    CHECK(worst <= NMSE_F32, "index_scores %s: NMSE %.3g > %.3g", shape, worst, NMSE_F32);
    CHECK(bad_inf == 0, "index_scores %s: %lld invisible positions not -inf", shape, (long long)bad_inf);
    printf("%-16s %-48s NMSE %.3g\n", "index_scores", shape, worst);
    /* The selection from the GPU's own scores: recomputed row by row (scores kept above are only the last chunk). */
    CU(fw_cuda_download(&ctx, sel, dp(dsel), (size_t)(T * K) * 4));
    CU(fw_cuda_download(&ctx, nsel, dp(dnsel), (size_t)T * 4));
    CU(fw_cuda_download(&ctx, row, dp(drow), (size_t)T * 4));
    for (int64_t t0 = 0; t0 < T; t0 += score_rows) {
        const int64_t n = T - t0 < score_rows ? T - t0 : score_rows;
        CU(fw_cuda_index_scores(&ctx, dp(dscore), cap, (uint8_t *)dp(dq8) + t0 * ih * id, (float *)dp(diw) + t0 * ih,
                                &pg, col0, (int32_t *)dp(dqseq) + t0, (int32_t *)dp(dqlen) + t0, n, ih, id));
        CU(fw_cuda_download(&ctx, sc, dp(dscore), (size_t)(n * cap) * 4));
        for (int64_t j = 0; j < n; j++) {
            const int64_t t = t0 + j, m = fw_indexer_topk(sc + j * cap, qlen[t], K, tmp, pick);
            bool ok = nsel[t] == m && row[t] == t;
            for (int64_t i = 0; ok && i < m; i++)
                ok = sel[t * K + i] == tab[qseq[t] * mb + pick[i] / bs] * bs + pick[i] % bs;
            bad_sel += !ok;
        }
    }
    CHECK(bad_sel == 0, "index_topk %s: %lld of %lld queries select other rows than fw_indexer_topk", shape,
          (long long)bad_sel, (long long)T);
    printf("%-16s %-48s %lld queries, %lld select exactly\n", "index_topk", shape, (long long)T, (long long)(T - bad_sel));
    dbuf *all[] = {&dpool, &dtab, &dk, &dw, &db, &dcs, &dsn, &dseq, &dlen, &dq, &diw, &dqcs, &dqsn, &dqseq, &dqlen,
                   &dscore, &dsel, &dnsel, &drow, &dq8};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) check_guards(*all[i], "indexer", shape), dfree(all[i]);
    free(tab), free(perm), free(kraw), free(lnw), free(lnb), free(cs), free(sn), free(seq), free(len), free(pool0);
    free(pool), free(kcode), free(rcode), free(kscale), free(ref), free(qseq), free(qlen), free(qcs), free(qsn), free(q);
    free(qref), free(first), free(w), free(sc), free(scref), free(tmp), free(sel), free(nsel), free(row), free(pick);
    free(qcode), free(qcref), free(wgpu), free(wref), free(qs_ref), free(kval), free(qval);
}

/* Scores with many exact ties (a few distinct values): the GPU's selection must
 * take the tied positions at the boundary from the earliest, as the CPU's does. */
static void check_topk_ties(int64_t S, int64_t K, int levels) {
    char shape[96];
    snprintf(shape, sizeof shape, "S %lld k %lld %d levels", (long long)S, (long long)K, levels);
    const int64_t bs = 64, mb = (S + bs - 1) / bs, T = 3;
    float *sc = hnew(T * S), *tmp = hnew(S);
    int32_t *tab = malloc((size_t)mb * 4), *qseq = calloc((size_t)T, 4), *qlen = malloc((size_t)T * 4);
    for (int64_t i = 0; i < mb; i++) tab[i] = (int32_t)(mb - 1 - i);
    for (int64_t t = 0; t < T; t++) qlen[t] = (int32_t)(S - t * (S / 3));
    for (int64_t i = 0; i < T * S; i++) sc[i] = (float)(check_rng_u32() % (uint32_t)levels) - 1.5f;
    dbuf dsc = df32(sc, T * S), dtab = dnew((size_t)mb * 4), dseq = dnew((size_t)T * 4), dlen = dnew((size_t)T * 4);
    dbuf dsel = dnew((size_t)(T * K) * 4), dnsel = dnew((size_t)T * 4), drow = dnew((size_t)T * 4);
    CU(fw_cuda_upload(&ctx, dp(dtab), tab, (size_t)mb * 4));
    CU(fw_cuda_upload(&ctx, dp(dseq), qseq, (size_t)T * 4));
    CU(fw_cuda_upload(&ctx, dp(dlen), qlen, (size_t)T * 4));
    const fw_cuda_pages pg = {(fw_bf16 *)dp(dtab), 1, bs, bs, mb, dp(dtab)}; /* only the table is read */
    int32_t *sel = malloc((size_t)(T * K) * 4), *nsel = malloc((size_t)T * 4), *pick = malloc((size_t)K * 4);
    int64_t bad = 0;
    if (op_ok(fw_cuda_index_topk(&ctx, dp(dsel), dp(dnsel), dp(drow), dp(dsc), S, &pg, dp(dseq), dp(dlen), 0, T, K),
              "index_topk")) {
        CU(fw_cuda_download(&ctx, sel, dp(dsel), (size_t)(T * K) * 4));
        CU(fw_cuda_download(&ctx, nsel, dp(dnsel), (size_t)T * 4));
        for (int64_t t = 0; t < T; t++) {
            const int64_t m = fw_indexer_topk(sc + t * S, qlen[t], K, tmp, pick);
            bool ok = nsel[t] == m;
            for (int64_t i = 0; ok && i < m; i++) ok = sel[t * K + i] == tab[pick[i] / bs] * bs + pick[i] % bs;
            bad += !ok;
        }
    }
    CHECK(bad == 0, "index_topk %s: %lld of %lld queries differ from fw_indexer_topk", shape, (long long)bad,
          (long long)T);
    printf("%-16s %-48s %s\n", "index_topk", shape, bad ? "DIFFERS" : "ties as the CPU");
    dbuf *all[] = {&dsc, &dtab, &dseq, &dlen, &dsel, &dnsel, &drow};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) check_guards(*all[i], "index_topk", shape), dfree(all[i]);
    free(sc), free(tmp), free(tab), free(qseq), free(qlen), free(sel), free(nsel), free(pick);
}

int test_indexer_ops(void) {
    const int64_t a[] = {150, 20, 97, 64}, b[] = {300, 2500};
    check_indexer(4, a, 8, 128, 16, 32, 16, 1 << 20);  /* the tiny golden's indexer: 8 heads, top 32 */
    check_indexer(4, a, 8, 128, 16, 32, 16, 37);       /* scores in chunks of 37 queries */
    check_indexer(2, b, 64, 128, 64, 2048, 64, 128);   /* DeepSeek-V3.2's: 64 heads, top 2048 */
    check_topk_ties(3000, 1000, 4);
    check_topk_ties(777, 100, 2);
    return check_failures_;
}
