"""`ecsnet train`, `ecsnet cam`, `ecsnet info` end to end on a small synthetic dataset: the loss
falls, a stopped-and-resumed run equals an uninterrupted one, bad datasets give errors naming
the file, and usage errors exit 2 with one line."""
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

import st_io

SMALL = ["--batch", "4", "--crop", "64", "--threads", "2", "--no-jitter"]


def run(bin_path, *args, ok=True):
    p = subprocess.run([str(bin_path("ecsnet")), *map(str, args)], capture_output=True, text=True, timeout=300)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


@pytest.fixture(scope="module")
def dataset(bin_path, tmp_path_factory):
    d = tmp_path_factory.mktemp("ds") / "synth"
    run(bin_path, "synth", "--out", d, "--count", "24", "--seed", "5", "--size", "64", "--classes", "3")
    return d


def losses(stdout):
    return [float(m) for m in re.findall(r"^step \d+/\d+ .* loss ([0-9.]+) cls", stdout, re.M)]


def rel(a, b):
    return float(np.linalg.norm(a.astype(np.float64) - b) / max(np.linalg.norm(b.astype(np.float64)), 1e-12))


def test_training_loss_falls(bin_path, dataset, tmp_path):
    p = run(bin_path, "train", "--data", dataset, "--out", tmp_path / "m.safetensors", "--steps", "30",
            "--lr", "0.01", "--no-erase", "--seed", "3", "--log-every", "1", *SMALL)
    ls = losses(p.stdout)
    assert len(ls) == 30
    assert np.mean(ls[-10:]) < 0.85 * np.mean(ls[:10]), ls
    info = run(bin_path, "info", tmp_path / "m.safetensors").stdout
    assert "backbone:       small" in info and "no_erase true" in info
    assert re.search(r"classes:\s+3:", info)


def test_adam_trains_and_keeps_its_state_in_checkpoints(bin_path, dataset, tmp_path):
    p = run(bin_path, "train", "--data", dataset, "--out", tmp_path / "m.safetensors", "--steps", "30",
            "--lr", "0.002", "--optim", "adam", "--no-erase", "--seed", "3", "--log-every", "1",
            "--checkpoint", tmp_path / "ck.safetensors", *SMALL)
    ls = losses(p.stdout)
    assert np.mean(ls[-10:]) < 0.85 * np.mean(ls[:10]), ls
    tensors, _ = st_io.load(tmp_path / "ck.safetensors")
    assert any(k.endswith(".exp_avg_sq") for k in tensors)
    assert not any(k.endswith(".momentum") for k in tensors)


def test_resume_matches_uninterrupted_run(bin_path, dataset, tmp_path):
    common = ["train", "--data", dataset, "--steps", "8", "--warmup", "0.5", "--seed", "9", "--lr", "0.02", *SMALL]
    run(bin_path, *common, "--out", tmp_path / "full.safetensors")
    p = run(bin_path, *common, "--out", tmp_path / "part.safetensors", "--checkpoint", tmp_path / "ck.safetensors",
            "--stop-after", "5")
    assert "stopped after step 5" in p.stdout
    assert not (tmp_path / "part.safetensors").exists()
    _, meta = st_io.load(tmp_path / "ck.safetensors")
    assert meta["train.step"] == "5"
    p = run(bin_path, *common, "--out", tmp_path / "resumed.safetensors", "--resume", tmp_path / "ck.safetensors")
    assert "phase ecs" in p.stdout  # the ECS phase (steps 5-8) ran after the resume
    a, _ = st_io.load(tmp_path / "full.safetensors")
    b, _ = st_io.load(tmp_path / "resumed.safetensors")
    assert a.keys() == b.keys()
    moved = 0
    init, _ = st_io.load(tmp_path / "ck.safetensors")
    for k in a:
        assert rel(b[k], a[k]) <= 1e-3, k
        moved += not np.array_equal(init[k], a[k])
    assert moved > 10  # the resumed steps changed the weights: the comparison is not vacuous


