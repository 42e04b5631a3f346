"""Slow and hostile clients of furrow route, with raw sockets from Python's standard library.

route_hostile.py PORT HEADER_TIMEOUT BODY_TIMEOUT slowloris  headers a byte at a time: 408, closed; meanwhile a
                                                             completion through the router answers
route_hostile.py PORT HEADER_TIMEOUT BODY_TIMEOUT slowbody   headers, then part of the body and silence: 408 after
                                                             the body timeout, closed
route_hostile.py PORT HEADER_TIMEOUT BODY_TIMEOUT length     a declared body over --max-body: 413 at once, before
                                                             the body; a chunked one over it: 413
route_hostile.py PORT MAX_CONNECTIONS - cap                  MAX_CONNECTIONS half-sent requests hold every slot: the
                                                             next connection gets 503 at once; then, the holders
                                                             gone, a request answers
Only 127.0.0.1 is contacted; every loop is bounded in count and time.
"""
import http.client
import json
import sys
import time

from raw_http import HOST, connect, read_all, status_of  # raw_http.py, beside this file


def completion(port, timeout):
    try:
        c = http.client.HTTPConnection(HOST, port, timeout=timeout)
        c.request("POST", "/v1/completions", body=json.dumps({"prompt": [1, 2, 3], "max_tokens": 2}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body
    except (OSError, http.client.HTTPException) as e:
        return repr(e), b""


def slowloris(port, ht, bt):
    req = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    s = connect(port)
    t = time.monotonic()
    cut = False
    for i in range(len(req)):  # a byte each 0.1 s: the whole request would take 20 s
        try:
            s.sendall(req[i:i + 1])
        except OSError:
            cut = True
            break
        if i == 5:
            st, _ = completion(port, 10)  # another client is served meanwhile
            if st != 200:
                print("FAIL: a completion while a slow client sends its headers: %s" % st)
                return 1
        time.sleep(0.1)
        if time.monotonic() - t > ht + 2:
            break
    raw, closed = read_all(s, 2)
    dt = time.monotonic() - t
    s.close()
    st = status_of(raw)[0]
    if st != 408 or not (closed or cut) or dt > ht + 3:
        print("FAIL: slow headers: status %s, closed %s, after %.2f s (--header-timeout %g)" % (st, closed, dt, ht))
        return 1
    print("ok: headers a byte each 0.1 s: 408 and closed after %.2f s (--header-timeout %g); a completion meanwhile"
          " answered" % (dt, ht))
    return 0


def slowbody(port, ht, bt):
    body = json.dumps({"prompt": [1, 2, 3], "max_tokens": 2}).encode()
    s = connect(port)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d"
              b"\r\n\r\n" % len(body) + body[:5])
    t = time.monotonic()
    raw, closed = read_all(s, bt + 3)
    dt = time.monotonic() - t
    s.close()
    st, js = status_of(raw)
    if st != 408 or not closed or dt < bt - 0.5 or dt > bt + 2:
        print("FAIL: a body that stops: status %s, closed %s, after %.2f s (--body-timeout %g)" % (st, closed, dt, bt))
        return 1
    print("ok: a body that stops after 5 bytes: 408 (%s) and closed after %.2f s (--body-timeout %g)"
          % (js.get("error", {}).get("message") if js else None, dt, bt))
    return 0


def length(port, ht, bt):
    fails = []
    s = connect(port)
    t = time.monotonic()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
    raw, closed = read_all(s, 2)
    dt = time.monotonic() - t
    s.close()
    st, js = status_of(raw)
    if st != 413 or dt > 1.0 or not js or "max-body" not in js.get("error", {}).get("message", ""):
        fails.append("declared 10 MB body: %s after %.2f s, %s" % (st, dt, js))
    s = connect(port)
    t = time.monotonic()
    head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n" % 4096 + b"x" * 4096 + b"\r\n"
    try:
        s.sendall(head)
        for _ in range(4):  # 16 KB, over --max-body
            s.sendall(chunk)
    except OSError:
        pass
    raw, closed = read_all(s, 3)
    dt = time.monotonic() - t
    s.close()
    st, _ = status_of(raw)
    if st != 413:
        fails.append("chunked 16 KB body: %s after %.2f s" % (st, dt))
    for f in fails:
        print("FAIL: " + f)
    if not fails:
        print("ok: a declared body over --max-body: 413 before it is sent; a chunked one: 413")
    return 1 if fails else 0


def cap(port, n):
    fails = []
    held = []
    for _ in range(n):  # half-sent requests: accepted at once, held until the header timeout
        s = connect(port)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        held.append(s)
    time.sleep(0.5)
    statuses = []
    t = time.monotonic()
    for _ in range(3):
        s = connect(port)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        raw, closed = read_all(s, 3)
        st, js = status_of(raw)
        statuses.append(st)
        if st == 503 and not (js and "max-connections" in js.get("error", {}).get("message", "")):
            fails.append("503 without naming --max-connections: %s" % js)
        s.close()
    dt = time.monotonic() - t
    if statuses != [503] * 3 or dt > 3:
        fails.append("3 connections beyond %d held: %s in %.2f s, expected 503 each at once" % (n, statuses, dt))
    for s in held:
        s.close()
    ok200 = None
    for _ in range(30):  # the holders' closes reach the router
        time.sleep(0.1)
        st, _ = completion(port, 10)
        if st == 200:
            ok200 = True
            break
    if not ok200:
        fails.append("no completion once the holders left")
    for f in fails:
        print("FAIL: " + f)
    if not fails:
        print("ok: %d half-sent requests hold --max-connections %d: 3 more connections get 503 at once; once they"
              " left a completion answers" % (n, n))
    return 1 if fails else 0


def main():
    port = int(sys.argv[1])
    what = sys.argv[4]
    if what == "cap":
        return cap(port, int(sys.argv[2]))
    ht, bt = float(sys.argv[2]), float(sys.argv[3])
    return {"slowloris": slowloris, "slowbody": slowbody, "length": length}[what](port, ht, bt)


if __name__ == "__main__":
    sys.exit(main())
