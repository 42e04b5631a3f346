/* config.json -> fw_config. Every value is checked for type and range before it
 * is stored, and every error names the file and the key, so that a config that
 * furrow would run wrongly (softmax gating, another RoPE scaling, another
 * quantization) is refused instead of half-understood. */
#define _POSIX_C_SOURCE 200809L  /* strdup, mmap, truncate */
#include "io/base/jsonutil.h"
#include "io/base/fileutil.h"
#include "io/config.h"
#include "io/quant_ct.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

/* config.json is a few KB; anything this large is not one. */
#define CONFIG_MAX_BYTES (16u << 20)
/* Bound for int64 dimensions, so that products of two of them stay far from
 * overflow downstream (vocab x hidden of real models is ~1e9). */
#define DIM64_MAX ((int64_t)1 << 32)
/* Counts far above any model of the family (DeepSeek-V3: 61 layers, 128 heads,
 * 256 experts; Kimi-K2: 384 experts), so that an absurd config is refused by
 * name before anything is sized from it rather than exhausting memory. */
#define LAYERS_MAX 4096
#define HEADS_MAX 4096
#define EXPERTS_MAX 65536
#define HEAD_DIM_MAX 65536

typedef struct cfg_ctx {
    const char *src;    /* the file, for messages */
    fw_err *e;
} cfg_ctx;

/* The value of key, or NULL when absent or JSON null (both mean "not given"). */
static json_t *get(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}


/* An exact integer: a JSON integer, or a real without fraction such as 4.0. */
static int json_exact_int(const json_t *v, int64_t *out) {
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        /* 2^63 is exactly representable; the range is half-open. */
        if (isfinite(d) && d == trunc(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
            *out = (int64_t)d;
            return 0;
        }
    }
    return -1;
}

static int err_missing(cfg_ctx *x, const char *where, const char *key) {
    return fw_errf(x->e, "%s: required key '%s%s' is missing", x->src, where, key);
}

static int err_range(cfg_ctx *x, const char *where, const char *key, long long v, long long lo, long long hi) {
    if (lo == 1 && hi >= INT_MAX)
        return fw_errf(x->e, "%s: key '%s%s' is %lld; it must be positive", x->src, where, key, v);
    if (lo == 0 && hi >= INT_MAX)
        return fw_errf(x->e, "%s: key '%s%s' is %lld; it must be non-negative", x->src, where, key, v);
    return fw_errf(x->e, "%s: key '%s%s' is %lld; it must be between %lld and %lld", x->src, where, key,
                   v, lo, hi);
}

/* Integer key `where``key` of obj into *out, in [lo, hi]; def when absent and not required. */
static int get_i64(cfg_ctx *x, json_t *obj, const char *where, const char *key, bool required,
                   int64_t def, int64_t lo, int64_t hi, int64_t *out) {
    json_t *v = get(obj, key);
    if (!v) {
        if (required) return err_missing(x, where, key);
        *out = def;
        return FW_OK;
    }
    int64_t n;
    if (json_exact_int(v, &n) != 0) {
        if (json_is_real(v))
            return fw_errf(x->e, "%s: key '%s%s' is %g; it must be an integer", x->src, where, key,
                           json_real_value(v));
        return fw_errf(x->e, "%s: key '%s%s' must be an integer, not %s", x->src, where, key,
                       fw_json_type_name(v));
    }
    if (n < lo || n > hi) return err_range(x, where, key, (long long)n, (long long)lo, (long long)hi);
    *out = n;
    return FW_OK;
}

static int get_int(cfg_ctx *x, json_t *obj, const char *where, const char *key, bool required, int def,
                   int lo, int hi, int *out) {
    int64_t n;
    if (get_i64(x, obj, where, key, required, def, lo, hi, &n) != FW_OK) return FW_ERR;
    *out = (int)n;
    return FW_OK;
}

