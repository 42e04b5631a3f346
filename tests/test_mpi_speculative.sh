#!/bin/sh
# Speculative decoding with the MTP layer (--speculative mtp:K) gives token for
# token greedy's output: a batch of prompts of different lengths (their drafts
# accepted differently), one prompt alone, K = 1 and 2, on one rank and over
# tp 2 and pp 2. The checkpoint's MTP layer is made to draft well (mtp_craft), so
# runs accept many drafts and reject some: a rejected draft's cache rows left in
# place, or a position counted twice, would change the tokens that follow.
set -u
. "$FURROW_SRCDIR/tests/mpi.sh"
T=$FURROW_TMP
furrow=$FURROW_BIN
fail=0
bad() { echo "FAIL: $*"; fail=1; }

"$furrow" synth --out "$T/r" --bf16 --mtp 1 --seed 5 --quiet || { echo "FAIL: synth"; exit 1; }
"$FURROW_BUILDDIR/tests/mtp_craft" "$T/r" "$T/m" 0.1 || { echo "FAIL: mtp_craft"; exit 1; }
batch="--prompt-tokens 5,6,7,8 --prompt-tokens 100,200 --prompt-tokens 9,9,9,9,9,9,9 --prompt-tokens 1500"
gen() {  # name, ranks, flags...: the ids on stdout to $T/name.out, stderr to $T/name.err
  n=$1 np=$2; shift 2
  fw_mpirun 120 "$np" "$furrow" generate --model "$T/m" --max-tokens 40 --ignore-eos "$@" > "$T/$n.out" 2> "$T/$n.err" ||
    { cat "$T/$n.err"; bad "$n: generate failed"; }
}
# Drafts accepted and proposed at position $2 of run $1.
accepted() { sed -n "s/^furrow generate: draft $2 accepted \([0-9]*\) of \([0-9]*\).*/\1 \2/p" "$T/$1.err"; }

