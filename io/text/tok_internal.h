/* Inside the tokenizer: the tables io/text/tokenizer.c builds from tokenizer.json and
 * the pieces the encoder chains (added-token matching, the pre-tokenizer steps,
 * BPE with its cache, UTF-8 repair). Not for use outside io/tok*.c and tests. */
#ifndef FW_IO_TEXT_TOK_INTERNAL_H
#define FW_IO_TEXT_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* (config.h defines it too, but from io/ "config.h" is io/config.h) */
#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include "io/base/err.h"
#include "io/text/tokenizer.h"

/* A growable byte buffer and a growable id list. */
typedef struct tok_buf {
    char *p;
    size_t n, cap;
} tok_buf;

typedef struct tok_ids {
    int32_t *p;
    int64_t n, cap;
} tok_ids;

int tok_buf_reserve(tok_buf *b, size_t extra);
int tok_buf_append(tok_buf *b, const void *src, size_t n);
int tok_ids_grow(tok_ids *v, int64_t extra);
/* Room for `extra` more ids. */
static inline int tok_ids_reserve(tok_ids *v, int64_t extra) {
    return v->cap - v->n >= extra ? 0 : tok_ids_grow(v, extra);
}
static inline int tok_ids_push(tok_ids *v, int32_t id) {
    if (v->n == v->cap && tok_ids_grow(v, 1)) return -1;
    v->p[v->n++] = id;
    return 0;
}

/* Byte strings -> id, open addressing over keys kept in one pool. */
typedef struct tok_strmap {
    uint64_t *hash;         /* (cap) 0 = empty slot */
    uint32_t *off, *len;    /* (cap) key in pool */
    int32_t *val;           /* (cap) */
    size_t cap, count;      /* cap a power of two */
    tok_buf pool;
} tok_strmap;

int tok_strmap_init(tok_strmap *m, size_t expected);
void tok_strmap_free(tok_strmap *m);
/* Inserts or overwrites. */
int tok_strmap_put(tok_strmap *m, const void *key, size_t len, int32_t val);
/* The value, or -1 when absent. */
int32_t tok_strmap_get(const tok_strmap *m, const void *key, size_t len);

/* (left id, right id) -> rank, packed in one word: left << 42 | right << 21 |
 * rank (ids and ranks below 2^21); the merged id is merge_to[rank]. Eight bytes
 * an entry keep the table (2 MB for DeepSeek-V3) mostly in cache. */
typedef uint64_t tok_merge;
#define TOK_ID_BITS 21
#define TOK_ID_LIMIT ((int64_t)1 << TOK_ID_BITS)
#define TOK_MERGE_EMPTY UINT64_MAX

/* Added tokens: a byte trie, leftmost-longest matching. */
typedef struct tok_trie_node {
    int32_t child, sibling; /* first child, next sibling; -1 = none */
    int32_t id;             /* token ending here, -1 = none */
    uint8_t byte;
} tok_trie_node;

typedef struct tok_trie {
    tok_trie_node *nodes;   /* node 0 is the root */
    int32_t n, cap;
    bool first[256];        /* bytes a token can start with */
    int n_first;            /* how many such bytes */
    uint8_t a_first;        /* one of them (the only one when n_first == 1) */
    int32_t count;          /* tokens inserted */
} tok_trie;

int tok_trie_init(tok_trie *tr);
void tok_trie_free(tok_trie *tr);
int tok_trie_add(tok_trie *tr, const char *s, size_t len, int32_t id);
/* Length of the longest token that starts at s (0 = none) and its id. */
size_t tok_trie_longest(const tok_trie *tr, const char *s, size_t len, int32_t *id);

/* One pre-tokenizer step: a Split (its regex and behaviour). ByteLevel without
 * its regex is no step: the BPE works on raw bytes, so the byte-to-character
 * mapping is only needed to read the vocabulary and to decode. */
enum { TOK_SPLIT_ISOLATED, TOK_SPLIT_REMOVED };

typedef struct tok_step {
    /* [0]: the pattern as Oniguruma reads it (see tok_pretok.c); [1]: the pattern
     * as written, which PCRE2 reads the same way on text without the code points
     * where the two differ, and runs faster (NULL when it does not compile). */
    pcre2_code *re[2];
    bool jit[2];
    int behavior;
} tok_step;

#define TOK_MAX_STEPS 8

