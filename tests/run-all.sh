#!/usr/bin/env bash
# Runs every C test (ctest) and every Python test (pytest) against the build in
# $ECSNET_BUILD_DIR, keeps going when one part fails, and ends with one line of counts.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${ECSNET_BUILD_DIR:-$root/build}
export ECSNET_BUILD_DIR=$build OMP_WAIT_POLICY=passive
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

echo "== C tests (ctest)"
ctest --test-dir "$build" --output-on-failure -j2 2>&1 | tee "$log/ctest"
c_rc=${PIPESTATUS[0]}
c_total=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' "$log/ctest" | tail -1)
c_failed=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of.*/\1/p' "$log/ctest" | tail -1)
c_skipped=$(grep -c '\*\*\*Skipped\|Not Run (Disabled)' "$log/ctest" || true)
c_total=${c_total:-0}; c_failed=${c_failed:-0}
# ctest counts a skipped test among the passed ones
c_passed=$((c_total - c_failed - c_skipped))

echo "== Python tests (pytest)"
cd "$root"
"$root/.venv/bin/python" -m pytest tests/python -q -p no:cacheprovider 2>&1 | tee "$log/pytest"
p_rc=${PIPESTATUS[0]}
summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|error)' "$log/pytest" | tail -1)
count() { echo "$summary" | grep -oE "[0-9]+ $1" | grep -oE '[0-9]+' || echo 0; }
p_passed=$(count passed); p_failed=$(count failed); p_skipped=$(count skipped); p_errors=$(count error)
# pytest exits 5 when it collected nothing: not a failure of the suite as such
[ "$p_rc" -eq 5 ] && p_rc=0

passed=$((c_passed + p_passed))
failed=$((c_failed + p_failed + p_errors))
skipped=$((c_skipped + p_skipped))
echo
echo "C: $c_passed passed, $c_failed failed, $c_skipped skipped; Python: $p_passed passed, $((p_failed + p_errors)) failed, $p_skipped skipped"
echo "total: $passed passed, $failed failed, $skipped skipped"
[ "$c_rc" -eq 0 ] && [ "$p_rc" -eq 0 ] && [ "$failed" -eq 0 ]
