#!/usr/bin/env bash
# GPU check: builds the engine-only CUDA configuration (the engine and the CUDA backend module
# build-gpu/lib/libecsnet-cuda.so), compares every op on cuda:0 with the reference kernels and
# a whole ECS-Net training step and inference with the CPU, and benchmarks resnet38d against
# PyTorch + cuDNN on the same GPU.
#
# Everything before the GPU steps also runs on a machine without a GPU (CI runs it so): the
# build, the module's checks, and the comparison harness on the CPU; then the check stops with
# status 77.
#
# For a fresh machine with an NVIDIA GPU, nvcc, CMake, a C compiler and PyTorch with CUDA, and
# cuDNN as the nvidia-cudnn-cu13 wheel in Python's site-packages; none of our Debian libraries
# and no network. Everything fits in about 10 minutes: each step gets what is left of the budget.
#
# Usage: tests/gpu/check.sh            (from anywhere; builds in <repo>/build-gpu)
# Environment: ECSNET_CUDNN_ROOT (where cudnn.h and libcudnn.so.9 live; default: found through
#   python3), PYTHON (default python3), CHECK_BUDGET_S (570), CHECK_JOBS (16),
#   CHECK_WERROR (OFF: another compiler version may warn where CI's does not),
#   CHECK_BENCH (1; 0 skips the benchmark), ECSNET_CUDA_ARCHS (90).
# Exit status: 0 all passed, 1 a step failed, 77 no GPU answered (the CPU steps passed).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${ECSNET_GPU_BUILD:-$root/build-gpu}
py=${PYTHON:-python3}
budget=${CHECK_BUDGET_S:-570}
jobs=${CHECK_JOBS:-16}
start=$(date +%s)
failed=()
mkdir -p "$build"
log=$build/gpu-check.log
: >"$log"

say() { echo "== [$(( $(date +%s) - start ))s] $*" | tee -a "$log"; }
left() { echo $(( budget - ($(date +%s) - start) )); }
# step NAME CAP_S CMD...: runs CMD with at most min(CAP_S, time left), its output to the log,
# the terminal and, when STEP_OUT names a file, that file. Returns the command's status (124:
# timed out).
step() {
  local name=$1 cap=$2
  shift 2
  local t
  t=$(left)
  [ "$t" -gt "$cap" ] && t=$cap
  if [ "$t" -le 5 ]; then
    say "$name: no time left in the ${budget}s budget"
    return 124
  fi
  say "$name (at most ${t}s)"
  timeout --kill-after=5 "$t" "$@" 2>&1 | tee -a "$log" ${STEP_OUT:+"$STEP_OUT"}
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && say "$name: stopped after ${t}s"
  return "$rc"
}
# why STATUS: a failure's wording
why() { case $1 in 124|137) echo "timed out" ;; *) echo "exit $1" ;; esac; }

# ---- the machine ------------------------------------------------------------------------
say "GPU check of $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo 'a working tree')"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi -L 2>&1 | tee -a "$log"
fi

