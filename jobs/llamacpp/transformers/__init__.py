"""The two names of Hugging Face transformers that llama.cpp's convert_hf_to_gguf.py
uses on a DeepSeek-V3 checkpoint, for machines without that package (Debian ships
none), put first on PYTHONPATH by jobs/bench_llamacpp.sh:

- AutoConfig.from_pretrained fails, so the converter reads config.json itself
  (its own fallback);
- AutoTokenizer.from_pretrained gives tokenizer.json's vocabulary and added tokens,
  and encodes with `furrow tokenize` ($FURROW_BIN), whose ids are Hugging Face's
  (tests/test_tokenize_cli.sh); the converter hashes one encoding to recognise the
  pre-tokenizer, so a wrong encoder fails the conversion rather than passing.

Debian's torch (1.13) predates the float8 dtypes, which the converter names in its
tables of safetensors types: they are aliased to uint8, the same size, for a BF16
checkpoint that holds none."""
import json
import os
import subprocess

import torch

for _name in ("float8_e4m3fn", "float8_e5m2"):
    if not hasattr(torch, _name):
        setattr(torch, _name, torch.uint8)


class AutoConfig:
    @staticmethod
    def from_pretrained(path, **kwargs):
        raise OSError("no transformers package: the converter reads config.json")


class _Added:
    def __init__(self, d):
        self.content = d["content"]
        self.special = d.get("special", False)
        self.normalized = d.get("normalized", False)


class _Tokenizer:
    def __init__(self, path):
        self.path = path
        with open(os.path.join(path, "tokenizer.json"), encoding="utf-8") as f:
            tj = json.load(f)
        self.vocab = dict(tj["model"]["vocab"])
        self.added_tokens_decoder = {}
        for d in tj.get("added_tokens", []):
            self.vocab[d["content"]] = d["id"]
            self.added_tokens_decoder[d["id"]] = _Added(d)
        self._pieces = {i: t for t, i in self.vocab.items()}

    def get_added_vocab(self):
        return {a.content: i for i, a in self.added_tokens_decoder.items()}

    def encode(self, text, add_special_tokens=True):
        cmd = [os.environ.get("FURROW_BIN", "furrow"), "tokenize", "--tokenizer",
               os.path.join(self.path, "tokenizer.json"), text]
        if add_special_tokens:
            cmd.append("--add-special")
        return json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout)

    def decode(self, ids):
        """The pieces joined (the converter decodes only added tokens, whose piece is their text)."""
        return "".join(self._pieces[i] for i in ids)


class AutoTokenizer:
    @staticmethod
    def from_pretrained(path, **kwargs):
        return _Tokenizer(str(path))
