#include "runtime/engine/prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/fileutil.h"
#include "io/text/chat.h"

int fw_prompt_tokenizer(fw_tokenizer **t, const char *model_dir, fw_err *e) {
    if (fw_tokenizer_load_dir(t, model_dir, e))
        return fw_err_prefix(e, "%s has no usable tokenizer (convert copies tokenizer.json from the Hugging Face "
                                "folder; synth ships DeepSeek-V3's); pass token ids instead",
                             model_dir);
    return FW_OK;
}

/* A chat file (@FILE) of more than this is not one: the longest context is a
 * few MB of text. */
#define CHAT_FILE_MAX_BYTES ((size_t)64 << 20)

int fw_prompt_encode(fw_tokenizer *t, const char *text, const fw_chat_opts *chat, int64_t vocab, int32_t **ids,
                     int64_t *n, bool *mapped, fw_err *e) {
    char *owned = NULL;
    size_t len = strlen(text);
    if (chat && text[0] == '@') {
        if (fw_read_file(text + 1, CHAT_FILE_MAX_BYTES, &owned, &len, e)) return FW_ERR;
        text = owned;
    }
    int rc = chat ? fw_chat_encode_json_ex(t, text, len, chat, ids, n, e)
                  : fw_tokenizer_encode(t, text, len, true, ids, n, e);
    free(owned);
    if (rc) return fw_err_prefix(e, chat ? "--chat" : "--prompt");
    if (*n == 0) return fw_errf(e, "%s: the prompt encodes to no tokens", chat ? "--chat" : "--prompt");
    *mapped = false;
    for (int64_t i = 0; i < *n; i++)
        if ((*ids)[i] >= vocab) {
            (*ids)[i] = (int32_t)((*ids)[i] % vocab);
            *mapped = true;
        }
    return FW_OK;
}
