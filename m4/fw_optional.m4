# Optional dependencies: --with-X[=DIR]. Default "check": use X when found. Asked for
# (yes or a DIR) and missing: a hard error. --without-X: never used.

# FW_WITH_ARG(NAME, HELP): defines with_NAME from --with-NAME, default check.
AC_DEFUN([FW_WITH_ARG], [
  AC_ARG_WITH([$1], [AS_HELP_STRING([--with-$1@<:@=DIR@:>@], [$2 (default: use when found)])],
    [], [with_$1=check])
])

# FW_CHECK_UCX: sets UCX_CFLAGS, UCX_LIBS, HAVE_UCX.
AC_DEFUN([FW_CHECK_UCX], [
  FW_WITH_ARG([ucx], [UCX for pipeline transfers])
  have_ucx=no
  AS_IF([test "x$with_ucx" != xno], [
    AS_IF([test "x$with_ucx" != xcheck && test "x$with_ucx" != xyes],
      [UCX_CFLAGS="-I$with_ucx/include"; UCX_LIBS="-L$with_ucx/lib -lucp -luct -lucs"],
      [PKG_CHECK_MODULES([UCX], [ucx], [], [UCX_LIBS="-lucp -luct -lucs"])])
    fw_save_CPPFLAGS=$CPPFLAGS; fw_save_LIBS=$LIBS
    CPPFLAGS="$CPPFLAGS $UCX_CFLAGS"; LIBS="$UCX_LIBS $LIBS"
    AC_MSG_CHECKING([for UCX (ucp)])
    AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <ucp/api/ucp.h>]],
                     [[ucp_config_t *c; ucp_config_read(0, 0, &c);]])],
      [have_ucx=yes], [have_ucx=no])
    AC_MSG_RESULT([$have_ucx])
    CPPFLAGS=$fw_save_CPPFLAGS; LIBS=$fw_save_LIBS
    AS_IF([test $have_ucx = no && test "x$with_ucx" != xcheck],
      [AC_MSG_ERROR([--with-ucx was given but UCX (ucp/api/ucp.h, -lucp) was not found])])
  ])
  AS_IF([test $have_ucx = yes], [AC_DEFINE([FW_HAVE_UCX], [1], [UCX is available])],
        [UCX_CFLAGS=; UCX_LIBS=])
  AM_CONDITIONAL([HAVE_UCX], [test $have_ucx = yes])
  AC_SUBST([UCX_CFLAGS]) AC_SUBST([UCX_LIBS])
])

