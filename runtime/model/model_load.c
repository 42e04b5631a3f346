/* Loading a furrow checkpoint into an fw_model: every tensor is checked against
 * the config's shape and kept in its stored format (BF16, FP8 + block scales,
 * INT4 or INT8 + group scales, F32). */
#include "runtime/model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/dtype.h"
#include "io/model_tensors.h"
#include "partition/shard.h"
#include "runtime/model/rope.h"

static void *model_alloc(fw_model *m, size_t bytes) {
    if (m->n_allocs == m->cap_allocs) {
        int64_t cap = m->cap_allocs ? 2 * m->cap_allocs : 256;
        void **a = realloc(m->allocs, (size_t)cap * sizeof *a);
        if (!a) return NULL;
        m->allocs = a;
        m->cap_allocs = cap;
    }
    /* 64-byte alignment for SIMD loads; round the size up as aligned_alloc wants. */
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    if (p) m->allocs[m->n_allocs++] = p;
    return p;
}

static int check_shape(const fw_tensor_info *in, const char *name, int64_t rows, int64_t cols,
                       fw_err *e) {
    bool ok = cols ? (in->ndim == 2 && in->shape[0] == rows && in->shape[1] == cols)
                   : (in->ndim == 1 && in->shape[0] == rows);
    if (ok) return FW_OK;
    char got[128] = "", want[64];
    for (int i = 0, n = 0; i < in->ndim && n < (int)sizeof got - 24; i++)
        n += snprintf(got + n, sizeof got - (size_t)n, "%s%lld", i ? ", " : "", (long long)in->shape[i]);
    if (cols) snprintf(want, sizeof want, "%lld, %lld", (long long)rows, (long long)cols);
    else snprintf(want, sizeof want, "%lld", (long long)rows);
    return fw_errf(e, "tensor '%s' has shape [%s], the config implies [%s]", name, got, want);
}

/* The hyperslab of `name` (full shape `shape`) this rank reads: all of it on a
 * single rank, else what partition/shard says. */
static int slice_of(const fw_model *m, const fw_layout *lay, const char *name, int ndim,
                    const int64_t *shape, fw_slice *sl, fw_err *e) {
    if (!lay) {
        *sl = (fw_slice){.needed = true, .ndim = ndim, .start = {0, 0}, .count = {shape[0], ndim > 1 ? shape[1] : 1}};
        return FW_OK;
    }
    int (*fn)(const fw_config *, const fw_layout *, int, int, const char *, int, const int64_t *, fw_slice *,
              fw_err *) = fw_model_tensor_layer(name) >= m->cfg.num_hidden_layers ? fw_shard_slice_mtp : fw_shard_slice;
    if (fn(&m->cfg, lay, m->part.pp_rank, m->part.tp_rank, name, ndim, shape, sl, e)) return FW_ERR;
    if (!sl->needed) return fw_errf(e, "tensor '%s' is not assigned to rank (pp %d, tp %d)", name, m->part.pp_rank, m->part.tp_rank);
    return FW_OK;
}

/* Keeps a reference to the mapping `h` (one per data file) until fw_model_free. */
static int hold_mapping(fw_model *m, fw_ckpt_mapping *h, fw_err *e) {
    for (int i = 0; i < m->n_maps; i++)
        if (m->maps[i] == h) {
            fw_ckpt_mapping_release(h);   /* held already */
            return FW_OK;
        }
    fw_ckpt_mapping **a = realloc(m->maps, (size_t)(m->n_maps + 1) * sizeof *a);
    if (!a) {
        fw_ckpt_mapping_release(h);
        return fw_errf(e, "out of memory");
    }
    m->maps = a;
    m->maps[m->n_maps++] = h;
    return FW_OK;
}

/* A slice of a tensor, mapped from its file where it can be (FW_LOAD_MMAP), else
 * read into fresh memory; counts the bytes. */
