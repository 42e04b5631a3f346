noinst_LIBRARIES += libfurrow_io.a
libfurrow_io_a_SOURCES = \
	io/base/err.c io/base/err.h \
	io/base/clock.c io/base/clock.h \
	io/base/fileutil.c io/base/fileutil.h \
	io/base/jsonutil.c io/base/jsonutil.h \
	io/dtype.c io/dtype.h \
	io/config.c io/config.h io/quant_ct.c io/quant_ct.h io/quant_spec.c io/quant_spec.h \
	io/quantize.c io/quantize.h \
	io/safetensors.c io/safetensors.h \
	io/h5out.c io/h5out.h \
	io/ckpt_h5.c io/ckpt_h5.h io/ckpt_sums.c io/ckpt_sums.h \
	io/h5_fail.c io/ckpt_stage.c io/ckpt_stage.h io/ckpt_map.c io/ckpt_map.h \
	io/checkpoint.c io/checkpoint_write.c io/checkpoint.h io/ckpt_open.c \
	io/model_tensors.c io/model_tensors.h \
	io/convert.c io/convert.h io/convert_quant.c io/convert_quant.h \
	io/synth.c io/synth.h \
	io/preset_kimi.c io/preset_kimi.h \
	io/text/tokenizer.c io/text/tokenizer.h io/text/tok_internal.h \
	io/text/tok_util.c io/text/tok_bpe.c io/text/tok_pretok.c \
	io/text/chat.c io/text/chat.h io/text/chat_reply.c io/text/chat_reply.h \
	io/text/data.c io/text/data.h
EXTRA_DIST += io/FORMAT.md io/text/TOKENIZER.md

# The DeepSeek-V3 tokenizer, shipped so that synthetic models (the quick start)
# carry the real tokenizer too.
tokenizersdir = $(pkgdatadir)/tokenizers/deepseek-v3
dist_tokenizers_DATA = io/text/tokenizers/deepseek-v3/tokenizer.json io/text/tokenizers/deepseek-v3/tokenizer_config.json
