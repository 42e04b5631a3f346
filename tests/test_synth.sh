#!/bin/sh
# furrow synth with the real binary: presets and overrides give checkpoints that
# verify, have the geometry asked for, and are deterministic from the seed; the
# 671B preset is refused without --force; bench on a synthetic model reports
# energy per token, or why it cannot.
set -u
T=$FURROW_TMP
furrow=$FURROW_BIN
fail=0
bad() { echo "FAIL: $*"; fail=1; }
checksum() {  # dir, tensor path: the stored checksum attribute
  h5dump -a "$2/checksum" "$1/layers-000-002.h5" | sed -n 's/^ *(0): //p'
}

# tiny = the golden A geometry: 5175648 parameters, as the golden checkpoints.
"$furrow" synth --out "$T/a" --seed 3 --quiet || bad "synth tiny"
"$furrow" info --verify "$T/a" > "$T/a.info" || bad "info --verify tiny"
grep -q '^parameters *5175648 ' "$T/a.info" || { cat "$T/a.info"; bad "tiny: expected 5175648 parameters"; }
grep -q '^verify *OK' "$T/a.info" || bad "tiny: verify"

# Same seed, same bytes; another seed, other bytes.
"$furrow" synth --out "$T/b" --seed 3 --quiet || bad "synth tiny again"
"$furrow" synth --out "$T/c" --seed 4 --quiet || bad "synth tiny, seed 4"
x=/model/layers/2/mlp/experts/9/up_proj/weight
[ -n "$(checksum "$T/a" $x)" ] && [ "$(checksum "$T/a" $x)" = "$(checksum "$T/b" $x)" ] || bad "same seed, different weights"
[ "$(checksum "$T/a" $x)" != "$(checksum "$T/c" $x)" ] || bad "different seeds, same weights"

# Overrides and FP8, an MTP layer, one layer per file.
"$furrow" synth --out "$T/d" --fp8 --layers 2 --experts 8 --top-k 2 --mtp 1 --layers-per-file 1 --quiet ||
  bad "synth with overrides"
"$furrow" info --verify "$T/d" > "$T/d.info" || { cat "$T/d.info"; bad "info --verify overrides"; }
h5ls -r "$T/d/furrow.h5" > "$T/d.ls"
grep -q '^/model/layers/1/mlp/experts/7/down_proj/weight_scale_inv ' "$T/d.ls" || bad "overrides: expert 7 scales missing"
grep -q '^/model/layers/1/mlp/experts/8/' "$T/d.ls" && bad "overrides: 8 experts asked, more written"
grep -q '^/model/layers/2/eh_proj/weight ' "$T/d.ls" || bad "overrides: MTP layer 2 missing"
for f in base.h5 layers-000-000.h5 layers-001-001.h5 mtp-002-002.h5; do [ -f "$T/d/$f" ] || bad "overrides: $f missing"; done
grep -q 'FP8 e4m3' "$T/d.info" && grep -q '+ 1 MTP' "$T/d.info" || { cat "$T/d.info"; bad "overrides: info"; }
h5ls -v "$T/d/layers-001-001.h5/model/layers/1/mlp/experts/0/gate_proj/weight" | grep -q 'native unsigned char' ||
  bad "overrides: FP8 weight not 1 byte"

# The synthetic weights stay the same from version to version (benchmarks on
# them stay comparable): pinned checksums of one BF16 and one FP8 tensor.
[ "$(checksum "$T/a" $x)" = 2286444980616882906 ] || bad "tiny seed 3: $x changed: $(checksum "$T/a" $x)"
y=/model/layers/1/mlp/experts/1/up_proj/weight
c=$(h5dump -a "$y/checksum" "$T/d/layers-001-001.h5" | sed -n 's/^ *(0): //p')
[ "$c" = 4249738653975683981 ] || bad "FP8 overrides: $y changed: $c"

