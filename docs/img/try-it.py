#!/usr/bin/env python3
"""Draws docs/img/try-it-chelsea.jpg, the README's "Try it" picture: the photo, the overlay and
the combined mask of the README's request (`labels` left out, flip on) as a running server
answers it.

    .venv/bin/python docs/img/try-it.py [URL]    # URL: http://127.0.0.1:8080 (make run)
"""
import base64
import io
import pathlib
import sys

import numpy as np
import requests
from PIL import Image

root = pathlib.Path(__file__).resolve().parents[2]
photo = root / ".venv" / "share" / "ecsnet" / "photos" / "chelsea.png"
url = (sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080") + "/cam"
r = requests.post(url, files={"image": photo.open("rb")},
                  data={"outputs": "overlay,mask", "flip": "true"}, timeout=120)
r.raise_for_status()
j = r.json()
dec = lambda k: Image.open(io.BytesIO(base64.b64decode(j[k])))
a = np.asarray(Image.open(photo).convert("RGB")).astype(float)
mask = np.asarray(dec("mask")).astype(np.int64)
label = j["labels"][0]["id"]
sel = mask == label
vis = a.copy()
vis[sel] = 0.45 * vis[sel] + 0.55 * np.array([64, 0, 255.0])
vis[~sel] *= 0.35
h, w = mask.shape
out = Image.new("RGB", (3 * w + 8, h), (255, 255, 255))
for i, im in enumerate([a, np.asarray(dec("overlay").convert("RGB")), vis]):
    out.paste(Image.fromarray(np.asarray(im).astype(np.uint8)), (i * (w + 4), 0))
out = out.resize((out.width * 2 // 3, out.height * 2 // 3), Image.LANCZOS)
out.save(root / "docs" / "img" / "try-it-chelsea.jpg", quality=85)
print("labels:", [(lb["name"], lb["id"], round(lb["score"], 3)) for lb in j["labels"]])
