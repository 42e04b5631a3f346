#!/bin/sh
# Text in, text out: generate --prompt / --chat on a synthetic model carrying the
# shipped DeepSeek-V3 tokenizer equals tokenize -> generate ids -> detokenize, on
# one rank and on two; bad prompts and engine flags are refused with a message.
set -u
. "$FURROW_SRCDIR/tests/mpi.sh"
fail=0
model=$FURROW_TMP/model
"$FURROW_BIN" synth --out "$model" --preset tiny --quiet || { echo "FAIL: synth"; exit 1; }
[ -f "$model/tokenizer.json" ] || { echo "FAIL: synth did not ship the tokenizer"; exit 1; }
vocab=2048
text="Bonjour, le monde! 東京は晴れ。 3.14159"

# The ids generate should see: BOS + the text's ids, modulo the small vocabulary.
ids=$("$FURROW_BIN" tokenize --model "$model" --add-special "$text" | tr -d '[] ' |
      awk -v V=$vocab -F, '{for (i = 1; i <= NF; i++) printf "%s%d", (i > 1 ? "," : ""), $i % V}')
gen_ids=$("$FURROW_BIN" generate --model "$model" --prompt-tokens "$ids" --max-tokens 24 --ignore-eos 2>/dev/null | tr -d '[] ')
expected=$("$FURROW_BIN" detokenize --model "$model" --skip-special "$gen_ids")
got=$("$FURROW_BIN" generate --model "$model" --prompt "$text" --max-tokens 24 --ignore-eos 2>/dev/null)
if [ -n "$gen_ids" ] && [ "$got" = "$expected" ]; then echo "ok: --prompt text equals detokenize(generate(ids))"
else echo "FAIL: --prompt gave '$got', expected '$expected' (ids $gen_ids)"; fail=1; fi
got2=$(fw_mpirun 120 2 "$FURROW_BIN" generate --model "$model" --prompt "$text" --max-tokens 24 --ignore-eos --tp 2 2>/dev/null)
[ "$got2" = "$got" ] && echo "ok: the same text on tp 2" || { echo "FAIL: tp 2 gave '$got2'"; fail=1; }

# A chat: the rendered conversation's ids, then the same equality.
chat='[{"role":"system","content":"Be brief."},{"role":"user","content":"Quelle heure est-il ?"}]'
cids=$("$FURROW_BIN" tokenize --model "$model" --chat "$chat" --generation-prompt | tr -d '[] ' |
       awk -v V=$vocab -F, '{for (i = 1; i <= NF; i++) printf "%s%d", (i > 1 ? "," : ""), $i % V}')
cgen=$("$FURROW_BIN" generate --model "$model" --prompt-tokens "$cids" --max-tokens 16 --ignore-eos 2>/dev/null | tr -d '[] ')
cexp=$("$FURROW_BIN" detokenize --model "$model" --skip-special "$cgen")
cgot=$("$FURROW_BIN" generate --model "$model" --chat "$chat" --max-tokens 16 --ignore-eos 2>/dev/null)
if [ -n "$cgen" ] && [ "$cgot" = "$cexp" ]; then echo "ok: --chat text equals detokenize(generate(chat ids))"
else echo "FAIL: --chat gave '$cgot', expected '$cexp'"; fail=1; fi

# Refusals: each exits 1 with the reason on stderr.
refuse() { # TEXT-EXPECTED ARGS...
  want=$1; shift
  "$FURROW_BIN" generate --model "$model" --max-tokens 4 "$@" > /dev/null 2> "$FURROW_TMP/err"
  rc=$?
  if [ $rc -eq 1 ] && grep -q "$want" "$FURROW_TMP/err"; then echo "ok: refused: $want"
  else echo "FAIL: expected exit 1 and '$want', got $rc: $(cat "$FURROW_TMP/err")"; fail=1; fi
}
refuse "not valid UTF-8" --prompt "$(printf 'ab\377cd')"
refuse "unknown role 'critic'" --chat '[{"role":"critic","content":"42"}]'
mkdir -p "$FURROW_TMP/none" && "$FURROW_BIN" synth --out "$FURROW_TMP/none/m" --tokenizer none --quiet &&
  refuse "no usable tokenizer" --prompt "hi" --model "$FURROW_TMP/none/m"

# The engine's flags: a bad value is a usage error (exit 2) naming the flag; the
# reference kernels give a text too.
usage() { # TEXT-EXPECTED ARGS...
  want=$1; shift
  "$FURROW_BIN" generate --model "$model" --prompt-tokens 1,2 --max-tokens 2 "$@" > /dev/null 2> "$FURROW_TMP/err"
  rc=$?
  if [ $rc -eq 2 ] && grep -q -- "$want" "$FURROW_TMP/err"; then echo "ok: usage error: $want"
  else echo "FAIL: expected exit 2 and '$want', got $rc: $(cat "$FURROW_TMP/err")"; fail=1; fi
}
usage "--cuda-graphs: expected on or off" --cuda-graphs maybe
usage "--cuda-streams: 3 is out of range" --cuda-streams 3
usage "--collective-timeout: 0 is not a positive number" --collective-timeout 0
usage "--kernels: expected 'fast', 'avx512', 'avx2', 'generic' or 'ref'" --kernels slow
usage "--temperature: 'nan' is not a finite number" --temperature nan
usage "--top-p: 'inf' is not a finite number" --top-p inf
usage "--top-p must be in (0, 1]" --top-p 0
got_ref=$("$FURROW_BIN" generate --model "$model" --prompt "$text" --max-tokens 8 --ignore-eos --kernels ref 2>/dev/null)
[ -n "$got_ref" ] && echo "ok: --kernels ref generates" || { echo "FAIL: --kernels ref gave nothing"; fail=1; }
exit $fail
