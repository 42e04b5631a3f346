noinst_LIBRARIES += libfurrow_kernels.a
libfurrow_kernels_a_SOURCES = \
	kernels/ops.h \
	kernels/weight.c \
	kernels/cpu/ref.c \
	kernels/cpu/fast.h kernels/cpu/simd.h \
	kernels/cpu/fast.c \
	kernels/cpu/cpu_features.c \
	kernels/cpu/ceilings.c kernels/cpu/ceilings.h \
	kernels/cpu/fast_matmul.c \
	kernels/cpu/fast_int4.c kernels/cpu/fast_int4.h \
	kernels/cpu/fast_int8.c \
	kernels/cpu/fast_bf16.c \
	kernels/cpu/gemm512.c kernels/cpu/gemm512.h

# A micro-benchmark, never installed: `make kernels/cpu/bench_kernels`; make check
# builds it (so it cannot rot) but does not run it (it is not in TESTS).
check_PROGRAMS += kernels/cpu/bench_kernels
kernels_cpu_bench_kernels_SOURCES = kernels/cpu/bench_kernels.c
kernels_cpu_bench_kernels_LDADD = libfurrow_kernels.a -lm

# The CUDA backend (kernels/cuda): CUDA C++ compiled by nvcc into its own library,
# linked only into GPU targets (the rest of furrow never links CUDA). The sources
# are distributed whether or not this build has CUDA.
FW_CUDA_SRCS = \
	kernels/cuda/ctx.cu \
	kernels/cuda/delay.cu \
	kernels/cuda/indexer.cu \
	kernels/cuda/convert.cu \
	kernels/cuda/embed.cu \
	kernels/cuda/rmsnorm.cu \
	kernels/cuda/rope.cu \
	kernels/cuda/elementwise.cu \
	kernels/cuda/route.cu \
	kernels/cuda/attention.cu \
	kernels/cuda/matmul.cu \
	kernels/cuda/matmul_own.cu \
	kernels/cuda/matmul_xw.cu \
	kernels/cuda/fp8_quant.cu \
	kernels/cuda/mla.cu \
	kernels/cuda/mla_decode.cu \
	kernels/cuda/mla_decode_wgmma.cu \
	kernels/cuda/attn_flash.cu \
	kernels/cuda/attn_flash_wgmma.cu \
	kernels/cuda/moe.cu \
	kernels/cuda/moe_wgmma.cu \
	kernels/cuda/moe_fp8.cu
FW_CUDA_HDRS = kernels/cuda/ops_cuda.h kernels/cuda/delay.h kernels/cuda/indexer.h kernels/cuda/cuda_common.h kernels/cuda/tc.h kernels/cuda/wgmma.h \
	kernels/cuda/moe_tiles.h kernels/cuda/int4_tc.h kernels/cuda/attn_flash.h kernels/cuda/barrier.h kernels/cuda/mla_decode.h
EXTRA_DIST += $(FW_CUDA_SRCS) $(FW_CUDA_HDRS)
# sm_90 code plus compute_90 PTX (later GPUs JIT it); warnings on for the host side.
FW_NVCC_FLAGS = -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 \
	-std=c++17 -Xcompiler -Wall,-Wextra
AM_V_NVCC = $(am__v_NVCC_@AM_V@)
am__v_NVCC_ = $(am__v_NVCC_@AM_DEFAULT_V@)
am__v_NVCC_0 = @echo "  NVCC    " $@;
am__v_NVCC_1 =
SUFFIXES = .cu
.cu.o:
	$(AM_V_NVCC)$(NVCC) $(NVCCFLAGS) $(FW_NVCC_FLAGS) -I$(top_srcdir) -I$(top_builddir) $(CUDA_CFLAGS) -c -o $@ $<
# Hopper's warpgroup MMA exists only in arch-specific sm_90a code (no PTX that a
# later GPU could run): these files are built for that alone, and the host takes
# their kernels on compute capability 9.0 only (moe.cu's tiles and
# attn_flash.cu's and mla_decode.cu's kernels elsewhere).
FW_NVCC_SM90A = $(NVCC) $(NVCC_ARCH_FREE_FLAGS) -gencode arch=compute_90a,code=sm_90a -std=c++17 \
	-Xcompiler -Wall,-Wextra -I$(top_srcdir) -I$(top_builddir) $(CUDA_CFLAGS)
kernels/cuda/moe_wgmma.o: kernels/cuda/moe_wgmma.cu
	$(AM_V_NVCC)$(FW_NVCC_SM90A) -c -o $@ $<
kernels/cuda/moe_fp8.o: kernels/cuda/moe_fp8.cu
	$(AM_V_NVCC)$(FW_NVCC_SM90A) -c -o $@ $<
kernels/cuda/attn_flash_wgmma.o: kernels/cuda/attn_flash_wgmma.cu
	$(AM_V_NVCC)$(FW_NVCC_SM90A) -c -o $@ $<
kernels/cuda/mla_decode_wgmma.o: kernels/cuda/mla_decode_wgmma.cu
	$(AM_V_NVCC)$(FW_NVCC_SM90A) -c -o $@ $<
if HAVE_CUDA
noinst_LIBRARIES += libfurrow_cuda.a
libfurrow_cuda_a_SOURCES = $(FW_CUDA_SRCS) $(FW_CUDA_HDRS)
# nvcc tracks no header dependencies here: rebuild on any header change.
$(libfurrow_cuda_a_OBJECTS): $(FW_CUDA_HDRS) kernels/ops.h
endif
