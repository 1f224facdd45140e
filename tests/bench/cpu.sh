#!/usr/bin/env bash
# tests/bench/cpu.sh BUILD_DIR - one line naming the CPU the benchmarks run on: its model name,
# its cores, and the instruction set oneDNN's kernels use on it (oneDNN's own verbose report,
# which ONEDNN_MAX_CPU_ISA lowers), printed above the tables of run.sh and contention.sh.
set -euo pipefail
build=${1:-build}
model=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
isa=$(ONEDNN_VERBOSE=1 "$build/bin/bench_engine" small --runs 1 --size 64 --threads 1 2>/dev/null |
  grep -m1 ',isa:' | sed 's/.*,isa://' || true)
echo "cpu: ${model:-unknown}, $(nproc) cores; oneDNN ISA: ${isa:-unknown}${ONEDNN_MAX_CPU_ISA:+ (ONEDNN_MAX_CPU_ISA=$ONEDNN_MAX_CPU_ISA)}"
