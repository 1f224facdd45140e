#!/usr/bin/env bash
# Installs NVIDIA's CUDA 13 toolkit and cuDNN 9 on Debian 12 from NVIDIA's apt repository, for
# the CUDA Docker image. Skips everything when nvcc and cuDNN are already present.
# Usage: deploy/install-cuda.sh [--runtime-only]
set -euo pipefail
runtime_only=0
[ "${1:-}" = "--runtime-only" ] && runtime_only=1
if [ "$runtime_only" -eq 0 ] && [ -x /usr/local/cuda/bin/nvcc ] && [ -f /usr/local/cuda/include/cudnn.h ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends ca-certificates curl gnupg >/dev/null
keyring=/usr/share/keyrings/cuda-archive-keyring.gpg
if [ ! -f "$keyring" ]; then
  curl -fsSL https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb -o /tmp/cuda-keyring.deb
  dpkg -i /tmp/cuda-keyring.deb
  rm -f /tmp/cuda-keyring.deb
  apt-get update -qq
fi
if [ "$runtime_only" -eq 1 ]; then
  apt-get install -y -qq --no-install-recommends cuda-cudart-13-0 libcublas-13-0 libcudnn9-cuda-13 >/dev/null
else
  apt-get install -y -qq --no-install-recommends cuda-nvcc-13-0 cuda-cudart-dev-13-0 \
    libcublas-dev-13-0 libcudnn9-dev-cuda-13 >/dev/null
  ln -sf /usr/include/cudnn*.h /usr/local/cuda/include/ 2>/dev/null || true
fi
