/* Reading furrow checkpoints (io/FORMAT.md): the root file's external links give
 * the tensor table; data files are opened once each, on first use, read-only. */
#include "io/checkpoint.h"
#include "io/base/fileutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "io/ckpt_h5.h"
#include "io/ckpt_map.h"
#include "io/ckpt_sums.h"

typedef struct ck_file {
    char *name;                 /* "layers-000-003.h5", relative to the directory */
    char *path;
    hid_t fid;                  /* negative until opened */
    fw_ckpt_mapping *map;       /* NULL until a tensor of it is mapped */
} ck_file;

typedef struct ck_entry {
    char *name;                 /* Hugging Face name */
    char *obj;                  /* dataset path inside its file */
    int file;
    bool have_info;             /* info is filled on first use */
    fw_tensor_info info;
    uint64_t sum;               /* its checksum as the root records it */
} ck_entry;

struct fw_ckpt {
    char *dir, *root;
    char *source;
    uint64_t id;                /* checkpoint_id of the root; data files must match */
    fw_config cfg;
    ck_file *files;
    int n_files;
    ck_entry *t;                /* sorted by name */
    int64_t n, cap;
    fw_ckpt_gen_fn gen;         /* a generated checkpoint: tensors made on read */
    void *gen_user;
    bool verify;                /* check each read's chunks against their checksums */
    uint64_t bytes_verified;
    uint64_t bytes_mapped;
};

/* Read-only opens without HDF5's file locks: a finished checkpoint has no
 * writer to guard against, and parallel file systems (Lustre, NFS) often refuse
 * flock, which would fail every rank's open. */
static hid_t open_ro(const char *path) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
#if H5_VERSION_GE(1, 10, 7)
    if (fapl >= 0) H5Pset_file_locking(fapl, 0, 1);
#endif
    hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, fapl >= 0 ? fapl : H5P_DEFAULT);
    /* H5Pclose would clear the error stack that says why the open failed (a
     * truncated file): the caller's fw_h5_errf reads it. */
    hid_t why = fid < 0 ? H5Eget_current_stack() : H5I_INVALID_HID;
    if (fapl >= 0) H5Pclose(fapl);
    if (why >= 0) H5Eset_current_stack(why);
    return fid;
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int entry_cmp(const void *a, const void *b) {
    return strcmp(((const ck_entry *)a)->name, ((const ck_entry *)b)->name);
}

static ck_entry *find(const fw_ckpt *ck, const char *name) {
    ck_entry key = {.name = (char *)name};
    return bsearch(&key, ck->t, (size_t)ck->n, sizeof *ck->t, entry_cmp);
}

/* Data file names come from the root file: accept plain names only, so links
 * cannot point outside the checkpoint directory. */
static int file_index(fw_ckpt *ck, const char *name, fw_err *e) {
    for (int i = 0; i < ck->n_files; i++)
        if (!strcmp(ck->files[i].name, name)) return i;
    if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
        return fw_errf(e, "%s: external link to '%s': data files must be plain names in the checkpoint "
                          "directory", ck->root, name);
    ck_file *f = realloc(ck->files, (size_t)(ck->n_files + 1) * sizeof *f);
    if (!f) return fw_errf(e, "%s: out of memory", ck->root);
    ck->files = f;
    f = &ck->files[ck->n_files];
    f->name = strdup(name);
    f->path = join(ck->dir, name);
    f->fid = H5I_INVALID_HID;
    f->map = NULL;
    if (!f->name || !f->path) {
        free(f->name);
        free(f->path);
        return fw_errf(e, "%s: out of memory", ck->root);
    }
    return ck->n_files++;
}

typedef struct visit_ctx {
    fw_ckpt *ck;
    fw_err *e;
    int rc;
    char path[1024];            /* the group being listed, "" or "model/layers/3/" */
} visit_ctx;

static herr_t visit_link(hid_t g, const char *name, const H5L_info_t *li, void *user);

/* A manual walk rather than H5Lvisit: each link is then read from its own group
 * (one name lookup, not a path from the root), which makes opening a 671B
 * checkpoint (~95k links) several times faster. */
static int visit_group(visit_ctx *x, hid_t g) {
    hsize_t idx = 0;
    if (H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, visit_link, x) < 0)
        return x->rc ? x->rc : fw_h5_errf(x->e, "%s: cannot list group '/%s'", x->ck->root, x->path);
    return FW_OK;
}

