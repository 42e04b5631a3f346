/* The MTP layer's logits against a float64 reference written here from
 * DeepSeek-V3's description (technical report, section 2.2; the published
 * layer model.layers.{num_hidden_layers}): for position i,
 *   x = eh_proj(cat(enorm(embed(t_{i+1})), hnorm(h_i)))
 * with h_i the main model's final-normed hidden state, then one decoder layer
 * (MLA over the layer's own cache, the DeepSeekMoE FFN), then
 * shared_head.head(shared_head.norm(x)) are the logits of t_{i+2}. The
 * reference reads the weights straight from the checkpoint (BF16 or F32) and
 * takes only h_i from furrow (the main model is checked against transformers by
 * test_golden); h_i itself is checked by lm_head(h_i) against furrow's main
 * logits. furrow's MTP runs once over all positions and again a chunk then one
 * token at a time (absorbed attention over its cache); both must be within 1e-3
 * of max |logit|.
 *
 * usage: mtp_check DIR   (a checkpoint with an MTP layer, BF16 or F32 weights) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/dtype.h"
#include "kernels/cpu/fast.h"
#include "runtime/cpu/cpu.h"
#include "runtime/model/rope.h"
#include "tests/check.h"

#define N_TOK 12

/* A whole tensor as doubles. */
static double *rd(fw_ckpt *ck, const char *fmt, int l, int64_t x) {
    char name[256];
    snprintf(name, sizeof name, fmt, l, (long long)x);
    fw_tensor_info in;
    fw_err e;
    if (fw_ckpt_info(ck, name, &in, &e)) {
        fprintf(stderr, "mtp_check: %s\n", e.msg);
        exit(1);
    }
    int64_t n = 1;
    for (int i = 0; i < in.ndim; i++) n *= in.shape[i];
    void *raw = malloc((size_t)n * 4);
    double *d = malloc((size_t)n * sizeof(double));
    if (!raw || !d || fw_ckpt_read(ck, name, NULL, NULL, raw, &e)) {
        fprintf(stderr, "mtp_check: reading %s failed\n", name);
        exit(1);
    }
    if (in.dtype == FW_DTYPE_BF16)
        for (int64_t i = 0; i < n; i++) d[i] = fw_bf16_to_f32(((const uint16_t *)raw)[i]);
    else if (in.dtype == FW_DTYPE_F32)
        for (int64_t i = 0; i < n; i++) d[i] = ((const float *)raw)[i];
    else
        SKIP("%s: the reference reads BF16 or F32 weights only", name);
    free(raw);
    return d;
}

/* y (rows) = W (rows, cols) . x (cols) */
static void mv(double *y, const double *W, const double *x, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t k = 0; k < cols; k++) s += W[r * cols + k] * x[k];
        y[r] = s;
    }
}

static void rms(double *y, const double *x, const double *w, int64_t n, double eps) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i] * x[i];
    double f = 1 / sqrt(s / (double)n + eps);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * f * w[i];
}

/* Rotates interleaved pairs at position pos (furrow's layout of transformers'
 * rotate_half after its de-interleave: the same dot products). */
static void rope(double *v, int64_t R, int64_t pos, const float *inv, double mscale) {
    for (int64_t i = 0; i < R / 2; i++) {
        double a = (double)pos * inv[i], c = cos(a) * mscale, s = sin(a) * mscale;
        double x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = x0 * c - x1 * s, v[2 * i + 1] = x0 * s + x1 * c;
    }
}

static double silu(double x) { return x / (1 + exp(-x)); }

/* y (D) += down(silu(gate x) * up x) */
static void ffn(double *y, const double *x, const double *g, const double *u, const double *d, int64_t I, int64_t D,
                double scale) {
    double *a = malloc((size_t)I * sizeof(double)), *b = malloc((size_t)I * sizeof(double));
    double *o = malloc((size_t)D * sizeof(double));
    mv(a, g, x, I, D), mv(b, u, x, I, D);
    for (int64_t i = 0; i < I; i++) a[i] = silu(a[i]) * b[i];
    mv(o, d, a, D, I);
    for (int64_t i = 0; i < D; i++) y[i] += scale * o[i];
    free(a), free(b), free(o);
}

/* DeepSeek-V3's router: sigmoid scores; selection by score + bias, within the
 * topk_group groups of the best two-expert sums; weights the unbiased scores,
 * normalised, times routed_scaling_factor. */
