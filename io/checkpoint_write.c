/* Writing furrow checkpoints (io/FORMAT.md): data files by layer range, chunked
 * by tensor-parallel role, in a staging folder (io/ckpt_stage.h); the root file
 * with its external links comes last, and the whole appears in the destination
 * only then, so an interrupted write leaves no valid checkpoint. */
#include <config.h>   /* the build's (PACKAGE_VERSION), not io/config.h */

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "io/base/fileutil.h"
#include "io/checkpoint.h"
#include "io/ckpt_h5.h"
#include "io/ckpt_stage.h"
#include "io/ckpt_sums.h"
#include "io/model_tensors.h"
#include "io/quant_ct.h"

#define CHUNK_MAX_BYTES (64 << 20)   /* well under HDF5's 4 GB, big enough for one I/O */

typedef struct w_file {
    char name[64];
    char *path;
    const char *contents;       /* "base", "layers", "mtp" */
    int first, last;            /* layer range, -1 for base */
    hid_t fid;                  /* negative until the first tensor goes there */
} w_file;

typedef struct w_entry {
    char *name;
    int file;
    fw_dtype dtype;
    int ndim;
    int64_t shape[8];
    uint64_t checksum;          /* XXH3 of its bytes, recorded in the root too */
} w_entry;

struct fw_ckpt_writer {
    char *dir, *root;           /* the destination; the root file in the staging folder */
    fw_stage stage;
    fw_config cfg;              /* a copy; owns cfg.json */
    char *source;
    int layers_per_file;        /* 0: pack by bytes */
    int *layer_file;            /* [num_hidden_layers + num_nextn_predict_layers] */
    w_file *files;
    int n_files;
    w_entry *t;
    int64_t n, cap;
    hid_t fapl;
    uint64_t id;                /* checkpoint_id: ties the data files to their root */
    bool failed;                /* a write failed half-way: only abort remains */
};

int fw_ckpt_writer_open(fw_ckpt_writer **out, const char *dir, const fw_config *cfg, fw_err *e) {
    *out = NULL;
    fw_h5_quiet();
    if (!cfg->json) return fw_errf(e, "%s: the config has no config.json text to store", dir);
    fw_ckpt_writer *w = calloc(1, sizeof *w);
    if (w) w->fapl = H5I_INVALID_HID, w->stage.lock_fd = -1;
    if (!w || !(w->dir = strdup(dir)) || !(w->source = strdup(""))) {
        fw_ckpt_writer_abort(w);
        return fw_errf(e, "%s: out of memory", dir);
    }
    w->cfg = *cfg;
    w->cfg.json = NULL;   /* ours is a copy, below */
    /* Unique per write, not per content: files of two conversions never mix. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t salt[4] = {(uint64_t)now.tv_sec, (uint64_t)now.tv_nsec, (uint64_t)getpid(), (uint64_t)(uintptr_t)w};
    w->id = XXH3_64bits(salt, sizeof salt);
    if (!(w->cfg.json = strdup(cfg->json))) {
        fw_ckpt_writer_abort(w);
        return fw_errf(e, "%s: out of memory", dir);
    }
    int rc = fw_stage_open(&w->stage, dir, FW_CKPT_ROOT, e);
    /* HDF5 1.10 object formats: fixed-array chunk indexes, compact groups. Data
     * on 64-byte boundaries, so that a reader can map it and hand the kernels
     * aligned rows (io/FORMAT.md, "Mapping"). */
    if (rc == FW_OK && ((w->fapl = H5Pcreate(H5P_FILE_ACCESS)) < 0 ||
                        H5Pset_libver_bounds(w->fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) < 0 ||
                        H5Pset_alignment(w->fapl, FW_CKPT_ALIGN, FW_CKPT_ALIGN) < 0))
        rc = fw_h5_errf(e, "%s: cannot set up HDF5 file access", dir);
    if (rc != FW_OK) {
        fw_ckpt_writer_abort(w);
        return rc;
    }
    *out = w;
    return FW_OK;
}

int fw_ckpt_writer_set_layers_per_file(fw_ckpt_writer *w, int n, fw_err *e) {
    if (n < 0) return fw_errf(e, "%s: layers per file must be positive (or 0 for automatic), not %d", w->dir, n);
    if (w->files) return fw_errf(e, "%s: layers per file must be set before the first tensor is written", w->dir);
    w->layers_per_file = n;
    return FW_OK;
}

int fw_ckpt_writer_set_source(fw_ckpt_writer *w, const char *source, fw_err *e) {
    char *s = strdup(source ? source : "");
    if (!s) return fw_errf(e, "%s: out of memory", w->dir);
    free(w->source);
    w->source = s;
    return FW_OK;
}

