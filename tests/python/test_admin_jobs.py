"""Admin jobs against the live server: a short training job on a tiny `ecsnet synth` dataset
started over HTTP, polled to success, its model registered, activated and served by /cam;
fine-tuning onto a different class list; one job at a time with the others queued; cancel
within one step; an evaluation-only job; registry admin (list, activate, delete, 409 for the
active version); job figures in /metrics."""
import re
import time

import pytest
import requests

from test_admin_fixture import FAST, admin, admin_server, submit, synth, wait_job


@pytest.fixture(scope="module")
def env(tmp_path_factory, bin_path):
    root = tmp_path_factory.mktemp("admin-jobs")
    data = root / "data"
    synth(bin_path, data / "datasets" / "syn", count=24, seed=3)
    synth(bin_path, data / "datasets" / "two", count=12, seed=4, classes=2)
    s = admin_server(data)
    yield s, data
    assert s.stop() == 0


@pytest.fixture(scope="module")
def trained(env):
    s, _ = env
    job = submit(s, dict(FAST, dataset="syn", steps=12, activate=True, seed=5))
    return wait_job(s, job["id"], until=("succeeded",))


def cam(s, image_bytes):
    return requests.post(s.url + "/cam", files={"image": ("x.jpg", image_bytes, "image/jpeg")},
                         data={"outputs": "scores"}, timeout=30)


def test_training_job_succeeds_and_is_served(env, trained):
    s, data = env
    job = trained
    assert job["kind"] == "train" and job["error"] is None
    p = job["progress"]
    assert p["step"] == p["total_steps"] == 12 and p["first_step"] == 1
    for k in ("loss", "loss_cls", "loss_seg", "lr", "images_per_s", "eta_s", "epoch", "phi"):
        assert k in p, k
    assert p["loss"] > 0 and p["images_per_s"] > 0 and p["eta_s"] == 0
    assert p["ecs_phase"] == 1 and p["phi"] > 0  # the ECS phase ran: Phi is not empty
    assert job["checkpoint"] == {"step": 12}
    # the job's folder holds its checkpoint alone: the model went straight into the registry
    job_files = sorted(f.name for f in (data / "jobs" / str(job["id"])).iterdir())
    assert job_files == ["checkpoint.safetensors"], job_files
    res = job["result"]
    assert res["model"] == {"name": "syn", "version": 1} and res["activated"] is True
    ev = res["evaluation"]
    assert ev["split"] == "val" and ev["n_images"] >= 1
    assert 0 < ev["miou"] <= 1 and 0 <= ev["best_alpha"] < 1
    assert job["started"] >= job["created"] and job["finished"] >= job["started"]
    # registered, active and served
    assert (data / "models" / "syn" / "1.safetensors").exists()
    img = (data / "datasets" / "syn" / "JPEGImages" / "000000.jpg").read_bytes()
    r = cam(s, img)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == {"name": "syn", "version": 1}
    assert [c["name"] for c in r.json()["scores"]] == ["cat", "dog", "bird"]
    assert s.get("/health/ready").status_code == 200
    m = admin(s, "GET", "/admin/models").json()["models"]
    assert m[0]["name"] == "syn" and m[0]["active"] and m[0]["served"]
    assert "job" in m[0]["versions"][0]["provenance"]


def test_fine_tuning_onto_other_classes_reinitialises_the_classifier(env, trained):
    s, data = env
    job = submit(s, dict(FAST, dataset="two", steps=4, base_model="syn/1", model_name="two"))
    job = wait_job(s, job["id"], until=("succeeded",))
    assert any("re-initialised" in n and "fc8" in n for n in job["notes"]), job["notes"]
    assert job["result"]["model"] == {"name": "two", "version": 1}
    assert job["result"]["activated"] is False
    # the served model did not change
    img = (data / "datasets" / "syn" / "JPEGImages" / "000000.jpg").read_bytes()
    assert cam(s, img).json()["model"] == {"name": "syn", "version": 1}
    # same classes: fine-tuning keeps the classifier and says nothing about it
    job = submit(s, dict(FAST, dataset="syn", steps=2, base_model="syn", model_name="syn"))
    job = wait_job(s, job["id"], until=("succeeded",))
    assert job["notes"] == [] and job["result"]["model"] == {"name": "syn", "version": 2}


