#!/bin/sh
# furrow tokenize / detokenize through the binary: a few strings against the
# golden ids, round trips, --chat, --model DIR, --bench, and the error paths
# (exit 1 with "furrow tokenize: <message>", exit 2 for usage errors).
set -u
tok=${FURROW_SHARED:-}/tokenizer/deepseek-v3/tokenizer.json
if [ -z "${FURROW_SHARED:-}" ] || [ ! -f "$tok" ]; then
  echo "SKIP: the DeepSeek-V3 tokenizer is not in \$FURROW_SHARED"; exit 77
fi
F=$FURROW_BIN
tmp=${FURROW_TMP:-/tmp}
fail=0

same() { # name got want
  if [ "$2" = "$3" ]; then echo "ok   $1"; else echo "FAIL $1: got '$2', want '$3'"; fail=1; fi
}
# name want_status want_in_stderr command...
refused() {
  name=$1 want=$2 msg=$3; shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"; st=$?
  if [ "$st" -ne "$want" ] || ! grep -qF -- "$msg" "$tmp/err"; then
    echo "FAIL $name: exit $st (want $want), stderr: $(cat "$tmp/err")"; fail=1
  else
    echo "ok   $name: $(head -1 "$tmp/err")"
  fi
}

same "tokenize ascii" "$($F tokenize --tokenizer "$tok" 'Hello, world!')" "[19923, 14, 2058, 3]"
same "tokenize chinese" "$($F tokenize --tokenizer "$tok" '深度求索发布了新的大语言模型。')" \
  "[17180, 1645, 4568, 53961, 1043, 5209, 7831, 8842, 320]"
same "detokenize" "$($F detokenize --tokenizer "$tok" 17180,1645,4568,53961,1043,5209,7831,8842,320)" \
  "深度求索发布了新的大语言模型。"
text='Emoji 😀🚀 and  spaces, 12345 <｜User｜> mixed 東京'
ids=$($F tokenize --tokenizer "$tok" "$text")
same "round trip (JSON array in)" "$($F detokenize --tokenizer "$tok" "$ids")" "$text"
same "add-special" "$($F tokenize --tokenizer "$tok" --add-special 'Hello, world!')" "[0, 19923, 14, 2058, 3]"
same "skip-special" "$($F detokenize --tokenizer "$tok" --skip-special 0,19923,14,2058,3,1)" "Hello, world!"
same "chat" "$($F tokenize --tokenizer "$tok" --chat --generation-prompt '[{"role":"user","content":"Hello!"}]')" \
  "[0, 128803, 19923, 3, 128804]"
same "chat render" "$($F tokenize --tokenizer "$tok" --chat --render '[{"role":"system","content":"S"},{"role":"user","content":"Hi"}]')" \
  "<｜begin▁of▁sentence｜>S<｜User｜>Hi"

# --model DIR: a checkpoint directory holds the tokenizer files beside furrow.h5
mkdir -p "$tmp/model"
cp "$tok" "$FURROW_SHARED/tokenizer/deepseek-v3/tokenizer_config.json" "$tmp/model/"
same "--model" "$($F tokenize --model "$tmp/model" --add-special 'Hello, world!')" "[0, 19923, 14, 2058, 3]"

# --file and --chunk: pieces of at most 12 bytes, cut after the last newline in
# each: "line one\n", "line two\n\n", "第三行\n"
printf 'line one\nline two\n\n第三行\n' >"$tmp/text.txt"
strip() { echo "$1" | tr -d '[]'; }
want="[$(strip "$($F tokenize --tokenizer "$tok" 'line one
')"), $(strip "$($F tokenize --tokenizer "$tok" 'line two

')"), $(strip "$($F tokenize --tokenizer "$tok" '第三行
')")]"
same "--file --chunk" "$($F tokenize --tokenizer "$tok" --file "$tmp/text.txt" --chunk 12)" "$want"
same "--file" "$($F tokenize --tokenizer "$tok" --file "$tmp/text.txt")" \
  "$($F tokenize --tokenizer "$tok" "$(cat "$tmp/text.txt")
")"
out=$($F tokenize --tokenizer "$tok" --file "$tmp/text.txt" --bench)
case "$out" in *MB/s*) echo "ok   --bench: $out" ;; *) echo "FAIL --bench: $out"; fail=1 ;; esac

# errors
printf 'abc\377def' >"$tmp/bad.txt"
refused "invalid UTF-8" 1 "furrow tokenize: tokenizer: the text is not valid UTF-8 (byte 0xff at offset 3)" \
  $F tokenize --tokenizer "$tok" --file "$tmp/bad.txt"
refused "missing tokenizer" 1 "furrow tokenize: $tmp/nope.json" $F tokenize --tokenizer "$tmp/nope.json" x
refused "tool output without content" 1 "message 0 (tool): content is missing or null" \
  $F tokenize --tokenizer "$tok" --chat '[{"role":"tool"}]'
same "chat v3.1 thinking" "$($F tokenize --tokenizer "$tok" --chat --render --generation-prompt --chat-format v3.1 --thinking '[{"role":"user","content":"hi"}]')" \
  "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜><think>"
same "chat v3.2" "$($F tokenize --tokenizer "$tok" --chat --render --chat-format v3.2 '[{"role":"user","content":"hi"}]')" \
  "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜></think>"
same "tool conversation" "$($F tokenize --tokenizer "$tok" --chat --render '[{"role":"user","content":"u"},{"role":"assistant","content":null,"tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","content":"42"}]')" \
  "<｜begin▁of▁sentence｜><｜User｜>u<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f
\`\`\`json
{}
\`\`\`<｜tool▁call▁end｜><｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>42<｜tool▁output▁end｜><｜tool▁outputs▁end｜>"
refused "no tokenizer" 2 "give one of --model and --tokenizer" $F tokenize hello
refused "two texts" 2 "give the text as one argument" $F tokenize --tokenizer "$tok" a b
refused "bad ids" 2 "furrow detokenize:" $F detokenize --tokenizer "$tok" 5,x
refused "id without token" 1 "token id 128900 has no token" $F detokenize --tokenizer "$tok" 5,128900
$F tokenize --help >/dev/null && $F detokenize --help >/dev/null && echo "ok   --help" || { echo "FAIL --help"; fail=1; }
exit $fail
