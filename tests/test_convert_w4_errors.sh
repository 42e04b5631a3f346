#!/bin/sh
# Bad compressed-tensors INT4 checkpoints (shared/golden/tiny-a-w4-experts with one
# tensor damaged by st_edit.py): each is refused by `furrow convert` with exit 1,
# a message that names the tensor and what is wrong, and no checkpoint left. The
# cases test_convert.sh already has (weight_shape values, packed shape, a group
# count that does not divide the columns, a missing scale, the config's
# refusals) are not repeated; config fields are checked in test_config.c.
set -u
golden=${FURROW_SHARED:-}/golden
w4=$golden/tiny-a-w4-experts
[ -n "${FURROW_SHARED:-}" ] && [ -d "$w4" ] || { echo "SKIP: no shared/golden/tiny-a-w4-experts"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: no python3"; exit 77; }
T=$FURROW_TMP
st=$FURROW_SRCDIR/tests/st_edit.py
fail=0
x=model.layers.1.mlp.experts.0.gate_proj.weight   # [128, 256]: packed [128, 32], scale [128, 8]

# case LABEL EXPECTED-REGEX EDIT...: st_edit.py EDIT on a copy, then convert it.
case_() {
  label=$1 want=$2; shift 2
  d=$T/in-$(echo "$label" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9\n' '-')
  python3 "$st" "$w4" "$d" "$@" || { echo "FAIL: $label: st_edit.py $*"; fail=1; return; }
  "$FURROW_BIN" convert --hf "$d" --out "$d.out" --quiet 2>"$d.err"
  rc=$?
  [ $rc -eq 1 ] || { echo "FAIL: $label: exit $rc, expected 1"; fail=1; }
  grep -q -- "^furrow convert: .*$want" "$d.err" || { cat "$d.err"; echo "FAIL: $label: message lacks '$want'"; fail=1; }
  [ ! -e "$d.out/furrow.h5" ] || { echo "FAIL: $label: left a furrow.h5"; fail=1; }
  echo "$label: $(head -n 1 "$d.err")"
}

case_ "packed words missing" "quantizes module '${x%.weight}', but .* has no '${x}_packed'" drop ${x}_packed
case_ "packed words I64" "'${x}_packed' is I64 .*; packed INT4 values must be I32" retype ${x}_packed I64
case_ "packed words BF16" "'${x}_packed' is BF16 .*; packed INT4 values must be I32" retype ${x}_packed BF16
case_ "packed words 3-D" "'${x}_packed' has shape \[128, 32, 1\].*\[out, in / 8\]" reshape ${x}_packed 128,32,1
case_ "scale F32" "'${x}_scale' is F32 .*; INT4 group scales must be BF16" retype ${x}_scale F32
case_ "scale rows" "'${x}_scale' has shape \[64, 8\].*\[out, in / group_size\] of its weight = \[128, 8\]" \
  reshape ${x}_scale 64,8
case_ "scale 1-D" "'${x}_scale' has shape \[128\]" reshape ${x}_scale 128
case_ "group of 4" "'${x}_scale': group size 4 (256 columns / 64 groups) is not a multiple of 8" \
  reshape ${x}_scale 128,64
case_ "weight_shape missing" "'${x}_packed' is packed INT4 but '${x}_shape' is missing" drop ${x}_shape
case_ "weight_shape of 3" "'${x}_shape' .* must be I64 or I32 \[2\] (\[out, in\]), not I64 \[3\]" reshape ${x}_shape 3
case_ "weight_shape F32" "'${x}_shape' .* must be I64 or I32 \[2\] (\[out, in\]), not F32 \[2\]" retype ${x}_shape F32
case_ "weight_shape negative" "'${x}_shape' is \[-128, 256\].*\[moe_intermediate_size, hidden_size\] = \[128, 256\]" \
  set ${x}_shape 0 -128
exit $fail
