#!/usr/bin/env python3
"""Build furrow's DeepSeek-V3.2 golden data: tiny random checkpoints in the
Hugging Face layout of deepseek-ai/DeepSeek-V3.2-Exp and float64 reference
logits / indexer selections.  See README.md beside this file.

    python3 tests/golden_v32/make_golden.py OUTDIR [--skip-transformers]

Writes OUTDIR/tiny-v32-bf16/ and OUTDIR/tiny-v32-fp8/, each with config.json,
3 safetensors shards + index, reference.h5 (transformers' full forward,
transformers' indexer semantics) and reference-dsfp8.h5 (this script's own
float64 forward with DeepSeek's FP8 indexer).  Exits nonzero on any
inconsistency, after writing what it could.
"""
import argparse
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import time
import traceback

import numpy as np
import torch

GEN_VERSION = "furrow tests/golden_v32/make_golden.py v1"

# Tiny geometry: the V3 golden's "A" geometry plus the V3.2 indexer.
CONFIG = {
    "architectures": ["DeepseekV32ForCausalLM"],
    "model_type": "deepseek_v32",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "ep_size": 1,
    "first_k_dense_replace": 1,
    "hidden_act": "silu",
    "hidden_size": 256,
    "index_head_dim": 128,
    "index_n_heads": 8,
    "index_topk": 32,
    "initializer_range": 0.02,
    "intermediate_size": 512,
    "kv_lora_rank": 64,
    "max_position_embeddings": 256,
    "moe_intermediate_size": 128,
    "moe_layer_freq": 1,
    "n_group": 4,
    "n_routed_experts": 16,
    "n_shared_experts": 1,
    "norm_topk_prob": True,
    "num_attention_heads": 4,
    "num_experts_per_tok": 4,
    "num_hidden_layers": 3,
    "num_key_value_heads": 4,
    "num_nextn_predict_layers": 0,
    "q_lora_rank": 128,
    "qk_nope_head_dim": 32,
    "qk_rope_head_dim": 16,
    "rms_norm_eps": 1e-06,
    "rope_scaling": {
        "beta_fast": 32,
        "beta_slow": 1,
        "factor": 4.0,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
        "original_max_position_embeddings": 64,
        "type": "yarn",
    },
    "rope_theta": 10000.0,
    "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid",
    "tie_word_embeddings": False,
    "topk_group": 2,
    "topk_method": "noaux_tc",
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "v_head_dim": 32,
    "vocab_size": 2048,
}
QUANT = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
         "scale_fmt": "ue8m0", "weight_block_size": [128, 128]}
PROMPT_LENS = [20, 100, 200]   # 20 < index_topk: selection keeps everything
GREEDY_STEPS = 8
MIN_REL_MARGIN = 1e-5          # seeds with indexer/router near-ties closer than this (relative) are skipped:
                               # transformers scores the indexer and routes in float32
MIN_REL_MARGIN_FP8 = 1e-6      # the same for the FP8 indexer (compared with float64 only)
MAX_SEEDS = 40
SUMMARY = []                   # one line per variant, printed last


