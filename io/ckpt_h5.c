#include "io/ckpt_h5.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fw_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t innermost(unsigned n, const H5E_error2_t *err, void *user) {
    if (n == 0 && err->desc && *err->desc) snprintf(user, 512, "%s", err->desc);
    return 0;
}

int fw_h5_errf(fw_err *e, const char *fmt, ...) {
    char why[512] = "";
    int err = fw_h5_errno();
    if (err) snprintf(why, sizeof why, "%s", strerror(err));   /* not HDF5's long line with it */
    else H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, why);
    if (!e) return FW_ERR;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    if (why[0] && n >= 0 && (size_t)n < sizeof e->msg)
        snprintf(e->msg + n, sizeof e->msg - (size_t)n, err ? ": %s" : " (HDF5: %s)", why);
    return FW_ERR;
}

/* A little-endian IEEE-style float of `bits` bits with the given field layout. */
static hid_t custom_float(size_t bits, size_t epos, size_t esize, size_t msize, size_t ebias) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0) return t;
    if (H5Tset_fields(t, bits - 1, epos, esize, 0, msize) < 0 || H5Tset_offset(t, 0) < 0 ||
        H5Tset_precision(t, bits) < 0 || H5Tset_size(t, bits / 8) < 0 || H5Tset_ebias(t, ebias) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

hid_t fw_h5_type(fw_dtype t) {
    switch (t) {
    case FW_DTYPE_F32: return H5Tcopy(H5T_IEEE_F32LE);
    case FW_DTYPE_F64: return H5Tcopy(H5T_IEEE_F64LE);
    case FW_DTYPE_BF16: return custom_float(16, 7, 8, 7, 127);   /* sign 15, exp 7-14, mantissa 0-6 */
    case FW_DTYPE_F16: return custom_float(16, 10, 5, 10, 15);
    case FW_DTYPE_F8_E4M3: return H5Tcopy(H5T_STD_U8LE);
    case FW_DTYPE_I64: return H5Tcopy(H5T_STD_I64LE);
    case FW_DTYPE_I32: return H5Tcopy(H5T_STD_I32LE);
    case FW_DTYPE_I16: return H5Tcopy(H5T_STD_I16LE);
    case FW_DTYPE_I8: return H5Tcopy(H5T_STD_I8LE);
    case FW_DTYPE_U8: return H5Tcopy(H5T_STD_U8LE);
    case FW_DTYPE_BOOL: return H5Tcopy(H5T_STD_U8LE);
    case FW_DTYPE_INVALID: break;
    }
    return H5I_INVALID_HID;
}

static int put_scalar(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v) {
    hid_t s = H5Screate(H5S_SCALAR);
    if (s < 0) return -1;
    hid_t a = H5Acreate2(obj, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 ? -1 : H5Awrite(a, mtype, v) < 0 ? -1 : 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    return rc;
}

int fw_h5_put_str(hid_t obj, const char *name, const char *value) {
    /* Fixed-length, NUL-terminated: h5dump shows it as text and any reader copes. */
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    int rc = H5Tset_size(t, strlen(value) + 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 ||
                     H5Tset_cset(t, H5T_CSET_UTF8) < 0
                 ? -1
                 : put_scalar(obj, name, t, t, value);
    H5Tclose(t);
    return rc;
}

int fw_h5_put_i64(hid_t obj, const char *name, int64_t v) {
    return put_scalar(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

int fw_h5_put_u64(hid_t obj, const char *name, uint64_t v) {
    return put_scalar(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}

int fw_h5_put_u64_array(hid_t obj, const char *name, const uint64_t *v, int64_t n) {
    hsize_t dims[1] = {(hsize_t)n};
    hid_t s = n > 0 ? H5Screate_simple(1, dims, NULL) : H5Screate(H5S_NULL);
    if (s < 0) return -1;
    hid_t a = H5Acreate2(obj, name, H5T_STD_U64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 ? -1 : n > 0 && H5Awrite(a, H5T_NATIVE_UINT64, v) < 0 ? -1 : 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    return rc;
}

int fw_h5_get_u64_array(hid_t obj, const char *name, uint64_t *v, int64_t n) {
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t s = H5Aget_space(a), t = H5Aget_type(a);
    hssize_t got = s < 0 ? -1 : H5Sget_simple_extent_type(s) == H5S_NULL ? 0 : H5Sget_simple_extent_npoints(s);
    int rc = got != n || t < 0 || H5Tget_class(t) != H5T_INTEGER ? -1
             : n > 0 && H5Aread(a, H5T_NATIVE_UINT64, v) < 0  ? -1
                                                               : 0;
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    H5Aclose(a);
    return rc;
}

static int get_scalar(hid_t obj, const char *name, hid_t mtype, void *v) {
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t s = H5Aget_space(a);
    int rc = s < 0 || H5Sget_simple_extent_npoints(s) != 1 ? -1 : H5Aread(a, mtype, v) < 0 ? -1 : 0;
    if (s >= 0) H5Sclose(s);
    H5Aclose(a);
    return rc;
}

int fw_h5_get_i64(hid_t obj, const char *name, int64_t *v) {
    return get_scalar(obj, name, H5T_NATIVE_INT64, v);
}

int fw_h5_get_u64(hid_t obj, const char *name, uint64_t *v) {
    return get_scalar(obj, name, H5T_NATIVE_UINT64, v);
}

char *fw_h5_get_str(hid_t obj, const char *name) {
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    char *out = NULL;
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    if (t < 0 || s < 0 || H5Tget_class(t) != H5T_STRING || H5Sget_simple_extent_npoints(s) != 1) {
        /* not a scalar string */
    } else if (H5Tis_variable_str(t) > 0) {
        char *v = NULL;
        hid_t m = H5Tcopy(H5T_C_S1);
        H5Tset_size(m, H5T_VARIABLE);
        if (H5Aread(a, m, &v) >= 0 && v) {
            out = strdup(v);
            H5free_memory(v);
        }
        H5Tclose(m);
    } else {
        size_t n = H5Tget_size(t);
        if (n > 0 && (out = calloc(1, n + 1)) && H5Aread(a, t, out) < 0) {
            free(out);
            out = NULL;
        }
    }
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    H5Aclose(a);
    return out;
}

bool fw_ckpt_name_valid(const char *name) {
    if (!name || !*name || *name == '.' || strchr(name, '/')) return false;
    size_t n = strlen(name);
    return name[n - 1] != '.' && !strstr(name, "..");
}

void fw_ckpt_name_to_path(const char *name, char *path, size_t size) {
    snprintf(path, size, "/%s", name);
    for (char *p = path; *p; p++)
        if (*p == '.') *p = '/';
}
