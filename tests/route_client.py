"""A client of furrow route using only Python's standard library, for tests/test_route.sh.

route_client.py stream ROUTER DIRECT      streams through the router equal the same requests sent to a replica
                                          (tokens, text, logprobs, finish reason, usage); a stream's first event
                                          comes through while the replica is still generating it
route_client.py load PORT N CONC MAXTOK [UNTIL]
                                          N greedy requests, CONC at a time: each answers 200 with the tokens of
                                          the same request sent alone first; with UNTIL (a file), more until it
                                          exists, then 2 CONC more (at most 20 N; fails if it never appears)
route_client.py leave ROUTER PORT...     a client that leaves a stream through the router after its first event
                                          stops the request on the replica (PORT...: the replicas)
Only 127.0.0.1 is contacted; every loop is bounded.
"""
import http.client
import json
import os
import sys
import threading
import time

HOST = "127.0.0.1"


def post(port, path, body, timeout=120):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    c.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    out = (r.status, dict(r.getheaders()), r.read())
    c.close()
    return out


def merged(raw):
    """What a stream says, whichever way its tokens were grouped into events."""
    text = raw.decode("utf-8")
    assert text.endswith("data: [DONE]\n\n"), "the stream does not end with data: [DONE]: %r" % text[-80:]
    ids, txt, logprobs, finish, usage = [], "", [], None, None
    for ev in text.split("\n\n")[:-2]:
        assert ev.startswith("data: "), "malformed event %r" % ev[:80]
        ch = json.loads(ev[6:])["choices"][0]
        ids += ch["token_ids"]
        txt += ch["text"]
        logprobs += ch["logprobs"] or []
        finish = ch["finish_reason"] or finish
        usage = json.loads(ev[6:]).get("usage", usage)
    return ids, txt, logprobs, finish, usage


def first_event_early(router):
    """Reads a long stream's first event, then asks the router whether the
    request is still in flight: a router that held the stream back until its
    end would show none."""
    c = http.client.HTTPConnection(HOST, router, timeout=120)
    body = {"prompt": [5, 6, 7], "max_tokens": 200, "temperature": 0, "ignore_eos": True, "stream": True}
    c.request("POST", "/v1/completions", body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    first = r.readline()
    m = http.client.HTTPConnection(HOST, router, timeout=60)
    m.request("GET", "/metrics")
    metrics = m.getresponse().read().decode()
    m.close()
    busy = sum(float(line.split()[-1]) for line in metrics.splitlines()
               if line.startswith("furrow_route_replica_in_flight{"))
    rest = r.read()
    c.close()
    if not first.startswith(b"data: {") or busy < 1 or not rest.endswith(b"data: [DONE]\n\n"):
        print("FAIL: first event %r, requests in flight then %g" % (first[:80], busy))
        return 1
    print("ok: a stream's first event came through the router while the replica was still generating it")
    return 0


def stream(router, direct):
    bodies = [{"prompt": [1, 2, 3], "max_tokens": 12, "temperature": 0, "ignore_eos": True},
              {"prompt": [7, 100, 1000, 5], "max_tokens": 9, "temperature": 0.8, "seed": 7, "ignore_eos": True},
              {"prompt": [42], "max_tokens": 6, "temperature": 0, "logprobs": 2}]
    bad = 0
    for b in bodies:
        b = dict(b, stream=True)
        st_r, h_r, raw_r = post(router, "/v1/completions", b)
        st_d, _, raw_d = post(direct, "/v1/completions", b)
        if st_r != 200 or st_d != 200 or h_r.get("Content-Type") != "text/event-stream":
            print("FAIL: stream %s: router %d %s, replica %d" % (b, st_r, h_r.get("Content-Type"), st_d))
            bad += 1
            continue
        ev_r, ev_d = merged(raw_r), merged(raw_d)
        if ev_r != ev_d:
            print("FAIL: stream %s: through the router %s, direct %s" % (b, ev_r, ev_d))
            bad += 1
    if not bad:
        print("ok: %d streams through the router equal the same streams from a replica (tokens, logprobs, usage)"
              % len(bodies))
    return first_event_early(router) | (1 if bad else 0)


def load(port, n, conc, max_tokens, until=None):
    body = {"prompt": [3, 1, 4, 1, 5, 9, 2, 6], "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
    st, _, raw = post(port, "/v1/completions", body)
    assert st == 200, (st, raw[:300])
    ref = json.loads(raw)["choices"][0]["token_ids"]
    assert len(ref) == max_tokens
    results = {}
    lock = threading.Lock()
    nxt = [0]
    stop_at = [None]  # with `until`: once that file exists, 2 * conc more requests (N at least)

    def next_index():
        with lock:
            i = nxt[0]
            if until and stop_at[0] is None and os.path.exists(until):
                stop_at[0] = max(n, i + 2 * conc)
            limit = n if not until else stop_at[0] if stop_at[0] is not None else 20 * n
            if i >= limit:
                return None
            nxt[0] += 1
            return i

    def worker():
        while True:
            i = next_index()
            if i is None:
                return
            try:
                st, _, raw = post(port, "/v1/completions", body)
                r = (st, json.loads(raw)["choices"][0]["token_ids"] if st == 200 else raw[:300])
            except Exception as e:  # a lost request: reported below
                r = (-1, repr(e))
            with lock:
                results[i] = r
    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    sent = nxt[0]
    bad = [(i, results.get(i)) for i in range(sent) if results.get(i) is None or results[i][0] != 200 or results[i][1] != ref]
    for i, r in bad[:5]:
        print("FAIL: request %d: %s" % (i, r))
    if until and stop_at[0] is None:
        print("FAIL: %s never appeared during %d requests" % (until, sent))
        return 1
    if not bad:
        print("ok: %d requests, %d at a time: every one answered 200 with the tokens of the request alone" % (sent, conc))
    return 1 if bad else 0


def generated(ports):
    total = 0
    for port in ports:
        c = http.client.HTTPConnection(HOST, port, timeout=60)
        c.request("GET", "/metrics")
        for line in c.getresponse().read().decode().splitlines():
            if line.startswith("furrow_generation_tokens_total "):
                total += float(line.split()[1])
        c.close()
    return total


def leave(router, ports):
    before = generated(ports)
    c = http.client.HTTPConnection(HOST, router, timeout=120)
    body = {"prompt": [8, 9, 10], "max_tokens": 250, "temperature": 0, "ignore_eos": True, "stream": True}
    c.request("POST", "/v1/completions", body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    first = r.readline()
    c.sock.shutdown(2)
    c.close()
    for _ in range(300):  # the replica finishes or cancels it: its tokens stop growing
        a = generated(ports)
        time.sleep(0.1)
        if generated(ports) == a:
            break
    made = generated(ports) - before
    if not first.startswith(b"data: {") or made >= 250:
        print("FAIL: a client that left after the first event: %g of 250 tokens generated" % made)
        return 1
    print("ok: a client that left a stream after its first event: the replica stopped after %d of 250 tokens" % made)
    return 0


def main():
    mode = sys.argv[1]
    if mode == "stream":
        return stream(int(sys.argv[2]), int(sys.argv[3]))
    if mode == "leave":
        return leave(int(sys.argv[2]), [int(x) for x in sys.argv[3:]])
    if mode == "load":
        return load(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
                    sys.argv[6] if len(sys.argv) > 6 else None)
    print("unknown mode", mode)
    return 2


if __name__ == "__main__":
    sys.exit(main())
