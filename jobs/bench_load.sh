#!/bin/sh
# Start-up of a furrow checkpoint: the wall time of `furrow logits` on one token
# (process start to exit: open, load, one forward) and the load time the rank
# reports, with the weights read (--load read), mapped (--load mmap) and mapped
# without the checksums (--no-verify), against the disk's read speed (dd of the
# data files) measured in the same rounds. --cold drops the page cache before
# every run (root only); warm runs follow a first untimed run.
#
# usage: jobs/bench_load.sh MODEL [--rounds R] [--cold] [--furrow BIN] [--before BIN]
#   --furrow BIN   the furrow to measure (default: the build beside this script)
#   --before BIN   also an older furrow without --load (its one read path)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { sed -n '2,12p' "$0"; exit 2; }
model=$1; shift
rounds=3 cold=0 bin=$here/../furrow before=
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --cold) cold=1; shift ;;
    --furrow) bin=$2; shift 2 ;;
    --before) before=$2; shift 2 ;;
    *) echo "bench_load.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
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
[ $cold = 1 ] || { "$bin" logits --model "$model" --tokens 1 --out "$out/l.h5" > /dev/null 2>&1; }
echo "model $model: $bytes bytes of HDF5 files; $( [ $cold = 1 ] && echo cold || echo warm) page cache"
for r in $(seq "$rounds"); do
    drop
    t0=$(now); cat "$model"/*.h5 > /dev/null; t1=$(now)
    echo "disk-read $(echo "$t1 - $t0" | bc) -"
    [ -z "$before" ] || run before "$before"
    run read "$bin" --load read
    run mmap "$bin" --load mmap
    run mmap-no-verify "$bin" --load mmap --no-verify
done | tee "$out/all"
echo "best of $rounds rounds (s): wall, load; disk read as GB/s"
awk -v bytes="$bytes" '{ if (!($1 in w) || $2 < w[$1]) { w[$1] = $2; l[$1] = $3 } }
     END { for (k in w) printf "%-16s %8.3f %8s%s\n", k, w[k], l[k],
                                k == "disk-read" ? sprintf("   %.2f GB/s", bytes / w[k] / 1e9) : "" }' "$out/all" | sort
