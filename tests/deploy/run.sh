#!/usr/bin/env bash
# tests/deploy/run.sh - the deployment test (make test-deploy; .ci/run).
#
# Builds and runs what deploy/ ships, on a Docker daemon of its own, and breaks it on purpose:
#  1. host set-up (tests/deploy/setup.sh: docker.io, debootstrap, iptables, Compose v2);
#  2. its own dockerd: data under CACHE/docker (images and build cache survive the run, so a
#     clean clone reuses them), socket and state under a temporary folder, stopped at the end;
#  3. base images debian:12 / debian:12-slim by debootstrap from the host's Debian mirror and
#     the nginx:1.25 stand-in (tests/deploy/nginx), once; kept in CACHE/docker;
#  4. the CPU image: built, its size, user, labels and HEALTHCHECK checked, run read-only;
#     the GPU compose overlay validated (`config`); the CUDA image only where NVIDIA's
#     repository answers;
#  5. deploy/docker-compose.yml up on 127.0.0.1: /health/ready and POST /cam through nginx,
#     /admin reaching the admin replica only, jobs.db on the admin replica's own volume;
#  6. a model version trained through /admin and activated under a closed loop of /cam
#     requests: served by every replica within 10 s, zero failed requests;
#  7. under the same load, one replica's server process killed with SIGKILL (a crash: the
#     restart policy stays on) while it has requests in flight: zero failed requests, the
#     replica restarts and serves again (its recovery time is reported);
#  8. `compose down -v`, the daemon stopped (at exit), and the host's network (links,
#     iptables rules, FORWARD's policy, ip_forward) checked to be as it was before;
#  9. the Kubernetes manifests (tests/deploy/k8s.sh).
# Needs root. Where Docker cannot be set up or started it fails under CI=true and otherwise
# reports itself skipped with the reason. The figures go to stdout and DEPLOY_REPORT (JSON).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${ECSNET_DEPLOY_CACHE:-/var/cache/ecsnet}
PORT=${ECSNET_DEPLOY_PORT:-18934}
CLIENTS=${DEPLOY_CLIENTS:-4}
REPORT=${DEPLOY_REPORT:-$root/build/deploy-report.json}
PROJECT=ecsnet-test
start=$(date +%s)
stamp() { echo "== deploy [$(($(date +%s) - start))s] $*"; }
now() { date +%s.%N; }
fail() { echo "deploy test: FAILED: $*" >&2; exit 1; }
unavailable() {
  if [ "${CI:-}" = true ]; then fail "$* (CI requires the deployment test)"; fi
  echo "deploy test: skipped: $*"
  exit 0
}

[ "$(id -u)" -eq 0 ] || unavailable "needs root to start its own dockerd"
mkdir -p "$CACHE"
# one run at a time on a machine: they would share the daemon's data, the port and the subnet
exec 9>"$CACHE/deploy.lock"
flock -w 1800 9 || fail "another deployment test holds $CACHE/deploy.lock"
plugins=$(bash "$root/tests/deploy/setup.sh" "$CACHE" | tail -1) ||
  unavailable "cannot install docker.io, debootstrap or Compose (tests/deploy/setup.sh)"

WORK=$(mktemp -d /tmp/ecsnet-deploy.XXXXXX)
export DOCKER_HOST="unix://$WORK/docker.sock" DOCKER_CONFIG="$WORK/docker-config"
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0 # no buildx here: the classic builder
mkdir -p "$DOCKER_CONFIG" && ln -s "$plugins" "$DOCKER_CONFIG/cli-plugins"
# shellcheck source=tests/deploy/net.sh
. "$root/tests/deploy/net.sh"

dockerd_pid=""
cleanup() {
  rc=$?
  set +e
  if [ -n "$dockerd_pid" ]; then
    if [ "$rc" -ne 0 ]; then
      for c in $(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT"); do
        echo "--- logs of $(docker inspect -f '{{.Name}}' "$c") (last 30 lines)"
        docker logs --tail 30 "$c" 2>&1
      done
      echo "--- dockerd log (last 20 lines)"; tail -20 "$WORK/dockerd.log"
    fi
    compose down -v --remove-orphans >/dev/null 2>&1
    docker rm -f ecsnet-test-single >/dev/null 2>&1
    kill "$dockerd_pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$dockerd_pid" 2>/dev/null && kill -9 "$dockerd_pid"
    net_restore "$WORK"
    if ! net_same "$WORK"; then
      echo "deploy test: the host's network differs from before the test (above)" >&2
      rc=1
    fi
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

compose() {
  ECSNET_TAG=test ECSNET_PORT="127.0.0.1:$PORT" ECSNET_ADMIN_TOKEN="$TOKEN" \
    docker compose -p "$PROJECT" -f "$root/deploy/docker-compose.yml" "$@"
}
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')

stamp "dockerd (data in $CACHE/docker)"
net_save "$WORK"
dockerd --data-root "$CACHE/docker" --exec-root "$WORK/run" --pidfile "$WORK/dockerd.pid" \
  -H "$DOCKER_HOST" --storage-driver overlay2 >"$WORK/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 0.25; done
if ! docker info >/dev/null 2>&1; then
  tail -20 "$WORK/dockerd.log" >&2
  unavailable "dockerd did not start (log above)"
fi
docker version --format 'docker: client {{.Client.Version}}, daemon {{.Server.Version}}'
docker compose version
# leftovers of an interrupted earlier run
compose down -v --remove-orphans >/dev/null 2>&1 || true

. "$root/tests/deploy/images.sh"
base_images "$WORK"

stamp "CPU image"
t=$(date +%s)
docker build -q -t ecsnet:test --build-arg "ECSNET_REVISION=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)" \
  "$root" >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; fail "docker build"; }
build_s=$(($(date +%s) - t))
check_image ecsnet:test "$WORK"
check_cuda_variant

stamp "compose up on 127.0.0.1:$PORT"
compose -f "$root/deploy/docker-compose.gpu.yml" config -q || fail "the GPU overlay does not validate"
t=$(date +%s)
compose up -d --no-build --wait --wait-timeout 240 >"$WORK/up.log" 2>&1 ||
  { cat "$WORK/up.log"; fail "compose up"; }
up_s=$(($(date +%s) - t))
url="http://127.0.0.1:$PORT"
. "$root/tests/deploy/scenarios.sh"
check_routes
check_client_address
stamp "model version through /admin under load"
check_swap
stamp "SIGKILL a replica under load"
check_kill

stamp "compose down -v"
compose down -v --remove-orphans >/dev/null 2>&1 || fail "compose down"
[ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")" ] ||
  fail "containers left after down"
[ -z "$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")" ] ||
  fail "volumes left after down -v"
write_report
stamp "Kubernetes manifests (tests/deploy/k8s.sh)"
bash "$root/tests/deploy/k8s.sh" 2>&1 | grep -v '^# Warning: .* is deprecated'
stamp "done (build ${build_s}s, compose up ${up_s}s)"