static void route(const fw_config *c, const double *logit, const double *bias, int *ids, double *w) {
    const int E = c->n_routed_experts, G = c->n_group > 1 ? c->n_group : 1, gs = E / G, K = c->num_experts_per_tok;
    double s[1024], sb[1024], gsc[64];
    int keep[64] = {0}, used[1024] = {0};
    for (int x = 0; x < E; x++) s[x] = 1 / (1 + exp(-logit[x])), sb[x] = s[x] + bias[x];
    for (int g = 0; g < G; g++) {
        double b1 = -INFINITY, b2 = -INFINITY;
        for (int x = g * gs; x < (g + 1) * gs; x++)
            if (sb[x] > b1) b2 = b1, b1 = sb[x];
            else if (sb[x] > b2) b2 = sb[x];
        gsc[g] = b1 + (gs > 1 ? b2 : 0);
    }
    for (int r = 0; r < (G > 1 ? c->topk_group : 1); r++) {
        int best = -1;
        for (int g = 0; g < G; g++)
            if (!keep[g] && (best < 0 || gsc[g] > gsc[best])) best = g;
        keep[best] = 1;
    }
    double sum = 0;
    for (int k = 0; k < K; k++) {
        int best = -1;
        for (int x = 0; x < E; x++)
            if (keep[x / gs] && !used[x] && (best < 0 || sb[x] > sb[best])) best = x;
        used[best] = 1, ids[k] = best, w[k] = s[best], sum += s[best];
    }
    for (int k = 0; k < K; k++) w[k] = (c->norm_topk_prob ? w[k] / sum : w[k]) * c->routed_scaling_factor;
}

/* The reference MTP logits (n, V) for positions 0..n-1 from ids (the next
 * tokens) and h (n, D) floats. */
