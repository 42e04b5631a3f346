#include "io/ckpt_stage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/base/fileutil.h"

#define MARKER ".furrow-writing"

/* The names a checkpoint writer makes; a leftover folder holding anything else
 * is not removed. */
static bool ours(const char *name) {
    static const char *const pat[] = {MARKER, "furrow.h5", "base.h5", "layers-*.h5", "mtp-*.h5",
                                      "tokenizer*.json"};
    for (size_t i = 0; i < sizeof pat / sizeof *pat; i++)
        if (fnmatch(pat[i], name, 0) == 0) return true;
    return false;
}

static char *join(const char *a, const char *b, const char *sep) {
    size_t n = strlen(a) + strlen(b) + strlen(sep) + 1;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s%s%s", a, sep, b);
    return p;
}

static bool same_file(const char *a, const char *b) {
    struct stat x, y;
    return lstat(a, &x) == 0 && lstat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

/* A leftover staging folder: ours if it has the marker and no writer holds it.
 * Files already linked into dir (a write killed while publishing) go too. */
static int remove_leftover(fw_stage *s, fw_err *e) {
    char *marker = join(s->path, MARKER, "/");
    if (!marker) return fw_errf(e, "%s: out of memory", s->path);
    int fd = open(marker, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    free(marker);
    if (fd < 0)
        return fw_errf(e, "%s exists and was not made by furrow (no %s in it); remove it or choose another output",
                       s->path, MARKER);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
        close(fd);
        return fw_errf(e, "%s: another furrow process is writing a checkpoint there", s->path);
    }
    DIR *d = opendir(s->path);
    int rc = d ? FW_OK : fw_errf(e, "%s: cannot read: %s", s->path, strerror(errno));
    for (struct dirent *de; rc == FW_OK && (de = readdir(d));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (!ours(de->d_name)) {
            rc = fw_errf(e, "%s holds '%s', which furrow did not write; remove it or choose another output", s->path,
                         de->d_name);
            break;
        }
        char *p = join(s->path, de->d_name, "/"), *q = s->inside ? join(s->dir, de->d_name, "/") : NULL;
        if (!p || (s->inside && !q)) rc = fw_errf(e, "%s: out of memory", s->path);
        else if (q && same_file(p, q) && unlink(q) != 0)
            rc = fw_errf(e, "%s: cannot remove (left by an interrupted write): %s", q, strerror(errno));
        else if (unlink(p) != 0) rc = fw_errf(e, "%s: cannot remove (left by an interrupted write): %s", p, strerror(errno));
        free(p);
        free(q);
    }
    if (d) closedir(d);
    if (rc == FW_OK && rmdir(s->path) != 0)
        rc = fw_errf(e, "%s: cannot remove (left by an interrupted write): %s", s->path, strerror(errno));
    close(fd);
    return rc;
}

int fw_stage_open(fw_stage *s, const char *dir, const char *root, fw_err *e) {
    memset(s, 0, sizeof *s);
    s->lock_fd = -1;
    if (!(s->dir = strdup(dir))) return fw_errf(e, "%s: out of memory", dir);
    for (size_t n = strlen(s->dir); n > 1 && s->dir[n - 1] == '/';) s->dir[--n] = '\0';   /* "out/" is "out" */
    dir = s->dir;
    struct stat st;
    s->inside = stat(dir, &st) == 0;
    int rc = s->inside && !S_ISDIR(st.st_mode) ? fw_errf(e, "%s: exists and is not a directory", dir) : FW_OK;
    if (rc == FW_OK && !(s->path = s->inside ? join(dir, ".furrow-partial", "/") : join(dir, ".partial", "")))
        rc = fw_errf(e, "%s: out of memory", dir);
    if (rc != FW_OK) {
        fw_stage_abort(s);
        return rc;
    }
    char *rp = join(dir, root, "/");
    if (!rp) rc = fw_errf(e, "%s: out of memory", dir);
    if (rc == FW_OK && s->inside && stat(rp, &st) == 0)
        rc = fw_errf(e, "%s already exists: %s holds a furrow checkpoint (remove it or choose another output "
                        "directory)", rp, dir);
    free(rp);
    if (rc == FW_OK && lstat(s->path, &st) == 0) rc = remove_leftover(s, e);
    if (rc == FW_OK && !s->inside) rc = fw_make_parents(dir, e);
    if (rc == FW_OK && mkdir(s->path, 0777) != 0)
        rc = fw_errf(e, "%s: cannot create the directory: %s", s->path, strerror(errno));
    if (rc != FW_OK) {
        free(s->path);   /* not made here: abort must not touch it */
        s->path = NULL;
        fw_stage_abort(s);
        return rc;
    }
    char *marker = join(s->path, MARKER, "/");
    if (marker) s->lock_fd = open(marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (s->lock_fd >= 0) {
        static const char note[] = "furrow is writing a checkpoint here; an interrupted write is removed by the next\n";
        ssize_t w = write(s->lock_fd, note, sizeof note - 1);
        if (w != (ssize_t)sizeof note - 1) rc = fw_errf(e, "%s: cannot write: %s", marker, w < 0 ? strerror(errno) : "short write");
        else flock(s->lock_fd, LOCK_EX | LOCK_NB);   /* where locks exist; the marker alone still works */
    } else {
        rc = fw_errf(e, "%s: cannot create: %s", marker ? marker : s->path, strerror(errno));
    }
    free(marker);
    if (rc != FW_OK) fw_stage_abort(s);
    return rc;
}

int fw_stage_add(fw_stage *s, const char *name, char **path, fw_err *e) {
    *path = NULL;
    if (s->inside) {
        char *q = join(s->dir, name, "/");
        struct stat st;
        bool taken = q && lstat(q, &st) == 0;
        if (taken) fw_errf(e, "%s already exists (remove it or choose another output directory)", q);
        free(q);
        if (taken) return FW_ERR;
    }
    char **names = realloc(s->names, (size_t)(s->n + 1) * sizeof *names);
    if (names) s->names = names;
    if (!names || !(names[s->n] = strdup(name)) || !(*path = join(s->path, name, "/")))
        return fw_errf(e, "%s: out of memory", s->path);
    s->n++;
    return FW_OK;
}

static int sync_dir(const char *path, fw_err *e) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return fw_errf(e, "%s: cannot open to sync: %s", path, strerror(errno));
    int rc = fsync(fd) != 0 && errno != EINVAL ? fw_errf(e, "%s: fsync failed: %s", path, strerror(errno)) : FW_OK;
    close(fd);
    return rc;
}

/* One file into dir without replacing anything: a hard link, or where the file
 * system has none, a rename after checking the name is free. */
static int place(const char *from, const char *to, bool *linked, fw_err *e) {
    *linked = link(from, to) == 0;
    if (*linked) return FW_OK;
    if (errno == EEXIST) return fw_errf(e, "%s already exists (remove it or choose another output directory)", to);
    struct stat st;
    if (lstat(to, &st) == 0) return fw_errf(e, "%s already exists (remove it or choose another output directory)", to);
    if (rename(from, to) != 0) return fw_errf(e, "%s: cannot move %s there: %s", to, from, strerror(errno));
    return FW_OK;
}

int fw_stage_publish(fw_stage *s, fw_err *e) {
    int rc = FW_OK;
    char *marker = join(s->path, MARKER, "/");
    if (!marker) return fw_errf(e, "%s: out of memory", s->path);
    if (!s->inside) {
        /* The marker goes first (its lock stays with the open descriptor). */
        if (unlink(marker) != 0) rc = fw_errf(e, "%s: cannot remove: %s", marker, strerror(errno));
        else if (rename(s->path, s->dir) != 0)
            rc = fw_errf(e, "%s: cannot rename to %s: %s", s->path, s->dir, strerror(errno));
        if (rc == FW_OK) {
            char *parent = join(s->dir, "/..", "");
            rc = parent ? sync_dir(parent, e) : fw_errf(e, "%s: out of memory", s->dir);
            free(parent);
            free(s->path);
            s->path = NULL;   /* published: nothing is left to abort */
        } else {
            /* the marker must be back for abort to recognise the folder */
            int fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
            if (fd >= 0) close(fd);
        }
        free(marker);
        return rc;
    }
    bool *linked = calloc((size_t)s->n + 1, sizeof *linked);
    int k = 0;
    if (!linked) rc = fw_errf(e, "%s: out of memory", s->path);
    for (; rc == FW_OK && k < s->n; k++) {
        char *from = join(s->path, s->names[k], "/"), *to = join(s->dir, s->names[k], "/");
        rc = from && to ? place(from, to, &linked[k], e) : fw_errf(e, "%s: out of memory", s->dir);
        if (rc != FW_OK) k--;   /* k counts the placed files */
        free(from);
        free(to);
    }
    if (rc == FW_OK) rc = sync_dir(s->dir, e);
    if (rc != FW_OK) {
        for (int i = 0; i < k; i++) {   /* take back what was placed */
            char *from = join(s->path, s->names[i], "/"), *to = join(s->dir, s->names[i], "/");
            if (from && to && (linked[i] ? unlink(to) : rename(to, from)) != 0) { /* best effort */ }
            free(from);
            free(to);
        }
    }
    free(linked);
    free(marker);
    return rc;
}

void fw_stage_abort(fw_stage *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        char *p = s->path ? join(s->path, s->names[i], "/") : NULL;
        if (p) unlink(p);
        free(p);
        free(s->names[i]);
    }
    if (s->path) {
        char *marker = join(s->path, MARKER, "/");
        if (marker) unlink(marker);
        free(marker);
        rmdir(s->path);   /* only if nothing else is in it */
    }
    if (s->lock_fd >= 0) close(s->lock_fd);
    free(s->names);
    free(s->path);
    free(s->dir);
    memset(s, 0, sizeof *s);
    s->lock_fd = -1;
}