/* A finite number (integer or real) into *out; range checks are the caller's. */
static int get_f64(cfg_ctx *x, json_t *obj, const char *where, const char *key, bool required, double def,
                   double *out) {
    json_t *v = get(obj, key);
    if (!v) {
        if (required) return err_missing(x, where, key);
        *out = def;
        return FW_OK;
    }
    if (!json_is_number(v))
        return fw_errf(x->e, "%s: key '%s%s' must be a number, not %s", x->src, where, key,
                       fw_json_type_name(v));
    double d = json_number_value(v);
    if (!isfinite(d)) return fw_errf(x->e, "%s: key '%s%s' is not finite", x->src, where, key);
    *out = d;
    return FW_OK;
}

static int get_bool(cfg_ctx *x, json_t *obj, const char *where, const char *key, bool def, bool *out) {
    json_t *v = get(obj, key);
    if (!v) {
        *out = def;
        return FW_OK;
    }
    if (!json_is_boolean(v))
        return fw_errf(x->e, "%s: key '%s%s' must be true or false, not %s", x->src, where, key,
                       fw_json_type_name(v));
    *out = json_is_true(v);
    return FW_OK;
}

/* A string key; *out = def (may be NULL) when absent. The string lives in obj. */
static int get_str(cfg_ctx *x, json_t *obj, const char *where, const char *key, bool required,
                   const char *def, const char **out) {
    json_t *v = get(obj, key);
    if (!v) {
        if (required) return err_missing(x, where, key);
        *out = def;
        return FW_OK;
    }
    if (!json_is_string(v))
        return fw_errf(x->e, "%s: key '%s%s' must be a string, not %s", x->src, where, key,
                       fw_json_type_name(v));
    *out = json_string_value(v);
    return FW_OK;
}

static int err_positive(cfg_ctx *x, const char *where, const char *key, double v) {
    return fw_errf(x->e, "%s: key '%s%s' is %g; it must be positive", x->src, where, key, v);
}

/* model_type, hidden_act, gating: the things that change the math. */
static int parse_kind(cfg_ctx *x, json_t *root) {
    const char *s;
    if (get_str(x, root, "", "model_type", false, NULL, &s) != FW_OK) return FW_ERR;
    /* kimi_k2: Moonshot's Kimi-K2 configs, a DeepseekV3ForCausalLM of another size. */
    if (s && strcmp(s, "deepseek_v3") != 0 && strcmp(s, "deepseek_v2") != 0 && strcmp(s, "kimi_k2") != 0 &&
        strcmp(s, "deepseek_v32") != 0)
        return fw_errf(x->e, "%s: model_type '%s' is not supported (deepseek_v3, deepseek_v32, deepseek_v2 or kimi_k2)",
                       x->src, s);

    if (get_str(x, root, "", "hidden_act", false, "silu", &s) != FW_OK) return FW_ERR;
    if (strcmp(s, "silu") != 0)
        return fw_errf(x->e, "%s: hidden_act '%s' is not supported (only silu)", x->src, s);

    if (get_str(x, root, "", "scoring_func", false, "sigmoid", &s) != FW_OK) return FW_ERR;
    if (strcmp(s, "softmax") == 0)
        return fw_errf(x->e, "%s: scoring_func 'softmax' (DeepSeek-V2 gating) is not supported", x->src);
    if (strcmp(s, "sigmoid") != 0)
        return fw_errf(x->e, "%s: scoring_func '%s' is not supported (only sigmoid)", x->src, s);

    /* greedy / group_limited_greedy select on softmax scores without the
     * correction bias: a different router, so refuse rather than approximate. */
    if (get_str(x, root, "", "topk_method", false, "noaux_tc", &s) != FW_OK) return FW_ERR;
    if (strcmp(s, "noaux_tc") != 0)
        return fw_errf(x->e, "%s: topk_method '%s' is not supported (only noaux_tc, DeepSeek-V3 routing)",
                       x->src, s);

    /* transformers >= 5 writes rope_interleave; false means q/k rope dims are
     * already in halves order, which furrow's interleaved RoPE would get wrong. */
    bool b;
    if (get_bool(x, root, "", "rope_interleave", true, &b) != FW_OK) return FW_ERR;
    if (!b) return fw_errf(x->e, "%s: rope_interleave false is not supported (furrow rotates interleaved pairs)", x->src);
    if (get_bool(x, root, "", "attention_bias", false, &b) != FW_OK) return FW_ERR;
    if (b) return fw_errf(x->e, "%s: attention_bias true is not supported (DeepSeek-V3 has no attention biases)", x->src);
    return FW_OK;
}

