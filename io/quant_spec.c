/* The quantization a user asks for: parsing and which tensors it covers. */
#include "io/quant_spec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/model_tensors.h"

int fw_quant_spec_parse(fw_quant_spec *q, const char *s, fw_err *e) {
    *q = (fw_quant_spec){0};
    char buf[128];
    if (!s || !*s || strlen(s) >= sizeof buf)
        return fw_errf(e, "quantization '%s': expected int4[,group=G][,experts][,head] or int8[,experts][,head]", s ? s : "");
    strcpy(buf, s);
    char *save = NULL;
    const char *kind = strtok_r(buf, ",", &save);
    if (kind && strcmp(kind, "int4") == 0)
        *q = (fw_quant_spec){.type = FW_WTYPE_INT4, .group = FW_QUANT_GROUP_DEFAULT};
    else if (kind && strcmp(kind, "int8") == 0)
        *q = (fw_quant_spec){.type = FW_WTYPE_INT8};
    else
        return fw_errf(e, "quantization '%s': the type must be int4 or int8", s);
    for (const char *part; (part = strtok_r(NULL, ",", &save));) {
        if (strcmp(part, "experts") == 0) {
            q->experts_only = true;
        } else if (strcmp(part, "head") == 0) {
            q->head = true;
        } else if (strncmp(part, "group=", 6) == 0) {
            if (q->type != FW_WTYPE_INT4)
                return fw_errf(e, "quantization '%s': int8 has one scale per output channel, no group", s);
            char *end;
            errno = 0;
            long long g = strtoll(part + 6, &end, 10);
            if (errno || end == part + 6 || *end || g < 8 || g % 8 || g > (1 << 20))
                return fw_errf(e, "quantization '%s': group must be a multiple of 8 from 8 to 1048576", s);
            q->group = g;
        } else {
            return fw_errf(e, "quantization '%s': unknown part '%s' (expected group=G, experts or head)", s, part);
        }
    }
    return FW_OK;
}

void fw_quant_spec_str(const fw_quant_spec *q, char *buf, size_t n) {
    char g[32] = "";
    if (q->type == FW_WTYPE_INT4) snprintf(g, sizeof g, ",group=%lld", (long long)q->group);
    snprintf(buf, n, "%s%s%s%s", q->type == FW_WTYPE_INT4 ? "int4" : "int8", g, q->experts_only ? ",experts" : "",
             q->head ? ",head" : "");
}

bool fw_quant_spec_covers(const fw_quant_spec *q, const char *name) {
    if (!fw_model_tensor_is_linear(name)) return false;
    if (strstr(name, "lm_head") || strstr(name, "shared_head")) return q->head;
    return !q->experts_only || strstr(name, ".mlp.experts.") != NULL;
}