static double *reference(fw_ckpt *ck, const fw_config *c, const int32_t *ids, const float *h, int64_t n) {
    const int l = c->num_hidden_layers;
    const int64_t D = c->hidden_size, V = c->vocab_size, H = c->num_attention_heads, C = c->kv_lora_rank;
    const int64_t R = c->qk_rope_head_dim, dn = c->qk_nope_head_dim, dv = c->v_head_dim, dqk = dn + R;
    const int64_t Q = c->q_lora_rank, E = c->n_routed_experts;
    const double eps = c->rms_norm_eps;
    double *emb = rd(ck, "model.layers.%d.embed_tokens.weight", l, 0), *en = rd(ck, "model.layers.%d.enorm.weight", l, 0);
    double *hn = rd(ck, "model.layers.%d.hnorm.weight", l, 0), *eh = rd(ck, "model.layers.%d.eh_proj.weight", l, 0);
    double *an = rd(ck, "model.layers.%d.input_layernorm.weight", l, 0);
    double *qa = rd(ck, "model.layers.%d.self_attn.q_a_proj.weight", l, 0);
    double *qan = rd(ck, "model.layers.%d.self_attn.q_a_layernorm.weight", l, 0);
    double *qb = rd(ck, "model.layers.%d.self_attn.q_b_proj.weight", l, 0);
    double *kva = rd(ck, "model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", l, 0);
    double *kvn = rd(ck, "model.layers.%d.self_attn.kv_a_layernorm.weight", l, 0);
    double *kvb = rd(ck, "model.layers.%d.self_attn.kv_b_proj.weight", l, 0);
    double *ow = rd(ck, "model.layers.%d.self_attn.o_proj.weight", l, 0);
    double *fn = rd(ck, "model.layers.%d.post_attention_layernorm.weight", l, 0);
    double *gate = rd(ck, "model.layers.%d.mlp.gate.weight", l, 0);
    double *bias = rd(ck, "model.layers.%d.mlp.gate.e_score_correction_bias", l, 0);
    double *sg = rd(ck, "model.layers.%d.mlp.shared_experts.gate_proj.weight", l, 0);
    double *su = rd(ck, "model.layers.%d.mlp.shared_experts.up_proj.weight", l, 0);
    double *sd = rd(ck, "model.layers.%d.mlp.shared_experts.down_proj.weight", l, 0);
    double *shn = rd(ck, "model.layers.%d.shared_head.norm.weight", l, 0);
    double *head = rd(ck, "model.layers.%d.shared_head.head.weight", l, 0);
    float inv[256], msc;
    fw_rope_inv_freq(c, inv, &msc);
    const double scale = fw_config_softmax_scale(c);

    double *x = calloc((size_t)(n * D), sizeof(double)), *t2 = malloc((size_t)(2 * D) * sizeof(double));
    double *hb = malloc((size_t)D * sizeof(double)), *q = malloc((size_t)(n * H * dqk) * sizeof(double));
    double *k = malloc((size_t)(n * H * dqk) * sizeof(double)), *v = malloc((size_t)(n * H * dv) * sizeof(double));
    double *qa_v = malloc((size_t)Q * sizeof(double)), *kv = malloc((size_t)(C + R) * sizeof(double));
    double *kx = malloc((size_t)(H * (dn + dv)) * sizeof(double)), *o = malloc((size_t)(H * dv) * sizeof(double));
    double *y = malloc((size_t)D * sizeof(double)), *p = malloc((size_t)n * sizeof(double));
    double *rl = malloc((size_t)E * sizeof(double)), *out = malloc((size_t)(n * V) * sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        double hd[4096];
        for (int64_t d = 0; d < D; d++) hd[d] = h[i * D + d];
        rms(t2, emb + (int64_t)ids[i] * D, en, D, eps); /* the embedding first, then the hidden state */
        rms(t2 + D, hd, hn, D, eps);
        mv(x + i * D, eh, t2, D, 2 * D);
        /* q, and this position's key and value expanded from its latent */
        rms(hb, x + i * D, an, D, eps);
        mv(qa_v, qa, hb, Q, D);
        rms(qa_v, qa_v, qan, Q, eps);
        mv(q + i * H * dqk, qb, qa_v, H * dqk, Q);
        mv(kv, kva, hb, C + R, D);
        rms(kv, kv, kvn, C, eps);
        rope(kv + C, R, i, inv, msc);
        mv(kx, kvb, kv, H * (dn + dv), C);
        for (int64_t hh = 0; hh < H; hh++) {
            rope(q + (i * H + hh) * dqk + dn, R, i, inv, msc);
            memcpy(k + (i * H + hh) * dqk, kx + hh * (dn + dv), (size_t)dn * sizeof(double));
            memcpy(k + (i * H + hh) * dqk + dn, kv + C, (size_t)R * sizeof(double));
            memcpy(v + (i * H + hh) * dv, kx + hh * (dn + dv) + dn, (size_t)dv * sizeof(double));
        }
    }
    for (int64_t i = 0; i < n; i++) {
        for (int64_t hh = 0; hh < H; hh++) { /* causal softmax attention */
            double mx = -INFINITY, z = 0;
            for (int64_t j = 0; j <= i; j++) {
                double s = 0;
                for (int64_t d = 0; d < dqk; d++) s += q[(i * H + hh) * dqk + d] * k[(j * H + hh) * dqk + d];
                p[j] = s * scale, mx = p[j] > mx ? p[j] : mx;
            }
            for (int64_t j = 0; j <= i; j++) z += p[j] = exp(p[j] - mx);
            for (int64_t d = 0; d < dv; d++) {
                double s = 0;
                for (int64_t j = 0; j <= i; j++) s += p[j] / z * v[(j * H + hh) * dv + d];
                o[hh * dv + d] = s;
            }
        }
        mv(y, ow, o, D, H * dv);
        for (int64_t d = 0; d < D; d++) x[i * D + d] += y[d];
        rms(hb, x + i * D, fn, D, eps);
        memset(y, 0, (size_t)D * sizeof(double));
        ffn(y, hb, sg, su, sd, c->moe_intermediate_size * c->n_shared_experts, D, 1);
        mv(rl, gate, hb, E, D);
        int sel[64];
        double w[64];
        route(c, rl, bias, sel, w);
        for (int kk = 0; kk < c->num_experts_per_tok; kk++) {
            double *g = rd(ck, "model.layers.%d.mlp.experts.%lld.gate_proj.weight", l, sel[kk]);
            double *u = rd(ck, "model.layers.%d.mlp.experts.%lld.up_proj.weight", l, sel[kk]);
            double *dd = rd(ck, "model.layers.%d.mlp.experts.%lld.down_proj.weight", l, sel[kk]);
            ffn(y, hb, g, u, dd, c->moe_intermediate_size, D, w[kk]);
            free(g), free(u), free(dd);
        }
        for (int64_t d = 0; d < D; d++) x[i * D + d] += y[d];
        rms(hb, x + i * D, shn, D, eps);
        mv(out + i * V, head, hb, V, D);
    }
    double *all[] = {emb, en, hn, eh, an, qa, qan, qb, kva, kvn, kvb, ow, fn, gate, bias, sg, su, sd, shn, head,
                     x, t2, hb, q, k, v, qa_v, kv, kx, o, y, p, rl};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    return out;
}

