#!/bin/sh
# furrow plan: the 671B layout on 2 x 8 H200 (key lines), FP8 vs INT4 on 8 H100,
# Kimi-K2 on 8 H200, and refusals with their exit codes and messages.
set -u
: "${FURROW_BIN:?FURROW_BIN is not set}"
out=${FURROW_TMP:-/tmp}/plan.out
err=${FURROW_TMP:-/tmp}/plan.err
fail=0
expect() {  # expect FILE TEXT
  grep -qF -- "$2" "$1" || { echo "FAIL: '$2' not in $1:"; cat "$1"; fail=1; }
}

"$FURROW_BIN" plan --preset deepseek-v3 --nodes 2 --ranks-per-node 8 --mem-per-rank 141G >"$out" 2>"$err"
rc=$?
[ $rc -eq 0 ] || { echo "FAIL: 2x8 H200 exited $rc"; cat "$err"; fail=1; }
expect "$out" "16 ranks"
expect "$out" "tp 8 x pp 1 x dp 2"
expect "$out" "0-60 (61)"
expect "$out" "32 per rank"
expect "$out" "of 141.00 GB available"
expect "$out" "rank map"
# rank 15: node 1, dp 1, pp 0, tp 7
grep -Eq '^ +15 +1 +1 +0 +7$' "$out" || { echo "FAIL: rank 15 row"; cat "$out"; fail=1; }

"$FURROW_BIN" plan --preset deepseek-v3 --nodes 4 --ranks-per-node 8 --mem-per-rank 80GB >"$out" 2>"$err" ||
  { echo "FAIL: 4x8 H100"; cat "$err"; fail=1; }
expect "$out" "tp 8 x pp 2 x dp 2"

# On GPUs the KV cache is bf16: half the CPU's fp32 (1024 x 256 x 576 x 61 layers).
"$FURROW_BIN" plan --preset deepseek-v3 --nodes 1 --ranks-per-node 8 --context 1024 --batch 256 >"$out" 2>"$err"
expect "$out" "KV cache        36.84 GB"
"$FURROW_BIN" plan --preset deepseek-v3 --nodes 1 --ranks-per-node 8 --context 1024 --batch 256 --device cuda \
  >"$out" 2>"$err" || { echo "FAIL: plan --device cuda"; cat "$err"; fail=1; }
expect "$out" "KV cache        18.42 GB"
"$FURROW_BIN" plan --preset tiny --device tpu >"$out" 2>"$err"
[ $? -eq 2 ] || { echo "FAIL: --device tpu should exit 2"; fail=1; }

# 1 node x 8 H100 in BF16: not enough memory, with a layout that fits.
"$FURROW_BIN" plan --preset deepseek-v3 --nodes 1 --ranks-per-node 8 --mem-per-rank 80G --dtype bf16 \
  >"$out" 2>"$err"
rc=$?
[ $rc -eq 1 ] || { echo "FAIL: BF16 on 1x8 H100 exited $rc, want 1"; fail=1; }
expect "$err" "furrow plan: not enough memory per rank"
expect "$err" "fits"

# 1 node x 8 H100: DeepSeek-V3 in FP8 does not fit (and says INT4 would), in INT4 it does.
"$FURROW_BIN" plan --preset deepseek-v3 --nodes 1 --ranks-per-node 8 --mem-per-rank 80G >"$out" 2>"$err"
rc=$?
[ $rc -eq 1 ] || { echo "FAIL: FP8 on 1x8 H100 exited $rc, want 1"; fail=1; }
expect "$err" "furrow plan: not enough memory per rank: tp 8 x pp 1 needs 86.8 GB"
expect "$err" "INT4 weights (--weights int4: every linear weight but the head) would need 45.9 GB per rank at tp 8 x pp 1 (fits)"
"$FURROW_BIN" plan --preset deepseek-v3 --weights int4 --nodes 1 --ranks-per-node 8 --mem-per-rank 80G \
  >"$out" 2>"$err" || { echo "FAIL: INT4 on 1x8 H100"; cat "$err"; fail=1; }
expect "$out" "weights stored int4 (group 128) for every linear weight but the head"
expect "$out" "tp 8 x pp 1 x dp 1"
expect "$out" "total           45.88 GB  of 80.00 GB available"
expect "$out" "KV room         34.70 GB"

# Kimi-K2-Thinking on 8 H200: INT4 experts (group 32) by default, 594 GB as released.
"$FURROW_BIN" plan --preset kimi-k2 --nodes 1 --ranks-per-node 8 --mem-per-rank 141G >"$out" 2>"$err" ||
  { echo "FAIL: kimi-k2 on 1x8 H200"; cat "$err"; fail=1; }
expect "$out" "384 routed experts (top 8)"
expect "$out" "int4 (group 32) for the routed experts, the rest bf16"
expect "$out" "weights: 594.21 GB in all"
expect "$out" "48 per rank"
expect "$out" "tp 8 x pp 1 x dp 1"
"$FURROW_BIN" plan --preset kimi-k2 --weights fp8 >"$out" 2>"$err"
expect "$out" "weights stored fp8"

# A compressed-tensors INT4 config is counted as it is stored; --weights with a
# config of another type is an estimate for a converted copy, said so.
w4=${FURROW_SHARED:-}/golden/tiny-a-w4-experts/config.json
if [ -n "${FURROW_SHARED:-}" ] && [ -f "$w4" ]; then
  "$FURROW_BIN" plan --config "$w4" --nodes 1 --ranks-per-node 2 >"$out" 2>"$err" ||
    { echo "FAIL: plan of an INT4 config"; cat "$err"; fail=1; }
  expect "$out" "int4 where its compressed-tensors quantization_config says"
  expect "$out" "weights: 5.83 MB in all"  # its index's total_size less the 96 weight_shape tensors
  "$FURROW_BIN" plan --config "$w4" --weights int8 >"$out" 2>"$err"
  expect "$out" "note:    weights counted as int8 (--weights)"
else
  echo "no shared/golden: the INT4 config's plan is not checked"
fi
"$FURROW_BIN" plan --preset tiny --weights int4,group=12 >"$out" 2>"$err"
[ $? -eq 2 ] || { echo "FAIL: --weights int4,group=12 should exit 2"; fail=1; }
expect "$err" "furrow plan: --weights: expected bf16, fp8"

# An invalid layout: exit 1 and the valid choices.
"$FURROW_BIN" plan --preset deepseek-v3 --nodes 2 --ranks-per-node 8 --tp 3 >"$out" 2>"$err"
rc=$?
[ $rc -eq 1 ] || { echo "FAIL: tp 3 exited $rc, want 1"; fail=1; }
expect "$err" "furrow plan: tensor parallel size 3 is invalid"
expect "$err" "valid tp for 16 ranks: 1, 2, 4, 8, 16"

# Usage errors: exit 2.
"$FURROW_BIN" plan --nodes 2 >"$out" 2>"$err"
[ $? -eq 2 ] || { echo "FAIL: no model source should exit 2"; fail=1; }
"$FURROW_BIN" plan --preset tiny --mem-per-rank 12X >"$out" 2>"$err"
[ $? -eq 2 ] || { echo "FAIL: a bad size should exit 2"; fail=1; }
"$FURROW_BIN" plan --help >"$out" 2>&1 || { echo "FAIL: --help"; fail=1; }
expect "$out" "Automatic choice"
exit $fail
