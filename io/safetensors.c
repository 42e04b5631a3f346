/* safetensors reader. The header is untrusted input: its length is checked
 * against the file before it is parsed, and every tensor's dtype, shape and
 * offsets are checked (with overflow-checked arithmetic) before a pointer into
 * the mapping is formed. Layout:
 *
 *   [0, 8)          u64 little-endian N, the header length
 *   [8, 8+N)        JSON header (may be padded with trailing spaces)
 *   [8+N, size)     data; data_offsets are relative to 8+N
 */
#define _POSIX_C_SOURCE 200809L  /* strdup, mmap, truncate */
#include "io/safetensors.h"
#include "io/base/fileutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

/* The safetensors format caps headers at 100 MB; beyond that it is corrupt. */
#define ST_HEADER_MAX (100ull * 1000 * 1000)
/* An index of the 671B model is ~10 MB; this leaves room and bounds a bad file. */
#define ST_INDEX_MAX (256u << 20)
#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"

static uint64_t read_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* A JSON integer >= 0 (reals such as 4.0 are not accepted in a tensor header). */
static bool json_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static int parse_metadata(const char *path, json_t *meta, fw_err *e) {
    if (!json_is_object(meta)) return fw_errf(e, "%s: __metadata__ must be an object", path);
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v)) return fw_errf(e, "%s: __metadata__ key '%s' must be a string", path, k);
    }
    return FW_OK;
}

/* Validates one header entry and fills t (except name). data_size is the length
 * of the data section; offsets are relative to its start. */
static int parse_entry(const char *path, const char *name, json_t *ent, uint64_t data_size, fw_st_tensor *t,
                       uint64_t *begin_out, fw_err *e) {
    if (!json_is_object(ent)) return fw_errf(e, "%s: tensor '%s': entry is not a JSON object", path, name);

    json_t *jd = json_object_get(ent, "dtype");
    if (!json_is_string(jd)) return fw_errf(e, "%s: tensor '%s': missing or non-string dtype", path, name);
    t->dtype = fw_dtype_from_name(json_string_value(jd));
    if (t->dtype == FW_DTYPE_INVALID)
        return fw_errf(e, "%s: tensor '%s': unknown dtype '%s'", path, name, json_string_value(jd));

    json_t *js = json_object_get(ent, "shape");
    if (!json_is_array(js)) return fw_errf(e, "%s: tensor '%s': missing or non-array shape", path, name);
    size_t nd = json_array_size(js);
    if (nd > FW_MAX_DIMS)
        return fw_errf(e, "%s: tensor '%s': shape has %zu dimensions (at most %d)", path, name, nd, FW_MAX_DIMS);
    t->ndim = (int)nd;
    unsigned long long nbytes = fw_dtype_size(t->dtype);
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (!json_u64(json_array_get(js, i), &d))
            return fw_errf(e, "%s: tensor '%s': shape[%zu] is not a non-negative integer", path, name, i);
        t->shape[i] = (int64_t)d;  /* d <= INT64_MAX: it came from a non-negative json_int_t */
        if (fw_mul_u64(nbytes, d, &nbytes) != 0)
            return fw_errf(e, "%s: tensor '%s': shape's byte size overflows 64 bits", path, name);
    }

    json_t *jo = json_object_get(ent, "data_offsets");
    uint64_t b, en;
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_u64(json_array_get(jo, 0), &b) ||
        !json_u64(json_array_get(jo, 1), &en))
        return fw_errf(e, "%s: tensor '%s': data_offsets must be [begin, end] with non-negative integers", path,
                       name);
    if (b > en)
        return fw_errf(e, "%s: tensor '%s': data_offsets [%llu, %llu] begin is after end", path, name,
                       (unsigned long long)b, (unsigned long long)en);
    if (en > data_size)
        return fw_errf(e, "%s: tensor '%s': data_offsets [%llu, %llu] end beyond the data section (%llu bytes)",
                       path, name, (unsigned long long)b, (unsigned long long)en, (unsigned long long)data_size);
    if (en - b != nbytes)
        return fw_errf(e,
                       "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but %s shape needs %llu",
                       path, name, (unsigned long long)b, (unsigned long long)en, (unsigned long long)(en - b),
                       fw_dtype_name(t->dtype), nbytes);
    t->nbytes = nbytes;
    *begin_out = b;
    return FW_OK;
}

