#!/bin/sh
# furrow beside llama.cpp on the same model and cores: a random DeepSeek-V3-geometry
# model of about 0.5B parameters in Hugging Face layout (jobs/make_hf_model.py),
# converted by `furrow convert` (BF16, --quantize int8, int4 at groups 32 and 128;
# each quantized form also with ',head', the output head quantized too) and by
# llama.cpp's convert_hf_to_gguf.py + llama-quantize (Q8_0 and Q4_0 with its default
# output head, Q8_0 and Q6_K; each also with a BF16 output head, as furrow's quantizer
# leaves it by default). Prefill of 512 tokens and
# batch-1 decode of 128 after them, one engine after the other in each round (the machine's
# speed varies: the best and the median of the rounds), then a markdown table with the
# decode bytes per token and the read bandwidth `furrow bench` measured in the same
# round (for llama.cpp's rows, that of the round's last furrow run).
#
# usage: jobs/bench_llamacpp.sh LLAMA_DIR [--work DIR] [--threads N] [--rounds R]
#   LLAMA_DIR   a llama.cpp checkout built with cmake (build/bin/llama-bench and
#               llama-quantize); its converter needs numpy and torch (Debian's
#               python3-numpy, python3-torch); jobs/llamacpp stands in for the
#               transformers package it imports
#   --work DIR  models and logs (default tmp/llamacpp; models are kept between runs)
#   --threads N threads for both engines (default 2)
#   --rounds R  rounds of measurements (default 3)
#   --specs "S..."  furrow's weights only these (bf16, int8, int8,head, int4,group=32, ...;
#               default all)
#   --gguf "G..."   llama.cpp's only these (bf16, Q8_0, Q8_0-bf16head, Q4_0,
#               Q4_0-bf16head; default all)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
[ $# -ge 1 ] || { sed -n '2,25p' "$0"; exit 2; }
llama=$(cd "$1" && pwd)
shift
work=$repo/tmp/llamacpp threads=2 rounds=3
specs="bf16 int8 int8,head int4,group=32 int4,group=32,head int4,group=128 int4,group=128,head"
ggufs="Q8_0 Q8_0-bf16head Q4_0 Q4_0-bf16head bf16"
while [ $# -gt 0 ]; do
    case $1 in
    --work) work=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --specs) specs=$2; shift 2 ;;
    --gguf) ggufs=$2; shift 2 ;;
    *) echo "bench_llamacpp: unknown argument $1" >&2; exit 2 ;;
    esac
done
furrow=${FURROW_BIN:-$repo/furrow}
bin=$llama/build/bin
# A python with numpy and torch (the converter's imports).
py=
for p in python3 /usr/bin/python3; do
    if "$p" -c 'import numpy, torch' 2>/dev/null; then py=$p; break; fi
done
[ -n "$py" ] || { echo "bench_llamacpp: no python3 with numpy and torch (apt-get install python3-numpy python3-torch)" >&2; exit 1; }
mkdir -p "$work"
cd "$work"

[ -f hf/config.json ] || "$py" "$repo/jobs/make_hf_model.py" --out hf
for spec in $specs; do
    d=furrow-$(echo "$spec" | tr ',=' '--')
    [ -f "$d/furrow.h5" ] && continue
    rm -rf "$d"
    if [ "$spec" = bf16 ]; then "$furrow" convert --hf hf --out "$d" -q
    else "$furrow" convert --hf hf --out "$d" --quantize "$spec" -q; fi
done
if [ ! -f bf16.gguf ]; then
    FURROW_BIN=$furrow PYTHONPATH=$repo/jobs/llamacpp:$llama/gguf-py \
        "$py" "$llama/convert_hf_to_gguf.py" hf --outfile bf16.gguf --outtype bf16 > convert.log 2>&1 ||
        { tail -20 convert.log >&2; exit 1; }
fi
for q in Q8_0 Q4_0; do
    case " $ggufs " in *" $q "*) [ -f "$q.gguf" ] || "$bin/llama-quantize" bf16.gguf "$q.gguf" "$q" "$threads" > "quantize-$q.log" 2>&1 ;; esac
    case " $ggufs " in *" $q-bf16head "*) [ -f "$q-bf16head.gguf" ] || "$bin/llama-quantize" --output-tensor-type bf16 \
        bf16.gguf "$q-bf16head.gguf" "$q" "$threads" > "quantize-$q-bf16head.log" 2>&1 ;; esac
