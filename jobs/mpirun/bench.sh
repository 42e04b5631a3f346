#!/bin/sh
# furrow bench on the ranks of a hostfile: tokens/s, TTFT/TPOT, per-rank compute
# and communication time, bytes moved and memory per rank.
#
#   jobs/mpirun/bench.sh --hostfile hosts --model DIR [--tp 8 --pp 2] [--prompt 128 --decode 32 --batch 4]
exec "$(dirname "$0")/launch.sh" bench "$@"
