#include "io/synth.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "io/checkpoint.h"
#include "io/convert_quant.h"
#include "io/model_tensors.h"
#include "io/preset_kimi.h"

/* ---- presets ---- */

const char *const fw_synth_preset_names[] = {"tiny", "tiny-v32", "small", "deepseek-v3", "deepseek-v3.2", "kimi-k2", NULL};

static void preset_common(fw_config *c) {
    memset(c, 0, sizeof *c);
    c->moe_layer_freq = 1;
    c->norm_topk_prob = true;
    c->routed_scaling_factor = 2.5;
    c->n_shared_experts = 1;
    c->rms_norm_eps = 1e-6;
    c->rope_theta = 10000.0;
    c->yarn = (fw_yarn){.enabled = true, .beta_fast = 32, .beta_slow = 1, .mscale = 1, .mscale_all_dim = 1};
    c->bos_token_id = 0;
    c->eos_token_id = 1;
    c->fp8_block[0] = c->fp8_block[1] = 128;
}

static void preset_tiny(fw_config *c) {   /* shared/golden tiny-a */
    preset_common(c);
    c->vocab_size = 2048, c->hidden_size = 256, c->intermediate_size = 512, c->moe_intermediate_size = 128;
    c->num_hidden_layers = 3, c->first_k_dense_replace = 1;
    c->num_attention_heads = c->num_key_value_heads = 4;
    c->n_routed_experts = 16, c->num_experts_per_tok = 4, c->n_group = 4, c->topk_group = 2;
    c->q_lora_rank = 128, c->kv_lora_rank = 64;
    c->qk_nope_head_dim = 32, c->qk_rope_head_dim = 16, c->v_head_dim = 32;
    c->max_position_embeddings = 256;
    c->yarn.factor = 4, c->yarn.original_max_position = 64;
}

/* tiny with DeepSeek-V3.2's indexer, as tests/golden_v32's checkpoints */
static void preset_tiny_v32(fw_config *c) {
    preset_tiny(c);
    c->index_n_heads = 8, c->index_head_dim = 128, c->index_topk = 32;
}

static void preset_small(fw_config *c) {  /* ~1.7 GB BF16: decode is bandwidth-bound */
    preset_common(c);
    c->vocab_size = 32768, c->hidden_size = 2048, c->intermediate_size = 5632, c->moe_intermediate_size = 1024;
    c->num_hidden_layers = 4, c->first_k_dense_replace = 1;
    c->num_attention_heads = c->num_key_value_heads = 16;
    c->n_routed_experts = 32, c->num_experts_per_tok = 4, c->n_group = 4, c->topk_group = 2;
    c->q_lora_rank = 512, c->kv_lora_rank = 512;
    c->qk_nope_head_dim = 128, c->qk_rope_head_dim = 64, c->v_head_dim = 128;
    c->max_position_embeddings = 4096;
    c->yarn.factor = 4, c->yarn.original_max_position = 1024;
}

static void preset_deepseek_v3(fw_config *c) {   /* inference/configs/config_671B.json */
    preset_common(c);
    c->vocab_size = 129280, c->hidden_size = 7168, c->intermediate_size = 18432, c->moe_intermediate_size = 2048;
    c->num_hidden_layers = 61, c->first_k_dense_replace = 3, c->num_nextn_predict_layers = 1;
    c->num_attention_heads = c->num_key_value_heads = 128;
    c->n_routed_experts = 256, c->num_experts_per_tok = 8, c->n_group = 8, c->topk_group = 4;
    c->q_lora_rank = 1536, c->kv_lora_rank = 512;
    c->qk_nope_head_dim = 128, c->qk_rope_head_dim = 64, c->v_head_dim = 128;
    c->max_position_embeddings = 163840;
    c->yarn.factor = 40, c->yarn.original_max_position = 4096;
    c->fp8 = true;
}

/* DeepSeek-V3.2(-Exp): V3's geometry with the lightning indexer (its config.json) */
static void preset_deepseek_v32(fw_config *c) {
    preset_deepseek_v3(c);
    c->index_n_heads = 64, c->index_head_dim = 128, c->index_topk = 2048;
}

const char *fw_synth_preset_weights(const char *name) {
    return strcmp(name, "kimi-k2") == 0 ? FW_PRESET_KIMI_K2_WEIGHTS : NULL;
}

int fw_synth_preset(const char *name, fw_config *out, fw_err *e) {
    fw_config c;
    if (!strcmp(name, "tiny")) preset_tiny(&c);
    else if (!strcmp(name, "tiny-v32")) preset_tiny_v32(&c);
    else if (!strcmp(name, "small")) preset_small(&c);
    else if (!strcmp(name, "deepseek-v3")) preset_deepseek_v3(&c);
    else if (!strcmp(name, "deepseek-v3.2")) preset_deepseek_v32(&c);
    else if (!strcmp(name, "kimi-k2")) fw_preset_kimi_k2(&c);
    else return fw_errf(e, "unknown preset '%s' (tiny, tiny-v32, small, deepseek-v3, deepseek-v3.2, kimi-k2)", name);
    if (fw_synth_config_json(&c, e)) return FW_ERR;
    *out = c;
    return FW_OK;
}