static int add_entry(visit_ctx *x, hid_t g, const char *name, size_t size) {
    fw_ckpt *ck = x->ck;
    char *buf = malloc(size ? size : 1);
    const char *fname, *obj;
    unsigned flags;
    if (!buf) return fw_errf(x->e, "%s: out of memory", ck->root);
    if (H5Lget_val(g, name, buf, size, H5P_DEFAULT) < 0 || H5Lunpack_elink_val(buf, size, &flags, &fname, &obj) < 0) {
        free(buf);
        return fw_h5_errf(x->e, "%s: cannot read the external link '/%s%s'", ck->root, x->path, name);
    }
    int fi = file_index(ck, fname, x->e);
    if (fi < 0) {
        free(buf);
        return FW_ERR;
    }
    if (ck->n == ck->cap) {
        int64_t cap = ck->cap ? 2 * ck->cap : 1024;
        ck_entry *t = realloc(ck->t, (size_t)cap * sizeof *t);
        if (!t) {
            free(buf);
            return fw_errf(x->e, "%s: out of memory", ck->root);
        }
        ck->t = t;
        ck->cap = cap;
    }
    ck_entry *t = &ck->t[ck->n];
    memset(t, 0, sizeof *t);
    size_t len = strlen(x->path) + strlen(name) + 1;
    t->name = malloc(len);
    t->obj = strdup(obj);
    t->file = fi;
    free(buf);
    if (!t->name || !t->obj) {
        free(t->name);
        free(t->obj);
        return fw_errf(x->e, "%s: out of memory", ck->root);
    }
    snprintf(t->name, len, "%s%s", x->path, name);
    for (char *p = t->name; *p; p++)   /* the path's '/' are the name's '.' */
        if (*p == '/') *p = '.';
    ck->n++;
    return FW_OK;
}

static herr_t visit_link(hid_t g, const char *name, const H5L_info_t *li, void *user) {
    visit_ctx *x = user;
    if (li->type == H5L_TYPE_EXTERNAL) {
        x->rc = add_entry(x, g, name, li->u.val_size);
        return x->rc ? -1 : 0;
    }
    if (li->type != H5L_TYPE_HARD) return 0;   /* soft links: not ours, ignored */
    size_t n = strlen(x->path);
    if (n + strlen(name) + 2 > sizeof x->path) {
        x->rc = fw_errf(x->e, "%s: group path '/%s%s' is too long", x->ck->root, x->path, name);
        return -1;
    }
    hid_t sub = H5Gopen2(g, name, H5P_DEFAULT);
    if (sub < 0) {
        x->rc = fw_h5_errf(x->e, "%s: '/%s%s' is not a group (tensors are external links)", x->ck->root, x->path,
                           name);
        return -1;
    }
    snprintf(x->path + n, sizeof x->path - n, "%s/", name);
    x->rc = visit_group(x, sub);
    x->path[n] = '\0';
    H5Gclose(sub);
    return x->rc ? -1 : 0;
}

/* format and format_version of a file of the checkpoint (root or data). */
static int check_format(hid_t fid, const char *path, fw_err *e) {
    char *fmt = fw_h5_get_str(fid, "format");
    if (!fmt || strcmp(fmt, FW_CKPT_FORMAT_NAME) != 0) {
        int rc = fw_errf(e, "%s: not a furrow checkpoint file (attribute 'format' is %s%s%s, expected '%s')",
                         path, fmt ? "'" : "", fmt ? fmt : "missing", fmt ? "'" : "", FW_CKPT_FORMAT_NAME);
        free(fmt);
        return rc;
    }
    free(fmt);
    int64_t v;
    if (fw_h5_get_i64(fid, "format_version", &v) != 0)
        return fw_errf(e, "%s: attribute 'format_version' is missing or not an integer", path);
    if (v != FW_CKPT_FORMAT_VERSION)
        return fw_errf(e, "%s: checkpoint format_version %lld, but this furrow reads format_version %d%s", path,
                       (long long)v, FW_CKPT_FORMAT_VERSION,
                       v > FW_CKPT_FORMAT_VERSION ? " (written by a newer furrow?)" : " (re-convert it)");
    return FW_OK;
}

static int dup_check(const fw_ckpt *ck, fw_err *e) {
    for (int64_t i = 1; i < ck->n; i++)
        if (!strcmp(ck->t[i - 1].name, ck->t[i].name))
            return fw_errf(e, "%s: tensor '%s' is linked twice", ck->root, ck->t[i].name);
    return FW_OK;
}

/* The root's record of every tensor's checksum, and the manifest checksum that
 * covers it with the config and the links: an edited config, a relinked tensor
 * or an edited record is refused here. */