int fw_ckpt_writer_add_file(fw_ckpt_writer *w, const char *from, const char *name, fw_err *e) {
    if (w->failed) return fw_errf(e, "%s: an earlier write failed; the checkpoint must be abandoned", w->dir);
    if (fnmatch("tokenizer*.json", name, 0) != 0 || strchr(name, '/'))
        return fw_errf(e, "%s: '%s' is not a tokenizer file name (tokenizer*.json)", w->dir, name);
    char *to;
    int rc = fw_stage_add(&w->stage, name, &to, e);
    if (rc == FW_OK) rc = fw_copy_file(from, to, e);
    free(to);
    if (rc != FW_OK) w->failed = true;
    return rc;
}

static int add_file(fw_ckpt_writer *w, const char *contents, int first, int last, fw_err *e) {
    w_file *f = realloc(w->files, (size_t)(w->n_files + 1) * sizeof *f);
    if (!f) return fw_errf(e, "%s: out of memory", w->dir);
    w->files = f;
    f = &w->files[w->n_files];
    memset(f, 0, sizeof *f);
    if (first < 0) snprintf(f->name, sizeof f->name, "base.h5");
    else snprintf(f->name, sizeof f->name, "%s-%03d-%03d.h5", contents, first, last);
    f->contents = contents;
    f->first = first;
    f->last = last;
    f->fid = H5I_INVALID_HID;
    if (fw_stage_add(&w->stage, f->name, &f->path, e)) return FW_ERR;
    for (int l = first; l >= 0 && l <= last; l++) w->layer_file[l] = w->n_files;
    w->n_files++;
    return FW_OK;
}

/* Bytes of each layer as it will be stored, for packing layers into files. */
static int layer_bytes(const fw_config *c, int64_t *bytes, int nl, fw_err *e) {
    fw_model_tensor *t;
    int64_t n;
    fw_ct_scheme *ct = NULL;
    if (c->int4 && fw_ct_from_json(&ct, c->json, "config.json", e)) return FW_ERR;
    if (fw_model_tensors(c, &t, &n, e)) {
        fw_ct_free(ct);
        return FW_ERR;
    }
    for (int64_t i = 0; i < n; i++) {
        if (t[i].layer < 0 || t[i].layer >= nl) continue;
        int64_t el = t[i].shape[0] * (t[i].ndim == 2 ? t[i].shape[1] : 1), g;
        if (fw_ct_weight_quantized(ct, t[i].name, &g))
            bytes[t[i].layer] += el / 2 + el / (g > 0 ? g : t[i].shape[1]) * 2;
        else
            bytes[t[i].layer] += el * (t[i].quantized && c->fp8 ? 1 : t[i].f32 ? 4 : 2);
    }
    free(t);
    fw_ct_free(ct);
    return FW_OK;
}

/* Which file each layer goes to: decided at the first write, from the config. */
static int plan_files(fw_ckpt_writer *w, fw_err *e) {
    const int L = w->cfg.num_hidden_layers, nl = L + w->cfg.num_nextn_predict_layers;
    w->layer_file = calloc((size_t)nl + 1, sizeof *w->layer_file);
    int64_t *bytes = calloc((size_t)nl + 1, sizeof *bytes);
    int rc = !w->layer_file || !bytes ? fw_errf(e, "%s: out of memory", w->dir) : FW_OK;
    if (rc == FW_OK) rc = add_file(w, "base", -1, -1, e);
    if (rc == FW_OK && w->layers_per_file == 0) rc = layer_bytes(&w->cfg, bytes, nl, e);
    for (int first = 0; rc == FW_OK && first < L;) {
        int last = first;
        if (w->layers_per_file > 0) {
            last = first + w->layers_per_file - 1;
        } else {
            for (int64_t sum = bytes[first]; last + 1 < L && sum + bytes[last + 1] <= FW_CKPT_FILE_BYTES;)
                sum += bytes[++last];
        }
        if (last >= L) last = L - 1;
        rc = add_file(w, "layers", first, last, e);
        first = last + 1;
    }
    if (rc == FW_OK && nl > L) rc = add_file(w, "mtp", L, nl - 1, e);
    free(bytes);
    return rc;
}