static const void *read_slice(fw_model *m, fw_ckpt *ck, const char *name, fw_dtype dt, const fw_slice *sl,
                              fw_err *e) {
    size_t bytes = (size_t)sl->count[0] * (size_t)(sl->ndim > 1 ? sl->count[1] : 1) * fw_dtype_size(dt);
    if (m->map) {
        const void *p;
        fw_ckpt_mapping *h;
        const char *why;
        int r = fw_ckpt_map(ck, name, sl->start, sl->count, &p, &h, &why, e);
        if (r == FW_ERR || (r == FW_OK && hold_mapping(m, h, e))) return NULL;
        if (r == FW_OK) {
            m->bytes_read += bytes;
            m->bytes_mapped += bytes;
            return p;
        }
    }
    void *data = model_alloc(m, bytes);
    if (!data) {
        fw_errf(e, "tensor '%s': out of memory (%zu bytes)", name, bytes);
        return NULL;
    }
    if (fw_ckpt_read(ck, name, sl->start, sl->count, data, e)) return NULL;
    m->bytes_read += bytes;
    return data;
}

/* Norm weights, block scales (FP8's f32, INT4's and INT8's bf16) and the router bias scale
 * everything after them: a NaN or Inf there is a damaged checkpoint, refused by
 * name rather than run. */
static int not_finite(const char *name, float v, int64_t i, fw_err *e) {
    return fw_errf(e, "tensor '%s' holds %s at element %lld: the checkpoint (or the model it was converted from) "
                      "is damaged", name, isnan(v) ? "NaN" : "an infinity", (long long)i);
}

static int check_finite(const char *name, const float *v, int64_t n, fw_err *e) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return not_finite(name, v[i], i, e);
    return FW_OK;
}

static int check_finite_bf16(const char *name, const uint16_t *v, int64_t n, fw_err *e) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(fw_bf16_to_f32(v[i]))) return not_finite(name, fw_bf16_to_f32(v[i]), i, e);
    return FW_OK;
}

/* An INT4 weight "<name>_packed" + "<name>_scale", or an INT8 weight "<name>_int8"
 * + "<name>_scale" (io/FORMAT.md): this rank's slice of both, cut at group
 * boundaries (partition/shard refuses a tp that would split a group; an INT8
 * weight with one scale per row keeps it in every column slice). The
 * `quantization` label must say what the shapes say. */
static int load_grouped(fw_model *m, fw_ckpt *ck, const fw_layout *lay, const char *name, fw_wtype type, int64_t rows,
                        int64_t cols, fw_weight *w, fw_err *e) {
    const bool int4 = type == FW_WTYPE_INT4;
    const char *kind = int4 ? "INT4" : "INT8";
    char vname[512], sname[512], want[48];
    snprintf(vname, sizeof vname, "%s%s", name, int4 ? "_packed" : "_int8");
    snprintf(sname, sizeof sname, "%s_scale", name);
    fw_tensor_info vi, si;
    if (fw_ckpt_info(ck, vname, &vi, e) || fw_ckpt_info(ck, sname, &si, e)) return FW_ERR;
    const int64_t vcols = int4 ? cols / 8 : cols;
    if ((int4 && cols % 8) || vi.dtype != (int4 ? FW_DTYPE_I32 : FW_DTYPE_I8) || check_shape(&vi, vname, rows, vcols, e))
        return fw_errf(e, "tensor '%s': %s values must be %s [%lld, %lld%s], found %s", vname, kind,
                       int4 ? "I32" : "I8", (long long)rows, (long long)cols, int4 ? " / 8" : "",
                       fw_dtype_name(vi.dtype));
    if (si.dtype != FW_DTYPE_BF16 || si.ndim != 2 || si.shape[0] != rows || si.shape[1] <= 0 || cols % si.shape[1])
        return fw_errf(e, "tensor '%s': %s scales must be BF16 [%lld, %lld / group size]", sname, kind, (long long)rows,
                       (long long)cols);
    const int64_t G = cols / si.shape[1];
    if (int4) snprintf(want, sizeof want, "int4_sym_group%lld", (long long)G);
    else fw_int8_label(cols, G, want, sizeof want);
    if ((int4 && G % 8) || strcmp(vi.quant, want) != 0)
        return fw_errf(e, "tensor '%s': quantization '%s' is not what this furrow reads for its shapes ('%s'); "
                          "convert the checkpoint with this furrow", vname, vi.quant, want);
    const int64_t vshape[2] = {rows, vcols}, sshape[2] = {rows, si.shape[1]};
    fw_slice sl, ss;
    if (slice_of(m, lay, sname, 2, sshape, &ss, e) || slice_of(m, lay, vname, 2, vshape, &sl, e)) return FW_ERR;
    const int64_t slice_cols = int4 ? sl.count[1] * 8 : sl.count[1];
    if (int4 && si.shape[1] == 1 && slice_cols != cols)  /* INT4's chunks never split a group */
        return fw_errf(e, "tensor '%s': this layout gives each rank %lld of its %lld columns, which splits its one INT4 "
                          "group per row; choose a tp whose slices are whole groups", vname, (long long)slice_cols,
                       (long long)cols);
    const void *data = read_slice(m, ck, vname, vi.dtype, &sl, e);
    const uint16_t *scale = data ? read_slice(m, ck, sname, FW_DTYPE_BF16, &ss, e) : NULL;
    if (!scale || check_finite_bf16(sname, scale, ss.count[0] * ss.count[1], e)) return FW_ERR;
    m->weight_bytes += (uint64_t)(sl.count[0] * sl.count[1]) * fw_dtype_size(vi.dtype) +
                       (uint64_t)(ss.count[0] * ss.count[1]) * 2;
    /* A column slice of a per-channel weight: its one group is the slice. */
    *w = (fw_weight){.type = type, .rows = sl.count[0], .cols = slice_cols, .ld = sl.count[1], .data = data,
                     .gscale = scale, .scale_ld = ss.count[1], .group = si.shape[1] == 1 ? slice_cols : G};
    return FW_OK;
}

