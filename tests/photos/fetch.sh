#!/usr/bin/env bash
# Fetches the real photos the real-photo tests and the README's "Try it" use, from package
# registries, into .venv/share/ecsnet/photos/ (not committed; their licences are those of the
# packages):
#   chelsea.png, coffee.png   Debian python3-skimage (skimage/data; CC0)
#   squirrel_cls.jpg          Debian opencv-doc (examples/data; Apache-2.0 AND BSD-3-Clause)
#   quokka.jpg, quokka_annotations.json   PyPI imgaug 0.4.0 (the photo with its polygon)
#   plant.jpg, plant_matte.png   Debian opencv-doc (examples/alphamat: the photo and its matte),
#                             the tuning photo of tests/photos/tune.py, never a test photo
# The packages are downloaded (apt-get download, pip download --no-deps) and only these files
# taken out; nothing is installed. Does nothing when the files are there. deploy/install-deps.sh
# and the tests call it. Without a registry it says so in one line and exits 1.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dst="${ECSNET_PHOTOS:-$root/.venv/share/ecsnet/photos}"
files=(chelsea.png coffee.png squirrel_cls.jpg quokka.jpg quokka_annotations.json plant.jpg
  plant_matte.png)
have=1
for f in "${files[@]}"; do [ -s "$dst/$f" ] || have=0; done
[ "$have" = 1 ] && exit 0
py="$root/.venv/bin/python"
[ -x "$py" ] || py=python3
mkdir -p "$dst"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "fetch-photos: $1" >&2; exit 1; }
(cd "$tmp" && apt-get download -qq python3-skimage opencv-doc >/dev/null 2>&1) ||
  fail "apt-get download python3-skimage opencv-doc failed (no Debian archive?)"
sk=./usr/lib/python3/dist-packages/skimage/data
dpkg-deb --fsys-tarfile "$tmp"/python3-skimage_*.deb | tar -x -C "$tmp" "$sk/chelsea.png" "$sk/coffee.png"
cv=./usr/share/doc/opencv-doc/examples/data/squirrel_cls.jpg
am=./usr/share/doc/opencv-doc/examples/alphamat
dpkg-deb --fsys-tarfile "$tmp"/opencv-doc_*.deb |
  tar -x -C "$tmp" "$cv" "$am/input_images/plant.jpg" "$am/output_mattes/plant_result.png"
"$py" -m pip download -q --disable-pip-version-check --no-deps imgaug==0.4.0 -d "$tmp" \
  >/dev/null 2>&1 || fail "pip download imgaug==0.4.0 failed (no PyPI?)"
"$py" - "$tmp" <<'PY'
import glob, sys, zipfile
z = zipfile.ZipFile(glob.glob(sys.argv[1] + "/imgaug-0.4.0-*.whl")[0])
for n in ("quokka.jpg", "quokka_annotations.json"):
    open(f"{sys.argv[1]}/{n}", "wb").write(z.read("imgaug/" + n))
PY
cp "$tmp/$sk/chelsea.png" "$tmp/$sk/coffee.png" "$tmp/$cv" "$tmp/quokka.jpg" \
  "$tmp/quokka_annotations.json" "$tmp/$am/input_images/plant.jpg" "$dst/"
cp "$tmp/$am/output_mattes/plant_result.png" "$dst/plant_matte.png"
{
  echo "chelsea.png coffee.png: Debian python3-skimage $(dpkg-deb -f "$tmp"/python3-skimage_*.deb Version) (CC0)"
  echo "squirrel_cls.jpg plant.jpg plant_matte.png: Debian opencv-doc $(dpkg-deb -f "$tmp"/opencv-doc_*.deb Version) (Apache-2.0 AND BSD-3-Clause)"
  echo "quokka.jpg quokka_annotations.json: PyPI imgaug 0.4.0 (MIT code; the photo's licence is not stated)"
} >"$dst/ORIGIN"
echo "fetch-photos: ${files[*]} in $dst"
