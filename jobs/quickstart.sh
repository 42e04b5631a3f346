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
echo "== greedy generation (random weights: the ids mean nothing, the path is the real one)"
./furrow generate --model "$model" --prompt-tokens 0,1034,562,99,1800 --max-tokens 24