typedef struct span {
    uint64_t begin, end;
    int idx;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int tensor_cmp(const void *a, const void *b) {
    return strcmp(((const fw_st_tensor *)a)->name, ((const fw_st_tensor *)b)->name);
}

/* No two non-empty tensors may share a byte. */
static int check_overlaps(fw_st_file *f, span *sp, int n, fw_err *e) {
    qsort(sp, (size_t)n, sizeof *sp, span_cmp);
    int prev = -1;
    for (int i = 0; i < n; i++) {
        if (sp[i].begin == sp[i].end) continue;
        if (prev >= 0 && sp[i].begin < sp[prev].end)
            return fw_errf(e, "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' [%llu, %llu]",
                           f->path, f->tensors[sp[i].idx].name, (unsigned long long)sp[i].begin,
                           (unsigned long long)sp[i].end, f->tensors[sp[prev].idx].name,
                           (unsigned long long)sp[prev].begin, (unsigned long long)sp[prev].end);
        prev = i;
    }
    return FW_OK;
}

static int parse_header(fw_st_file *f, const char *hdr, uint64_t hlen, fw_err *e) {
    json_error_t je;
    /* Duplicate names in one header would make lookups ambiguous: reject them. */
    json_t *root = json_loadb(hdr, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return fw_errf(e, "%s: header is not valid JSON (line %d, column %d): %s", f->path, je.line, je.column,
                       je.text);
    int rc = FW_OK;
    span *sp = NULL;
    if (!json_is_object(root)) {
        rc = fw_errf(e, "%s: header is not a JSON object", f->path);
        goto done;
    }
    size_t n = json_object_size(root);
    json_t *meta = json_object_get(root, "__metadata__");
    if (meta) {
        if ((rc = parse_metadata(f->path, meta, e)) != FW_OK) goto done;
        n--;
    }
    if (n > INT_MAX) {
        rc = fw_errf(e, "%s: too many tensors (%zu)", f->path, n);
        goto done;
    }
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    sp = calloc(n ? n : 1, sizeof *sp);
    if (!f->tensors || !sp) {
        rc = fw_errf(e, "%s: out of memory", f->path);
        goto done;
    }
    uint64_t data_off = 8 + hlen, data_size = f->size - data_off;
    const unsigned char *data = (const unsigned char *)f->map + data_off;
    const char *name;
    json_t *ent;
    json_object_foreach(root, name, ent) {
        if (strcmp(name, "__metadata__") == 0) continue;
        fw_st_tensor *t = &f->tensors[f->n_tensors];
        uint64_t begin = 0;
        if ((rc = parse_entry(f->path, name, ent, data_size, t, &begin, e)) != FW_OK) goto done;
        if (!(t->name = strdup(name))) {
            rc = fw_errf(e, "%s: out of memory", f->path);
            goto done;
        }
        t->data = data + begin;
        sp[f->n_tensors] = (span){begin, begin + t->nbytes, f->n_tensors};
        f->n_tensors++;
    }
    if ((rc = check_overlaps(f, sp, f->n_tensors, e)) != FW_OK) goto done;
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, tensor_cmp);
done:
    free(sp);
    json_decref(root);
    return rc;
}

/* The length prefix and the header of the image f->map[0, f->size). */
static int parse_image(fw_st_file *f, fw_err *e) {
    if (f->size < 8)
        return fw_errf(e, "%s: file is %llu bytes, too short for the 8-byte header length", f->path,
                       (unsigned long long)f->size);
    uint64_t hlen = read_le64(f->map);
    if (hlen > f->size - 8)
        return fw_errf(e, "%s: header length %llu is larger than the file (%llu bytes); truncated or not safetensors",
                       f->path, (unsigned long long)hlen, (unsigned long long)f->size);
    if (hlen > ST_HEADER_MAX)
        return fw_errf(e, "%s: header length %llu is over the 100 MB limit", f->path, (unsigned long long)hlen);
    return parse_header(f, (const char *)f->map + 8, hlen, e);
}

int fw_st_open(fw_st_file *f, const char *path, fw_err *e) {
    memset(f, 0, sizeof *f);
    if (!(f->path = strdup(path))) return fw_errf(e, "%s: out of memory", path);
    int fd;
    if (fw_open_regular(path, &fd, &f->size, e)) goto fail;
    if (f->size > (uint64_t)SIZE_MAX) {
        fw_errf(e, "%s: file too large to map", path);
        close(fd);
        goto fail;
    }
    if (f->size >= 8) {  /* mmap refuses 0 bytes; parse_image names a short file */
        void *m = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            fw_errf(e, "%s: cannot map %llu bytes: %s", path, (unsigned long long)f->size, strerror(errno));
            close(fd);
            goto fail;
        }
        f->map = m;
        f->mapped = true;
    }
    close(fd);  /* the mapping keeps the file */
    if (parse_image(f, e) != FW_OK) goto fail;
    return FW_OK;
fail:
    fw_st_close(f);
    return FW_ERR;
}

