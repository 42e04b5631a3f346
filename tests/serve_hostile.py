"""Hostile HTTP clients of furrow serve, with raw sockets from Python's standard library.

serve_hostile.py PORT ADMIN_PORT HEADER_TIMEOUT slots      idle and half-sent connections hold every main slot:
                                                           the admin port still answers /health and /metrics; the
                                                           holders get 408 or are closed after the header timeout
serve_hostile.py PORT ADMIN_PORT HEADER_TIMEOUT slowloris  headers a byte at a time: 408, then closed
serve_hostile.py PORT ADMIN_PORT HEADER_TIMEOUT garbage    malformed request lines: 400 with OpenAI error JSON
serve_hostile.py PORT ADMIN_PORT HEADER_TIMEOUT length     absurd Content-Length values: 413 or 400 at once
serve_hostile.py PORT ADMIN_PORT HEADER_TIMEOUT keepalive  an idle keep-alive connection is closed without a word
serve_hostile.py PORT - N per-ip                           N connections from one address: the next is refused
serve_hostile.py PORT ADMIN_PORT HEADER_TIMEOUT normal     a completion still works
Only 127.0.0.1 is contacted; every loop is bounded in count and time.
"""
import http.client
import json
import sys
import time

from raw_http import HOST, connect, read_all, status_of  # raw_http.py, beside this file


def exchange(port, data, limit_s):
    """Sends data in one piece and returns (status, json, seconds, closed)."""
    s = connect(port)
    t = time.monotonic()
    s.sendall(data)
    raw, closed = read_all(s, limit_s)
    s.close()
    st, js = status_of(raw)
    return st, js, time.monotonic() - t, closed