# Refusals: a 671B model without --force, an existing checkpoint, bad options.
"$furrow" synth --preset deepseek-v3 --out "$T/big" 2> "$T/err.txt"; rc=$?
[ $rc -eq 1 ] && grep -q -- '--force' "$T/err.txt" && [ ! -e "$T/big" ] || { cat "$T/err.txt"; bad "deepseek-v3 without --force"; }
"$furrow" synth --out "$T/a" --quiet 2> "$T/err.txt"; rc=$?
[ $rc -eq 1 ] && grep -q 'already exists' "$T/err.txt" || bad "synth over a checkpoint: exit $rc"
"$furrow" synth --preset huge --out "$T/e" 2> "$T/err.txt"; rc=$?
[ $rc -eq 1 ] && grep -q "unknown preset 'huge'" "$T/err.txt" || bad "unknown preset: exit $rc"
"$furrow" synth --out "$T/e" --layers x 2> /dev/null; [ $? -eq 2 ] || bad "--layers x: exit 2 expected"
"$furrow" synth --bogus 2> /dev/null; [ $? -eq 2 ] || bad "--bogus: exit 2 expected"
"$furrow" synth --help > /dev/null || bad "synth --help"

# The synthetic model generated in place (--model synth:...) equals the written
# one bit for bit, on one rank and sliced over tp 2 (FP8 too, with its scales).
. "$FURROW_SRCDIR/tests/mpi.sh"
"$furrow" synth --preset tiny --seed 5 --out "$T/g" --quiet || bad "synth g"
"$furrow" logits --model "$T/g" --tokens 1,2,3,500,7 --out "$T/g1.h5" 2> /dev/null || bad "logits on disk"
"$furrow" logits --model synth:tiny,seed=5 --tokens 1,2,3,500,7 --out "$T/g2.h5" 2> /dev/null || bad "logits in place"
h5diff "$T/g1.h5" "$T/g2.h5" logits > /dev/null || bad "synth:tiny differs from the written checkpoint"
"$furrow" synth --preset tiny --fp8 --seed 3 --layers 2 --dense 0 --out "$T/h" --quiet || bad "synth h"
"$furrow" logits --model "$T/h" --tokens 9,8,7 --out "$T/h1.h5" 2> /dev/null || bad "fp8 logits on disk"
fw_mpirun 60 2 "$furrow" logits --model synth:tiny,layers=2,dense=0,seed=3,fp8=1 --tp 2 --tokens 9,8,7 \
  --out "$T/h2.h5" 2> "$T/err.txt" || { cat "$T/err.txt"; bad "fp8 logits in place, tp 2"; }
h5diff -d 1e-5 "$T/h1.h5" "$T/h2.h5" logits > /dev/null || bad "synth:tiny,fp8 over tp 2 differs from the written checkpoint"
# DeepSeek-V3.2 (the indexer; 40 tokens > index_topk 32, so selection drops positions) likewise.
v32toks=$(seq 11 47 1900 | head -40 | paste -sd, -)
"$furrow" synth --preset tiny-v32 --fp8 --seed 4 --out "$T/v" --quiet || bad "synth v"
"$furrow" logits --model "$T/v" --tokens "$v32toks" --out "$T/v1.h5" 2> /dev/null || bad "v32 logits on disk"
"$furrow" logits --model synth:tiny-v32,seed=4,fp8=1 --tokens "$v32toks" --out "$T/v2.h5" 2> /dev/null ||
  bad "v32 logits in place"
