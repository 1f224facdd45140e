"""No record names the build machine's directories, and no log carries a token.

Model files travel (the shipped one is committed; registry versions are copied between
replicas), so their metadata (provenance, training command, where alpha_bg came from) holds
paths as ecs_path_public has them: relative as given, or the last component of an absolute
one. Request logs carry the path without its query and never a header's value."""
import re
import subprocess

import requests

import st_io
from conftest import REPO
from test_admin_fixture import FAST, TOKEN, admin, admin_server, submit, synth, wait_job

ABSOLUTE = re.compile(r"(?:^|[\s='\"(,:])/[A-Za-z0-9._-]")


def absolute_paths(meta):
    return {k: v for k, v in meta.items() if k != "train_log" and ABSOLUTE.search(v)}


def test_the_shipped_models_carry_no_absolute_path():
    models = sorted((REPO / "models").glob("*.safetensors"))
    assert models
    for p in models:
        _, meta = st_io.load(p)
        assert not absolute_paths(meta), (p.name, absolute_paths(meta))


def test_ecsnet_train_and_eval_record_no_absolute_path(bin_path, tmp_path):
    ecsnet = str(bin_path("ecsnet"))
    data = synth(bin_path, tmp_path / "syn", count=8, seed=3)
    out = tmp_path / "m.safetensors"
    subprocess.run([ecsnet, "train", "--data", str(data), "--out", str(out), "--steps", "2",
                    "--batch", "2", "--crop", "64", "--threads", "1", "--quiet"], check=True,
                   capture_output=True, timeout=300)
    again = tmp_path / "m2.safetensors"
    subprocess.run([ecsnet, "train", "--data", str(data), "--init", str(out), "--out",
                    str(again), "--steps", "1", "--batch", "2", "--crop", "64", "--threads", "1",
                    "--quiet"], check=True, capture_output=True, timeout=300)
    subprocess.run([ecsnet, "eval", "--data", str(data), "--model", str(again), "--split", "val",
                    "--write-alpha", "--threads", "1"], check=True, capture_output=True,
                   timeout=300)
    _, meta = st_io.load(again)
    assert "alpha_bg_source" in meta and "train_command" in meta
    assert str(tmp_path) not in "".join(meta.values())
    assert not absolute_paths(meta), absolute_paths(meta)
    assert "on syn " in meta["provenance"] and "from m.safetensors" in meta["provenance"]
    assert "--out m2.safetensors" in meta["train_command"]
    # a path below the working directory keeps its place relative to it
    subprocess.run([ecsnet, "train", "--data", str(data), "--out", str(out), "--steps", "1",
                    "--batch", "2", "--crop", "64", "--threads", "1", "--quiet"], check=True,
                   capture_output=True, timeout=300, cwd=tmp_path)
    _, meta = st_io.load(out)
    assert "--data syn --out m.safetensors" in meta["train_command"], meta["train_command"]


def test_server_models_and_logs_carry_no_absolute_path_and_no_token(bin_path, tmp_path):
    data = tmp_path / "data"
    synth(bin_path, data / "datasets" / "syn", count=12, seed=3)
    s = admin_server(data)
    try:
        job = submit(s, dict(FAST, dataset="syn", steps=4, activate=True, seed=5))
        wait_job(s, job["id"], until=("succeeded",))
        _, meta = st_io.load(data / "models" / "syn" / "1.safetensors")
        assert str(data) not in "".join(meta.values())
        assert not absolute_paths(meta), absolute_paths(meta)
        # the token in every place a client might put it
        requests.get(s.url + f"/admin/jobs?token={TOKEN}", timeout=10)
        requests.get(s.url + "/health/live", params={"access_token": TOKEN}, timeout=10)
        requests.get(s.url + "/admin/jobs", headers={"Authorization": "Bearer " + TOKEN + "x"},
                     timeout=10)
        requests.get(s.url + "/admin/jobs", headers={"Cookie": "t=" + TOKEN}, timeout=10)
        admin(s, "GET", "/admin/jobs")
        admin(s, "GET", "/admin/nope")
        assert s.wait_line(r'"GET /admin/nope" 404') is not None
    finally:
        assert s.stop() == 0
    out = "\n".join(s.lines) + s.proc.stderr.read()
    assert TOKEN not in out
    assert "/admin/jobs" in out  # the requests were logged, only without the token
