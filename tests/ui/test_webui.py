"""The web page in a real browser: Debian's chromium driven by Playwright against live
ecsnet-servers (the synthetic model with a synthetic dataset and an admin token; the ImageNet
model ecsnet-imagenet-lite0 on a real photo).

What a user does, checked on what the page shows: an image uploaded, labels chosen by
type-ahead (among 1,020 names by prefix, synonym and group with the ImageNet model), overlays
of the image's size, the masks drawn in their ids' colours whether the server sent an 8-bit
palette or a 16-bit mask (ids above 254), the sliders changing the rendered mask pixels (on
screenshots), the refinement switch sending refine, every download equal to the bytes POST
/cam answers (the COCO RLE being the server's coco output), the curl command giving the same
answer, error messages (a bad file, an unknown label, a full queue with its retry), a training
job started from the admin view and followed to its end, cancel, resume, activate and delete;
the same flow by keyboard alone at a 375-px viewport in the dark scheme. Every test fails on a
console error, a page error, a failed request or an HTTP error status the test did not
expect.

Run by tests/ui/run.sh (which installs chromium and playwright); ECSNET_UI_SCREENSHOTS=DIR
also writes the README's screenshots there.
"""
import base64
import concurrent.futures
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect, sync_playwright

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("ECSNET_BUILD_DIR", REPO / "build")).resolve()
CHROMIUM = os.environ.get("ECSNET_CHROMIUM", "/usr/bin/chromium")
TOKEN = "ui-test-token-0123456789"
OUTPUTS = "cam,erased_cam,mask,cam_mask,ecs_mask,scores,erased_image,erase_region,coco"
LITE0 = REPO / "models" / "ecsnet-imagenet-lite0.safetensors"
PHOTOS = pathlib.Path(os.environ.get("ECSNET_PHOTOS",
                                     REPO / ".venv" / "share" / "ecsnet" / "photos"))
SHOTS = os.environ.get("ECSNET_UI_SCREENSHOTS")
# The shared 2-core machine can be slow to answer: assertions wait up to 20 s for the page
expect.set_options(timeout=20_000)


def binary(name):
    p = BUILD / "bin" / name
    assert p.exists(), f"{p} is missing: build first"
    return p


