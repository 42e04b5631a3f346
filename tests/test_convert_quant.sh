#!/bin/sh
# furrow convert --quantize on shared/golden's tiny checkpoints: INT4 and INT8 from
# BF16 and from FP8 (dequantized with its block scales). quant_check compares
# every quantized weight with the formula applied to the unquantized model and
# the logits with the reference; furrow info shows and verifies the result; furrow
# logits runs it; bad specs and inputs are refused naming what is wrong.
#
# Bounds on the median over positions of max|logit - ref| / max|ref|, from the
# measured error: tiny-a is random, and its logits move about 8x the weights'
# relative RMS error when every projection is quantized (INT8 0.0069 -> 0.055)
# and about 1.5x when only the experts are (INT4 group 32 0.095 -> 0.14); each
# bound is about twice the measured median. INT4 on every projection moves the
# logits by ~0.7 of their range (8 x 0.095): there the weights' formula is the
# test, and the bound only says the model runs with finite logits. Argmax
# agreement is required where the reference's margin clears the logit error:
# 0.2 of max|ref| for INT8 everywhere, 0.05 for INT8 experts.
set -u
golden=${FURROW_SHARED:-}/golden
[ -n "${FURROW_SHARED:-}" ] && [ -d "$golden/tiny-a-bf16" ] || { echo "SKIP: no shared/golden"; exit 77; }
T=$FURROW_TMP
furrow=$FURROW_BIN
check=$FURROW_BUILDDIR/tests/quant_check
fail=0
bad() { echo "FAIL: $*"; fail=1; }

for src in bf16 fp8; do
  "$furrow" convert -q --hf "$golden/tiny-a-$src" --out "$T/$src" || bad "convert tiny-a-$src"
done

# name, source, spec, median bound, argmax margin
while read -r name src spec bound margin; do
  out=$T/$name
  "$furrow" convert -q --hf "$golden/tiny-a-$src" --out "$out" --quantize "$spec" > "$T/$name.sum" ||
    { bad "convert --quantize $spec ($src)"; continue; }
  echo "== $name: tiny-a-$src --quantize $spec"
  cat "$T/$name.sum"
  grep -q "^quantized [0-9]* weights to ${spec%%,*}.*: relative RMS error min" "$T/$name.sum" || bad "$name: no summary"
  "$check" "$out" "$T/$src" "$golden/tiny-a-$src/reference.h5" "$bound" "$margin" > "$T/$name.check" ||
    bad "$name: quant_check"
  cat "$T/$name.check"
  # The head is quantized exactly when the spec says head (quant_check checked its values).
  case ,$spec, in
    *,head,*) want="head: INT${spec#int}"; want=${want%%,*} ;;
    *) want="head: unquantized" ;;
  esac
  grep -q "^$want" "$T/$name.check" || bad "$name: quant_check does not say '$want'"
done <<EOF
int8 bf16 int8 0.12 0.2
int8-experts bf16 int8,experts 0.03 0.05
int8-head bf16 int8,head 0.12 0.2
int4-g32-experts bf16 int4,group=32,experts 0.3 100
int4-g32 bf16 int4,group=32 1.0 100
int4-g32-head bf16 int4,group=32,head 1.0 100
int4-g64 bf16 int4,group=64 1.0 100
fp8-int8 fp8 int8 0.12 0.2
fp8-int4-experts fp8 int4,experts,group=32 0.3 100
fp8-int4-experts-head fp8 int4,experts,head,group=32 0.3 100
EOF

# The stored form (io/FORMAT.md): values, scales, labels, chunk checksums.
"$furrow" info --verify "$T/int8" > "$T/int8.info" 2>&1 || { cat "$T/int8.info"; bad "info --verify int8"; }
grep -q '^verify *OK' "$T/int8.info" || bad "int8: verify did not say OK"
grep -q '^weights *120 INT8 (symmetric, int8_sym_channel;.* the rest unquantized' "$T/int8.info" ||
  bad "int8: info does not show 120 INT8 weights"
