/* safetensors reader: the golden hub directories, then corrupt files and
 * directories that must each give an error naming the file (and tensor). */
#define _POSIX_C_SOURCE 200809L  /* strdup, mmap, truncate */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "tests/check.h"

static const char *tmp;

static char *tmp_path(const char *name) {
    static char buf[8][4096];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", tmp, name);
    return p;
}

static void put_le64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Writes a safetensors file: header length hlen (the header's own length when
 * hlen == UINT64_MAX), the header text, then data_len bytes of a pattern. */
static void write_st_len(const char *path, const char *header, uint64_t hlen, size_t data_len) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        CHECK(0, "cannot create %s", path);
        return;
    }
    unsigned char len[8];
    put_le64(len, hlen == UINT64_MAX ? strlen(header) : hlen);
    fwrite(len, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < data_len; i++) fputc((int)(i * 7 + 1) & 0xff, f);
    fclose(f);
}

static void write_st(const char *path, const char *header, size_t data_len) {
    write_st_len(path, header, UINT64_MAX, data_len);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) {
        CHECK(0, "cannot create %s", path);
        return;
    }
    fputs(text, f);
    fclose(f);
}

/* Opening path must fail with a message that contains path and each non-NULL needle. */
static void expect_open_err(const char *what, const char *path, const char *n1, const char *n2) {
    fw_st_file f;
    fw_err e = {{0}};
    int rc = fw_st_open(&f, path, &e);
    CHECK(rc == FW_ERR, "%s: accepted", what);
    if (rc == FW_OK) {
        fw_st_close(&f);
        return;
    }
    CHECK(f.map == NULL && f.tensors == NULL && f.path == NULL, "%s: not cleaned up", what);
    CHECK(strstr(e.msg, path) != NULL, "%s: file not named: %s", what, e.msg);
    if (n1) CHECK(strstr(e.msg, n1) != NULL, "%s: '%s' not in: %s", what, n1, e.msg);
    if (n2) CHECK(strstr(e.msg, n2) != NULL, "%s: '%s' not in: %s", what, n2, e.msg);
}

static void expect_dir_err(const char *what, const char *dir, const char *n1, const char *n2, const char *n3) {
    fw_st_dir d;
    fw_err e = {{0}};
    int rc = fw_st_dir_open(&d, dir, &e);
    CHECK(rc == FW_ERR, "%s: accepted", what);
    if (rc == FW_OK) {
        fw_st_dir_close(&d);
        return;
    }
    CHECK(d.files == NULL && d.tensors == NULL && d.path == NULL, "%s: not cleaned up", what);
    if (n1) CHECK(strstr(e.msg, n1) != NULL, "%s: '%s' not in: %s", what, n1, e.msg);
    if (n2) CHECK(strstr(e.msg, n2) != NULL, "%s: '%s' not in: %s", what, n2, e.msg);
    if (n3) CHECK(strstr(e.msg, n3) != NULL, "%s: '%s' not in: %s", what, n3, e.msg);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = s ? strlen(s) : 0, b = strlen(suffix);
    return s && a >= b && strcmp(s + a - b, suffix) == 0;
}

static const fw_st_tensor *expect_tensor(const fw_st_dir *d, const char *name, fw_dtype dt, int ndim, int64_t d0,
                                         int64_t d1) {
    const fw_st_tensor *t = fw_st_dir_find(d, name);
    CHECK(t != NULL, "%s missing", name);
    if (!t) return NULL;
    CHECK(t->dtype == dt, "%s dtype %s", name, fw_dtype_name(t->dtype));
    CHECK(t->ndim == ndim, "%s ndim %d", name, t->ndim);
    if (ndim >= 1) CHECK(t->shape[0] == d0, "%s shape[0] %lld", name, (long long)t->shape[0]);
    if (ndim >= 2) CHECK(t->shape[1] == d1, "%s shape[1] %lld", name, (long long)t->shape[1]);
    uint64_t n = fw_dtype_size(dt);
    for (int i = 0; i < t->ndim; i++) n *= (uint64_t)t->shape[i];
    CHECK(t->nbytes == n, "%s nbytes %llu", name, (unsigned long long)t->nbytes);
    return t;
}

