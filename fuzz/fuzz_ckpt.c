/* The furrow checkpoint reader (io/checkpoint.c, io/ckpt_h5.c) on checkpoints
 * built from the input: its HDF5 attributes, links and datasets, then
 * fw_ckpt_open_dir, fw_ckpt_foreach, fw_ckpt_read and fw_ckpt_verify. The input
 * describes the files rather than being HDF5 bytes, so that the fuzzer explores
 * furrow's reading of well-formed HDF5 (attributes of the wrong type, size or
 * rank, links out of the directory, mismatched dtypes and dimensions), not the
 * HDF5 library's own file parser. One directive per line:
 *
 *   attr FILE[:OBJECT] KIND NAME VALUE   KIND s: fixed-length string, v: variable-
 *                                        length string, i: int64, u: uint64,
 *                                        f: double, a: two int64 (an array)
 *   link FILE PATH TARGET_FILE TARGET_OBJECT   an external link (groups made)
 *   soft FILE PATH TARGET                a soft link
 *   group FILE PATH
 *   dset FILE PATH DTYPE DIMS [BYTE]     DIMS "4,8", or "-" for a scalar; the
 *                                        elements all BYTE (default 0)
 *
 * FILE is a plain name inside the checkpoint folder, created on first use (the
 * root is furrow.h5). Every input starts from an empty folder. An accepted
 * checkpoint must give tensors of 1 to 8 dimensions, and no input may leave an
 * HDF5 object open. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <hdf5.h>
#include <string.h>
#include <unistd.h>

#include "fuzz/fuzz.h"
#include "io/checkpoint.h"
#include "io/ckpt_h5.h"

#define MAX_FILES 8
#define MAX_LINES 64
#define MAX_ELEMS (1 << 16)

static char dir[4096];

typedef struct files {
    char name[MAX_FILES][65];
    hid_t fid[MAX_FILES];
    int n;
} files;

static void empty_dir(void);

static void remove_dir(void) {
    empty_dir();
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/furrow-fuzz-ckpt-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("fuzz_ckpt: mkdtemp");
        exit(1);
    }
    atexit(remove_dir);
    fw_h5_quiet();
    return 0;
}

/* Removes the files the last input made (the folder holds nothing else). */
static void empty_dir(void) {
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[4400];
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2]))) continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        unlink(path);
    }
    if (d) closedir(d);
}

static hid_t file_of(files *fs, const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > 64 || !strcmp(name, ".") || !strcmp(name, "..") || strspn(name,
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n)
        return H5I_INVALID_HID;
    for (int i = 0; i < fs->n; i++)
        if (!strcmp(fs->name[i], name)) return fs->fid[i];
    if (fs->n == MAX_FILES) return H5I_INVALID_HID;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    hid_t fid = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (fid < 0) return fid;
    snprintf(fs->name[fs->n], sizeof fs->name[0], "%s", name);
    fs->fid[fs->n++] = fid;
    return fid;
}

/* An lcpl that makes the groups above a new link. */
static hid_t lcpl_groups(void) {
    hid_t p = H5Pcreate(H5P_LINK_CREATE);
    if (p >= 0) H5Pset_create_intermediate_group(p, 1);
    return p;
}

static void put_attr(hid_t obj, const char *kind, const char *name, const char *value) {
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t space = H5Screate(H5S_SCALAR), type = H5I_INVALID_HID;
    const void *buf = NULL;
    int64_t i64[2] = {0, 0};
    uint64_t u64 = 0;
    double f64 = 0;
    switch (kind[0]) {
    case 's':
        fw_h5_put_str(obj, name, value);
        break;
    case 'v':
        type = H5Tcopy(H5T_C_S1);
        H5Tset_size(type, H5T_VARIABLE);
        buf = &value;
        break;
    case 'i':
        type = H5Tcopy(H5T_NATIVE_INT64), i64[0] = strtoll(value, NULL, 0), buf = i64;
        break;
    case 'u':
        type = H5Tcopy(H5T_NATIVE_UINT64), u64 = strtoull(value, NULL, 0), buf = &u64;
        break;
    case 'f':
        type = H5Tcopy(H5T_NATIVE_DOUBLE), f64 = strtod(value, NULL), buf = &f64;
        break;
    case 'a': {
        char *end;
        i64[0] = strtoll(value, &end, 0);
        i64[1] = strtoll(end, NULL, 0);
        hsize_t two = 2;
        H5Sclose(space);
        space = H5Screate_simple(1, &two, NULL);
        type = H5Tcopy(H5T_NATIVE_INT64), buf = i64;
        break;
    }
    default: break;
    }
    if (buf && type >= 0 && space >= 0) {
        hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) {
            H5Awrite(a, type, buf);
            H5Aclose(a);
        }
    }
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
}

