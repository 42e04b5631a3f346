/* Small file operations shared by the readers and the writers. */
#ifndef FW_IO_BASE_FILEUTIL_H
#define FW_IO_BASE_FILEUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "io/base/err.h"

/* Opens a regular file for reading. The open is non-blocking, so a FIFO cannot
 * hang it; a FIFO, device, socket or directory is then refused, naming what it
 * is. *fd is returned in blocking mode; *size may be NULL. */
int fw_open_regular(const char *path, int *fd, uint64_t *size, fw_err *e);

/* The same refusal by stat, for a path a library opens itself (HDF5). */
int fw_check_regular(const char *path, fw_err *e);

/* Reads a whole regular file of at most `max` bytes into a NUL-terminated
 * malloc'd buffer (*len without the NUL; len may be NULL). */
int fw_read_file(const char *path, size_t max, char **buf, size_t *len, fw_err *e);

/* Copies a small file to a new path (O_EXCL: nothing existing is replaced); on
 * failure the partial copy is removed. */
int fw_copy_file(const char *from, const char *to, fw_err *e);

/* Creates the missing parent folders of `path` (as mkdir -p of its dirname). */
int fw_make_parents(const char *path, fw_err *e);

#endif
