"""A client of furrow serve using only Python's standard library, for the tests.

serve_client.py PORT same       16 streaming requests at once give the same tokens as one at a time
serve_client.py PORT hostile N  N malformed or hostile requests each get the right 4xx
serve_client.py PORT slow       slow clients do not stop a valid request
serve_client.py PORT leave      clients that leave mid-stream free their slots and blocks
serve_client.py PORT busy       a full queue answers 503 with Retry-After
serve_client.py PORT prefix     repeated prompts and a next chat turn report cached_tokens; /metrics counts them
serve_client.py PORT spec FILE K  greedy requests at once give FILE's token ids (one JSON array a line, from
                                `furrow generate`); /metrics counts K positions of drafts, some accepted
serve_client.py PORT sampled PORT2 N  N seeded requests at temperature 1 to a plain server (PORT) and a
                                speculating one (PORT2): the same first tokens, the same distribution of
                                the next two (a chi-square test of two samples), drafts accepted and rejected
Only 127.0.0.1 is contacted; every loop is bounded.
"""
import http.client
import json
import socket
import sys
import threading
import time

HOST = "127.0.0.1"


def post(port, path, body, raw=None, timeout=120):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    data = raw if raw is not None else json.dumps(body).encode()
    c.request("POST", path, body=data, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    out = (r.status, dict(r.getheaders()), r.read())
    c.close()
    return out


def get(port, path):
    c = http.client.HTTPConnection(HOST, port, timeout=60)
    c.request("GET", path)
    r = c.getresponse()
    out = (r.status, r.read())
    c.close()
    return out


def parse_sse(raw):
    """The events of a stream; raises on anything malformed."""
    text = raw.decode("utf-8")  # broken UTF-8 raises here
    assert text.endswith("data: [DONE]\n\n"), "the stream does not end with data: [DONE]"
    events = text.split("\n\n")
    assert events[-1] == "", "bytes after the last event"
    out = []
    for ev in events[:-2]:
        assert ev.startswith("data: ") and "\n" not in ev, "malformed event %r" % ev[:80]
        out.append(json.loads(ev[6:]))
    return out


def stream_result(port, path, body):
    status, headers, raw = post(port, path, dict(body, stream=True))
    assert status == 200, (status, raw[:200])
    assert headers.get("Content-Type") == "text/event-stream"
    ids, text, finish = [], "", None
    for ev in parse_sse(raw):
        ch = ev["choices"][0]
        ids += ch["token_ids"]
        text += ch["delta"].get("content", "") if "delta" in ch else ch["text"]
        finish = ch["finish_reason"] or finish
    return ids, text, finish


def requests16():
    reqs = []
    for i in range(16):
        body = {"max_tokens": 8 + (i * 5) % 20, "ignore_eos": i % 3 == 0}
        if i % 5 == 1:
            body["stop"] = ["here", "clud", "value", " or"]  # held back while a stop string may be starting
        if i % 2:
            body.update(temperature=0.8, top_p=0.95, top_k=50, seed=100 + i)
        else:
            body.update(temperature=0)
        if i % 4 < 2:
            path = "/v1/completions"
            body["prompt"] = [1 + (i * 37 + k * 11) % 2000 for k in range(3 + i % 7)] if i % 8 < 4 else \
                "Ligne %d: le café coûte 3,50 € — 東京 🚀" % i
        else:
            path = "/v1/chat/completions"
            body["messages"] = [{"role": "user", "content": "Question %d: pourquoi le ciel est-il bleu ? 空" % i}]
        reqs.append((path, body))
    return reqs


def same(port):
    reqs = requests16()
    alone = [stream_result(port, p, b) for p, b in reqs]
    together = [None] * len(reqs)

    def one(i):
        together[i] = stream_result(port, *reqs[i])
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(reqs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    bad = [i for i in range(len(reqs)) if together[i] != alone[i]]
    for i in bad:
        print("FAIL: request %d: alone %s, together %s" % (i, alone[i], together[i]))
    # Each request not streamed gives its streamed tokens, text and finish reason.
    for i, (p, b) in enumerate(reqs):
        st, _, raw = post(port, p, b)
        ch = json.loads(raw)["choices"][0]
        text = ch["text"] if "text" in ch else ch["message"]["content"]
        if st != 200 or (ch["token_ids"], text, ch["finish_reason"]) != alone[i]:
            print("FAIL: request %d not streamed: %s, streamed: %s" % (i, (ch["token_ids"], text), alone[i]))
            bad.append(i)
        if "stop" in b and any(x in text for x in b["stop"]):
            print("FAIL: request %d: a stop string in %r" % (i, text))
            bad.append(i)
    n_stop = sum(1 for (p, b), a in zip(reqs, alone) if "stop" in b and a[2] == "stop")
    if not bad:
        print("ok: 16 concurrent streams equal the same requests one at a time (%d tokens; greedy and seeded; %d"
              " ended on a stop string); every stream well-formed UTF-8 ending in [DONE]; the same without streaming"
              % (sum(len(a[0]) for a in alone), n_stop))
    return 1 if bad else 0


def hostile_cases():
    big = b'{"prompt": "' + b"a" * (2 << 20) + b'"}'
    deep = b"[" * 5000 + b"]" * 5000
    C, H = "/v1/completions", "/v1/chat/completions"
    cases = [
        (C, b"{", 400), (C, b"[]", 400), (C, b"", 400), (C, b'{"max_tokens": 3}', 400),
        (C, b'{"prompt": 123}', 400), (C, b'{"prompt": [1, 2], "max_tokens": "10"}', 400),
        (C, b'{"prompt": [1, 2], "max_tokens": -5}', 422), (C, b'{"prompt": [1, 2], "max_tokens": 1000000000000}', 422),
        (C, b'{"prompt": [1, 2], "temperature": -1}', 422), (C, b'{"prompt": [1, 2], "temperature": 1e308}', 422),
        (C, b'{"prompt": [1, 2], "top_p": 0}', 422), (C, b'{"prompt": [1, 2], "top_p": 2}', 422),
        (H, b'{"messages": []}', 422), (H, b'{"messages": "hi"}', 400), (H, b'{"messages": [{"role": "user"}]}', 400),
        (H, b'{"messages": [{"role": "critic", "content": "42"}]}', 422),
        (C, b'{"prompt": [1, 2], "model": "gpt-4"}', 404), (C, b'{"prompt": [1, 2], "model": 7}', 400),
        (C, b'{"prompt": [1, 2], "n": 2}', 422), (C, b'{"prompt": [99999999]}', 422), (C, b'{"prompt": [-1]}', 422),
        (C, big, 413), (C, b'{"prompt": [1, 2], "stop": [1, 2]}', 400),
        (C, b'{"prompt": [1, 2], "stop": ["a", "b", "c", "d", "e"]}', 422),
        (C, b'{"prompt": [1, 2], "logprobs": 50}', 422), (C, b'{"prompt": ""}', 422),
        (C, json.dumps({"prompt": list(range(1, 200))}).encode(), 422),
        (C, b'{"prompt": [1, 2], "prompt": [3]}', 400), (C, b'{"prompt": "\xff\xfe"}', 400), (C, deep, 400),
        (C, b'{"prompt": [1, 2], "seed": 1.5}', 400), (C, b'{"prompt": ["a", "b"]}', 422),
        (C, b'{"prompt": [1, 2], "stream": "yes"}', 400), (C, b'{"prompt": [1, 2], "stop_token_ids": [1.5]}', 400),
        ("/v1/nothing", b"{}", 404), ("/", b"{}", 404),
        (C, b'{"prompt": [1, 2], "presence_penalty": 9}', 422), (C, b'{"prompt": [1, 2], "top_k": "all"}', 400),
    ]
    return cases


def hostile(port, n):
    cases = hostile_cases()
    wrong = {}
    for i in range(n):
        path, raw, want = cases[i % len(cases)]
        status, headers, body = post(port, path, None, raw=raw)
        try:
            err = json.loads(body)["error"]
            ok = status == want and err["code"] == want and isinstance(err["message"], str)
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            wrong.setdefault(i % len(cases), (status, body[:160]))
    for k, (status, body) in sorted(wrong.items()):
        print("FAIL: case %d (%s %r...): got %d %r, expected %d" % (k, cases[k][0], cases[k][1][:40], status, body,
                                                                    cases[k][2]))
    st, _ = get(port, "/v1/completions")
    if st != 405:
        print("FAIL: GET /v1/completions gave %d" % st)
        return 1
    st, _, body = post(port, "/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 4, "temperature": 0})
    if st != 200:
        print("FAIL: a valid request after the hostile ones gave %d" % st)
        return 1
    if not wrong:
        print("ok: %d hostile requests (%d kinds) each got the right 4xx and OpenAI error JSON; a valid one still works"
              % (n, len(cases)))
    return 1 if wrong else 0


def slow(port):
    socks = []
    for i in range(8):  # half a request line, or headers and part of a body, then nothing
        s = socket.create_connection((HOST, port), timeout=30)
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro" if i % 2 else b"GE")
        socks.append(s)
    st, _, body = post(port, "/v1/completions", {"prompt": [5, 6, 7], "max_tokens": 3, "temperature": 0})
    for s in socks:
        s.close()
    if st != 200:
        print("FAIL: with slow clients connected a valid request gave %d" % st)
        return 1
    print("ok: 8 slow clients hold connections; a valid request is still answered")
    return 0


def metric(port, name):
    st, body = get(port, "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def leave(port):
    body = json.dumps({"prompt": [3, 4, 5], "max_tokens": 100, "ignore_eos": True, "temperature": 0,
                       "stream": True}).encode()
    socks = []
    for i in range(6):
        s = socket.create_connection((HOST, port), timeout=60)
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        got = b""
        while b"data: " not in got:  # the stream has started
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        socks.append(s)
    for s in socks:
        s.close()
    for _ in range(600):  # bounded: up to a minute
        if metric(port, "furrow_running_requests") == 0 and metric(port, "furrow_kv_blocks_used") == 0:
            break
        time.sleep(0.1)
    running, used = metric(port, "furrow_running_requests"), metric(port, "furrow_kv_blocks_used")
    if running != 0 or used != 0:
        print("FAIL: after 6 clients left mid-stream: %s running, %s KV blocks in use" % (running, used))
        return 1
    gen = metric(port, "furrow_generation_tokens_total")
    print("ok: 6 clients that left mid-stream freed their slots and KV blocks (%d tokens generated in all)" % gen)
    return 0


PREFIX_METRICS = ("furrow_prefix_cache_queries_total", "furrow_prefix_cache_hits_total", "furrow_prefix_cache_hit_rate",
                  "furrow_prefix_cache_blocks", "furrow_prefix_cache_evictions_total")


def prefix(port, block=16):
    """The server's prefix cache (on by default, blocks of 16 on a CPU), seen by a client."""
    before = {k: metric(port, k) for k in PREFIX_METRICS}
    if None in before.values():
        print("FAIL: /metrics lacks the prefix cache: %s" % before)
        return 1
    bad, asked, found = [], 0, 0

    def call(path, body):
        nonlocal asked, found
        st, _, raw = post(port, path, body)
        assert st == 200, (st, raw[:200])
        d = json.loads(raw)
        u = d["usage"]
        asked += u["prompt_tokens"]
        found += u["prompt_tokens_details"]["cached_tokens"]
        return d, u["prompt_tokens"], u["prompt_tokens_details"]["cached_tokens"]

    # 40 token ids: 2 whole blocks and 8 more; again: the 2 blocks are found, the rest computed.
    body = {"prompt": [7 + (k * 13) % 1900 for k in range(40)], "max_tokens": 6, "temperature": 0}
    first, n, c1 = call("/v1/completions", body)
    again, _, c2 = call("/v1/completions", body)
    if c1 != 0 or c2 != 2 * block or again["choices"][0]["token_ids"] != first["choices"][0]["token_ids"]:
        bad.append("a repeated prompt of %d tokens: cached %d then %d (expected 0 then %d), tokens %s then %s" % (
            n, c1, c2, 2 * block, first["choices"][0]["token_ids"], again["choices"][0]["token_ids"]))
    # Streamed: the final chunk's usage says so too.
    _, _, raw = post(port, "/v1/completions", dict(body, stream=True))
    last = [e for e in parse_sse(raw) if "usage" in e]
    c3 = last[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] if last else None
    if c3 != 2 * block:
        bad.append("streamed: cached_tokens %s in the final chunk" % c3)
    else:
        asked, found = asked + n, found + c3
    # A chat's next turn holds the first turn's prompt: its blocks are found.
    system = {"role": "system", "content": "Tu es un assistant. " * 12}
    turn1 = [system, {"role": "user", "content": "Combien de pattes a une araignée ?"}]
    d1, n1, c4 = call("/v1/chat/completions", {"messages": turn1, "max_tokens": 5, "temperature": 0})
    turn2 = turn1 + [d1["choices"][0]["message"], {"role": "user", "content": "Et un scarabée ?"}]
    _, n2, c5 = call("/v1/chat/completions", {"messages": turn2, "max_tokens": 5, "temperature": 0})
    if not (c5 >= n1 // block * block and c5 % block == 0 and 0 < c5 < n2):
        bad.append("the next turn (%d tokens, the first %d) found %d cached" % (n2, n1, c5))
    # /metrics: the hits are the cached_tokens the clients were told (the step's mirror may lag a moment).
    for _ in range(100):
        after = {k: metric(port, k) for k in PREFIX_METRICS}
        if after["furrow_prefix_cache_hits_total"] - before["furrow_prefix_cache_hits_total"] == found:
            break
        time.sleep(0.05)
    dq = after["furrow_prefix_cache_queries_total"] - before["furrow_prefix_cache_queries_total"]
    dh = after["furrow_prefix_cache_hits_total"] - before["furrow_prefix_cache_hits_total"]
    rate = after["furrow_prefix_cache_hit_rate"]
    if dq != asked or dh != found or after["furrow_prefix_cache_blocks"] < 2 or \
            abs(rate - after["furrow_prefix_cache_hits_total"] / after["furrow_prefix_cache_queries_total"]) > 1e-5:
        bad.append("/metrics: %s after %s; the clients asked %d prompt tokens and were told %d were cached" % (
            after, before, asked, found))
    for b in bad:
        print("FAIL: prefix cache: " + b)
    if not bad:
        print("ok: prefix cache: a repeated prompt finds %d of %d tokens (streamed too), a next chat turn %d of %d; "
              "/metrics counts %d of %d prompt tokens as hits, %d cached blocks" % (
                  c2, n, c5, n2, dh, dq, after["furrow_prefix_cache_blocks"]))
    return 1 if bad else 0


def busy(port):
    results = []

    def one():
        results.append(post(port, "/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 40, "ignore_eos": True}))
    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    codes = sorted(r[0] for r in results)
    busy = [r for r in results if r[0] == 503]
    if not busy or any(r[1].get("Retry-After") != "1" or json.loads(r[2])["error"]["code"] != 503 for r in busy) or \
            set(codes) - {200, 503}:
        print("FAIL: 12 requests on a queue of 2 gave %s" % codes)
        return 1
    print("ok: a full queue answers 503 with Retry-After (%d of 12), the rest 200" % len(busy))
    return 0


def spec_metrics(port, pos):
    """Drafts verified, accepted and the rate at a draft position, from one read of /metrics (the
    server mirrors them after each step, maybe after a response went out)."""
    time.sleep(0.5)
    st, body = get(port, "/metrics")
    out = []
    for name in ("furrow_spec_draft_tokens_total", "furrow_spec_accepted_tokens_total", "furrow_spec_acceptance_rate"):
        key = '%s{position="%d"} ' % (name, pos)
        v = [float(line.split()[1]) for line in body.decode().splitlines() if line.startswith(key)]
        out.append(v[0] if v else None)
    return out


def spec(port, path, k):
    """A server with --speculative mtp:K gives greedy's tokens to requests running together."""
    prompts = [[5, 6, 7, 8], [100, 200], [9] * 7, [1500]]
    with open(path) as f:
        want = [json.loads(line) for line in f if line.strip()]
    got = [None] * len(prompts)

    def one(i):
        st, _, raw = post(port, "/v1/completions", {"prompt": prompts[i], "max_tokens": len(want[i]),
                                                     "temperature": 0, "ignore_eos": True})
        got[i] = json.loads(raw)["choices"][0]["token_ids"] if st == 200 else (st, raw[:200])
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    bad = [i for i in range(len(prompts)) if got[i] != want[i]]
    for i in bad:
        print("FAIL: request %d: %s, greedy without speculation %s" % (i, got[i], want[i]))
    for pos in range(1, k + 1):
        n, a, r = spec_metrics(port, pos)
        if n is None or a is None or r is None or not 0 < a < n or abs(r - a / n) > 1e-5:
            print("FAIL: /metrics, draft position %d: %s of %s accepted, rate %s" % (pos, a, n, r))
            bad.append(-pos)
        else:
            print("ok: draft position %d: %d of %d accepted (%.3f) in /metrics" % (pos, a, n, r))
    if not bad:
        print("ok: %d greedy requests at once with --speculative mtp:%d give greedy's tokens" % (len(prompts), k))
    return 1 if bad else 0


def chi2_two(a, b):
    """Chi-square statistic and degrees of freedom of two samples' counts, categories of
    fewer than 10 together merged into one."""
    keys = sorted(set(a) | set(b))
    big = [k for k in keys if a.get(k, 0) + b.get(k, 0) >= 10]
    rest = [k for k in keys if k not in big]
    cats = [(a.get(k, 0), b.get(k, 0)) for k in big]
    if rest:
        cats.append((sum(a.get(k, 0) for k in rest), sum(b.get(k, 0) for k in rest)))
    na, nb = sum(x for x, _ in cats), sum(y for _, y in cats)
    stat = 0.0
    for x, y in cats:
        ea, eb = (x + y) * na / (na + nb), (x + y) * nb / (na + nb)
        stat += (x - ea) ** 2 / ea + (y - eb) ** 2 / eb
    return stat, len(cats) - 1


def chi2_critical(df, z=3.09):
    """The chi-square quantile at upper tail 1e-3 (z = 3.09), Wilson and Hilferty's approximation."""
    h = 2.0 / (9 * df)
    return df * (1 - h + z * h ** 0.5) ** 3


def sampled(port, port2, n):
    """Speculative sampling keeps the distribution: seeded requests, plain against speculating."""
    prompt = [5, 6, 7]

    def run(p):
        out = [None] * n

        def one(lo):
            for i in range(lo, n, 8):
                st, _, raw = post(p, "/v1/completions", {"prompt": prompt, "max_tokens": 4, "temperature": 1,
                                                         "seed": i, "ignore_eos": True})
                out[i] = json.loads(raw)["choices"][0]["token_ids"] if st == 200 else None
        threads = [threading.Thread(target=one, args=(lo,)) for lo in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        return out
    plain, spec = run(port), run(port2)
    if None in plain or None in spec or any(len(x) != 4 for x in plain + spec):
        print("FAIL: sampled requests did not all give 4 tokens")
        return 1
    bad = 0
    if [x[0] for x in plain] != [x[0] for x in spec]:
        print("FAIL: the first token (drawn before any draft) differs between the servers")
        bad = 1
    for pos in (1, 2, 3):
        ca, cb = {}, {}
        for x in plain:
            ca[x[pos]] = ca.get(x[pos], 0) + 1
        for x in spec:
            cb[x[pos]] = cb.get(x[pos], 0) + 1
        stat, df = chi2_two(ca, cb)
        crit = chi2_critical(df)
        same = sum(1 for x, y in zip(plain, spec) if x[pos] == y[pos])
        if df < 3 or stat > crit or same == n:
            print("FAIL: token %d: chi-square %.1f on %d degrees of freedom (critical %.1f at 1e-3); %d of %d equal"
                  % (pos + 1, stat, df, crit, same, n))
            bad = 1
        else:
            print("ok: token %d: the same distribution with speculation (chi-square %.1f on %d df, critical %.1f at"
                  " 1e-3; %d of %d samples differ)" % (pos + 1, stat, df, crit, n - same, n))
    for k in (1, 2):
        d, a, _ = spec_metrics(port2, k)
        if d is None or a is None or not 0 < a < d:
            print("FAIL: draft position %d: %s of %s accepted (both paths must run)" % (k, a, d))
            bad = 1
        else:
            print("ok: draft position %d: %d of %d sampled drafts accepted, the rest resampled" % (k, a, d))
    return bad


if __name__ == "__main__":
    port, what = int(sys.argv[1]), sys.argv[2]
    if what == "hostile":
        sys.exit(hostile(port, int(sys.argv[3])))
    if what == "sampled":
        sys.exit(sampled(port, int(sys.argv[3]), int(sys.argv[4])))
    if what == "spec":
        sys.exit(spec(port, sys.argv[3], int(sys.argv[4])))
    sys.exit({"same": same, "slow": slow, "leave": leave, "busy": busy, "prefix": prefix}[what](port))