def test_one_job_at_a_time_and_cancel_within_a_step(env, trained):
    s, _ = env
    long = submit(s, dict(FAST, dataset="syn", steps=5000, model_name="long"))
    second = submit(s, dict(FAST, dataset="syn", steps=2, model_name="second"))
    running = wait_job(s, long["id"], until=("running",),
                       cond=lambda j: j["progress"] and j["progress"]["step"] >= 2)
    assert admin(s, "GET", f"/admin/jobs/{second['id']}").json()["status"] == "queued"
    # a job that has not started is cancelled at once; so is the second one here
    r = admin(s, "DELETE", f"/admin/jobs/{second['id']}")
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    step_before = admin(s, "GET", f"/admin/jobs/{long['id']}").json()["progress"]["step"]
    t0 = time.monotonic()
    r = admin(s, "DELETE", f"/admin/jobs/{long['id']}")
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    job = wait_job(s, long["id"], until=("cancelled",), timeout=30)
    took = time.monotonic() - t0
    step_after = job["progress"]["step"]
    assert step_after <= step_before + 2, (step_before, step_after)
    assert took < 10, took
    assert job["checkpoint"]["step"] == step_after  # the stop wrote a checkpoint to resume from
    assert job["result"].get("model") is None
    # finished jobs cannot be cancelled again; the cancelled one can resume
    r = admin(s, "DELETE", f"/admin/jobs/{long['id']}")
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    listed = [j["id"] for j in admin(s, "GET", "/admin/jobs").json()["jobs"]]
    assert listed[:2] == [second["id"], long["id"]]  # newest first
    m = requests.get(s.url + "/metrics", timeout=10).text
    assert re.search(r'^ecsnet_admin_jobs\{status="cancelled"\} [1-9]', m, re.M), m
    assert re.search(r'^ecsnet_admin_jobs_finished_total\{status="succeeded"\} [1-9]', m, re.M)


def test_queued_jobs_wait_for_the_running_one(env, trained):
    s, _ = env
    a = submit(s, dict(FAST, dataset="syn", steps=6, model_name="qa"))
    b = submit(s, dict(FAST, dataset="syn", steps=2, model_name="qb"))
    a = wait_job(s, a["id"], until=("succeeded",))
    b = wait_job(s, b["id"], until=("succeeded",))
    assert b["started"] >= a["finished"] - 1e-3, (a, b)


def test_evaluation_job_matches_the_training_evaluation(env, trained):
    s, _ = env
    job = submit(s, {"dataset": "syn", "model": "syn/1"}, path="/admin/eval")
    job = wait_job(s, job["id"], until=("succeeded",))
    ev, tr = job["result"]["evaluation"], trained["result"]["evaluation"]
    assert ev["split"] == "val" and ev["n_images"] == tr["n_images"]
    # the same weights on the same images: the same confusion matrix
    assert ev["miou"] == pytest.approx(tr["miou"], abs=1e-9)
    r = admin(s, "POST", "/admin/eval", json={"dataset": "two", "model": "syn/1"})
    job = wait_job(s, r.json()["id"], until=("failed",))
    assert "classes" in job["error"]
    # resume is for training jobs only
    assert admin(s, "POST", f"/admin/jobs/{job['id']}/resume").status_code == 409


def test_registry_admin(env, trained):
    s, data = env
    submit(s, dict(FAST, dataset="syn", steps=2, model_name="reg", activate=True))
    last = submit(s, dict(FAST, dataset="syn", steps=2, model_name="reg"))
    wait_job(s, last["id"], until=("succeeded",))
    r = admin(s, "DELETE", "/admin/models/reg/versions/1")
    assert r.status_code == 409 and r.json()["error"]["code"] == "model_active"
    r = admin(s, "POST", "/admin/models/reg/versions/2/activate")
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "reg", "version": 2, "active": True, "served": True}
    img = (data / "datasets" / "syn" / "JPEGImages" / "000001.jpg").read_bytes()
    assert cam(s, img).json()["model"] == {"name": "reg", "version": 2}
    assert (data / "models" / "ACTIVE").read_text().split() == ["reg", "2"]
    r = admin(s, "DELETE", "/admin/models/reg/versions/1")
    assert r.status_code == 200 and r.json() == {"deleted": {"name": "reg", "version": 1}}
    assert not (data / "models" / "reg" / "1.safetensors").exists()
    assert admin(s, "DELETE", "/admin/models/reg/versions/1").status_code == 404
    assert admin(s, "POST", "/admin/models/reg/versions/1/activate").status_code == 404
    versions = [v["version"] for m in admin(s, "GET", "/admin/models").json()["models"]
                if m["name"] == "reg" for v in m["versions"]]
    assert versions == [2]
    # rollback: the earlier model comes back with one call
    r = admin(s, "POST", "/admin/models/syn/versions/1/activate")
    assert r.status_code == 200
    assert cam(s, img).json()["model"] == {"name": "syn", "version": 1}


@pytest.mark.parametrize("name", ["d" * 64, "d" * 5000, "a/" * 3000])
def test_a_too_long_dataset_name_is_a_client_error(tmp_path, name):
    """A dataset name too long for a path is refused with a 4xx JSON error, never cut short
    (a truncated path names another folder) and never a crash."""
    s = admin_server(tmp_path / "data")
    try:
        r = admin(s, "POST", "/admin/train", json={"dataset": name, "steps": 1})
        assert 400 <= r.status_code < 500, r.text
        assert r.json()["error"]["code"]
        assert admin(s, "GET", "/admin/jobs").status_code == 200  # still serving
    finally:
        assert s.stop() == 0
