"""Every image size is served: from 1x1 up to the pixel limit, of any aspect ratio, /cam answers
200 with every output at the size of the image sent, or a 4xx that says why (the input-size
policy, api/input-size.h: the shorter side to the model's input_side, the image's own for the
synthetic model and at least 8 px, 225 for ImageNet lite0; the longer side at most
input_max_aspect = 4 times that, a longer image scaled to fit and padded; the results cut out
and resized back). Before the policy a 9x7 PNG was a 500 and a 1x600000 one a 413."""
import base64
import io
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from test_server_fixture import Server

OUTPUTS = "cam,erased_cam,mask,cam_mask,ecs_mask,head_mask,scores,erased_image,overlay"
# The synthetic model, committed, and the ImageNet one, made by `make build`
SHIPPED = [p for p in [REPO / "models" / "ecsnet-synth-small.safetensors"] if p.exists()]
LITE0 = REPO / "models" / "ecsnet-imagenet-lite0.safetensors"


def encode(w, h, mode="RGB", fmt="PNG"):
    rng = np.random.default_rng(w * 7919 + h)
    shape = (h, w) if mode == "L" else (h, w, len(mode))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(buf, format=fmt)
    return buf.getvalue()


def png(b64):
    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    img.load()
    return img


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if not SHIPPED:
        pytest.fail("models/*.safetensors is missing")
    s = Server("--model", str(SHIPPED[0]), "--device", "cpu", "--max-pixels", "4000000",
               data_dir=tmp_path_factory.mktemp("data"))
    yield s
    s.stop()


def cam(s, body, ctype, **fields):
    return s.post("/cam", files={"image": ("x", body, ctype)}, data=fields, timeout=120)


# (w, h) -> the size the synthetic model sees (auto side: the image's own, at least 8)
SYNTH_INPUT = {(1, 1): (8, 8), (9, 7): (10, 8), (7, 9): (8, 10), (2, 600): (8, 32),
               (1200, 3): (32, 8), (8, 8): (8, 8), (1, 8): (8, 32), (3, 5): (8, 13),
               (600, 1): (32, 8), (50, 40): (50, 40), (500, 100): (400, 100)}


@pytest.mark.parametrize("w,h", list(SYNTH_INPUT))
def test_small_and_thin_images_get_every_output_at_their_size(served, w, h):
    r = cam(served, encode(w, h), "image/png", outputs=OUTPUTS, scales="0.5,1")
    assert r.status_code == 200, r.text
    j = r.json()
    assert (j["width"], j["height"]) == (w, h)
    assert (j["model_input"]["width"], j["model_input"]["height"]) == SYNTH_INPUT[(w, h)]
    for key in ("mask", "cam_mask", "ecs_mask", "head_mask", "erased_image", "overlay"):
        assert png(j[key]).size == (w, h), key
    for key in ("cams", "erased_cams"):
        for c in j[key]:
            assert png(c["png"]).size == (w, h), key


@pytest.mark.parametrize("mode,fmt,ctype", [("L", "PNG", "image/png"), ("RGBA", "PNG", "image/png"),
                                            ("RGB", "JPEG", "image/jpeg"),
                                            ("L", "JPEG", "image/jpeg")])
def test_a_1x1_image_of_every_kind(served, mode, fmt, ctype):
    r = cam(served, encode(1, 1, mode, fmt), ctype, outputs="mask")
    assert r.status_code == 200, r.text
    assert png(r.json()["mask"]).size == (1, 1)
    r = cam(served, encode(1, 1, mode, fmt), ctype, outputs="mask", format="png")
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (1, 1)


def test_a_very_thin_image_is_scaled_to_fit_and_padded_never_blown_up(served):
    # 1 x 600000: the shorter side to 8 would make it 8 x 4800000; the longer side is capped at
    # 4 x 8 instead, the image 1 x 32 centred on an 8 x 32 canvas
    r = cam(served, encode(1, 600000, "L"), "image/png", outputs="mask")
    assert r.status_code == 200, r.text
    j = r.json()
    assert (j["width"], j["height"]) == (1, 600000)
    assert j["model_input"] == {"width": 8, "height": 32}
    assert png(j["mask"]).size == (1, 600000)


def test_a_canvas_over_the_pixel_limit_is_413(tmp_path):
    # the limit below the model's smallest canvas (8 x 8): the upsampling is refused, saying so
    s = Server("--model", str(SHIPPED[0]), "--device", "cpu", "--max-pixels", "40",
               data_dir=tmp_path / "data")
    try:
        r = cam(s, encode(2, 2), "image/png", outputs="mask")
        assert r.status_code == 413, r.text
        e = r.json()["error"]
        assert e["code"] == "too_many_pixels" and "8x8" in e["message"], e
    finally:
        s.stop()


@pytest.fixture(scope="module")
def lite0(tmp_path_factory):
    if not LITE0.exists():
        if os.environ.get("CI") or os.environ.get("ECSNET_CI"):
            pytest.fail(f"{LITE0} was not built (make build): CI requires it")
        pytest.skip(f"{LITE0} was not built (make build)")
    s = Server("--model", str(LITE0), "--device", "cpu", "--max-pixels", "40000000",
               data_dir=tmp_path_factory.mktemp("data"))
    yield s
    s.stop()


# (w, h) -> the size ImageNet lite0 sees (input_side 225, input_max_aspect 4)
LITE0_INPUT = {(1, 1): (225, 225), (9, 7): (289, 225), (300, 225): (300, 225),
               (4000, 3000): (300, 225), (3000, 4000): (225, 300), (1200, 3): (900, 225),
               (3, 1200): (225, 900), (2000, 400): (900, 225), (6000, 100): (900, 225)}


@pytest.mark.parametrize("w,h", list(LITE0_INPUT))
def test_the_imagenet_model_sees_every_size_at_its_own(lite0, w, h):
    body = encode(w, h, fmt="JPEG") if w * h > 1000000 else encode(w, h)
    r = cam(lite0, body, "image/jpeg" if w * h > 1000000 else "image/png",
            outputs="cam,mask,erase_region", labels="cat")
    assert r.status_code == 200, r.text
    j = r.json()
    assert (j["width"], j["height"]) == (w, h)
    mi = j["model_input"]
    assert (mi["width"], mi["height"]) == LITE0_INPUT[(w, h)]
    assert mi["width"] * mi["height"] <= 900 * 225  # never millions of pixels
    assert png(j["mask"]).size == (w, h) and png(j["cams"][0]["png"]).size == (w, h)


def test_the_cli_serves_a_tiny_image_as_the_server_does(served, bin_path, tmp_path):
    p = tmp_path / "t.png"
    p.write_bytes(encode(3, 2))
    out = tmp_path / "out"
    r = subprocess.run([str(bin_path("ecsnet")), "cam", str(p), "--out", str(out), "--model",
                        str(SHIPPED[0]), "--threads", "1"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    served_mask = np.asarray(png(cam(served, p.read_bytes(), "image/png",
                                     outputs="mask").json()["mask"]))
    assert np.array_equal(np.asarray(Image.open(out / "mask.png")), served_mask)
