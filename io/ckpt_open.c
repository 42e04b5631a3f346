/* Where a model comes from: a checkpoint directory, or the synthetic model that
 * io/synth generates on read. */
#include <string.h>

#include "io/checkpoint.h"
#include "io/synth.h"

int fw_ckpt_open(fw_ckpt **out, const char *dir, fw_err *e) {
    if (!strncmp(dir, FW_SYNTH_PREFIX, strlen(FW_SYNTH_PREFIX))) return fw_synth_open(out, dir, e);
    return fw_ckpt_open_dir(out, dir, e);
}
