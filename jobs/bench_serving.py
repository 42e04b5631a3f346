#!/usr/bin/env python3
"""Serving benchmark for furrow serve (after vLLM's benchmark_serving), standard library only.

  jobs/bench_serving.py --model DIR [--np 2 --tp 2] [--concurrency 1,4,16] [--num-prompts 64]
  jobs/bench_serving.py --port 8000 --request-rate 2,8,inf
  jobs/bench_serving.py --model DIR --prefix-len 512 --prefix-groups 4 --prefix-cache on,off
  jobs/bench_serving.py --model DIR --json-output off,on

Launches `furrow serve` on 127.0.0.1 (under mpirun with --np > 1) unless --port names a
running server, then for each point of the sweep sends --num-prompts streaming completions
with random prompt token ids: prompt lengths uniform in input-len * [1 - range, 1 + range],
output lengths likewise (ignore_eos, so each request makes exactly its length). A point is a
concurrency (that many clients, each sending its next request when the last ends) or a
request rate (Poisson arrivals; inf: all at once). Reports output tokens/s, time to first
token (TTFT) and time per output token after the first (TPOT), p50 and p99, as a table.

Shared-prefix workload (SGLang's generated-shared-prefix): with --prefix-len P, each prompt
starts with one of --prefix-groups shared prefixes of P tokens (a system prompt, few-shot
examples), request i with prefix i mod groups, then its own random tokens as above. Each point
draws new prompts (the prefixes stay), so no point finds the previous point's whole prompts in
the prefix cache. --prefix-cache on,off launches the server once per value, same workload,
and reports each (input tokens/s counts every prompt token, cached or not; cached: the prompt
tokens the server found in its prefix cache, from /metrics).

JSON output: --json-output off,on sends each point's workload without, then with
response_format json_object to the same server (an output then ends when its object does, or at
its length: no ignore_eos), and reports the masks' time per constrained token from /metrics.
"""
import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time


def one_request(port, prompt, max_tokens, json_output=False):
    """Streams one completion; returns (ttft, e2e, tokens) in seconds, or None on an error."""
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    if json_output:
        body["response_format"] = {"type": "json_object"}
    else:
        body["ignore_eos"] = True
    body = json.dumps(body)
    c.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        r.read()
        c.close()
        return None
    ttft, n = None, 0
    for line in r:
        if not line.startswith(b"data: {"):
            continue
        k = len(json.loads(line[6:])["choices"][0]["token_ids"])
        if k and ttft is None:
            ttft = time.perf_counter() - t0
        n += k
    c.close()
    return ttft, time.perf_counter() - t0, n


def prefix_counts(port):
    """The server's prefix cache counters (queried, hit prompt tokens), or None."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        m = dict(line.split()[:2] for line in text.splitlines() if line.startswith("furrow_prefix_cache_"))
        return float(m["furrow_prefix_cache_queries_total"]), float(m["furrow_prefix_cache_hits_total"])
    except (OSError, KeyError, ValueError):
        return None


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def json_counts(port):
    """(constrained tokens, seconds on their masks) from /metrics, or None."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    v = {l.split()[0]: float(l.split()[1]) for l in text.splitlines() if l.startswith("furrow_json_mask")}
    if "furrow_json_mask_seconds_total" not in v:
        return None
    return (v["furrow_json_mask_cache_hits_total"] + v["furrow_json_mask_cache_misses_total"],
            v["furrow_json_mask_seconds_total"])


def run_point(port, work, concurrency=None, rate=None, seed=0, json_output=False):
    results, lock = [], threading.Lock()
    rng = random.Random(seed)

    def worker(items):
        for prompt, out in items:
            res = one_request(port, prompt, out, json_output)
            with lock:
                results.append(res)

    t0 = time.perf_counter()
    threads = []
    if concurrency:
        for w in range(concurrency):
            threads.append(threading.Thread(target=worker, args=(work[w::concurrency],)))
            threads[-1].start()
    else:
        for item in work:
            threads.append(threading.Thread(target=worker, args=([item],)))
            threads[-1].start()
            if rate != float("inf"):
                time.sleep(rng.expovariate(rate))
    for t in threads:
        t.join()
    dur = time.perf_counter() - t0
    ok = [r for r in results if r and r[0] is not None]
    tokens = sum(r[2] for r in ok)
    tpot = [(r[1] - r[0]) / (r[2] - 1) for r in ok if r[2] > 1]
    return {"ok": len(ok), "failed": len(results) - len(ok), "duration": dur, "tok_s": tokens / dur,
            "in_tok_s": sum(len(p) for p, _ in work) / dur,
            "ttft50": pct([r[0] for r in ok], 50), "ttft99": pct([r[0] for r in ok], 99),
            "tpot50": pct(tpot, 50), "tpot99": pct(tpot, 99), "tokens": tokens}


