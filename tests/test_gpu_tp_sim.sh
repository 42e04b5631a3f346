#!/bin/sh
# furrow bench --tp-sim on one GPU, on the tiny synthetic model (4 heads, 16
# experts, 3 layers): the rank runs rank 0's share of tp 2 (2 heads, experts
# 0..7, the stage line says so), every step is run twice, and with all-reduces
# that each wait 2 ms (7 a step: 2 a layer and the embedding's) the second run
# is at least 13 ms slower than the first, so a stand-in that never runs or a
# step that skips the all-reduces fails. Decode steps whose KV cache cannot fit
# (2e9 positions) are reported as left out, not run. Its --json (compute only)
# is read by furrow plan --predict --compute. Skipped (77) without a GPU.
set -u
cuda=$FURROW_BUILDDIR/furrow-cuda
[ -x "$cuda" ] || { echo "SKIP: no furrow-cuda"; exit 77; }
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || { echo "SKIP: no GPU"; exit 77; }
out=$FURROW_TMP/tp_sim.txt
"$FURROW_BIN" bench --synthetic tiny --device cuda --tp-sim 2 --sim-allreduce 2000,100 --iters 2 \
  --json "$FURROW_TMP/compute.json" \
  --batches 1,8 --contexts 64,2000000000 --prefill 128 > "$out" 2>&1 ||
  { cat "$out"; echo "FAIL: bench --tp-sim 2"; exit 1; }
cat "$out"
fail=0
grep -q "^stage .* 2 heads, experts 0\.\.7, tp 2$" "$out" || { echo "FAIL: the stage is not rank 0 of tp 2"; fail=1; }
grep -q "^tp-sim " "$out" || { echo "FAIL: no tp-sim line"; fail=1; }
# decode rows: step ms is field 4, +comm step ms the first after the second '|' (J/tok after a third).
rows=$(awk '$1 == "decode" && $3 == 64 { split($0, f, "|"); split(f[3], c, " "); \
  print $2, $4, c[1] }' "$out")
[ "$(echo "$rows" | grep -c .)" -eq 2 ] || { echo "FAIL: want 2 decode rows, got: $rows"; fail=1; }
echo "$rows" | awk '{ if ($3 < $2 + 13) { print "FAIL: batch " $1 ": " $3 " ms with all-reduces of 2 ms vs " $2 " ms"; bad = 1 } }
  END { exit bad }' || fail=1
[ "$(grep -c "^decode .* 2000000000  left out" "$out")" -eq 2 ] ||
  { echo "FAIL: the steps whose cache cannot fit were not left out"; fail=1; }
awk '$1 == "prefill" && $3 == 128 { split($0, f, "|"); split(f[3], c, " "); if (c[1] < $4 + 13) exit 1; found = 1 }
  END { exit !found }' "$out" || { echo "FAIL: prefill row missing or its +comm run not slower by the waits"; fail=1; }
# Energy: J/tok per step from the GPUs' counters, or why they were not read.
if grep -q "^energy     J/tok" "$out"; then
  awk '$1 == "decode" && $3 == 64 { n = split($0, f, "|"); if (!(f[n] + 0 > 0)) bad = 1; seen = 1 } END { exit bad || !seen }' "$out" ||
    { echo "FAIL: a decode row without a positive J/tok"; fail=1; }
else
  grep -q "^energy     not read: ." "$out" || { echo "FAIL: no energy line"; fail=1; }
fi
# The compute-only steps feed the performance model.
"$FURROW_BIN" plan --model synth:tiny --predict --compute "$FURROW_TMP/compute.json" --device cuda \
  > "$FURROW_TMP/predict.txt" 2>&1 || { cat "$FURROW_TMP/predict.txt"; echo "FAIL: plan --predict on the bench's JSON"; fail=1; }
exit $fail
