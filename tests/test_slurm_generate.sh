#!/bin/sh
# The Slurm job scripts on a real local cluster of 4 emulated nodes: convert the
# golden tiny checkpoint with convert.sbatch, then generate.sbatch over 1, 2 and
# 4 nodes with different layouts, both launchers and both pipeline transports
# gives one rank's tokens; --doctor runs furrow doctor on each node first; an
# allocation too small for the layout fails with a clear message.
set -u
golden=${FURROW_SHARED:-}/golden
[ -n "${FURROW_SHARED:-}" ] && [ -d "$golden" ] || { echo "SKIP: no shared/golden"; exit 77; }
FW_PORT=16817 . "$FURROW_SRCDIR/tests/slurm.sh"
jobs=$FURROW_SRCDIR/jobs/slurm
model=$FURROW_TMP/tiny
fail=0

fw_sbatch 120 convert "$jobs/convert.sbatch" --hf "$golden/tiny-a-bf16" --out "$model" --quiet ||
  { cat "$FURROW_TMP/convert.err"; echo "FAIL: convert.sbatch"; exit 1; }
grep -q 'checksums match' "$FURROW_TMP/convert.out" || { echo "FAIL: convert.sbatch did not verify"; exit 1; }
echo "ok: convert.sbatch"

prompts="--prompt-tokens 0,5,100,2000,17 --prompt-tokens 9,8,7 --prompt-tokens 1000,1001,1002,5,5,5"
ref=$("$FURROW_BIN" generate --model "$model" $prompts --max-tokens 8 --ignore-eos 2>/dev/null)
[ -n "$ref" ] || { echo "FAIL: single-rank reference"; exit 1; }

# nodes, ranks per node, tp, pp, launcher, pipeline transport: one job after the other.
for l in "1 1 1 1 srun mpi" "1 2 2 1 mpirun mpi" "2 1 1 2 mpirun ucx" "2 2 2 2 srun ucx" "4 1 2 2 srun mpi" \
         "4 1 1 2 mpirun mpi"; do
  set -- $l
  what="$1 node(s) x $2 rank(s), tp $3 x pp $4 ($5, $6)"
  name=gen_$1_$2_$3_$4_$5_$6
  if ! FURROW_LAUNCHER=$5 fw_sbatch 180 "$name" -N "$1" --ntasks-per-node="$2" "$jobs/generate.sbatch" \
       --model "$model" $prompts --max-tokens 8 --ignore-eos --tp "$3" --pp "$4" --pp-transport "$6"; then
    cat "$FURROW_TMP/$name.err"; echo "FAIL: $what: job failed"; fail=1; continue
  fi
  if [ "$(cat "$FURROW_TMP/$name.out")" != "$ref" ]; then
    echo "FAIL: $what: tokens"; cat "$FURROW_TMP/$name.out"; echo "one rank:"; echo "$ref"; fail=1
  else
    echo "ok: $what: tokens equal one rank's"
  fi
done

# --doctor: furrow doctor on each node before the ranks (both launchers), out of
# the job's output; the tokens stay the same. A failed check ends the job.
for launcher in srun mpirun; do
  name=doctor_$launcher
  if ! FURROW_LAUNCHER=$launcher fw_sbatch 180 $name -N 2 --ntasks-per-node=1 "$jobs/generate.sbatch" \
       --model "$model" $prompts --max-tokens 8 --ignore-eos --pp 2 --doctor; then
    cat "$FURROW_TMP/$name.err"; echo "FAIL: --doctor ($launcher): job failed"; fail=1; continue
  fi
  n=$(grep -c 'checkpoint-read ' "$FURROW_TMP/$name.err")
  if [ "$(cat "$FURROW_TMP/$name.out")" != "$ref" ] || [ "$n" -ne 2 ]; then
    echo "FAIL: --doctor ($launcher): tokens, or $n doctor reports instead of 2:"; cat "$FURROW_TMP/$name.out" "$FURROW_TMP/$name.err"
    fail=1
  else
    echo "ok: --doctor ($launcher): a report per node, then the same tokens"
  fi
done
mkdir -p "$FURROW_TMP/badbin"
printf '#!/bin/sh\nexit 3\n' >"$FURROW_TMP/badbin/ompi_info"
chmod +x "$FURROW_TMP/badbin/ompi_info"
if PATH=$FURROW_TMP/badbin:$PATH fw_sbatch 120 doctor_fail -N 1 --ntasks-per-node=1 "$jobs/generate.sbatch" \
     --model "$model" $prompts --max-tokens 8 --doctor; then
  echo "FAIL: --doctor with a failed check: the job ran"; fail=1
elif ! grep -q 'furrow doctor: a check failed on a node' "$FURROW_TMP/doctor_fail.err" ||
     [ -s "$FURROW_TMP/doctor_fail.out" ]; then
  echo "FAIL: --doctor with a failed check: message or output:"; cat "$FURROW_TMP/doctor_fail.err"; fail=1
else
  echo "ok: --doctor with a failed check ends the job before the ranks"
fi

# tp 2 x pp 2 needs 4 ranks; 1 node x 2 gives 2: the job must say so and fail.
if fw_sbatch 60 small -N 1 --ntasks-per-node=2 "$jobs/generate.sbatch" --model "$model" $prompts --tp 2 --pp 2; then
  echo "FAIL: a too-small allocation succeeded"; fail=1
elif ! grep -q 'does not fit the layout' "$FURROW_TMP/small.err" || ! grep -q 'not a multiple of tp 2 x pp 2' "$FURROW_TMP/small.err"; then
  echo "FAIL: too-small allocation: unclear message:"; cat "$FURROW_TMP/small.err"; fail=1
else
  echo "ok: too-small allocation fails: $(tail -n 1 "$FURROW_TMP/small.err")"
fi
exit $fail
