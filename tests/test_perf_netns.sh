#!/bin/sh
# The performance model against measurement (jobs/scaling/validate_netns.sh):
# the tiny model on 2 emulated nodes (network namespaces, veth, a tbf rate
# limit), tp 2 across the nodes and tp 4 over 2 x 2 ranks. The links are
# measured (furrow bench --comm), the compute taken from the same layouts on
# one node; furrow plan --predict must give each decode step and prefill
# within 20% of the measured one, and the rate limit must make communication
# most of the step (so the prediction is not the compute alone). Skipped (77)
# where nodes cannot be emulated: not root, no netns / veth / tbf.
set -u
: "${FURROW_BIN:?FURROW_BIN is not set}"
: "${FURROW_SRCDIR:?FURROW_SRCDIR is not set}"
out=${FURROW_TMP:-/tmp}/perf_netns
rm -rf "$out"
FURROW_BIN=$FURROW_BIN timeout -k 10 400 sh "$FURROW_SRCDIR/jobs/scaling/validate_netns.sh" --out "$out" \
  --points "2:1:2:1 2:2:4:1" --repeat 2 --no-plot
rc=$?
[ $rc -eq 77 ] && exit 77
fail=0
[ $rc -eq 0 ] || { echo "FAIL: validate_netns.sh exited $rc (a point off by more than 20%, or a run failed)"; fail=1; }
csv=$out/validation.csv
[ -f "$csv" ] || { echo "FAIL: no $csv"; exit 1; }
# Four rows (2 points x decode, prefill), each with its error within the bound.
rows=$(tail -n +2 "$csv" | wc -l)
[ "$rows" -eq 4 ] || { echo "FAIL: $rows rows in $csv, want 4"; cat "$csv"; fail=1; }
awk -F, 'NR > 1 && ($10 > 20 || $10 < -20) { print "FAIL: " $0; bad = 1 } END { exit bad }' "$csv" || fail=1
# The 2-node steps are communication: at least 3x the same layout on one node.
for id in tp2-pp1 tp4-pp1; do
  case $id in tp2-pp1) one=n1r2 two=n2r1 ;; tp4-pp1) one=n1r4 two=n2r2 ;; esac
  a=$(sed -n 's/.*"tpot_s": \([0-9.e+-]*\).*/\1/p' "$out/bench-$one-$id.json" | head -n 1)
  b=$(sed -n 's/.*"tpot_s": \([0-9.e+-]*\).*/\1/p' "$out/bench-$two-$id.json" | head -n 1)
  awk -v a="$a" -v b="$b" 'BEGIN { exit !(b >= 3 * a) }' ||
    { echo "FAIL: $id: TPOT $b s on 2 nodes is not 3x the $a s of one node: the rate limit does not bind"; fail=1; }
done
[ $fail = 0 ] || cat "$out/validation.txt"
exit $fail
