#!/bin/sh
# The layering of the code (tests/layers.txt, ARCHITECTURE.md), read from the
# built object files' symbols: no folder uses a folder of a layer above it or
# beside it, and no files call each other in a loop. First the checker itself is
# shown a small tree that breaks each rule; then plain `furrow` must not link
# CUDA or NCCL.
set -u
: "${FURROW_SRCDIR:?FURROW_SRCDIR is not set}"
: "${FURROW_BUILDDIR:?FURROW_BUILDDIR is not set}"
: "${FURROW_BIN:?FURROW_BIN is not set}"
tmp=${FURROW_TMP:-/tmp}/layers
check="python3 $FURROW_SRCDIR/tests/layers.py"
fail=0
command -v nm >/dev/null || { echo "SKIP: no nm"; exit 77; }

# The checker on a tree that breaks the rules: kernels/ calls up into io/base
# (a layer of its own line: sideways) and into runtime/cli (upward), and two
# io/ files call each other.
rm -rf "$tmp" && mkdir -p "$tmp/kernels" "$tmp/io/base" "$tmp/io" "$tmp/runtime/cli"
cat > "$tmp/lay.txt" <<'L'
io/base kernels
io
runtime/cli
L
printf 'int up(void); int base(void); int k(void) { return up() + base(); }\n' > "$tmp/kernels/k.c"
printf 'int base(void) { return 1; }\n' > "$tmp/io/base/b.c"
printf 'int b(void); int a(void) { return b(); }\n' > "$tmp/io/a.c"
printf 'int a(void); int b(void) { return a(); }\n' > "$tmp/io/b.c"
printf 'int up(void) { return 2; }\n' > "$tmp/runtime/cli/c.c"
for f in kernels/k io/base/b io/a io/b runtime/cli/c; do cc -c -o "$tmp/$f.o" "$tmp/$f.c" || exit 99; done
$check "$tmp/lay.txt" "$tmp" > "$tmp/bad.out"
rc=$?
[ $rc -eq 1 ] || { echo "FAIL: the checker passed a tree that breaks the rules (exit $rc)"; fail=1; }
for want in "upward: kernels/k uses up of runtime/cli/c" "sideways: kernels/k uses base of io/base/b" \
            "loop: io/a <-> io/b"; do
  grep -qF "$want" "$tmp/bad.out" || { echo "FAIL: the checker missed '$want':"; cat "$tmp/bad.out"; fail=1; }
done
# ... and on the same tree without the offending calls.
printf 'int k(void) { return 0; }\n' > "$tmp/kernels/k.c"
printf 'int a(void) { return 0; }\n' > "$tmp/io/a.c"
for f in kernels/k io/a; do cc -c -o "$tmp/$f.o" "$tmp/$f.c" || exit 99; done
$check "$tmp/lay.txt" "$tmp" > "$tmp/good.out" || { echo "FAIL: the checker refused a layered tree:"; cat "$tmp/good.out"; fail=1; }

# furrow itself.
$check "$FURROW_SRCDIR/tests/layers.txt" "$FURROW_BUILDDIR" || fail=1

# Plain furrow never links CUDA (furrow-cuda does): it runs where no driver is.
if ldd "$FURROW_BIN" | grep -E 'libcuda|libcublas|libnccl'; then
  echo "FAIL: $FURROW_BIN links CUDA or NCCL"; fail=1
fi
if nm -u "$FURROW_BIN" | grep -E ' (cuda|cublas|nccl)[A-Z]'; then
  echo "FAIL: $FURROW_BIN calls CUDA or NCCL"; fail=1
fi
[ $fail -eq 0 ] && echo "PASS: layers"
exit $fail