static int check_manifest(fw_ckpt *ck, hid_t fid, const char *json, fw_err *e) {
    uint64_t *sums = malloc((size_t)(ck->n > 0 ? ck->n : 1) * sizeof *sums);
    fw_manifest_entry *m = malloc((size_t)(ck->n > 0 ? ck->n : 1) * sizeof *m);
    uint64_t want;
    int rc = FW_OK;
    if (!sums || !m) rc = fw_errf(e, "%s: out of memory", ck->root);
    else if (fw_h5_get_u64_array(fid, "tensor_checksums", sums, ck->n) != 0 ||
             fw_h5_get_u64(fid, "manifest_checksum", &want) != 0)
        rc = fw_errf(e, "%s: attribute 'tensor_checksums' (%lld values) or 'manifest_checksum' is missing or "
                        "malformed", ck->root, (long long)ck->n);
    for (int64_t i = 0; rc == FW_OK && i < ck->n; i++) {
        ck->t[i].sum = sums[i];
        m[i] = (fw_manifest_entry){ck->t[i].name, ck->files[ck->t[i].file].name, ck->t[i].obj, sums[i]};
    }
    if (rc == FW_OK && fw_manifest_checksum(json, m, ck->n) != want)
        rc = fw_errf(e, "%s: its config or tensor table was changed after conversion (manifest checksum "
                        "mismatch): re-convert the checkpoint", ck->root);
    free(sums);
    free(m);
    return rc;
}

static int read_root(fw_ckpt *ck, fw_err *e) {
    if (fw_check_regular(ck->root, e)) return FW_ERR;   /* HDF5 would block on a FIFO */
    hid_t fid = open_ro(ck->root);
    if (fid < 0) return fw_h5_errf(e, "%s: cannot open", ck->root);
    int rc = check_format(fid, ck->root, e);
    char *json = NULL;
    if (rc == FW_OK && !(json = fw_h5_get_str(fid, "config_json")))
        rc = fw_errf(e, "%s: attribute 'config_json' is missing", ck->root);
    if (rc == FW_OK) {
        char src[4200];
        snprintf(src, sizeof src, "%s (config_json)", ck->root);
        rc = fw_config_parse(&ck->cfg, json, src, e);
    }
    if (rc == FW_OK && fw_h5_get_u64(fid, "checkpoint_id", &ck->id) != 0)
        rc = fw_errf(e, "%s: attribute 'checkpoint_id' is missing", ck->root);
    if (rc == FW_OK) {
        ck->source = fw_h5_get_str(fid, "source");
        visit_ctx x = {.ck = ck, .e = e};
        rc = visit_group(&x, fid);
    }
    int64_t count;
    if (rc == FW_OK && fw_h5_get_i64(fid, "tensor_count", &count) == 0 && count != ck->n)
        rc = fw_errf(e, "%s: links to %lld tensors, but its tensor_count says %lld", ck->root,
                     (long long)ck->n, (long long)count);
    if (rc == FW_OK) {
        if (ck->n > 0) qsort(ck->t, (size_t)ck->n, sizeof *ck->t, entry_cmp); /* no links: t is NULL */
        rc = dup_check(ck, e);
    }
    if (rc == FW_OK) rc = check_manifest(ck, fid, json, e);
    free(json);
    H5Fclose(fid);
    return rc;
}

int fw_ckpt_open_dir(fw_ckpt **out, const char *dir, fw_err *e) {
    *out = NULL;
    fw_h5_quiet();
    fw_ckpt *ck = calloc(1, sizeof *ck);
    if (!ck || !(ck->dir = strdup(dir)) || !(ck->root = join(dir, FW_CKPT_ROOT))) {
        fw_ckpt_close(ck);
        return fw_errf(e, "%s: out of memory", dir);
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fw_ckpt_close(ck);
        return fw_errf(e, "%s: not a directory (a furrow checkpoint is a directory holding %s)", dir,
                       FW_CKPT_ROOT);
    }
    if (stat(ck->root, &st) != 0) {
        int rc = fw_errf(e, "%s: not a furrow checkpoint (no %s; convert one with `furrow convert`)", dir,
                         FW_CKPT_ROOT);
        fw_ckpt_close(ck);
        return rc;
    }
    ck->verify = true;
    if (read_root(ck, e) != FW_OK) {
        fw_ckpt_close(ck);
        return FW_ERR;
    }
    *out = ck;
    return FW_OK;
}

