#!/usr/bin/env bash
# tests/bench/contention.sh - the engine beside a competing load: the training step and the
# small network's forward, for ecsnet and PyTorch on the same shapes and threads, first on the
# machine as it is ("idle") and then while a second process keeps every core busy ("loaded":
# `bench_peak N --busy`, FMA loops on N threads, the way a training job competes with a serving
# process). Prints the medians of each phase and the slowdown loaded / idle of each framework.
#
# A benchmark, not a test: nothing passes or fails on time. Each round runs every case once per
# framework (bench_engine and bench_torch.py, BENCH_RUNS timed runs each, their median) idle and
# then loaded, so that both phases of a round see the same background on a shared machine; the
# order of the frameworks alternates from round to round, and a phase's figure is the median of
# its rounds' medians. Settings (environment):
#   ECSNET_BUILD_DIR  build with bin/bench_engine and bin/bench_peak (default ./build)
#   ECSNET_PYTHON     interpreter with torch (default ./.venv/bin/python)
#   BENCH_THREADS     threads for both frameworks (2)      BENCH_ROUNDS  rounds per phase (5)
#   BENCH_RUNS        timed runs per case and round (15)   BENCH_CASES   "train small"
#   BENCH_LOAD        threads of the competing process (default: every core, nproc)
#   OMP_WAIT_POLICY   passive unless set, as ecsnet-server and ecsnet run (docs/server.md)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${ECSNET_BUILD_DIR:-$root/build}
py=${ECSNET_PYTHON:-$root/.venv/bin/python}
threads=${BENCH_THREADS:-2}
rounds=${BENCH_ROUNDS:-5}
runs=${BENCH_RUNS:-15}
cases=${BENCH_CASES:-train small}
load=${BENCH_LOAD:-$(nproc)}

for b in bench_engine bench_peak; do
  if [[ ! -x $build/bin/$b ]]; then
    echo "contention.sh: $build/bin/$b is missing: build first (make build)" >&2
    exit 1
  fi
done
have_torch=0
if "$py" -c 'import torch' 2>/dev/null; then have_torch=1; fi
[[ $have_torch == 1 ]] || echo "contention.sh: no torch in $py: ecsnet only" >&2

out=$(mktemp)
load_pid=
cleanup() {
  [[ -z $load_pid ]] || kill "$load_pid" 2>/dev/null || true
  rm -f "$out"
}
trap cleanup EXIT
export OMP_NUM_THREADS=$threads
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

engine() { "$build/bin/bench_engine" "$1" --runs "$runs" --threads "$threads" 2>/dev/null; }
torch_run() {
  [[ $have_torch == 1 ]] || return 0
  "$py" "$here/bench_torch.py" "$1" --runs "$runs" --threads "$threads" --no-ort
}

measure() { # phase round
  for c in $cases; do
    if (($2 % 2 == 0)); then
      engine "$c" | sed "s/^/phase=$1 impl=ecs /" >>"$out"
      torch_run "$c" | sed "s/^/phase=$1 /" >>"$out"
    else
      torch_run "$c" | sed "s/^/phase=$1 /" >>"$out"
      engine "$c" | sed "s/^/phase=$1 impl=ecs /" >>"$out"
    fi
  done
}

bash "$here/cpu.sh" "$build"
echo "contention.sh: $rounds rounds of $cases, idle then loaded (OMP_WAIT_POLICY=$OMP_WAIT_POLICY)" >&2
for ((r = 0; r < rounds; r++)); do
  measure idle "$r"
  "$build/bin/bench_peak" "$load" --busy &
  load_pid=$!
  sleep 0.5
  measure loaded "$r"
  kill "$load_pid" 2>/dev/null || true
  wait "$load_pid" 2>/dev/null || true
  load_pid=
done
"$py" "$here/report.py" --contention "$out" 2>/dev/null || python3 "$here/report.py" --contention "$out"
