/* config.json parsing: the golden configs, a 671B-style config with the published
 * keys, and refusals that must name the file and key. */
#define _POSIX_C_SOURCE 200809L  /* strdup, mmap, truncate */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/config.h"
#include "tests/check.h"

/* The published DeepSeek-V3 (671B) config.json, less a few unused keys, plus
 * one unknown key that must be ignored. %s slots: q_lora_rank value, scoring_func
 * line. */
static const char *v3_671b_fmt =
    "{\n"
    "  \"architectures\": [\"DeepseekV3ForCausalLM\"],\n"
    "  \"attention_bias\": false, \"attention_dropout\": 0.0,\n"
    "  \"auto_map\": {\"AutoConfig\": \"configuration_deepseek.DeepseekV3Config\"},\n"
    "  \"aux_loss_alpha\": 0.001, \"bos_token_id\": 0, \"eos_token_id\": 1, \"ep_size\": 1,\n"
    "  \"first_k_dense_replace\": 3, \"hidden_act\": \"silu\", \"hidden_size\": 7168,\n"
    "  \"initializer_range\": 0.02, \"intermediate_size\": 18432, \"kv_lora_rank\": 512,\n"
    "  \"max_position_embeddings\": 163840, \"model_type\": \"deepseek_v3\",\n"
    "  \"moe_intermediate_size\": 2048, \"moe_layer_freq\": 1, \"n_group\": 8,\n"
    "  \"n_routed_experts\": 256, \"n_shared_experts\": 1, \"norm_topk_prob\": true,\n"
    "  \"num_attention_heads\": 128, \"num_experts_per_tok\": 8, \"num_hidden_layers\": 61,\n"
    "  \"num_key_value_heads\": 128, \"num_nextn_predict_layers\": 1,\n"
    "  \"q_lora_rank\": %s, \"qk_nope_head_dim\": 128, \"qk_rope_head_dim\": 64,\n"
    "  \"quantization_config\": {\"activation_scheme\": \"dynamic\", \"fmt\": \"e4m3\",\n"
    "    \"quant_method\": \"fp8\", \"weight_block_size\": [128, 128]},\n"
    "  \"rms_norm_eps\": 1e-06,\n"
    "  \"rope_scaling\": {\"beta_fast\": 32, \"beta_slow\": 1, \"factor\": 40,\n"
    "    \"mscale\": 1.0, \"mscale_all_dim\": 1.0,\n"
    "    \"original_max_position_embeddings\": 4096, \"type\": \"yarn\"},\n"
    "  \"rope_theta\": 10000, \"routed_scaling_factor\": 2.5,\n"
    "  %s\n"
    "  \"seq_aux\": true, \"tie_word_embeddings\": false, \"topk_group\": 4,\n"
    "  \"topk_method\": \"noaux_tc\", \"v_head_dim\": 128,\n"
    "  \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.33.1\",\n"
    "  \"use_cache\": true, \"vocab_size\": 129280,\n"
    "  \"some_future_key\": {\"nested\": [1, 2, 3]}\n"
    "}\n";

static char *v3_text(const char *q_lora, const char *scoring_line) {
    size_t n = strlen(v3_671b_fmt) + strlen(q_lora) + strlen(scoring_line) + 1;
    char *s = malloc(n);
    snprintf(s, n, v3_671b_fmt, q_lora, scoring_line);
    return s;
}

/* Replaces the first occurrence of `from` in text with `to` (new string). */
static char *replace(const char *text, const char *from, const char *to) {
    const char *p = strstr(text, from);
    if (!p) return NULL;
    size_t n = strlen(text) - strlen(from) + strlen(to) + 1;
    char *s = malloc(n);
    snprintf(s, n, "%.*s%s%s", (int)(p - text), text, to, p + strlen(from));
    return s;
}

static bool rel_close(double a, double b, double tol) { return fabs(a - b) <= tol * fabs(b); }