/* Every tensor's bytes lie inside its own file's mapping, and the list is sorted. */
static void check_dir_consistent(const fw_st_dir *d) {
    for (int i = 0; i < d->n_tensors; i++) {
        const fw_st_tensor *t = d->tensors[i];
        const char *fp = fw_st_dir_file_of(d, t);
        CHECK(fp != NULL, "%s: no file", t->name);
        const fw_st_file *f = NULL;
        for (int j = 0; j < d->n_files; j++)
            if (d->files[j].path == fp) f = &d->files[j];
        if (!f) continue;
        const char *lo = f->map, *p = t->data;
        CHECK(p >= lo + 8 && (uint64_t)(p - lo) + t->nbytes <= f->size, "%s: data outside %s", t->name, fp);
        CHECK(fw_st_find(f, t->name) == t, "%s: not found in its file", t->name);
        if (i) CHECK(strcmp(d->tensors[i - 1]->name, t->name) < 0, "not sorted at %s", t->name);
    }
}

static void check_golden(const char *shared) {
    char dir[4096];
    fw_st_dir d;
    fw_err e = {{0}};

    snprintf(dir, sizeof dir, "%s/golden/tiny-a-bf16", shared);
    int rc = fw_st_dir_open(&d, dir, &e);
    CHECK(rc == FW_OK, "bf16: %s", e.msg);
    if (rc == FW_OK) {
        CHECK(d.n_files == 3, "bf16 files %d", d.n_files);
        CHECK(d.n_tensors == 139, "bf16 tensors %d", d.n_tensors);
        const fw_st_tensor *t = expect_tensor(&d, "model.embed_tokens.weight", FW_DTYPE_BF16, 2, 2048, 256);
        CHECK(t && ends_with(fw_st_dir_file_of(&d, t), "model-00001-of-00003.safetensors"), "embed shard");
        expect_tensor(&d, "model.layers.0.self_attn.q_b_proj.weight", FW_DTYPE_BF16, 2, 192, 128);
        expect_tensor(&d, "model.layers.1.mlp.gate.e_score_correction_bias", FW_DTYPE_F32, 1, 16, 0);
        expect_tensor(&d, "model.layers.1.mlp.gate.weight", FW_DTYPE_BF16, 2, 16, 256);
        CHECK(fw_st_dir_find(&d, "model.layers.0.self_attn.q_b_proj.weight_scale_inv") == NULL,
              "bf16 has no scales");
        CHECK(fw_st_dir_find(&d, "no.such.tensor") == NULL, "absent tensor found");
        check_dir_consistent(&d);
        fw_st_dir_close(&d);
    }

    snprintf(dir, sizeof dir, "%s/golden/tiny-a-fp8", shared);
    rc = fw_st_dir_open(&d, dir, &e);
    CHECK(rc == FW_OK, "fp8: %s", e.msg);
    if (rc == FW_OK) {
        CHECK(d.n_files == 3, "fp8 files %d", d.n_files);
        CHECK(d.n_tensors == 259, "fp8 tensors %d", d.n_tensors);
        expect_tensor(&d, "model.layers.0.self_attn.q_b_proj.weight", FW_DTYPE_F8_E4M3, 2, 192, 128);
        expect_tensor(&d, "model.layers.0.self_attn.q_b_proj.weight_scale_inv", FW_DTYPE_F32, 2, 2, 1);
        expect_tensor(&d, "model.embed_tokens.weight", FW_DTYPE_BF16, 2, 2048, 256);
        expect_tensor(&d, "model.layers.1.mlp.gate.weight", FW_DTYPE_BF16, 2, 16, 256);
        /* Every scale has an FP8 weight whose 128x128 block grid it covers. */
        int scales = 0;
        for (int i = 0; i < d.n_tensors; i++) {
            const fw_st_tensor *s = d.tensors[i];
            if (!ends_with(s->name, ".weight_scale_inv")) continue;
            scales++;
            char wname[512];
            snprintf(wname, sizeof wname, "%.*s.weight", (int)(strlen(s->name) - strlen(".weight_scale_inv")),
                     s->name);
            const fw_st_tensor *w = fw_st_dir_find(&d, wname);
            CHECK(w && w->dtype == FW_DTYPE_F8_E4M3 && w->ndim == 2, "%s: no fp8 weight", s->name);
            if (!w || w->ndim != 2) continue;
            CHECK(s->dtype == FW_DTYPE_F32 && s->ndim == 2 && s->shape[0] == (w->shape[0] + 127) / 128 &&
                      s->shape[1] == (w->shape[1] + 127) / 128,
                  "%s: scale shape", s->name);
        }
        CHECK(scales == 120, "fp8 scales %d", scales);
        check_dir_consistent(&d);
        fw_st_dir_close(&d);
    }
}

