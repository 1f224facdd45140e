"""Fixtures of the integration tests: the real ecsnet-server on the synthetic model (images
from `ecsnet synth`) and on the ImageNet model ecsnet-imagenet-lite0 (real photos from
tests/photos/fetch.sh: 1000 classes, 20 VOC groups, 16-bit masks), and ecsnet's own masks to
compare every tool's decoding with.

These tests run in .venv-int (deploy/install-integrations.sh), not .venv: Label Studio needs
numpy >= 2.2. tests/integrations/run.sh runs them."""
import base64
import io
import os
import pathlib
import re
import subprocess
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("ECSNET_BUILD_DIR", REPO / "build")).resolve()
MODEL = REPO / "models" / "ecsnet-synth-small.safetensors"
LITE0 = REPO / "models" / "ecsnet-imagenet-lite0.safetensors"
PHOTOS = pathlib.Path(os.environ.get("ECSNET_PHOTOS", REPO / ".venv" / "share" / "ecsnet" /
                                     "photos"))
PHOTO_NAMES = ("chelsea.png", "coffee.png", "squirrel_cls.jpg", "quokka.jpg")


def binary(name):
    p = BUILD / "bin" / name
    if not p.exists():
        pytest.fail(f"{p} is missing: build first (make build)")
    return p


class Server:
    """One ecsnet-server on a free loopback port, its output collected by a thread."""

    def __init__(self, *args, env=None, data_dir, model=MODEL):
        self.data_dir = pathlib.Path(data_dir)
        full = {k: v for k, v in os.environ.items() if not k.startswith("ECSNET_")}
        full.update(env or {})
        cmd = [str(binary("ecsnet-server")), "--listen", "127.0.0.1:0", "--data-dir",
               str(data_dir), "--shipped-model", str(model), "--access-log", "off", *args]
        self.lines, self._cv = [], threading.Condition()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=full, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        line = self.wait_line(r"listening on .* port (\d+)", 15)
        if line is None:
            self.proc.kill()
            raise RuntimeError("ecsnet-server did not start:\n" + "\n".join(self.lines))
        self.port = int(re.search(r"port (\d+)", line).group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def _read(self):
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()

    def wait_line(self, pattern, timeout):
        rx, end = re.compile(pattern), time.monotonic() + timeout
        with self._cv:
            while True:
                for ln in self.lines:
                    if rx.search(ln):
                        return ln
                left = end - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self._cv.wait(min(left, 0.1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    """Eight synthetic benchmark images (JPEG) and their image-level labels."""
    out = tmp_path_factory.mktemp("synth")
    subprocess.run([str(binary("ecsnet")), "synth", "--out", str(out), "--count", "8", "--seed",
                    "3"], check=True, capture_output=True)
    names = (out / "classes.txt").read_text().split()
    labels = {}
    for ln in (out / "labels.txt").read_text().splitlines():
        parts = ln.split()
        labels[parts[0]] = [names[int(i) - 1] for i in parts[1:]]
    return {i: (out / "JPEGImages" / f"{i}.jpg", labs) for i, labs in sorted(labels.items())}


@pytest.fixture(scope="session")
def ecsnet(tmp_path_factory):
    s = Server(data_dir=tmp_path_factory.mktemp("data"))
    yield s
    s.stop()


_CAMS = {}


def cam(server, image_path, labels, outputs="mask"):
    """The server's /cam answer (kept for the session: the same server gives the same answer,
    and the ImageNet model takes seconds a photo)."""
    key = (server.url, str(image_path), tuple(labels or ()), outputs)
    if key in _CAMS:
        return _CAMS[key]
    data = {"outputs": outputs}
    if labels:
        data["labels"] = ",".join(labels)
    r = requests.post(server.url + "/cam", files={"image": image_path.read_bytes()}, data=data,
                      timeout=120)
    assert r.status_code == 200, r.text
    _CAMS[key] = r.json()
    return _CAMS[key]


def combined_mask(answer):
    """The combined mask of a /cam answer as label ids: the 8-bit palette PNG's indices, or
    the 16-bit grey PNG's values when an id is above 254 (mask_bits)."""
    img = Image.open(io.BytesIO(base64.b64decode(answer["mask"])))
    if answer.get("mask_bits") == 16:
        assert img.mode in ("I;16", "I"), img.mode
        return np.asarray(img).astype(np.int64)
    assert img.mode == "P"
    return np.asarray(img)


def ignore_value(answer):
    return 65535 if answer.get("mask_bits") == 16 else 255


def present_ids(answer):
    """The label ids the combined mask holds, background and ignore left out, ascending."""
    m = combined_mask(answer)
    return sorted(int(k) for k in np.unique(m) if 0 < k < ignore_value(answer))


@pytest.fixture(scope="session")
def photos():
    """The real photos by name (tests/photos/fetch.sh; run.sh fetches them)."""
    missing = [n for n in PHOTO_NAMES if not (PHOTOS / n).is_file()]
    if missing:
        pytest.fail(f"photos missing under {PHOTOS}: {missing} (tests/photos/fetch.sh)")
    return {n: PHOTOS / n for n in PHOTO_NAMES}


@pytest.fixture(scope="session")
def lite0(tmp_path_factory):
    """ecsnet-server on ecsnet-imagenet-lite0, set up as the ML backend of the session's Label
    Studio (its URL and token are known before it is ready) with HTTP basic auth."""
    if not LITE0.is_file():
        pytest.fail(f"{LITE0} is missing: make build converts it")
    ls = _LS["ls"]
    s = Server("--ls-url", ls.url, model=LITE0,
               env={"ECSNET_LS_TOKEN": ls.token, "ECSNET_LS_AUTH": f"{LS_USER}:{LS_PASSWORD}"},
               data_dir=tmp_path_factory.mktemp("data-lite0"))
    yield s
    s.stop()


# The HTTP basic auth the ecsnet backends require on /labelstudio.
LS_USER, LS_PASSWORD = "labelstudio", "a-long-password"

# ---- Label Studio: started when the session starts, so its first start (migrations, 25-85 s)
# overlaps the tests that do not need it.
_LS = {}


def pytest_sessionstart(session):
    import lstudio
    base = pathlib.Path(os.environ.get("ECSNET_IT_TMP", "/tmp")) / f"ecsnet-it-ls-{os.getpid()}"
    _LS["ls"] = lstudio.LabelStudio(base)


def pytest_sessionfinish(session, exitstatus):
    ls = _LS.pop("ls", None)
    if ls:
        ls.stop()
        import shutil
        shutil.rmtree(ls.base_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def label_studio():
    ls = _LS["ls"]
    secs = ls.wait_ready()
    print(f"label-studio ready after {secs:.0f} s")
    return ls
