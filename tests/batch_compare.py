# Compares two result files of furrow generate --input by id: the same ids,
# tokens, text, finish reasons and usage (but the prompt tokens found in the
# prefix cache, which depend on what ran before); logprobs within 1e-4 (ranks
# sum in other orders). Prints the differences and the largest logprob
# difference; exit 1 if any.
import json, sys
def load(f):
    return {json.dumps(d["id"]): d for d in map(json.loads, open(f, encoding="utf-8"))}
def field(d, f):
    v = d.get(f)
    if f == "usage" and v:
        v = {k: x for k, x in v.items() if k != "prompt_tokens_details"}
    return v
a, b = load(sys.argv[1]), load(sys.argv[2])
bad = []
worst = 0.0
fields = ("tokens", "text", "finish_reason", "usage", "error")
for k in sorted(set(a) | set(b)):
    x, y = a.get(k), b.get(k)
    if x is None or y is None:
        print("missing", k)
        bad.append(k)
        continue
    for f in fields:
        if field(x, f) != field(y, f): print(k, f, field(x, f), field(y, f))
    lx, ly = x.get("logprobs"), y.get("logprobs")
    if (lx is None) != (ly is None):
        print(k, "logprobs presence")
        bad.append(k)
    elif lx:
        m = max(abs(p["logprob"] - q["logprob"]) for p, q in zip(lx, ly))
        worst = max(worst, m)
        if m > 1e-4:
            print(k, "logprob diff", m)
            bad.append(k)
    if any(field(x, f) != field(y, f) for f in fields):
        bad.append(k)
n = sum(1 for _ in open(sys.argv[2], encoding="utf-8"))
if n != len(b):
    print("%d lines for %d ids" % (n, len(b)))
    bad.append("lines")
print("largest logprob difference %.3g" % worst)
sys.exit(1 if bad else 0)