#define GOOD_HDR                                                                    \
    "{\"__metadata__\": {\"format\": \"pt\"},"                                      \
    " \"a\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]},"   \
    " \"b\": {\"dtype\": \"BF16\", \"shape\": [4], \"data_offsets\": [24, 32]}}"

static void check_good_file(void) {
    const char *p = tmp_path("good.safetensors");
    write_st(p, GOOD_HDR "   ", 32);  /* trailing spaces: allowed padding */
    fw_st_file f;
    fw_err e = {{0}};
    int rc = fw_st_open(&f, p, &e);
    CHECK(rc == FW_OK, "good: %s", e.msg);
    if (rc != FW_OK) return;
    CHECK(f.n_tensors == 2, "good count");
    const fw_st_tensor *a = fw_st_find(&f, "a"), *b = fw_st_find(&f, "b");
    CHECK(a && a->dtype == FW_DTYPE_F32 && a->ndim == 2 && a->shape[0] == 2 && a->shape[1] == 3 &&
              a->nbytes == 24,
          "good a");
    CHECK(b && b->dtype == FW_DTYPE_BF16 && b->ndim == 1 && b->nbytes == 8, "good b");
    size_t hlen = strlen(GOOD_HDR "   ");
    CHECK(a && (const char *)a->data == (const char *)f.map + 8 + hlen, "a data");
    CHECK(b && ((const unsigned char *)b->data)[0] == ((24 * 7 + 1) & 0xff), "b data");
    CHECK(fw_st_find(&f, "__metadata__") == NULL && fw_st_find(&f, "c") == NULL, "find absent");
    fw_st_close(&f);
    fw_st_close(&f);  /* closing twice is harmless */

    /* Zero-size and scalar tensors are valid. */
    p = tmp_path("edge.safetensors");
    write_st(p,
             "{\"z\": {\"dtype\": \"F32\", \"shape\": [0, 5], \"data_offsets\": [4, 4]},"
             " \"s\": {\"dtype\": \"I32\", \"shape\": [], \"data_offsets\": [0, 4]}}",
             4);
    rc = fw_st_open(&f, p, &e);
    CHECK(rc == FW_OK, "edge: %s", e.msg);
    if (rc == FW_OK) {
        CHECK(f.n_tensors == 2 && fw_st_find(&f, "z")->nbytes == 0 && fw_st_find(&f, "s")->ndim == 0, "edge");
        fw_st_close(&f);
    }
}

