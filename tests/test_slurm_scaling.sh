#!/bin/sh
# jobs/scaling through Slurm on a real local cluster of 4 emulated nodes: strong
# and weak scaling over 1, 2 and 4 nodes write one CSV row per run with the
# figures filled in, one row per rank, and three valid PNG plots; a rerun with
# one more point runs only that point.
set -u
FW_PORT=16917 . "$FURROW_SRCDIR/tests/slurm.sh"
command -v gnuplot > /dev/null || { echo "SKIP: gnuplot not installed (jobs/cluster/setup.sh)"; exit 77; }
model=$FURROW_TMP/tiny out=$FURROW_TMP/study
"$FURROW_BIN" synth --preset tiny --out "$model" --quiet || { echo "FAIL: synth"; exit 1; }
points="strong:1:1:1:1:4 strong:2:1:1:2:4 strong:4:1:2:2:4 weak:1:1:1:1:2 weak:2:1:1:1:2 weak:4:1:1:1:2"
study() { timeout -k 5 300 "$FURROW_SRCDIR/jobs/scaling/run.sh" --model "$model" --out "$out" --prompt 16 --decode 8 "$@"; }
fail=0

study --points "$points" 2> "$FURROW_TMP/run1.err" || { cat "$FURROW_TMP/run1.err"; echo "FAIL: the study did not finish"; exit 1; }
csv=$out/results.csv
want="study,nodes,ranks_per_node,ranks,tp,pp,dp,batch,prompt,decode,prefill_tok_s,decode_tok_s,ttft_s,tpot_s,load_s,compute_s,comm_s,moved_mb,rank_peak_mb"
[ "$(head -n 1 "$csv")" = "$want" ] || { echo "FAIL: CSV header $(head -n 1 "$csv")"; fail=1; }
# One row per point; every figure a number, speeds and times positive; weak
# scaling adds one replica per node.
rows=$(tail -n +2 "$csv" | awk -F, '
  NF == 19 && $11 > 0 && $12 > 0 && $13 > 0 && $14 > 0 && $15 > 0 && $19 > 0 && ($1 != "weak" || $7 == $2) \
    { print $1 ":" $2 ":" $3 ":" $5 ":" $6 ":" $8 }' | sort | tr '\n' ' ')
expect=$(echo $points | tr ' ' '\n' | sort | tr '\n' ' ')
if [ "$rows" != "$expect" ]; then
  echo "FAIL: CSV rows"; cat "$csv"; echo "expected complete rows for: $expect"; fail=1
else
  echo "ok: results.csv has the 6 runs over 1, 2 and 4 nodes"
fi
# One row per rank: 1 + 2 + 4 ranks in each study.
nr=$(tail -n +2 "$out/ranks.csv" | awk -F, 'NF == 19 && $14 > 0 && $19 > 0' | wc -l)
if [ "$nr" -ne 14 ]; then
  echo "FAIL: ranks.csv has $nr complete rows, expected 14"; cat "$out/ranks.csv"; fail=1
else
  echo "ok: ranks.csv has one row per rank of every run"
fi
for png in throughput efficiency breakdown; do
  f=$out/$png.png
  # The 8-byte PNG signature, an IHDR chunk of 1000 x 420, and more than axes alone.
  head=$(od -An -tx1 -N24 "$f" 2>/dev/null | tr -d ' \n')
  size=$(wc -c < "$f" 2>/dev/null || echo 0)
  if [ "$head" != "89504e470d0a1a0a0000000d49484452000003e8000001a4" ] || [ "$size" -lt 10000 ]; then
    echo "FAIL: $png.png is not a 1000x420 PNG with content (header $head, $size bytes)"; fail=1
  else
    echo "ok: $png.png ($size bytes)"
  fi
done

# Rerun with one more point: only that one runs.
study --points "$points strong:2:2:2:2:4" 2> "$FURROW_TMP/run2.err" || { cat "$FURROW_TMP/run2.err"; echo "FAIL: rerun"; exit 1; }
if grep -q '1 run(s), 6 already' "$FURROW_TMP/run2.err" && [ "$(wc -l < "$csv")" -eq 8 ]; then
  echo "ok: a rerun adds the new point and keeps the 6 finished ones"
else
  cat "$FURROW_TMP/run2.err"; echo "FAIL: rerun ($(wc -l < "$csv") lines)"; fail=1
fi

# A failed run says why: a stand-in furrow whose rank 0 fails with a message
# while the other ranks wait until srun ends them. The report must carry rank
# 0's message and srun's word on task 0, which come before srun's notes on the
# ranks it then stopped. (Rank 0 waits 2 s before it exits: srun, ending the
# step at once, can drop output it has not forwarded yet.)
fake=$FURROW_TMP/failing-furrow
cat > "$fake" <<EOF
#!/bin/sh
[ "\$1" = plan ] && exec "$FURROW_BIN" "\$@"
[ "\${SLURM_PROCID:-0}" = 0 ] || exec sleep 60
echo "furrow bench: rank 0 (stand-in): cannot read the model" >&2
sleep 2
exit 1
EOF
chmod +x "$fake"
if FURROW_BIN=$fake study --out "$FURROW_TMP/failing" --points strong:4:1:2:2:4 2> "$FURROW_TMP/run3.err"; then
  cat "$FURROW_TMP/run3.err"; echo "FAIL: a run whose rank 0 failed passed"; fail=1
elif grep -q 'rank 0 (stand-in): cannot read the model' "$FURROW_TMP/run3.err" &&
     grep -q 'task 0: Exited with exit code 1' "$FURROW_TMP/run3.err"; then
  echo "ok: a failed run shows rank 0's error and the task that failed first"
else
  cat "$FURROW_TMP/run3.err"; echo "FAIL: the failed run's report does not name its cause"; fail=1
fi
exit $fail
