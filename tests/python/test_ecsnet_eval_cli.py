"""`ecsnet train` records its command line and log in the model; `ecsnet eval --json` gives the
evaluator's figures in a form scripts read; `--write-alpha` stores the swept best alpha_bg in the
model file and keeps every other entry (tensors, training record)."""
import json
import subprocess

import numpy as np
import pytest

import st_io

SMALL = ["--batch", "4", "--crop", "64", "--threads", "2", "--no-jitter"]


def run(bin_path, *args, ok=True):
    p = subprocess.run([str(bin_path("ecsnet")), *map(str, args)], capture_output=True, text=True, timeout=300)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


@pytest.fixture(scope="module")
def trained(bin_path, tmp_path_factory):
    d = tmp_path_factory.mktemp("evalcli")
    data = d / "synth"
    run(bin_path, "synth", "--out", data, "--count", "20", "--seed", "11", "--size", "64", "--classes", "3")
    model = d / "m.safetensors"
    p = run(bin_path, "train", "--data", data, "--out", model, "--steps", "4", "--warmup", "0.5", "--seed", "4",
            "--log-every", "1", "--lr", "0.01", "--quiet", *SMALL)
    return data, model, p


def test_train_records_command_and_log(trained):
    data, model, p = trained
    _, meta = st_io.load(model)
    cmd = meta["train_command"]
    assert cmd.startswith("ecsnet train --data ") and f"--out {model.name}" in cmd and "--seed 4" in cmd
    log = meta["train_log"].splitlines()
    # --quiet prints nothing, but the record still has every logged step
    assert p.stdout.strip().startswith("saved")
    assert [ln.split()[1] for ln in log] == ["1/4", "2/4", "3/4", "4/4"]
    assert "phase cam" in log[0] and "phase ecs" in log[3]


def test_eval_json_matches_the_table(bin_path, trained):
    data, model, _ = trained
    r = json.loads(run(bin_path, "eval", "--data", data, "--model", model, "--json").stdout)
    text = run(bin_path, "eval", "--data", data, "--model", model).stdout
    assert r["n_images"] == 16 and r["split"] == "train"
    assert len(r["alphas"]) == len(r["miou_cam_per_alpha"]) == 20
    best = int(np.argmax(r["miou_cam_per_alpha"]))
    assert r["best_alpha_cam"] == pytest.approx(r["alphas"][best])
    assert r["miou_cam"] == pytest.approx(max(r["miou_cam_per_alpha"]), abs=1e-6)
    assert [c["name"] for c in r["classes"]] == ["background", "cat", "dog", "bird"]
    for key in ("fg_recall_cam", "phi_precision", "phi_coverage", "map", "miou_combined"):
        assert 0.0 <= r[key] <= 1.0, key
    # the text output shows the same figures
    mline = [ln for ln in text.splitlines() if ln.startswith("mIoU")][0].split()
    assert float(mline[1]) == pytest.approx(100 * r["miou_cam"], abs=0.051)
    assert float(mline[2]) == pytest.approx(100 * r["miou_combined"], abs=0.051)
    assert f"{100 * r['fg_recall_cam']:.1f}% of object pixels found" in text


def test_write_alpha_keeps_the_rest_of_the_file(bin_path, trained, tmp_path):
    data, model, _ = trained
    m = tmp_path / "copy.safetensors"
    m.write_bytes(model.read_bytes())
    before_t, before = st_io.load(m)
    p = run(bin_path, "eval", "--data", data, "--model", m, "--write-alpha", "--json")
    r = json.loads(p.stdout)
    after_t, after = st_io.load(m)
    assert float(after["alpha_bg"]) == pytest.approx(r["best_alpha_cam"])
    assert "ecsnet eval --data" in after["alpha_bg_source"] and "split train" in after["alpha_bg_source"]
    for k, v in before.items():
        if k != "alpha_bg":
            assert after[k] == v, k
    assert sorted(before_t) == sorted(after_t)
    for k in before_t:
        np.testing.assert_array_equal(before_t[k], after_t[k])
    assert "alpha_bg:" in run(bin_path, "info", m).stdout


def test_eval_usage_and_missing_model(bin_path, trained, tmp_path):
    data, _, _ = trained
    p = run(bin_path, "eval", "--data", data, "--model", tmp_path / "none.safetensors", "--write-alpha", ok=False)
    assert p.returncode == 1 and p.stderr.count("\n") == 1
    assert not (tmp_path / "none.safetensors").exists()
    p = run(bin_path, "eval", "--data", data, "--bogus", ok=False)
    assert p.returncode == 2
