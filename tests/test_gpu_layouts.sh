#!/bin/sh
# Tensor and pipeline parallelism on GPUs (NCCL all-reduce, pipeline transfers
# between GPU stages): tp 2, tp 4 and tp 2 x pp 2 on the golden tiny checkpoints
# give one GPU's logits (bf16: per-position bounds as in gpu_golden_check), and
# greedy generation runs. Needs as many GPUs as ranks; skipped (77) otherwise.
# The FP8 checkpoint runs the reference paths (--kernels ref: own GEMMs): with e4m3
# activations each layout quantizes its own 128-channel blocks (a row-parallel
# slice of 64 channels is a block of its own), and this tiny random model
# amplifies that noise past any useful bound (gpu_golden_check reports it).
set -u
. "$FURROW_SRCDIR/tests/mpi.sh"
golden=${FURROW_SHARED:-}/golden
[ -n "${FURROW_SHARED:-}" ] && [ -d "$golden" ] || { echo "SKIP: no shared/golden"; exit 77; }
cuda=$FURROW_BUILDDIR/furrow-cuda
[ -x "$cuda" ] || { echo "SKIP: no furrow-cuda"; exit 77; }
ngpu=$(nvidia-smi -L 2> /dev/null | grep -c '^GPU')
[ "$ngpu" -ge 2 ] || { echo "SKIP: $ngpu GPU(s); the layouts need 2 or more"; exit 77; }
cmp=$FURROW_BUILDDIR/tests/logits_compare
tokens=5,17,300,2000,1,9,44,1023,7,7,600,12,99,1500,3,8,250,1800,42,77,1000,2047,6,31
fail=0
for name in tiny-a-bf16 tiny-a-fp8; do
  model=$FURROW_TMP/$name
  case $name in *fp8) kernels="--kernels ref" ;; *) kernels= ;; esac
  "$FURROW_BIN" convert --hf "$golden/$name" --out "$model" --quiet || { echo "FAIL: convert $name"; fail=1; continue; }
  fw_mpirun 120 1 "$FURROW_BIN" logits --device cuda $kernels --model "$model" --tokens $tokens --out "$FURROW_TMP/one.h5" \
    2> "$FURROW_TMP/one.err" || { cat "$FURROW_TMP/one.err"; echo "FAIL: $name on one GPU"; fail=1; continue; }
  for layout in "2 --tp 2" "4 --tp 4" "4 --tp 2 --pp 2"; do
    set -- $layout
    np=$1; shift
    [ "$np" -le "$ngpu" ] || { echo "skip $name tp/pp $*: $np GPUs needed"; continue; }
    out=$FURROW_TMP/$name-$np-$1$2-${3:-}${4:-}.h5
    if ! fw_mpirun 180 "$np" "$FURROW_BIN" logits --device cuda $kernels --model "$model" --tokens $tokens --out "$out" "$@" \
        2> "$out.err"; then
      cat "$out.err"; echo "FAIL: $name $*"; fail=1; continue
    fi
    printf '%s %s: ' "$name" "$*"
    "$cmp" "$out" "$FURROW_TMP/one.h5" 0.06 0.9 0.7 || { echo "FAIL: $name $* differs from one GPU"; fail=1; }
  done
  fw_mpirun 120 2 "$FURROW_BIN" generate --device cuda $kernels --model "$model" --tp 2 --prompt-tokens 5,17,300 \
    --max-tokens 8 > "$FURROW_TMP/gen.txt" 2> "$FURROW_TMP/gen.err" || { cat "$FURROW_TMP/gen.err"; echo "FAIL: generate tp 2"; fail=1; }
  grep -Eq '^\[[0-9]+(, ?[0-9]+){7}\]' "$FURROW_TMP/gen.txt" || { cat "$FURROW_TMP/gen.txt"; echo "FAIL: generate tp 2 output"; fail=1; }
done
exit $fail