"$furrow" info --verify "$T/int8-head" > "$T/int8-head.info" 2>&1 || bad "info --verify int8-head"
grep -q '^weights *121 INT8 ' "$T/int8-head.info" || bad "int8-head: info does not show 121 INT8 weights (the head)"
h5ls --follow-symlinks "$T/int8-head/furrow.h5/lm_head/weight_scale" | grep -q '{2048, 1}' || bad "int8 head scales shape"
grep -q '^source .*tiny-a-bf16; quantized by furrow convert --quantize int8: 120 weights' "$T/int8.info" ||
  bad "int8: info's source does not name the spec"
e=/model/layers/1/mlp/experts/15/down_proj
h5dump -a $e/weight_int8/quantization "$T/int8/layers-000-002.h5" | grep -q '"int8_sym_channel"' || bad "int8 label"
h5ls -v --follow-symlinks "$T/int8/furrow.h5$e/weight_int8" | grep -q 'Dataset {256/256, 128/128}' ||
  bad "int8 values shape"
h5ls --follow-symlinks "$T/int8/furrow.h5$e/weight_scale" | grep -q '{256, 1}' || bad "int8 scales shape"
h5ls -r "$T/int8/furrow.h5" | grep -q "$e/weight " && bad "int8: a plain weight beside its INT8 form"
"$furrow" info --verify "$T/fp8-int4-experts" > "$T/fp8-int4.info" 2>&1 || bad "info --verify fp8-int4-experts"
grep -q '^weights *96 INT4 (symmetric, int4_sym_group32;.* the rest FP8' "$T/fp8-int4.info" ||
  { cat "$T/fp8-int4.info"; bad "fp8-int4-experts: info"; }
h5ls -r "$T/fp8-int4-experts/furrow.h5" | grep -q "$e/weight_scale_inv" && bad "fp8-int4: block scales kept"
"$furrow" logits --model "$T/int8" --tokens 1,2,3,4,5 --out "$T/logits.h5" > "$T/logits.log" 2>&1 ||
  { cat "$T/logits.log"; bad "furrow logits on the INT8 checkpoint"; }

# Bad input: each refused, naming what is wrong, and nothing left behind.
expect_fail() { # what, message pattern, convert arguments...
  what=$1 pat=$2
  shift 2
  if "$furrow" convert -q "$@" > "$T/err.out" 2> "$T/err.log"; then
    bad "$what: accepted"
  elif ! grep -q -- "$pat" "$T/err.log"; then
    cat "$T/err.log"
    bad "$what: message lacks '$pat'"
  fi
}
expect_fail "group not dividing" "tensor 'model.layers.0.self_attn.q_a_proj.weight' \[128, 256\]: its 256 input columns are not a multiple of the group size 24" \
  --hf "$golden/tiny-a-bf16" --out "$T/x1" --quantize int4,group=24
[ -e "$T/x1/furrow.h5" ] && bad "group not dividing: a checkpoint was left"
expect_fail "default group on tiny-a" "kv_b_proj.weight' \[256, 64\].*group size 128" --hf "$golden/tiny-a-bf16" --out "$T/x2" --quantize int4
if [ -d "$golden/tiny-a-w4-experts" ]; then
  expect_fail "already quantized" "already quantized.*--quantize takes a BF16 or FP8 checkpoint" \
    --hf "$golden/tiny-a-w4-experts" --out "$T/x3" --quantize int8
fi
expect_fail "unknown part" "unknown part 'groups=32'" --hf "$golden/tiny-a-bf16" --out "$T/x4" --quantize int4,groups=32
expect_fail "unknown type" "the type must be int4 or int8" --hf "$golden/tiny-a-bf16" --out "$T/x5" --quantize int3
expect_fail "int8 group" "int8 has one scale per output channel" --hf "$golden/tiny-a-bf16" --out "$T/x6" --quantize int8,group=32
"$furrow" convert --help | grep -q -- '--quantize SPEC' || bad "convert --help lacks --quantize"
exit $fail
