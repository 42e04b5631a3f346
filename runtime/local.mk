# One library, in the folders of its layers (ARCHITECTURE.md): dist (MPI, UCX,
# hwloc), model (weights, KV cache, the backend interface), cpu (the CPU
# backend), engine (replica, scheduler, sampling), serve (HTTP), route (the
# front over several serve replicas), cli (commands).
noinst_LIBRARIES += libfurrow_runtime.a
libfurrow_runtime_a_SOURCES = \
	runtime/dist/world.c runtime/dist/world.h \
	runtime/dist/topo.c runtime/dist/topo.h \
	runtime/dist/comm.c runtime/dist/comm_ucx.c runtime/dist/comm.h \
	runtime/dist/watchdog.c runtime/dist/watchdog.h \
	runtime/dist/energy.c runtime/dist/energy.h \
	runtime/model/model.h runtime/model/model_load.c \
	runtime/model/kvcache.c runtime/model/kvcache.h \
	runtime/model/rope.c runtime/model/rope.h \
	runtime/model/backend.c runtime/model/backend.h \
	runtime/cpu/cpu.h runtime/cpu/forward.c runtime/cpu/cpu_backend.c \
	runtime/cpu/indexer.c runtime/cpu/indexer.h \
	runtime/engine/engine.c runtime/engine/engine.h runtime/engine/engine_top.c \
	runtime/engine/sched.c runtime/engine/sched.h \
	runtime/engine/block_map.c runtime/engine/block_map.h \
	runtime/engine/runner.c runtime/engine/runner.h \
	runtime/engine/sample.c runtime/engine/sample.h runtime/engine/spec_sample.c runtime/engine/spec_sample.h \
	runtime/engine/json_grammar.h runtime/engine/json_schema.c runtime/engine/json_pda.c runtime/engine/json_mask.c \
	runtime/engine/job.c runtime/engine/job.h runtime/engine/tool_guide.c runtime/engine/tool_guide.h \
	runtime/engine/prompt.c runtime/engine/prompt.h \
	runtime/http/guard.c runtime/http/guard.h \
	runtime/serve/serve.h runtime/serve/serve_http.c runtime/serve/serve_metrics.c \
	runtime/serve/serve_register.c runtime/serve/serve_register.h \
	runtime/route/route.h runtime/route/route_pool.c runtime/route/route_probe.c \
	runtime/route/route_proxy.c runtime/route/route_http.c runtime/route/route_scale.c \
	runtime/route/route_conns.c \
	runtime/cli/cli.c runtime/cli/cli.h \
	runtime/cli/dispatch.c \
	runtime/cli/cmd_convert.c \
	runtime/cli/cmd_tokenize.c \
	runtime/cli/cmd_info.c \
	runtime/cli/cmd_synth.c \
	runtime/cli/cmd_logits.c \
	runtime/cli/cmd_generate.c \
	runtime/cli/cmd_batch.c \
	runtime/cli/cmd_serve.c \
	runtime/cli/cmd_route.c \
	runtime/cli/cmd_bench.c runtime/cli/bench_json.c runtime/cli/bench_json.h \
	runtime/cli/bench_comm.c runtime/cli/bench_comm.h \
	runtime/cli/plan_predict.c runtime/cli/plan_predict.h \
	runtime/cli/bench_spec.c runtime/cli/bench_spec.h \
	runtime/cli/cmd_plan.c \
	runtime/cli/cmd_topo.c \
	runtime/cli/cmd_doctor.c runtime/cli/doctor.c runtime/cli/doctor.h \
	runtime/cli/doctor_topo.c runtime/cli/doctor_kernel.c runtime/cli/doctor_net.c \
	runtime/cli/doctor_gpu.c runtime/cli/doctor_disk.c

bin_PROGRAMS += furrow
furrow_SOURCES = runtime/cli/main.c
furrow_LDADD = $(FW_LIBS) $(FW_EXTERNAL_LIBS)

# furrow-cuda: the same commands with the CUDA backend (runtime/cuda) linked in;
# plain furrow hands `--device cuda` to it. Only GPU targets link CUDA and NCCL.
FW_GPU_SRCS = runtime/cuda/gpu_model.h runtime/cuda/gpu_model.c runtime/cuda/gpu_forward.c \
	runtime/cuda/gpu_nccl.c runtime/cuda/gpu_backend.c runtime/cuda/gpu_backend.h runtime/cuda/gpu_bench.c
EXTRA_DIST += $(FW_GPU_SRCS) runtime/cli/main_cuda.c
if HAVE_CUDA
noinst_LIBRARIES += libfurrow_gpu.a
libfurrow_gpu_a_SOURCES = $(FW_GPU_SRCS)
libfurrow_gpu_a_CPPFLAGS = $(AM_CPPFLAGS) $(CUDA_CFLAGS) $(NCCL_CFLAGS)
bin_PROGRAMS += furrow-cuda
furrow_cuda_SOURCES = runtime/cli/main_cuda.c
furrow_cuda_CPPFLAGS = $(AM_CPPFLAGS) $(CUDA_CFLAGS)
FW_GPU_LIBS = libfurrow_gpu.a libfurrow_cuda.a
furrow_cuda_LDADD = $(FW_GPU_LIBS) $(FW_LIBS) $(FW_EXTERNAL_LIBS) $(NCCL_LIBS) $(CUDA_LIBS) -lstdc++ -lm
endif
