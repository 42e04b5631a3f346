#!/bin/bash
# The README's quick start: install and build (jobs/setup.sh), write a small
# DeepSeek-V3-architecture model with RANDOM weights, inspect it, and generate.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs/setup.sh
model=${FURROW_QUICKSTART_MODEL:-models/tiny-random}
rm -rf "$model"
./furrow synth --preset tiny --out "$model"
./furrow info "$model" --verify
echo "== greedy generation (RANDOM weights: the text means nothing; tokenizer, model and decode are the real ones)"
./furrow generate --model "$model" --prompt "The capital of France is" --max-tokens 24
./furrow generate --model "$model" --chat '[{"role":"user","content":"Hello!"}]' --max-tokens 16
