# FW_CHECK_REQUIRED_LIB(VAR, PKG, HEADER, FUNC, DEBIAN-PACKAGE): a required library
# found by pkg-config or by its header and -l<name>; sets VAR_CFLAGS and VAR_LIBS.
AC_DEFUN([FW_CHECK_REQUIRED_LIB], [
  PKG_CHECK_MODULES([$1], [$2], [], [$1_LIBS="-l$2"])
  fw_save_CPPFLAGS=$CPPFLAGS; fw_save_LIBS=$LIBS
  CPPFLAGS="$CPPFLAGS $$1_CFLAGS"; LIBS="$$1_LIBS $LIBS"
  AC_CHECK_HEADER([$3], [], [AC_MSG_ERROR([furrow needs $3: install $5])])
  AC_CHECK_FUNC([$4], [], [AC_MSG_ERROR([furrow needs $2 ($4 did not link): install $5])])
  CPPFLAGS=$fw_save_CPPFLAGS; LIBS=$fw_save_LIBS
  AC_SUBST([$1_CFLAGS]) AC_SUBST([$1_LIBS])
])
