# Every test runs through tests/run-test.sh (the LOG_COMPILER): it runs tests named
# test_mpi_* under mpirun and exports where ../shared is. Exit 77 = skipped.
LOG_COMPILER = $(SHELL) $(top_srcdir)/tests/run-test.sh
SH_LOG_COMPILER = $(SHELL) $(top_srcdir)/tests/run-test.sh
TEST_EXTENSIONS = .sh
AM_TESTS_ENVIRONMENT = \
	FURROW_BIN='$(abs_top_builddir)/furrow'; export FURROW_BIN; \
	FURROW_SRCDIR='$(abs_top_srcdir)'; export FURROW_SRCDIR; \
	FURROW_BUILDDIR='$(abs_top_builddir)'; export FURROW_BUILDDIR; \
	MPIRUN='$(MPIRUN)'; export MPIRUN;
EXTRA_DIST += tests/run-test.sh tests/check.h tests/chat_formats.jsonl
FWTEST_LIBS = $(FW_LIBS) $(FW_EXTERNAL_LIBS) -lm

# Golden parity (test_golden.sh drives golden_check over converted checkpoints).
check_PROGRAMS += tests/golden_check
tests_golden_check_SOURCES = tests/golden_check.c tests/golden_ref.c tests/golden_ref.h
tests_golden_check_LDADD = $(FWTEST_LIBS)
TESTS += tests/test_golden.sh
EXTRA_DIST += tests/test_golden.sh
# The MTP layer against a float64 reference (test_mtp.sh drives mtp_check).
check_PROGRAMS += tests/mtp_check tests/mtp_craft
tests_mtp_check_LDADD = $(FWTEST_LIBS)
tests_mtp_craft_LDADD = $(FWTEST_LIBS)
TESTS += tests/test_mtp.sh tests/test_mpi_speculative.sh
EXTRA_DIST += tests/test_mtp.sh tests/test_mpi_speculative.sh tests/hf_add_mtp.py
# DeepSeek-V3.2 parity on tests/golden_v32/data (test_golden_v32.sh drives golden_v32_check).
check_PROGRAMS += tests/golden_v32_check
tests_golden_v32_check_SOURCES = tests/golden_v32_check.c tests/golden_ref.c tests/golden_ref.h
tests_golden_v32_check_LDADD = $(FWTEST_LIBS)
TESTS += tests/test_golden_v32.sh
EXTRA_DIST += tests/test_golden_v32.sh tests/golden_v32/data tests/golden_v32/README.md tests/golden_v32/make_golden.py \
	tests/golden_v32/DEVICE_RUN.txt tests/golden_v32/mock
# convert --quantize on the golden checkpoints (test_convert_quant.sh drives quant_check).
check_PROGRAMS += tests/quant_check
tests_quant_check_SOURCES = tests/quant_check.c tests/golden_ref.c tests/golden_ref.h
tests_quant_check_LDADD = $(FWTEST_LIBS)
TESTS += tests/test_convert_quant.sh
EXTRA_DIST += tests/test_convert_quant.sh
check_PROGRAMS += tests/test_safetensors tests/test_config
TESTS += tests/test_safetensors tests/test_config
tests_test_safetensors_LDADD = $(FWTEST_LIBS)
tests_test_config_LDADD = $(FWTEST_LIBS)

check_PROGRAMS += tests/test_kernels
TESTS += tests/test_kernels
tests_test_kernels_LDADD = $(FWTEST_LIBS)
# The convert-time quantizer against compressed-tensors' formula.
check_PROGRAMS += tests/test_quantize
TESTS += tests/test_quantize
tests_test_quantize_LDADD = $(FWTEST_LIBS)

# Checkpoints: writer/reader (C), convert/info/synth with the real binary (shell).
check_PROGRAMS += tests/test_checkpoint
TESTS += tests/test_checkpoint tests/test_convert.sh tests/test_synth.sh tests/test_disk_full.sh
# Bad compressed-tensors INT4 inputs, each named.
TESTS += tests/test_convert_w4_errors.sh
EXTRA_DIST += tests/test_convert_w4_errors.sh
tests_test_checkpoint_LDADD = $(FWTEST_LIBS)
EXTRA_DIST += tests/test_convert.sh tests/test_synth.sh tests/test_disk_full.sh
# Integrity: damaged and tampered checkpoints (tests/ckpt_tamper damages them).
check_PROGRAMS += tests/ckpt_tamper
tests_ckpt_tamper_LDADD = $(FWTEST_LIBS)
TESTS += tests/test_integrity.sh tests/test_limits.sh
EXTRA_DIST += tests/test_integrity.sh tests/st_poison.py tests/st_edit.py tests/test_limits.sh

# Partition: the layout planner, the slicer, and `furrow plan`.
check_PROGRAMS += tests/test_plan tests/test_shard
TESTS += tests/test_plan tests/test_shard tests/test_plan_cli.sh
tests_test_plan_LDADD = $(FWTEST_LIBS)
tests_test_shard_LDADD = $(FWTEST_LIBS)
EXTRA_DIST += tests/test_plan_cli.sh