static int file_open(fw_ckpt_writer *w, w_file *f, fw_err *e) {
    if (f->fid >= 0) return FW_OK;
    /* EXCL: the staging folder is new; anything there is not ours. */
    hid_t fid = H5Fcreate(f->path, H5F_ACC_EXCL, H5P_DEFAULT, w->fapl);
    if (fid < 0) {
        int rc = fw_h5_errf(e, "%s: cannot create", f->path);
        unlink(f->path);   /* what a failed create left (a full disk): it did not exist before */
        return rc;
    }
    f->fid = fid;
    if (fw_h5_put_str(fid, "format", FW_CKPT_FORMAT_NAME) || fw_h5_put_i64(fid, "format_version", FW_CKPT_FORMAT_VERSION) ||
        fw_h5_put_u64(fid, "checkpoint_id", w->id) || fw_h5_put_str(fid, "contents", f->contents) || fw_h5_put_i64(fid, "first_layer", f->first) ||
        fw_h5_put_i64(fid, "last_layer", f->last) || fw_h5_put_i64(fid, "mtp", !strcmp(f->contents, "mtp")))
        return fw_h5_errf(e, "%s: cannot write the file attributes", f->path);
    return FW_OK;
}

/* Largest divisor of n that is at most cap (n >= 1). */
static int64_t divisor_upto(int64_t n, int64_t cap) {
    for (int64_t u = cap < n ? cap : n; u > 1; u--)
        if (n % u == 0) return u;
    return 1;
}

/* Rows (or columns) per chunk along the split axis of length n: one head for
 * head-split tensors; else the largest divisor of n/8 up to 128, so that every
 * TP degree dividing 8 gets whole chunks. */
static int64_t split_unit(int64_t n, int64_t head) {
    if (head > 0 && n % head == 0) return head;
    return divisor_upto(n % 8 == 0 ? n / 8 : n, 128);
}

static void chunk_shape(const fw_ckpt_writer *w, const char *name, int ndim, const int64_t *shape, size_t esize,
                        hsize_t *chunk) {
    int64_t head;
    fw_tp_role role = fw_model_tensor_role(&w->cfg, name, &head);
    size_t len = strlen(name);
    bool scale = len > 10 && !strcmp(name + len - 10, "_scale_inv");
    for (int i = 0; i < ndim; i++) chunk[i] = (hsize_t)shape[i];
    int free_axis = 0;   /* the axis shortened when a chunk is over the cap */
    if (!scale && ndim == 2 && (role == FW_TP_COLUMN || role == FW_TP_VOCAB)) {
        chunk[0] = (hsize_t)split_unit(shape[0], head);
        free_axis = 1;
    } else if (!scale && ndim == 2 && role == FW_TP_ROW) {
        chunk[1] = (hsize_t)split_unit(shape[1], head);
    }
    uint64_t rest = esize;
    for (int i = 0; i < ndim; i++)
        if (i != free_axis) rest *= chunk[i];
    if (rest * chunk[free_axis] > CHUNK_MAX_BYTES) {
        hsize_t k = rest < CHUNK_MAX_BYTES ? CHUNK_MAX_BYTES / rest : 1;
        if (k >= 128) k -= k % 128;   /* keep FP8 128-blocks whole */
        chunk[free_axis] = k;
    }
}

static const char *quantization(const fw_ckpt_writer *w, fw_dtype dtype, char *buf, size_t size) {
    if (dtype != FW_DTYPE_F8_E4M3) return "none";
    int b0 = w->cfg.fp8_block[0] > 0 ? w->cfg.fp8_block[0] : 128, b1 = w->cfg.fp8_block[1] > 0 ? w->cfg.fp8_block[1] : 128;
    if (b0 == b1) snprintf(buf, size, "fp8_e4m3_block%d", b0);
    else snprintf(buf, size, "fp8_e4m3_block%dx%d", b0, b1);
    return buf;
}

static int record(fw_ckpt_writer *w, const char *name, int file, fw_dtype dtype, int ndim, const int64_t *shape,
                  uint64_t checksum, fw_err *e) {
    if (w->n == w->cap) {
        int64_t cap = w->cap ? 2 * w->cap : 1024;
        w_entry *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t) return fw_errf(e, "%s: out of memory", w->dir);
        w->t = t;
        w->cap = cap;
    }
    w_entry *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return fw_errf(e, "%s: out of memory", w->dir);
    t->file = file;
    t->dtype = dtype;
    t->ndim = ndim;
    t->checksum = checksum;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    w->n++;
    return FW_OK;
}

/* The chunk checksums of a tensor about to be written with chunks `chunk`. */
static uint64_t *chunk_sums(int ndim, const int64_t *shape, const hsize_t *chunk, size_t esize, const void *data,
                            int64_t *n) {
    int64_t c[8];
    for (int i = 0; i < ndim; i++) c[i] = (int64_t)chunk[i];
    *n = fw_chunk_count(ndim, shape, c);
    uint64_t *sums = malloc((size_t)(*n > 0 ? *n : 1) * sizeof *sums);
    if (sums) fw_chunk_sums(data, ndim, shape, c, esize, sums);
    return sums;
}