static void check_golden(const char *shared, const char *name, bool fp8) {
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/%s/config.json", shared, name);
    fw_config c;
    fw_err e = {{0}};
    int rc = fw_config_load(&c, path, &e);
    CHECK(rc == FW_OK, "%s: %s", name, e.msg);
    if (rc != FW_OK) return;
    CHECK(c.hidden_size == 256, "%s hidden %lld", name, (long long)c.hidden_size);
    CHECK(c.num_hidden_layers == 3, "%s layers %d", name, c.num_hidden_layers);
    CHECK(c.vocab_size == 2048, "%s vocab", name);
    CHECK(c.num_attention_heads == 4 && c.num_key_value_heads == 4, "%s heads", name);
    CHECK(c.q_lora_rank == 128, "%s q_lora %d", name, c.q_lora_rank);
    CHECK(c.kv_lora_rank == 64, "%s kv_lora %d", name, c.kv_lora_rank);
    CHECK(c.qk_nope_head_dim == 32 && c.qk_rope_head_dim == 16 && c.v_head_dim == 32, "%s head dims", name);
    CHECK(fw_config_qk_head_dim(&c) == 48, "%s qk_head_dim", name);
    CHECK(c.n_routed_experts == 16 && c.n_shared_experts == 1 && c.num_experts_per_tok == 4,
          "%s experts", name);
    CHECK(c.n_group == 4 && c.topk_group == 2, "%s groups %d %d", name, c.n_group, c.topk_group);
    CHECK(c.first_k_dense_replace == 1, "%s first_k_dense", name);
    CHECK(c.moe_layer_freq == 1, "%s moe_layer_freq default", name);
    CHECK(c.norm_topk_prob, "%s norm_topk_prob", name);
    CHECK(c.routed_scaling_factor == 2.5, "%s routed_scaling_factor", name);
    CHECK(c.intermediate_size == 512 && c.moe_intermediate_size == 128, "%s ffn sizes", name);
    CHECK(!fw_config_layer_is_moe(&c, 0) && fw_config_layer_is_moe(&c, 1) && fw_config_layer_is_moe(&c, 2),
          "%s moe layers", name);
    CHECK(c.yarn.enabled, "%s yarn", name);
    CHECK(c.yarn.factor == 4.0 && c.yarn.original_max_position == 64, "%s yarn factor/orig", name);
    CHECK(c.yarn.beta_fast == 32 && c.yarn.beta_slow == 1, "%s yarn betas", name);
    CHECK(c.yarn.mscale == 1.0 && c.yarn.mscale_all_dim == 1.0, "%s yarn mscale", name);
    CHECK(c.rope_theta == 10000.0, "%s rope_theta %g", name, c.rope_theta);
    CHECK(c.max_position_embeddings == 256, "%s max_pos", name);
    CHECK(c.rms_norm_eps == 1e-6, "%s eps", name);
    CHECK(c.fp8 == fp8, "%s fp8 %d", name, c.fp8);
    if (fp8) CHECK(c.fp8_block[0] == 128 && c.fp8_block[1] == 128, "%s block", name);
    CHECK(!c.tie_word_embeddings && c.num_nextn_predict_layers == 0, "%s tie/mtp", name);
    CHECK(c.bos_token_id == 0 && c.eos_token_id == 1, "%s bos/eos", name);
    CHECK(c.json && strstr(c.json, "\"hidden_size\""), "%s json kept", name);
    double want = pow(48.0, -0.5) * pow(0.1 * log(4.0) + 1.0, 2.0);
    CHECK(rel_close(fw_config_softmax_scale(&c), want, 1e-12), "%s softmax scale %.17g want %.17g", name,
          fw_config_softmax_scale(&c), want);
    fw_config_free(&c);
    CHECK(c.json == NULL, "free clears");
}

/* Parses text and expects an error mentioning every non-NULL needle. */
static void expect_error(const char *what, const char *text, const char *n1, const char *n2) {
    fw_config c;
    fw_err e = {{0}};
    int rc = fw_config_parse(&c, text, "/some/dir/config.json", &e);
    CHECK(rc == FW_ERR, "%s: accepted", what);
    if (rc == FW_OK) {
        fw_config_free(&c);
        return;
    }
    CHECK(strstr(e.msg, "/some/dir/config.json") != NULL, "%s: file not named: %s", what, e.msg);
    if (n1) CHECK(strstr(e.msg, n1) != NULL, "%s: '%s' not in: %s", what, n1, e.msg);
    if (n2) CHECK(strstr(e.msg, n2) != NULL, "%s: '%s' not in: %s", what, n2, e.msg);
    CHECK(c.json == NULL, "%s: json left after error", what);
}

