# FW_CHECK_HWLOC: hwloc (>= 2.0) is required. Sets HWLOC_CFLAGS, HWLOC_LIBS.
AC_DEFUN([FW_CHECK_HWLOC], [
  AC_ARG_WITH([hwloc],
    [AS_HELP_STRING([--with-hwloc=DIR], [hwloc installation prefix (required; default: search)])],
    [], [with_hwloc=check])
  AS_IF([test "x$with_hwloc" = xno], [AC_MSG_ERROR([furrow needs hwloc; --without-hwloc is not supported])])
  AS_IF([test "x$with_hwloc" != xcheck && test "x$with_hwloc" != xyes],
    [HWLOC_CFLAGS="-I$with_hwloc/include"; HWLOC_LIBS="-L$with_hwloc/lib -lhwloc"],
    [PKG_CHECK_MODULES([HWLOC], [hwloc >= 2.0], [], [HWLOC_LIBS="-lhwloc"])])
  fw_save_CPPFLAGS=$CPPFLAGS; fw_save_LIBS=$LIBS
  CPPFLAGS="$CPPFLAGS $HWLOC_CFLAGS"; LIBS="$HWLOC_LIBS $LIBS"
  AC_MSG_CHECKING([whether a hwloc program links])
  AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <hwloc.h>]],
                   [[hwloc_topology_t t; hwloc_topology_init(&t); hwloc_topology_destroy(t);]])],
    [AC_MSG_RESULT([yes])],
    [AC_MSG_RESULT([no])
     AC_MSG_ERROR([furrow needs hwloc 2: install libhwloc-dev or pass --with-hwloc=DIR])])
  CPPFLAGS=$fw_save_CPPFLAGS; LIBS=$fw_save_LIBS
  AC_SUBST([HWLOC_CFLAGS]) AC_SUBST([HWLOC_LIBS])
])
