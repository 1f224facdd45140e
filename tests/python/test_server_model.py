"""ecsnet-server with a real ECS-Net model: every /cam output in JSON and PNG, labels by name, id
and predicted, scales and flip, the three encodings, the same results as `ecsnet cam`, the model
registry and the shipped model, concurrency against a small queue, and SIGTERM under load.

The model is trained here for a few steps on a tiny `ecsnet synth` set (seconds), so the tests
never depend on a model file being committed."""
import base64
import concurrent.futures
import io
import json
import os
import shutil
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image

from test_server_fixture import Server, jpeg_bytes, png_bytes, server_binary

CLASSES = ["cat", "dog", "bird"]
ALL_OUTPUTS = ["cam", "erased_cam", "mask", "cam_mask", "ecs_mask", "head_mask", "scores",
               "erased_image", "overlay", "erase_region"]


def voc_palette():
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    pal[255 * 3:256 * 3] = [224, 224, 192]
    return pal


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, bin_path):
    d = tmp_path_factory.mktemp("model")
    ecsnet = str(bin_path("ecsnet"))
    subprocess.run([ecsnet, "synth", "--out", str(d / "syn"), "--count", "8", "--seed", "3",
                    "--size", "64", "--classes", "3"], check=True, capture_output=True)
    out = d / "tiny.safetensors"
    subprocess.run([ecsnet, "train", "--data", str(d / "syn"), "--out", str(out), "--steps", "4",
                    "--batch", "2", "--crop", "64", "--threads", "1", "--quiet"], check=True,
                   capture_output=True)
    return out


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 96x72 JPEG with structure (a bright disc on a gradient), and its path."""
    h, w = 72, 96
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([(x * 2) % 256, (y * 3) % 256, ((x + y) * 2) % 256], -1).astype(np.float32)
    disc = (x - 60) ** 2 + (y - 30) ** 2 < 15 ** 2
    arr[disc] = [250, 240, 40]
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8), "RGB").save(buf, format="JPEG", quality=92)
    p = tmp_path_factory.mktemp("img") / "photo.jpg"
    p.write_bytes(buf.getvalue())
    return p


@pytest.fixture(scope="module")
def served(model_file, tmp_path_factory):
    s = Server("--model", str(model_file), "--device", "cpu", "--workers", "2",
               data_dir=tmp_path_factory.mktemp("data"))
    yield s
    s.stop()


def decode_png(b64_or_bytes):
    raw = base64.b64decode(b64_or_bytes) if isinstance(b64_or_bytes, str) else b64_or_bytes
    img = Image.open(io.BytesIO(raw))
    img.load()
    return img


def cam_request(s, image, **fields):
    files = {"image": ("x.jpg", image, "image/jpeg")}
    return s.post("/cam", files=files, data=fields)


def test_every_output_in_json(served, photo):
    # the class the model is surest of, so that its CAM is not all zero
    scores = cam_request(served, photo.read_bytes(), outputs="scores").json()["scores"]
    best = max(scores, key=lambda s: s["score"])
    k = best["id"]
    r = cam_request(served, photo.read_bytes(), labels=best["name"],
                    outputs=",".join(ALL_OUTPUTS))
    assert r.status_code == 200, r.text
    j = r.json()
    assert (j["width"], j["height"]) == (96, 72)
    assert j["model"] == {"name": "tiny", "version": 1}
    assert [{"id": lb["id"], "name": lb["name"]} for lb in j["labels"]] == [{"id": k, "name": CLASSES[k - 1]}]
    assert j["labels"][0]["predicted"] is False and j["labels"][0]["kind"] == "class"
    assert [s["name"] for s in j["scores"]] == CLASSES
    assert all(0.0 <= s["score"] <= 1.0 for s in j["scores"])
    assert j["scores"] == scores
    assert j["timings"]["infer_ms"] > 0
    for key in ("cams", "erased_cams"):
        assert [(c["id"], c["name"]) for c in j[key]] == [(k, CLASSES[k - 1])]
        img = decode_png(j[key][0]["png"])
        assert img.mode == "L" and img.size == (96, 72)
        a = np.asarray(img)
        assert a.min() == 0 and a.max() in (0, 255)  # max-min normalised to [0, 1]
    if best["score"] > 0.5:  # a positive mean logit: the map is positive somewhere
        assert np.asarray(decode_png(j["cams"][0]["png"])).max() == 255
    masks = {}
    for key in ("mask", "cam_mask", "ecs_mask", "head_mask"):
        img = decode_png(j[key])
        assert img.mode == "P" and img.size == (96, 72)
        assert img.getpalette()[:768] == voc_palette()
        masks[key] = np.asarray(img)
    for key in ("mask", "cam_mask", "head_mask"):
        assert set(np.unique(masks[key])) <= {0, k}, key
    assert set(np.unique(masks["ecs_mask"])) <= {0, k, 255}
    ign = masks["ecs_mask"] == 255
    # outside Phi the combined mask is the CAM mask; inside it, the ECS mask
    assert np.array_equal(masks["mask"][ign], masks["cam_mask"][ign])
    assert np.array_equal(masks["mask"][~ign], masks["ecs_mask"][~ign])
    for key in ("erased_image", "overlay"):
        img = decode_png(j[key])
        assert img.mode == "RGB" and img.size == (96, 72)
    # the erase region: grey 0/255, never in Phi, and where the erased image differs
    region = decode_png(j["erase_region"])
    assert region.mode == "L" and region.size == (96, 72)
    r_ = np.asarray(region)
    assert set(np.unique(r_)) <= {0, 255}
    assert np.all(masks["ecs_mask"][r_ == 255] == 255)
    erased = np.asarray(decode_png(j["erased_image"])).astype(int)
    kept = np.asarray(Image.open(photo).convert("RGB")).astype(int)
    # (outside the region the erased image is the decoded photo: two JPEG decoders agree
    # within a level or two)
    assert np.abs(erased[r_ == 0] - kept[r_ == 0]).max() <= 2
    # the overlay is half the image plus half a colour map
    photo_rgb = np.asarray(Image.open(photo).convert("RGB")).astype(int)
    ov = np.asarray(decode_png(j["overlay"])).astype(int)
    assert np.all(ov - photo_rgb // 2 >= -1) and np.all(ov - photo_rgb // 2 <= 129)


@pytest.mark.parametrize("output", ALL_OUTPUTS)
def test_each_output_as_png(served, photo, output):
    if output == "scores":
        r = cam_request(served, photo.read_bytes(), labels="cat", outputs="scores", format="png")
        assert r.status_code in (400, 422), r.text  # scores are not an image
        return
    r = cam_request(served, photo.read_bytes(), labels="cat,bird", outputs=output, format="png",
                    **({"label": "bird"} if "cam" in output and "mask" not in output else {}))
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "image/png"
    img = decode_png(r.content)
    assert img.size == (96, 72)
    expected_mode = {"cam": "L", "erased_cam": "L", "erased_image": "RGB", "overlay": "RGB",
                     "erase_region": "L"}
    assert img.mode == expected_mode.get(output, "P")
    if output == "erase_region":
        assert set(np.unique(np.asarray(img))) <= {0, 255}
    if img.mode == "P":
        allowed = {0, 1, 3} | ({255} if output == "ecs_mask" else set())
        assert set(np.unique(np.asarray(img))) <= allowed


def test_labels_by_name_by_id_and_predicted(served, photo):
    by_name = cam_request(served, photo.read_bytes(), labels="bird,cat", outputs="cam,scores")
    by_id = cam_request(served, photo.read_bytes(), labels="3,1", outputs="cam,scores")
    assert by_name.status_code == by_id.status_code == 200
    a, b = by_name.json(), by_id.json()
    assert [l["id"] for l in a["labels"]] == [1, 3]
    assert a["cams"] == b["cams"]
    # absent: predicted from the scores (above the threshold, else the best class)
    p = cam_request(served, photo.read_bytes(), outputs="cam,scores").json()
    scores = {s["id"]: s["score"] for s in p["scores"]}
    want = sorted(k for k, v in scores.items() if v > 0.5) or [max(scores, key=scores.get)]
    assert [l["id"] for l in p["labels"]] == want
    assert len(p["cams"]) == len(want)
    # a lower threshold in the server's settings is not what this server runs with
    assert p["scores"] == a["scores"]


def test_unknown_labels_are_422(served, photo):
    for labels in ("zebra", "4", "dog,zebra"):
        r = cam_request(served, photo.read_bytes(), labels=labels)
        assert r.status_code == 422, (labels, r.text)
        assert r.json()["error"]["code"] == "unknown_label"


def test_scales_and_flip_change_the_cam(served, photo):
    base = cam_request(served, photo.read_bytes(), labels="dog", outputs="cam").json()
    ms = cam_request(served, photo.read_bytes(), labels="dog", outputs="cam", scales="1,0.5",
                     flip="true")
    assert ms.status_code == 200, ms.text
    a = np.asarray(decode_png(base["cams"][0]["png"]), dtype=int)
    b = np.asarray(decode_png(ms.json()["cams"][0]["png"]), dtype=int)
    assert a.shape == b.shape and np.abs(a - b).max() > 0


def test_alpha_bg_overrides_the_background_threshold(served, photo):
    img = photo.read_bytes()
    scores = cam_request(served, img, outputs="scores").json()["scores"]
    best = max(scores, key=lambda s: s["score"])["name"]

    def masks(**extra):
        r = cam_request(served, img, labels=best, outputs="cam,cam_mask,mask,ecs_mask", **extra)
        assert r.status_code == 200, r.text
        j = r.json()
        cam = np.asarray(decode_png(j["cams"][0]["png"]), dtype=np.float32) / 255
        return cam, {k: np.asarray(decode_png(j[k])) for k in ("cam_mask", "mask", "ecs_mask")}

    cam, default = masks()
    model_alpha = served.get("/v1/models").json()["models"][0]["alpha_bg"]
    # the model's own value, given explicitly, is the default answer
    _, same = masks(alpha_bg=repr(model_alpha))
    for k in default:
        assert np.array_equal(default[k], same[k]), k
    # 1: no CAM value beats it, so the CAM mask is all background; 0: every pixel with a
    # positive CAM is the label (the 8-bit CAM rounds the smallest values to 0)
    _, high = masks(alpha_bg="1")
    assert not high["cam_mask"].any()
    _, low = masks(alpha_bg="0")
    assert np.all(low["cam_mask"][cam > 0] > 0)
    assert (low["cam_mask"] > 0).sum() > (default["cam_mask"] > 0).sum()
    # Phi does not depend on it; outside Phi the combined mask follows the CAM mask
    for m in (high, low):
        assert np.array_equal(m["ecs_mask"], default["ecs_mask"])
        out = m["ecs_mask"] == 255
        assert np.array_equal(m["mask"][out], m["cam_mask"][out])
    # JSON numbers too
    js = served.post("/cam", json={"image": base64.b64encode(img).decode(), "labels": [best],
                                   "outputs": ["cam_mask"], "alpha_bg": 1})
    assert js.status_code == 200, js.text
    assert not np.asarray(decode_png(js.json()["cam_mask"])).any()


def test_three_encodings_give_one_result(served, photo):
    img = photo.read_bytes()
    multipart = cam_request(served, img, labels="dog", outputs="cam,mask")
    raw = served.post("/cam?labels=dog&outputs=cam,mask", data=img,
                      headers={"Content-Type": "image/jpeg"})
    js = served.post("/cam", json={"image": base64.b64encode(img).decode(), "labels": ["dog"],
                                   "outputs": ["cam", "mask"]})
    for r in (multipart, raw, js):
        assert r.status_code == 200, r.text
    a, b, c = multipart.json(), raw.json(), js.json()
    assert a["cams"] == b["cams"] == c["cams"]
    assert a["mask"] == b["mask"] == c["mask"]
    # a PNG input decodes too
    r = served.post("/cam?labels=cat&outputs=cam", data=png_bytes(40, 30),
                    headers={"Content-Type": "image/png"})
    assert r.status_code == 200 and r.json()["width"] == 40


@pytest.mark.parametrize("extra", [[], ["--scales", "1,0.5", "--flip"]])
def test_same_result_as_ecsnet_cam(served, photo, model_file, bin_path, tmp_path, extra):
    out = tmp_path / "cli"
    subprocess.run([str(bin_path("ecsnet")), "cam", str(photo), "--model", str(model_file),
                    "--labels", "dog,bird", "--out", str(out), "--threads", "1", "--float"]
                   + extra, check=True, capture_output=True, env={**os.environ,
                                                                  "ECSNET_DEVICE": "cpu"})
    fields = {"labels": "dog,bird", "outputs": "cam,erased_cam,mask,cam_mask,ecs_mask,head_mask,"
                                               "scores,erased_image"}
    if extra:
        fields.update(scales="1,0.5", flip="true")
    j = cam_request(served, photo.read_bytes(), **fields).json()
    import st_io
    cams = st_io.load(out / "cams.safetensors")[0]["cams"]
    for i, name in enumerate(["dog", "bird"]):
        srv = np.asarray(decode_png(j["cams"][i]["png"]), dtype=np.float32) / 255
        # the CLI's float CAM, 8-bit rounded by the server: within half a level
        assert np.abs(srv - cams[i]).max() <= 0.5 / 255 + 1e-6
        for key, prefix in (("cams", "cam_"), ("erased_cams", "erased_cam_")):
            cli = np.asarray(Image.open(out / f"{prefix}{name}.png"), dtype=int)
            got = np.asarray(decode_png(j[key][i]["png"]), dtype=int)
            assert np.abs(cli - got).max() <= 1, key  # rounding of exact halves only
    for key in ("mask", "cam_mask", "ecs_mask", "head_mask", "erased_image"):
        cli = np.asarray(Image.open(out / f"{key}.png"))
        assert np.array_equal(cli, np.asarray(decode_png(j[key]))), key
    scores = dict(line.split()[:2] for line in (out / "scores.txt").read_text().splitlines())
    for s in j["scores"]:
        assert abs(float(scores[s["name"]]) - s["score"]) < 2e-6


def test_engine_options_give_the_same_answer(served, photo, model_file, tmp_path):
    """A server started with the engine's fast paths turned off (--fuse off --winograd off)
    answers /cam with the defaults' mask, and CAMs and scores within rounding."""
    fields = {"labels": "dog,bird", "outputs": "cam,mask,scores"}
    want = cam_request(served, photo.read_bytes(), **fields).json()
    s = Server("--model", str(model_file), "--device", "cpu", "--fuse", "off", "--winograd", "off",
               data_dir=tmp_path / "data")
    try:
        assert s.wait_line(r"engine options: winograd off, fuse off") is not None
        r = cam_request(s, photo.read_bytes(), **fields)
        assert r.status_code == 200, r.text
        got = r.json()
    finally:
        assert s.stop() == 0
    assert np.array_equal(np.asarray(decode_png(got["mask"])), np.asarray(decode_png(want["mask"])))
    for a, b in zip(got["cams"], want["cams"]):
        diff = np.abs(np.asarray(decode_png(a["png"]), dtype=int) - np.asarray(decode_png(b["png"]), dtype=int))
        assert diff.max() <= 1
    for a, b in zip(got["scores"], want["scores"]):
        assert a["name"] == b["name"] and abs(a["score"] - b["score"]) < 1e-5


