#!/bin/sh
# Speculative decoding with the MTP layer on the GPU (--device cuda --speculative mtp:K):
# - gpu_mtp_check: the hidden states a step hands the MTP layer, the MTP layer's
#   logits (one pass, and a chunk then decode over its own cache rows), and
#   verification steps of 1 + K tokens (against one-token decodes, as a CUDA
#   graph after a rollback, batched) against the CPU and each other, on a
#   synthetic checkpoint with a random MTP layer;
# - greedy tokens with mtp:1 and mtp:2 equal those without, a batch of prompts
#   of different lengths and one prompt alone, with the decode graphs and
#   without, on a checkpoint whose MTP layer drafts well (mtp_craft, as
#   test_mpi_speculative): drafts accepted and rejected, so a rejected draft's
#   cache rows left in place would change the tokens after it; and a batch job
#   of 12 requests 8 at a time over too few blocks (preemption);
# - the GPU's acceptance counts against the CPU's on the same checkpoint (the
#   crafted drafts are clear, so the GPU's MTP layer must accept as the CPU's);
# - furrow bench --device cuda --speculative mtp:1: the step times and the
#   acceptance line.
# Every failure prints what differs (first differing token and its logits' gap, counts, stderr).
# Skipped (77) without a GPU.
set -u
. "$FURROW_SRCDIR/tests/mpi.sh"
[ -x "$FURROW_BUILDDIR/furrow-cuda" ] || { echo "SKIP: no furrow-cuda"; exit 77; }
nvidia-smi -L 2> /dev/null | grep -q '^GPU' || { echo "SKIP: no GPU"; exit 77; }
T=$FURROW_TMP
furrow=$FURROW_BIN
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }

"$furrow" synth --out "$T/r" --bf16 --mtp 1 --seed 5 --quiet || { echo "FAIL: synth"; exit 1; }
echo "== gpu_mtp_check (the pieces against the CPU)"
"$FURROW_BUILDDIR/tests/gpu_mtp_check" "$T/r"
rc=$?
[ $rc = 0 ] && ok "gpu_mtp_check" || bad "gpu_mtp_check exited $rc"

"$FURROW_BUILDDIR/tests/mtp_craft" "$T/r" "$T/m" 0.1 || { echo "FAIL: mtp_craft"; exit 1; }
batch="--prompt-tokens 5,6,7,8 --prompt-tokens 100,200 --prompt-tokens 9,9,9,9,9,9,9 --prompt-tokens 1500"
gen() {  # name, device, flags...: the ids on stdout to $T/name.out, stderr to $T/name.err
  n=$1 dev=$2; shift 2
  fw_mpirun 300 1 "$furrow" generate --device "$dev" --model "$T/m" --max-tokens 40 --ignore-eos "$@" \
    > "$T/$n.out" 2> "$T/$n.err" || { cat "$T/$n.err"; bad "$n: generate failed"; }
}
# Drafts accepted and proposed at position $2 of run $1.
accepted() { sed -n "s/^furrow generate: draft $2 accepted \([0-9]*\) of \([0-9]*\).*/\1 \2/p" "$T/$1.err"; }
# Run $2's tokens against run $1's (prompts $3, ';'-separated), sequence by
# sequence: where one differs, its first differing token, and whether the two
# choices nearly tie there (logits_compare --gap over the GPU's logits of the prompt and
# the tokens before it: within NEAR of max |logit|). A verify step sums in
# another order than a one-token step (as a batch does), so a near-tie may flip
# and the rest of that sequence differs; at most one sequence of a comparison
# may ($4 of a batch job, whose steps batch differently with speculation), and
# only there. A rejected draft's rows left in place, or a wrong
# position, changes tokens where the choice is clear.
NEAR=1e-2
same() {
  python3 - "$T/$1.out" "$T/$2.out" "$3" > "$T/diff.$1.$2" <<'PY'
import re, sys
def seqs(p):
    return [[int(x) for x in re.findall(r"-?\d+", l)] for l in open(p) if l.strip()]
a, b = seqs(sys.argv[1]), seqs(sys.argv[2])
prompts = [p.split(",") for p in sys.argv[3].split(";")]
if len(a) != len(b) or len(a) != len(prompts):
    print("COUNT %d sequences against %d (%d prompts)" % (len(b), len(a), len(prompts)))
for i, (x, y) in enumerate(zip(a, b)):
    if x != y:
        j = next((k for k in range(min(len(x), len(y))) if x[k] != y[k]), min(len(x), len(y)))
        print("SEQ %d %d %s %s %s" % (i, j, x[j] if j < len(x) else -1, y[j] if j < len(y) else -1,
                                      ",".join(prompts[i] + [str(t) for t in x[:j]])))
        print("INFO sequence %d: first difference at token %d: %s against %s; %d of %d tokens equal" %
              (i, j, y[j:j + 6], x[j:j + 6], sum(p == q for p, q in zip(x, y)), len(x)))
PY
  grep '^INFO' "$T/diff.$1.$2" | sed 's/^INFO /  /'
  grep -q '^COUNT' "$T/diff.$1.$2" && { sed -n 's/^COUNT /  /p' "$T/diff.$1.$2"; return 1; }
  n=$(grep -c '^SEQ' "$T/diff.$1.$2")
  [ "$n" -gt "${4:-1}" ] && { echo "  $n sequences differ (at most ${4:-1} near-ties allowed)"; return 1; }
  grep '^SEQ' "$T/diff.$1.$2" | while read -r _ i j x y prefix; do
    fw_mpirun 300 1 "$furrow" logits --device cuda --model "$T/m" --tokens "$prefix" --out "$T/gap.h5" < /dev/null > /dev/null 2>&1 ||
      { echo "  furrow logits failed"; exit 1; }
    printf "  sequence %s token %s: " "$i" "$j"
    "$FURROW_BUILDDIR/tests/logits_compare" --gap "$T/gap.h5" "$x" "$y" $NEAR || exit 1
    echo "  a near-tie: the rest of that sequence not compared"
  done
}
b1="5,6,7,8;100,200;9,9,9,9,9,9,9;1500"
b_one="5,6,7,8"

