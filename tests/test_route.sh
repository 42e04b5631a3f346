#!/bin/sh
# furrow route over furrow serve replicas of the golden tiny model, on
# 127.0.0.1 only: replicas join through the registry folder and through
# --register; requests spread over them (the router's per-replica counts);
# streams through the router equal a replica's own, and a client that leaves
# one stops it on the replica; kill -9 of a replica under
# a load of concurrent requests loses none (each retried where needed) and
# takes it out of service; a replica started later joins and gets requests; a
# drained one gets none, and its heartbeat does not bring it back; a
# replica's /metrics has the energy counters, or says why not; a registry
# replica removes its file on SIGTERM and leaves; replicas out of service for
# --forget-after are dropped (a dead one's registry file too); SIGTERM makes a
# replica leave; bad flags
# and bad /replicas calls are refused by name.
set -u
. "$FURROW_SRCDIR/tests/route_common.sh"
convert_golden

serve() { start "$@" --model model --max-context 256 --max-batch 8; }
listed() { curl -s "$R/replicas" | grep -q "\"http://127.0.0.1:$1\""; }
complete() { curl -s -o /dev/null -w '%{http_code}' "$R/v1/completions" -d '{"prompt": [1, 2, 3], "max_tokens": 4}'; }

# Flags: a bad one is refused, naming it.
for args in "--retries -1" "--poll-interval 0" "--replica ftp://h:1" "--replica http://h:1/v1" "--bogus"; do
  if "$FURROW_BIN" route $args > flag.txt 2>&1; then bad "route $args was taken"
  else grep -q -- "${args%% *}" flag.txt && ok "route $args refused: $(head -n 1 flag.txt)" || bad "route $args: $(cat flag.txt)"; fi
done
"$FURROW_BIN" route --help | grep -q -- '--registry DIR' && ok "route --help lists the flags" || bad "route --help"

mkdir -p reg
start router route --registry reg --poll-interval 0.2 --unhealthy-after 2 --forget-after 8
R=http://127.0.0.1:$port rport=$port rpid=$pid
serve a serve --registry reg
aport=$port apid=$pid
serve b serve --register "$R"
bport=$port bpid=$pid
until_true 30 in_service 2 && ok "a registry replica and a --register one joined" ||
  { bad "replicas in service: $(metric furrow_route_replicas_in_service)"; curl -s "$R/replicas"; cat router.log; exit 1; }
[ -f "reg/127_0_0_1_$aport" ] && ls -a reg | grep -q '\.tmp' && bad "temporary registry file left" || true
rm -f "reg/127_0_0_1_$aport"
until_true 15 test -f "reg/127_0_0_1_$aport" && grep -qx "http://127.0.0.1:$aport" "reg/127_0_0_1_$aport" &&
  ok "a wrote its registry file again after it was removed" || bad "a's registry file not written again"
until_true 10 listed "$aport" && until_true 10 in_service 2 || bad "a not back in service"

# Spread: with no load, equal replicas take turns.
for i in 1 2 3 4 5 6 7 8; do [ "$(complete)" = 200 ] || bad "request $i through the router"; done
na=$(metric furrow_route_replica_requests_total "$aport") nb=$(metric furrow_route_replica_requests_total "$bport")
[ "$na" -ge 2 ] && [ "$nb" -ge 2 ] && [ $((na + nb)) = 8 ] && ok "8 requests spread: $na on a, $nb on b" ||
  bad "8 requests: $na on a, $nb on b"
curl -s "$R/v1/models" | grep -q '"id":"model"' && ok "GET /v1/models from a replica" || bad "/v1/models"

# Energy in a replica's /metrics: joules by domain where this machine's counters
# can be read, else the meter marked unavailable with its reason.
curl -s "http://127.0.0.1:$aport/metrics" > a.metrics
rapl=0
for f in /sys/class/powercap/intel-rapl:*/energy_uj /sys/class/powercap/amd-rapl:*/energy_uj; do
  [ -f "$f" ] && cat "$f" > /dev/null 2>&1 && rapl=1
done
grep -q '^# TYPE furrow_energy_joules_total counter' a.metrics && grep -q '^furrow_generation_tokens_total [1-9]' a.metrics ||
  bad "the energy counter or generated tokens are missing from /metrics"
for m in rapl nvml; do
  avail=$(sed -n "s/^furrow_energy_meter_available{meter=\"$m\".*} \([01]\)$/\1/p" a.metrics)
  n=$(grep -c "^furrow_energy_joules_total{meter=\"$m\",domain=\"[^\"]*\"} [0-9][0-9.]*$" a.metrics)
  if [ "$avail" = 1 ] && [ "$n" -ge 1 ]; then ok "$m energy: $n domain(s) in /metrics"
  elif [ "$avail" = 0 ] && [ "$n" = 0 ] && grep -q "^furrow_energy_meter_available{meter=\"$m\",reason=\".\+\"} 0$" a.metrics; then
    ok "$m energy absent, said so: $(grep "meter_available{meter=\"$m\"" a.metrics)"
  else bad "$m energy in /metrics: available '$avail', $n domain(s)"; grep energy a.metrics; fi
  [ $m = rapl ] && [ "$avail" != "$rapl" ] && bad "rapl available $avail, but this machine's counters readable: $rapl"
done
python3 "$FURROW_SRCDIR/tests/route_client.py" stream "$rport" "$aport" || fail=1
python3 "$FURROW_SRCDIR/tests/route_client.py" leave "$rport" "$aport" "$bport" || fail=1

