"""ecsnet as the ML backend of a real Label Studio 1.23.2, over loopback.

Label Studio runs from .venv-int with strict prediction validation on; ecsnet-server serves
/labelstudio with --ls-url pointing at it, Label Studio's legacy token and HTTP basic auth.
A project gets uploaded images (labels predicted by ecsnet's classifier) and JSON tasks with
data: URI images and data.labels; ecsnet is registered as its ML backend with basic auth and
Label Studio is asked for predictions. Every stored brush RLE, decoded by label-studio-sdk's
own converter, must equal ecsnet's /cam mask of that image and class."""
import base64
import socket
import threading
import time

import numpy as np
import pytest
import requests
from label_studio_sdk.converter.brush import decode_rle

from conftest import LS_PASSWORD as PASSWORD
from conftest import LS_USER as USER
from conftest import Server, cam, combined_mask

CLASSES = ["cat", "dog", "bird", "fish", "horse", "sheep"]
ADMIN = "labelstudio-loop-admin-token-0123"


def config(kind="BrushLabels", choices=False, labels=CLASSES):
    items = "".join(f'<Label value="{c}"/>' for c in labels)
    extra = ""
    if choices:
        extra = '<Choices name="tags" toName="image" choice="multiple">' + \
            "".join(f'<Choice value="{c}"/>' for c in CLASSES) + "</Choices>"
    return (f'<View><Image name="image" value="$image"/>{extra}'
            f'<{kind} name="tag" toName="image">{items}</{kind}></View>')


class Listener:
    """A TCP port that records every connection made to it (and answers none)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stopped = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
                self.connections += 1
                c.close()
            except OSError:
                pass

    def close(self):
        self.stopped = True
        self.t.join()
        self.sock.close()


@pytest.fixture(scope="module")
def foreign():
    lst = Listener()
    yield lst
    lst.close()


@pytest.fixture(scope="module")
def backend(label_studio, tmp_path_factory):
    """ecsnet-server set up as Label Studio's ML backend (basic auth on)."""
    s = Server("--ls-url", label_studio.url, "--train-threads", "1",
               env={"ECSNET_LS_TOKEN": label_studio.token, "ECSNET_LS_AUTH": f"{USER}:{PASSWORD}",
                    "ECSNET_ADMIN_TOKEN": ADMIN},
               data_dir=tmp_path_factory.mktemp("data"))
    yield s
    s.stop()


def data_uri(path):
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()


def new_project(ls, backend, label_config, title):
    pid = ls.api("POST", "/api/projects", json={"title": title,
                                                "label_config": label_config}).json()["id"]
    return pid


def register(ls, backend, pid):
    r = ls.api("POST", "/api/ml", json={
        "url": backend.url + "/labelstudio", "project": pid, "title": "ecsnet",
        "auth_method": "BASIC_AUTH", "basic_auth_user": USER, "basic_auth_pass": PASSWORD})
    j = r.json()
    assert j["state"] == "CO", j
    return j


