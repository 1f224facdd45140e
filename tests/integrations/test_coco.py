"""POST /cam's outputs=coco and outputs=polygons, read by pycocotools and drawn with Pillow:
each class's COCO RLE decodes to exactly ecsnet's own combined mask for that class, with the
same area and bbox pycocotools computes; the polygon rings, filled, cover the class."""
import numpy as np
import pytest
from PIL import Image, ImageDraw
from pycocotools import mask as cocomask

from conftest import cam, combined_mask


def test_coco_rle_decodes_to_ecsnets_mask(ecsnet, images):
    checked = 0
    for path, labels in images.values():
        j = cam(ecsnet, path, labels, outputs="mask,coco")
        m = combined_mask(j)
        present = sorted(int(k) for k in np.unique(m) if 0 < k < 255)
        assert [c["id"] for c in j["coco"]] == present
        for c in j["coco"]:
            seg = c["segmentation"]
            assert seg["size"] == [j["height"], j["width"]]
            got = cocomask.decode(seg)
            want = (m == c["id"]).astype(np.uint8)
            assert want.sum() > 0
            assert np.array_equal(got, want), c["name"]
            assert c["area"] == int(cocomask.area(seg)) == int(want.sum())
            assert c["bbox"] == [int(v) for v in cocomask.toBbox(seg)]
            # pycocotools' own encoder gives the same string.
            ref = cocomask.encode(np.asfortranarray(want))
            assert ref["counts"].decode("ascii") == seg["counts"]
            checked += 1
    assert checked >= 8


def fill(rings, w, h):
    img = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(img)
    for ring in sorted(rings, key=lambda r: r["hole"]):  # outer rings first, then holes
        pts = [tuple(p) for p in ring["points"]]
        d.polygon(pts, fill=0 if ring["hole"] else 1)
    return np.asarray(img)


def test_polygons_cover_the_class(ecsnet, images):
    for path, labels in images.values():
        j = cam(ecsnet, path, labels, outputs="mask,polygons")
        m = combined_mask(j)
        poly = j["polygons"]
        assert poly["tolerance"] == 1.0
        assert [c["id"] for c in poly["classes"]] == \
            sorted(int(k) for k in np.unique(m) if 0 < k < 255)
        for c in poly["classes"]:
            want = m == c["id"]
            assert c["area"] == int(want.sum())
            for ring in c["rings"]:
                assert len(ring["points"]) >= 3
                for x, y in ring["points"]:
                    assert 0 <= x <= j["width"] and 0 <= y <= j["height"]
            got = fill(c["rings"], j["width"], j["height"]).astype(bool)
            iou = (got & want).sum() / (got | want).sum()
            assert iou > 0.85, (c["name"], iou)


@pytest.mark.parametrize("outputs", ["coco", "polygons", "mask,coco"])
def test_not_a_picture(ecsnet, images, outputs):
    import requests
    path, labels = next(iter(images.values()))
    r = requests.post(ecsnet.url + "/cam", files={"image": path.read_bytes()},
                      data={"labels": ",".join(labels), "outputs": outputs, "format": "png"},
                      timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "ambiguous_request"