/* Applies replace() to the default 671B text and expects an error. */
static void expect_error_edit(const char *what, const char *from, const char *to, const char *n1,
                              const char *n2) {
    char *base = v3_text("1536", "");
    char *t = replace(base, from, to);
    CHECK(t != NULL, "%s: pattern '%s' not in base text", what, from);
    if (t) expect_error(what, t, n1, n2);
    free(t);
    free(base);
}

static void check_671b(void) {
    char *t = v3_text("1536", "\"scoring_func\": \"sigmoid\",");
    fw_config c;
    fw_err e = {{0}};
    int rc = fw_config_parse(&c, t, "671b/config.json", &e);
    CHECK(rc == FW_OK, "671B: %s", e.msg);
    if (rc == FW_OK) {
        CHECK(c.vocab_size == 129280 && c.hidden_size == 7168 && c.num_hidden_layers == 61, "671B dims");
        CHECK(c.q_lora_rank == 1536 && c.kv_lora_rank == 512, "671B lora");
        CHECK(c.n_routed_experts == 256 && c.n_group == 8 && c.topk_group == 4 && c.num_experts_per_tok == 8,
              "671B moe");
        CHECK(c.first_k_dense_replace == 3 && !fw_config_layer_is_moe(&c, 2) && fw_config_layer_is_moe(&c, 3),
              "671B dense layers");
        CHECK(c.yarn.enabled && c.yarn.factor == 40 && c.yarn.original_max_position == 4096, "671B yarn");
        CHECK(c.fp8 && c.num_nextn_predict_layers == 1, "671B fp8/mtp");
        double want = pow(192.0, -0.5) * pow(0.1 * log(40.0) + 1.0, 2.0);
        CHECK(rel_close(fw_config_softmax_scale(&c), want, 1e-9), "671B scale %.17g want %.17g",
              fw_config_softmax_scale(&c), want);
        fw_config_free(&c);
    }
    free(t);

    /* q_lora_rank null: plain q_proj. */
    t = v3_text("null", "");
    rc = fw_config_parse(&c, t, "v2lite/config.json", &e);
    CHECK(rc == FW_OK && c.q_lora_rank == 0, "q_lora_rank null: %s", e.msg);
    if (rc == FW_OK) fw_config_free(&c);
    free(t);

    /* Integers written as reals are fine where exact. */
    char *base = v3_text("1536", "");
    char *t2 = replace(base, "\"hidden_size\": 7168", "\"hidden_size\": 7168.0");
    rc = fw_config_parse(&c, t2, "real/config.json", &e);
    CHECK(rc == FW_OK && c.hidden_size == 7168, "hidden_size 7168.0: %s", e.msg);
    if (rc == FW_OK) fw_config_free(&c);
    free(t2);

    /* No rope_scaling: YaRN off, plain scale. */
    t2 = replace(base,
                 "{\"beta_fast\": 32, \"beta_slow\": 1, \"factor\": 40,\n"
                 "    \"mscale\": 1.0, \"mscale_all_dim\": 1.0,\n"
                 "    \"original_max_position_embeddings\": 4096, \"type\": \"yarn\"}",
                 "null");
    CHECK(t2 != NULL, "rope_scaling pattern");
    rc = t2 ? fw_config_parse(&c, t2, "noyarn/config.json", &e) : FW_ERR;
    CHECK(rc == FW_OK && !c.yarn.enabled, "rope_scaling null: %s", e.msg);
    if (rc == FW_OK) {
        CHECK(rel_close(fw_config_softmax_scale(&c), pow(192.0, -0.5), 1e-12), "no-yarn scale");
        fw_config_free(&c);
    }
    free(t2);
    free(base);
}

/* Kimi-K2's config.json: the same architecture under model_type "kimi_k2", with
 * 64 heads, 384 experts in one group. */
