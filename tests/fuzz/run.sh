#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang in their own build directory
# and runs each for a while. CI calls this; a crash, leak or sanitizer report fails it.
#
# Usage: tests/fuzz/run.sh [SECONDS_PER_TARGET]   (default 20; or FUZZ_SECONDS)
# Crash inputs are left in build-fuzz/artifacts/ for reproduction: build-fuzz/bin/NAME FILE.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
secs=${1:-${FUZZ_SECONDS:-${ECSNET_FUZZ_SECONDS:-20}}}
build=${ECSNET_FUZZ_BUILD_DIR:-$root/build-fuzz}
jobs=${ECSNET_JOBS:-2}

if ! command -v clang >/dev/null 2>&1; then
  echo "fuzz/run.sh: clang is missing (deploy/install-deps.sh installs it)" >&2
  exit 1
fi

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DECSNET_FUZZ=ON -DECSNET_TESTS=ON -DECSNET_CUDA=OFF -DECSNET_WERROR=OFF >"$build.log" 2>&1 ||
  { cat "$build.log" >&2; exit 1; }

targets=()
for src in "$root"/tests/fuzz/fuzz_*.c; do
  targets+=("$(basename "$src" .c)")
done
cmake --build "$build" -j"$jobs" --target "${targets[@]}" >>"$build.log" 2>&1 ||
  { tail -50 "$build.log" >&2; exit 1; }

mkdir -p "$build/artifacts"
status=0
for t in "${targets[@]}"; do
  # A scratch corpus seeded from the checked-in one, so runs never write into the source.
  corpus="$build/corpus/$t"
  mkdir -p "$corpus"
  if [ -d "$root/tests/fuzz/corpus/$t" ]; then cp -n "$root/tests/fuzz/corpus/$t"/* "$corpus"/ 2>/dev/null || true; fi
  echo "fuzz: $t for ${secs}s"
  if ! "$build/bin/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" "$corpus" \
      >"$build/$t.log" 2>&1; then
    echo "fuzz: $t FAILED (log: $build/$t.log)" >&2
    tail -40 "$build/$t.log" >&2
    status=1
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$build/$t.log" | sed "s/^/  /"
  fi
done
exit $status
