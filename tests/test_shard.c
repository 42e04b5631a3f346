/* The slicer: for the golden tiny config (and variants with q_proj and an MTP
 * layer, and DeepSeek-V3.2's indexer) under several layouts, every tensor of fw_model_tensors is covered
 * exactly once per replica by the slices of its stage's tp ranks when split, tp
 * times when replicated; FP8 scale slices cover exactly the blocks of their
 * weight's slice; bad names and shapes are refused by name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"
#include "io/model_tensors.h"
#include "partition/plan.h"
#include "partition/shard.h"
#include "tests/check.h"

static fw_layout L;

static void make_layout(const fw_config *c, int tp, int pp) {
    fw_plan_request rq = {.world = tp * pp, .ranks_per_node = tp, .tp = tp, .pp = pp};
    fw_err e = {{0}};
    if (fw_plan(c, &rq, &L, &e)) {
        fprintf(stderr, "layout tp %d pp %d: %s\n", tp, pp, e.msg);
        exit(1);
    }
}

static int64_t nelem(int ndim, const int64_t *n) { return n[0] * (ndim == 2 ? n[1] : 1); }

/* The scale slice must be the blocks that cover the weight slice, no more. */
static void check_scale(const fw_config *c, const fw_model_tensor *t, int p, int r, const fw_slice *w) {
    char name[160];
    int64_t shape[2];
    fw_slice s;
    fw_err e = {{0}};
    snprintf(name, sizeof name, "%s_scale_inv", t->name);
    fw_model_tensor_scale_shape(c, t->shape, shape);
    CHECK(fw_shard_slice(c, &L, p, r, name, 2, shape, &s, &e) == FW_OK, "%s: %s", name, e.msg);
    CHECK(s.needed == w->needed, "%s: needed %d, weight %d", name, s.needed, w->needed);
    if (!s.needed || !w->needed) return;
    for (int d = 0; d < 2; d++) {
        int64_t a = w->start[d], b = w->start[d] + w->count[d], sa = s.start[d], sb = s.start[d] + s.count[d];
        CHECK(sa * 128 <= a && sb * 128 >= b && (sa + 1) * 128 > a && (sb - 1) * 128 < b && sb <= shape[d],
              "%s (pp %d tp %d) dim %d: blocks [%lld, %lld) for rows [%lld, %lld)", name, p, r, d, (long long)sa,
              (long long)sb, (long long)a, (long long)b);
    }
}