def log(msg):
    print(f"[make_golden {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)

# ---------------------------------------------------------------- number formats


def bf16_round(a):
    """float array -> (bf16 bit patterns uint16, exact float64 values); round to nearest even."""
    u = np.asarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    val = (u.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return u, val


def fp8_round(x):
    """float64 -> nearest float8_e4m3fn value (half to even, saturating at 448), exactly in float64."""
    x = np.clip(np.asarray(x, dtype=np.float64), -448.0, 448.0)
    a = np.abs(x)
    _, e2 = np.frexp(np.maximum(a, 2.0 ** -6))   # a = m * 2^e2, m in [0.5, 1)
    step = np.ldexp(1.0, e2 - 1 - 3)              # 3 mantissa bits; subnormal step 2^-9
    y = np.minimum(np.round(a / step) * step, 448.0)
    return np.sign(x) * y


def fp8_bits(y):
    """exact e4m3fn values (from fp8_round) -> uint8 bit patterns."""
    s = (y < 0).astype(np.uint8) << 7
    a = np.abs(y)
    m, e2 = np.frexp(a)
    e = e2 - 1                                    # a = 1.f * 2^e
    normal = a >= 2.0 ** -6
    exp_f = np.where(normal, e + 7, 0)
    man = np.where(normal, (a / np.ldexp(1.0, e) - 1.0) * 8.0, a / 2.0 ** -9)
    check(np.all(man == np.round(man)) and np.all(man < 8.0) and np.all(exp_f <= 15), "fp8 encode")
    bits = s | (exp_f.astype(np.uint8) << 3) | np.round(man).astype(np.uint8)
    return np.where(a == 0, s, bits).astype(np.uint8)


def fp8_decode(bits):
    bits = bits.astype(np.int64)
    s = np.where(bits & 0x80, -1.0, 1.0)
    e = (bits >> 3) & 0xF
    m = bits & 7
    return s * np.where(e == 0, m * 2.0 ** -9, (1 + m / 8.0) * np.ldexp(1.0, e - 7))

# ---------------------------------------------------------------- safetensors


def write_safetensors(path, tensors):
    """tensors: name -> (dtype string, shape, raw bytes).  The layout of the safetensors spec."""
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, (dt, shape, raw) in tensors.items():
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, (_, _, raw) in tensors.items():
            f.write(raw)

def read_safetensors(path):
    """name -> float64 tensor for BF16/F32/F64 (enough for the V3 golden check)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        raw = data[v["data_offsets"][0]:v["data_offsets"][1]]
        a = {"BF16": lambda: (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32),
             "F8_E4M3": lambda: fp8_decode(np.frombuffer(raw, np.uint8)),
             "F32": lambda: np.frombuffer(raw, "<f4"), "F64": lambda: np.frombuffer(raw, "<f8")}[v["dtype"]]()
        out[k] = torch.from_numpy(a.astype(np.float64).reshape(v["shape"]))
    return out


def load_exact(d):
    """A checkpoint directory written by this script -> exact float64 weights (FP8 dequantized with its
    128x128 scale_inv blocks, exact in float64), name -> tensor: the weights the references used."""
    raw = {}
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".safetensors"):
            raw.update(read_safetensors(os.path.join(d, fn)))
    W = {}
    for k, t in raw.items():
        if k.endswith("_scale_inv"):
            continue
        if k + "_scale_inv" in raw:
            s = raw[k + "_scale_inv"].numpy()
            t = t * torch.from_numpy(np.repeat(np.repeat(s, 128, 0), 128, 1)[:t.shape[0], :t.shape[1]])
        W[k] = t
    return W


def check_against_v3(d):
    """The own forward with dense attention on the V3 golden (same geometry, transformers' V3 logits):
    validates its MLA, YaRN, MoE and norms independently of the indexer."""
    import h5py
    W = {}
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".safetensors"):
            W.update(read_safetensors(os.path.join(d, fn)))
    for k, v in make_master(CONFIG, 0).items():
        if "indexer" in k:
            W[k] = torch.from_numpy(v.astype(np.float64))
    with h5py.File(os.path.join(d, "reference.h5"), "r") as f:
        for i in f["prompts"]:
            toks, ref = f["prompts"][i]["tokens"][()], f["prompts"][i]["logits"][()]
            lg, _, _ = forward(W, CONFIG, list(toks), "hf", dense=True)
            dev = float(np.abs(lg.numpy() - ref).max() / np.abs(ref).max())
            log(f"V3 golden {d} prompt {i} (L={len(toks)}): own dense forward vs transformers V3 {dev:.3g} of max|logit|")
            check(dev < 1e-5, f"own forward disagrees with the V3 golden by {dev:.3g}")

# ---------------------------------------------------------------- random model


def linear_names(cfg):
    """(name, out, in) of every linear weight, checkpoint names."""
    H, ql, kl = cfg["hidden_size"], cfg["q_lora_rank"], cfg["kv_lora_rank"]
    nh, nope, rope, vd = cfg["num_attention_heads"], cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    ih, idim = cfg["index_n_heads"], cfg["index_head_dim"]
    out = []
    for L in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{L}."
        out += [(p + "self_attn.q_a_proj.weight", ql, H),
                (p + "self_attn.q_b_proj.weight", nh * (nope + rope), ql),
                (p + "self_attn.kv_a_proj_with_mqa.weight", kl + rope, H),
                (p + "self_attn.kv_b_proj.weight", nh * (nope + vd), kl),
                (p + "self_attn.o_proj.weight", H, nh * vd),
                (p + "self_attn.indexer.wq_b.weight", ih * idim, ql),
                (p + "self_attn.indexer.wk.weight", idim, H),
                (p + "self_attn.indexer.weights_proj.weight", ih, H)]
        if L < cfg["first_k_dense_replace"]:
            I = cfg["intermediate_size"]
            out += [(p + "mlp.gate_proj.weight", I, H), (p + "mlp.up_proj.weight", I, H),
                    (p + "mlp.down_proj.weight", H, I)]
        else:
            I, E = cfg["moe_intermediate_size"], cfg["n_routed_experts"]
            out.append((p + "mlp.gate.weight", E, H))
            for e in range(E):
                q = f"{p}mlp.experts.{e}."
                out += [(q + "gate_proj.weight", I, H), (q + "up_proj.weight", I, H), (q + "down_proj.weight", H, I)]
            Is = I * cfg["n_shared_experts"]
            out += [(p + "mlp.shared_experts.gate_proj.weight", Is, H), (p + "mlp.shared_experts.up_proj.weight", Is, H),
                    (p + "mlp.shared_experts.down_proj.weight", H, Is)]
    return out


def is_fp8(name):
    """Which weights DeepSeek's FP8 checkpoint stores as F8_E4M3 (router, embedding, head, weights_proj stay BF16)."""
    return not (name.endswith("mlp.gate.weight") or "weights_proj" in name)


def make_master(cfg, seed):
    """Random float32 master weights, name -> array (checkpoint names)."""
    rng = np.random.default_rng(seed)
    H, V = cfg["hidden_size"], cfg["vocab_size"]
    w = {"model.embed_tokens.weight": rng.standard_normal((V, H)), "lm_head.weight": rng.standard_normal((V, H)) / math.sqrt(H),
         "model.norm.weight": 1 + 0.1 * rng.standard_normal(H)}
    for name, o, i in linear_names(cfg):
        w[name] = rng.standard_normal((o, i)) / math.sqrt(i)
    for L in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{L}."
        for n, d in (("input_layernorm", H), ("post_attention_layernorm", H),
                     ("self_attn.q_a_layernorm", cfg["q_lora_rank"]), ("self_attn.kv_a_layernorm", cfg["kv_lora_rank"]),
                     ("self_attn.indexer.k_norm", cfg["index_head_dim"])):
            w[p + n + ".weight"] = 1 + 0.1 * rng.standard_normal(d)
        w[p + "self_attn.indexer.k_norm.bias"] = 0.1 * rng.standard_normal(cfg["index_head_dim"])
        if L >= cfg["first_k_dense_replace"]:
            w[p + "mlp.gate.e_score_correction_bias"] = 0.05 * rng.standard_normal(cfg["n_routed_experts"])
    return {k: v.astype(np.float32) for k, v in w.items()}


def quantize(master, fp8):
    """-> (stored tensors name -> (dtype, shape, bytes), exact float64 weights name -> array)."""
    stored, exact = {}, {}
    for name, a in master.items():
        if name.endswith("e_score_correction_bias"):
            stored[name] = ("F32", a.shape, a.astype("<f4").tobytes())
            exact[name] = a.astype(np.float64)
        elif fp8 and a.ndim == 2 and is_fp8(name) and name not in ("model.embed_tokens.weight", "lm_head.weight"):
            o, i = a.shape
            bo, bi = -(-o // 128), -(-i // 128)
            scale = np.zeros((bo, bi), dtype=np.float32)
            for r in range(bo):
                for c in range(bi):
                    blk = a[r * 128:(r + 1) * 128, c * 128:(c + 1) * 128]
                    scale[r, c] = np.float32(np.abs(blk).max()) / np.float32(448.0)
            s64 = np.repeat(np.repeat(scale.astype(np.float64), 128, 0), 128, 1)[:o, :i]
            q = fp8_round(a.astype(np.float64) / s64)
            bits = fp8_bits(q)
            check(np.array_equal(fp8_decode(bits), q), f"fp8 round trip of {name}")
            stored[name] = ("F8_E4M3", a.shape, bits.tobytes())
            stored[name + "_scale_inv"] = ("F32", scale.shape, scale.astype("<f4").tobytes())
            exact[name] = q * s64                    # exact in float64 (4-bit x 24-bit mantissas)
        else:
            bits, val = bf16_round(a)
            stored[name] = ("BF16", a.shape, bits.astype("<u2").tobytes())
            exact[name] = val.reshape(a.shape)
    return stored, exact


def shard_of(name, nl):
    if name.startswith("model.layers."):
        L = int(name.split(".")[2])
        return 0 if L == 0 else (1 if L < nl - 1 else 2)
    return 0 if name.startswith("model.embed") else 2


def write_checkpoint(d, cfg, stored, fp8):
    os.makedirs(d, exist_ok=True)
    c = dict(cfg)
    if fp8:
        c["quantization_config"] = QUANT
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    nl = cfg["num_hidden_layers"]
    shards = [{} for _ in range(3)]
    for name in sorted(stored):
        shards[shard_of(name, nl)][name] = stored[name]
    wmap, total = {}, 0
    for i, sh in enumerate(shards):
        fn = f"model-{i + 1:05d}-of-00003.safetensors"
        write_safetensors(os.path.join(d, fn), sh)
        for n, (_, _, raw) in sh.items():
            wmap[n] = fn
            total += len(raw)
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(wmap.items()))}, f, indent=2)


def verify_with_safetensors(d, exact):
    """Re-read the shards with the safetensors library where it is installed."""
    try:
        from safetensors import safe_open
    except ImportError:
        log("safetensors not installed: shard read-back skipped")
        return
    idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))["weight_map"]
    seen = 0
    for fn in sorted(set(idx.values())):
        with safe_open(os.path.join(d, fn), framework="pt") as f:
            for k in f.keys():
                t = f.get_tensor(k).to(torch.float64).numpy()
                if k.endswith("_scale_inv"):
                    continue
                w = t
                if k + "_scale_inv" in idx:
                    s = f.get_tensor(k + "_scale_inv") if k + "_scale_inv" in f.keys() else None
                    check(s is not None, f"{k}: scale in another shard")
                    s = s.to(torch.float64).numpy()
                    w = t * np.repeat(np.repeat(s, 128, 0), 128, 1)[:t.shape[0], :t.shape[1]]
                check(np.array_equal(w, exact[k]), f"safetensors read-back differs for {k}")
                seen += 1
    check(seen == len(exact), f"read back {seen} tensors, expected {len(exact)}")
    log(f"safetensors read-back of {seen} tensors in {d}: exact")

