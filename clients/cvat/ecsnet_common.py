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
    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status  # ecsnet's HTTP status, None when it was not reached


def _call(req, timeout):
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            err = json.loads(e.read())["error"]
            raise EcsnetError(f"ecsnet: {e.code} {err['code']}: {err['message']}", e.code) from None
        except (ValueError, KeyError):
            raise EcsnetError(f"ecsnet: HTTP {e.code}", e.code) from None
    except urllib.error.URLError as e:
        raise EcsnetError(f"ecsnet: cannot reach the server: {e.reason}") from None


LABEL_SETS = ("auto", "groups", "all")


def served_model(url, timeout=10):
    """The served model's entry of /v1/models."""
    j = _call(urllib.request.Request(url.rstrip("/") + "/v1/models"), timeout)
    for m in j["models"]:
        if m.get("served"):
            return m
    raise EcsnetError("ecsnet serves no model yet")


def _labels(model):
    return model.get("labels") or [{"id": k, "name": n, "kind": "class"}
                                   for k, n in enumerate(model["classes"], start=1)]


def label_set_of(model, label_set="auto"):
    """The label set "auto" stands for with a /v1/models entry: "groups" where the model has
    groups, else "all"; "groups" for a model without groups is an error."""
    if label_set not in LABEL_SETS:
        raise ValueError(f"label set '{label_set}': one of {', '.join(LABEL_SETS)}")
    has_groups = any(x["kind"] == "group" for x in _labels(model))
    if label_set == "groups" and not has_groups:
        raise EcsnetError(f"{model['name']} has no label groups: use the label set 'all'")
    if label_set == "auto":
        return "groups" if has_groups else "all"
    return label_set


def model_labels(model, label_set="auto"):
    """The labels a CVAT function offers for a /v1/models entry, as [(id, name)] in id order:
    "groups" its named groups (the ImageNet model's 20 VOC groups), "all" every class and then
    every group, "auto" the groups where the model has any, else its classes. Ids are ecsnet's
    own label ids, the ones its masks hold."""
    kinds = ("group",) if label_set_of(model, label_set) == "groups" else ("class", "group")
    return [(x["id"], x["name"]) for x in _labels(model) if x["kind"] in kinds]


def served_labels(url, label_set="auto", timeout=10):
    """model_labels() of the served model, and its NAME@VERSION."""
    m = served_model(url, timeout)
    return model_labels(m, label_set), f"{m['name']}@{m['version']}"


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
    """The answer's combined mask as an H x W array of label ids (8-bit with 255 = ignore, or
    16-bit with 65535 = ignore when an id is above 254: the answer's mask_bits)."""
    import base64
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["mask"]))))


def ignore_value(answer):
    return 65535 if answer.get("mask_bits") == 16 else 255


def regions(answer, threshold=None, ids=None):
    """(label id, name, score, bool mask) per label of the combined mask, ids ascending;
    labels scoring under threshold (0..1), and with ids given, labels not among them, are left
    out."""
    mask = combined_mask(answer)
    scores = {s["id"]: s["score"] for s in answer.get("scores", [])}
    names = {lab["id"]: lab["name"] for lab in answer.get("mask_ids", []) + answer["labels"]}
    ignore = ignore_value(answer)
    out = []
    for k in sorted(int(v) for v in np.unique(mask) if 0 < v < ignore):
        if ids is not None and k not in ids:
            continue
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
