"""ecsnet-imagenet-lite0 on real photos from package registries (tests/photos/fetch.sh fetches
them at test time; none is committed): chelsea and coffee (Debian python3-skimage),
squirrel_cls.jpg (Debian opencv-doc), imgaug 0.4.0's quokka.jpg with its polygon.

Through the server, each photo sent as it is: the model's input-size policy resizes it to its
shorter side of 225 (api/input-size.h), and every output comes back at the photo's own size:
- top-1 class in the expected ImageNet sets (ecsnet id = index + 1);
- the pointing game: the CAM's peak of the top class lies inside the object (a hand box,
  tests/photos/boxes.json, or the quokka's polygon);
- the quokka's CAM (wallaby, ImageNet 104) >= 0.3 against its filled polygon: IoU >= 0.6, with
  the model's default edge-aware refinement, which may not do worse than refine=false; the
  combined mask's IoU and the unrefined ones are printed beside it;
- a randomly initialised model of the same shape fails them;
- labels by group name ("cat"), by synonym ("tabby cat", "Egyptian_Cat") and an unknown label
  (422 with the closest names).
Without the photos or the model (no registry at install time) these skip, saying so; in CI they
fail."""
import base64
import io
import json
import os
import subprocess

import numpy as np
import pytest
from PIL import Image, ImageDraw

import st_io
from conftest import REPO

MODEL = REPO / "models" / "ecsnet-imagenet-lite0.safetensors"
TOP1 = {"chelsea.png": {281, 282, 285}, "coffee.png": {967, 968}, "squirrel_cls.jpg": {335}}
WALLABY = 104 + 1


def _missing(what):
    if os.environ.get("CI") or os.environ.get("ECSNET_CI"):
        pytest.fail(f"{what}: CI requires it")
    pytest.skip(what)


@pytest.fixture(scope="module")
def photos():
    import pathlib

    d = pathlib.Path(os.environ.get("ECSNET_PHOTOS", REPO / ".venv" / "share" / "ecsnet" / "photos"))
    p = subprocess.run(["bash", str(REPO / "tests" / "photos" / "fetch.sh")], capture_output=True,
                       text=True, timeout=600)
    if p.returncode != 0:
        _missing(f"the real photos could not be fetched: {p.stderr.strip()}")
    if not MODEL.exists():
        _missing(f"{MODEL} was not built (make build)")
    return d


def original(path):
    """The photo's own bytes, its media type, and its size."""
    with Image.open(path) as im:
        size = im.size
    return path.read_bytes(), "image/png" if path.suffix == ".png" else "image/jpeg", size


def decode(b64):
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def quokka_polygon(photos, s, size):
    ann = json.loads((photos / "quokka_annotations.json").read_text())
    pts = [(p["x"] * s, p["y"] * s) for p in ann["polygons"][0]["keypoints"]]
    m = Image.new("L", size, 0)
    ImageDraw.Draw(m).polygon(pts, fill=1)
    return np.asarray(m).astype(bool)


def object_mask(photos, name, s, size):
    if name == "quokka.jpg":
        return quokka_polygon(photos, s, size)
    x0, y0, x1, y1 = json.loads((REPO / "tests" / "photos" / "boxes.json").read_text())[name]
    m = np.zeros((size[1], size[0]), bool)
    m[round(y0 * s):round(y1 * s), round(x0 * s):round(x1 * s)] = True
    return m


def cam_of(srv, photos, name, **fields):
    body, ctype, size = original(photos / name)
    r = srv.post("/cam", files={"image": (name, body, ctype)}, data=fields, timeout=120)
    assert r.status_code == 200, r.text
    j = r.json()
    # outputs at the photo's size, the model's input at its own (shorter side 225)
    assert (j["width"], j["height"]) == size
    mi = j["model_input"]
    assert min(mi["width"], mi["height"]) == 225, mi
    return j, 1.0, size


def evaluate(srv, photos):
    """{photo: (top-1 ImageNet index, pointing hit)}, and the quokka's CAM and mask IoU."""
    out = {}
    for name in list(TOP1) + ["quokka.jpg"]:
        j, s, size = cam_of(srv, photos, name, outputs="scores")
        top = int(np.argmax([sc["score"] for sc in j["scores"][:1000]]))
        label = WALLABY if name == "quokka.jpg" else top + 1
        j, s, size = cam_of(srv, photos, name, labels=str(label), outputs="cam,mask", flip="true")
        cam = decode(j["cams"][0]["png"]).astype(np.float32) / 255
        obj = object_mask(photos, name, s, size)
        y, x = np.unravel_index(np.argmax(cam), cam.shape)
        out[name] = (top, bool(obj[y, x]))
        if name == "quokka.jpg":
            iou = lambda a: float((a & obj).sum() / (a | obj).sum())
            out["iou_cam"] = iou(cam >= 0.3)
            out["iou_mask"] = iou(decode(j["mask"]) == WALLABY)
            j, _, _ = cam_of(srv, photos, name, labels=str(label), outputs="cam,mask", flip="true",
                             refine="false")
            out["iou_cam_unrefined"] = iou(decode(j["cams"][0]["png"]).astype(np.float32) / 255 >= 0.3)
            out["iou_mask_unrefined"] = iou(decode(j["mask"]) == WALLABY)
    return out


def passes(res):
    return (all(res[n][0] in TOP1[n] for n in TOP1) and all(res[n][1] for n in res if "." in n)
            and res["iou_cam"] >= 0.6)


