#!/bin/sh
# furrow route's autoscaler with Slurm on a real local cluster of 2 emulated
# nodes: --scale-up submits jobs/slurm/replica.sbatch (sbatch --parsable),
# --scale-down cancels a job (scancel $FURROW_JOB). The router starts one
# replica job for --min-replicas, a second under a burst of requests, and when
# all are idle cancels the newest, which leaves the router; the other stays.
set -u
golden=${FURROW_SHARED:-}/golden
[ -n "${FURROW_SHARED:-}" ] && [ -d "$golden/tiny-a-bf16" ] || { echo "SKIP: no shared/golden"; exit 77; }
FW_PORT=17217 FW_NODES=2 . "$FURROW_SRCDIR/tests/slurm.sh"
T=$FURROW_TMP
fail=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }
. "$FURROW_SRCDIR/tests/until.sh"

"$FURROW_BIN" convert --hf "$golden/tiny-a-bf16" --out "$T/model" --quiet > "$T/convert.log" 2>&1 ||
  { cat "$T/convert.log"; echo "FAIL: convert"; exit 1; }

rm -f "$T/router.port"
timeout -k 5 600 "$FURROW_BIN" route --port 0 --port-file "$T/router.port" --poll-interval 0.3 \
  --scale-up "sbatch --parsable --time=10 -N 1 -n 1 -o $T/rep%j.out -e $T/rep%j.err \
$FURROW_SRCDIR/jobs/slurm/replica.sbatch --model $T/model --max-context 256 --max-batch 1 \
--register http://127.0.0.1:\$(cat $T/router.port)" --scale-down 'scancel $FURROW_JOB' \
  --min-replicas 1 --max-replicas 2 --scale-up-queue 0.5 --scale-window 1 --cooldown 2 > "$T/router.log" 2>&1 &
router=$!
trap 'kill $router 2>/dev/null; fw_cluster_stop' EXIT
until_true 20 test -s "$T/router.port" || { cat "$T/router.log"; echo "FAIL: the router did not start"; exit 1; }
R=http://127.0.0.1:$(cat "$T/router.port")
metric() { curl -s "$R/metrics" | awk -v k="$1" '$1 == k {v = $2} END {print v + 0}'; }
in_service() { [ "$(metric furrow_route_replicas_in_service)" = "$1" ]; }

until_true 90 in_service 1 || { bad "no first replica job"; cat "$T/router.log"; exit 1; }
job1=$(sed -n 's/.*autoscale: up: started job \([0-9]*\).*/\1/p' "$T/router.log" | head -n 1)
grep -q "joined, job $job1" "$T/router.log" && [ "$(state "$job1")" = RUNNING ] &&
  ok "job $job1 submitted for --min-replicas 1 joined the router under its job id" || bad "first job: $(cat "$T/router.log")"

python3 "$FURROW_SRCDIR/tests/route_client.py" load "$(cat "$T/router.port")" 40 8 200 > "$T/load.txt" 2>&1 &
load=$!
until_true 90 in_service 2 && ok "a second replica job joined under the burst" || bad "no second replica: $(cat "$T/router.log")"
wait $load && cat "$T/load.txt" || { cat "$T/load.txt"; bad "requests of the burst failed"; }
job2=$(sed -n 's/.*autoscale: up: started job \([0-9]*\).*/\1/p' "$T/router.log" | sed -n 2p)

gone() { in_service 1 && [ "$(state "${job2:-0}")" = CANCELLED ]; }
if until_true 90 gone && grep -q "stopping job $job2 (--scale-down)" "$T/router.log" && [ "$(state "$job1")" = RUNNING ] &&
   grep -q 'left http' "$T/rep$job2.err"; then
  ok "idle: job $job2 drained, cancelled, left the router; job $job1 runs on"
else
  bad "scale-down: job $job2 $(state "${job2:-0}"), job $job1 $(state "$job1")"; cat "$T/router.log"
fi
[ "$(metric 'furrow_route_autoscale_actions_total{action="up"}')" = 2 ] &&
  [ "$(metric 'furrow_route_autoscale_actions_total{action="down"}')" = 1 ] &&
  ok "/metrics: 2 up, 1 down" || bad "/metrics: $(curl -s "$R/metrics" | grep autoscale)"
scancel "$job1"
exit $fail
