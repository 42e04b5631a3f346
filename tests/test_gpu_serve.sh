#!/bin/sh
# Batch jobs and the HTTP server on the GPU, over the device's paged KV cache
# (block tables from the scheduler), on the golden tiny BF16 checkpoint:
# - one request at a time (--max-batch 1) in blocks of 16 equals single-sequence
#   `generate --device cuda` token for token (the same kernels and shapes; only
#   where the cache rows live differs);
# - 8 at a time in a cache too small for all (preemption) completes every
#   request; first tokens (prefill, run alone) are equal, and most requests are
#   equal throughout (a batched decode sums in another order, so a near-tie in
#   this random model's routing may flip; a wrong block table changes nearly all);
# - the prefix cache on and off give the same tokens on requests sharing a
#   prefix (cached blocks read through the device's block tables);
# - furrow serve --device cuda answers concurrent completions with the same
#   greedy tokens as the batch job;
# - JSON output (response_format) on the GPU: constrained requests take the
#   row of logits to the host sampler, so their outputs parse and validate
#   (tests/json_client.py), greedy and sampled, beside free-text requests.
# Skipped (77) without a GPU.
set -u
. "$FURROW_SRCDIR/tests/mpi.sh"
golden=${FURROW_SHARED:-}/golden
[ -n "${FURROW_SHARED:-}" ] && [ -d "$golden" ] || { echo "SKIP: no shared/golden"; exit 77; }
[ -x "$FURROW_BUILDDIR/furrow-cuda" ] || { echo "SKIP: no furrow-cuda"; exit 77; }
nvidia-smi -L 2> /dev/null | grep -q '^GPU' || { echo "SKIP: no GPU"; exit 77; }
fail=0
cd "$FURROW_TMP" || exit 1
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }
"$FURROW_BIN" convert --hf "$golden/tiny-a-bf16" --out model --quiet || { echo "FAIL: convert"; exit 1; }
ctx=160

# 24 greedy token-id requests, prompts of 1 to 40 tokens, up to 48 new tokens:
# sequences cross several blocks of 16.
python3 - > in.jsonl <<'PY'
import json, random
r = random.Random(5)
for i in range(24):
    n = [1, 15, 16, 17, 40][i % 5] if i < 10 else r.randint(1, 40)
    print(json.dumps({"id": "g%d" % i, "prompt_tokens": [r.randrange(1, 2000) for _ in range(n)],
                      "max_tokens": r.randint(8, 48), "temperature": 0}))
PY
gen() { fw_mpirun 300 1 "$FURROW_BIN" generate --device cuda --model model --max-context $ctx "$@"; }
gen --input in.jsonl --output one.jsonl --max-batch 1 --block-size 16 2> one.err || { cat one.err; bad "batch, max-batch 1"; }
[ "$(wc -l < one.jsonl)" -eq 24 ] && ok "24 results one at a time" || bad "$(wc -l < one.jsonl) results, expected 24"

# Single-sequence generate of each request (the engine's own cache).
python3 -c "
import json
for l in open('in.jsonl'):
    d = json.loads(l)
    print(d['id'], ','.join(map(str, d['prompt_tokens'])), d['max_tokens'])" > reqs.txt
