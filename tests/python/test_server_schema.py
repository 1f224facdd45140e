"""The live server against its own /openapi.json with schemathesis: every documented route,
generated valid and invalid inputs, checking statuses, content types, headers and response
schemas. A 503 is expected (no model yet), so instead of schemathesis's "no 5xx" check the test
reads the server's own metrics afterwards: not one 500 may have been answered."""
import re
import subprocess
import sys
import pathlib

from test_server_fixture import server, server_factory  # noqa: F401

VENV_BIN = pathlib.Path(sys.executable).parent


def test_schemathesis_against_live_server(server):
    cmd = [str(VENV_BIN / "schemathesis"), "run", server.url + "/openapi.json",
           "--checks", "all", "--exclude-checks", "not_a_server_error",
           "--hypothesis-max-examples", "25", "--hypothesis-seed", "20261129",
           "--hypothesis-deadline", "5000", "-w", "1", "--no-color",
           "--max-response-time", "5000"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=280)
    tail = r.stdout[-6000:] + r.stderr[-2000:]
    assert r.returncode == 0, tail
    assert "10 passed" in r.stdout, tail
    m = server.get("/metrics").text
    assert not re.search(r'status="500"', m), m
    assert not re.search(r'status="other"', m), m
    # it really exercised POST /cam, not just the health routes
    cam = sum(int(v) for v in re.findall(r'ecsnet_requests_total\{route="/cam",status="\d+"\} (\d+)', m))
    assert cam >= 20, m
    assert server.get("/health/live").status_code == 200