static int parse_attention(cfg_ctx *x, json_t *root, fw_config *c) {
    if (get_i64(x, root, "", "vocab_size", true, 0, 1, DIM64_MAX, &c->vocab_size) ||
        get_i64(x, root, "", "hidden_size", true, 0, 1, DIM64_MAX, &c->hidden_size) ||
        get_int(x, root, "", "num_hidden_layers", true, 0, 1, LAYERS_MAX, &c->num_hidden_layers) ||
        get_int(x, root, "", "num_attention_heads", true, 0, 1, HEADS_MAX, &c->num_attention_heads) ||
        get_int(x, root, "", "num_key_value_heads", false, c->num_attention_heads, 1, HEADS_MAX,
                &c->num_key_value_heads) ||
        get_int(x, root, "", "kv_lora_rank", true, 0, 1, HEAD_DIM_MAX, &c->kv_lora_rank) ||
        get_int(x, root, "", "qk_nope_head_dim", true, 0, 1, HEAD_DIM_MAX, &c->qk_nope_head_dim) ||
        get_int(x, root, "", "qk_rope_head_dim", true, 0, 1, HEAD_DIM_MAX, &c->qk_rope_head_dim) ||
        get_int(x, root, "", "v_head_dim", true, 0, 1, HEAD_DIM_MAX, &c->v_head_dim) ||
        get_i64(x, root, "", "max_position_embeddings", true, 0, 1, DIM64_MAX, &c->max_position_embeddings) ||
        get_f64(x, root, "", "rms_norm_eps", false, 1e-6, &c->rms_norm_eps))
        return FW_ERR;
    if (c->num_key_value_heads != c->num_attention_heads)
        return fw_errf(x->e, "%s: num_key_value_heads (%d) must equal num_attention_heads (%d) for MLA",
                       x->src, c->num_key_value_heads, c->num_attention_heads);
    if (c->qk_rope_head_dim % 2 != 0)
        return fw_errf(x->e, "%s: key 'qk_rope_head_dim' is %d; it must be even (RoPE rotates pairs)",
                       x->src, c->qk_rope_head_dim);
    if ((int64_t)c->qk_nope_head_dim + c->qk_rope_head_dim > INT_MAX)
        return fw_errf(x->e, "%s: qk_nope_head_dim + qk_rope_head_dim is too large", x->src);
    if (!(c->rms_norm_eps > 0)) return err_positive(x, "", "rms_norm_eps", c->rms_norm_eps);

    /* q_lora_rank: null (or 0) means a plain q_proj, as in DeepSeek-V2-Lite; the
     * key itself must be there so a typo does not silently change the layout. */
    if (!json_object_get(root, "q_lora_rank")) return err_missing(x, "", "q_lora_rank");
    return get_int(x, root, "", "q_lora_rank", false, 0, 0, HEAD_DIM_MAX, &c->q_lora_rank);
}

/* DeepSeek-V3.2's indexer (DeepSeek Sparse Attention): model_type deepseek_v32,
 * or any index_* key, makes all three required; otherwise the model is dense. */
