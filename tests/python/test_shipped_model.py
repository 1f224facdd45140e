"""The committed shipped model, evaluated as committed (never retrained here) on a freshly
generated synthetic set of fixed seed and size: its mIoU may not fall more than 3 points below
the figure docs/benchmark.md gives for that same set. The figure is read from the doc, so the
doc and the check cannot drift apart. Also checks what the model file must carry: its size
limit, the training record (command, seed, log) and an evaluated alpha_bg."""
import json
import os
import re
import subprocess

import pytest

import st_io

MODEL = "models/ecsnet-synth-small.safetensors"
DOC = "docs/benchmark.md"
MAX_BYTES = 20 * 1024 * 1024
TOLERANCE = 3.0  # mIoU points

# The doc's line for the CI set, e.g.
# "CI check: `ecsnet synth --count 250 --seed 7001 --size 128`, split train (200 images):
#  CAM mIoU 45.1, combined mIoU 50.0, mAP 95.0"
CI_LINE = re.compile(
    r"CI check: `ecsnet synth --count (\d+) --seed (\d+) --size (\d+)`, split (\w+) \((\d+) images\): "
    r"CAM mIoU ([0-9.]+), combined mIoU ([0-9.]+), mAP ([0-9.]+)"
)


def run(bin_path, *args):
    p = subprocess.run([str(bin_path("ecsnet")), *map(str, args)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.fixture(scope="module")
def figures(repo_root):
    text = (repo_root / DOC).read_text()
    m = CI_LINE.search(text)
    assert m, f"{DOC} has no 'CI check: ...' line with the shipped model's figures"
    count, seed, size, split, n_images = int(m[1]), int(m[2]), int(m[3]), m[4], int(m[5])
    return dict(count=count, seed=seed, size=size, split=split, n_images=n_images, cam=float(m[6]),
                combined=float(m[7]), map=float(m[8]))


@pytest.fixture(scope="module")
def model(repo_root):
    p = repo_root / MODEL
    assert p.exists(), f"{MODEL} is missing"
    return p


def test_model_file_carries_its_record(model):
    assert model.stat().st_size <= MAX_BYTES
    _, meta = st_io.load(model)
    assert meta["format"] == "ecsnet-model/1"
    assert meta["backbone"] == "small"
    assert json.loads(meta["classes"]) == ["cat", "dog", "bird", "fish", "horse", "sheep"]
    cmd = meta["train_command"]
    assert cmd.startswith("ecsnet train ") and re.search(r"--seed \d+", cmd), cmd
    assert re.search(r"seed \d+", meta["provenance"]), meta["provenance"]
    steps = re.search(r"--steps (\d+)", cmd)
    assert steps, cmd
    # the log runs to the last step, and the ECS phase (not only the CAM warm-up) ran
    assert f"step {steps[1]}/{steps[1]} " in meta["train_log"]
    assert " phase ecs " in meta["train_log"]
    # alpha_bg was set by an evaluation sweep, not left at the default
    assert "alpha_bg_source" in meta and "ecsnet eval" in meta["alpha_bg_source"]
    assert 0.0 <= float(meta["alpha_bg"]) < 1.0


def test_info_reads_the_model(bin_path, model):
    _, meta = st_io.load(model)
    out = run(bin_path, "info", model)
    assert re.search(r"alpha_bg:\s+" + re.escape(f"{float(meta['alpha_bg']):g}"), out), out
    assert "backbone:       small" in out
    # the training record: the command, where alpha_bg came from, the log's last line
    assert f"trained with:   {meta['train_command']}" in out
    assert f"alpha_bg from:  {meta['alpha_bg_source']}" in out
    assert "last log line:  " + meta["train_log"].rstrip("\n").splitlines()[-1] in out


def test_miou_holds_on_a_fresh_set(bin_path, model, figures, tmp_path):
    d = tmp_path / "ci"
    run(bin_path, "synth", "--out", d, "--count", figures["count"], "--seed", figures["seed"],
        "--size", figures["size"])
    r = json.loads(run(bin_path, "eval", "--data", d, "--model", model, "--split", figures["split"],
                       "--threads", "2", "--json"))
    assert r["n_images"] == figures["n_images"]
    cam, combined, mAP = 100 * r["miou_cam"], 100 * r["miou_combined"], 100 * r["map"]
    summary = f"CAM mIoU {cam:.1f} combined {combined:.1f} mAP {mAP:.1f}; the doc says {figures}"
    assert cam >= figures["cam"] - TOLERANCE, summary
    assert combined >= figures["combined"] - TOLERANCE, summary
    assert mAP >= figures["map"] - TOLERANCE, summary


def test_cli_defaults_to_the_shipped_model(bin_path, tmp_path):
    """Without --model or $ECSNET_MODEL, `ecsnet cam` uses the shipped model, as the server
    does; with no shipped model it is a usage error naming --model."""
    run(bin_path, "synth", "--out", tmp_path / "d", "--count", "2", "--seed", "3")
    img = tmp_path / "d" / "JPEGImages" / "000000.jpg"
    env = {k: v for k, v in os.environ.items() if k not in ("ECSNET_MODEL", "ECSNET_SHIPPED_MODEL")}
    p = subprocess.run([str(bin_path("ecsnet")), "cam", str(img), "--labels", "cat", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "o").is_dir() and any((tmp_path / "o").iterdir())
    env["ECSNET_SHIPPED_MODEL"] = "none"
    p = subprocess.run([str(bin_path("ecsnet")), "cam", str(img), "--out", str(tmp_path / "o2")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2 and "--model" in p.stderr