class Server:
    """ecsnet-server on a free port, its output collected (to check that no token is logged)."""

    def __init__(self, data_dir, *args, model=REPO / "models" / "ecsnet-synth-small.safetensors"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ECSNET_")}
        env["ECSNET_ADMIN_TOKEN"] = TOKEN
        cmd = [str(binary("ecsnet-server")), "--listen", "127.0.0.1:0", "--data-dir",
               str(data_dir), "--device", "cpu", "--threads", "2",
               "--shipped-model", str(model), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env, text=True)
        self.lines = []
        first = threading.Event()

        def read():
            for line in self.proc.stdout:
                self.lines.append(line)
                if "listening on" in line:
                    first.set()
            first.set()

        threading.Thread(target=read, daemon=True).start()
        assert first.wait(20), "the server did not start"
        m = re.search(r"port (\d+)", "".join(self.lines))
        assert m, "".join(self.lines)
        self.url = f"http://127.0.0.1:{m.group(1)}"
        for _ in range(100):
            if requests.get(self.url + "/health/ready", timeout=5).status_code == 200:
                break
            time.sleep(0.1)

    def stop(self):
        self.proc.terminate()
        try:
            return self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def data_dir(path):
    """A data directory with one small synthetic dataset, datasets/syn."""
    subprocess.run([str(binary("ecsnet")), "synth", "--out", str(path / "datasets" / "syn"),
                    "--count", "24", "--seed", "5", "--size", "64", "--classes", "3"],
                   check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("ui")
    subprocess.run([str(binary("ecsnet")), "synth", "--out", str(d / "demo"), "--count", "8",
                    "--seed", "3"], check=True, capture_output=True)
    data_dir(d / "data")
    return d


@pytest.fixture(scope="module")
def server(work):
    s = Server(work / "data", "--workers", "1")
    yield s
    assert s.stop() == 0
    log = "".join(s.lines)
    assert TOKEN not in log, "the admin token was logged"


@pytest.fixture(scope="module")
def photo(work):
    return work / "demo" / "JPEGImages" / "000004.jpg"  # a bird and a fish


@pytest.fixture(scope="module")
def browser():
    if not pathlib.Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (tests/ui/run.sh does)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Watch:
    """Everything that went wrong in a page: console errors, page errors, failed requests, and
    HTTP statuses >= 400 other than those the test expects (and the console line Chromium
    prints for each of those)."""

    def __init__(self, page, origin):
        self.problems, self.expected, self.urls = [], set(), []
        self.origin = origin
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(
            f"request failed: {r.method} {r.url} {r.failure}"))
        page.on("response", self._response)
        page.on("request", lambda r: self.urls.append((r.url, r.headers.get("authorization"))))

    def _console(self, m):
        if m.type not in ("error", "warning"):
            return
        st = re.search(r"status of (\d+)", m.text)
        if st and int(st.group(1)) in self.expected:
            return
        self.problems.append(f"console {m.type}: {m.text}")

    def _response(self, r):
        if r.status >= 400 and r.status not in self.expected:
            self.problems.append(f"HTTP {r.status}: {r.request.method} {r.url}")

    def check(self):
        assert not self.problems, "\n".join(self.problems)
        for url, auth in self.urls:
            # nothing leaves the origin, and no token is ever in a URL
            assert url.startswith(self.origin + "/") or url.startswith(("blob:", "data:")), url
            assert TOKEN not in url, url


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = ctx.new_page()
    pg.watch = Watch(pg, server.url)
    yield pg
    pg.watch.check()
    ctx.close()


def cam(server, photo, **fields):
    kind = "image/png" if photo.suffix == ".png" else "image/jpeg"
    r = requests.post(server.url + "/cam", files={"image": (photo.name, photo.read_bytes(), kind)},
                      data=fields)
    assert r.status_code == 200, r.text
    return r.json()


def voc_colour(i):
    """The VOC colour map's colour of id i (its bits spread over R, G and B), for any id."""
    r = g = b = 0
    for j in range(8):
        r |= ((i >> 0) & 1) << (7 - j)
        g |= ((i >> 1) & 1) << (7 - j)
        b |= ((i >> 2) & 1) << (7 - j)
        i >>= 3
    return r, g, b


def mask_ids(png_b64, bits):
    """A mask PNG of the server as its ids, checked to be encoded as mask_bits says."""
    img = Image.open(io.BytesIO(base64.b64decode(png_b64)))
    if bits == 16:
        assert img.mode in ("I;16", "I;16B", "I"), img.mode  # 16-bit grey
    else:
        assert img.mode == "P", img.mode  # the VOC palette
    return np.asarray(img).astype(np.int64)


def assert_mask_drawn(pg, fig_id, ids, ignore):
    """At 100 % opacity a mask's picture is the image where the id is 0, white where it is
    ignore, else the id's VOC colour."""
    drawn, image = canvas_pixels(pg, fig_id), canvas_pixels(pg, "fig-image")
    assert drawn.shape[:2] == ids.shape
    want = image.copy()
    for i in np.unique(ids):
        if i != 0:
            want[ids == i] = (255, 255, 255) if i == ignore else voc_colour(int(i))
    bad = np.argwhere((drawn != want).any(axis=2))
    assert not len(bad), f"{fig_id}: {len(bad)} pixels wrong, e.g. {bad[0]} id {ids[tuple(bad[0])]}"




def choose_labels(pg, *prefixes):
    for pre, name in prefixes:
        box = pg.locator("#label-input")
        box.click()
        box.press_sequentially(pre)
        expect(pg.locator("#label-list")).to_be_visible()
        expect(pg.locator("#label-list li").first).to_have_text(name)
        box.press("Enter")
    expect(pg.locator("#chips li span")).to_have_text([n for _, n in prefixes])


def canvas_pixels(pg, fig_id):
    data = pg.evaluate("""(id) => {
        const c = document.querySelector('#' + id + ' canvas');
        return [c.width, c.height, c.toDataURL('image/png')];
    }""", fig_id)
    w, h, url = data
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    assert img.size == (w, h)
    return np.asarray(img).astype(int)


def shot(locator):
    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB")).astype(int)


def downloads(pg, attempts=3):
    """Clicks every download link and returns {file name: bytes}. Headless Chromium can start
    no download for a click that reached the <a download> as a trusted event (the third link
    of the ImageNet test's second round, every run here; a second click downloads it), so a
    link whose download has not begun within 5 s is clicked again, up to `attempts` times."""
    got = {}
    for link in pg.locator("#downloads a").all():
        name = link.get_attribute("download")
        for attempt in range(1, attempts + 1):
            try:
                with pg.expect_download(timeout=5000) as d:
                    link.click()
                break
            except PlaywrightTimeoutError:
                if attempt == attempts:
                    raise AssertionError(f"{name}: no download after {attempts} clicks")
                print(f"downloads: {name}: no download began; clicking again")
        dl = d.value
        assert dl.suggested_filename == name
        got[name] = pathlib.Path(dl.path()).read_bytes()
    return got


def cam_request_fields(req):
    """The form fields of a POST /cam the page sent (multipart), the image left out."""
    body = req.post_data_buffer
    ctype = req.headers["content-type"]
    boundary = re.search(r"boundary=(.+)", ctype).group(1).encode()
    out = {}
    for part in body.split(b"--" + boundary)[1:-1]:
        head, _, value = part.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]+)"', head).group(1).decode()
        if name != "image":
            out[name] = value[:-2].decode()  # the part ends with CRLF
    return out


