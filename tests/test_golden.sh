#!/bin/sh
# Golden parity: converts shared/golden's tiny DeepSeek-V3 checkpoints (BF16, FP8,
# and INT4 routed experts in compressed-tensors pack-quantized form) with `furrow
# convert` and compares the model with the reference outputs (transformers; for
# INT4 llama.cpp on the exactly dequantized weights), with the reference kernels
# and every fast kernel set this CPU runs, each forced (fast: the best, e.g. AVX512-BF16;
# then AVX-512, AVX2 and the portable set).
set -u
golden=${FURROW_SHARED:-}/golden
[ -n "${FURROW_SHARED:-}" ] && [ -d "$golden" ] || { echo "SKIP: no shared/golden"; exit 77; }
check=$FURROW_BUILDDIR/tests/golden_check
fail=0
for name in tiny-a-bf16 tiny-a-fp8 tiny-a-w4-experts; do
  out=$FURROW_TMP/$name
  "$FURROW_BIN" convert --hf "$golden/$name" --out "$out" --quiet || { echo "FAIL: convert $name"; fail=1; continue; }
  for kernels in fast avx512 avx2 generic ref; do
    echo "== $name, kernels $kernels"
    "$check" "$out" "$golden/$name/reference.h5" "$kernels" || { echo "FAIL: $name ($kernels)"; fail=1; }
  done
done
exit $fail
