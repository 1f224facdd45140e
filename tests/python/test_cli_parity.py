"""`ecsnet cam` and `POST /cam` are one door: for the same image, model, labels and options the
files the command line writes hold exactly the pixels of the server's answer (every CAM,
erased CAM, mask and image output, decoded and compared as arrays), and the same labels and
scores. Also: the command line links the engine and the api, not the HTTP server nor the job
store (no libmicrohttpd, no SQLite)."""
import json
import os
import pathlib
import re
import subprocess

import numpy as np
import pytest
from PIL import Image

from test_server_fixture import Server
from test_server_model import cam_request, decode_png, model_file, photo  # noqa: F401 (fixtures)

IMAGE_OUTPUTS = ["mask", "cam_mask", "ecs_mask", "head_mask", "erased_image", "overlay",
                 "erase_region"]
DEFAULT_OUTPUTS = "cam,erased_cam,mask,cam_mask,ecs_mask,head_mask,scores,erased_image,erase_region"

# (labels, scales, flip, outputs, alpha_bg, extra): label names and ids, several scales, flip,
# every output, a background threshold of the request's own, predicted labels from the default
# and from one best class; extra is the label_topk, or "refine" for the edge-aware refinement
CASES = [
    ("dog,bird", None, False, None, None, None),
    ("2,3", "1,0.5", True, "cam,erased_cam,mask,cam_mask,ecs_mask,head_mask,scores,erased_image",
     None, None),
    ("cat", "0.75,1.25", False, "cam,ecs_mask,overlay,scores", None, None),
    ("bird,1", None, True, "erased_cam,cam_mask,head_mask,erased_image,overlay", None, None),
    (None, None, False, "cam,mask,scores", None, None),  # predicted labels
    ("dog,bird", None, False, "cam_mask,mask,erase_region", "0.05", None),
    ("cat,dog", "1,1.5", False, None, "0.6", None),
    ("dog,bird", None, False, "mask,coco,polygons", None, None),
    ("cat,dog", None, False, "cam,erased_cam,mask,ecs_mask", None, "refine"),
    (None, None, False, "cam,mask,scores", None, 1),
]
JSON_OUTPUTS = ["coco", "polygons"]


@pytest.fixture(scope="module")
def one_worker(model_file, tmp_path_factory):  # noqa: F811
    """The server computing as the command line does: one worker on one CPU thread."""
    s = Server("--model", str(model_file), "--device", "cpu", "--workers", "1",
               data_dir=tmp_path_factory.mktemp("data"))
    yield s
    s.stop()


def run_cli(bin_path, image, model, out, labels, scales, flip, outputs, alpha_bg=None, topk=None):
    cmd = [str(bin_path("ecsnet")), "cam", str(image), "--model", str(model), "--out", str(out),
           "--threads", "1"]
    if labels:
        cmd += ["--labels", labels]
    if scales:
        cmd += ["--scales", scales]
    if flip:
        cmd += ["--flip"]
    if outputs:
        cmd += ["--outputs", outputs]
    if alpha_bg:
        cmd += ["--alpha-bg", alpha_bg]
    if topk == "refine":
        cmd += ["--refine"]
    elif topk:
        cmd += ["--label-topk", str(topk)]
    p = subprocess.run(cmd, capture_output=True, text=True,
                       env={**os.environ, "ECSNET_DEVICE": "cpu"})
    assert p.returncode == 0, p.stderr
    return p.stdout


def pixels(img):
    return np.asarray(img)


@pytest.mark.parametrize("labels,scales,flip,outputs,alpha_bg,topk", CASES)
def test_cli_and_server_give_the_same_pixels(one_worker, bin_path, photo, model_file,  # noqa: F811
                                             tmp_path, labels, scales, flip, outputs, alpha_bg,
                                             topk):
    out = tmp_path / "cli"
    stdout = run_cli(bin_path, photo, model_file, out, labels, scales, flip, outputs, alpha_bg,
                     topk)
    fields = {"outputs": outputs or DEFAULT_OUTPUTS}
    if labels:
        fields["labels"] = labels
    if scales:
        fields["scales"] = scales
    if flip:
        fields["flip"] = "true"
    if alpha_bg:
        fields["alpha_bg"] = alpha_bg
    if topk == "refine":
        fields["refine"] = "true"
    elif topk:
        fields["label_topk"] = str(topk)
    r = cam_request(one_worker, photo.read_bytes(), **fields)
    assert r.status_code == 200, r.text
    j = r.json()
    names = [lab["name"] for lab in j["labels"]]
    assert stdout.startswith("labels: " + " ".join(names) + "\n"), stdout
    wanted = fields["outputs"].split(",")
    compared = 0
    for key, prefix in (("cams", "cam_"), ("erased_cams", "erased_cam_")):
        if key[:-1] not in wanted:
            for name in names:
                assert not (out / f"{prefix}{name}.png").exists(), key
            continue
        for item in j[key]:
            cli = pixels(Image.open(out / f"{prefix}{item['name']}.png"))
            srv = pixels(decode_png(item["png"]))
            assert cli.dtype == srv.dtype == np.uint8 and cli.shape == srv.shape, key
            assert np.array_equal(cli, srv), f"{key} {item['name']}"
            compared += 1
    for key in IMAGE_OUTPUTS:
        f = out / f"{key}.png"
        if key not in wanted:
            assert not f.exists(), key
            continue
        cli_img, srv_img = Image.open(f), decode_png(j[key])
        assert cli_img.mode == srv_img.mode, key
        assert np.array_equal(pixels(cli_img), pixels(srv_img)), key
        compared += 1
    assert compared == sum(1 for k in wanted if k in IMAGE_OUTPUTS) + \
        len(names) * sum(1 for k in ("cam", "erased_cam") if k in wanted)
    for key in JSON_OUTPUTS:
        f = out / f"{key}.json"
        if key not in wanted:
            assert not f.exists(), key
            continue
        assert json.loads(f.read_text()) == j[key], key
    if "scores" in wanted:
        lines = (out / "scores.txt").read_text().splitlines()
        cli_scores = {ln.split()[0]: float(ln.split()[1]) for ln in lines}
        for s in j["scores"]:
            assert abs(cli_scores[s["name"]] - s["score"]) <= 6e-7, s["name"]
        starred = [ln.split()[0] for ln in lines if ln.endswith(" *")]
        assert sorted(starred) == sorted(names)
    else:
        assert not (out / "scores.txt").exists()


