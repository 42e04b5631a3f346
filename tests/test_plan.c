/* The layout planner: the 671B config on several clusters (choice of tp/pp,
 * stages that cover every layer once and balance the cost, memory sums checked
 * against shapes computed here), the tiny golden geometry's tp rules, and the
 * text of every refusal. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"
#include "io/synth.h"
#include "partition/plan.h"
#include "tests/check.h"

/* The published DeepSeek-V3 config.json keys (inference/configs, HF hub). */
static const char *v3_json =
    "{\"architectures\": [\"DeepseekV3ForCausalLM\"], \"bos_token_id\": 0, \"eos_token_id\": 1,"
    " \"first_k_dense_replace\": 3, \"hidden_act\": \"silu\", \"hidden_size\": 7168,"
    " \"intermediate_size\": 18432, \"kv_lora_rank\": 512, \"max_position_embeddings\": 163840,"
    " \"model_type\": \"deepseek_v3\", \"moe_intermediate_size\": 2048, \"moe_layer_freq\": 1,"
    " \"n_group\": 8, \"n_routed_experts\": 256, \"n_shared_experts\": 1, \"norm_topk_prob\": true,"
    " \"num_attention_heads\": 128, \"num_experts_per_tok\": 8, \"num_hidden_layers\": 61,"
    " \"num_key_value_heads\": 128, \"num_nextn_predict_layers\": 1, \"q_lora_rank\": 1536,"
    " \"qk_nope_head_dim\": 128, \"qk_rope_head_dim\": 64,"
    " \"quantization_config\": {\"activation_scheme\": \"dynamic\", \"fmt\": \"e4m3\","
    "   \"quant_method\": \"fp8\", \"weight_block_size\": [128, 128]},"
    " \"rms_norm_eps\": 1e-06, \"rope_scaling\": {\"beta_fast\": 32, \"beta_slow\": 1, \"factor\": 40,"
    "   \"mscale\": 1.0, \"mscale_all_dim\": 1.0, \"original_max_position_embeddings\": 4096, \"type\": \"yarn\"},"
    " \"rope_theta\": 10000, \"routed_scaling_factor\": 2.5, \"scoring_func\": \"sigmoid\","
    " \"tie_word_embeddings\": false, \"topk_group\": 4, \"topk_method\": \"noaux_tc\", \"v_head_dim\": 128,"
    " \"vocab_size\": 129280}";

/* shared/golden/tiny-a-fp8/config.json, the keys furrow reads. */
#define TINY_KEYS \
    "{\"vocab_size\": 2048, \"hidden_size\": 256, \"intermediate_size\": 512, \"moe_intermediate_size\": 128," \
    " \"num_hidden_layers\": 3, \"num_attention_heads\": 4, \"num_key_value_heads\": 4," \
    " \"n_shared_experts\": 1, \"n_routed_experts\": 16, \"routed_scaling_factor\": 2.5," \
    " \"kv_lora_rank\": 64, \"q_lora_rank\": 128, \"qk_rope_head_dim\": 16, \"v_head_dim\": 32," \
    " \"qk_nope_head_dim\": 32, \"n_group\": 4, \"topk_group\": 2, \"num_experts_per_tok\": 4," \
    " \"first_k_dense_replace\": 1, \"norm_topk_prob\": true, \"hidden_act\": \"silu\"," \
    " \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-06, \"bos_token_id\": 0, \"eos_token_id\": 1," \
    " \"tie_word_embeddings\": false, \"num_nextn_predict_layers\": 0, \"model_type\": \"deepseek_v3\"," \
    " \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0, \"original_max_position_embeddings\": 64," \
    "   \"beta_fast\": 32, \"beta_slow\": 1, \"mscale\": 1.0, \"mscale_all_dim\": 1.0}," \
    " \"rope_theta\": 10000.0"
static const char *tiny_json =
    TINY_KEYS ", \"quantization_config\": {\"quant_method\": \"fp8\", \"fmt\": \"e4m3\","
    "   \"activation_scheme\": \"dynamic\", \"weight_block_size\": [128, 128]}}";
static const char *tiny_bf16_json = TINY_KEYS "}";
/* shared/golden/tiny-a-w4-experts: Kimi-K2-Thinking's quantization_config (the
 * routed experts INT4 in groups of 32). */
