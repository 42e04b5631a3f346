/* config.json parsing (io/config.c) on arbitrary text. An accepted config must
 * hold values the rest of furrow can size and compute from: counts in their
 * documented bounds, token ids inside the vocabulary, a finite positive
 * softmax scale. */
#include <math.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "io/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);   /* fw_config_parse takes NUL-terminated text */
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    fw_config c;
    fw_err e;
    if (fw_config_parse(&c, text, "fuzz/config.json", &e) != FW_OK) {
        FUZZ_CHECK(e.msg[0] != '\0', "a refusal without a message");
        FUZZ_NOTE("refused: %s", e.msg);
        free(text);
        return 0;
    }
    FUZZ_CHECK(c.num_hidden_layers >= 1 && c.num_hidden_layers <= 4096, "num_hidden_layers %d", c.num_hidden_layers);
    FUZZ_CHECK(c.num_attention_heads >= 1 && c.num_attention_heads <= 4096, "heads %d", c.num_attention_heads);
    FUZZ_CHECK(c.n_routed_experts >= 0 && c.n_routed_experts <= 65536, "experts %d", c.n_routed_experts);
    FUZZ_CHECK(c.n_routed_experts == 0 || (c.num_experts_per_tok >= 1 && c.num_experts_per_tok <= c.n_routed_experts &&
                                           c.n_routed_experts % c.n_group == 0),
               "routing k %d of %d experts in %d groups", c.num_experts_per_tok, c.n_routed_experts, c.n_group);
    FUZZ_CHECK(c.vocab_size >= 1 && c.hidden_size >= 1, "vocab %lld hidden %lld", (long long)c.vocab_size,
               (long long)c.hidden_size);
    FUZZ_CHECK(c.bos_token_id < c.vocab_size && c.eos_token_id < c.vocab_size, "bos/eos %lld/%lld of %lld",
               (long long)c.bos_token_id, (long long)c.eos_token_id, (long long)c.vocab_size);
    FUZZ_CHECK(c.qk_rope_head_dim % 2 == 0 && fw_config_qk_head_dim(&c) > 0, "head dims %d + %d",
               c.qk_nope_head_dim, c.qk_rope_head_dim);
    double scale = fw_config_softmax_scale(&c);
    FUZZ_CHECK(isfinite(scale) && scale > 0, "softmax scale %g", scale);
    FUZZ_CHECK(isfinite(c.rope_theta) && c.rope_theta > 0 && c.rms_norm_eps > 0, "rope_theta %g eps %g",
               c.rope_theta, c.rms_norm_eps);
    FUZZ_CHECK(c.json && !strcmp(c.json, text), "the kept text differs from the parsed one");
    int moe = 0;
    for (int l = 0; l < c.num_hidden_layers; l++) moe += fw_config_layer_is_moe(&c, l);
    FUZZ_CHECK(c.n_routed_experts > 0 || moe == 0, "%d MoE layers without experts", moe);
    FUZZ_NOTE("accepted: %d layers, %d experts", c.num_hidden_layers, c.n_routed_experts);
    fw_config_free(&c);
    free(text);
    return 0;
}
