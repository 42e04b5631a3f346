# FW_ENABLE_FUZZ: --enable-fuzz builds the libFuzzer targets of fuzz/. It needs
# clang and its libFuzzer runtime, and refuses any other compiler by name. The
# libraries are then compiled with -fsanitize=fuzzer-no-link plus ASan and UBSan
# (added to FW_WARN_CFLAGS, which every object gets) so that the fuzzer sees
# their coverage; FUZZ_FLAGS (-fsanitize=fuzzer) compiles and links the targets.
# The objects compile without OpenMP (FW_OMP_CFLAGS empty; the runtime is still
# linked for omp_* calls): clang outlines a parallel region into a function
# without its caller's target("avx2") attribute and refuses the AVX2 kernels,
# and a fuzzer runs one input at a time on one thread anyway.
AC_DEFUN([FW_ENABLE_FUZZ], [
  AC_ARG_ENABLE([fuzz],
    [AS_HELP_STRING([--enable-fuzz], [build the libFuzzer targets in fuzz/ (needs CC=clang)])],
    [], [enable_fuzz=no])
  FUZZ_FLAGS=
  AS_IF([test "x$enable_fuzz" = xyes], [
    AC_MSG_CHECKING([whether $CC is clang])
    AC_COMPILE_IFELSE([AC_LANG_PROGRAM([[#ifndef __clang__
#error not clang
#endif]], [])],
      [AC_MSG_RESULT([yes])],
      [AC_MSG_RESULT([no])
       AC_MSG_ERROR([--enable-fuzz needs clang (libFuzzer): configure with CC=clang, not '$CC'])])
    FUZZ_FLAGS="-fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer"
    fw_save_CFLAGS=$CFLAGS
    CFLAGS="$CFLAGS $FUZZ_FLAGS"
    AC_MSG_CHECKING([whether $CC links a libFuzzer target])
    AC_LINK_IFELSE([AC_LANG_SOURCE([[#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return data && size ? 0 : 0; }]])],
      [AC_MSG_RESULT([yes])],
      [AC_MSG_RESULT([no])
       AC_MSG_ERROR([--enable-fuzz: $CC cannot link -fsanitize=fuzzer; install libFuzzer's runtime (Debian: libclang-rt-14-dev)])])
    CFLAGS=$fw_save_CFLAGS
    FW_WARN_CFLAGS="$FW_WARN_CFLAGS -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer"
    FW_OMP_CFLAGS=
  ])
  AC_SUBST([FUZZ_FLAGS])
  AM_CONDITIONAL([FUZZ], [test "x$enable_fuzz" = xyes])
])