/* Creates, writes and labels one dataset. Any HDF5 failure poisons the writer.
 * chunk0, quant0: the chunk shape and `quantization` label when the caller knows
 * them (INT4 and INT8 tensors); NULL: from the name and dtype. */
static int write_dataset(fw_ckpt_writer *w, w_file *f, const char *name, fw_dtype dtype, int ndim,
                         const int64_t *shape, uint64_t nbytes, const void *data, uint64_t checksum,
                         const hsize_t *chunk0, const char *quant0, fw_err *e) {
    char path[512], quant[48];
    fw_ckpt_name_to_path(name, path, sizeof path);
    hsize_t dims[8], chunk[8];
    for (int i = 0; i < ndim; i++) dims[i] = (hsize_t)shape[i];
    if (chunk0) memcpy(chunk, chunk0, (size_t)ndim * sizeof *chunk);
    else chunk_shape(w, name, ndim, shape, fw_dtype_size(dtype), chunk);
    int64_t head;
    fw_tp_role role = fw_model_tensor_role(&w->cfg, name, &head);
    int64_t n_sums = 0;
    uint64_t *sums = nbytes > 0 ? chunk_sums(ndim, shape, chunk, fw_dtype_size(dtype), data, &n_sums) : NULL;
    if (nbytes > 0 && !sums) {
        w->failed = true;
        return fw_errf(e, "%s: tensor '%s': out of memory", f->path, name);
    }

    hid_t type = fw_h5_type(dtype), space = H5Screate_simple(ndim, dims, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE), d = H5I_INVALID_HID;
    int rc = FW_OK;
    if (type < 0 || space < 0 || lcpl < 0 || dcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0 ||
        H5Pset_obj_track_times(dcpl, 0) < 0 ||
        (nbytes > 0 && (H5Pset_chunk(dcpl, ndim, chunk) < 0 || H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0 ||
                        H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) < 0))) {
        rc = fw_h5_errf(e, "%s: tensor '%s': cannot set up the dataset", f->path, name);
    } else if ((d = H5Dcreate2(f->fid, path, type, space, lcpl, dcpl, H5P_DEFAULT)) < 0) {
        rc = fw_h5_errf(e, "%s: tensor '%s': cannot create the dataset", f->path, name);
    } else if (nbytes > 0 && H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        rc = fw_h5_errf(e, "%s: tensor '%s': write failed", f->path, name);
    } else if (fw_h5_put_str(d, "dtype", fw_dtype_name(dtype)) ||
               fw_h5_put_u64(d, "checksum", checksum) ||
               (nbytes > 0 && fw_h5_put_u64_array(d, "chunk_checksums", sums, n_sums)) ||
               fw_h5_put_str(d, "role", fw_tp_role_name(role)) ||
               fw_h5_put_str(d, "quantization", quant0 ? quant0 : quantization(w, dtype, quant, sizeof quant))) {
        rc = fw_h5_errf(e, "%s: tensor '%s': cannot write its attributes", f->path, name);
    } else if (H5Dflush(d) < 0) {   /* the chunk cache: the last of the data goes out here */
        rc = fw_h5_errf(e, "%s: tensor '%s': write failed", f->path, name);
    }
    if (rc != FW_OK) fw_h5_abandon(f->fid);   /* before any close can fail */
    if (d >= 0 && H5Dclose(d) < 0 && rc == FW_OK) rc = fw_h5_errf(e, "%s: tensor '%s': write failed", f->path, name);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    free(sums);
    if (rc != FW_OK) w->failed = true;
    return rc;
}