/* A 2-D weight (rows, cols) in its stored format, with its scales if FP8, INT4
 * or INT8 (keyed off "<name>_packed" or "<name>_int8" being there instead of the
 * weight): this rank's slice of it. An FP8 slice that starts inside a 128-block
 * keeps the offset in (r0, c0) so the kernels find each element's scale. */
static int load_weight(fw_model *m, fw_ckpt *ck, const fw_layout *lay, const char *name, int64_t rows,
                       int64_t cols, fw_weight *w, fw_err *e) {
    char pname[512], vname[512];
    snprintf(pname, sizeof pname, "%s_packed", name);
    snprintf(vname, sizeof vname, "%s_int8", name);
    if (!fw_ckpt_has(ck, name) && fw_ckpt_has(ck, pname))
        return load_grouped(m, ck, lay, name, FW_WTYPE_INT4, rows, cols, w, e);
    if (!fw_ckpt_has(ck, name) && fw_ckpt_has(ck, vname))
        return load_grouped(m, ck, lay, name, FW_WTYPE_INT8, rows, cols, w, e);
    fw_tensor_info in;
    if (fw_ckpt_info(ck, name, &in, e) || check_shape(&in, name, rows, cols, e)) return FW_ERR;
    memset(w, 0, sizeof *w);
    switch (in.dtype) {
    case FW_DTYPE_F32: w->type = FW_WTYPE_F32; break;
    case FW_DTYPE_BF16: w->type = FW_WTYPE_BF16; break;
    case FW_DTYPE_F8_E4M3: w->type = FW_WTYPE_FP8; break;
    default:
        return fw_errf(e, "tensor '%s': dtype %s is not supported for a weight matrix", name,
                       fw_dtype_name(in.dtype));
    }
    fw_slice sl;
    int64_t shape[2] = {rows, cols};
    if (slice_of(m, lay, name, 2, shape, &sl, e)) return FW_ERR;
    const void *data = read_slice(m, ck, name, in.dtype, &sl, e);
    if (!data) return FW_ERR;
    m->weight_bytes += (uint64_t)(sl.count[0] * sl.count[1]) * fw_dtype_size(in.dtype);
    w->rows = sl.count[0];
    w->cols = sl.count[1];
    w->ld = w->cols;
    w->data = data;
    if (w->type != FW_WTYPE_FP8) return FW_OK;

    char sname[512];
    snprintf(sname, sizeof sname, "%s_scale_inv", name);
    int64_t sshape[2] = {(rows + FW_FP8_BLOCK - 1) / FW_FP8_BLOCK, (cols + FW_FP8_BLOCK - 1) / FW_FP8_BLOCK};
    if (fw_ckpt_info(ck, sname, &in, e) || check_shape(&in, sname, sshape[0], sshape[1], e)) return FW_ERR;
    if (in.dtype != FW_DTYPE_F32)
        return fw_errf(e, "tensor '%s': block scales must be F32, found %s", sname, fw_dtype_name(in.dtype));
    fw_slice ss;
    if (slice_of(m, lay, sname, 2, sshape, &ss, e)) return FW_ERR;
    if (!(w->scale = read_slice(m, ck, sname, in.dtype, &ss, e)) ||
        check_finite(sname, w->scale, ss.count[0] * ss.count[1], e))
        return FW_ERR;
    m->weight_bytes += (uint64_t)(ss.count[0] * ss.count[1]) * sizeof(float);
    w->scale_ld = ss.count[1];
    w->r0 = sl.start[0] - ss.start[0] * FW_FP8_BLOCK;
    w->c0 = sl.start[1] - ss.start[1] * FW_FP8_BLOCK;
    return FW_OK;
}

