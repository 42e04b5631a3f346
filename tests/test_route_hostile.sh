#!/bin/sh
# furrow route against slow and hostile clients, on 127.0.0.1 only, with one
# furrow serve replica of the golden tiny model: headers a byte at a time get
# 408 within --header-timeout while other clients are served; a body that
# stops gets 408 after --body-timeout; a declared body over --max-body gets 413
# before it is sent, a chunked one 413; connections beyond --max-connections
# get 503 at once, and requests answer again once the holders leave; /metrics
# counts the timeouts and those answers. Upstream connections are reused:
# sequential requests open fewer connections to the replica than there are
# requests. Bad timeout flags are refused by name.
set -u
golden=${FURROW_SHARED:-}/golden
[ -n "${FURROW_SHARED:-}" ] && [ -d "$golden/tiny-a-bf16" ] || { echo "SKIP: no shared/golden"; exit 77; }
fail=0
cd "$FURROW_TMP" || exit 1
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
pids=
cleanup() { for p in $pids; do kill -9 "$p" 2>/dev/null; done; }
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
. "$FURROW_SRCDIR/tests/until.sh"

for args in "--header-timeout 0" "--body-timeout x" "--header-timeout 70"; do
  if "$FURROW_BIN" route $args > flag.txt 2>&1; then bad "route $args was taken"
  else grep -q -- "${args%% *}" flag.txt && ok "route $args refused: $(head -n 1 flag.txt)" || bad "route $args: $(cat flag.txt)"; fi
done
"$FURROW_BIN" route --help | grep -q -- '--body-timeout S' && ok "route --help lists --body-timeout" || bad "route --help"

"$FURROW_BIN" convert --hf "$golden/tiny-a-bf16" --out model --quiet > convert.log 2>&1 ||
  { cat convert.log; echo "FAIL: convert"; exit 1; }

start() { # NAME ARGS...: a furrow command in the background; sets port and pid
  name=$1; shift
  rm -f "$name.port"
  timeout -k 5 300 "$FURROW_BIN" "$@" --port 0 --port-file "$name.port" > "$name.log" 2>&1 &
  i=0
  while [ ! -s "$name.port" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
  port=$(cat "$name.port" 2>/dev/null)
  pid=$(sed -n 's/.*; pid \([0-9]*\)$/\1/p' "$name.log" | head -n 1)
  [ -n "$port" ] && [ -n "$pid" ] || { cat "$name.log"; echo "FAIL: $name did not start"; exit 1; }
  pids="$pids $pid"
}
start a serve --model model --max-context 256 --max-batch 4
aport=$port
ht=1 bt=1.5
start router route --replica "http://127.0.0.1:$aport" --poll-interval 0.2 --header-timeout $ht --body-timeout $bt \
  --max-body 4096 --max-connections 4
R=http://127.0.0.1:$port rport=$port rpid=$pid
metric() { curl -s "$R/metrics" | awk -v k="$1" '$1 == k {v = $2} END {print v + 0}'; }
until_true 30 sh -c "[ \$(curl -s -o /dev/null -w '%{http_code}' $R/health) = 200 ]" || bad "the replica never came into service"

# Upstream connections reused: 10 requests one after another.
for i in 1 2 3 4 5 6 7 8 9 10; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$R/v1/completions" -d '{"prompt": [1, 2], "max_tokens": 2}')" = 200 ] ||
    bad "request $i"
done
key="furrow_route_replica_connects_total{replica=\"http://127.0.0.1:$aport\"}"
n=$(metric "$key")
[ "$n" -le 3 ] && ok "10 requests in a row opened $n new connection(s) to the replica (the others reused the prober's or their own)" ||
  bad "10 requests opened $n connections to the replica"

for what in slowloris slowbody length; do
  timeout 60 python3 "$FURROW_SRCDIR/tests/route_hostile.py" "$rport" $ht $bt $what || fail=1
done
timeout 60 python3 "$FURROW_SRCDIR/tests/route_hostile.py" "$rport" 4 - cap || fail=1
curl -s "$R/metrics" > m.txt
t=$(sed -n 's/^furrow_route_http_timeouts_total \([0-9]*\)$/\1/p' m.txt)
[ -n "$t" ] && [ "$t" -ge 2 ] && grep -q 'furrow_route_requests_total{status="408"}' m.txt &&
  grep -q 'furrow_route_requests_total{status="413"}' m.txt && grep -q 'furrow_route_requests_total{status="503"}' m.txt &&
  ok "/metrics counts the timeouts ($t) and the 408, 413 and 503 answers" || bad "/metrics: $(grep -E 'http_|status' m.txt)"
kill -TERM "$rpid"
until_true 20 sh -c "! kill -0 $rpid 2>/dev/null" && ok "the router stops on SIGTERM" || bad "router on SIGTERM"
exit $fail
