/* Helpers for messages about JSON input (config.json, tokenizer.json, chats). */
#ifndef FW_IO_BASE_JSONUTIL_H
#define FW_IO_BASE_JSONUTIL_H

#include <jansson.h>

/* "an object", "a string", ...: what a value is, for "expected X, found Y". */
const char *fw_json_type_name(const json_t *v);

#endif