static int parse_indexer(cfg_ctx *x, json_t *root, fw_config *c) {
    const char *type;
    if (get_str(x, root, "", "model_type", false, "", &type) != FW_OK) return FW_ERR;
    bool v32 = strcmp(type, "deepseek_v32") == 0 || get(root, "index_topk") || get(root, "index_n_heads") ||
               get(root, "index_head_dim");
    c->index_n_heads = c->index_head_dim = c->index_topk = 0;
    if (!v32) return FW_OK;
    if (get_int(x, root, "", "index_n_heads", true, 0, 1, HEADS_MAX, &c->index_n_heads) ||
        get_int(x, root, "", "index_head_dim", true, 0, 1, HEAD_DIM_MAX, &c->index_head_dim) ||
        get_int(x, root, "", "index_topk", true, 0, 1, INT_MAX, &c->index_topk))
        return FW_ERR;
    int d = c->index_head_dim;
    if (d & (d - 1))
        return fw_errf(x->e, "%s: key 'index_head_dim' is %d; it must be a power of two (the indexer's Hadamard rotation)",
                       x->src, d);
    if (d <= c->qk_rope_head_dim)
        return fw_errf(x->e, "%s: index_head_dim (%d) must exceed qk_rope_head_dim (%d): the indexer rotates its first "
                             "qk_rope_head_dim dimensions", x->src, d, c->qk_rope_head_dim);
    if (c->q_lora_rank == 0)
        return fw_errf(x->e, "%s: the indexer (index_topk) needs q_lora_rank: its queries read the q latent", x->src);
    return FW_OK;
}

static int parse_moe(cfg_ctx *x, json_t *root, fw_config *c) {
    /* n_routed_experts null (DeepSeek-V2 config class default) = dense model. */
    if (!json_object_get(root, "n_routed_experts")) return err_missing(x, "", "n_routed_experts");
    if (get_int(x, root, "", "n_routed_experts", false, 0, 0, EXPERTS_MAX, &c->n_routed_experts) ||
        get_int(x, root, "", "first_k_dense_replace", false, 0, 0, c->num_hidden_layers,
                &c->first_k_dense_replace) ||
        get_int(x, root, "", "moe_layer_freq", false, 1, 1, LAYERS_MAX, &c->moe_layer_freq) ||
        get_bool(x, root, "", "norm_topk_prob", true, &c->norm_topk_prob))
        return FW_ERR;

    int E = c->n_routed_experts;
    if (E == 0) {
        c->n_shared_experts = 0;
        c->routed_scaling_factor = 1.0;
        return FW_OK;
    }
    if (get_i64(x, root, "", "moe_intermediate_size", true, 0, 1, DIM64_MAX, &c->moe_intermediate_size) ||
        get_int(x, root, "", "n_shared_experts", false, 1, 0, EXPERTS_MAX, &c->n_shared_experts) ||
        get_int(x, root, "", "num_experts_per_tok", true, 0, 1, E, &c->num_experts_per_tok) ||
        get_int(x, root, "", "n_group", true, 0, 1, E, &c->n_group) ||
        get_int(x, root, "", "topk_group", true, 0, 1, c->n_group, &c->topk_group) ||
        get_f64(x, root, "", "routed_scaling_factor", true, 0, &c->routed_scaling_factor))
        return FW_ERR;
    if (!(c->routed_scaling_factor > 0))
        return err_positive(x, "", "routed_scaling_factor", c->routed_scaling_factor);
    if (E % c->n_group != 0)
        return fw_errf(x->e, "%s: n_group (%d) must divide n_routed_experts (%d)", x->src, c->n_group, E);
    int per_group = E / c->n_group;
    /* noaux_tc scores a group by the sum of its top two experts. */
    if (per_group < 2)
        return fw_errf(x->e, "%s: n_routed_experts / n_group is %d; noaux_tc needs at least 2 experts per group",
                       x->src, per_group);
    if ((int64_t)c->topk_group * per_group < c->num_experts_per_tok)
        return fw_errf(x->e,
                       "%s: num_experts_per_tok (%d) is more than the experts in topk_group (%d) groups of %d",
                       x->src, c->num_experts_per_tok, c->topk_group, per_group);
    return FW_OK;
}

