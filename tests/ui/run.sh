#!/usr/bin/env bash
# The web page in a real browser (tests/ui/test_webui.py): Debian's chromium driven by
# Playwright for Python against live ecsnet-servers built in $ECSNET_BUILD_DIR (default build/).
#
# Installs what it needs and is missing: Debian's chromium (with apt-get, as root or with sudo;
# Playwright's own browser download is never used) and the PyPI `playwright` package into
# ./.venv-ui (a virtual environment over the system's Python, so numpy, Pillow, pytest and
# requests come from Debian as for the other tests). Under CI=true a component that cannot be
# had fails the stage; elsewhere the stage is skipped with one line saying why.
#
# Usage: tests/ui/run.sh [PYTEST ARGS]
#   ECSNET_CHROMIUM=PATH      the browser (default /usr/bin/chromium)
#   ECSNET_UI_SCREENSHOTS=DIR also write the README's screenshots there (docs/img)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
build=${ECSNET_BUILD_DIR:-$root/build}
chromium=${ECSNET_CHROMIUM:-/usr/bin/chromium}

unavailable() {
  if [ "${CI:-}" = "true" ]; then
    echo "tests/ui: $1" >&2
    exit 1
  fi
  echo "tests/ui: skipped: $1"
  exit 0
}

if [ ! -x "$build/bin/ecsnet-server" ] || [ ! -x "$build/bin/ecsnet" ]; then
  echo "tests/ui: $build/bin has no ecsnet-server or ecsnet: build first (make build)" >&2
  exit 1
fi

if [ ! -x "$chromium" ] && [ "$chromium" = /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    echo "tests/ui: installing chromium"
    export DEBIAN_FRONTEND=noninteractive
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends \
        chromium fonts-liberation libgl1-mesa-dri >/dev/null; } || true
  fi
fi
[ -x "$chromium" ] || unavailable "no browser at $chromium (apt-get install chromium)"

venv=$root/.venv-ui
reqs=$root/tests/ui/requirements.txt
stamp=$venv/.deps-installed
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$venv" || unavailable "cannot make $venv"
fi
if [ ! -f "$stamp" ] || [ "$reqs" -nt "$stamp" ]; then
  echo "tests/ui: installing playwright into .venv-ui"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$reqs" ||
    unavailable "pip cannot install $(tr '\n' ' ' <"$reqs")"
  touch "$stamp"
fi

export ECSNET_BUILD_DIR=$build ECSNET_CHROMIUM=$chromium OMP_WAIT_POLICY=passive
exec "$venv/bin/python" -m pytest tests/ui -q -p no:cacheprovider "$@"
