# Sourced by the jobs/slurm/*.sbatch scripts inside an allocation: finds furrow,
# reads the allocation from SLURM_* variables, checks that the model's layout
# fits it (furrow plan) and starts the ranks.
#
# --doctor among the script's arguments (taken out before they reach furrow):
# furrow doctor runs once on every node of the allocation before the ranks
# start, measuring the read speed of --model; its report goes to the job's
# error output, and a failed check on any node ends the job.
#
# --max-requeues N (taken out too; default 3): how many times fw_job_requeue
# may put a failed job (a rank lost, the hang watchdog fired) back in the queue.
#
# Environment (all optional):
#   FURROW_BIN            the furrow binary (default: the source tree's, else furrow in PATH)
#   FURROW_LAUNCHER       srun (default: srun --mpi=pmix) or mpirun (Open MPI inside the allocation)
#   FURROW_NET            loopback: MPI and UCX over TCP on 127.0.0.1 only (emulated nodes
#                         sharing one host, where Open MPI's shared-memory transport
#                         between "nodes" crashes)
#   FURROW_MEM_PER_RANK   memory one rank may use (e.g. 141G), checked by furrow plan
#   FURROW_SRUN_OPTS, FURROW_MPIRUN_OPTS   extra launcher options

fw_job_die() { echo "furrow job ${SLURM_JOB_ID:-?}: $*" >&2; exit 1; }
[ -n "${SLURM_JOB_ID:-}" ] || fw_job_die "not inside a Slurm allocation (submit with sbatch)"
if [ -z "${FURROW_BIN:-}" ]; then
  if [ -x "$fw_jobs/../furrow" ]; then FURROW_BIN=$(cd "$fw_jobs/.." && pwd)/furrow
  else FURROW_BIN=$(command -v furrow) || fw_job_die "furrow not found: set FURROW_BIN or PATH"; fi
fi

# The allocation: nodes and ranks per node (the same on every node).
fw_nodes=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}
fw_ranks=${SLURM_NTASKS:-$fw_nodes}
case ${SLURM_TASKS_PER_NODE:-} in
  *,*) fw_job_die "tasks per node differ ($SLURM_TASKS_PER_NODE): use --ntasks-per-node" ;;
esac
[ $((fw_ranks % fw_nodes)) -eq 0 ] || fw_job_die "$fw_ranks tasks do not split evenly over $fw_nodes nodes"
fw_rpn=$((fw_ranks / fw_nodes))

# Emulated nodes share one host's cores too: waiting ranks yield them. (pml
# ob1 rather than ucx: UCX over TCP reports endpoint timeouts on stdout at
# MPI_Finalize.)
if [ "${FURROW_NET:-}" = loopback ]; then
  export OMPI_MCA_btl=self,tcp OMPI_MCA_pml=ob1 OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
  export UCX_TLS=tcp,self UCX_NET_DEVICES=lo
  export OMPI_MCA_mpi_yield_when_idle=${OMPI_MCA_mpi_yield_when_idle:-1}
fi

# Takes --doctor and --max-requeues N out of the script's arguments (this file
# is sourced: `set --` changes them).
fw_doctor=0 fw_max_requeues=3
fw_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --doctor) fw_doctor=1 ;;
    --max-requeues) fw_max_requeues=${2:-}; shift ;;
    --max-requeues=*) fw_max_requeues=${1#*=} ;;
    *) fw_args+=("$1") ;;
  esac
  shift
done
set -- "${fw_args[@]}"
case $fw_max_requeues in
  ''|*[!0-9]*) fw_job_die "--max-requeues needs a number of times, not '$fw_max_requeues'" ;;
esac
# scancel sends SIGTERM to this script as to the ranks: a job cancelled is not requeued.
fw_cancelled=0
trap 'fw_cancelled=1' TERM

# fw_job_option NAME ARGS...: the value of option NAME in ARGS (empty if absent).
fw_job_option() {
  n=$1; shift
  while [ $# -gt 0 ]; do
    case $1 in
      "$n") echo "${2:-}"; return ;;
      "$n"=*) echo "${1#*=}"; return ;;
    esac
    shift
  done
}

