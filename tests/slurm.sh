# Sourced by the Slurm tests: starts a real local cluster (jobs/cluster) of
# FW_NODES emulated nodes under the test's scratch folder and stops it when the
# test ends, however it ends. Skips (77) where Slurm cannot run: not root, or
# slurm-wlm / munge missing (.ci/run installs them, so CI really runs these).
PATH=$PATH:/usr/sbin
for p in slurmctld slurmd munged sbatch; do
  command -v $p >/dev/null || { echo "SKIP: $p not installed (jobs/cluster/setup.sh)"; exit 77; }
done
[ "$(id -u)" = 0 ] || { echo "SKIP: the local Slurm cluster needs root"; exit 77; }
fw_state=$FURROW_TMP/cluster
fw_cluster_stop() { "$FURROW_SRCDIR/jobs/cluster/stop.sh" --state "$fw_state" > /dev/null; }
trap fw_cluster_stop EXIT
trap 'exit 1' INT TERM HUP
"$FURROW_SRCDIR/jobs/cluster/start.sh" --nodes "${FW_NODES:-4}" --cpus 2 --state "$fw_state" \
  --port "${FW_PORT:-16817}" ${FW_CRED_EXPIRE:+--cred-expire "$FW_CRED_EXPIRE"} || { echo "FAIL: the cluster did not start"; cat "$fw_state"/log/* 2>/dev/null | tail -n 30; exit 1; }
. "$fw_state/env.sh"
# Emulated nodes share this host: MPI over TCP on 127.0.0.1, one thread per
# rank, no spinning.
export FURROW_NET=loopback OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
# fw_sbatch SECONDS NAME ARGS...: submits and waits for the job (cancelled after
# SECONDS); its output in $FURROW_TMP/NAME.out and .err; the job's exit status.
fw_sbatch() {
  limit=$1 name=$2; shift 2
  job=$(sbatch --parsable --time=5 -o "$FURROW_TMP/$name.out" -e "$FURROW_TMP/$name.err" "$@") || return 1
  "$FURROW_SRCDIR/jobs/slurm/wait.sh" "$job" "$limit"
}

# state JOBID: the job's JobState (RUNNING, PENDING, CANCELLED...).
state() { scontrol -o show job "$1" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