def test_bad_engine_option_in_the_environment_is_bad_usage(bin_path):
    """ecsnet reads the same ECSNET_* engine options as the server, with the same check."""
    env = {**os.environ, "ECSNET_WINOGRAD": "3"}
    p = subprocess.run([str(bin_path("ecsnet")), "info", "x.safetensors"], capture_output=True,
                       text=True, env=env, timeout=30)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "ECSNET_WINOGRAD: '3' is not one of auto|off|2|4" in p.stderr


def test_models_routes_list_the_served_model(served, model_file):
    j = served.get("/v1/models").json()
    [m] = j["models"]
    assert m["name"] == "tiny" and m["version"] == 1 and m["served"] is True
    assert m["classes"] == CLASSES and m["backbone"] == "small"
    assert abs(m["alpha_bg"] - 0.26) < 1e-6
    assert m["refine"] is False  # no metadata "refine": /cam does not refine unless asked
    assert "trained by ecsnet" in m["provenance"]
    assert served.get("/v1/models/tiny").json()["name"] == "tiny"
    assert served.get("/v1/models/other").status_code == 404
    ready = served.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["model"]["name"] == "tiny"
    assert served.wait_line(r"serving model tiny version 1 on cpu") is not None


def test_registry_active_version_is_served(model_file, photo, tmp_path):
    data = tmp_path / "data"
    (data / "models" / "voc").mkdir(parents=True)
    shutil.copy(model_file, data / "models" / "voc" / "1.safetensors")
    shutil.copy(model_file, data / "models" / "voc" / "3.safetensors")
    (data / "models" / "ACTIVE").write_text("voc 3\n")
    s = Server("--device", "cpu", data_dir=data)
    try:
        r = cam_request(s, photo.read_bytes(), labels="dog", outputs="cam")
        assert r.status_code == 200 and r.json()["model"] == {"name": "voc", "version": 3}
        [m] = s.get("/v1/models").json()["models"]
        assert m["version"] == 3 and m["active"] and m["served"]
        assert [(v["version"], v["active"]) for v in m["versions"]] == [(1, False), (3, True)]
    finally:
        assert s.stop() == 0