static const char *tiny_w4_json =
    TINY_KEYS ", \"quantization_config\": {\"config_groups\": {\"group_0\": {\"input_activations\": null,"
    " \"output_activations\": null, \"targets\": [\"Linear\"], \"weights\": {\"actorder\": null,"
    " \"block_structure\": null, \"dynamic\": false, \"group_size\": 32, \"num_bits\": 4,"
    " \"observer\": \"minmax\", \"observer_kwargs\": {}, \"strategy\": \"group\", \"symmetric\": true,"
    " \"type\": \"int\"}}}, \"format\": \"pack-quantized\", \"ignore\": [\"lm_head\", \"re:.*self_attn.*\","
    " \"re:.*shared_experts.*\", \"re:.*mlp\\\\.(gate|up|gate_up|down)_proj.*\"], \"kv_cache_scheme\": null,"
    " \"quant_method\": \"compressed-tensors\", \"quantization_status\": \"compressed\"}}";

static fw_config load(const char *json, const char *name) {
    fw_config c;
    fw_err e = {{0}};
    if (fw_config_parse(&c, json, name, &e)) {
        fprintf(stderr, "%s: %s\n", name, e.msg);
        exit(1);
    }
    return c;
}

static fw_layout L;  /* 8 KiB+: not on the stack of every call */

static const fw_quant_spec *weights;  /* plan()'s request: NULL, or what test_quantized sets */
static int mtp;                       /* plan()'s request: speculative draft tokens (0: none) */

static int plan(const fw_config *c, int world, int rpn, int tp, int pp, double mem_gb, fw_err *e) {
    fw_plan_request rq = {.world = world, .ranks_per_node = rpn, .tp = tp, .pp = pp,
                          .mem_per_rank = (uint64_t)(mem_gb * 1e9), .context = 4096, .batch = 1,
                          .mtp = mtp, .weights = weights};
    memset(e, 0, sizeof *e);
    return fw_plan(c, &rq, &L, e);
}

/* The cost of a layer, written out independently of plan.c. */
static double cost(const fw_config *c, int l) {
    double D = 7168, attn = 1536.0 * D + 128.0 * 192 * 1536 + 576.0 * D + 128.0 * 256 * 512 + D * 128 * 128;
    (void)c;
    return attn + (l < 3 ? 3 * 18432.0 * D : 256 * D + 3 * 2048.0 * D + 8 * 3 * 2048.0 * D);
}

static void check_stages(const fw_config *c, const char *what) {
    const double head = 129280.0 * 7168, embed = 7168;
    double total = embed + head, item = 0;
    for (int l = 0; l < 61; l++) {
        double w = cost(c, l) + (l == 0 ? embed : 0) + (l == 60 ? head : 0);
        total += cost(c, l);
        if (w > item) item = w;
    }
    int next = 0;
    double sum = 0, max = 0;
    for (int s = 0; s < L.pp; s++) {
        const fw_stage *st = &L.stages[s];
        CHECK(st->first_layer == next && st->n_layers >= 1, "%s: stage %d starts at %d (want %d), %d layers",
              what, s, st->first_layer, next, st->n_layers);
        CHECK(st->has_embed == (s == 0) && st->has_head == (s == L.pp - 1), "%s: stage %d embed/head", what, s);
        next = st->first_layer + st->n_layers;
        for (int l = st->first_layer; l < next; l++)
            CHECK(fw_layout_stage_of_layer(&L, l) == s, "%s: layer %d not on stage %d", what, l, s);
        sum += st->cost;
        if (st->cost > max) max = st->cost;
    }
    CHECK(next == 61, "%s: stages end at layer %d, want 61", what, next);
    CHECK(fw_layout_stage_of_layer(&L, 61) == -1, "%s: the MTP layer has no stage", what);
    CHECK(sum > total * (1 - 1e-9) && sum < total * (1 + 1e-9), "%s: stage costs sum to %g, want %g", what, sum,
          total);
    /* Any contiguous split can reach mean + the largest item; the optimum is no worse. */
    CHECK(max <= total / L.pp + item * (1 + 1e-9), "%s: largest stage %g > mean %g + largest layer %g", what,
          max, total / L.pp, item);
}

