# FW_CHECK_MPI: MPI is required. Flags come from pkg-config (ompi-c, then mpi-c),
# else from the MPI compiler wrapper's --showme, else from --with-mpi=DIR.
# Sets MPI_CFLAGS, MPI_LIBS and MPIRUN.
AC_DEFUN([FW_CHECK_MPI], [
  AC_ARG_WITH([mpi],
    [AS_HELP_STRING([--with-mpi=DIR], [MPI installation prefix (required; default: search)])],
    [], [with_mpi=check])
  AS_IF([test "x$with_mpi" = xno], [AC_MSG_ERROR([furrow needs MPI; --without-mpi is not supported])])
  fw_mpi_found=no
  AS_IF([test "x$with_mpi" != xcheck && test "x$with_mpi" != xyes], [
    MPI_CFLAGS="-I$with_mpi/include"
    MPI_LIBS="-L$with_mpi/lib -lmpi"
    fw_mpi_found=yes
    AS_IF([test -x "$with_mpi/bin/mpirun"], [MPIRUN="$with_mpi/bin/mpirun"])
  ])
  AS_IF([test $fw_mpi_found = no], [
    PKG_CHECK_MODULES([MPI], [ompi-c], [fw_mpi_found=yes], [
      PKG_CHECK_MODULES([MPI], [mpi-c], [fw_mpi_found=yes], [:])])
  ])
  AS_IF([test $fw_mpi_found = no], [
    AC_PATH_PROG([FW_MPICC], [mpicc])
    AS_IF([test -n "$FW_MPICC"], [
      MPI_CFLAGS=`$FW_MPICC --showme:compile 2>/dev/null`
      MPI_LIBS=`$FW_MPICC --showme:link 2>/dev/null`
      AS_IF([test -n "$MPI_LIBS"], [fw_mpi_found=yes])
    ])
  ])
  fw_save_CPPFLAGS=$CPPFLAGS; fw_save_LIBS=$LIBS
  CPPFLAGS="$CPPFLAGS $MPI_CFLAGS"; LIBS="$MPI_LIBS $LIBS"
  AC_MSG_CHECKING([whether an MPI program links])
  AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <mpi.h>]],
                   [[int r; MPI_Init(0, 0); MPI_Comm_rank(MPI_COMM_WORLD, &r); MPI_Finalize();]])],
    [AC_MSG_RESULT([yes])],
    [AC_MSG_RESULT([no])
     AC_MSG_ERROR([furrow needs MPI (Open MPI): install libopenmpi-dev or pass --with-mpi=DIR])])
  CPPFLAGS=$fw_save_CPPFLAGS; LIBS=$fw_save_LIBS
  AS_IF([test -z "$MPIRUN"], [AC_PATH_PROGS([MPIRUN], [mpirun mpiexec], [mpirun])])
  AC_SUBST([MPI_CFLAGS]) AC_SUBST([MPI_LIBS]) AC_SUBST([MPIRUN])
])
