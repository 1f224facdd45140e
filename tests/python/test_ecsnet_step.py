"""One full ECS-Net training step (method.md steps 1-12) in the engine against the PyTorch
reference in ecsnet_ref.py: losses, |Phi| and its composition, the erase region's size, every
parameter gradient and the batch-norm running statistics, relative error <= 1e-3."""
import importlib.util
import os
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

K = 3


def rel(a, b):
    b = np.asarray(b, np.float64)
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / max(np.linalg.norm(b), 1e-12))


def images_for(seed, n, h, w):
    """Blobs of colour on a darker background, so the CAMs have structure."""
    g = np.random.default_rng(seed)
    x = g.normal(0, 0.3, (n, 3, h, w)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        for _ in range(2):
            cy, cx, r = g.uniform(0.2, 0.8) * h, g.uniform(0.2, 0.8) * w, g.uniform(0.15, 0.3) * min(h, w)
            m = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            x[i][:, m] += g.normal(0, 1.5, (3, 1)).astype(np.float32)
    return x


def fixture(hp, n, h, w, overlay, backbone="small"):
    """The first seed whose step is non-degenerate: erase region non-empty, 10-90% of the cells
    in Phi, a present class among them."""
    for seed in range(40):
        net = R.randomise(R.BACKBONES[backbone](1 + K), seed)
        freeze(net, backbone)
        imgs = torch.from_numpy(images_for(seed, n, h, w))
        labels = torch.zeros(n, K)
        labels[0, 0] = labels[0, 2] = 1
        labels[1 % n, 1] = 1
        state = {k: v.clone() for k, v in net.state_dict().items()}
        R.DROP = R.DropStream(7)  # the engine's masks for the tool's seed 7
        try:
            out = R.step(net, imgs, labels, hp, True, 1.0, overlay)
        finally:
            R.DROP = None
        frac = out["phi"] / out["cells"]
        if out["erased"] > 0 and 0.1 <= frac <= 0.9 and out["phi_fg"] > 0:
            return state, net, imgs, labels, out
    pytest.fail("no non-degenerate fixture among 40 seeds")


FROZEN = {"small": (), "vgg16d": ("conv1_", "conv2_"), "resnet38d": ("conv1a", "b2.", "b2_", ".bn", "bn7")}


def freeze(net, backbone):
    for name, p in net.named_parameters():
        if name.startswith(FROZEN[backbone]) or (backbone == "resnet38d" and ".bn_" in name):
            p.requires_grad_(False)


def run_engine(bin_path, tmp_path, state, hp, imgs, labels, phase=1, lam=1.0, backbone="small", only=None):
    sd = {k: v.numpy() for k, v in state.items() if not k.endswith("num_batches_tracked")}
    tensors, meta, _ = conv.convert(sd, backbone, [f"k{i}" for i in range(K)], hp)
    model = tmp_path / "m.safetensors"
    conv.save_safetensors(model, tensors, meta)
    st_io.save(tmp_path / "in.safetensors", {"images": imgs.numpy(), "labels": labels.numpy(),
                                             "args": np.array([phase, lam, 7], np.float32)})
    # Frozen layers run their forward by oneDNN's direct convolution here, as PyTorch does, not
    # by Winograd: these fixtures sit on a discrete edge (a ReLU or pooling tie) where PyTorch's
    # own gradients below conv5_3 of vgg16d move by 7e-3 when conv2_2's output is perturbed by a
    # relative 1e-7, far inside Winograd's error (tests/engine/test_dnnl.c checks that).
    env = dict(os.environ, ECSNET_WINOGRAD="0")
    p = subprocess.run([bin_path("ecsnet_tool"), "step", str(model), str(tmp_path / "in.safetensors"),
                        str(tmp_path / "out.safetensors")] + ([only] if only else []), capture_output=True, text=True,
                       env=env)
    assert p.returncode == 0, p.stderr
    return st_io.load(tmp_path / "out.safetensors")[0]


def compare(got, net, out, check_phi=True, n_trained=13):
    losses = got["losses"]
    assert rel(losses[1], out["loss_cls"].item()) <= 1e-3
    assert rel(losses[3], out["loss_seg"].item()) <= 1e-3
    assert rel(losses[0], out["loss"].item()) <= 1e-3
    if check_phi:
        c = got["counts"]
        assert (c[0], c[1], c[2], c[3], c[4]) == (out["phi"], out["phi_fg"], out["phi_bg"], out["cells"], out["erased"])
    n = 0
    for name, p in net.named_parameters():
        if not p.requires_grad:  # frozen: the engine must not have computed a gradient
            assert "grad." + name not in got, name
            continue
        assert p.grad is not None
        assert rel(got["grad." + name], p.grad.numpy()) <= 1e-3, name
        n += 1
    assert n == n_trained
    for name, b in net.named_buffers():
        if "running" in name:
            assert rel(got[name], b.numpy()) <= 1e-3, name


def hparams(**kw):
    hp = conv.default_hparams("small")
    hp.update(kw)
    return hp


def test_step_default(bin_path, tmp_path):
    hp = hparams()
    state, net, imgs, labels, out = fixture(hp, 2, 64, 72, None)
    assert out["loss_seg"].item() > 0
    got = run_engine(bin_path, tmp_path, state, hp, imgs, labels)
    assert got["counts"][5] == 0 and got["counts"][6] == 1000  # no overlay, beta 1 at 64 px
    compare(got, net, out)


def test_step_overlay_k3(bin_path, tmp_path):
    hp = hparams(overlay_k=3, overlay_rates=[2, 3, 4, 0])
    state, net, imgs, labels, out = fixture(hp, 2, 64, 64, [2, 3, 4])
    got = run_engine(bin_path, tmp_path, state, hp, imgs, labels)
    assert got["counts"][5] == 3
    compare(got, net, out)


def test_step_beta_half(bin_path, tmp_path):
    hp = hparams(beta=0.5)
    state, net, imgs, labels, out = fixture(hp, 2, 96, 88, None)
    got = run_engine(bin_path, tmp_path, state, hp, imgs, labels)
    assert got["counts"][6] == 500
    compare(got, net, out)


def test_step_warmup_is_cls_only(bin_path, tmp_path):
    hp = hparams()
    net = R.randomise(R.Small(1 + K), 5)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    imgs = torch.from_numpy(images_for(5, 2, 64, 64))
    labels = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    out = R.step(net, imgs, labels, hp, ecs_phase=False)
    got = run_engine(bin_path, tmp_path, state, hp, imgs, labels, phase=0)
    assert got["losses"][3] == 0 and got["counts"][0] == 0
    compare(got, net, out, check_phi=False)


def test_step_cls_on_erased(bin_path, tmp_path):
    hp = hparams(cls_on_erased=1, theta=0.6)
    state, net, imgs, labels, out = fixture(hp, 2, 64, 64, None)
    got = run_engine(bin_path, tmp_path, state, hp, imgs, labels)
    assert got["losses"][2] > 0
    assert rel(got["losses"][2], out["loss_cls_erased"].item()) <= 1e-3
    compare(got, net, out)


def test_step_ablations(bin_path, tmp_path):
    """no_erase: the ECS phase is the plain CAM step; no_phi_filter: every cell is in Phi."""
    net = R.randomise(R.Small(1 + K), 2)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    imgs = torch.from_numpy(images_for(2, 2, 64, 64))
    labels = torch.tensor([[1.0, 1, 0], [0, 0, 1]])
    got = run_engine(bin_path, tmp_path, state, hparams(no_erase=1), imgs, labels)
    out = R.step(net, imgs, labels, hparams(), ecs_phase=False)
    assert got["counts"][3] == 0
    compare(got, net, out, check_phi=False)
    got = run_engine(bin_path, tmp_path, state, hparams(no_phi_filter=1), imgs, labels)
    assert got["counts"][0] == got["counts"][3] == 2 * 8 * 8


def test_step_vgg16d_dropout_overlay(bin_path, tmp_path):
    """Dropout in F and F' (the engine's masks), the overlay on fc6, frozen conv1-conv2."""
    hp = conv.default_hparams("vgg16d")
    hp.update(overlay_k=2, overlay_rates=[2, 3, 0, 0])
    state, net, imgs, labels, out = fixture(hp, 2, 48, 48, [2, 3], "vgg16d")
    got = run_engine(bin_path, tmp_path, state, hp, imgs, labels, backbone="vgg16d")
    assert got["counts"][5] == 2
    compare(got, net, out, n_trained=31 - 8)


def test_step_resnet38d_keeps_frozen_parts(bin_path, tmp_path):
    """conv1a, b2* and every batch norm stay fixed in training; the rest gets gradients."""
    net = R.randomise(R.Resnet38d(1 + K), 4)
    sd = {k: v for k, v in net.state_dict().items()}
    imgs = torch.from_numpy(images_for(4, 2, 16, 16))
    labels = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    only = "conv1a,b2.,b2_1.,b3.,bn7,b7.conv_branch2b1,fc8"
    got = run_engine(bin_path, tmp_path, sd, conv.default_hparams("resnet38d"), imgs, labels,
                     backbone="resnet38d", only=only)
    for name in ["conv1a.weight", "b2.conv_branch2a.weight", "b2_1.conv_branch2b1.weight",
                 "b3.bn_branch2a.weight", "bn7.weight"]:
        assert "grad." + name not in got, name
    for name in ["bn7.running_mean", "bn7.running_var", "b3.bn_branch2b1.running_var"]:
        assert np.array_equal(got[name], sd[name].numpy()), name
    for name in ["b3.conv_branch2a.weight", "b7.conv_branch2b1.weight", "fc8.weight"]:
        assert np.abs(got["grad." + name]).max() > 0, name
