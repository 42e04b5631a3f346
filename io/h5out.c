#include "io/h5out.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/ckpt_h5.h"

/* Written under a temporary name beside the result and renamed by close, so a
 * failed or killed run never leaves a partial file under the result's name. */
struct fw_h5out {
    hid_t file;
    char *path, *tmp;
    bool failed;
};

int fw_h5out_create(fw_h5out **out, const char *path, fw_err *e) {
    fw_h5_quiet();
    *out = NULL;
    fw_h5out *f = calloc(1, sizeof *f);
    size_t n = strlen(path) + 8;
    if (!f || !(f->path = strdup(path)) || !(f->tmp = malloc(n))) {
        if (f) free(f->path);
        free(f);
        return fw_errf(e, "%s: out of memory", path);
    }
    snprintf(f->tmp, n, "%s.XXXXXX", path);
    int fd = mkstemp(f->tmp);
    if (fd < 0) {
        int rc = fw_errf(e, "%s: cannot create %s: %s", path, f->tmp, strerror(errno));
        free(f->tmp), free(f->path), free(f);
        return rc;
    }
    close(fd);
    f->file = H5Fcreate(f->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f->file < 0) {
        int rc = fw_h5_errf(e, "%s: cannot create the HDF5 file", f->tmp);
        unlink(f->tmp);
        free(f->tmp), free(f->path), free(f);
        return rc;
    }
    *out = f;
    return FW_OK;
}

static int write_dataset(fw_h5out *f, const char *name, hid_t type, const void *data, int rank,
                         const hsize_t *dims, fw_err *e) {
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t ds = space < 0 ? -1 : H5Dcreate2(f->file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = ds < 0 ? -1 : H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (rc >= 0) rc = H5Dflush(ds);
    int ret = rc < 0 ? fw_h5_errf(e, "%s: cannot write dataset '%s'", f->path, name) : FW_OK;
    if (ret != FW_OK) fw_h5_abandon(f->file), f->failed = true;   /* so no close below can fail */
    if (ds >= 0 && H5Dclose(ds) < 0 && ret == FW_OK) ret = fw_h5_errf(e, "%s: cannot write dataset '%s'", f->path, name);
    if (space >= 0) H5Sclose(space);
    return ret;
}

int fw_h5out_f32(fw_h5out *f, const char *name, const float *data, int64_t rows, int64_t cols, fw_err *e) {
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    return write_dataset(f, name, H5T_IEEE_F32LE, data, cols ? 2 : 1, dims, e);
}

int fw_h5out_i64(fw_h5out *f, const char *name, const int64_t *data, int64_t n, fw_err *e) {
    hsize_t dims[1] = {(hsize_t)n};
    return write_dataset(f, name, H5T_STD_I64LE, data, 1, dims, e);
}

int fw_h5out_attr(fw_h5out *f, const char *name, const char *value, fw_err *e) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, strlen(value) + 1);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f->file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, type, value);
    int ret = rc < 0 ? fw_h5_errf(e, "%s: cannot write attribute '%s'", f->path, name) : FW_OK;
    if (ret != FW_OK) fw_h5_abandon(f->file), f->failed = true;
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
    return ret;
}

int fw_h5out_close(fw_h5out *f, fw_err *e) {
    if (!f) return FW_OK;
    int rc = f->failed ? fw_errf(e, "%s: an earlier write failed", f->path) : FW_OK;
    /* Flushed first: HDF5 1.10 cannot survive a close that fails. */
    if (rc == FW_OK && H5Fflush(f->file, H5F_SCOPE_LOCAL) < 0) {
        rc = fw_h5_errf(e, "%s: cannot write", f->path);
        fw_h5_abandon(f->file);
    }
    if (H5Fclose(f->file) < 0 && rc == FW_OK) rc = fw_h5_errf(e, "%s: cannot write", f->path);
    if (rc == FW_OK && rename(f->tmp, f->path) != 0)
        rc = fw_errf(e, "%s: cannot rename %s to it: %s", f->path, f->tmp, strerror(errno));
    if (rc != FW_OK) unlink(f->tmp);
    free(f->tmp);
    free(f->path);
    free(f);
    return rc;
}
