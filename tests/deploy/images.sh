# tests/deploy/images.sh - the images of the deployment test (sourced by run.sh).

# debian:12 and debian:12-slim (one debootstrap minbase image under both names, with the
# host's apt sources, as the official image has bookworm, -updates and -security), and the
# nginx:1.25 stand-in: made once, then found in the daemon's data (CACHE/docker).
base_images() {
  local w=$1
  if ! docker image inspect debian:12-slim >/dev/null 2>&1; then
    stamp "base image debian:12-slim by debootstrap (once; cached in $CACHE/docker)"
    local mirror rootfs=$w/rootfs
    mirror=$(apt-get indextargets --format '$(REPO_URI)' 'Created-By: Packages' |
      grep -v security | sort -u | sed -n 1p)
    [ -n "$mirror" ] || fail "no Debian mirror in the host's apt sources"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$w/debootstrap.log" 2>&1 ||
      { tail -20 "$w/debootstrap.log"; fail "debootstrap from $mirror"; }
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
    : >"$rootfs/etc/resolv.conf"
    echo localhost >"$rootfs/etc/hostname"
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/"
      rm -f "$rootfs/etc/apt/sources.list"
    elif [ -f /etc/apt/sources.list ]; then
      cp /etc/apt/sources.list "$rootfs/etc/apt/sources.list"
    fi
    tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - debian:12-slim >/dev/null
    rm -rf "$rootfs"
  fi
  local t
  for t in 12 bookworm bookworm-slim; do docker tag debian:12-slim "debian:$t"; done
  if ! docker image inspect nginx:1.25 >/dev/null 2>&1; then
    stamp "nginx:1.25 stand-in (tests/deploy/nginx; once)"
    docker build -q -t nginx:1.25 "$root/tests/deploy/nginx" >"$w/nginx-build.log" 2>&1 ||
      { tail -20 "$w/nginx-build.log"; fail "building the nginx stand-in"; }
  fi
}

# The runtime image: size, non-root user, labels, HEALTHCHECK, and a run with a read-only root
# and no volume (the shipped model served from where it lies) that turns healthy.
image_mb=0
check_image() {
  local img=$1 w=$2 f
  image_mb=$(($(docker image inspect -f '{{.Size}}' "$img") / 1000000))
  echo "image $img: ${image_mb} MB"
  [ "$(docker image inspect -f '{{.Config.User}}' "$img")" = "10001:10001" ] || fail "image user is not 10001:10001"
  for f in title description version revision; do
    docker image inspect -f "{{index .Config.Labels \"org.opencontainers.image.$f\"}}" "$img" |
      grep -q . || fail "label org.opencontainers.image.$f missing"
  done
  docker image inspect -f '{{json .Config.Healthcheck.Test}}' "$img" | grep -q health/live ||
    fail "no HEALTHCHECK on /health/live"
  # the whole output first: a reader that stops early (head) breaks docker's pipe, and
  # pipefail then fails a good image
  local help
  help=$(docker run --rm --read-only "$img" --help) && [ -n "$help" ] || fail "ecsnet-server --help"
  docker run -d --name ecsnet-test-single --read-only --tmpfs /tmp --cap-drop ALL \
    --security-opt no-new-privileges:true -p "127.0.0.1:$((PORT + 1)):8080" \
    --health-interval 2s "$img" --workers 1 >/dev/null
  local i s=""
  for i in $(seq 90); do
    s=$(docker inspect -f '{{.State.Health.Status}}' ecsnet-test-single)
    [ "$s" = healthy ] && break
    sleep 1
  done
  [ "$s" = healthy ] || { docker logs ecsnet-test-single | tail; fail "single container: $s"; }
  [ "$(docker exec ecsnet-test-single id -u)" = 10001 ] || fail "the server does not run as uid 10001"
  docker exec ecsnet-test-single sh -c 'touch /opt/x' 2>/dev/null && fail "root filesystem is writable"
  curl -fsS "http://127.0.0.1:$((PORT + 1))/health/ready" | grep -q '"UP"' ||
    fail "single container: /health/ready"
  docker rm -f ecsnet-test-single >/dev/null
  echo "image: runs as uid 10001 on a read-only root, HEALTHCHECK healthy, OCI labels present"
}

# The CUDA image needs NVIDIA's apt repository (deploy/install-cuda.sh) at build time.
cuda_image="not built"
check_cuda_variant() {
  if curl -fsS -o /dev/null --max-time 5 \
    https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/ 2>/dev/null; then
    stamp "CUDA image (NVIDIA's repository answers)"
    docker build -q -t ecsnet:test-cuda --build-arg ECSNET_CUDA=ON "$root" >"$WORK/cuda.log" 2>&1 ||
      { tail -40 "$WORK/cuda.log"; fail "CUDA image build"; }
    cuda_image="built, $(($(docker image inspect -f '{{.Size}}' ecsnet:test-cuda) / 1000000)) MB"
  else
    cuda_image="not built: NVIDIA's repository is unreachable from this machine"
  fi
  echo "CUDA image: $cuda_image"
}
