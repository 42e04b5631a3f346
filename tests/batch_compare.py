# Compares two result files of furrow generate --input by id: the same ids,
# tokens, text, finish reasons and usage; logprobs within 1e-4 (ranks sum in
# other orders). Prints the differences; exit 1 if any.
import json, sys
def load(f):
    return {json.dumps(d["id"]): d for d in map(json.loads, open(f, encoding="utf-8"))}
a, b = load(sys.argv[1]), load(sys.argv[2])
bad = []
for k in sorted(set(a) | set(b)):
    x, y = a.get(k), b.get(k)
    if x is None or y is None:
        print("missing", k)
        bad.append(k)
        continue
    for f in ("tokens", "text", "finish_reason", "usage", "error"):
        if x.get(f) != y.get(f): print(k, f, x.get(f), y.get(f))
    lx, ly = x.get("logprobs"), y.get("logprobs")
    if (lx is None) != (ly is None):
        print(k, "logprobs presence")
        bad.append(k)
    elif lx:
        m = max(abs(p["logprob"] - q["logprob"]) for p, q in zip(lx, ly))
        if m > 1e-4:
            print(k, "logprob diff", m)
            bad.append(k)
    if x != y and any(x.get(f) != y.get(f) for f in ("tokens", "text", "finish_reason", "usage", "error")):
        bad.append(k)
n = sum(1 for _ in open(sys.argv[2], encoding="utf-8"))
if n != len(b):
    print("%d lines for %d ids" % (n, len(b)))
    bad.append("lines")
sys.exit(1 if bad else 0)
