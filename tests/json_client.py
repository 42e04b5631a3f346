"""JSON output (response_format) through furrow serve, for tests/test_json_output.sh.
Standard library plus jsonschema (Debian's python3-jsonschema) as the validator.

json_client.py PORT schemas   several schemas x seeds, greedy and sampled, streamed and not, chat and
                              completions, 8 at a time beside free-text requests: every output ends
                              (finish_reason stop), parses and validates; the same requests without
                              response_format do not parse (the random model writes no JSON by itself)
json_client.py PORT object    json_object: an output that ended is one JSON object, one cut by max_tokens
                              is the beginning of one (finish_reason length)
json_client.py PORT errors    bad response_format fields get a 400 (or 422) naming the field
json_client.py check FILE SCHEMAS  batch result lines (generate --input): each id's text validates
Only 127.0.0.1 is contacted; every loop is bounded.
"""
import json
import re
import sys
import threading

import jsonschema

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from serve_client import post, stream_result  # noqa: E402

SCHEMAS = {
    "person": {"type": "object", "additionalProperties": False, "required": ["name", "age", "member"],
               "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"},
                              "member": {"type": "boolean"}}},
    "order": {"type": "object", "required": ["items"],
              "properties": {"items": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
                  "type": "object", "required": ["sku", "qty"],
                  "properties": {"sku": {"enum": ["A1", "B2", "C3"]}, "qty": {"type": "integer"},
                                 "price": {"type": "number"}}}},
                  "note": {"type": ["string", "null"], "maxLength": 10}}},
    "point": {"type": "object", "required": ["kind", "xy", "tag"],
              "properties": {"kind": {"const": "point"},
                             "xy": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
                             "tag": {"anyOf": [{"type": "string", "maxLength": 4}, {"type": "null"}]}}},
}


def fmt(name):
    return {"type": "json_schema", "json_schema": {"name": name, "schema": SCHEMAS[name], "strict": True}}


def run(port, body, chat, stream):
    path = "/v1/chat/completions" if chat else "/v1/completions"
    if stream:
        _, text, finish = stream_result(port, path, body)
        return text, finish
    status, _, raw = post(port, path, body)
    assert status == 200, (status, raw[:300])
    ch = json.loads(raw)["choices"][0]
    return (ch["message"]["content"] if chat else ch["text"]), ch["finish_reason"]


class Incomplete(Exception):
    pass


