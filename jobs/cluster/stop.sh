#!/bin/sh
# Stops the cluster that jobs/cluster/start.sh started from a state folder:
# cancels its jobs, shuts the daemons down (each by its pid file; nothing else
# is touched) and waits for them to exit. Safe to call twice or on a half
# started cluster.
#
#   jobs/cluster/stop.sh [--state DIR]
set -u
here=$(cd "$(dirname "$0")" && pwd)
state=$(cd "$here/../.." && pwd)/tmp/cluster
while [ $# -gt 0 ]; do
  case $1 in
    --state) state=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
    *) echo "cluster: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -d "$state" ] || exit 0
PATH=$PATH:/usr/sbin
export SLURM_CONF=$state/slurm.conf

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
# Ends the daemon of pid file $1: TERM, then KILL after $2 seconds.
end() {
  alive "$1" || return 0
  pid=$(cat "$1"); kill "$pid" 2>/dev/null
  t=0
  while kill -0 "$pid" 2>/dev/null; do
    t=$((t + 1)); [ $t -gt $(($2 * 5)) ] && { kill -9 "$pid" 2>/dev/null; break; }
    sleep 0.2
  done
}

if alive "$state/slurmctld.pid"; then
  # Jobs first, so that their steps end through slurmd rather than being orphaned.
  timeout 10 scancel --full --quiet --user=root 2>/dev/null
  t=0
  while [ -n "$(timeout 5 squeue -h -o %i 2>/dev/null)" ] && [ $t -lt 20 ]; do sleep 0.5; t=$((t + 1)); done
fi
for pidf in "$state"/slurmd-*.pid; do end "$pidf" 10; done
end "$state/slurmctld.pid" 10
end "$state/munge/munged.pid" 5
rm -f "$state"/slurmd-*.pid "$state/slurmctld.pid"
[ -f "$state/link" ] && rm -f "$(cat "$state/link")" "$state/link"
echo "cluster: stopped ($state)"