static bool config_has_dense_layer(const fw_config *c) {
    for (int l = 0; l < c->num_hidden_layers; l++)
        if (!fw_config_layer_is_moe(c, l)) return true;
    return false;
}

/* rope_theta may be at the top level (published configs), inside rope_scaling
 * (transformers >= 5), or both; they must then agree. */
static int parse_rope(cfg_ctx *x, json_t *root, fw_config *c) {
    json_t *rs = get(root, "rope_scaling");
    if (rs && !json_is_object(rs))
        return fw_errf(x->e, "%s: key 'rope_scaling' must be an object or null, not %s", x->src,
                       fw_json_type_name(rs));

    double top = 0, in = 0;
    bool has_top = get(root, "rope_theta") != NULL, has_in = rs && get(rs, "rope_theta") != NULL;
    if (get_f64(x, root, "", "rope_theta", false, 10000.0, &top)) return FW_ERR;
    if (rs && get_f64(x, rs, "rope_scaling.", "rope_theta", false, top, &in)) return FW_ERR;
    if (has_top && has_in && fabs(top - in) > 1e-9 * fabs(top))
        return fw_errf(x->e, "%s: rope_theta (%g) and rope_scaling.rope_theta (%g) disagree", x->src, top, in);
    c->rope_theta = has_in ? in : top;
    if (!(c->rope_theta > 0)) return err_positive(x, "", "rope_theta", c->rope_theta);

    fw_yarn *y = &c->yarn;
    memset(y, 0, sizeof *y);
    if (!rs) return FW_OK;

    const char *type = NULL, *rope_type = NULL;
    if (get_str(x, rs, "rope_scaling.", "type", false, NULL, &type) ||
        get_str(x, rs, "rope_scaling.", "rope_type", false, NULL, &rope_type))
        return FW_ERR;
    if (type && rope_type && strcmp(type, rope_type) != 0)
        return fw_errf(x->e, "%s: rope_scaling.type '%s' and rope_scaling.rope_type '%s' disagree", x->src,
                       type, rope_type);
    if (!type) type = rope_type;
    if (!type) return fw_errf(x->e, "%s: rope_scaling has neither 'type' nor 'rope_type'", x->src);
    if (strcmp(type, "default") == 0) return FW_OK;    /* transformers' name for plain RoPE */
    if (strcmp(type, "yarn") != 0)
        return fw_errf(x->e, "%s: rope_scaling type '%s' is not supported (only yarn)", x->src, type);

    y->enabled = true;
    /* mscale_all_dim defaults to 0 as in transformers (no softmax rescaling). */
    if (get_f64(x, rs, "rope_scaling.", "factor", true, 0, &y->factor) ||
        get_i64(x, rs, "rope_scaling.", "original_max_position_embeddings", true, 0, 1, DIM64_MAX,
                &y->original_max_position) ||
        get_f64(x, rs, "rope_scaling.", "beta_fast", false, 32.0, &y->beta_fast) ||
        get_f64(x, rs, "rope_scaling.", "beta_slow", false, 1.0, &y->beta_slow) ||
        get_f64(x, rs, "rope_scaling.", "mscale", false, 1.0, &y->mscale) ||
        get_f64(x, rs, "rope_scaling.", "mscale_all_dim", false, 0.0, &y->mscale_all_dim))
        return FW_ERR;
    if (!(y->factor >= 1.0))
        return fw_errf(x->e, "%s: key 'rope_scaling.factor' is %g; it must be >= 1", x->src, y->factor);
    if (!(y->beta_fast > 0)) return err_positive(x, "rope_scaling.", "beta_fast", y->beta_fast);
    if (!(y->beta_slow > 0)) return err_positive(x, "rope_scaling.", "beta_slow", y->beta_slow);
    if (y->beta_fast < y->beta_slow)
        return fw_errf(x->e, "%s: rope_scaling.beta_fast (%g) must not be below rope_scaling.beta_slow (%g)",
                       x->src, y->beta_fast, y->beta_slow);
    if (y->mscale < 0) return fw_errf(x->e, "%s: key 'rope_scaling.mscale' must be non-negative", x->src);
    if (y->mscale_all_dim < 0)
        return fw_errf(x->e, "%s: key 'rope_scaling.mscale_all_dim' must be non-negative", x->src);
    return FW_OK;
}

