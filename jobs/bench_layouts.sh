#!/bin/sh
# furrow bench for several layouts of one model on this machine: one rank, then
# each layout under mpirun, so a reader sees where the time goes (compute,
# all-reduce, pipeline transfers) as the model is split.
#
#   jobs/bench_layouts.sh [--model DIR] [--preset small] [--prompt N] [--decode N]
#                         [--layouts "1:1:1 1:1:1:4 2:2:1 2:1:2 2:1:2:4"]   (np:tp:pp[:sequences])
#
# Without --model a synthetic checkpoint of --preset (random weights) is written
# to $TMPDIR first. Ranks share this machine's cores: each layout's ranks split
# them (furrow binds each rank to its share), so the total compute is the same.
# Several sequences go through a pipeline one behind the other (micro-batches).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
furrow=${FURROW_BIN:-$here/furrow}
model= preset=small prompt=64 decode=16 layouts="1:1:1 1:1:1:4 2:2:1 2:1:2 2:1:2:4"
while [ $# -gt 0 ]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --preset) preset=$2; shift 2 ;;
    --prompt) prompt=$2; shift 2 ;;
    --decode) decode=$2; shift 2 ;;
    --layouts) layouts=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "bench_layouts: unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -z "$model" ]; then
  model=${TMPDIR:-/tmp}/furrow-bench-$preset
  [ -f "$model/furrow.h5" ] || "$furrow" synth --preset "$preset" --out "$model" --quiet
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
for l in $layouts; do
  set -- $(echo "$l" | tr ':' ' ')
  np=$1 tp=$2 pp=$3 seqs=${4:-1}
  echo "== $np rank(s): tp $tp x pp $pp, $seqs sequence(s)"
  mpirun --oversubscribe --bind-to none -np "$np" "$furrow" bench --model "$model" --prompt "$prompt" \
    --decode "$decode" --tp "$tp" --pp "$pp" --batch "$seqs" --pp-transport mpi
done