static void check_layout(const fw_config *c, int tp, int pp, const char *what) {
    make_layout(c, tp, pp);
    fw_model_tensor *t;
    int64_t nt;
    fw_err e = {{0}};
    if (fw_model_tensors(c, &t, &nt, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        exit(1);
    }
    int64_t checked = 0;
    for (int64_t i = 0; i < nt; i++) {
        const int64_t n = nelem(t[i].ndim, t[i].shape);
        unsigned char *hits = calloc((size_t)n, 1);
        int64_t sum = 0;
        for (int p = 0; p < pp; p++)
            for (int r = 0; r < tp; r++) {
                fw_slice s;
                if (fw_shard_slice(c, &L, p, r, t[i].name, t[i].ndim, t[i].shape, &s, &e)) {
                    CHECK(0, "%s: %s: %s", what, t[i].name, e.msg);
                    continue;
                }
                CHECK(s.ndim == t[i].ndim, "%s: %s ndim", what, t[i].name);
                if (t[i].quantized && c->fp8) check_scale(c, &t[i], p, r, &s);
                if (!s.needed) continue;
                int64_t cols = t[i].ndim == 2 ? t[i].shape[1] : 1;
                int64_t c0 = t[i].ndim == 2 ? s.start[1] : 0, cn = t[i].ndim == 2 ? s.count[1] : 1;
                CHECK(s.start[0] >= 0 && s.start[0] + s.count[0] <= t[i].shape[0] && c0 >= 0 && c0 + cn <= cols,
                      "%s: %s slice out of bounds", what, t[i].name);
                for (int64_t a = s.start[0]; a < s.start[0] + s.count[0]; a++)
                    for (int64_t b = c0; b < c0 + cn; b++) hits[a * cols + b]++;
                sum += s.count[0] * cn;
            }
        /* Each element: tp times if replicated, once if split or an expert, never for MTP. */
        const int want = t[i].mtp ? 0 : t[i].role == FW_TP_REPLICATED ? tp : 1;
        CHECK(sum == n * want, "%s: %s: %lld elements sliced, want %lld", what, t[i].name, (long long)sum,
              (long long)(n * want));
        int64_t bad = 0;
        for (int64_t k = 0; k < n; k++) bad += hits[k] != want;
        CHECK(bad == 0, "%s: %s: %lld elements not covered exactly %d times", what, t[i].name, (long long)bad, want);
        CHECK(fw_model_tensor_role(c, t[i].name, NULL) == t[i].role, "%s role", t[i].name);
        free(hits);
        checked++;
    }
    CHECK(checked > 20, "%s: only %lld tensors", what, (long long)checked);
    free(t);
}

static void check_refusals(const fw_config *c) {
    make_layout(c, 2, 1);
    fw_slice s;
    fw_err e = {{0}};
    int64_t qb[2] = {192, 128}, sc[2] = {2, 1}, norm[1] = {256}, bad[2] = {190, 128};

    /* 4 heads x 48 rows over tp 2: rank 1 reads rows 96..191, scale block rows 0..1. */
    CHECK(fw_shard_slice(c, &L, 0, 1, "model.layers.0.self_attn.q_b_proj.weight", 2, qb, &s, &e) == FW_OK &&
              s.needed && s.start[0] == 96 && s.count[0] == 96 && s.start[1] == 0 && s.count[1] == 128,
          "q_b tp 1: %s", e.msg);
    CHECK(fw_shard_slice(c, &L, 0, 1, "model.layers.0.self_attn.q_b_proj.weight_scale_inv", 2, sc, &s, &e) ==
                  FW_OK && s.start[0] == 0 && s.count[0] == 2 && s.count[1] == 1,
          "q_b scale tp 1: %lld+%lld %s", (long long)s.start[0], (long long)s.count[0], e.msg);
    CHECK(fw_shard_slice(c, &L, 0, 0, "model.layers.0.self_attn.q_b_proj.weight_scale_inv", 2, sc, &s, &e) ==
                  FW_OK && s.start[0] == 0 && s.count[0] == 1,
          "q_b scale tp 0: %lld+%lld", (long long)s.start[0], (long long)s.count[0]);
    /* Experts: 16 over tp 2, expert 9 on rank 1. */
    int64_t ex[2] = {128, 256};
    CHECK(fw_shard_slice(c, &L, 0, 0, "model.layers.1.mlp.experts.9.up_proj.weight", 2, ex, &s, &e) == FW_OK &&
              !s.needed, "expert 9 on tp 0");
    CHECK(fw_shard_slice(c, &L, 0, 1, "model.layers.1.mlp.experts.9.up_proj.weight", 2, ex, &s, &e) == FW_OK &&
              s.needed && s.count[0] == 128 && s.count[1] == 256, "expert 9 on tp 1");

    CHECK(fw_shard_slice(c, &L, 0, 0, "model.layers.0.self_attn.q_b_proj.weight", 2, bad, &s, &e) == FW_ERR &&
              strstr(e.msg, "has shape [190, 128] but the config implies [192, 128]"), "bad shape: %s", e.msg);
    CHECK(fw_shard_slice(c, &L, 0, 0, "model.layers.0.self_attn.q_b_proj.weight", 1, qb, &s, &e) == FW_ERR &&
              strstr(e.msg, "has shape"), "bad ndim: %s", e.msg);
    CHECK(fw_shard_slice(c, &L, 0, 0, "model.layers.0.self_attn.foo.weight", 1, norm, &s, &e) == FW_ERR &&
              strstr(e.msg, "unknown tensor 'model.layers.0.self_attn.foo.weight'"), "unknown: %s", e.msg);
    CHECK(fw_shard_slice(c, &L, 0, 0, "model.layers.1.mlp.gate_proj.weight", 2, ex, &s, &e) == FW_ERR &&
              strstr(e.msg, "layer 1 is a MoE layer"), "dense name in a MoE layer: %s", e.msg);
    CHECK(fw_shard_slice(c, &L, 0, 0, "model.layers.1.mlp.experts.16.up_proj.weight", 2, ex, &s, &e) == FW_ERR &&
              strstr(e.msg, "unknown tensor"), "expert 16 of 16: %s", e.msg);
    CHECK(fw_shard_slice(c, &L, 0, 0, "model.layers.7.input_layernorm.weight", 1, norm, &s, &e) == FW_ERR &&
              strstr(e.msg, "layer 7 does not exist"), "layer 7: %s", e.msg);
    CHECK(fw_shard_slice(c, &L, 0, 0, "model.norm.weight_scale_inv", 2, sc, &s, &e) == FW_ERR &&
              strstr(e.msg, "no block scales"), "norm scales: %s", e.msg);
    CHECK(fw_shard_slice(c, &L, 0, 2, "model.norm.weight", 1, norm, &s, &e) == FW_ERR &&
              strstr(e.msg, "outside the layout"), "tp rank 2 of 2: %s", e.msg);
    CHECK(fw_shard_slice(c, &L, 0, 0, "lm_head.weight", 2, (int64_t[]){2048, 256}, &s, &e) == FW_OK &&
              s.needed && s.start[0] == 0 && s.count[0] == 1024, "head tp 0");
}

int main(void) {
    const char *shared = getenv("FURROW_SHARED");
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/tiny-a-fp8/config.json", shared ? shared : "../shared");
    fw_config c;
    fw_err e = {{0}};
    if (fw_config_load(&c, path, &e)) SKIP("golden tiny config: %s", e.msg);

    static const int layouts[][2] = {{1, 1}, {2, 1}, {4, 1}, {1, 2}, {1, 3}, {2, 2}, {4, 3}};
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "tiny tp %d pp %d", layouts[i][0], layouts[i][1]);
        check_layout(&c, layouts[i][0], layouts[i][1], what);
    }
    check_refusals(&c);

    /* Variants: plain q_proj (q_lora_rank null), an MTP layer (never read), BF16. */
    fw_config v = c;
    v.q_lora_rank = 0, v.num_nextn_predict_layers = 1;
    check_layout(&v, 2, 2, "q_proj + MTP tp 2 pp 2");
    v.fp8 = false;
    check_layout(&v, 4, 3, "bf16 tp 4 pp 3");
    /* DeepSeek-V3.2: the indexer's tensors, replicated (FP8 wq_b and wk with block scales). */
    v = c;
    v.index_n_heads = 8, v.index_head_dim = 128, v.index_topk = 32;
    check_layout(&v, 2, 2, "v32 tp 2 pp 2");
    check_layout(&v, 4, 1, "v32 tp 4");
    fw_config_free(&c);
    return check_result();
}
