"""Tool calls (tools / tool_choice) through furrow serve, for tests/test_tool_calls.sh.
Standard library plus jsonschema (Debian's python3-jsonschema) as the validator.

tool_client.py PORT forced         tool_choice "required" and a named function, greedy and sampled,
                                   streamed and not: finish_reason tool_calls, one call to an allowed
                                   function whose arguments parse and validate against its parameters;
                                   the stream (id, type and name, then the argument fragments) rebuilds
                                   the same call; the same requests without tool_choice write no call
tool_client.py PORT cut            a forced call cut by max_tokens (malformed: unterminated) comes back as
                                   plain content with finish_reason length, streamed and not
tool_client.py PORT long           a streamed forced call that takes seconds (a string without maxLength) on a
                                   server with --http-timeout 1: its held tokens keep the stream alive to [DONE]
tool_client.py PORT thinking       chat_template_kwargs.thinking splits reasoning_content out (v3.1)
tool_client.py batch FILE          generate --input result lines of forced calls: tool_calls that validate
tool_client.py PORT errors         bad tools / tool_choice / chat_template_kwargs fields get a 400 naming them
Only 127.0.0.1 is contacted; every loop is bounded.
"""
import json
import sys

import jsonschema

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from serve_client import parse_sse, post  # noqa: E402

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "additionalProperties": False, "required": ["city", "days"],
                       "properties": {"city": {"type": "string", "maxLength": 10},
                                      "days": {"type": "integer"}, "unit": {"enum": ["C", "F"]}}}}},
    {"type": "function", "function": {
        "name": "book_table", "description": "Book a table",
        "parameters": {"type": "object", "required": ["people", "vegan"],
                       "properties": {"people": {"type": "integer"}, "vegan": {"type": "boolean"},
                                      "notes": {"type": "array", "items": {"type": "string", "maxLength": 6},
                                                "maxItems": 2}}}}},
]
SCHEMA = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
PATH = "/v1/chat/completions"
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what)


def body(k, **kw):
    b = {"messages": [{"role": "user", "content": "Please call a tool (%d)" % k}], "tools": TOOLS, "max_tokens": 400}
    b.update(kw)
    return b


def plain(b):
    status, _, raw = post(PORT, PATH, b)
    assert status == 200, (status, raw[:300])
    return json.loads(raw)["choices"][0]


def streamed(b):
    """The message a stream adds up to: content, reasoning_content, tool_calls rebuilt from their deltas."""
    status, headers, raw = post(PORT, PATH, dict(b, stream=True))
    assert status == 200, (status, raw[:300])
    content, reasoning, calls, finish = "", "", [], None
    for ev in parse_sse(raw):
        ch = ev["choices"][0]
        d = ch["delta"]
        content += d.get("content") or ""
        reasoning += d.get("reasoning_content") or ""
        for tc in d.get("tool_calls") or []:
            i = tc["index"]
            if i == len(calls):  # a new call opens with its id, type and name
                assert "id" in tc and tc["type"] == "function" and "name" in tc["function"], tc
                calls.append({"id": tc["id"], "type": "function",
                              "function": {"name": tc["function"]["name"], "arguments": ""}})
            calls[i]["function"]["arguments"] += tc["function"].get("arguments", "")
        finish = ch["finish_reason"] or finish
    return {"content": content, "reasoning_content": reasoning, "tool_calls": calls}, finish


def valid_call(call, allowed, what):
    fn = call["function"]
    check(call["type"] == "function" and call["id"], what + ": the call's type and id")
    check(fn["name"] in allowed, what + ": function %r not among %s" % (fn["name"], allowed))
    try:
        args = json.loads(fn["arguments"])
        jsonschema.validate(args, SCHEMA[fn["name"]])
    except (ValueError, jsonschema.ValidationError, KeyError) as ex:
        check(False, what + ": arguments %r: %s" % (fn["arguments"], ex))


def forced():
    n = 0
    for choice, allowed in (("required", ["get_weather", "book_table"]),
                            ({"type": "function", "function": {"name": "book_table"}}, ["book_table"]),
                            ({"type": "function", "function": {"name": "get_weather"}}, ["get_weather"])):
        for k, temp in enumerate((0, 0.9, 1.0)):
            b = body(k, tool_choice=choice, temperature=temp, seed=7 + k)
            ch = plain(b)
            m = ch["message"]
            what = "tool_choice %s, temperature %s" % (json.dumps(choice), temp)
            check(ch["finish_reason"] == "tool_calls", what + ": finish_reason %r" % ch["finish_reason"])
            check(m.get("content") is None, what + ": content %r beside the call" % m.get("content"))
            calls = m.get("tool_calls") or []
            check(len(calls) == 1, what + ": %d calls" % len(calls))
            for c in calls:
                valid_call(c, allowed, what)
            sm, sfinish = streamed(b)
            check(sfinish == "tool_calls", what + ", streamed: finish_reason %r" % sfinish)
            scalls = sm["tool_calls"]
            check(len(scalls) == 1 and sm["content"] == "", what + ", streamed: %r" % sm)
            for c in scalls:
                valid_call(c, allowed, what + ", streamed")
            # the same seed gives the same tokens, so the same call, streamed or not
            check([c["function"] for c in scalls] == [c["function"] for c in calls],
                  what + ": streamed %r, not %r" % (scalls, calls))
            n += 1
    # without tool_choice (auto) the random model writes text, not a call
    for k in range(2):
        ch = plain(body(k, temperature=0, max_tokens=40))
        check(ch["finish_reason"] != "tool_calls" and not ch["message"].get("tool_calls"),
              "auto: the random model called a tool: %r" % ch)
        check(isinstance(ch["message"]["content"], str), "auto: content %r" % ch["message"].get("content"))
    print("ok: %d forced tool calls, streamed and not, validate against their function's parameters" % n)


