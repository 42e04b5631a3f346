noinst_LIBRARIES += libfurrow_kernels.a
libfurrow_kernels_a_SOURCES = \
	kernels/ops.h