/* ---- config.json from the fields ---- */

static int set(json_t *o, const char *key, json_t *v) { return json_object_set_new(o, key, v); }

static int fill_json(json_t *r, const fw_config *c) {
    int bad = 0;
    const bool v32 = fw_config_has_indexer(c);
    if (!json_object_get(r, "architectures")) {
        json_t *a = json_array();
        bad |= json_array_append_new(a, json_string(v32 ? "DeepseekV32ForCausalLM" : "DeepseekV3ForCausalLM"));
        bad |= set(r, "architectures", a);
    }
    if (!json_object_get(r, "model_type")) bad |= set(r, "model_type", json_string(v32 ? "deepseek_v32" : "deepseek_v3"));
    if (v32) {
        bad |= set(r, "index_n_heads", json_integer(c->index_n_heads));
        bad |= set(r, "index_head_dim", json_integer(c->index_head_dim));
        bad |= set(r, "index_topk", json_integer(c->index_topk));
    }
    bad |= set(r, "vocab_size", json_integer(c->vocab_size));
    bad |= set(r, "hidden_size", json_integer(c->hidden_size));
    bad |= set(r, "intermediate_size", json_integer(c->intermediate_size));
    bad |= set(r, "moe_intermediate_size", json_integer(c->moe_intermediate_size));
    bad |= set(r, "num_hidden_layers", json_integer(c->num_hidden_layers));
    bad |= set(r, "num_nextn_predict_layers", json_integer(c->num_nextn_predict_layers));
    bad |= set(r, "num_attention_heads", json_integer(c->num_attention_heads));
    bad |= set(r, "num_key_value_heads", json_integer(c->num_attention_heads));
    bad |= set(r, "n_shared_experts", json_integer(c->n_shared_experts));
    bad |= set(r, "n_routed_experts", json_integer(c->n_routed_experts));
    bad |= set(r, "num_experts_per_tok", json_integer(c->num_experts_per_tok));
    bad |= set(r, "n_group", json_integer(c->n_group));
    bad |= set(r, "topk_group", json_integer(c->topk_group));
    bad |= set(r, "first_k_dense_replace", json_integer(c->first_k_dense_replace));
    bad |= set(r, "moe_layer_freq", json_integer(c->moe_layer_freq > 0 ? c->moe_layer_freq : 1));
    bad |= set(r, "routed_scaling_factor", json_real(c->routed_scaling_factor));
    bad |= set(r, "norm_topk_prob", json_boolean(c->norm_topk_prob));
    bad |= set(r, "scoring_func", json_string("sigmoid"));
    bad |= set(r, "topk_method", json_string("noaux_tc"));
    bad |= set(r, "q_lora_rank", c->q_lora_rank > 0 ? json_integer(c->q_lora_rank) : json_null());
    bad |= set(r, "kv_lora_rank", json_integer(c->kv_lora_rank));
    bad |= set(r, "qk_nope_head_dim", json_integer(c->qk_nope_head_dim));
    bad |= set(r, "qk_rope_head_dim", json_integer(c->qk_rope_head_dim));
    bad |= set(r, "v_head_dim", json_integer(c->v_head_dim));
    /* transformers' derived keys, kept in step when a re-saved config is edited */
    if (json_object_get(r, "qk_head_dim")) bad |= set(r, "qk_head_dim", json_integer(fw_config_qk_head_dim(c)));
    if (json_object_get(r, "head_dim")) bad |= set(r, "head_dim", json_integer(c->qk_rope_head_dim));
    bad |= set(r, "hidden_act", json_string("silu"));
    bad |= set(r, "rms_norm_eps", json_real(c->rms_norm_eps));
    bad |= set(r, "max_position_embeddings", json_integer(c->max_position_embeddings));
    bad |= set(r, "rope_theta", json_real(c->rope_theta));
    if (c->yarn.enabled) {
        json_t *y = json_object_get(r, "rope_scaling");
        if (!json_is_object(y)) {
            y = json_object();
            bad |= set(r, "rope_scaling", y);
        }
        bad |= set(y, "type", json_string("yarn"));
        if (json_object_get(y, "rope_type")) bad |= set(y, "rope_type", json_string("yarn"));
        if (json_object_get(y, "rope_theta")) bad |= set(y, "rope_theta", json_real(c->rope_theta));
        bad |= set(y, "factor", json_real(c->yarn.factor));
        bad |= set(y, "original_max_position_embeddings", json_integer(c->yarn.original_max_position));
        bad |= set(y, "beta_fast", json_real(c->yarn.beta_fast));
        bad |= set(y, "beta_slow", json_real(c->yarn.beta_slow));
        bad |= set(y, "mscale", json_real(c->yarn.mscale));
        bad |= set(y, "mscale_all_dim", json_real(c->yarn.mscale_all_dim));
    } else {
        bad |= set(r, "rope_scaling", json_null());
    }
    bad |= set(r, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
    bad |= set(r, "bos_token_id", json_integer(c->bos_token_id));
    bad |= set(r, "eos_token_id", json_integer(c->eos_token_id));
    bad |= set(r, "torch_dtype", json_string("bfloat16"));
    if (c->fp8) {
        json_t *q = json_object(), *b = json_array();
        bad |= set(q, "quant_method", json_string("fp8"));
        bad |= set(q, "fmt", json_string("e4m3"));
        bad |= set(q, "activation_scheme", json_string("dynamic"));
        bad |= json_array_append_new(b, json_integer(c->fp8_block[0] > 0 ? c->fp8_block[0] : 128));
        bad |= json_array_append_new(b, json_integer(c->fp8_block[1] > 0 ? c->fp8_block[1] : 128));
        bad |= set(q, "weight_block_size", b);
        bad |= set(r, "quantization_config", q);
    } else if (json_object_get(r, "quantization_config")) {
        bad |= json_object_del(r, "quantization_config");
    }
    return bad ? -1 : 0;
}

int fw_synth_config_json(fw_config *cfg, fw_err *e) {
    json_error_t je;
    json_t *root = cfg->json ? json_loads(cfg->json, 0, &je) : json_object();
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return fw_errf(e, "synthetic config: the stored config.json text is not a JSON object");
    }
    char *text = NULL;
    if (fill_json(root, cfg) || !(text = json_dumps(root, JSON_INDENT(2)))) {
        json_decref(root);
        return fw_errf(e, "synthetic config: out of memory");
    }
    json_decref(root);
    fw_config parsed;
    int rc = fw_config_parse(&parsed, text, "synthetic config", e);
    free(text);
    if (rc) return FW_ERR;
    fw_config_free(cfg);
    *cfg = parsed;
    return FW_OK;
}