def get(port, path, timeout):
    t = time.monotonic()
    try:
        c = http.client.HTTPConnection(HOST, port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body, time.monotonic() - t
    except (OSError, http.client.HTTPException) as e:
        return repr(e), b"", time.monotonic() - t


def metric(body, name):
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def error_json(js, code):
    return isinstance(js, dict) and js.get("error", {}).get("code") == code and \
        isinstance(js["error"].get("message"), str)


def slots(port, admin, ht, n=8):
    fails = []
    held = []
    for i in range(n):  # every slot: half a request line, or headers cut mid-line
        s = connect(port)
        s.sendall(b"GE" if i % 2 else b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
        held.append(s)
    time.sleep(0.3)
    st, _, dt = get(port, "/health", 1.0)
    if st == 200:  # the slots were not all held: the rest of this case would prove nothing
        fails.append("the main port answered /health with %d connections held: the limit did not hold" % n)
    st, body, dt = get(admin, "/health", 2.0)
    if st != 200 or dt > 2.0:
        fails.append("admin /health with every main slot held: %s after %.2f s" % (st, dt))
    st, body, dt = get(admin, "/metrics", 2.0)
    open_now = metric(body, "furrow_http_connections") if st == 200 else None
    if st != 200 or open_now is None or open_now < n:
        fails.append("admin /metrics: %s, furrow_http_connections %s (expected >= %d)" % (st, open_now, n))
    st, _, _ = get(admin, "/v1/models", 2.0)
    if st != 404:
        fails.append("admin /v1/models gave %s, expected 404 (the admin port serves /health and /metrics only)" % st)
    t0 = time.monotonic()
    outcomes = []
    for s in held:  # each cut by the header timeout, measured from its accept
        raw, closed = read_all(s, ht + 3.0 - (time.monotonic() - t0))
        outcomes.append((status_of(raw)[0], closed))
        s.close()
    waited = time.monotonic() - t0
    if any(o != (408, True) for o in outcomes) or waited > ht + 2.0:
        fails.append("held connections after %.2f s (header timeout %g s): %s, expected 408 and closed"
                     % (waited, ht, outcomes))
    st, _, dt = get(port, "/health", 5.0)
    if st != 200:
        fails.append("main /health once the holders were cut: %s" % st)
    for f in fails:
        print("FAIL: " + f)
    if not fails:
        print("ok: %d idle or half-sent connections hold every main slot (main /health does not answer); the admin"
              " port answers /health and /metrics at once; the holders get 408 and are closed within %.1f s"
              " (--header-timeout %g); then main /health answers" % (n, waited, ht))
    return 1 if fails else 0


def slowloris(port, admin, ht):
    req = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    s = connect(port)
    t = time.monotonic()
    sent = 0
    for i in range(len(req)):  # one byte each 0.1 s: the whole request would take 20 s
        if time.monotonic() - t > ht + 3.0:
            break
        try:
            s.send(req[i:i + 1])
            sent += 1
        except OSError:  # the server has ended the connection
            break
        time.sleep(0.1)
    raw, closed = read_all(s, 2.0)
    s.close()
    dt = time.monotonic() - t
    st = status_of(raw)[0]
    if st != 408 or sent >= len(req) or dt > ht + 3.5:
        print("FAIL: headers a byte at a time: status %s, %d of %d bytes sent, %.1f s (header timeout %g s)"
              % (st, sent, len(req), dt, ht))
        return 1
    print("ok: headers a byte each 0.1 s are cut with 408 after %.1f s (--header-timeout %g); %d of %d bytes had"
          " gone" % (dt, ht, sent, len(req)))
    return 0


def garbage(port, admin, ht):
    cases = [b"GARBAGE\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(48)),
             b"\x00\x01\x02 hello world\r\n\r\n", b"hello world\r\n\r\n", b"GET /health\r\n\r\n",
             b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n"]
    wrong = []
    for data in cases:
        st, js, dt, _ = exchange(port, data, 2.0)
        if st != 400 or dt > 1.5:
            wrong.append("%r: %s after %.2f s" % (data[:24], st, dt))
        elif data == cases[0] and not error_json(js, 400):
            wrong.append("%r: no OpenAI error JSON: %r" % (data[:24], js))
    for w in wrong:
        print("FAIL: malformed request line " + w + ", expected 400 at once")
    if not wrong:
        print("ok: %d malformed request lines (no space, a TLS hello, NUL bytes, no version, extra words, a control"
              " byte) each get 400 at once" % len(cases))
    return 1 if wrong else 0


def length(port, admin, ht):
    post = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
    cases = [(post + b"Content-Length: 18446744073709551615\r\n\r\n", 413),
             (post + b"Content-Length: 18446744073709551616\r\n\r\n", 413),
             (post + b"Content-Length: 100000000\r\n\r\n{\"prompt\"", 413),
             (b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n", 413),
             (post + b"Content-Length: abc\r\n\r\n", 400), (post + b"Content-Length: -1\r\n\r\n", 400),
             (post + b"Content-Length: 2\r\nContent-Length: 7\r\n\r\n{}", 400),
             (post + b"Transfer-Encoding: chunked\r\n\r\n" + (b"8000\r\n" + b"a" * 0x8000 + b"\r\n") * 4, 413)]
    wrong = []
    for data, want in cases:
        st, js, dt, _ = exchange(port, data, 2.0)
        if st != want or dt > 1.5:
            wrong.append("%r: %s after %.2f s, expected %d" % (data[len(post):len(post) + 48], st, dt, want))
    st, js, _, _ = exchange(port, cases[0][0], 2.0)
    if not error_json(js, 413):
        wrong.append("Content-Length 2^64-1: no OpenAI error JSON: %r" % js)
    for w in wrong:
        print("FAIL: " + w)
    if not wrong:
        print("ok: Content-Length 2^64-1, 2^64, over --max-body (on POST and GET), not a number, negative, two that"
              " disagree, and a chunked body over the limit each get 413 or 400 at once")
    return 1 if wrong else 0


def keepalive(port, admin, ht):
    s = connect(port)
    t = time.monotonic()
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    raw, _ = read_all(s, 0.5)  # the response, then nothing while the connection waits
    rest, closed = read_all(s, ht + 3.0)
    dt = time.monotonic() - t
    s.close()
    if status_of(raw)[0] != 200 or rest or not closed or dt > ht + 2.0:
        print("FAIL: idle keep-alive: first %s, then %r, closed %s after %.1f s" % (status_of(raw)[0], rest[:60],
                                                                                closed, dt))
        return 1
    print("ok: an idle keep-alive connection is closed %.1f s after its request, without a stray response" % dt)
    return 0


def per_ip(port, n):
    held = [connect(port) for _ in range(n)]
    for s in held:
        s.sendall(b"G")
    time.sleep(0.3)
    st, js, dt, closed = exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 2.0)
    refused = st is None and dt < 1.5
    for s in held:
        s.close()
    time.sleep(0.3)
    st2, _, _ = get(port, "/health", 5.0)
    if not refused or st2 != 200:
        print("FAIL: with %d connections from 127.0.0.1 held another gave %s after %.2f s (expected refused);"
              " once they closed: %s" % (n, st, dt, st2))
        return 1
    print("ok: --max-connections-per-ip %d: one more from the same address is refused at once; served once"
          " they close" % n)
    return 0


def normal(port, admin, ht):
    c = http.client.HTTPConnection(HOST, port, timeout=120)
    c.request("POST", "/v1/completions", body=json.dumps({"prompt": [1, 2, 3], "max_tokens": 4, "temperature": 0}),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    body = r.read()
    c.close()
    if r.status != 200 or json.loads(body)["usage"]["completion_tokens"] != 4:
        print("FAIL: a completion after the hostile clients: %d %r" % (r.status, body[:200]))
        return 1
    print("ok: a completion after the hostile clients")
    return 0


if __name__ == "__main__":
    port, what = int(sys.argv[1]), sys.argv[4]
    if what == "per-ip":
        sys.exit(per_ip(port, int(sys.argv[3])))
    admin, ht = int(sys.argv[2]), float(sys.argv[3])
    sys.exit({"slots": slots, "slowloris": slowloris, "garbage": garbage, "length": length, "keepalive": keepalive,
              "normal": normal}[what](port, admin, ht))
