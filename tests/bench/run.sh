#!/usr/bin/env bash
# tests/bench/run.sh - `make bench`: the engine's CPU backend against the FMA peak, PyTorch and
# ONNX Runtime, on the same thread count, as one table under a line naming the CPU (model name,
# cores, oneDNN's ISA: tests/bench/cpu.sh); then the same beside a competing load
# (tests/bench/contention.sh), the server under HTTP load and training beside serving.
#
# Benchmarks, not tests: nothing here passes or fails on time. Every figure is the median of
# several runs (the machine may be shared and noisy); ratios are other time / our time, so
# above 1 means the engine is faster. Settings (environment):
#   ECSNET_BUILD_DIR  build with bin/bench_engine and bin/bench_peak (default ./build)
#   ECSNET_PYTHON     interpreter with torch and onnxruntime (default ./.venv/bin/python)
#   BENCH_THREADS     threads for every framework (2)       BENCH_RUNS       runs per case (5)
#   BENCH_R38_SIZE    resnet38d input size (448)             BENCH_R38_RUNS   its runs (3)
#   BENCH_CASES       which cases (default "conv resnet38d small train lite0")
#   BENCH_LITE0_SIZES lite0's input sides (225 321): ecsnet-imagenet-lite0's forward at batch 1
#                     (models/ecsnet-imagenet-lite0.safetensors; skipped, saying so, without it)
#   BENCH_CONTENTION, BENCH_SERVER, BENCH_ADMIN   0: skip contention.sh, server/, admin/
#   OMP_WAIT_POLICY   passive unless set: the deployment's setting (design.md); on a busy
#                     machine, spinning OpenMP threads take the cores their team waits for
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${ECSNET_BUILD_DIR:-$root/build}
py=${ECSNET_PYTHON:-$root/.venv/bin/python}
threads=${BENCH_THREADS:-2}
runs=${BENCH_RUNS:-5}
r38_size=${BENCH_R38_SIZE:-448}
r38_runs=${BENCH_R38_RUNS:-3}
cases=${BENCH_CASES:-conv resnet38d small train lite0}
lite0_sizes=${BENCH_LITE0_SIZES:-225 321}
lite0_model=$root/models/ecsnet-imagenet-lite0.safetensors

for b in bench_engine bench_peak; do
  if [[ ! -x $build/bin/$b ]]; then
    echo "run.sh: $build/bin/$b is missing: build first (make build)" >&2
    exit 1
  fi
done

have_torch=0 have_ort=0
if "$py" -c 'import torch' 2>/dev/null; then have_torch=1; fi
if "$py" -c 'import onnxruntime' 2>/dev/null; then have_ort=1; fi
[[ $have_torch == 1 ]] || echo "run.sh: no torch in $py: the PyTorch and ONNX Runtime columns stay empty" >&2

out=$(mktemp)
trap 'rm -f "$out"' EXIT
export OMP_NUM_THREADS=$threads
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

engine() { "$build/bin/bench_engine" "$@" --threads "$threads" | sed 's/^/impl=ecs /' >>"$out"; }
torch_run() {
  [[ $have_torch == 1 ]] || return 0
  local ort=()
  [[ $have_ort == 1 ]] || ort=(--no-ort)
  "$py" "$here/bench_torch.py" "$@" --threads "$threads" "${ort[@]}" >>"$out"
}

echo "run.sh: measuring the FMA peak on $threads threads (OMP_WAIT_POLICY=$OMP_WAIT_POLICY)" >&2
"$build/bin/bench_peak" "$threads" >>"$out"
for c in $cases; do
  echo "run.sh: $c" >&2
  case $c in
  conv) engine conv --runs "$runs"; torch_run conv --runs "$runs" --no-ort ;;
  resnet38d) engine resnet38d --runs "$r38_runs" --size "$r38_size"
             torch_run resnet38d --runs "$r38_runs" --size "$r38_size" ;;
  small) engine small --runs "$runs"; torch_run small --runs "$runs" ;;
  train) engine train --runs "$runs"; torch_run train --runs "$runs" --no-ort ;;
  lite0)
    if [[ ! -f $lite0_model || ! -x $build/bin/bench_lite0 ]]; then
      echo "run.sh: lite0: $lite0_model or bench_lite0 is missing (make build): skipped" >&2
      continue
    fi
    sz=() && for s in $lite0_sizes; do sz+=(--size "$s"); done
    "$build/bin/bench_lite0" "$lite0_model" --threads "$threads" --runs "$runs" "${sz[@]}" |
      sed 's/^/impl=ecs /' >>"$out"
    # shellcheck disable=SC2086
    torch_run lite0 --runs "$runs" --sizes $lite0_sizes ;;
  *) echo "run.sh: unknown case $c" >&2; exit 2 ;;
  esac
done
bash "$here/cpu.sh" "$build"
"$py" "$here/report.py" "$out" 2>/dev/null || python3 "$here/report.py" "$out"
# The training step and the small network beside a process that keeps every core busy.
[[ ${BENCH_CONTENTION:-1} == 0 ]] || ECSNET_BUILD_DIR=$build ECSNET_PYTHON=$py BENCH_THREADS=$threads bash "$here/contention.sh"
# The server under HTTP load (throughput, latency, overhead over the engine): its own script.
[[ ${BENCH_SERVER:-1} == 0 ]] || ECSNET_BUILD_DIR=$build ECSNET_PYTHON=$py BENCH_THREADS=$threads bash "$here/server/run.sh"
# Training on the serving engine: /cam latency idle and during an admin job (docs/admin.md).
[[ ${BENCH_ADMIN:-1} == 0 ]] || ECSNET_BUILD_DIR=$build ECSNET_PYTHON=$py BENCH_THREADS=$threads bash "$here/admin/run.sh"