int fw_ckpt_open_generated(fw_ckpt **out, const char *label, fw_config *cfg, const char *const *names,
                           const fw_tensor_info *infos, int64_t n, fw_ckpt_gen_fn gen, void *user, fw_err *e) {
    *out = NULL;
    fw_ckpt *ck = calloc(1, sizeof *ck);
    if (!ck || !(ck->t = calloc((size_t)(n > 0 ? n : 1), sizeof *ck->t)) || !(ck->dir = strdup(label)) ||
        !(ck->source = strdup(label))) {
        fw_ckpt_close(ck);
        return fw_errf(e, "out of memory");
    }
    ck->cfg = *cfg;
    cfg->json = NULL; /* owned by the checkpoint now */
    ck->gen = gen;
    ck->gen_user = user;
    for (int64_t i = 0; i < n; i++, ck->n++) {
        ck->t[i] = (ck_entry){.name = strdup(names[i]), .have_info = true, .info = infos[i]};
        if (!ck->t[i].name) {
            fw_ckpt_close(ck);
            return fw_errf(e, "out of memory");
        }
    }
    qsort(ck->t, (size_t)ck->n, sizeof *ck->t, entry_cmp);
    *out = ck;
    return FW_OK;
}

void fw_ckpt_close(fw_ckpt *ck) {
    if (!ck) return;
    if (ck->gen) ck->gen(ck->gen_user, NULL, NULL, NULL, NULL, NULL, NULL); /* release */
    for (int i = 0; i < ck->n_files; i++) {
        if (ck->files[i].fid >= 0) H5Fclose(ck->files[i].fid);
        fw_ckpt_mapping_release(ck->files[i].map);
        free(ck->files[i].name);
        free(ck->files[i].path);
    }
    for (int64_t i = 0; i < ck->n; i++) {
        free(ck->t[i].name);
        free(ck->t[i].obj);
    }
    free(ck->files);
    free(ck->t);
    fw_config_free(&ck->cfg);
    free(ck->source);
    free(ck->dir);
    free(ck->root);
    free(ck);
}

const fw_config *fw_ckpt_config(const fw_ckpt *ck) { return &ck->cfg; }

void fw_ckpt_set_verify(fw_ckpt *ck, bool on) { ck->verify = on && !ck->gen; }

uint64_t fw_ckpt_bytes_verified(const fw_ckpt *ck) { return ck->bytes_verified; }

uint64_t fw_ckpt_bytes_mapped(const fw_ckpt *ck) { return ck->bytes_mapped; }

const char *fw_ckpt_source(const fw_ckpt *ck) { return ck->source ? ck->source : ""; }

bool fw_ckpt_has(const fw_ckpt *ck, const char *name) { return find(ck, name) != NULL; }

/* The data file's handle, opened (and its format checked) on first use. */
static hid_t file_get(const fw_ckpt *ck, int i, fw_err *e) {
    ck_file *f = &ck->files[i];
    if (f->fid >= 0) return f->fid;
    if (fw_check_regular(f->path, e)) return H5I_INVALID_HID;
    hid_t fid = open_ro(f->path);
    if (fid < 0) {
        fw_h5_errf(e, "%s: cannot open data file %s", ck->dir, f->path);
        return H5I_INVALID_HID;
    }
    uint64_t id = 0;
    if (check_format(fid, f->path, e) != FW_OK) {
        H5Fclose(fid);
        return H5I_INVALID_HID;
    }
    if (fw_h5_get_u64(fid, "checkpoint_id", &id) != 0 || id != ck->id) {
        fw_errf(e, "%s belongs to another checkpoint than %s (checkpoint_id %016llx, the root's is %016llx): "
                   "files of different conversions are mixed", f->path, ck->root, (unsigned long long)id,
                (unsigned long long)ck->id);
        H5Fclose(fid);
        return H5I_INVALID_HID;
    }
    return f->fid = fid;
}

static hid_t open_dataset(const fw_ckpt *ck, const ck_entry *t, fw_err *e) {
    hid_t fid = file_get(ck, t->file, e);
    if (fid < 0) {
        fw_err_prefix(e, "tensor '%s'", t->name);
        return fid;
    }
    hid_t d = H5Dopen2(fid, t->obj, H5P_DEFAULT);
    if (d < 0) fw_h5_errf(e, "%s: tensor '%s': cannot open dataset %s", ck->files[t->file].path, t->name, t->obj);
    return d;
}

