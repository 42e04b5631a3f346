#!/bin/sh
# Self-healing on a real local Slurm cluster of 2 emulated nodes (requeued jobs
# may start again after 5 s here, --cred-expire): a replica job
# (jobs/slurm/replica.sbatch) joins a furrow route on this host; kill -9 of its
# rank makes the router take it out and the job requeue itself; the requeued
# run joins the router again and answers; scancel makes it leave without a
# requeue. A 2-rank replica with a rank stopped (SIGSTOP) is ended by the hang
# watchdog and requeued the same way. A batch generate.sbatch whose rank is killed mid-run is requeued,
# resumes from its output file and ends with the output of an uninterrupted run,
# one line per id.
set -u
golden=${FURROW_SHARED:-}/golden
[ -n "${FURROW_SHARED:-}" ] && [ -d "$golden/tiny-a-bf16" ] || { echo "SKIP: no shared/golden"; exit 77; }
FW_PORT=17117 FW_NODES=2 FW_CRED_EXPIRE=5 . "$FURROW_SRCDIR/tests/slurm.sh"
jobs=$FURROW_SRCDIR/jobs/slurm
T=$FURROW_TMP
fail=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }
. "$FURROW_SRCDIR/tests/until.sh"
restarts() { scontrol -o show job "$1" | sed -n 's/.* Restarts=\([0-9]*\).*/\1/p'; }

"$FURROW_BIN" convert --hf "$golden/tiny-a-bf16" --out "$T/model" --quiet > "$T/convert.log" 2>&1 ||
  { cat "$T/convert.log"; echo "FAIL: convert"; exit 1; }

# The router, on this host; the replica's job on an emulated node.
rm -f "$T/router.port"
timeout -k 5 600 "$FURROW_BIN" route --port 0 --port-file "$T/router.port" --poll-interval 0.3 > "$T/router.log" 2>&1 &
router=$!
trap 'kill $router 2>/dev/null; fw_cluster_stop' EXIT
until_true 20 test -s "$T/router.port" || { cat "$T/router.log"; echo "FAIL: the router did not start"; exit 1; }
R=http://127.0.0.1:$(cat "$T/router.port")
metric() { curl -s "$R/metrics" | awk -v k="$1" '$1 == k {v = $2} END {print v + 0}'; }
in_service() { [ "$(metric furrow_route_replicas_in_service)" = "$1" ]; }
complete() { curl -s -o /dev/null -w '%{http_code}' "$R/v1/completions" -d '{"prompt": [1, 2, 3], "max_tokens": 4}'; }
pid_of() { sed -n 's/.*; pid \([0-9]*\)$/\1/p' "$1" | tail -n 1; }
healthy_urls() {
  curl -s "$R/replicas" | python3 -c 'import json, sys
print(" ".join(r["url"] for r in json.load(sys.stdin)["replicas"] if r["healthy"]))'
}

job=$(sbatch --parsable --time=10 -N 1 -n 1 -o "$T/replica.out" -e "$T/replica.err" "$jobs/replica.sbatch" \
  --model "$T/model" --register "$R" --max-context 256 --max-requeues 2) || { echo "FAIL: sbatch replica"; exit 1; }
if until_true 90 in_service 1 && [ "$(complete)" = 200 ]; then
  ok "replica job $job joined the router and answers"
else
  bad "the replica did not join"; cat "$T/replica.err" "$T/router.log"; scancel "$job"; exit 1
fi
# Slurm forwards the job's stderr to the file on its own time: the line with the pid may
# arrive after the replica has registered.
pid_known() { [ -n "$(pid_of "$T/replica.err")" ]; }
until_true 20 pid_known || { bad "no pid in replica.err"; cat "$T/replica.err"; scancel "$job"; exit 1; }
pid=$(pid_of "$T/replica.err")
url1=$(healthy_urls)

# kill -9 its rank: taken out of service, the job requeues itself, comes back and joins again.
kill -9 "$pid"
until_true 20 in_service 0 && ok "the killed replica is out of service" || bad "still in service after kill -9"
back() { [ "$(restarts "$job")" = 1 ] && [ "$(state "$job")" = RUNNING ] && in_service 1; }
if until_true 120 back && [ "$(complete)" = 200 ]; then
  url2=$(healthy_urls)
  [ -n "$url2" ] && grep -q 'requeueing (restart 1 of at most 2)' "$T/replica.err" && grep -q 'requeued (1), starting again' "$T/replica.err" &&
    ok "requeued by its script (restart 1), joined again as $url2 (was $url1) and answers" || bad "messages: $(cat "$T/replica.err")"
else
  bad "the replica did not come back: $(scontrol -o show job "$job")"; cat "$T/replica.err"
fi

