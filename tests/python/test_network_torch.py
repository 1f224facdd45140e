"""Whole small networks, engine against PyTorch: a stack of resnet38d-style pre-activation
residual blocks (frozen and training batch norm) and a small VGG16d-like net (conv + bias,
ReLU, max pooling with padding and ceil mode, dilated convolution, dropout off). Weights travel
through safetensors under the torch state_dict names; forward output, loss, every parameter
gradient, the input gradient and the updated running statistics are compared on "cpu" and
"cpu-ref" (relative L2: 1e-4 forward, 1e-3 gradients), and on "cuda" where a GPU answers (TF32
allowed: 1e-2); without one that case is skipped."""
import subprocess

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import st_io


class ResBlock(nn.Module):
    """resnet38d's block (SEAM/PSA network/resnet38d.py), the same names and order."""

    def __init__(self, cin, cmid, cout, stride=1, first_dilation=None, dilation=1):
        super().__init__()
        self.same_shape = cin == cout and stride == 1
        if first_dilation is None:
            first_dilation = dilation
        self.bn_branch2a = nn.BatchNorm2d(cin)
        self.conv_branch2a = nn.Conv2d(cin, cmid, 3, stride, padding=first_dilation,
                                       dilation=first_dilation, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(cmid)
        self.conv_branch2b1 = nn.Conv2d(cmid, cout, 3, padding=dilation, dilation=dilation, bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        branch2 = F.relu(self.bn_branch2a(x))
        branch1 = x if self.same_shape else self.conv_branch1(branch2)
        branch2 = self.conv_branch2a(branch2)
        branch2 = F.relu(self.bn_branch2b1(branch2))
        branch2 = self.conv_branch2b1(branch2)
        return branch1 + branch2


class ResBlocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1a = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.b2 = ResBlock(8, 8, 16, stride=2)
        self.b2_1 = ResBlock(16, 16, 16)
        self.b3 = ResBlock(16, 16, 24, stride=1, first_dilation=2, dilation=2)
        self.bn7 = nn.BatchNorm2d(24)

    def forward(self, x):
        x = self.b3(self.b2_1(self.b2(self.conv1a(x))))
        return F.relu(self.bn7(x))


class VGG(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1_1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1_2 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool1 = nn.MaxPool2d(3, 2, padding=1)
        self.conv2_1 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool2 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv3_1 = nn.Conv2d(16, 16, 3, padding=2, dilation=2)
        self.fc6 = nn.Conv2d(16, 32, 3, padding=1)
        self.drop = nn.Dropout2d(0.5)
        self.fc7 = nn.Conv2d(32, 32, 1)
        self.fc8 = nn.Conv2d(32, 5, 1)

    def forward(self, x):
        x = F.relu(self.conv1_2(F.relu(self.conv1_1(x))))
        x = F.relu(self.conv2_1(self.pool1(x)))
        x = F.relu(self.conv3_1(self.pool2(x)))
        x = self.drop(F.relu(self.fc6(x)))
        return self.fc8(F.relu(self.fc7(x)))


def rel(a, b):
    return float(np.linalg.norm(a.astype(np.float64) - b) / max(np.linalg.norm(b.astype(np.float64)), 1e-30))


def build(net, bn):
    torch.manual_seed(3)
    m = ResBlocks() if net == "resblocks" else VGG()
    for mod in m.modules():  # non-trivial BN state, so that every term of its formulas matters
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.3, 0.3)
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
    if bn == "frozen":
        m.eval()  # running statistics, and dropout off for the VGG
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.requires_grad_(False)
                mod.bias.requires_grad_(False)
    else:
        m.train()
    return m


@pytest.mark.parametrize("device", ["cpu", "cpu-ref", "cuda"])
@pytest.mark.parametrize("net,bn", [("resblocks", "frozen"), ("resblocks", "train"), ("vgg", "frozen")])
def test_network_matches_torch(net, bn, device, bin_path, build_dir, tmp_path):
    m = build(net, bn)
    state = {k: v.detach().numpy().copy() for k, v in m.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 3, 62, 54, generator=g, requires_grad=True)
    with torch.no_grad():
        shape = m(x).shape
    m = build(net, bn)  # the probe pass above moved training BN's running statistics
    gain = torch.rand(shape, generator=g) + 0.5
    targets = (torch.rand(shape[0], shape[1], generator=g) > 0.5).float()
    st_io.save(tmp_path / "in.safetensors",
               {**state, "input": x.detach().numpy(), "gain": gain.numpy(), "targets": targets.numpy()},
               {"bn": bn})

    out = m(x)
    loss = F.multilabel_soft_margin_loss(F.adaptive_avg_pool2d(out * gain, 1).flatten(1), targets)
    loss.backward()

    r = subprocess.run([str(bin_path("ecs_netcheck")), net, device, str(tmp_path / "in.safetensors"),
                        str(tmp_path / "out.safetensors")], capture_output=True, text=True, timeout=300)
    if device == "cuda" and r.returncode != 0 and ("no CUDA" in r.stderr or "not found" in r.stderr):
        pytest.skip(r.stderr.strip())
    assert r.returncode == 0, r.stderr
    got, meta = st_io.load(tmp_path / "out.safetensors")
    tol_fwd, tol_grad = (1e-2, 1e-2) if device == "cuda" else (1e-4, 1e-3)

    # with oneDNN built in, "cpu" must really run on it (the losses stay on reference kernels)
    ref_ops, ops = map(int, meta["ref_ops"].split("/"))
    config = (build_dir / "ecsnet-config.txt").read_text()
    if device == "cpu" and "dnnl=ON" in config:
        assert ref_ops * 4 < ops, meta
    assert got["out"].shape == tuple(shape)
    assert rel(got["out"], out.detach().numpy()) <= tol_fwd
    assert rel(got["loss"], loss.detach().numpy().reshape(1)) <= tol_fwd
    assert rel(got["input.grad"], x.grad.numpy()) <= tol_grad
    trained = {k for k, p in m.named_parameters() if p.requires_grad}
    assert {k[5:] for k in got if k.startswith("grad.")} == trained
    for k, p in m.named_parameters():
        if p.requires_grad:
            assert np.linalg.norm(p.grad.numpy()) > 0, k
            assert rel(got["grad." + k], p.grad.numpy()) <= tol_grad, (k, rel(got["grad." + k], p.grad.numpy()))
    for k, v in m.state_dict().items():
        if "running_" in k:
            assert rel(got[k], v.numpy()) <= tol_fwd / 10, (k, rel(got[k], v.numpy()))
            if bn == "train":
                assert not np.allclose(v.numpy(), state[k]), f"{k} did not move"