static int load_info(const fw_ckpt *ck, ck_entry *t, fw_err *e) {
    if (t->have_info) return FW_OK;
    hid_t d = open_dataset(ck, t, e);
    if (d < 0) return FW_ERR;
    const char *path = ck->files[t->file].path;
    int rc = FW_OK;
    char *dt = fw_h5_get_str(d, "dtype");
    hid_t type = H5Dget_type(d), space = H5Dget_space(d);
    int nd = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    fw_tensor_info in = {.dtype = fw_dtype_from_name(dt)};
    hsize_t dims[H5S_MAX_RANK];
    if (!dt) {
        rc = fw_errf(e, "%s: tensor '%s' has no 'dtype' attribute", path, t->name);
    } else if (in.dtype == FW_DTYPE_INVALID) {
        rc = fw_errf(e, "%s: tensor '%s' has an unknown dtype '%s'", path, t->name, dt);
    } else if (type < 0 || H5Tget_size(type) != fw_dtype_size(in.dtype)) {
        rc = fw_errf(e, "%s: tensor '%s': dtype %s but its HDF5 type is %zu bytes per element", path, t->name,
                     dt, type < 0 ? (size_t)0 : H5Tget_size(type));
    } else if (nd < 1 || nd > 8 || H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        rc = fw_errf(e, "%s: tensor '%s' has %d dimensions (furrow handles 1 to 8)", path, t->name, nd);
    } else {
        in.ndim = nd;
        for (int i = 0; i < nd; i++) in.shape[i] = (int64_t)dims[i];
        char *q = H5Aexists(d, "quantization") > 0 ? fw_h5_get_str(d, "quantization") : NULL;
        if (q) snprintf(in.quant, sizeof in.quant, "%s", q);
        free(q);
        t->info = in;
        t->have_info = true;
    }
    free(dt);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    H5Dclose(d);
    return rc;
}

static ck_entry *lookup(const fw_ckpt *ck, const char *name, fw_err *e) {
    ck_entry *t = find(ck, name);
    if (!t) {
        fw_errf(e, "%s: checkpoint has no tensor '%s'", ck->dir, name);
        return NULL;
    }
    return load_info(ck, t, e) == FW_OK ? t : NULL;
}

int fw_ckpt_info(const fw_ckpt *ck, const char *name, fw_tensor_info *info, fw_err *e) {
    ck_entry *t = lookup(ck, name, e);
    if (!t) return FW_ERR;
    *info = t->info;
    return FW_OK;
}

static void format_shape(char *buf, size_t size, int nd, const int64_t *v) {
    int n = snprintf(buf, size, "[");
    for (int i = 0; i < nd && n > 0 && (size_t)n < size; i++)
        n += snprintf(buf + n, size - (size_t)n, "%s%lld", i ? ", " : "", (long long)v[i]);
    if (n > 0 && (size_t)n < size) snprintf(buf + n, size - (size_t)n, "]");
}

/* Reads [start, start + count) of dataset d (dims of the entry) into dst with the
 * stored type as memory type: raw bytes, no conversion. */
static int read_slab(const fw_ckpt *ck, const ck_entry *t, hid_t d, const hsize_t *start, const hsize_t *count,
                     void *dst, fw_err *e) {
    int nd = t->info.ndim;
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(nd, count, NULL), type = H5Dget_type(d);
    int rc = FW_OK;
    if (fs < 0 || ms < 0 || type < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread(d, type, ms, fs, H5P_DEFAULT, dst) < 0)
        rc = fw_h5_errf(e, "%s: tensor '%s': read failed", ck->files[t->file].path, t->name);
    if (type >= 0) H5Tclose(type);
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return rc;
}

/* The dataset's own checksum attribute must be the one the root records: a data
 * file of another conversion, its checkpoint_id patched, is caught here. */
static int check_identity(const fw_ckpt *ck, const ck_entry *t, hid_t d, fw_err *e) {
    uint64_t got;
    const char *path = ck->files[t->file].path;
    if (fw_h5_get_u64(d, "checksum", &got) != 0)
        return fw_errf(e, "%s: tensor '%s' has no 'checksum' attribute", path, t->name);
    if (got != t->sum)
        return fw_errf(e, "%s: tensor '%s' is not the one %s was written with (checksum %016llx, the root "
                          "records %016llx): a data file of another conversion?", path, t->name, ck->root,
                       (unsigned long long)got, (unsigned long long)t->sum);
    return FW_OK;
}

/* The chunk shape of a chunked dataset and its chunk checksums (malloc'd);
 * *sums = NULL for a contiguous (empty) one. */
