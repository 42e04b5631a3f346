#!/bin/sh
# Mapped and read weights (--load mmap|read) give bit-identical logits on one rank
# and on tp 2, BF16 and FP8; data files rewritten by h5repack with compressed
# chunks, contiguous storage off 64-byte boundaries and contiguous aligned storage
# fall back (or map) as their layout allows, with the same logits; a truncated
# data file is an error naming a tensor and the truncation, not a crash.
set -u
. "$FURROW_SRCDIR/tests/mpi.sh"
golden=${FURROW_SHARED:-}/golden
[ -n "${FURROW_SHARED:-}" ] && [ -d "$golden" ] || { echo "SKIP: no shared/golden"; exit 77; }
command -v h5repack > /dev/null || { echo "SKIP: no h5repack"; exit 77; }
fail=0
tokens=0,5,100,2000,17,3,44,1023,512,7
# "rank 0 (...): read R bytes of weights in T s, V of them checked ..., M mapped; memory ...": R and M of rank 0.
read_of() { sed -n 's/^rank 0 (.*: read \([0-9]*\) bytes.*/\1/p' "$1"; }
mapped_of() { sed -n 's/^rank 0 (.*, \([0-9]*\) mapped;.*/\1/p' "$1"; }

"$FURROW_BIN" generate --help 2>&1 | grep -q -- "--load mmap|read" ||
  { echo "FAIL: --load is not in --help"; fail=1; }
if "$FURROW_BIN" logits --model /nonexistent --tokens 1 --out "$FURROW_TMP/x.h5" --load sideways 2> "$FURROW_TMP/bad.err"; then
  echo "FAIL: --load sideways accepted"; fail=1
elif ! grep -q "expected mmap or read" "$FURROW_TMP/bad.err"; then
  cat "$FURROW_TMP/bad.err"; echo "FAIL: --load sideways: no clear message"; fail=1
fi

# logits MODEL NP OUT MODE: the logits of the tokens on NP ranks (tp NP), --verbose to OUT.err.
logits() {
  fw_mpirun 120 "$2" "$FURROW_BIN" logits --model "$1" --tokens $tokens --out "$3" --tp "$2" --pp 1 --load "$4" \
    --verbose 2> "$3.err" || { cat "$3.err"; echo "FAIL: logits $1 on $2 rank(s), --load $4"; fail=1; }
}
# same A B WHAT: the two logits files hold the same bits.
same() {
  if h5diff "$1" "$2" /logits /logits > /dev/null; then echo "ok: $3"; else echo "FAIL: $3: logits differ"; fail=1; fi
}

for name in tiny-a-bf16 tiny-a-fp8; do
  model=$FURROW_TMP/$name
  "$FURROW_BIN" convert --hf "$golden/$name" --out "$model" --quiet > /dev/null || { echo "FAIL: convert $name"; exit 1; }
  for np in 1 2; do
    logits "$model" $np "$FURROW_TMP/$name.$np.read.h5" read
    logits "$model" $np "$FURROW_TMP/$name.$np.mmap.h5" mmap
    same "$FURROW_TMP/$name.$np.read.h5" "$FURROW_TMP/$name.$np.mmap.h5" "$name tp $np: mapped = read"
    r=$(read_of "$FURROW_TMP/$name.$np.read.h5.err") mr=$(mapped_of "$FURROW_TMP/$name.$np.read.h5.err")
    m=$(mapped_of "$FURROW_TMP/$name.$np.mmap.h5.err") rm_=$(read_of "$FURROW_TMP/$name.$np.mmap.h5.err")
    # Mapped: all but the row-parallel tensors (column chunks) and the vectors.
    if [ "$mr" = 0 ] && [ "$rm_" = "$r" ] && [ -n "$m" ] && [ "$m" -gt $((r / 2)) ] && [ "$m" -lt "$r" ]; then
      echo "ok: $name tp $np: $m of $r bytes mapped (read: 0)"
    else
      echo "FAIL: $name tp $np: mapped '$m' of '$rm_' bytes (read mode: '$mr' of '$r')"; fail=1
    fi
  done
done

# The BF16 checkpoint's data files rewritten by h5repack: LABEL|ARGS|EXPECT, where
# EXPECT says how much of rank 0's bytes map: none, some (not all), most (all but
# the vectors: contiguous storage holds the row-parallel tensors as rows too).
ref=$FURROW_TMP/tiny-a-bf16.1.read.h5
for v in "gzip|-f GZIP=1|none" "contiguous|-l CONTI|some" "contiguous-aligned|-l CONTI -a 64 -t 1|most"; do
  IFS='|'; set -- $v; IFS=' '
  label=$1 args=$2 expect=$3
  model=$FURROW_TMP/repack-$label
  rm -rf "$model"; cp -r "$FURROW_TMP/tiny-a-bf16" "$model"
  for f in "$model"/base.h5 "$model"/layers-*.h5; do
    h5repack $args "$f" "$f.new" && mv "$f.new" "$f" || { echo "FAIL: h5repack $args $f"; fail=1; }
  done
  logits "$model" 1 "$model.h5" mmap
  same "$ref" "$model.h5" "repacked ($label): mapped where it can = read"
  m=$(mapped_of "$model.h5.err") r=$(read_of "$model.h5.err") chunked=$(mapped_of "$FURROW_TMP/tiny-a-bf16.1.mmap.h5.err")
  case $expect in
    none) ok=$([ "$m" = 0 ] && echo y) ;;
    some) ok=$([ "$m" -gt 0 ] && [ "$m" -lt "$r" ] && echo y) ;;
    most) ok=$([ "$m" -gt "$chunked" ] && [ "$m" -lt "$r" ] && echo y) ;;
  esac
  if [ "${ok:-}" = y ]; then echo "ok: repacked ($label): $m of $r bytes mapped"
  else echo "FAIL: repacked ($label): $m of $r bytes mapped, expected $expect"; fail=1; fi
done

# A truncated data file: a clear error, on either path.
model=$FURROW_TMP/truncated
rm -rf "$model"; cp -r "$FURROW_TMP/tiny-a-bf16" "$model"
f=$(ls "$model"/layers-*.h5 | head -n 1)
truncate -s $(($(stat -c %s "$f") / 2)) "$f"
for mode in mmap read; do
  "$FURROW_BIN" logits --model "$model" --tokens 1,2 --out "$FURROW_TMP/t.h5" --load $mode 2> "$FURROW_TMP/t.err"
  rc=$?
  if [ $rc = 1 ] && grep -q "tensor 'model.layers" "$FURROW_TMP/t.err" && grep -q "truncated" "$FURROW_TMP/t.err"; then
    echo "ok: truncated file, --load $mode: $(cat "$FURROW_TMP/t.err")"
  else
    cat "$FURROW_TMP/t.err"; echo "FAIL: truncated file, --load $mode: exit $rc"; fail=1
  fi
done
exit $fail