def test_cam_writes_outputs(bin_path, dataset, tmp_path):
    model = tmp_path / "m.safetensors"
    run(bin_path, "train", "--data", dataset, "--out", model, "--steps", "2", *SMALL)
    img = sorted((dataset / "JPEGImages").iterdir())[0]
    classes = (dataset / "classes.txt").read_text().split()
    out = tmp_path / "out"
    run(bin_path, "cam", img, "--model", model, "--labels", f"{classes[0]},{classes[2]}", "--out", out, "--float")
    for n in ["mask", "cam_mask", "ecs_mask", "head_mask", "erased_image", "erase_region",
              f"cam_{classes[0]}", f"erased_cam_{classes[2]}"]:
        assert (out / f"{n}.png").exists(), n
    f, _ = st_io.load(out / "cams.safetensors")
    assert list(f["labels"]) == [1, 3]
    grey = np.asarray(Image.open(out / f"cam_{classes[0]}.png"))
    assert np.abs(grey.astype(int) - np.round(f["cams"][0] * 255)).max() <= 1
    mask = Image.open(out / "mask.png")
    assert mask.mode == "P" and set(np.unique(np.asarray(mask))) <= {0, 1, 3}
    ecs = np.asarray(Image.open(out / "ecs_mask.png"))
    assert set(np.unique(ecs)) <= {0, 1, 3, 255}
    assert "*" in (out / "scores.txt").read_text()


def test_bad_datasets_name_the_file(bin_path, dataset, tmp_path):
    d = tmp_path / "ds"
    shutil.copytree(dataset, d)
    ids = (d / "ImageSets/Segmentation/train.txt").read_text().split()
    (d / "JPEGImages" / f"{ids[1]}.jpg").unlink()
    p = run(bin_path, "train", "--data", d, "--out", tmp_path / "m.safetensors", "--steps", "12", *SMALL, ok=False)
    assert p.returncode == 1 and f"{ids[1]}.jpg" in p.stderr, p.stderr

    shutil.rmtree(d)
    shutil.copytree(dataset, d)
    jpg = d / "JPEGImages" / f"{ids[2]}.jpg"
    jpg.write_bytes(jpg.read_bytes()[:200])
    p = run(bin_path, "train", "--data", d, "--out", tmp_path / "m.safetensors", "--steps", "12", *SMALL, ok=False)
    assert p.returncode == 1 and f"{ids[2]}.jpg" in p.stderr, p.stderr

    shutil.rmtree(d)
    shutil.copytree(dataset, d)
    lab = d / "labels.txt"
    lines = lab.read_text().splitlines()
    lines[0] = lines[0].split()[0] + " 9"
    lab.write_text("\n".join(lines) + "\n")
    p = run(bin_path, "train", "--data", d, "--out", tmp_path / "m.safetensors", "--steps", "12", *SMALL, ok=False)
    assert p.returncode == 1 and "labels.txt" in p.stderr, p.stderr


def test_model_from_another_dataset_fine_tunes_onto_its_classes(bin_path, dataset, tmp_path):
    """--init from a model of other classes keeps its backbone and starts a new classifier for
    the dataset's (tests/python/test_fine_tune.py checks the weights); eval still refuses a
    model whose classes are not the dataset's."""
    d = tmp_path / "ds"
    shutil.copytree(dataset, d)
    (d / "classes.txt").write_text("a\nb\nc\n")
    model = tmp_path / "m.safetensors"
    run(bin_path, "train", "--data", dataset, "--out", model, "--steps", "1", *SMALL)
    out = tmp_path / "x.safetensors"
    p = run(bin_path, "train", "--data", d, "--init", model, "--out", out, "--steps", "1", *SMALL)
    assert "classifier (fc8) starts afresh" in p.stdout
    assert st_io.load(out)[1]["classes"] == '["a","b","c"]'
    p = run(bin_path, "eval", "--data", d, "--model", model, ok=False)
    assert p.returncode == 1 and "class 1" in p.stderr


