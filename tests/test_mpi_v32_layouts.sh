#!/bin/sh
# DeepSeek-V3.2 (sparse attention) under tensor and pipeline parallelism: every
# layout gives the single rank's logits and greedy tokens on tests/golden_v32's
# tiny checkpoints, over prompts longer than index_topk (32), so that each TP
# rank's replicated indexer must select the same positions for its heads and
# each stage's key cache must hold its layers' keys.
set -u
. "$FURROW_SRCDIR/tests/mpi.sh"
data=$FURROW_SRCDIR/tests/golden_v32/data
fail=0
tokens=$(seq 100 37 2000 | head -48 | paste -sd, -)   # 48 positions > index_topk
prompt=$(seq 7 41 2000 | head -40 | paste -sd, -)
tol=1e-5
for name in tiny-v32-bf16 tiny-v32-fp8; do
  model=$FURROW_TMP/$name
  "$FURROW_BIN" convert --hf "$data/$name" --out "$model" --quiet > /dev/null || { echo "FAIL: convert $name"; exit 1; }
  fw_mpirun 60 1 "$FURROW_BIN" logits --model "$model" --tokens "$tokens" --out "$FURROW_TMP/ref.h5" \
    2> "$FURROW_TMP/ref.err" || { cat "$FURROW_TMP/ref.err"; echo "FAIL: single-rank logits"; exit 1; }
  # --indexer exact (float32 scores, transformers' arithmetic) is another computation than the default FP8 one
  # (DeepSeek's): on these near-tied models it selects other positions, so the logits move
  fw_mpirun 60 1 "$FURROW_BIN" logits --model "$model" --tokens "$tokens" --out "$FURROW_TMP/exact.h5" \
    --indexer exact 2> "$FURROW_TMP/exact.err" || { cat "$FURROW_TMP/exact.err"; echo "FAIL: --indexer exact"; exit 1; }
  if h5diff -q -d 1e-2 "$FURROW_TMP/ref.h5" "$FURROW_TMP/exact.h5" /logits /logits; then
    echo "FAIL: $name: --indexer exact gives the FP8 indexer's logits"; fail=1
  else echo "ok: $name: --indexer exact and fp8 differ"; fi
  "$FURROW_BIN" logits --model "$model" --tokens 1,2 --out "$FURROW_TMP/x.h5" --indexer fp16 2> "$FURROW_TMP/bad.err" &&
    { echo "FAIL: --indexer fp16 accepted"; fail=1; }
  grep -q "indexer: expected fp8 or exact" "$FURROW_TMP/bad.err" || { cat "$FURROW_TMP/bad.err"; echo "FAIL: --indexer message"; fail=1; }
  ref_gen=$("$FURROW_BIN" generate --model "$model" --prompt-tokens "$prompt" --max-tokens 10 --ignore-eos 2>/dev/null)
  [ -n "$ref_gen" ] || { echo "FAIL: $name: single-rank generate"; exit 1; }
  # Two sequences in flight (their decodes in one step, each over its own selection) equal one at a time.
  p2=$(seq 1500 -29 10 | head -37 | paste -sd, -)
  ref_two=$(for p in "$prompt" "$p2"; do "$FURROW_BIN" generate --model "$model" --prompt-tokens "$p" --max-tokens 10 \
            --ignore-eos 2>/dev/null; done)
  two=$("$FURROW_BIN" generate --model "$model" --prompt-tokens "$prompt" --prompt-tokens "$p2" --max-tokens 10 \
        --ignore-eos 2>/dev/null)
  if [ -n "$two" ] && [ "$two" = "$ref_two" ]; then echo "ok: $name: 2 sequences in flight equal one at a time"
  else echo "FAIL: $name: 2 sequences at once gave"; echo "$two"; echo "one at a time:"; echo "$ref_two"; fail=1; fi
  for layout in "2 2 1" "2 1 2" "4 2 2"; do
    set -- $layout
    np=$1 tp=$2 pp=$3
    what="$name tp$tp x pp$pp"
    out=$FURROW_TMP/l_${np}_${tp}_${pp}.h5
    if ! fw_mpirun 120 "$np" "$FURROW_BIN" logits --model "$model" --tokens "$tokens" --out "$out" --tp "$tp" \
         --pp "$pp" --pp-transport mpi 2> "$out.err"; then
      cat "$out.err"; echo "FAIL: $what: logits run"; fail=1; continue
    fi
    if h5diff -d $tol "$FURROW_TMP/ref.h5" "$out" /logits /logits; then echo "ok: $what: logits equal one rank's within $tol"
    else echo "FAIL: $what: logits differ from one rank's by more than $tol"; fail=1; fi
    gen=$(fw_mpirun 120 "$np" "$FURROW_BIN" generate --model "$model" --prompt-tokens "$prompt" --max-tokens 10 \
          --ignore-eos --tp "$tp" --pp "$pp" --pp-transport mpi 2>/dev/null)
    if [ "$gen" = "$ref_gen" ]; then echo "ok: $what: greedy tokens equal"
    else echo "FAIL: $what: greedy tokens $gen, one rank gives $ref_gen"; fail=1; fi
  done
done
exit $fail