/* Brute force for pp 2 and 3: the planner's largest stage must be the optimum. */
static void check_optimal(const fw_config *c, int pp) {
    double pre[62] = {0};
    for (int l = 0; l < 61; l++)
        pre[l + 1] = pre[l] + cost(c, l) + (l == 0 ? 7168 : 0) + (l == 60 ? 129280.0 * 7168 : 0);
    double best = 1e300;
    for (int a = 1; a < 61; a++) {
        if (pp == 2) {
            double m = pre[a] > pre[61] - pre[a] ? pre[a] : pre[61] - pre[a];
            if (m < best) best = m;
            continue;
        }
        for (int b = a + 1; b < 61; b++) {
            double m = pre[a];
            if (pre[b] - pre[a] > m) m = pre[b] - pre[a];
            if (pre[61] - pre[b] > m) m = pre[61] - pre[b];
            if (m < best) best = m;
        }
    }
    double max = 0;
    for (int s = 0; s < L.pp; s++) max = L.stages[s].cost > max ? L.stages[s].cost : max;
    CHECK(max <= best * (1 + 1e-12), "pp %d: largest stage %g, optimum %g", pp, max, best);
}

/* One replica's weight bytes by dtype, from shapes (MTP layer excluded):
 * replicated tensors count tp times. tp must keep every split 128-aligned, so the
 * scale blocks split exactly too. */
static void expected_weights(int tp, double *fp8, double *bf16, double *f32) {
    const double D = 7168, H = 128, Q = 1536, C = 512, R = 64, V = 129280, E = 256, I = 18432, Ie = 2048;
    double blocks_rep = 0, blocks_split = 0, q_rep = 0, q_split = 0, b_rep = 0, b_split = 0, bias = 0;
#define BLK(r, c) ((double)(((int64_t)(r) + 127) / 128) * (double)(((int64_t)(c) + 127) / 128))
    for (int l = 0; l < 61; l++) {
        q_rep += Q * D + (C + R) * D;
        blocks_rep += BLK(Q, D) + BLK(C + R, D);
        q_split += H * 192 * Q + H * 256 * C + D * H * 128;
        blocks_split += BLK(H * 192, Q) + BLK(H * 256, C) + BLK(D, H * 128);
        b_rep += 2 * D + Q + C;  /* input/post norms, q_a and kv_a norms */
        if (l < 3) {
            q_split += 3 * I * D;
            blocks_split += 2 * BLK(I, D) + BLK(D, I);
        } else {
            q_split += 3 * Ie * D * (E + 1);
            blocks_split += (2 * BLK(Ie, D) + BLK(D, Ie)) * (E + 1);
            b_rep += E * D;
            bias += E;
        }
    }
    b_rep += D;           /* final norm */
    b_split += 2 * V * D; /* embed, head */
    *fp8 = q_rep * tp + q_split;
    *bf16 = 2 * (b_rep * tp + b_split);
    *f32 = 4 * (bias * tp + blocks_rep * tp + blocks_split);
}

static void check_memory(const fw_config *c, int tp, int pp) {
    fw_err e;
    CHECK(plan(c, tp * pp, tp, tp, pp, 0, &e) == FW_OK, "tp %d pp %d: %s", tp, pp, e.msg);
    fw_mem_estimate *m = calloc((size_t)(tp * pp), sizeof *m);
    CHECK(fw_plan_mem_per_rank(c, &L, m, &e) == FW_OK, "%s", e.msg);
    double fp8 = 0, bf16 = 0, f32 = 0, wfp8, wbf16, wf32, worst = 0;
    for (int i = 0; i < tp * pp; i++) {
        fp8 += (double)m[i].weights_fp8, bf16 += (double)m[i].weights_bf16, f32 += (double)m[i].weights_f32;
        CHECK(m[i].weights == m[i].weights_fp8 + m[i].weights_bf16 + m[i].weights_f32 && !m[i].weights_int4 &&
              !m[i].weights_int8, "weights sum");
        CHECK(m[i].total == m[i].weights + m[i].kv_cache + m[i].activations, "total sum");
        int stage = i / tp;
        CHECK(m[i].kv_cache == (uint64_t)4096 * 576 * 4 * (uint64_t)L.stages[stage].n_layers, "kv of rank %d", i);
        if ((double)m[i].total > worst) worst = (double)m[i].total;
    }
    expected_weights(tp, &wfp8, &wbf16, &wf32);
    CHECK(fp8 == wfp8, "tp %d pp %d: fp8 bytes %.0f, want %.0f", tp, pp, fp8, wfp8);
    CHECK(bf16 == wbf16, "tp %d pp %d: bf16 bytes %.0f, want %.0f", tp, pp, bf16, wbf16);
    CHECK(f32 == wf32, "tp %d pp %d: f32 bytes %.0f, want %.0f", tp, pp, f32, wf32);
    CHECK((double)L.mem.total == worst, "layout memory is the fullest rank's");
    if (tp == 1) /* one replica of the FP8 model: about 671B - the MTP layer's 12B, plus scales */
        CHECK(fp8 + bf16 + f32 > 640e9 && fp8 + bf16 + f32 < 700e9, "671B FP8 weights: %.1f GB",
              (fp8 + bf16 + f32) / 1e9);
    free(m);
}