n=0
while read -r id ids max; do
  want=$(fw_mpirun 300 1 "$FURROW_BIN" generate --device cuda --model model --prompt-tokens "$ids" \
    --max-tokens "$max" < /dev/null 2> gen.err | tr -d '[] ')
  [ -n "$want" ] || { cat gen.err; bad "generate $id"; continue; }
  got=$(python3 -c "import json,sys
for l in open('one.jsonl'):
    d = json.loads(l)
    if d['id'] == sys.argv[1]: print(','.join(map(str, d['tokens'])))" "$id")
  [ "$got" = "$want" ] || bad "request $id: batch job gave $got, generate $want"
  n=$((n + 1))
done < reqs.txt
ok "$n requests in the paged cache equal generate --prompt-tokens"

# 8 at a time, 24 blocks of 16 for up to 8 sequences of up to 88 positions: preemption.
gen --input in.jsonl --output many.jsonl --max-batch 8 --block-size 16 --kv-blocks 24 2> many.err ||
  { cat many.err; bad "batch, max-batch 8"; }
grep -q " [1-9][0-9]* preemptions" many.err && ok "24 blocks of 16 preempt" || bad "no preemption: $(tail -n 3 many.err)"
python3 - <<'PY' || fail=1
import json
a = {d["id"]: d for d in map(json.loads, open("one.jsonl"))}
b = {d["id"]: d for d in map(json.loads, open("many.jsonl"))}
assert set(a) == set(b) and len(b) == 24, "ids differ"
req = {d["id"]: d for d in map(json.loads, open("in.jsonl"))}
for k, d in b.items():
    assert len(d["tokens"]) == req[k]["max_tokens"] or d["finish_reason"] == "stop", d
    assert d["tokens"][0] == a[k]["tokens"][0], (k, "first token", d["tokens"][0], a[k]["tokens"][0])
same = sum(a[k]["tokens"] == b[k]["tokens"] for k in a)
print("ok: 8 at a time: every request complete, first tokens equal, %d of 24 equal throughout" % same)
assert same >= 16, "only %d of 24 requests equal to one at a time" % same
PY

# The prefix cache on the GPU: requests sharing a 40-token prefix (whole blocks
# of 16 and a part), some prompts twice, one at a time with the cache on and off:
# the cached blocks are read through the device's block tables, so the tokens
# agree (a prefill after cached blocks runs in other shapes: a near-tie may flip).
python3 - > shared.jsonl <<'PY'
import json, random
r = random.Random(6)
system = [r.randrange(1, 2000) for _ in range(40)]
for i in range(12):
    p = system + [r.randrange(1, 2000) for _ in range(1 + i % 5)] if i < 9 else system[:17 + i]
    for k in range(1 + (i % 3 == 0)):
        print(json.dumps({"id": "s%d-%d" % (i, k), "prompt_tokens": p, "max_tokens": 12, "temperature": 0}))
PY
for c in off on; do
  gen --input shared.jsonl --output shared_$c.jsonl --max-batch 1 --block-size 16 --prefix-cache $c 2> shared_$c.err ||
    { cat shared_$c.err; bad "shared prefixes, the cache $c"; }
done
python3 - <<'PY' || fail=1
import json
a = {d["id"]: d for d in map(json.loads, open("shared_off.jsonl"))}
b = {d["id"]: d for d in map(json.loads, open("shared_on.jsonl"))}
assert set(a) == set(b) and len(b) == 16, "ids differ"
cached = [b[k]["usage"]["prompt_tokens_details"]["cached_tokens"] for k in b]
assert sum(cached) > 0 and all(c % 16 == 0 and c < b[k]["usage"]["prompt_tokens"] for k, c in zip(b, cached)), cached
first = sum(a[k]["tokens"][0] == b[k]["tokens"][0] for k in a)
same = sum(a[k]["tokens"] == b[k]["tokens"] for k in a)
print("ok: prefix cache on the GPU: %d prompt tokens cached; first tokens equal %d of 16, all tokens %d of 16"
      % (sum(cached), first, same))
assert first >= 14 and same >= 12, "the cache on differs from off beyond near-ties"
PY

# The server: 8 concurrent greedy completions equal the batch job one at a time.
rm -f port
fw_mpirun 300 1 "$FURROW_BIN" serve --device cuda --model model --port 0 --port-file port --max-context $ctx \
  --max-batch 8 > serve.log 2>&1 &
job=$!
i=0
while [ ! -s port ] && [ $i -lt 900 ] && kill -0 $job 2>/dev/null; do sleep 0.2; i=$((i + 1)); done
port=$(cat port 2>/dev/null)
pid=$(sed -n 's/.*; pid \([0-9]*\)$/\1/p' serve.log | head -n 1)
if [ -z "$port" ] || [ -z "$pid" ]; then
  cat serve.log; bad "the server did not start"; kill $job
else
  python3 - "$port" <<'PY' || fail=1
import json, sys, threading, urllib.request
port = sys.argv[1]
reqs = [json.loads(l) for l in open("in.jsonl")][:8]
want = {d["id"]: d["tokens"] for d in map(json.loads, open("one.jsonl"))}
got = {}
def ask(d):
    body = json.dumps({"prompt": d["prompt_tokens"], "max_tokens": d["max_tokens"], "temperature": 0}).encode()
    r = urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:%s/v1/completions" % port, body,
                                                      {"Content-Type": "application/json"}), timeout=120)
    got[d["id"]] = json.loads(r.read())
ts = [threading.Thread(target=ask, args=(d,)) for d in reqs]
[t.start() for t in ts]
[t.join() for t in ts]
assert len(got) == 8, "%d of 8 answers" % len(got)
same = 0
for k, r in got.items():
    ids = r["choices"][0]["token_ids"]
    assert r["usage"]["completion_tokens"] == len(ids) and ids and ids[0] == want[k][0], (k, r, want[k])
    same += ids == want[k]
print("ok: serve --device cuda: 8 concurrent completions, first tokens equal the batch job's, %d of 8 equal "
      "throughout" % same)
assert same >= 5, "only %d of 8 completions equal to one at a time" % same
PY
  kill -TERM "$pid"
  wait $job || bad "the server did not stop cleanly on SIGTERM: $(tail -n 3 serve.log)"
fi
# JSON output on the GPU (the checkpoint gets DeepSeek-V3's tokenizer).
if python3 -c "import jsonschema" 2>/dev/null; then
  cp "$FURROW_SHARED/tokenizer/deepseek-v3/tokenizer.json" "$FURROW_SHARED/tokenizer/deepseek-v3/tokenizer_config.json" \
    model/
  rm -f port
  fw_mpirun 600 1 "$FURROW_BIN" serve --device cuda --model model --port 0 --port-file port --max-context 1024 \
    --max-batch 16 > serve_json.log 2>&1 &
  job=$!
  i=0
  while [ ! -s port ] && [ $i -lt 900 ] && kill -0 $job 2>/dev/null; do sleep 0.2; i=$((i + 1)); done
  port=$(cat port 2>/dev/null)
  pid=$(sed -n 's/.*; pid \([0-9]*\)$/\1/p' serve_json.log | head -n 1)
  if [ -z "$port" ] || [ -z "$pid" ]; then
    cat serve_json.log; bad "the JSON server did not start"; kill $job
  else
    python3 "$FURROW_SRCDIR/tests/json_client.py" "$port" schemas || fail=1
    python3 "$FURROW_SRCDIR/tests/json_client.py" "$port" object || fail=1
    kill -TERM "$pid"
    wait $job || bad "the JSON server did not stop cleanly: $(tail -n 3 serve_json.log)"
  fi
else
  echo "skip: JSON output on the GPU (python3-jsonschema is not installed)"
fi
exit $fail
