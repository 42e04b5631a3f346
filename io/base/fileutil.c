#include "io/base/fileutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

/* Copies a small file with O_EXCL, so nothing already in out_dir is replaced. */
int fw_copy_file(const char *from, const char *to, fw_err *e) {
    int in = open(from, O_RDONLY);
    if (in < 0) return fw_errf(e, "%s: cannot open: %s", from, strerror(errno));
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL, 0666);
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
            if (k < 0) rc = fw_errf(e, "%s: write error: %s", to, strerror(errno));
            else off += k;
        }
        if (rc) break;
    }
    if (close(out) != 0 && rc == FW_OK) rc = fw_errf(e, "%s: write error: %s", to, strerror(errno));
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