static void check_err(int rc, const fw_err *e, const char *want, const char *want2, const char *what) {
    CHECK(rc == FW_ERR, "%s: accepted", what);
    CHECK(strstr(e->msg, want) != NULL, "%s: message '%s' lacks '%s'", what, e->msg, want);
    if (want2) CHECK(strstr(e->msg, want2) != NULL, "%s: message '%s' lacks '%s'", what, e->msg, want2);
}

static void test_v3(void) {
    fw_config c = load(v3_json, "671B");
    fw_err e;

    /* 2 nodes x 8 H200 (141 GB): one node holds the FP8 model, two replicas. */
    CHECK(plan(&c, 16, 8, 0, 0, 141, &e) == FW_OK, "%s", e.msg);
    CHECK(L.tp == 8 && L.pp == 1 && L.dp == 2, "2x8 H200: tp %d pp %d dp %d", L.tp, L.pp, L.dp);
    CHECK(L.mem.total > 80e9 && L.mem.total < 100e9, "2x8 H200: %.1f GB per rank", L.mem.total / 1e9);
    CHECK(L.experts_per_rank_max == 32, "experts per rank %d", L.experts_per_rank_max);
    /* 4 x 8 H100 (80 GB): two stages per replica. */
    CHECK(plan(&c, 32, 8, 0, 0, 80, &e) == FW_OK, "%s", e.msg);
    CHECK(L.tp == 8 && L.pp == 2 && L.dp == 2, "4x8 H100: tp %d pp %d dp %d", L.tp, L.pp, L.dp);
    check_stages(&c, "4x8 H100");
    /* 16 CPU nodes x 1 rank, 512 GB: no tp, two stages, eight replicas. */
    CHECK(plan(&c, 16, 1, 0, 0, 512, &e) == FW_OK, "%s", e.msg);
    CHECK(L.tp == 1 && L.pp == 2 && L.dp == 8, "16x1 CPU: tp %d pp %d dp %d", L.tp, L.pp, L.dp);
    /* No memory given: all ranks beyond tp become stages. */
    CHECK(plan(&c, 32, 8, 0, 0, 0, &e) == FW_OK && L.tp == 8 && L.pp == 4 && L.dp == 1, "4x8 no mem: %d %d %d",
          L.tp, L.pp, L.dp);
    /* Explicit layouts. */
    CHECK(plan(&c, 64, 8, 4, 4, 0, &e) == FW_OK && L.tp == 4 && L.pp == 4 && L.dp == 4, "tp4 pp4: %s", e.msg);
    CHECK(!L.tp_auto && !L.pp_auto, "explicit layout marked automatic");

    static const int pps[] = {1, 2, 3, 4, 5, 7, 8, 16, 60, 61};
    for (size_t i = 0; i < sizeof pps / sizeof pps[0]; i++) {
        char what[32];
        snprintf(what, sizeof what, "pp %d", pps[i]);
        CHECK(plan(&c, pps[i], 1, 1, pps[i], 0, &e) == FW_OK, "%s: %s", what, e.msg);
        check_stages(&c, what);
        if (pps[i] == 2 || pps[i] == 3) check_optimal(&c, pps[i]);
    }

    check_memory(&c, 1, 1);
    check_memory(&c, 8, 2);
    check_memory(&c, 4, 3);

    /* DeepSeek-V3.2: the indexer's key (index_head_dim floats) beside the latent in
     * every cached position, and the indexer's weights, replicated. */
    {
        fw_config v = c;
        v.index_n_heads = 64, v.index_head_dim = 128, v.index_topk = 2048;
        fw_mem_estimate m3, m32;
        CHECK(plan(&c, 1, 1, 1, 1, 0, &e) == FW_OK && fw_plan_mem_per_rank(&c, &L, &m3, &e) == FW_OK, "%s", e.msg);
        CHECK(plan(&v, 1, 1, 1, 1, 0, &e) == FW_OK && fw_plan_mem_per_rank(&v, &L, &m32, &e) == FW_OK, "%s", e.msg);
        CHECK(m32.kv_cache == (uint64_t)4096 * (576 + 128) * 4 * 61, "v32 kv %llu", (unsigned long long)m32.kv_cache);
        /* on a GPU: bf16 latent and k_pe, then the key's 128 e4m3 bytes, its fp32 scale and 12 bytes of padding */
        fw_plan_request g = {.world = 1, .ranks_per_node = 1, .tp = 1, .pp = 1, .context = 4096, .batch = 1,
                             .value_bytes = 2};
        fw_mem_estimate mg;
        CHECK(fw_plan(&v, &g, &L, &e) == FW_OK && fw_plan_mem_per_rank(&v, &L, &mg, &e) == FW_OK, "%s", e.msg);
        CHECK(mg.kv_cache == (uint64_t)4096 * (576 * 2 + 128 + 16) * 61, "v32 GPU kv %llu",
              (unsigned long long)mg.kv_cache);
        /* per layer: wq_b 8192 x 1536 and wk 128 x 7168 FP8, weights_proj 64 x 7168 BF16, k_norm 2 x 128 */
        const double idx = 61 * (8192.0 * 1536 + 128.0 * 7168 + 2 * (64.0 * 7168 + 2 * 128));
        CHECK((double)(m32.weights_fp8 + m32.weights_bf16) - (double)(m3.weights_fp8 + m3.weights_bf16) == idx,
              "v32 indexer weights: %.0f more bytes, want %.0f",
              (double)(m32.weights_fp8 + m32.weights_bf16) - (double)(m3.weights_fp8 + m3.weights_bf16), idx);
    }

    /* Speculative decoding: the MTP layer (model.layers.61: a MoE layer plus enorm, hnorm, eh_proj and its
     * own embedding and head) and its KV cache on the last stage only; without --speculative none of it. */
    {
        fw_mem_estimate m0[2], m1[2];
        CHECK(plan(&c, 2, 2, 1, 2, 0, &e) == FW_OK && fw_plan_mem_per_rank(&c, &L, m0, &e) == FW_OK, "%s", e.msg);
        mtp = 1;
        CHECK(plan(&c, 2, 2, 1, 2, 0, &e) == FW_OK && fw_plan_mem_per_rank(&c, &L, m1, &e) == FW_OK, "%s", e.msg);
        mtp = 0;
        uint64_t with, without;
        CHECK(fw_plan_weight_bytes(&c, NULL, true, &with, &e) == FW_OK &&
              fw_plan_weight_bytes(&c, NULL, false, &without, &e) == FW_OK, "%s", e.msg);
        CHECK(m1[0].weights == m0[0].weights && m1[0].kv_cache == m0[0].kv_cache, "mtp: stage 0 changed");
        CHECK(m1[1].weights - m0[1].weights == with - without, "mtp: last stage +%llu weight bytes, the layer has %llu",
              (unsigned long long)(m1[1].weights - m0[1].weights), (unsigned long long)(with - without));
        /* at least the routed experts of a MoE layer (FP8) and a BF16 embedding and head */
        const double floor = 256.0 * 3 * 2048 * 7168 + 2 * 2.0 * 129280 * 7168;
        CHECK((double)(with - without) > floor, "mtp layer: %llu bytes, less than %.0f",
              (unsigned long long)(with - without), floor);
        CHECK(m1[1].kv_cache - m0[1].kv_cache == (uint64_t)4096 * 576 * 4, "mtp: last stage KV +%llu",
              (unsigned long long)(m1[1].kv_cache - m0[1].kv_cache));
        CHECK(m1[1].activations >= m0[1].activations, "mtp: activations shrank");
        fw_config none = c;
        none.num_nextn_predict_layers = 0;
        mtp = 2;
        CHECK(plan(&none, 1, 1, 1, 1, 0, &e) == FW_ERR && strstr(e.msg, "num_nextn_predict_layers"),
              "mtp without an MTP layer: %s", e.msg);
        mtp = 0;
    }

    CHECK(plan(&c, 8, 8, 8, 1, 0, &e) == FW_OK, "%s", e.msg);
    for (int r = 0; r < 8; r++) {
        int f, n;
        fw_layout_experts(&L, &c, r, &f, &n);
        CHECK(f == 32 * r && n == 32, "tp 8 rank %d: experts %d+%d", r, f, n);
    }

    /* Refusals. */
    check_err(plan(&c, 8, 8, 8, 1, 80, &e), &e, "not enough memory per rank", "tp 8 x pp 2 fits", "1x8 H100 fp8");
    fw_config b = c;
    b.fp8 = false;  /* the BF16 checkpoint on 1 x 8 H100 */
    check_err(plan(&b, 8, 8, 0, 0, 80, &e), &e, "not enough memory per rank", "tp 8 x pp 3 fits", "1x8 H100 bf16");
    CHECK(strstr(e.msg, "FP8 checkpoint") != NULL, "bf16: no FP8 hint in '%s'", e.msg);
    check_err(plan(&c, 16, 8, 8, 3, 0, &e), &e, "world size 16 is not a multiple of tp 8 x pp 3",
              "with tp 8, pp can be 1, 2", "16 = 8 x 3");
    check_err(plan(&c, 12, 8, 8, 0, 0, &e), &e, "world size 12 is not a multiple", "with pp 1, tp can be 1, 2, 4",
              "12 over tp 8");
    check_err(plan(&c, 62, 1, 1, 62, 0, &e), &e, "pp", "exceeds num_hidden_layers 61", "pp 62");
    check_err(plan(&c, 8, 8, -1, 0, 0, &e), &e, "must be positive", NULL, "tp -1");
    check_err(plan(&c, 8, 8, 0, -2, 0, &e), &e, "must be positive", NULL, "pp -2");
    check_err(plan(&c, 0, 8, 0, 0, 0, &e), &e, "at least one rank", NULL, "world 0");
    check_err(plan(&c, 10, 10, 5, 0, 0, &e), &e, "num_attention_heads 128 is not divisible by 5",
              "valid tp for 10 ranks: 1, 2", "tp 5");
    check_err(plan(&c, 512, 8, 512, 1, 0, &e), &e, "exceeds n_routed_experts 256", NULL, "tp 512");
    fw_config_free(&c);
}