static void check_bad_files(void) {
    char hdr[1024];
    const char *p;

    p = tmp_path("short.safetensors");
    write_text(p, "abc");
    expect_open_err("shorter than 8 bytes", p, "too short", NULL);
    p = tmp_path("empty.safetensors");
    write_text(p, "");
    expect_open_err("empty file", p, "too short", NULL);
    expect_open_err("missing file", tmp_path("nonexistent.safetensors"), "cannot open", NULL);
    expect_open_err("directory", tmp, "not a regular file", NULL);

    /* Truncated in the data: the last tensor runs past the end. */
    p = tmp_path("cut-data.safetensors");
    write_st(p, GOOD_HDR, 32);
    CHECK(truncate(p, (off_t)(8 + strlen(GOOD_HDR) + 27)) == 0, "truncate");
    expect_open_err("cut in data", p, "tensor 'b'", "end beyond the data section (27 bytes)");

    /* Truncated in the header. */
    p = tmp_path("cut-header.safetensors");
    write_st(p, GOOD_HDR, 32);
    CHECK(truncate(p, (off_t)(8 + strlen(GOOD_HDR) / 2)) == 0, "truncate");
    expect_open_err("cut in header", p, "header length", "larger than the file");

    p = tmp_path("hlen-huge.safetensors");
    write_st_len(p, "{}", 1ull << 40, 0);
    expect_open_err("header length > file", p, "header length 1099511627776", NULL);
    p = tmp_path("hlen-max.safetensors");
    write_st_len(p, "{}", UINT64_MAX - 1, 0);
    expect_open_err("header length near 2^64", p, "header length", NULL);

    /* A header length over 100 MB inside a (sparse) file big enough to hold it. */
    p = tmp_path("hlen-absurd.safetensors");
    write_st_len(p, "{}", 200ull * 1000 * 1000, 0);
    CHECK(truncate(p, (off_t)300 * 1000 * 1000) == 0, "truncate up");
    expect_open_err("absurd header length", p, "100 MB", NULL);
    unlink(p);

    p = tmp_path("bad-json.safetensors");
    write_st(p, "{\"a\": {\"dtype\": ", 0);
    expect_open_err("bad header JSON", p, "not valid JSON", NULL);
    p = tmp_path("not-object.safetensors");
    write_st(p, "[1, 2, 3]", 0);
    expect_open_err("header not an object", p, "not a JSON object", NULL);
    p = tmp_path("nul.safetensors");
    write_st_len(p, "{}", 3, 0);  /* header "{}" plus a byte beyond: read as the length says */
    {
        FILE *f = fopen(p, "ab");
        fputc(0, f);
        fclose(f);
    }
    expect_open_err("NUL in header", p, "not valid JSON", NULL);

    struct {
        const char *what, *entry, *n1, *n2;
        size_t data;
    } cases[] = {
        {"offsets out of range", "{\"dtype\": \"F32\", \"shape\": [250], \"data_offsets\": [0, 1000]}",
         "data_offsets [0, 1000] end beyond the data section (32 bytes)", NULL, 32},
        {"begin > end", "{\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [16, 8]}", "begin is after end",
         NULL, 32},
        {"unknown dtype", "{\"dtype\": \"F4\", \"shape\": [8], \"data_offsets\": [0, 8]}", "unknown dtype 'F4'",
         NULL, 32},
        {"size mismatch", "{\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 20]}", "hold 20 bytes",
         "needs 24", 32},
        {"negative shape", "{\"dtype\": \"F32\", \"shape\": [-2, 3], \"data_offsets\": [0, 24]}", "shape[0]",
         NULL, 32},
        {"real shape", "{\"dtype\": \"F32\", \"shape\": [2.0, 3], \"data_offsets\": [0, 24]}", "shape[0]", NULL,
         32},
        {"shape overflow",
         "{\"dtype\": \"F32\", \"shape\": [4611686018427387904, 4611686018427387904], \"data_offsets\": [0, 8]}",
         "overflows", NULL, 32},
        {"shape overflow by dtype", "{\"dtype\": \"F32\", \"shape\": [4611686018427387904], \"data_offsets\": [0, 8]}",
         "overflows", NULL, 32},
        {"too many dims", "{\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 1]}",
         "9 dimensions", NULL, 32},
        {"shape not array", "{\"dtype\": \"U8\", \"shape\": 8, \"data_offsets\": [0, 8]}", "shape", NULL, 32},
        {"no dtype", "{\"shape\": [8], \"data_offsets\": [0, 8]}", "dtype", NULL, 32},
        {"no offsets", "{\"dtype\": \"U8\", \"shape\": [8]}", "data_offsets", NULL, 32},
        {"three offsets", "{\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [0, 8, 9]}", "data_offsets",
         NULL, 32},
        {"negative offset", "{\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [-8, 0]}", "data_offsets",
         NULL, 32},
        {"entry not object", "[1, 2]", "not a JSON object", NULL, 32},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "case%02zu.safetensors", i);
        p = tmp_path(name);
        snprintf(hdr, sizeof hdr, "{\"model.layers.0.mlp.up_proj.weight\": %s}", cases[i].entry);
        write_st(p, hdr, cases[i].data);
        expect_open_err(cases[i].what, p, "tensor 'model.layers.0.mlp.up_proj.weight'", cases[i].n1);
        if (cases[i].n2) expect_open_err(cases[i].what, p, cases[i].n2, NULL);
    }

    p = tmp_path("overlap.safetensors");
    write_st(p,
             "{\"a\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]},"
             " \"b\": {\"dtype\": \"BF16\", \"shape\": [4], \"data_offsets\": [16, 24]}}",
             32);
    expect_open_err("overlapping tensors", p, "overlap", "'a'");
    expect_open_err("overlapping tensors", p, "'b'", NULL);
    p = tmp_path("dup.safetensors");
    write_st(p,
             "{\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
             " \"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [4, 8]}}",
             8);
    expect_open_err("duplicate name", p, "duplicate", NULL);
    p = tmp_path("meta.safetensors");
    write_st(p, "{\"__metadata__\": {\"format\": 1}}", 0);
    expect_open_err("metadata not strings", p, "__metadata__", NULL);
    p = tmp_path("meta2.safetensors");
    write_st(p, "{\"__metadata__\": [\"pt\"]}", 0);
    expect_open_err("metadata not object", p, "__metadata__", NULL);
}

