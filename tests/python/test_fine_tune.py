"""Fine-tuning onto a dataset's own classes: `ecsnet train --init MODEL` and the admin API's
`base_model` start from the base's backbone (weights, batch-norm statistics, input
normalisation) with a new sigmoid classifier for the dataset's classes, and none of the base's
groups. Each run is one Adam step at a tiny learning rate, so every carried-over weight must
still equal the base's to within that step, while a weight that was not carried over would be a
fresh random one; the new classifier must equal the one a from-scratch model of the same seed
starts with. docs/benchmark.md measures fine-tuning from ImageNet against training from scratch."""
import os

import numpy as np
import pytest

import st_io
from conftest import REPO

LITE0 = REPO / "models" / "ecsnet-imagenet-lite0.safetensors"
LR = 1e-5  # Adam's first step moves each weight by at most lr (fc8 by 10 lr)
ONE_STEP = ["--steps", "1", "--batch", "2", "--crop", "64", "--threads", "2", "--no-jitter",
            "--no-flip", "--optim", "adam", "--lr", str(LR), "--no-erase", "--seed", "9"]


def run(bin_path, *args):
    import subprocess

    p = subprocess.run([str(bin_path("ecsnet")), *map(str, args)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    return p


def need_lite0():
    if not LITE0.exists():
        if os.environ.get("CI") or os.environ.get("ECSNET_CI"):
            pytest.fail(f"{LITE0} is missing: CI requires it (make build)")
        pytest.skip(f"{LITE0} not built (no package registry at install time?)")


@pytest.fixture(scope="module")
def six(bin_path, tmp_path_factory):
    """A 6-class dataset (cat .. sheep)."""
    d = tmp_path_factory.mktemp("ft") / "six"
    run(bin_path, "synth", "--out", d, "--count", "8", "--seed", "11", "--size", "64")
    return d


@pytest.fixture(scope="module")
def synthetic_base(bin_path, six, tmp_path_factory):
    """An efficientnet_lite0 model trained for 3 steps on 3 classes (cat, dog, bird)."""
    root = tmp_path_factory.mktemp("ftbase")
    run(bin_path, "synth", "--out", root / "three", "--count", "8", "--seed", "12", "--size", "64",
        "--classes", "3")
    base = root / "base.safetensors"
    run(bin_path, "train", "--backbone", "efficientnet_lite0", "--data", root / "three", "--out", base,
        "--steps", "3", "--batch", "2", "--crop", "64", "--threads", "2", "--no-jitter", "--optim",
        "adam", "--lr", "0.01", "--no-erase", "--seed", "5")
    return base


@pytest.fixture(scope="module")
def scratch(bin_path, six, tmp_path_factory):
    """One step from scratch, same seed: its fc8 is the classifier a new model starts with."""
    out = tmp_path_factory.mktemp("ftscratch") / "scratch.safetensors"
    run(bin_path, "train", "--backbone", "efficientnet_lite0", "--data", six, "--out", out, *ONE_STEP)
    return st_io.load(out)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def check_fine_tuned(tuned, base, scratch, k_classes):
    t, tm = tuned
    b, bm = base
    s, _ = scratch
    stats = [k for k in b if ".running_" in k]
    weights = [k for k in b if k.startswith("_") and ".running_" not in k]
    assert len(weights) > 100 and set(t) >= set(weights) | set(stats)
    # the backbone: the base's weights, moved by one Adam step of LR at most
    for k in weights:
        assert t[k].shape == b[k].shape, k
        d = float(np.max(np.abs(t[k].astype(np.float64) - b[k])))
        assert d <= 1.5 * LR, (k, d)
    # the batch-norm statistics: a pretrained base's stay frozen (exactly the base's); a base
    # whose batch norm trains (made from scratch) moved them by one momentum step, so they are
    # nearer the base's than the (0, 1) a new model starts with
    if bm.get("bn_train") == "1":
        assert tm["bn_train"] == "1"
        cat = lambda d: np.concatenate([d[k].ravel() for k in stats])
        fresh = np.concatenate([(np.zeros_like if k.endswith("mean") else np.ones_like)(b[k]).ravel()
                                for k in stats])
        assert 0 < rel(cat(t), cat(b)) < 0.5 * rel(fresh, cat(b))
    else:
        assert "bn_train" not in tm
        for k in stats:
            assert np.array_equal(t[k], b[k]), k
    # the backbone is not a random one: a from-scratch model's is far from the base's
    assert max(rel(s[k], b[k]) for k in weights if k.endswith("weight")) > 0.5
    # a new classifier for 1 + K channels, as a new model of the same seed starts with it
    assert t["fc8.weight"].shape == (1 + k_classes, 1280, 1, 1)
    assert t["fc8.bias"].shape == (1 + k_classes,)
    assert b["fc8.weight"].shape[0] != 1 + k_classes
    assert float(np.max(np.abs(t["fc8.weight"] - s["fc8.weight"]))) <= 25 * LR
    n = min(1 + k_classes, b["fc8.weight"].shape[0])
    assert rel(t["fc8.weight"][:n], b["fc8.weight"][:n]) > 0.5
    # the base's input normalisation and backbone; ECS-Net's sigmoid scores, no groups
    assert tm["backbone"] == bm["backbone"] == "efficientnet_lite0"
    assert tm["normalisation"] == bm["normalisation"]
    assert tm["scores"] == "sigmoid" and float(tm["label_threshold"]) == 0.5
    assert "groups" not in tm and "refine" not in tm and tm["bg_channel_added"] == "0"
    assert tm["classes"] == '["cat","dog","bird","fish","horse","sheep"]'
    return tm


def test_init_from_a_model_of_other_classes(bin_path, six, synthetic_base, scratch, tmp_path):
    out = tmp_path / "tuned.safetensors"
    p = run(bin_path, "train", "--init", synthetic_base, "--data", six, "--out", out, *ONE_STEP)
    assert "classifier (fc8) starts afresh" in p.stdout, p.stdout
    check_fine_tuned(st_io.load(out), st_io.load(synthetic_base), scratch, 6)
    assert "from base.safetensors" in st_io.load(out)[1]["provenance"]


def test_init_from_the_imagenet_model(bin_path, six, scratch, tmp_path):
    need_lite0()
    out = tmp_path / "tuned.safetensors"
    run(bin_path, "train", "--init", LITE0, "--data", six, "--out", out, *ONE_STEP)
    base = st_io.load(LITE0)
    assert base[1]["scores"] == "softmax" and "groups" in base[1]  # what must not carry over
    assert base[1]["normalisation"] != "imagenet"
    check_fine_tuned(st_io.load(out), base, scratch, 6)
    info = run(bin_path, "info", out).stdout
    assert "batch norm:     frozen" in info and "normalisation:  tf128" in info


def test_lite0_from_scratch_trains_its_batch_norm(scratch):
    """A new efficientnet_lite0 has no statistics to freeze: its batch norm trains (batch
    statistics, running ones updated, gamma and beta learnt), and the file says so."""
    t, meta = scratch
    assert meta["bn_train"] == "1" and meta["normalisation"] == "tf128"
    means = [k for k in t if k.endswith(".running_mean")]
    assert len(means) == 49
    assert all(np.any(t[k] != 0) for k in means)
    assert all(np.any(t[k.replace("running_mean", "running_var")] != 1) for k in means)
    assert all(np.any(t[k.replace("running_mean", "weight")] != 1) for k in means)


def test_init_from_a_model_of_the_same_classes_keeps_its_classifier(bin_path, six, scratch, tmp_path):
    """Continuing on the same classes is not fine-tuning onto new ones: fc8 carries over too."""
    first = tmp_path / "first.safetensors"
    run(bin_path, "train", "--backbone", "efficientnet_lite0", "--data", six, "--out", first,
        "--steps", "2", "--batch", "2", "--crop", "64", "--threads", "2", "--no-jitter", "--optim",
        "adam", "--lr", "0.01", "--no-erase", "--seed", "2")
    out = tmp_path / "second.safetensors"
    p = run(bin_path, "train", "--init", first, "--data", six, "--out", out, *ONE_STEP)
    assert "afresh" not in p.stdout
    t, b = st_io.load(out)[0], st_io.load(first)[0]
    assert float(np.max(np.abs(t["fc8.weight"] - b["fc8.weight"]))) <= 25 * LR
    assert rel(t["fc8.weight"], scratch[0]["fc8.weight"]) > 0.5


def test_admin_base_model_imagenet(bin_path, six, scratch, tmp_path):
    """POST /admin/train with base_model=ecsnet-imagenet-lite0 (the registry name of the shipped
    model) fine-tunes it onto the dataset's classes."""
    need_lite0()
    import shutil

    from test_admin_fixture import admin_server, submit, wait_job

    data = tmp_path / "data"
    shutil.copytree(six, data / "datasets" / "six")
    s = admin_server(data, env={"ECSNET_SHIPPED_MODEL": str(LITE0)})
    try:
        assert s.wait_line(r"serving model ecsnet-imagenet-lite0 version 1") is not None
        job = submit(s, {"dataset": "six", "base_model": "ecsnet-imagenet-lite0", "steps": 1,
                         "batch_size": 2, "crop": 64, "optimizer": "adam", "learning_rate": LR,
                         "seed": 9, "no_erase": True, "model_name": "six-ft"})
        job = wait_job(s, job["id"], until=("succeeded",))
        assert any("re-initialised" in n for n in job["notes"]), job["notes"]
    finally:
        assert s.stop() == 0
    tuned = st_io.load(data / "models" / "six-ft" / "1.safetensors")
    check_fine_tuned(tuned, st_io.load(LITE0), scratch, 6)
    assert "from ecsnet-imagenet-lite0" in tuned[1]["provenance"]
