#!/usr/bin/env bash
# Builds and runs every test:
#   1. Release: everything; a short smoke run of the benchmark (benchmarks
#      are never timed tests) and the simulator's scenarios at 20 seeds each;
#   2. Debug: every test (simulator scenarios at 2 seeds each);
#   3. ASan+UBSan: every test (simulator scenarios at 1 seed each).
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)

echo "== release: build, benchmark smoke run, simulator scenarios (20 seeds)"
cmake --preset release >/dev/null
cmake --build --preset release -- -j"$jobs"
build/release/bench/raft_core_bench --benchmark_min_time=0.05 | tail -n 1
build/release/bench/snapshot_catchup_bench --keys=20000 | tail -n 1
RAFTKV_SIM_SEEDS=20 ctest --test-dir build/release -L '^sim$' -j"$jobs" \
  --output-on-failure --timeout 900

echo "== debug: all tests"
cmake --preset debug >/dev/null
cmake --build --preset debug -- -j"$jobs"
RAFTKV_SIM_SEEDS=2 ctest --test-dir build/debug -j"$jobs" --output-on-failure \
  --timeout 900

echo "== asan+ubsan: all tests"
cmake --preset asan >/dev/null
cmake --build --preset asan -- -j"$jobs"
RAFTKV_SIM_SEEDS=1 \
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/asan -j"$jobs" --output-on-failure --timeout 900