nvcc=$(command -v nvcc || true)
[ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc
if [ -z "$nvcc" ]; then
  say "no nvcc found (PATH, /usr/local/cuda/bin)"
  exit 1
fi

# cuDNN: the nvidia-cudnn-cu13 wheel's folder (nvidia.cudnn may be a namespace package, so ask
# for its __path__), else a cudnn.h beside the toolkit.
cudnn=${ECSNET_CUDNN_ROOT:-}
if [ -z "$cudnn" ]; then
  cudnn=$("$py" - <<'EOF' 2>/dev/null
import os
try:
    import nvidia.cudnn as m
    for p in list(getattr(m, "__path__", [])) + [os.path.dirname(getattr(m, "__file__", "") or "")]:
        if p and os.path.exists(os.path.join(p, "include", "cudnn.h")):
            print(p)
            break
except ImportError:
    pass
EOF
)
fi
if [ -z "$cudnn" ]; then
  for d in /usr/local/cuda /usr; do
    if [ -f "$d/include/cudnn.h" ]; then cudnn=$d; break; fi
  done
fi
if [ -z "$cudnn" ]; then
  say "cuDNN not found: set ECSNET_CUDNN_ROOT, or install nvidia-cudnn-cu13 for $py"
  exit 1
fi
say "nvcc: $nvcc ($("$nvcc" --version | tail -1)); cuDNN: $cudnn"
# cuDNN 9 loads its sub-libraries (libcudnn_cnn.so.9, ...) at run time from the search path
export LD_LIBRARY_PATH="$cudnn/lib:$cudnn/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# ---- build ------------------------------------------------------------------------------
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
[ -f "$build/CMakeCache.txt" ] && gen=() # keep the generator of an existing build folder
step "configure (engine only, CUDA on)" 120 cmake -S "$root" -B "$build" "${gen[@]}" \
  -DCMAKE_BUILD_TYPE=Release -DECSNET_ENGINE_ONLY=ON -DECSNET_DNNL=OFF -DECSNET_CUDA=ON \
  -DECSNET_CUDNN_ROOT="$cudnn" -DCMAKE_CUDA_COMPILER="$nvcc" \
  -DECSNET_CUDA_ARCHS="${ECSNET_CUDA_ARCHS:-90}" -DECSNET_WERROR="${CHECK_WERROR:-OFF}" ||
  failed+=("configure ($(why $?))")
if [ ${#failed[@]} -eq 0 ] && ! grep -q '^cuda=ON' "$build/ecsnet-config.txt"; then
  failed+=("configure (the CUDA backend is off)")
fi
if [ ${#failed[@]} -eq 0 ]; then
  # the engine, the CUDA backend module and the programs this check runs; the cmocka tests
  # are not built here (cmocka is usually absent, and they run in CI)
  step "build" 240 cmake --build "$build" -j"$jobs" --target ecsengine ecsnet-cuda backend_check \
    model_check bench_gpu || failed+=("build ($(why $?))")
fi
# The programs link no CUDA library: they load the module, found beside them (bin/../lib).
module=$build/lib/libecsnet-cuda.so
if [ ${#failed[@]} -eq 0 ]; then
  if [ ! -f "$module" ]; then
    failed+=("build (no $module)")
  elif command -v ldd >/dev/null 2>&1; then
    for prog in backend_check model_check bench_gpu; do
      if ldd "$build/bin/$prog" | grep -E 'libcudart|libcudnn|libcublas' >>"$log"; then
        failed+=("build ($prog links CUDA libraries; only the module may)")
      fi
    done
    say "module $module: $(ldd "$module" | grep -cE 'libcudart|libcudnn|libcublas') CUDA libraries linked"
  fi
fi
if [ ${#failed[@]} -gt 0 ]; then
  say "FAILED: ${failed[*]}"
  exit 1
fi

# ---- the harness itself, on the CPU (no GPU needed) ----------------------------------------
step "comparison harness on the CPU: every op, cpu against cpu-ref" 60 "$build/bin/backend_check" cpu ||
  failed+=("harness on the CPU ($(why $?))")
if [ ${#failed[@]} -gt 0 ]; then
  say "FAILED: ${failed[*]}"
  exit 1
fi

# ---- op comparison ----------------------------------------------------------------------
step "backend comparison: every op, cuda:0 against cpu-ref" 150 "$build/bin/backend_check" cuda:0
rc=$?
if [ "$rc" -eq 77 ]; then
  if [ ${#failed[@]} -gt 0 ]; then
    say "FAILED: ${failed[*]}"
    exit 1
  fi
  say "no CUDA GPU answered: the CPU steps passed, the GPU was not checked"
  exit 77
fi
[ "$rc" -ne 0 ] && failed+=("backend comparison ($(why $rc))")

# ---- the model as a whole ---------------------------------------------------------------
# one ECS-Net training step and the server's inference call, small network and resnet38d, on
# cuda:0 against the CPU; TF32 reaches the backend both ways (ECSNET_TF32, --tf32)
for tf32 in 0 1; do
  out=$build/model-check-tf32-$tf32.txt
  : >"$out"
  STEP_OUT=$out step "model comparison: ECS-Net step and inference, cuda:0 against the CPU, TF32 $tf32" \
    180 env ECSNET_TF32=$tf32 "$build/bin/model_check" cuda:0 --tf32 $tf32 ||
    failed+=("model comparison TF32 $tf32 ($(why $?))")
done

# ---- benchmark --------------------------------------------------------------------------
results=$build/gpu-bench.txt
: >"$results"
if [ "${CHECK_BENCH:-1}" = 1 ]; then
  bargs=(--size 448 --batches 1,8,32 --train-batch 8 --iters 3 --warmup 1)
  for tf32 in 0 1; do
    out=$build/bench-engine-tf32-$tf32.txt
    STEP_OUT=$out step "engine benchmark, TF32 $tf32" 150 \
      env ECSNET_TF32=$tf32 "$build/bin/bench_gpu" "${bargs[@]}" ||
      failed+=("engine benchmark TF32 $tf32 ($(why $?))")
    grep '^RESULT' "$out" | sed "s/\$/ tf32=$tf32/" >>"$results"
    out=$build/bench-torch-tf32-$tf32.txt
    STEP_OUT=$out step "PyTorch benchmark, TF32 $tf32" 150 \
      "$py" "$root/tests/gpu/torch_bench.py" "${bargs[@]}" --tf32 $tf32 ||
      failed+=("PyTorch benchmark TF32 $tf32 ($(why $?))")
    grep '^RESULT' "$out" | sed "s/\$/ tf32=$tf32/" >>"$results"
  done
fi

# ---- summary ----------------------------------------------------------------------------
{
  echo
  echo "GPU check summary ($(( $(date +%s) - start ))s)"
  grep -E '^backend_check: [0-9]+ of' "$log" | tail -1
  for tf32 in 0 1; do
    m=$(grep -E '^model_check: [0-9]+ of' "$build/model-check-tf32-$tf32.txt" 2>/dev/null | tail -1)
    echo "TF32 $tf32: ${m:-model_check did not finish}"
  done
  if [ -s "$results" ]; then
    "$py" - "$results" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 5 or f[0] != "RESULT":
        continue
    who, what, batch, tf = f[1], f[2], int(f[3]), f[-1].split("=")[1]
    rows.setdefault((what, batch), {})[(who, tf)] = None if f[4] == "error" else float(f[4])
print(f"resnet38d 448x448, images/s (engine / PyTorch+cuDNN, ratio)")
print(f"{'pass':<8}{'batch':>6}  {'fp32 engine':>12}{'torch':>10}{'ratio':>7}  {'tf32 engine':>12}{'torch':>10}{'ratio':>7}")
def cell(v):  # a number, None for an error line, "-" when the step never reported
    return v if isinstance(v, str) else f"{v:.1f}" if v is not None else "error"
for (what, batch) in sorted(rows, key=lambda k: (k[0] != "fwd", k[1])):
    r = rows[(what, batch)]
    out = f"{what:<8}{batch:>6}"
    for tf in ("0", "1"):
        e, t = r.get(("engine", tf), "-"), r.get(("torch", tf), "-")
        ratio = f"{e / t:.2f}" if isinstance(e, float) and isinstance(t, float) and t > 0 else "-"
        out += f"  {cell(e):>12}{cell(t):>10}{ratio:>7}"
    print(out)
EOF
  fi
  if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}"
  else
    echo "all GPU checks passed"
  fi
} | tee -a "$log"
[ ${#failed[@]} -eq 0 ]
