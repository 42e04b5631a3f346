/* furrow doctor: how fast this node reads the checkpoint. The files are read
 * with O_DIRECT, so the page cache (perhaps warm from an earlier job) cannot
 * inflate the number; where the file system refuses O_DIRECT (tmpfs, some
 * FUSE and network mounts) they are read through the cache after asking the
 * kernel to drop the file's cached pages (posix_fadvise DONTNEED: this file
 * only, no root needed), and the result says so. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_DIRECT */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/base/clock.h"
#include "runtime/cli/doctor.h"

#define FW_DOCTOR_READ_BUF (16L << 20) /* large enough that O_DIRECT streams */
#define FW_DOCTOR_ALIGN 4096           /* O_DIRECT wants aligned buffers and offsets */
#define FW_DOCTOR_MIN_SAMPLE (64L << 20) /* less is over before the disk's speed shows */

typedef struct read_stats {
    int64_t bytes, limit;
    int files, buffered;
    char err[400];
} read_stats;

/* Reads one file into buf until EOF or the byte limit; -1 with st->err set on error. */
static int read_file(const char *path, char *buf, read_stats *st) {
    int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    int direct = fd >= 0;
    if (fd < 0 && errno == EINVAL) fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(st->err, sizeof st->err, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (!direct) {
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        st->buffered = 1;
    }
    st->files++;
    while (st->bytes < st->limit) {
        int64_t want = st->limit - st->bytes < FW_DOCTOR_READ_BUF ? st->limit - st->bytes : FW_DOCTOR_READ_BUF;
        want = (want + FW_DOCTOR_ALIGN - 1) / FW_DOCTOR_ALIGN * FW_DOCTOR_ALIGN; /* O_DIRECT sizes too */
        ssize_t got = read(fd, buf, (size_t)want);
        if (got < 0 && errno == EINVAL && direct) {
            /* Some file systems accept O_DIRECT at open and refuse the read:
             * go on through the cache from the same offset. */
            if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_DIRECT)) break;
            direct = 0;
            st->buffered = 1;
            continue;
        }
        if (got < 0) {
            snprintf(st->err, sizeof st->err, "reading %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (got == 0) break;
        st->bytes += got;
    }
    close(fd);
    return 0;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The regular files of a folder (a checkpoint is flat), sorted; NULL and err set on error. */
static char **list_files(const char *dir, int *n, read_stats *st) {
    DIR *dd = opendir(dir);
    if (!dd) {
        snprintf(st->err, sizeof st->err, "cannot open folder %s: %s", dir, strerror(errno));
        return NULL;
    }
    char **names = NULL;
    int cap = 0;
    *n = 0;
    struct dirent *de;
    while ((de = readdir(dd))) {
        char path[4096];
        struct stat s;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (de->d_name[0] == '.' || stat(path, &s) || !S_ISREG(s.st_mode)) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            char **more = realloc(names, (size_t)cap * sizeof *names);
            if (!more) break;
            names = more;
        }
        names[(*n)++] = strdup(path);
    }
    closedir(dd);
    if (names) qsort(names, (size_t)*n, sizeof *names, by_name);
    return names;
}

void fw_doctor_check_checkpoint(fw_doctor *d, const char *path, int64_t max_bytes, double min_gbs) {
    const char *name = "checkpoint-read";
    if (!path) {
        fw_doctor_add(d, name, FW_DOCTOR_SKIP, NULL, "no --checkpoint PATH given");
        return;
    }
    read_stats st = {.limit = max_bytes};
    struct stat s;
    char **files = NULL;
    int n = 0;
    if (stat(path, &s)) snprintf(st.err, sizeof st.err, "cannot read %s: %s", path, strerror(errno));
    else if (S_ISDIR(s.st_mode)) files = list_files(path, &n, &st);
    else {
        files = malloc(sizeof *files);
        if (files) files[n++] = strdup(path);
    }
    char *buf = NULL;
    double t0 = fw_now();
    if (!st.err[0] && n == 0) snprintf(st.err, sizeof st.err, "no files to read in %s", path);
    else if (!st.err[0] && posix_memalign((void **)&buf, FW_DOCTOR_ALIGN, FW_DOCTOR_READ_BUF))
        snprintf(st.err, sizeof st.err, "out of memory for a %ld MiB read buffer", FW_DOCTOR_READ_BUF >> 20);
    for (int i = 0; i < n && !st.err[0] && st.bytes < st.limit; i++) read_file(files[i], buf, &st);
    double secs = fw_now() - t0;
    for (int i = 0; i < n; i++) free(files[i]);
    free(files);
    free(buf);

    if (st.err[0]) {
        fw_doctor_add(d, name, FW_DOCTOR_FAIL, "give a checkpoint folder (or file) this user can read", "%s",
                      st.err);
        return;
    }
    if (st.bytes == 0) {
        fw_doctor_add(d, name, FW_DOCTOR_FAIL, "check the checkpoint (furrow info --verify)",
                      "the files in %s are empty", path);
        return;
    }
    if (st.bytes < FW_DOCTOR_MIN_SAMPLE && st.bytes < st.limit) {
        fw_doctor_add(d, name, FW_DOCTOR_SKIP, NULL, "%s holds only %lld bytes: too little to measure a speed (64 MiB)",
                      path, (long long)st.bytes);
        return;
    }
    double gbs = (double)st.bytes / 1e9 / (secs > 1e-9 ? secs : 1e-9);
    const char *how = st.buffered ? "buffered after dropping the files' cached pages (no O_DIRECT here)" : "O_DIRECT";
    if (gbs >= min_gbs)
        fw_doctor_add(d, name, FW_DOCTOR_PASS, NULL, "%.2f GB/s: %.1f MB of %d file(s) in %.2f s, %s", gbs,
                      (double)st.bytes / 1e6, st.files, secs, how);
    else
        fw_doctor_add(d, name, FW_DOCTOR_WARN,
                      "stage the checkpoint to node-local NVMe, or stripe its folder over more targets "
                      "(Lustre: lfs setstripe -c -1 before copying it in)",
                      "%.2f GB/s, under %.2f GB/s: %.1f MB of %d file(s) in %.2f s, %s", gbs, min_gbs,
                      (double)st.bytes / 1e6, st.files, secs, how);
}