# ---------------------------------------------------------------- float64 forward (DeepSeek semantics)


def yarn_freqs(cfg, T):
    """angles [T, rope/2] as DeepSeek's precompute_freqs_cis, in float64."""
    rs = cfg["rope_scaling"]
    dim, base, factor, orig = cfg["qk_rope_head_dim"], cfg["rope_theta"], rs["factor"], rs["original_max_position_embeddings"]
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))

    def corr(nrot):
        return dim * math.log(orig / (nrot * 2 * math.pi)) / (2 * math.log(base))
    low = max(math.floor(corr(rs["beta_fast"])), 0)
    high = min(math.ceil(corr(rs["beta_slow"])), dim - 1)
    if low == high:
        high += 0.001
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low), 0, 1)
    smooth = 1 - ramp
    freqs = freqs / factor * (1 - smooth) + freqs * smooth
    return torch.outer(torch.arange(T, dtype=torch.float64), freqs)


def rope(x, ang, interleaved):
    """x [..., T, (heads,) d] with T on dim 0; ang [T, d/2]."""
    c, s = torch.cos(ang), torch.sin(ang)
    while c.dim() < x.dim():
        c, s = c.unsqueeze(-2), s.unsqueeze(-2)
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack([a * c - b * s, a * s + b * c], dim=-1).flatten(-2)
    h = x.shape[-1] // 2
    a, b = x[..., :h], x[..., h:]
    return torch.cat([a * c - b * s, a * s + b * c], dim=-1)


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def layernorm(x, w, b, eps=1e-6):
    mu = x.mean(-1, keepdim=True)
    var = (x - mu).pow(2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def hadamard(n):
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / math.sqrt(n)


def act_quant_ue8m0(x):
    """DeepSeek's act_quant with scale_fmt ue8m0 over the last dim (one 128-block): -> (fp8 values, scale)."""
    amax = np.maximum(np.abs(x).max(-1, keepdims=True), 1e-4)
    m, e = np.frexp(amax * (1.0 / 448.0))
    s = np.ldexp(1.0, np.where(m == 0.5, e - 1, e))   # 2^ceil(log2(amax/448))
    return fp8_round(x / s), s


def indexer_scores(W, p, cfg, x, cq, ang, mode):
    """[T, T] index scores (before the causal limit).  mode 'hf': transformers' formula in float64;
    'dsfp8': DeepSeek's (Hadamard, FP8 q/k with per-token ue8m0 scales)."""
    T = x.shape[0]
    ih, idim, r = cfg["index_n_heads"], cfg["index_head_dim"], cfg["qk_rope_head_dim"]
    q = (cq @ W[p + "indexer.wq_b.weight"].T).view(T, ih, idim)
    q = torch.cat([rope(q[..., :r], ang, False), q[..., r:]], -1)
    k = layernorm(x @ W[p + "indexer.wk.weight"].T, W[p + "indexer.k_norm.weight"], W[p + "indexer.k_norm.bias"])
    k = torch.cat([rope(k[..., :r], ang, False), k[..., r:]], -1)
    w = (x @ W[p + "indexer.weights_proj.weight"].T) * ih ** -0.5          # [T, ih]
    if mode == "hf":
        d = torch.einsum("thd,sd->ths", q, k) * idim ** -0.5
        return torch.einsum("th,ths->ts", w, torch.relu(d))
    Hd = hadamard(idim)
    q8, qs = act_quant_ue8m0((q @ Hd).numpy())
    k8, ks = act_quant_ue8m0((k @ Hd).numpy())
    q8, qs, k8, ks = (torch.from_numpy(a) for a in (q8, qs, k8, ks))
    d = torch.einsum("thd,sd->ths", q8, k8)
    coef = w * qs[..., 0] * idim ** -0.5
    return torch.einsum("th,ths->ts", coef, torch.relu(d)) * ks[:, 0].unsqueeze(0)


def select(scores, k):
    """causal top-k per row -> (bool mask [T,T], ids [T,k] ascending padded -1, margin [T], rel margin [T])."""
    T = scores.shape[0]
    mask = torch.zeros(T, T, dtype=torch.bool)
    ids = -np.ones((T, k), dtype=np.int32)
    margin = np.full(T, np.inf)
    rel = np.full(T, np.inf)
    for t in range(T):
        row = scores[t, :t + 1]
        if t + 1 <= k:
            sel = torch.arange(t + 1)
        else:
            v, i = torch.sort(row, descending=True)
            sel = i[:k]
            margin[t] = float(v[k - 1] - v[k])
            rel[t] = margin[t] / max(float(row.abs().max()), 1e-300)
        mask[t, sel] = True
        ids[t, :len(sel)] = np.sort(sel.numpy())
    return mask, ids, margin, rel


def moe(W, p, cfg, x, stats):
    E, K, G, TG = cfg["n_routed_experts"], cfg["num_experts_per_tok"], cfg["n_group"], cfg["topk_group"]
    s = torch.sigmoid(x @ W[p + "mlp.gate.weight"].T)
    sb = s + W[p + "mlp.gate.e_score_correction_bias"]
    T = x.shape[0]
    g = sb.view(T, G, E // G).topk(2, -1).values.sum(-1)
    gv, gi = torch.sort(g, -1, descending=True)
    stats.append(float((gv[:, TG - 1] - gv[:, TG]).min()))
    allowed = torch.zeros(T, G, dtype=torch.bool).scatter_(1, gi[:, :TG], True)
    sm = sb.masked_fill(~allowed.repeat_interleave(E // G, 1), float("-inf"))
    v, idx = torch.sort(sm, -1, descending=True)
    stats.append(float((v[:, K - 1] - v[:, K]).min()))
    idx = idx[:, :K]
    wt = s.gather(1, idx)
    if cfg["norm_topk_prob"]:
        wt = wt / wt.sum(-1, keepdim=True)
    wt = wt * cfg["routed_scaling_factor"]
    y = torch.zeros_like(x)
    for e in range(E):
        rows, slot = torch.where(idx == e)
        if len(rows):
            q = f"{p}mlp.experts.{e}."
            xe = x[rows]
            h = torch.nn.functional.silu(xe @ W[q + "gate_proj.weight"].T) * (xe @ W[q + "up_proj.weight"].T)
            y[rows] += (h @ W[q + "down_proj.weight"].T) * wt[rows, slot].unsqueeze(-1)
    q = p + "mlp.shared_experts."
    h = torch.nn.functional.silu(x @ W[q + "gate_proj.weight"].T) * (x @ W[q + "up_proj.weight"].T)
    return y + h @ W[q + "down_proj.weight"].T


def forward(W, cfg, tokens, mode, dense=False):
    """Full float64 forward over tokens (1-D).  -> logits [T,V], per-layer (ids, margin, rel, scores), router gaps."""
    T = len(tokens)
    eps = cfg["rms_norm_eps"]
    nh, nope, r, vd = cfg["num_attention_heads"], cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    kl = cfg["kv_lora_rank"]
    rs = cfg["rope_scaling"]
    mscale = 0.1 * rs["mscale_all_dim"] * math.log(rs["factor"]) + 1.0 if rs["factor"] > 1 else 1.0
    scale = (nope + r) ** -0.5 * mscale * mscale
    ang = yarn_freqs(cfg, T)
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    h = W["model.embed_tokens.weight"][torch.as_tensor(tokens)]
    layers, rstats = [], []
    for L in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{L}."
        a = p + "self_attn."
        x = rms(h, W[p + "input_layernorm.weight"], eps)
        cq = rms(x @ W[a + "q_a_proj.weight"].T, W[a + "q_a_layernorm.weight"], eps)
        q = (cq @ W[a + "q_b_proj.weight"].T).view(T, nh, nope + r)
        q = torch.cat([q[..., :nope], rope(q[..., nope:], ang, True)], -1)
        kv = x @ W[a + "kv_a_proj_with_mqa.weight"].T
        ckv = rms(kv[:, :kl], W[a + "kv_a_layernorm.weight"], eps)
        kpe = rope(kv[:, kl:], ang, True)
        kvb = (ckv @ W[a + "kv_b_proj.weight"].T).view(T, nh, nope + vd)
        k = torch.cat([kvb[..., :nope], kpe.unsqueeze(1).expand(T, nh, r)], -1)
        sc = indexer_scores(W, a, cfg, x, cq, ang, mode)
        sel, ids, margin, rel = select(sc, cfg["index_topk"])
        layers.append((ids, margin, rel, sc))
        allow = causal if dense else (causal & sel)
        att = torch.einsum("thd,shd->hts", q, k) * scale
        att = att.masked_fill(~allow.unsqueeze(0), float("-inf")).softmax(-1)
        o = torch.einsum("hts,shd->thd", att, kvb[..., nope:]).reshape(T, nh * vd)
        h = h + o @ W[a + "o_proj.weight"].T
        x = rms(h, W[p + "post_attention_layernorm.weight"], eps)
        if L < cfg["first_k_dense_replace"]:
            m = p + "mlp."
            y = (torch.nn.functional.silu(x @ W[m + "gate_proj.weight"].T) * (x @ W[m + "up_proj.weight"].T)) @ W[m + "down_proj.weight"].T
        else:
            y = moe(W, p, cfg, x, rstats)
        h = h + y
    logits = rms(h, W["model.norm.weight"], eps) @ W["lm_head.weight"].T
    return logits, layers, rstats

# ---------------------------------------------------------------- references


def prompts_for(seed, V):
    rng = np.random.default_rng(1000 + seed)
    return [rng.integers(3, V, size=n).astype(np.int64) for n in PROMPT_LENS]


def own_reference(W, cfg, prompts, mode):
    """Greedy continuation and everything recorded, from this script's float64 forward."""
    out = []
    for toks in prompts:
        L = len(toks)
        seq = list(toks)
        for _ in range(GREEDY_STEPS):
            lg, _, _ = forward(W, cfg, seq, mode)
            seq.append(int(torch.argmax(lg[-1])))
        lg, layers, rstats = forward(W, cfg, seq, mode)
        pre, _, _ = forward(W, cfg, list(toks), mode)
        mx = float(lg.abs().max())
        dev = float((pre - lg[:L]).abs().max()) / mx
        check(dev < 1e-9, f"own forward ({mode}) not causally consistent: prefix logits differ by {dev:.3g} of max|logit|")
        dense, _, _ = forward(W, cfg, seq, mode, dense=True)
        out.append(dict(tokens=np.array(seq), L=L, logits=lg.numpy(), layers=layers, rstats=rstats,
                        dense_delta=float((dense - lg).abs().max()) / mx, prefix_dev=dev))
    return out


def min_margins(ref):
    idx = min(float(np.min(l[2])) for r in ref for l in r["layers"])
    rtr = min(min(r["rstats"]) for r in ref)
    return idx, rtr


def write_h5(path, cfg_json, ref, logits_src, generator, mode, seed=None, own=False):
    """own: also the last row of the logits (`last_logits`), so that the file holds every row of the
    forward over prompt + greedy tokens: --transformers-only compares transformers with it."""
    import h5py
    with h5py.File(path, "w") as f:
        f.attrs["config_json"] = cfg_json
        f.attrs["generator"] = generator
        f.attrs["indexer_semantics"] = mode
        if seed is not None:
            f.attrs["seed"] = seed
        g0 = f.create_group("prompts")
        for i, r in enumerate(ref):
            L, seq = r["L"], r["tokens"]
            lg = logits_src[i]
            g = g0.create_group(str(i))
            g["tokens"] = seq[:L].astype(np.int64)
            g.create_dataset("logits", data=lg[:L].astype(np.float32), compression="gzip")
            g["greedy_tokens"] = seq[L:].astype(np.int64)
            gl = lg[L - 1:len(seq) - 1]
            g["greedy_logits"] = gl.astype(np.float32)
            top2 = np.sort(gl, -1)[:, -2:]
            g["greedy_margin"] = (top2[:, 1] - top2[:, 0]).astype(np.float32)
            # the indexer, over the whole sequence (prompt + greedy tokens): row t is query position t
            g.create_dataset("index_topk_ids", data=np.stack([l[0] for l in r["layers"]]), compression="gzip")
            g["index_margin"] = np.stack([l[1] for l in r["layers"]])
            g["index_rel_margin"] = np.stack([l[2] for l in r["layers"]])
            sc = np.stack([np.tril(np.asarray(l[3])) for l in r["layers"]]).astype(np.float32)
            g.create_dataset("index_scores", data=sc, compression="gzip")
            if own:
                g["last_logits"] = lg[len(seq) - 1].astype(np.float32)
            g.attrs["dense_delta"] = r["dense_delta"]
            g.attrs["prefix_consistency"] = r["prefix_dev"]
            if "hf_cached_decode_dev" in r:
                g.attrs["transformers_cached_decode_vs_full"] = r["hf_cached_decode_dev"]



def read_own(path):
    """reference-own.h5 -> (the own reference list as own_reference returns it, logits float32, seed)."""
    import h5py
    out = []
    with h5py.File(path, "r") as f:
        sem = f.attrs["indexer_semantics"]
        sem = sem.decode() if isinstance(sem, bytes) else str(sem)
        check(sem == "transformers", f"{path}: not an own reference of transformers' semantics ({sem})")
        seed = int(f.attrs["seed"])
        for i in sorted(f["prompts"], key=int):
            g = f["prompts"][i]
            L = len(g["tokens"])
            seq = np.concatenate([g["tokens"][()], g["greedy_tokens"][()]])
            lg = np.concatenate([g["logits"][()], g["greedy_logits"][1:], g["last_logits"][()][None]]).astype(np.float64)
            check(lg.shape[0] == len(seq), f"{path} prompt {i}: {lg.shape[0]} logit rows for {len(seq)} tokens")
            ids, m, rm, sc = (g[n][()] for n in ("index_topk_ids", "index_margin", "index_rel_margin", "index_scores"))
            out.append(dict(tokens=seq, L=L, logits=lg, layers=[(ids[k], m[k], rm[k], sc[k]) for k in range(len(ids))],
                            dense_delta=float(g.attrs["dense_delta"]), prefix_dev=float(g.attrs["prefix_consistency"])))
    return out, seed

# ---------------------------------------------------------------- transformers


def hf_load(d):
    from transformers import AutoModelForCausalLM
    kw = dict(dtype=torch.float64, attn_implementation="eager", output_loading_info=True)
    try:
        model, info = AutoModelForCausalLM.from_pretrained(d, experts_implementation="eager", **kw)
    except (TypeError, ValueError) as e:   # a version without the experts_implementation argument
        log(f"note: experts_implementation='eager' refused ({type(e).__name__}: {e}); loading without it")
        model, info = AutoModelForCausalLM.from_pretrained(d, **kw)
        model.config._experts_implementation = "eager"
    return model, info


def patch_rope_f64(model, cfg):
    """transformers computes the RoPE angles in float32 (~1e-5 absolute error at position 200), enough to
    move near-tied selections; give its rotary embedding the same YaRN frequencies in float64."""
    re = getattr(getattr(model, "model", None), "rotary_emb", None)
    if re is None:
        log("note: no model.model.rotary_emb: transformers' RoPE left in float32")
        return
    inv = yarn_freqs(cfg, 2)[1]                       # angles at position 1 = the frequencies
    scaling = float(getattr(re, "attention_scaling", 1.0))
    orig = re.forward

    def forward(x, position_ids, *args, **kwargs):   # extra arguments (layer_type, ...) do not apply here
        ang = position_ids.to(torch.float64)[..., None] * inv.to(position_ids.device)
        emb = torch.cat([ang, ang], -1)
        return (emb.cos() * scaling).to(x.dtype), (emb.sin() * scaling).to(x.dtype)
    x = torch.zeros(1, dtype=torch.float64, device=next(model.parameters()).device)
    pos = torch.arange(cfg["max_position_embeddings"], device=x.device)[None]
    c0, s0 = orig(x, pos)
    c1, s1 = forward(x, pos)
    dev = max(float((c0 - c1).abs().max()), float((s0 - s1).abs().max()))
    check(dev < 1e-4, f"transformers' RoPE differs from DeepSeek's YaRN by {dev:.3g}")
    re.forward = forward
    log(f"transformers' rotary embedding now in float64 (its float32 angles differed by {dev:.2g}, attention_scaling {scaling})")


def cached_decode_dev(model, seq, L, full, dev):
    """max |logit| difference of transformers' KV-cached decode of the greedy tokens from its full forward
    (information only: 5.17's cached V3.2 decode is known to disagree beyond index_topk); nan if it fails."""
    try:
        with torch.no_grad():
            out = model(torch.as_tensor(seq[:L])[None].to(dev), use_cache=True)
            pkv, worst = out.past_key_values, 0.0
            for j in range(L, len(seq)):
                out = model(torch.as_tensor(seq[j:j + 1])[None].to(dev), past_key_values=pkv, use_cache=True)
                pkv = out.past_key_values
                worst = max(worst, float((out.logits[0, -1].cpu().double() - full[j]).abs().max()))
        return worst
    except Exception as e:
        log(f"note: transformers' cached decode failed: {type(e).__name__}: {e}")
        return float("nan")


def hf_reference(W, cfg, ref, workdir, ckpt_dir, failures):
    """transformers' DeepseekV32ForCausalLM, float64, full forwards over each whole sequence.
    ckpt_dir: a BF16 checkpoint loaded as it is (checks the layout), else None.
    -> (logits per prompt, report lines).  Raises Failure on disagreement."""
    import transformers
    log(f"transformers {transformers.__version__}")
    model = None
    if ckpt_dir:
        try:
            model, info = hf_load(ckpt_dir)
            log(f"transformers loaded the checkpoint directory {ckpt_dir} itself (upcast to float64)")
        except Exception as e:   # report, then fall back to the float64 copy
            failures.append(f"transformers cannot load {ckpt_dir}: {type(e).__name__}: {e}")
            log("FAIL " + failures[-1])
    if model is None:
        d = os.path.join(workdir, "f64")
        os.makedirs(d, exist_ok=True)
        hcfg = dict(cfg, torch_dtype="float64")
        hcfg["rope_scaling"] = dict(cfg["rope_scaling"], rope_type="yarn")
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(hcfg, f)
        write_safetensors(os.path.join(d, "model.safetensors"),
                          {k: ("F64", v.shape, v.numpy().astype("<f8").tobytes()) for k, v in W.items()})
        model, info = hf_load(d)
        log("transformers loaded a float64 copy of the exact (dequantized) weights")
    check(type(model).__name__ == "DeepseekV32ForCausalLM", f"transformers built {type(model).__name__}")
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        check(not info.get(key), f"transformers loading: {key} = {info.get(key)}")
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    odd = [n for n, p in model.named_parameters() if p.dtype != torch.float64]
    if odd:
        log(f"note: transformers keeps {len(odd)} parameters in another dtype, e.g. {odd[:3]}")
    log(f"transformers model loaded: {n_params} parameters, float64, eager")
    patch_rope_f64(model, cfg)
    captured = {}
    hooks = []
    for L, layer in enumerate(model.model.layers):
        def hook(mod, args, out, L=L):
            captured[L] = out[0] if isinstance(out, tuple) else out
        hooks.append(layer.self_attn.indexer.register_forward_hook(hook))
    outs, lines, problems = [], [], []
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(dev)
    for i, r in enumerate(ref):
        seq, L = r["tokens"], r["L"]
        with torch.no_grad():
            full = model(torch.as_tensor(seq)[None].to(dev), use_cache=False).logits[0].cpu().double()
            sel_full = {k: v.detach().cpu() for k, v in captured.items()}
            pre = model(torch.as_tensor(seq[:L])[None].to(dev), use_cache=False).logits[0].cpu().double()
        cached = cached_decode_dev(model, seq, L, full, dev)
        own = torch.from_numpy(r["logits"])
        mx = float(own.abs().max())
        d_own = float((full - own).abs().max()) / mx
        d_pre = float((pre - full[:L]).abs().max()) / mx
        # greedy continuation must agree with transformers' own full forward
        hf_greedy = full[L - 1:len(seq) - 1].argmax(-1).numpy()
        gm = np.sort(full[L - 1:len(seq) - 1].numpy(), -1)
        greedy_ok = all(hf_greedy[j] == seq[L + j] or gm[j, -1] - gm[j, -2] < 1e-6 * mx for j in range(len(seq) - L))
        # the indexer's selections, where the scores are not near-tied
        bad = 0
        for Ly, l in enumerate(r["layers"]):
            out = sel_full[Ly]
            if out.dtype in (torch.int32, torch.int64):
                hs = [set(int(s) for s in out.reshape(-1, out.shape[-1])[t] if 0 <= s <= t) for t in range(len(seq))]
            else:
                m = out.reshape(-1, out.shape[-2], out.shape[-1])[0]
                m = (m == 0) if m.dtype != torch.bool else m
                hs = [set(torch.nonzero(m[t, :t + 1]).flatten().tolist()) for t in range(len(seq))]
            for t in range(len(seq)):
                if l[2][t] > 1e-5 and hs[t] != set(int(s) for s in l[0][t] if s >= 0):
                    bad += 1
        line = (f"prompt {i} (L={L}, T={len(seq)}): transformers vs own float64 {d_own:.3g}, "
                f"transformers prefix consistency {d_pre:.3g}, index-set mismatches {bad}, greedy {'ok' if greedy_ok else 'DIFFERS'}; "
                f"transformers' cached decode vs its full forward {cached / float(full.abs().max()):.3g} (not used)")
        r["hf_cached_decode_dev"] = cached / float(full.abs().max())
        log(line)
        lines.append(line)
        if d_own >= 1e-4:
            problems.append(f"transformers and this script's forward disagree: {line}")
        if d_pre >= 1e-5:
            problems.append(f"transformers' full forward is not causally consistent: {line}")
        if bad or not greedy_ok:
            problems.append(line)
        outs.append(full.numpy())
    for h in hooks:
        h.remove()
    return outs, lines, problems

# ---------------------------------------------------------------- main


def build_variant(outdir, name, fp8, cfg, args, failures):
    d = os.path.join(outdir, name)
    for seed in range(args.seed, args.seed + MAX_SEEDS):
        master = make_master(cfg, seed)
        stored, exact = quantize(master, fp8)
        W = {k: torch.from_numpy(v) for k, v in exact.items()}
        prompts = prompts_for(seed, cfg["vocab_size"])
        ref = own_reference(W, cfg, prompts, "hf")
        mi, mr = min_margins(ref)
        log(f"{name} seed {seed}: min indexer rel margin {mi:.3g}, min router gap {mr:.3g}")
        if not (mi > MIN_REL_MARGIN and mr > MIN_REL_MARGIN):
            continue
        ds = own_reference(W, cfg, prompts, "dsfp8")
        mi, mr = min_margins(ds)
        log(f"{name} seed {seed} with DeepSeek's FP8 indexer: min indexer rel margin {mi:.3g}, min router gap {mr:.3g}")
        if mi > MIN_REL_MARGIN_FP8 and mr > MIN_REL_MARGIN:
            break
    else:
        raise Failure(f"{name}: no seed in {MAX_SEEDS} without near-ties")
    write_checkpoint(d, cfg, stored, fp8)
    verify_with_safetensors(d, exact)
    cfg_json = json.dumps(json.load(open(os.path.join(d, "config.json"))))
    for r in ref:
        log(f"{name}: prompt L={r['L']} T={len(r['tokens'])}: sparse vs dense {r['dense_delta']:.3g} of max|logit|, "
            f"prefix consistency {r['prefix_dev']:.2g}")
        if r["L"] > cfg["index_topk"]:
            check(r["dense_delta"] > 1e-2, f"{name}: selection barely matters (dense differs by {r['dense_delta']:.3g})")
    gen = (f"{GEN_VERSION}; seed {seed}; this script's float64 forward with DeepSeek-V3.2 inference/model.py's indexer "
           f"(Hadamard, FP8 e4m3 q/k with ue8m0 per-token scales); weights {'dequantized FP8' if fp8 else 'BF16'}")
    write_h5(os.path.join(d, "reference-dsfp8.h5"), cfg_json, ds, [r["logits"] for r in ds], gen, "deepseek-fp8", seed)
    log(f"{name}: wrote reference-dsfp8.h5")
    write_h5(os.path.join(d, "reference-own.h5"), cfg_json, ref, [r["logits"] for r in ref],
             f"{GEN_VERSION}; seed {seed}; this script's float64 forward with transformers' indexer semantics "
             f"(what transformers' reference.h5 is compared with)", "transformers", seed, own=True)
    log(f"{name}: wrote reference-own.h5")
    if args.skip_transformers:
        log(f"{name}: --skip-transformers: reference.h5 from this script's forward (NOT the golden)")
        write_h5(os.path.join(d, "reference.h5"), cfg_json, ref, [r["logits"] for r in ref],
                 f"{GEN_VERSION}; seed {seed}; OWN float64 forward only (--skip-transformers)", "transformers")
        return
    if args.own_only:
        log(f"{name}: --own-only: transformers' reference.h5 left to --transformers-only")
        return
    transformers_part(d, name, fp8, cfg, W, ref, seed, cfg_json, failures)


def transformers_only(outdir, name, fp8, failures):
    """Mode B: transformers' reference for a checkpoint and own reference written earlier (--own-only)."""
    d = os.path.join(outdir, name)
    for fn in ("config.json", "reference-own.h5", "model.safetensors.index.json"):
        check(os.path.exists(os.path.join(d, fn)), f"{d}/{fn} missing: run --own-only first")
    cfg = json.load(open(os.path.join(d, "config.json")))
    check(("quantization_config" in cfg) == fp8, f"{d}: quantization_config does not match the variant")
    cfg_json = json.dumps(cfg)
    cfg.pop("quantization_config", None)
    W = load_exact(d)
    verify_with_safetensors(d, {k: v.numpy() for k, v in W.items()})   # the library reads what this script does
    ref, seed = read_own(os.path.join(d, "reference-own.h5"))
    log(f"{name}: loaded {len(W)} tensors and the own reference (seed {seed}, {len(ref)} prompts) from {d}")
    transformers_part(d, name, fp8, cfg, W, ref, seed, cfg_json, failures)


def transformers_part(d, name, fp8, cfg, W, ref, seed, cfg_json, failures):
    work = tempfile.mkdtemp(prefix="v32golden")
    try:
        import transformers
        logits, lines, problems = hf_reference(W, cfg, ref, work, None if fp8 else d, failures)
        gen = (f"transformers {transformers.__version__} DeepseekV32ForCausalLM, float64, eager attention and experts, "
               f"full forward over prompt+greedy tokens (no KV cache); weights {'dequantized FP8' if fp8 else 'BF16'}; "
               f"indexer selections from {GEN_VERSION} seed {seed} (same formula in float64, checked equal)")
        if problems:   # keep transformers' numbers for the diagnosis, under a name no test reads
            write_h5(os.path.join(d, "reference-transformers-FAILED.h5"), cfg_json, ref, logits,
                     "FAILED CHECKS: " + " | ".join(problems) + "; " + gen, "transformers")
            raise Failure("; ".join(problems) + " (wrote reference-transformers-FAILED.h5)")
        write_h5(os.path.join(d, "reference.h5"), cfg_json, ref, logits, gen, "transformers")
        log(f"{name}: wrote reference.h5")
        SUMMARY.append(f"{name}: OK, wrote {d}/reference.h5 (seed {seed}); " + " | ".join(lines))
    except Exception as e:   # a failed check or a transformers version this script does not expect
        failures.append(f"{name}: transformers reference: {type(e).__name__}: {e}")
        log(f"FAIL {failures[-1]}")
        SUMMARY.append(f"{name}: FAILED (no reference.h5): {type(e).__name__}: {e}")
        traceback.print_exc()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=0, help="first seed tried (default 0)")
    ap.add_argument("--skip-transformers", action="store_true",
                    help="testing only: no transformers run; reference.h5 then holds this script's forward")
    ap.add_argument("--own-only", action="store_true",
                    help="mode A: checkpoints, reference-dsfp8.h5 and reference-own.h5 only (no transformers)")
    ap.add_argument("--transformers-only", action="store_true",
                    help="mode B: transformers' reference.h5 for the checkpoints and reference-own.h5 already in OUTDIR")
    ap.add_argument("--check-v3", metavar="DIR",
                    help="first compare the own forward (dense) with a V3 golden of the same geometry (tiny-a-bf16)")
    ap.add_argument("--only", choices=["bf16", "fp8"], help="build one variant only")
    args = ap.parse_args()
    if args.transformers_only and (args.own_only or args.skip_transformers):
        ap.error("--transformers-only excludes --own-only and --skip-transformers")
    torch.set_grad_enabled(False)
    t0 = time.time()
    failures = []
    if args.check_v3:
        try:
            check_against_v3(args.check_v3)
        except Exception as e:
            failures.append(f"V3 check: {type(e).__name__}: {e}")
            log(f"FAIL {failures[-1]}")
    for name, fp8 in (("tiny-v32-bf16", False), ("tiny-v32-fp8", True)):
        if args.only and not name.endswith(args.only):
            continue
        try:
            if args.transformers_only:
                transformers_only(args.outdir, name, fp8, failures)
            else:
                build_variant(args.outdir, name, fp8, CONFIG, args, failures)
        except Exception as e:
            failures.append(f"{name}: {type(e).__name__}: {e}")
            log(f"FAIL {failures[-1]}")
            SUMMARY.append(f"{name}: FAILED: {type(e).__name__}: {e}")
            traceback.print_exc()
    log(f"done in {time.time() - t0:.0f} s")
    for line in SUMMARY:
        print("SUMMARY " + line, flush=True)
    if failures:
        for f in failures:
            print("FAILED: " + f, file=sys.stderr)
        sys.exit(1)
    log("all checks passed")


if __name__ == "__main__":
    main()