@pytest.mark.parametrize("args", [[], ["train"], ["train", "--data"], ["cam"], ["cam", "x.jpg"],
                                  ["train", "--data", "d", "--out", "m", "--batch", "0"], ["info"],
                                  ["nonsense"], ["cam", "x.jpg", "--out", "o", "--scales", "9"],
                                  ["train", "--data", "d", "--out", "m", "--optim", "rmsprop"],
                                  ["train", "--data", "d", "--out", "m", "--cls-on-erased",
                                   "--no-cls-on-erased"]])
def test_usage_errors_exit_2(bin_path, args):
    p = run(bin_path, *args, ok=False)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("ecsnet: ")


def test_cls_on_erased_is_the_default_and_can_be_turned_off(bin_path, dataset, tmp_path):
    """L_cls on the erased image is on by default (docs/benchmark.md measures why); the model file
    records the switch either way, and a run without it differs from one with it."""
    def trained(*extra):
        m = tmp_path / f"m{len(extra)}.safetensors"
        out = run(bin_path, "train", "--data", dataset, "--out", m, "--steps", "3", "--warmup", "0.34",
                  "--seed", "4", "--log-every", "1", *SMALL, *extra).stdout
        return st_io.load(m)[1], out
    on, log_on = trained()
    off, log_off = trained("--no-cls-on-erased")
    assert on["ecsnet.hparam.cls_on_erased"] == "true" and off["ecsnet.hparam.cls_on_erased"] == "false"
    # the ECS steps (2 and 3) log a non-zero erased-image loss only with the switch on
    erased = lambda log: [float(v) for v in re.findall(r"phase ecs .* cls_erased ([0-9.]+)", log)]
    assert len(erased(log_on)) == 2 and all(v > 0 for v in erased(log_on))
    assert len(erased(log_off)) == 2 and all(v == 0 for v in erased(log_off))


def test_overlay_k_beyond_the_models_rates_is_refused_before_training(bin_path, dataset, tmp_path):
    """The small network has three overlay rates: K = 4 is one clear line before any step, not
    a convolution error from inside the first ECS step."""
    out = tmp_path / "m.safetensors"
    p = run(bin_path, "train", "--data", dataset, "--out", out, "--overlay", "4", "--epochs", "1",
            "--quiet", ok=False)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == ["ecsnet: overlay K = 4, but this model has 3 overlay rates"]
    assert not out.exists()


def test_missing_model_file_is_a_failure(bin_path, tmp_path):
    p = run(bin_path, "info", tmp_path / "none.safetensors", ok=False)
    assert p.returncode == 1 and "none.safetensors" in p.stderr


def test_interrupt_then_resume_matches_uninterrupted_run(bin_path, dataset, tmp_path):
    """SIGINT mid-run writes a checkpoint (a half-done step undone, batch-norm statistics
    included); resuming from it ends where an uninterrupted run ends."""
    import signal

    ck = tmp_path / "ck.safetensors"
    common = ["train", "--data", dataset, "--steps", "16", "--warmup", "0.25", "--seed", "4", "--log-every", "1",
              *SMALL]
    p = subprocess.Popen([str(bin_path("ecsnet")), *map(str, common), "--out", str(tmp_path / "m.safetensors"),
                          "--checkpoint", str(ck)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("step 1/16"), line
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 1, err
    assert "cancelled" in err and "--resume" in err
    assert not (tmp_path / "m.safetensors").exists()
    _, meta = st_io.load(ck)
    assert 1 <= int(meta["train.step"]) < 16
    run(bin_path, *common, "--out", tmp_path / "resumed.safetensors", "--resume", ck)
    run(bin_path, *common, "--out", tmp_path / "full.safetensors")
    a, _ = st_io.load(tmp_path / "full.safetensors")
    b, _ = st_io.load(tmp_path / "resumed.safetensors")
    for k in a:
        assert rel(b[k], a[k]) <= 1e-3, k