static int chunk_sums_of(const fw_ckpt *ck, const ck_entry *t, hid_t d, int64_t *chunk, uint64_t **sums,
                         fw_err *e) {
    const char *path = ck->files[t->file].path;
    *sums = NULL;
    hid_t dcpl = H5Dget_create_plist(d);
    hsize_t c[8];
    bool chunked = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, 8, c) == t->info.ndim;
    if (dcpl >= 0) H5Pclose(dcpl);
    if (!chunked) return FW_OK;
    for (int i = 0; i < t->info.ndim; i++) chunk[i] = (int64_t)c[i];
    int64_t n = fw_chunk_count(t->info.ndim, t->info.shape, chunk);
    if (!(*sums = malloc((size_t)(n > 0 ? n : 1) * sizeof **sums)))
        return fw_errf(e, "%s: tensor '%s': out of memory", path, t->name);
    if (fw_h5_get_u64_array(d, "chunk_checksums", *sums, n) != 0) {
        free(*sums);
        *sums = NULL;
        return fw_errf(e, "%s: tensor '%s': attribute 'chunk_checksums' (%lld values) is missing or malformed",
                       path, t->name, (long long)n);
    }
    return FW_OK;
}

static int corrupt(const fw_ckpt *ck, const ck_entry *t, const int64_t *chunk, int64_t k, fw_err *e) {
    /* The chunk's first element, for the message: grid index -> coordinates. */
    int nd = t->info.ndim;
    int64_t at[8];
    for (int i = nd - 1; i >= 0; i--) {
        int64_t g = (t->info.shape[i] + chunk[i] - 1) / chunk[i];
        at[i] = k % g * chunk[i];
        k /= g;
    }
    char where[160];
    format_shape(where, sizeof where, nd, at);
    return fw_errf(e, "%s: tensor '%s' is corrupt: its chunk at %s does not match the checksum stored at "
                      "conversion (the file was damaged since: restore or re-convert it)",
                   ck->files[t->file].path, t->name, where);
}

/* Checks the whole chunks inside the hyperslab [start, start + count) that buf
 * holds; adds the bytes checked to *checked. */
static int check_chunks(const fw_ckpt *ck, const ck_entry *t, const int64_t *chunk, const uint64_t *sums,
                        const int64_t *start, const int64_t *count, const void *buf, uint64_t *checked, fw_err *e) {
    uint64_t n;
    int64_t bad = fw_chunk_check(buf, t->info.ndim, t->info.shape, chunk, fw_dtype_size(t->info.dtype), start, count,
                                 sums, &n);
    *checked += n;
    return bad >= 0 ? corrupt(ck, t, chunk, bad, e) : FW_OK;
}

/* The hyperslab (start, count; NULL: all) checked against the tensor's shape;
 * *empty when it holds no element. */
static int slab_of(const fw_ckpt *ck, const ck_entry *t, const int64_t *start, const int64_t *count, hsize_t *s,
                   hsize_t *c, bool *empty, fw_err *e) {
    const fw_tensor_info *in = &t->info;
    *empty = false;
    for (int i = 0; i < in->ndim; i++) {
        int64_t a = start ? start[i] : 0, n = count ? count[i] : in->shape[i];
        if (a < 0 || n < 0 || a > in->shape[i] || n > in->shape[i] - a) {
            char shape[160];
            format_shape(shape, sizeof shape, in->ndim, in->shape);
            return fw_errf(e, "%s: tensor '%s' %s: requested [%lld, %lld) in dimension %d is out of range", ck->dir,
                           t->name, shape, (long long)a, (long long)a + (long long)n, i);
        }
        s[i] = (hsize_t)a;
        c[i] = (hsize_t)n;
        *empty |= n == 0;
    }
    return FW_OK;
}

/* The named tensor, with the slab of start/count in s and c; NULL after an error. */
static ck_entry *lookup_slab(fw_ckpt *ck, const char *name, const int64_t *start, const int64_t *count, hsize_t *s,
                             hsize_t *c, bool *empty, fw_err *e) {
    ck_entry *t = lookup(ck, name, e);
    if (!t || slab_of(ck, t, start, count, s, c, empty, e)) return NULL;
    return t;
}

int fw_ckpt_read(fw_ckpt *ck, const char *name, const int64_t *start, const int64_t *count, void *dst,
                 fw_err *e) {
    hsize_t s[8], c[8];
    bool empty;
    ck_entry *t = lookup_slab(ck, name, start, count, s, c, &empty, e);
    if (!t) return FW_ERR;
    const fw_tensor_info *in = &t->info;
    if (empty) return FW_OK;
    if (ck->gen) {
        int64_t a[8], c8[8];
        for (int i = 0; i < in->ndim; i++) a[i] = (int64_t)s[i], c8[i] = (int64_t)c[i];
        return ck->gen(ck->gen_user, name, in, a, c8, dst, e);
    }
    hid_t d = open_dataset(ck, t, e);
    if (d < 0) return FW_ERR;
    int64_t chunk[8], a[8], n[8];
    uint64_t *sums = NULL;
    int rc = check_identity(ck, t, d, e);
    if (rc == FW_OK && ck->verify) rc = chunk_sums_of(ck, t, d, chunk, &sums, e);
    if (rc == FW_OK) rc = read_slab(ck, t, d, s, c, dst, e);
    H5Dclose(d);
    if (rc == FW_OK && sums) {
        for (int i = 0; i < in->ndim; i++) a[i] = (int64_t)s[i], n[i] = (int64_t)c[i];
        rc = check_chunks(ck, t, chunk, sums, a, n, dst, &ck->bytes_verified, e);
    }
    free(sums);
    return rc;
}

