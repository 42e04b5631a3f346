#!/bin/sh
# furrow doctor on this machine: every check runs and prints one line; --json
# parses and has the documented keys; verdicts follow their inputs where a test
# can change them (lowered ulimits, tools in PATH, the checkpoint path, the read
# bound, the kernel's settings as read here); skips say why; exit statuses.
set -u
: "${FURROW_BIN:?FURROW_BIN is not set}"
tmp=${FURROW_TMP:-/tmp}
fail=0
checks="hwloc-topology cpu-binding numa-balancing transparent-hugepages swappiness socket-buffers cpu-governor
energy-counters memlock open-files checkpoint-read mpi ucx infiniband gpu-driver gpu-persistence gpu-ecc gpu-clocks
gpu-temperature gpu-nvlink gpu-pcie"
bad() { echo "FAIL: $*"; fail=1; }
# status FILE NAME: the status word of check NAME in the text report FILE
status() { awk -v n="$2" '$1 == n { print $2 }' "$1"; }

# Plain report: one line per check, exit 1 exactly when one failed.
"$FURROW_BIN" doctor >"$tmp/out" 2>"$tmp/err"
rc=$?
cat "$tmp/out"
for c in $checks; do
  [ "$(grep -c "^$c " "$tmp/out")" -eq 1 ] || bad "check $c not printed once"
done
if grep -Eq '^[a-z-]+ +fail ' "$tmp/out"; then want=1; else want=0; fi
[ $rc -eq $want ] || bad "exit $rc with$( [ $want -eq 0 ] && echo out) failed checks"
# Every warn and fail is followed by its fix; every skip says why.
awk '$2 == "warn" || $2 == "fail" { getline nx; if (nx !~ /^ +fix: ./) { print "no fix after: " $0; bad = 1 } }
     $2 == "skip" && NF < 4 { print "skip without a reason: " $0; bad = 1 } END { exit bad }' "$tmp/out" ||
  bad "fixes or reasons missing"
grep -Eq "^checkpoint-read +skip +no --checkpoint PATH given" "$tmp/out" || bad "checkpoint-read without --checkpoint"

# The kernel's settings as this test reads them.
if [ -r /proc/sys/vm/swappiness ]; then
  sw=$(cat /proc/sys/vm/swappiness)
  if [ "$sw" -le 10 ]; then w=pass; else w=warn; fi
  [ "$(status "$tmp/out" swappiness)" = $w ] || bad "swappiness $sw should $w"
fi
if [ -r /sys/kernel/mm/transparent_hugepage/enabled ]; then
  if grep -q '\[always\]' /sys/kernel/mm/transparent_hugepage/enabled; then w=pass; else w=warn; fi
  [ "$(status "$tmp/out" transparent-hugepages)" = $w ] || bad "transparent-hugepages should $w"
fi
rapl=skip
for f in /sys/class/powercap/intel-rapl:*/energy_uj /sys/class/powercap/amd-rapl:*/energy_uj; do
  [ -e "$f" ] && [ $rapl = skip ] && rapl=warn
  [ -f "$f" ] && cat "$f" > /dev/null 2>&1 && rapl=pass