static int write_one(fw_ckpt_writer *w, const char *name, fw_dtype dtype, int ndim, const int64_t *shape,
                     const void *data, const hsize_t *chunk, const char *quant, fw_err *e) {
    if (w->failed) return fw_errf(e, "%s: an earlier write failed; the checkpoint must be abandoned", w->dir);
    if (!fw_ckpt_name_valid(name) || strlen(name) > 400)
        return fw_errf(e, "%s: '%s' is not a valid tensor name", w->dir, name ? name : "(null)");
    if (ndim < 1 || ndim > 8) return fw_errf(e, "%s: tensor '%s' has %d dimensions (1 to 8)", w->dir, name, ndim);
    hid_t probe = fw_h5_type(dtype);
    if (probe < 0) return fw_errf(e, "%s: tensor '%s': dtype %s cannot be stored", w->dir, name, fw_dtype_name(dtype));
    H5Tclose(probe);
    unsigned long long nbytes = fw_dtype_size(dtype);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || fw_mul_u64(nbytes, (unsigned long long)shape[i], &nbytes))
            return fw_errf(e, "%s: tensor '%s': bad shape (dimension %d is %lld)", w->dir, name, i,
                           (long long)shape[i]);
    if (!w->files && plan_files(w, e)) {
        w->failed = true;
        return FW_ERR;
    }

    const int L = w->cfg.num_hidden_layers, nl = L + w->cfg.num_nextn_predict_layers;
    int layer = fw_model_tensor_layer(name), fi = 0;
    if (layer >= nl)
        return fw_errf(e, "%s: tensor '%s': layer %d is beyond the config's %d layers + %d MTP layers", w->dir,
                       name, layer, L, nl - L);
    if (layer >= 0) fi = w->layer_file[layer];
    w_file *f = &w->files[fi];
    if (file_open(w, f, e)) {
        w->failed = true;
        return FW_ERR;
    }
    char path[512];
    fw_ckpt_name_to_path(name, path, sizeof path);
    /* H5Lexists may fail when a group on the way is missing: only "yes" counts. */
    if (H5Lexists(f->fid, path, H5P_DEFAULT) > 0)
        return fw_errf(e, "%s: tensor '%s' is written twice", f->path, name);
    uint64_t checksum = XXH3_64bits(data, (size_t)nbytes);
    if (write_dataset(w, f, name, dtype, ndim, shape, nbytes, data, checksum, chunk, quant, e)) return FW_ERR;
    if (record(w, name, fi, dtype, ndim, shape, checksum, e)) {
        w->failed = true;   /* on disk but not in the index */
        return FW_ERR;
    }
    return FW_OK;
}

int fw_ckpt_write(fw_ckpt_writer *w, const char *name, fw_dtype dtype, int ndim, const int64_t *shape,
                  const void *data, fw_err *e) {
    return write_one(w, name, dtype, ndim, shape, data, NULL, NULL, e);
}

/* Chunks of an INT4 or INT8 weight [rows, cols] in groups of G columns, counted
 * in groups along the columns so that both datasets cut at the same group
 * boundaries: a split axis in the units of chunk_shape (a row split in whole
 * groups, one head when a head is whole groups), the rest whole, shortened under
 * the cap. `per_word`: values per stored element (8 for INT4's words, 1 for INT8).
 * An INT8 weight with one scale per row (per channel) has its values chunked as
 * a plain weight, so a row-parallel slice is whole chunks; its scales [rows, 1]
 * follow the values' rows. */
static void grouped_chunks(const fw_ckpt_writer *w, const char *weight, const char *vname, const int64_t shape[2],
                           int64_t G, int per_word, hsize_t values[2], hsize_t scale[2]) {
    int64_t head;
    fw_tp_role role = fw_model_tensor_role(&w->cfg, weight, &head);
    const int64_t rows = shape[0], ng = shape[1] / G, gbytes = per_word == 8 ? G / 2 : G;
    if (per_word == 1 && ng == 1) {
        chunk_shape(w, vname, 2, shape, 1, values);
        scale[0] = values[0], scale[1] = 1;
        return;
    }
    int64_t rc = rows, gc = ng;
    if (role == FW_TP_COLUMN || role == FW_TP_VOCAB) {
        rc = split_unit(rows, head);
        if (rc * gc * gbytes > CHUNK_MAX_BYTES) gc = CHUNK_MAX_BYTES / (rc * gbytes) > 0 ? CHUNK_MAX_BYTES / (rc * gbytes) : 1;
    } else {
        if (role == FW_TP_ROW) gc = split_unit(ng, head > 0 && head % G == 0 ? head / G : 0);
        if (rc * gc * gbytes > CHUNK_MAX_BYTES) {
            rc = CHUNK_MAX_BYTES / (gc * gbytes) > 0 ? CHUNK_MAX_BYTES / (gc * gbytes) : 1;
            if (rc >= 128) rc -= rc % 128;
        }
    }
    values[0] = scale[0] = (hsize_t)(rc > 0 ? rc : 1);
    values[1] = (hsize_t)(gc * G / per_word);
    scale[1] = (hsize_t)gc;
}

