/* Per-tensor slicing: which hyperslab of a checkpoint tensor one rank reads.
 * The tensor is first recognised and its shape checked against the config (the
 * shapes mirror io/model_tensors.c; tests/test_shard.c checks every tensor of
 * fw_model_tensors against this file), then cut by its parallel role. */
#include "partition/shard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/model_tensors.h"

/* What a name denotes: its weight's shape and whether an FP8 checkpoint
 * quantizes it. layer -1: embed, final norm, head. */
typedef struct tensor_kind {
    int layer;
    int64_t expert;            /* routed expert index, -1 otherwise */
    int ndim;
    int64_t shape[2];
    bool quantized;
} tensor_kind;

static bool ends_with(const char *s, size_t n, const char *suffix) {
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static void set2(tensor_kind *k, int64_t rows, int64_t cols, bool q) {
    k->ndim = 2, k->shape[0] = rows, k->shape[1] = cols, k->quantized = q;
}
static void set1(tensor_kind *k, int64_t n) { k->ndim = 1, k->shape[0] = n, k->shape[1] = 0; }

/* s: the part after "model.layers.<l>." (without "_scale_inv"). false: unknown. */
static bool layer_tensor(const fw_config *c, int l, const char *s, tensor_kind *k) {
    const int64_t D = c->hidden_size, H = c->num_attention_heads, Q = c->q_lora_rank;
    const int64_t C = c->kv_lora_rank, R = c->qk_rope_head_dim, E = c->n_routed_experts;
    const int64_t dqk = fw_config_qk_head_dim(c), dn = c->qk_nope_head_dim, dv = c->v_head_dim;
    const int64_t Ie = c->moe_intermediate_size, Is = Ie * c->n_shared_experts;
    const bool mtp = l >= c->num_hidden_layers;
    /* As io/model_tensors.c: the MoE rule extends to the MTP layers. */
    const bool moe = E > 0 && l >= c->first_k_dense_replace &&
                     (c->moe_layer_freq <= 1 || l % c->moe_layer_freq == 0);

    if (!strncmp(s, "mlp.experts.", 12)) {  /* first: nearly all tensors are experts */
        char *end;
        long long x = strtoll(s + 12, &end, 10);
        if (!moe || end == s + 12 || *end != '.' || x < 0 || x >= E) return false;
        k->expert = x;
        if (!strcmp(end, ".gate_proj.weight") || !strcmp(end, ".up_proj.weight")) set2(k, Ie, D, true);
        else if (!strcmp(end, ".down_proj.weight")) set2(k, D, Ie, true);
        else return false;
    } else if (!strcmp(s, "input_layernorm.weight") || !strcmp(s, "post_attention_layernorm.weight")) set1(k, D);
    else if (Q > 0 && !strcmp(s, "self_attn.q_a_proj.weight")) set2(k, Q, D, true);
    else if (Q > 0 && !strcmp(s, "self_attn.q_a_layernorm.weight")) set1(k, Q);
    else if (Q > 0 && !strcmp(s, "self_attn.q_b_proj.weight")) set2(k, H * dqk, Q, true);
    else if (Q == 0 && !strcmp(s, "self_attn.q_proj.weight")) set2(k, H * dqk, D, true);
    else if (!strcmp(s, "self_attn.kv_a_proj_with_mqa.weight")) set2(k, C + R, D, true);
    else if (!strcmp(s, "self_attn.kv_a_layernorm.weight")) set1(k, C);
    else if (!strcmp(s, "self_attn.kv_b_proj.weight")) set2(k, H * (dn + dv), C, true);
    else if (!strcmp(s, "self_attn.o_proj.weight")) set2(k, D, H * dv, true);
    else if (fw_config_has_indexer(c) && !strncmp(s, "self_attn.indexer.", 18)) { /* DeepSeek-V3.2 */
        const char *t = s + 18;
        const int64_t ih = c->index_n_heads, id = c->index_head_dim;
        if (!strcmp(t, "wq_b.weight")) set2(k, ih * id, Q, true);
        else if (!strcmp(t, "wk.weight")) set2(k, id, D, true);
        else if (!strcmp(t, "k_norm.weight") || !strcmp(t, "k_norm.bias")) set1(k, id);
        else if (!strcmp(t, "weights_proj.weight")) set2(k, ih, D, false);
        else return false;
    }
    else if (!moe && (!strcmp(s, "mlp.gate_proj.weight") || !strcmp(s, "mlp.up_proj.weight")))
        set2(k, c->intermediate_size, D, true);
    else if (!moe && !strcmp(s, "mlp.down_proj.weight")) set2(k, D, c->intermediate_size, true);
    else if (moe && !strcmp(s, "mlp.gate.weight")) set2(k, E, D, false);
    else if (moe && !strcmp(s, "mlp.gate.e_score_correction_bias")) set1(k, E);
    else if (moe && Is > 0 &&
             (!strcmp(s, "mlp.shared_experts.gate_proj.weight") || !strcmp(s, "mlp.shared_experts.up_proj.weight")))
        set2(k, Is, D, true);
    else if (moe && Is > 0 && !strcmp(s, "mlp.shared_experts.down_proj.weight")) set2(k, D, Is, true);
    else if (mtp && !strcmp(s, "embed_tokens.weight")) set2(k, c->vocab_size, D, false);
    else if (mtp && (!strcmp(s, "enorm.weight") || !strcmp(s, "hnorm.weight") ||
                     !strcmp(s, "shared_head.norm.weight")))
        set1(k, D);
    else if (mtp && !strcmp(s, "eh_proj.weight")) set2(k, D, 2 * D, true);
    else if (mtp && !strcmp(s, "shared_head.head.weight")) set2(k, c->vocab_size, D, false);
    else return false;
    return true;
}

/* What part of a weight a tensor is. */
typedef enum part_kind {
    PART_WEIGHT = 0,
    PART_FP8_SCALE,      /* "<weight>_scale_inv" */
    PART_INT4_PACKED,    /* "<weight>_packed": [rows, cols / 8] int32 words */
    PART_GROUP_SCALE,    /* "<weight>_scale": INT4 or INT8 scales [rows, cols / group] */
    PART_INT8,           /* "<weight>_int8": [rows, cols] int8 values */
} part_kind;

/* Recognises `name` (a weight, its "_scale_inv", an INT4 weight's "_packed", an
 * INT8 weight's "_int8", or their "_scale") and checks `shape` against the config.
 * On success *k describes the weight; *part says which part of it the tensor is. */
static int recognise(const fw_config *c, const char *name, int ndim, const int64_t *shape, tensor_kind *k,
                     part_kind *part, fw_err *e) {
    memset(k, 0, sizeof *k);
    k->layer = -1;
    k->expert = -1;
    size_t n = strlen(name);
    static const char *const suffix[] = {"", "_scale_inv", "_packed", "_scale", "_int8"};
    *part = PART_WEIGHT;
    for (int i = 1; i < 5 && *part == PART_WEIGHT; i++)
        if (ends_with(name, n, suffix[i])) *part = (part_kind)i;
    char base[160];
    size_t bn = n - strlen(suffix[*part]);
    if (bn >= sizeof base) return fw_errf(e, "tensor '%s': name too long", name);
    memcpy(base, name, bn);
    base[bn] = '\0';

    bool known;
    int layer = fw_model_tensor_layer(base);
    if (layer >= 0) {
        int nl = c->num_hidden_layers + c->num_nextn_predict_layers;
        if (layer >= nl)
            return fw_errf(e, "tensor '%s': layer %d does not exist (num_hidden_layers %d + "
                           "num_nextn_predict_layers %d)", name, layer, c->num_hidden_layers,
                           c->num_nextn_predict_layers);
        k->layer = layer;
        const char *s = strchr(base + strlen("model.layers."), '.') + 1;
        known = layer_tensor(c, layer, s, k);
    } else if (!strcmp(base, "model.embed_tokens.weight")) {
        set2(k, c->vocab_size, c->hidden_size, false), known = true;
    } else if (!strcmp(base, "model.norm.weight")) {
        set1(k, c->hidden_size), known = true;
    } else {
        known = !c->tie_word_embeddings && !strcmp(base, "lm_head.weight");
        if (known) set2(k, c->vocab_size, c->hidden_size, false);
    }
    if (!known) {
        if (layer >= 0 && layer < c->num_hidden_layers && strstr(base, ".mlp."))
            return fw_errf(e, "unknown tensor '%s' for this config (layer %d is %s: n_routed_experts %d, "
                           "first_k_dense_replace %d, moe_layer_freq %d)", name, layer,
                           fw_config_layer_is_moe(c, layer) ? "a MoE layer" : "a dense layer",
                           c->n_routed_experts, c->first_k_dense_replace, c->moe_layer_freq);
        return fw_errf(e, "unknown tensor '%s' (not a DeepSeek-V3 checkpoint tensor of this config)", name);
    }

    int64_t want[2] = {k->shape[0], k->shape[1]};
    int want_ndim = k->ndim;
    if (*part == PART_INT4_PACKED || *part == PART_GROUP_SCALE || *part == PART_INT8) {
        if (k->ndim != 2)
            return fw_errf(e, "tensor '%s': %s is not a matrix, so it has no INT4 or INT8 form", name, base);
        if (*part == PART_INT4_PACKED && k->shape[1] % 8)
            return fw_errf(e, "tensor '%s': %s has %lld columns, not a multiple of 8, so it has no INT4 form", name,
                           base, (long long)k->shape[1]);
        if (*part == PART_INT4_PACKED) want[1] = k->shape[1] / 8;
        /* The scales' columns give the group size; whole groups only. */
        if (*part == PART_GROUP_SCALE && ndim == 2 && shape[1] > 0 && k->shape[1] % shape[1] == 0)
            want[1] = shape[1];
        else if (*part == PART_GROUP_SCALE)
            return fw_errf(e, "tensor '%s': INT4/INT8 scales must be [%lld, columns / group size] with a group size "
                              "that divides the %lld columns of %s", name, (long long)k->shape[0],
                           (long long)k->shape[1], base);
    }
    if (*part == PART_FP8_SCALE) {
        if (!k->quantized)
            return fw_errf(e, "tensor '%s': %s is never FP8, so it has no block scales", name, base);
        if (!c->fp8)
            return fw_errf(e, "tensor '%s': block scales, but the config has no fp8 quantization_config", name);
        fw_model_tensor_scale_shape(c, k->shape, want);
        want_ndim = 2;
    }
    if (ndim != want_ndim || shape[0] != want[0] || (ndim == 2 && shape[1] != want[1])) {
        char got[64], exp[64];
        if (ndim == 2) snprintf(got, sizeof got, "[%lld, %lld]", (long long)shape[0], (long long)shape[1]);
        else if (ndim == 1) snprintf(got, sizeof got, "[%lld]", (long long)shape[0]);
        else snprintf(got, sizeof got, "%d dimensions", ndim);
        if (want_ndim == 2) snprintf(exp, sizeof exp, "[%lld, %lld]", (long long)want[0], (long long)want[1]);
        else snprintf(exp, sizeof exp, "[%lld]", (long long)want[0]);
        return fw_errf(e, "tensor '%s' has shape %s but the config implies %s", name, got, exp);
    }
    return FW_OK;
}

/* Is the tensor on stage pp_rank? Layer tensors follow their layer; MTP layers
 * only when asked (speculative decoding), then on the last stage beside the head
 * whose hidden states they take; embed on the first stage (and the last when the
 * head is tied to it); final norm and head on the last. */
static bool on_stage(const fw_config *c, const fw_layout *l, const char *name, int layer, int pp_rank, bool mtp) {
    if (layer >= c->num_hidden_layers) return mtp && pp_rank == l->pp - 1;
    if (layer >= 0) return fw_layout_stage_of_layer(l, layer) == pp_rank;
    if (!strncmp(name, "model.embed_tokens.", 19))
        return pp_rank == 0 || (c->tie_word_embeddings && pp_rank == l->pp - 1);
    return pp_rank == l->pp - 1;
}

static int whole(fw_slice *out, int ndim, const int64_t *shape) {
    out->needed = true;
    for (int i = 0; i < ndim; i++) out->start[i] = 0, out->count[i] = shape[i];
    return FW_OK;
}

static int slice(const fw_config *c, const fw_layout *l, int pp_rank, int tp_rank, const char *name, int ndim,
                 const int64_t *shape, bool mtp, fw_slice *out, fw_err *e) {
    memset(out, 0, sizeof *out);
    if (l->tp <= 0 || l->pp <= 0 || tp_rank < 0 || tp_rank >= l->tp || pp_rank < 0 || pp_rank >= l->pp)
        return fw_errf(e, "tensor '%s': rank (pp %d, tp %d) is outside the layout (pp %d, tp %d)", name,
                       pp_rank, tp_rank, l->pp, l->tp);
    tensor_kind k;
    part_kind part;
    if (recognise(c, name, ndim, shape, &k, &part, e)) return FW_ERR;
    out->ndim = ndim;
    if (!on_stage(c, l, name, k.layer, pp_rank, mtp)) return FW_OK;

    fw_tp_role role = fw_model_tensor_role(c, name, NULL);
    int dim;  /* the split dimension */
    switch (role) {
    case FW_TP_EXPERT:
        /* Expert x lives on tp rank x * tp / E (floor): contiguous ranges. */
        if (k.expert * l->tp / c->n_routed_experts != tp_rank) return FW_OK;
        return whole(out, ndim, shape);
    case FW_TP_REPLICATED: return whole(out, ndim, shape);
    case FW_TP_COLUMN:
    case FW_TP_VOCAB: dim = 0; break;
    case FW_TP_ROW: dim = 1; break;
    default: return fw_errf(e, "tensor '%s': unknown parallel role", name);
    }
    if (k.ndim != 2) return fw_errf(e, "tensor '%s': a split tensor must be 2-D", name);
    const int64_t full = k.shape[dim];
    if (full % l->tp)
        return fw_errf(e, "tensor '%s': its %lld %s do not split evenly over tp %d", name, (long long)full,
                       dim ? "columns" : "rows", l->tp);
    int64_t start = full / l->tp * tp_rank, count = full / l->tp;
    out->needed = true;
    for (int i = 0; i < 2; i++) out->start[i] = 0, out->count[i] = shape[i];
    if (dim == 1 && part == PART_GROUP_SCALE && shape[1] == 1) {
        /* One scale per row (INT8 per channel): every column slice keeps it. */
        start = 0, count = 1;
    } else if (dim == 1 && (part == PART_INT4_PACKED || part == PART_GROUP_SCALE)) {
        /* Packed words and scales split at group boundaries only. */
        const int64_t G = part == PART_GROUP_SCALE ? full / shape[1] : 8;
        if (start % G || count % G)
            return fw_errf(e, "tensor '%s': tp %d gives each rank %lld of its %lld columns, not a multiple of its "
                              "group size %lld; choose a tp whose slices are whole groups", name, l->tp,
                           (long long)count, (long long)full, (long long)G);
        start /= G, count /= G;
    }
    if (part == PART_FP8_SCALE) {
        /* The block rows/columns that cover [start, start + count): the slice may
         * start inside a block (the loader keeps the offset). */
        const int64_t b = c->fp8_block[dim] > 0 ? c->fp8_block[dim] : 128;
        const int64_t b0 = start / b, b1 = (start + count + b - 1) / b;
        start = b0, count = b1 - b0;
    }
    out->start[dim] = start;
    out->count[dim] = count;
    return FW_OK;
}

int fw_shard_slice(const fw_config *c, const fw_layout *l, int pp_rank, int tp_rank, const char *name,
                   int ndim, const int64_t *shape, fw_slice *out, fw_err *e) {
    return slice(c, l, pp_rank, tp_rank, name, ndim, shape, false, out, e);
}

int fw_shard_slice_mtp(const fw_config *c, const fw_layout *l, int pp_rank, int tp_rank, const char *name,
                       int ndim, const int64_t *shape, fw_slice *out, fw_err *e) {
    return slice(c, l, pp_rank, tp_rank, name, ndim, shape, true, out, e);
}
