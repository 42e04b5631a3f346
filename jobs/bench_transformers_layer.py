#!/usr/bin/env python3
"""The peer for `furrow bench --device cuda`: one DeepSeek-V3 MoE decoder layer of
Hugging Face transformers (DeepseekV3DecoderLayer, bf16, the published geometry,
random weights: values do not change its time) on the same GPU. Times a decode
step at each batch size over a cache of --context positions, and a prefill.

usage: python3 jobs/bench_transformers_layer.py [--batches 1,8,64] [--context 1024]
       [--prefill 4096] [--iters 5]
Needs torch with CUDA and transformers (the GPU machine's image has both)."""
import argparse
import time

import torch
from transformers import DeepseekV3Config
from transformers.cache_utils import DynamicCache
from transformers.models.deepseek_v3 import modeling_deepseek_v3 as m


def config():
    return DeepseekV3Config(
        vocab_size=129280, hidden_size=7168, intermediate_size=18432, moe_intermediate_size=2048,
        num_hidden_layers=4, first_k_dense_replace=0, num_attention_heads=128, num_key_value_heads=128,
        n_routed_experts=256, num_experts_per_tok=8, n_group=8, topk_group=4, n_shared_experts=1,
        q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
        max_position_embeddings=163840, rope_scaling={"type": "yarn", "factor": 40,
        "original_max_position_embeddings": 4096, "beta_fast": 32, "beta_slow": 1, "mscale": 1,
        "mscale_all_dim": 1}, attn_implementation="sdpa", torch_dtype=torch.bfloat16)


def timed(fn, iters):
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--prefill", type=int, default=4096)
    ap.add_argument("--iters", type=int, default=5)
    a = ap.parse_args()
    cfg = config()
    dev = torch.device("cuda")
    torch.manual_seed(0)
    with torch.device(dev):
        layer = m.DeepseekV3DecoderLayer(cfg, layer_idx=0).to(torch.bfloat16).eval()
        rope = m.DeepseekV3RotaryEmbedding(cfg)
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.02)
    D = cfg.hidden_size

    def run(x, pos, cache):
        pe = rope(x, pos)
        return layer(x, attention_mask=None, position_ids=pos, past_key_values=cache, use_cache=cache is not None,
                     cache_position=pos[0], position_embeddings=pe)

    print(f"transformers DeepseekV3DecoderLayer (MoE), bf16, {torch.cuda.get_device_name()}")
    with torch.no_grad():
        if a.prefill:
            x = torch.randn(1, a.prefill, D, device=dev, dtype=torch.bfloat16)
            pos = torch.arange(a.prefill, device=dev)[None]
            t = timed(lambda: run(x, pos, None), max(1, a.iters // 2))
            print(f"prefill {a.prefill} tokens: {t * 1e3:.1f} ms per layer")
        for b in [int(v) for v in a.batches.split(",")]:
            cache = DynamicCache(config=cfg)
            x = torch.randn(b, a.context, D, device=dev, dtype=torch.bfloat16)
            run(x, torch.arange(a.context, device=dev)[None].expand(b, -1), cache)
            x1 = torch.randn(b, 1, D, device=dev, dtype=torch.bfloat16)
            pos = torch.full((b, 1), a.context, device=dev)

            def step():
                run(x1, pos, cache)
                cache.crop(a.context)  # back to the context, so every step sees the same cache

            t = timed(step, a.iters)
            print(f"decode batch {b}, context {a.context}: {t * 1e3:.2f} ms per layer")
            del cache
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
