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
# DeepSeek-V3.2 has no GPU path yet: --device cuda refuses it by name, never runs it as dense MLA.
if [ -x "$FURROW_BUILDDIR/furrow-cuda" ]; then
  v32=$FURROW_TMP/tiny-v32-bf16
  "$FURROW_BIN" convert --hf "$FURROW_SRCDIR/tests/golden_v32/data/tiny-v32-bf16" --out "$v32" --quiet &&
  if "$FURROW_BIN" generate --device cuda --model "$v32" --prompt-tokens 5,6,7 --max-tokens 2 > /dev/null \
       2> "$FURROW_TMP/v32.err"; then
    echo "FAIL: --device cuda ran a V3.2 checkpoint"; fail=1
  elif grep -q "DeepSeek-V3.2 sparse attention (index_topk 32) has no cuda path yet" "$FURROW_TMP/v32.err"; then
    echo "ok: --device cuda refuses V3.2: $(grep -o 'DeepSeek-V3.2.*' "$FURROW_TMP/v32.err" | head -1)"
  else
    cat "$FURROW_TMP/v32.err"; echo "FAIL: --device cuda on V3.2: message"; fail=1
  fi
fi
exit $fail