gen base 1 $batch
gen one 1 --prompt-tokens 5,6,7,8
[ "$(wc -l < "$T/base.out")" = 4 ] || bad "base: 4 sequences expected"
for k in 1 2; do
  gen "s$k" 1 $batch --speculative mtp:$k
  cmp -s "$T/base.out" "$T/s$k.out" || { diff "$T/base.out" "$T/s$k.out"; bad "mtp:$k: a batch's tokens differ from greedy's"; }
  gen "one$k" 1 --prompt-tokens 5,6,7,8 --speculative mtp:$k
  cmp -s "$T/one.out" "$T/one$k.out" || bad "mtp:$k: one prompt's tokens differ from greedy's"
  for j in $(seq 1 $k); do
    set -- $(accepted "s$k" $j)
    [ $# = 2 ] && [ "$1" -gt 0 ] && [ "$1" -lt "$2" ] ||
      { cat "$T/s$k.err"; bad "mtp:$k draft $j: expected some drafts accepted and some rejected, got '$*'"; }
  done
done
# Every rank takes the same decisions: tp 2 and pp 2 give one rank's tokens.
gen tp2 2 $batch --tp 2 --speculative mtp:2
cmp -s "$T/base.out" "$T/tp2.out" || bad "tp 2, mtp:2: tokens differ from one rank's greedy"
gen pp2 2 $batch --pp 2 --speculative mtp:1
cmp -s "$T/base.out" "$T/pp2.out" || bad "pp 2, mtp:1: tokens differ from one rank's greedy"

# furrow serve (tp 2, mtp:2) and a real HTTP client: the same tokens for
# requests running together, the acceptance per draft position in /metrics.
fw_mpirun 400 2 "$furrow" serve --model "$T/m" --port 0 --port-file "$T/port" --tp 2 --max-context 128 \
  --speculative mtp:2 > "$T/serve.log" 2>&1 &
job=$!
i=0
while [ ! -s "$T/port" ] && [ $i -lt 600 ] && kill -0 $job 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
if [ -s "$T/port" ]; then
  python3 "$FURROW_SRCDIR/tests/serve_client.py" "$(cat "$T/port")" spec "$T/base.out" 2 || bad "serve with mtp:2"
else
  cat "$T/serve.log"; bad "serve with mtp:2 did not start"
fi
pid=$(sed -n 's/.*; pid \([0-9]*\)$/\1/p' "$T/serve.log" | head -n 1)
[ -n "$pid" ] && kill -TERM "$pid"
wait $job || bad "serve did not stop cleanly"

# Sampling: a vocabulary of 32 so that 400 seeded requests show the
# distribution, the MTP layer's head sharpened so that its drafts' distribution
# is far from the model's (drafts taken as they come would show); a plain server
# and a speculating one (tp 2: the leader's choices reach the other rank) must
# draw from the same one.
"$furrow" synth --out "$T/r32" --bf16 --mtp 1 --vocab 32 --seed 5 --quiet && "$FURROW_BUILDDIR/tests/mtp_craft" "$T/r32" \
  "$T/m32" 0.3 2.5 || bad "the vocabulary-32 checkpoint"
start_serve() {  # name, ranks, flags...: sets port_<name>
  n=$1 np=$2; shift 2
  rm -f "$T/port.$n"
  fw_mpirun 400 "$np" "$furrow" serve --model "$T/m32" --port 0 --port-file "$T/port.$n" --max-context 64 \
    --max-batch 8 "$@" > "$T/serve.$n.log" 2>&1 &
  i=0
  while [ ! -s "$T/port.$n" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
}
stop_serve() { p=$(sed -n 's/.*; pid \([0-9]*\)$/\1/p' "$T/serve.$1.log" | head -n 1); [ -n "$p" ] && kill -TERM "$p"; }
start_serve plain 1
start_serve spec 2 --tp 2 --speculative mtp:2
if [ -s "$T/port.plain" ] && [ -s "$T/port.spec" ]; then
  python3 "$FURROW_SRCDIR/tests/serve_client.py" "$(cat "$T/port.plain")" sampled "$(cat "$T/port.spec")" 400 ||
    bad "speculative sampling"
else
  cat "$T/serve.plain.log" "$T/serve.spec.log"; bad "the sampling servers did not start"
fi
stop_serve plain
stop_serve spec
wait

# furrow bench --speculative: a row of step times and speed-ups per batch.
"$furrow" bench --model "$T/m" --speculative mtp:2 --prompt 16 --batches 1,3 --iters 1 > "$T/bench.out" 2>&1 ||
  { cat "$T/bench.out"; bad "bench --speculative mtp:2"; }
[ "$(grep -cE '^ +[13] +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+$' "$T/bench.out")" = 2 ] ||
  { cat "$T/bench.out"; bad "bench --speculative: expected a row for batch 1 and 3"; }
set -- $(sed -n 's/^draft 1 accepted \([0-9]*\) of \([0-9]*\) .*/\1 \2/p' "$T/bench.out")
[ $# = 2 ] && [ "$1" -gt 0 ] && [ "$1" -lt "$2" ] || { cat "$T/bench.out"; bad "bench --speculative: acceptance '$*'"; }

# Bad uses are refused by name.
"$furrow" generate --model "$T/m" --prompt-tokens 5 --speculative mtp:3 2> "$T/bad.err" && bad "mtp:3 accepted"
grep -q -- "--speculative" "$T/bad.err" || bad "mtp:3: the error does not name --speculative"
"$furrow" synth --out "$T/plain" --bf16 --seed 5 --quiet || bad "synth without MTP"
"$furrow" generate --model "$T/plain" --prompt-tokens 5 --speculative mtp:1 2> "$T/nomtp.err" &&
  bad "a model without an MTP layer speculated"
grep -q "no MTP layer" "$T/nomtp.err" || { cat "$T/nomtp.err"; bad "no MTP layer: unclear error"; }
exit $fail
