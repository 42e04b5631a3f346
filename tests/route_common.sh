# Sourced by the furrow route tests (after set -u): skips without the golden
# tiny model, moves to $FURROW_TMP, and gives ok/bad (which sets fail),
# until_true, and the start-up of routers and replicas on 127.0.0.1.
golden=${FURROW_SHARED:-}/golden
[ -n "${FURROW_SHARED:-}" ] && [ -d "$golden/tiny-a-bf16" ] || { echo "SKIP: no shared/golden"; exit 77; }
fail=0
cd "$FURROW_TMP" || exit 1
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive # replicas and the router share the cores
. "$FURROW_SRCDIR/tests/until.sh"

# Killed at exit: pids (furrow processes, by start), router (the autoscale
# router's timeout, which passes TERM on) and the replicas that up.sh started.
pids= router=
cleanup() {
  for p in $pids; do kill -9 "$p" 2>/dev/null; done
  [ -n "$router" ] && kill "$router" 2>/dev/null
  for f in pid.*; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# convert_golden: the golden tiny model converted to ./model.
convert_golden() {
  "$FURROW_BIN" convert --hf "$golden/tiny-a-bf16" --out model --quiet > convert.log 2>&1 ||
    { cat convert.log; echo "FAIL: convert"; exit 1; }
}

# start NAME ARGS...: runs a furrow command in the background with --port-file
# NAME.port, killed after ${start_limit:-600} s; sets port and pid (the process
# itself, from its start line).
start() {
  name=$1; shift
  rm -f "$name.port"
  timeout -k 5 "${start_limit:-600}" "$FURROW_BIN" "$@" --port 0 --port-file "$name.port" > "$name.log" 2>&1 &
  i=0
  while [ ! -s "$name.port" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
  port=$(cat "$name.port" 2>/dev/null)
  pid=$(sed -n 's/.*; pid \([0-9]*\)$/\1/p' "$name.log" | head -n 1)
  [ -n "$port" ] && [ -n "$pid" ] || { cat "$name.log"; echo "FAIL: $name did not start"; exit 1; }
  pids="$pids $pid"
}

# metric NAME [REPLICA_PORT]: a sample of the router's ($R) /metrics (0 when absent).
metric() {
  if [ $# = 2 ]; then key="$1{replica=\"http://127.0.0.1:$2\"}"; else key=$1; fi
  curl -s "$R/metrics" | awk -v k="$key" '$1 == k {v = $2} END {print v + 0}'
}
in_service() { [ "$(metric furrow_route_replicas_in_service)" = "$1" ]; }

# autoscale_router ROUTE_ARGS...: a router that scales with a stand-in
# scheduler: up.sh starts a replica (--max-batch 1) as job 9N and prints its
# id, down.sh stops job $FURROW_JOB and notes it in downs.txt. Sets router and
# R once the router listens; ups and downs count its actions.
autoscale_router() {
  echo 0 > count
  cat > up.sh <<UP
#!/bin/sh
n=\$((\$(cat count) + 1)); echo \$n > count
SLURM_JOB_ID=9\$n timeout -k 5 600 "$FURROW_BIN" serve --model model --port 0 --max-context 256 --max-batch 1 \\
  --register "http://127.0.0.1:\$(cat router.port)" < /dev/null > rep9\$n.log 2>&1 &
echo \$! > pid.9\$n
echo 9\$n
UP
  cat > down.sh <<'DOWN'
#!/bin/sh
echo "$FURROW_JOB $FURROW_REPLICA" >> downs.txt
kill -TERM "$(cat "pid.$FURROW_JOB")"
DOWN
  chmod +x up.sh down.sh
  rm -f router.port downs.txt
  timeout -k 5 600 "$FURROW_BIN" route --port 0 --port-file router.port --poll-interval 0.2 --scale-up ./up.sh \
    --scale-down ./down.sh "$@" > router.log 2>&1 &
  router=$!
  until_true 20 test -s router.port || { cat router.log; echo "FAIL: the router did not start"; exit 1; }
  R=http://127.0.0.1:$(cat router.port)
}
ups() { metric 'furrow_route_autoscale_actions_total{action="up"}'; }
downs() { metric 'furrow_route_autoscale_actions_total{action="down"}'; }
