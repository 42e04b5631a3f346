#!/bin/sh
# Every layout gives the single rank's logits and greedy tokens, with both
# pipeline transports, on the golden tiny checkpoints (BF16, FP8, INT4 experts, and
# BF16 quantized by convert --quantize to per-channel INT8, and to INT4 with the
# output head, split by vocabulary rows, quantized too); each rank
# reads only its slices, and the bytes read add up as the layout says.
set -u
. "$FURROW_SRCDIR/tests/mpi.sh"
golden=${FURROW_SHARED:-}/golden
[ -n "${FURROW_SHARED:-}" ] && [ -d "$golden" ] || { echo "SKIP: no shared/golden"; exit 77; }
fail=0
tokens=0,5,100,2000,17,3,44,1023,512,7,8,9,1999,64,65,66
prompt=0,5,100,2000,17,3,44
# Several sequences at once (micro-batches through the pipeline), of different lengths.
p2=9,8,7
p3=1000,1001,1002,1003,5,5,5,5,5,5
# Tolerance: far inside the golden test's 1e-3 * max|logit| (logits here are O(1)).
tol=1e-5

bytes_read() { sed -n 's/^all ranks: read \([0-9]*\) bytes.*/\1/p' "$1"; }

for name in tiny-a-bf16 tiny-a-fp8 tiny-a-w4-experts tiny-a-int8 tiny-a-int4-head; do
  layouts="2 2 1 mpi|4 4 1 mpi|2 1 2 mpi|2 1 2 ucx|3 1 3 mpi|3 1 3 ucx|4 2 2 mpi|4 2 2 ucx"
  # INT4 experts: tp 2, pp 2 and tp 2 x pp 2 (the slicing is what differs; the
  # transports are covered above).
  [ "$name" = tiny-a-w4-experts ] && layouts="2 2 1 mpi|2 1 2 mpi|4 2 2 mpi"
  # INT8, one scale per row: every column slice of o_proj and down keeps it.
  src=$name quant=
  [ "$name" = tiny-a-int8 ] && layouts="2 2 1 mpi|4 4 1 mpi" src=tiny-a-bf16 quant="--quantize int8"
  # INT4 head: each tp rank's logits are its vocabulary rows of the packed head.
  [ "$name" = tiny-a-int4-head ] && layouts="2 2 1 mpi|4 4 1 mpi|2 1 2 mpi" src=tiny-a-bf16 \
    quant="--quantize int4,group=32,head"
  [ -d "$golden/$src" ] || { echo "no $golden/$src: skipped"; continue; }
  model=$FURROW_TMP/$name
  "$FURROW_BIN" convert --hf "$golden/$src" --out "$model" --quiet $quant > /dev/null || { echo "FAIL: convert $name"; exit 1; }
  fw_mpirun 60 1 "$FURROW_BIN" logits --model "$model" --tokens $tokens --out "$FURROW_TMP/ref.h5" --verbose \
    2> "$FURROW_TMP/ref.err" || { cat "$FURROW_TMP/ref.err"; echo "FAIL: single-rank logits"; exit 1; }
  ref_gen=$("$FURROW_BIN" generate --model "$model" --prompt-tokens $prompt --max-tokens 12 --ignore-eos 2>/dev/null)
  ref_many=$(for p in $prompt $p2 $p3; do "$FURROW_BIN" generate --model "$model" --prompt-tokens $p \
             --max-tokens 8 --ignore-eos 2>/dev/null; done)
  b1=$(bytes_read "$FURROW_TMP/ref.err")
  [ -n "$ref_gen" ] && [ -n "$b1" ] || { echo "FAIL: single-rank run"; exit 1; }

  IFS='|'
  for layout in $layouts; do
    IFS=' '
    set -- $layout
    np=$1 tp=$2 pp=$3 tr=$4
    what="$name tp$tp x pp$pp ($tr)"
    out=$FURROW_TMP/l_${np}_${tp}_${pp}_$tr.h5
    if ! fw_mpirun 120 "$np" "$FURROW_BIN" logits --model "$model" --tokens $tokens --out "$out" \
         --tp "$tp" --pp "$pp" --pp-transport "$tr" --verbose 2> "$out.err"; then
      cat "$out.err"; echo "FAIL: $what: logits run"; fail=1; continue
    fi
    if ! h5diff -d $tol "$FURROW_TMP/ref.h5" "$out" /logits /logits; then
      echo "FAIL: $what: logits differ from one rank's by more than $tol"; fail=1
    else
      echo "ok: $what: logits equal one rank's within $tol"
    fi
    gen=$(fw_mpirun 120 "$np" "$FURROW_BIN" generate --model "$model" --prompt-tokens $prompt --max-tokens 12 \
          --ignore-eos --tp "$tp" --pp "$pp" --pp-transport "$tr" 2>/dev/null)
    if [ "$gen" != "$ref_gen" ]; then
      echo "FAIL: $what: greedy tokens $gen, one rank gives $ref_gen"; fail=1
    else
      echo "ok: $what: greedy tokens equal"
    fi
    many=$(fw_mpirun 120 "$np" "$FURROW_BIN" generate --model "$model" --prompt-tokens $prompt --prompt-tokens $p2 \
           --prompt-tokens $p3 --max-tokens 8 --ignore-eos --tp "$tp" --pp "$pp" --pp-transport "$tr" 2>/dev/null)
    if [ "$many" != "$ref_many" ]; then
      echo "FAIL: $what: 3 sequences at once gave"; echo "$many"; echo "one at a time on one rank:"; echo "$ref_many"; fail=1
    else
      echo "ok: $what: 3 sequences in flight equal one at a time"
    fi
    # Bytes read: pipeline stages read disjoint layers, so together exactly what one
    # rank reads; a TP group reads the split tensors once and the replicated ones
    # tp times: B(tp) = B(1) + (tp - 1) * replicated.
    b=$(bytes_read "$out.err")
    case $tp in
      1) [ "$b" = "$b1" ] || { echo "FAIL: $what: ranks read $b bytes, one rank reads $b1"; fail=1; } ;;
      2) rep=$((b - b1)); [ "$rep" -gt 0 ] && [ "$rep" -lt "$b1" ] || { echo "FAIL: $what: read $b bytes vs $b1"; fail=1; }
         [ "$pp" = 1 ] && rep2=$rep ;;
      # FP8 block scales straddling a slice boundary (heads of 48 rows in 128-row
      # blocks) are read by both neighbours: a few bytes over, never under.
      4) want=$((b1 + 3 * rep2)); slack=0; [ "$name" = tiny-a-fp8 ] && slack=4096
         [ "$b" -ge "$want" ] && [ "$b" -le $((want + slack)) ] ||
           { echo "FAIL: $what: read $b bytes, expected $want (+ up to $slack)"; fail=1; } ;;
    esac
  done
done
exit $fail
