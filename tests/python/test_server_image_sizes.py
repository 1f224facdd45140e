"""Every image size is served: from 1x1 up to the pixel limit, of any aspect ratio, /cam answers
200 with every output at the size of the image sent (the input-size policy, api/input-size.h:
images with a side under the model's minimum are upsampled for the model and the results
resized back), or a 4xx that says why. Before the policy a 9x7 PNG was a 500."""
import base64
import io
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from test_server_fixture import Server

OUTPUTS = "cam,erased_cam,mask,cam_mask,ecs_mask,head_mask,scores,erased_image,overlay"
# The synthetic model, which every CI machine has (the ImageNet one's masks stop at id 254)
SHIPPED = [p for p in [REPO / "models" / "ecsnet-synth-small.safetensors"] if p.exists()]


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


@pytest.mark.parametrize("w,h", [(1, 1), (9, 7), (7, 9), (2, 600), (1200, 3), (8, 8), (1, 8),
                                 (3, 5), (600, 1)])
def test_small_and_thin_images_get_every_output_at_their_size(served, w, h):
    r = cam(served, encode(w, h), "image/png", outputs=OUTPUTS, scales="0.5,1")
    assert r.status_code == 200, r.text
    j = r.json()
    assert (j["width"], j["height"]) == (w, h)
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


def test_a_thin_image_that_upsampling_would_take_past_the_pixel_limit_is_413(served):
    # 1 x 600000 is within --max-pixels 4000000; at the model's smallest side of 8 it would
    # be 8 x 4800000
    r = cam(served, encode(1, 600000, "L"), "image/png", outputs="mask")
    assert r.status_code == 413, r.text
    e = r.json()["error"]
    assert e["code"] == "too_many_pixels" and "8x4800000" in e["message"]


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
