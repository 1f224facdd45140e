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
Every decoded mask must equal ecsnet's non-empty /cam mask for that class."""
import base64
import importlib.util
import json
import logging
import pathlib
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

from conftest import REPO, cam, combined_mask

CVAT = REPO / "clients" / "cvat"
CLASSES = ["cat", "dog", "bird", "fish", "horse", "sheep"]


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


def test_function_yaml_lists_the_served_models_classes(ecsnet, monkeypatch):
    monkeypatch.syspath_prepend(str(CVAT / "nuclio"))
    spec = importlib.util.spec_from_file_location("gen", CVAT / "nuclio" / "gen_function_yaml.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    import ecsnet_common as ec
    text = gen.render(*ec.served_classes(ecsnet.url))
    assert text == (CVAT / "nuclio" / "function.yaml").read_text(), \
        "function.yaml is stale: regenerate it with gen_function_yaml.py"
    y = yaml.safe_load(text)
    labels = json.loads(y["metadata"]["annotations"]["spec"])
    assert [x["name"] for x in labels] == CLASSES
    assert all(x["type"] == "mask" for x in labels)
    assert y["spec"]["handler"] == "main:handler"
    assert y["metadata"]["annotations"]["type"] == "detector"


def test_nuclio_handler_masks(ecsnet, images, monkeypatch):
    main = load_nuclio_main(monkeypatch)
    monkeypatch.setenv("ECSNET_URL", ecsnet.url)
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