/* A 1-D vector (norm weights, router bias), widened to float32 (it is small). */
static int load_vector(fw_model *m, fw_ckpt *ck, const char *name, int64_t n, float **out, fw_err *e) {
    fw_tensor_info in;
    if (fw_ckpt_info(ck, name, &in, e) || check_shape(&in, name, n, 0, e)) return FW_ERR;
    if (in.dtype != FW_DTYPE_F32 && in.dtype != FW_DTYPE_BF16)
        return fw_errf(e, "tensor '%s': dtype %s is not supported for a vector", name,
                       fw_dtype_name(in.dtype));
    float *v = model_alloc(m, (size_t)n * sizeof(float));
    if (!v) return fw_errf(e, "tensor '%s': out of memory", name);
    if (fw_ckpt_read(ck, name, NULL, NULL, v, e)) return FW_ERR;
    if (in.dtype == FW_DTYPE_BF16) /* widen in place, from the end backwards */
        for (int64_t i = n - 1; i >= 0; i--) v[i] = fw_bf16_to_f32(((const uint16_t *)v)[i]);
    if (check_finite(name, v, n, e)) return FW_ERR;
    m->weight_bytes += (uint64_t)n * fw_dtype_size(in.dtype);
    m->bytes_read += (uint64_t)n * fw_dtype_size(in.dtype);
    *out = v;
    return FW_OK;
}

#define NAME(buf, ...) (snprintf(buf, sizeof buf, __VA_ARGS__), buf)

