#!/bin/sh
# fuzz/run.sh [-s SEED] SECONDS [NAME...]: runs each libFuzzer target (all of them, or
# those named: safetensors config ckpt tokenizer request) for SECONDS, from the
# top of a build configured with --enable-fuzz. Each starts from a scratch copy
# of its committed corpus and regression inputs (fuzz/corpus/NAME,
# fuzz/regress/NAME), so the repository is never written. Exits 1 when a target
# crashes, leaks, hangs or breaks a property, printing the saved input's path.
# -s SEED fixes libFuzzer's random seed, so a run repeats the same inputs (CI:
# a failure there is found again by the same command); without it every run
# explores anew.
set -u
usage() { echo "usage: $0 [-s SEED] SECONDS [safetensors|config|ckpt|tokenizer|request]..." >&2; exit 2; }
seed=
if [ "${1:-}" = -s ]; then
  seed=${2:-}; shift 2 || usage
  case "$seed" in ''|*[!0-9]*) usage ;; esac
fi
[ $# -ge 1 ] || usage
secs=$1; shift
case "$secs" in ''|*[!0-9]*) usage ;; esac
src=$(cd "$(dirname "$0")/.." && pwd)
targets=${*:-safetensors config ckpt tokenizer request}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/furrow-fuzz.XXXXXX") || exit 1
fail=0
for t in $targets; do
  prog=./fuzz/fuzz_$t
  [ -x "$prog" ] || { echo "fuzz: $prog not found: run from the top of a build configured with --enable-fuzz (clang)" >&2; exit 1; }
  dir=$scratch/$t
  mkdir -p "$dir/corpus" "$dir/artifacts" "$dir/tmp"
  cp "$src/fuzz/corpus/$t/"* "$dir/corpus/"
  [ -d "$src/fuzz/regress/$t" ] && cp "$src/fuzz/regress/$t/"* "$dir/corpus/"
  # -rss_limit_mb: the tokenizer's tables plus ASan's shadow stay far below it;
  # -timeout: one input taking 10 s is a hang.
  TMPDIR=$dir/tmp "$prog" ${seed:+-seed="$seed"} -max_total_time="$secs" -rss_limit_mb=4096 -timeout=10 -max_len=8192 \
    -artifact_prefix="$dir/artifacts/" -print_final_stats=1 "$dir/corpus" > "$dir/log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log")
  if [ $rc -eq 0 ]; then
    echo "fuzz $t: ok, ${runs:-?} inputs in ${secs}s, corpus $(ls "$dir/corpus" | wc -l) files"
  else
    fail=1
    echo "fuzz $t: FAILED (exit $rc); the report:"
    grep -E 'ERROR|WARNING|runtime error|property violated|SUMMARY|#[0-9]+ 0x' "$dir/log" | head -n 40
    for a in "$dir/artifacts/"*; do [ -f "$a" ] && echo "fuzz $t: the input is $a"; done
  fi
done
[ $fail -eq 0 ] && rm -rf "$scratch" || echo "fuzz: logs and inputs kept in $scratch"
exit $fail
