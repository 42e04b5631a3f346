#include "io/model_tensors.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *fw_tp_role_name(fw_tp_role r) {
    switch (r) {
    case FW_TP_REPLICATED: return "replicated";
    case FW_TP_COLUMN: return "column";
    case FW_TP_ROW: return "row";
    case FW_TP_VOCAB: return "vocab";
    case FW_TP_EXPERT: return "expert";
    }
    return "replicated";
}

/* The list is produced by one walk over the architecture; a visitor collects it,
 * or counts parameters, without a second copy of the layout. */
typedef void (*visit_fn)(void *user, const fw_model_tensor *t);

typedef struct walker {
    const fw_config *c;
    visit_fn fn;
    void *user;
    int layer;
    bool mtp;
    char prefix[48];
} walker;

static void emit(walker *w, const char *dims, fw_tp_role role, bool quantized, int64_t rows,
                 int64_t cols, const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static void emit(walker *w, const char *dims, fw_tp_role role, bool quantized, int64_t rows,
                 int64_t cols, const char *fmt, ...) {
    fw_model_tensor t;
    memset(&t, 0, sizeof t);
    int n = snprintf(t.name, sizeof t.name, "%s", w->prefix);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t.name + n, sizeof t.name - (size_t)n, fmt, ap);
    va_end(ap);
    t.ndim = cols ? 2 : 1;
    t.shape[0] = rows;
    t.shape[1] = cols;
    t.dims = dims;
    t.role = role;
    t.quantized = quantized;
    t.layer = w->layer;
    t.mtp = w->mtp;
    t.f32 = strstr(t.name, "e_score_correction_bias") != NULL;
    w->fn(w->user, &t);
}

