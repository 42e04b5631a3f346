#!/usr/bin/env python3
"""Writes a random model with DeepSeek-V3's architecture in Hugging Face layout:
config.json, BF16 safetensors shards with model.safetensors.index.json, and the
DeepSeek-V3 tokenizer furrow ships. It is the common input of the llama.cpp side by
side (jobs/bench_llamacpp.sh): `furrow convert` and llama.cpp's convert_hf_to_gguf.py
read the same files. Needs numpy alone (the safetensors are written by hand).

usage: jobs/make_hf_model.py --out DIR [--hidden 1024] [--layers 8] [--experts 16] [--seed 0]

The default is about 0.5B parameters: hidden 1024, 8 layers (1 dense + 7 MoE of 16
routed experts, top-4 of 4 groups with top-2 groups, 1 shared), 16 heads with
DeepSeek-V3's head sizes (MLA: q_lora 384, kv_lora 512, nope 128, rope 64, v 128),
the real vocabulary (129280)."""
import argparse
import json
import os
import shutil
import struct

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config(a):
    return {
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "vocab_size": 129280,
        "hidden_size": a.hidden,
        "intermediate_size": a.hidden * 11 // 4 // 128 * 128,
        "moe_intermediate_size": 512,
        "num_hidden_layers": a.layers,
        "first_k_dense_replace": 1,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "q_lora_rank": 384,
        "kv_lora_rank": 512,
        "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64,
        "v_head_dim": 128,
        "n_routed_experts": a.experts,
        "n_shared_experts": 1,
        "num_experts_per_tok": 4,
        "n_group": 4,
        "topk_group": 2,
        "norm_topk_prob": True,
        "routed_scaling_factor": 2.5,
        "scoring_func": "sigmoid",
        "topk_method": "noaux_tc",
        "hidden_act": "silu",
        "max_position_embeddings": 163840,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
                         "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
        "tie_word_embeddings": False,
        "attention_bias": False,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "torch_dtype": "bfloat16",
    }


def tensors(c):
    """(name, shape, kind) in checkpoint order; kind: w (random), n (norm: ones), b (bias: zeros, f32)."""
    H, L = c["hidden_size"], c["num_hidden_layers"]
    nh, nope, rope, v = c["num_attention_heads"], c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    out = [("model.embed_tokens.weight", (c["vocab_size"], H), "w")]
    for i in range(L):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (H,), "n"),
            (p + "self_attn.q_a_proj.weight", (c["q_lora_rank"], H), "w"),
            (p + "self_attn.q_a_layernorm.weight", (c["q_lora_rank"],), "n"),
            (p + "self_attn.q_b_proj.weight", (nh * (nope + rope), c["q_lora_rank"]), "w"),
            (p + "self_attn.kv_a_proj_with_mqa.weight", (c["kv_lora_rank"] + rope, H), "w"),
            (p + "self_attn.kv_a_layernorm.weight", (c["kv_lora_rank"],), "n"),
            (p + "self_attn.kv_b_proj.weight", (nh * (nope + v), c["kv_lora_rank"]), "w"),
            (p + "self_attn.o_proj.weight", (H, nh * v), "w"),
            (p + "post_attention_layernorm.weight", (H,), "n"),
        ]
        if i < c["first_k_dense_replace"]:
            I = c["intermediate_size"]
            out += [(p + f"mlp.{n}.weight", s, "w") for n, s in
                    (("gate_proj", (I, H)), ("up_proj", (I, H)), ("down_proj", (H, I)))]
            continue
        I, E = c["moe_intermediate_size"], c["n_routed_experts"]
        out += [(p + "mlp.gate.weight", (E, H), "w"), (p + "mlp.gate.e_score_correction_bias", (E,), "b")]
        for e in [f"experts.{j}" for j in range(E)] + ["shared_experts"]:
            Ie = I * c["n_shared_experts"] if e == "shared_experts" else I
            out += [(p + f"mlp.{e}.{n}.weight", s, "w") for n, s in
                    (("gate_proj", (Ie, H)), ("up_proj", (Ie, H)), ("down_proj", (H, Ie)))]
    out += [("model.norm.weight", (H,), "n"), ("lm_head.weight", (c["vocab_size"], H), "w")]
    return out


def bf16(a):
    """float32 -> bf16 bits, round to nearest even."""
    u = a.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def write_shard(path, items):
    """items: (name, dtype, shape, bytes) -> one safetensors file (8-byte header size, JSON, data)."""
    header, off = {}, 0
    for name, dt, shape, data in items:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for *_, data in items:
            f.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--experts", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    c = config(a)
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    ts = tensors(c)
    shard_bytes = 1 << 30
    shards, cur, size, nparam = [], [], 0, 0
    for name, shape, kind in ts:
        n = int(np.prod(shape))
        nparam += n
        if kind == "b":
            item = (name, "F32", shape, np.zeros(n, np.float32).tobytes())
        elif kind == "n":
            item = (name, "BF16", shape, bf16(np.ones(n, np.float32)).tobytes())
        else:  # the std of a layer whose outputs keep the inputs' scale
            std = 1.0 if name.endswith("embed_tokens.weight") else 1.0 / np.sqrt(shape[1])
            item = (name, "BF16", shape, bf16(rng.standard_normal(n, dtype=np.float32) * std).tobytes())
        if cur and size + len(item[3]) > shard_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append(item)
        size += len(item[3])
    shards.append(cur)
    weight_map = {}
    for k, items in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        write_shard(os.path.join(a.out, fname), items)
        weight_map.update({it[0]: fname for it in items})
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(len(it[3]) for s in shards for it in s)}, "weight_map": weight_map},
                  f, indent=1)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(c, f, indent=1)
    tok = os.path.join(REPO, "io", "text", "tokenizers", "deepseek-v3")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok, name), a.out)
    print(f"{a.out}: {nparam / 1e9:.3f}B parameters in {len(shards)} shards")


if __name__ == "__main__":
    main()
