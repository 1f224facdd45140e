"""Helpers for the admin API tests: a server with the admin token, tiny `ecsnet synth` datasets
under its data directory, and job polling. Other test_admin_*.py modules import from here; the
tests below check the admin routes' off state (no token configured) and the helpers.

Every server runs with ECSNET_SHIPPED_MODEL=none (test_server_fixture.Server), so the only
model it ever serves is one a job trained and activated."""
import os
import subprocess
import time

import pytest

from test_server_fixture import Server

TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# Small and fast: 64 px, batch 4, small backbone, one training thread (seconds per job).
FAST = {"batch_size": 4, "crop": 64, "checkpoint_every": 4}


def synth(bin_path, out, count=24, seed=3, size=64, classes=3):
    subprocess.run([str(bin_path("ecsnet")), "synth", "--out", str(out), "--count", str(count),
                    "--seed", str(seed), "--size", str(size), "--classes", str(classes)],
                   check=True, capture_output=True)
    return out


def admin_server(data_dir, *args, env=None):
    e = {"ECSNET_ADMIN_TOKEN": TOKEN}
    e.update(env or {})
    return Server("--device", "cpu", "--threads", "2", "--train-threads", "1", *args, env=e,
                  data_dir=data_dir)


def admin(s, method, path, **kw):
    import requests

    kw.setdefault("timeout", 30)
    headers = dict(AUTH)
    headers.update(kw.pop("headers", {}))
    return requests.request(method, s.url + path, headers=headers, **kw)


def submit(s, body, path="/admin/train"):
    r = admin(s, "POST", path, json=body)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running")
    assert job["links"]["self"] == f"/admin/jobs/{job['id']}"
    return job


def wait_job(s, job_id, until=("succeeded", "failed", "cancelled", "interrupted"),
             timeout=120.0, cond=None):
    """Polls the job until its status is in `until` (and cond(job) holds, when given)."""
    deadline = time.monotonic() + timeout
    while True:
        r = admin(s, "GET", f"/admin/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in until and (cond is None or cond(job)):
            return job
        if job["status"] in ("succeeded", "failed", "cancelled", "interrupted") and \
                job["status"] not in until:
            pytest.fail(f"job {job_id} ended {job['status']}: {job}")
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {job['status']} after {timeout}s: {job}")
        time.sleep(0.1)


def test_admin_routes_are_off_without_a_token(tmp_path):
    s = Server("--device", "cpu", data_dir=tmp_path / "data")
    try:
        for method, path in (("GET", "/admin/jobs"), ("POST", "/admin/train"),
                             ("GET", "/admin/datasets"), ("GET", "/admin/models")):
            r = admin(s, method, path, json={})
            assert r.status_code == 403, r.text
            err = r.json()["error"]
            assert err["code"] == "admin_disabled"
            assert "--admin-token-file" in err["message"] and "ECSNET_ADMIN_TOKEN" in err["message"]
        # no job store is created while admin is off
        assert not (tmp_path / "data" / "jobs.db").exists()
    finally:
        assert s.stop() == 0


def test_token_from_file(tmp_path):
    tf = tmp_path / "token"
    tf.write_text(TOKEN + "\n")
    s = Server("--device", "cpu", "--admin-token-file", str(tf), data_dir=tmp_path / "data")
    try:
        r = admin(s, "GET", "/admin/jobs")
        assert r.status_code == 200, r.text
        assert r.json() == {"jobs": []}
        assert (tmp_path / "data" / "jobs.db").exists()
    finally:
        assert s.stop() == 0
    assert os.path.exists(tmp_path / "data" / "jobs.db")