def first_job_ended(server, timeout):
    """The server's newest admin job once it has ended (the loop's first job); fails with the
    server's last log lines if none ends within timeout seconds."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        jobs = requests.get(server.url + "/admin/jobs", headers=admin, timeout=5).json()["jobs"]
        if jobs and jobs[0]["status"] in ("succeeded", "failed", "cancelled", "interrupted"):
            return jobs[0]
        time.sleep(0.5)
    raise AssertionError("no job ended: " + "\n".join(server.lines[-20:]))


def retrieve(ls, pid):
    r = ls.api("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={pid}",
               json={"selectedItems": {"all": True, "excluded": []}})
    return r.json()


def tasks_of(ls, pid):
    return ls.api("GET", f"/api/tasks?project={pid}&page_size=100").json()["tasks"]


def predictions(ls, tid):
    return ls.api("GET", f"/api/predictions?task={tid}").json()


def local_image(ls, images, task):
    """The synth image file a task was made from (uploaded files keep the name's tail)."""
    ref = task["data"]["image"]
    for i, (path, labels) in images.items():
        if ref.endswith("-" + path.name) or ref == data_uri(path):
            return path, labels
    raise AssertionError(f"no image for {ref[:80]}")


def test_basic_auth_is_required(backend):
    assert requests.get(backend.url + "/labelstudio/health", timeout=5).status_code == 401
    r = requests.get(backend.url + "/labelstudio/health", auth=(USER, "wrong-password"),
                     timeout=5)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = requests.get(backend.url + "/labelstudio/health", auth=(USER, PASSWORD), timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "UP"


def test_webhook_without_the_loop_is_acknowledged_and_ignored(ecsnet):
    """The session's server has no Label Studio settings: events are answered, not acted on."""
    t0 = time.monotonic()
    r = requests.post(ecsnet.url + "/labelstudio/webhook", timeout=5, json={
        "action": "ANNOTATION_CREATED", "annotation": {"id": 1, "task": 1}, "project": {"id": 1}})
    assert time.monotonic() - t0 < 1
    assert r.status_code == 200 and r.json()["status"] == "ignored"
    assert "basic auth" in r.json()["reason"]
    r = requests.post(ecsnet.url + "/labelstudio/webhook", data=b"not json", timeout=5)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_brush_predictions_equal_ecsnets_masks(label_studio, backend, images, foreign, ecsnet):
    ls = label_studio
    pid = new_project(ls, backend, config(choices=True), "ecsnet brush")
    items = list(images.values())
    for path, _ in items[:3]:  # uploaded: /data/upload/..., labels predicted
        with open(path, "rb") as f:
            ls.api("POST", f"/api/projects/{pid}/import", files={"file": (path.name, f)})
    # JSON tasks: data: URI images with image-level labels, and one image on a foreign port.
    json_tasks = [{"data": {"image": data_uri(p), "labels": ",".join(labs)}}
                  for p, labs in items[3:6]]
    json_tasks.append({"data": {"image": f"http://127.0.0.1:{foreign.port}/data/upload/x.jpg"}})
    ls.api("POST", f"/api/projects/{pid}/import", json=json_tasks)
    ml = register(ls, backend, pid)
    version = requests.post(backend.url + "/labelstudio/setup", auth=(USER, PASSWORD),
                            json={}, timeout=5).json()["model_version"]
    assert ml["model_version"] == version == "ecsnet-synth-small@1"

    out = retrieve(ls, pid)
    tasks = tasks_of(ls, pid)
    assert len(tasks) == 7
    assert out["processed_items"] == 7
    checked = 0
    for t in tasks:
        preds = predictions(ls, t["id"])
        if "127.0.0.1:%d" % foreign.port in t["data"]["image"]:
            assert preds == []  # refused: no prediction, and no request made
            continue
        assert len(preds) == 1, preds
        p = preds[0]
        assert p["model_version"] == version
        path, labels = local_image(ls, images, t)
        given = "labels" in t["data"]
        j = cam(ecsnet, path, labels if given else [], outputs="mask")
        mask = combined_mask(j)
        regions = p["result"]
        present = sorted(int(k) for k in np.unique(mask) if 0 < k < 255)
        assert [CLASSES.index(r["value"]["brushlabels"][0]) + 1 for r in regions] == present
        assert regions, "no region"
        for r in regions:
            assert r["type"] == "brushlabels" and r["from_name"] == "tag"
            assert (r["original_width"], r["original_height"]) == (j["width"], j["height"])
            k = CLASSES.index(r["value"]["brushlabels"][0]) + 1
            got = np.reshape(decode_rle(r["value"]["rle"]), [j["height"], j["width"], 4])[:, :, 3]
            want = np.where(mask == k, 255, 0).astype(got.dtype)
            assert want.any()
            assert np.array_equal(got, want), (t["id"], k)
            checked += 1
    assert checked >= 6
    assert foreign.connections == 0

    # No duplicates: a second retrieval and the labeling stream keep one prediction per task.
    retrieve(ls, pid)
    ls.api("GET", f"/api/projects/{pid}/next")
    for t in tasks:
        n = len(predictions(ls, t["id"]))
        assert n == (0 if str(foreign.port) in t["data"]["image"] else 1), t["id"]


def test_polygons_are_accepted(label_studio, backend, images):
    ls = label_studio
    pid = new_project(ls, backend, config("PolygonLabels"), "ecsnet polygons")
    path, labels = next(iter(images.values()))
    ls.api("POST", f"/api/projects/{pid}/import",
           json=[{"data": {"image": data_uri(path), "labels": ",".join(labels)}}])
    register(ls, backend, pid)
    assert retrieve(ls, pid)["processed_items"] == 1
    (t,) = tasks_of(ls, pid)
    (p,) = predictions(ls, t["id"])
    assert p["result"]
    for r in p["result"]:
        assert r["type"] == "polygonlabels"
        assert r["value"]["polygonlabels"][0] in labels
        assert len(r["value"]["points"]) >= 3
        assert all(0 <= x <= 100 and 0 <= y <= 100 for x, y in r["value"]["points"])


def test_config_labels_the_model_lacks_and_classes_the_config_lacks(backend, images):
    """Only classes named in the config are emitted; config labels the model lacks are
    ignored; a foreign image is refused without a connection, with a reason."""
    path, labels = images["000004"]
    lst = Listener()
    body = {"tasks": [{"id": 1, "data": {"image": data_uri(path), "labels": ",".join(labels)}},
                      {"id": 2, "data": {"image": f"http://127.0.0.1:{lst.port}/data/a.png"}},
                      {"id": 3, "data": {"image": "file:///etc/passwd"}},
                      {"id": 4, "data": {"image": "/api/projects/"}}],
            "label_config": config(labels=[labels[0], "zebra"]), "project": "1.1"}
    r = requests.post(backend.url + "/labelstudio/predict", json=body, auth=(USER, PASSWORD),
                      timeout=60)
    lst.close()
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert len(res) == 4
    names = {x["value"]["brushlabels"][0] for x in res[0]["result"]}
    assert names == {labels[0]}
    for item in res[1:]:
        assert "result" not in item and item["error"]["code"] == "image_refused"
    assert lst.connections == 0
    # A config without an image or a mask control is a 422, not a crash.
    body["label_config"] = "<View><Text name='t' value='$text'/></View>"
    r = requests.post(backend.url + "/labelstudio/predict", json=body, auth=(USER, PASSWORD),
                      timeout=10)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_label_config"


def test_webhook_loop_fine_tunes_on_choices(label_studio, backend, images):
    """Image-level Choices annotated in Label Studio reach a dataset and start a fine-tuning
    job that runs to the end; its model is served next (Label Studio's model_version moves)."""
    ls = label_studio
    desc = "Tagged by hand.\necsnet-dataset: lsloop\necsnet-train-every: 2\necsnet-train-steps: 3"
    pid = ls.api("POST", "/api/projects", json={"title": "ecsnet loop", "description": desc,
                                                "label_config": config(choices=True)}).json()["id"]
    chosen = list(images.values())[:2]
    for path, _ in chosen:
        with open(path, "rb") as f:
            ls.api("POST", f"/api/projects/{pid}/import", files={"file": (path.name, f)})
    register(ls, backend, pid)
    t0 = time.monotonic()
    r = requests.post(backend.url + "/labelstudio/webhook", json={"action": "PROJECT_UPDATED"},
                      timeout=5)
    assert time.monotonic() - t0 < 1 and r.json()["status"] == "ignored"
    for t in tasks_of(ls, pid):
        path, labels = local_image(ls, images, t)
        ls.api("POST", f"/api/tasks/{t['id']}/annotations", json={"result": [{
            "from_name": "tags", "to_name": "image", "type": "choices",
            "value": {"choices": labels}}]})
    job = first_job_ended(backend, 180)
    assert job["status"] == "succeeded", job
    assert job["request"]["dataset"] == "lsloop" and job["request"]["steps"] == 3
    ds = backend.data_dir / "datasets" / "lsloop"
    lines = sorted((ds / "labels.txt").read_text().split("\n")[:-1])
    want = sorted(f"ls-{pid}-{t['id']} " + " ".join(str(CLASSES.index(n) + 1) for n in labs)
                  for t in tasks_of(ls, pid) for labs in [local_image(ls, images, t)[1]])
    assert lines == want
    assert len(list((ds / "JPEGImages").glob("*.jpg"))) == 2
    assert job["result"]["activated"] is True
    setup = requests.post(backend.url + "/labelstudio/setup", auth=(USER, PASSWORD), json={},
                          timeout=5).json()
    assert setup["model_version"] == "ecsnet-synth-small@%d" % job["result"]["model"]["version"]
