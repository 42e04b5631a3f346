#!/bin/sh
# Failures end the whole job promptly with a message: an invalid layout errors
# on every rank; a rank killed mid-generation ends the job within 30 s naming it.
set -u
. "$FURROW_SRCDIR/tests/mpi.sh"
golden=${FURROW_SHARED:-}/golden
[ -n "${FURROW_SHARED:-}" ] && [ -d "$golden" ] || { echo "SKIP: no shared/golden"; exit 77; }
fail=0
model=$FURROW_TMP/model
"$FURROW_BIN" convert --hf "$golden/tiny-a-bf16" --out "$model" --quiet || exit 1

# Invalid layouts: every rank reports, the job exits non-zero, no hang.
check_invalid() { # NP EXPECTED-TEXT ARGS...
  np=$1; text=$2; shift 2
  fw_mpirun 60 "$np" "$FURROW_BIN" generate --model "$model" --prompt-tokens 1,2,3 "$@" > /dev/null 2> "$FURROW_TMP/err"
  rc=$?
  n=$(grep -c "$text" "$FURROW_TMP/err")
  if [ $rc -eq 0 ] || [ $rc -eq 124 ] || [ $rc -eq 137 ] || [ "$n" -ne "$np" ]; then
    echo "FAIL: $* on $np ranks: exit $rc, $n of $np ranks said '$text'"; cat "$FURROW_TMP/err"; fail=1
  else
    echo "ok: $* on $np ranks: exit $rc, every rank said '$text'"
  fi
}
check_invalid 3 "valid tp" --tp 3
check_invalid 2 "world size 2 is not a multiple" --tp 4
check_invalid 4 "pp" --tp 1 --pp 4
check_invalid 2 "outside the vocabulary" --prompt-tokens 1,99999 --tp 2

# A rank killed with SIGKILL in the middle of a long generation.
fw_mpirun 120 2 "$FURROW_BIN" generate --model "$model" --prompt-tokens 1,2,3 --max-tokens 100000 \
  --ignore-eos --kernels ref --tp 2 > /dev/null 2> "$FURROW_TMP/kill.err" &
job=$!
victim=
for i in $(seq 1 100); do  # find rank 1 by its environment
  for p in $(pgrep -f "furrow generate --model $model"); do
    if tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then victim=$p; fi
  done
  [ -n "$victim" ] && break
  sleep 0.1
done
if [ -z "$victim" ]; then
  echo "FAIL: rank 1 never started"; fail=1; kill $job
else
  sleep 2  # let it get well into decoding
  kill -9 "$victim"
  start=$(date +%s)
  wait $job
  rc=$?
  took=$(( $(date +%s) - start ))
  if [ $rc -eq 0 ] || [ $took -gt 30 ] || ! grep -q "rank 1" "$FURROW_TMP/kill.err"; then
    echo "FAIL: after kill -9 of rank 1: exit $rc after ${took}s"; cat "$FURROW_TMP/kill.err"; fail=1
  else
    echo "ok: killing rank 1 ended the job in ${took}s (exit $rc) with: $(grep -m1 'rank 1' "$FURROW_TMP/kill.err")"
  fi
fi
exit $fail