# FW_CHECK_CUDA: nvcc, cudart, cuBLAS and cuBLASLt. Links against the driver stub
# directory so that a machine without a GPU driver can build. Sets CUDA_CFLAGS,
# CUDA_LIBS, NVCC, NVCCFLAGS, HAVE_CUDA.
AC_DEFUN([FW_CHECK_CUDA], [
  FW_WITH_ARG([cuda], [CUDA toolkit for the GPU backend])
  AC_ARG_VAR([NVCC], [CUDA compiler])
  AC_ARG_VAR([NVCCFLAGS], [flags for nvcc (default: -O3 -arch=sm_90)])
  have_cuda=no
  AS_IF([test "x$with_cuda" != xno], [
    fw_cuda_dir=
    AS_IF([test "x$with_cuda" != xcheck && test "x$with_cuda" != xyes], [fw_cuda_dir=$with_cuda],
      [for d in "$CUDA_HOME" /usr/local/cuda /usr; do
         AS_IF([test -n "$d" && test -x "$d/bin/nvcc"], [fw_cuda_dir=$d; break])
       done])
    AS_IF([test -n "$fw_cuda_dir" && test -x "$fw_cuda_dir/bin/nvcc"], [
      AS_IF([test -z "$NVCC"], [NVCC="$fw_cuda_dir/bin/nvcc"])
      fw_cuda_libdir="$fw_cuda_dir/lib64"
      AS_IF([test -d "$fw_cuda_libdir"], [], [fw_cuda_libdir="$fw_cuda_dir/lib"])
      CUDA_CFLAGS="-I$fw_cuda_dir/include"
      CUDA_LIBS="-L$fw_cuda_libdir -L$fw_cuda_libdir/stubs -lcublasLt -lcublas -lcudart -lcuda"
      fw_save_CPPFLAGS=$CPPFLAGS; fw_save_LIBS=$LIBS
      CPPFLAGS="$CPPFLAGS $CUDA_CFLAGS"; LIBS="$CUDA_LIBS $LIBS"
      AC_MSG_CHECKING([for CUDA runtime, cuBLAS and cuBLASLt in $fw_cuda_dir])
      AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <cuda_runtime.h>
#include <cublasLt.h>]], [[int n; cudaGetDeviceCount(&n); cublasLtHandle_t h; cublasLtCreate(&h);]])],
        [have_cuda=yes], [have_cuda=no])
      AC_MSG_RESULT([$have_cuda])
      CPPFLAGS=$fw_save_CPPFLAGS; LIBS=$fw_save_LIBS
    ])
    AS_IF([test $have_cuda = no && test "x$with_cuda" != xcheck],
      [AC_MSG_ERROR([--with-cuda was given but nvcc, cudart or cuBLASLt was not found (try --with-cuda=DIR)])])
  ])
  AS_IF([test $have_cuda = yes],
    [AC_DEFINE([FW_HAVE_CUDA], [1], [the CUDA backend is built])
     AS_IF([test -z "$NVCCFLAGS"], [NVCCFLAGS="-O3 -arch=sm_90"])
     # The same without target options, for code built only for sm_90a (wgmma).
     NVCC_ARCH_FREE_FLAGS=`echo " $NVCCFLAGS " | sed -e 's/ -arch[[= ]][[^ ]]*//g' -e 's/ -gencode[[= ]][[^ ]]*//g' -e 's/ --gpu-architecture[[= ]][[^ ]]*//g'`],
    [CUDA_CFLAGS=; CUDA_LIBS=])
  AC_SUBST([NVCC_ARCH_FREE_FLAGS])
  AM_CONDITIONAL([HAVE_CUDA], [test $have_cuda = yes])
  AC_SUBST([CUDA_CFLAGS]) AC_SUBST([CUDA_LIBS])
])

# FW_CHECK_NCCL: needs CUDA. Sets NCCL_CFLAGS, NCCL_LIBS, HAVE_NCCL.
AC_DEFUN([FW_CHECK_NCCL], [
  FW_WITH_ARG([nccl], [NCCL for GPU collectives])
  have_nccl=no
  AS_IF([test "x$with_nccl" != xno && test $have_cuda = yes], [
    AS_IF([test "x$with_nccl" != xcheck && test "x$with_nccl" != xyes],
      [NCCL_CFLAGS="-I$with_nccl/include"; NCCL_LIBS="-L$with_nccl/lib -lnccl"],
      [NCCL_CFLAGS=; NCCL_LIBS="-lnccl"])
    fw_save_CPPFLAGS=$CPPFLAGS; fw_save_LIBS=$LIBS
    CPPFLAGS="$CPPFLAGS $CUDA_CFLAGS $NCCL_CFLAGS"; LIBS="$NCCL_LIBS $CUDA_LIBS $LIBS"
    AC_MSG_CHECKING([for NCCL])
    AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <nccl.h>]], [[ncclUniqueId id; ncclGetUniqueId(&id);]])],
      [have_nccl=yes], [have_nccl=no])
    AC_MSG_RESULT([$have_nccl])
    CPPFLAGS=$fw_save_CPPFLAGS; LIBS=$fw_save_LIBS
  ])
  AS_IF([test $have_nccl = no && test "x$with_nccl" != xcheck && test "x$with_nccl" != xno],
    [AC_MSG_ERROR([--with-nccl was given but NCCL (nccl.h, -lnccl) was not found, or CUDA is missing])])
  AS_IF([test $have_nccl = yes], [AC_DEFINE([FW_HAVE_NCCL], [1], [NCCL is available])],
        [NCCL_CFLAGS=; NCCL_LIBS=])
  AM_CONDITIONAL([HAVE_NCCL], [test $have_nccl = yes])
  AC_SUBST([NCCL_CFLAGS]) AC_SUBST([NCCL_LIBS])
])
