# Sourced by the MPI tests: mpirun with the options a 2-core CI machine needs.
# Several ranks share the cores (--oversubscribe); ranks must not spin on
# shared cores (mpi_yield_when_idle); a hung test is ended by `timeout`.
: "${MPIRUN:=mpirun}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_mpi_yield_when_idle=1
# fw_mpirun SECONDS NP ARGS...: runs ARGS on NP ranks, killed after SECONDS.
fw_mpirun() {
  limit=$1; np=$2; shift 2
  timeout -k 5 "$limit" "$MPIRUN" --oversubscribe --bind-to none -np "$np" "$@"
}
