#!/bin/sh
# A scaling study: runs furrow bench for each point (study, nodes, ranks per
# node, tp, pp, batch) through Slurm (jobs/slurm/bench.sbatch) or mpirun with a
# hostfile (jobs/mpirun/bench.sh), one after the other so that runs do not
# compete, appends each run's figures to OUT/results.csv (and each rank's to
# OUT/ranks.csv), then draws the plots (jobs/scaling/plot.sh). Rerun it to add
# points: a point already in the CSV is not run again.
#
#   jobs/scaling/run.sh --model DIR --out DIR [--via slurm|mpirun] [--hostfile F]
#                       [--points "strong:1:1:1:1:4 strong:2:1:1:2:4 ..."] [--prompt N] [--decode N]
#                       [--repeat R]
#
# A point is study:nodes:ranks_per_node:tp:pp:batch. Strong scaling keeps the
# batch and splits the model over more ranks; weak scaling adds data-parallel
# replicas with the nodes (each replica runs the batch). Slurm runs take
# FURROW_* variables as in jobs/slurm/common.sh; SBATCH_* variables (partition,
# account, time limit) are read by sbatch itself. --repeat R runs each point R
# times and keeps the run with the highest decode tokens/s (on a shared machine,
# the one least disturbed); a failed run is reported and the point kept if
# another succeeded. Every run's log stays in OUT/runs.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
model= out= via=slurm hostfile= prompt=64 decode=16 repeat=1
points="strong:1:1:1:1:4 strong:2:1:1:2:4 strong:4:1:2:2:4 weak:1:1:1:1:2 weak:2:1:1:1:2 weak:4:1:1:1:2"
while [ $# -gt 0 ]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --via) via=$2; shift 2 ;;
    --hostfile) hostfile=$2; shift 2 ;;
    --points) points=$2; shift 2 ;;
    --prompt) prompt=$2; shift 2 ;;
    --decode) decode=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
    *) echo "scaling: unknown option $1" >&2; exit 2 ;;
  esac
done
die() { echo "scaling: $*" >&2; exit 1; }
[ -n "$model" ] && [ -n "$out" ] || die "--model DIR and --out DIR are required"
case $via in
  slurm) command -v sbatch >/dev/null || die "sbatch not found (--via mpirun?)" ;;
  mpirun) [ -n "$hostfile" ] || die "--via mpirun needs --hostfile" ;;
  *) die "--via must be slurm or mpirun" ;;
esac
mkdir -p "$out/runs"
csv=$out/results.csv
cols="study,nodes,ranks_per_node,ranks,tp,pp,dp,batch,prompt,decode,prefill_tok_s,decode_tok_s,ttft_s,tpot_s,load_s,compute_s,comm_s,moved_mb,rank_peak_mb"
[ -f "$csv" ] || echo "$cols" > "$csv"
[ "$(head -n 1 "$csv")" = "$cols" ] || die "$csv has other columns: use another --out"
# Every rank of every run (furrow bench's per-rank table; a single rank from its figures).
rcsv=$out/ranks.csv
rcols="study,nodes,ranks_per_node,tp,pp,batch,prompt,decode,rank,dp_rank,pp_rank,tp_rank,load_s,compute_s,allreduce_s,p2p_s,moved_mb_per_step,weight_mb_per_token,peak_mb"
[ -f "$rcsv" ] || echo "$rcols" > "$rcsv"

# The lines of a failed run's log that say what went wrong, in the order they
# came: furrow's and the job script's messages, a rank's crash, the launcher's
# word on the first rank that ended; not the ranks the launcher stopped after it.
# The log's last lines where none of them is there.
failure() {
  why=$(grep -a -i -E '^furrow|error|fail|fault|signal|abort|killed|cancelled|time limit|noticed' "$1" 2>/dev/null |
    grep -a -v -E '^furrow job( [0-9]+)?: ([0-9]+ node\(s\) x|layout |furrow doctor on)|^ *[0-9]+ +/' |
    grep -a -v -E ': Terminated$|Terminating StepId|Force Terminated|STEP [0-9.]+ ON [^ ]+ CANCELLED AT [^ ]+ \*\*\*$' |
    head -n 8)
  [ -n "$why" ] || why=$(tail -n 5 "$1" 2>/dev/null || true)
  echo "$why" | sed 's/^/  /'
}