/* Layer l: attention, then the dense or MoE FFN. MTP layers reuse the layout. */
static void walk_layer(walker *w, int l) {
    const fw_config *c = w->c;
    const int64_t D = c->hidden_size, H = c->num_attention_heads;
    const int64_t dqk = fw_config_qk_head_dim(c), dn = c->qk_nope_head_dim, dv = c->v_head_dim;
    const int64_t C = c->kv_lora_rank, R = c->qk_rope_head_dim, Q = c->q_lora_rank;
    w->layer = l;
    w->mtp = l >= c->num_hidden_layers;
    snprintf(w->prefix, sizeof w->prefix, "model.layers.%d.", l);

    if (w->mtp) {
        /* DeepSeek-V3 MTP: h = eh_proj(cat(enorm(embed(t)), hnorm(h_prev))). */
        emit(w, "[vocab_size, hidden_size]", FW_TP_VOCAB, false, c->vocab_size, D, "embed_tokens.weight");
        emit(w, "[hidden_size]", FW_TP_REPLICATED, false, D, 0, "enorm.weight");
        emit(w, "[hidden_size]", FW_TP_REPLICATED, false, D, 0, "hnorm.weight");
        emit(w, "[hidden_size, 2 * hidden_size]", FW_TP_REPLICATED, true, D, 2 * D, "eh_proj.weight");
    }
    emit(w, "[hidden_size]", FW_TP_REPLICATED, false, D, 0, "input_layernorm.weight");
    if (Q > 0) {
        emit(w, "[q_lora_rank, hidden_size]", FW_TP_REPLICATED, true, Q, D, "self_attn.q_a_proj.weight");
        emit(w, "[q_lora_rank]", FW_TP_REPLICATED, false, Q, 0, "self_attn.q_a_layernorm.weight");
        emit(w, "[num_attention_heads * (qk_nope_head_dim + qk_rope_head_dim), q_lora_rank]", FW_TP_COLUMN,
             true, H * dqk, Q, "self_attn.q_b_proj.weight");
    } else {
        emit(w, "[num_attention_heads * (qk_nope_head_dim + qk_rope_head_dim), hidden_size]", FW_TP_COLUMN,
             true, H * dqk, D, "self_attn.q_proj.weight");
    }
    emit(w, "[kv_lora_rank + qk_rope_head_dim, hidden_size]", FW_TP_REPLICATED, true, C + R, D,
         "self_attn.kv_a_proj_with_mqa.weight");
    emit(w, "[kv_lora_rank]", FW_TP_REPLICATED, false, C, 0, "self_attn.kv_a_layernorm.weight");
    emit(w, "[num_attention_heads * (qk_nope_head_dim + v_head_dim), kv_lora_rank]", FW_TP_COLUMN, true,
         H * (dn + dv), C, "self_attn.kv_b_proj.weight");
    emit(w, "[hidden_size, num_attention_heads * v_head_dim]", FW_TP_ROW, true, D, H * dv,
         "self_attn.o_proj.weight");
    if (fw_config_has_indexer(c)) {
        /* DeepSeek-V3.2's lightning indexer, replicated: every rank selects the same
         * positions for its heads. DeepSeek's FP8 checkpoint keeps weights_proj BF16. */
        const int64_t ih = c->index_n_heads, id = c->index_head_dim;
        emit(w, "[index_n_heads * index_head_dim, q_lora_rank]", FW_TP_REPLICATED, true, ih * id, Q,
             "self_attn.indexer.wq_b.weight");
        emit(w, "[index_head_dim, hidden_size]", FW_TP_REPLICATED, true, id, D, "self_attn.indexer.wk.weight");
        emit(w, "[index_head_dim]", FW_TP_REPLICATED, false, id, 0, "self_attn.indexer.k_norm.weight");
        emit(w, "[index_head_dim]", FW_TP_REPLICATED, false, id, 0, "self_attn.indexer.k_norm.bias");
        emit(w, "[index_n_heads, hidden_size]", FW_TP_REPLICATED, false, ih, D,
             "self_attn.indexer.weights_proj.weight");
    }
    emit(w, "[hidden_size]", FW_TP_REPLICATED, false, D, 0, "post_attention_layernorm.weight");

    /* fw_config_layer_is_moe is stated for l < num_hidden_layers; its rule
     * extends to the MTP layers (DeepSeek-V3's layer 61 is MoE). */
    bool moe = c->n_routed_experts > 0 && l >= c->first_k_dense_replace &&
               (c->moe_layer_freq <= 1 || l % c->moe_layer_freq == 0);
    if (!moe) {
        const int64_t I = c->intermediate_size;
        emit(w, "[intermediate_size, hidden_size]", FW_TP_COLUMN, true, I, D, "mlp.gate_proj.weight");
        emit(w, "[intermediate_size, hidden_size]", FW_TP_COLUMN, true, I, D, "mlp.up_proj.weight");
        emit(w, "[hidden_size, intermediate_size]", FW_TP_ROW, true, D, I, "mlp.down_proj.weight");
    } else {
        const int64_t E = c->n_routed_experts, Ie = c->moe_intermediate_size;
        emit(w, "[n_routed_experts, hidden_size]", FW_TP_REPLICATED, false, E, D, "mlp.gate.weight");
        emit(w, "[n_routed_experts]", FW_TP_REPLICATED, false, E, 0, "mlp.gate.e_score_correction_bias");
        for (int64_t x = 0; x < E; x++) {
            emit(w, "[moe_intermediate_size, hidden_size]", FW_TP_EXPERT, true, Ie, D,
                 "mlp.experts.%lld.gate_proj.weight", (long long)x);
            emit(w, "[moe_intermediate_size, hidden_size]", FW_TP_EXPERT, true, Ie, D,
                 "mlp.experts.%lld.up_proj.weight", (long long)x);
            emit(w, "[hidden_size, moe_intermediate_size]", FW_TP_EXPERT, true, D, Ie,
                 "mlp.experts.%lld.down_proj.weight", (long long)x);
        }
        if (c->n_shared_experts > 0) {
            const int64_t Is = Ie * c->n_shared_experts;
            emit(w, "[moe_intermediate_size * n_shared_experts, hidden_size]", FW_TP_COLUMN, true, Is, D,
                 "mlp.shared_experts.gate_proj.weight");
            emit(w, "[moe_intermediate_size * n_shared_experts, hidden_size]", FW_TP_COLUMN, true, Is, D,
                 "mlp.shared_experts.up_proj.weight");
            emit(w, "[hidden_size, moe_intermediate_size * n_shared_experts]", FW_TP_ROW, true, D, Is,
                 "mlp.shared_experts.down_proj.weight");
        }
    }
    if (w->mtp) {
        emit(w, "[hidden_size]", FW_TP_REPLICATED, false, D, 0, "shared_head.norm.weight");
        emit(w, "[vocab_size, hidden_size]", FW_TP_VOCAB, false, c->vocab_size, D, "shared_head.head.weight");
    }
}