static void check_kimi(void) {
    static const char *const edits[][2] = {
        {"\"model_type\": \"deepseek_v3\"", "\"model_type\": \"kimi_k2\""},
        {"\"n_group\": 8", "\"n_group\": 1"},
        {"\"topk_group\": 4", "\"topk_group\": 1"},
        {"\"n_routed_experts\": 256", "\"n_routed_experts\": 384"},
        {"\"num_attention_heads\": 128", "\"num_attention_heads\": 64"},
        {"\"num_key_value_heads\": 128", "\"num_key_value_heads\": 64"},
        {"\"first_k_dense_replace\": 3", "\"first_k_dense_replace\": 1"},
        {"\"routed_scaling_factor\": 2.5", "\"routed_scaling_factor\": 2.827"},
    };
    char *t = v3_text("1536", "");
    for (size_t i = 0; t && i < sizeof edits / sizeof edits[0]; i++) {
        char *n = replace(t, edits[i][0], edits[i][1]);
        CHECK(n != NULL, "kimi: '%s' not in the text", edits[i][0]);
        free(t);
        t = n;
    }
    fw_config c;
    fw_err e = {{0}};
    int rc = t ? fw_config_parse(&c, t, "kimi/config.json", &e) : FW_ERR;
    CHECK(rc == FW_OK, "kimi_k2: %s", e.msg);
    if (rc == FW_OK) {
        CHECK(c.n_routed_experts == 384 && c.n_group == 1 && c.topk_group == 1 && c.num_attention_heads == 64 &&
              c.first_k_dense_replace == 1 && c.routed_scaling_factor == 2.827, "kimi_k2 values");
        fw_config_free(&c);
    }
    free(t);
}

/* DeepSeek-V3.2-Exp's config.json: the 671B text under model_type deepseek_v32
 * with the indexer keys. Parsed, but refused as not runnable until sparse
 * attention exists (dense MLA would give wrong logits silently). */
#define V32_KEYS "\"index_n_heads\": 64, \"index_head_dim\": 128, \"index_topk\": 2048,"
static char *v32_text(const char *keys) {
    char *t = v3_text("1536", "");
    char *line = malloc(strlen(keys) + 64);
    sprintf(line, "\"model_type\": \"deepseek_v32\", %s", keys);
    char *n = t ? replace(t, "\"model_type\": \"deepseek_v3\",", line) : NULL;
    free(line);
    free(t);
    return n;
}

static void expect_v32_error(const char *keys, const char *want1, const char *want2) {
    char *t = v32_text(keys);
    fw_config c;
    fw_err e = {{0}};
    int rc = t ? fw_config_parse(&c, t, "v32/config.json", &e) : FW_OK;
    CHECK(rc == FW_ERR && strstr(e.msg, "v32/config.json") && strstr(e.msg, want1) && (!want2 || strstr(e.msg, want2)),
          "v32 keys '%s': %s", keys, e.msg);
    if (rc == FW_OK) fw_config_free(&c);
    free(t);
}

static void check_v32(void) {
    char *t = v32_text(V32_KEYS);
    fw_config c;
    fw_err e = {{0}};
    int rc = t ? fw_config_parse(&c, t, "v32/config.json", &e) : FW_ERR;
    CHECK(rc == FW_OK, "deepseek_v32: %s", e.msg);
    if (rc == FW_OK) {
        CHECK(c.index_n_heads == 64 && c.index_head_dim == 128 && c.index_topk == 2048, "v32 index keys %d %d %d",
              c.index_n_heads, c.index_head_dim, c.index_topk);
        CHECK(fw_config_has_indexer(&c) && c.q_lora_rank == 1536 && c.num_hidden_layers == 61, "v32 values");
        /* the cache row holds the indexer's key beside the latent and k_pe */
        CHECK(fw_config_kv_width(&c) == 512 + 64 + 128, "v32 cache width %lld", (long long)fw_config_kv_width(&c));
        fw_config_free(&c);
    }
    free(t);

    /* V3 stays dense and runnable. */
    t = v3_text("1536", "");
    rc = fw_config_parse(&c, t, "v3/config.json", &e);
    CHECK(rc == FW_OK && !fw_config_has_indexer(&c) && c.index_topk == 0 && c.index_n_heads == 0 &&
              fw_config_kv_width(&c) == 512 + 64,
          "v3 has no indexer: %s", e.msg);
    if (rc == FW_OK) fw_config_free(&c);
    free(t);

    expect_v32_error("", "index_n_heads", "missing");
    expect_v32_error("\"index_n_heads\": 64, \"index_head_dim\": 128,", "index_topk", "missing");
    expect_v32_error("\"index_n_heads\": 64, \"index_head_dim\": 96, \"index_topk\": 2048,", "index_head_dim",
                     "power of two");
    expect_v32_error("\"index_n_heads\": 64, \"index_head_dim\": 64, \"index_topk\": 2048,", "index_head_dim",
                     "qk_rope_head_dim");
    expect_v32_error("\"index_n_heads\": 64, \"index_head_dim\": 128, \"index_topk\": 0,", "index_topk",
                     "positive");
    expect_v32_error("\"index_n_heads\": \"64\", \"index_head_dim\": 128, \"index_topk\": 2048,", "index_n_heads",
                     "integer");

    /* An index key under another model_type still means an indexer: never silently dense. */
    char *v3 = v3_text("1536", "\"index_topk\": 2048,");
    rc = fw_config_parse(&c, v3, "v3idx/config.json", &e);
    CHECK(rc == FW_ERR && strstr(e.msg, "index_n_heads") && strstr(e.msg, "missing"), "v3 + index_topk: %s", e.msg);
    if (rc == FW_OK) fw_config_free(&c);
    free(v3);

    /* The indexer reads the q latent. */
    char *q = v32_text(V32_KEYS);
    char *noq = q ? replace(q, "\"q_lora_rank\": 1536", "\"q_lora_rank\": null") : NULL;
    rc = noq ? fw_config_parse(&c, noq, "v32/config.json", &e) : FW_OK;
    CHECK(rc == FW_ERR && strstr(e.msg, "q_lora_rank"), "v32 without q_lora: %s", e.msg);
    if (rc == FW_OK) fw_config_free(&c);
    free(noq);
    free(q);
}

