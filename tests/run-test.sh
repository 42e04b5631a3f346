#!/bin/sh
# The test driver (automake LOG_COMPILER): runs one test program or script.
# Exports FURROW_SHARED (the shared/ folder beside the repository, where the
# golden data lives) unless already set, and a scratch folder FURROW_TMP.
test_prog=$1; shift
: "${FURROW_SRCDIR:=$(cd "$(dirname "$0")/.." && pwd)}"
if [ -z "$FURROW_SHARED" ] && [ -d "$FURROW_SRCDIR/../shared" ]; then
  FURROW_SHARED=$(cd "$FURROW_SRCDIR/../shared" && pwd)
fi
name=$(basename "$test_prog"); name=${name%.sh}
FURROW_TMP=${FURROW_BUILDDIR:-.}/tests/tmp/$name
rm -rf "$FURROW_TMP"; mkdir -p "$FURROW_TMP"
export FURROW_SHARED FURROW_TMP
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
case "$test_prog" in
  *.sh) exec ${SHELL:-/bin/sh} "$test_prog" "$@" ;;
  *) exec "$test_prog" "$@" ;;
esac
