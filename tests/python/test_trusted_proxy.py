"""--trusted-proxy: behind a proxy (nginx in deploy/), the client is read from
X-Forwarded-For, right to left, skipping trusted proxies; without the setting, or from an
untrusted peer, the header is ignored; addresses a client wrote itself are never believed.
The access log's "remote" shows the result."""
import json

import pytest
import requests

from test_server_fixture import Server


def _remote(s, xff):
    rid = f"xff-{abs(hash(xff)) % 10**9}"
    h = {"X-Request-Id": rid}
    if xff is not None:
        h["X-Forwarded-For"] = xff
    assert requests.get(s.url + "/health/live", headers=h, timeout=10).status_code == 200
    line = s.wait_line(rf'"request_id":"{rid}"', timeout=5)
    assert line, f"no access line for {rid}"
    return json.loads(line)["remote"]


def test_header_ignored_without_trusted_proxies(tmp_path):
    s = Server("--log-format", "json", data_dir=tmp_path / "d")
    try:
        assert _remote(s, "203.0.113.9") == "127.0.0.1"
    finally:
        s.stop()


@pytest.mark.parametrize("xff,want", [
    (None, "127.0.0.1"),
    ("203.0.113.9", "203.0.113.9"),
    ("198.51.100.1, 203.0.113.9", "203.0.113.9"),  # a forged entry left of the real client
    ("203.0.113.9, 10.1.2.3", "203.0.113.9"),      # through a second, trusted proxy
    ("10.9.9.9,10.1.2.3", "10.9.9.9"),             # every hop trusted: the leftmost
    ("2001:db8::1", "2001:db8::1"),
    ("junk", "127.0.0.1"),                          # not an address: the trusted peer
    ("203.0.113.9, junk", "127.0.0.1"),
])
def test_client_from_trusted_proxy(tmp_path, xff, want):
    s = Server("--log-format", "json", "--trusted-proxy", "127.0.0.1, 10.0.0.0/8",
               data_dir=tmp_path / "d")
    try:
        assert _remote(s, xff) == want
    finally:
        s.stop()


def test_untrusted_peer_is_the_client(tmp_path):
    s = Server("--log-format", "json", "--trusted-proxy", "10.0.0.0/8,2001:db8::/32",
               data_dir=tmp_path / "d")
    try:
        assert _remote(s, "203.0.113.9") == "127.0.0.1"
    finally:
        s.stop()


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "x", "10.0.0.1,", "::1/129",
                                 ",".join(["10.0.0.1"] * 33)])
def test_bad_trusted_proxies_stop_the_start(tmp_path, bad):
    import subprocess

    from test_server_fixture import server_binary

    p = subprocess.run([str(server_binary()), "--trusted-proxy", bad], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 2
    assert p.stderr.startswith("ecsnet-server: --trusted-proxy") and p.stderr.count("\n") == 1
