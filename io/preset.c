/* One lookup for every preset: kimi-k2 here until io/synth.c's table has it,
 * the others from that table. */
#include "io/preset.h"

#include <string.h>

#include "io/preset_kimi.h"
#include "io/synth.h"

const char *const fw_preset_names[] = {"tiny", "small", "deepseek-v3", "kimi-k2", NULL};

int fw_preset(const char *name, fw_config *out, fw_err *e) {
    int i = 0;
    while (fw_preset_names[i] && strcmp(fw_preset_names[i], name) != 0) i++;
    if (!fw_preset_names[i]) return fw_errf(e, "unknown preset '%s' (%s)", name, FW_PRESET_LIST);
    if (strcmp(name, "kimi-k2") != 0) return fw_synth_preset(name, out, e);
    fw_config c;
    fw_preset_kimi_k2(&c);
    if (fw_synth_config_json(&c, e)) return FW_ERR;
    *out = c;
    return FW_OK;
}

const char *fw_preset_weights(const char *name) {
    return strcmp(name, "kimi-k2") == 0 ? FW_PRESET_KIMI_K2_WEIGHTS : NULL;
}
