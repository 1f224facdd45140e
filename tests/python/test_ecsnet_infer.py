"""Inference outputs of the engine (scores, CAMs, erase region, erased image, erased CAMs and
the four masks) against the PyTorch reference of method.md, single- and multi-scale."""
import importlib.util
import subprocess

import numpy as np
import pytest
import torch

import ecsnet_ref as R
import st_io

SCRIPT = R.__file__.replace("tests/python/ecsnet_ref.py", "engine/scripts/convert_pytorch.py")
_spec = importlib.util.spec_from_file_location("convert_pytorch", SCRIPT)
conv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(conv)
K = 4


def rel(a, b):
    b = np.asarray(b, np.float64)
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / max(np.linalg.norm(b), 1e-12))


def image(seed, h, w):
    g = np.random.default_rng(seed)
    img = g.integers(40, 90, (h, w, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(3):
        cy, cx, r = g.uniform(0, h), g.uniform(0, w), g.uniform(8, 20)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = g.integers(0, 256, 3)
    return img.astype(np.uint8)


def run(bin_path, tmp_path, net, rgb, labels=None, opts=None, backbone="small"):
    sd = {k: v.numpy() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    tensors, meta, _ = conv.convert(sd, backbone, [f"k{i}" for i in range(K)])
    conv.save_safetensors(tmp_path / "m.safetensors", tensors, meta)
    inp = {"rgb": rgb}
    if labels is not None:
        inp["labels"] = np.array(labels, np.int32)
    if opts is not None:
        inp["opts"] = np.array(opts, np.float32)
    st_io.save(tmp_path / "in.safetensors", inp)
    p = subprocess.run([bin_path("ecsnet_tool"), "infer", str(tmp_path / "m.safetensors"),
                        str(tmp_path / "in.safetensors"), str(tmp_path / "out.safetensors")],
                       capture_output=True, text=True)
    return p, (st_io.load(tmp_path / "out.safetensors")[0] if p.returncode == 0 else None)


def agree(a, b, frac):
    assert a.shape == b.shape
    assert np.mean(a != b) <= frac, np.mean(a != b)


@pytest.mark.parametrize("backbone,labels,opts", [("small", [1, 3], None), ("small", None, None),
                                                  ("small", [2], [1, 1, 1.0, 0.5]), ("vgg16d", [1, 4], None)])
def test_infer_matches_reference(bin_path, tmp_path, backbone, labels, opts):
    net = R.randomise(R.BACKBONES[backbone](1 + K), 11).eval()
    rgb = image(3, 72, 80) if backbone == "small" else image(3, 40, 48)
    flip = bool(opts and opts[0])
    scales = tuple(opts[2:]) if opts else (1.0,)
    ref = R.infer(net, rgb, backbone, labels=labels, scales=scales, flip=flip)
    p, got = run(bin_path, tmp_path, net, rgb, labels, opts, backbone)
    assert p.returncode == 0, p.stderr
    assert list(got["labels"]) == ref["labels"]
    assert rel(got["scores"], ref["scores"]) <= 1e-4
    assert rel(got["cams"], ref["cams"]) <= 1e-4
    assert got["cams"].min() >= 0 and got["cams"].max() <= 1
    agree(got["cam_mask"], ref["cam_mask"], 0.002)
    agree(got["head_mask"], ref["head_mask"], 0.002)
    agree(got["erase_region"], ref["erase_region"], 0.002)
    assert got["erase_region"].any() and not got["erase_region"].all()
    assert 0 < np.mean(got["ecs_mask"] != 255) < 1
    assert np.abs(got["erased_image"].astype(int) - ref["erased_image"]).max() <= 1
    assert rel(got["erased_cams"], ref["erased_cams"]) <= 1e-3
    agree(got["ecs_mask"], ref["ecs_mask"], 0.005)
    agree(got["mask"], ref["mask"], 0.005)
    # the combined mask is the ECS mask where Phi holds, else the CAM mask
    inphi = got["ecs_mask"] != 255
    assert np.array_equal(got["mask"][inphi], got["ecs_mask"][inphi])
    assert np.array_equal(got["mask"][~inphi], got["cam_mask"][~inphi])


def test_infer_bad_label_is_an_error(bin_path, tmp_path):
    net = R.Small(1 + K)
    p, _ = run(bin_path, tmp_path, net, image(1, 32, 32), [K + 1])
    assert p.returncode == 1 and "label 5" in p.stderr


def test_infer_tiny_image_is_an_error(bin_path, tmp_path):
    p, _ = run(bin_path, tmp_path, R.Small(1 + K), image(1, 4, 32), [1])
    assert p.returncode == 1 and "8x8" in p.stderr
