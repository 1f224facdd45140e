"""The CVAT functions against the live server. CVAT itself cannot run here (its Docker
images), so:
 - the nuclio handler (clients/cvat/nuclio/main.py) runs with a small context and event made
   to nuclio's documented Python interface (context.user_data, context.logger,
   context.Response; event.body), and its mask shapes are turned into CVAT's stored RLE the
   way CVAT's server does it (the inclusive box placed into the frame) and decoded by
   cvat_sdk.masks;
 - the native function (clients/cvat/ecsnet_function.py) is loaded by cvat-cli's own
   FunctionLoader, run with cvat-sdk's detection context, and its shapes go through the SDK's
   own validation and label remapping (the code annotate_task runs before uploading).
Every decoded mask must equal ecsnet's non-empty /cam mask for that class: on the synthetic
model (6 classes, 8-bit masks) and on ecsnet-imagenet-lite0 with real photos, whose functions
offer its 20 VOC groups (or every class and group) and whose mask ids are above 254."""
import base64
import importlib.util
import json
import logging
import sys
import types

import numpy as np
import pytest
import yaml
from cvat_cli._internal.common import FunctionLoader
from cvat_sdk import models
from cvat_sdk.auto_annotation.driver import _AnnotationMapper, _DetectionFunctionContextImpl
from cvat_sdk.masks import decode_mask, encode_mask
from PIL import Image

from conftest import REPO, cam, combined_mask, present_ids

CVAT = REPO / "clients" / "cvat"
CLASSES = ["cat", "dog", "bird", "fish", "horse", "sheep"]
VOC = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
       "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
       "train", "tvmonitor"]


class NuclioLogger:
    def __init__(self):
        self.lines = []

    def _log(self, msg, *args, **kw):
        self.lines.append(msg % args if args else msg)

    debug = info = warn = warning = error = _log
    debug_with = info_with = warn_with = error_with = _log


class NuclioResponse:
    def __init__(self, body=None, headers=None, content_type="text/plain", status_code=200):
        self.body, self.headers = body, headers or {}
        self.content_type, self.status_code = content_type, status_code


def nuclio_context():
    return types.SimpleNamespace(user_data=types.SimpleNamespace(), logger=NuclioLogger(),
                                 Response=NuclioResponse)


