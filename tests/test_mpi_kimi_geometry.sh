#!/bin/sh
# Geometry that differs from DeepSeek-V3's, as Kimi-K2 has it: 384 routed experts
# (top 8), 64 heads, one expert group (n_group 1, topk_group 1: no group-limited
# routing), a dense first layer, routed_scaling_factor 2.827. A tiny synthetic model
# of that shape must give one rank's logits and greedy tokens on tp 8 (8 heads
# and 48 experts per rank) and tp 2 x pp 2, and the fast kernels the reference's
# logits. A second model with 382 experts splits them unevenly over tp 4 (95 or
# 96 per rank).
set -u
. "$FURROW_SRCDIR/tests/mpi.sh"
fail=0
dir=$FURROW_TMP
tokens=0,5,100,2000,17,3,44,1023,512,7,8,9,1999,64
prompt=0,5,100,2000,17,3,44
tol=1e-5

# config.json of the tiny Kimi-like model (E experts).
kimi_config() {
  cat <<JSON
{"architectures": ["DeepseekV3ForCausalLM"], "model_type": "kimi_k2",
 "vocab_size": 2048, "hidden_size": 128, "intermediate_size": 256, "moe_intermediate_size": 32,
 "num_hidden_layers": 2, "first_k_dense_replace": 1, "moe_layer_freq": 1, "num_nextn_predict_layers": 0,
 "num_attention_heads": 64, "num_key_value_heads": 64,
 "n_routed_experts": $1, "num_experts_per_tok": 8, "n_shared_experts": 1, "n_group": 1, "topk_group": 1,
 "routed_scaling_factor": 2.827, "norm_topk_prob": true, "scoring_func": "sigmoid", "topk_method": "noaux_tc",
 "q_lora_rank": 64, "kv_lora_rank": 32, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 8,
 "hidden_act": "silu", "rms_norm_eps": 1e-05, "rope_theta": 50000.0, "max_position_embeddings": 256,
 "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
                  "beta_fast": 1.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0},
 "tie_word_embeddings": false, "bos_token_id": 0, "eos_token_id": 1}
JSON
}

# same NAME A B: A and B are equal, else a failure naming what differs.
same() {
  if [ "$2" = "$3" ] && [ -n "$2" ]; then echo "ok: $1"; else echo "FAIL: $1: '$3', one rank gives '$2'"; fail=1; fi
}

# check MODEL NP TP PP [gen]: logits within tol of one rank's, and with "gen" the
# same greedy tokens.
check() {
  m=$1 np=$2 tp=$3 pp=$4 what="$(basename "$1") tp$3 x pp$4"
  out=$dir/$(basename "$m")_${tp}_$pp.h5
  if ! fw_mpirun 60 "$np" "$FURROW_BIN" logits --model "$m" --tokens $tokens --out "$out" --tp "$tp" --pp "$pp" \
       --pp-transport mpi 2>"$out.err"; then
    cat "$out.err"; echo "FAIL: $what: logits run"; fail=1; return
  fi
  if h5diff -d $tol "$m.ref.h5" "$out" /logits /logits >/dev/null; then echo "ok: $what: logits equal one rank's"
  else echo "FAIL: $what: logits differ from one rank's by more than $tol"; fail=1; fi
  [ "${5:-}" = gen ] || return
  gen=$(fw_mpirun 60 "$np" "$FURROW_BIN" generate --model "$m" --prompt-tokens $prompt --max-tokens 8 --ignore-eos \
        --tp "$tp" --pp "$pp" --pp-transport mpi 2>/dev/null)
  same "$what: greedy tokens" "$(cat "$m.gen" 2>/dev/null)" "$gen"
}

# One rank's logits of MODEL, and with "gen" its greedy tokens.
reference() {
  m=$1
  fw_mpirun 60 1 "$FURROW_BIN" logits --model "$m" --tokens $tokens --out "$m.ref.h5" 2>"$m.err" ||
    { cat "$m.err"; echo "FAIL: $(basename "$m"): one rank's logits"; exit 1; }
  [ "${2:-}" = gen ] || return 0
  "$FURROW_BIN" generate --model "$m" --prompt-tokens $prompt --max-tokens 8 --ignore-eos >"$m.gen" 2>"$m.err" &&
    [ -s "$m.gen" ] || { cat "$m.err"; echo "FAIL: $(basename "$m"): one rank's tokens"; exit 1; }
}

for E in 384 382; do
  kimi_config $E >"$dir/kimi$E.json"
  "$FURROW_BIN" synth --config "$dir/kimi$E.json" --out "$dir/kimi$E" --tokenizer none --quiet ||
    { echo "FAIL: synth of the $E-expert model"; exit 1; }
done
m=$dir/kimi384
"$FURROW_BIN" info "$m" >"$dir/info" 2>&1 || { cat "$dir/info"; echo "FAIL: info"; fail=1; }
grep -q "384 routed, top-8 (1 groups, top-1)" "$dir/info" || { cat "$dir/info"; echo "FAIL: info: not 384 experts in 1 group"; fail=1; }
reference "$m" gen
# Routing over 384 experts in one group: the fast kernels pick what the reference picks.
fw_mpirun 60 1 "$FURROW_BIN" logits --model "$m" --tokens $tokens --out "$dir/kref.h5" --kernels ref 2>"$dir/kref.err" ||
  { cat "$dir/kref.err"; echo "FAIL: --kernels ref"; fail=1; }
if h5diff -d 1e-4 "$m.ref.h5" "$dir/kref.h5" /logits /logits >/dev/null; then echo "ok: fast kernels equal the reference's"
else echo "FAIL: fast and reference kernels differ by more than 1e-4"; fail=1; fi
check "$m" 8 8 1 gen
check "$m" 4 2 2 gen

m=$dir/kimi382
reference "$m"
check "$m" 4 4 1
exit $fail
