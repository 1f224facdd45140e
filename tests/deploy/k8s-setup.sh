#!/usr/bin/env bash
# tests/deploy/k8s-setup.sh - what the Kubernetes manifests' check needs, installed when
# missing: kubectl from Debian's kubernetes-client (its built-in kustomize renders the
# overlays; no cluster is contacted), and PyPI's kubernetes-validate and checkov (pinned) in
# CACHE/k8s-venv. Usage: k8s-setup.sh CACHE_DIR; prints the venv's bin folder on its last line.
set -euo pipefail
cache=${1:?usage: k8s-setup.sh CACHE_DIR}
pins=("kubernetes-validate==1.37.0" "checkov==3.3.30")
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
need=()
command -v kubectl >/dev/null || need+=(kubernetes-client)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ "${#need[@]}" -gt 0 ]; then
  echo "k8s-setup: apt-get install ${need[*]}" >&2
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" \
    >/dev/null
fi
venv=$cache/k8s-venv
if [ "$(cat "$venv/pins" 2>/dev/null)" != "${pins[*]}" ]; then
  echo "k8s-setup: ${pins[*]} from PyPI" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}"
  echo "${pins[*]}" >"$venv/pins"
fi
echo "$venv/bin"
