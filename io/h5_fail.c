/* HDF5 write failures: the system error behind one, and closing a file that is
 * being abandoned after one. */
#define _GNU_SOURCE /* memfd_create */
#include "io/ckpt_h5.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* HDF5's POSIX drivers put the system error in the message text:
 * "file write failed: ..., errno = 28, error message = '...'". */
static herr_t find_errno(unsigned n, const H5E_error2_t *err, void *user) {
    (void)n;
    const char *p = err->desc ? strstr(err->desc, "errno = ") : NULL;
    if (p && *(int *)user == 0) *(int *)user = atoi(p + 8);
    return 0;
}

int fw_h5_errno(void) {
    int err = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, find_errno, &err);
    return err;
}

/* HDF5 1.10 frees a file whose close fails (its final flush) but keeps its id,
 * and crashes on that id at exit (HDFGroup/hdf5 PR 2291, fixed in 1.14.1). So
 * after a failure the file's descriptor is swapped for an anonymous memory file:
 * whatever the closes still flush lands there and cannot fail; the file on disk
 * is unlinked by the caller. */
void fw_h5_abandon(hid_t fid) {
    if (fid < 0) return;
    hid_t fapl = H5Fget_access_plist(fid);
    hid_t driver = fapl >= 0 ? H5Pget_driver(fapl) : H5I_INVALID_HID;
    bool posix = driver == H5FD_SEC2 || driver == H5FD_CORE;   /* both hand out an int descriptor */
    if (fapl >= 0) H5Pclose(fapl);
    int *fd = NULL;
    if (posix && H5Fget_vfd_handle(fid, H5P_DEFAULT, (void **)&fd) >= 0 && fd && *fd >= 0) {
        int mem = memfd_create("furrow-abandoned-hdf5", MFD_CLOEXEC);
        if (mem >= 0) {
            dup2(mem, *fd);
            close(mem);
        }
    }
    H5Eclear2(H5E_DEFAULT);
}