/* ---- values ---- */

static inline uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1): 24 random bits, centred in their interval (never 0 for log). */
static inline float uniform01(uint64_t *s) { return ((float)(splitmix64(s) >> 40) + 0.5f) * (1.0f / 16777216.0f); }

/* Approximately standard normal: the sum of four 16-bit uniforms (Irwin-Hall),
 * centred and scaled. One generator call per value, no log/sin: synth writes
 * gigabytes, and random weights need a bell shape, not exact tails (|z| < 3.47). */
static inline uint32_t normal_sum(uint64_t *s) {
    uint64_t r = splitmix64(s);
    return (uint32_t)(r & 0xFFFF) + (uint32_t)((r >> 16) & 0xFFFF) + (uint32_t)((r >> 32) & 0xFFFF) +
           (uint32_t)(r >> 48);
}

static inline float normal_of_sum(uint32_t sum) {
    return ((float)sum - 131070.0f) * (1.0f / 37837.23f);   /* mean 4 * 32767.5, sd 65536 / sqrt(3) */
}

static inline float normal(uint64_t *s) { return normal_of_sum(normal_sum(s)); }

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7FFFu + ((u >> 16) & 1u);   /* round to nearest even */
    return (uint16_t)(u >> 16);
}

/* e4m3fn (bias 7, no inf, max 448), round to nearest even, saturating. */
static inline uint8_t f32_to_e4m3(float x) {
    uint8_t sign = signbit(x) ? 0x80 : 0;
    float a = fabsf(x);
    if (a != a) return 0x7F;
    if (a >= 448.0f) return sign | 0x7E;
    if (a < 0.015625f) return sign | (uint8_t)rintf(a * 512.0f);   /* subnormal: m * 2^-9 (8 -> 2^-6) */
    int k;
    frexpf(a, &k);
    int ex = k - 1, m = (int)rintf((ldexpf(a, -ex) - 1.0f) * 8.0f);
    if (m == 8) m = 0, ex++;
    int code = ((ex + 7) << 3) | m;
    return sign | (uint8_t)(code > 0x7E ? 0x7E : code);
}

#define BLOCK_ROWS 64

/* An FP8 weight is f32_to_e4m3(64 * normal()), a function of the four uniforms'
 * sum alone: its code for every sum, made once by the same float operations,
 * turns the conversion into a lookup (bit for bit the same bytes, several
 * times faster; the 671B model is 670 GB of them). */
