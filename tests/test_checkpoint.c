/* The checkpoint writer and reader: a tiny FP8 model written tensor by tensor,
 * read back whole and by hyperslabs, range errors, corruption caught by verify
 * and by every read of the damaged chunk, an edited config, a relinked tensor
 * and a foreign data file refused, a wrong format_version, writer refusals,
 * synth's determinism, and the chunk check of a slab large enough to be split
 * between threads. */
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/ckpt_sums.h"
#include "io/model_tensors.h"
#include "io/synth.h"
#include "tests/check.h"

typedef struct tensor {
    char name[128];
    fw_dtype dtype;
    int ndim;
    int64_t shape[2];
    size_t bytes;
    uint8_t *data;
} tensor;

static tensor *tensors;
static int64_t n_tensors;

static uint64_t rng = 0x1234;
static uint8_t next_byte(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint8_t)(rng >> 24);
}

static void add(const char *name, fw_dtype dt, int nd, const int64_t *shape) {
    tensor *t = &tensors[n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dt;
    t->ndim = nd;
    t->shape[0] = shape[0];
    t->shape[1] = nd == 2 ? shape[1] : 1;
    t->bytes = (size_t)(t->shape[0] * t->shape[1]) * fw_dtype_size(dt);
    t->data = malloc(t->bytes);
    for (size_t i = 0; i < t->bytes; i++) t->data[i] = next_byte();
}

/* Every tensor of the FP8 tiny model, with random bytes. */
static void make_tensors(const fw_config *c) {
    fw_model_tensor *m;
    int64_t n;
    fw_err e;
    if (fw_model_tensors(c, &m, &n, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        exit(1);
    }
    tensors = calloc((size_t)(2 * n), sizeof *tensors);
    for (int64_t i = 0; i < n; i++) {
        bool q = m[i].quantized;
        add(m[i].name, q ? FW_DTYPE_F8_E4M3 : m[i].f32 ? FW_DTYPE_F32 : FW_DTYPE_BF16, m[i].ndim, m[i].shape);
        if (q) {
            char s[160];
            int64_t ss[2];
            snprintf(s, sizeof s, "%s_scale_inv", m[i].name);
            fw_model_tensor_scale_shape(c, m[i].shape, ss);
            add(s, FW_DTYPE_F32, 2, ss);
        }
    }
    free(m);
}

static tensor *get(const char *name) {
    for (int64_t i = 0; i < n_tensors; i++)
        if (!strcmp(tensors[i].name, name)) return &tensors[i];
    return NULL;
}

static int write_all(const char *dir, const fw_config *c, int64_t skip, fw_err *e) {
    fw_ckpt_writer *w;
    if (fw_ckpt_writer_open(&w, dir, c, e)) return FW_ERR;
    if (fw_ckpt_writer_set_layers_per_file(w, 2, e) || fw_ckpt_writer_set_source(w, "test_checkpoint", e)) {
        fw_ckpt_writer_abort(w);
        return FW_ERR;
    }
    /* Reverse order: the writer must not care. */
    for (int64_t i = n_tensors - 1; i >= 0; i--) {
        if (i == skip) continue;
        const tensor *t = &tensors[i];
        if (fw_ckpt_write(w, t->name, t->dtype, t->ndim, t->shape, t->data, e)) {
            fw_ckpt_writer_abort(w);
            return FW_ERR;
        }
    }
    return fw_ckpt_writer_close(w, e);
}

static bool exists(const char *dir, const char *name) {
    char p[4096];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

/* Reads rows [r0, r0 + nr) x cols [c0, c0 + nc) and compares with the source. */
static void check_slab(fw_ckpt *ck, const char *name, int64_t r0, int64_t nr, int64_t c0, int64_t nc) {
    tensor *t = get(name);
    size_t es = fw_dtype_size(t->dtype);
    uint8_t *buf = malloc((size_t)(nr * nc) * es + 1);
    int64_t start[2] = {r0, c0}, count[2] = {nr, nc};
    fw_err e;
    int rc = fw_ckpt_read(ck, name, start, count, buf, &e);
    CHECK(rc == FW_OK, "read %s: %s", name, e.msg);
    bool same = true;
    for (int64_t r = 0; r < nr && rc == FW_OK; r++)
        same &= !memcmp(buf + (size_t)(r * nc) * es, t->data + (size_t)((r0 + r) * t->shape[1] + c0) * es,
                        (size_t)nc * es);
    CHECK(same, "%s [%lld+%lld, %lld+%lld] differs", name, (long long)r0, (long long)nr, (long long)c0,
          (long long)nc);
    free(buf);
}

static void test_roundtrip(const char *dir) {
    fw_err e;
    fw_ckpt *ck;
    CHECK(fw_ckpt_open(&ck, dir, &e) == FW_OK, "open: %s", e.msg);
    if (!ck) return;
    CHECK(fw_ckpt_config(ck)->fp8 && fw_ckpt_config(ck)->hidden_size == 256, "config round trip");
    CHECK(!strcmp(fw_ckpt_source(ck), "test_checkpoint"), "source '%s'", fw_ckpt_source(ck));
    for (int64_t i = 0; i < n_tensors; i++) {
        tensor *t = &tensors[i];
        fw_tensor_info in;
        CHECK(fw_ckpt_info(ck, t->name, &in, &e) == FW_OK, "info %s: %s", t->name, e.msg);
        CHECK(in.dtype == t->dtype && in.ndim == t->ndim && in.shape[0] == t->shape[0], "info %s", t->name);
        uint8_t *buf = malloc(t->bytes + 1);
        CHECK(fw_ckpt_read(ck, t->name, NULL, NULL, buf, &e) == FW_OK, "read %s: %s", t->name, e.msg);
        CHECK(!memcmp(buf, t->data, t->bytes), "%s differs", t->name);
        free(buf);
    }
    /* Row and column slices, aligned to chunks and not, BF16 and FP8. */
    check_slab(ck, "model.embed_tokens.weight", 128, 256, 0, 256);
    check_slab(ck, "model.embed_tokens.weight", 1000, 37, 17, 23);
    check_slab(ck, "lm_head.weight", 2047, 1, 255, 1);
    check_slab(ck, "model.layers.1.self_attn.o_proj.weight", 0, 256, 32, 32);   /* one head's columns */
    check_slab(ck, "model.layers.1.self_attn.o_proj.weight", 10, 11, 5, 100);
    check_slab(ck, "model.layers.2.self_attn.q_b_proj.weight", 48, 96, 0, 128);  /* heads 1-2 */
    check_slab(ck, "model.layers.0.mlp.down_proj.weight_scale_inv", 1, 1, 2, 2);

    /* Out of range: named tensor, named range. */
    int64_t start[2] = {2000, 0}, count[2] = {100, 256};
    uint8_t buf[64];
    CHECK(fw_ckpt_read(ck, "model.embed_tokens.weight", start, count, buf, &e) == FW_ERR, "range accepted");
    CHECK(strstr(e.msg, "model.embed_tokens.weight") && strstr(e.msg, "[2000, 2100)"), "message: %s", e.msg);
    int64_t s2[2] = {0, -1}, c2[2] = {1, 1};
    CHECK(fw_ckpt_read(ck, "model.layers.1.self_attn.o_proj.weight", s2, c2, buf, &e) == FW_ERR &&
              strstr(e.msg, "o_proj"), "negative start: %s", e.msg);
    CHECK(fw_ckpt_info(ck, "model.layers.9.nothing", &(fw_tensor_info){0}, &e) == FW_ERR &&
              strstr(e.msg, "model.layers.9.nothing"), "absent tensor: %s", e.msg);
    CHECK(!fw_ckpt_has(ck, "model.layers.9.nothing") && fw_ckpt_has(ck, "lm_head.weight"), "has");
    CHECK(fw_ckpt_verify(ck, &e) == FW_OK, "verify: %s", e.msg);
    fw_ckpt_close(ck);
}

/* Flips one byte inside the first chunk of a dataset, behind HDF5's back. */
static void corrupt(const char *file, const char *dset) {  /* 1.10.5+: H5Dget_chunk_info */
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    hsize_t off[2];
    unsigned mask;
    haddr_t addr = HADDR_UNDEF;
    hsize_t size = 0;
    hid_t space = H5Dget_space(d);
    herr_t h = H5Dget_chunk_info(d, space, 0, off, &mask, &addr, &size);
    H5Sclose(space);
    CHECK(h >= 0 && size > 8, "chunk info of %s", dset);
    H5Dclose(d);
    H5Fclose(f);
    FILE *fp = fopen(file, "r+b");
    CHECK(fp != NULL, "open %s", file);
    if (!fp || h < 0) return;
    fseek(fp, (long)addr + 5, SEEK_SET);
    int ch = fgetc(fp);
    fseek(fp, (long)addr + 5, SEEK_SET);
    fputc(ch ^ 0x40, fp);
    fclose(fp);
}

static void test_corruption(const char *dir) {
    char file[4200];
    snprintf(file, sizeof file, "%s/layers-000-001.h5", dir);
    corrupt(file, "/model/layers/1/self_attn/o_proj/weight");
    fw_err e;
    fw_ckpt *ck;
    CHECK(fw_ckpt_open(&ck, dir, &e) == FW_OK, "open: %s", e.msg);
    if (!ck) return;
    CHECK(fw_ckpt_verify(ck, &e) == FW_ERR, "verify passed a corrupt tensor");
    CHECK(strstr(e.msg, "model.layers.1.self_attn.o_proj.weight") && strstr(e.msg, "layers-000-001.h5"),
          "message: %s", e.msg);
    /* o_proj [256, 256] is chunked by head columns [256, 32]: a read of the first
     * head fails, of the second passes, and with checks off the first passes. */
    const char *o = "model.layers.1.self_attn.o_proj.weight";
    static uint16_t buf[256 * 64];
    int64_t s0[2] = {0, 0}, s1[2] = {0, 32}, c1[2] = {256, 32}, c2[2] = {256, 64};
    CHECK(fw_ckpt_read(ck, o, s0, c1, buf, &e) == FW_ERR && strstr(e.msg, "corrupt") && strstr(e.msg, o) &&
              strstr(e.msg, "[0, 0]"), "read of the damaged chunk: %s", e.msg);
    CHECK(fw_ckpt_read(ck, o, s0, c2, buf, &e) == FW_ERR, "read over the damaged chunk passed");
    uint64_t before = fw_ckpt_bytes_verified(ck);
    CHECK(fw_ckpt_read(ck, o, s1, c1, buf, &e) == FW_OK, "read of a sound chunk: %s", e.msg);
    fw_tensor_info in;
    CHECK(fw_ckpt_info(ck, o, &in, &e) == FW_OK, "info: %s", e.msg);
    CHECK(fw_ckpt_bytes_verified(ck) - before == 256 * 32 * fw_dtype_size(in.dtype), "bytes verified: %llu",
          (unsigned long long)(fw_ckpt_bytes_verified(ck) - before));
    int64_t s3[2] = {10, 0}, c3[2] = {5, 16};   /* inside a chunk: nothing to check against */
    CHECK(fw_ckpt_read(ck, o, s3, c3, buf, &e) == FW_OK, "partial chunk: %s", e.msg);
    fw_ckpt_set_verify(ck, false);
    CHECK(fw_ckpt_read(ck, o, s0, c1, buf, &e) == FW_OK, "unchecked read: %s", e.msg);
    fw_ckpt_close(ck);
}

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    CHECK(in && out, "copy %s", from);
    for (int ch; in && out && (ch = fgetc(in)) != EOF;) fputc(ch, out);
    if (in) fclose(in);
    if (out) fclose(out);
}

static void expect_open_error(const char *dir, const char *what, const char *needle) {
    fw_err e;
    fw_ckpt *ck = NULL;
    CHECK(fw_ckpt_open(&ck, dir, &e) == FW_ERR, "%s: opened", what);
    CHECK(!ck && strstr(e.msg, needle) && strstr(e.msg, "furrow.h5"), "%s: %s", what, e.msg);
    fw_ckpt_close(ck);
}

/* Tampering the manifest does not cover is refused at open: an edited config,
 * a tensor linked to another one's data. Each on a fresh checkpoint. */
static void test_tampering(const char *base, const fw_config *c) {
    char dir[2100], root[2200];
    fw_err e;
    snprintf(dir, sizeof dir, "%s/tamper-config", base);
    snprintf(root, sizeof root, "%s/furrow.h5", dir);
    CHECK(write_all(dir, c, -1, &e) == FW_OK, "write: %s", e.msg);
    hid_t f = H5Fopen(root, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Adelete(f, "config_json");
    char *json = strdup(c->json), *eps = strstr(json, "rms_norm_eps");
    CHECK(eps != NULL, "config has rms_norm_eps");
    if (eps) eps[0] = 'R';   /* an unknown key: the config still parses */
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(t, strlen(json) + 1);
    hid_t a = H5Acreate2(f, "config_json", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(H5Awrite(a, t, json) >= 0, "rewrite config_json");
    H5Aclose(a), H5Sclose(sp), H5Tclose(t), H5Fclose(f);
    free(json);
    expect_open_error(dir, "edited config", "manifest");

    snprintf(dir, sizeof dir, "%s/tamper-link", base);
    snprintf(root, sizeof root, "%s/furrow.h5", dir);
    CHECK(write_all(dir, c, -1, &e) == FW_OK, "write: %s", e.msg);
    f = H5Fopen(root, H5F_ACC_RDWR, H5P_DEFAULT);
    const char *gate = "/model/layers/0/mlp/gate_proj/weight";
    CHECK(H5Ldelete(f, gate, H5P_DEFAULT) >= 0 &&
              H5Lcreate_external("layers-000-001.h5", "/model/layers/0/mlp/up_proj/weight", f, gate, H5P_DEFAULT,
                                 H5P_DEFAULT) >= 0,
          "relink gate_proj");
    H5Fclose(f);
    expect_open_error(dir, "relinked tensor", "manifest");
}

/* A data file of another conversion of the same model, its checkpoint_id
 * patched to pass for this one's, is caught by the root's checksum record. */
static void test_foreign_file(const char *base, const fw_config *c) {
    char a[2100], b[2100], from[2200], to[2200];
    fw_err e;
    snprintf(a, sizeof a, "%s/foreign-a", base);
    snprintf(b, sizeof b, "%s/foreign-b", base);
    CHECK(write_all(a, c, -1, &e) == FW_OK, "write: %s", e.msg);
    int64_t k = 0;
    while (k < n_tensors && strcmp(tensors[k].name, "model.layers.0.mlp.up_proj.weight")) k++;
    tensors[k].data[0] ^= 1;   /* b differs from a in one byte of one tensor */
    CHECK(write_all(b, c, -1, &e) == FW_OK, "write: %s", e.msg);
    tensors[k].data[0] ^= 1;
    snprintf(from, sizeof from, "%s/layers-000-001.h5", b);
    snprintf(to, sizeof to, "%s/layers-000-001.h5", a);
    copy_file(from, to);
    snprintf(from, sizeof from, "%s/furrow.h5", a);
    hid_t f = H5Fopen(from, H5F_ACC_RDONLY, H5P_DEFAULT);
    uint64_t id = 0;
    hid_t at = H5Aopen(f, "checkpoint_id", H5P_DEFAULT);
    H5Aread(at, H5T_NATIVE_UINT64, &id);
    H5Aclose(at), H5Fclose(f);
    f = H5Fopen(to, H5F_ACC_RDWR, H5P_DEFAULT);
    at = H5Aopen(f, "checkpoint_id", H5P_DEFAULT);
    CHECK(H5Awrite(at, H5T_NATIVE_UINT64, &id) >= 0, "patch checkpoint_id");
    H5Aclose(at), H5Fclose(f);
    fw_ckpt *ck = NULL;
    CHECK(fw_ckpt_open(&ck, a, &e) == FW_OK, "open: %s", e.msg);
    if (!ck) return;
    static uint8_t buf[1 << 20];
    /* The same tensor in both conversions reads; the one that differs does not. */
    CHECK(fw_ckpt_read(ck, "model.layers.0.mlp.gate_proj.weight", NULL, NULL, buf, &e) == FW_OK, "read: %s", e.msg);
    CHECK(fw_ckpt_read(ck, "model.layers.0.mlp.up_proj.weight", NULL, NULL, buf, &e) == FW_ERR &&
              strstr(e.msg, "model.layers.0.mlp.up_proj.weight") && strstr(e.msg, "another conversion"),
          "foreign tensor: %s", e.msg);
    CHECK(fw_ckpt_verify(ck, &e) == FW_ERR && strstr(e.msg, "up_proj"), "verify of a foreign file: %s", e.msg);
    fw_ckpt_close(ck);
}

static void test_version(const char *dir) {
    char root[4200];
    snprintf(root, sizeof root, "%s/furrow.h5", dir);
    hid_t f = H5Fopen(root, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    int64_t v = FW_CKPT_FORMAT_VERSION + 1;
    CHECK(H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0, "rewrite format_version");
    H5Aclose(a);
    H5Fclose(f);
    fw_err e;
    fw_ckpt *ck = NULL;
    char newer[64], ours[64];
    snprintf(newer, sizeof newer, "format_version %d", FW_CKPT_FORMAT_VERSION + 1);
    snprintf(ours, sizeof ours, "format_version %d", FW_CKPT_FORMAT_VERSION);
    CHECK(fw_ckpt_open(&ck, dir, &e) == FW_ERR, "opened a checkpoint of a newer version");
    CHECK(strstr(e.msg, newer) && strstr(e.msg, ours) && strstr(e.msg, "furrow.h5"), "message: %s", e.msg);
    fw_ckpt_close(ck);
}

static void test_writer_refusals(const char *base, const fw_config *c) {
    char dir[2100];
    fw_err e;
    /* An existing checkpoint is not touched. */
    snprintf(dir, sizeof dir, "%s/ckpt", base);
    fw_ckpt_writer *w = NULL;
    CHECK(fw_ckpt_writer_open(&w, dir, c, &e) == FW_ERR && strstr(e.msg, "furrow.h5"), "overwrite: %s", e.msg);
    CHECK(exists(dir, "furrow.h5") && exists(dir, "base.h5"), "existing checkpoint damaged");

    /* A missing tensor: close fails naming it, nothing is left behind. */
    snprintf(dir, sizeof dir, "%s/incomplete", base);
    int64_t skip = -1;
    for (int64_t i = 0; i < n_tensors; i++)
        if (!strcmp(tensors[i].name, "model.layers.2.mlp.experts.7.up_proj.weight_scale_inv")) skip = i;
    CHECK(write_all(dir, c, skip, &e) == FW_ERR && strstr(e.msg, "experts.7.up_proj.weight"), "incomplete: %s",
          e.msg);
    struct stat st;
    CHECK(stat(dir, &st) != 0, "incomplete output left behind");

    /* Duplicates, bad names, layers beyond the config; abort cleans up. */
    snprintf(dir, sizeof dir, "%s/aborted", base);
    CHECK(fw_ckpt_writer_open(&w, dir, c, &e) == FW_OK, "open: %s", e.msg);
    if (!w) return;
    tensor *t = get("model.norm.weight");
    CHECK(fw_ckpt_write(w, t->name, t->dtype, 1, t->shape, t->data, &e) == FW_OK, "write: %s", e.msg);
    CHECK(fw_ckpt_write(w, t->name, t->dtype, 1, t->shape, t->data, &e) == FW_ERR && strstr(e.msg, "twice"),
          "duplicate: %s", e.msg);
    CHECK(fw_ckpt_write(w, "model..x", t->dtype, 1, t->shape, t->data, &e) == FW_ERR, "bad name accepted");
    CHECK(fw_ckpt_write(w, "model.layers.3.input_layernorm.weight", t->dtype, 1, t->shape, t->data, &e) == FW_ERR &&
              strstr(e.msg, "layer 3"), "layer beyond config: %s", e.msg);
    char staged[2200];
    snprintf(staged, sizeof staged, "%s.partial", dir);   /* a new folder is staged beside it */
    CHECK(exists(staged, "base.h5") && stat(dir, &st) != 0, "base.h5 not staged in %s", staged);
    fw_ckpt_writer_abort(w);
    CHECK(stat(dir, &st) != 0 && stat(staged, &st) != 0, "abort left %s or %s", dir, staged);
}

static void test_synth(const char *base) {
    fw_config c;
    fw_err e;
    CHECK(fw_synth_preset("tiny", &c, &e) == FW_OK, "preset: %s", e.msg);
    c.fp8 = true;
    CHECK(fw_synth_config_json(&c, &e) == FW_OK, "json: %s", e.msg);
    char a[2100], b[2100];
    snprintf(a, sizeof a, "%s/synth-a", base);
    snprintf(b, sizeof b, "%s/synth-b", base);
    CHECK(fw_synth(&c, 7, a, &e) == FW_OK, "synth: %s", e.msg);
    CHECK(fw_synth(&c, 7, b, &e) == FW_OK, "synth: %s", e.msg);
    fw_ckpt *x = NULL, *y = NULL;
    CHECK(fw_ckpt_open(&x, a, &e) == FW_OK && fw_ckpt_open(&y, b, &e) == FW_OK, "open: %s", e.msg);
    if (x && y) {
        CHECK(fw_ckpt_verify(x, &e) == FW_OK, "verify: %s", e.msg);
        const char *names[] = {"model.layers.2.mlp.experts.3.down_proj.weight", "model.embed_tokens.weight",
                               "model.layers.1.mlp.gate.e_score_correction_bias",
                               "model.layers.0.self_attn.kv_b_proj.weight_scale_inv"};
        for (int i = 0; i < 4; i++) {
            fw_tensor_info in;
            CHECK(fw_ckpt_info(x, names[i], &in, &e) == FW_OK, "info %s: %s", names[i], e.msg);
            size_t n = fw_dtype_size(in.dtype);
            for (int d = 0; d < in.ndim; d++) n *= (size_t)in.shape[d];
            uint8_t *p = malloc(n), *q = malloc(n);
            CHECK(fw_ckpt_read(x, names[i], NULL, NULL, p, &e) == FW_OK &&
                      fw_ckpt_read(y, names[i], NULL, NULL, q, &e) == FW_OK && !memcmp(p, q, n),
                  "synth not deterministic: %s", names[i]);
            if (in.dtype == FW_DTYPE_F32 && in.ndim == 1)   /* the router bias: in (0, 0.1) */
                for (size_t k = 0; k < n / 4; k++) CHECK(((float *)p)[k] > 0 && ((float *)p)[k] < 0.1f, "bias");
            free(p);
            free(q);
        }
    }
    fw_ckpt_close(x);
    fw_ckpt_close(y);
    fw_config_free(&c);

    /* A data file of another write (same layout, same seed) is refused. */
    char from[2200], to[2200];
    snprintf(from, sizeof from, "%s/layers-000-002.h5", a);
    snprintf(to, sizeof to, "%s/layers-000-002.h5", b);
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    CHECK(in && out, "copy %s", from);
    for (int ch; in && out && (ch = fgetc(in)) != EOF;) fputc(ch, out);
    if (in) fclose(in);
    if (out) fclose(out);
    CHECK(fw_ckpt_open(&y, b, &e) == FW_OK, "open: %s", e.msg);
    if (y) {
        CHECK(fw_ckpt_info(y, "model.layers.0.input_layernorm.weight", &(fw_tensor_info){0}, &e) == FW_ERR &&
                  strstr(e.msg, "another checkpoint") && strstr(e.msg, "layers-000-002.h5"),
              "mixed files: %s", e.msg);
        fw_ckpt_close(y);
    }
}

/* fw_ckpt_map: the writer's tensors map where their chunks are whole rows (all
 * but the row-parallel ones), 64-byte aligned, holding the written bytes; a
 * column slice and column-chunked tensors are refused for a read instead; a
 * damaged chunk is caught on the mapped bytes; a file truncated under an open
 * checkpoint is an error naming the tensor, not a fault. */
static void test_map(const char *base, const fw_config *c) {
    char dir[2100], file[2200];
    fw_err e;
    snprintf(dir, sizeof dir, "%s/map", base);
    CHECK(write_all(dir, c, -1, &e) == FW_OK, "write: %s", e.msg);
    fw_ckpt *ck;
    CHECK(fw_ckpt_open(&ck, dir, &e) == FW_OK, "open: %s", e.msg);
    if (!ck) return;
    int mapped = 0, refused = 0;
    for (int64_t i = 0; i < n_tensors; i++) {
        const tensor *t = &tensors[i];
        const void *p;
        fw_ckpt_mapping *h;
        const char *why;
        int rc = fw_ckpt_map(ck, t->name, NULL, NULL, &p, &h, &why, &e);
        bool row_parallel = !strstr(t->name, "_scale_inv") &&
                            (strstr(t->name, "o_proj.weight") ||
                             (strstr(t->name, "down_proj.weight") && !strstr(t->name, "mlp.experts.")));
        bool small = t->bytes < FW_CKPT_ALIGN;   /* below the writer's alignment threshold */
        if (rc == FW_OK) {
            mapped++;
            CHECK(!row_parallel, "%s (column chunks) was mapped", t->name);
            CHECK((uintptr_t)p % 64 == 0 && !memcmp(p, t->data, t->bytes), "%s: mapped bytes differ or misaligned",
                  t->name);
            fw_ckpt_mapping_release(h);
        } else {
            refused++;
            CHECK(rc == FW_CKPT_NOT_MAPPED, "map %s: %s", t->name, e.msg);
            CHECK((row_parallel && strstr(why, "rows")) || (small && strstr(why, "aligned")), "%s not mapped: %s",
                  t->name, why);
        }
    }
    CHECK(mapped > 0 && refused > 0, "mapped %d, refused %d", mapped, refused);
    CHECK(fw_ckpt_bytes_mapped(ck) > 0, "bytes mapped");
    /* A row slice maps in place; a column slice does not. */
    const char *emb = "model.embed_tokens.weight";
    const tensor *te = get(emb);
    const void *p;
    fw_ckpt_mapping *h;
    const char *why;
    int64_t s0[2] = {128, 0}, c0[2] = {256, te->shape[1]}, s1[2] = {0, 32}, c1[2] = {256, 32};
    CHECK(fw_ckpt_map(ck, emb, s0, c0, &p, &h, &why, &e) == FW_OK &&
              !memcmp(p, te->data + (size_t)(128 * te->shape[1]) * 2, (size_t)(256 * te->shape[1]) * 2),
          "row slice: %s", e.msg);
    fw_ckpt_mapping_release(h);
    CHECK(fw_ckpt_map(ck, emb, s1, c1, &p, &h, &why, &e) == FW_CKPT_NOT_MAPPED && strstr(why, "column"),
          "column slice: %s", why);
    fw_ckpt_close(ck);

    /* A damaged row chunk of the embedding, read through the mapping. */
    snprintf(file, sizeof file, "%s/base.h5", dir);
    corrupt(file, "/model/embed_tokens/weight");
    CHECK(fw_ckpt_open(&ck, dir, &e) == FW_OK, "open: %s", e.msg);
    if (!ck) return;
    int64_t sa[2] = {0, 0};
    CHECK(fw_ckpt_map(ck, emb, sa, c0, &p, &h, &why, &e) == FW_ERR && strstr(e.msg, "corrupt") && strstr(e.msg, emb),
          "mapped damaged chunk: %s", e.msg);
    fw_ckpt_set_verify(ck, false);
    CHECK(fw_ckpt_map(ck, emb, sa, c0, &p, &h, &why, &e) == FW_OK, "unchecked map: %s", e.msg);
    fw_ckpt_mapping_release(h);
    fw_ckpt_close(ck);

    /* Truncated after the checkpoint opened the file (HDF5 refuses a truncated
     * file at open): the mapping is checked against the file's size. */
    snprintf(file, sizeof file, "%s/layers-002-002.h5", dir);
    CHECK(fw_ckpt_open(&ck, dir, &e) == FW_OK, "open: %s", e.msg);
    if (!ck) return;
    const char *last = "model.layers.2.mlp.experts.0.gate_proj.weight";
    fw_tensor_info in;
    CHECK(fw_ckpt_info(ck, last, &in, &e) == FW_OK, "info: %s", e.msg);
    struct stat st;
    CHECK(stat(file, &st) == 0 && truncate(file, st.st_size / 2) == 0, "truncate %s", file);
    int truncated = 0;
    for (int64_t i = 0; i < n_tensors; i++) {
        if (strncmp(tensors[i].name, "model.layers.2.", 15)) continue;
        int rc = fw_ckpt_map(ck, tensors[i].name, NULL, NULL, &p, &h, &why, &e);
        if (rc == FW_OK) fw_ckpt_mapping_release(h);
        if (rc == FW_ERR && strstr(e.msg, "truncated")) {
            truncated++;
            CHECK(strstr(e.msg, tensors[i].name) != NULL, "truncated, unnamed: %s", e.msg);
        }
    }
    CHECK(truncated > 0, "no mapping of the truncated file was refused");
    fw_ckpt_close(ck);
}

/* A slab of 20 MB, whose chunks the OpenMP threads share: every chunk passes,
 * then with two damaged the first in grid order is named, whole or from a slab
 * that starts a few chunks in, and only the intact chunks count as checked. */
static void test_chunk_check_threads(void) {
    const int64_t shape[2] = {5000, 2048}, chunk[2] = {64, 2048}, all[2] = {0, 0};
    const size_t esize = 2, row = 2048 * esize, bytes = 5000 * row;
    uint8_t *buf = malloc(bytes);
    int64_t n = fw_chunk_count(2, shape, chunk);
    uint64_t *sums = malloc((size_t)n * sizeof *sums), checked = 0;
    CHECK(buf && sums && n == 79, "chunk test setup (%lld chunks)", (long long)n);
    if (!buf || !sums) return;
    for (size_t i = 0; i < bytes; i++) buf[i] = next_byte();
    fw_chunk_sums(buf, 2, shape, chunk, esize, sums);
    int64_t bad = fw_chunk_check(buf, 2, shape, chunk, esize, all, shape, sums, &checked);
    CHECK(bad == -1 && checked == bytes, "intact 20 MB: bad %lld, %llu of %zu bytes checked", (long long)bad,
          (unsigned long long)checked, bytes);
    const int64_t start[2] = {3 * 64, 0}, count[2] = {70 * 64, 2048};
    bad = fw_chunk_check(buf + 3 * 64 * row, 2, shape, chunk, esize, start, count, sums, &checked);
    CHECK(bad == -1 && checked == (uint64_t)(70 * 64) * row, "intact slab of chunks 3-72: bad %lld, %llu bytes",
          (long long)bad, (unsigned long long)checked);
    buf[40 * 64 * row + 17] ^= 1;
    buf[12 * 64 * row + 5 * row + 3] ^= 0x80;
    bad = fw_chunk_check(buf, 2, shape, chunk, esize, all, shape, sums, &checked);
    CHECK(bad == 12 && checked == bytes - 2 * 64 * row, "damaged chunks 12 and 40: first bad %lld, %llu bytes",
          (long long)bad, (unsigned long long)checked);
    bad = fw_chunk_check(buf + 3 * 64 * row, 2, shape, chunk, esize, start, count, sums, &checked);
    CHECK(bad == 12, "damaged chunks 12 and 40 from a slab at chunk 3: first bad %lld", (long long)bad);
    free(buf);
    free(sums);
}

int main(void) {
    const char *tmp = getenv("FURROW_TMP");
    char base[2048], dir[4096];
    snprintf(base, sizeof base, "%s", tmp && *tmp ? tmp : "/tmp/furrow-test-checkpoint");
    mkdir(base, 0777);
    snprintf(dir, sizeof dir, "%s/ckpt", base);

    fw_config c;
    fw_err e;
    if (fw_synth_preset("tiny", &c, &e)) {
        fprintf(stderr, "preset: %s\n", e.msg);
        return 1;
    }
    c.fp8 = true;
    if (fw_synth_config_json(&c, &e)) {
        fprintf(stderr, "json: %s\n", e.msg);
        return 1;
    }
    make_tensors(&c);
    CHECK(write_all(dir, &c, -1, &e) == FW_OK, "write: %s", e.msg);
    CHECK(exists(dir, "furrow.h5") && exists(dir, "base.h5") && exists(dir, "layers-000-001.h5") &&
              exists(dir, "layers-002-002.h5") && !exists(dir, "furrow.h5.tmp"),
          "files");
    test_roundtrip(dir);
    test_writer_refusals(base, &c);
    test_corruption(dir);
    test_tampering(base, &c);
    test_foreign_file(base, &c);
    test_version(dir);
    test_synth(base);
    test_map(base, &c);
    test_chunk_check_threads();

    for (int64_t i = 0; i < n_tensors; i++) free(tensors[i].data);
    free(tensors);
    fw_config_free(&c);
    return check_result();
}
