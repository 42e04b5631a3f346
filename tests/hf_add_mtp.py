"""Copies a Hugging Face DeepSeek-V3 checkpoint folder (BF16 safetensors) and adds
an MTP layer in the published layout, as DeepSeek-V3's model.layers.61 is stored:
model.layers.{num_hidden_layers}.{enorm, hnorm, eh_proj, embed_tokens,
shared_head.norm, shared_head.head} and a full decoder layer; config.json gets
num_nextn_predict_layers 1. The decoder layer's tensors are the last main layer's
(an MoE layer), the embedding and head the model's, the norms random around 1,
eh_proj random normal(0, 1/sqrt(2 hidden)); all in a new shard with its index
entries. Python's standard library only.
    python3 hf_add_mtp.py SRC DST [SEED]"""
import json
import os
import random
import shutil
import struct
import sys

src, dst = sys.argv[1], sys.argv[2]
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 7)
shutil.copytree(src, dst)
for f in os.listdir(dst):  # the golden files are read-only
    os.chmod(os.path.join(dst, f), 0o644)
cfg = json.load(open(os.path.join(dst, "config.json")))
L, D = cfg["num_hidden_layers"], cfg["hidden_size"]
index_path = os.path.join(dst, "model.safetensors.index.json")
index = json.load(open(index_path))


def read(name):
    with open(os.path.join(dst, index["weight_map"][name]), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))[name]
        f.seek(8 + n + h["data_offsets"][0])
        return h["dtype"], h["shape"], f.read(h["data_offsets"][1] - h["data_offsets"][0])


def bf16(values):
    return b"".join(struct.pack("<f", v)[2:] for v in values)


new = {}
last = "model.layers.%d." % (L - 1)
for name in list(index["weight_map"]):
    if name.startswith(last):
        new["model.layers.%d.%s" % (L, name[len(last):])] = read(name)
mtp = "model.layers.%d." % L
new[mtp + "embed_tokens.weight"] = read("model.embed_tokens.weight")
head = "model.embed_tokens.weight" if cfg.get("tie_word_embeddings") else "lm_head.weight"
new[mtp + "shared_head.head.weight"] = read(head)
for norm in ("enorm.weight", "hnorm.weight", "shared_head.norm.weight"):
    new[mtp + norm] = ("BF16", [D], bf16(1 + 0.1 * rng.gauss(0, 1) for _ in range(D)))
s = (2 * D) ** -0.5
new[mtp + "eh_proj.weight"] = ("BF16", [D, 2 * D], bf16(rng.gauss(0, s) for _ in range(2 * D * D)))

header, off, blobs = {}, 0, []
for name in sorted(new):
    dtype, shape, data = new[name]
    header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
    off += len(data)
    blobs.append(data)
hb = json.dumps(header).encode()
hb += b" " * (-len(hb) % 8)
shard = "model-mtp.safetensors"
with open(os.path.join(dst, shard), "wb") as f:
    f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))
for name in new:
    index["weight_map"][name] = shard
json.dump(index, open(index_path, "w"), indent=1)
cfg["num_nextn_predict_layers"] = 1
json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=1)