def cut():
    for stream in (False, True):
        b = body(0, tool_choice="required", temperature=0, max_tokens=12)
        if stream:
            m, finish = streamed(b)
        else:
            ch = plain(b)
            m, finish = ch["message"], ch["finish_reason"]
        what = "a call cut by max_tokens%s" % (", streamed" if stream else "")
        check(finish == "length", what + ": finish_reason %r" % finish)
        check(not m.get("tool_calls"), what + ": tool_calls %r" % m.get("tool_calls"))
        content = m.get("content") or ""
        check("<｜tool▁calls▁begin｜>" in content or "<｜DSML｜function_calls>" in content,
              what + ": content %r" % content)
    print("ok: an unterminated tool call comes back as text (finish_reason length)")


def long():
    t = [{"type": "function", "function": {"name": "w", "parameters": {
        "type": "object", "required": ["s"], "properties": {"s": {"type": "string"}}}}}]
    b = {"messages": [{"role": "user", "content": "write"}], "tools": t, "tool_choice": "required",
         "max_tokens": 600, "temperature": 1, "seed": 2}
    m, finish = streamed(b)  # parse_sse: the stream must end with [DONE]
    check(finish in ("tool_calls", "length"), "a long call: finish_reason %r" % finish)
    check(bool(m["tool_calls"]) == (finish == "tool_calls"), "a long call: %r, %r" % (finish, m["tool_calls"]))
    print("ok: a long forced call streams to its end past --http-timeout (finish_reason %s)" % finish)


def thinking():
    for stream in (False, True):
        b = {"messages": [{"role": "user", "content": "Think first"}], "max_tokens": 24, "temperature": 0,
             "chat_template_kwargs": {"thinking": True}}
        m, finish = streamed(b) if stream else (lambda ch: (ch["message"], ch["finish_reason"]))(plain(b))
        off = plain(dict(b, chat_template_kwargs={"thinking": False}))["message"]
        what = "thinking%s" % (", streamed" if stream else "")
        # the random model never closes its thinking: everything is reasoning_content
        check(len(m.get("reasoning_content") or "") > 0 and m.get("content") == "", what + ": %r" % m)
        check("reasoning_content" not in off and len(off["content"]) > 0, what + " off: %r" % off)
    print("ok: thinking mode splits reasoning_content out, streamed and not")


def errors():
    bad_schema = {"type": "object", "properties": {"n": {"type": "float"}}}
    cases = [
        ({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "tools[0].type"),
        ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
        ({"tools": TOOLS + [TOOLS[0]]}, "tools[2].function.name"),
        ({"tools": "f"}, "'tools' must be an array"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]},
         "tools[0].function.parameters"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": bad_schema}}],
          "tool_choice": "required"}, "tools[0].function.parameters"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
         "tool_choice.function.name"),
        ({"tools": TOOLS, "tool_choice": "sometimes"}, "'tool_choice'"),
        ({"tool_choice": "required"}, "'tool_choice'"),
        ({"tools": TOOLS, "tool_choice": "required", "ignore_eos": True}, "ignore_eos"),
        ({"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}}, "tool_choice"),
        ({"chat_template_kwargs": {"thinking": "yes"}}, "chat_template_kwargs.thinking"),
        ({"chat_template_kwargs": {"thinking": True}}, "chat_template_kwargs.thinking"),  # v3 has none
        ({"chat_template_kwargs": {"foo": 1}}, "chat_template_kwargs.foo"),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ]
    for extra, field in cases:
        b = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 4}
        b.update(extra)
        status, _, raw = post(PORT, PATH, b)
        msg = json.loads(raw).get("error", {}).get("message", "") if raw.startswith(b"{") else raw[:200]
        check(400 <= status < 500 and field in msg, "%s: %d %r (want a 4xx naming %s)" % (extra, status, msg, field))
    # a conversation with tool calls and tool outputs renders (the template no longer refuses them)
    conv = [{"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "cold"}]
    status, _, raw = post(PORT, PATH, {"messages": conv, "tools": TOOLS, "max_tokens": 4})
    check(status == 200, "a tool conversation: %d %r" % (status, raw[:200]))
    print("ok: %d bad tool fields get 4xx naming them; tool conversations are accepted" % len(cases))


def batch(path):
    n = 0
    for line in open(path):
        r = json.loads(line)
        calls = r.get("tool_calls") or []
        check(r.get("finish_reason") == "tool_calls" and len(calls) == 1, "batch line %s: %r" % (r.get("id"), r))
        for c in calls:
            c = dict(c, id="batch")
            valid_call(c, ["get_weather", "book_table"], "batch line %s" % r.get("id"))
        n += 1
    check(n == 3, "%d batch lines" % n)
    print("ok: %d batch lines with forced calls carry tool_calls that validate" % n)


if __name__ == "__main__":
    if sys.argv[1] == "batch":
        batch(sys.argv[2])
    else:
        PORT = int(sys.argv[1])
        {"forced": forced, "cut": cut, "thinking": thinking, "errors": errors, "long": long}[sys.argv[2]]()
    sys.exit(1 if failures else 0)
