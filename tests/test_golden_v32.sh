#!/bin/sh
# DeepSeek-V3.2 parity: converts tests/golden_v32's tiny V3.2 checkpoints (BF16, FP8)
# with `furrow convert` and checks furrow's sparse attention against their
# references (golden_v32_check: logits, greedy tokens, the indexer's scores and
# selections, and that dense attention would fail), with the fast and the
# reference kernels, and the FP8 indexer path (DeepSeek's rounding of q and k)
# against reference-dsfp8.h5. The reference is transformers' (reference.h5) once it has
# been made on a GPU machine (tests/golden_v32/DEVICE_RUN.txt); until then the
# generator's own float64 forward of the same semantics (reference-own.h5).
set -u
data=$FURROW_SRCDIR/tests/golden_v32/data
check=$FURROW_BUILDDIR/tests/golden_v32_check
fail=0
for name in tiny-v32-bf16 tiny-v32-fp8; do
  ref=$data/$name/reference.h5
  [ -f "$ref" ] || ref=$data/$name/reference-own.h5
  out=$FURROW_TMP/$name
  "$FURROW_BIN" convert --hf "$data/$name" --out "$out" --quiet || { echo "FAIL: convert $name"; fail=1; continue; }
  "$FURROW_BIN" info --verify "$out" > "$FURROW_TMP/$name.info" 2>&1 &&
    grep -q '^sparse *DeepSeek-V3.2 indexer: 8 heads of 128, top 32 positions' "$FURROW_TMP/$name.info" &&
    grep -q '^verify *OK' "$FURROW_TMP/$name.info" || { cat "$FURROW_TMP/$name.info"; echo "FAIL: info $name"; fail=1; }
  # the indexer's tensors under their checkpoint names, readable by h5ls
  n=$(h5ls -r "$out"/layers-*.h5 | grep -c '/self_attn/indexer/\(wq_b/weight\|wk/weight\|k_norm/weight\|k_norm/bias\|weights_proj/weight\) ')
  [ "$n" -eq 15 ] || { h5ls -r "$out"/layers-*.h5 | grep indexer; echo "FAIL: $name: $n indexer tensors, 15 expected"; fail=1; }
  for kernels in fast ref; do
    echo "== $name against $(basename "$ref"), kernels $kernels"
    "$check" "$out" "$ref" "$kernels" || { echo "FAIL: $name ($kernels)"; fail=1; }
  done
  # DeepSeek's FP8 indexer arithmetic (the GPU's) against its own reference; the
  # exact reference must then fail (the rounding moves selections on these models).
  echo "== $name against reference-dsfp8.h5, FP8 indexer"
  "$check" "$out" "$data/$name/reference-dsfp8.h5" fast fp8 || { echo "FAIL: $name (fp8 indexer)"; fail=1; }
  if "$check" "$out" "$ref" fast fp8 > "$FURROW_TMP/$name.fp8-exact" 2>&1; then
    echo "FAIL: $name: the FP8 indexer also passes against the exact reference (the check cannot tell them apart)"; fail=1
  fi
done
exit $fail
