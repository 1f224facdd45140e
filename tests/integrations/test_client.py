"""clients/python (ecsnet-client, installed editable into .venv-int) against the live server:
cam() and predict() give the server's own answers, the command line writes the mask the server
computes, admin jobs run to the end with a progress bar or are cancelled, and the model
registry shows the fine-tuned version."""
import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import Server, binary, cam, combined_mask
from ecsnet_client import Client, EcsnetError

TOKEN = "client-test-admin-token-0123456789"


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    subprocess.run([str(binary("ecsnet")), "synth", "--out", str(data / "datasets" / "tiny"),
                    "--count", "12", "--seed", "5", "--size", "64"], check=True,
                   capture_output=True)
    s = Server("--train-threads", "1", env={"ECSNET_ADMIN_TOKEN": TOKEN}, data_dir=data)
    yield s
    s.stop()


def test_cam_and_predict(ecsnet, images):
    c = Client(ecsnet.url)
    path, labels = images["000004"]
    res = c.cam(path, labels=labels, outputs=["mask", "scores", "coco"])
    assert res.labels == labels
    mine = np.asarray(Image.open(io.BytesIO(res.png("mask"))))
    assert np.array_equal(mine, combined_mask(cam(ecsnet, path, labels)))
    assert res.coco and {r["name"] for r in res.coco} <= set(labels)
    scores = c.predict(path)
    assert set(scores) == {"cat", "dog", "bird", "fish", "horse", "sheep"}
    assert all(0 <= v <= 1 for v in scores.values())
    with pytest.raises(EcsnetError) as e:
        c.cam(path, labels=["zebra"])
    assert e.value.status == 422 and e.value.code == "unknown_label"


def test_command_line_writes_the_servers_mask(ecsnet, images, tmp_path):
    path, labels = images["000001"]
    exe = [sys.executable, "-m", "ecsnet_client.cli", "--url", ecsnet.url]
    p = subprocess.run(exe + ["cam", str(path), "--labels", ",".join(labels), "--out",
                              str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("labels: " + " ".join(labels))
    mine = np.asarray(Image.open(tmp_path / "mask.png"))
    assert np.array_equal(mine, combined_mask(cam(ecsnet, path, labels)))
    p = subprocess.run(exe + ["cam", str(tmp_path / "missing.jpg"), "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr


def test_admin_jobs_progress_cancel_and_registry(admin_server, capfd):
    c = Client(admin_server.url, admin_token=TOKEN)
    assert [d["name"] for d in c.datasets()] == ["tiny"]
    job = c.train("tiny", base_model="ecsnet-synth-small", model_name="tiny", steps=4,
                  batch_size=4, crop=64, activate=True)
    seen = []
    done = c.wait(job.id, poll_s=0.2, timeout_s=240, on_update=lambda j: seen.append(j.status))
    assert done.status == "succeeded", done.raw
    assert "[" in capfd.readouterr().err  # the progress bar
    assert seen[-1] == "succeeded"
    names = {m["name"]: m for m in c.models()}
    assert "tiny" in names
    assert c.model("tiny")["name"] == "tiny"
    # A long job, cancelled.
    long = c.train("tiny", base_model="ecsnet-synth-small", model_name="tiny", steps=5000,
                   batch_size=4, crop=64)
    c.cancel(long.id)
    end = c.wait(long.id, progress=False, poll_s=0.2, timeout_s=120)
    assert end.status == "cancelled"
    assert any(j.id == long.id for j in c.jobs())
    with pytest.raises(EcsnetError) as e:
        Client(admin_server.url, admin_token="wrong-token-0123456789").jobs()
    assert e.value.status == 401