/* DeepSeek's FP8 scheme (e4m3 weights with 128x128 block scales, activations
 * quantized dynamically), or compressed-tensors' pack-quantized INT4 weights. */
static int parse_quant(cfg_ctx *x, json_t *root, fw_config *c) {
    const char *w = "quantization_config.";
    json_t *q = get(root, "quantization_config");
    c->fp8 = false;
    c->fp8_block[0] = c->fp8_block[1] = 0;
    c->int4 = false;
    if (!q) return FW_OK;
    if (!json_is_object(q))
        return fw_errf(x->e, "%s: key 'quantization_config' must be an object, not %s", x->src,
                       fw_json_type_name(q));

    const char *method, *fmt, *act;
    if (get_str(x, q, w, "quant_method", true, NULL, &method)) return FW_ERR;
    if (strcmp(method, "compressed-tensors") == 0) {
        fw_ct_scheme *s;
        if (fw_ct_parse(&s, q, x->src, x->e)) return FW_ERR;
        fw_ct_free(s);   /* convert matches module names against it; here it is only checked */
        c->int4 = true;
        return FW_OK;
    }
    if (strcmp(method, "fp8") != 0)
        return fw_errf(x->e, "%s: quantization_config.quant_method '%s' is not supported (only fp8 and "
                             "compressed-tensors)", x->src, method);
    if (get_str(x, q, w, "fmt", false, "e4m3", &fmt)) return FW_ERR;
    if (strcmp(fmt, "e4m3") != 0)
        return fw_errf(x->e, "%s: quantization_config.fmt '%s' is not supported (only e4m3)", x->src, fmt);
    if (get_str(x, q, w, "activation_scheme", false, "dynamic", &act)) return FW_ERR;
    if (strcmp(act, "dynamic") != 0)
        return fw_errf(x->e, "%s: quantization_config.activation_scheme '%s' is not supported (only dynamic)",
                       x->src, act);

    json_t *bs = get(q, "weight_block_size");
    if (!bs) return err_missing(x, w, "weight_block_size");
    int64_t b0, b1;
    if (!json_is_array(bs) || json_array_size(bs) != 2 || json_exact_int(json_array_get(bs, 0), &b0) ||
        json_exact_int(json_array_get(bs, 1), &b1))
        return fw_errf(x->e, "%s: key 'quantization_config.weight_block_size' must be an array of two integers",
                       x->src);
    if (b0 != 128 || b1 != 128)
        return fw_errf(x->e, "%s: quantization_config.weight_block_size [%lld, %lld] is not supported (only [128, 128])",
                       x->src, (long long)b0, (long long)b1);
    c->fp8 = true;
    c->fp8_block[0] = c->fp8_block[1] = 128;
    return FW_OK;
}

/* A token id: an integer, the first of a list (some configs list several eos
 * ids), or null (-1, none). Absent: DeepSeek-V3's value. */
static int parse_token_id(cfg_ctx *x, json_t *root, const char *key, int64_t def, int64_t vocab, int64_t *out) {
    json_t *v = json_object_get(root, key);
    if (!v) {
        if (def >= vocab)
            return fw_errf(x->e, "%s: key '%s' is missing and its default %lld is not below vocab_size (%lld)",
                           x->src, key, (long long)def, (long long)vocab);
        *out = def;
        return FW_OK;
    }
    if (json_is_null(v)) {
        *out = -1;
        return FW_OK;
    }
    if (json_is_array(v)) {
        if (json_array_size(v) == 0)
            return fw_errf(x->e, "%s: key '%s' is an empty list", x->src, key);
        v = json_array_get(v, 0);
    }
    int64_t n;
    if (json_exact_int(v, &n) != 0)
        return fw_errf(x->e, "%s: key '%s' must be an integer, not %s", x->src, key, fw_json_type_name(v));
    if (n < 0 || n >= vocab)
        return fw_errf(x->e, "%s: key '%s' is %lld; it must be a token id below vocab_size (%lld)", x->src, key,
                       (long long)n, (long long)vocab);
    *out = n;
    return FW_OK;
}