# scancel: the replica leaves the router and the job is not requeued.
scancel "$job"
until_true 60 sh -c "[ \"\$(scontrol -o show job $job | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')\" = CANCELLED ]"
sleep 1
[ "$(restarts "$job")" = 1 ] && [ "$(state "$job")" = CANCELLED ] && grep -q 'left http' "$T/replica.err" &&
  ok "scancel: the replica left the router, no requeue" || bad "scancel: $(scontrol -o show job "$job"); $(tail -n 5 "$T/replica.err")"

# A 2-rank replica whose rank 1 is stopped (SIGSTOP): the watchdog ends it, the
# job requeues itself and joins again.
ln -s "$T/model" "$T/wmodel"
job=$(sbatch --parsable --time=10 -N 1 -n 2 -o "$T/wd.out" -e "$T/wd.err" "$jobs/replica.sbatch" \
  --model "$T/wmodel" --tp 2 --watchdog 3 --register "$R" --max-context 256) || { echo "FAIL: sbatch replica"; exit 1; }
rank1() { # the pid of rank 1 of this replica (srun's SLURM_PROCID)
  for p in $(pgrep -f "serve --model $T/wmodel"); do
    [ "$(cat /proc/$p/comm 2>/dev/null)" = furrow ] &&
      tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx SLURM_PROCID=1 && { echo "$p"; return 0; }
  done
  return 1
}
if until_true 90 in_service 1 && [ "$(complete)" = 200 ] && victim=$(rank1); then
  kill -STOP "$victim"
  until_true 30 in_service 0
  back() { [ "$(restarts "$job")" = 1 ] && [ "$(state "$job")" = RUNNING ] && in_service 1; }
  if until_true 120 back && [ "$(complete)" = 200 ] && grep -q 'furrow watchdog: rank 0' "$T/wd.err" &&
     grep -q 'requeueing (restart 1' "$T/wd.err"; then
    ok "rank 1 stopped: $(grep -m1 -o 'furrow watchdog: rank 0[^;]*' "$T/wd.err" | cut -c 1-120)...; requeued, joined again"
  else
    bad "watchdog requeue: $(scontrol -o show job "$job")"; cat "$T/wd.err"
  fi
  kill -CONT "$victim" 2>/dev/null
else
  bad "the 2-rank replica did not join"; cat "$T/wd.err"
fi
scancel "$job"

# generate.sbatch killed mid-run: requeued, resumed, the output of an uninterrupted run.
python3 -c '
import json
for i in range(40):
    print(json.dumps({"id": "r%02d" % i, "prompt": [1 + 37 * i, 5 + i, 9, 2 * i + 3], "max_tokens": 24,
                      "temperature": 0, "ignore_eos": True}))' > "$T/in.jsonl"
"$FURROW_BIN" generate --model "$T/model" --input "$T/in.jsonl" --output "$T/ref.jsonl" --max-batch 2 2>/dev/null ||
  { echo "FAIL: uninterrupted run"; exit 1; }
job=$(sbatch --parsable --time=10 -N 1 -n 1 -o "$T/gen.out" -e "$T/gen.err" "$jobs/generate.sbatch" \
  --model "$T/model" --input "$T/in.jsonl" --output "$T/gen.jsonl" --max-batch 2) || { echo "FAIL: sbatch generate"; exit 1; }
some() { [ -s "$T/gen.jsonl" ] && [ "$(wc -l < "$T/gen.jsonl")" -ge 4 ]; }
if until_true 90 some; then
  gpid=$(pgrep -f "generate --model $T/model --input $T/in.jsonl" | head -n 1)
  done_before=$(wc -l < "$T/gen.jsonl")
  [ -n "$gpid" ] && kill -9 "$gpid"
  "$jobs/wait.sh" "$job" 240
  rc=$?
  sort "$T/gen.jsonl" > "$T/gen.sorted"; sort "$T/ref.jsonl" > "$T/ref.sorted"
  if [ $rc = 0 ] && [ "$(restarts "$job")" = 1 ] && grep -q 'requeued (1), resuming' "$T/gen.err" &&
     [ "$done_before" -lt 40 ] && cmp -s "$T/gen.sorted" "$T/ref.sorted"; then
    ok "generate.sbatch killed after $done_before of 40 results: requeued, resumed, the uninterrupted run's 40 lines"
  else
    bad "generate requeue: exit $rc, restarts $(restarts "$job"), $done_before before the kill, $(wc -l < "$T/gen.jsonl") lines"
    diff "$T/gen.sorted" "$T/ref.sorted" | head -n 6; cat "$T/gen.err"
  fi
else
  bad "generate.sbatch wrote no results"; cat "$T/gen.err"; scancel "$job"
fi
exit $fail