int fw_ckpt_write_int4(fw_ckpt_writer *w, const char *weight, const int64_t shape[2], int64_t group,
                       const void *packed, const void *scale, fw_err *e) {
    if (group <= 0 || group % 8 != 0 || shape[0] <= 0 || shape[1] <= 0 || shape[1] % group != 0)
        return fw_errf(e, "%s: INT4 tensor '%s' [%lld, %lld]: group size %lld must be a multiple of 8 that divides "
                          "the columns", w->dir, weight, (long long)shape[0], (long long)shape[1], (long long)group);
    char pname[512], sname[512], quant[48];
    snprintf(pname, sizeof pname, "%s_packed", weight);
    snprintf(sname, sizeof sname, "%s_scale", weight);
    snprintf(quant, sizeof quant, "int4_sym_group%lld", (long long)group);
    hsize_t pc[2], sc[2];
    grouped_chunks(w, weight, pname, shape, group, 8, pc, sc);
    const int64_t pshape[2] = {shape[0], shape[1] / 8}, sshape[2] = {shape[0], shape[1] / group};
    if (write_one(w, pname, FW_DTYPE_I32, 2, pshape, packed, pc, quant, e)) return FW_ERR;
    return write_one(w, sname, FW_DTYPE_BF16, 2, sshape, scale, sc, "none", e);
}

void fw_int8_label(int64_t cols, int64_t group, char *buf, size_t n) {
    if (group == cols) snprintf(buf, n, "int8_sym_channel");
    else snprintf(buf, n, "int8_sym_group%lld", (long long)group);
}

int fw_ckpt_write_int8(fw_ckpt_writer *w, const char *weight, const int64_t shape[2], int64_t group,
                       const int8_t *values, const uint16_t *scale, fw_err *e) {
    if (group <= 0 || shape[0] <= 0 || shape[1] <= 0 || shape[1] % group != 0)
        return fw_errf(e, "%s: INT8 tensor '%s' [%lld, %lld]: group size %lld must divide the columns", w->dir,
                       weight, (long long)shape[0], (long long)shape[1], (long long)group);
    char vname[512], sname[512], quant[48];
    snprintf(vname, sizeof vname, "%s_int8", weight);
    snprintf(sname, sizeof sname, "%s_scale", weight);
    fw_int8_label(shape[1], group, quant, sizeof quant);
    hsize_t vc[2], sc[2];
    grouped_chunks(w, weight, vname, shape, group, 1, vc, sc);
    const int64_t sshape[2] = {shape[0], shape[1] / group};
    if (write_one(w, vname, FW_DTYPE_I8, 2, shape, values, vc, quant, e)) return FW_ERR;
    return write_one(w, sname, FW_DTYPE_BF16, 2, sshape, scale, sc, "none", e);
}

static int entry_cmp(const void *a, const void *b) {
    return strcmp(((const w_entry *)a)->name, ((const w_entry *)b)->name);
}

static const w_entry *find(const fw_ckpt_writer *w, const char *name) {
    w_entry key = {.name = (char *)name};
    return bsearch(&key, w->t, (size_t)w->n, sizeof *w->t, entry_cmp);
}

static bool shape_is(const w_entry *t, int ndim, const int64_t *shape) {
    if (t->ndim != ndim) return false;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i]) return false;
    return true;
}

/* A weight written as INT4 or INT8 (fw_ckpt_write_int4, _int8): FW_OK when its
 * values and scales are there with shapes that agree, FW_ERR when not, 1 when it
 * has neither form either (the caller reports the weight as missing). */
static int check_grouped(const fw_ckpt_writer *w, const fw_model_tensor *m, fw_err *e) {
    char pname[sizeof m->name + 16], vname[sizeof m->name + 16], sname[sizeof m->name + 16];
    snprintf(pname, sizeof pname, "%s_packed", m->name);
    snprintf(vname, sizeof vname, "%s_int8", m->name);
    snprintf(sname, sizeof sname, "%s_scale", m->name);
    const w_entry *p = find(w, pname), *v = find(w, vname), *s = find(w, sname);
    if (!p && !v) return 1;
    const int64_t pw[2] = {m->shape[0], m->shape[1] / 8};
    const bool values_ok = p ? !v && shape_is(p, 2, pw) && m->shape[1] % 8 == 0 : shape_is(v, 2, m->shape);
    if (!s || !values_ok || s->ndim != 2 || s->shape[0] != m->shape[0] || s->shape[1] <= 0 || m->shape[1] % s->shape[1])
        return fw_errf(e, "%s: %s tensor '%s' %s: its '%s' and '%s' do not agree with the config's shape", w->dir,
                       p ? "INT4" : "INT8", m->name, m->dims, p ? pname : vname, sname);
    return FW_OK;
}

/* The checkpoint is complete: every tensor the config implies is there with its
 * shape (an MTP layer all or nothing), and each FP8 weight has its scales. */
