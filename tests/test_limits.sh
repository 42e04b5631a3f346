#!/bin/sh
# Request sizes against the machine and the model: a KV cache larger than the
# machine's memory is refused by the numbers before anything is allocated
# (serve and generate); a context beyond max_position_embeddings is run with a
# warning, one within it without.
set -u
cd "$FURROW_TMP" || exit 1
fail=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }
"$FURROW_BIN" synth --out model --preset tiny --quiet || { echo "FAIL: synth"; exit 1; }

timeout 60 "$FURROW_BIN" serve --model model --port 0 --max-context 1000000000 > /dev/null 2> serve.err &&
  bad "serve with a 1e9-position context started" ||
  { grep -q "more than this machine's .* GiB of memory: lower --max-context" serve.err &&
      ok "serve: $(cat serve.err)" || { cat serve.err; bad "serve: message"; }; }
timeout 60 "$FURROW_BIN" generate --model model --prompt-tokens 1 --max-tokens 1000000000 > /dev/null 2> gen.err &&
  bad "generate with 1e9 tokens to go started" ||
  { grep -q "more than this machine's" gen.err && ok "generate: refused by the numbers" || { cat gen.err; bad "generate: message"; }; }

# The tiny model's max_position_embeddings is 256.
"$FURROW_BIN" generate --model model --prompt-tokens 1,2 --max-tokens 300 > /dev/null 2> long.err || { cat long.err; bad "generate 302 positions"; }
grep -q "302 positions.*max_position_embeddings 256" long.err && ok "a warning past max_position_embeddings" ||
  { cat long.err; bad "no warning past max_position_embeddings"; }
"$FURROW_BIN" generate --model model --prompt-tokens 1,2 --max-tokens 20 > /dev/null 2> short.err || bad "generate 22 positions"
grep -q "max_position_embeddings" short.err && bad "a warning within max_position_embeddings" || ok "no warning within it"
exit $fail