def rle_decode(counts, h, w):
    """COCO's compressed RLE string back to a column-major binary mask."""
    vals, i = [], 0
    while i < len(counts):
        x, k, more = 0, 0, True
        while more:
            c = ord(counts[i]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(vals) > 2:
            x += vals[-2]
        vals.append(x)
    flat = np.zeros(h * w, np.uint8)
    pos, v = 0, 0
    for n in vals:
        flat[pos:pos + n] = v
        pos += n
        v ^= 1
    assert pos == h * w
    return flat.reshape(w, h).T


def test_upload_labels_overlays_sliders_downloads_and_curl(page, server, photo, tmp_path):
    pg = page
    pg.goto(server.url + "/")
    expect(pg.locator("#model-line")).to_contain_text("ecsnet-synth-small")
    assert contrast(pg) >= 7  # the light scheme (the dark one: the keyboard test)
    # the synthetic model does not refine by default: the switch starts off
    expect(pg.locator("#refine-default")).to_have_text("the model's default: off")
    assert not pg.locator("#refine").is_checked()
    pg.set_input_files("#file", str(photo))
    choose_labels(pg, ("bi", "bird"), ("fi", "fish"))
    pg.click("#run")
    expect(pg.locator("#status")).to_contain_text("done in", timeout=30000)

    # every picture has the image's size; one CAM and one erased CAM per label
    sizes = pg.evaluate("""() => [...document.querySelectorAll('#figures canvas')]
        .map(c => [c.closest('figure').id, c.width, c.height])""")
    ids = [s[0] for s in sizes]
    assert ids == ["fig-image", "fig-cam-3", "fig-cam-4", "fig-region", "fig-erased",
                   "fig-erased-cam-3", "fig-erased-cam-4", "fig-mask", "fig-cam-mask",
                   "fig-ecs-mask"], ids
    assert all((w, h) == (128, 128) for _, w, h in sizes), sizes
    expect(pg.locator("#scores li")).to_have_count(6)
    expect(pg.locator("#scores li.used")).to_have_count(2)
    if SHOTS:
        pg.screenshot(path=os.path.join(SHOTS, "ui-masks.png"), full_page=True)

    # the opacity slider changes the mask's pixels on screen; at 0 the mask is the image
    mask_fig = pg.locator("#fig-mask canvas")
    before = shot(mask_fig)
    pg.locator("#opacity").focus()
    pg.keyboard.press("Home")
    expect(pg.locator("#opacity-out")).to_have_text("0%")
    after = shot(mask_fig)
    assert np.abs(before - after).max() > 40
    assert np.array_equal(canvas_pixels(pg, "fig-mask"), canvas_pixels(pg, "fig-image"))
    pg.keyboard.press("End")
    expect(pg.locator("#opacity-out")).to_have_text("100%")

    # the downloads are the bytes POST /cam answers for the same request (the page says
    # refine=false, the model's default, so that curl asks the same whatever the model)
    srv = cam(server, photo, labels="bird,fish", outputs=OUTPUTS, refine="false")
    assert srv["mask_bits"] == 8  # ids 0..6: the VOC palette PNG
    expect(pg.locator("#legend-bits")).to_contain_text("8-bit VOC palette")
    expect(pg.locator("#legend li")).to_have_text(
        [f"{m['id']} {m['name']}" for m in srv["mask_ids"]])
    # the masks drawn in their ids' colours
    for fig, key in (("fig-mask", "mask"), ("fig-cam-mask", "cam_mask"),
                     ("fig-ecs-mask", "ecs_mask")):
        assert_mask_drawn(pg, fig, mask_ids(srv[key], 8), 255)
    assert_downloads_are_the_answer(pg, srv, 128, 128)

    # the curl command asks the same thing
    cmd = pg.locator("#curl").input_value()
    assert cmd.startswith("curl ") and server.url + "/cam" in cmd
    shutil.copy(photo, tmp_path / photo.name)
    out = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert json.loads(out)["mask"] == srv["mask"]

    # the background threshold: the preview follows the slider at once (at 1 nothing beats
    # the background, so the CAM mask shows the bare image), then the server's answer for
    # alpha_bg=1 replaces it, and the downloads follow
    pg.locator("#alpha").focus()
    pg.keyboard.press("End")
    expect(pg.locator("#alpha-out")).to_have_text("1.00")
    expect(pg.locator("#curl")).to_have_value(re.compile("alpha_bg=1.00"), timeout=30000)
    expect(pg.locator("#status")).to_contain_text("done in", timeout=30000)
    assert np.array_equal(canvas_pixels(pg, "fig-cam-mask"), canvas_pixels(pg, "fig-image"))
    # what the page asked for is the server's all-background CAM mask
    out = subprocess.run(["bash", "-c", pg.locator("#curl").input_value()], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    png = base64.b64decode(json.loads(out)["cam_mask"])
    assert not np.asarray(Image.open(io.BytesIO(png))).any()
    # at 0 every pixel with a CAM above 0 is a label: the mask differs from the image
    pg.locator("#alpha").focus()
    pg.keyboard.press("Home")
    expect(pg.locator("#curl")).to_have_value(re.compile("alpha_bg=0.00"), timeout=30000)
    expect(pg.locator("#status")).to_contain_text("done in", timeout=30000)
    low = canvas_pixels(pg, "fig-cam-mask")
    assert not np.array_equal(low, canvas_pixels(pg, "fig-image"))


def assert_downloads_are_the_answer(pg, srv, w, h):
    """Every download is the bytes of the server's answer srv: CAMs, masks, pictures, and
    coco.json its coco output, whose RLE is in turn the mask's classes."""
    got = downloads(pg)
    want = {f"cam_{c['name']}.png": c["png"] for c in srv["cams"]}
    want.update({f"erased_cam_{c['name']}.png": c["png"] for c in srv["erased_cams"]})
    want.update({f"{k}.png": srv[k] for k in ("mask", "cam_mask", "ecs_mask", "erase_region",
                                              "erased_image")})
    assert set(got) == set(want) | {"coco.json"}, sorted(got)
    for name, b64 in want.items():
        assert got[name] == base64.b64decode(b64), name
    assert json.loads(got["coco.json"]) == srv["coco"]
    mask = mask_ids(srv["mask"], srv["mask_bits"])
    assert srv["coco"] and [c["id"] for c in srv["coco"]] == sorted(
        set(np.unique(mask).tolist()) - {0, 255, 65535})
    for c in srv["coco"]:
        assert c["segmentation"]["size"] == [h, w]
        bits = rle_decode(c["segmentation"]["counts"], h, w)
        assert np.array_equal(bits, (mask == c["id"]).astype(np.uint8)), c["name"]
        assert c["area"] == int(bits.sum())
    return got


def test_type_ahead_stays_fast_on_thousands_of_names(page, server):
    """The page's own matcher on 20,000 labels with two synonyms each (the ImageNet model has
    1,020 labels): the ranks (equal, name prefix, synonym prefix, word start, anywhere), 50 at
    most, each keystroke well under a frame."""
    pg = page
    pg.goto(server.url + "/")
    r = pg.evaluate("""() => {
        const names = [];
        const kinds = ['tabby cat', 'dog', 'bird'];
        for (let i = 0; i < 20000; i++)
          names.push([`class ${i} ` + kinds[i % 3], `syn ${i}`, `Other_Name ${i}`]);
        names.push(['Cat']);
        names.push(['catamount', 'x']);
        names.push(['wild thing', 'Cat_Like']);
        const entries = names.map(ns => ns.map(ecs.fold));
        const pick = (q, ex) => ecs.matchNames(entries, q, ex || new Set(), 50)
          .map(m => names[m.i][m.via]);
        const qs = ['c', 'cl', 'cla', 'class 1', 'class 19', 'tab', 'dog', 'bird', 'x', '',
                    'syn 1', 'other name'];
        const t0 = performance.now();
        for (let k = 0; k < 20; k++) for (const q of qs) ecs.matchNames(entries, q, new Set(), 50);
        return {cat: pick('CAT'), none: pick('zebra').length, skip: pick('cat', new Set([20000])),
                syn: pick('syn 12'), fold: pick('other name 7'),
                ms: (performance.now() - t0) / (20 * qs.length)};
    }""")
    # equal first, then the name prefix, the synonym prefix, then word starts
    assert r["cat"][:3] == ["Cat", "catamount", "Cat_Like"], r["cat"][:5]
    assert len(r["cat"]) == 50 and r["cat"][3] == "class 0 tabby cat"
    assert r["none"] == 0
    assert "Cat" not in r["skip"] and r["skip"][0] == "catamount"
    assert r["syn"][0] == "syn 12" and all(n.startswith("syn 12") for n in r["syn"])
    assert r["fold"][0] == "Other_Name 7"  # '_' and space alike, any case
    assert r["ms"] < 16, f"{r['ms']:.2f} ms per keystroke"  # a frame at 60 Hz


def png_bytes(samples, bits, palette, filters):
    """A PNG written by hand: grey (8 or 16 bits) or palette samples, each row with the given
    filter (0 none, 1 sub, 2 up, 3 average, 4 Paeth), so the page's reader meets every one."""
    import struct
    import zlib
    h, w = samples.shape
    bpp = bits // 8
    rows = samples.astype(">u2").view(np.uint8).reshape(h, w * 2) if bits == 16 else \
        samples.astype(np.uint8)
    raw, prev = bytearray(), np.zeros(w * bpp, np.int64)
    for y in range(h):
        cur, f = rows[y].astype(np.int64), filters[y % len(filters)]
        out = np.zeros_like(cur)
        for i in range(len(cur)):
            a = cur[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = [0, a, b, (a + b) // 2,
                    a if pa <= pb and pa <= pc else b if pb <= pc else c][f]
            out[i] = (cur[i] - pred) & 255
        raw += bytes([f]) + bytes(out.astype(np.uint8))
        prev = cur

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bits,
                                                                3 if palette else 0, 0, 0, 0))
    if palette:
        png += chunk(b"PLTE", bytes(range(256)) * 3)
    z = zlib.compress(bytes(raw))
    return png + chunk(b"IDAT", z[:len(z) // 2]) + chunk(b"IDAT", z[len(z) // 2:]) + \
        chunk(b"IEND", b"")


def test_the_png_reader_reads_every_filter_and_encoding(page, server):
    """The page's own PNG reader (ecs.pngSamples, ecs.maskPlane) on 16-bit grey, 8-bit grey and
    8-bit palette PNGs using every row filter and two IDAT chunks: the exact samples, ignore
    as 65535 either way, and a clear error for an encoding the answer did not announce."""
    pg = page
    pg.goto(server.url + "/")
    rng = np.random.default_rng(7)
    cases = []
    for bits, palette in ((16, False), (8, False), (8, True)):
        top = 65535 if bits == 16 else 255
        s = rng.integers(0, top + 1, (9, 13))
        s[0, 0], s[1, 1] = top, 0
        cases.append((s, png_bytes(s, bits, palette, [0, 1, 2, 3, 4]), bits, palette))
    for s, png, bits, palette in cases:
        got = pg.evaluate("""async ([b64, bits, palette]) => {
            const bytes = ecs.b64ToBytes(b64);
            const m = await ecs.pngSamples(bytes);
            let mask = null, err = null;
            try { mask = Array.from((await ecs.maskPlane(bytes, bits)).samples); }
            catch (e) { err = e.message; }
            return {w: m.width, h: m.height, bits: m.bits, palette: m.palette,
                    samples: Array.from(m.samples), mask, err};
        }""", [base64.b64encode(png).decode(), bits, palette])
        assert (got["w"], got["h"], got["bits"], got["palette"]) == (13, 9, bits, palette)
        assert got["samples"] == s.reshape(-1).tolist()
        if bits == 16 or palette:  # the two encodings of a mask
            want = s.copy()
            want[want == (65535 if bits == 16 else 255)] = 65535
            assert got["err"] is None and got["mask"] == want.reshape(-1).tolist()
        else:  # an 8-bit grey PNG is no mask encoding
            assert "8-bit palette" in got["err"], got["err"]
    # a 16-bit mask where mask_bits says 8, and the reverse
    err = pg.evaluate("""async ([a, b]) => {
        const out = [];
        for (const [b64, bits] of [[a, 8], [b, 16]])
          try { await ecs.maskPlane(ecs.b64ToBytes(b64), bits); out.push(null); }
          catch (e) { out.push(e.message); }
        return out;
    }""", [base64.b64encode(cases[0][1]).decode(), base64.b64encode(cases[2][1]).decode()])
    assert "8-bit palette" in err[0] and "16-bit grey" in err[1], err


def missing(what):
    """Without the ImageNet model or the photos (an install that could not reach a package
    registry) the test skips saying so; CI requires them."""
    if os.environ.get("CI") or os.environ.get("ECSNET_CI"):
        pytest.fail(f"{what}: CI requires it")
    pytest.skip(what)


@pytest.fixture(scope="module")
def lite0(work):
    """ecsnet-server serving ecsnet-imagenet-lite0 (1,000 classes, 20 groups, refine on)."""
    if not LITE0.exists():
        missing(f"{LITE0} is missing (make build makes it)")
    s = Server(work / "data-lite0", "--workers", "1", model=LITE0)
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def chelsea(work):
    """skimage's chelsea.png (a tabby cat) at 225 px on its short side, as the server's own
    tests of the model use it: 338x225."""
    src = PHOTOS / "chelsea.png"
    if not src.exists():
        subprocess.run(["bash", str(REPO / "tests" / "photos" / "fetch.sh")], capture_output=True)
    if not src.exists():
        missing(f"{src} is missing (tests/photos/fetch.sh fetches it)")
    img = Image.open(src).convert("RGB")
    k = 225 / min(img.size)
    out = work / "chelsea.png"
    img.resize((round(img.width * k), round(img.height * k)), Image.BILINEAR).save(out)
    return out


def options(pg, query):
    box = pg.locator("#label-input")
    box.fill(query)
    expect(pg.locator("#label-list")).to_be_visible()
    return pg.locator("#label-list li")


def test_imagenet_model_groups_synonyms_16bit_masks_and_refine(browser, lite0, chelsea,
                                                               tmp_path):
    """The real 1,000-class model on a real photo: the type-ahead finds a group, a class by a
    synonym and by a prefix among 1,020 labels, fast; the group "cat" (id 1008) makes 16-bit
    masks, drawn in their ids' colours; the refinement switch asks again with refine, and the
    downloads are the server's answer each time."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = ctx.new_page()
    pg.watch = Watch(pg, lite0.url)
    sent = []  # the fields of every POST /cam the page sends (a route sees the whole body)

    def record(route):
        if route.request.method == "POST":
            sent.append(cam_request_fields(route.request))
        route.continue_()

    pg.route("**/cam", record)
    try:
        pg.goto(lite0.url + "/")
        expect(pg.locator("#model-line")).to_contain_text(
            re.compile(r"ecsnet-imagenet-lite0 v1 .* 1000 classes and 20 groups"))
        # the model refines by default: the switch starts on
        expect(pg.locator("#refine-default")).to_have_text("the model's default: on")
        assert pg.locator("#refine").is_checked()

        # a group by its name, a class by a synonym, a class by a prefix
        pg.locator("#label-input").click()
        opts = options(pg, "cat")
        expect(opts.first).to_have_text("cat · group of 5")
        expect(opts.nth(1)).to_contain_text("cat")
        opts = options(pg, "tabby c")  # "tabby, tabby cat": the synonym matches
        expect(opts.first).to_have_text("tabby · tabby cat")
        opts = options(pg, "mountain li")  # cougar's synonym "mountain lion"
        expect(opts.first).to_have_text("cougar · mountain lion")
        opts = options(pg, "Egyptian_C")  # '_' and space alike, any case
        expect(opts.first).to_have_text("Egyptian cat")
        opts = options(pg, "tab")
        expect(opts.first).to_have_text("tabby")
        # each keystroke, matching and drawing the list, well under a frame on 1,020 labels
        ms = pg.evaluate("""() => {
            const box = document.getElementById('label-input');
            const qs = ['c', 'ca', 'cat', 't', 'ta', 'tab', 'tabb', 'd', 'do', 'dog', 'golden r',
                        'e', 'ele', 'x', 'mountain', ''];
            const t0 = performance.now();
            for (let k = 0; k < 5; k++)
              for (const q of qs) { box.value = q; box.dispatchEvent(new Event('input')); }
            return (performance.now() - t0) / (5 * qs.length);
        }""")
        print(f"type-ahead on 1,020 labels: {ms:.2f} ms a keystroke")
        assert ms < 16, f"{ms:.2f} ms a keystroke"
        pg.locator("#label-input").fill("")
        pg.locator("#label-input").press_sequentially("cat")
        expect(pg.locator("#label-list li").first).to_have_text("cat · group of 5")
        pg.locator("#label-input").press("Enter")
        expect(pg.locator("#chips li span")).to_have_text(["cat"])

        pg.set_input_files("#file", str(chelsea))
        pg.click("#run")
        expect(pg.locator("#status")).to_contain_text("done in", timeout=30000)
        assert sent == [{"labels": "cat", "outputs": OUTPUTS, "refine": "true"}], sent
        sizes = pg.evaluate("""() => [...document.querySelectorAll('#figures canvas')]
            .map(c => [c.closest('figure').id, c.width, c.height])""")
        assert [s[0] for s in sizes] == ["fig-image", "fig-cam-1008", "fig-region", "fig-erased",
                                         "fig-erased-cam-1008", "fig-mask", "fig-cam-mask",
                                         "fig-ecs-mask"], sizes
        assert all((w, h) == (338, 225) for _, w, h in sizes), sizes
        expect(pg.locator("#fig-mask figcaption")).to_have_text("combined mask, refined")
        expect(pg.locator("#scores li.used")).to_contain_text(["cat"])

        srv = cam(lite0, chelsea, **sent[0])
        assert srv["mask_bits"] == 16  # id 1008: a 16-bit grey PNG, 65535 = ignore
        expect(pg.locator("#legend-bits")).to_contain_text("16-bit grey")
        expect(pg.locator("#legend li")).to_have_text(
            [f"{m['id']} {m['name']}" for m in srv["mask_ids"]])
        assert [m["id"] for m in srv["mask_ids"]] == [0, 1008, 65535]
        pg.locator("#opacity").focus()
        pg.keyboard.press("End")
        expect(pg.locator("#opacity-out")).to_have_text("100%")
        drawn = {}
        for fig, key in (("fig-mask", "mask"), ("fig-cam-mask", "cam_mask"),
                         ("fig-ecs-mask", "ecs_mask")):
            ids = mask_ids(srv[key], 16)
            assert_mask_drawn(pg, fig, ids, 65535)
            drawn[key] = ids
        assert (drawn["mask"] == 1008).sum() > 1000  # the cat covers much of the photo
        assert (drawn["ecs_mask"] == 65535).any()
        on = assert_downloads_are_the_answer(pg, srv, 338, 225)
        urls = pg.eval_on_selector_all("#downloads a", "as => as.map(a => a.href)")
        pg.evaluate("""() => {
            window.revoked = [];
            const revoke = URL.revokeObjectURL;
            URL.revokeObjectURL = (u) => { window.revoked.push(u); revoke.call(URL, u); };
        }""")
        if SHOTS:
            pg.screenshot(path=os.path.join(SHOTS, "ui-imagenet.png"), full_page=True)

        # the refinement switch: a new request with refine=false, its answer shown and
        # downloaded, and the curl command says so too
        pg.locator("#refine").uncheck()
        expect(pg.locator("#fig-mask figcaption")).to_have_text("combined mask", timeout=30000)
        expect(pg.locator("#status")).to_contain_text("done in", timeout=30000)
        assert len(sent) == 2 and sent[1] == dict(sent[0], refine="false"), sent
        off_fields = sent[1]
        expect(pg.locator("#curl")).to_have_value(re.compile("-F 'refine=false'"))
        srv_off = cam(lite0, chelsea, **off_fields)
        off = assert_downloads_are_the_answer(pg, srv_off, 338, 225)
        # the first answer's Blob URLs were released with their links
        assert sorted(pg.evaluate("window.revoked")) == sorted(urls)
        assert off["mask.png"] != on["mask.png"]  # refinement moved the mask's edges
        assert_mask_drawn(pg, "fig-mask", mask_ids(srv_off["mask"], 16), 65535)
        shutil.copy(chelsea, tmp_path / chelsea.name)
        out = subprocess.run(["bash", "-c", pg.locator("#curl").input_value()], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60, check=True).stdout
        assert json.loads(out)["mask"] == srv_off["mask"]
        pg.watch.check()
    finally:
        ctx.close()


def test_errors_are_shown(page, server, photo, tmp_path):
    pg = page
    pg.watch.expected |= {400, 422}
    pg.goto(server.url + "/")
    bad = tmp_path / "notes.txt"
    bad.write_text("not a picture")
    pg.set_input_files("#file", str(bad))
    pg.click("#run")
    expect(pg.locator("#cam-error")).to_be_visible()
    expect(pg.locator("#cam-error-text")).to_contain_text("neither JPEG nor PNG")
    expect(pg.locator("#cam-error-text")).to_contain_text("400 invalid_image")

    pg.set_input_files("#file", str(photo))
    box = pg.locator("#label-input")
    box.click()
    box.press_sequentially("<b>zebra</b>, bird")
    expect(pg.locator("#label-list")).to_be_hidden()  # nothing matches
    box.press("Enter")
    expect(pg.locator("#chips li span")).to_have_text(["<b>zebra</b>", "bird"])
    pg.click("#run")
    expect(pg.locator("#cam-error-text")).to_contain_text("422")
    # the server's text is shown as text: no element was made from it
    assert pg.locator("#cam-error b").count() == 0
    assert pg.locator("#chips b").count() == 0


def test_full_queue_is_503_with_a_retry(browser, work, photo):
    """A real full queue: one worker, a queue of one, kept full by heavy requests."""
    s = Server(work / "data-busy", "--workers", "1", "--queue", "1")
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    pg.watch = Watch(pg, s.url)
    pg.watch.expected.add(503)
    big = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (640, 640, 3), np.uint8)).save(
        big, "JPEG")
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            requests.post(s.url + "/cam", files={"image": ("b.jpg", big.getvalue(), "image/jpeg")},
                          data={"labels": "cat", "outputs": "cam,mask", "scales": "0.5,1,1.5,2",
                                "flip": "true"}, timeout=120)

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    try:
        pg.goto(s.url + "/")
        expect(pg.locator("#model-line")).to_contain_text("ecsnet-synth-small")
        pg.set_input_files("#file", str(photo))
        futures = [pool.submit(hammer) for _ in range(4)]
        time.sleep(0.5)
        for _ in range(10):  # a request may slip in between two heavy ones: try again
            pg.click("#run")
            expect(pg.locator("#run")).to_be_enabled(timeout=60000)
            if pg.locator("#cam-error").is_visible():
                break
        expect(pg.locator("#cam-error-text")).to_contain_text("busy")
        expect(pg.locator("#cam-error-text")).to_contain_text("503 queue_full")
        expect(pg.locator("#cam-error-text")).to_contain_text(re.compile(r"Retry in \d+ s"))
        expect(pg.locator("#retry")).to_be_visible()
        stop.set()
        for f in futures:
            f.result(timeout=120)
        expect(pg.locator("#retry")).to_be_enabled(timeout=15000)
        pg.click("#retry")
        expect(pg.locator("#status")).to_contain_text("done in", timeout=30000)
        expect(pg.locator("#cam-error")).to_be_hidden()
        pg.watch.check()
    finally:
        stop.set()
        pool.shutdown(wait=True)
        ctx.close()
        s.stop()


def sign_in(pg):
    pg.locator("#token").fill(TOKEN)
    pg.locator("#token").press("Enter")
    expect(pg.locator("#admin-body")).to_be_visible()


def test_admin_trains_a_job_to_its_end(page, server):
    pg = page
    pg.goto(server.url + "/#admin")
    expect(pg.locator("#view-admin")).to_be_visible()
    sign_in(pg)
    # kept in session storage, never in the URL
    assert pg.evaluate("sessionStorage.getItem('ecsnet.admin.token')") == TOKEN
    assert TOKEN not in pg.url
    row = pg.locator("#datasets tbody tr", has_text="syn")
    expect(row).to_contain_text("valid")
    pg.select_option("#job-dataset", "syn")
    steps = 300 if SHOTS else 40  # a screenshot wants a longer loss curve
    pg.fill("#job-steps", str(steps))
    pg.fill("#job-name", "ui-syn")
    pg.click("#job-form button[type=submit]")
    job = pg.locator("#jobs li").first
    expect(job).to_contain_text("train on syn")
    seen_running = shot_taken = False
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status = job.get_attribute("data-status")
        if status == "running":
            seen_running = True
            value = pg.locator("#jobs li progress").first.get_attribute("value")
            if SHOTS and value and int(float(value)) >= steps // 2 and not shot_taken:
                pg.screenshot(path=os.path.join(SHOTS, "ui-admin.png"), full_page=True)
                shot_taken = True
        if status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.2)
    assert job.get_attribute("data-status") == "succeeded", job.inner_text()
    assert seen_running
    expect(job).to_contain_text(f"step {steps}/{steps}")
    expect(job).to_contain_text("result: ui-syn v1")
    bar = job.locator("progress")
    assert bar.get_attribute("value") == bar.get_attribute("max") == str(steps)
    # the loss plot has a line on it
    ink = pg.evaluate("""() => {
        const c = document.querySelector('#jobs li canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }""")
    assert ink > 200

    # activate the new version, then delete the shipped one (no longer served)
    pg.get_by_role("button", name="Activate ui-syn version 1").click()
    expect(pg.locator("#versions tbody tr", has_text="ui-syn")).to_contain_text("active, served")
    pg.get_by_role("button", name="Delete ecsnet-synth-small version 1").click()
    expect(pg.locator("#versions tbody tr", has_text="ecsnet-synth-small")).to_have_count(0)
    models = requests.get(server.url + "/v1/models").json()["models"]
    assert [m["name"] for m in models] == ["ui-syn"]
    # the Masks view now offers the activated model's labels, without a reload
    pg.click("#tab-masks")
    expect(pg.locator("#model-line")).to_contain_text("model ui-syn v1")
    pg.click("#tab-admin")
    expect(pg.locator("#view-admin")).to_be_visible()

    # an evaluation job of the served model, its figures shown
    pg.select_option("#job-kind", "eval")
    expect(pg.locator("#job-steps")).to_be_hidden()
    pg.click("#job-form button[type=submit]")
    ev = pg.locator("#jobs li", has_text="eval on syn").first
    expect(ev).to_have_attribute("data-status", "succeeded", timeout=60000)
    expect(ev.locator(".job-eval")).to_contain_text(
        re.compile(r"evaluation on val \(5 images\): mIoU \d"))
    pg.select_option("#job-kind", "train")

    # cancel and resume a longer job
    pg.fill("#job-steps", "100000")
    pg.click("#job-form button[type=submit]")
    long_job = pg.locator("#jobs li").first
    expect(long_job).to_have_attribute("data-status", "running", timeout=30000)
    jid = long_job.get_attribute("id").split("-")[1]
    pg.get_by_role("button", name=f"Cancel job {jid}").click()
    expect(long_job).to_have_attribute("data-status", "cancelled", timeout=30000)
    pg.get_by_role("button", name=f"Resume job {jid}").click()
    expect(long_job).to_have_attribute("data-status", re.compile("queued|running"))
    pg.get_by_role("button", name=f"Cancel job {jid}").click()
    expect(long_job).to_have_attribute("data-status", "cancelled", timeout=30000)
    # the token went only into the Authorization header of this origin's admin requests
    sent = [u for u, a in pg.watch.urls if a]
    assert sent and all(u.startswith(server.url + "/admin/") for u in sent), sent
    pg.click("#sign-out")
    assert pg.evaluate("sessionStorage.getItem('ecsnet.admin.token')") is None


def tab_until(pg, predicate, limit=200):
    """Presses Tab until the JavaScript predicate holds for the focused element."""
    for _ in range(limit):
        if pg.evaluate(f"Boolean(document.activeElement && ({predicate}))"):
            return
        pg.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached an element where {predicate}")


def tab_to(pg, element_id, limit=80):
    tab_until(pg, f"document.activeElement.id === '{element_id}'", limit)


def luminance(css):
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+", css)[:3])
    f = lambda c: c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4  # noqa: E731
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b)


def contrast(pg):
    """The WCAG contrast ratio of the body text on the page's background."""
    bg = pg.evaluate("getComputedStyle(document.body).backgroundColor")
    fg = pg.evaluate("getComputedStyle(document.body).color")
    lb, lf = sorted((luminance(bg), luminance(fg)))
    return (lf + 0.05) / (lb + 0.05)


def test_keyboard_only_narrow_dark(browser, work, photo):
    """Its own server: the admin test above changed the served model."""
    server = Server(data_dir(work / "data-kb"), "--workers", "1")
    ctx = browser.new_context(viewport={"width": 375, "height": 780}, color_scheme="dark",
                              accept_downloads=True)
    pg = ctx.new_page()
    pg.watch = Watch(pg, server.url)
    # Arm Playwright's file-chooser interception now, before any round trip to the browser: an
    # expect_file_chooser() alone arms it with a message nobody waits for, so a key press sent
    # right after can open the (headless, invisible) chooser before interception is on.
    pg.on("filechooser", lambda chooser: None)
    try:
        pg.goto(server.url + "/")
        expect(pg.locator("#model-line")).to_contain_text("classes")
        # readable in the dark scheme: a dark page, light text, contrast of at least 7:1
        bg = pg.evaluate("getComputedStyle(document.body).backgroundColor")
        assert luminance(bg) < 0.05, bg
        assert contrast(pg) >= 7

        tab_to(pg, "file")
        with pg.expect_file_chooser() as fc:
            pg.keyboard.press("Space")
        fc.value.set_files(str(photo))
        expect(pg.locator("#run")).to_be_enabled()
        tab_to(pg, "label-input")
        pg.keyboard.type("fi")
        pg.keyboard.press("Enter")
        pg.keyboard.type("b")
        pg.keyboard.press("ArrowDown")  # b... : bird is the first match, ArrowDown moves on
        pg.keyboard.press("ArrowUp")
        pg.keyboard.press("Enter")
        expect(pg.locator("#chips li span")).to_have_text(["fish", "bird"])
        tab_to(pg, "flip")
        pg.keyboard.press("Space")
        assert pg.locator("#flip").is_checked()
        tab_to(pg, "run")
        pg.keyboard.press("Enter")
        expect(pg.locator("#status")).to_contain_text("done in", timeout=30000)
        expect(pg.locator("#figures figure")).to_have_count(10)
        # nothing wider than the screen
        assert pg.evaluate("document.documentElement.scrollWidth") <= 375
        w = pg.evaluate("document.querySelector('#fig-mask canvas').getBoundingClientRect().width")
        assert 120 < w <= 375 / 2  # two pictures side by side
        # a download by keyboard
        tab_until(pg, "document.activeElement.textContent === 'mask.png'")
        with pg.expect_download() as d:
            pg.keyboard.press("Enter")
        assert d.value.suggested_filename == "mask.png"
        if SHOTS:
            pg.locator("#results").evaluate("e => e.scrollIntoView()")
            pg.screenshot(path=os.path.join(SHOTS, "ui-narrow-dark.png"), full_page=False)

        # the admin view by keyboard: the tab, the token, a job
        tab_to(pg, "tab-admin", limit=200)
        pg.keyboard.press("Enter")
        expect(pg.locator("#view-admin")).to_be_visible()
        tab_to(pg, "token")
        pg.keyboard.type(TOKEN)
        pg.keyboard.press("Enter")
        expect(pg.locator("#admin-body")).to_be_visible()
        expect(pg.locator("#job-dataset option")).not_to_have_count(0)
        tab_to(pg, "job-steps")
        pg.keyboard.press("Control+A")
        pg.keyboard.type("4")
        tab_to(pg, "job-name")
        pg.keyboard.type("kb-syn")
        pg.keyboard.press("Enter")
        job = pg.locator("#jobs li", has_text="train on syn").first
        expect(job).to_have_attribute("data-status", "succeeded", timeout=90000)
        expect(job).to_contain_text("result: kb-syn v1")
        assert pg.evaluate("document.documentElement.scrollWidth") <= 375
        pg.watch.check()
    finally:
        ctx.close()
        assert server.stop() == 0
