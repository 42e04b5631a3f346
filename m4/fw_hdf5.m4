# FW_CHECK_HDF5: HDF5 (serial or parallel) is required. pkg-config names tried in
# order: hdf5-serial, hdf5, hdf5-openmpi; else --with-hdf5=DIR. Records which kind
# was found in HDF5_KIND (serial|parallel) and FW_HDF5_PARALLEL in config.h.
AC_DEFUN([FW_CHECK_HDF5], [
  AC_ARG_WITH([hdf5],
    [AS_HELP_STRING([--with-hdf5=DIR], [HDF5 installation prefix (required; default: search)])],
    [], [with_hdf5=check])
  AS_IF([test "x$with_hdf5" = xno], [AC_MSG_ERROR([furrow needs HDF5; --without-hdf5 is not supported])])
  fw_hdf5_found=no
  AS_IF([test "x$with_hdf5" != xcheck && test "x$with_hdf5" != xyes], [
    HDF5_CFLAGS="-I$with_hdf5/include"; HDF5_LIBS="-L$with_hdf5/lib -lhdf5"; fw_hdf5_found=yes])
  AS_IF([test $fw_hdf5_found = no], [
    PKG_CHECK_MODULES([HDF5], [hdf5-serial], [fw_hdf5_found=yes], [
      PKG_CHECK_MODULES([HDF5], [hdf5], [fw_hdf5_found=yes], [
        PKG_CHECK_MODULES([HDF5], [hdf5-openmpi], [fw_hdf5_found=yes], [:])])])
  ])
  AS_IF([test $fw_hdf5_found = no], [HDF5_LIBS="-lhdf5"])
  fw_save_CPPFLAGS=$CPPFLAGS; fw_save_LIBS=$LIBS
  CPPFLAGS="$CPPFLAGS $HDF5_CFLAGS $MPI_CFLAGS"; LIBS="$HDF5_LIBS $MPI_LIBS $LIBS"
  AC_MSG_CHECKING([whether an HDF5 program links])
  AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <hdf5.h>]],
                   [[unsigned a, b, c; H5get_libversion(&a, &b, &c);]])],
    [AC_MSG_RESULT([yes])],
    [AC_MSG_RESULT([no])
     AC_MSG_ERROR([furrow needs HDF5 >= 1.10: install libhdf5-dev or pass --with-hdf5=DIR])])
  AC_MSG_CHECKING([whether HDF5 is parallel])
  AC_COMPILE_IFELSE([AC_LANG_PROGRAM([[#include <hdf5.h>
#ifndef H5_HAVE_PARALLEL
#error serial
#endif]], [])], [HDF5_KIND=parallel], [HDF5_KIND=serial])
  AC_MSG_RESULT([$HDF5_KIND])
  AS_IF([test $HDF5_KIND = parallel], [AC_DEFINE([FW_HDF5_PARALLEL], [1], [HDF5 was built with MPI-IO])])
  CPPFLAGS=$fw_save_CPPFLAGS; LIBS=$fw_save_LIBS
  AC_SUBST([HDF5_CFLAGS]) AC_SUBST([HDF5_LIBS]) AC_SUBST([HDF5_KIND])
])
