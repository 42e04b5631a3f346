"""Raw-socket HTTP pieces shared by the hostile-client tests (serve_hostile.py, route_hostile.py).

Only 127.0.0.1 is contacted.
"""
import json
import socket
import time

HOST = "127.0.0.1"


def connect(port, timeout=10):
    return socket.create_connection((HOST, port), timeout=timeout)


def read_all(s, limit_s):
    """What the server sends until it closes, or until limit_s seconds pass; (bytes, closed)."""
    got, end = b"", time.monotonic() + limit_s
    while time.monotonic() < end:
        s.settimeout(max(0.01, end - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except OSError:  # reset: the server closed with bytes unread
            break
        if not chunk:
            return got, True
        got += chunk
    return got, False


def status_of(raw):
    """The status of the first response in raw, its JSON body (or None)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    line = head.split(b"\r\n")[0].split()
    if len(line) < 2 or not line[0].startswith(b"HTTP/1."):
        return None, None
    try:
        return int(line[1]), json.loads(body)
    except ValueError:
        return int(line[1]), None