def cli_cam_options(bin_path):
    """The options `ecsnet cam` documents in `ecsnet --help` (its usage lines)."""
    p = subprocess.run([str(bin_path("ecsnet")), "--help"], capture_output=True, text=True)
    text = p.stdout + p.stderr
    lines, inside = [], False
    for ln in text.splitlines():
        if ln.startswith("  ") and not ln.startswith("   "):
            inside = ln.split()[0] == "cam"
        if inside:
            lines.append(ln)
    return set(re.findall(r"--([a-z][a-z-]*)", "\n".join(lines)))


def test_every_shared_option_is_compared(one_worker, bin_path):
    """An option `ecsnet cam` shares with POST /cam (same name as a /cam parameter) must be
    exercised above with a value off its default, so one added later cannot drift."""
    spec = one_worker.get("/openapi.json").json()
    params = {p["name"] for p in spec["components"]["parameters"].values()}
    shared = {o.replace("-", "_") for o in cli_cam_options(bin_path)} & params
    assert {"labels", "scales", "flip", "outputs", "alpha_bg"} <= shared, shared
    covered = set()
    for labels, scales, flip, outputs, alpha_bg, topk in CASES:
        covered |= {name for name, v in (("labels", labels), ("scales", scales),
                                         ("flip", flip), ("outputs", outputs),
                                         ("alpha_bg", alpha_bg)) if v}
        covered |= {"refine" if topk == "refine" else "label_topk"} if topk else set()
    assert shared <= covered, f"not compared: {sorted(shared - covered)}"


def test_cli_links_neither_the_http_server_nor_the_job_store(bin_path, build_dir):
    exe = bin_path("ecsnet")
    deps = subprocess.run(["ldd", str(exe)], capture_output=True, text=True, check=True).stdout
    for lib in ("libmicrohttpd", "libsqlite3"):
        assert lib not in deps, deps
    # ldd alone would pass with a linker that drops unused libraries (--as-needed): the link
    # line itself must not name them, nor the server library
    link = pathlib.Path(build_dir) / "cli" / "CMakeFiles" / "ecsnet.dir" / "link.txt"
    if link.exists():
        text = link.read_text()
        for name in ("microhttpd", "sqlite3", "libecsserver"):
            assert name not in text, text
    # and the server still does
    srv = subprocess.run(["ldd", str(bin_path("ecsnet-server"))], capture_output=True, text=True,
                         check=True).stdout
    assert "libmicrohttpd" in srv


def with_label_threshold(src, dst, value):
    """A copy of the safetensors file src whose metadata says label_threshold = value."""
    raw = src.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header["__metadata__"]["label_threshold"] = repr(value)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    dst.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])
    return dst


def test_predicted_labels_follow_the_models_threshold(bin_path, photo, model_file,  # noqa: F811
                                                       tmp_path):
    """Without labels, both sides predict with the model's own label_threshold (neither
    --label-threshold is set), and an explicit --label-threshold overrides it on both."""
    low = with_label_threshold(model_file, tmp_path / "low.safetensors", 0.001)
    s = Server("--model", str(low), "--device", "cpu", "--workers", "1",
               data_dir=tmp_path / "data")
    try:
        r = cam_request(s, photo.read_bytes(), outputs="scores")
        assert r.status_code == 200, r.text
        served = [lab["name"] for lab in r.json()["labels"]]
        scores = {x["name"]: x["score"] for x in r.json()["scores"]}
    finally:
        s.stop()
    assert sorted(served) == sorted(n for n, v in scores.items() if v > 0.001), served
    assert len(served) > 1, scores  # the model's low threshold, not the server's 0.5
    out = tmp_path / "cli"
    stdout = run_cli(bin_path, photo, low, out, None, None, False, "scores", None)
    assert stdout.startswith("labels: " + " ".join(served) + "\n"), stdout
    p = subprocess.run([str(bin_path("ecsnet")), "cam", str(photo), "--model", str(low), "--out",
                        str(tmp_path / "hi"), "--outputs", "scores", "--label-threshold", "0.999"],
                       capture_output=True, text=True, env={**os.environ, "ECSNET_DEVICE": "cpu"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[0].split()[1:] != served
