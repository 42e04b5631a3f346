#!/bin/sh
# furrow route's autoscaler on time to first token, on 127.0.0.1, with commands
# that start and stop furrow serve replicas of the golden tiny model in the
# background (as sbatch and scancel would jobs); the queue-depth rule is out of
# reach (--scale-up-queue 1000). Requests one at a time get their first token
# well under --scale-latency-ms: no second replica. A burst on a replica that
# runs one request at a time makes the waiting ones' first token late: a second
# replica starts, with the latency named in the log, and the router's /metrics
# show the replicas' time to first token; idle again, the new one is drained
# and stopped. Every request of the burst completes. Bad values are refused.
set -u
. "$FURROW_SRCDIR/tests/route_common.sh"

for args in "--scale-up a --scale-down b --scale-latency-ms -5" "--scale-latency-ms 100"; do
  if "$FURROW_BIN" route $args > flag.txt 2>&1; then bad "route $args was taken"
  else ok "route $args refused: $(head -n 1 flag.txt)"; fi
done
"$FURROW_BIN" route --help | grep -q -- '--scale-latency-ms MS' && ok "route --help lists --scale-latency-ms" ||
  bad "route --help"

convert_golden
bound=200
autoscale_router --min-replicas 1 --max-replicas 2 --scale-up-queue 1000 --scale-latency-ms $bound --scale-window 1 --cooldown 2
until_true 60 in_service 1 || { bad "no first replica"; cat router.log; exit 1; }

# One at a time for 4 s (over the window and a cool-down): first tokens come quickly.
end=$(($(date +%s) + 4)) n=0 worst=0
while [ "$(date +%s)" -lt $end ]; do
  curl -s -o /dev/null "$R/v1/completions" -d '{"prompt": [1, 2, 3], "max_tokens": 4}'; n=$((n + 1))
  t=$(metric furrow_route_autoscale_mean_ttft_seconds)
  worst=$(awk -v a="$t" -v b="$worst" 'BEGIN { print (a > b ? a : b) }')
done
ms=$(awk -v w="$worst" 'BEGIN { printf "%.1f", w * 1000 }')
[ "$(ups)" = 1 ] && awk -v w="$worst" -v b=$bound 'BEGIN { exit !(w > 0 && w * 1000 < b) }' &&
  ok "$n requests one at a time: mean time to first token at most $ms ms, no second replica" ||
  bad "one at a time: $(ups) up action(s), mean time to first token up to $ms ms"

# A burst of requests of 200 tokens, 12 at a time, on a replica that runs one at a time (a first token
# waits for ~5 requests ahead of it: at 80 ms a request, twice the bound): 24 at least, and on until the
# second replica is in service, however long that takes on this machine, then 24 more.
python3 "$FURROW_SRCDIR/tests/route_client.py" load "$(cat router.port)" 24 12 200 burst.done > load.txt 2>&1 &
load=$!
until_true 60 in_service 2 && grep -q 'autoscale: up: mean time to first token' router.log &&
  ok "a second replica joined under the burst ($(grep -o 'mean time to first token[^;]*' router.log | head -n 1))" ||
  bad "no second replica under the burst: $(cat router.log)"
grep -q 'autoscale: up: mean queue depth' router.log && bad "the queue rule fired, not the latency one"
touch burst.done
wait $load && cat load.txt || { cat load.txt; bad "requests of the burst failed"; }

stopped() { [ "$(downs)" = 1 ] && in_service 1 && ! kill -0 "$(cat pid.92)" 2>/dev/null; }
until_true 60 stopped && grep -q '^92 http://127.0.0.1:' downs.txt &&
  ok "idle: job 92 drained and stopped ($(head -n 1 downs.txt))" || bad "no scale-down: $(cat router.log)"
curl -s "$R/metrics" > m.txt
[ "$(ups)" = 2 ] && [ "$(metric furrow_route_autoscale_failures_total)" = 0 ] &&
  grep -q '^furrow_route_replica_ttft_seconds{replica="http://127.0.0.1:[0-9]*"} 0*[0-9.]*[1-9]' m.txt &&
  ok "/metrics: 2 up, 1 down, no failures; $(grep '^furrow_route_replica_ttft_seconds' m.txt | head -n 1)" ||
  bad "after idle: up $(ups), down $(downs); $(grep ttft m.txt)"
exit $fail