/* Cache of pre-token bytes -> ids: one 64-byte entry per word (key and ids
 * inline, so a hit touches one cache line). Words longer than the key room or
 * with more ids are not cached; once half the slots are used, no more words are
 * added (the first words of a text are mostly its frequent ones). */
#define TOK_CACHE_KEY_MAX 24
#define TOK_CACHE_IDS_MAX 7
#define TOK_CACHE_SLOTS (1u << 16)

typedef struct tok_cache_entry {
    uint64_t hash;                  /* 0 = empty */
    uint8_t key_len, n_ids;
    char key[TOK_CACHE_KEY_MAX];
    uint8_t pad[2];
    int32_t ids[TOK_CACHE_IDS_MAX];
} tok_cache_entry;

typedef struct tok_cache {
    tok_cache_entry *slots;         /* (TOK_CACHE_SLOTS), allocated on first use */
    size_t count;
} tok_cache;

/* Token flags. */
enum { TOK_PRESENT = 1, TOK_ADDED = 2, TOK_SPECIAL = 4 };

struct fw_tokenizer {
    /* id -> decoded bytes, (n_ids) */
    int64_t n_ids;
    uint32_t *dec_off, *dec_len;
    uint8_t *flags;
    tok_buf dec_pool;

    tok_strmap vocab;       /* raw bytes of a vocabulary token -> id */
    int32_t byte_id[256];   /* the one-byte tokens */
    tok_merge *merges;      /* open addressing, (merge_mask + 1) */
    size_t merge_mask;
    int32_t *merge_to;      /* rank -> merged id, (n_merge_ranks) */
    int64_t n_merges, n_merge_ranks;
    bool ignore_merges;

    tok_trie added_raw;     /* added tokens matched on the raw text */
    tok_trie added_norm;    /* ... on the normalized text (identity normalizer) */

    tok_step steps[TOK_MAX_STEPS];
    int n_steps;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;

    tok_cache cache;
    /* BPE scratch */
    int32_t *sym, *rank, *prev, *next;
    size_t scratch_cap;
    struct tok_heap_item *heap;
    size_t heap_cap;

    int32_t bos, eos;
    char *bos_text, *eos_text;
    bool add_bos, add_eos;
    char *chat_template;
    char *path;             /* tokenizer.json, for messages */
};

/* The GPT-2 byte <-> character mapping of the ByteLevel pre-tokenizer/decoder. */
uint32_t tok_byte_to_char(uint8_t b);
/* The byte of a mapped character, -1 when c is not one. */
int tok_char_to_byte(uint32_t c);
/* Decodes one UTF-8 character of a well-formed string; returns its length. */
size_t tok_utf8_next(const char *s, size_t n, uint32_t *cp);

/* Appends the ids of one pre-token (raw bytes) to out, through the cache. */
int tok_bpe_word(fw_tokenizer *t, const char *w, size_t n, tok_ids *out, fw_err *e);
/* The BPE itself without the cache; force_heap picks the heap version for any
 * length (tests compare it with the linear version used for short words). */
int tok_bpe_merge(fw_tokenizer *t, const char *w, size_t n, bool force_heap, tok_ids *out,
                  fw_err *e);
void tok_bpe_free(fw_tokenizer *t);
/* The merge table: init for n merges, then put each (a later duplicate wins). */
int tok_merges_init(fw_tokenizer *t, int64_t n);
void tok_merges_put(fw_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t merged);

/* Compiles a tokenizer.json Split pattern (Oniguruma syntax) for PCRE2; literal
 * patterns are matched as they are. */
int tok_step_compile(fw_tokenizer *t, tok_step *st, const char *pattern, bool literal,
                     int behavior, fw_err *e);
/* Whether s[0, n) holds a code point that PCRE2 and Oniguruma classify apart. */
bool tok_needs_onig_classes(const char *s, size_t n);
/* Runs the pre-tokenizer steps and the BPE over a span without added tokens. */
int tok_pretokenize(fw_tokenizer *t, const char *s, size_t n, tok_ids *out, fw_err *e);
void tok_steps_free(fw_tokenizer *t);

/* Appends the from_utf8_lossy repair of s[0, n) to out. When final is false, a
 * trailing incomplete (but so far well-formed) character is not consumed: the
 * return value is the number of bytes consumed. */
size_t tok_utf8_lossy(const char *s, size_t n, bool final, tok_buf *out, int *oom);

#endif
