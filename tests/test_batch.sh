#!/bin/sh
# Batch jobs (generate --input/--output) on a synthetic model: greedy results
# equal generate --prompt-tokens; the same output with a KV cache too small for
# all requests (preemption), on tp 2 and on pp 2; kill -9 at random moments,
# then a rerun, several times: the final output equals an uninterrupted run's,
# one complete line per id; bad input lines are refused without losing work;
# a second job on the same output is refused.
set -u
. "$FURROW_SRCDIR/tests/mpi.sh"
fail=0
cd "$FURROW_TMP" || exit 1
"$FURROW_BIN" synth --out model --preset tiny --quiet || { echo "FAIL: synth"; exit 1; }
run() { "$FURROW_BIN" generate --model model --max-context 64 "$@"; }
t0=$(date +%s)
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }

# 60 requests: token ids, text, chats; greedy and seeded sampling; stops.
python3 - > in.jsonl <<'EOF'
import json, random
r = random.Random(1)
for i in range(60):
    d = {"id": "r%d" % i if i % 7 else i, "max_tokens": r.randint(1, 24), "temperature": 0 if i % 2 == 0 else 0.9, "seed": i}
    k = i % 4
    if k == 0: d["prompt_tokens"] = [r.randrange(2048) for _ in range(r.randint(1, 12))]
    elif k == 1: d["prompt"] = "Bonjour %d, le monde! 東京は晴れ。" % i
    elif k == 2: d["messages"] = [{"role": "user", "content": "question %d" % i}]
    else:
        d["prompt_tokens"] = [r.randrange(2048) for _ in range(r.randint(1, 12))]
        d.update(top_k=20, top_p=0.9, min_p=0.01, frequency_penalty=0.5, repetition_penalty=1.2, stop_token_ids=[5])
    if k == 1 and i % 8 == 1: d.update(top_k=30, top_p=0.95)  # sampled from the shards' top-k candidates
    if i % 5 == 0: d["stop"] = ["e", "a"]
    if i % 9 == 0: d["logprobs"] = 2
    print(json.dumps(d, ensure_ascii=False))
EOF
run --input in.jsonl --output ref.jsonl 2> ref.err || { cat ref.err; bad "the uninterrupted run"; }
[ "$(wc -l < ref.jsonl)" -eq 60 ] && ok "60 result lines" || bad "$(wc -l < ref.jsonl) result lines, expected 60"

# Greedy token-id requests equal single-sequence generate.
python3 - > greedy.txt <<'EOF'
import json
for line in open("in.jsonl"):
    d = json.loads(line)
    if d["temperature"] == 0 and "prompt_tokens" in d and "stop" not in d and d["id"] in ("r4", "r8", "r12", "r16"):
        print(d["id"], ",".join(map(str, d["prompt_tokens"])), d["max_tokens"])