done

# Bytes a batch-1 decode step reads from a GGUF: every tensor but the embedding, the
# routed experts' at top_k / n_experts of their size.
gguf_step_mb() {
    PYTHONPATH=$llama/gguf-py "$py" - "$1" <<'EOF'
import sys
from gguf import GGUFReader
r = GGUFReader(sys.argv[1])
kv = {f.name: f.parts[f.data[0]][0] for f in r.fields.values() if len(f.data) == 1 and f.name.endswith(("expert_count", "expert_used_count"))}
E = next(int(v) for k, v in kv.items() if k.endswith(".expert_count"))
K = next(int(v) for k, v in kv.items() if k.endswith(".expert_used_count"))
b = sum(t.n_bytes * (K / E if "_exps" in t.name else 1) for t in r.tensors if t.name != "token_embd.weight")
print(f"{b / 1e6:.1f}")
EOF
}

: > results.txt
for r in $(seq "$rounds"); do
    for spec in $specs; do
        m=furrow-$(echo "$spec" | tr ',=' '--')
        OMP_NUM_THREADS=$threads "$furrow" bench --model "$m" --prompt 512 --decode 128 > "$m.log" 2>&1
        f=$(grep '^figures' "$m.log")
        get() { echo "$f" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
        read_gbs=$(sed -n 's/^machine .* read \([0-9.]*\) GB\/s.*/\1/p' "$m.log")
        mb=$(sed -n 's/^decode .* \([0-9.]*\) MB streamed per token.*/\1/p' "$m.log")
        echo "$m $(get prefill_tok_s) $(get decode_tok_s) $mb $read_gbs" >> results.txt
    done
    for g in $ggufs; do
        # Decode after a 512-token context (-d), as furrow bench decodes after its prompt.
        "$bin/llama-bench" -m "$g.gguf" -p 512 -n 0 -t "$threads" -r 1 -o csv > "llama-$g-pp.csv" 2> "llama-$g.log"
        "$bin/llama-bench" -m "$g.gguf" -p 0 -n 128 -d 512 -t "$threads" -r 1 -o csv > "llama-$g-tg.csv" 2>> "llama-$g.log"
        pp=$(tail -1 "llama-$g-pp.csv" | tr -d '"' | awk -F, '{print $(NF-1)}')
        tg=$(tail -1 "llama-$g-tg.csv" | tr -d '"' | awk -F, '{print $(NF-1)}')
        # llama-bench measures no bandwidth: the read ceiling of this round's last furrow run.
        echo "llama-$g $pp $tg $(gguf_step_mb "$g.gguf") $read_gbs" >> results.txt
    done
done

# Median of the rounds per configuration.
# Best and median of the rounds: on a shared machine other work only slows a run,
# so the best is the engine's speed; the median shows how much the rounds agreed.
echo "| engine, weights | prefill 512 (tok/s, best / median) | decode (tok/s, best / median) | MB read per decoded token | best decode GB/s | read ceiling (GB/s) | % of it |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
awk '{ n[$1]++; p[$1, n[$1]] = $2; d[$1, n[$1]] = $3; mb[$1] = $4; rd[$1, n[$1]] = $5 }
function sorted(a, k, c, v,    i, j, t) { for (i = 1; i <= c; i++) v[i] = a[k, i];
    for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t } }
function med(a, k, c,    v) { sorted(a, k, c, v); return v[int((c + 1) / 2)] }
function best(a, k, c,    v) { sorted(a, k, c, v); return v[c] }
END { for (k in n) { c = n[k]; db = best(d, k, c); r = med(rd, k, c); g = db * mb[k] / 1000;
    printf "| %s | %.0f / %.0f | %.1f / %.1f | %s | %.1f | %.1f | %.0f%% |\n", k, best(p, k, c), med(p, k, c), db,
        med(d, k, c), mb[k], g, r, 100 * g / r } }' results.txt | sort