#define NORMAL_SUMS (4 * 65535 + 1)
static uint8_t e4m3_of_sum[NORMAL_SUMS];
static pthread_once_t e4m3_once = PTHREAD_ONCE_INIT;

static void e4m3_table_init(void) {
    for (uint32_t i = 0; i < NORMAL_SUMS; i++) e4m3_of_sum[i] = f32_to_e4m3(64.0f * normal_of_sum(i));
}

/* FILL_WORDS: INT4 words (every nibble uniform); FILL_I8: INT8 values (uniform
 * over [-128, 127]); FILL_GSCALE: their bf16 scales around sigma. */
typedef enum fill_kind { FILL_ONES, FILL_BIAS, FILL_BF16, FILL_FP8, FILL_WORDS, FILL_I8, FILL_GSCALE } fill_kind;

/* Fills rows [r0, r1) of a [rows, cols] tensor from the stream of their block
 * (r0 starts a block) into out. */
static void fill_rows(fill_kind kind, uint64_t key, int64_t r0, int64_t r1, int64_t cols, float sigma, void *out) {
    uint64_t s = key ^ ((uint64_t)(r0 / BLOCK_ROWS) * 0xD1B54A32D192ED03ull);
    splitmix64(&s);
    int64_t n = (r1 - r0) * cols, off = 0; /* out holds rows r0 .. r1 - 1 */
    if (kind == FILL_BF16) {
        uint16_t *o = (uint16_t *)out + off;
        for (int64_t i = 0; i < n; i++) o[i] = f32_to_bf16(sigma * normal(&s));
    } else if (kind == FILL_FP8) {
        uint8_t *o = (uint8_t *)out + off;
        pthread_once(&e4m3_once, e4m3_table_init);
        for (int64_t i = 0; i < n; i++) o[i] = e4m3_of_sum[normal_sum(&s)];
    } else if (kind == FILL_WORDS) {
        uint32_t *o = (uint32_t *)out + off;
        for (int64_t i = 0; i < n; i++) o[i] = (uint32_t)splitmix64(&s);
    } else if (kind == FILL_I8) {
        int8_t *o = (int8_t *)out + off;
        for (int64_t i = 0; i < n; i++) o[i] = (int8_t)(splitmix64(&s) >> 56);
    } else if (kind == FILL_GSCALE) {
        uint16_t *o = (uint16_t *)out + off;
        for (int64_t i = 0; i < n; i++) o[i] = f32_to_bf16(sigma * (0.75f + 0.5f * uniform01(&s)));
    }
}

/* Bytes of one element of a fill kind's tensor. */
static size_t fill_size(fill_kind kind) {
    return kind == FILL_WORDS || kind == FILL_BIAS ? 4 : kind == FILL_FP8 || kind == FILL_I8 ? 1 : 2;
}

/* A whole [rows, cols] tensor, block by block (threads only for big tensors: a
 * team per small tensor costs more than it saves). */
static void fill_tensor(fill_kind kind, uint64_t key, int64_t rows, int64_t cols, float sigma, void *data) {
    const int64_t nblocks = (rows + BLOCK_ROWS - 1) / BLOCK_ROWS;
    const size_t es = fill_size(kind);
#pragma omp parallel for schedule(dynamic, 4) if (rows * cols >= (1 << 20))
    for (int64_t b = 0; b < nblocks; b++) {
        int64_t r0 = b * BLOCK_ROWS, r1 = r0 + BLOCK_ROWS < rows ? r0 + BLOCK_ROWS : rows;
        fill_rows(kind, key, r0, r1, cols, sigma, (char *)data + (size_t)(r0 * cols) * es);
    }
}

/* The group of weight t under q (INT8: its columns), 0 when q leaves it alone. */
static int64_t quant_group(const fw_quant_spec *q, const fw_model_tensor *t) {
    if (!q || t->ndim != 2 || !fw_quant_spec_covers(q, t->name)) return 0;
    return q->type == FW_WTYPE_INT4 ? q->group : t->shape[1];
}

/* Standard deviation of q uniform over INT4's or INT8's range: sqrt((4^bits - 1) / 12). */
static float q_sd(fw_wtype type) { return sqrtf(type == FW_WTYPE_INT4 ? 255.0f / 12 : 65535.0f / 12); }

#define GSCALE_KEY 0x5CA1E5CA1Eull   /* a quantized weight's scales: their own stream */

/* Every tensor the spec covers can be stored: its group divides its columns. */
static int check_spec(const fw_quant_spec *q, const fw_model_tensor *t, int64_t n, fw_err *e) {
    for (int64_t i = 0; q && i < n; i++)
        if (quant_group(q, &t[i]) && fw_cq_check(q, &t[i], e)) return fw_err_prefix(e, "synth");
    return FW_OK;
}

