/* Where a checkpoint is written before it appears (private to io/): a staging
 * folder on the destination's file system, published only once complete, so an
 * interrupted write never leaves something that looks like a checkpoint.
 *
 * A new destination DIR is staged as DIR.partial and renamed to DIR. An
 * existing folder DIR (without a checkpoint) is staged in DIR/.furrow-partial
 * and its files are hard-linked into DIR, the root last. A marker file in the
 * staging folder, locked while a writer runs, tells a leftover of a killed
 * write, which the next write removes, from anything a user made. */
#ifndef FW_IO_CKPT_STAGE_H
#define FW_IO_CKPT_STAGE_H

#include <stdbool.h>

#include "io/base/err.h"

typedef struct fw_stage {
    char *dir;      /* the destination */
    char *path;     /* the staging folder */
    bool inside;    /* staged inside an existing DIR: published file by file */
    int lock_fd;    /* the marker, locked */
    char **names;   /* files made in the staging folder, in order of publication */
    int n;
} fw_stage;

/* Makes the staging folder for dir, after removing a leftover of an interrupted
 * write; refuses when dir already holds `root`. */
int fw_stage_open(fw_stage *s, const char *dir, const char *root, fw_err *e);
/* Records a file about to be made in the staging folder and gives its path
 * there (malloc'd) in *path; refuses when dir already has one of that name. */
int fw_stage_add(fw_stage *s, const char *name, char **path, fw_err *e);
/* Moves every recorded file to dir, in the order added. On failure dir is as it
 * was and the staging folder is still there for fw_stage_abort. */
int fw_stage_publish(fw_stage *s, fw_err *e);
/* Removes the staging folder and what was recorded in it (after a publish, the
 * staged copies of files now linked into dir); frees s. */
void fw_stage_abort(fw_stage *s);

#endif
