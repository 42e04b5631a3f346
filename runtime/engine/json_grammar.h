/* JSON output (OpenAI's response_format): a pushdown automaton over bytes,
 * compiled once per JSON schema, and the token masks it allows over the model's
 * vocabulary.
 *
 * Compile (runtime/engine/json_schema.c): a schema becomes a table of nodes
 * (object with its properties in order, array, string, number, integer, enum,
 * a union chosen by its first byte, any JSON value). json_object is the node
 * "any object".
 *
 * Run (runtime/engine/json_pda.c): a state is a stack of frames, one per value
 * being written (its node and a few counters); a byte either moves it or is
 * refused. Whitespace between lexemes, digits and nesting are bounded so a
 * model cannot loop forever on them; strings end only by max_tokens or by
 * their maxLength.
 *
 * Masks (runtime/engine/json_mask.c): the vocabulary's token bytes in a trie,
 * built once per tokenizer; the mask of a state is one walk of that trie from
 * the state (a subtree is cut at the first refused byte, so a token whose bytes
 * span several lexemes is checked byte by byte). Masks are cached per grammar,
 * keyed by the state's bytes with length counters clamped past the longest
 * token, so a request's steady steps are a hash look-up. Grammars are cached by
 * their schema's compact text. */
#ifndef FW_RUNTIME_ENGINE_JSON_GRAMMAR_H
#define FW_RUNTIME_ENGINE_JSON_GRAMMAR_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "io/base/err.h"
#include "io/text/tokenizer.h"

#define FW_JSON_MAX_DEPTH 24       /* frames: the root, containers, the scalar being written */
#define FW_JSON_MAX_WS 20          /* whitespace bytes in a row between lexemes */
#define FW_JSON_MAX_INT_DIGITS 16  /* digits before the point */
#define FW_JSON_MAX_FRAC_DIGITS 16
#define FW_JSON_MAX_EXP_DIGITS 3
#define FW_JSON_MAX_PROPS 64       /* properties of one object, values of one enum */
#define FW_JSON_MAX_NAME 255       /* bytes of a property name (escaped) */
#define FW_JSON_MAX_LITERAL 4096   /* bytes of an enum value as JSON text */
#define FW_JSON_MAX_NODES 4096

typedef struct fw_json_frame {
    uint16_t node;
    uint8_t st;                /* the node kind's sub-state */
    uint8_t u;                 /* object: key byte; string: UTF-8 / escape detail */
    uint32_t a;                /* object: next property; array: items; string: chars; number: digits; enum: byte */
    uint64_t set;              /* object: key candidates; enum: value candidates */
} fw_json_frame;

typedef struct fw_json_state {
    uint8_t depth, ws, pad[6];
    fw_json_frame f[FW_JSON_MAX_DEPTH];
} fw_json_state;

typedef enum fw_json_kind {
    FW_JN_ANY,                 /* any JSON value */
    FW_JN_OBJECT_ANY,          /* any object */
    FW_JN_OBJECT,              /* properties in the schema's order, the required ones present */
    FW_JN_ARRAY,
    FW_JN_STRING,
    FW_JN_NUMBER,
    FW_JN_INTEGER,
    FW_JN_ENUM,                /* one of given JSON texts (also boolean, null, const) */
    FW_JN_UNION,               /* alternatives told apart by their first byte */
    FW_JN_ROOT,
} fw_json_kind;

typedef struct fw_json_node {
    fw_json_kind kind;
    int n;                     /* properties, enum values, alternatives */
    char **text;               /* object: property names as JSON writes them (no quotes); enum: the values' JSON */
    uint32_t *len;
    int *child;                /* object: per property; array: [0] items; union: alternatives; root: [0] */
    bool *required;
    int64_t min, max;          /* array items, string characters (max -1: none) */
    uint8_t first[32];         /* bit set of the bytes a value of this node can start with */
} fw_json_node;

