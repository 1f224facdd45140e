"""Connection hygiene against the real binary: a per-client-address connection limit, header and
body timeouts apart from the compute deadline, the header size limit, and the client address
taken from X-Forwarded-For only when the peer is a --trusted-proxy.

"Another address" is 127.0.0.2: Linux answers the whole of 127/8 on the loopback, so a client
socket bound there reaches a server on 127.0.0.1 from a different source address."""
import http.client
import json
import re
import socket
import statistics
import threading
import time

import pytest
import requests

from test_server_fixture import Server, server_factory  # noqa: F401


def other_address_get(port, path="/health/live", timeout=10):
    """GET from 127.0.0.2: (status, seconds, body)."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                   source_address=("127.0.0.2", 0))
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        return r.status, time.monotonic() - t0, body
    finally:
        c.close()


def raw(port, source="127.0.0.1", timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                 source_address=(source, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_all(s, timeout=10):
    """Everything the server sends until it closes (b'' for a silent close)."""
    s.settimeout(timeout)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except (ConnectionResetError, socket.timeout):
        pass
    return out


def parse_answer(data):
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode()
    return status, headers, json.loads(body) if body else None


def metric(server, name, labels=""):
    """A counter, read from 127.0.0.2 (127.0.0.1 may be over its share)."""
    st, _, body = other_address_get(server.port, "/metrics")
    assert st == 200
    text = body.decode()
    m = re.search(r"^" + re.escape(name + labels) + r" (\d+)", text, re.M)
    assert m, name + labels
    return int(m.group(1))


def test_300_slow_connections_from_one_address_leave_health_to_others(server_factory):
    s = server_factory()
    baseline = statistics.median(other_address_get(s.port)[1] for _ in range(5))
    socks, stop = [], threading.Event()
    for _ in range(300):
        try:
            c = raw(s.port)
            c.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
            socks.append(c)
        except OSError:
            pass

    def trickle():  # one header byte a second on each: never idle, never done
        while not stop.is_set():
            for c in socks:
                try:
                    c.send(b"X")
                except OSError:
                    pass
            stop.wait(1.0)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        time.sleep(1.0)
        probes = [other_address_get(s.port) for _ in range(7)]
        assert all(p[0] == 200 for p in probes), [p[0] for p in probes]
        median = statistics.median(p[1] for p in probes)
        print(f"/health/live from 127.0.0.2: median {median * 1e3:.1f} ms with 300 slow "
              f"connections held, {baseline * 1e3:.1f} ms before")
        assert median < 1.0, (median, baseline)
        # The connections beyond the address's share were answered 429 and closed.
        assert metric(s, "ecsnet_connections_refused_total", '{what="connection"}') >= 300 - 64
    finally:
        stop.set()
        t.join()
        for c in socks:
            c.close()


def test_one_connection_over_the_share_is_answered_429(server_factory):
    s = server_factory("--max-connections-per-ip", "3")
    held = [raw(s.port) for _ in range(3)]
    try:
        time.sleep(0.2)
        extra = raw(s.port)
        status, headers, body = parse_answer(read_all(extra))
        assert status == 429 and body["error"]["code"] == "too_many_connections"
        assert headers["retry-after"] == "1" and headers["connection"] == "close"
        assert other_address_get(s.port)[0] == 200  # another address has its own share
    finally:
        for c in held:
            c.close()
    time.sleep(0.3)
    assert s.get("/health/live").status_code == 200  # freed slots are reusable


def test_headers_that_never_finish_are_answered_408(server_factory):
    s = server_factory("--header-timeout-ms", "600", "--request-timeout-ms", "30000")
    c = raw(s.port)
    c.sendall(b"GET /health/live HTTP/1.1\r\n")
    t0 = time.monotonic()
    got = b""
    c.settimeout(0.1)
    while time.monotonic() - t0 < 5 and not got:
        try:
            c.send(b"X")  # busy, but never a complete header
            got = c.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
    got += read_all(c, timeout=2)
    took = time.monotonic() - t0
    status, _, body = parse_answer(got)
    assert status == 408 and body["error"]["code"] == "request_timeout", got
    assert 0.5 <= took < 3.0, took
    assert "header-timeout-ms" in body["error"]["message"]
    assert metric(s, "ecsnet_connections_timed_out_total", '{phase="headers"}') == 1


def test_a_body_that_stops_arriving_is_answered_408_apart_from_the_compute_deadline(
        server_factory):
    s = server_factory("--body-timeout-ms", "700", "--request-timeout-ms", "60000")
    c = raw(s.port)
    c.sendall(b"POST /cam HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
              b"Content-Length: 100000\r\n\r\n")
    t0 = time.monotonic()
    try:
        for _ in range(40):
            c.send(b"\x89PNG" * 4)
            time.sleep(0.1)
    except OSError:
        pass
    status, _, body = parse_answer(read_all(c, timeout=3))
    took = time.monotonic() - t0
    assert status == 408 and "body-timeout-ms" in body["error"]["message"]
    assert took < 4.0
    assert s.wait_line(r'"POST /cam" 408 ') is not None
    assert metric(s, "ecsnet_connections_timed_out_total", '{phase="body"}') == 1


def test_an_idle_kept_alive_connection_is_closed_without_a_word(server_factory):
    s = server_factory("--header-timeout-ms", "500")
    # (libmicrohttpd 0.9.75 closes after an answer queued on a request's first call, so the
    # request is one answered after its body: a POST /cam that is not an image.)
    c = raw(s.port)
    c.sendall(b"POST /cam HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
              b"Content-Length: 3\r\n\r\nabc")
    c.settimeout(5)
    first = c.recv(65536)
    assert first.startswith(b"HTTP/1.1 400") and b"Connection: close" not in first, first
    t0 = time.monotonic()
    assert read_all(c, timeout=5) == b""  # no stray 408 a client would take for an answer
    assert time.monotonic() - t0 < 3.0
    assert metric(s, "ecsnet_connections_timed_out_total", '{phase="keepalive"}') == 1


def test_aborted_uploads_free_their_connection_at_once(server_factory):
    """A client that closes in the middle of a body: the connection is gone within a moment,
    not held until a timeout (libmicrohttpd's epoll mode missed that end, so the server polls),
    and a client aborting many uploads does not lock itself out of its share."""
    s = server_factory("--max-connections-per-ip", "8", "--request-timeout-ms", "30000")
    for _ in range(40):
        c = raw(s.port)
        c.sendall(b"POST /cam HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                  b"Content-Length: 1000\r\n\r\n" + b"\x89PNG" * 20)
        c.close()
    deadline = time.monotonic() + 3
    while metric(s, "ecsnet_connections_open") > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(s, "ecsnet_connections_open") == 1  # the probe's own
    assert s.get("/health/live").status_code == 200


def test_headers_over_the_limit_are_431(server_factory):
    s = server_factory("--max-header-bytes", "2048")
    assert s.get("/health/live", headers={"X-Pad": "a" * 1500}).status_code == 200
    r = s.get("/health/live", headers={"X-Pad": "a" * 2500})
    assert r.status_code == 431 and r.json()["error"]["code"] == "headers_too_large"
    # far beyond the connection's memory: libmicrohttpd's own 431
    assert s.get("/health/live", headers={"X-Pad": "a" * 200000}).status_code == 431
    assert s.get("/health/live").status_code == 200


def slow_post(port, xff, source="127.0.0.1"):
    c = raw(port, source=source)
    c.sendall(b"POST /cam HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
              b"Content-Length: 1000\r\nX-Forwarded-For: " + xff.encode() + b"\r\n\r\nab")
    return c


def test_behind_a_trusted_proxy_clients_are_limited_not_the_proxy(server_factory):
    s = server_factory("--trusted-proxy", "127.0.0.1/32", "--max-connections-per-ip", "2",
                       "--body-timeout-ms", "20000")
    # The proxy's own connections are not counted: five idle ones, then a request on a sixth.
    idle = [raw(s.port) for _ in range(5)]
    held = []
    try:
        time.sleep(0.2)
        assert s.get("/health/live").status_code == 200
        held = [slow_post(s.port, "203.0.113.7") for _ in range(2)]
        time.sleep(0.3)
        r = s.get("/health/live", headers={"X-Forwarded-For": "203.0.113.7"})
        assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_connections"
        assert r.headers["Retry-After"] == "1"
        r = s.get("/health/live", headers={"X-Forwarded-For": "203.0.113.8"})
        assert r.status_code == 200
        assert s.wait_line(r'^\S+ 203\.0\.113\.8 "GET /health/live" 200') is not None
        # forged entries left of the real client count for nothing; trusted hops are skipped
        r = s.get("/health/live", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9, "
                                                              "127.0.0.1"})
        assert r.status_code == 200
        assert s.wait_line(r'^\S+ 203\.0\.113\.9 "GET /health/live" 200') is not None
        # a peer that is not a trusted proxy cannot choose its address
        st, _, _ = other_address_get(s.port)
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10,
                                       source_address=("127.0.0.2", 0))
        c.request("GET", "/health/live", headers={"X-Forwarded-For": "203.0.113.7"})
        assert c.getresponse().status == 200
        c.close()
        assert s.wait_line(r'^\S+ 127\.0\.0\.2 "GET /health/live" 200') is not None
    finally:
        for c in idle + held:
            c.close()
    time.sleep(0.3)
    r = s.get("/health/live", headers={"X-Forwarded-For": "203.0.113.7"})
    assert r.status_code == 200  # the client's requests ended, its share is back


@pytest.mark.parametrize("value", ["10.0.0.0/33", "not-an-address", "::1/129", "10.0.0.1/-1",
                                   "10.0.0.0/8,,x"])
def test_a_bad_trusted_proxy_is_bad_usage(value, tmp_path):
    from test_server_fixture import server_binary
    import subprocess
    p = subprocess.run([str(server_binary()), "--trusted-proxy", value], capture_output=True,
                       text=True, timeout=10, env={})
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "--trusted-proxy" in p.stderr


def test_trusted_proxies_from_the_environment_and_flags(tmp_path):
    """The environment's list (comma-separated) is replaced by the command line's, which grows
    with each --trusted-proxy."""
    s = Server("--trusted-proxy", "192.0.2.0/24", "--trusted-proxy", "127.0.0.1",
               env={"ECSNET_TRUSTED_PROXY": "10.0.0.0/8,::1"}, data_dir=tmp_path / "d")
    try:
        s.get("/health/live", headers={"X-Forwarded-For": "203.0.113.5"})
        assert s.wait_line(r'^\S+ 203\.0\.113\.5 "GET /health/live"') is not None
    finally:
        s.stop()
    s = Server(env={"ECSNET_TRUSTED_PROXY": "10.0.0.0/8,::1"}, data_dir=tmp_path / "d")
    try:
        s.get("/health/live", headers={"X-Forwarded-For": "203.0.113.5"})
        assert s.wait_line(r'^\S+ 127\.0\.0\.1 "GET /health/live"') is not None
    finally:
        s.stop()