static int load_layer(fw_model *m, fw_ckpt *ck, const fw_layout *lay, int l, fw_layer *L, fw_err *e) {
    const fw_config *c = &m->cfg;
    const int64_t D = c->hidden_size, H = c->num_attention_heads;
    const int64_t dqk = fw_config_qk_head_dim(c), dn = c->qk_nope_head_dim, dv = c->v_head_dim;
    const int64_t C = c->kv_lora_rank, R = c->qk_rope_head_dim;
    char n[256], pre[64];
    snprintf(pre, sizeof pre, "model.layers.%d", l);

    if (load_vector(m, ck, NAME(n, "%s.input_layernorm.weight", pre), D, &L->attn_norm, e) ||
        load_vector(m, ck, NAME(n, "%s.post_attention_layernorm.weight", pre), D, &L->ffn_norm, e))
        return FW_ERR;
    if (c->q_lora_rank > 0) {
        if (load_weight(m, ck, lay, NAME(n, "%s.self_attn.q_a_proj.weight", pre), c->q_lora_rank, D, &L->q_a, e) ||
            load_vector(m, ck, NAME(n, "%s.self_attn.q_a_layernorm.weight", pre), c->q_lora_rank, &L->q_a_norm, e) ||
            load_weight(m, ck, lay, NAME(n, "%s.self_attn.q_b_proj.weight", pre), H * dqk, c->q_lora_rank, &L->q_b, e))
            return FW_ERR;
    } else if (load_weight(m, ck, lay, NAME(n, "%s.self_attn.q_proj.weight", pre), H * dqk, D, &L->q_b, e)) {
        return FW_ERR;
    }
    if (load_weight(m, ck, lay, NAME(n, "%s.self_attn.kv_a_proj_with_mqa.weight", pre), C + R, D, &L->kv_a, e) ||
        load_vector(m, ck, NAME(n, "%s.self_attn.kv_a_layernorm.weight", pre), C, &L->kv_a_norm, e) ||
        load_weight(m, ck, lay, NAME(n, "%s.self_attn.kv_b_proj.weight", pre), H * (dn + dv), C, &L->kv_b, e) ||
        load_weight(m, ck, lay, NAME(n, "%s.self_attn.o_proj.weight", pre), D, H * dv, &L->o, e))
        return FW_ERR;

    if (fw_config_has_indexer(c)) {
        const int64_t ih = c->index_n_heads, id = c->index_head_dim;
        if (load_weight(m, ck, lay, NAME(n, "%s.self_attn.indexer.wq_b.weight", pre), ih * id, c->q_lora_rank,
                        &L->ix_wq_b, e) ||
            load_weight(m, ck, lay, NAME(n, "%s.self_attn.indexer.wk.weight", pre), id, D, &L->ix_wk, e) ||
            load_vector(m, ck, NAME(n, "%s.self_attn.indexer.k_norm.weight", pre), id, &L->ix_k_norm, e) ||
            load_vector(m, ck, NAME(n, "%s.self_attn.indexer.k_norm.bias", pre), id, &L->ix_k_bias, e) ||
            load_weight(m, ck, lay, NAME(n, "%s.self_attn.indexer.weights_proj.weight", pre), ih, D, &L->ix_w, e))
            return FW_ERR;
    }
    /* fw_config_layer_is_moe's rule, extended to the MTP layers as io/model_tensors.c does. */
    L->moe = c->n_routed_experts > 0 && l >= c->first_k_dense_replace &&
             (c->moe_layer_freq <= 1 || l % c->moe_layer_freq == 0);
    if (!L->moe) {
        const int64_t I = c->intermediate_size;
        return load_weight(m, ck, lay, NAME(n, "%s.mlp.gate_proj.weight", pre), I, D, &L->gate, e) ||
               load_weight(m, ck, lay, NAME(n, "%s.mlp.up_proj.weight", pre), I, D, &L->up, e) ||
               load_weight(m, ck, lay, NAME(n, "%s.mlp.down_proj.weight", pre), D, I, &L->down, e);
    }
    const int64_t E = c->n_routed_experts, Ie = c->moe_intermediate_size;
    if (load_weight(m, ck, lay, NAME(n, "%s.mlp.gate.weight", pre), E, D, &L->router, e) ||
        load_vector(m, ck, NAME(n, "%s.mlp.gate.e_score_correction_bias", pre), E, &L->router_bias, e))
        return FW_ERR;
    L->exp_gate = model_alloc(m, 3 * (size_t)E * sizeof(fw_weight));
    if (!L->exp_gate) return fw_errf(e, "layer %d: out of memory", l);
    L->exp_up = L->exp_gate + E;
    L->exp_down = L->exp_up + E;
    for (int64_t x = m->part.exp_first; x < m->part.exp_first + m->part.exp_n; x++)
        if (load_weight(m, ck, lay, NAME(n, "%s.mlp.experts.%lld.gate_proj.weight", pre, (long long)x), Ie, D, &L->exp_gate[x], e) ||
            load_weight(m, ck, lay, NAME(n, "%s.mlp.experts.%lld.up_proj.weight", pre, (long long)x), Ie, D, &L->exp_up[x], e) ||
            load_weight(m, ck, lay, NAME(n, "%s.mlp.experts.%lld.down_proj.weight", pre, (long long)x), D, Ie, &L->exp_down[x], e))
            return FW_ERR;
    if (c->n_shared_experts > 0) {
        const int64_t Is = Ie * c->n_shared_experts;
        if (load_weight(m, ck, lay, NAME(n, "%s.mlp.shared_experts.gate_proj.weight", pre), Is, D, &L->sh_gate, e) ||
            load_weight(m, ck, lay, NAME(n, "%s.mlp.shared_experts.up_proj.weight", pre), Is, D, &L->sh_up, e) ||
            load_weight(m, ck, lay, NAME(n, "%s.mlp.shared_experts.down_proj.weight", pre), D, Is, &L->sh_down, e))
            return FW_ERR;
    }
    return FW_OK;
}

