noinst_LIBRARIES += libfurrow_kernels.a
libfurrow_kernels_a_SOURCES = \
	kernels/ops.h \
	kernels/weight.c \
	kernels/cpu/ref.c \
	kernels/cpu/fast.h \
	kernels/cpu/fast.c \
	kernels/cpu/fast_matmul.c