# furrow doctor: every check on this machine, the JSON report, verdicts that follow their inputs.
TESTS += tests/test_doctor.sh
EXTRA_DIST += tests/test_doctor.sh

# Tokenizer and chat template (golden tokenizer.jsonl / chat-template.jsonl), `furrow tokenize`.
check_PROGRAMS += tests/test_tokenizer tests/test_chat
TESTS += tests/test_tokenizer tests/test_chat tests/test_tokenize_cli.sh
EXTRA_DIST += tests/test_tokenize_cli.sh
tests_test_tokenizer_LDADD = $(FWTEST_LIBS)
tests_test_chat_LDADD = $(FWTEST_LIBS)

# Many ranks under mpirun (tests/mpi.sh): layouts against one rank, failures.
TESTS += tests/test_mpi_layouts.sh tests/test_mpi_failures.sh tests/test_mpi_launch.sh tests/test_mpi_watchdog.sh
EXTRA_DIST += tests/mpi.sh tests/until.sh tests/test_mpi_layouts.sh tests/test_mpi_failures.sh tests/test_mpi_launch.sh \
	tests/test_mpi_watchdog.sh
# Kimi-K2's geometry (384 experts, 64 heads, one expert group) on several layouts.
TESTS += tests/test_mpi_kimi_geometry.sh
EXTRA_DIST += tests/test_mpi_kimi_geometry.sh
TESTS += tests/test_mpi_v32_layouts.sh
EXTRA_DIST += tests/test_mpi_v32_layouts.sh
# Mapped and read weights: the same logits, fallbacks by layout, truncated files.
TESTS += tests/test_mpi_load.sh
EXTRA_DIST += tests/test_mpi_load.sh
# NUMA: each rank's memory on its cores' node (hwloc's synthetic two-node topology).
TESTS += tests/test_topo_numa.sh
EXTRA_DIST += tests/test_topo_numa.sh

# Test scratch space (tests/run-test.sh puts each test's files there).
clean-local:
	-rm -rf tests/tmp
TESTS += tests/test_generate_text.sh
EXTRA_DIST += tests/test_generate_text.sh

# The CUDA ops against the CPU reference (skipped, exit 77, without a GPU). Only
# this program links CUDA; --as-needed drops the driver stub (-lcuda) that nothing
# calls, so it loads on a machine without a driver and skips.
if HAVE_CUDA
check_PROGRAMS += tests/test_cuda_ops
TESTS += tests/test_cuda_ops
tests_test_cuda_ops_SOURCES = tests/test_cuda_ops.c tests/test_cuda_model_ops.c tests/test_cuda_indexer_ops.c \
	tests/cuda_test.h
tests_test_cuda_ops_CPPFLAGS = $(AM_CPPFLAGS) $(CUDA_CFLAGS)
tests_test_cuda_ops_LDFLAGS = -Wl,--as-needed
tests_test_cuda_ops_LDADD = libfurrow_cuda.a libfurrow_runtime.a libfurrow_kernels.a $(CUDA_LIBS) -lstdc++ -lm
# The GPU forward against the CPU forward and shared/golden (skipped without a GPU).
check_PROGRAMS += tests/gpu_golden_check
tests_gpu_golden_check_SOURCES = tests/gpu_golden_check.c tests/golden_ref.c tests/golden_ref.h
tests_gpu_golden_check_CPPFLAGS = $(AM_CPPFLAGS) $(CUDA_CFLAGS)
tests_gpu_golden_check_LDFLAGS = -Wl,--as-needed
tests_gpu_golden_check_LDADD = $(FW_GPU_LIBS) $(FWTEST_LIBS) $(NCCL_LIBS) $(CUDA_LIBS) -lstdc++
TESTS += tests/test_gpu_golden.sh tests/test_gpu_layouts.sh tests/test_gpu_serve.sh tests/test_gpu_tp_sim.sh
# Speculative decoding on the GPU: the MTP layer and verification steps against the CPU (gpu_mtp_check), greedy
# tokens with and without --speculative, bench --speculative (skipped without a GPU).
check_PROGRAMS += tests/gpu_mtp_check
tests_gpu_mtp_check_CPPFLAGS = $(AM_CPPFLAGS) $(CUDA_CFLAGS)
tests_gpu_mtp_check_LDFLAGS = -Wl,--as-needed
tests_gpu_mtp_check_LDADD = $(FW_GPU_LIBS) $(FWTEST_LIBS) $(NCCL_LIBS) $(CUDA_LIBS) -lstdc++
TESTS += tests/test_gpu_mtp.sh
endif
EXTRA_DIST += tests/test_gpu_golden.sh tests/test_gpu_layouts.sh tests/test_gpu_serve.sh tests/test_gpu_tp_sim.sh \
	tests/test_gpu_mtp.sh
