#include "io/h5out.h"

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

struct fw_h5out {
    hid_t file;
    char *path;
};

int fw_h5out_create(fw_h5out **out, const char *path, fw_err *e) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    fw_h5out *f = calloc(1, sizeof *f);
    if (!f) return fw_errf(e, "%s: out of memory", path);
    f->file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f->file < 0) {
        free(f);
        return fw_errf(e, "%s: cannot create the HDF5 file", path);
    }
    f->path = strdup(path);
    *out = f;
    return FW_OK;
}

static int write_dataset(fw_h5out *f, const char *name, hid_t type, const void *data, int rank,
                         const hsize_t *dims, fw_err *e) {
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t ds = space < 0 ? -1 : H5Dcreate2(f->file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = ds < 0 ? -1 : H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (ds >= 0) H5Dclose(ds);
    if (space >= 0) H5Sclose(space);
    return rc < 0 ? fw_errf(e, "%s: cannot write dataset '%s'", f->path, name) : FW_OK;
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
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
    return rc < 0 ? fw_errf(e, "%s: cannot write attribute '%s'", f->path, name) : FW_OK;
}

int fw_h5out_close(fw_h5out *f, fw_err *e) {
    if (!f) return FW_OK;
    herr_t rc = H5Fclose(f->file);
    int ret = rc < 0 ? fw_errf(e, "%s: error closing the file", f->path) : FW_OK;
    free(f->path);
    free(f);
    return ret;
}
