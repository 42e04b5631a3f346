#!/bin/sh
# The MTP layer (speculative decoding's draft): a tiny checkpoint with one,
# written by furrow synth (BF16), and mtp_check comparing its logits with a
# float64 reference from DeepSeek-V3's description.
set -u
T=$FURROW_TMP
furrow=$FURROW_BIN
fail=0
bad() { echo "FAIL: $*"; fail=1; }

"$furrow" synth --out "$T/m" --bf16 --mtp 1 --seed 5 --quiet || bad "synth --mtp 1"
"$FURROW_BUILDDIR/tests/mtp_check" "$T/m" || bad "mtp_check: MTP logits vs the float64 reference"
exit $fail