/* The data file's mapping, made on first use. */
static fw_ckpt_mapping *mapping_get(fw_ckpt *ck, int i, fw_err *e) {
    ck_file *f = &ck->files[i];
    if (!f->map && fw_mapping_open(&f->map, f->path, e)) return NULL;
    return f->map;
}

/* Where the slice lies in the mapped file: FW_CKPT_NOT_MAPPED with *why when it
 * is not one aligned run. The dataset's whole extent must lie inside the file. */
static int locate(fw_ckpt *ck, const ck_entry *t, hid_t d, const hsize_t *s, const hsize_t *c,
                  const unsigned char **p, const char **why, fw_err *e) {
    const fw_tensor_info *in = &t->info;
    const char *path = ck->files[t->file].path;
    for (int i = 1; i < in->ndim; i++)
        if (s[i] != 0 || (int64_t)c[i] != in->shape[i]) {
            *why = "a slice of columns is not one run of the file";
            return FW_CKPT_NOT_MAPPED;
        }
    uint64_t row = fw_dtype_size(in->dtype), off;
    for (int i = 1; i < in->ndim; i++) row *= (uint64_t)in->shape[i];
    int r = fw_h5_data_run(d, in->ndim, in->shape, fw_dtype_size(in->dtype), &off, why);
    if (r < 0) return fw_h5_errf(e, "%s: tensor '%s': cannot read its storage layout", path, t->name);
    if (r > 0) return FW_CKPT_NOT_MAPPED;
    fw_ckpt_mapping *m = mapping_get(ck, t->file, e);
    if (!m) return FW_ERR;
    const uint64_t total = row * (uint64_t)in->shape[0];
    if (off > m->size || total > m->size - off)
        return fw_errf(e, "%s: tensor '%s': its data [%llu, %llu) lies past the end of the file (%zu bytes): the "
                          "file is truncated (restore or re-convert it)", path, t->name, (unsigned long long)off,
                       (unsigned long long)(off + total), m->size);
    *p = m->base + off + row * s[0];
    if ((uintptr_t)*p % 64) {
        *why = "its data is not 64-byte aligned in the file";
        return FW_CKPT_NOT_MAPPED;
    }
    return FW_OK;
}

int fw_ckpt_map(fw_ckpt *ck, const char *name, const int64_t *start, const int64_t *count, const void **data,
                fw_ckpt_mapping **hold, const char **why, fw_err *e) {
    *data = NULL;
    *hold = NULL;
    *why = "";
    hsize_t s[8], c[8];
    bool empty;
    ck_entry *t = lookup_slab(ck, name, start, count, s, c, &empty, e);
    if (!t) return FW_ERR;
    const fw_tensor_info *in = &t->info;
    if (ck->gen || empty) {
        *why = ck->gen ? "a generated checkpoint has no file" : "empty";
        return FW_CKPT_NOT_MAPPED;
    }
    hid_t d = open_dataset(ck, t, e);
    if (d < 0) return FW_ERR;
    const unsigned char *p = NULL;
    int64_t chunk[8], a[8], n[8];
    uint64_t *sums = NULL, bytes = fw_dtype_size(in->dtype);
    for (int i = 0; i < in->ndim; i++) bytes *= c[i], a[i] = (int64_t)s[i], n[i] = (int64_t)c[i];
    int rc = check_identity(ck, t, d, e);
    if (rc == FW_OK) rc = locate(ck, t, d, s, c, &p, why, e);
    if (rc == FW_OK && ck->verify) rc = chunk_sums_of(ck, t, d, chunk, &sums, e);
    H5Dclose(d);
    if (rc != FW_OK) {
        free(sums);
        return rc;
    }
    /* Read ahead now: the first touch (the checksums, or the first forward)
     * then finds the pages coming in. */
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), lo = (uintptr_t)p / pg * pg;
    madvise((void *)lo, (size_t)((uintptr_t)p + bytes - lo), MADV_WILLNEED);
    if (sums) rc = check_chunks(ck, t, chunk, sums, a, n, p, &ck->bytes_verified, e);
    free(sums);
    if (rc != FW_OK) return rc;
    *data = p;
    *hold = ck->files[t->file].map;
    (*hold)->refs++;
    ck->bytes_mapped += bytes;
    return FW_OK;
}

