"""Copies a Hugging Face checkpoint folder and damages one tensor of it, for the
convert tests (each edit keeps the shard a valid safetensors file):
    python3 st_edit.py SRC DST drop TENSOR           remove it (and its index entry)
    python3 st_edit.py SRC DST reshape TENSOR R,C    new shape, data cut or zero-padded
    python3 st_edit.py SRC DST set TENSOR I VALUE    element I of an I64/I32 tensor
    python3 st_edit.py SRC DST retype TENSOR DTYPE   another dtype, same shape, data cut or zero-padded"""
import json
import os
import shutil
import struct
import sys

src, dst, op, name = sys.argv[1:5]
shutil.copytree(src, dst)
for f in os.listdir(dst):  # the golden files are read-only
    os.chmod(os.path.join(dst, f), 0o644)
index_path = os.path.join(dst, "model.safetensors.index.json")
index = json.load(open(index_path))
path = os.path.join(dst, index["weight_map"][name])
SIZE = {"BF16": 2, "F16": 2, "F32": 4, "I32": 4, "I64": 8, "F8_E4M3": 1}

with open(path, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()

meta = header.pop("__metadata__", None)
tensors = {k: data[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in header.items()}
if op == "drop":
    del header[name], tensors[name]
    del index["weight_map"][name]
elif op == "reshape":
    shape = [int(x) for x in sys.argv[5].split(",")]
    nbytes = SIZE[header[name]["dtype"]]
    for d in shape:
        nbytes *= d
    header[name]["shape"] = shape
    tensors[name] = tensors[name][:nbytes].ljust(nbytes, b"\0")
elif op == "set":
    i, value = int(sys.argv[5]), int(sys.argv[6])
    fmt = {"I64": "<q", "I32": "<i"}[header[name]["dtype"]]
    b = bytearray(tensors[name])
    struct.pack_into(fmt, b, i * struct.calcsize(fmt), value)
    tensors[name] = bytes(b)
elif op == "retype":
    nbytes = len(tensors[name]) // SIZE[header[name]["dtype"]] * SIZE[sys.argv[5]]
    header[name]["dtype"] = sys.argv[5]
    tensors[name] = tensors[name][:nbytes].ljust(nbytes, b"\0")
else:
    sys.exit("unknown edit " + op)

out, off = [], 0
for k in header:
    header[k]["data_offsets"] = [off, off + len(tensors[k])]
    off += len(tensors[k])
    out.append(tensors[k])
if meta is not None:
    header["__metadata__"] = meta
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(out))
json.dump(index, open(index_path, "w"))