EOF
n=0
while read -r id ids max; do
  want=$("$FURROW_BIN" generate --model model --prompt-tokens "$ids" --max-tokens "$max" 2>/dev/null | tr -d '[] ')
  got=$(python3 -c "import json,sys
for l in open('ref.jsonl'):
    d = json.loads(l)
    if str(d['id']) == sys.argv[1]: print(','.join(map(str, d['tokens'])))" "$id")
  [ "$got" = "$want" ] || bad "request $id: batch gave $got, generate $want"
  n=$((n + 1))
done < greedy.txt
ok "$n greedy requests equal generate --prompt-tokens"
python3 - <<'EOF2' || fail=1
import json
req = {str(d["id"]): d for d in map(json.loads, open("in.jsonl", encoding="utf-8"))}
n = 0
for d in map(json.loads, open("ref.jsonl", encoding="utf-8")):
    r = req[str(d["id"])]
    assert len(d["tokens"]) <= r["max_tokens"] and d["usage"]["completion_tokens"] == len(d["tokens"]), d
    assert d["finish_reason"] == "stop" or len(d["tokens"]) == r["max_tokens"], d
    if "stop" in r:
        assert not any(s in d["text"] for s in r["stop"]), d
        n += d["finish_reason"] == "stop" and len(d["tokens"]) < r["max_tokens"]
    if "logprobs" in r:
        assert len(d["logprobs"]) == len(d["tokens"]) and all(len(x["top"]) == 2 for x in d["logprobs"]), d
print("ok: lengths, finish reasons, logprobs; stop strings cut the text (%d requests stopped on one)" % n)
EOF2

same() { # NAME FILE: the same results by id (logprobs within 1e-4), one line each
  if python3 "$FURROW_SRCDIR/tests/batch_compare.py" ref.jsonl "$2" > cmp.txt; then ok "$1"
  else bad "$1: differs"; head -n 5 cmp.txt; fi
}
run --input in.jsonl --output small.jsonl --kv-blocks 20 --block-size 4 2> small.err
grep -q " [1-9][0-9]* preemptions" small.err && ok "a cache of 20 blocks of 4 preempts" || bad "no preemption: $(cat small.err)"
same "a cache too small for all requests gives the same results" small.jsonl
run --input in.jsonl --output budget.jsonl --token-budget 7 --max-batch 3 2>/dev/null
n_b=$(python3 "$FURROW_SRCDIR/tests/batch_compare.py" ref.jsonl budget.jsonl > /dev/null && echo same || echo differs)
echo "info: token budget 7, batch 3 (prompts in chunks): $n_b"
fw_mpirun 120 2 "$FURROW_BIN" generate --model model --max-context 64 --input in.jsonl --output tp2.jsonl --tp 2 2>/dev/null
same "tp 2" tp2.jsonl
fw_mpirun 120 2 "$FURROW_BIN" generate --model model --max-context 64 --input in.jsonl --output pp2.jsonl --pp 2 \
  --kv-blocks 20 --block-size 4 2>/dev/null
same "pp 2 with preemptions" pp2.jsonl

# kill -9 at random moments, then rerun; then finish. Each round waits (bounded)
# until a few more lines are out, so the kills land mid-job at any speed.
rm -f resumed.jsonl
lines() { cat resumed.jsonl 2>/dev/null | wc -l; }
for step in 3 7 2 9 4 5; do
  want=$(($(lines) + step))
  "$FURROW_BIN" generate --model model --max-context 64 --input in.jsonl --output resumed.jsonl --kv-blocks 20 \
    --block-size 4 2>/dev/null &
  pid=$! # furrow itself, not a subshell: the kill must hit the writer
  i=0
  while [ "$(lines)" -lt $want ] && [ $i -lt 600 ] && kill -0 $pid 2>/dev/null; do sleep 0.05; i=$((i + 1)); done
  sleep "0.0$step"
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  printf '%s ' "$(lines)"
done
echo "lines after each kill -9"
run --input in.jsonl --output resumed.jsonl --kv-blocks 20 --block-size 4 2> resumed.err || bad "the final rerun failed"
python3 - resumed.jsonl <<'EOF' || fail=1
import json, sys
ids = [json.loads(l)["id"] for l in open(sys.argv[1], encoding="utf-8")]
if len(ids) != len(set(ids)): print("FAIL: duplicate ids after kill -9 and reruns"); sys.exit(1)
print("ok: %d whole lines, no duplicates, after kill -9 and reruns" % len(ids))
EOF
same "kill -9 six times then a rerun equals an uninterrupted run" resumed.jsonl
run --input in.jsonl --output resumed.jsonl 2> again.err
grep -q "60 of 60 ids already" again.err && [ "$(wc -l < resumed.jsonl)" -eq 60 ] && ok "a complete output is not redone" ||
  bad "rerun on a complete output: $(cat again.err)"

# A torn last line is cut and redone.
head -n 59 ref.jsonl > torn.jsonl && tail -n 1 ref.jsonl | head -c 20 >> torn.jsonl
run --input in.jsonl --output torn.jsonl 2>/dev/null
same "a torn last line is replaced" torn.jsonl

# Bad input: refused with the line, the output untouched.
cp ref.jsonl keep.jsonl
printf '{"id": "x", "prompt_tokens": [1]}\n{"prompt_tokens": [1]}\n' > noid.jsonl
run --input noid.jsonl --output keep.jsonl 2> err.txt && bad "a line without id was accepted" ||
  { grep -q "noid.jsonl:2" err.txt && ok "a line without id is refused with its line number" || bad "$(cat err.txt)"; }
printf '{"id": 1, "prompt_tokens": [1]}\n{"id": 1, "prompt_tokens": [2]}\n' > dup.jsonl
run --input dup.jsonl --output keep.jsonl 2> err.txt && bad "a repeated id was accepted" || ok "a repeated id is refused"
cmp -s keep.jsonl ref.jsonl && ok "refused input leaves the output as it was" || bad "the output changed"
printf '{"id": "neg", "prompt_tokens": [1], "max_tokens": -3}\n{"id": "t", "prompt_tokens": [1], "temperature": "hot"}\n{"id": "s", "prompt_tokens": [1], "stop_token_ids": [4294967297]}\n{"id": "z", "prompt_tokens": [1], "stop": ["\\u0000x"]}\n' > vals.jsonl
run --input vals.jsonl --output vals.out 2>/dev/null
python3 - vals.out <<'EOF' || fail=1
import json, sys
d = {str(x["id"]): x for x in map(json.loads, open(sys.argv[1]))}
assert d["neg"]["error"]["code"] == 422 and d["t"]["error"]["code"] == 400, d
assert d["s"]["error"]["code"] == 422 and "outside the vocabulary" in d["s"]["error"]["message"], d
assert d["z"]["error"]["code"] == 422 and "NUL" in d["z"]["error"]["message"], d
print("ok: invalid values get error lines (422 range, 400 type, stop ids outside the vocabulary, NUL in a stop)")
EOF

# An input that is no file of requests is refused; an empty one is no work.
mkdir -p adir
run --input adir --output dir.out 2> err.txt && bad "a directory as --input was accepted" ||
  { grep -q "adir: .*directory" err.txt && ok "a directory as --input is refused" || bad "$(cat err.txt)"; }
: > empty.jsonl
run --input empty.jsonl --output empty.out 2> err.txt && [ ! -s empty.out ] && ok "an empty input is no work" ||
  bad "empty input: $(cat err.txt)"

# Two jobs on one output: the second refuses to start while the first runs.
python3 -c 'import json
for i in range(40): print(json.dumps({"id": i, "prompt_tokens": [1, 2, 3], "max_tokens": 60, "ignore_eos": True}))' > long.jsonl
"$FURROW_BIN" generate --model model --max-context 64 --max-batch 1 --input long.jsonl --output shared.jsonl \
  2>/dev/null &
pid=$!
i=0
while [ ! -e shared.jsonl ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
run --input long.jsonl --output shared.jsonl 2> err.txt
rc=$?
if kill -0 $pid 2>/dev/null; then
  [ $rc -eq 1 ] && grep -q "another batch job is writing it" err.txt && ok "a second job on the same output is refused" ||
    bad "a second job on the same output: exit $rc, $(cat err.txt)"
else
  echo "info: the first job ended before the second started; the lock was not exercised"
fi
kill $pid 2>/dev/null
wait $pid 2>/dev/null
echo "info: $(($(date +%s) - t0)) s"
exit $fail
