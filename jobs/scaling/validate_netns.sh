#!/bin/sh
# The performance model (furrow plan --predict) against measured runs of the
# scaling study's tiny model on CPU ranks, nodes emulated on this machine:
# network namespaces joined by veth pairs through a bridge, a token-bucket rate
# limit (tc tbf) on each node's link, Open MPI over TCP between them (shared
# memory within a node). For every point it
#   1. measures the links with furrow bench --comm on the same nodes and ranks
#      per node (alpha and beta per collective, fitted),
#   2. measures the compute of the ranks' shares with the same tp x pp on one
#      node (furrow bench --json: communication taken out),
#   3. runs furrow bench at the point and compares its TPOT and TTFT with the
#      prediction from 1 and 2.
# Writes OUT/validation.csv (measured and predicted milliseconds, error),
# OUT/validation.txt (the table), OUT/validation.png (predicted against
# measured, with the +-BOUND% band) and OUT/validation-throughput.png (tokens/s
# per configuration, measured beside predicted); exits 1 if a point is off by more than
# --bound percent, 77 if nodes cannot be emulated here (needs root, ip netns,
# veth, tc tbf and mpirun). --replot: only the table and plot, from
# OUT/validation.csv.
#
#   jobs/scaling/validate_netns.sh --out DIR [--rate 1mbit] [--points "2:1:2:1 2:2:4:1 ..."]
#                 [--prompt 16] [--decode 8] [--batch 4] [--repeat 3] [--bound 20] [--no-plot]
#                 [--comm-max 32KiB] [--replot]
#
# A point is nodes:ranks_per_node:tp:pp (nodes 1 or 2); --comm-max: the
# largest message the links are measured with (the prefill's hidden states,
# prompt x hidden x 4 bytes, 16 KiB for the tiny model's 16 tokens, twice
# that where two ranks of a node send at once). Each run is made
# --repeat times and the fastest decode and prefill kept (the least disturbed
# on a shared machine, as jobs/scaling/run.sh --repeat does); furrow bench
# --comm keeps the fastest of three rounds of each size likewise. FURROW_BIN: the furrow to run (default: the source tree's).
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
out= rate=1mbit prompt=16 decode=8 batch=4 repeat=3 bound=20 plot=1 comm_max=32KiB replot=0
points="1:1:1:1 1:2:2:1 1:2:1:2 1:4:4:1 1:4:2:2 2:1:2:1 2:1:1:2 2:2:4:1 2:2:2:2"
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --points) points=$2; shift 2 ;;
    --prompt) prompt=$2; shift 2 ;;
    --decode) decode=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --bound) bound=$2; shift 2 ;;
    --no-plot) plot=0; shift ;;
    --comm-max) comm_max=$2; shift 2 ;;
    --replot) replot=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
    *) echo "validate: unknown option $1" >&2; exit 2 ;;
  esac
done
die() { echo "validate: $*" >&2; exit 1; }
skip() { echo "validate: cannot emulate nodes here: $*" >&2; exit 77; }
[ -n "$out" ] || die "--out DIR is required"
furrow=${FURROW_BIN:-$here/furrow}
[ -x "$furrow" ] || die "no furrow at $furrow (build it, or set FURROW_BIN)"
csv=$out/validation.csv
if [ $replot = 1 ]; then
  [ -f "$csv" ] || die "--replot: no $csv"
else  # the runs (the rest of this block, unindented)
[ "$(id -u)" = 0 ] || skip "not root (ip netns needs it)"
command -v ip >/dev/null && command -v tc >/dev/null || skip "ip or tc (iproute2) not found"
command -v mpirun >/dev/null || skip "mpirun not found"
mkdir -p "$out/runs"
out=$(cd "$out" && pwd)

