#!/bin/sh
# furrow route's autoscaler on 127.0.0.1, with commands that start and stop
# furrow serve replicas of the golden tiny model in the background (as sbatch
# and scancel would jobs): it starts one replica to reach --min-replicas, a
# second under a burst of requests (queue above the bound), which takes part
# of the burst; when all are idle it drains and stops the newest, then holds
# steady. Every request of the burst completes; each decision is in the log
# and in /metrics. Bad autoscaling flags are refused by name.
set -u
. "$FURROW_SRCDIR/tests/route_common.sh"

for args in "--scale-up true" "--min-replicas 2" "--scale-up a --scale-down b --min-replicas 3 --max-replicas 2" \
            "--scale-up a --scale-down b --cooldown -1"; do
  if "$FURROW_BIN" route $args > flag.txt 2>&1; then bad "route $args was taken"
  else ok "route $args refused: $(head -n 1 flag.txt)"; fi
done

convert_golden

autoscale_router --min-replicas 1 --max-replicas 2 --scale-up-queue 0.5 --scale-window 1 --cooldown 2

until_true 60 in_service 1 && grep -q 'autoscale: up: 0 in service or starting, below --min-replicas 1' router.log &&
  ok "started the first replica (job 91) for --min-replicas 1" || { bad "no first replica"; cat router.log; exit 1; }

# A burst of requests of 200 tokens, 8 at a time, on replicas that run one at a time: 40 at least, and
# on until the second replica is in service (however fast this machine runs them), then 16 more for it.
python3 "$FURROW_SRCDIR/tests/route_client.py" load "$(cat router.port)" 40 8 200 burst.done > load.txt 2>&1 &
load=$!
until_true 60 in_service 2 && grep -q 'autoscale: up: mean queue depth' router.log &&
  ok "a second replica joined under the burst ($(grep -o 'mean queue depth[^;]*' router.log | head -n 1))" ||
  bad "no second replica under the burst: $(cat router.log)"
touch burst.done
wait $load && cat load.txt || { cat load.txt; bad "requests of the burst failed"; }

# Idle: the newest (job 92) is drained and stopped; one stays.
stopped() { [ "$(downs)" = 1 ] && in_service 1 && ! kill -0 "$(cat pid.92)" 2>/dev/null; }
until_true 60 stopped && grep -q '^92 http://127.0.0.1:' downs.txt && grep -q 'autoscale: down: every replica idle' router.log &&
  ok "idle: job 92 drained and stopped ($(head -n 1 downs.txt))" || bad "no scale-down: $(cat router.log)"
n92=$(sed -n 's/.*stopped; \([0-9]*\) tokens generated.*/\1/p' rep92.log)
[ "${n92:-0}" -gt 0 ] && ok "job 92 generated $n92 tokens of the burst before it stopped" || bad "job 92 took no request"
sleep 4 # two cool-downs: no flapping at the minimum
[ "$(ups)" = 2 ] && [ "$(downs)" = 1 ] && in_service 1 && [ "$(metric furrow_route_autoscale_failures_total)" = 0 ] &&
  ok "steady at --min-replicas: 2 up, 1 down, no failures in /metrics" ||
  bad "after idle: up $(ups), down $(downs), in service $(metric furrow_route_replicas_in_service)"
exit $fail