static void put_dset(hid_t fid, const char *path, const char *dtype, char *dims, const char *fill) {
    hsize_t d[H5S_MAX_RANK];
    int nd = 0;
    hsize_t elems = 1;
    if (strcmp(dims, "-") != 0) {
        for (char *s = strtok(dims, ","); s && nd < H5S_MAX_RANK; s = strtok(NULL, ",")) {
            d[nd] = strtoull(s, NULL, 10);
            if (d[nd] > MAX_ELEMS || (elems *= d[nd] ? d[nd] : 1) > MAX_ELEMS) return;
            nd++;
        }
        if (nd == 0) return;
    }
    fw_dtype t = fw_dtype_from_name(dtype);
    hid_t type = t != FW_DTYPE_INVALID ? fw_h5_type(t) : H5Tcopy(H5T_STD_U32LE);
    hid_t space = nd ? H5Screate_simple(nd, d, NULL) : H5Screate(H5S_SCALAR);
    hid_t lcpl = lcpl_groups();
    size_t bytes = (size_t)elems * (type >= 0 ? H5Tget_size(type) : 1);
    unsigned char *buf = malloc(bytes ? bytes : 1);
    if (buf && type >= 0 && space >= 0) {
        memset(buf, fill ? (int)strtol(fill, NULL, 0) : 0, bytes);
        hid_t ds = H5Dcreate2(fid, path, type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        if (ds >= 0) {
            H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
            H5Dclose(ds);
        }
    }
    free(buf);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
}

static void directive(files *fs, char *line) {
    char *save = NULL, *op = strtok_r(line, " ", &save), *where = strtok_r(NULL, " ", &save);
    if (!op || !where) return;
    char *obj = strchr(where, ':');
    if (obj) *obj++ = '\0';
    hid_t fid = file_of(fs, where);
    if (fid < 0) return;
    if (!strcmp(op, "attr")) {
        char *kind = strtok_r(NULL, " ", &save), *name = strtok_r(NULL, " ", &save);
        char *value = save ? save : (char *)"";
        if (!kind || !name) return;
        hid_t o = obj ? H5Oopen(fid, obj, H5P_DEFAULT) : fid;
        if (o < 0) return;
        put_attr(o, kind, name, value);
        if (obj) H5Oclose(o);
        return;
    }
    char *path = strtok_r(NULL, " ", &save), *a = strtok_r(NULL, " ", &save), *b = strtok_r(NULL, " ", &save);
    if (!path) return;
    hid_t lcpl = lcpl_groups();
    if (!strcmp(op, "link") && a && b) H5Lcreate_external(a, b, fid, path, lcpl, H5P_DEFAULT);
    else if (!strcmp(op, "soft") && a) H5Lcreate_soft(a, fid, path, lcpl, H5P_DEFAULT);
    else if (!strcmp(op, "group")) {
        hid_t g = H5Gcreate2(fid, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        if (g >= 0) H5Gclose(g);
    } else if (!strcmp(op, "dset") && a && b) put_dset(fid, path, a, b, strtok_r(NULL, " ", &save));
    if (lcpl >= 0) H5Pclose(lcpl);
}

static int visit(void *user, const char *name, const fw_tensor_info *info, const char *file) {
    (void)file;
    FUZZ_CHECK(info->ndim >= 1 && info->ndim <= 8, "tensor '%s' has %d dimensions", name, info->ndim);
    for (int i = 0; i < info->ndim; i++) FUZZ_CHECK(info->shape[i] >= 0, "tensor '%s' shape[%d] < 0", name, i);
    (*(int64_t *)user)++;
    return 0;
}

static void read_back(void) {
    fw_ckpt *ck;
    fw_err e;
    if (fw_ckpt_open_dir(&ck, dir, &e) != FW_OK) {
        FUZZ_CHECK(e.msg[0] != '\0', "a refusal without a message");
        FUZZ_NOTE("refused: %s", e.msg);
        return;
    }
    FUZZ_CHECK(fw_ckpt_config(ck)->num_hidden_layers >= 1, "a checkpoint without layers");
    int64_t n = 0;
    if (fw_ckpt_foreach(ck, visit, &n, &e) != FW_OK) FUZZ_NOTE("opened; listing refused: %s", e.msg);
    else if (fw_ckpt_verify(ck, &e) != FW_OK) FUZZ_NOTE("%lld tensors; verify refused: %s", (long long)n, e.msg);
    else FUZZ_NOTE("accepted: %lld tensors verified", (long long)n);
    fw_ckpt_close(ck);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    empty_dir();
    files fs = {.n = 0};
    int lines = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && lines < MAX_LINES; line = strtok_r(NULL, "\n", &save), lines++)
        directive(&fs, line);
    for (int i = 0; i < fs.n; i++) H5Fclose(fs.fid[i]);
    free(text);
    FUZZ_CHECK(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) == 0, "the harness left HDF5 objects open");
    read_back();
    ssize_t left = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    FUZZ_CHECK(left == 0, "the reader left %zd HDF5 objects open", left);
    return 0;
}