def launch(args, extra):
    here = os.path.dirname(os.path.abspath(__file__))
    furrow = os.environ.get("FURROW_BIN", os.path.join(here, "..", "furrow"))
    tmp = tempfile.mkdtemp(prefix="furrow-bench-serving-")
    port_file = os.path.join(tmp, "port")
    cmd = [furrow, "serve", "--model", args.model, "--port", "0", "--port-file", port_file,
           "--max-context", str(args.max_context), "--max-queue", "4096"] + args.serve_args.split() + extra
    if args.tp:
        cmd += ["--tp", str(args.tp)]
    if args.pp:
        cmd += ["--pp", str(args.pp)]
    if args.np > 1:
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                   OMPI_MCA_mpi_yield_when_idle="1")
        cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(args.np)] + cmd
    else:
        env = os.environ
    log = open(os.path.join(tmp, "serve.log"), "w+")
    proc = subprocess.Popen(cmd, stderr=log, stdout=log, env=env)
    for _ in range(1200):  # bounded: two minutes to load
        if os.path.exists(port_file) and open(port_file).read().strip():
            break
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    log.seek(0)
    text = log.read()
    pid = [int(w) for line in text.splitlines() if "; pid " in line for w in [line.rsplit(" ", 1)[1]]]
    if not pid:
        sys.exit("bench_serving: the server did not start:\n" + text)
    print(text.strip().splitlines()[0], file=sys.stderr)
    return proc, pid[0], int(open(port_file).read())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--port", type=int)
    ap.add_argument("--np", type=int, default=1)
    ap.add_argument("--tp", type=int)
    ap.add_argument("--pp", type=int)
    ap.add_argument("--serve-args", default="", help="more furrow serve flags, e.g. '--max-batch 16'")
    ap.add_argument("--max-context", type=int, default=1024)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--request-rate", help="a sweep of request rates per second instead, e.g. 1,4,inf")
    ap.add_argument("--num-prompts", type=int, default=64)
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--range-ratio", type=float, default=0.5)
    ap.add_argument("--vocab", type=int, default=2048, help="prompt ids are drawn below this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prefix-len", type=int, default=0, help="tokens of each shared prefix (0: none)")
    ap.add_argument("--prefix-groups", type=int, default=1, help="distinct shared prefixes")
    ap.add_argument("--prefix-cache", help="launch the server with each of these --prefix-cache values, e.g. on,off")
    ap.add_argument("--json-output", help="each point without and with response_format json_object: off,on")
    args = ap.parse_args()
    if not args.port and not args.model:
        ap.error("--model (to launch a server) or --port (of a running one)")
    if args.port and args.prefix_cache:
        ap.error("--prefix-cache launches servers: leave out --port")
    rng = random.Random(args.seed)
    lo = lambda n: max(1, int(n * (1 - args.range_ratio)))
    hi = lambda n: max(1, int(n * (1 + args.range_ratio)))
    prefixes = [[rng.randrange(args.vocab) for _ in range(args.prefix_len)] for _ in range(args.prefix_groups)]

    def workload(point):
        """The point's requests: the shared prefixes, then prompts and lengths drawn anew."""
        r = random.Random("%d-%s" % (args.seed, point))
        return [(prefixes[i % len(prefixes)] + [r.randrange(args.vocab) for _ in range(r.randint(
            lo(args.input_len), hi(args.input_len)))], r.randint(lo(args.output_len), hi(args.output_len)))
            for i in range(args.num_prompts)]

    points = [("rate", float(x)) for x in args.request_rate.split(",")] if args.request_rate else \
        [("concurrency", int(x)) for x in args.concurrency.split(",")]
    settings = args.prefix_cache.split(",") if args.prefix_cache else [None]
    json_settings = args.json_output.split(",") if args.json_output else [None]
    if any(j not in (None, "on", "off") for j in json_settings):
        ap.error("--json-output takes on and off")
    cache_col = "prefix cache | " if args.prefix_cache else ""
    json_col = "JSON output | " if args.json_output else ""
    print("| %s%s%s | requests | duration (s) | input tok/s | output tok/s | cached | TTFT p50 / p99 (ms) | "
          "TPOT p50 / p99 (ms) |%s" % (cache_col, json_col, points[0][0], " mask (us/token) |" if args.json_output else ""))
    print("| --- " * (8 + bool(args.prefix_cache) + 2 * bool(args.json_output)) + "|")
    for setting in settings:
        proc = pid = None
        port = args.port
        if not port:
            proc, pid, port = launch(args, ["--prefix-cache", setting] if setting else [])
        try:
            one_request(port, [rng.randrange(args.vocab) for _ in range(8)], 2)  # warm-up, outside the workload
            for k, (kind, v) in enumerate(points):
                for js in json_settings:
                    work = workload(k if js is None else "%d-%s" % (k, js))  # new prompts: no prefix-cache help
                    c0, j0 = prefix_counts(port), json_counts(port)
                    r = run_point(port, work, concurrency=v if kind == "concurrency" else None,
                                  rate=v if kind == "rate" else None, seed=args.seed, json_output=js == "on")
                    c1, j1 = prefix_counts(port), json_counts(port)
                    hit = "%.0f%%" % (100 * (c1[1] - c0[1]) / (c1[0] - c0[0])) if c0 and c1 and c1[0] > c0[0] else "-"
                    mask = "-"
                    if js == "on" and j0 and j1 and j1[0] > j0[0]:
                        mask = "%.1f" % (1e6 * (j1[1] - j0[1]) / (j1[0] - j0[0]))
                    print("| %s%s%s | %d%s | %.1f | %.1f | %.1f | %s | %.0f / %.0f | %.1f / %.1f |%s" % (
                        setting + " | " if setting else "", js + " | " if js else "", v, r["ok"],
                        " (%d failed)" % r["failed"] if r["failed"] else "", r["duration"], r["in_tok_s"], r["tok_s"],
                        hit, 1e3 * r["ttft50"], 1e3 * r["ttft99"], 1e3 * r["tpot50"], 1e3 * r["tpot99"],
                        " %s |" % mask if js else ""), flush=True)
        finally:
            if proc:
                os.kill(pid, signal.SIGTERM)  # rank 0 stops every rank
                proc.wait(timeout=120)


if __name__ == "__main__":
    main()
