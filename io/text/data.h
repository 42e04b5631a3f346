/* Data shipped with furrow (the DeepSeek-V3 tokenizer), found installed or in
 * the source tree. */
#ifndef FW_IO_TEXT_DATA_H
#define FW_IO_TEXT_DATA_H

#include <stddef.h>

/* The folder holding the shipped DeepSeek-V3 tokenizer.json and
 * tokenizer_config.json: $FURROW_DATADIR/tokenizers/deepseek-v3, else the
 * installed one, else the source tree's. NULL when none exists. */
const char *fw_data_tokenizer_dir(char *buf, size_t n);

#endif