done
[ "$(status "$tmp/out" energy-counters)" = $rapl ] || bad "energy-counters should $rapl"
if ! ls /sys/class/infiniband/*/ports/* >/dev/null 2>&1; then
  grep -Eq "^infiniband +skip +no InfiniBand" "$tmp/out" || bad "no IB here: infiniband should skip saying so"
fi
# Tools that are here run (jobs/setup.sh installs ucx_info).
for t in ompi_info:mpi ucx_info:ucx; do
  if command -v ${t%:*} >/dev/null; then
    [ "$(status "$tmp/out" ${t#*:})" != skip ] || bad "${t%:*} is in PATH: ${t#*:} should run"
  fi
done
if [ "$(status "$tmp/out" gpu-driver)" = skip ]; then
  for c in gpu-persistence gpu-ecc gpu-clocks gpu-temperature gpu-nvlink gpu-pcie; do
    [ "$(status "$tmp/out" $c)" = skip ] || bad "$c should skip without NVML"
  done
  grep -Eq "^gpu-pcie +skip +(no NVIDIA driver|.*GPUs|.*NVML|nvmlInit|libnvidia)" "$tmp/out" || bad "gpu skips without a reason"
fi

# JSON: the documented keys, every check once, counts and status that add up.
cat >"$tmp/check.py" <<'PY'
import json, sys
want = sys.argv[2].split()
d = json.load(open(sys.argv[1]))
assert set(d) == {"host", "furrow", "status", "counts", "checks"}, sorted(d)
names = [c["name"] for c in d["checks"]]
assert sorted(names) == sorted(want), names
counts = {s: 0 for s in ("pass", "warn", "fail", "skip")}
for c in d["checks"]:
    assert set(c) == {"name", "status", "found", "fix"}, c
    assert c["status"] in counts and c["found"], c
    counts[c["status"]] += 1
    assert (c["fix"] is None) == (c["status"] in ("pass", "skip")), c
assert counts == d["counts"], (counts, d["counts"])
worst = "fail" if counts["fail"] else "warn" if counts["warn"] else "pass"
assert d["status"] == worst, d["status"]
for kv in sys.argv[3:]:  # NAME=STATUS[|STATUS]
    n, s = kv.split("=")
    got = next(c for c in d["checks"] if c["name"] == n)
    assert got["status"] in s.split("|"), (n, got)
PY
json() {  # json FILE [NAME=STATUS...]
  f=$1; shift
  python3 "$tmp/check.py" "$f" "$checks" "$@" || { bad "JSON report $f"; cat "$f"; }
}
"$FURROW_BIN" doctor --json >"$tmp/report.json" || [ $? -eq 1 ] || bad "--json exit"
json "$tmp/report.json"

# Limits lowered in a subshell: memlock warns (fails with InfiniBand), open-files warns.
(ulimit -l 64 && ulimit -n 1024 && "$FURROW_BIN" doctor --json >"$tmp/limits.json")
json "$tmp/limits.json" "memlock=warn|fail" "open-files=warn"
if [ "$(ulimit -H -l)" = unlimited ]; then
  (ulimit -l unlimited && "$FURROW_BIN" doctor --json >"$tmp/unl.json")
  json "$tmp/unl.json" "memlock=pass"
fi

# Tools through PATH: absent, a UCX that lists transports, an ompi_info that lists nothing.
mkdir -p "$tmp/bin"
env PATH="$tmp/bin" "$FURROW_BIN" doctor >"$tmp/nopath.out"
grep -Eq "^mpi +skip +no ompi_info in PATH" "$tmp/nopath.out" || bad "mpi without ompi_info should skip"
grep -Eq "^ucx +skip +no ucx_info in PATH" "$tmp/nopath.out" || bad "ucx without ucx_info should skip"
printf '#!/bin/sh\nprintf "#      Transport: tcp\\n#      Transport: self\\n#      Transport: tcp\\n"\n' >"$tmp/bin/ucx_info"
printf '#!/bin/sh\nexit 3\n' >"$tmp/bin/ompi_info"
chmod +x "$tmp/bin/ucx_info" "$tmp/bin/ompi_info"
env PATH="$tmp/bin" "$FURROW_BIN" doctor >"$tmp/fake.out"
rc=$?
grep -Eq "^ucx +pass +transports: tcp self$" "$tmp/fake.out" || { bad "ucx from a fake ucx_info"; cat "$tmp/fake.out"; }
grep -Eq "^mpi +fail " "$tmp/fake.out" || bad "a broken ompi_info should fail the mpi check"
[ $rc -eq 1 ] || bad "a failed check should exit 1, got $rc"

# The checkpoint: missing, empty, and a real file against a bound it passes and one it cannot.
"$FURROW_BIN" doctor --checkpoint "$tmp/no-such-dir" >"$tmp/ck.out"
rc=$?
[ $rc -eq 1 ] || bad "a missing checkpoint should exit 1, got $rc"
grep -Eq "^checkpoint-read +fail +cannot read $tmp/no-such-dir: No such file" "$tmp/ck.out" ||
  { bad "missing checkpoint message"; cat "$tmp/ck.out"; }
# A path that is not UTF-8 still gives JSON with every check.
"$FURROW_BIN" doctor --json --checkpoint "$(printf "$tmp/caf\\351")" >"$tmp/latin1.json"
[ $? -eq 1 ] || bad "a missing non-UTF-8 checkpoint path should exit 1"
json "$tmp/latin1.json" "checkpoint-read=fail"
mkdir -p "$tmp/empty" "$tmp/ckpt"
"$FURROW_BIN" doctor --checkpoint "$tmp/empty" >"$tmp/ck.out"
[ $? -eq 1 ] || bad "an empty checkpoint folder should exit 1"
grep -Eq "^checkpoint-read +fail +no files to read in" "$tmp/ck.out" || bad "empty checkpoint message"
dd if=/dev/urandom of="$tmp/ckpt/layers-000-002.h5" bs=1M count=80 2>/dev/null
"$FURROW_BIN" doctor --json --checkpoint "$tmp/ckpt" --min-read-speed 0 >"$tmp/ck0.json"
json "$tmp/ck0.json" "checkpoint-read=pass"
"$FURROW_BIN" doctor --checkpoint "$tmp/ckpt" --min-read-speed 1000000 >"$tmp/ck.out"
grep -Eq "^checkpoint-read +warn +[0-9.]+ GB/s, under 1000000.00 GB/s: 83.9 MB of 1 file\(s\) in [0-9.]+ s, (O_DIRECT|buffered)" \
  "$tmp/ck.out" || { bad "slow checkpoint read should warn"; cat "$tmp/ck.out"; }
"$FURROW_BIN" doctor --checkpoint "$tmp/ckpt" --min-read-speed 0 --read-limit 10MiB >"$tmp/ck.out"
grep -Eq "^checkpoint-read +pass .*: 10.5 MB of 1 file" "$tmp/ck.out" || { bad "--read-limit"; cat "$tmp/ck.out"; }

# Bad options.
"$FURROW_BIN" doctor --bogus >/dev/null 2>&1; [ $? -eq 2 ] || bad "--bogus should exit 2"
"$FURROW_BIN" doctor --read-limit 12X >/dev/null 2>"$tmp/err"; [ $? -eq 2 ] || bad "--read-limit 12X should exit 2"
grep -q "read-limit: unknown unit" "$tmp/err" || bad "--read-limit message"
"$FURROW_BIN" doctor --help | grep -q "exit status: 0 when no check failed" || bad "--help exit statuses"
exit $fail