/* compressed-tensors pack-quantized INT4 (Kimi-K2-Thinking's quantization_config
 * on the 671B text): accepted as written; each thing furrow does not implement
 * refused naming the field, each malformed field named. */
static const char *ct_config =
    "\"quantization_config\": {\"config_groups\": {\"group_0\": {\"input_activations\": null,"
    " \"output_activations\": null, \"targets\": [\"Linear\"], \"weights\": {\"actorder\": null,"
    " \"block_structure\": null, \"dynamic\": false, \"group_size\": 32, \"num_bits\": 4, \"observer\": \"minmax\","
    " \"observer_kwargs\": {}, \"strategy\": \"group\", \"symmetric\": true, \"type\": \"int\"}}},"
    " \"format\": \"pack-quantized\", \"ignore\": [\"lm_head\", \"re:.*self_attn.*\", \"re:.*shared_experts.*\","
    " \"re:.*mlp\\\\.(gate|up|gate_up|down)_proj.*\"], \"kv_cache_scheme\": null,"
    " \"quant_method\": \"compressed-tensors\", \"quantization_status\": \"compressed\"},";

static char *ct_text(void) {
    char *base = v3_text("1536", "");
    char *t = replace(base, "\"quantization_config\": {\"activation_scheme\": \"dynamic\", \"fmt\": \"e4m3\",\n"
                            "    \"quant_method\": \"fp8\", \"weight_block_size\": [128, 128]},", ct_config);
    free(base);
    return t;
}

