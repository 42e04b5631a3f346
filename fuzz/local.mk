# Fuzzing (fuzz/README.md). With ./configure --enable-fuzz (clang), one libFuzzer
# program per parser; fuzz/run.sh runs them. Always: the same targets built with
# a plain main (fuzz/replay.c) that `make check` runs over the committed corpus
# and the regression inputs (tests/test_fuzz_regress.sh).
FUZZ_COMMON = fuzz/fuzz.h

if FUZZ
noinst_PROGRAMS = fuzz/fuzz_safetensors fuzz/fuzz_config fuzz/fuzz_ckpt fuzz/fuzz_tokenizer fuzz/fuzz_request
fuzz_fuzz_safetensors_SOURCES = fuzz/fuzz_safetensors.c $(FUZZ_COMMON)
fuzz_fuzz_config_SOURCES = fuzz/fuzz_config.c $(FUZZ_COMMON)
fuzz_fuzz_ckpt_SOURCES = fuzz/fuzz_ckpt.c $(FUZZ_COMMON)
fuzz_fuzz_tokenizer_SOURCES = fuzz/fuzz_tokenizer.c $(FUZZ_COMMON)
fuzz_fuzz_request_SOURCES = fuzz/fuzz_request.c $(FUZZ_COMMON)
fuzz_fuzz_safetensors_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
fuzz_fuzz_config_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
fuzz_fuzz_ckpt_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
fuzz_fuzz_tokenizer_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
fuzz_fuzz_request_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
fuzz_fuzz_safetensors_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_FLAGS)
fuzz_fuzz_config_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_FLAGS)
fuzz_fuzz_ckpt_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_FLAGS)
fuzz_fuzz_tokenizer_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_FLAGS)
fuzz_fuzz_request_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_FLAGS)
fuzz_fuzz_safetensors_LDADD = $(FWTEST_LIBS)
fuzz_fuzz_config_LDADD = $(FWTEST_LIBS)
fuzz_fuzz_ckpt_LDADD = $(FWTEST_LIBS)
fuzz_fuzz_tokenizer_LDADD = $(FWTEST_LIBS)
fuzz_fuzz_request_LDADD = $(FWTEST_LIBS)
endif

check_PROGRAMS += fuzz/replay_safetensors fuzz/replay_config fuzz/replay_ckpt fuzz/replay_tokenizer fuzz/replay_request
fuzz_replay_safetensors_SOURCES = fuzz/fuzz_safetensors.c fuzz/replay.c $(FUZZ_COMMON)
fuzz_replay_config_SOURCES = fuzz/fuzz_config.c fuzz/replay.c $(FUZZ_COMMON)
fuzz_replay_ckpt_SOURCES = fuzz/fuzz_ckpt.c fuzz/replay.c $(FUZZ_COMMON)
fuzz_replay_tokenizer_SOURCES = fuzz/fuzz_tokenizer.c fuzz/replay.c $(FUZZ_COMMON)
fuzz_replay_request_SOURCES = fuzz/fuzz_request.c fuzz/replay.c $(FUZZ_COMMON)
fuzz_replay_safetensors_LDADD = $(FWTEST_LIBS)
fuzz_replay_config_LDADD = $(FWTEST_LIBS)
fuzz_replay_ckpt_LDADD = $(FWTEST_LIBS)
fuzz_replay_tokenizer_LDADD = $(FWTEST_LIBS)
fuzz_replay_request_LDADD = $(FWTEST_LIBS)
fuzz_replay_safetensors_CPPFLAGS = $(AM_CPPFLAGS) -DFW_FUZZ_REPLAY
fuzz_replay_config_CPPFLAGS = $(AM_CPPFLAGS) -DFW_FUZZ_REPLAY
fuzz_replay_ckpt_CPPFLAGS = $(AM_CPPFLAGS) -DFW_FUZZ_REPLAY
fuzz_replay_tokenizer_CPPFLAGS = $(AM_CPPFLAGS) -DFW_FUZZ_REPLAY
fuzz_replay_request_CPPFLAGS = $(AM_CPPFLAGS) -DFW_FUZZ_REPLAY
TESTS += tests/test_fuzz_regress.sh
EXTRA_DIST += tests/test_fuzz_regress.sh fuzz/run.sh fuzz/README.md fuzz/corpus fuzz/regress
