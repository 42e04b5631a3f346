#include "io/text/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

const char *fw_data_tokenizer_dir(char *buf, size_t n) {
    const char *env = getenv("FURROW_DATADIR");
    const char *roots[] = {env, FW_PKGDATADIR, FW_SRCDIR "/io/text"};
    for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++) {
        if (!roots[i]) continue;
        snprintf(buf, n, "%s/tokenizers/deepseek-v3", roots[i]);
        char probe[4200];
        snprintf(probe, sizeof probe, "%s/tokenizer.json", buf);
        if (access(probe, R_OK) == 0) return buf;
    }
    return NULL;
}