/* What this rank holds, from the layout (everything when there is none). */
static void set_part(fw_model *m, const fw_layout *lay, int pp_rank, int tp_rank) {
    const fw_config *c = &m->cfg;
    fw_part *p = &m->part;
    memset(p, 0, sizeof *p);
    p->tp = lay ? lay->tp : 1;
    p->pp = lay ? lay->pp : 1;
    p->tp_rank = tp_rank;
    p->pp_rank = pp_rank;
    p->first_layer = lay ? lay->stages[pp_rank].first_layer : 0;
    p->n_layers = lay ? lay->stages[pp_rank].n_layers : c->num_hidden_layers;
    p->has_embed = !lay || lay->stages[pp_rank].has_embed;
    p->has_head = !lay || lay->stages[pp_rank].has_head;
    p->heads = c->num_attention_heads / p->tp;
    p->vocab = c->vocab_size / p->tp;
    p->vocab0 = p->vocab * tp_rank;
    if (lay) fw_layout_experts(lay, c, tp_rank, &p->exp_first, &p->exp_n);
    else p->exp_n = c->n_routed_experts;
}

/* Frees the allocations made since `mark` (one layer's, made in a row). */
static void free_since(fw_model *m, int64_t mark) {
    for (int64_t i = mark; i < m->n_allocs; i++) free(m->allocs[i]);
    m->n_allocs = mark;
}

int fw_model_load(fw_model **out, const char *dir, const fw_ops *ops, const fw_layout *lay,
                  int pp_rank, int tp_rank, fw_err *e) {
    return fw_model_load_streamed(out, dir, ops, lay, pp_rank, tp_rank, NULL, NULL, NULL, e);
}

int fw_model_load_streamed(fw_model **out, const char *dir, const fw_ops *ops, const fw_layout *lay, int pp_rank,
                           int tp_rank, const fw_load_opts *lo, fw_layer_taken_fn taken, void *arg, fw_err *e) {
    *out = NULL;
    const fw_load_opts defaults = {.verify = true, .mode = FW_LOAD_MMAP};
    if (!lo) lo = &defaults;
    fw_ckpt *ck;
    if (fw_ckpt_open(&ck, dir, e)) return FW_ERR;
    fw_ckpt_set_verify(ck, lo->verify);
    fw_model *m = calloc(1, sizeof *m);
    if (!m) {
        fw_ckpt_close(ck);
        return fw_errf(e, "out of memory");
    }
    m->ops = ops;
    m->map = lo->mode == FW_LOAD_MMAP;
    m->cfg = *fw_ckpt_config(ck);
    m->cfg.json = NULL; /* owned by the checkpoint; not needed after loading */
    const fw_config *c = &m->cfg;
    const int64_t V = c->vocab_size, D = c->hidden_size;
    set_part(m, lay, pp_rank, tp_rank);
    const fw_part *p = &m->part;

    int rc = FW_ERR;
    m->layers = model_alloc(m, (size_t)c->num_hidden_layers * sizeof *m->layers);
    m->rope_inv_freq = model_alloc(m, (size_t)c->qk_rope_head_dim / 2 * sizeof(float));
    if (!m->layers || !m->rope_inv_freq) {
        fw_errf(e, "out of memory");
        goto done;
    }
    memset(m->layers, 0, (size_t)c->num_hidden_layers * sizeof *m->layers);
    if (p->has_embed && load_weight(m, ck, lay, "model.embed_tokens.weight", V, D, &m->embed, e)) goto done;
    if (p->has_head) {
        const char *head = c->tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
        if (load_vector(m, ck, "model.norm.weight", D, &m->final_norm, e) ||
            load_weight(m, ck, lay, head, V, D, &m->head, e))
            goto done;
    }
    fw_rope_inv_freq(c, m->rope_inv_freq, &m->rope_mscale);
    m->softmax_scale = (float)fw_config_softmax_scale(c);
    for (int l = p->first_layer; l < p->first_layer + p->n_layers; l++) {
        const int64_t mark = m->n_allocs;
        if (load_layer(m, ck, lay, l, &m->layers[l], e)) goto done;
        if (taken) {
            if (taken(arg, m, l, e)) {
                fw_err_prefix(e, "layer %d", l);
                goto done;
            }
            free_since(m, mark);
            m->layers[l] = (fw_layer){.moe = m->layers[l].moe};
        }
    }
    rc = FW_OK;
done:
    m->bytes_verified = fw_ckpt_bytes_verified(ck);
    fw_ckpt_close(ck);
    if (rc) {
        fw_err_prefix(e, "loading %s", dir);
        fw_model_free(m);
        return FW_ERR;
    }
    *out = m;
    return FW_OK;
}

