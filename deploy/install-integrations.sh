#!/usr/bin/env bash
# Builds .venv-int: the annotation tools the integration tests run for real (Label Studio,
# label-studio-sdk's converter, cvat-sdk[masks] and cvat-cli, pycocotools) and the Python client
# (clients/python, editable), pinned in tests/integrations/requirements.txt. A virtual
# environment of its own, without the system site packages: label-studio needs numpy >= 2.2,
# while .venv keeps Debian's numpy 1.24 for Debian's torch.
#
# Idempotent: a stamp newer than the requirements file means nothing to do (about 0 s);
# a first install takes 1-2 minutes. Exit status 1 when pip fails.
set -euo pipefail
root_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root_dir/.venv-int"
stamp="$venv/.deps-installed"
reqs="$root_dir/tests/integrations/requirements.txt"
if [ ! -x /usr/bin/python3 ] || ! /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "install-integrations: /usr/bin/python3 with venv is missing (deploy/install-deps.sh)" >&2
  exit 1
fi
if [ -f "$stamp" ] && [ ! "$reqs" -nt "$stamp" ] && { [ ! -d "$root_dir/clients/python" ] ||
  [ ! "$root_dir/clients/python/pyproject.toml" -nt "$stamp" ]; }; then
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv "$venv"
fi
echo "install-integrations: installing the annotation tools into .venv-int"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$reqs"
if [ -f "$root_dir/clients/python/pyproject.toml" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root_dir/clients/python"
fi
touch "$stamp"