# Two emulated nodes: namespaces fw<pid>n1, fw<pid>n2 on a bridge, 10.X.Y.1-2/24.
tag=fw$$
br=${tag}br sub=10.$(( ($$ >> 8) % 200 + 20 )).$(( $$ % 250 ))
cleanup() {
  for i in 1 2; do ip netns del "${tag}n$i" 2>/dev/null || true; done
  ip link del "$br" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
ip link add "$br" type bridge 2>/dev/null || skip "cannot create a bridge"
ip link set "$br" up && ip addr add "$sub.254/24" dev "$br" || skip "cannot configure the bridge"
for i in 1 2; do
  ns=${tag}n$i
  ip netns add "$ns" 2>/dev/null || skip "ip netns add failed"
  ip link add "${tag}v$i" type veth peer name eth0 netns "$ns" 2>/dev/null || skip "cannot create a veth pair"
  ip link set "${tag}v$i" master "$br" up
  ip netns exec "$ns" ip addr add "$sub.$i/24" dev eth0
  ip netns exec "$ns" ip link set eth0 up
  ip netns exec "$ns" ip link set lo up
  # Each node's outgoing traffic at the rate: one limit per direction of a transfer.
  ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$rate" burst 1600 latency 500ms 2>/dev/null ||
    skip "tc tbf is not available"
done
# mpirun's remote launcher: "host command" runs the command in that host's
# namespace, with a /dev/shm and a TMPDIR of its own (Open MPI names its
# shared-memory segments and session directories by host name, which the
# emulated nodes share).
agent=$out/runs/agent.sh
cat > "$agent" <<EOF
#!/bin/sh
h=\$1; shift
case \$h in $sub.1) n=1 ;; $sub.2) n=2 ;; *) echo "agent: unknown host \$h" >&2; exit 1 ;; esac
mkdir -p "$out/runs/tmp\$n"
exec ip netns exec ${tag}n\$n unshare -m --propagation private sh -c \
  "mount -t tmpfs tmpfs /dev/shm && export TMPDIR=$out/runs/tmp\$n && \$*"
EOF
chmod +x "$agent"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# run NODES RPN LOG furrow-args...: furrow on NODES emulated nodes of RPN ranks
# each; one thread a rank (the emulated nodes share this machine's cores).
run() {
  rn=$1 rr=$2 log=$3; shift 3
  hosts=$out/runs/hosts$rn
  : > "$hosts"
  i=1; while [ $i -le "$rn" ]; do echo "$sub.$i slots=$rr" >> "$hosts"; i=$((i + 1)); done
  timeout -k 5 300 mpirun --mca plm_rsh_agent "$agent" --mca oob_tcp_if_include "$br,eth0" \
    --mca btl self,vader,tcp --mca btl_tcp_if_include eth0 --hostfile "$hosts" \
    -np $((rn * rr)) --map-by "ppr:$rr:node" --bind-to none --oversubscribe \
    -x OMPI_MCA_mpi_yield_when_idle=1 -x OMP_NUM_THREADS=1 "$furrow" "$@" > "$log" 2>&1
}
# fastest OUT FILES...: writes to OUT the furrow-compute figures of the least
# disturbed runs among FILES: the decode row and TPOT of the run with the
# lowest TPOT, the prefill row and TTFT of the one with the lowest TTFT.
fastest() {
  python3 - "$@" <<'PY'
import json, sys
runs = [json.load(open(f)) for f in sys.argv[2:]]
d = min(runs, key=lambda r: r["measured"]["tpot_s"])
p = min(runs, key=lambda r: r["measured"]["ttft_s"])
out = dict(d)
out["steps"] = [s for s in d["steps"] if s["phase"] == "decode"] + [s for s in p["steps"] if s["phase"] == "prefill"]
out["measured"] = dict(d["measured"], ttft_s=p["measured"]["ttft_s"])
json.dump(out, open(sys.argv[1], "w"), indent=1)
PY
}
links() {  # links NODES RPN: OUT/links-nNrR.json
  f=$out/links-n$1r$2.json
  [ -f "$f" ] && return 0
  [ $(($1 * $2)) -ge 2 ] || return 0
  run "$1" "$2" "$out/runs/links-n$1r$2-1.log" bench --comm "$out/runs/links-n$1r$2-1.json" \
    --comm-max "$comm_max" --comm-seconds 0.3 || die "furrow bench --comm on $1 x $2 failed: $out/runs/links-n$1r$2-1.log"
  cp "$out/runs/links-n$1r$2-1.json" "$f"
}
bench() {  # bench NODES RPN TP PP: OUT/bench-nNrR-tpT-ppP.json (the fastest of --repeat runs)
  id=n$1r$2-tp$3-pp$4 f=$out/bench-n$1r$2-tp$3-pp$4.json
  [ -f "$f" ] && return 0
  set --  "$1" "$2" "$3" "$4"
  r=1; while [ $r -le "$repeat" ]; do
    run "$1" "$2" "$out/runs/bench-$id-$r.log" bench --synthetic tiny --tp "$3" --pp "$4" --pp-transport mpi --prompt "$prompt" \
      --decode "$decode" --batch "$batch" --no-ceilings --json "$out/runs/bench-$id-$r.json" ||
      die "furrow bench at $id failed: $out/runs/bench-$id-$r.log"
    r=$((r + 1))
  done
  fastest "$f" "$out"/runs/bench-"$id"-*.json
}


