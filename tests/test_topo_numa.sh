#!/bin/sh
# NUMA placement of a rank's memory, decided from hwloc's topology: on a machine
# of two NUMA nodes (hwloc's synthetic topology, its own test convention: the
# binding calls are made against it and succeed without binding anything), two
# ranks each bind their cores and memory to one node, 0 and 1; one rank over both
# nodes leaves memory to first touch; on this machine's real topology a rank of a
# one-node machine binds no memory. A run of the engine under the two-node
# topology reports each rank's node and gives the same logits as without it.
set -u
. "$FURROW_SRCDIR/tests/mpi.sh"
command -v h5diff > /dev/null || { echo "SKIP: no h5diff"; exit 77; }
fail=0
two="pack:1 numa:2 core:2 pu:1"
# memory_of / numa_of OUT RANK: the memory and NUMA columns of RANK's line in `furrow topo` output.
memory_of() { awk -v r="$2" '$1 == r && $2 != "host" { for (i = 9; i <= NF; i++) printf "%s%s", $i, i < NF ? " " : ""; print "" }' "$1"; }
numa_of() { awk -v r="$2" '$1 == r && $2 != "host" { print $6 }' "$1"; }
expect() { if [ "$2" = "$3" ]; then echo "ok: $1: $2"; else echo "FAIL: $1: '$2', expected '$3'"; fail=1; fi; }

HWLOC_SYNTHETIC=$two fw_mpirun 60 2 "$FURROW_BIN" topo > "$FURROW_TMP/two.out" 2>&1 ||
  { cat "$FURROW_TMP/two.out"; echo "FAIL: furrow topo on 2 ranks"; exit 1; }
grep -q "2 NUMA node(s), 4 cores" "$FURROW_TMP/two.out" || { cat "$FURROW_TMP/two.out"; echo "FAIL: synthetic topology not seen"; exit 1; }
for r in 0 1; do
  expect "2 ranks on 2 nodes, rank $r's cores" "$(numa_of "$FURROW_TMP/two.out" $r)" $r
  expect "2 ranks on 2 nodes, rank $r's memory" "$(memory_of "$FURROW_TMP/two.out" $r)" "bound to NUMA node $r"
done

HWLOC_SYNTHETIC=$two "$FURROW_BIN" topo > "$FURROW_TMP/one.out" 2>&1 || { cat "$FURROW_TMP/one.out"; echo "FAIL: furrow topo"; exit 1; }
expect "1 rank on 2 nodes" "$(memory_of "$FURROW_TMP/one.out" 0)" "first touch (its cores span NUMA nodes)"

"$FURROW_BIN" topo > "$FURROW_TMP/real.out" 2>&1 || { cat "$FURROW_TMP/real.out"; echo "FAIL: furrow topo"; exit 1; }
if grep -q " 1 NUMA node(s)" "$FURROW_TMP/real.out"; then
  expect "this machine (one NUMA node)" "$(memory_of "$FURROW_TMP/real.out" 0)" "not bound (one NUMA node)"
else
  echo "ok: this machine has several NUMA nodes: rank 0's memory $(memory_of "$FURROW_TMP/real.out" 0)"
fi

# The engine under the two-node topology: the start-up lines name each rank's node.
model=$FURROW_TMP/tiny
"$FURROW_BIN" synth --preset tiny --out "$model" --quiet > /dev/null || { echo "FAIL: synth"; exit 1; }
HWLOC_SYNTHETIC=$two fw_mpirun 120 2 "$FURROW_BIN" logits --model "$model" --tokens 1,7,42 --tp 2 --pp 1 \
  --out "$FURROW_TMP/numa.h5" --verbose 2> "$FURROW_TMP/numa.err" > /dev/null ||
  { cat "$FURROW_TMP/numa.err"; echo "FAIL: logits under two NUMA nodes"; exit 1; }
fw_mpirun 120 2 "$FURROW_BIN" logits --model "$model" --tokens 1,7,42 --tp 2 --pp 1 --out "$FURROW_TMP/real.h5" \
  2> "$FURROW_TMP/real.err" > /dev/null || { cat "$FURROW_TMP/real.err"; echo "FAIL: logits"; exit 1; }
for r in 0 1; do
  expect "logits, rank $r" "$(sed -n "s/^rank $r (.*; memory \(.*\)/\1/p" "$FURROW_TMP/numa.err")" "bound to NUMA node $r"
done
if h5diff "$FURROW_TMP/numa.h5" "$FURROW_TMP/real.h5" /logits /logits > /dev/null; then
  echo "ok: logits under two NUMA nodes = logits on this machine's topology"
else
  echo "FAIL: logits differ under the synthetic topology"; fail=1
fi
exit $fail
