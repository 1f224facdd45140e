"""ecsnet-server as a process: flags, environment and config file, exit statuses, --help and
--version, access log formats, and the graceful stop on SIGTERM/SIGINT."""
import json
import re
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

from test_server_fixture import Server, jpeg_bytes, server_binary, server_factory  # noqa: F401

DESIGN_FLAGS = ["--listen", "--model", "--data-dir", "--device", "--workers", "--threads",
                "--train-threads", "--queue", "--max-body",
                "--max-pixels", "--max-labels", "--request-timeout-ms", "--max-connections",
                "--label-threshold", "--admin-token-file", "--log-format", "--help",
                "--version", "--config", "--cors-origin", "--max-connections-per-ip",
                "--header-timeout-ms", "--body-timeout-ms", "--max-header-bytes",
                "--trusted-proxy"]


def run(*args, env=None, timeout=10):
    return subprocess.run([str(server_binary()), *args], capture_output=True, text=True,
                          timeout=timeout, env=env or {})


def test_help_lists_every_flag():
    r = run("--help")
    assert r.returncode == 0
    for flag in DESIGN_FLAGS:
        assert flag in r.stdout, flag
    assert "ECSNET_ADMIN_TOKEN" in r.stdout


def test_batching_flags_are_gone():
    """Same-size batching was measured slower per image on the CPU and was never wired in, so
    its flags were removed rather than parsed and ignored."""
    assert "--batch" not in run("--help").stdout
    for flag in ("--batch-max", "--batch-delay-ms"):
        r = run(flag, "2")
        assert r.returncode == 2 and "unknown option" in r.stderr, (flag, r.stderr)


def test_version():
    r = run("--version")
    assert r.returncode == 0 and re.fullmatch(r"ecsnet-server \d+\.\d+\.\d+\n", r.stdout)


@pytest.mark.parametrize("args,env,needle", [
    (["--workers", "0"], {}, "--workers"),
    (["--queue", "lots"], {}, "not an integer"),
    (["--frobnicate"], {}, "unknown option"),
    (["--listen", "nohost"], {}, "HOST:PORT"),
    (["--log-format", "xml"], {}, "--log-format"),
    ([], {"ECSNET_MAX_PIXELS": "-5"}, "ECSNET_MAX_PIXELS"),
    (["--config", "/nonexistent.conf"], {}, "cannot read"),
    (["--train-threads", "8", "--threads", "2"], {}, "--train-threads"),
    (["--winograd", "3"], {}, "--winograd: '3' is not one of auto|off|2|4"),
    (["--fuse", "maybe"], {}, "--fuse"),
    ([], {"ECSNET_DNNL_PACK": "wide"}, "ECSNET_DNNL_PACK"),
    ([], {"ECSNET_TF32": "yes"}, "ECSNET_TF32"),
])
def test_bad_usage_exits_2_with_one_line(args, env, needle):
    r = run(*args, env=env)
    assert r.returncode == 2, r
    assert r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert r.stderr.startswith("ecsnet-server: ")


def test_model_that_cannot_be_served_fails_start(tmp_path):
    r = run("--listen", "127.0.0.1:0", "--model", str(tmp_path / "missing.safetensors"))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "missing.safetensors" in r.stderr


def test_port_in_use_fails_start():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = run("--listen", f"127.0.0.1:{port}")
        assert r.returncode == 1 and "cannot listen" in r.stderr


def test_config_file_env_and_flags(tmp_path, server_factory):
    conf = tmp_path / "server.conf"
    conf.write_text("# ecsnet\nqueue 5\nworkers = 2\nmax-labels 3\nlog-format json\n")
    s = server_factory("--config", str(conf), "--queue", "7",
                       env={"ECSNET_WORKERS": "3"})
    m = s.get("/metrics").text
    assert re.search(r"^ecsnet_queue_capacity 7$", m, re.M)  # flag over file
    assert re.search(r"^ecsnet_workers 3$", m, re.M)         # env over file
    r = s.post("/cam?labels=a,b,c,d", data=jpeg_bytes(), headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 422                              # file over default
    # the access log is JSON, with the request id
    s.get("/health", headers={"X-Request-Id": "json-log-1"})
    line = s.wait_line(r'"request_id":"json-log-1"')
    assert line is not None
    rec = json.loads(line)
    assert rec["type"] == "access" and rec["status"] == 200 and rec["path"] == "/health"
    assert rec["method"] == "GET" and rec["duration_ms"] >= 0


def test_text_access_log_and_off(server_factory):
    s = server_factory()
    s.get("/nope", headers={"X-Request-Id": "txt-1"})
    line = s.wait_line(r"request_id=txt-1")
    assert line is not None and '"GET /nope" 404' in line
    q = server_factory("--access-log", "off")
    q.get("/health", headers={"X-Request-Id": "quiet-1"})
    time.sleep(0.2)
    assert q.wait_line(r"quiet-1", timeout=0.3) is None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_stop_finishes_in_flight_work(server_factory, sig):
    s = server_factory("--workers", "1", "--queue", "8")
    big = jpeg_bytes(6000, 4000, quality=50, smooth=True)
    results = []

    def one():
        r = requests.post(s.url + "/cam", data=big, timeout=60,
                          headers={"Content-Type": "image/jpeg"})
        results.append((r.status_code, r.json()["error"]["code"]))

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    # wait until all three are queued or running, then stop
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = s.get("/metrics").text
        if re.search(r"^ecsnet_requests_in_flight [4-9]$", m, re.M):  # 3 + this /metrics
            break
        time.sleep(0.02)
    s.proc.send_signal(sig)
    for t in threads:
        t.join()
    assert s.proc.wait(timeout=20) == 0
    # every in-flight request got its real answer, not a reset
    assert sorted(results) == [(503, "model_not_ready")] * 3, results
    assert s.wait_line(r"stopped") is not None
    with pytest.raises(requests.ConnectionError):
        requests.get(s.url + "/health/live", timeout=2)


@pytest.mark.parametrize("policy", [None, "active"])
def test_omp_wait_policy_passive_unless_set(tmp_path, monkeypatch, policy):
    """libgomp reads OMP_WAIT_POLICY before main, so the server re-executes itself once with
    passive added (api/omp-wait.h): the same process, still stopped by SIGTERM; a value the
    user set is kept."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    s = Server(env={"OMP_WAIT_POLICY": policy} if policy else {}, data_dir=tmp_path / "data")
    try:
        assert s.get("/health/live").status_code == 200
        with open(f"/proc/{s.proc.pid}/environ", "rb") as f:
            env = f.read().split(b"\0")
        assert f"OMP_WAIT_POLICY={policy or 'passive'}".encode() in env
        assert sum(v.startswith(b"OMP_WAIT_POLICY=") for v in env) == 1
    finally:
        assert s.stop() == 0