int fw_ckpt_foreach(fw_ckpt *ck, fw_ckpt_visit_fn fn, void *user, fw_err *e) {
    for (int64_t i = 0; i < ck->n; i++) {
        ck_entry *t = &ck->t[i];
        if (load_info(ck, t, e) != FW_OK) return FW_ERR;
        int rc = fn(user, t->name, &t->info, ck->gen ? "(generated on read)" : ck->files[t->file].name);
        if (rc) return rc;
    }
    return FW_OK;
}

/* Streams one tensor through XXH3 in blocks of whole rows of about 64 MiB, so a
 * 2 GB embedding does not need 2 GB of memory. */
static int verify_one(fw_ckpt *ck, ck_entry *t, void **buf, size_t *buf_size, XXH3_state_t *st, fw_err *e) {
    if (load_info(ck, t, e) != FW_OK) return FW_ERR;
    hid_t d = open_dataset(ck, t, e);
    if (d < 0) return FW_ERR;
    const char *path = ck->files[t->file].path;
    const fw_tensor_info *in = &t->info;
    int64_t chunk[8];
    uint64_t *sums = NULL;
    int rc = check_identity(ck, t, d, e);
    if (rc == FW_OK) rc = chunk_sums_of(ck, t, d, chunk, &sums, e);
    if (rc != FW_OK) {
        H5Dclose(d);
        return rc;
    }
    uint64_t want = t->sum;
    size_t row = fw_dtype_size(in->dtype);
    for (int i = 1; i < in->ndim; i++) row *= (size_t)in->shape[i];
    int64_t rows = in->shape[0];
    /* Bands of whole chunk rows (so every chunk is checked), about 64 MiB. */
    int64_t unit = sums ? chunk[0] : 1;
    int64_t block = row ? (int64_t)((64u << 20) / row) / unit * unit : rows;
    if (block < unit) block = unit;
    if (block > rows) block = rows;
    size_t need = (size_t)block * row;
    if (need > *buf_size) {
        void *p = realloc(*buf, need);
        if (!p) {
            free(sums);
            H5Dclose(d);
            return fw_errf(e, "%s: tensor '%s': out of memory (%zu bytes)", path, t->name, need);
        }
        *buf = p;
        *buf_size = need;
    }
    XXH3_64bits_reset(st);
    for (int64_t r = 0; r < rows && rc == FW_OK && row; r += block) {
        hsize_t s[8] = {0}, c[8];
        s[0] = (hsize_t)r;
        c[0] = (hsize_t)(rows - r < block ? rows - r : block);
        for (int i = 1; i < in->ndim; i++) c[i] = (hsize_t)in->shape[i];
        rc = read_slab(ck, t, d, s, c, *buf, e);
        if (rc == FW_OK) XXH3_64bits_update(st, *buf, (size_t)c[0] * row);
        if (rc == FW_OK && sums) {
            int64_t a[8] = {r}, n[8];
            uint64_t checked = 0;
            for (int i = 0; i < in->ndim; i++) n[i] = (int64_t)c[i];
            rc = check_chunks(ck, t, chunk, sums, a, n, *buf, &checked, e);
        }
    }
    free(sums);
    H5Dclose(d);
    if (rc != FW_OK) return rc;
    uint64_t got = XXH3_64bits_digest(st);
    if (got != want)
        return fw_errf(e, "%s: tensor '%s' is corrupt: checksum %016llx, stored %016llx", path, t->name,
                       (unsigned long long)got, (unsigned long long)want);
    return FW_OK;
}

int fw_ckpt_verify(fw_ckpt *ck, fw_err *e) {
    if (ck->gen) return fw_errf(e, "%s: a generated checkpoint has no stored checksums to verify", ck->dir);
    XXH3_state_t *st = XXH3_createState();
    if (!st) return fw_errf(e, "%s: out of memory", ck->dir);
    void *buf = NULL;
    size_t size = 0;
    int rc = FW_OK;
    for (int64_t i = 0; i < ck->n && rc == FW_OK; i++) rc = verify_one(ck, &ck->t[i], &buf, &size, st, e);
    free(buf);
    XXH3_freeState(st);
    return rc;
}
