"""Tunes ecsnet-imagenet-lite0's inference defaults on the tuning photo, never on a test photo.

The tuning photo is opencv-doc's alphamat plant.jpg (a potted plant; ImageNet "pot" is the
label, ecsnet id 739), scored against its matte > 127 (tests/photos/fetch.sh fetches both).
Through a real ecsnet-server, for every combination of flip, refine and a set of scales, and for
each background threshold alpha_bg, it measures the IoU of the label's CAM >= 0.3, of the CAM
mask and of the combined mask (ECS-Net's erasing branch) with the object, and prints one
Markdown table, the best alpha_bg per setting, and the choice the model file records
(docs/benchmark.md has the figures). Usage:

    ECSNET_BUILD_DIR=build .venv/bin/python tests/photos/tune.py [--out FILE]

About a minute on 2 cores.
"""
import argparse
import base64
import io
import itertools
import os
import pathlib
import sys

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "python"))

from test_server_fixture import Server  # noqa: E402

POT = 738 + 1
ALPHAS = (0.05, 0.1, 0.15, 0.2, 0.26, 0.3, 0.35, 0.4, 0.5)
SCALES = ("1", "0.75,1,1.25", "0.5,1,1.5")


def decode(b64):
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="also write the table to this file")
    a = ap.parse_args()
    photos = pathlib.Path(os.environ.get("ECSNET_PHOTOS", REPO / ".venv/share/ecsnet/photos"))
    model = REPO / "models" / "ecsnet-imagenet-lite0.safetensors"
    for p in (photos / "plant.jpg", photos / "plant_matte.png", model):
        if not p.exists():
            sys.exit(f"tune: {p} is missing (tests/photos/fetch.sh, make build)")
    body = (photos / "plant.jpg").read_bytes()
    obj = np.asarray(Image.open(photos / "plant_matte.png").convert("L")) > 127
    s = Server("--model", str(model), "--device", "cpu")
    rows, best = [], {}
    try:
        for flip, refine, scales in itertools.product(("false", "true"), ("false", "true"), SCALES):
            per_alpha = []
            for alpha in ALPHAS:
                r = s.post("/cam", files={"image": ("plant.jpg", body, "image/jpeg")},
                           data={"labels": str(POT), "outputs": "cam,cam_mask,mask", "flip": flip,
                                 "refine": refine, "scales": scales, "alpha_bg": str(alpha)},
                           timeout=300)
                r.raise_for_status()
                j = r.json()
                cam = decode(j["cams"][0]["png"]).astype(np.float32) / 255
                if cam.shape != obj.shape:
                    sys.exit(f"tune: the CAM is {cam.shape}, the matte {obj.shape}")
                iou = lambda m: float((m & obj).sum() / max(1, (m | obj).sum()))
                per_alpha.append((alpha, iou(cam >= 0.3), iou(decode(j["cam_mask"]) == POT),
                                  iou(decode(j["mask"]) == POT)))
            for alpha, ic, im, ib in per_alpha:
                rows.append(f"| {flip} | {refine} | {scales} | {alpha:g} | {ic:.3f} | {im:.3f} | "
                            f"{ib:.3f} |")
            b = max(per_alpha, key=lambda t: t[3])
            best[(flip, refine, scales)] = b
    finally:
        s.stop()
    out = ["| flip | refine | scales | alpha_bg | CAM >= 0.3 | CAM mask | combined mask |",
           "|---|---|---|---|---|---|---|"] + rows + ["", "best alpha_bg by the combined mask:"]
    for k, (alpha, ic, im, ib) in best.items():
        out.append(f"- flip {k[0]}, refine {k[1]}, scales {k[2]}: alpha_bg {alpha:g} "
                   f"(combined {ib:.3f}, CAM mask {im:.3f})")
    text = "\n".join(out)
    print(text)
    if a.out:
        pathlib.Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
