noinst_LIBRARIES += libfurrow_io.a
libfurrow_io_a_SOURCES = \
	io/err.c io/err.h \
	io/fileutil.c io/fileutil.h \
	io/jsonutil.c io/jsonutil.h \
	io/dtype.c io/config.c io/safetensors.c \
	io/h5out.c io/h5out.h \
	io/tokenizer.c io/tokenizer.h io/tok_internal.h io/tok_util.c io/tok_bpe.c io/tok_pretok.c io/chat.c io/chat.h \
	io/ckpt_h5.c io/ckpt_h5.h io/checkpoint.c io/checkpoint_write.c io/model_tensors.c io/model_tensors.h \
	io/convert.c io/convert.h io/synth.c io/synth.h \
	io/dtype.h io/config.h io/safetensors.h io/checkpoint.h
EXTRA_DIST += io/FORMAT.md io/TOKENIZER.md

# The DeepSeek-V3 tokenizer, shipped so that synthetic models (the quick start)
# carry the real tokenizer too.
tokenizersdir = $(pkgdatadir)/tokenizers/deepseek-v3
dist_tokenizers_DATA = io/tokenizers/deepseek-v3/tokenizer.json io/tokenizers/deepseek-v3/tokenizer_config.json