def load_nuclio_main(monkeypatch):
    monkeypatch.syspath_prepend(str(CVAT / "nuclio"))
    sys.modules.pop("ecsnet_common", None)
    spec = importlib.util.spec_from_file_location("ecsnet_nuclio_main", CVAT / "nuclio" / "main.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_two_copies_of_the_shared_module_agree():
    assert (CVAT / "ecsnet_common.py").read_bytes() == \
        (CVAT / "nuclio" / "ecsnet_common.py").read_bytes()


def load_generator(monkeypatch):
    monkeypatch.syspath_prepend(str(CVAT / "nuclio"))
    spec = importlib.util.spec_from_file_location("gen", CVAT / "nuclio" / "gen_function_yaml.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


def generated(gen, capsys, *argv):
    assert gen.main(list(argv)) == 0
    return capsys.readouterr().out


def spec_of(text):
    y = yaml.safe_load(text)
    assert y["spec"]["handler"] == "main:handler"
    assert y["metadata"]["annotations"]["type"] == "detector"
    env = {e["name"]: e["value"] for e in y["spec"]["env"]}
    return json.loads(y["metadata"]["annotations"]["spec"]), env["ECSNET_LABELS"]


def test_function_yaml_lists_the_imagenet_models_groups(lite0, monkeypatch, capsys):
    """The committed function.yaml is the generator's output for the shipped default model:
    its 20 VOC groups, with ecsnet's ids (1001..1020); --all-classes lists all 1020 labels."""
    gen = load_generator(monkeypatch)
    text = generated(gen, capsys, lite0.url)
    assert text == (CVAT / "nuclio" / "function.yaml").read_text(), \
        "function.yaml is stale: regenerate it with gen_function_yaml.py"
    labels, label_set = spec_of(text)
    assert label_set == "groups"
    assert [x["name"] for x in labels] == VOC
    assert [x["id"] for x in labels] == list(range(1001, 1021))
    assert all(x["type"] == "mask" for x in labels)
    labels, label_set = spec_of(generated(gen, capsys, "--all-classes", lite0.url))
    assert label_set == "all" and len(labels) == 1020
    assert [x["id"] for x in labels] == list(range(1, 1021))
    assert labels[281]["name"] == "tabby" and labels[1007]["name"] == "cat"
    assert len({x["name"] for x in labels}) == 1020  # CVAT needs unique names
    # ecsnet down: one line on stderr and status 1, no half-written file
    assert gen.main(["http://127.0.0.1:9"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and "cannot reach the server" in out.err


def test_function_yaml_of_a_model_without_groups_lists_its_classes(ecsnet, monkeypatch, capsys):
    gen = load_generator(monkeypatch)
    labels, label_set = spec_of(generated(gen, capsys, ecsnet.url))
    assert label_set == "all"
    assert [(x["id"], x["name"]) for x in labels] == list(enumerate(CLASSES, start=1))


def test_nuclio_handler_masks(ecsnet, images, monkeypatch):
    main = load_nuclio_main(monkeypatch)
    monkeypatch.setenv("ECSNET_URL", ecsnet.url)
    monkeypatch.delenv("ECSNET_LABELS", raising=False)  # auto: the synthetic model's classes
    ctx = nuclio_context()
    main.init_context(ctx)
    checked = 0
    for path, _labels in list(images.values())[:4]:
        body = {"image": base64.b64encode(path.read_bytes()).decode(), "threshold": 0.05}
        resp = main.handler(ctx, types.SimpleNamespace(body=body, headers={}, method="POST",
                                                       path="/"))
        assert resp.status_code == 200 and resp.content_type == "application/json"
        items = json.loads(resp.body)
        ref = cam(ecsnet, path, [], outputs="mask,scores")
        mask = combined_mask(ref)
        h, w = mask.shape
        assert items, path
        for it in items:
            assert it["type"] == "mask" and it["label"] in CLASSES
            k = CLASSES.index(it["label"]) + 1
            x0, y0, x1, y1 = it["mask"][-4:]
            pix = it["mask"][:-4]
            assert len(pix) == (x1 - x0 + 1) * (y1 - y0 + 1)
            assert set(pix) <= {0, 1}
            full = np.zeros((h, w), bool)
            full[y0:y1 + 1, x0:x1 + 1] = np.array(pix, bool).reshape(y1 - y0 + 1, x1 - x0 + 1)
            stored = encode_mask(full)  # what CVAT's server keeps
            got = decode_mask(stored, image_width=w, image_height=h)
            want = mask == k
            assert want.any() and np.array_equal(got, want), it["label"]
            assert len(it["points"]) >= 6
            checked += 1
    assert checked >= 4


def ds_labels(types_=("mask",)):
    return [models.Label(id=100 + k, name=n, type=types_[0], attributes=[], sublabels=[])
            for k, n in enumerate(CLASSES, start=1)]


@pytest.mark.parametrize("poly", [False, True])
def test_native_function_passes_the_sdks_validation(ecsnet, images, poly):
    fn = FunctionLoader(None, CVAT / "ecsnet_function.py", {"url": ecsnet.url}).load()
    assert [lab.name for lab in fn.spec.labels] == CLASSES
    mapper = _AnnotationMapper(logging.getLogger("test"), fn.spec.labels,
                               ds_labels(("polygon",) if poly else ("mask",)),
                               allow_unmatched_labels=False, conv_mask_to_poly=poly)
    checked = 0
    for path, labels in list(images.values())[:4]:
        img = Image.open(path)
        ctx = _DetectionFunctionContextImpl(frame_name=path.name, conf_threshold=None,
                                            conv_mask_to_poly=poly)
        shapes = fn.detect(ctx, img)
        _tags, remapped = mapper.validate_and_remap(shapes, 0)
        mask = combined_mask(cam(ecsnet, path, [], outputs="mask"))
        h, w = mask.shape
        assert len(remapped) == len(shapes) and remapped
        for s in remapped:
            k = s.label_id - 100
            want = mask == k
            assert want.any()
            if poly:
                assert s.type.value == "polygon" and len(s.points) >= 6
                xs, ys = s.points[0::2], s.points[1::2]
                assert 0 <= min(xs) and max(xs) <= w and 0 <= min(ys) and max(ys) <= h
            else:
                assert s.type.value == "mask"
                got = decode_mask(s.points, image_width=w, image_height=h)
                assert np.array_equal(got, want), CLASSES[k - 1]
            checked += 1
    assert checked >= 4
    # A threshold above every score leaves nothing.
    ctx = _DetectionFunctionContextImpl(frame_name="x", conf_threshold=1.0, conv_mask_to_poly=poly)
    assert fn.detect(ctx, Image.open(next(iter(images.values()))[0])) == []


def nuclio_call(main, ctx, body):
    resp = main.handler(ctx, types.SimpleNamespace(body=body, headers={}, method="POST",
                                                   path="/"))
    assert resp.content_type == "application/json"
    return resp.status_code, json.loads(resp.body)


def check_nuclio_item(it, mask, k):
    h, w = mask.shape
    assert it["type"] == "mask"
    x0, y0, x1, y1 = it["mask"][-4:]
    pix = it["mask"][:-4]
    assert len(pix) == (x1 - x0 + 1) * (y1 - y0 + 1) and set(pix) <= {0, 1}
    full = np.zeros((h, w), bool)
    full[y0:y1 + 1, x0:x1 + 1] = np.array(pix, bool).reshape(y1 - y0 + 1, x1 - x0 + 1)
    got = decode_mask(encode_mask(full), image_width=w, image_height=h)
    want = mask == k
    assert want.any() and np.array_equal(got, want), it["label"]
    assert len(it["points"]) >= 6


@pytest.mark.parametrize("label_set", ["groups", "all"])
def test_nuclio_handler_on_photos(lite0, photos, monkeypatch, label_set):
    """The ImageNet model through the nuclio handler: Chelsea is the group "cat" (id 1008, a
    16-bit mask); the espresso of coffee.png is a class outside every group, so the groups spec
    leaves it out and the all-labels spec has it."""
    main = load_nuclio_main(monkeypatch)
    monkeypatch.setenv("ECSNET_URL", lite0.url)
    monkeypatch.setenv("ECSNET_LABELS", label_set)
    ctx = nuclio_context()
    main.init_context(ctx)
    for name in ("chelsea.png", "coffee.png"):
        path = photos[name]
        body = json.dumps({"image": base64.b64encode(path.read_bytes()).decode()})
        status, items = nuclio_call(main, ctx, body)
        assert status == 200, items
        ref = cam(lite0, path, [], outputs="mask,scores,polygons")
        assert ref["mask_bits"] == 16
        mask = combined_mask(ref)
        kinds = {x["id"]: x["kind"] for x in ref["labels"]}
        want = [k for k in present_ids(ref) if label_set == "all" or kinds[k] == "group"]
        names = {x["id"]: x["name"] for x in ref["labels"]}
        assert [it["label"] for it in items] == [names[k] for k in want]
        for it, k in zip(items, want):
            check_nuclio_item(it, mask, k)
        if name == "chelsea.png":
            assert [it["label"] for it in items] == ["cat"]
        else:
            assert [it["label"] for it in items] == ([] if label_set == "groups" else ["espresso"])
    # Bad input is the caller's 4xx with a reason, not an exception.
    status, err = nuclio_call(main, ctx, {"image": "not base64!"})
    assert status == 400 and "base64" in err["error"]
    status, err = nuclio_call(main, ctx, {"image": base64.b64encode(b"not an image").decode()})
    assert status == 400 and "ecsnet: 400" in err["error"]


@pytest.mark.parametrize("label_set", ["auto", "all"])
def test_native_function_on_photos(lite0, photos, label_set):
    """cvat-sdk's native function on the ImageNet model: its spec is the 20 VOC groups (or all
    1020 labels), its shapes pass the SDK's validation against a task whose labels are those
    names, and decode_mask equals ecsnet's 16-bit mask for that label id."""
    params = {"url": lite0.url} if label_set == "auto" else {"url": lite0.url, "labels": "all"}
    fn = FunctionLoader(None, CVAT / "ecsnet_function.py", params).load()
    spec_names = [lab.name for lab in fn.spec.labels]
    if label_set == "auto":
        assert spec_names == VOC
        assert [lab.id for lab in fn.spec.labels] == list(range(1001, 1021))
    else:
        assert len(spec_names) == 1020 and spec_names[967] == "espresso"
    task_labels = [models.Label(id=5000 + lab.id, name=lab.name, type="mask", attributes=[],
                                sublabels=[]) for lab in fn.spec.labels]
    mapper = _AnnotationMapper(logging.getLogger("test"), fn.spec.labels, task_labels,
                               allow_unmatched_labels=False, conv_mask_to_poly=False)
    seen = []
    for name in ("chelsea.png", "coffee.png"):
        path = photos[name]
        ctx = _DetectionFunctionContextImpl(frame_name=name, conf_threshold=None,
                                            conv_mask_to_poly=False)
        shapes = fn.detect(ctx, Image.open(path))
        _tags, remapped = mapper.validate_and_remap(shapes, 0)
        assert len(remapped) == len(shapes)
        mask = combined_mask(cam(lite0, path, [], outputs="mask"))
        h, w = mask.shape
        for s in remapped:
            k = s.label_id - 5000
            assert s.type.value == "mask" and k > 254
            want = mask == k
            assert want.any()
            assert np.array_equal(decode_mask(s.points, image_width=w, image_height=h), want)
            seen.append((name, k))
    assert seen == ([("chelsea.png", 1008)] if label_set == "auto"
                    else [("chelsea.png", 1008), ("coffee.png", 968)])
