#!/bin/sh
# Every fuzz target (fuzz/fuzz_*.c) built with a plain main (fuzz/replay.c) runs
# the committed seed corpus (fuzz/corpus/NAME) and the inputs that once broke a
# parser (fuzz/regress/NAME): a crash, a sanitizer report (in the ASan build) or
# a broken property of the parser fails the test, naming the input.
set -u
: "${FURROW_SRCDIR:?FURROW_SRCDIR is not set}"
: "${FURROW_BUILDDIR:?FURROW_BUILDDIR is not set}"
tmp=${FURROW_TMP:-/tmp}
fail=0
for t in safetensors config ckpt tokenizer request; do
  prog=$FURROW_BUILDDIR/fuzz/replay_$t
  [ -x "$prog" ] || { echo "FAIL $t: $prog is not built (make check builds it)"; fail=1; continue; }
  set -- "$FURROW_SRCDIR/fuzz/corpus/$t"
  [ -n "$(ls "$1" 2>/dev/null)" ] || { echo "FAIL $t: no seed corpus in $1"; fail=1; continue; }
  [ -d "$FURROW_SRCDIR/fuzz/regress/$t" ] && set -- "$@" "$FURROW_SRCDIR/fuzz/regress/$t"
  if TMPDIR=$tmp "$prog" "$@" > "$tmp/$t.out" 2>&1; then
    echo "ok   $t: $(tail -n 1 "$tmp/$t.out")"
  else
    echo "FAIL $t (exit $?): the last input and what it printed:"; tail -n 30 "$tmp/$t.out"; fail=1
  fi
done
exit $fail
