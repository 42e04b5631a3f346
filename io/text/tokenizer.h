/* The DeepSeek-V3 tokenizer: Hugging Face tokenizer.json (byte-level BPE, added
 * tokens, a pre-tokenizer of Split regexes and ByteLevel, a ByteLevel decoder),
 * read with jansson, its regexes run by PCRE2. Encoding equals the `tokenizers`
 * library's (the golden tokenizer.jsonl); see io/text/TOKENIZER.md for what is covered.
 *
 * Text in: UTF-8 (invalid UTF-8 is refused with its byte offset). Added tokens
 * (<｜User｜>, ...) found in the text become their ids, as the reference does.
 * Text out: the ByteLevel decoder's bytes, with ill-formed UTF-8 replaced by
 * U+FFFD as Rust's String::from_utf8_lossy does; the streaming decoder holds the
 * bytes of a character split across tokens until it is complete.
 *
 * Threads: loading makes an immutable table plus a per-object cache of encoded
 * words, so fw_tokenizer_encode (which fills the cache) must not run on one
 * fw_tokenizer from two threads at once. Decoding and the accessors are
 * read-only and may. */
#ifndef FW_IO_TEXT_TOKENIZER_H
#define FW_IO_TEXT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/base/err.h"

/* Token ids of the DeepSeek-V3 tokenizer: 128000 BPE entries + 815 added (one past the last). */
#define FW_DEEPSEEK_V3_TOKENS 128815

typedef struct fw_tokenizer fw_tokenizer;

/* Loads tokenizer.json and, when config_path is not NULL, tokenizer_config.json
 * (BOS/EOS, add_bos_token, the chat template). Without a config, BOS and EOS are
 * DeepSeek's <｜begin▁of▁sentence｜> / <｜end▁of▁sentence｜> when the added tokens
 * hold them, and BOS is added by add_special. */
int fw_tokenizer_load(fw_tokenizer **t, const char *tokenizer_json_path,
                      const char *tokenizer_config_path, fw_err *e);
/* DIR/tokenizer.json plus DIR/tokenizer_config.json when that file exists. */
int fw_tokenizer_load_dir(fw_tokenizer **t, const char *dir, fw_err *e);
void fw_tokenizer_free(fw_tokenizer *t);

/* Text -> ids (malloc'd; *n may be 0, then *ids is NULL). add_special prepends
 * BOS (and appends EOS) as tokenizer_config.json's add_bos_token/add_eos_token
 * say; the golden data and the chat template use add_special = false. */
int fw_tokenizer_encode(fw_tokenizer *t, const char *text, size_t len, bool add_special,
                        int32_t **ids, int64_t *n, fw_err *e);

/* Ids -> text (malloc'd, NUL-terminated; *len excludes the NUL). An id with no
 * token (a hole in the id space, or past the last token) contributes nothing, as
 * in the reference; a negative id is an error. skip_special drops the added
 * tokens marked "special" (BOS, EOS, ...). */
int fw_tokenizer_decode(const fw_tokenizer *t, const int32_t *ids, int64_t n, bool skip_special,
                        char **text, size_t *len, fw_err *e);

/* BOS / EOS ids, -1 when unknown. */
int32_t fw_tokenizer_bos(const fw_tokenizer *t);
int32_t fw_tokenizer_eos(const fw_tokenizer *t);
/* BOS as text, "" when unknown (the chat template writes it). */
const char *fw_tokenizer_bos_text(const fw_tokenizer *t);
/* One past the largest token id (128815 for DeepSeek-V3; the model's embedding
 * has more rows than that). */
int64_t fw_tokenizer_n_ids(const fw_tokenizer *t);
/* The bytes one token decodes to (not NUL-terminated), NULL when the id has no
 * token. */
const char *fw_tokenizer_token(const fw_tokenizer *t, int32_t id, size_t *len);
/* The id of an added token by its content ("<｜User｜>") or of a vocabulary entry
 * by its byte-level spelling ("Ġthe"); -1 when there is none. */
int32_t fw_tokenizer_token_id(const fw_tokenizer *t, const char *token);
/* Whether the id is an added token marked special. */
bool fw_tokenizer_is_special(const fw_tokenizer *t, int32_t id);
/* tokenizer_config.json's chat_template, NULL when there was none. */
const char *fw_tokenizer_chat_template(const fw_tokenizer *t);

/* Streaming decode: push ids one at a time, get back the text they complete.
 * Never returns ill-formed UTF-8: the bytes of a character split across tokens
 * are held until it is complete; bytes that cannot become a character come out
 * as U+FFFD, exactly as fw_tokenizer_decode of the whole sequence would. The
 * concatenation of all outputs, finish included, equals fw_tokenizer_decode. */
typedef struct fw_detok_stream fw_detok_stream;

int fw_detok_stream_init(fw_detok_stream **s, const fw_tokenizer *t, bool skip_special, fw_err *e);
/* *out points at the released bytes (valid until the next call on s), *out_len
 * may be 0. */
int fw_detok_stream_push(fw_detok_stream *s, int32_t id, const char **out, size_t *out_len,
                         fw_err *e);
/* End of the sequence: releases held bytes (an incomplete character becomes
 * U+FFFD) and resets the stream for reuse. */
int fw_detok_stream_finish(fw_detok_stream *s, const char **out, size_t *out_len, fw_err *e);
void fw_detok_stream_free(fw_detok_stream *s);

/* UTF-8 checks shared with the chat code: 0 when s[0, n) is well-formed UTF-8,
 * else -1 with *bad_offset at the first byte of the first ill-formed sequence. */
int fw_utf8_validate(const char *s, size_t n, size_t *bad_offset);

#endif