int fw_model_load_mtp(fw_model *m, const char *dir, const fw_layout *lay, fw_err *e) {
    const fw_config *c = &m->cfg;
    if (!m->part.has_head) return FW_OK;
    if (c->num_nextn_predict_layers < 1)
        return fw_errf(e, "%s has no MTP layer (num_nextn_predict_layers is 0): speculative decoding with mtp needs "
                          "one (DeepSeek-V3's model.layers.61; furrow synth --mtp 1)", dir);
    fw_ckpt *ck;
    if (fw_ckpt_open(&ck, dir, e)) return FW_ERR;
    const int l = c->num_hidden_layers;
    const int64_t D = c->hidden_size, V = c->vocab_size;
    char n[256];
    fw_mtp *t = model_alloc(m, sizeof *t);
    int rc = FW_ERR;
    if (!t) {
        fw_errf(e, "out of memory");
        goto done;
    }
    memset(t, 0, sizeof *t);
    if (!fw_ckpt_has(ck, NAME(n, "model.layers.%d.eh_proj.weight", l))) {
        fw_errf(e, "tensor '%s' is missing: the checkpoint was converted without its MTP layer", n);
        goto done;
    }
    if (load_weight(m, ck, lay, NAME(n, "model.layers.%d.embed_tokens.weight", l), V, D, &t->embed, e) ||
        load_vector(m, ck, NAME(n, "model.layers.%d.enorm.weight", l), D, &t->enorm, e) ||
        load_vector(m, ck, NAME(n, "model.layers.%d.hnorm.weight", l), D, &t->hnorm, e) ||
        load_weight(m, ck, lay, NAME(n, "model.layers.%d.eh_proj.weight", l), D, 2 * D, &t->eh_proj, e) ||
        load_vector(m, ck, NAME(n, "model.layers.%d.shared_head.norm.weight", l), D, &t->head_norm, e) ||
        load_weight(m, ck, lay, NAME(n, "model.layers.%d.shared_head.head.weight", l), V, D, &t->head, e) ||
        load_layer(m, ck, lay, l, &t->layer, e))
        goto done;
    m->mtp = t;
    rc = FW_OK;
done:
    fw_ckpt_close(ck);
    return rc ? fw_err_prefix(e, "loading the MTP layer of %s", dir) : FW_OK;
}

void fw_model_free(fw_model *m) {
    if (!m) return;
    for (int64_t i = 0; i < m->n_allocs; i++) free(m->allocs[i]);
    free(m->allocs);
    for (int i = 0; i < m->n_maps; i++) fw_ckpt_mapping_release(m->maps[i]);
    free(m->maps);
    free(m);
}