echo "nodes,ranks_per_node,tp,pp,phase,batch,tokens,measured_ms,predicted_ms,error_pct,compute_ms,allreduce_ms,p2p_ms" > "$csv"
for p in $points; do
  IFS=: read -r nodes rpn tp pp <<EOP
$p
EOP
  [ -n "$pp" ] && [ "$nodes" -ge 1 ] && [ "$nodes" -le 2 ] || die "bad point $p (nodes:ranks_per_node:tp:pp, 1 or 2 nodes)"
  [ $((nodes * rpn)) -eq $((tp * pp)) ] || die "point $p: $nodes x $rpn ranks is not tp $tp x pp $pp"
  echo "validate: $p" >&2
  links "$nodes" "$rpn"
  bench 1 $((tp * pp)) "$tp" "$pp"                # the compute of the shares, one node
  [ "$nodes" -eq 1 ] || bench "$nodes" "$rpn" "$tp" "$pp"
  base=$out/bench-n1r$((tp * pp))-tp$tp-pp$pp.json meas=$out/bench-n${nodes}r${rpn}-tp$tp-pp$pp.json
  set -- --compute "$base"
  [ -f "$out/links-n${nodes}r${rpn}.json" ] && set -- "$@" --links "$out/links-n${nodes}r${rpn}.json"
  if [ $((tp * pp)) -eq 1 ]; then  # one rank: no link; the prediction is its compute
    echo '{"format": "furrow-links", "version": 1, "links": {"intra": {"sendrecv": {"alpha_s": 0, "beta_s_per_byte": 0}}}}' \
      > "$out/links-none.json"
    set -- "$@" --links "$out/links-none.json"
  fi
  "$furrow" plan --preset tiny --ranks-per-node "$rpn" --nics-per-node 1 --tp "$tp" --pp "$pp" --context $((prompt + decode)) \
    --batch "$batch" --predict --predict-nodes "$nodes" --predict-batches "$batch" --predict-prefill "$prompt" \
    --predict-prefill-batch "$batch" "$@" > "$out/runs/predict-n${nodes}r${rpn}-tp$tp-pp$pp.txt" ||
    die "furrow plan --predict failed at $p"
  tpot=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["measured"]; print(m["tpot_s"], m["ttft_s"])' "$meas")
  awk -v n="$nodes" -v r="$rpn" -v t="$tp" -v q="$pp" -v m="$tpot" -v P="$prompt" '
    $1 == n && ($3 == "decode" || $3 == "prefill") {
      split(m, mm, " "); meas = ($3 == "decode" ? mm[1] : mm[2]) * 1e3
      printf "%s,%s,%s,%s,%s,%s,%s,%.3f,%.3f,%.1f,%.3f,%.3f,%.3f\n", n, r, t, q, $3, $4, ($3 == "decode" ? 1 : P),
        meas, $5, 100 * ($5 - meas) / meas, $6, $7, $8 }' "$out/runs/predict-n${nodes}r${rpn}-tp$tp-pp$pp.txt" >> "$csv"