static void test_tiny(void) {
    fw_config c = load(tiny_json, "tiny");
    fw_err e;
    for (int tp = 1; tp <= 4; tp *= 2)
        CHECK(plan(&c, 12, 12, tp, 0, 0, &e) == FW_OK && L.tp == tp, "tiny tp %d: %s", tp, e.msg);
    check_err(plan(&c, 12, 12, 3, 0, 0, &e), &e, "num_attention_heads 4 is not divisible by 3",
              "valid tp for 12 ranks: 1, 2, 4", "tiny tp 3");
    CHECK(strstr(e.msg, "vocab_size") && strstr(e.msg, "intermediate_size 512"), "all reasons: %s", e.msg);
    /* Automatic: tp 4 (heads), then pp up to the 3 layers, the rest replicas. */
    CHECK(plan(&c, 8, 8, 0, 0, 0, &e) == FW_OK && L.tp == 4 && L.pp == 2 && L.dp == 1, "tiny 8: %d %d %d",
          L.tp, L.pp, L.dp);
    CHECK(plan(&c, 16, 4, 0, 0, 0, &e) == FW_OK && L.tp == 4 && L.pp == 2 && L.dp == 2, "tiny 16: %d %d %d",
          L.tp, L.pp, L.dp);
    CHECK(plan(&c, 3, 3, 0, 0, 0, &e) == FW_OK && L.tp == 1 && L.pp == 3, "tiny 3: %d %d", L.tp, L.pp);
    check_err(plan(&c, 4, 4, 1, 4, 0, &e), &e, "exceeds num_hidden_layers 3", "valid pp with tp 1 on 4 ranks: 1, 2",
              "tiny pp 4");

    /* Experts not divisible by tp: expert e on rank floor(e tp / E), ranges contiguous. */
    fw_config x = c;
    x.n_routed_experts = 10;
    CHECK(plan(&x, 4, 4, 4, 1, 0, &e) == FW_OK, "E 10 tp 4: %s", e.msg);
    CHECK(L.experts_per_rank_max == 3, "E 10 tp 4: max %d", L.experts_per_rank_max);
    for (int r = 0, next = 0; r < 4; r++) {
        int f, n;
        fw_layout_experts(&L, &x, r, &f, &n);
        CHECK(f == next, "E 10 tp 4 rank %d starts at %d, want %d", r, f, next);
        for (int k = f; k < f + n; k++) CHECK(k * 4 / 10 == r, "expert %d on rank %d", k, r);
        next = f + n;
        if (r == 3) CHECK(next == 10, "experts end at %d", next);
    }

    x = c, x.vocab_size = 2050;
    check_err(plan(&x, 4, 4, 4, 1, 0, &e), &e, "vocab_size 2050 is not divisible by 4", "valid tp for 4 ranks: 1, 2",
              "vocab");
    x = c, x.intermediate_size = 510;
    check_err(plan(&x, 4, 4, 4, 1, 0, &e), &e, "intermediate_size 510 (dense layers)", NULL, "intermediate");
    x.first_k_dense_replace = 0;  /* no dense layer: the dense size does not matter */
    CHECK(plan(&x, 4, 4, 4, 1, 0, &e) == FW_OK, "no dense layers: %s", e.msg);
    x = c, x.moe_intermediate_size = 126;
    check_err(plan(&x, 4, 4, 4, 1, 0, &e), &e, "moe_intermediate_size x n_shared_experts = 126", NULL, "shared");
    x = c, x.n_routed_experts = 2;
    check_err(plan(&x, 4, 4, 4, 1, 0, &e), &e, "tp 4 exceeds n_routed_experts 2", "valid tp for 4 ranks: 1, 2",
              "tp > E");
    check_err(plan(&c, 4, 4, 0, 0, 1e-3, &e), &e, "not enough memory per rank", NULL, "tiny in 1 MB");
    fw_config_free(&c);
}

