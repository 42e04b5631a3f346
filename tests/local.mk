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
EXTRA_DIST += tests/run-test.sh tests/check.h
FWTEST_LIBS = $(FW_LIBS) $(FW_EXTERNAL_LIBS) -lm

# Golden parity (test_golden.sh drives golden_check over converted checkpoints).
check_PROGRAMS += tests/golden_check
tests_golden_check_LDADD = $(FWTEST_LIBS)
TESTS += tests/test_golden.sh
EXTRA_DIST += tests/test_golden.sh
check_PROGRAMS += tests/test_safetensors tests/test_config
TESTS += tests/test_safetensors tests/test_config
tests_test_safetensors_LDADD = $(FWTEST_LIBS)
tests_test_config_LDADD = $(FWTEST_LIBS)

check_PROGRAMS += tests/test_kernels
TESTS += tests/test_kernels
tests_test_kernels_LDADD = $(FWTEST_LIBS)
