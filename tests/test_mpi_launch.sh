#!/bin/sh
# jobs/mpirun wrappers: the layout printed before launching, a hostfile with
# several ranks per node over TCP giving one rank's tokens, and a layout that
# does not fit refused before anything starts.
set -u
. "$FURROW_SRCDIR/tests/mpi.sh"
golden=${FURROW_SHARED:-}/golden
[ -n "${FURROW_SHARED:-}" ] && [ -d "$golden" ] || { echo "SKIP: no shared/golden"; exit 77; }
model=$FURROW_TMP/tiny
"$FURROW_BIN" convert --hf "$golden/tiny-a-bf16" --out "$model" --quiet || { echo "FAIL: convert"; exit 1; }
printf '# one host, two slots\nlocalhost slots=2\n' > "$FURROW_TMP/hosts"
export OMP_NUM_THREADS=1 FURROW_MPIRUN_OPTS=--oversubscribe
args="--model $model --prompt-tokens 0,5,100,2000,17 --max-tokens 8 --ignore-eos"
fail=0

ref=$("$FURROW_BIN" generate $args 2>/dev/null)
out=$(timeout -k 5 120 "$FURROW_SRCDIR/jobs/mpirun/generate.sh" --hostfile "$FURROW_TMP/hosts" --ranks-per-node 2 \
      --net loopback $args --tp 2 --pp-transport mpi 2> "$FURROW_TMP/gen.err")
if [ -z "$ref" ] || [ "$out" != "$ref" ]; then
  cat "$FURROW_TMP/gen.err"; echo "FAIL: generate.sh gave '$out', one rank '$ref'"; fail=1
elif ! grep -q '^launch: 1 node(s) x 2 rank(s) per node = 2 ranks' "$FURROW_TMP/gen.err" ||
     ! grep -q '^layout:  tp 2 x pp 1 x dp 1' "$FURROW_TMP/gen.err"; then
  cat "$FURROW_TMP/gen.err"; echo "FAIL: generate.sh did not print the layout"; fail=1
else
  echo "ok: generate.sh on 2 ranks over TCP equals one rank"
fi

if "$FURROW_SRCDIR/jobs/mpirun/bench.sh" --ranks-per-node 2 --model "$model" --tp 2 --pp 2 --dry-run \
   > /dev/null 2> "$FURROW_TMP/bad.err"; then
  echo "FAIL: tp 2 x pp 2 on 2 ranks was not refused"; fail=1
elif ! grep -q 'does not fit 2 ranks' "$FURROW_TMP/bad.err"; then
  cat "$FURROW_TMP/bad.err"; echo "FAIL: unclear refusal"; fail=1
else
  echo "ok: a layout larger than the ranks is refused before launching"
fi
exit $fail
