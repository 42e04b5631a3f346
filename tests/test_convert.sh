#!/bin/sh
# furrow convert and furrow info with the real binary, on shared/golden's tiny
# checkpoints (BF16, FP8 and INT4 experts): the output's layout (h5ls), checksums, parameter
# count (computed here from the safetensors headers), FP8 kept at 1 byte per
# element; then bad inputs, each refused with a message and no checkpoint left.
set -u
golden=${FURROW_SHARED:-}/golden
[ -n "${FURROW_SHARED:-}" ] && [ -d "$golden/tiny-a-bf16" ] || { echo "SKIP: no shared/golden"; exit 77; }
T=$FURROW_TMP
furrow=$FURROW_BIN
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# Parameters = elements of every tensor but the FP8 block scales, summed from the
# shard headers (8-byte little-endian length, then JSON).
params_of() {
  for f in "$1"/*.safetensors; do
    n=$(od -An -t u8 -N 8 "$f" | tr -d ' ')
    head -c $((8 + n)) "$f" | tail -c "$n"
  done | tr '}' '\n' | grep -v '_scale_inv"' | grep -o '"shape":\[[0-9,]*\]' |
    sed 's/"shape":\[//; s/\]//' |
    awk -F, '{ p = 1; for (i = 1; i <= NF; i++) p *= $i; s += p } END { printf "%.0f\n", s }'
}

for name in tiny-a-bf16 tiny-a-fp8; do
  out=$T/$name
  "$furrow" convert --hf "$golden/$name" --out "$out" --quiet || { bad "convert $name"; continue; }
  [ -f "$out/furrow.h5" ] && [ -f "$out/base.h5" ] || bad "$name: furrow.h5 or base.h5 missing"
  h5ls -r "$out/furrow.h5" > "$T/$name.ls" || bad "$name: h5ls failed"
  grep -q '^/model/layers/1/mlp/experts/15/down_proj/weight ' "$T/$name.ls" || bad "$name: h5ls -r lacks experts/15/down_proj"
  grep -q '^/lm_head/weight ' "$T/$name.ls" || bad "$name: h5ls -r lacks lm_head"
  "$furrow" info --verify "$out" > "$T/$name.info" 2>&1 || { cat "$T/$name.info"; bad "$name: info --verify"; }
  grep -q '^verify *OK' "$T/$name.info" || bad "$name: verify did not say OK"
  want=$(params_of "$golden/$name")
  grep -q "^parameters *$want " "$T/$name.info" || { grep parameters "$T/$name.info"; bad "$name: expected $want parameters"; }
  echo "$name: $want parameters, $(grep -c External "$T/$name.ls") tensors"
done
cat "$T/tiny-a-fp8.info"

# FP8 stays FP8: 1 byte per element, dtype attribute F8_E4M3, scales beside it.
w=$T/tiny-a-fp8/furrow.h5/model/layers/1/mlp/experts/15/down_proj/weight
h5ls -v --follow-symlinks "$w" > "$T/fp8.ls" 2>&1 || bad "h5ls -v $w"
grep -q 'Dataset {256/256, 128/128}' "$T/fp8.ls" || bad "fp8 weight shape"
grep -q 'Storage: *32768 logical bytes' "$T/fp8.ls" || bad "fp8 weight is not 1 byte per element"
grep -q 'Type: *native unsigned char' "$T/fp8.ls" || bad "fp8 weight type"
h5dump -a /model/layers/1/mlp/experts/15/down_proj/weight/dtype "$T/tiny-a-fp8/layers-000-002.h5" | grep -q '"F8_E4M3"' ||
  bad "fp8 dtype attribute"
grep -q '^/model/layers/1/mlp/experts/15/down_proj/weight_scale_inv ' "$T/tiny-a-fp8.ls" || bad "fp8 scales missing"
h5ls -v --follow-symlinks "$T/tiny-a-bf16/furrow.h5/model/layers/1/mlp/experts/15/down_proj/weight" |
  grep -q 'Storage: *65536 logical bytes' || bad "bf16 weight is not 2 bytes per element"

# --layers-per-file, and tokenizer files copied along.
src=$T/with-tokenizer
mkdir -p "$src" && ln -sf "$golden"/tiny-a-fp8/* "$src"/ && echo '{"model": {}}' > "$src/tokenizer.json"
"$furrow" convert --hf "$src" --out "$T/per-layer" --layers-per-file 1 --quiet || bad "convert --layers-per-file 1"
for f in base.h5 layers-000-000.h5 layers-001-001.h5 layers-002-002.h5 tokenizer.json; do
  [ -f "$T/per-layer/$f" ] || bad "--layers-per-file 1: $f missing"
done
"$furrow" info --verify "$T/per-layer" > /dev/null || bad "info --verify per-layer"

# An unknown tensor (in its own shard, listed in the index) is reported and skipped.
mkcopy_extra() {
  rm -rf "$1"; mkdir -p "$1"
  ln -s "$golden/tiny-a-bf16"/*.safetensors "$1"/
  cp "$golden/tiny-a-bf16/config.json" "$1"/
  x=model.layers.0.self_attn.rotary_emb.inv_freq
  h="{\"$x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}"
  { printf "\\$(printf %03o ${#h})\\000\\000\\000\\000\\000\\000\\000"; printf '%s' "$h"; head -c 16 /dev/zero; } > "$1/extra.safetensors"
  sed "s/\"weight_map\": {/\"weight_map\": {\"$x\": \"extra.safetensors\",/" \
    "$golden/tiny-a-bf16/model.safetensors.index.json" > "$1/model.safetensors.index.json"
}
mkcopy_extra "$T/extra"
"$furrow" convert --hf "$T/extra" --out "$T/out-extra" 2> "$T/extra.err" || { cat "$T/extra.err"; bad "convert with an extra tensor"; }
grep -q "warning: skipping tensor 'model.layers.0.self_attn.rotary_emb.inv_freq'" "$T/extra.err" || { cat "$T/extra.err"; bad "extra tensor not reported"; }
grep -q "layer 3/3 converted" "$T/extra.err" || bad "no progress lines"
h5ls -r "$T/out-extra/furrow.h5" | grep -q rotary_emb && bad "extra tensor was converted"

# Usage errors: exit 2; --help: exit 0.
"$furrow" convert --bogus > /dev/null 2>&1; [ $? -eq 2 ] || bad "convert --bogus: exit 2 expected"
"$furrow" info --help > /dev/null || bad "info --help"
"$furrow" convert --help > /dev/null || bad "convert --help"

# A copy of a golden directory with the shards linked (not copied) and config.json editable.
mkcopy() {
  rm -rf "$2"; mkdir -p "$2"
  ln -s "$golden/$1"/*.safetensors "$2"/
  cp "$golden/$1/config.json" "$golden/$1/model.safetensors.index.json" "$2"/
  chmod u+w "$2"/*.json
}

# Each bad input: exit 1 (not a crash), the message names the problem, no furrow.h5.
expect_fail() {  # label, expected text, hf dir, out dir [, "existing": out holds a checkpoint]
  "$furrow" convert --hf "$3" --out "$4" --quiet 2> "$T/err.txt"
  rc=$?
  [ $rc -eq 1 ] || bad "$1: exit $rc, expected 1"
  grep -q -- "$2" "$T/err.txt" || { cat "$T/err.txt"; bad "$1: message lacks '$2'"; }
  grep -q '^furrow convert: ' "$T/err.txt" || bad "$1: message not prefixed"
  [ "${5:-}" = existing ] || [ ! -e "$4/furrow.h5" ] || bad "$1: left a furrow.h5"
  echo "$1: $(head -n 1 "$T/err.txt")"
}

mkcopy tiny-a-bf16 "$T/bad-shape"
sed -i 's/"intermediate_size": 512/"intermediate_size": 640/' "$T/bad-shape/config.json"
expect_fail "shape mismatch" "model.layers.0.mlp.gate_proj.weight.*\[512, 256\].*intermediate_size" "$T/bad-shape" "$T/out-shape"
[ ! -e "$T/out-shape" ] || bad "shape mismatch: created output directory left behind"

mkcopy tiny-a-fp8 "$T/missing"
sed -i 's/"num_hidden_layers": 3/"num_hidden_layers": 4/' "$T/missing/config.json"
expect_fail "missing tensor" "model.layers.3.* is missing" "$T/missing" "$T/out-missing"

# Products of counts far beyond the shards: refused at once, before any listing.
mkcopy tiny-a-bf16 "$T/absurd"
sed -i 's/"num_hidden_layers": 3/"num_hidden_layers": 4096/; s/"n_routed_experts": 16/"n_routed_experts": 65536/' "$T/absurd/config.json"
s0=$(date +%s)
expect_fail "absurd layer x expert product" "describes 80[0-9]* tensors.*4096.*65536.*shards hold" "$T/absurd" "$T/out-absurd"
[ $(( $(date +%s) - s0 )) -le 10 ] || bad "absurd config took $(( $(date +%s) - s0 )) s to refuse"
"$furrow" synth --out "$T/synth-absurd" --layers 4096 --experts 65536 --quiet 2> "$T/synth-absurd.err" &&
  bad "synth accepted 4096 layers x 65536 experts" ||
  { grep -q "more than furrow handles" "$T/synth-absurd.err" && echo "synth absurd: $(cat "$T/synth-absurd.err")" ||
    { cat "$T/synth-absurd.err"; bad "synth absurd: message"; }; }

mkcopy tiny-a-bf16 "$T/truncated"
shard=model-00002-of-00003.safetensors
rm "$T/truncated/$shard" && head -c 100000 "$golden/tiny-a-bf16/$shard" > "$T/truncated/$shard"
expect_fail "truncated shard" "$shard" "$T/truncated" "$T/out-truncated"

mkcopy tiny-a-bf16 "$T/no-config"
rm "$T/no-config/config.json"
expect_fail "missing config.json" "config.json" "$T/no-config" "$T/out-no-config"

mkcopy tiny-a-fp8 "$T/fp8-as-bf16"
sed -i '/"quantization_config"/,$d' "$T/fp8-as-bf16/config.json" && echo '"x": 0 }' >> "$T/fp8-as-bf16/config.json"
expect_fail "FP8 tensors without quantization_config" "F8_E4M3" "$T/fp8-as-bf16" "$T/out-fp8-as-bf16"

# A V3.2 config (sparse attention) over V3 weights: the indexer's tensors are missing, so it is
# refused, never converted as dense MLA. synth writes them (the indexer's LayerNorm bias 0).
mkcopy tiny-a-bf16 "$T/v32"
sed -i 's/"model_type": "deepseek_v3"/"model_type": "deepseek_v32", "index_n_heads": 8, "index_head_dim": 128, "index_topk": 32/' "$T/v32/config.json"
expect_fail "V3.2 config over V3 weights" "describes 154 tensors (num_hidden_layers 3, n_routed_experts 16), but the checkpoint's shards hold 139" "$T/v32" "$T/out-v32"
"$furrow" synth --config "$T/v32/config.json" --out "$T/synth-v32" --quiet || bad "synth of a V3.2 config"
"$furrow" info "$T/synth-v32" | grep -q '^sparse *DeepSeek-V3.2 indexer: 8 heads of 128, top 32' || bad "synth v32: info"
h5dump -d /model/layers/2/self_attn/indexer/k_norm/bias "$T/synth-v32"/layers-*.h5 | grep -q '(0): 0, 0, 0' ||
  bad "synth v32: k_norm bias not 0"
"$furrow" synth --preset tiny-v32 --fp8 --out "$T/synth-v32p" --quiet &&
  "$furrow" info "$T/synth-v32p" | grep -q '^sparse *DeepSeek-V3.2 indexer: 8 heads of 128, top 32' ||
  bad "synth --preset tiny-v32"

# An existing checkpoint is refused and left exactly as it was.
cksum "$T/tiny-a-bf16"/* > "$T/before.txt"
expect_fail "existing checkpoint" "furrow.h5 already exists" "$golden/tiny-a-bf16" "$T/tiny-a-bf16" existing
cksum "$T/tiny-a-bf16"/* > "$T/after.txt"
cmp -s "$T/before.txt" "$T/after.txt" || bad "existing checkpoint was modified"

# INT4 (compressed-tensors pack-quantized): the packed words and group scales are
# kept as stored, `info` counts 8 parameters a word, and bad inputs are refused
# naming the tensor or the config field.
w4=tiny-a-w4-experts
if [ -d "$golden/$w4" ]; then
  "$furrow" convert --hf "$golden/$w4" --out "$T/$w4" --quiet || bad "convert $w4"
  "$furrow" info --verify "$T/$w4" > "$T/$w4.info" 2>&1 || { cat "$T/$w4.info"; bad "$w4: info --verify"; }
  cat "$T/$w4.info"
  grep -q '^verify *OK' "$T/$w4.info" || bad "$w4: verify did not say OK"
  grep -q '^weights *96 INT4 .*int4_sym_group32' "$T/$w4.info" || bad "$w4: info does not show 96 INT4 weights"
  grep -q "^parameters *$(params_of "$golden/tiny-a-bf16") " "$T/$w4.info" || bad "$w4: parameters differ from BF16's"
  grep -q 'I32 1.57 MB (1572864)' "$T/$w4.info" || bad "$w4: packed bytes (96 x 128 x 256 / 2)"
  e=/model/layers/2/mlp/experts/15/down_proj
  h5dump -a $e/weight_packed/quantization "$T/$w4/layers-000-002.h5" | grep -q '"int4_sym_group32"' ||
    bad "$w4: quantization attribute"
  h5ls -v --follow-symlinks "$T/$w4/furrow.h5$e/weight_scale" | grep -q 'Dataset {256/256, 4/4}' || bad "$w4: scales"
  h5ls -r "$T/$w4/furrow.h5" | grep -q "$e/weight " && bad "$w4: a plain weight for an INT4 module"

  st=$FURROW_SRCDIR/tests/st_edit.py
  x=model.layers.1.mlp.experts.3.gate_proj.weight
  python3 "$st" "$golden/$w4" "$T/w4-shape" set ${x}_shape 1 264 &&
    expect_fail "INT4 weight_shape vs packed" "${x}_shape' is \[128, 264\].*\[128, 256\]" "$T/w4-shape" "$T/out-w4-shape"
  python3 "$st" "$golden/$w4" "$T/w4-packed" reshape ${x}_packed 128,31 &&
    expect_fail "INT4 packed shape" "${x}_packed' has shape \[128, 31\].*\[128, 32\]" "$T/w4-packed" "$T/out-w4-packed"
  python3 "$st" "$golden/$w4" "$T/w4-group" reshape ${x}_scale 128,6 &&
    expect_fail "INT4 group not dividing in" "${x}_scale' has 6 groups.*256 input columns" "$T/w4-group" "$T/out-w4-group"
  python3 "$st" "$golden/$w4" "$T/w4-noscale" drop ${x}_scale &&
    expect_fail "INT4 weight_scale missing" "${x}_scale' (its group scales) is missing" "$T/w4-noscale" "$T/out-w4-noscale"
  mkcopy $w4 "$T/w4-asym"
  sed -i 's/"symmetric": true/"symmetric": false/' "$T/w4-asym/config.json"
  expect_fail "INT4 asymmetric" "config_groups.group_0.weights.symmetric.*asymmetric" "$T/w4-asym" "$T/out-w4-asym"
  mkcopy $w4 "$T/w4-act"
  sed -i 's/"input_activations": null/"input_activations": {"num_bits": 8}/' "$T/w4-act/config.json"
  expect_fail "INT4 activation quantization" "group_0.input_activations is set" "$T/w4-act" "$T/out-w4-act"
  mkcopy $w4 "$T/w4-8bit"
  sed -i 's/"num_bits": 4/"num_bits": 8/' "$T/w4-8bit/config.json"
  expect_fail "INT8 weights" "num_bits is 8.*not supported yet" "$T/w4-8bit" "$T/out-w4-8bit"
  # The config and the shards must agree on which modules are packed, both ways.
  mkcopy $w4 "$T/w4-ignored"
  sed -i 's/"ignore": \[/"ignore": ["re:.*experts\\\\.3\\\\.gate_proj$", /' "$T/w4-ignored/config.json"
  expect_fail "INT4 tensor the config ignores" "${x}_packed' is packed INT4.*leaves module.*unquantized" \
    "$T/w4-ignored" "$T/out-w4-ignored"
  mkcopy $w4 "$T/w4-shared"
  sed -i '/"re:\.\*shared_experts/d' "$T/w4-shared/config.json"
  expect_fail "config quantizes an unpacked module" "quantizes module 'model.layers.1.mlp.shared_experts.*unquantized weight" \
    "$T/w4-shared" "$T/out-w4-shared"
else
  echo "no $golden/$w4: INT4 cases skipped"
fi

# A failed conversion into a directory holding other files keeps them.
mkdir -p "$T/keep" && echo notes > "$T/keep/notes.txt"
expect_fail "failure in a used directory" "intermediate_size" "$T/bad-shape" "$T/keep"
[ "$(ls "$T/keep")" = "notes.txt" ] || bad "failed conversion changed $T/keep: $(ls "$T/keep")"

exit $fail