# Bad calls to the router.
code=$(curl -s -o e.json -w '%{http_code}' "$R/replicas" -d '{"url": "gopher://x"}')
[ "$code" = 400 ] && grep -q 'http://' e.json && ok "POST /replicas with a bad URL: 400, $(cat e.json)" || bad "bad URL: $code $(cat e.json)"
code=$(curl -s -o e.json -w '%{http_code}' -X DELETE "$R/replicas?url=http://127.0.0.1:1")
[ "$code" = 404 ] && ok "DELETE of an unknown replica: 404" || bad "unknown DELETE: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' "$R/v1/nothing")
[ "$code" = 404 ] && ok "unknown route: 404" || bad "unknown route: $code"

# kill -9 b while it has requests in flight: every request completes. 200 tokens a request, so that one
# seen in flight on b is still running there when the kill lands.
python3 "$FURROW_SRCDIR/tests/route_client.py" load "$rport" 24 6 200 > load.txt 2>&1 &
loadjob=$!
b_busy() { [ "$(metric furrow_route_replica_in_flight "$bport")" -ge 1 ]; }
if until_true 60 b_busy; then
  kill -9 "$bpid"
  b_down() { listed "$bport" && [ "$(metric furrow_route_replica_healthy "$bport")" = 0 ] &&
             [ "$(metric furrow_route_replica_errors_total "$bport")" -ge 1 ]; }
  until_true 10 b_down && ok "b killed under load: marked unhealthy, $(metric furrow_route_replica_errors_total "$bport") \
request(s) failed there" || bad "after kill -9: $(curl -s "$R/replicas")"
  wait $loadjob && cat load.txt || { cat load.txt; bad "requests lost when b was killed"; }
  retries=$(metric furrow_route_retries_total)
  [ "$retries" -ge 1 ] && ok "$retries request(s) retried on another replica" || bad "no retry after the kill"
  [ "$(complete)" = 200 ] && ok "requests still answered by a" || bad "request after the kill"
else
  bad "b never had a request in flight"; wait $loadjob
fi

# A replica started later joins without a restart and gets requests.
serve c serve --register "$R"
cport=$port cpid=$pid
until_true 30 in_service 2 && ok "c, started later, joined" || bad "c did not join: $(curl -s "$R/replicas")"
for i in 1 2 3 4 5 6; do complete > /dev/null; done
nc=$(metric furrow_route_replica_requests_total "$cport")
[ "$nc" -ge 1 ] && ok "c got $nc of 6 requests" || bad "c got no request"

# Drained by request: none go to c, and its heartbeat (every 5 s) does not resume it.
curl -s -X POST "$R/replicas/drain?url=http://127.0.0.1:$cport" | grep -q '"draining":true' || bad "drain call"
sleep 6
for i in 1 2 3 4 5 6; do [ "$(complete)" = 200 ] || bad "request $i with c drained"; done
[ "$(metric furrow_route_replica_requests_total "$cport")" = "$nc" ] &&
  [ "$(metric furrow_route_replica_draining "$cport")" = 1 ] &&
  ok "drained c got none of 6 requests, over a heartbeat" || bad "drained c got requests"

# a (a registry replica) stopped: its file goes, it leaves; with c drained and b dead, nothing is in service.
kill -TERM "$apid"
until_true 10 sh -c "[ ! -e reg/127_0_0_1_$aport ] && ! curl -s '$R/replicas' | grep -q ':$aport\"'" &&
  ok "a left when it removed its registry file on SIGTERM" || bad "a still listed: $(ls reg) $(curl -s "$R/replicas")"
code=$(curl -s -o e.json -w '%{http_code}' "$R/v1/completions" -d '{"prompt": [1], "max_tokens": 2}')
[ "$code" = 503 ] && grep -q 'no replica' e.json && ok "no replica in service: 503 ($(cat e.json))" ||
  bad "no replica: $code $(cat e.json)"
curl -s -X POST "$R/replicas/resume?url=http://127.0.0.1:$cport" > /dev/null
[ "$(complete)" = 200 ] && ok "c resumed answers" || bad "request after resume"

# Forgotten after --forget-after: b (killed), and a dead replica's registry file, which is removed.
until_true 30 sh -c "! curl -s '$R/replicas' | grep -q ':$bport\"'" && ok "killed b forgotten after --forget-after 8" ||
  bad "b still listed: $(curl -s "$R/replicas")"
echo http://127.0.0.1:9 > reg/dead
until_true 10 listed 9 || bad "the dead registry replica was not read"
until_true 20 sh -c "[ ! -e reg/dead ] && ! curl -s '$R/replicas' | grep -q ':9\"'" &&
  ok "a dead registry replica forgotten, its file removed" || bad "dead registry replica: $(ls reg) $(curl -s "$R/replicas")"

# SIGTERM: c leaves the router (DELETE) and stops cleanly.
kill -TERM "$cpid"
until_true 20 sh -c "! kill -0 $cpid 2>/dev/null"
grep -q 'left http' c.log && ! listed "$cport" && ok "SIGTERM: c left the router ($(grep 'left http' c.log))" ||
  { bad "c on SIGTERM"; cat c.log; }
kill -TERM "$rpid"
until_true 20 sh -c "! kill -0 $rpid 2>/dev/null" && grep -q 'stopping' router.log && ok "the router stops on SIGTERM" ||
  bad "router on SIGTERM"
exit $fail
