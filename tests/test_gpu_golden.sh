#!/bin/sh
# Golden parity on the GPU: the tiny BF16, FP8 and INT4 (experts) checkpoints and the V3.2 ones, converted by
# `furrow convert`, run by the CUDA forward against the CPU forward and the
# reference (tests/gpu_golden_check). Skipped (77) without a GPU.
set -u
golden=${FURROW_SHARED:-}/golden
names="tiny-a-bf16 tiny-a-fp8 tiny-a-w4-experts"
[ -n "${FURROW_SHARED:-}" ] && [ -d "$golden" ] || { echo "note: no shared/golden: only the V3.2 checkpoints"; names=; }
check=$FURROW_BUILDDIR/tests/gpu_golden_check
fail=0
for name in $names; do
  out=$FURROW_TMP/$name
  "$FURROW_BIN" convert --hf "$golden/$name" --out "$out" --quiet || { echo "FAIL: convert $name"; fail=1; continue; }
  echo "== $name on the GPU"
  "$check" "$out" "$golden/$name/reference.h5"
  rc=$?
  [ $rc -eq 77 ] && exit 77
  [ $rc -eq 0 ] || { echo "FAIL: $name"; fail=1; }
done
# DeepSeek-V3.2 (tests/golden_v32): the indexer and sparse MLA on the GPU against the CPU and the
# reference of the GPU's indexer arithmetic, DeepSeek's FP8 rounding of q and k (reference-dsfp8.h5).
for name in tiny-v32-bf16 tiny-v32-fp8; do
  data=$FURROW_SRCDIR/tests/golden_v32/data/$name
  ref=$data/reference-dsfp8.h5
  out=$FURROW_TMP/$name
  "$FURROW_BIN" convert --hf "$data" --out "$out" --quiet || { echo "FAIL: convert $name"; fail=1; continue; }
  echo "== $name on the GPU against $(basename "$ref")"
  "$check" "$out" "$ref"
  rc=$?
  [ $rc -eq 77 ] && exit 77
  [ $rc -eq 0 ] || { echo "FAIL: $name"; fail=1; }
done
exit $fail