echo "== greedy tokens with and without speculation on the GPU"
gen base cuda $batch
gen one cuda --prompt-tokens 5,6,7,8
[ "$(wc -l < "$T/base.out")" = 4 ] || bad "base: 4 sequences expected, got $(wc -l < "$T/base.out")"
for k in 1 2; do
  gen "s$k" cuda $batch --speculative mtp:$k
  same base "s$k" "$b1" && ok "mtp:$k, a batch of 4: greedy's tokens" || bad "mtp:$k: a batch's tokens differ from greedy's"
  gen "one$k" cuda --prompt-tokens 5,6,7,8 --speculative mtp:$k
  same one "one$k" "$b_one" && ok "mtp:$k, one prompt: greedy's tokens" || bad "mtp:$k: one prompt's tokens differ from greedy's"
  for j in $(seq 1 $k); do
    set -- $(accepted "s$k" $j)
    echo "GPU mtp:$k draft $j: accepted $*"
    [ $# = 2 ] && [ "$1" -gt 0 ] && [ "$1" -lt "$2" ] ||
      { cat "$T/s$k.err"; bad "GPU mtp:$k draft $j: expected some drafts accepted and some rejected, got '$*'"; }
  done
done
gen base_eager cuda $batch --cuda-graphs off
gen s2_eager cuda $batch --speculative mtp:2 --cuda-graphs off
same base_eager s2_eager "$b1" && ok "mtp:2 without CUDA graphs: greedy's tokens" ||
  bad "mtp:2 without CUDA graphs: tokens differ from greedy's"
same base s2_eager "$b1" && ok "mtp:2 without CUDA graphs: the graphs' tokens" ||
  bad "mtp:2 eager against the graphs' greedy: tokens differ"
# Continuous batching over the scheduler's paged cache: 12 requests, 8 at a time
# in blocks of 16 too few for all (preemption), with and without mtp:2; accepted
# drafts make the job take fewer steps.
python3 - > "$T/in.jsonl" <<'PY'
import json, random
r = random.Random(7)
for i in range(12):
    print(json.dumps({"id": "r%02d" % i, "prompt_tokens": [r.randrange(1, 2000) for _ in range(r.randint(1, 30))],
                      "max_tokens": r.randint(8, 40), "temperature": 0}))
PY
jobs() {  # name, flags...: the batch job's tokens by id to $T/name.out
  n=$1; shift
  fw_mpirun 300 1 "$furrow" generate --device cuda --model "$T/m" --input "$T/in.jsonl" --output "$T/$n.jsonl" \
    --max-batch 8 --block-size 16 --kv-blocks 12 --max-context 96 "$@" 2> "$T/$n.err" ||
    { cat "$T/$n.err"; bad "$n: batch job failed"; }
  python3 -c "import json, sys
d = {x['id']: x['tokens'] for x in map(json.loads, open(sys.argv[1]))}
for k in sorted(d): print(d[k])" "$T/$n.jsonl" > "$T/$n.out"
}
jobs job
jobs job2 --speculative mtp:2
jprompts=$(python3 -c "import json
print(';'.join(','.join(map(str, d['prompt_tokens'])) for d in sorted(map(json.loads, open('$T/in.jsonl')), key=lambda d: d['id'])))")
steps() { sed -n "s/.* \([0-9]*\) steps, .* \([0-9]*\) preemptions.*/\1 \2/p" "$T/$1.err" | tail -n 1; }
set -- $(steps job) $(steps job2)
echo "batch job: $1 steps and $2 preemptions without speculation, $3 and $4 with mtp:2"
[ $# = 4 ] && [ "$4" -gt 0 ] || bad "the mtp:2 batch job did not preempt (12 blocks of 16): '$*'"
[ $# = 4 ] && [ "$3" -lt "$1" ] || bad "the mtp:2 batch job took no fewer steps than greedy's: '$*'"
same job job2 "$jprompts" 3 && ok "mtp:2, 12 requests 8 at a time with preemption: greedy's tokens" ||
  bad "mtp:2 batch job: tokens differ from greedy's"

echo "the runs' reports (decode tokens/s with and without speculation, same GPU):"
for n in base s1 s2 one one1 one2 base_eager s2_eager job job2; do
  grep -v "^furrow generate: draft" "$T/$n.err" | tail -n 2 | sed "s/^/  $n: /"
done

echo "== the GPU's acceptance against the CPU's (same checkpoint, clear drafts)"
gen cbase cpu $batch
same cbase base "$b1" && ok "GPU greedy equals CPU greedy" || echo "note: GPU greedy differs from the CPU's (bf16)"
for k in 1 2; do
  gen "c$k" cpu $batch --speculative mtp:$k
  for j in $(seq 1 $k); do
    set -- $(accepted "c$k" $j) $(accepted "s$k" $j)
    echo "mtp:$k draft $j: CPU accepted $1 of $2, GPU $3 of $4"
    [ $# = 4 ] || { bad "mtp:$k draft $j: acceptance lines missing"; continue; }
    # Equal runs of tokens give proposals and acceptances that may differ only
    # where a draft is a near-tie in bf16: 5% of the proposals, at least 2.
    if cmp -s "$T/cbase.out" "$T/base.out"; then
      python3 -c "import sys; a,b,c,d = map(int, sys.argv[1:]); t = max(2, 0.05 * b)
sys.exit(0 if abs(a - c) <= t and abs(b - d) <= t else 1)" "$@" ||
        bad "mtp:$k draft $j: GPU accepted $3 of $4, CPU $1 of $2 (the same tokens)"
    else
      python3 -c "import sys; a,b,c,d = map(int, sys.argv[1:])
sys.exit(0 if abs(a / b - c / d) <= 0.1 else 1)" "$@" ||
        bad "mtp:$k draft $j: GPU acceptance $3/$4 far from the CPU's $1/$2"
    fi
  done
done

echo "== furrow bench --device cuda --speculative mtp:1"
fw_mpirun 300 1 "$furrow" bench --device cuda --model "$T/m" --speculative mtp:1 --prompt 16 --batches 1,3 \
  --iters 2 > "$T/bench.out" 2>&1 || bad "bench --device cuda --speculative mtp:1 failed"
cat "$T/bench.out"
[ "$(grep -cE '^ +[13] +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+$' "$T/bench.out")" = 2 ] ||
  bad "bench --speculative: expected a row for batch 1 and 3"
set -- $(sed -n 's/^draft 1 accepted \([0-9]*\) of \([0-9]*\) .*/\1 \2/p' "$T/bench.out")
[ $# = 2 ] && [ "$1" -gt 0 ] && [ "$1" -lt "$2" ] && ok "bench: draft 1 accepted $1 of $2" ||
  bad "bench --speculative: acceptance '$*'"
exit $fail