/* A one-tensor U8 file holding `names` (comma-separated, each 4 bytes). */
static void write_shard(const char *path, const char *names) {
    char hdr[2048] = "{", one[256];
    char buf[256];
    snprintf(buf, sizeof buf, "%s", names);
    uint64_t off = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        snprintf(one, sizeof one, "%s\"%s\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [%llu, %llu]}",
                 off ? ", " : "", tok, (unsigned long long)off, (unsigned long long)off + 4);
        strncat(hdr, one, sizeof hdr - strlen(hdr) - 1);
        off += 4;
    }
    strncat(hdr, "}", sizeof hdr - strlen(hdr) - 1);
    write_st(path, hdr, (size_t)off);
}

static const char *make_dir(const char *name) {
    char *p = tmp_path(name);
    mkdir(p, 0755);
    return p;
}

static char *in_dir(const char *dir, const char *name) {
    static char buf[4][4096];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

static void check_dirs(void) {
    fw_st_dir d;
    fw_err e = {{0}};

    /* Index with two shards; s2 also holds 'd', absent from the map. */
    const char *dir = make_dir("ok");
    write_shard(in_dir(dir, "s1.safetensors"), "a,b");
    write_shard(in_dir(dir, "s2.safetensors"), "c,d");
    write_text(in_dir(dir, "model.safetensors.index.json"),
               "{\"metadata\": {\"total_size\": 16}, \"weight_map\": {\"a\": \"s1.safetensors\","
               " \"b\": \"s1.safetensors\", \"c\": \"s2.safetensors\"}}");
    int rc = fw_st_dir_open(&d, dir, &e);
    CHECK(rc == FW_OK, "ok dir: %s", e.msg);
    if (rc == FW_OK) {
        CHECK(d.n_files == 2 && d.n_tensors == 4, "ok dir counts %d %d", d.n_files, d.n_tensors);
        const fw_st_tensor *t = fw_st_dir_find(&d, "d");
        CHECK(t && ends_with(fw_st_dir_file_of(&d, t), "/s2.safetensors"), "unmapped tensor kept");
        t = fw_st_dir_find(&d, "a");
        CHECK(t && ends_with(fw_st_dir_file_of(&d, t), "/s1.safetensors"), "a in s1");
        check_dir_consistent(&d);
        fw_st_dir_close(&d);
    }

    /* A single model.safetensors. */
    dir = make_dir("single");
    write_shard(in_dir(dir, "model.safetensors"), "x,y,z");
    rc = fw_st_dir_open(&d, dir, &e);
    CHECK(rc == FW_OK && d.n_files == 1 && d.n_tensors == 3, "single: %s", e.msg);
    if (rc == FW_OK) fw_st_dir_close(&d);

    expect_dir_err("nonexistent dir", tmp_path("no-such-dir"), "no-such-dir", NULL, NULL);
    expect_dir_err("not a dir", in_dir(tmp_path("single"), "model.safetensors"), "not a directory", NULL, NULL);
    dir = make_dir("empty");
    expect_dir_err("empty dir", dir, dir, "model.safetensors.index.json", NULL);

    dir = make_dir("missing-shard");
    write_shard(in_dir(dir, "s1.safetensors"), "a");
    write_text(in_dir(dir, "model.safetensors.index.json"),
               "{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s9.safetensors\"}}");
    expect_dir_err("index names a missing shard", dir, "model.safetensors.index.json", "s9.safetensors",
                   "cannot open");

    dir = make_dir("missing-tensor");
    write_shard(in_dir(dir, "s1.safetensors"), "a");
    write_shard(in_dir(dir, "s2.safetensors"), "b");
    write_text(in_dir(dir, "model.safetensors.index.json"),
               "{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s1.safetensors\","
               " \"q\": \"s2.safetensors\"}}");
    expect_dir_err("tensor absent from its shard", dir, "tensor 'b'", "s1.safetensors", NULL);

    dir = make_dir("dup-across");
    write_shard(in_dir(dir, "s1.safetensors"), "a,b");
    write_shard(in_dir(dir, "s2.safetensors"), "b,c");
    write_text(in_dir(dir, "model.safetensors.index.json"),
               "{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s1.safetensors\","
               " \"c\": \"s2.safetensors\"}}");
    expect_dir_err("duplicate across shards", dir, "tensor 'b'", "s1.safetensors", "s2.safetensors");

    dir = make_dir("bad-index");
    write_shard(in_dir(dir, "s1.safetensors"), "a");
    write_text(in_dir(dir, "model.safetensors.index.json"), "{\"weight_map\": {\"a\": ");
    expect_dir_err("bad index JSON", dir, "model.safetensors.index.json", "invalid JSON", NULL);
    write_text(in_dir(dir, "model.safetensors.index.json"), "{\"metadata\": {}}");
    expect_dir_err("index without weight_map", dir, "model.safetensors.index.json", "weight_map", NULL);
    write_text(in_dir(dir, "model.safetensors.index.json"), "[]");
    expect_dir_err("index not an object", dir, "model.safetensors.index.json", "object", NULL);
    write_text(in_dir(dir, "model.safetensors.index.json"), "{\"weight_map\": {\"a\": 3}}");
    expect_dir_err("index value not string", dir, "model.safetensors.index.json", "tensor 'a'", NULL);
    write_text(in_dir(dir, "model.safetensors.index.json"), "{\"weight_map\": {\"a\": \"../s1.safetensors\"}}");
    expect_dir_err("index escapes dir", dir, "model.safetensors.index.json", "tensor 'a'", NULL);

    /* A corrupt shard behind an index: the error names index, shard and tensor. */
    dir = make_dir("corrupt-shard");
    write_st(in_dir(dir, "s1.safetensors"),
             "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 8);
    write_text(in_dir(dir, "model.safetensors.index.json"), "{\"weight_map\": {\"w\": \"s1.safetensors\"}}");
    expect_dir_err("corrupt shard", dir, "s1.safetensors", "tensor 'w'", "end beyond");
}

int main(void) {
    tmp = getenv("FURROW_TMP");
    if (!tmp) tmp = ".";
    check_good_file();
    check_bad_files();
    check_dirs();

    const char *shared = getenv("FURROW_SHARED");
    struct stat st;
    char g[4096];
    snprintf(g, sizeof g, "%s/golden/tiny-a-bf16", shared ? shared : "");
    if (!shared || stat(g, &st) != 0) {
        if (check_failures_) return check_result();
        SKIP("FURROW_SHARED/golden not found; golden checkpoints not checked");
    }
    check_golden(shared);
    return check_result();
}
