#!/bin/sh
# furrow serve under mpirun (tp 2) on a synthetic model, contacted only on
# 127.0.0.1: curl on every route; a standard-library Python client
# (tests/serve_client.py) for 16 concurrent streams against the same requests
# one at a time, the prefix cache (cached_tokens of a repeated prompt and of a
# chat's next turn, its /metrics), 1000 hostile requests (and rank 0's memory
# before and after), slow clients, clients that leave mid-stream; SIGTERM stops
# every rank cleanly.
# A second server (one rank, a queue of 2) answers 503 when full and cancels a
# stream in flight on SIGTERM. An unwritable --port-file is an error.
set -u
. "$FURROW_SRCDIR/tests/mpi.sh"
fail=0
cd "$FURROW_TMP" || exit 1
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }
client() { python3 "$FURROW_SRCDIR/tests/serve_client.py" "$port" "$@" || fail=1; }
"$FURROW_BIN" synth --out model --preset tiny --quiet || { echo "FAIL: synth"; exit 1; }

start() { # LOG ARGS...: starts a server in the background, sets port, pid (rank 0), job
  log=$1; shift
  rm -f port
  "$@" > "$log" 2>&1 &
  job=$!
  i=0
  while [ ! -s port ] && [ $i -lt 600 ] && kill -0 $job 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
  port=$(cat port 2>/dev/null)
  pid=$(sed -n 's/.*; pid \([0-9]*\)$/\1/p' "$log" | head -n 1)
  [ -n "$port" ] && [ -n "$pid" ] || { cat "$log"; echo "FAIL: the server did not start"; kill $job; exit 1; }
}
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }

start serve.log fw_mpirun 400 2 "$FURROW_BIN" serve --model model --port 0 --port-file port --tp 2 \
  --max-context 128 --max-body 65536 --http-timeout 5
url=http://127.0.0.1:$port

# curl on every route.
[ "$(curl -s "$url/health")" = '{"status":"ok"}' ] && ok "GET /health" || bad "/health"
curl -s "$url/v1/models" | grep -q '"id":"model"' && ok "GET /v1/models" || bad "/v1/models"
curl -s "$url/v1/completions" -d '{"prompt": [1, 2, 3], "max_tokens": 5, "temperature": 0}' > c.json
grep -q '"finish_reason":"length"' c.json && grep -q '"completion_tokens":5' c.json && ok "POST /v1/completions" ||
  bad "completion: $(cat c.json)"
curl -sN "$url/v1/chat/completions" -d '{"messages": [{"role": "user", "content": "Salut !"}], "max_tokens": 6,
  "stream": true}' > s.txt
printf 'data: [DONE]\n\n' > done.txt
tail -c 14 s.txt | cmp -s - done.txt && [ "$(grep -c '^data: {' s.txt)" -ge 2 ] &&
  ok "POST /v1/chat/completions, stream: server-sent events ending in data: [DONE]" || bad "stream: $(cat s.txt)"
code=$(curl -s -o e.json -w '%{http_code}' "$url/v1/completions" -d '{"prompt": [1], "model": "other"}')
[ "$code" = 404 ] && grep -q '"type":"not_found_error"' e.json && ok "unknown model: 404 with OpenAI error JSON" ||
  bad "unknown model: $code $(cat e.json)"

client same
client prefix
client hostile 200
before=$(rss)
client hostile 1000
after=$(rss)
if [ -n "${ASAN_OPTIONS:-}" ]; then # AddressSanitizer's quarantine keeps freed memory: not a leak
  echo "info: rank 0 memory under ASan: $before kB -> $after kB"
elif [ $((after - before)) -le 2048 ]; then ok "rank 0 memory across 1000 hostile requests: $before kB -> $after kB"
else bad "rank 0 grew from $before kB to $after kB over 1000 hostile requests"; fi
client slow
client leave
curl -s "$url/metrics" > m.txt
for name in 'furrow_requests_total{status="200"}' 'furrow_requests_total{status="422"}' furrow_prompt_tokens_total \
  furrow_generation_tokens_total furrow_queue_depth furrow_running_requests furrow_kv_blocks_used \
  furrow_prefix_cache_hits_total furrow_prefix_cache_evictions_total \
  'furrow_step_seconds_bucket{le="+Inf"}' furrow_time_to_first_token_seconds_count; do
  grep -qF "$name " m.txt || bad "/metrics lacks $name"
done
ok "/metrics: requests by status, tokens, queue, batch, KV blocks, prefix cache, step time and TTFT histograms"

kill -TERM "$pid"
wait $job
rc=$?
[ $rc -eq 0 ] && grep -q "rank 1 stopped" serve.log && grep -q "furrow serve: stopped" serve.log &&
  ok "SIGTERM to rank 0 stops both ranks cleanly (exit 0)" || { bad "SIGTERM: exit $rc"; cat serve.log; }

# A queue of 2 and a batch of 1: 503 with Retry-After; SIGTERM cancels a stream in flight.
start serve1.log "$FURROW_BIN" serve --model model --port 0 --port-file port --max-context 4096 --max-queue 2 \
  --max-batch 1 --shutdown-grace 0
client busy
: > long.txt
curl -sN "http://127.0.0.1:$port/v1/completions" -d '{"prompt": [1, 2], "max_tokens": 4000, "ignore_eos": true,
  "stream": true}' > long.txt &
curl_job=$!
i=0
while ! grep -q '^data: {' long.txt && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
kill -TERM "$pid"
wait $job
rc=$?
wait $curl_job
[ $rc -eq 0 ] && tail -c 14 long.txt | cmp -s - done.txt && grep -q '"finish_reason":"cancelled"' long.txt &&
  ok "SIGTERM with a stream in flight: it ends as cancelled, then [DONE]; exit 0" ||
  { bad "SIGTERM during a stream: exit $rc, $(tail -c 300 long.txt)"; cat serve1.log; }

# A port file that cannot be written ends the server with a message (scripts wait for it).
timeout 120 "$FURROW_BIN" serve --model model --port 0 --port-file no/such/dir/port > noport.log 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q -- "--port-file no/such/dir/port: No such file or directory" noport.log &&
  ok "an unwritable --port-file: exit 1 with a message" || bad "unwritable --port-file: exit $rc, $(cat noport.log)"
exit $fail
