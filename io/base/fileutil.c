#include "io/base/fileutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

static const char *kind_of(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO (named pipe)";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

static int refuse(const char *path, mode_t m, fw_err *e) {
    return fw_errf(e, "%s: is %s, not a regular file", path, kind_of(m));
}

int fw_open_regular(const char *path, int *fd, uint64_t *size, fw_err *e) {
    *fd = -1;
    int f = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (f < 0) return fw_errf(e, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int rc = FW_OK;
    if (fstat(f, &st) != 0) rc = fw_errf(e, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode)) rc = refuse(path, st.st_mode, e);
    else if (fcntl(f, F_SETFL, fcntl(f, F_GETFL) & ~O_NONBLOCK) != 0)
        rc = fw_errf(e, "%s: cannot open: %s", path, strerror(errno));
    if (rc != FW_OK) {
        close(f);
        return rc;
    }
    if (size) *size = (uint64_t)st.st_size;
    *fd = f;
    return FW_OK;
}

int fw_check_regular(const char *path, fw_err *e) {
    struct stat st;
    if (stat(path, &st) != 0) return fw_errf(e, "%s: %s", path, strerror(errno));
    return S_ISREG(st.st_mode) ? FW_OK : refuse(path, st.st_mode, e);
}

int fw_read_file(const char *path, size_t max, char **buf, size_t *len, fw_err *e) {
    *buf = NULL;
    int fd;
    uint64_t size;
    if (fw_open_regular(path, &fd, &size, e)) return FW_ERR;
    int rc = FW_OK;
    char *p = NULL;
    size_t n = 0;
    if (size > max) rc = fw_errf(e, "%s: %llu bytes is too large (limit %zu)", path, (unsigned long long)size, max);
    else if (!(p = malloc((size_t)size + 1))) rc = fw_errf(e, "%s: out of memory for %llu bytes", path,
                                                            (unsigned long long)size);
    while (rc == FW_OK && n < size) {
        ssize_t r = read(fd, p + n, (size_t)size - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) rc = fw_errf(e, "%s: read error: %s", path, strerror(errno));
        if (r <= 0) break;   /* 0: it shrank while read; what is there is parsed */
        n += (size_t)r;
    }
    close(fd);
    if (rc != FW_OK) {
        free(p);
        return rc;
    }
    p[n] = '\0';
    *buf = p;
    if (len) *len = n;
    return FW_OK;
}

/* Copies a small file with O_EXCL, so nothing already in out_dir is replaced. */
int fw_copy_file(const char *from, const char *to, fw_err *e) {
    int in;
    if (fw_open_regular(from, &in, NULL, e)) return FW_ERR;
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (out < 0) {
        int rc = fw_errf(e, "%s: cannot create: %s", to, strerror(errno));
        close(in);
        return rc;
    }
    char buf[1 << 16];
    int rc = FW_OK;
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = fw_errf(e, "%s: read error: %s", from, strerror(errno));
            break;
        }
        if (r == 0) break;
        for (ssize_t off = 0; off < r && rc == FW_OK;) {
            ssize_t k = write(out, buf + off, (size_t)(r - off));
            if (k < 0 && errno == EINTR) continue;
            if (k < 0) rc = fw_errf(e, "%s: cannot write (copying %s): %s", to, from, strerror(errno));
            else off += k;
        }
        if (rc) break;
    }
    if (rc == FW_OK && fsync(out) != 0 && errno != EINVAL)
        rc = fw_errf(e, "%s: cannot write (copying %s): %s", to, from, strerror(errno));
    if (close(out) != 0 && rc == FW_OK) rc = fw_errf(e, "%s: cannot write (copying %s): %s", to, from, strerror(errno));
    close(in);
    if (rc) unlink(to);
    return rc;
}

int fw_make_parents(const char *path, fw_err *e) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return fw_errf(e, "%s: path too long", path);
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf) return FW_OK;
    *slash = '\0';
    for (char *p = buf + 1; ; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return fw_errf(e, "%s: cannot create the directory: %s", buf, strerror(errno));
        if (c == '\0') break;
        *p = c;
    }
    return FW_OK;
}
