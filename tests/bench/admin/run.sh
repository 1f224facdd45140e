#!/usr/bin/env bash
# tests/bench/admin/run.sh - /cam p50 latency with one closed-loop client, idle and while an
# admin training job runs on the same server (docs/admin.md records the figures). A benchmark,
# not a test: it fails only when the server or the job does. Settings (environment):
#   ECSNET_BUILD_DIR  build with bin/ecsnet-server and bin/ecsnet (default ./build)
#   ECSNET_PYTHON     interpreter with requests, numpy, Pillow (default ./.venv/bin/python)
#   BENCH_THREADS     the server's --threads (2); BENCH_TRAIN_THREADS its --train-threads (1)
#   BENCH_ADMIN_REQUESTS  requests per measurement (60)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
build=${ECSNET_BUILD_DIR:-$root/build}
py=${ECSNET_PYTHON:-$root/.venv/bin/python}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
for b in ecsnet-server ecsnet; do
  if [[ ! -x $build/bin/$b ]]; then
    echo "admin/run.sh: $build/bin/$b is missing: build first (make build)" >&2
    exit 1
  fi
done
echo "admin/run.sh: /cam latency idle and during a training job" >&2
"$py" "$here/bench_admin.py" --build "$build" --threads "${BENCH_THREADS:-2}" \
  --train-threads "${BENCH_TRAIN_THREADS:-1}" --requests "${BENCH_ADMIN_REQUESTS:-60}"
