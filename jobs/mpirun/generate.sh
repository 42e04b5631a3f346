#!/bin/sh
# furrow generate on the ranks of a hostfile (jobs/mpirun/launch.sh chooses the
# mapping, binding and environment, and prints the layout).
#
#   jobs/mpirun/generate.sh --hostfile hosts --model DIR --input prompts.jsonl --output results.jsonl
#   jobs/mpirun/generate.sh --ranks-per-node 2 --model DIR --prompt-tokens 0,5,100 --tp 2
#
# With --input/--output the output is resumable: run the same command again after
# a failure and the finished requests are skipped.
set -eu
for a in "$@"; do
  case $a in --input) in=1 ;; --output) out=1 ;; esac
done
[ -z "${in:-}" ] || [ -n "${out:-}" ] || { echo "generate: --input needs --output (the resumable results file)" >&2; exit 2; }
exec "$(dirname "$0")/launch.sh" generate "$@"
