#!/bin/sh
# The hang watchdog (--watchdog S): a rank stopped with SIGSTOP ends the whole
# job within a few bounds, with a message naming the stopped rank and what the
# waiting rank was doing: mid-generation under tp 2 and pp 2, and in an idle
# server (heartbeats) under tp 2 (follower stopped) and pp 2 (leader stopped).
# An idle server with a short bound stays up and still answers.
set -u
. "$FURROW_SRCDIR/tests/mpi.sh"
cd "$FURROW_TMP" || exit 1
fail=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }
"$FURROW_BIN" synth --out model --preset tiny --quiet || { echo "FAIL: synth"; exit 1; }

rank_pid() { # PATTERN RANK: the pid of that world rank of a job matching PATTERN
  for i in $(seq 1 200); do
    for p in $(pgrep -f "$1"); do
      tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && { echo "$p"; return; }
    done
    sleep 0.1
  done
}

# stopped NAME JOB PID NEEDLE...: after SIGSTOP of PID the job ends within 30 s,
# non-zero, and its stderr (err.txt) holds every needle.
stopped() {
  name=$1 job=$2 victim=$3; shift 3
  if [ -z "$victim" ]; then bad "$name: the rank never started"; kill $job; return; fi
  kill -STOP "$victim"
  start=$(date +%s)
  wait $job
  rc=$?
  took=$(( $(date +%s) - start ))
  kill -9 "$victim" 2>/dev/null   # a launcher that left it behind must not leave it to the next test
  if [ $rc -eq 0 ] || [ $rc -eq 124 ] || [ $rc -eq 137 ] || [ $took -gt 30 ]; then
    cat err.txt; bad "$name: exit $rc after ${took}s"; return
  fi
  for n in "$@"; do grep -qF -- "$n" err.txt || { cat err.txt; bad "$name: no '$n' in the message"; return; }; done
  ok "$name: ended in ${took}s: $(grep -m1 'watchdog' err.txt | cut -c 1-220)"
}

gen() { # NP ARGS...: a long generation in the background
  np=$1; shift
  fw_mpirun 120 "$np" "$FURROW_BIN" generate --model model --prompt-tokens 1,2,3 --max-tokens 100000 --ignore-eos \
    --kernels ref --watchdog 3 "$@" > /dev/null 2> err.txt &
  job=$!
}

gen 2 --tp 2
victim=$(rank_pid "furrow generate --model model" 1); sleep 2
stopped "generate tp 2, rank 1 stopped" $job "$victim" "rank 1 (pid $victim) on this node is not running" \
  "in step" "--watchdog 3"

gen 2 --tp 1 --pp 2
victim=$(rank_pid "furrow generate --model model" 0); sleep 2
stopped "generate pp 2, rank 0 stopped" $job "$victim" "rank 0 (pid $victim) on this node is not running" "--watchdog 3"

serve() { # NP ARGS...: an idle server in the background, once it listens
  np=$1; shift
  rm -f port
  fw_mpirun 120 "$np" "$FURROW_BIN" serve --model model --port 0 --port-file port --watchdog 2 "$@" > /dev/null 2> err.txt &
  job=$!
  i=0
  while [ ! -s port ] && [ $i -lt 600 ] && kill -0 $job 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
}

serve 2 --tp 2
sleep 5   # several bounds of idling: heartbeats keep it up
url=http://127.0.0.1:$(cat port 2>/dev/null)
curl -s "$url/v1/completions" -d '{"prompt": [1, 2, 3], "max_tokens": 3}' | grep -q '"finish_reason"' &&
  kill -0 $job && ok "an idle server outlives its bound and answers" || { cat err.txt; bad "idle server"; }
stopped "idle serve tp 2, rank 1 stopped" $job "$(rank_pid 'furrow serve --model model' 1)" "heartbeat" \
  "on this node is not running"

serve 2 --tp 1 --pp 2
sleep 1
stopped "idle serve pp 2, the leader stopped" $job "$(rank_pid 'furrow serve --model model' 0)" \
  "waiting for the next step plan" "rank 0" "on this node is not running"
exit $fail
