#!/bin/sh
# Starts furrow COMMAND under Open MPI's mpirun: one rank per GPU or per CPU
# socket on each host of a hostfile, the environment furrow needs passed to
# every rank (-x), and the layout printed (furrow plan) before launching.
#
#   jobs/mpirun/launch.sh COMMAND [launch options] [furrow options]
#
# launch options (anywhere among the arguments):
#   --hostfile F         Open MPI hostfile, one "host slots=G" line per node (default: this host)
#   --per gpu|socket     one rank per GPU (nvidia-smi) or per CPU socket (hwloc) of each node
#                        (default: gpu where nvidia-smi sees GPUs, else socket)
#   --ranks-per-node G   G ranks per node whatever the hardware (they share its cores)
#   --net loopback       MPI and UCX over TCP on 127.0.0.1 only (nodes emulated on one host)
#   --dry-run            print the layout and the mpirun command, launch nothing
# FURROW_BIN (default: the source tree's furrow, else furrow in PATH),
# FURROW_MEM_PER_RANK (checked by furrow plan), FURROW_MPIRUN_OPTS (more mpirun options).
set -eu
die() { echo "launch: $*" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
case ${1:-} in
  '') awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 2 ;;
  -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
esac
cmd=$1; shift
hostfile= per= rpn= net= dry=0 model= tp= pp=
n=$#
while [ $n -gt 0 ]; do  # keeps furrow's arguments in order, takes ours out
  a=$1; shift; n=$((n - 1))
  case $a in
    --hostfile|--per|--ranks-per-node|--net)
      [ $n -gt 0 ] || die "$a needs a value"; v=$1; shift; n=$((n - 1))
      case $a in
        --hostfile) hostfile=$v ;; --per) per=$v ;; --ranks-per-node) rpn=$v ;; --net) net=$v ;;
      esac
      continue ;;
    --dry-run) dry=1; continue ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
  esac
  case $a in --model) model=${1:-} ;; --tp) tp=${1:-} ;; --pp) pp=${1:-} ;; esac
  set -- "$@" "$a"
done
if [ -z "${FURROW_BIN:-}" ]; then
  if [ -x "$here/../../furrow" ]; then FURROW_BIN=$(cd "$here/../.." && pwd)/furrow
  else FURROW_BIN=$(command -v furrow) || die "furrow not found: set FURROW_BIN or PATH"; fi
fi

# Nodes: the distinct hosts of the hostfile.
if [ -n "$hostfile" ]; then
  [ -f "$hostfile" ] || die "no hostfile $hostfile"
  nodes=$(sed 's/#.*//' "$hostfile" | awk 'NF { print $1 }' | sort -u | wc -l)
  [ "$nodes" -gt 0 ] || die "no hosts in $hostfile"
else
  nodes=1
fi
# Ranks per node and their binding: GPU ranks and a forced count are left unbound
# (furrow binds each rank to its share of the cores, near its GPU); socket ranks
# are bound to their socket.
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
[ -n "$per" ] || { [ "${gpus:-0}" -gt 0 ] && per=gpu || per=socket; }
[ -n "$rpn" ] && per=node
case $per in
  node) map="ppr:$rpn:node" bind=none ;;
  gpu) [ "${gpus:-0}" -gt 0 ] || die "--per gpu: nvidia-smi sees no GPU here (use --ranks-per-node)"
       rpn=$gpus map="ppr:$gpus:node" bind=none ;;
  socket) rpn=$(hwloc-calc --number-of package all 2>/dev/null || echo 1) map="ppr:1:socket" bind=socket ;;
  *) die "--per must be gpu or socket, not $per" ;;
esac
np=$((nodes * rpn))

set -- --np "$np" --map-by "$map" --bind-to "$bind" ${hostfile:+--hostfile "$hostfile"} \
  ${FURROW_MPIRUN_OPTS:-} "$FURROW_BIN" "$cmd" "$@"
# The environment every rank needs, where it is set here.
for v in PATH LD_LIBRARY_PATH \
         $(env | sed -n 's/^\(\(FURROW\|OMP\|UCX\|NCCL\|CUDA\|HDF5\)_[A-Z0-9_]*\)=.*/\1/p'); do
  eval "[ -n \"\${$v+x}\" ]" && set -- -x "$v" "$@"
done
if [ "$net" = loopback ]; then
  set -- --mca btl self,tcp --mca pml ob1 --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo \
    -x UCX_TLS=tcp,self -x UCX_NET_DEVICES=lo "$@"
elif [ -n "$net" ]; then die "--net must be loopback"; fi

echo "launch: $nodes node(s) x $rpn rank(s) per $per = $np ranks (map $map, bind $bind)" >&2
if [ -n "$model" ]; then
  "$FURROW_BIN" plan --model "$model" --nodes "$nodes" --ranks-per-node "$rpn" ${tp:+--tp "$tp"} ${pp:+--pp "$pp"} \
    ${FURROW_MEM_PER_RANK:+--mem-per-rank "$FURROW_MEM_PER_RANK"} >&2 || die "the layout does not fit $np ranks"
fi
echo "launch: mpirun $*" >&2
[ $dry = 1 ] && exit 0
exec mpirun "$@"
