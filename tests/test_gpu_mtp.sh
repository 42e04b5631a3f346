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
#   cache rows left in place would change the tokens after it;
# - the GPU's acceptance counts against the CPU's on the same checkpoint (the
#   crafted drafts are clear, so the GPU's MTP layer must accept as the CPU's);
# - furrow bench --device cuda --speculative mtp:1: the step times and the
#   acceptance line.
# Every failure prints what differs (first differing token, counts, stderr).
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
# Run $2's tokens against run $1's, sequence by sequence: the first differing token of each.
same() {
  python3 - "$T/$1.out" "$T/$2.out" <<'PY'
import re, sys
def seqs(p):
    return [[int(x) for x in re.findall(r"-?\d+", l)] for l in open(p) if l.strip()]
a, b = seqs(sys.argv[1]), seqs(sys.argv[2])
bad = len(a) != len(b)
if bad:
    print("  %d sequences against %d" % (len(b), len(a)))
for i, (x, y) in enumerate(zip(a, b)):
    if x != y:
        bad = True
        j = next((k for k in range(min(len(x), len(y))) if x[k] != y[k]), min(len(x), len(y)))
        print("  sequence %d: first difference at token %d: %s against %s; %d of %d tokens equal" %
              (i, j, y[j:j + 6], x[j:j + 6], sum(p == q for p, q in zip(x, y)), len(x)))
sys.exit(1 if bad else 0)
PY
}

echo "== greedy tokens with and without speculation on the GPU"
gen base cuda $batch
gen one cuda --prompt-tokens 5,6,7,8
[ "$(wc -l < "$T/base.out")" = 4 ] || bad "base: 4 sequences expected, got $(wc -l < "$T/base.out")"
for k in 1 2; do
  gen "s$k" cuda $batch --speculative mtp:$k
  same base "s$k" && ok "mtp:$k, a batch of 4: greedy's tokens" || bad "mtp:$k: a batch's tokens differ from greedy's"
  gen "one$k" cuda --prompt-tokens 5,6,7,8 --speculative mtp:$k
  same one "one$k" && ok "mtp:$k, one prompt: greedy's tokens" || bad "mtp:$k: one prompt's tokens differ from greedy's"
  for j in $(seq 1 $k); do
    set -- $(accepted "s$k" $j)
    echo "GPU mtp:$k draft $j: accepted $*"
    [ $# = 2 ] && [ "$1" -gt 0 ] && [ "$1" -lt "$2" ] ||
      { cat "$T/s$k.err"; bad "GPU mtp:$k draft $j: expected some drafts accepted and some rejected, got '$*'"; }
  done
done
gen base_eager cuda $batch --cuda-graphs off
gen s2_eager cuda $batch --speculative mtp:2 --cuda-graphs off
same base_eager s2_eager && ok "mtp:2 without CUDA graphs: greedy's tokens" ||
  bad "mtp:2 without CUDA graphs: tokens differ from greedy's"
same base s2_eager && ok "mtp:2 without CUDA graphs: the graphs' tokens" ||
  bad "mtp:2 eager against the graphs' greedy: tokens differ"
for n in base s1 s2 one one1 one2 base_eager s2_eager; do
  grep -i -e error -e cuda -e fail "$T/$n.err" | grep -v "^furrow generate: draft" | sed "s/^/  $n: /" | head -n 5
done

echo "== the GPU's acceptance against the CPU's (same checkpoint, clear drafts)"
gen cbase cpu $batch
same cbase base && ok "GPU greedy equals CPU greedy" || echo "note: GPU greedy differs from the CPU's (bf16)"
for k in 1 2; do
  gen "c$k" cpu $batch --speculative mtp:$k
  for j in $(seq 1 $k); do
    set -- $(accepted "c$k" $j) $(accepted "s$k" $j)
    echo "mtp:$k draft $j: CPU accepted $1 of $2, GPU $3 of $4"
    [ $# = 4 ] || { bad "mtp:$k draft $j: acceptance lines missing"; continue; }
    # Equal runs of tokens give proposals and acceptances that may differ only
    # where a draft is a near-tie in bf16: 5% of the proposals, at least 2.
    if same cbase base > /dev/null; then
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
