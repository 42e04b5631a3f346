#!/bin/sh
# Full disks and special files, on small tmpfs file systems mounted here (root
# only): convert fails at several points (a tensor, the root file, the tokenizer
# copy) with "No space left" and what it was writing, no crash, nothing left;
# a rerun into room succeeds and verifies, also after a convert killed mid-way;
# logits --out leaves no file; a batch job keeps whole lines. A FIFO as
# config.json, a shard, a data file, a batch input or a text file is refused by
# name at once.
set -u
golden=${FURROW_SHARED:-}/golden
[ -n "${FURROW_SHARED:-}" ] && [ -d "$golden/tiny-a-bf16" ] || { echo "SKIP: no shared/golden"; exit 77; }
T=$FURROW_TMP
furrow=$FURROW_BIN
fail=0
bad() { echo "FAIL: $*"; fail=1; }
m=$T/mnt
mkdir -p "$m"
mount -t tmpfs -o size=1m tmpfs "$m" 2>/dev/null || { echo "SKIP: cannot mount tmpfs (not root?)"; exit 77; }
umount "$m"
trap 'umount "$m" 2>/dev/null' EXIT INT TERM
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}

# The golden shards with a 3 MB tokenizer.json, copied after the tensors.
hf=$T/hf
mkdir -p "$hf" && ln -s "$golden"/tiny-a-bf16/* "$hf"/
{ printf '{"pad": "'; head -c 3000000 /dev/zero | tr '\0' x; printf '"}\n'; } > "$hf/tokenizer.json"

crashed() { grep -q -e 'AddressSanitizer' -e 'Segmentation' -e 'runtime error' "$1"; }

full() {  # label, tmpfs size, hf dir, text the message must name
  mount -t tmpfs -o size="$2" tmpfs "$m" || { bad "$1: mount"; return; }
  timeout 60 "$furrow" convert --hf "$3" --out "$m/out" --quiet > "$T/full.err" 2>&1
  rc=$?
  [ $rc -eq 1 ] || bad "$1: exit $rc, expected 1"
  grep -qi 'no space left' "$T/full.err" || bad "$1: message lacks 'No space left'"
  grep -q -- "$4" "$T/full.err" || bad "$1: message does not name $4"
  crashed "$T/full.err" && bad "$1: crashed"
  [ -z "$(ls -A "$m")" ] || bad "$1: left $(ls -A "$m")"
  echo "$1 ($2): $(head -n 1 "$T/full.err")"
  umount "$m"
}
full "first tensor" 1m "$golden/tiny-a-bf16" "base.h5: tensor 'model.embed_tokens.weight'"
full "a layer's tensor" 5m "$golden/tiny-a-bf16" "layers-000-002.h5: tensor 'model.layers"
# Room for the data files and not the root (40 KB here): sized from a real run.
mount -t tmpfs -o size=40m tmpfs "$m"
"$furrow" convert --hf "$golden/tiny-a-bf16" --out "$m/out" --quiet || bad "convert for sizing"
data=$(du -ck "$m"/out/*.h5 | awk '!/furrow.h5/ && !/total/ { s += $1 } END { print s }')
umount "$m"
full "root file" "$((data + 8))k" "$golden/tiny-a-bf16" "furrow.h5"
full "tokenizer copy" 12m "$hf" "tokenizer.json"

# Into an existing (mount) folder, with room: it works and verifies.
mount -t tmpfs -o size=20m tmpfs "$m"
"$furrow" convert --hf "$hf" --out "$m" --quiet || bad "convert with room"
"$furrow" info --verify "$m" > "$T/info.txt" 2>&1 || { cat "$T/info.txt"; bad "info --verify after the full-disk runs"; }
[ -f "$m/tokenizer.json" ] || bad "tokenizer.json not published"
umount "$m"

# Killed mid-write by a signal (SIGXFSZ: deterministic), then a rerun succeeds,
# for a new folder and for an existing one.
for out in "$T/killed" "$T/used"; do
  [ "$out" = "$T/used" ] && mkdir -p "$out" && echo notes > "$out/notes.txt"
  (ulimit -f 4000; exec "$furrow" convert --hf "$hf" --out "$out" --quiet) > /dev/null 2>&1
  rc=$?
  [ $rc -gt 128 ] || bad "$out: expected death by a signal, got exit $rc"
  [ -e "$out/furrow.h5" ] && bad "$out: a killed convert left furrow.h5"
  "$furrow" convert --hf "$hf" --out "$out" --quiet 2> "$T/rerun.err" || { cat "$T/rerun.err"; bad "$out: rerun after kill"; }
  "$furrow" info --verify "$out" > /dev/null 2>&1 || bad "$out: info --verify after rerun"
  if [ -e "$out.partial" ] || [ -e "$out/.furrow-partial" ]; then bad "$out: staging folder left"; fi
done
[ -f "$T/used/notes.txt" ] || bad "the user's file in an existing folder is gone"

# kill -9 while it runs (when it is still running by then), then a rerun.
"$furrow" convert --hf "$hf" --out "$T/k9" --quiet > /dev/null 2>&1 &
pid=$!
i=0
while [ ! -e "$T/k9.partial/base.h5" ] && [ $i -lt 500 ] && kill -0 $pid 2>/dev/null; do i=$((i + 1)); sleep 0.01; done
kill -9 $pid 2>/dev/null && echo "kill -9: sent mid-way"
wait $pid 2>/dev/null
if "$furrow" convert --hf "$hf" --out "$T/k9" --quiet 2> "$T/k9.err"; then
  "$furrow" info --verify "$T/k9" > /dev/null 2>&1 || bad "info --verify after the rerun after kill -9"
else
  grep -q 'furrow.h5 already exists' "$T/k9.err" || { cat "$T/k9.err"; bad "rerun after kill -9"; }   # it had finished
fi

# logits --out to a full disk: the file and errno, no file left.
ck=$T/killed
mount -t tmpfs -o size=64k tmpfs "$m"
timeout 60 "$furrow" logits --model "$ck" --tokens 1,2,3,4,5,6,7,8,9,10,11,12 --out "$m/l.h5" > "$T/logits.err" 2>&1
rc=$?
[ $rc -ne 0 ] || bad "logits on a full disk: exit 0"
grep -q "$m/l.h5.*No space left" "$T/logits.err" || { cat "$T/logits.err"; bad "logits: message lacks the file and 'No space left'"; }
crashed "$T/logits.err" && bad "logits crashed"
[ -z "$(ls -A "$m")" ] || bad "logits left $(ls -A "$m")"
umount "$m"

# A batch job's output on a full disk: exit non-zero, whole JSON lines only.
for i in $(seq 1 30); do
  echo "{\"id\": $i, \"prompt_tokens\": [1, 2, 3, $i], \"max_tokens\": 24, \"ignore_eos\": true, \"temperature\": 0}"
done > "$T/in.jsonl"
mount -t tmpfs -o size=4k tmpfs "$m"
timeout 120 "$furrow" generate --model "$ck" --input "$T/in.jsonl" --output "$m/r.jsonl" > "$T/batch.err" 2>&1
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || bad "batch on a full disk: exit $rc"
grep -q "r.jsonl: cannot write a result line: No space left" "$T/batch.err" || { tail -n 5 "$T/batch.err"; bad "batch: message"; }
n=$(wc -l < "$m/r.jsonl")
[ "$n" -ge 1 ] && [ "$n" -lt 30 ] || bad "batch: $n lines (expected some, not all)"
[ -z "$(tail -c 1 "$m/r.jsonl")" ] || bad "batch: the last line is not whole"
while IFS= read -r line; do
  case "$line" in '{"id":'*'}') ;; *) bad "batch: not a whole result line: $line"; break ;; esac
done < "$m/r.jsonl"
echo "batch on a full disk: $n whole lines; $(grep 'cannot write' "$T/batch.err" | head -n 1)"
umount "$m"

# FIFOs: refused by name within seconds (timeout 20 turns a hang into a failure).
fifo_case() {  # label, text the message must name, command...
  label=$1 want=$2; shift 2
  timeout 20 "$@" > "$T/fifo.err" 2>&1
  rc=$?
  [ $rc -ne 0 ] && [ $rc -ne 124 ] || bad "$label: exit $rc (124: it blocked)"
  grep -q -- "$want.*FIFO" "$T/fifo.err" || { cat "$T/fifo.err"; bad "$label: message lacks '$want' ... FIFO"; }
  echo "$label: $(grep FIFO "$T/fifo.err" | head -n 1)"
}
mk() { rm -rf "$1"; mkdir -p "$1"; ln -s "$golden"/tiny-a-bf16/* "$1"/; }
mk "$T/f1" && rm "$T/f1/config.json" && mkfifo "$T/f1/config.json"
fifo_case "FIFO config.json" "f1/config.json" "$furrow" convert --hf "$T/f1" --out "$T/f1-out" --quiet
mk "$T/f2" && rm "$T/f2/model-00002-of-00003.safetensors" && mkfifo "$T/f2/model-00002-of-00003.safetensors"
fifo_case "FIFO shard" "model-00002-of-00003.safetensors" "$furrow" convert --hf "$T/f2" --out "$T/f2-out" --quiet
mkdir -p "$T/f3" && cp "$ck"/*.h5 "$T/f3"/ && rm "$T/f3/base.h5" && mkfifo "$T/f3/base.h5"
fifo_case "FIFO data file" "f3/base.h5" "$furrow" info --verify "$T/f3"
mkfifo "$T/in.fifo"
fifo_case "FIFO batch input" "in.fifo" "$furrow" generate --model "$ck" --input "$T/in.fifo" --output "$T/out.jsonl"
tok=${FURROW_SRCDIR:-.}/io/text/tokenizers/deepseek-v3/tokenizer.json
fifo_case "FIFO text file" "in.fifo" "$furrow" tokenize --tokenizer "$tok" --file "$T/in.fifo"
exit $fail