static void walk(const fw_config *c, visit_fn fn, void *user) {
    walker w = {.c = c, .fn = fn, .user = user, .layer = -1};
    const int64_t V = c->vocab_size, D = c->hidden_size;
    emit(&w, "[vocab_size, hidden_size]", FW_TP_VOCAB, false, V, D, "model.embed_tokens.weight");
    for (int l = 0; l < c->num_hidden_layers; l++) walk_layer(&w, l);
    w.layer = -1;
    w.mtp = false;
    w.prefix[0] = '\0';
    emit(&w, "[hidden_size]", FW_TP_REPLICATED, false, D, 0, "model.norm.weight");
    if (!c->tie_word_embeddings)
        emit(&w, "[vocab_size, hidden_size]", FW_TP_VOCAB, false, V, D, "lm_head.weight");
    for (int l = 0; l < c->num_nextn_predict_layers; l++) walk_layer(&w, c->num_hidden_layers + l);
}

typedef struct collect {
    fw_model_tensor *v;
    int64_t n, cap;
    bool oom;
} collect;

static void collect_one(void *user, const fw_model_tensor *t) {
    collect *k = user;
    if (k->oom) return;
    if (k->n == k->cap) {
        int64_t cap = k->cap ? 2 * k->cap : 256;
        fw_model_tensor *v = realloc(k->v, (size_t)cap * sizeof *v);
        if (!v) {
            k->oom = true;
            return;
        }
        k->v = v;
        k->cap = cap;
    }
    k->v[k->n++] = *t;
}

static void tally(void *user, const fw_model_tensor *t) {
    int64_t *k = user;
    (void)t;
    (*k)++;
}

/* Walks with 1 and 2 experts: the count is linear in the expert count, so an
 * absurd one costs nothing to count. */
int64_t fw_model_tensor_count(const fw_config *c) {
    if (c->n_routed_experts <= 2) { /* 0 experts: a dense model, another walk */
        int64_t n = 0;
        walk(c, tally, &n);
        return n;
    }
    fw_config one = *c, two = *c;
    one.n_routed_experts = 1, two.n_routed_experts = 2;
    int64_t n1 = 0, n2 = 0;
    walk(&one, tally, &n1);
    walk(&two, tally, &n2);
    return n1 + (c->n_routed_experts - 1) * (n2 - n1);
}

int fw_model_tensors(const fw_config *c, fw_model_tensor **out, int64_t *n, fw_err *e) {
    int64_t want = fw_model_tensor_count(c);
    if (want > FW_MODEL_TENSORS_MAX)
        return fw_errf(e, "the config describes %lld tensors (num_hidden_layers %d, n_routed_experts %lld, "
                          "num_nextn_predict_layers %d), more than furrow handles (%d)", (long long)want,
                       c->num_hidden_layers, (long long)c->n_routed_experts, c->num_nextn_predict_layers,
                       FW_MODEL_TENSORS_MAX);
    collect k = {0};
    walk(c, collect_one, &k);
    if (k.oom) {
        free(k.v);
        return fw_errf(e, "listing the model's tensors: out of memory");
    }
    *out = k.v;
    *n = k.n;
    return FW_OK;
}

void fw_model_tensor_scale_shape(const fw_config *c, const int64_t shape[2], int64_t out[2]) {
    int64_t b0 = c->fp8_block[0] > 0 ? c->fp8_block[0] : 128;
    int64_t b1 = c->fp8_block[1] > 0 ? c->fp8_block[1] : 128;
    out[0] = (shape[0] + b0 - 1) / b0;
    out[1] = (shape[1] + b1 - 1) / b1;
}

