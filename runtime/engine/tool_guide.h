/* A forced tool call (tool_choice "required" or a named function): the
 * sampler may only write the format's call wrapper, one of the allowed
 * functions' names, arguments that the function's `parameters` schema accepts,
 * the closing tokens, then EOS.
 *
 * The wrapper and the name ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function
 * <｜tool▁sep｜>NAME\n```json\n" for V3, "...<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>" for
 * V3.1, "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"NAME\">\n" for V3.2) are
 * token sequences, one per function, fixed when the guide is built; while
 * several are still possible the mask allows the next token of each.
 * V3 and V3.1: the arguments run the JSON grammar of
 * runtime/engine/json_grammar.h (masks precomputed and cached per schema); once
 * their object closes, the closing sequence is forced, then EOS.
 * V3.2 writes each argument as a DSML parameter: the parameters the schema
 * lists, in its order, each optional one taken or skipped, none required
 * skipped: "<｜DSML｜parameter name=\"KEY\" string=\"false\">", the value under
 * the property's JSON grammar, "</｜DSML｜parameter>\n", then
 * "</｜DSML｜invoke>\n</｜DSML｜function_calls>" and EOS. Every value is JSON
 * (string="false", as DeepSeek's parser reads it: a string quoted), so the
 * property's whole schema holds; a value ends where its JSON is complete and
 * the model writes the closing tag's first token. */
#ifndef FW_RUNTIME_ENGINE_TOOL_GUIDE_H
#define FW_RUNTIME_ENGINE_TOOL_GUIDE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "io/base/err.h"
#include "io/text/chat.h"
#include "io/text/tokenizer.h"
#include "runtime/engine/json_grammar.h"

#define FW_TOOL_GUIDE_MAX 128  /* functions one guide can choose from (OpenAI's limit on tools) */

typedef enum fw_tool_phase {
    FW_TOOL_NAME,              /* the wrapper and the function's name */
    FW_TOOL_ARGS,              /* the arguments' JSON object (V3.2: the current parameter's value) */
    FW_TOOL_PARAM,             /* V3.2: the next parameter's opening tag, or the call's closing tokens */
    FW_TOOL_PCLOSE,            /* V3.2: the rest of a parameter's closing tag */
    FW_TOOL_CLOSE,             /* the closing tokens */
    FW_TOOL_EOS,               /* only EOS */
} fw_tool_phase;

typedef struct fw_tool_state {
    fw_tool_phase phase;
    int32_t pos;               /* tokens written in the name or closing phase */
    int chosen;                /* the function, once its name is complete */
    int param;                 /* V3.2: the parameter being written */
    int next;                  /* V3.2: the first parameter that may still be written */
    uint64_t alive[FW_TOOL_GUIDE_MAX / 64]; /* the functions (V3.2: the parameter tags and the closing
                                               tokens) still possible */
    fw_json_state js;          /* the arguments' grammar state */
} fw_tool_state;

/* V3.2: one parameter of a function (a property of its schema). */
typedef struct fw_tool_param {
    int32_t *open;             /* <｜DSML｜parameter name="KEY" string="false"> */
    int64_t n_open;
    fw_json_grammar *value;    /* the property's schema */
    bool required;
} fw_tool_param;

typedef struct fw_tool_guide {
    fw_chat_format format;
    int n;
    int32_t **seq;             /* (n) each function's opening tokens */
    int64_t *len;
    fw_json_grammar **args;    /* V3, V3.1: (n) each function's arguments grammar */
    fw_tool_param **params;    /* V3.2: (n) each function's parameters, in its schema's order */
    int *n_params;
    int32_t *pclose;           /* V3.2: a parameter's closing tag */
    int64_t n_pclose;
    int32_t *close;
    int64_t n_close;
    int32_t eos;
    int64_t V;
} fw_tool_guide;

/* tools: the functions allowed (OpenAI tools entries, already checked); their
 * `parameters` compile through cache (path names the field in errors, with
 * the function's index: "tools[2].function.parameters..."; idx maps each entry
 * to its index in the request). Every token must be below V: a model whose
 * vocabulary lacks the tool-call tokens is refused. EOS is the cache's. V3,
 * V3.1 and V3.2 (whose parameters must be an object schema with at most
 * FW_TOOL_GUIDE_MAX - 1 properties, each one it requires among them). */
int fw_tool_guide_build(fw_tool_guide **g, fw_chat_format f, const json_t *tools, const int *idx, fw_tokenizer *t,
                        fw_json_cache *cache, int64_t V, fw_err *e);
void fw_tool_guide_free(fw_tool_guide *g);
void fw_tool_guide_start(const fw_tool_guide *g, fw_tool_state *s);
/* The tokens allowed now, for a phase other than FW_TOOL_ARGS: ids[0, *n). */
void fw_tool_guide_allowed(const fw_tool_guide *g, const fw_tool_state *s, int32_t *ids, int *n);
/* The grammar of the arguments being written (FW_TOOL_ARGS). */
fw_json_grammar *fw_tool_guide_grammar(const fw_tool_guide *g, const fw_tool_state *s);
/* V3.2, FW_TOOL_ARGS: the token that may end the value now (its JSON is
 * complete: the parameter's closing tag), else -1; EOS is never allowed there. */
int32_t fw_tool_guide_value_end(const fw_tool_guide *g, const fw_tool_state *s);
/* Advances by a sampled token (one the mask allowed). */
void fw_tool_guide_accept(const fw_tool_guide *g, fw_tool_state *s, int32_t id);

#endif
