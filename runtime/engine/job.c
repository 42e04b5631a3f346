#include "runtime/engine/job.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/text/chat.h"

/* Sets the status and message of a refusal; returns FW_ERR. */
#define REFUSE(code, ...) (*status = (code), fw_errf(e, __VA_ARGS__))

static int get_number(const json_t *b, const char *key, double lo, double hi, double *out, int *status, fw_err *e) {
    const json_t *v = json_object_get(b, key);
    if (!v || json_is_null(v)) return FW_OK;
    if (!json_is_number(v)) return REFUSE(400, "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return REFUSE(422, "'%s' must be in [%g, %g], got %g", key, lo, hi, x);
    *out = x;
    return FW_OK;
}

static int get_int(const json_t *b, const char *key, int64_t lo, int64_t hi, int64_t *out, int *status, fw_err *e) {
    const json_t *v = json_object_get(b, key);
    if (!v || json_is_null(v)) return FW_OK;
    if (!json_is_integer(v)) return REFUSE(400, "'%s' must be an integer", key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) return REFUSE(422, "'%s' must be in [%lld, %lld], got %lld", key, (long long)lo, (long long)hi,
                                        (long long)x);
    *out = x;
    return FW_OK;
}

static int get_bool(const json_t *b, const char *key, bool *out, int *status, fw_err *e) {
    const json_t *v = json_object_get(b, key);
    if (!v || json_is_null(v)) return FW_OK;
    if (!json_is_boolean(v)) return REFUSE(400, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return FW_OK;
}

static int sampling(fw_job *j, const json_t *b, int *status, fw_err *e) {
    fw_sample_params *p = &j->req.sp;
    int64_t k = 0, seed = 0, lp = -1, n = 1;
    fw_sample_params_default(p);
    p->temperature = 1; /* OpenAI's default */
    if (get_number(b, "temperature", 0, 2, &p->temperature, status, e) ||
        get_number(b, "top_p", 1e-9, 1, &p->top_p, status, e) || get_number(b, "min_p", 0, 1, &p->min_p, status, e) ||
        get_number(b, "presence_penalty", -2, 2, &p->presence_penalty, status, e) ||
        get_number(b, "frequency_penalty", -2, 2, &p->frequency_penalty, status, e) ||
        get_number(b, "repetition_penalty", 0.01, 10, &p->repetition_penalty, status, e) ||
        get_int(b, "top_k", -1, 1 << 30, &k, status, e) || get_int(b, "seed", INT64_MIN, INT64_MAX, &seed, status, e) ||
        get_int(b, "n", 1, 1, &n, status, e) || get_bool(b, "ignore_eos", &j->req.ignore_eos, status, e))
        return FW_ERR;
    p->top_k = k < 0 ? 0 : (int32_t)k;
    p->seed = (uint64_t)seed;
    if (j->kind == FW_JOB_CHAT) {
        bool want = false;
        int64_t top = 0;
        if (get_bool(b, "logprobs", &want, status, e) ||
            get_int(b, "top_logprobs", 0, FW_SAMPLE_MAX_LOGPROBS, &top, status, e))
            return FW_ERR;
        if (want) lp = top;
    } else if (get_int(b, "logprobs", 0, FW_SAMPLE_MAX_LOGPROBS, &lp, status, e)) {
        return FW_ERR;
    }
    p->logprobs = (int32_t)lp;
    if (lp >= 0 && !(j->logprobs = json_array())) return REFUSE(500, "out of memory");
    return FW_OK;
}

static int stops(fw_job *j, const json_t *b, const fw_job_ctx *c, int *status, fw_err *e) {
    const json_t *v = json_object_get(b, "stop");
    if (v && !json_is_null(v)) {
        const json_t *one[1] = {v};
        size_t n = json_is_array(v) ? json_array_size(v) : 1;
        if (!json_is_string(v) && !json_is_array(v)) return REFUSE(400, "'stop' must be a string or an array of strings");
        if (n > FW_JOB_MAX_STOP) return REFUSE(422, "'stop' holds at most %d strings", FW_JOB_MAX_STOP);
        for (size_t i = 0; i < n; i++) {
            const json_t *s = json_is_array(v) ? json_array_get(v, i) : one[0];
            if (!json_is_string(s)) return REFUSE(400, "'stop' must be a string or an array of strings");
            size_t len = json_string_length(s);
            if (len == 0 || len > FW_JOB_MAX_STOP_LEN)
                return REFUSE(422, "each stop string must have 1 to %d bytes", FW_JOB_MAX_STOP_LEN);
            /* A batch line may hold \u0000 (its parser keeps NULs): as a C string
             * such a stop would be shorter than what it says, or empty. */
            if (memchr(json_string_value(s), '\0', len))
                return REFUSE(422, "a stop string cannot contain a NUL character (\\u0000)");
            if (!(j->stop[j->n_stop++] = strndup(json_string_value(s), len))) return REFUSE(500, "out of memory");
            if (len > j->stop_max) j->stop_max = len;
        }
    }
    v = json_object_get(b, "stop_token_ids");
    if (v && !json_is_null(v)) {
        if (!json_is_array(v)) return REFUSE(400, "'stop_token_ids' must be an array of integers");
        if (json_array_size(v) > FW_SCHED_MAX_STOP_IDS)
            return REFUSE(422, "'stop_token_ids' holds at most %d ids", FW_SCHED_MAX_STOP_IDS);
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x) {
            if (!json_is_integer(x)) return REFUSE(400, "'stop_token_ids' must be an array of integers");
            json_int_t id = json_integer_value(x);
            if (id < 0 || id >= c->vocab)
                return REFUSE(422, "'stop_token_ids': %lld is outside the vocabulary [0, %lld)", (long long)id,
                              (long long)c->vocab);
            j->req.stop_ids[j->req.n_stop_ids++] = (int32_t)id;
        }
    }
    return FW_OK;
}

/* OpenAI's response_format: text, json_object, or json_schema {name, schema,
 * strict, description}; a JSON output gets its grammar (compiled, or found
 * by the schema's text). */
static int response_format(fw_job *j, const json_t *b, const fw_job_ctx *c, int *status, fw_err *e) {
    const json_t *rf = json_object_get(b, "response_format");
    if (!rf || json_is_null(rf)) return FW_OK;
    if (!json_is_object(rf)) return REFUSE(400, "'response_format' must be an object");
    const json_t *type = json_object_get(rf, "type"), *schema = NULL;
    if (!json_is_string(type)) return REFUSE(400, "'response_format.type' must be a string");
    const char *t = json_string_value(type);
    if (!strcmp(t, "text")) return FW_OK;
    if (!strcmp(t, "json_schema")) {
        const json_t *js = json_object_get(rf, "json_schema");
        if (!json_is_object(js)) return REFUSE(400, "'response_format.json_schema' must be an object");
        const json_t *name = json_object_get(js, "name"), *strict = json_object_get(js, "strict");
        const json_t *desc = json_object_get(js, "description");
        if (!json_is_string(name) || json_string_length(name) == 0 || json_string_length(name) > 64)
            return REFUSE(400, "'response_format.json_schema.name' must be a string of 1 to 64 characters");
        for (const char *p = json_string_value(name); *p; p++)
            if (!(*p == '_' || *p == '-' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
                return REFUSE(400, "'response_format.json_schema.name' may hold only a-z, A-Z, 0-9, _ and -");
        if (strict && !json_is_null(strict) && !json_is_boolean(strict))
            return REFUSE(400, "'response_format.json_schema.strict' must be true or false");
        if (desc && !json_is_null(desc) && !json_is_string(desc))
            return REFUSE(400, "'response_format.json_schema.description' must be a string");
        schema = json_object_get(js, "schema");
        if (!schema) return REFUSE(400, "'response_format.json_schema.schema' is required");
    } else if (strcmp(t, "json_object")) {
        return REFUSE(400, "'response_format.type': unknown type '%s' (text, json_object, json_schema)", t);
    }
    if (j->req.ignore_eos) return REFUSE(422, "'ignore_eos' cannot go with a JSON 'response_format': the output ends with its value");
    const char *path = "response_format.json_schema.schema";
    if (c->json) return fw_json_grammar_get(c->json, schema, path, &j->req.json, e) ? (*status = 400, FW_ERR) : FW_OK;
    if (schema) { /* a bad schema is a 400 with or without a tokenizer */
        fw_json_nodes n;
        if (fw_json_nodes_compile(&n, schema, path, e)) return *status = 400, FW_ERR;
        fw_json_nodes_free(&n);
    }
    return REFUSE(422, "'response_format': this model has no tokenizer, so no JSON output");
}

/* An array of token ids, each in the vocabulary. */
static int token_array(fw_job *j, const json_t *v, const char *key, const fw_job_ctx *c, int *status, fw_err *e) {
    size_t n = json_array_size(v), i;
    const json_t *x;
    if (n == 0) return REFUSE(422, "'%s' is empty", key);
    if ((int64_t)n >= c->max_context)
        return REFUSE(422, "'%s' has %zu tokens; the maximum context is %lld", key, n, (long long)c->max_context);
    if (!(j->prompt = malloc(n * sizeof(int32_t)))) return REFUSE(500, "out of memory");
    json_array_foreach(v, i, x) {
        if (!json_is_integer(x)) return REFUSE(400, "'%s' must be an array of integers", key);
        json_int_t id = json_integer_value(x);
        if (id < 0 || id >= c->vocab)
            return REFUSE(422, "'%s': token %lld is outside the vocabulary [0, %lld)", key, (long long)id,
                          (long long)c->vocab);
        j->prompt[i] = (int32_t)id;
    }
    j->req.n_prompt = (int64_t)n;
    return FW_OK;
}

/* Text through the tokenizer; ids past a small model's vocabulary wrap. */
static int encode(fw_job *j, const char *text, size_t len, const fw_job_ctx *c, int *status, fw_err *e) {
    if (!c->tok) return REFUSE(422, "this model has no tokenizer: send token ids");
    int64_t n = 0;
    int rc = fw_tokenizer_encode(c->tok, text, len, true, &j->prompt, &n, e);
    if (rc) return *status = 422, FW_ERR;
    if (n == 0) return REFUSE(422, "the prompt encodes to no tokens");
    if (n >= c->max_context)
        return REFUSE(422, "the prompt has %lld tokens; the maximum context is %lld", (long long)n, (long long)c->max_context);
    for (int64_t i = 0; i < n; i++) j->prompt[i] = (int32_t)(j->prompt[i] % c->vocab);
    j->req.n_prompt = n;
    return FW_OK;
}

static int messages(fw_job *j, const json_t *v, const fw_job_ctx *c, int *status, fw_err *e) {
    if (!json_is_array(v)) return REFUSE(400, "'messages' must be an array");
    if (json_array_size(v) == 0) return REFUSE(422, "'messages' is empty");
    size_t i;
    const json_t *m;
    json_array_foreach(v, i, m) {
        if (!json_is_object(m) || !json_is_string(json_object_get(m, "role")))
            return REFUSE(400, "message %zu must be an object with a string 'role'", i);
        const json_t *content = json_object_get(m, "content");
        bool calls = json_object_get(m, "tool_calls") && !json_is_null(json_object_get(m, "tool_calls"));
        if (!json_is_string(content) && !(calls && (!content || json_is_null(content))) &&
            !(j->format == FW_CHAT_V32 && !strcmp(json_string_value(json_object_get(m, "role")), "assistant")))
            return REFUSE(400, "message %zu: 'content' must be a string (null only beside tool_calls)", i);
    }
    if (!c->tok) return REFUSE(422, "this model has no tokenizer: send token ids");
    fw_chat_opts o = {.format = j->format, .add_generation_prompt = true, .thinking = j->thinking,
                      .tools = j->tool_choice != FW_TOOL_CHOICE_NONE ? j->tools : NULL};
    int64_t n = 0;
    if (fw_chat_encode_ex(c->tok, v, &o, &j->prompt, &n, e)) return *status = 422, FW_ERR;
    if (n >= c->max_context)
        return REFUSE(422, "the prompt has %lld tokens; the maximum context is %lld", (long long)n, (long long)c->max_context);
    for (int64_t k = 0; k < n; k++) j->prompt[k] = (int32_t)(j->prompt[k] % c->vocab);
    j->req.n_prompt = n;
    return FW_OK;
}

/* A function name as OpenAI allows it: a-z, A-Z, 0-9, _ and -, 1 to 64 bytes. */
static bool good_name(const char *p) {
    size_t n = strlen(p);
    for (const char *q = p; *q; q++)
        if (!(*q == '_' || *q == '-' || (*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z')))
            return false;
    return n >= 1 && n <= 64;
}

/* The tool-call tokens of the format, each in the tokenizer and the model's vocabulary. */
static int tool_tokens(const fw_job_ctx *c, fw_chat_format f, int *status, fw_err *e) {
    if (!c->tok) return REFUSE(422, "'tools': this model has no tokenizer");
    if (f == FW_CHAT_V32) return FW_OK; /* DSML is text */
    static const char *const need[] = {"<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>",
                                       "<｜tool▁call▁end｜>", "<｜tool▁calls▁end｜>"};
    for (size_t k = 0; k < sizeof need / sizeof *need; k++) {
        int32_t id = fw_tokenizer_token_id(c->tok, need[k]);
        if (id < 0) return REFUSE(400, "'tools': this model's tokenizer has no %s token", need[k]);
        if (id >= c->vocab)
            return REFUSE(400, "'tools': this model's vocabulary (%lld tokens) lacks the tool-call token %s (%d)",
                          (long long)c->vocab, need[k], id);
    }
    return FW_OK;
}

/* tools, tool_choice, parallel_tool_calls and chat_template_kwargs (chat only). */
static int chat_fields(fw_job *j, const json_t *b, const fw_job_ctx *c, int *status, fw_err *e) {
    j->format = c->format;
    j->thinking = c->thinking;
    if (fw_chat_format_resolve(c->tok, NULL, j->format, &j->format, e)) return *status = 422, FW_ERR;
    const json_t *kw = json_object_get(b, "chat_template_kwargs");
    if (kw && !json_is_null(kw)) {
        if (!json_is_object(kw)) return REFUSE(400, "'chat_template_kwargs' must be an object");
        const char *key;
        const json_t *v;
        json_object_foreach((json_t *)kw, key, v) {
            if (strcmp(key, "thinking") && strcmp(key, "enable_thinking"))
                return REFUSE(400, "'chat_template_kwargs.%s': unknown (furrow's formats take 'thinking')", key);
            if (!json_is_boolean(v)) return REFUSE(400, "'chat_template_kwargs.%s' must be true or false", key);
            j->thinking = json_is_true(v);
        }
    }
    if (j->thinking && j->format == FW_CHAT_V3)
        return REFUSE(400, "'chat_template_kwargs.thinking': the v3 chat format has no thinking mode (v3.1, v3.2)");
    const json_t *ptc = json_object_get(b, "parallel_tool_calls");
    if (ptc && !json_is_null(ptc) && !json_is_boolean(ptc)) return REFUSE(400, "'parallel_tool_calls' must be true or false");
    const json_t *tools = json_object_get(b, "tools"), *choice = json_object_get(b, "tool_choice");
    size_t n = 0;
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) return REFUSE(400, "'tools' must be an array");
        n = json_array_size(tools);
        if (n > FW_TOOL_GUIDE_MAX) return REFUSE(400, "'tools' holds at most %d functions", FW_TOOL_GUIDE_MAX);
        for (size_t i = 0; i < n; i++) {
            const json_t *t = json_array_get(tools, i), *type = json_object_get(t, "type");
            const json_t *fn = json_object_get(t, "function");
            if (!json_is_object(t)) return REFUSE(400, "'tools[%zu]' must be an object", i);
            if (!json_is_string(type) || strcmp(json_string_value(type), "function"))
                return REFUSE(400, "'tools[%zu].type' must be \"function\"", i);
            if (!json_is_object(fn)) return REFUSE(400, "'tools[%zu].function' must be an object", i);
            const json_t *name = json_object_get(fn, "name"), *desc = json_object_get(fn, "description");
            const json_t *params = json_object_get(fn, "parameters");
            if (!json_is_string(name)) return REFUSE(400, "'tools[%zu].function.name' is required (a string)", i);
            if (!good_name(json_string_value(name)))
                return REFUSE(400, "'tools[%zu].function.name' may hold only a-z, A-Z, 0-9, _ and -, 1 to 64 of them", i);
            for (size_t k = 0; k < i; k++)
                if (!strcmp(json_string_value(json_object_get(json_object_get(json_array_get(tools, k), "function"), "name")),
                            json_string_value(name)))
                    return REFUSE(400, "'tools[%zu].function.name': '%s' is also tools[%zu]'s", i,
                                  json_string_value(name), k);
            if (desc && !json_is_null(desc) && !json_is_string(desc))
                return REFUSE(400, "'tools[%zu].function.description' must be a string", i);
            if (params && !json_is_null(params)) {
                const json_t *pt = json_object_get(params, "type");
                if (!json_is_object(params)) return REFUSE(400, "'tools[%zu].function.parameters' must be a JSON schema object", i);
                if (pt && !(json_is_string(pt) && !strcmp(json_string_value(pt), "object")))
                    return REFUSE(400, "'tools[%zu].function.parameters.type' must be \"object\" (arguments are an object)", i);
            }
        }
    }
    j->tool_choice = n ? FW_TOOL_CHOICE_AUTO : FW_TOOL_CHOICE_NONE;
    int named = -1;
    if (choice && !json_is_null(choice)) {
        if (json_is_string(choice)) {
            const char *v = json_string_value(choice);
            if (!strcmp(v, "none")) j->tool_choice = FW_TOOL_CHOICE_NONE;
            else if (!strcmp(v, "required")) {
                if (!n) return REFUSE(400, "'tool_choice': \"required\" needs 'tools'");
                j->tool_choice = FW_TOOL_CHOICE_REQUIRED;
            } else if (strcmp(v, "auto"))
                return REFUSE(400, "'tool_choice': unknown value '%s' (none, auto, required, or {\"type\": \"function\", "
                                   "\"function\": {\"name\": ...}})", v);
        } else if (json_is_object(choice)) {
            const json_t *type = json_object_get(choice, "type");
            const json_t *name = json_object_get(json_object_get(choice, "function"), "name");
            if (!json_is_string(type) || strcmp(json_string_value(type), "function"))
                return REFUSE(400, "'tool_choice.type' must be \"function\"");
            if (!json_is_string(name)) return REFUSE(400, "'tool_choice.function.name' is required (a string)");
            for (size_t i = 0; i < n && named < 0; i++)
                if (!strcmp(json_string_value(json_object_get(json_object_get(json_array_get(tools, i), "function"), "name")),
                            json_string_value(name)))
                    named = (int)i;
            if (named < 0) return REFUSE(400, "'tool_choice.function.name': no tool named '%s' in 'tools'", json_string_value(name));
            j->tool_choice = FW_TOOL_CHOICE_REQUIRED;
        } else {
            return REFUSE(400, "'tool_choice' must be a string or an object");
        }
    }
    if (n && tool_tokens(c, j->format, status, e)) return FW_ERR;
    if (j->tool_choice == FW_TOOL_CHOICE_NONE) return FW_OK;
    j->tools = json_incref((json_t *)tools);
    if (j->tool_choice != FW_TOOL_CHOICE_REQUIRED) return FW_OK;
    if (j->req.json) return REFUSE(400, "'tool_choice': a forced tool call cannot go with a JSON 'response_format'");
    if (j->req.ignore_eos) return REFUSE(422, "'ignore_eos' cannot go with a forced tool call: the output ends with it");
    if (j->thinking) return REFUSE(422, "'tool_choice': a forced tool call is not supported in thinking mode");
    if (!c->json) return REFUSE(422, "'tool_choice': this model has no tokenizer, so no forced tool call");
    json_t *sel = named >= 0 ? json_pack("[O]", json_array_get(tools, (size_t)named)) : json_incref((json_t *)tools);
    int idx[FW_TOOL_GUIDE_MAX];
    for (size_t i = 0; i < n; i++) idx[i] = named >= 0 ? named : (int)i;
    int rc = sel ? fw_tool_guide_build(&j->guide, j->format, sel, idx, c->tok, c->json, c->vocab, e) : fw_errf(e, "out of memory");
    json_decref(sel);
    if (rc) return *status = 400, FW_ERR;
    j->req.tool = j->guide;
    return FW_OK;
}

static int prompt(fw_job *j, const json_t *b, const fw_job_ctx *c, int *status, fw_err *e) {
    const json_t *p = json_object_get(b, "prompt"), *m = json_object_get(b, "messages");
    const json_t *t = json_object_get(b, "prompt_tokens");
    if (j->kind == FW_JOB_CHAT) {
        if (!m) return REFUSE(400, "'messages' is required");
        return chat_fields(j, b, c, status, e) || messages(j, m, c, status, e) ? FW_ERR : FW_OK;
    }
    if (j->kind == FW_JOB_BATCH && (!!p + !!m + !!t) != 1)
        return REFUSE(400, "each line needs exactly one of 'prompt', 'messages', 'prompt_tokens'");
    if (m) return chat_fields(j, b, c, status, e) || messages(j, m, c, status, e) ? FW_ERR : FW_OK;
    if (t) {
        if (!json_is_array(t)) return REFUSE(400, "'prompt_tokens' must be an array of integers");
        return token_array(j, t, "prompt_tokens", c, status, e);
    }
    if (!p) return REFUSE(400, "'prompt' is required");
    if (json_is_string(p)) {
        if (json_string_length(p) == 0) return REFUSE(422, "'prompt' is empty");
        return encode(j, json_string_value(p), json_string_length(p), c, status, e);
    }
    if (json_is_array(p) && json_array_size(p) > 0 && !json_is_integer(json_array_get(p, 0)))
        return REFUSE(422, "one prompt per request: 'prompt' is a string or an array of token ids");
    if (json_is_array(p)) return token_array(j, p, "prompt", c, status, e);
    return REFUSE(400, "'prompt' must be a string or an array of token ids");
}

int fw_job_parse(fw_job *j, const json_t *b, fw_job_kind kind, const fw_job_ctx *c, int *status, fw_err *e) {
    memset(j, 0, sizeof *j);
    j->kind = kind;
    *status = 200;
    if (!json_is_object(b)) return REFUSE(400, "the request must be a JSON object");
    if (kind == FW_JOB_BATCH) {
        const json_t *id = json_object_get(b, "id");
        if (!json_is_string(id) && !json_is_integer(id)) return REFUSE(400, "each line needs an 'id' (string or integer)");
        j->id = json_incref((json_t *)id);
    }
    const json_t *model = json_object_get(b, "model");
    if (model && !json_is_null(model)) {
        if (!json_is_string(model)) return REFUSE(400, "'model' must be a string");
        if (c->model_name && strcmp(json_string_value(model), c->model_name))
            return REFUSE(404, "the model '%s' does not exist; this server has '%s'", json_string_value(model),
                          c->model_name);
    }
    if (get_bool(b, "stream", &j->stream, status, e) || sampling(j, b, status, e) || stops(j, b, c, status, e) ||
        response_format(j, b, c, status, e) || prompt(j, b, c, status, e))
        return FW_ERR;
    int64_t max_tokens = kind == FW_JOB_CHAT ? c->max_context - j->req.n_prompt : 16;
    const char *mt = json_object_get(b, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (get_int(b, mt, 1, c->max_context, &max_tokens, status, e)) return FW_ERR;
    j->req.max_tokens = max_tokens;
    j->req.prompt = j->prompt;
    if (c->tok && fw_detok_stream_init(&j->ds, c->tok, true, e)) return *status = 500, FW_ERR;
    return FW_OK;
}

int fw_job_parse_body(fw_job *j, const char *body, size_t len, fw_job_kind kind, const fw_job_ctx *c, int *status,
                      fw_err *e) {
    memset(j, 0, sizeof *j);
    json_error_t je;
    json_t *b = json_loadb(body ? body : "", body ? len : 0, JSON_REJECT_DUPLICATES, &je);
    if (!b) return REFUSE(400, "the body is not valid JSON: %s (at byte %d)", je.text, je.position);
    int rc = fw_job_parse(j, b, kind, c, status, e);
    json_decref(b);
    return rc;
}

void fw_job_free(fw_job *j) {
    fw_req_free(&j->req);
    fw_json_grammar_release(j->req.json);
    fw_tool_guide_free(j->guide);
    json_decref(j->tools);
    json_decref(j->id);
    json_decref(j->logprobs);
    free(j->prompt);
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    fw_detok_stream_free(j->ds);
    free(j->text);
    memset(j, 0, sizeof *j);
}

static void append(fw_job *j, const char *s, size_t n) {
    if (j->text_len + n + 1 > j->text_cap) {
        size_t cap = (j->text_len + n + 1) * 2;
        char *t = realloc(j->text, cap);
        if (!t) {
            j->oom = true;
            return;
        }
        j->text = t, j->text_cap = cap;
    }
    memcpy(j->text + j->text_len, s, n);
    j->text_len += n;
    j->text[j->text_len] = 0;
}

bool fw_job_token(fw_job *j, const fw_sample_out *o) {
    if (j->logprobs) {
        json_t *top = json_array();
        for (int k = 0; k < o->n_top; k++)
            json_array_append_new(top, json_pack("{s:i, s:f}", "id", o->top[k].id, "logprob", (double)o->top[k].logprob));
        json_array_append_new(j->logprobs,
                              json_pack("{s:i, s:f, s:o}", "id", o->id, "logprob", (double)o->logprob, "top", top));
    }
    if (!j->ds) return false;
    const char *piece;
    size_t len;
    fw_err e;
    size_t before = j->text_len;
    if (fw_detok_stream_push(j->ds, o->id, &piece, &len, &e) || len == 0) return false;
    append(j, piece, len);
    /* A stop string can only end inside the new piece: search from where it could start. */
    size_t from = before >= j->stop_max ? before - j->stop_max + 1 : 0;
    char *first = NULL; /* the earliest of the stop strings found */
    for (int s = 0; s < j->n_stop; s++) {
        char *hit = j->text_len >= from ? strstr(j->text + from, j->stop[s]) : NULL;
        if (hit && (!first || hit < first)) first = hit;
    }
    if (!first) return false;
    j->text_len = (size_t)(first - j->text);
    j->text[j->text_len] = 0;
    j->n_stop = -j->n_stop; /* marks "stopped by a string"; negated back in fw_job_end */
    return true;
}

void fw_job_end(fw_job *j) {
    if (j->n_stop < 0) {
        j->n_stop = -j->n_stop;
        return;
    }
    const char *piece;
    size_t len;
    fw_err e;
    if (j->ds && fw_detok_stream_finish(j->ds, &piece, &len, &e) == FW_OK && len) append(j, piece, len);
}

size_t fw_job_ready(const fw_job *j, bool ended) {
    if (ended || j->n_stop <= 0) return j->text_len;
    size_t n = j->text_len >= j->stop_max ? j->text_len - j->stop_max + 1 : 0;
    while (n > j->sent && n < j->text_len && (j->text[n] & 0xC0) == 0x80) n--; /* whole characters */
    return n > j->sent ? n : j->sent;
}

bool fw_job_structured(const fw_job *j) {
    return j->kind != FW_JOB_COMPLETION && (j->thinking || j->tool_choice != FW_TOOL_CHOICE_NONE);
}

void fw_job_stream_parts(fw_job *j, size_t ready, bool ended, size_t *r0, size_t *r1, size_t *c0, size_t *c1) {
    *r0 = *r1 = *c0 = *c1 = j->sent;
    if (!fw_job_structured(j)) {
        *c1 = j->sent = ready;
        return;
    }
    const char *t = j->text ? j->text : "";
    if (j->part == FW_PART_REASONING && j->thinking) {
        static const char open[] = "<think>";
        size_t n = ready - j->sent;
        if (j->sent == 0 && n < strlen(open) && !ended && !memcmp(t, open, n)) return; /* may still be "<think>" */
        if (j->sent == 0 && n >= strlen(open) && !memcmp(t, open, strlen(open))) j->sent = strlen(open);
        *r0 = *r1 = j->sent;
        const char *end = fw_chat_find(t + j->sent, ready - j->sent, fw_chat_think_end);
        if (!end) {
            size_t hold = ended ? 0 : fw_chat_marker_tail(t + j->sent, ready - j->sent, fw_chat_think_end);
            *r1 = j->sent = ready - hold;
            *c0 = *c1 = j->sent;
            return;
        }
        *r1 = (size_t)(end - t);
        j->sent = *r1 + strlen(fw_chat_think_end);
        j->part = FW_PART_CONTENT;
    }
    j->part = j->part == FW_PART_REASONING ? FW_PART_CONTENT : j->part;
    *c0 = *c1 = j->sent;
    if (j->part != FW_PART_CONTENT) return;
    if (j->tool_choice == FW_TOOL_CHOICE_NONE) {
        *c1 = j->sent = ready;
        return;
    }
    const char *marker = fw_chat_tool_marker(j->format);
    const char *at = fw_chat_find(t + j->sent, ready - j->sent, marker);
    if (at) {
        *c1 = j->sent = (size_t)(at - t);
        j->part = FW_PART_TOOLS;
        return;
    }
    *c1 = j->sent = ready - (ended ? 0 : fw_chat_marker_tail(t + j->sent, ready - j->sent, marker));
}

bool fw_job_stream_news(const fw_job *j, size_t ready, bool ended) {
    if (ready <= j->sent) return false;
    fw_job t = *j; /* the split moves only sent and part */
    size_t r0, r1, c0, c1;
    fw_job_stream_parts(&t, ready, ended, &r0, &r1, &c0, &c1);
    return r1 > r0 || c1 > c0 || t.part != j->part;
}

int fw_job_reply(const fw_job *j, fw_chat_reply *r, fw_err *e) {
    return fw_chat_reply_parse(j->format, j->text ? j->text : "", j->text_len, j->thinking && fw_job_structured(j),
                               j->tool_choice != FW_TOOL_CHOICE_NONE && fw_job_structured(j), j->tools, r, e);
}

json_t *fw_job_result(const fw_job *j) {
    const fw_req *r = &j->req;
    if (r->finish == FW_FINISH_ERROR) {
        char msg[512];
        fw_finish_error(r, msg, sizeof msg);
        json_t *o = fw_error_json(500, msg);
        if (o) json_object_set(o, "id", j->id ? j->id : json_null());
        return o;
    }
    json_t *toks = json_array();
    for (int64_t i = r->n_prompt; i < r->n_tokens; i++) json_array_append_new(toks, json_integer(r->tokens[i]));
    int64_t gen = r->n_tokens - r->n_prompt;
    json_t *o = json_pack("{s:O?, s:s#, s:o, s:s, s:{s:I, s:I, s:I, s:{s:I}}}", "id", j->id, "text",
                          j->text ? j->text : "", (int)j->text_len, "tokens", toks, "finish_reason",
                          fw_finish_name(r->finish), "usage", "prompt_tokens", (json_int_t)r->n_prompt,
                          "completion_tokens", (json_int_t)gen, "total_tokens", (json_int_t)r->n_tokens,
                          "prompt_tokens_details", "cached_tokens", (json_int_t)r->cached_tokens);
    if (o && j->logprobs) json_object_set(o, "logprobs", j->logprobs);
    fw_chat_reply rp;
    fw_err e;
    if (o && fw_job_structured(j) && fw_job_reply(j, &rp, &e) == FW_OK) { /* the split reply beside the text */
        json_object_set_new(o, "content", json_string(rp.content));
        if (rp.reasoning) json_object_set_new(o, "reasoning_content", json_string(rp.reasoning));
        if (rp.n_calls) {
            json_t *calls = json_array();
            for (int i = 0; i < rp.n_calls; i++)
                json_array_append_new(calls, json_pack("{s:s, s:{s:s, s:s}}", "type", "function", "function", "name",
                                                       rp.calls[i].name, "arguments", rp.calls[i].arguments));
            json_object_set_new(o, "tool_calls", calls);
            json_object_set_new(o, "finish_reason", json_string("tool_calls"));
        }
        fw_chat_reply_free(&rp);
    }
    return o;
}

json_t *fw_error_json(int status, const char *message) {
    const char *type = status == 404 ? "not_found_error"
                       : status == 503 ? "server_busy"
                       : status >= 500 ? "server_error"
                                       : "invalid_request_error";
    return json_pack("{s:{s:s, s:s, s:n, s:i}}", "error", "message", message, "type", type, "param", "code", status);
}