ran=0 kept=0
for p in $points; do
  IFS=: read -r study nodes rpn tp pp batch <<EOP
$p
EOP
  [ -n "$batch" ] || die "bad point $p (study:nodes:ranks_per_node:tp:pp:batch)"
  id=$study-n$nodes-r$rpn-tp$tp-pp$pp-b$batch-p$prompt-d$decode
  # Done already: same study, nodes, ranks per node, tp, pp, batch, prompt and decode.
  if awk -F, -v s="$study" -v n="$nodes" -v r="$rpn" -v t="$tp" -v q="$pp" -v b="$batch" -v P="$prompt" -v D="$decode" \
       '$1 == s && $2 == n && $3 == r && $5 == t && $6 == q && $8 == b && $9 == P && $10 == D { f = 1 } END { exit !f }' "$csv"; then
    kept=$((kept + 1)); continue
  fi
  set -- --model "$model" --tp "$tp" --pp "$pp" --batch "$batch" --prompt "$prompt" --decode "$decode" --no-ceilings
  best= best_tps=-1 r=1
  while [ $r -le "$repeat" ]; do
    log=$out/runs/$id-$r
    echo "scaling: $id ($r of $repeat)" >&2
    ok=1
    if [ $via = slurm ]; then
      job=$(sbatch --parsable -N "$nodes" --ntasks-per-node="$rpn" -o "$log.out" -e "$log.err" \
        "$here/slurm/bench.sbatch" "$@") || die "$id: sbatch refused it"
      "$here/slurm/wait.sh" "$job" || ok=0
    else
      sed 's/#.*//' "$hostfile" | awk 'NF' | head -n "$nodes" > "$log.hosts"
      [ "$(wc -l < "$log.hosts")" -eq "$nodes" ] || die "$hostfile has fewer than $nodes hosts"
      "$here/mpirun/bench.sh" --hostfile "$log.hosts" --ranks-per-node "$rpn" "$@" > "$log.out" 2> "$log.err" || ok=0
    fi
    fig=$(sed -n 's/^figures *//p' "$log.out" 2>/dev/null || true)
    r=$((r + 1))
    # A failed run is reported and left out; the point fails only if no run succeeded.
    if [ $ok = 0 ] || [ -z "$fig" ]; then
      echo "scaling: $id: run failed (log: $log.err):" >&2; failure "$log.err" >&2; continue
    fi
    tps=$(echo "$fig" | sed -n 's/.*decode_tok_s=\([0-9.]*\).*/\1/p')
    if awk -v a="$tps" -v b="$best_tps" 'BEGIN { exit !(a > b) }'; then best=$log best_tps=$tps; fi
  done
  [ -n "$best" ] || die "$id: every run failed (rerun to try again; finished points are kept)"
  log=$best fig=$(sed -n 's/^figures *//p' "$log.out")
  echo "$fig" | awk -v s="$study" -v n="$nodes" -v r="$rpn" '{
      for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      print s "," n "," r "," v["ranks"] "," v["tp"] "," v["pp"] "," v["dp"] "," v["batch"] "," v["prompt"] "," \
        v["decode"] "," v["prefill_tok_s"] "," v["decode_tok_s"] "," v["ttft_s"] "," v["tpot_s"] "," v["load_s"] "," \
        v["compute_s"] "," v["comm_s"] "," v["moved_mb"] "," v["rank_peak_mb"] }' >> "$csv"
  awk -v k="$study,$nodes,$rpn,$tp,$pp,$batch,$prompt,$decode" '
    /^rank  dp pp tp/ { table = 1; next }
    table && NF == 11 && $1 ~ /^[0-9]+$/ { printf "%s", k; for (i = 1; i <= NF; i++) printf ",%s", $i; print ""; n++ }
    /^figures/ { f = $0 }
    END { if (!n) { split(f, w, " "); for (i in w) { split(w[i], kv, "="); v[kv[1]] = kv[2] }
                    print k ",0,0,0,0," v["load_s"] "," v["compute_s"] ",0,0,0,," v["rank_peak_mb"] } }' \
    "$log.out" >> "$rcsv"
  ran=$((ran + 1))
done
echo "scaling: $ran run(s), $kept already in $csv" >&2
"$here/scaling/plot.sh" "$out"
