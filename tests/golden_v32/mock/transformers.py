"""A stand-in for transformers that exercises make_golden.py's plumbing (loading, hooks, RoPE patch,
comparisons, the FAILED path with MOCK_PERTURB=0.01) where transformers is not installed.  Its model IS
make_golden's own forward, so it checks nothing numerical:

    PYTHONPATH=tests/golden_v32/mock python3 tests/golden_v32/make_golden.py /tmp/out
"""
import json, os, struct, sys
import numpy as np, torch
__version__ = "mock"
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import make_golden as mg

def read_st(path):
    f = open(path, "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); base = 8 + n
    out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        f.seek(base + v["data_offsets"][0]); raw = f.read(v["data_offsets"][1] - v["data_offsets"][0])
        dt = v["dtype"]
        if dt == "BF16": a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt == "F32": a = np.frombuffer(raw, "<f4")
        elif dt == "F64": a = np.frombuffer(raw, "<f8")
        else: raise TypeError(dt)
        out[k] = torch.from_numpy(a.astype(np.float64).reshape(v["shape"]))
    return out

class Idx(torch.nn.Module):
    def forward(self, ids): return ids
class Attn(torch.nn.Module):
    def __init__(self): super().__init__(); self.indexer = Idx()
class Layer(torch.nn.Module):
    def __init__(self): super().__init__(); self.self_attn = Attn()
class Rot(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__(); self.inv = mg.yarn_freqs(cfg, 2)[1].float(); self.attention_scaling = 1.0
    def forward(self, x, position_ids):
        a = position_ids.float()[..., None] * self.inv; e = torch.cat([a, a], -1)
        return e.cos().to(x.dtype), e.sin().to(x.dtype)
class Inner(torch.nn.Module):
    def __init__(self, n, cfg): super().__init__(); self.layers = torch.nn.ModuleList([Layer() for _ in range(n)]); self.rotary_emb = Rot(cfg)
class Out:  pass
class DeepseekV32ForCausalLM(torch.nn.Module):
    def __init__(self, W, cfg):
        super().__init__(); self.W, self.cfg = W, cfg; self.model = Inner(cfg["num_hidden_layers"], cfg)
        self.p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64)); self.config = Out()
    def forward(self, input_ids, use_cache=False):
        toks = input_ids[0].tolist(); T = len(toks)
        lg, layers, _ = mg.forward(self.W, self.cfg, toks, "hf")
        for L, l in enumerate(layers):
            ids = torch.from_numpy(l[0]).clone(); ids[ids < 0] = T - 1
            self.model.layers[L].self_attn.indexer(ids[None].to(torch.int32))
        if os.environ.get("MOCK_PERTURB"): lg = lg + float(os.environ["MOCK_PERTURB"])
        o = Out(); o.logits = lg[None]; return o

class AutoModelForCausalLM:
    @staticmethod
    def from_pretrained(d, dtype=None, attn_implementation=None, output_loading_info=False, experts_implementation=None):
        cfg = json.load(open(os.path.join(d, "config.json")))
        assert cfg["architectures"] == ["DeepseekV32ForCausalLM"]
        W = {}
        for fn in sorted(os.listdir(d)):
            if fn.endswith(".safetensors"): W.update(read_st(os.path.join(d, fn)))
        return DeepseekV32ForCausalLM(W, cfg), {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": []}
