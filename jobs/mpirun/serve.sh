#!/bin/sh
# furrow serve on the ranks of a hostfile; rank 0 runs on the hostfile's first
# host and listens there (its address is printed before launching).
#
#   jobs/mpirun/serve.sh --hostfile hosts --model DIR [--host ADDR] [--port 8000] [--tp 8]
set -eu
host= port=8000 hostfile= prev=
for a in "$@"; do
  case $prev in --host) host=$a ;; --port) port=$a ;; --hostfile) hostfile=$a ;; esac
  prev=$a
done
first=localhost
[ -z "$hostfile" ] || first=$(sed 's/#.*//' "$hostfile" | awk 'NF { print $1; exit }')
# By default rank 0 listens on its host's name, as the hostfile gives it.
[ -n "$host" ] || { host=$first; set -- "$@" --host "$host"; }
echo "furrow serve: rank 0 on $first: http://$host:$port/v1" >&2
exec "$(dirname "$0")/launch.sh" serve "$@" --port "$port"
