"""convert_pytorch.py: PyTorch checkpoints of SEAM/PSA/our layouts into ecsnet model files, and
the engine's forward pass on converted weights against PyTorch (whole network, 1e-4)."""
import subprocess
import sys

import numpy as np
import pytest
import torch

import ecsnet_ref as R
import st_io
import importlib.util

SCRIPT = R.__file__.replace("tests/python/ecsnet_ref.py", "engine/scripts/convert_pytorch.py")
CLASSES = ["cat", "dog", "bird"]
_spec = importlib.util.spec_from_file_location("convert_pytorch", SCRIPT)
conv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(conv)


def rel(a, b):
    return float(np.linalg.norm(a.astype(np.float64) - b) / max(np.linalg.norm(b.astype(np.float64)), 1e-30))


def convert(tmp_path, state, backbone, classes=CLASSES, name="m"):
    ckpt = tmp_path / f"{name}.pth"
    torch.save(state, ckpt)
    out = tmp_path / f"{name}.safetensors"
    p = subprocess.run([sys.executable, SCRIPT, str(ckpt), "--backbone", backbone, "--classes",
                        ",".join(classes), "--out", str(out)], capture_output=True, text=True)
    return p, out


def engine_forward(bin_path, tmp_path, model, x):
    inp, outp = tmp_path / "in.safetensors", tmp_path / "out.safetensors"
    st_io.save(inp, {"x": x.numpy()})
    p = subprocess.run([bin_path("ecsnet_tool"), "forward", str(model), str(inp), str(outp)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return st_io.load(outp)[0]["h"]


@pytest.mark.parametrize("backbone,size", [("small", (2, 3, 72, 56)), ("vgg16d", (1, 3, 40, 48)),
                                           ("resnet38d", (1, 3, 32, 40))])
def test_forward_parity(bin_path, tmp_path, backbone, size):
    torch.manual_seed(0)
    net = R.randomise(R.BACKBONES[backbone](1 + len(CLASSES)), 1).eval()
    # in-process conversion: the command line's path is covered by the tests below, and
    # skipping torch.save/torch.load of resnet38d's 400 MB keeps this test quick
    tensors, meta, dropped = conv.convert(R.state_dict_np(net), backbone, CLASSES)
    assert dropped == []
    model = tmp_path / "m.safetensors"
    conv.save_safetensors(model, tensors, meta)
    x = torch.randn(*size)
    with torch.no_grad():
        ref = R.forward(net, x).numpy()
    got = engine_forward(bin_path, tmp_path, model, x)
    assert got.shape == ref.shape
    assert ref.shape[2] == -(-size[2] // 8) and ref.shape[3] == -(-size[3] // 8)  # output stride 8
    assert rel(got, ref) <= 1e-4


def test_psa_checkpoint_gets_background_channel(bin_path, tmp_path):
    net = R.randomise(R.Vgg16d(len(CLASSES)), 2).eval()  # PSA: K outputs, no background
    p, model = convert(tmp_path, net.state_dict(), "vgg16d")
    assert p.returncode == 0, p.stderr
    assert "background channel" in p.stderr
    tensors, meta = st_io.load(model)
    assert meta["bg_channel_added"] == "1" and meta["backbone"] == "vgg16d"
    assert tensors["fc8.weight"].shape[0] == 1 + len(CLASSES)
    assert np.all(tensors["fc8.weight"][0] == 0)
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        ref = R.forward(net, x).numpy()
    got = engine_forward(bin_path, tmp_path, model, x)
    assert np.all(got[:, 0] == 0)
    assert rel(got[:, 1:], ref) <= 1e-4


def test_seam_checkpoint_extra_keys_dropped_and_listed(tmp_path):
    net = R.randomise(R.Small(1 + len(CLASSES)), 3)
    sd = dict(net.state_dict())
    sd["f8_3.weight"] = torch.zeros(64, 512, 1, 1)
    sd["f9.weight"] = torch.zeros(192, 192, 1, 1)
    p, model = convert(tmp_path, {"state_dict": sd}, "small")
    assert p.returncode == 0, p.stderr
    assert "f8_3.weight" in p.stderr and "f9.weight" in p.stderr
    tensors, meta = st_io.load(model)
    assert "f9.weight" not in tensors and "f9.weight" in meta["provenance"]
    assert meta["bg_channel_added"] == "0"


def test_missing_key_is_an_error(tmp_path):
    sd = dict(R.Small(4).state_dict())
    del sd["conv3.weight"]
    p, model = convert(tmp_path, sd, "small")
    assert p.returncode == 1
    assert "conv3.weight" in p.stderr and not model.exists()


def test_wrong_backbone_is_an_error(tmp_path):
    p, _ = convert(tmp_path, R.Small(4).state_dict(), "vgg16d")
    assert p.returncode == 1 and "conv1_1.weight" in p.stderr


def test_engine_rejects_wrong_shapes_and_backbone(bin_path, tmp_path):
    net = R.Small(4)
    p, model = convert(tmp_path, net.state_dict(), "small")
    assert p.returncode == 0
    tensors, meta = st_io.load(model)
    bad = dict(tensors)
    bad["conv2.weight"] = np.zeros((64, 32, 3, 3), np.float32)
    st_io.save(tmp_path / "bad.safetensors", bad, meta)
    st_io.save(tmp_path / "other.safetensors", tensors, dict(meta, backbone="resnet38d"))
    st_io.save(tmp_path / "x.safetensors", {"x": np.zeros((1, 3, 16, 16), np.float32)})
    for f, word in [("bad", "conv2.weight"), ("other", "conv1a.weight")]:
        path = tmp_path / f"{f}.safetensors"
        r = subprocess.run([bin_path("ecsnet_tool"), "forward", str(path), str(tmp_path / "x.safetensors"),
                            str(tmp_path / "o.safetensors")], capture_output=True, text=True)
        assert r.returncode == 1
        assert str(path) in r.stderr and word in r.stderr, r.stderr


def test_synonym_names_are_made_unique(tmp_path):
    """--synonyms: the first synonym names the class; a name an earlier class has gets " 2"."""
    syn = [["crane"], ["tench", "Tinca tinca"], ["crane"], ["maillot"], ["maillot", "tank suit"],
           ["crane 2"]]
    assert conv.unique_names(syn) == ["crane", "tench", "crane 2", "maillot", "maillot 2", "crane 2 2"]
    f = tmp_path / "syn.txt"
    f.write_text("tench, Tinca tinca\n\ngoldfish, Carassius auratus\n")
    assert conv.read_synonyms(f) == [["tench", "Tinca tinca"], ["goldfish", "Carassius auratus"]]


def test_lite0_classifier_keeps_its_bias():
    """efficientnet_lite0: _fc (K, 1280) and its bias become fc8 with a zero background channel."""
    state = {k: np.random.default_rng(0).standard_normal(s).astype(np.float32)
             for k, s in conv.expected_keys("efficientnet_lite0", 4).items() if not k.startswith("fc8")}
    state["_fc.weight"] = np.ones((3, 1280), np.float32)
    state["_fc.bias"] = np.array([1, 2, 3], np.float32)
    state["_bn1.num_batches_tracked"] = np.zeros((), np.float32)
    tensors, meta, dropped = conv.convert(state, "efficientnet_lite0", ["a", "b", "c"],
                                          meta_extra={"licence": "L"})
    assert tensors["fc8.weight"].shape == (4, 1280, 1, 1) and not tensors["fc8.weight"][0].any()
    assert list(tensors["fc8.bias"]) == [0, 1, 2, 3]
    assert meta["bg_channel_added"] == "1" and meta["normalisation"] == "tf128"
    assert meta["licence"] == "L" and dropped == ["_bn1.num_batches_tracked"]