typedef struct counter {
    int64_t total, active;
    bool with_mtp;
    const fw_config *c;
} counter;

static void count_one(void *user, const fw_model_tensor *t) {
    counter *k = user;
    if (t->mtp && !k->with_mtp) return;
    int64_t n = t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1);
    k->total += n;
    /* A token runs k of the E routed experts of each MoE layer. */
    if (t->role == FW_TP_EXPERT)
        k->active += n * k->c->num_experts_per_tok / k->c->n_routed_experts;
    else
        k->active += n;
}

int64_t fw_model_param_count(const fw_config *c, bool with_mtp) {
    counter k = {.with_mtp = with_mtp, .c = c};
    walk(c, count_one, &k);
    return k.total;
}

int64_t fw_model_active_param_count(const fw_config *c) {
    counter k = {.with_mtp = false, .c = c};
    walk(c, count_one, &k);
    return k.active;
}

int fw_model_tensor_layer(const char *name) {
    static const char pre[] = "model.layers.";
    if (strncmp(name, pre, sizeof pre - 1) != 0) return -1;
    const char *p = name + sizeof pre - 1;
    if (*p < '0' || *p > '9') return -1;
    long v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (*p - '0');
        if (v > 1000000) return -1;
    }
    return *p == '.' ? (int)v : -1;
}

static bool ends_with(const char *s, size_t n, const char *suffix) {
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

fw_tp_role fw_model_tensor_role(const fw_config *c, const char *name, int64_t *head_unit) {
    /* A block-scale tensor follows its weight ("<weight>_scale_inv"), and so do an
     * INT4 weight's packed values, an INT8 weight's values and their group scales
     * ("<weight>_packed", "_int8", "_scale"). */
    size_t n = strlen(name);
    if (ends_with(name, n, "_scale_inv")) n -= strlen("_scale_inv");
    else if (ends_with(name, n, "_packed")) n -= strlen("_packed");
    else if (ends_with(name, n, "_int8")) n -= strlen("_int8");
    else if (ends_with(name, n, "_scale")) n -= strlen("_scale");
    int64_t u = 0;
    fw_tp_role r = FW_TP_REPLICATED;
    if (ends_with(name, n, "embed_tokens.weight") || ends_with(name, n, "lm_head.weight") ||
        ends_with(name, n, "shared_head.head.weight")) {
        r = FW_TP_VOCAB;
    } else if (strstr(name, ".mlp.experts.")) {
        r = FW_TP_EXPERT;
    } else if (ends_with(name, n, "self_attn.q_b_proj.weight") || ends_with(name, n, "self_attn.q_proj.weight")) {
        r = FW_TP_COLUMN, u = fw_config_qk_head_dim(c);
    } else if (ends_with(name, n, "self_attn.kv_b_proj.weight")) {
        r = FW_TP_COLUMN, u = (int64_t)c->qk_nope_head_dim + c->v_head_dim;
    } else if (ends_with(name, n, "self_attn.o_proj.weight")) {
        r = FW_TP_ROW, u = c->v_head_dim;
    } else if (ends_with(name, n, "mlp.gate_proj.weight") || ends_with(name, n, "mlp.up_proj.weight") ||
               ends_with(name, n, "mlp.shared_experts.gate_proj.weight") ||
               ends_with(name, n, "mlp.shared_experts.up_proj.weight")) {
        r = FW_TP_COLUMN;
    } else if (ends_with(name, n, "mlp.down_proj.weight") ||
               ends_with(name, n, "mlp.shared_experts.down_proj.weight")) {
        r = FW_TP_ROW;
    }
    if (head_unit) *head_unit = u;
    return r;
}

bool fw_model_tensor_is_linear(const char *name) {
    size_t n = strlen(name);
    return ends_with(name, n, ".weight") && !ends_with(name, n, "embed_tokens.weight") &&
           !ends_with(name, n, "mlp.gate.weight") && !ends_with(name, n, "norm.weight");
}
