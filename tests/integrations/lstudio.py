"""A real Label Studio (label-studio==1.23.2 from .venv-int) on a free loopback port, with the
settings an offline test needs (docs/integrations.md records why each one is there), and a
small REST client for it. Started once per test session, in the background, as early as
possible: a first start on fresh SQLite takes 25-85 s of migrations."""
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
import time

import requests


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabelStudio:
    USER, PASSWORD = "admin@example.com", "ecsnet-test-password"

    def __init__(self, base_dir: pathlib.Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(20)  # the legacy token: 40 hex characters
        self.base_dir = base_dir
        base_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ECSNET_")}
        env.update({
            "ML_BLOCK_LOCAL_IP": "false",
            "SSRF_PROTECTION_ENABLED": "false",
            "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "LABEL_STUDIO_BASE_DATA_DIR": str(base_dir),
            "fflag_feat_utc_210_prediction_validation_15082025": "true",
            "HOME": str(base_dir),
        })
        exe = pathlib.Path(sys.executable).parent / "label-studio"
        self.log = open(base_dir / "label-studio.log", "w")
        self.proc = subprocess.Popen(
            [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port",
             str(self.port), "--data-dir", str(base_dir / "data"), "--username", self.USER,
             "--password", self.PASSWORD, "--user-token", self.token,
             "--enable-legacy-api-token"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.started = time.monotonic()
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"Token {self.token}"

    def wait_ready(self, timeout=240):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("label-studio exited; see " + self.log.name)
            try:
                if requests.get(self.url + "/health", timeout=2).json().get("status") == "UP":
                    return time.monotonic() - self.started
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"label-studio was not ready after {timeout} s")

    def api(self, method, path, expect=(200, 201), **kw):
        kw.setdefault("timeout", 150)
        r = self.s.request(method, self.url + path, **kw)
        if expect and r.status_code not in expect:
            raise AssertionError(f"{method} {path}: {r.status_code} {r.text[:500]}")
        return r

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