def prefix_state(s):
    """'complete' when s is one JSON object, 'prefix' when it is the beginning of one; raises ValueError."""
    n = len(s)

    def ws(i):
        while i < n and s[i] in " \t\n\r":
            i += 1
        return i

    def expect(i, c):
        if i >= n:
            raise Incomplete
        if s[i] != c:
            raise ValueError("expected %r at %d" % (c, i))
        return i + 1

    def string(i):
        i = expect(i, '"')
        while True:
            if i >= n:
                raise Incomplete
            if s[i] == '"':
                return i + 1
            if s[i] == "\\":
                i += 1
                if i >= n:
                    raise Incomplete
                if s[i] == "u":
                    h = s[i + 1:i + 5]
                    if not re.fullmatch(r"[0-9a-fA-F]*", h):
                        raise ValueError("bad \\u at %d" % i)
                    if len(h) < 4:
                        raise Incomplete
                    i += 4
                elif s[i] not in '"\\/bfnrt':
                    raise ValueError("bad escape at %d" % i)
            elif ord(s[i]) < 0x20:
                raise ValueError("control character at %d" % i)
            i += 1

    def value(i):
        i = ws(i)
        if i >= n:
            raise Incomplete
        c = s[i]
        if c in "{[":
            close = "}" if c == "{" else "]"
            i = ws(i + 1)
            if i < n and s[i] == close:
                return i + 1
            while True:
                if c == "{":
                    i = ws(string(ws(i)))
                    i = expect(i, ":")
                i = ws(value(i))
                if i >= n:
                    raise Incomplete
                if s[i] == close:
                    return i + 1
                i = ws(expect(i, ","))
        if c == '"':
            return string(i)
        for lit in ("true", "false", "null"):
            if lit.startswith(s[i:i + len(lit)]) and s[i] == lit[0]:
                if n - i < len(lit):
                    raise Incomplete
                return i + len(lit)
        m = re.match(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?", s[i:])
        if m and i + m.end() < n:
            return i + m.end()
        if re.fullmatch(r"-?(0|[1-9][0-9]*)?(\.[0-9]*)?([eE][+-]?[0-9]*)?", s[i:]) and s[i:]:
            raise Incomplete  # a number that may go on
        raise ValueError("no value at %d" % i)

    try:
        i = ws(0)
        if i < n and s[i] != "{":
            raise ValueError("not an object")
        j = value(i)
        if j != n:
            raise ValueError("bytes after the value at %d" % j)
        return "complete"
    except Incomplete:
        return "prefix"


def schemas(port):
    jobs, results, lock = [], [], threading.Lock()
    for name in SCHEMAS:
        for seed in range(4):
            for sampled in (False, True):
                body = {"max_tokens": 700, "response_format": fmt(name), "seed": seed,
                        "temperature": 0.9 if sampled else 0}
                if sampled and seed % 2:
                    body.update(top_p=0.9, top_k=40)  # the top-k path, which JSON output leaves for the full row
                chat = (seed + sampled) % 2 == 0
                if chat:
                    body["messages"] = [{"role": "user", "content": "Give me a %s as JSON (%d)." % (name, seed)}]
                else:
                    body["prompt"] = "A %s in JSON, number %d:" % (name, seed)
                jobs.append((name, body, chat, seed % 2 == 1))
    free = [({"max_tokens": 40, "temperature": 0, "prompt": "free text %d" % k}, False, False) for k in range(8)]

    def one(item):
        name, body, chat, stream = item
        try:
            text, finish = run(port, body, chat, stream)
            plain = dict(body)
            del plain["response_format"]
            plain["max_tokens"] = 60
            ptext, _ = run(port, plain, chat, False)
            out = (name, body, chat, stream, text, finish, ptext, None)
        except Exception as e:  # reported below with the request
            out = (name, body, chat, stream, None, None, None, repr(e))
        with lock:
            results.append(out)

    for k in range(0, len(jobs), 8):
        ts = [threading.Thread(target=one, args=(j,)) for j in jobs[k:k + 8]]
        ts += [threading.Thread(target=run, args=(port,) + f) for f in free[:2]]
        for t in ts:
            t.start()
        for t in ts:
            t.join(600)
    fail = 0
    unparsed_plain = 0
    for name, body, chat, stream, text, finish, ptext, err in results:
        what = "%s seed %d %s %s %s" % (name, body["seed"], "sampled" if body["temperature"] else "greedy",
                                        "chat" if chat else "completion", "stream" if stream else "whole")
        if err:
            print("FAIL: %s: %s" % (what, err))
            fail = 1
            continue
        try:
            assert finish == "stop", "finish_reason %s" % finish
            v = json.loads(text)
            jsonschema.validate(v, SCHEMAS[name])
        except Exception as e:
            print("FAIL: %s: %s: %r" % (what, e, text[:300]))
            fail = 1
            continue
        try:
            json.loads(ptext)
        except ValueError:
            unparsed_plain += 1
    n = len(jobs)
    if len(results) != n:
        print("FAIL: %d of %d requests answered" % (len(results), n))
        fail = 1
    if unparsed_plain != n:
        print("FAIL: %d of %d free-text twins parse as JSON: the random model should not write JSON" % (n - unparsed_plain, n))
        fail = 1
    if not fail:
        print("ok: %d JSON-schema outputs (%d schemas, greedy and sampled, streamed and not) parse and validate; "
              "their free-text twins do not parse" % (n, len(SCHEMAS)))
    return fail


def obj(port):
    fail, ended, cut = 0, 0, 0
    for seed in range(12):
        body = {"max_tokens": 150, "response_format": {"type": "json_object"}, "seed": seed,
                "temperature": 0 if seed < 2 else 1.0}
        chat = seed % 2 == 0
        if chat:
            body["messages"] = [{"role": "user", "content": "An object %d, please." % seed}]
        else:
            body["prompt"] = "An object %d:" % seed
        text, finish = run(port, body, chat, seed % 3 == 0)
        try:
            state = prefix_state(text)
        except ValueError as e:
            print("FAIL: json_object seed %d: %s: %r" % (seed, e, text[:300]))
            fail = 1
            continue
        if finish == "stop" and (state != "complete" or not isinstance(json.loads(text), dict)):
            print("FAIL: json_object seed %d ended (stop) but is %s: %r" % (seed, state, text[:300]))
            fail = 1
        elif finish == "length" and state != "prefix":
            print("FAIL: json_object seed %d cut by max_tokens, yet %s: %r" % (seed, state, text[:300]))
            fail = 1
        ended += finish == "stop"
        cut += finish == "length"
    # Cut short on purpose: finish_reason length, the beginning of the schema's object.
    text, finish = run(port, {"max_tokens": 3, "response_format": fmt("person"), "prompt": "x", "temperature": 0},
                       False, False)
    if finish != "length" or prefix_state(text) != "prefix":
        print("FAIL: max_tokens 3 under a schema: %s %r" % (finish, text))
        fail = 1
    if not fail:
        print("ok: json_object: %d outputs ended as one object each, %d cut by max_tokens are beginnings of one; "
              "a schema cut by max_tokens says length" % (ended, cut))
    return fail


def errors(port):
    good = {"name": "x", "schema": {"type": "object"}}

    def schema(s):
        return {"type": "json_schema", "json_schema": {"name": "x", "schema": s}}

    P = "response_format.json_schema.schema"
    cases = [
        ("json", 400, "'response_format' must be an object"),
        ({"type": "xml"}, 400, "'response_format.type': unknown type 'xml'"),
        ({"type": 3}, 400, "'response_format.type' must be a string"),
        ({"type": "json_schema"}, 400, "'response_format.json_schema' must be an object"),
        ({"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}, 400, "response_format.json_schema.name"),
        ({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}, 400, "response_format.json_schema.name"),
        ({"type": "json_schema", "json_schema": dict(good, strict="yes")}, 400, "response_format.json_schema.strict"),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, 400, "'response_format.json_schema.schema' is required"),
        (schema([1]), 400, P + ": a schema must be an object"),
        (schema({"type": "string"}), 400, P + ".type: the top-level schema must be of type \"object\""),
        (schema({"type": "object", "properties": {"age": {"type": "int"}}}), 400, P + ".properties.age.type"),
        (schema({"type": "object", "properties": {"age": {"type": ["integer", 5]}}}), 400, P + ".properties.age.type[1]"),
        (schema({"type": "object", "properties": {"s": {"type": "string", "pattern": "^a"}}}), 400,
         P + ".properties.s.pattern: not supported"),
        (schema({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "number", "minimum": 1}}}}),
         400, P + ".properties.a.items.minimum: not supported"),
        (schema({"type": "object", "required": ["b"], "properties": {"a": {}}}), 400, P + ".required[0]"),
        (schema({"type": "object", "properties": {"a": {"type": "string", "maxLength": "3"}}}), 400,
         P + ".properties.a.maxLength"),
    ]
    fail = 0
    for rf, want, text in cases:
        status, _, raw = post(port, "/v1/completions", {"prompt": "x", "max_tokens": 2, "response_format": rf})
        msg = json.loads(raw).get("error", {}).get("message", "") if raw.startswith(b"{") else ""
        if status != want or text not in msg:
            print("FAIL: response_format %s: %d %s (want %d naming %s)" % (json.dumps(rf)[:80], status, msg, want, text))
            fail = 1
    status, _, raw = post(port, "/v1/completions", {"prompt": "x", "ignore_eos": True,
                                                    "response_format": {"type": "json_object"}})
    if status != 422 or b"ignore_eos" not in raw:
        print("FAIL: ignore_eos with JSON output: %d %s" % (status, raw[:200]))
        fail = 1
    if not fail:
        print("ok: %d bad response_format fields get 400 naming the field; ignore_eos with JSON output 422" % len(cases))
    return fail


