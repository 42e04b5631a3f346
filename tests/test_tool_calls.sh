#!/bin/sh
# Tool calls on the tiny synthetic model with DeepSeek-V3's full vocabulary (so
# the tool-call tokens exist; its random weights never write a call by
# themselves): furrow serve on tp 2 with a Python client (tests/tool_client.py):
# forced calls (tool_choice required and named) in the v3 format and, on
# other servers, the v3.1 and v3.2 formats, greedy and sampled, streamed and not, parse
# and validate against the function's parameters; a call cut by max_tokens
# comes back as text; bad fields get 400s naming them; thinking mode (v3.1)
# splits reasoning_content out; a long held call streams past --http-timeout. Then tools on a model whose vocabulary lacks
# the tool-call tokens: a batch line's error names 'tools'.
set -u
. "$FURROW_SRCDIR/tests/mpi.sh"
fail=0
cd "$FURROW_TMP" || exit 1
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }
client() { python3 "$FURROW_SRCDIR/tests/tool_client.py" "$@" || fail=1; }
python3 -c "import jsonschema" 2>/dev/null || { echo "SKIP: python3-jsonschema is not installed"; exit 77; }
"$FURROW_BIN" synth --out model --preset tiny --vocab 129280 --quiet || { echo "FAIL: synth"; exit 1; }

serve() { # serve NAME ARGS...: starts a server, sets port, pid and job
  name=$1; shift
  rm -f "port.$name"
  fw_mpirun 900 2 "$FURROW_BIN" serve --model model --port 0 --port-file "port.$name" --tp 2 --max-context 1024 "$@" \
    > "serve.$name.log" 2>&1 &
  job=$!
  i=0
  while [ ! -s "port.$name" ] && [ $i -lt 600 ] && kill -0 $job 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
  port=$(cat "port.$name" 2>/dev/null)
  pid=$(sed -n 's/.*; pid \([0-9]*\)$/\1/p' "serve.$name.log" | head -n 1)
  [ -n "$port" ] && [ -n "$pid" ] || { cat "serve.$name.log"; echo "FAIL: the $name server did not start"; kill $job; exit 1; }
}
stop() {
  kill -TERM "$pid"
  wait $job || { bad "the server's exit"; cat "serve.$name.log"; }
}

serve v3
client "$port" errors
client "$port" forced
client "$port" cut
stop

serve v31 --chat-format v3.1 --http-timeout 1 --header-timeout 0.5
client "$port" forced
client "$port" thinking
client "$port" long
stop

serve v32 --chat-format v3.2
client "$port" forced
client "$port" cut
stop

# Batch lines (generate --input) with forced calls
python3 - "$FURROW_SRCDIR/tests" > calls.jsonl <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1])
from tool_client import TOOLS
for k in range(3):
    print(json.dumps({"id": "c%d" % k, "messages": [{"role": "user", "content": "call %d" % k}], "tools": TOOLS,
                      "tool_choice": "required", "max_tokens": 400, "seed": k, "temperature": 0.5 * k}))
PY
"$FURROW_BIN" generate --model model --max-context 1024 --input calls.jsonl --output calls.out 2> calls.err ||
  { cat calls.err; bad "generate --input with tools"; }
python3 "$FURROW_SRCDIR/tests/tool_client.py" batch calls.out || fail=1

# The v3.2 format through a batch job: tools (auto) and thinking give reasoning_content (the random model never
# closes its thinking); forced calls write DSML parameters whose values are JSON (string="false"), which parse
# and validate; a forced call in thinking mode is refused by name
python3 - "$FURROW_SRCDIR/tests" > v32.jsonl <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1])
from tool_client import TOOLS
m = [{"role": "user", "content": "hi"}]
print(json.dumps({"id": "auto", "messages": m, "tools": TOOLS, "max_tokens": 8, "chat_template_kwargs": {"thinking": True}}))
print(json.dumps({"id": "think-forced", "messages": m, "tools": TOOLS, "tool_choice": "required",
                  "chat_template_kwargs": {"thinking": True}}))
for k, choice in enumerate(["required", {"type": "function", "function": {"name": "get_weather"}}, "required"]):
    print(json.dumps({"id": "forced%d" % k, "messages": m, "tools": TOOLS, "tool_choice": choice, "max_tokens": 400,
                      "seed": k, "temperature": 0.6 * k}))
PY
"$FURROW_BIN" generate --model model --max-context 1024 --chat-format v3.2 --input v32.jsonl --output v32.out 2> v32.err ||
  { cat v32.err; bad "generate --input --chat-format v3.2"; }
python3 - "$FURROW_SRCDIR/tests" v32.out <<'PY' && ok "v3.2 batch lines: reasoning_content split out; forced DSML calls validate; thinking + forced refused" || fail=1
import json, re, sys
sys.path.insert(0, sys.argv[1])
import jsonschema
from tool_client import SCHEMA
r = {x["id"]: x for x in map(json.loads, open(sys.argv[2]))}
a, t = r["auto"], r["think-forced"]
assert a["reasoning_content"] == a["text"] and a["content"] == "" and "tool_calls" not in a, a
assert "tool_choice" in t["error"]["message"], t
for k in range(3):
    f = r["forced%d" % k]
    assert f["finish_reason"] == "tool_calls" and len(f["tool_calls"]) == 1, f
    fn = f["tool_calls"][0]["function"]
    assert k != 1 or fn["name"] == "get_weather", f
    jsonschema.validate(json.loads(fn["arguments"]), SCHEMA[fn["name"]])
    # the text is DeepSeek-V3.2's DSML block, one parameter tag a JSON value
    body = '\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name="%s">\n' % fn["name"]
    assert f["text"].startswith(body) and f["text"].endswith("</｜DSML｜invoke>\n</｜DSML｜function_calls>"), f["text"]
    tags = re.findall(r'<｜DSML｜parameter name="(\w+)" string="false">', f["text"])
    assert tags == list(json.loads(fn["arguments"])), (tags, fn)
PY
# generate --chat: an object with messages and tools, the v3.1 format in thinking mode
"$FURROW_BIN" generate --model model --max-tokens 4 --chat-format v3.1 --thinking on \
  --chat '{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f"}}]}' \
  > chat.out 2> chat.err && ok "generate --chat with tools, --chat-format v3.1 --thinking on" || { cat chat.err; bad "generate --chat v3.1"; }

# --thinking on with the v3 format is refused at start
"$FURROW_BIN" serve --model model --port 0 --thinking on > v3think.log 2>&1 && bad "--thinking on with v3 started" ||
  { grep -q "thinking" v3think.log && ok "--thinking on is refused for the v3 format" || { cat v3think.log; bad "--thinking message"; }; }

# A model whose vocabulary (2048) stops short of the tool-call tokens
"$FURROW_BIN" synth --out small --preset tiny --quiet || { echo "FAIL: synth small"; exit 1; }
printf '%s\n' '{"id": "t", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}]}' \
  '{"id": "p", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}' > small.jsonl
"$FURROW_BIN" generate --model small --input small.jsonl --output small.out 2> small.err || { cat small.err; bad "generate --input"; }
grep '"t"' small.out | grep -q "'tools'.*vocabulary" && ok "tools on a model without the tool-call tokens: the error names 'tools'" ||
  { cat small.out; bad "the small model's tools error"; }
grep '"p"' small.out | grep -q '"finish_reason"' || { cat small.out; bad "the plain line beside it"; }
exit $fail
