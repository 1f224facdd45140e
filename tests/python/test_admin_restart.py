"""Crash-safe job state: the server is killed with SIGKILL in the middle of a training job; on
the next start the job shows as interrupted with its last checkpoint, and a resume continues
from that checkpoint's step (not from zero) to success, ending where an uninterrupted run with
the same settings ends. A graceful stop (SIGTERM) leaves a running job interrupted too."""
import signal

import pytest

from test_admin_fixture import FAST, admin, admin_server, submit, synth, wait_job

STEPS = 40


@pytest.fixture(scope="module")
def data(tmp_path_factory, bin_path):
    data = tmp_path_factory.mktemp("admin-restart") / "data"
    synth(bin_path, data / "datasets" / "syn", count=24, seed=3)
    return data


def test_sigkill_mid_job_then_resume_from_the_checkpoint(data):
    body = dict(FAST, dataset="syn", steps=STEPS, checkpoint_every=5, seed=11, model_name="k")
    s = admin_server(data)
    try:
        job = submit(s, body)
        jid = job["id"]
        wait_job(s, jid, until=("running",),
                 cond=lambda j: j["checkpoint"] and 10 <= j["checkpoint"]["step"] < STEPS - 10)
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait(timeout=10)
    finally:
        s.stop()
    assert s.proc.returncode == -signal.SIGKILL

    s = admin_server(data)
    try:
        job = admin(s, "GET", f"/admin/jobs/{jid}").json()
        assert job["status"] == "interrupted", job
        ck = job["checkpoint"]["step"]
        assert 10 <= ck < STEPS and ck % 5 == 0
        assert job["result"] is None and job["runs"] == 1
        r = admin(s, "POST", f"/admin/jobs/{jid}/resume")
        assert r.status_code == 202 and r.json()["status"] in ("queued", "running")
        job = wait_job(s, jid, until=("succeeded",))
        p = job["progress"]
        # the checkpoint file may be one interval ahead of the record (killed between the two)
        assert p["resumed_from_step"] in (ck, ck + 5), (ck, p)
        assert p["first_step"] == p["resumed_from_step"] + 1
        assert p["step"] == p["total_steps"] == STEPS
        assert job["runs"] == 2
        assert any(f"step {p['resumed_from_step']}" in n for n in job["notes"]), job["notes"]
        assert job["result"]["model"] == {"name": "k", "version": 1}
        # nothing lost: the same run without the crash ends at the same loss and score
        ref = submit(s, dict(body, model_name="k_ref"))
        ref = wait_job(s, ref["id"], until=("succeeded",))
        a, b = job["progress"], ref["progress"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)
        assert a["loss_cls"] == pytest.approx(b["loss_cls"], rel=1e-3)
        assert job["result"]["evaluation"]["miou"] == pytest.approx(
            ref["result"]["evaluation"]["miou"], abs=1e-3)
        # a succeeded job does not resume again
        assert admin(s, "POST", f"/admin/jobs/{jid}/resume").status_code == 409
    finally:
        assert s.stop() == 0


def test_graceful_stop_leaves_the_job_interrupted(data):
    s = admin_server(data)
    try:
        job = submit(s, dict(FAST, dataset="syn", steps=5000, model_name="t"))
        wait_job(s, job["id"], until=("running",),
                 cond=lambda j: j["progress"] and j["progress"]["step"] >= 1)
    finally:
        assert s.stop() == 0
    s = admin_server(data)
    try:
        job = admin(s, "GET", f"/admin/jobs/{job['id']}").json()
        assert job["status"] == "interrupted"
        assert "stopped" in job["error"]
        assert job["checkpoint"]["step"] == job["progress"]["step"] >= 1
        r = admin(s, "DELETE", f"/admin/jobs/{job['id']}")
        assert r.status_code == 409
    finally:
        assert s.stop() == 0
