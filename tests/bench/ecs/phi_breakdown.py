#!/usr/bin/env python3
"""Where ECS's pseudo mask puts the object pixels: erased (in R), in Phi with the right class,
in Phi as background, or outside Phi (left to the CAM mask), over the first N images of a
split, plus Phi's own precision on its object part. docs/benchmark.md's findings table comes
from this script.

  phi_breakdown.py --ecsnet build/bin/ecsnet --model runs/ecs_s1.safetensors \
      --data data/held1 [--split train] [--count 100]

It runs `ecsnet cam` per image with the dataset's labels and reads back erase_region.png and
ecs_mask.png (255 = outside Phi) against SegmentationClass/ (255 = ignore)."""
import argparse
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ecsnet", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, type=pathlib.Path)
    ap.add_argument("--split", default="train")
    ap.add_argument("--count", type=int, default=100)
    a = ap.parse_args()
    ids = (a.data / "ImageSets" / "Segmentation" / f"{a.split}.txt").read_text().split()[: a.count]
    labels = {}
    for line in (a.data / "labels.txt").read_text().splitlines():
        f = line.split()
        if f:
            labels[f[0]] = f[1:]
    n = dict(obj=0, erased=0, phi_right=0, phi_bg=0, outside=0, phi_fg=0, phi_fg_right=0)
    with tempfile.TemporaryDirectory() as tmp:
        for i in ids:
            out = pathlib.Path(tmp) / i
            p = subprocess.run([a.ecsnet, "cam", str(a.data / "JPEGImages" / f"{i}.jpg"), "--out", str(out),
                                "--model", a.model, "--labels", ",".join(labels[i])],
                               capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"phi_breakdown: ecsnet cam {i}: {p.stderr.strip()}")
            gt = np.array(Image.open(a.data / "SegmentationClass" / f"{i}.png"))
            e = np.array(Image.open(out / "ecs_mask.png"))
            r = np.array(Image.open(out / "erase_region.png")) > 0
            valid = gt != 255
            obj = valid & (gt != 0)
            n["obj"] += int(obj.sum())
            n["erased"] += int((obj & r).sum())
            n["phi_right"] += int((obj & (e == gt)).sum())
            n["phi_bg"] += int((obj & (e == 0)).sum())
            n["outside"] += int((obj & (e == 255) & ~r).sum())
            fg = valid & (e != 255) & (e != 0)
            n["phi_fg"] += int(fg.sum())
            n["phi_fg_right"] += int((fg & (e == gt)).sum())
    o = max(n["obj"], 1)
    print(f"{len(ids)} images, {n['obj']} object pixels: in R {100 * n['erased'] / o:.0f}%, "
          f"in Phi with the right class {100 * n['phi_right'] / o:.0f}%, "
          f"in Phi as background {100 * n['phi_bg'] / o:.0f}%, outside Phi {100 * n['outside'] / o:.0f}%; "
          f"Phi's object part {100 * n['phi_fg_right'] / max(n['phi_fg'], 1):.1f}% right")


if __name__ == "__main__":
    main()
