/* Small file operations shared by convert and synth. */
#ifndef FW_IO_BASE_FILEUTIL_H
#define FW_IO_BASE_FILEUTIL_H

#include "io/base/err.h"

/* Copies a small file to a new path (O_EXCL: nothing existing is replaced); on
 * failure the partial copy is removed. */
int fw_copy_file(const char *from, const char *to, fw_err *e);

/* Creates the missing parent folders of `path` (as mkdir -p of its dirname). */
int fw_make_parents(const char *path, fw_err *e);

#endif
