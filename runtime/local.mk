noinst_LIBRARIES += libfurrow_runtime.a
libfurrow_runtime_a_SOURCES = \
	runtime/cli.c runtime/cli.h \
	runtime/dispatch.c \
	runtime/device.c runtime/device.h \
	runtime/model.h runtime/model_load.c runtime/forward.c \
	runtime/kvcache.c runtime/kvcache.h \
	runtime/sched.c runtime/sched.h \
	runtime/runner.c runtime/runner.h \
	runtime/request.c runtime/request.h \
	runtime/cmd_batch.c \
	runtime/serve.h runtime/serve_http.c runtime/serve_metrics.c runtime/cmd_serve.c \
	runtime/rope.c runtime/rope.h \
	runtime/sample.c runtime/sample.h \
	runtime/world.c runtime/world.h \
	runtime/topo.c runtime/topo.h \
	runtime/comm.c runtime/comm_ucx.c runtime/comm.h \
	runtime/engine.c runtime/engine.h runtime/engine_top.c \
	runtime/data.c runtime/data.h \
	runtime/prompt.c runtime/prompt.h \
	runtime/cmd_convert.c \
	runtime/cmd_tokenize.c \
	runtime/cmd_info.c \
	runtime/cmd_synth.c \
	runtime/cmd_logits.c \
	runtime/cmd_generate.c \
	runtime/cmd_bench.c \
	runtime/cmd_plan.c \
	runtime/cmd_topo.c

bin_PROGRAMS += furrow
furrow_SOURCES = runtime/main.c
furrow_LDADD = $(FW_LIBS) $(FW_EXTERNAL_LIBS)

# furrow-cuda: the same commands with the CUDA backend (runtime/gpu) linked in;
# plain furrow hands `--device cuda` to it. Only GPU targets link CUDA and NCCL.
FW_GPU_SRCS = runtime/gpu/gpu_model.h runtime/gpu/gpu_model.c runtime/gpu/gpu_forward.c \
	runtime/gpu/gpu_nccl.c runtime/gpu/gpu_backend.c runtime/gpu/gpu_backend.h runtime/gpu/gpu_bench.c
EXTRA_DIST += $(FW_GPU_SRCS) runtime/gpu/main_cuda.c
if HAVE_CUDA
noinst_LIBRARIES += libfurrow_gpu.a
libfurrow_gpu_a_SOURCES = $(FW_GPU_SRCS)
libfurrow_gpu_a_CPPFLAGS = $(AM_CPPFLAGS) $(CUDA_CFLAGS) $(NCCL_CFLAGS)
bin_PROGRAMS += furrow-cuda
furrow_cuda_SOURCES = runtime/gpu/main_cuda.c
furrow_cuda_CPPFLAGS = $(AM_CPPFLAGS) $(CUDA_CFLAGS)
FW_GPU_LIBS = libfurrow_gpu.a libfurrow_cuda.a
furrow_cuda_LDADD = $(FW_GPU_LIBS) $(FW_LIBS) $(FW_EXTERNAL_LIBS) $(NCCL_LIBS) $(CUDA_LIBS) -lstdc++ -lm
endif
