#!/bin/sh
# The prefix cache (--prefix-cache) through batch jobs on a synthetic model:
# requests that share prefixes (a system prompt ending mid-block, few-shot
# examples, whole prompts again, a prompt of whole blocks, a second turn that
# holds the first turn's answer) give the same greedy tokens with the cache on
# as with it off: with blocks of 16 and of 4, in a pool so small that cached
# blocks are evicted and requests preempted, on tp 2 and on pp 2 under mpirun;
# with the reference kernels, logprobs after cached prompt blocks are the same
# to the bit.
set -u
. "$FURROW_SRCDIR/tests/mpi.sh"
fail=0
cd "$FURROW_TMP" || exit 1
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }
"$FURROW_BIN" synth --out model --preset tiny --quiet || { echo "FAIL: synth"; exit 1; }
run() { "$FURROW_BIN" generate --model model --max-context 128 --max-batch 3 "$@"; }

# First turns and shared prefixes.
python3 - > turn1.jsonl <<'EOF'
import json, random
r = random.Random(7)
rand = lambda n: [r.randrange(2048) for _ in range(n)]
system = rand(37)                        # 2 blocks of 16 and 5 tokens; 9 blocks of 4 and 1
shots = [rand(11) for _ in range(3)]
reqs = []
for i in range(8):                       # the system prompt, then a question of 1-12 tokens
    reqs.append(system + rand(1 + i * 11 % 12))
for k in range(1, 4):                    # few-shot: k examples, then a question
    reqs.append(sum(shots[:k], []) + rand(3 + k))
reqs.append(rand(32))                    # whole blocks only: the repeat recomputes the last block
reqs.append(rand(17))                    # the repeat computes one token after a cached block
for i, p in enumerate(reqs):
    d = {"id": "a%d" % i, "prompt_tokens": p, "max_tokens": 4 + i % 9, "temperature": 0}
    if i % 2: d["logprobs"] = 1          # the whole row on rank 0; the others take the max-loc path
    print(json.dumps(d))
EOF
run --input turn1.jsonl --output turn1.out --prefix-cache off 2>/dev/null || bad "the first turns"

# Everything: the first turns, their prompts again, and second turns that hold the first answers.
python3 - > in.jsonl <<'EOF'
import json, random
r = random.Random(8)
first = [json.loads(l) for l in open("turn1.jsonl")]
out = {d["id"]: d for d in map(json.loads, open("turn1.out"))}
for d in first:
    print(json.dumps(d))
for d in first[:11:2] + first[-2:]:        # the same prompts again: all cached but their last block
    print(json.dumps(dict(d, id="again-" + d["id"])))
for d in first[:8:3]:                    # the next turn: prompt, answer, a new question
    p = d["prompt_tokens"] + out[d["id"]]["tokens"] + [r.randrange(2048) for _ in range(5)]
    print(json.dumps(dict(d, id="next-" + d["id"], prompt_tokens=p, logprobs=1)))
EOF

cached() { sed -n 's/.*prefix cache on: \([0-9]*\) of.*/\1/p' "$1"; }
evictions() { sed -n 's/.* \([0-9]*\) evictions;.*/\1/p' "$1"; }
preemptions() { sed -n 's/.* \([0-9]*\) preemptions;.*/\1/p' "$1"; }
same() { # NAME FILE: the same tokens, text and finish as the cache off
  if [ "$(wc -l < "$2")" -ne "$(wc -l < in.jsonl)" ]; then bad "$1: $(wc -l < "$2") result lines"
  elif python3 "$FURROW_SRCDIR/tests/batch_compare.py" off.jsonl "$2" > cmp.txt; then ok "$1 ($(tail -n 1 cmp.txt))"
  else bad "$1: differs from the cache off"; head -n 5 cmp.txt; fi
}
run --input in.jsonl --output off.jsonl --prefix-cache off 2> off.err || bad "the cache off: $(cat off.err)"
run --input in.jsonl --output on.jsonl --prefix-cache on 2> on.err || bad "the cache on: $(cat on.err)"
[ "$(cached on.err)" -gt 0 ] && ok "blocks of 16: $(cached on.err) prompt tokens cached" || bad "no hits: $(tail -n 1 on.err)"
same "blocks of 16" on.jsonl
python3 - on.jsonl <<'EOF' || fail=1
import json, sys
d = {x["id"]: x for x in map(json.loads, open(sys.argv[1]))}
c = lambda k: d[k]["usage"]["prompt_tokens_details"]["cached_tokens"]
assert c("again-a12") == 16, c("again-a12")          # 17 tokens: one block, the 17th computed
assert c("again-a11") == 16, c("again-a11")          # 32 tokens: at most 31 from the cache
assert c("again-a0") == 32 and c("next-a0") >= 32, (c("again-a0"), c("next-a0"))
assert all(c(k) % 16 == 0 and c(k) < d[k]["usage"]["prompt_tokens"] for k in d), d
print("ok: cached_tokens: whole blocks, never the last token; a repeated prompt and the next turn hit")
EOF

