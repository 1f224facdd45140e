"""The web page in a real browser: Debian's chromium driven by Playwright against a live
ecsnet-server (the shipped model, a synthetic dataset, an admin token).

What a user does, checked on what the page shows: an image uploaded, labels chosen by
type-ahead, overlays of the image's size, the sliders changing the rendered mask pixels (on
screenshots), every download equal to the bytes POST /cam answers (and the COCO RLE to the
mask), the curl command giving the same answer, error messages (a bad file, an unknown label,
a full queue with its retry), a training job started from the admin view and followed to its
end, cancel, resume, activate and delete; the same flow by keyboard alone at a 375-px
viewport in the dark scheme. Every test fails on a console error, a page error, a failed
request or an HTTP error status the test did not expect.

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
from playwright.sync_api import expect, sync_playwright

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("ECSNET_BUILD_DIR", REPO / "build")).resolve()
CHROMIUM = os.environ.get("ECSNET_CHROMIUM", "/usr/bin/chromium")
TOKEN = "ui-test-token-0123456789"
OUTPUTS = "cam,erased_cam,mask,cam_mask,ecs_mask,scores,erased_image,erase_region"
SHOTS = os.environ.get("ECSNET_UI_SCREENSHOTS")
# The shared 2-core machine can be slow to answer: assertions wait up to 20 s for the page
expect.set_options(timeout=20_000)


def binary(name):
    p = BUILD / "bin" / name
    assert p.exists(), f"{p} is missing: build first"
    return p


class Server:
    """ecsnet-server on a free port, its output collected (to check that no token is logged)."""

    def __init__(self, data_dir, *args):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ECSNET_")}
        env["ECSNET_ADMIN_TOKEN"] = TOKEN
        cmd = [str(binary("ecsnet-server")), "--listen", "127.0.0.1:0", "--data-dir",
               str(data_dir), "--device", "cpu", "--threads", "2",
               "--shipped-model", str(REPO / "models" / "ecsnet-synth-small.safetensors"), *args]
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
    r = requests.post(server.url + "/cam", files={"image": (photo.name, photo.read_bytes(),
                                                            "image/jpeg")}, data=fields)
    assert r.status_code == 200, r.text
    return r.json()


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


def downloads(pg):
    got = {}
    for link in pg.locator("#downloads a").all():
        with pg.expect_download() as d:
            link.click()
        dl = d.value
        got[dl.suggested_filename] = pathlib.Path(dl.path()).read_bytes()
    return got


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

    # the downloads are the bytes POST /cam answers for the same request
    srv = cam(server, photo, labels="bird,fish", outputs=OUTPUTS)
    got = downloads(pg)
    want = {f"cam_{c['name']}.png": c["png"] for c in srv["cams"]}
    want.update({f"erased_cam_{c['name']}.png": c["png"] for c in srv["erased_cams"]})
    want.update({f"{k}.png": srv[k] for k in ("mask", "cam_mask", "ecs_mask", "erase_region",
                                              "erased_image")})
    assert set(got) == set(want) | {"mask.coco.json"}, sorted(got)
    for name, b64 in want.items():
        assert got[name] == base64.b64decode(b64), name
    mask = np.asarray(Image.open(io.BytesIO(got["mask.png"])))
    coco = json.loads(got["mask.coco.json"])
    assert coco["image"] == {"width": 128, "height": 128}
    assert {a["category_name"] for a in coco["annotations"]} <= {"bird", "fish"}
    assert coco["annotations"]
    for a in coco["annotations"]:
        assert a["segmentation"]["size"] == [128, 128]
        bits = rle_decode(a["segmentation"]["counts"], 128, 128)
        assert np.array_equal(bits, (mask == a["category_id"]).astype(np.uint8)), a["category_name"]
        assert a["area"] == int(bits.sum())

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

    # the refinement switch: the main mask is the CAM mask without it
    pg.locator("#refine").uncheck()
    expect(pg.locator("#fig-mask figcaption")).to_contain_text("without refinement")
    assert np.array_equal(canvas_pixels(pg, "fig-mask"), canvas_pixels(pg, "fig-cam-mask"))


def test_type_ahead_stays_fast_on_thousands_of_names(page, server):
    """The page's own matcher on 20,000 names (an ImageNet model with its groups has ~1,100):
    prefix matches first, then substring ones, 50 at most, and each keystroke well under a
    frame."""
    pg = page
    pg.goto(server.url + "/")
    r = pg.evaluate("""() => {
        const names = [];
        const kinds = ['tabby cat', 'dog', 'bird'];
        for (let i = 0; i < 20000; i++) names.push(`class ${i} ` + kinds[i % 3]);
        names.push('Cat');
        const lower = names.map(n => n.toLowerCase());
        const first = ecs.matchNames(lower, 'ca', new Set(), 50).map(i => names[i]);
        const none = ecs.matchNames(lower, 'zebra', new Set(), 50).length;
        const skip = ecs.matchNames(lower, 'cat', new Set([20000]), 50).map(i => names[i]);
        const qs = ['c', 'cl', 'cla', 'class 1', 'class 19', 'tab', 'dog', 'bird', 'x', ''];
        const t0 = performance.now();
        for (let k = 0; k < 20; k++) for (const q of qs) ecs.matchNames(lower, q, new Set(), 50);
        return {first, none, skip, ms: (performance.now() - t0) / (20 * qs.length)};
    }""")
    assert r["first"][0] == "Cat" and len(r["first"]) == 50  # the prefix match leads
    assert all("ca" in n.lower() for n in r["first"])
    assert r["none"] == 0
    assert "Cat" not in r["skip"] and len(r["skip"]) == 50
    assert r["ms"] < 16, f"{r['ms']:.2f} ms per keystroke"  # a frame at 60 Hz


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