static void check_ct(void) {
    char *t = ct_text();
    CHECK(t != NULL, "ct: the fp8 quantization_config is not in the base text");
    if (!t) return;
    fw_config c;
    fw_err e = {{0}};
    int rc = fw_config_parse(&c, t, "ct/config.json", &e);
    CHECK(rc == FW_OK, "compressed-tensors config: %s", e.msg);
    if (rc == FW_OK) {
        CHECK(c.int4 && !c.fp8, "compressed-tensors config: int4 %d fp8 %d", c.int4, c.fp8);
        fw_config_free(&c);
    }
    static const char *const cases[][4] = {  /* what, from, to, the field the message names */
        {"asymmetric", "\"symmetric\": true", "\"symmetric\": false", "weights.symmetric is not true: asymmetric"},
        {"input activations", "\"input_activations\": null", "\"input_activations\": {\"num_bits\": 8}",
         "group_0.input_activations is set: activation quantization"},
        {"output activations", "\"output_activations\": null", "\"output_activations\": {\"num_bits\": 8}",
         "group_0.output_activations is set"},
        {"KV-cache scheme", "\"kv_cache_scheme\": null", "\"kv_cache_scheme\": {\"num_bits\": 8}",
         "kv_cache_scheme is set: KV-cache quantization"},
        {"8 bits", "\"num_bits\": 4", "\"num_bits\": 8", "weights.num_bits is 8"},
        {"float weights", "\"type\": \"int\"", "\"type\": \"float\"", "weights.type must be \"int\""},
        {"group of 12", "\"group_size\": 32", "\"group_size\": 12", "weights.group_size must be a positive multiple of 8"},
        {"no group size", "\"group_size\": 32", "\"group_size\": null", "weights.group_size must be"},
        {"tensor strategy", "\"strategy\": \"group\"", "\"strategy\": \"tensor\"", "weights.strategy is 'tensor'"},
        {"dynamic", "\"dynamic\": false", "\"dynamic\": true", "weights.dynamic is true"},
        {"act order", "\"actorder\": null", "\"actorder\": \"group\"", "weights.actorder is set"},
        {"block structure", "\"block_structure\": null", "\"block_structure\": [128, 128]", "weights.block_structure"},
        {"no weights", "\"weights\": {", "\"weights\": null, \"w\": {", "group_0.weights is missing or null"},
        {"no targets", "\"targets\": [\"Linear\"]", "\"targets\": []", "group_0.targets' is an empty list"},
        {"bad regex", "\"re:.*self_attn.*\"", "\"re:(self_attn\"", "ignore entry 're:(self_attn' is not a valid"},
        {"format", "\"format\": \"pack-quantized\"", "\"format\": \"int-quantized\"", "format is 'int-quantized'"},
        {"status", "\"quantization_status\": \"compressed\"", "\"quantization_status\": \"frozen\"",
         "quantization_status must be \"compressed\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *bad = replace(t, cases[i][1], cases[i][2]);
        CHECK(bad != NULL, "ct %s: '%s' not in the text", cases[i][0], cases[i][1]);
        if (bad) expect_error(cases[i][0], bad, cases[i][3], "quantization_config");
        free(bad);
    }
    free(t);
}

static void check_refusals(void) {
    char *t = v3_text("1536", "\"scoring_func\": \"softmax\",");
    expect_error("softmax", t, "scoring_func 'softmax' (DeepSeek-V2 gating) is not supported", NULL);
    free(t);
    expect_error("bad json", "{\"hidden_size\": 7168,,}", "invalid JSON", NULL);
    expect_error("not object", "[1, 2]", "object", NULL);
    expect_error("empty", "", "invalid JSON", NULL);

    expect_error_edit("missing hidden_size", "\"hidden_size\": 7168,", "", "hidden_size", "missing");
    expect_error_edit("missing kv_lora_rank", "\"kv_lora_rank\": 512,", "", "kv_lora_rank", "missing");
    expect_error_edit("missing q_lora_rank", "\"q_lora_rank\": 1536,", "", "q_lora_rank", "missing");
    expect_error_edit("missing routed_scaling_factor", "\"routed_scaling_factor\": 2.5,", "",
                      "routed_scaling_factor", "missing");
    expect_error_edit("missing yarn factor", "\"factor\": 40,", "", "rope_scaling.factor", "missing");
    expect_error_edit("topk greedy", "\"noaux_tc\"", "\"greedy\"", "topk_method 'greedy'", NULL);
    expect_error_edit("topk group_limited_greedy", "\"noaux_tc\"", "\"group_limited_greedy\"",
                      "topk_method 'group_limited_greedy'", NULL);
    expect_error_edit("rope linear", "\"type\": \"yarn\"", "\"type\": \"linear\"", "rope_scaling type 'linear'",
                      NULL);
    expect_error_edit("quant awq", "\"quant_method\": \"fp8\"", "\"quant_method\": \"awq\"", "quant_method 'awq'",
                      NULL);
    expect_error_edit("block 64", "[128, 128]", "[64, 128]", "weight_block_size", NULL);
    expect_error_edit("hidden_act", "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", "hidden_act 'gelu'",
                      NULL);
    expect_error_edit("model_type", "\"deepseek_v3\"", "\"llama\"", "model_type 'llama'", NULL);
    expect_error_edit("n_group divides", "\"n_group\": 8", "\"n_group\": 7", "n_group", NULL);
    expect_error_edit("topk_group > n_group", "\"topk_group\": 4", "\"topk_group\": 9", "topk_group", NULL);
    expect_error_edit("experts_per_tok > E", "\"num_experts_per_tok\": 8", "\"num_experts_per_tok\": 300",
                      "num_experts_per_tok", NULL);
    expect_error_edit("kv heads", "\"num_key_value_heads\": 128", "\"num_key_value_heads\": 16",
                      "num_key_value_heads", NULL);
    expect_error_edit("negative hidden", "\"hidden_size\": 7168", "\"hidden_size\": -1", "hidden_size", NULL);
    expect_error_edit("fractional layers", "\"num_hidden_layers\": 61", "\"num_hidden_layers\": 61.5",
                      "num_hidden_layers", NULL);
    expect_error_edit("string layers", "\"num_hidden_layers\": 61", "\"num_hidden_layers\": \"61\"",
                      "num_hidden_layers", NULL);
    expect_error_edit("huge layers", "\"num_hidden_layers\": 61", "\"num_hidden_layers\": 1e300",
                      "num_hidden_layers", NULL);
    /* Absurd counts are refused by name before anything is sized from them. */
    expect_error_edit("INT_MAX layers", "\"num_hidden_layers\": 61", "\"num_hidden_layers\": 2147483647",
                      "num_hidden_layers", "4096");
    expect_error_edit("1e9 experts", "\"n_routed_experts\": 256", "\"n_routed_experts\": 1000000000",
                      "n_routed_experts", "65536");
    expect_error_edit("INT_MAX MTP layers", "\"num_nextn_predict_layers\": 1",
                      "\"num_nextn_predict_layers\": 2147483647", "num_nextn_predict_layers", NULL);
    expect_error_edit("INT_MAX heads", "\"num_attention_heads\": 128", "\"num_attention_heads\": 2147483647",
                      "num_attention_heads", NULL);
    expect_error_edit("first_k_dense > layers", "\"first_k_dense_replace\": 3", "\"first_k_dense_replace\": 62",
                      "first_k_dense_replace", NULL);
    expect_error_edit("odd rope dim", "\"qk_rope_head_dim\": 64", "\"qk_rope_head_dim\": 63", "qk_rope_head_dim",
                      NULL);
    expect_error_edit("rope_theta disagree", "\"type\": \"yarn\"", "\"type\": \"yarn\", \"rope_theta\": 50000",
                      "rope_theta", NULL);
    expect_error_edit("rope_scaling not object", "\"rope_scaling\": {", "\"rope_scaling\": 5, \"x\": {",
                      "rope_scaling", NULL);
}

static void check_load_errors(const char *tmp) {
    fw_config c;
    fw_err e = {{0}};
    char path[4096];
    snprintf(path, sizeof path, "%s/nonexistent/config.json", tmp);
    CHECK(fw_config_load(&c, path, &e) == FW_ERR && strstr(e.msg, path), "missing file: %s", e.msg);

    snprintf(path, sizeof path, "%s/bad.json", tmp);
    FILE *f = fopen(path, "w");
    fputs("{\"hidden_size\": 7168, \"vocab_size\": }", f);
    fclose(f);
    CHECK(fw_config_load(&c, path, &e) == FW_ERR && strstr(e.msg, path) && strstr(e.msg, "invalid JSON"),
          "bad json file: %s", e.msg);

    /* A NUL byte must not let a valid prefix through. */
    snprintf(path, sizeof path, "%s/nul.json", tmp);
    f = fopen(path, "wb");
    fwrite("{}\0{", 1, 4, f);
    fclose(f);
    CHECK(fw_config_load(&c, path, &e) == FW_ERR && strstr(e.msg, path), "nul file: %s", e.msg);

    CHECK(fw_config_load(&c, tmp, &e) == FW_ERR && strstr(e.msg, tmp), "directory as config: %s", e.msg);
}

int main(void) {
    const char *shared = getenv("FURROW_SHARED");
    const char *tmp = getenv("FURROW_TMP");
    if (!tmp) tmp = ".";
    check_671b();
    check_kimi();
    check_v32();
    check_ct();
    check_refusals();
    check_load_errors(tmp);

    struct stat st;
    char g[4096];
    snprintf(g, sizeof g, "%s/golden", shared ? shared : "");
    if (!shared || stat(g, &st) != 0) {
        if (check_failures_) return check_result();
        SKIP("FURROW_SHARED/golden not found; golden configs not checked");
    }
    check_golden(shared, "tiny-a-bf16", false);
    check_golden(shared, "tiny-a-fp8", true);
    return check_result();
}