h5diff "$T/v1.h5" "$T/v2.h5" logits > /dev/null || bad "synth:tiny-v32 differs from the written checkpoint"
# Quantized weights (--weights, weights=SPEC last in the text): the written
# checkpoint read over tp 2 (per-channel INT8 scales kept by every column slice
# of o_proj and down_proj, their chunks checked) equals the in-place model on one
# rank; INT4 likewise, and with the head quantized (split by vocabulary rows);
# the size estimate counts packed values.
for spec in int8 int4,group=32 int4,group=32,head; do
  "$furrow" synth --preset tiny --seed 6 --layers 2 --weights "$spec" --out "$T/q-$spec" --quiet || bad "synth --weights $spec"
  "$furrow" info "$T/q-$spec" | grep -q "^weights .* INT[48] (symmetric" || bad "synth --weights $spec: info"
  "$furrow" logits --model "synth:tiny,layers=2,seed=6,weights=$spec" --tokens 9,8,7,300 --out "$T/q1.h5" 2> /dev/null ||
    bad "logits in place, weights=$spec"
  fw_mpirun 60 2 "$furrow" logits --model "$T/q-$spec" --tp 2 --tokens 9,8,7,300 --out "$T/q2.h5" 2> "$T/err.txt" ||
    { cat "$T/err.txt"; bad "logits of synth --weights $spec, tp 2"; }
  h5diff -d 1e-5 "$T/q1.h5" "$T/q2.h5" logits > /dev/null || bad "weights=$spec: in place differs from the written, tp 2"
  head=$(h5ls -r "$T/q-$spec/furrow.h5" | grep -c '^/lm_head/weight_packed ')
  [ "$head" = "$(case $spec in *head*) echo 1 ;; *) echo 0 ;; esac)" ] || bad "weights=$spec: packed lm_head: $head"
done
"$furrow" synth --preset deepseek-v3 --weights int4 --out "$T/big4" 2> "$T/err.txt"; rc=$?
gb=$(sed -n 's/.*this model is \([0-9]*\)\..* GB.*/\1/p' "$T/err.txt")
[ $rc -eq 1 ] && [ -n "$gb" ] && [ "$gb" -gt 300 ] && [ "$gb" -lt 420 ] ||
  { cat "$T/err.txt"; bad "deepseek-v3 int4 estimate: ${gb:-?} GB, expected ~360 (half a byte per weight)"; }
"$furrow" synth --weights int4,group=24 --out "$T/q-bad" 2> "$T/err.txt"; rc=$?
[ $rc -ne 0 ] && grep -q "tensor 'model.layers.0.self_attn.q_a_proj.weight'.*group size 24" "$T/err.txt" ||
  { cat "$T/err.txt"; bad "synth --weights int4,group=24 on tiny"; }
"$furrow" logits --model synth:tiny,weights=int9 --tokens 1 --out "$T/x.h5" 2> "$T/err.txt"; rc=$?
[ $rc -ne 0 ] && grep -q "weights: quantization 'int9'" "$T/err.txt" || { cat "$T/err.txt"; bad "synth: bad weights="; }
"$furrow" bench --help | grep -q 'weights=SPEC' || bad "bench --help lacks weights="
# bench's energy per token: J/token on the prefill and decode lines where this
# machine's RAPL counters can be read, else a line naming why not.
OMP_NUM_THREADS=1 "$furrow" bench --synthetic tiny --prompt 8 --decode 2 --no-ceilings > "$T/bench.txt" 2>&1 ||
  { cat "$T/bench.txt"; bad "bench --synthetic tiny"; }
rapl=0
for f in /sys/class/powercap/intel-rapl:*/energy_uj /sys/class/powercap/amd-rapl:*/energy_uj; do
  [ -f "$f" ] && cat "$f" > /dev/null 2>&1 && rapl=1
done
if [ $rapl = 1 ]; then
  grep -q '^prefill .* tokens/s, [0-9.e+-]* J/token (cpu [0-9.e+-]* J' "$T/bench.txt" &&
    grep -q '^decode .* tokens/s, [0-9.e+-]* J/token (cpu' "$T/bench.txt" &&
    grep -q '^figures .* prefill_j_tok=[0-9.e+-]* decode_j_tok=[0-9.e+-]*' "$T/bench.txt" ||
    { cat "$T/bench.txt"; bad "bench: RAPL is readable here, but no J/token"; }
else
  grep -q '^energy  *not read: .*RAPL' "$T/bench.txt" && ! grep -q 'J/token (cpu' "$T/bench.txt" ||
    { cat "$T/bench.txt"; bad "bench: no RAPL here, and no line saying so (or a CPU figure)"; }
fi
"$furrow" logits --model synth:tiny,layers=x --tokens 1 --out "$T/x.h5" 2> "$T/err.txt"; rc=$?
[ $rc -ne 0 ] && grep -q "bad option 'layers=x'" "$T/err.txt" || { cat "$T/err.txt"; bad "synth: spec with a bad option"; }
exit $fail
