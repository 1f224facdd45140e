#!/usr/bin/env bash
# The reliability checks against the real binary (tests/reliability/): the soak, SIGKILL crash
# consistency and a full disk. CI runs the short version (a 2-minute soak); `make soak` the
# 20-minute one. Results (with the RSS/descriptor curve) go to $BUILD/reliability/*.json.
#
# Usage: tests/reliability/run.sh [SOAK_MINUTES]   (default 2; or ECSNET_SOAK_MINUTES)
#        ECSNET_RELIABILITY=soak|crash|diskfull runs one of them.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${ECSNET_BUILD_DIR:-$root/build}
minutes=${1:-${ECSNET_SOAK_MINUTES:-2}}
only=${ECSNET_RELIABILITY:-all}
py=$root/.venv/bin/python
out=$build/reliability
mkdir -p "$out"
export ECSNET_BUILD_DIR=$build OMP_WAIT_POLICY=passive
for b in ecsnet ecsnet-server; do
  [ -x "$build/bin/$b" ] || { echo "reliability: $build/bin/$b is missing (make build)" >&2; exit 1; }
done

status=0
if [ "$only" = all ] || [ "$only" = crash ]; then
  echo "reliability: crash consistency (10 SIGKILLs in a training job, 3 amid activations)"
  "$py" "$root/tests/reliability/crash.py" --kills 10 --activation-kills 3 \
    --json "$out/crash.json" || status=1
fi
if [ "$only" = all ] || [ "$only" = diskfull ]; then
  echo "reliability: disk full (a small tmpfs)"
  rc=0
  ECSNET_DISKFULL_JSON=$out/diskfull.json "$py" "$root/tests/reliability/diskfull.py" || rc=$?
  if [ "$rc" -eq 77 ]; then echo "reliability: disk full skipped (no mount namespace here)"
  elif [ "$rc" -ne 0 ]; then status=1; fi
fi
if [ "$only" = all ] || [ "$only" = soak ]; then
  echo "reliability: soak for $minutes min"
  "$py" "$root/tests/reliability/soak.py" --minutes "$minutes" --json "$out/soak-${minutes}min.json" |
    grep -v '^soak \[' || status=1
fi
exit $status
