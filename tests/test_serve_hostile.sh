#!/bin/sh
# furrow serve against hostile clients (tests/serve_hostile.py, raw sockets on
# 127.0.0.1 only), with 8 connections so every slot is quick to hold: idle and
# half-sent connections hold them all while the admin port (--admin-port)
# answers /health and /metrics, and --header-timeout cuts them with 408;
# headers a byte at a time are cut; malformed request lines get 400; absurd
# Content-Length values get 413 or 400 at once; an idle keep-alive connection
# closes without a stray response; a completion still works. A second server
# refuses a connection over --max-connections-per-ip. Flags that contradict
# each other are refused by name.
set -u
fail=0
cd "$FURROW_TMP" || exit 1
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }
"$FURROW_BIN" synth --out model --preset tiny --quiet || { echo "FAIL: synth"; exit 1; }

start() { # LOG ARGS...: starts a server in the background, sets port, pid, admin (its admin port or -)
  log=$1; shift
  rm -f port
  timeout 300 "$@" > "$log" 2>&1 &
  pid=$!
  i=0
  while [ ! -s port ] && [ $i -lt 600 ] && kill -0 $pid 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
  port=$(cat port 2>/dev/null)
  admin=$(sed -n 's|.*also on http://127.0.0.1:\([0-9]*\);.*|\1|p' "$log" | head -n 1)
  [ -n "$port" ] || { cat "$log"; echo "FAIL: the server did not start"; kill $pid; exit 1; }
}
stop() {
  kill -TERM $pid
  wait $pid
  rc=$?
  [ $rc -eq 0 ] && ok "SIGTERM: exit 0 ($1)" || { bad "SIGTERM ($1): exit $rc"; cat "$log"; }
}

ht=2
start hostile.log "$FURROW_BIN" serve --model model --port 0 --port-file port --admin-port 0 --max-connections 8 \
  --max-connections-per-ip 8 --header-timeout $ht --http-timeout 10 --max-body 65536
[ -n "$admin" ] && ok "--admin-port 0: the admin port is printed ($admin)" || { bad "no admin port in the log"; cat hostile.log; }
for what in slots slowloris garbage length keepalive normal; do
  timeout 60 python3 "$FURROW_SRCDIR/tests/serve_hostile.py" "$port" "${admin:-0}" $ht $what || fail=1
done
curl -s "http://127.0.0.1:$admin/metrics" > m.txt
t=$(sed -n 's/^furrow_http_header_timeouts_total \([0-9]*\)$/\1/p' m.txt)
[ -n "$t" ] && [ "$t" -ge 9 ] && grep -q 'furrow_requests_total{status="408"}' m.txt &&
  grep -q 'furrow_requests_total{status="400"}' m.txt && grep -q 'furrow_requests_total{status="413"}' m.txt &&
  ok "/metrics counts the header timeouts ($t) and the 400, 408 and 413 answers" || bad "/metrics: $(grep -E 'http_|status' m.txt)"
stop "hostile clients"

start perip.log "$FURROW_BIN" serve --model model --port 0 --port-file port --max-connections 8 \
  --max-connections-per-ip 3
timeout 60 python3 "$FURROW_SRCDIR/tests/serve_hostile.py" "$port" - 3 per-ip || fail=1
stop "per-address limit"

check_refused() { # WANT ARGS...: the flags are refused with WANT in the message
  want=$1; shift
  timeout 60 "$FURROW_BIN" serve --model model "$@" > refused.log 2>&1
  rc=$?
  [ $rc -eq 2 ] && grep -qF -- "$want" refused.log && ok "refused: $*" || bad "$*: exit $rc, $(cat refused.log)"
}
check_refused "--header-timeout 30 must be below --http-timeout 30" --header-timeout 30
check_refused "--max-connections-per-ip 9 is over --max-connections 8" --max-connections 8 --max-connections-per-ip 9
check_refused "--admin-port 8123 is --port too" --port 8123 --admin-port 8123
check_refused "--header-timeout must be more than 0" --header-timeout 0
"$FURROW_BIN" serve --help | grep -q -- "--admin-port N" && "$FURROW_BIN" serve --help | grep -q -- "--header-timeout S" &&
  "$FURROW_BIN" serve --help | grep -q -- "--max-connections-per-ip N" && ok "--help shows the new flags" ||
  bad "--help lacks a new flag"
exit $fail
