#!/bin/sh
# Golden parity on the GPU: the tiny BF16, FP8 and INT4 (experts) checkpoints, converted by
# `furrow convert`, run by the CUDA forward against the CPU forward and the
# reference (tests/gpu_golden_check). Skipped (77) without a GPU.
set -u
golden=${FURROW_SHARED:-}/golden
[ -n "${FURROW_SHARED:-}" ] && [ -d "$golden" ] || { echo "SKIP: no shared/golden"; exit 77; }
check=$FURROW_BUILDDIR/tests/gpu_golden_check
fail=0
for name in tiny-a-bf16 tiny-a-fp8 tiny-a-w4-experts; do
  out=$FURROW_TMP/$name
  "$FURROW_BIN" convert --hf "$golden/$name" --out "$out" --quiet || { echo "FAIL: convert $name"; fail=1; continue; }
  echo "== $name on the GPU"
  "$check" "$out" "$golden/$name/reference.h5"
  rc=$?
  [ $rc -eq 77 ] && exit 77
  [ $rc -eq 0 ] || { echo "FAIL: $name"; fail=1; }
done
exit $fail