/* Embeddings feed the residual stream at O(1); projections keep it there. */
static float sigma_of(const char *name, int64_t cols) {
    return strstr(name, "embed_tokens") ? 1.0f : 1.0f / sqrtf((float)cols);
}

/* Block scales around sigma / 64, so fp8 * scale ~ normal(0, sigma). */
static void fill_scales(uint64_t key, float sigma, int64_t n, float *scale) {
    uint64_t s = key ^ 0x5CA1E5CA1Eull;
    for (int64_t i = 0; i < n; i++) scale[i] = sigma / 64.0f * (0.75f + 0.5f * uniform01(&s));
}

/* A weight q covers, as INT4 or INT8 with group G. */
static int synth_quantized(fw_ckpt_writer *w, const fw_quant_spec *q, const fw_model_tensor *t, int64_t G,
                           uint64_t key, fw_err *e) {
    const int64_t rows = t->shape[0], cols = t->shape[1], vcols = q->type == FW_WTYPE_INT4 ? cols / 8 : cols;
    const fill_kind kind = q->type == FW_WTYPE_INT4 ? FILL_WORDS : FILL_I8;
    void *values = malloc((size_t)(rows * vcols) * fill_size(kind) + 1);
    uint16_t *scale = malloc((size_t)(rows * (cols / G)) * 2 + 2);
    int rc = values && scale ? FW_OK : fw_errf(e, "synth: tensor '%s': out of memory", t->name);
    if (rc == FW_OK) {
        fill_tensor(kind, key, rows, vcols, 0, values);
        fill_tensor(FILL_GSCALE, key ^ GSCALE_KEY, rows, cols / G, sigma_of(t->name, cols) / q_sd(q->type), scale);
        rc = q->type == FW_WTYPE_INT4 ? fw_ckpt_write_int4(w, t->name, t->shape, G, values, scale, e)
                                      : fw_ckpt_write_int8(w, t->name, t->shape, G, values, scale, e);
    }
    free(values);
    free(scale);
    return rc;
}

static int synth_tensor(fw_ckpt_writer *w, const fw_config *c, const fw_model_tensor *t, uint64_t seed,
                        const fw_quant_spec *q, fw_err *e) {
    const int64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 1;
    const uint64_t key = XXH3_64bits_withSeed(t->name, strlen(t->name), seed);
    const int64_t G = quant_group(q, t);
    if (G) return synth_quantized(w, q, t, G, key, e);
    fill_kind kind = t->f32 ? FILL_BIAS : t->ndim == 1 ? FILL_ONES : t->quantized && c->fp8 ? FILL_FP8 : FILL_BF16;
    fw_dtype dtype = kind == FILL_BIAS ? FW_DTYPE_F32 : kind == FILL_FP8 ? FW_DTYPE_F8_E4M3 : FW_DTYPE_BF16;
    size_t bytes = (size_t)rows * (size_t)cols * fw_dtype_size(dtype);
    void *data = malloc(bytes ? bytes : 1);
    if (!data) return fw_errf(e, "synth: tensor '%s': out of memory (%zu bytes)", t->name, bytes);
    float sigma = sigma_of(t->name, cols);

    if (kind == FILL_ONES) { /* norm weights 1, the indexer's LayerNorm bias 0 */
        const bool bias = strlen(t->name) > 5 && !strcmp(t->name + strlen(t->name) - 5, ".bias");
        for (int64_t i = 0; i < rows; i++) ((uint16_t *)data)[i] = bias ? 0 : 0x3F80;   /* bf16 1.0 */
    } else if (kind == FILL_BIAS) {
        uint64_t s = key;
        for (int64_t i = 0; i < rows; i++) ((float *)data)[i] = 0.1f * uniform01(&s);
    } else {
        fill_tensor(kind, key, rows, cols, sigma, data);
    }
    int rc = fw_ckpt_write(w, t->name, dtype, t->ndim, t->shape, data, e);
    free(data);
    if (rc || kind != FILL_FP8) return rc;

    int64_t sshape[2];
    fw_model_tensor_scale_shape(c, t->shape, sshape);
    float *scale = malloc((size_t)(sshape[0] * sshape[1]) * sizeof *scale);
    if (!scale) return fw_errf(e, "synth: tensor '%s': out of memory", t->name);
    fill_scales(key, sigma, sshape[0] * sshape[1], scale);
    char sname[sizeof t->name + 16];
    snprintf(sname, sizeof sname, "%s_scale_inv", t->name);
    rc = fw_ckpt_write(w, sname, FW_DTYPE_F32, 2, sshape, scale, e);
    free(scale);
    return rc;
}

