#!/bin/sh
# Start-up of a furrow checkpoint: the wall time of `furrow logits` on one token
# (process start to exit: open, load, one forward) and the load time the rank
# reports, with the weights read (--load read), mapped (--load mmap) and mapped
# without the checksums (--no-verify), against the disk's read speed (dd of the
# data files) measured in the same rounds and, given a llama.cpp build and a GGUF
# of the same weights, llama.cpp's start-up on it: llama-simple -n 1 (load, one
# decode of the prompt, one greedy token: llama.cpp's tool with the least work
# besides; its own "load time" is the load). --cold drops the page cache before
# every run (root only); warm runs follow a first untimed run of each.
#
# usage: jobs/bench_load.sh MODEL [--rounds R] [--cold] [--furrow BIN] [--before BIN]
#                           [--llama BIN_DIR --gguf FILE]
#   --furrow BIN     the furrow to measure (default: the build beside this script)
#   --before BIN     also an older furrow without --load (its one read path)
#   --llama BIN_DIR  llama.cpp's build/bin (llama-simple); --gguf the model for it
set -eu
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { sed -n '2,17p' "$0"; exit 2; }
model=$1; shift
rounds=3 cold=0 bin=$here/../furrow before= llama= gguf=
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --cold) cold=1; shift ;;
    --furrow) bin=$2; shift 2 ;;
    --before) before=$2; shift 2 ;;
    --llama) llama=$2; shift 2 ;;
    --gguf) gguf=$2; shift 2 ;;
    *) echo "bench_load.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
if [ -n "$llama$gguf" ]; then
    [ -x "$llama/llama-simple" ] || { echo "bench_load.sh: --llama $llama has no llama-simple" >&2; exit 2; }
    [ -f "$gguf" ] || { echo "bench_load.sh: --gguf '$gguf' is not a file" >&2; exit 2; }
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
bytes=$(cat "$model"/*.h5 | wc -c)
drop() { [ $cold = 1 ] && sync && echo 3 > /proc/sys/vm/drop_caches || true; }
now() { date +%s.%N; }
# run LABEL BIN ARGS...: one start-up; prints "LABEL wall load".
run() {
    label=$1 b=$2; shift 2
    drop
    t0=$(now)
    "$b" logits --model "$model" --tokens 1 --out "$out/l.h5" --verbose "$@" 2> "$out/err" > /dev/null ||
        { cat "$out/err" >&2; exit 1; }
    t1=$(now)
    load=$(sed -n 's/^rank 0 .* in \([0-9.]*\) s,.*/\1/p' "$out/err")
    echo "$label $(echo "$t1 - $t0" | bc) $load"
}
run_llama() {
    drop
    t0=$(now)
    "$llama/llama-simple" -m "$gguf" -n 1 Hello 2> "$out/err" > /dev/null || { cat "$out/err" >&2; exit 1; }
    t1=$(now)
    ms=$(sed -n 's/.*load time = *\([0-9.]*\) ms.*/\1/p' "$out/err")
    echo "llama.cpp $(echo "$t1 - $t0" | bc) $(echo "scale=3; $ms / 1000" | bc)"
}
if [ $cold = 0 ]; then
    "$bin" logits --model "$model" --tokens 1 --out "$out/l.h5" > /dev/null 2>&1
    [ -z "$llama" ] || "$llama/llama-simple" -m "$gguf" -n 1 Hello > /dev/null 2>&1
fi
echo "model $model: $bytes bytes of HDF5 files$( [ -z "$gguf" ] || echo ", $gguf $(wc -c < "$gguf") bytes"); $( [ $cold = 1 ] && echo cold || echo warm) page cache"
for r in $(seq "$rounds"); do
    drop
    t0=$(now); cat "$model"/*.h5 > /dev/null; t1=$(now)
    echo "disk-read $(echo "$t1 - $t0" | bc) -"
    [ -z "$before" ] || run before "$before"
    run read "$bin" --load read
    [ -z "$llama" ] || run_llama
    run mmap "$bin" --load mmap
    run mmap-no-verify "$bin" --load mmap --no-verify
done | tee "$out/all"
echo "best and median of $rounds rounds (s): wall, load; disk read as GB/s; wall / llama.cpp's"
awk -v bytes="$bytes" '{ n[$1]++; w[$1, n[$1]] = $2; l[$1, n[$1]] = $3 }
function sorted(a, k, c, v,    i, j, t) { for (i = 1; i <= c; i++) v[i] = a[k, i]
    for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t } }
function best(a, k, c,    v) { sorted(a, k, c, v); return v[1] }
function med(a, k, c,    v) { sorted(a, k, c, v); return v[int((c + 1) / 2)] }
END { if ("llama.cpp" in n) { lb = best(w, "llama.cpp", n["llama.cpp"]); lm = med(w, "llama.cpp", n["llama.cpp"]) }
    for (k in n) { c = n[k]; b = best(w, k, c); m = med(w, k, c)
        printf "%-16s best %6.3f / %6s  median %6.3f / %6s", k, b, best(l, k, c), m, med(l, k, c)
        if (k == "disk-read") printf "   %.2f GB/s", bytes / b / 1e9
        else if (lb > 0) printf "   x%.2f / x%.2f", b / lb, m / lm
        printf "\n" } }' "$out/all" | sort