/* A compiled grammar's nodes (no vocabulary). */
typedef struct fw_json_nodes {
    fw_json_node *v;
    int n, cap;
    int root;
} fw_json_nodes;

/* schema NULL: any JSON object (json_object). Otherwise a schema of the subset
 * (README.md, "JSON output"); the error names the field: `path` then the
 * keywords down to it ("response_format.json_schema.schema.properties.age.type"). */
int fw_json_nodes_compile(fw_json_nodes *g, const json_t *schema, const char *path, fw_err *e);
/* The same for a value of any type (a tool call's parameter); the check alone. */
int fw_json_nodes_compile_any(fw_json_nodes *g, const json_t *schema, const char *path, fw_err *e);
int fw_json_schema_object_root(const json_t *schema, const char *path, fw_err *e);
void fw_json_nodes_free(fw_json_nodes *g);

/* The byte automaton (runtime/engine/json_pda.c). */
void fw_json_start(const fw_json_nodes *g, fw_json_state *s);
/* Feeds bytes; false (s then undefined) when one is refused. */
bool fw_json_feed(const fw_json_nodes *g, fw_json_state *s, const uint8_t *b, size_t n);
/* The value is complete: only the end of the output may follow. */
bool fw_json_complete(const fw_json_state *s);
/* Complete, or complete at the next byte that cannot continue it (a top-level
 * number or enum value): where a value may end before what follows it. */
bool fw_json_can_end(const fw_json_nodes *g, const fw_json_state *s);
/* The state's bytes for the mask cache: counters that cannot change a mask
 * (more than `longest` characters from a bound) are clamped. Returns the length. */
size_t fw_json_key(const fw_json_nodes *g, const fw_json_state *s, uint32_t longest, uint8_t *key);

/* The vocabulary and the grammars compiled for it: one per server or batch job. */
typedef struct fw_json_cache fw_json_cache;
typedef struct fw_json_grammar fw_json_grammar;

/* Tokens [0, V) with the tokenizer's bytes; special tokens are never allowed
 * but `eos`, which is allowed exactly where the value is complete. */
int fw_json_cache_init(fw_json_cache **c, const fw_tokenizer *t, int64_t V, int32_t eos, fw_err *e);
void fw_json_cache_free(fw_json_cache *c);
int32_t fw_json_cache_eos(const fw_json_cache *c);
/* The grammar of a schema (NULL: json_object), compiled or found by its
 * compact text (keys in their order); a reference the caller releases. Thread-safe. */
int fw_json_grammar_get(fw_json_cache *c, const json_t *schema, const char *path, fw_json_grammar **g, fw_err *e);
/* The same for a value of any type (fw_json_nodes_compile_any). */
int fw_json_grammar_get_any(fw_json_cache *c, const json_t *schema, const char *path, fw_json_grammar **g, fw_err *e);
/* Its masks and bytes need the cache alive; a last release does not. */
fw_json_grammar *fw_json_grammar_ref(fw_json_grammar *g);
void fw_json_grammar_release(fw_json_grammar *g);
const fw_json_nodes *fw_json_grammar_nodes(const fw_json_grammar *g);
int64_t fw_json_grammar_vocab(const fw_json_grammar *g);
int32_t fw_json_grammar_eos(const fw_json_grammar *g);
/* Advances by a token's bytes (EOS: only when complete); false when refused. */
bool fw_json_grammar_accept(const fw_json_grammar *g, fw_json_state *s, int32_t id);
/* The allowed tokens (bit i of word i / 64), from the cache or one trie walk;
 * *hit tells which. Valid until the grammar's cache is next filled: take masks
 * from one thread (the sampler's). */
const uint64_t *fw_json_grammar_mask(fw_json_grammar *g, const fw_json_state *s, bool *hit);
/* The same by brute force: every token's bytes fed from the state (the tests'
 * reference). mask: (V + 63) / 64 words. */
void fw_json_grammar_mask_brute(const fw_json_grammar *g, const fw_json_state *s, uint64_t *mask);

#endif
