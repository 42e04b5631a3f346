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
. "$FURROW_SRCDIR/tests/route_common.sh"

for args in "--header-timeout 0" "--body-timeout x" "--header-timeout 70"; do
  if "$FURROW_BIN" route $args > flag.txt 2>&1; then bad "route $args was taken"
  else grep -q -- "${args%% *}" flag.txt && ok "route $args refused: $(head -n 1 flag.txt)" || bad "route $args: $(cat flag.txt)"; fi
done
"$FURROW_BIN" route --help | grep -q -- '--body-timeout S' && ok "route --help lists --body-timeout" || bad "route --help"

convert_golden
start_limit=300
start a serve --model model --max-context 256 --max-batch 4
aport=$port
ht=1 bt=1.5
start router route --replica "http://127.0.0.1:$aport" --poll-interval 0.2 --header-timeout $ht --body-timeout $bt \
  --max-body 4096 --max-connections 4
R=http://127.0.0.1:$port rport=$port rpid=$pid
until_true 30 sh -c "[ \$(curl -s -o /dev/null -w '%{http_code}' $R/health) = 200 ]" || bad "the replica never came into service"

# Upstream connections reused: 10 requests one after another.
for i in 1 2 3 4 5 6 7 8 9 10; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$R/v1/completions" -d '{"prompt": [1, 2], "max_tokens": 2}')" = 200 ] ||
    bad "request $i"
done
n=$(metric furrow_route_replica_connects_total "$aport")
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