# Row-by-row comparison of two logits files (the GPU layout test), and with --gap
# whether two tokens nearly tie at a file's last position (test_gpu_mtp.sh).
check_PROGRAMS += tests/logits_compare
tests_logits_compare_LDADD = $(FWTEST_LIBS)

# Sampling against a plain reference (penalties, temperature, top-k/p, min-p, seeds, logprobs).
check_PROGRAMS += tests/test_sample
TESTS += tests/test_sample
tests_test_sample_LDADD = $(FWTEST_LIBS)

# JSON output's automaton: bytes, schema errors, masks against brute force over the real vocabulary.
check_PROGRAMS += tests/test_json_grammar
TESTS += tests/test_json_grammar
tests_test_json_grammar_LDADD = $(FWTEST_LIBS)

# The energy meter's RAPL reader over fake powercap folders (wraparound, naming, unreadable zones).
check_PROGRAMS += tests/test_energy
TESTS += tests/test_energy
tests_test_energy_LDADD = $(FWTEST_LIBS)

# Continuous batching with a stand-in model: block tables, budgets, preemption.
check_PROGRAMS += tests/test_sched
TESTS += tests/test_sched
tests_test_sched_LDADD = $(FWTEST_LIBS)

# Batch jobs: generate --input/--output, preemption, tp/pp, kill -9 and resume.
TESTS += tests/test_batch.sh
EXTRA_DIST += tests/test_batch.sh tests/batch_compare.py

# The prefix cache: the same tokens on and off, eviction, preemption, tp/pp.
TESTS += tests/test_prefix_cache.sh
EXTRA_DIST += tests/test_prefix_cache.sh

# JSON output (response_format) through serve (tp 2) and generate --input, validated with jsonschema.
TESTS += tests/test_json_output.sh
EXTRA_DIST += tests/test_json_output.sh tests/json_client.py
TESTS += tests/test_tool_calls.sh
EXTRA_DIST += tests/test_tool_calls.sh tests/tool_client.py

# furrow serve under mpirun (tp 2) with curl and a standard-library Python client.
TESTS += tests/test_serve.sh
EXTRA_DIST += tests/test_serve.sh tests/serve_client.py

# furrow serve against hostile clients: slots held, slow headers, malformed
# request lines, absurd Content-Length; the admin port; the per-address limit.
TESTS += tests/test_serve_hostile.sh
EXTRA_DIST += tests/test_serve_hostile.sh tests/serve_hostile.py tests/raw_http.py

# furrow route over three serve replicas: spread, streams, kill -9 under load,
# late joins, draining, registry and --register; its autoscaler (queue depth,
# time to first token); slow and hostile clients, upstream connection reuse.
TESTS += tests/test_route.sh tests/test_route_autoscale.sh tests/test_route_autoscale_latency.sh tests/test_route_hostile.sh
EXTRA_DIST += tests/test_route.sh tests/route_client.py tests/test_route_autoscale.sh tests/test_route_autoscale_latency.sh \
	tests/test_route_hostile.sh tests/route_hostile.py tests/route_common.sh

# Decode groups need matmuls whose rows do not depend on each other (runtime/engine/runner.h).
check_PROGRAMS += tests/test_invariance
TESTS += tests/test_invariance
tests_test_invariance_LDADD = $(FWTEST_LIBS)

# The Slurm job scripts on a real local cluster (tests/slurm.sh starts and stops
# it; skipped without root or slurm-wlm). One cluster at a time: the scaling
# test waits for this one.
TESTS += tests/test_slurm_generate.sh tests/test_slurm_scaling.sh tests/test_slurm_requeue.sh \
	tests/test_slurm_autoscale.sh
EXTRA_DIST += tests/slurm.sh tests/test_slurm_generate.sh tests/test_slurm_scaling.sh tests/test_slurm_requeue.sh \
	tests/test_slurm_autoscale.sh
tests/test_slurm_scaling.log: tests/test_slurm_generate.log
tests/test_slurm_requeue.log: tests/test_slurm_scaling.log
tests/test_slurm_autoscale.log: tests/test_slurm_requeue.log

# The layers of the code from the object files' symbols (tests/layers.txt).
TESTS += tests/test_layers.sh
EXTRA_DIST += tests/test_layers.sh tests/layers.py tests/layers.txt

# The performance model: fit, collective coefficients, its files, predicted steps added up by hand.
check_PROGRAMS += tests/test_perf
TESTS += tests/test_perf
tests_test_perf_LDADD = $(FWTEST_LIBS)

# The performance model predicts measured CPU runs on emulated nodes (netns, veth, tbf) within 20%.
TESTS += tests/test_perf_netns.sh
EXTRA_DIST += tests/test_perf_netns.sh

# furrow bench --comm and --json on one node, read by furrow plan --predict; refusals.
TESTS += tests/test_mpi_bench_comm.sh
EXTRA_DIST += tests/test_mpi_bench_comm.sh