/* Weights stored otherwise than the config says (plan --weights) and
 * compressed-tensors INT4 configs: bytes from shapes, the 1 x 8 H100 verdicts
 * for DeepSeek-V3 in FP8 and INT4, Kimi-K2 on 8 H200. */
static void test_quantized(void) {
    fw_err e;
    fw_config bf = load(tiny_bf16_json, "tiny bf16"), w4 = load(tiny_w4_json, "tiny w4");
    CHECK(w4.int4 && !w4.fp8 && !bf.int4, "tiny w4 config: int4 %d fp8 %d", w4.int4, w4.fp8);
    /* tiny: 2 MoE layers x 16 experts x gate/up [128, 256] + down [256, 128];
     * INT4 in groups of 32: 1/2 byte a value, a bf16 scale per 32. */
    const double ex = 2.0 * 16 * 3 * 128 * 256, ex_int4 = ex / 2 + ex / 32 * 2;
    uint64_t b_bf, b_w4, b_spec, b_int8;
    const fw_quant_spec k2 = {.type = FW_WTYPE_INT4, .group = 32, .experts_only = true};
    const fw_quant_spec i8 = {.type = FW_WTYPE_INT8};
    CHECK(fw_plan_weight_bytes(&bf, NULL, false, &b_bf, &e) == FW_OK, "%s", e.msg);
    CHECK(fw_plan_weight_bytes(&w4, NULL, false, &b_w4, &e) == FW_OK, "%s", e.msg);
    CHECK(fw_plan_weight_bytes(&bf, &k2, false, &b_spec, &e) == FW_OK, "%s", e.msg);
    CHECK(fw_plan_weight_bytes(&bf, &i8, false, &b_int8, &e) == FW_OK, "%s", e.msg);
    CHECK((double)b_w4 == (double)b_bf - 2 * ex + ex_int4, "w4 config: %llu bytes, want %.0f",
          (unsigned long long)b_w4, (double)b_bf - 2 * ex + ex_int4);
    CHECK(b_spec == b_w4, "int4,group=32,experts on BF16: %llu bytes, the w4 config %llu", (unsigned long long)b_spec,
          (unsigned long long)b_w4);
    CHECK(b_int8 < b_bf / 2 + b_bf / 4 && b_int8 > b_bf / 2, "int8: %llu of bf16 %llu", (unsigned long long)b_int8,
          (unsigned long long)b_bf);
    /* ,head: the [V, D] output head too, also in groups of 32. */
    const fw_quant_spec k2h = {.type = FW_WTYPE_INT4, .group = 32, .experts_only = true, .head = true};
    const double hd = (double)bf.vocab_size * bf.hidden_size;
    uint64_t b_head;
    CHECK(!bf.tie_word_embeddings && fw_plan_weight_bytes(&bf, &k2h, false, &b_head, &e) == FW_OK, "%s", e.msg);
    CHECK((double)b_head == (double)b_spec - 2 * hd + hd / 2 + hd / 32 * 2, "int4,group=32,experts,head: %llu bytes",
          (unsigned long long)b_head);
    /* Per rank: the int4 bytes of tp 2 add up to one rank's (experts split, nothing replicated). */
    weights = &k2;
    CHECK(plan(&bf, 2, 2, 2, 1, 0, &e) == FW_OK, "%s", e.msg);
    fw_mem_estimate m[2];
    CHECK(fw_plan_mem_per_rank(&bf, &L, m, &e) == FW_OK, "%s", e.msg);
    CHECK((double)(m[0].weights_int4 + m[1].weights_int4) == ex / 2, "int4 bytes over tp 2: %llu + %llu, want %.0f",
          (unsigned long long)m[0].weights_int4, (unsigned long long)m[1].weights_int4, ex / 2);
    CHECK(m[0].weights_scales == (uint64_t)(ex / 32 * 2 / 2), "tp rank 0's int4 scales %llu",
          (unsigned long long)m[0].weights_scales);
    CHECK(m[0].weights == m[0].weights_bf16 + m[0].weights_f32 + m[0].weights_int4, "weights sum with int4");
    weights = NULL;
    CHECK(plan(&w4, 2, 2, 2, 1, 0, &e) == FW_OK, "%s", e.msg);
    CHECK(L.mem.weights_int4 == m[L.mem_tp_rank].weights_int4 && !L.requantized,
          "the w4 config's own INT4 counts as the spec does: %llu", (unsigned long long)L.mem.weights_int4);

    /* DeepSeek-V3 on 1 node x 8 H100 (80 GB): FP8 does not fit, INT4 does. */
    fw_config v3 = load(v3_json, "671B");
    const fw_quant_spec all4 = {.type = FW_WTYPE_INT4, .group = 128};
    check_err(plan(&v3, 8, 8, 0, 0, 80, &e), &e, "not enough memory per rank",
              "INT4 weights (--weights int4: every linear weight but the head) would need", "FP8 on 8 x 80 GB");
    CHECK(strstr(e.msg, "at tp 8 x pp 1 (fits)") != NULL, "FP8 on 8 x 80 GB: no INT4 verdict in '%s'", e.msg);
    weights = &all4;
    CHECK(plan(&v3, 8, 8, 0, 0, 80, &e) == FW_OK, "INT4 on 8 x 80 GB: %s", e.msg);
    CHECK(L.tp == 8 && L.pp == 1 && L.requantized, "INT4 on 8 x 80 GB: tp %d pp %d", L.tp, L.pp);
    CHECK(L.mem.total > 40e9 && L.mem.total < 50e9 && L.mem.weights_fp8 == 0, "INT4 on 8 x 80 GB: %.1f GB per rank",
          L.mem.total / 1e9);
    weights = NULL;

    /* Kimi-K2-Thinking: 594 GB published (INT4 experts, BF16 rest) fits 8 x 141 GB (and, just, 8 x 80 GB), not 8 x 70 GB. */
    fw_config k;
    fw_quant_spec kq;
    uint64_t kb;
    CHECK(fw_synth_preset("kimi-k2", &k, &e) == FW_OK, "kimi-k2: %s", e.msg);
    CHECK(fw_quant_spec_parse(&kq, fw_synth_preset_weights("kimi-k2"), &e) == FW_OK, "%s", e.msg);
    CHECK(k.n_routed_experts == 384 && k.num_attention_heads == 64 && k.n_group == 1 && k.topk_group == 1 &&
          k.first_k_dense_replace == 1 && k.vocab_size == 163840, "kimi-k2 geometry");
    CHECK(fw_plan_weight_bytes(&k, &kq, true, &kb, &e) == FW_OK, "%s", e.msg);
    CHECK(kb > 594e9 * 0.98 && kb < 594e9 * 1.02, "kimi-k2 INT4: %.1f GB, published ~594 GB", kb / 1e9);
    weights = &kq;
    CHECK(plan(&k, 8, 8, 0, 0, 141, &e) == FW_OK, "kimi-k2 on 8 x 141 GB: %s", e.msg);
    CHECK(L.tp == 8 && L.pp == 1 && L.experts_per_rank_max == 48, "kimi-k2: tp %d pp %d", L.tp, L.pp);
    check_err(plan(&k, 8, 8, 0, 0, 70, &e), &e, "not enough memory per rank", "tp 8 x pp 2 fits", "kimi on 8 x 70");
    weights = NULL;
    fw_config_free(&k);
    fw_config_free(&v3);
    fw_config_free(&bf);
    fw_config_free(&w4);
}

int main(void) {
    test_tiny();
    test_v3();
    test_quantized();
    return check_result();
}
