noinst_LIBRARIES += libfurrow_kernels.a
libfurrow_kernels_a_SOURCES = \
	kernels/ops.h \
	kernels/weight.c \
	kernels/cpu/ref.c \
	kernels/cpu/fast.h \
	kernels/cpu/fast.c \
	kernels/cpu/fast_matmul.c

# A micro-benchmark, never installed: `make kernels/bench_kernels`; make check
# builds it (so it cannot rot) but does not run it (it is not in TESTS).
check_PROGRAMS += kernels/bench_kernels
kernels_bench_kernels_SOURCES = kernels/bench_kernels.c
kernels_bench_kernels_LDADD = libfurrow_kernels.a -lm