static double rel(const float *a, const double *b, int64_t n) {
    double mx = 0, err = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        mx = fmax(mx, fabs(b[i])), err = fmax(err, fabs(a[i] - b[i]));
    }
    return err / mx;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: mtp_check DIR\n");
        return 2;
    }
    fw_err e;
    fw_model *m;
    fw_ckpt *ck;
    if (fw_model_load(&m, argv[1], fw_ops_cpu_fast(), NULL, 0, 0, &e) || fw_model_load_mtp(m, argv[1], NULL, &e) ||
        fw_ckpt_open(&ck, argv[1], &e)) {
        fprintf(stderr, "mtp_check: %s\n", e.msg);
        return 1;
    }
    const fw_config *c = &m->cfg;
    const int64_t D = c->hidden_size, V = c->vocab_size, n = N_TOK - 1;
    CHECK(c->q_lora_rank > 0 && c->n_routed_experts > 0 && c->n_shared_experts > 0 && m->mtp->layer.moe,
          "the reference covers DeepSeek-V3's MTP layer: q_lora, an MoE FFN with shared experts");
    int32_t tok[N_TOK];
    for (int i = 0; i < N_TOK; i++) tok[i] = (int32_t)((i * 7919 + 13) % V);
    float *hid = malloc((size_t)(N_TOK * D) * sizeof(float)), *lg = malloc((size_t)(N_TOK * V) * sizeof(float));
    float *ml = malloc((size_t)(n * V) * sizeof(float)), *ml2 = malloc((size_t)(n * V) * sizeof(float));
    float *ho = malloc((size_t)(n * D) * sizeof(float));
    fw_kv kv;
    if (fw_kv_init(&kv, m, 64, &e)) return fprintf(stderr, "mtp_check: %s\n", e.msg), 1;
    fw_seq_step s = {.kv = &kv, .T = N_TOK, .n_out = N_TOK, .mode = FW_ATTN_NAIVE, .hidden_out = true};
    CHECK(fw_model_forward_seqs(m, NULL, kv.own, 1, &s, tok, hid, lg, &e) == FW_OK, "main forward: %s", e.msg);

    /* h_i is what the head reads: lm_head(h_i) in float64 is furrow's main logits. */
    double *lm = rd(ck, c->tie_word_embeddings ? "model.embed_tokens.weight%.0d%.0lld" : "lm_head.weight%.0d%.0lld", 0, 0);
    double *ref_main = malloc((size_t)(N_TOK * V) * sizeof(double)), hd[4096];
    for (int64_t i = 0; i < N_TOK; i++) {
        for (int64_t d = 0; d < D; d++) hd[d] = hid[i * D + d];
        mv(ref_main + i * V, lm, hd, V, D);
    }
    double em = rel(lg, ref_main, N_TOK * V);
    printf("main logits from the hidden states furrow hands the MTP layer: rel err %.3g\n", em);
    CHECK(em < 1e-3, "hidden_out is not the final-normed state the head reads (%.3g)", em);

    /* The MTP layer over positions 0..n-1 in one pass. */
    fw_kv km = kv;
    km.len = 0;
    fw_seq_step sm = {.kv = &km, .T = n, .n_out = n, .mode = FW_ATTN_NAIVE};
    CHECK(fw_model_forward_mtp(m, NULL, kv.own, 1, &sm, tok + 1, hid, ho, ml, &e) == FW_OK, "mtp: %s", e.msg);
    CHECK(km.len == n, "the MTP forward advances its cache (%lld)", (long long)km.len);
    /* Again: a chunk of 5, then one position at a time over the layer's cache. */
    km.len = 0;
    sm = (fw_seq_step){.kv = &km, .T = 5, .n_out = 5, .mode = FW_ATTN_NAIVE};
    CHECK(fw_model_forward_mtp(m, NULL, kv.own, 1, &sm, tok + 1, hid, NULL, ml2, &e) == FW_OK, "mtp: %s", e.msg);
    for (int64_t i = 5; i < n; i++) {
        sm = (fw_seq_step){.kv = &km, .T = 1, .n_out = 1, .mode = FW_ATTN_ABSORBED};
        CHECK(fw_model_forward_mtp(m, NULL, kv.own, 1, &sm, tok + 1 + i, hid + i * D, NULL, ml2 + i * V, &e) == FW_OK,
              "mtp: %s", e.msg);
    }
    double *ref = reference(ck, c, tok + 1, hid, n);
    double e1 = rel(ml, ref, n * V), e2 = rel(ml2, ref, n * V);
    printf("MTP logits vs the float64 reference over %lld positions: one pass %.3g, chunk + decode %.3g\n",
           (long long)n, e1, e2);
    CHECK(e1 < 1e-3 && e2 < 1e-3, "MTP logits differ from the reference (%.3g, %.3g)", e1, e2);
    /* A broken layer (a missing hnorm term) must be seen: the hidden state matters. */
    double *ref0 = reference(ck, c, tok + 1, hid + D, n);
    CHECK(rel(ml, ref0, n * V) > 1e-2, "the reference does not depend on h (%.3g)", rel(ml, ref0, n * V));
    free(ref), free(ref0), free(ref_main), free(lm), free(hid), free(lg), free(ml), free(ml2), free(ho);
    fw_kv_free(&kv);
    fw_ckpt_close(ck);
    fw_model_free(m);
    return check_result();
}