done
fi

# The table, and whether every point is within the bound.
awk -F, -v b="$bound" -v rate="$rate" 'NR == 1 { printf "nodes x ranks  tp pp  phase    batch  measured ms  predicted ms  error  (comm in the prediction)\n"; next }
  { c = $12 + $13; printf "%5s x %-5s  %2s %2s  %-7s  %5s  %11.2f  %12.2f  %+5.1f%%  (%.0f%%)\n", $1, $2, $3, $4, $5, $6, $8, $9, $10, 100 * c / $9
    if ($10 > b || $10 < -b) bad++ }
  END { printf "%d point(s) off by more than %s%% (rate limit %s between the 2 nodes)\n", bad, b, rate; exit (bad > 0) }' "$csv" \
  > "$out/validation.txt" && ok=1 || ok=0
cat "$out/validation.txt"
if [ $plot = 1 ] && command -v gnuplot >/dev/null; then
  tail -n +2 "$csv" | awk -F, '{ printf "%s %s \"%sx%s tp%s pp%s %s\"\n", $8, $9, $1, $2, $3, $4, $5 > ("'"$out"'/validation-n" $1 ".dat") }'
  touch "$out/validation-n1.dat" "$out/validation-n2.dat"
  gnuplot <<GP
set terminal pngcairo size 800,640 font ",10"
set output "$out/validation.png"
set title "furrow performance model: predicted against measured step (CPU ranks, 2 emulated nodes at $rate)"
set logscale xy
set xlabel "measured ms (TPOT of a decode step, TTFT of the batch's prefill)"
set ylabel "predicted ms"
set key top left
set grid
b = $bound / 100.0
plot x with lines lc black title "predicted = measured", x * (1 + b) with lines dt 2 lc rgb "gray" title "+-$bound%", \
     x * (1 - b) with lines dt 2 lc rgb "gray" notitle, \
     "$out/validation-n2.dat" using 1:2 with points pt 7 ps 1.3 lc rgb "blue" title "2 nodes: predicted from other runs", \
     "" using 1:2:3 with labels offset 1,0.6 left font ",8" notitle, \
     "$out/validation-n1.dat" using 1:2 with points pt 6 ps 1.3 lc rgb "gray40" title "1 node: compute and waits from the same run", \
     "" using 1:2:3 with labels offset 1,-0.6 left font ",7" tc rgb "gray40" notitle
GP
  # Throughput per configuration, measured beside predicted, as the scaling
  # study's plots: decode and prefill tokens/s (batch x tokens / step).
  tail -n +2 "$csv" | awk -F, '{ l = sprintf("\"%sx%s tp%s pp%s\"", $1, $2, $3, $4); t = $6 * $7 * 1000
      printf "%s %g %g\n", l, t / $8, t / $9 > ("'"$out"'/throughput-" $5 ".dat") }'
  gnuplot <<GP
set terminal pngcairo size 1000,420 font ",10"
set output "$out/validation-throughput.png"
set multiplot layout 1,2 title "furrow on emulated nodes ($rate between them): measured and predicted tokens/s"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xtics rotate by -30
set logscale y
set grid y
set key top right
set ylabel "decode tokens/s"
plot "$out/throughput-decode.dat" using 2:xtic(1) title "measured" lc rgb "blue", "" using 3 title "predicted" lc rgb "orange"
set ylabel "prefill tokens/s"
plot "$out/throughput-prefill.dat" using 2:xtic(1) title "measured" lc rgb "blue", "" using 3 title "predicted" lc rgb "orange"
unset multiplot
GP
  echo "validate: $out/validation.png $out/validation-throughput.png" >&2
fi
[ $ok = 1 ]
