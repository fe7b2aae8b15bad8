#!/usr/bin/env bash
# The tests that start processes (interrupts, overlapping, killed and resumed runs, progress, claims, object
# storage), run ROUNDS times in a row while every core is kept busy by something else. CI machines are shared:
# a test that waits for time instead of an event fails here first. Usage: scripts/stress_tests.sh [ROUNDS]
set -euo pipefail
rounds=${1:-5}
cd "$(dirname "$0")/.."
tests=(tests/commands/test_interrupts.py tests/pipeline/test_scale.py tests/pipeline/test_pack_parallel.py
       tests/pipeline/test_progress.py tests/core/test_claims.py tests/pipeline/test_object_storage.py)
only="interrupt or overlapping or killed or claim or ctrl_c or progress or counters or log_lines"
load=()
for _ in $(seq "$(nproc)"); do yes > /dev/null & load+=($!); done
trap 'kill "${load[@]}" 2>/dev/null || true' EXIT
echo "stress: $rounds rounds of ${#tests[@]} test modules, with $(nproc) cores busy"
for round in $(seq "$rounds"); do
  started=$(date +%s)
  summary=$(.venv/bin/python -m pytest -q -p no:cacheprovider -k "$only" "${tests[@]}" 2>&1 | tail -n 1)
  echo "round $round: $summary (wall $(( $(date +%s) - started )) s)"
  case "$summary" in *failed*|*error*) exit 1 ;; esac
done