# fw_job_plan ARGS...: prints the layout furrow would use on this allocation, or
# ends the job saying why it does not fit (too few ranks, too little memory).
fw_job_plan() {
  model=$(fw_job_option --model "$@")
  [ -n "$model" ] || fw_job_die "--model DIR is required"
  set -- --model "$model" --nodes "$fw_nodes" --ranks-per-node "$fw_rpn" \
    $(tp=$(fw_job_option --tp "$@"); [ -n "$tp" ] && echo --tp "$tp") \
    $(pp=$(fw_job_option --pp "$@"); [ -n "$pp" ] && echo --pp "$pp") \
    ${FURROW_MEM_PER_RANK:+--mem-per-rank "$FURROW_MEM_PER_RANK"}
  echo "furrow job $SLURM_JOB_ID: $fw_nodes node(s) x $fw_rpn rank(s) on $SLURM_JOB_NODELIST" >&2
  if ! plan=$("$FURROW_BIN" plan "$@" 2>&1); then
    fw_job_die "the allocation ($fw_nodes node(s) x $fw_rpn rank(s)) does not fit the layout:
$(echo "$plan" | grep -v -e '^model:' -e '^         ' -e '^cluster:')"
  fi
  echo "$plan" | sed -n 's/^layout: */furrow job: layout /p' >&2
}

# fw_job_doctor ARGS...: with --doctor, furrow doctor once per node (each line
# labelled with its node's index); ends the job if a check failed on any node.
fw_job_doctor() {
  [ "$fw_doctor" = 1 ] || return 0
  model=$(fw_job_option --model "$@")
  set -- doctor ${model:+--checkpoint "$model"}
  echo "furrow job $SLURM_JOB_ID: furrow doctor on $fw_nodes node(s)" >&2
  case ${FURROW_LAUNCHER:-srun} in
    srun) srun -N "$fw_nodes" --ntasks-per-node=1 --label ${FURROW_SRUN_OPTS:-} "$FURROW_BIN" "$@" >&2 ;;
    mpirun) OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
      mpirun -np "$fw_nodes" --map-by ppr:1:node --bind-to none --tag-output ${FURROW_MPIRUN_OPTS:-} \
      "$FURROW_BIN" "$@" >&2 ;;
    *) fw_job_die "FURROW_LAUNCHER must be srun or mpirun, not $FURROW_LAUNCHER" ;;
  esac || fw_job_die "furrow doctor: a check failed on a node (its fail line above says which and the fix)"
}

# fw_job_launch ARGS...: furrow ARGS on every rank of the allocation (after
# furrow doctor on every node, with --doctor).
fw_job_launch() {
  fw_job_doctor "$@"
  case ${FURROW_LAUNCHER:-srun} in
    srun) srun --mpi=pmix --kill-on-bad-exit=1 ${FURROW_SRUN_OPTS:-} "$FURROW_BIN" "$@" ;;
    mpirun) OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
      mpirun -np "$fw_ranks" --map-by "ppr:$fw_rpn:node" --bind-to none ${FURROW_MPIRUN_OPTS:-} "$FURROW_BIN" "$@" ;;
    *) fw_job_die "FURROW_LAUNCHER must be srun or mpirun, not $FURROW_LAUNCHER" ;;
  esac
}

# fw_job_requeue STATUS: after the ranks ended with STATUS. 0 (done, or stopped
# by SIGTERM) ends the job. Otherwise (a rank lost, the hang watchdog fired: the
# ranks exit nonzero) the job asks Slurm to run it again, on healthy nodes,
# through `scontrol requeue` (the script must be submitted with --requeue), at
# most --max-requeues times; SLURM_RESTART_COUNT counts them. Slurm starts a
# requeued job once the job credential expires (AuthInfo cred_expire, 120 s by
# default).
fw_job_requeue() {
  fw_rc=$1
  [ "$fw_rc" = 0 ] && exit 0
  [ "$fw_cancelled" = 1 ] && fw_job_die "cancelled; furrow exited $fw_rc"
  fw_n=${SLURM_RESTART_COUNT:-0}
  [ "$fw_n" -lt "$fw_max_requeues" ] ||
    fw_job_die "furrow exited $fw_rc; requeued $fw_n time(s) already (--max-requeues $fw_max_requeues): giving up"
  echo "furrow job $SLURM_JOB_ID: furrow exited $fw_rc: requeueing (restart $((fw_n + 1)) of at most $fw_max_requeues)" >&2
  scontrol requeue "$SLURM_JOB_ID" || fw_job_die "scontrol requeue failed (submit with --requeue); furrow exited $fw_rc"
  sleep 600 # Slurm ends this run now
  exit "$fw_rc"
}
