#!/bin/sh
# The MTP layer (speculative decoding's draft) against a float64 reference from
# DeepSeek-V3's description (mtp_check), on two checkpoints with one: written by
# furrow synth (BF16), and converted from the golden tiny Hugging Face
# checkpoint with an MTP layer added in the published layout (hf_add_mtp.py),
# which convert must keep. On the converted one, --speculative mtp:1 gives
# greedy's tokens too.
set -u
T=$FURROW_TMP
furrow=$FURROW_BIN
fail=0
bad() { echo "FAIL: $*"; fail=1; }

"$furrow" synth --out "$T/m" --bf16 --mtp 1 --seed 5 --quiet || bad "synth --mtp 1"
"$FURROW_BUILDDIR/tests/mtp_check" "$T/m" || bad "mtp_check: synth's MTP logits vs the float64 reference"

golden=${FURROW_SHARED:-}/golden/tiny-a-bf16
if [ -d "$golden" ]; then
  python3 "$FURROW_SRCDIR/tests/hf_add_mtp.py" "$golden" "$T/hf" || bad "hf_add_mtp.py"
  "$furrow" convert --hf "$T/hf" --out "$T/c" --quiet || bad "convert of a checkpoint with an MTP layer"
  "$furrow" info --verify "$T/c" > "$T/c.info" || bad "info --verify"
  grep -q '+ 1 MTP' "$T/c.info" || { cat "$T/c.info"; bad "convert did not keep the MTP layer"; }
  "$FURROW_BUILDDIR/tests/mtp_check" "$T/c" || bad "mtp_check: the converted MTP logits vs the float64 reference"
  p="--prompt-tokens 0,5,100,2000,17 --prompt-tokens 3,44 --max-tokens 24 --ignore-eos"
  "$furrow" generate --model "$T/c" $p > "$T/g.out" 2>/dev/null || bad "generate"
  "$furrow" generate --model "$T/c" $p --speculative mtp:1 > "$T/s.out" 2>/dev/null || bad "generate mtp:1"
  cmp -s "$T/g.out" "$T/s.out" || bad "converted checkpoint: mtp:1 changed greedy's tokens"
else
  echo "no $golden: the converted checkpoint's part skipped"
fi
exit $fail