@pytest.fixture(scope="module")
def served(photos, tmp_path_factory):
    from test_server_fixture import Server

    s = Server("--model", str(MODEL), "--device", "cpu", data_dir=tmp_path_factory.mktemp("data"))
    assert s.wait_line(r"serving model ecsnet-imagenet-lite0", timeout=30) is not None
    yield s
    assert s.stop() == 0


def test_real_photos_top1_pointing_and_quokka_iou(served, photos):
    res = evaluate(served, photos)
    print("real photos:", res)
    for n in TOP1:
        assert res[n][0] in TOP1[n], (n, res[n])
    for n in list(TOP1) + ["quokka.jpg"]:
        assert res[n][1], f"{n}: the CAM's peak is outside the object"
    assert res["iou_cam"] >= 0.6, res
    assert passes(res)
    # the model's default refinement (refine.c) follows the quokka's edges: it may not lose
    assert res["iou_cam"] >= res["iou_cam_unrefined"], res


def random_model(path):
    t, meta = st_io.load(MODEL)
    g = np.random.default_rng(0)
    out = {}
    for k, a in t.items():
        if k.endswith("running_var") or (k.endswith(".weight") and a.ndim == 1):
            out[k] = np.ones_like(a)
        elif a.ndim == 1:
            out[k] = np.zeros_like(a)
        else:
            fan_in = int(np.prod(a.shape[1:]))
            out[k] = (g.standard_normal(a.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    st_io.save(path, out, meta)


def test_a_random_model_fails(photos, tmp_path):
    from test_server_fixture import Server

    rnd = tmp_path / "ecsnet-imagenet-lite0.safetensors"
    random_model(rnd)
    s = Server("--model", str(rnd), "--device", "cpu", data_dir=tmp_path / "data")
    try:
        assert s.wait_line(r"serving model", timeout=30) is not None
        res = evaluate(s, photos)
        print("random model:", res)
        assert not passes(res)
        assert not any(res[n][0] in TOP1[n] for n in TOP1), res
    finally:
        assert s.stop() == 0


def test_labels_by_group_and_synonym(served, photos):
    body, ctype, size = original(photos / "chelsea.png")
    s = 1.0
    img = {"image": ("chelsea.png", body, ctype)}
    obj = object_mask(photos, "chelsea.png", s, size)
    r = served.post("/cam", files=img, data={"labels": "cat", "outputs": "cam,scores"})
    assert r.status_code == 200, r.text
    j = r.json()
    [lab] = j["labels"]
    assert lab["id"] == 1008 and lab["kind"] == "group" and lab["predicted"] is False
    members = sum(sc["score"] for sc in j["scores"] if 282 <= sc["id"] <= 286)
    assert abs(lab["score"] - members) < 1e-5 and lab["score"] > 0.5
    cam = decode(j["cams"][0]["png"])
    assert obj.flat[np.argmax(cam)]
    # predicted: the top classes are cats, so the group comes instead of them
    j = served.post("/cam", files=img, data={"outputs": "cam"}).json()
    assert [(lb["name"], lb["predicted"]) for lb in j["labels"]] == [("cat", True)]
    for name, want in (("tabby cat", 282), ("Egyptian_Cat", 286), ("TIGER  cat", 283)):
        r = served.post("/cam", files=img, data={"labels": name, "outputs": "cam"})
        assert r.status_code == 200, r.text
        assert r.json()["labels"][0]["id"] == want, name
    r = served.post("/cam", files=img, data={"labels": "crane", "outputs": "cam"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "ambiguous_label"
    assert "135" in r.json()["error"]["message"] and "518" in r.json()["error"]["message"]
    r = served.post("/cam", files=img, data={"labels": "tabbby", "outputs": "cam"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_label"
    assert "'tabby'" in r.json()["error"]["message"]


def test_a_large_photo_is_seen_at_the_models_size(served, photos):
    # chelsea at 4x (1804 x 1200, as a camera would send it): the model still sees 338 x 225,
    # so the top class and the mask are those of the photo at its own size, at 4x
    body, ctype, (w, h) = original(photos / "chelsea.png")
    big = Image.open(io.BytesIO(body)).convert("RGB").resize((w * 4, h * 4), Image.BICUBIC)
    b = io.BytesIO()
    big.save(b, "JPEG", quality=95)
    fields = {"labels": "cat", "outputs": "mask,scores"}
    r = served.post("/cam", files={"image": ("big.jpg", b.getvalue(), "image/jpeg")}, data=fields,
                    timeout=120)
    assert r.status_code == 200, r.text
    jb = r.json()
    assert (jb["width"], jb["height"]) == (w * 4, h * 4)
    assert jb["model_input"] == {"width": round(w * 225 / h), "height": 225}
    j = served.post("/cam", files={"image": ("c.png", body, ctype)}, data=fields).json()
    top = lambda js: int(np.argmax([sc["score"] for sc in js["scores"][:1000]]))
    assert top(jb) == top(j)
    small = np.asarray(Image.fromarray(decode(jb["mask"])).resize((w, h), Image.NEAREST)) != 0
    own = decode(j["mask"]) != 0
    assert own.sum() > 0.05 * own.size
    iou = float((small & own).sum() / (small | own).sum())
    print("chelsea 4x against 1x: mask IoU", iou)
    assert iou >= 0.9, iou