int64_t fw_synth_bytes(const fw_config *cfg, const fw_quant_spec *q) {
    fw_model_tensor *t;
    int64_t n, total = 0;
    fw_err e;
    if (fw_model_tensors(cfg, &t, &n, &e)) return -1;
    for (int64_t i = 0; i < n; i++) {
        int64_t el = t[i].shape[0] * (t[i].ndim == 2 ? t[i].shape[1] : 1), G = quant_group(q, &t[i]);
        if (G) { /* values (INT4: half a byte each) and bf16 scales */
            total += (q->type == FW_WTYPE_INT4 ? el / 2 : el) + el / G * 2;
        } else if (t[i].quantized && cfg->fp8) {
            int64_t s[2];
            fw_model_tensor_scale_shape(cfg, t[i].shape, s);
            total += el + 4 * s[0] * s[1];
        } else {
            total += el * (t[i].f32 ? 4 : 2);
        }
    }
    free(t);
    return total;
}

int fw_synth_with(const fw_config *cfg, uint64_t seed, const char *out_dir, const fw_synth_opts *o, fw_err *e) {
    fw_model_tensor *t;
    int64_t n;
    const fw_quant_spec *q = o ? o->weights : NULL;
    if (fw_model_tensors(cfg, &t, &n, e)) return FW_ERR;
    if (check_spec(q, t, n, e)) {
        free(t);
        return FW_ERR;
    }
    fw_ckpt_writer *w;
    if (fw_ckpt_writer_open(&w, out_dir, cfg, e)) {
        free(t);
        return FW_ERR;
    }
    char src[160], spec[64] = "";
    if (q) fw_quant_spec_str(q, spec, sizeof spec);
    snprintf(src, sizeof src, "furrow synth (random weights, seed %llu%s%s)", (unsigned long long)seed,
             q ? ", weights " : "", spec);
    int rc = fw_ckpt_writer_set_source(w, src, e);
    if (rc == FW_OK && o && o->layers_per_file) rc = fw_ckpt_writer_set_layers_per_file(w, o->layers_per_file, e);
    const int nl = cfg->num_hidden_layers + cfg->num_nextn_predict_layers;
    for (int64_t i = 0; i < n && rc == FW_OK; i++) {
        rc = synth_tensor(w, cfg, &t[i], seed, q, e);
        bool last_of_layer = i + 1 == n || t[i + 1].layer != t[i].layer;
        if (rc == FW_OK && o && o->progress && last_of_layer && t[i].layer >= 0) {
            char line[128];
            snprintf(line, sizeof line, "layer %d/%d%s written", t[i].layer + 1, nl, t[i].mtp ? " (MTP)" : "");
            o->progress(o->user, line);
        }
    }
    free(t);
    if (rc != FW_OK) {
        fw_ckpt_writer_abort(w);
        return FW_ERR;
    }
    return fw_ckpt_writer_close(w, e);
}

int fw_synth(const fw_config *cfg, uint64_t seed, const char *out_dir, fw_err *e) {
    return fw_synth_with(cfg, seed, out_dir, NULL, e);
}

/* ---- the synthetic model generated on read (no checkpoint on disk) ---- */

typedef struct synth_src {
    uint64_t seed;
    fw_quant_spec q;            /* weights=: type 0 (F32) when absent */
    fw_model_tensor *t; /* sorted by name */
    int64_t n;
} synth_src;

static int tensor_cmp(const void *a, const void *b) {
    return strcmp(((const fw_model_tensor *)a)->name, ((const fw_model_tensor *)b)->name);
}

static const fw_model_tensor *tensor_find(const synth_src *s, const char *name) {
    fw_model_tensor key;
    snprintf(key.name, sizeof key.name, "%s", name);
    return bsearch(&key, s->t, (size_t)s->n, sizeof *s->t, tensor_cmp);
}

/* Rows [r0, r0 + nr) and columns [c0, c0 + nc) of a [rows, cols] BF16 or FP8
 * weight: each 64-row block it touches is generated whole, as fw_synth writes it. */
static int gen_weight(uint64_t key, fill_kind kind, float sigma, int64_t cols, size_t es, int64_t r0, int64_t nr,
                      int64_t c0, int64_t nc, void *dst) {
    const int64_t b0 = r0 / BLOCK_ROWS, b1 = (r0 + nr - 1) / BLOCK_ROWS;
    int bad = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(| : bad) if ((b1 - b0 + 1) * BLOCK_ROWS * cols >= (1 << 20))
    for (int64_t b = b0; b <= b1; b++) {
        char *tmp = malloc((size_t)(BLOCK_ROWS * cols) * es);
        if (!tmp) {
            bad |= 1;
            continue;
        }
        const int64_t br0 = b * BLOCK_ROWS;
        fill_rows(kind, key, br0, br0 + BLOCK_ROWS, cols, sigma, tmp);
        const int64_t lo = br0 > r0 ? br0 : r0, hi = br0 + BLOCK_ROWS < r0 + nr ? br0 + BLOCK_ROWS : r0 + nr;
        for (int64_t r = lo; r < hi; r++)
            memcpy((char *)dst + (size_t)((r - r0) * nc) * es, tmp + (size_t)((r - br0) * cols + c0) * es,
                   (size_t)nc * es);
        free(tmp);
    }
    return bad ? FW_ERR : FW_OK;
}