int fw_st_open_mem(fw_st_file *f, const void *buf, uint64_t size, const char *name, fw_err *e) {
    memset(f, 0, sizeof *f);
    if (!(f->path = strdup(name))) return fw_errf(e, "%s: out of memory", name);
    f->map = (void *)buf;  /* borrowed, never written */
    f->size = size;
    if (parse_image(f, e) != FW_OK) {
        fw_st_close(f);
        return FW_ERR;
    }
    return FW_OK;
}

void fw_st_close(fw_st_file *f) {
    if (!f) return;
    if (f->mapped) munmap(f->map, (size_t)f->size);
    for (int i = 0; f->tensors && i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const fw_st_tensor *fw_st_find(const fw_st_file *f, const char *name) {
    if (!f || !f->tensors || !name) return NULL;
    fw_st_tensor key = {.name = (char *)name};
    return bsearch(&key, f->tensors, (size_t)f->n_tensors, sizeof key, tensor_cmp);
}

/* ---- directories ---- */

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (a && dir[a - 1] != '/') p[n++] = '/';
    memcpy(p + n, name, b + 1);
    return p;
}

static bool path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Reads and parses a JSON file of at most max bytes. */
static json_t *load_json_file(const char *path, size_t max, fw_err *e) {
    char *buf;
    size_t n;
    if (fw_read_file(path, max, &buf, &n, e)) return NULL;
    json_error_t je;
    json_t *root = json_loadb(buf, n, 0, &je);
    if (!root) fw_errf(e, "%s: invalid JSON (line %d, column %d): %s", path, je.line, je.column, je.text);
    free(buf);
    return root;
}

/* A shard name from the index must be a plain file name in the directory. */
static bool shard_name_ok(const char *s) {
    return s[0] != '\0' && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static int strptr_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int tensorptr_cmp(const void *a, const void *b) {
    return strcmp((*(const fw_st_tensor *const *)a)->name, (*(const fw_st_tensor *const *)b)->name);
}

/* Opens every distinct shard named in weight_map, then checks each mapped tensor
 * is where the map says. */
static int open_indexed(fw_st_dir *d, const char *ipath, fw_err *e) {
    json_t *root = load_json_file(ipath, ST_INDEX_MAX, e);
    if (!root) return FW_ERR;
    int rc = FW_OK;
    const char **names = NULL;
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(root)) {
        rc = fw_errf(e, "%s: not a JSON object", ipath);
        goto done;
    }
    if (!json_is_object(wm)) {
        rc = fw_errf(e, "%s: missing or non-object weight_map", ipath);
        goto done;
    }
    size_t nmap = json_object_size(wm);
    if (nmap == 0) {
        rc = fw_errf(e, "%s: weight_map is empty", ipath);
        goto done;
    }
    names = malloc(nmap * sizeof *names);
    if (!names) {
        rc = fw_errf(e, "%s: out of memory", ipath);
        goto done;
    }
    size_t k = 0;
    const char *tname;
    json_t *v;
    json_object_foreach(wm, tname, v) {
        if (!json_is_string(v) || !shard_name_ok(json_string_value(v))) {
            rc = fw_errf(e, "%s: weight_map entry for tensor '%s' is not a file name in the directory", ipath,
                         tname);
            goto done;
        }
        names[k++] = json_string_value(v);
    }
    /* Distinct shard names, sorted so that files[] has a stable order. */
    qsort(names, nmap, sizeof *names, strptr_cmp);
    size_t nu = 0;
    for (size_t i = 0; i < nmap; i++)
        if (nu == 0 || strcmp(names[i], names[nu - 1]) != 0) names[nu++] = names[i];
    if (nu > INT_MAX) {
        rc = fw_errf(e, "%s: too many shards", ipath);
        goto done;
    }
    if (!(d->files = calloc(nu, sizeof *d->files))) {
        rc = fw_errf(e, "%s: out of memory", ipath);
        goto done;
    }
    for (size_t i = 0; i < nu; i++) {
        char *sp = path_join(d->path, names[i]);
        if (!sp) {
            rc = fw_errf(e, "%s: out of memory", ipath);
            goto done;
        }
        rc = fw_st_open(&d->files[i], sp, e);
        free(sp);
        if (rc != FW_OK) {
            fw_err_prefix(e, "%s: shard '%s'", ipath, names[i]);
            goto done;
        }
        d->n_files++;
    }
    json_object_foreach(wm, tname, v) {
        const char *shard = json_string_value(v);
        const char **hit = bsearch(&shard, names, nu, sizeof *names, strptr_cmp);
        const fw_st_file *f = &d->files[hit - names];
        if (!fw_st_find(f, tname)) {
            rc = fw_errf(e, "%s: tensor '%s' is mapped to '%s', but %s has no such tensor", ipath, tname, shard,
                         f->path);
            goto done;
        }
    }
done:
    free(names);
    json_decref(root);
    return rc;
}

/* Collects every shard's tensors, sorted by name; a name in two shards is an error. */
static int gather_tensors(fw_st_dir *d, fw_err *e) {
    size_t n = 0;
    for (int i = 0; i < d->n_files; i++) n += (size_t)d->files[i].n_tensors;
    if (n > INT_MAX) return fw_errf(e, "%s: too many tensors", d->path);
    if (!(d->tensors = malloc((n ? n : 1) * sizeof *d->tensors))) return fw_errf(e, "%s: out of memory", d->path);
    for (int i = 0; i < d->n_files; i++)
        for (int j = 0; j < d->files[i].n_tensors; j++) d->tensors[d->n_tensors++] = &d->files[i].tensors[j];
    qsort(d->tensors, n, sizeof *d->tensors, tensorptr_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(d->tensors[i]->name, d->tensors[i - 1]->name) == 0)
            return fw_errf(e, "%s: tensor '%s' is in two shards: %s and %s", d->path, d->tensors[i]->name,
                           fw_st_dir_file_of(d, d->tensors[i - 1]), fw_st_dir_file_of(d, d->tensors[i]));
    return FW_OK;
}

int fw_st_dir_open(fw_st_dir *d, const char *dir, fw_err *e) {
    memset(d, 0, sizeof *d);
    struct stat st;
    if (stat(dir, &st) != 0) return fw_errf(e, "%s: cannot open model directory: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return fw_errf(e, "%s: not a directory", dir);
    if (!(d->path = strdup(dir))) return fw_errf(e, "%s: out of memory", dir);

    int rc;
    char *ipath = path_join(dir, ST_INDEX_NAME), *spath = path_join(dir, ST_SINGLE_NAME);
    if (!ipath || !spath) {
        rc = fw_errf(e, "%s: out of memory", dir);
    } else if (path_exists(ipath)) {
        rc = open_indexed(d, ipath, e);
    } else if (path_exists(spath)) {   /* fw_st_open refuses a non-file by name */
        if (!(d->files = calloc(1, sizeof *d->files))) {
            rc = fw_errf(e, "%s: out of memory", dir);
        } else if ((rc = fw_st_open(&d->files[0], spath, e)) == FW_OK) {
            d->n_files = 1;
        }
    } else {
        rc = fw_errf(e, "%s: neither %s nor %s found; not a safetensors model directory", dir, ST_INDEX_NAME,
                     ST_SINGLE_NAME);
    }
    free(ipath);
    free(spath);
    if (rc == FW_OK) rc = gather_tensors(d, e);
    if (rc != FW_OK) fw_st_dir_close(d);
    return rc;
}

void fw_st_dir_close(fw_st_dir *d) {
    if (!d) return;
    for (int i = 0; d->files && i < d->n_files; i++) fw_st_close(&d->files[i]);
    free(d->files);
    free(d->tensors);
    free(d->path);
    memset(d, 0, sizeof *d);
}

const fw_st_tensor *fw_st_dir_find(const fw_st_dir *d, const char *name) {
    if (!d || !d->tensors || !name) return NULL;
    fw_st_tensor key = {.name = (char *)name};
    const fw_st_tensor *kp = &key;
    const fw_st_tensor *const *hit = bsearch(&kp, d->tensors, (size_t)d->n_tensors, sizeof kp, tensorptr_cmp);
    return hit ? *hit : NULL;
}

const char *fw_st_dir_file_of(const fw_st_dir *d, const fw_st_tensor *t) {
    if (!d || !t) return NULL;
    /* Compare addresses as integers: t points into exactly one file's array. */
    uintptr_t p = (uintptr_t)t;
    for (int i = 0; i < d->n_files; i++) {
        const fw_st_file *f = &d->files[i];
        uintptr_t lo = (uintptr_t)f->tensors, hi = (uintptr_t)(f->tensors + f->n_tensors);
        if (f->tensors && p >= lo && p < hi) return f->path;
    }
    return NULL;
}
