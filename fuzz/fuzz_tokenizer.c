/* The DeepSeek-V3 tokenizer and chat template (io/text) on arbitrary bytes, with
 * the tokenizer shipped in io/text/tokenizers, loaded once. The first byte picks
 * what the rest is (its low 7 bits modulo 3; its top bit: add_special, the
 * generation prompt, skip_special):
 *   0: text to encode. Well-formed UTF-8 must encode, to ids inside the
 *      vocabulary that decode back to the same bytes; anything else must be
 *      refused.
 *   1: a chat as OpenAI messages JSON, rendered and encoded; its ids decode to
 *      the rendered text.
 *   2: token ids (little-endian 32-bit, some past the last token): decoding
 *      them whole and one at a time through the streaming decoder gives the
 *      same well-formed UTF-8. */
#include <string.h>

#include "fuzz/fuzz.h"
#include "io/text/chat.h"
#include "io/text/data.h"
#include "io/text/tokenizer.h"

static fw_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    tok = fuzz_shipped_tokenizer("fuzz_tokenizer");
    return 0;
}

/* ids decode (specials kept) to exactly text[0, len). */
static void check_decodes_to(const int32_t *ids, int64_t n, const char *text, size_t len) {
    char *out = NULL;
    size_t out_len = 0;
    fw_err e;
    for (int64_t i = 0; i < n; i++)
        FUZZ_CHECK(ids[i] >= 0 && ids[i] < fw_tokenizer_n_ids(tok), "id %d at %lld", ids[i], (long long)i);
    FUZZ_CHECK(fw_tokenizer_decode(tok, ids, n, false, &out, &out_len, &e) == FW_OK, "decode: %s", e.msg);
    FUZZ_CHECK(out_len == len && !memcmp(out, text, len), "%zu bytes decode to %zu other bytes", len, out_len);
    free(out);
}

static void encode_text(const char *text, size_t len, bool add_special) {
    size_t bad;
    bool valid = fw_utf8_validate(text, len, &bad) == 0;
    int32_t *ids = NULL;
    int64_t n = 0;
    fw_err e;
    int rc = fw_tokenizer_encode(tok, text, len, add_special, &ids, &n, &e);
    FUZZ_CHECK((rc == FW_OK) == valid, "encode %s %s UTF-8", rc == FW_OK ? "took" : "refused",
               valid ? "valid" : "invalid");
    if (rc == FW_OK && !add_special) check_decodes_to(ids, n, text, len);
    if (rc == FW_OK) FUZZ_NOTE("text: %lld ids", (long long)n);
    else FUZZ_NOTE("text refused: %s", e.msg);
    free(ids);
}

static void encode_chat(const char *json, size_t len, bool gen_prompt) {
    char *text = NULL;
    size_t text_len = 0;
    int32_t *ids = NULL;
    int64_t n = 0;
    fw_err e;
    int r1 = fw_chat_render_json(tok, json, len, gen_prompt, &text, &text_len, &e);
    int r2 = fw_chat_encode_json(tok, json, len, gen_prompt, &ids, &n, &e);
    FUZZ_CHECK(r1 == r2, "render %d but encode %d", r1, r2);
    if (r1 == FW_OK) check_decodes_to(ids, n, text, text_len);
    if (r1 == FW_OK) FUZZ_NOTE("chat: %lld ids", (long long)n);
    else FUZZ_NOTE("chat refused: %s", e.msg);
    free(text);
    free(ids);
}

static void decode_ids(const uint8_t *p, size_t size, bool skip_special) {
    int64_t n = (int64_t)(size / 4);
    int32_t *ids = malloc((size_t)(n ? n : 1) * sizeof *ids);
    if (!ids) return;
    /* ids past the last token and in its holes decode to nothing; negative ones are refused. */
    for (int64_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
                     (uint32_t)p[4 * i + 3] << 24;
        ids[i] = (int32_t)(v % (uint32_t)(fw_tokenizer_n_ids(tok) + 64));
    }
    char *whole = NULL;
    size_t whole_len = 0, got_len = 0;
    fw_err e;
    FUZZ_CHECK(fw_tokenizer_decode(tok, ids, n, skip_special, &whole, &whole_len, &e) == FW_OK, "decode: %s", e.msg);
    size_t bad;
    FUZZ_CHECK(fw_utf8_validate(whole, whole_len, &bad) == 0, "decode gave ill-formed UTF-8 at %zu", bad);
    fw_detok_stream *s;
    FUZZ_CHECK(fw_detok_stream_init(&s, tok, skip_special, &e) == FW_OK, "stream: %s", e.msg);
    char *got = malloc(whole_len + 1);
    FUZZ_CHECK(got != NULL, "out of memory");
    for (int64_t i = 0; i <= n; i++) {
        const char *piece;
        size_t len;
        int rc = i < n ? fw_detok_stream_push(s, ids[i], &piece, &len, &e) : fw_detok_stream_finish(s, &piece, &len, &e);
        FUZZ_CHECK(rc == FW_OK, "stream at %lld: %s", (long long)i, e.msg);
        FUZZ_CHECK(fw_utf8_validate(piece, len, &bad) == 0, "stream piece %lld is ill-formed UTF-8", (long long)i);
        FUZZ_CHECK(got_len + len <= whole_len && !memcmp(whole + got_len, piece, len),
                   "the stream differs from the whole decode at token %lld", (long long)i);
        memcpy(got + got_len, piece, len);
        got_len += len;
    }
    FUZZ_CHECK(got_len == whole_len, "the stream gave %zu of %zu bytes", got_len, whole_len);
    FUZZ_NOTE("ids: %lld decode to %zu bytes", (long long)n, whole_len);
    fw_detok_stream_free(s);
    free(got);
    free(whole);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *rest = (const char *)data + 1;
    size_t len = size - 1;
    bool flag = data[0] & 0x80;
    switch ((data[0] & 0x7f) % 3) {
    case 0: encode_text(rest, len, flag); break;
    case 1: encode_chat(rest, len, flag); break;
    case 2: decode_ids(data + 1, len, flag); break;
    }
    return 0;
}