static int synth_gen(void *user, const char *name, const fw_tensor_info *in, const int64_t *start,
                     const int64_t *count, void *dst, fw_err *e) {
    synth_src *src = user;
    if (!name) { /* close */
        free(src->t);
        free(src);
        return FW_OK;
    }
    const int two = in->ndim == 2;
    const int64_t rows = in->shape[0], cols = two ? in->shape[1] : 1;
    const int64_t r0 = start[0], nr = count[0], c0 = two ? start[1] : 0, nc = two ? count[1] : 1;
    const size_t es = fw_dtype_size(in->dtype), nl = strlen(name);
    /* Which part of a weight: a suffix of the name (io/FORMAT.md). */
    static const char *const suffix[] = {"_scale_inv", "_packed", "_int8", "_scale"};
    int part = -1;
    for (int i = 0; i < 4 && part < 0; i++)
        if (nl > strlen(suffix[i]) && !strcmp(name + nl - strlen(suffix[i]), suffix[i])) part = i;
    const bool is_scale = part == 0;
    char wname[sizeof src->t[0].name];
    snprintf(wname, sizeof wname, "%.*s", (int)(part >= 0 ? nl - strlen(suffix[part]) : nl), name);
    const fw_model_tensor *t = tensor_find(src, wname);
    if (!t) return fw_errf(e, "synthetic model: no tensor '%s'", name);
    const uint64_t key = XXH3_64bits_withSeed(wname, strlen(wname), src->seed);
    const float sigma = sigma_of(wname, t->ndim == 2 ? t->shape[1] : 1);
    fill_kind kind = in->dtype == FW_DTYPE_F8_E4M3 ? FILL_FP8 : FILL_BF16;
    uint64_t k = key;
    float sg = sigma;
    if (part == 1 || part == 2) kind = part == 1 ? FILL_WORDS : FILL_I8;
    if (part == 3) kind = FILL_GSCALE, k = key ^ GSCALE_KEY, sg = sigma / q_sd(src->q.type);
    if (!is_scale && two)
        return gen_weight(k, kind, sg, cols, es, r0, nr, c0, nc, dst)
                   ? fw_errf(e, "synthetic model: tensor '%s': out of memory", name)
                   : FW_OK;
    /* Scales and vectors: small, generated whole (their streams are sequential). */
    char *full = malloc((size_t)(rows * cols) * es);
    if (!full) return fw_errf(e, "synthetic model: tensor '%s': out of memory", name);
    if (is_scale) {
        fill_scales(key, sigma, rows * cols, (float *)full);
    } else if (in->dtype == FW_DTYPE_F32) {
        uint64_t s = key;
        for (int64_t i = 0; i < rows; i++) ((float *)full)[i] = 0.1f * uniform01(&s);
    } else { /* as synth_tensor writes them: norm weights 1, the indexer's LayerNorm bias 0 */
        const bool bias = strlen(wname) > 5 && !strcmp(wname + strlen(wname) - 5, ".bias");
        for (int64_t i = 0; i < rows; i++) ((uint16_t *)full)[i] = bias ? 0 : 0x3F80; /* bf16 1.0 */
    }
    for (int64_t r = 0; r < nr; r++)
        memcpy((char *)dst + (size_t)(r * nc) * es, full + (size_t)((r0 + r) * cols + c0) * es, (size_t)nc * es);
    free(full);
    return FW_OK;
}

/* Applies "key=value" options of a synth: spec to the preset's config. */
static int spec_option(fw_config *c, uint64_t *seed, const char *opt, fw_err *e) {
    char key[32];
    long long v;
    if (sscanf(opt, "%31[a-z0-9_]=%lld", key, &v) != 2 || v < 0)
        return fw_errf(e, "synthetic model: bad option '%s' (layers=N, dense=N, seed=N, fp8=0|1, weights=SPEC last)",
                       opt);
    if (!strcmp(key, "layers") && v >= 1) c->num_hidden_layers = (int)v;
    else if (!strcmp(key, "dense")) c->first_k_dense_replace = (int)v;
    else if (!strcmp(key, "seed")) *seed = (uint64_t)v;
    else if (!strcmp(key, "fp8")) c->fp8 = v != 0;
    else return fw_errf(e, "synthetic model: bad option '%s' (layers=N, dense=N, seed=N, fp8=0|1, weights=SPEC last)", opt);
    return FW_OK;
}