# 20 blocks of 4: one request of --max-context 80 fits, three at once do not.
run --input in.jsonl --output small.jsonl --prefix-cache on --block-size 4 --kv-blocks 20 --max-context 80 2> small.err ||
  bad "a small pool: $(cat small.err)"
[ "$(evictions small.err)" -gt 0 ] && [ "$(preemptions small.err)" -gt 0 ] && [ "$(cached small.err)" -gt 0 ] &&
  ok "20 blocks of 4: $(cached small.err) tokens cached, $(evictions small.err) evictions, $(preemptions small.err) preemptions" ||
  bad "a small pool should hit, evict and preempt: $(tail -n 1 small.err)"
same "blocks of 4, eviction and preemption" small.jsonl

fw_mpirun 200 2 "$FURROW_BIN" generate --model model --max-context 128 --max-batch 3 --input in.jsonl \
  --output tp2.jsonl --tp 2 --prefix-cache on 2> tp2.err || bad "tp 2: $(tail -n 3 tp2.err)"
[ "$(cached tp2.err)" = "$(cached on.err)" ] || bad "tp 2 cached $(cached tp2.err) tokens, one rank $(cached on.err)"
same "tp 2" tp2.jsonl
fw_mpirun 200 2 "$FURROW_BIN" generate --model model --max-context 80 --max-batch 3 --input in.jsonl \
  --output pp2.jsonl --pp 2 --prefix-cache on --block-size 4 --kv-blocks 20 2> pp2.err || bad "pp 2: $(tail -n 3 pp2.err)"
[ "$(evictions pp2.err)" -gt 0 ] && [ "$(preemptions pp2.err)" -gt 0 ] ||
  bad "pp 2 should evict and preempt: $(tail -n 1 pp2.err)"
same "pp 2, 20 blocks of 4" pp2.jsonl

# The reference kernels give a token the same bits in a chunk of any size: a
# prompt after cached prompt blocks gets the same logprobs to the bit. A block of
# generated tokens was computed one token at a time (absorbed attention), not as
# a prefill: the next turn after it differs by float rounding only.
run --input in.jsonl --output ref_off.jsonl --prefix-cache off --kernels ref 2>/dev/null
run --input in.jsonl --output ref_on.jsonl --prefix-cache on --kernels ref 2>/dev/null
python3 - ref_off.jsonl ref_on.jsonl <<'EOF' || fail=1
import json, sys
a, b = ({d["id"]: d for d in map(json.loads, open(f))} for f in sys.argv[1:])
assert a.keys() == b.keys()
diff = lambda k: max(abs(p["logprob"] - q["logprob"]) for p, q in zip(a[k]["logprobs"], b[k]["logprobs"]))
lp = [k for k in a if a[k].get("logprobs")]
assert all(a[k]["tokens"] == b[k]["tokens"] for k in a), "tokens differ"
assert all(diff(k) == 0 for k in lp if not k.startswith("next-")), [(k, diff(k)) for k in lp]
assert all(diff(k) < 1e-5 for k in lp), [(k, diff(k)) for k in lp]
print("ok: reference kernels: the same bits after cached prompts; next turns within %.3g" % max(map(diff, lp)))
EOF

run --input in.jsonl --output bad.jsonl --prefix-cache maybe 2> err.txt
[ $? -eq 2 ] && grep -q -- "--prefix-cache: expected on or off" err.txt && ok "--prefix-cache maybe: a usage error" ||
  bad "--prefix-cache maybe: $(cat err.txt)"
exit $fail