static int check_complete(fw_ckpt_writer *w, fw_err *e) {
    qsort(w->t, (size_t)w->n, sizeof *w->t, entry_cmp);
    fw_model_tensor *m;
    int64_t n;
    if (fw_model_tensors(&w->cfg, &m, &n, e)) return FW_ERR;
    /* MTP layers are optional: a layer with any tensor written must be whole. */
    const int L = w->cfg.num_hidden_layers, nl = L + w->cfg.num_nextn_predict_layers;
    bool *mtp_seen = calloc((size_t)nl + 1, sizeof *mtp_seen);
    if (!mtp_seen) {
        free(m);
        return fw_errf(e, "%s: out of memory", w->dir);
    }
    for (int64_t i = 0; i < w->n; i++) {
        int l = fw_model_tensor_layer(w->t[i].name);
        if (l >= L && l < nl) mtp_seen[l] = true;
    }
    int rc = FW_OK;
    for (int64_t i = 0; i < n && rc == FW_OK; i++) {
        const w_entry *t = find(w, m[i].name);
        if (m[i].mtp && !t && !mtp_seen[m[i].layer]) continue;
        if (!t && m[i].ndim == 2) {
            rc = check_grouped(w, &m[i], e);
            if (rc != 1) continue;
            rc = FW_OK;
        }
        if (!t) {
            rc = fw_errf(e, "%s: tensor '%s' %s was never written", w->dir, m[i].name, m[i].dims);
        } else if (!shape_is(t, m[i].ndim, m[i].shape)) {
            rc = fw_errf(e, "%s: tensor '%s' was written with a shape other than the config's %s", w->dir,
                         m[i].name, m[i].dims);
        }
    }
    free(m);
    free(mtp_seen);
    char sname[520];
    for (int64_t i = 0; i < w->n && rc == FW_OK; i++) {
        if (w->t[i].dtype != FW_DTYPE_F8_E4M3) continue;
        snprintf(sname, sizeof sname, "%s_scale_inv", w->t[i].name);
        const w_entry *s = find(w, sname);
        int64_t want[2] = {0, 0};
        if (w->t[i].ndim == 2) fw_model_tensor_scale_shape(&w->cfg, w->t[i].shape, want);
        if (!s) rc = fw_errf(e, "%s: FP8 tensor '%s' has no '%s'", w->dir, w->t[i].name, sname);
        else if (s->dtype != FW_DTYPE_F32 || !shape_is(s, 2, want))
            rc = fw_errf(e, "%s: '%s' must be F32 [%lld, %lld] (128x128 blocks of its weight)", w->dir, sname,
                         (long long)want[0], (long long)want[1]);
    }
    return rc;
}

/* Data reaches the disk before the root that points to it. */
static int sync_path(const char *path, fw_err *e) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fw_errf(e, "%s: cannot open to sync: %s", path, strerror(errno));
    int rc = fsync(fd) != 0 && errno != EINVAL ? fw_errf(e, "%s: fsync failed: %s", path, strerror(errno)) : FW_OK;
    close(fd);
    return rc;
}

/* The root's tensor_checksums (name order: check_complete sorted w->t) and the
 * manifest checksum over them, the config and the links (dataset paths[i]). */
static int put_manifest(fw_ckpt_writer *w, hid_t fid, char (*paths)[512]) {
    uint64_t *sums = malloc((size_t)(w->n > 0 ? w->n : 1) * sizeof *sums);
    fw_manifest_entry *m = malloc((size_t)(w->n > 0 ? w->n : 1) * sizeof *m);
    int rc = -1;
    if (sums && m) {
        for (int64_t i = 0; i < w->n; i++) {
            sums[i] = w->t[i].checksum;
            m[i] = (fw_manifest_entry){w->t[i].name, w->files[w->t[i].file].name, paths[i], sums[i]};
        }
        rc = fw_h5_put_u64_array(fid, "tensor_checksums", sums, w->n) ||
             fw_h5_put_u64(fid, "manifest_checksum", fw_manifest_checksum(w->cfg.json, m, w->n));
    }
    free(sums);
    free(m);
    return rc;
}

/* The root is built in memory (HDF5's core driver) and goes to disk in one flush:
 * a failure there leaves HDF5's cache consistent, so the file can be abandoned
 * (a failed metadata flush of a file on disk cannot be recovered from). */
