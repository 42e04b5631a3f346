#include "io/ckpt_map.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/checkpoint.h"

int fw_mapping_open(struct fw_ckpt_mapping **out, const char *path, fw_err *e) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fw_errf(e, "%s: cannot open to map: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int rc = fw_errf(e, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    struct fw_ckpt_mapping *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        close(fd);
        return fw_errf(e, "%s: out of memory", path);
    }
    m->refs = 1;
    m->size = (size_t)st.st_size;
    if (m->size > 0) {
        /* Shared and read-only: every rank of a node that maps the file uses the
         * same page-cache pages, and a stray write faults instead of corrupting. */
        void *p = mmap(NULL, m->size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int rc = fw_errf(e, "%s: cannot map (%zu bytes): %s", path, m->size, strerror(errno));
            close(fd);
            free(m->path);
            free(m);
            return rc;
        }
        m->base = p;
    }
    close(fd);   /* the mapping keeps the file */
    *out = m;
    return FW_OK;
}

void fw_ckpt_mapping_release(fw_ckpt_mapping *m) {
    if (!m || --m->refs > 0) return;
    if (m->base) munmap((void *)m->base, m->size);
    free(m->path);
    free(m);
}

/* The file offset of HDF5 address 0 (a user block before the superblock). */
static int base_address(hid_t d, uint64_t *base) {
    hid_t f = H5Iget_file_id(d), fcpl = f >= 0 ? H5Fget_create_plist(f) : H5I_INVALID_HID;
    hsize_t ub = 0;
    int rc = fcpl >= 0 && H5Pget_userblock(fcpl, &ub) >= 0 ? 0 : -1;
    if (fcpl >= 0) H5Pclose(fcpl);
    if (f >= 0) H5Fclose(f);
    *base = (uint64_t)ub;
    return rc;
}

static int chunked_run(hid_t d, hid_t dcpl, int ndim, const int64_t *shape, size_t esize, uint64_t *off,
                       const char **why) {
    hsize_t c[8];
    if (H5Pget_chunk(dcpl, 8, c) != ndim) return -1;
    if (H5Pget_nfilters(dcpl) > 0) {
        *why = "filtered (compressed) chunks";
        return 1;
    }
    uint64_t chunk_bytes = esize * c[0];
    for (int i = 1; i < ndim; i++) {
        if ((int64_t)c[i] != shape[i]) {
            *why = "chunks that cut its rows";
            return 1;
        }
        chunk_bytes *= c[i];
    }
    const int64_t n = (shape[0] + (int64_t)c[0] - 1) / (int64_t)c[0];
    haddr_t first = HADDR_UNDEF;
    for (int64_t k = 0; k < n; k++) {
        hsize_t at[8] = {(hsize_t)k * c[0]};
        unsigned mask = 0;
        haddr_t addr = HADDR_UNDEF;
        hsize_t size = 0;
        if (H5Dget_chunk_info_by_coord(d, at, &mask, &addr, &size) < 0) return -1;
        if (addr == HADDR_UNDEF) {
            *why = "chunks not allocated";
            return 1;
        }
        if (mask != 0 || size != chunk_bytes) {
            *why = "filtered (compressed) chunks";
            return 1;
        }
        if (k == 0) first = addr;
        else if (addr != first + (haddr_t)k * chunk_bytes) {
            *why = "chunks not consecutive in the file";
            return 1;
        }
    }
    *off = (uint64_t)first;
    return 0;
}

int fw_h5_data_run(hid_t d, int ndim, const int64_t *shape, size_t esize, uint64_t *off, const char **why) {
    hid_t dcpl = H5Dget_create_plist(d);
    if (dcpl < 0) return -1;
    int rc = 1;
    uint64_t at = 0, base = 0;
    switch (H5Pget_layout(dcpl)) {
    case H5D_CONTIGUOUS: {
        haddr_t a = H5Dget_offset(d);
        if (a == HADDR_UNDEF) *why = "storage not allocated";
        else at = (uint64_t)a, rc = 0;
        break;
    }
    case H5D_CHUNKED: rc = chunked_run(d, dcpl, ndim, shape, esize, &at, why); break;
    case H5D_COMPACT: *why = "compact storage (in the object header)"; break;
    default: *why = "a storage layout furrow does not map"; break;
    }
    H5Pclose(dcpl);
    if (rc == 0 && base_address(d, &base) != 0) rc = -1;
    *off = at + base;
    return rc;
}
