/* The values of moonshotai/Kimi-K2-Thinking's config.json on the Hugging Face hub
 * (huggingface.co/moonshotai/Kimi-K2-Thinking/blob/main/config.json). Kimi-K2-
 * Instruct (July 2025) differs only in max_position_embeddings 131072 with YaRN
 * factor 32, rms_norm_eps 1e-6 and eos_token_id 163585; its weights are FP8. */
#include "io/preset_kimi.h"

#include <string.h>

void fw_preset_kimi_k2(fw_config *c) {
    memset(c, 0, sizeof *c);
    c->vocab_size = 163840, c->hidden_size = 7168, c->intermediate_size = 18432, c->moe_intermediate_size = 2048;
    c->num_hidden_layers = 61, c->first_k_dense_replace = 1, c->moe_layer_freq = 1, c->num_nextn_predict_layers = 0;
    c->num_attention_heads = c->num_key_value_heads = 64;
    c->n_routed_experts = 384, c->num_experts_per_tok = 8, c->n_shared_experts = 1;
    c->n_group = 1, c->topk_group = 1;   /* no group-limited routing */
    c->routed_scaling_factor = 2.827, c->norm_topk_prob = true;
    c->q_lora_rank = 1536, c->kv_lora_rank = 512;
    c->qk_nope_head_dim = 128, c->qk_rope_head_dim = 64, c->v_head_dim = 128;
    c->rms_norm_eps = 1e-5;
    c->rope_theta = 50000.0;
    c->max_position_embeddings = 262144;
    c->yarn = (fw_yarn){.enabled = true, .factor = 64, .original_max_position = 4096, .beta_fast = 1,
                        .beta_slow = 1, .mscale = 1, .mscale_all_dim = 1};
    c->bos_token_id = 163584, c->eos_token_id = 163586;
    c->fp8_block[0] = c->fp8_block[1] = 128;   /* used only if asked for FP8 */
}