def check(path, names):
    """Batch result lines: ids named NAME-k validate against SCHEMAS[NAME]; 'object-k' is an object."""
    fail, n = 0, 0
    want = names.split(",")
    seen = set()
    for line in open(path, encoding="utf-8"):
        r = json.loads(line)
        name = str(r["id"]).rsplit("-", 1)[0]
        seen.add(r["id"])
        if name == "bad":
            if "error" not in r or "response_format.json_schema.schema.properties.n.type" not in r["error"]["message"]:
                print("FAIL: the bad line's result: %s" % line.strip())
                fail = 1
            continue
        try:
            assert r["finish_reason"] == "stop", r["finish_reason"]
            v = json.loads(r["text"])
            if name == "object":
                assert isinstance(v, dict)
            else:
                jsonschema.validate(v, SCHEMAS[name])
            n += 1
        except Exception as e:
            print("FAIL: batch %s: %s: %r" % (r["id"], e, r.get("text", "")[:300]))
            fail = 1
    missing = [w for w in want if w not in seen]
    if missing:
        print("FAIL: no result for %s" % missing)
        fail = 1
    if not fail:
        print("ok: generate --input: %d lines with response_format give JSON that validates; a bad schema's line "
              "gets its error naming the field" % n)
    return fail


if __name__ == "__main__":
    if sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3]))
    port, what = int(sys.argv[1]), sys.argv[2]
    sys.exit({"schemas": schemas, "object": obj, "errors": errors}[what](port))
