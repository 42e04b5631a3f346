"""safe_open, the one name of the safetensors package that older llama.cpp converters
import (run with --no-lazy: keys() and get_tensor()), for machines without that
package (Debian ships none): the header is JSON after its 8-byte length, each tensor
a byte range of the file, returned as a torch tensor of its dtype."""
import json
import struct

import numpy as np
import torch

# safetensors dtype -> (numpy dtype of the same size, torch dtype to view it as)
_DTYPES = {
    "BF16": (np.int16, torch.bfloat16),
    "F16": (np.float16, torch.float16),
    "F32": (np.float32, torch.float32),
    "I32": (np.int32, torch.int32),
    "I64": (np.int64, torch.int64),
    "U8": (np.uint8, torch.uint8),
}


class safe_open:
    def __init__(self, path, framework="pt", device="cpu"):
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            self._header = json.loads(f.read(n))
        self._meta = self._header.pop("__metadata__", {})
        self._data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def keys(self):
        return list(self._header.keys())

    def metadata(self):
        return self._meta

    def get_tensor(self, name):
        h = self._header[name]
        if h["dtype"] not in _DTYPES:
            raise TypeError(f"{name}: safetensors dtype {h['dtype']} is not handled by this stand-in")
        np_type, torch_type = _DTYPES[h["dtype"]]
        a, b = h["data_offsets"]
        raw = np.array(self._data[a:b]).view(np_type).reshape(h["shape"])
        t = torch.from_numpy(raw)
        return t.view(torch_type) if torch_type == torch.bfloat16 else t
