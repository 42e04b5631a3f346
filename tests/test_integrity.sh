#!/bin/sh
# A damaged or tampered checkpoint is refused by name, never run: a flipped
# byte in a tensor's data (every read checks its chunks; --no-verify skips
# that), an edited config and a relinked tensor (the manifest), NaN in a norm
# and infinity in an FP8 block scale (load-time checks), all from shared/golden's
# tiny checkpoints. A NaN in a weight that reaches the logits stops the request
# with an error in generate, batch jobs and serve, never garbage tokens.
set -u
golden=${FURROW_SHARED:-}/golden
[ -n "${FURROW_SHARED:-}" ] && [ -d "$golden/tiny-a-bf16" ] || { echo "SKIP: no shared/golden"; exit 77; }
cd "$FURROW_TMP" || exit 1
furrow=$FURROW_BIN
tamper=$FURROW_BUILDDIR/tests/ckpt_tamper
fail=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }
gen() { # DIR [OPTIONS]: greedy tokens of a fixed prompt
  d=$1; shift
  timeout 120 "$furrow" generate --model "$d" --prompt-tokens 1,2,3,4 --max-tokens 4 "$@"
}
# refused NAME DIR NEEDLE...: generate fails and stderr holds every needle.
refused() {
  what=$1 d=$2; shift 2
  if gen "$d" > out.txt 2> err.txt; then bad "$what: generate ran ($(cat out.txt))"; return; fi
  for n in "$@"; do grep -qF -- "$n" err.txt || { cat err.txt; bad "$what: the message lacks '$n'"; return; }; done
  ok "$what: $(tail -n 1 err.txt | cut -c 1-160)"
}

"$furrow" convert --hf "$golden/tiny-a-bf16" --out good --quiet || { echo "FAIL: convert"; exit 1; }
gen good > good.txt 2> good.err || { cat good.err; bad "generate on the sound checkpoint"; }

cp -r good flip
layers=$(cd flip && ls layers-*.h5 | head -n 1)
"$tamper" flip "flip/$layers" /model/layers/0/self_attn/o_proj/weight || bad "ckpt_tamper flip"
refused "a flipped byte" flip corrupt model.layers.0.self_attn.o_proj.weight "$layers"
gen flip --no-verify > /dev/null 2>&1 && ok "--no-verify loads it" || bad "--no-verify refused it"
"$furrow" info --verify flip > info.txt 2>&1 && bad "info --verify passed a flipped byte" ||
  { grep -q "o_proj" info.txt && ok "info --verify names the tensor" || { cat info.txt; bad "info --verify message"; }; }

cp -r good config
"$tamper" config config '"rms_norm_eps": ' '"rms_norm_eps": 1e-2, "x": ' || bad "ckpt_tamper config"
refused "an edited config" config "manifest" furrow.h5
"$furrow" info --verify config > /dev/null 2>&1 && bad "info --verify passed an edited config" || ok "info --verify: edited config"

cp -r good relink
"$tamper" relink relink model.layers.0.mlp.gate_proj.weight model.layers.0.mlp.up_proj.weight || bad "ckpt_tamper relink"
refused "a relinked tensor" relink "manifest" furrow.h5

python3 "$FURROW_SRCDIR/tests/st_poison.py" "$golden/tiny-a-bf16" hf-norm model.norm.weight 3 nan &&
  "$furrow" convert --hf hf-norm --out norm --quiet || bad "convert with a NaN norm"
refused "NaN in a norm" norm model.norm.weight NaN "element 3"

python3 "$FURROW_SRCDIR/tests/st_poison.py" "$golden/tiny-a-fp8" hf-scale \
  model.layers.0.self_attn.o_proj.weight_scale_inv 0 inf &&
  "$furrow" convert --hf hf-scale --out scale --quiet || bad "convert with an infinite scale"
refused "an infinite FP8 scale" scale model.layers.0.self_attn.o_proj.weight_scale_inv infinity

# NaN in a weight (not checked at load: only norms, scales and the router bias
# are) makes one logit NaN at every step.
python3 "$FURROW_SRCDIR/tests/st_poison.py" "$golden/tiny-a-bf16" hf-head lm_head.weight 7 nan &&
  "$furrow" convert --hf hf-head --out head --quiet || bad "convert with a NaN in lm_head"
refused "non-finite logits (generate)" head "not finite" "sequence 0"
gen head --temperature 0.8 > /dev/null 2> err.txt && bad "sampled generate ran on NaN logits" ||
  { grep -q "not finite" err.txt && ok "non-finite logits (sampled)" || { cat err.txt; bad "sampled: message"; }; }

printf '%s\n' '{"id": "a", "prompt_tokens": [1, 2, 3], "max_tokens": 3}' \
  '{"id": "b", "prompt_tokens": [5, 6], "max_tokens": 3, "temperature": 0.7, "top_k": 20}' > in.jsonl
timeout 120 "$furrow" generate --model head --input in.jsonl --output out.jsonl 2> batch.err
python3 - <<'PYEOF' && ok "batch: each request's line is a 500 error" || { cat out.jsonl batch.err; bad "batch results"; }
import json
lines = [json.loads(l) for l in open("out.jsonl")]
assert sorted(d["id"] for d in lines) == ["a", "b"], lines
for d in lines:
    assert d["error"]["code"] == 500 and "not finite" in d["error"]["message"], d
    assert "tokens" not in d and "text" not in d, d
PYEOF

rm -f port
timeout 120 "$furrow" serve --model head --port 0 --port-file port > serve.log 2>&1 &
job=$!
i=0
while [ ! -s port ] && [ $i -lt 300 ] && kill -0 $job 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
if [ -s port ]; then
  url=http://127.0.0.1:$(cat port)
  code=$(curl -s -o c.json -w '%{http_code}' "$url/v1/completions" -d '{"prompt": [1, 2, 3], "max_tokens": 4}')
  [ "$code" = 500 ] && grep -q "not finite" c.json && ok "serve: 500 with the reason" || { cat c.json; bad "serve answered $code"; }
  curl -sN "$url/v1/completions" -d '{"prompt": [1, 2], "max_tokens": 4, "stream": true}' > s.txt
  grep -q '"code":500' s.txt && grep -q "not finite" s.txt && ok "serve: the stream ends with the error" ||
    { cat s.txt; bad "serve stream"; }
  [ "$(curl -s "$url/health")" = '{"status":"ok"}' ] && ok "serve: still healthy" || bad "serve: /health after the errors"
else
  cat serve.log; bad "the server did not start"
fi
kill $job 2>/dev/null; wait $job 2>/dev/null
exit $fail