static int parse_root(cfg_ctx *x, json_t *root, fw_config *c) {
    if (parse_kind(x, root) || parse_attention(x, root, c) || parse_indexer(x, root, c) || parse_moe(x, root, c) ||
        parse_rope(x, root, c) || parse_quant(x, root, c))
        return FW_ERR;
    /* intermediate_size is only needed when some layer is dense. */
    bool dense = config_has_dense_layer(c);
    if (get_i64(x, root, "", "intermediate_size", dense, 0, 1, DIM64_MAX, &c->intermediate_size))
        return FW_ERR;
    if (get_int(x, root, "", "num_nextn_predict_layers", false, 0, 0, LAYERS_MAX, &c->num_nextn_predict_layers) ||
        get_bool(x, root, "", "tie_word_embeddings", false, &c->tie_word_embeddings) ||
        parse_token_id(x, root, "bos_token_id", 0, c->vocab_size, &c->bos_token_id) ||
        parse_token_id(x, root, "eos_token_id", 1, c->vocab_size, &c->eos_token_id))
        return FW_ERR;
    return FW_OK;
}

int fw_config_parse(fw_config *c, const char *json_text, const char *source, fw_err *e) {
    memset(c, 0, sizeof *c);
    if (!source) source = "config.json";
    if (!json_text) return fw_errf(e, "%s: no text to parse", source);

    json_error_t je;
    json_t *root = json_loads(json_text, 0, &je);
    if (!root)
        return fw_errf(e, "%s: invalid JSON at line %d, column %d: %s", source, je.line, je.column, je.text);
    cfg_ctx x = {source, e};
    int rc = FW_OK;
    if (!json_is_object(root))
        rc = fw_errf(e, "%s: the top level must be a JSON object, not %s", source, fw_json_type_name(root));
    else
        rc = parse_root(&x, root, c);
    json_decref(root);
    if (rc == FW_OK && !(c->json = strdup(json_text))) rc = fw_errf(e, "%s: out of memory", source);
    if (rc != FW_OK) fw_config_free(c);
    return rc;
}

/* A whole config file: a regular file, at most max bytes, no NUL byte. */
static int read_text_file(const char *path, size_t max, char **out, fw_err *e) {
    size_t n;
    if (fw_read_file(path, max, out, &n, e)) return FW_ERR;
    if (!memchr(*out, '\0', n)) return FW_OK;
    free(*out);
    *out = NULL;
    return fw_errf(e, "%s: contains a NUL byte; not a JSON text file", path);
}

int fw_config_load(fw_config *c, const char *path, fw_err *e) {
    memset(c, 0, sizeof *c);
    char *text;
    if (read_text_file(path, CONFIG_MAX_BYTES, &text, e) != FW_OK) return FW_ERR;
    int rc = fw_config_parse(c, text, path, e);
    free(text);
    return rc;
}

void fw_config_free(fw_config *c) {
    if (!c) return;
    free(c->json);
    memset(c, 0, sizeof *c);
}


double fw_config_softmax_scale(const fw_config *c) {
    double scale = 1.0 / sqrt((double)fw_config_qk_head_dim(c));
    /* YaRN sharpens attention by m^2 (m = yarn_get_mscale(factor, mscale_all_dim)). */
    if (c->yarn.enabled && c->yarn.factor > 1.0) {
        double m = 0.1 * c->yarn.mscale_all_dim * log(c->yarn.factor) + 1.0;
        scale *= m * m;
    }
    return scale;
}