static int write_root(fw_ckpt_writer *w, fw_err *e) {
    if (fw_stage_add(&w->stage, FW_CKPT_ROOT, &w->root, e)) return FW_ERR;
    hid_t fapl = H5Pcopy(w->fapl);
    if (fapl < 0 || H5Pset_fapl_core(fapl, 64 << 10, 1) < 0) {
        if (fapl >= 0) H5Pclose(fapl);
        return fw_h5_errf(e, "%s: cannot set up HDF5 file access", w->root);
    }
    hid_t fid = H5Fcreate(w->root, H5F_ACC_EXCL, H5P_DEFAULT, fapl);
    int rc = fid < 0 ? fw_h5_errf(e, "%s: cannot create", w->root) : FW_OK;   /* before H5Pclose clears the stack */
    H5Pclose(fapl);
    if (rc != FW_OK) return rc;
    char (*paths)[512] = malloc((size_t)(w->n > 0 ? w->n : 1) * sizeof *paths);   /* each tensor's dataset */
    if (!paths) rc = fw_errf(e, "%s: out of memory", w->root);
    for (int64_t i = 0; i < w->n && rc == FW_OK; i++) fw_ckpt_name_to_path(w->t[i].name, paths[i], sizeof paths[i]);
    if (rc == FW_OK &&
        (fw_h5_put_str(fid, "format", FW_CKPT_FORMAT_NAME) ||
         fw_h5_put_i64(fid, "format_version", FW_CKPT_FORMAT_VERSION) || fw_h5_put_u64(fid, "checkpoint_id", w->id) ||
         fw_h5_put_str(fid, "config_json", w->cfg.json) || fw_h5_put_str(fid, "source", w->source) ||
         fw_h5_put_str(fid, "writer", "furrow " PACKAGE_VERSION) || fw_h5_put_i64(fid, "tensor_count", w->n) ||
         put_manifest(w, fid, paths)))
        rc = fw_h5_errf(e, "%s: cannot write the root attributes", w->root);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (rc == FW_OK && (lcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0))
        rc = fw_h5_errf(e, "%s: cannot set up links", w->root);
    for (int64_t i = 0; i < w->n && rc == FW_OK; i++)
        if (H5Lcreate_external(w->files[w->t[i].file].name, paths[i], fid, paths[i], lcpl, H5P_DEFAULT) < 0)
            rc = fw_h5_errf(e, "%s: cannot link tensor '%s'", w->root, w->t[i].name);
    free(paths);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (rc == FW_OK && H5Fflush(fid, H5F_SCOPE_LOCAL) < 0) rc = fw_h5_errf(e, "%s: cannot write", w->root);
    if (rc != FW_OK) fw_h5_abandon(fid);
    if (H5Fclose(fid) < 0 && rc == FW_OK) rc = fw_h5_errf(e, "%s: cannot write", w->root);
    if (rc == FW_OK) rc = sync_path(w->root, e);
    return rc;
}

int fw_ckpt_writer_close(fw_ckpt_writer *w, fw_err *e) {
    int rc = w->failed ? fw_errf(e, "%s: an earlier write failed; the checkpoint must be abandoned", w->dir) : FW_OK;
    if (rc == FW_OK && !w->files) rc = fw_errf(e, "%s: no tensors were written", w->dir);
    if (rc == FW_OK) rc = check_complete(w, e);
    for (int i = 0; i < w->n_files && rc == FW_OK; i++) {
        w_file *f = &w->files[i];
        if (f->fid < 0) continue;
        /* Flushed first: a close that fails is what HDF5 1.10 cannot survive. */
        if (H5Fflush(f->fid, H5F_SCOPE_LOCAL) < 0) {
            rc = fw_h5_errf(e, "%s: cannot finish the file", f->path);
            break;   /* still open: abort abandons it */
        }
        herr_t h = H5Fclose(f->fid);
        f->fid = H5I_INVALID_HID;
        if (h < 0) rc = fw_h5_errf(e, "%s: cannot finish the file", f->path);
        else rc = sync_path(f->path, e);
    }
    if (rc == FW_OK) rc = write_root(w, e);
    if (rc == FW_OK) rc = fw_stage_publish(&w->stage, e);
    fw_ckpt_writer_abort(w);   /* the staging folder, whatever happened; frees w */
    return rc;
}

void fw_ckpt_writer_abort(fw_ckpt_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n_files; i++) {
        w_file *f = &w->files[i];
        if (f->fid >= 0) {
            fw_h5_abandon(f->fid);
            H5Fclose(f->fid);
        }
        free(f->path);
    }
    fw_stage_abort(&w->stage);   /* unlinks every file made in it */
    for (int64_t i = 0; i < w->n; i++) free(w->t[i].name);
    if (w->fapl >= 0) H5Pclose(w->fapl);
    free(w->t);
    free(w->files);
    free(w->layer_file);
    free(w->cfg.json);
    free(w->source);
    free(w->root);
    free(w->dir);
    free(w);
}