def test_corrupt_pointer_leaves_the_server_unready(model_file, tmp_path):
    data = tmp_path / "data"
    (data / "models" / "voc").mkdir(parents=True)
    shutil.copy(model_file, data / "models" / "voc" / "1.safetensors")
    (data / "models" / "ACTIVE").write_text("voc one\n")
    s = Server("--device", "cpu", data_dir=data)
    try:
        assert s.get("/health/ready").status_code == 503
        assert s.wait_line(r"ACTIVE is corrupt") is not None
    finally:
        s.stop()


def test_shipped_model_is_registered_once(model_file, photo, tmp_path):
    data = tmp_path / "data"
    env = {"ECSNET_SHIPPED_MODEL": str(model_file)}
    for _ in range(2):
        s = Server("--device", "cpu", env=env, data_dir=data)
        try:
            assert s.get("/health/ready").json()["model"] == {
                "name": "tiny", "version": 1, "backbone": "small", "classes": CLASSES,
                "active": True}
        finally:
            assert s.stop() == 0
    assert sorted(p.name for p in (data / "models" / "tiny").iterdir()) == ["1.safetensors"]
    assert (data / "models" / "ACTIVE").read_text() == "tiny 1\n"


def test_missing_cuda_device_is_a_failed_start(model_file):
    p = subprocess.run([str(server_binary()), "--listen", "127.0.0.1:0", "--model",
                        str(model_file), "--device", "cuda:63"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 1
    assert "cuda:63" in p.stderr and p.stderr.count("\n") == 1


def test_concurrent_clients_against_a_small_queue(model_file, tmp_path):
    s = Server("--model", str(model_file), "--device", "cpu", "--workers", "2", "--queue", "2",
               data_dir=tmp_path / "data")
    img = jpeg_bytes(64, 48)
    try:
        def one(i):
            r = requests.post(s.url + "/cam", files={"image": ("a.jpg", img, "image/jpeg")},
                              data={"labels": "cat", "outputs": "cam,mask"}, timeout=60)
            return r.status_code, r.headers.get("Retry-After"), r.content
        with concurrent.futures.ThreadPoolExecutor(max_workers=32) as ex:
            results = list(ex.map(one, range(48)))
        ok = [c for st, _, c in results if st == 200]
        busy = [(ra, c) for st, ra, c in results if st == 503]
        assert len(ok) + len(busy) == len(results), [st for st, _, _ in results]
        assert ok, "no request was served"
        first = json.loads(ok[0])
        for body in ok:
            j = json.loads(body)
            assert [(lb["id"], lb["name"]) for lb in j["labels"]] == [(1, "cat")]
            assert j["cams"] == first["cams"] and j["mask"] == first["mask"]
        for ra, body in busy:
            assert ra is not None and int(ra) >= 1
            assert json.loads(body)["error"]["code"] == "queue_full"
    finally:
        assert s.stop() == 0


def test_sigterm_under_load_finishes_in_flight_work(model_file, tmp_path):
    s = Server("--model", str(model_file), "--device", "cpu", "--workers", "1", "--queue", "8",
               data_dir=tmp_path / "data")
    img = jpeg_bytes(320, 240, smooth=True)
    results = []

    def one():
        r = requests.post(s.url + "/cam", data=img, timeout=60,
                          headers={"Content-Type": "image/jpeg"})
        results.append((r.status_code, r.json().get("width")))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if "ecsnet_requests_in_flight 5" in s.get("/metrics").text:  # 4 + this /metrics
            break
        time.sleep(0.02)
    s.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join()
    assert s.proc.wait(timeout=60) == 0
    assert sorted(results) == [(200, 320)] * 4, results