int fw_synth_open(fw_ckpt **out, const char *spec, fw_err *e) {
    *out = NULL;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec + strlen(FW_SYNTH_PREFIX));
    /* weights=SPEC comes last and keeps its commas: cut it off first. */
    fw_quant_spec q = {0};
    char *wq = strstr(buf, ",weights=");
    if (wq) {
        *wq = '\0';
        if (fw_quant_spec_parse(&q, wq + strlen(",weights="), e)) return fw_err_prefix(e, "%s: weights", spec);
    }
    char *save = NULL, *preset = strtok_r(buf, ",", &save);
    fw_config c;
    uint64_t seed = 0;
    if (!preset || fw_synth_preset(preset, &c, e)) return fw_err_prefix(e, "%s", spec);
    if (!wq && fw_synth_preset_weights(preset) && fw_quant_spec_parse(&q, fw_synth_preset_weights(preset), e))
        return fw_err_prefix(e, "%s", spec);
    for (char *opt; (opt = strtok_r(NULL, ",", &save));)
        if (spec_option(&c, &seed, opt, e)) {
            fw_config_free(&c);
            return FW_ERR;
        }
    if (c.first_k_dense_replace > c.num_hidden_layers) c.first_k_dense_replace = c.num_hidden_layers;
    c.num_nextn_predict_layers = 0; /* never run */
    synth_src *src = calloc(1, sizeof *src);
    int64_t nt = 0;
    if (!src || fw_synth_config_json(&c, e) || fw_model_tensors(&c, &src->t, &src->n, e)) {
        free(src);
        fw_config_free(&c);
        return fw_err_prefix(e, "%s", spec);
    }
    src->seed = seed;
    src->q = q;
    const fw_quant_spec *qp = wq ? &src->q : NULL;
    qsort(src->t, (size_t)src->n, sizeof *src->t, tensor_cmp);
    const char **names = calloc((size_t)(2 * src->n), sizeof *names);
    fw_tensor_info *infos = calloc((size_t)(2 * src->n), sizeof *infos);
    char (*vnames)[sizeof src->t[0].name + 16] = calloc((size_t)src->n, sizeof *vnames);
    char (*snames)[sizeof src->t[0].name + 16] = calloc((size_t)src->n, sizeof *snames);
    int rc = names && infos && vnames && snames ? FW_OK : fw_errf(e, "out of memory");
    if (rc == FW_OK) rc = check_spec(qp, src->t, src->n, e);
    for (int64_t i = 0; i < src->n && rc == FW_OK; i++) {
        const fw_model_tensor *t = &src->t[i];
        const int64_t G = quant_group(qp, t);
        if (G) { /* its values and scales, as fw_ckpt_write_int4 / _int8 name and label them */
            const bool int4 = q.type == FW_WTYPE_INT4;
            snprintf(vnames[i], sizeof vnames[i], "%s%s", t->name, int4 ? "_packed" : "_int8");
            snprintf(snames[i], sizeof snames[i], "%s_scale", t->name);
            fw_tensor_info vi = {.dtype = int4 ? FW_DTYPE_I32 : FW_DTYPE_I8, .ndim = 2,
                                 .shape = {t->shape[0], int4 ? t->shape[1] / 8 : t->shape[1]}};
            if (int4) snprintf(vi.quant, sizeof vi.quant, "int4_sym_group%lld", (long long)G);
            else fw_int8_label(t->shape[1], G, vi.quant, sizeof vi.quant);
            names[nt] = vnames[i];
            infos[nt++] = vi;
            names[nt] = snames[i];
            infos[nt++] = (fw_tensor_info){.dtype = FW_DTYPE_BF16, .ndim = 2, .shape = {t->shape[0], t->shape[1] / G}};
            continue;
        }
        bool fp8 = t->quantized && c.fp8;
        names[nt] = t->name;
        infos[nt++] = (fw_tensor_info){.dtype = t->f32 ? FW_DTYPE_F32 : fp8 ? FW_DTYPE_F8_E4M3 : FW_DTYPE_BF16,
                                       .ndim = t->ndim, .shape = {t->shape[0], t->ndim == 2 ? t->shape[1] : 0}};
        if (!fp8) continue;
        snprintf(snames[i], sizeof snames[i], "%s_scale_inv", t->name);
        fw_tensor_info si = {.dtype = FW_DTYPE_F32, .ndim = 2};
        fw_model_tensor_scale_shape(&c, t->shape, si.shape);
        names[nt] = snames[i];
        infos[nt++] = si;
    }
    if (rc == FW_OK) rc = fw_ckpt_open_generated(out, spec, &c, names, infos, nt, synth_gen, src, e);
    else synth_gen(src, NULL, NULL, NULL, NULL, NULL, NULL);
    free(names), free(infos), free(vnames), free(snames);
    if (rc) fw_config_free(&c);
    return rc;
}
