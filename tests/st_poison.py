"""Copies a Hugging Face checkpoint folder and sets one element of one tensor
(BF16 or F32) to a value such as nan or inf, for the integrity tests:
    python3 st_poison.py SRC DST TENSOR INDEX VALUE"""
import json
import os
import shutil
import struct
import sys

src, dst, name, index, value = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
shutil.copytree(src, dst)
shard = json.load(open(os.path.join(dst, "model.safetensors.index.json")))["weight_map"][name]
path = os.path.join(dst, shard)
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    t = json.loads(f.read(n))[name]
    bits = struct.pack("<f", value)
    size, data = {"F32": (4, bits), "BF16": (2, bits[2:])}[t["dtype"]]
    f.seek(8 + n + t["data_offsets"][0] + index * size)
    f.write(data)
