#!/bin/sh
# JSON output (response_format) on the tiny synthetic model, whose random
# weights write no JSON by themselves: furrow serve on tp 2 (the leader samples
# constrained requests from the gathered row) with a Python client
# (tests/json_client.py): JSON-schema outputs for several schemas and seeds,
# greedy and sampled, streamed and not, parse and validate with jsonschema;
# json_object outputs are one object, or its beginning when max_tokens cuts them;
# bad fields get 400s naming them; /metrics counts them. Then generate --input lines with
# response_format, on one rank and on pp 2.
set -u
. "$FURROW_SRCDIR/tests/mpi.sh"
fail=0
cd "$FURROW_TMP" || exit 1
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }
client() { python3 "$FURROW_SRCDIR/tests/json_client.py" "$@" || fail=1; }
python3 -c "import jsonschema" 2>/dev/null || { echo "SKIP: python3-jsonschema is not installed"; exit 77; }
"$FURROW_BIN" synth --out model --preset tiny --quiet || { echo "FAIL: synth"; exit 1; }

rm -f port
fw_mpirun 900 2 "$FURROW_BIN" serve --model model --port 0 --port-file port --tp 2 --max-context 1024 \
  > serve.log 2>&1 &
job=$!
i=0
while [ ! -s port ] && [ $i -lt 600 ] && kill -0 $job 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
port=$(cat port 2>/dev/null)
pid=$(sed -n 's/.*; pid \([0-9]*\)$/\1/p' serve.log | head -n 1)
[ -n "$port" ] && [ -n "$pid" ] || { cat serve.log; echo "FAIL: the server did not start"; kill $job; exit 1; }

client "$port" errors
client "$port" schemas
client "$port" object
curl -s "http://127.0.0.1:$port/metrics" > m.txt
awk '$1 == "furrow_json_requests_total" { r = $2 } $1 == "furrow_json_mask_cache_hits_total" { h = $2 }
  $1 == "furrow_json_mask_cache_misses_total" { m = $2 } $1 == "furrow_json_mask_seconds_total" { s = $2 }
  END { exit !(r >= 37 && h > m && m > 0 && s > 0) }' m.txt &&
  ok "/metrics counts the JSON requests, their masks' cache hits and misses and time" ||
  bad "/metrics: $(grep furrow_json m.txt)"
kill -TERM "$pid"
wait $job || { bad "the server's exit"; cat serve.log; }

# Batch lines with response_format (and one with a bad schema).
python3 - "$FURROW_SRCDIR/tests" > in.jsonl <<'EOF'
import json, sys
sys.path.insert(0, sys.argv[1])
from json_client import SCHEMAS, fmt
for name in SCHEMAS:
    for k in range(3):
        d = {"id": "%s-%d" % (name, k), "max_tokens": 700, "response_format": fmt(name), "seed": k,
             "temperature": 0 if k == 0 else 0.8, "prompt": "%s %d" % (name, k)}
        print(json.dumps(d))
print(json.dumps({"id": "free-0", "max_tokens": 20, "prompt": "free text"}))
print(json.dumps({"id": "bad-0", "prompt": "x", "response_format": {"type": "json_schema", "json_schema": {
    "name": "x", "schema": {"type": "object", "properties": {"n": {"type": "float"}}}}}}))
EOF
ids=person-0,person-1,person-2,order-0,order-1,order-2,point-0,point-1,point-2,bad-0
"$FURROW_BIN" generate --model model --max-context 1024 --input in.jsonl --output out.jsonl 2> gen.err ||
  { cat gen.err; bad "generate --input"; }
grep -v '"free-0"' out.jsonl > json.jsonl
client check json.jsonl "$ids"
fw_mpirun 300 2 "$FURROW_BIN" generate --model model --max-context 1024 --input in.jsonl --output pp2.jsonl --pp 2 \
  2> pp2.err || { cat pp2.err; bad "generate --input on pp 2"; }
python3 - out.jsonl pp2.jsonl <<'EOF' && ok "pp 2 gives the same JSON outputs as one rank" || fail=1
import json, sys
a, b = ({json.dumps(r["id"]): r.get("text") for r in map(json.loads, open(p))} for p in sys.argv[1:])
greedy = [k for k in a if k.endswith('-0"') or k == '"free-0"']
diff = [k for k in greedy if a[k] != b.get(k)]
if diff or len(a) != len(b):
    print("FAIL: pp 2 differs on greedy ids %s (%d vs %d lines)" % (diff, len(a), len(b)))
    sys.exit(1)
EOF
exit $fail
