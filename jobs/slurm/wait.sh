#!/bin/sh
# Waits for a Slurm job to end and exits with its exit status (128 + signal if
# it was killed, 1 if it was cancelled or failed without one). Polls twice a
# second: sbatch --wait backs off to 10 s between polls, longer than a short
# job itself. After TIMEOUT seconds the job is cancelled and the exit is 124.
#
#   jobs/slurm/wait.sh JOBID [TIMEOUT]
id=${1:?usage: wait.sh JOBID [TIMEOUT]} limit=${2:-0}
t=0
while :; do
  info=$(scontrol -o show job "$id" 2>&1) || { echo "wait: job $id: $info" >&2; exit 1; }
  state=$(echo "$info" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
  case $state in
    COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|PREEMPTED|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE) break ;;
  esac
  t=$((t + 1))
  if [ "$limit" -gt 0 ] && [ $t -gt $((limit * 2)) ]; then
    scancel "$id"; echo "wait: job $id still $state after $limit s: cancelled" >&2; exit 124
  fi
  sleep 0.5
done
code=$(echo "$info" | sed -n 's/.* ExitCode=\([0-9]*\):\([0-9]*\).*/\1 \2/p')
set -- $code
[ "${2:-0}" -gt 0 ] && exit $((128 + $2))
[ "$state" = COMPLETED ] && exit "${1:-0}"
echo "wait: job $id ended $state" >&2
[ "${1:-0}" -gt 0 ] && exit "$1"
exit 1
