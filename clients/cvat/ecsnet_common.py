"""What the CVAT functions share: ecsnet over HTTP (standard library only) and CVAT's mask
shapes from ecsnet's combined mask. A copy sits beside main.py in nuclio/ (nuclio deploys one
folder); tests/integrations/test_cvat.py checks the two are the same file."""
import io
import json
import urllib.error
import urllib.request
import uuid

import numpy as np
from PIL import Image


class EcsnetError(RuntimeError):
    pass


def _call(req, timeout):
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            err = json.loads(e.read())["error"]
            raise EcsnetError(f"ecsnet: {e.code} {err['code']}: {err['message']}") from None
        except (ValueError, KeyError):
            raise EcsnetError(f"ecsnet: HTTP {e.code}") from None
    except urllib.error.URLError as e:
        raise EcsnetError(f"ecsnet: cannot reach the server: {e.reason}") from None


def served_classes(url, timeout=10):
    """The served model's class names, ids 1..K in order, and NAME@VERSION."""
    j = _call(urllib.request.Request(url.rstrip("/") + "/v1/models"), timeout)
    for m in j["models"]:
        if m.get("served"):
            return list(m["classes"]), f"{m['name']}@{m['version']}"
    raise EcsnetError("ecsnet serves no model yet")


def cam(url, image_bytes, outputs, labels=None, timeout=120):
    """POST /cam (multipart) and the JSON answer."""
    boundary = uuid.uuid4().hex
    parts = [("image", "image", image_bytes), ("outputs", None, outputs.encode())]
    if labels:
        parts.append(("labels", None, ",".join(labels).encode()))
    body = b""
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(url.rstrip("/") + "/cam", data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    return _call(req, timeout)


def combined_mask(answer):
    """The answer's combined mask as an H x W array of class ids (255: ignore)."""
    import base64
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["mask"]))))


def regions(answer, threshold=None):
    """(class id, name, score, bool mask) per class of the combined mask, ids ascending;
    classes scoring under threshold (0..1) are left out."""
    mask = combined_mask(answer)
    scores = {s["id"]: s["score"] for s in answer.get("scores", [])}
    names = {lab["id"]: lab["name"] for lab in answer["labels"]}
    out = []
    for k in sorted(int(v) for v in np.unique(mask) if 0 < v < 255):
        score = float(scores.get(k, 1.0))
        if threshold is not None and score < threshold:
            continue
        out.append((k, names.get(k, str(k)), score, mask == k))
    return out


def outer_rings(answer, class_id):
    """The class's outer polygon rings (outputs=polygons) as flat [x0, y0, x1, y1, ...]."""
    for c in answer.get("polygons", {}).get("classes", []):
        if c["id"] == class_id:
            return [[float(v) for p in r["points"] for v in p] for r in c["rings"]
                    if not r["hole"]]
    return []


def nuclio_mask(bitmap):
    """CVAT's serverless mask: the row-major 0/1 pixels of the inclusive bounding box, then
    xtl, ytl, xbr, ybr."""
    ys, xs = np.nonzero(bitmap)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    box = bitmap[y0:y1 + 1, x0:x1 + 1].astype(np.uint8)
    return [int(v) for v in box.flat] + [x0, y0, x1, y1]
