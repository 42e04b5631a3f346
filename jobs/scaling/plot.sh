#!/bin/sh
# Draws a scaling study's plots from OUT/results.csv (jobs/scaling/run.sh) with
# gnuplot: throughput.png (prefill and decode tokens/s against nodes, each study
# with its ideal line from its smallest point), efficiency.png (throughput over
# the ideal) and breakdown.png (the worst rank's load, compute and
# communication time per run).
#
#   jobs/scaling/plot.sh OUT
set -eu
out=${1:?usage: plot.sh OUT}
csv=$out/results.csv
[ -f "$csv" ] || { echo "plot: no $csv" >&2; exit 1; }
command -v gnuplot >/dev/null || { echo "plot: gnuplot not found (jobs/cluster/setup.sh installs it)" >&2; exit 1; }
dat=$out/plot; rm -rf "$dat"; mkdir -p "$dat"

# Per study, by nodes: nodes prefill decode ideal_prefill ideal_decode eff_prefill eff_decode.
# The ideal grows in proportion to the nodes from the study's smallest point.
tail -n +2 "$csv" | sort -t, -k1,1 -k2,2n | awk -F, -v d="$dat" '
  $1 != s { s = $1; n0 = $2; p0 = $11; d0 = $12; studies = studies " " s }
  { ip = p0 * $2 / n0; id = d0 * $2 / n0
    printf "%s %s %s %g %g %g %g\n", $2, $11, $12, ip, id, $11 / ip, $12 / id > (d "/" s ".dat") }
  END { print studies > (d "/studies") }'
# Every run: label load compute comm.
tail -n +2 "$csv" | sort -t, -k1,1 -k2,2n | awk -F, '{ printf "\"%s %sx%s tp%s pp%s\" %s %s %s\n", $1, $2, $3, $5, $6, $15, $16, $17 }' > "$dat/breakdown.dat"
studies=$(cat "$dat/studies")

gnuplot <<GP
set terminal pngcairo size 1000,420 font ",10"
set datafile separator " "
studies = "$studies"
n = words(studies)
file(s) = "$dat/" . s . ".dat"
set logscale x 2
set xlabel "nodes"
set key top left
set grid

set output "$out/throughput.png"
set multiplot layout 1,2 title "furrow scaling: throughput against nodes (dashed: ideal)"
set ylabel "prefill tokens/s"
plot for [i=1:n] file(word(studies, i)) using 1:2 with linespoints lw 2 lc i title word(studies, i), \
     for [i=1:n] file(word(studies, i)) using 1:4 with lines dt 2 lc i notitle
set ylabel "decode tokens/s"
plot for [i=1:n] file(word(studies, i)) using 1:3 with linespoints lw 2 lc i title word(studies, i), \
     for [i=1:n] file(word(studies, i)) using 1:5 with lines dt 2 lc i notitle
unset multiplot

set output "$out/efficiency.png"
set multiplot layout 1,2 title "furrow scaling: efficiency (throughput / ideal)"
set yrange [0:*]
set ylabel "prefill efficiency"
plot for [i=1:n] file(word(studies, i)) using 1:6 with linespoints lw 2 lc i title word(studies, i), 1 with lines dt 2 lc black notitle
set ylabel "decode efficiency"
plot for [i=1:n] file(word(studies, i)) using 1:7 with linespoints lw 2 lc i title word(studies, i), 1 with lines dt 2 lc black notitle
unset multiplot

set output "$out/breakdown.png"
unset logscale x
set title "furrow scaling: time of the worst rank per run"
set xlabel ""
set ylabel "seconds"
set style data histograms
set style histogram rowstacked
set style fill solid 0.8 border -1
set boxwidth 0.7
set xtics rotate by -30
set key top right
plot "$dat/breakdown.dat" using 2:xtic(1) title "load", "" using 3 title "compute", "" using 4 title "communication"
GP
echo "plot: $out/throughput.png $out/efficiency.png $out/breakdown.png" >&2
