#!/usr/bin/env bash
# Builds and runs every test:
#   1. Release: everything; short smoke runs of the benchmarks and tools
#      (benchmarks are never timed tests); every test, the simulator's
#      scenarios at 20 seeds each;
#   2. ASan+UBSan (a Debug build, assertions on): every test, the
#      simulator's scenarios at 1 seed each. (A plain Debug pass would repeat
#      this one without the sanitizers, so there is none.)
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)

echo "== release: build, smoke runs, all tests (simulator scenarios at 20 seeds)"
cmake --preset release >/dev/null
cmake --build --preset release -- -j"$jobs"
build/release/bench/raft_core_bench --benchmark_min_time=0.05 | tail -n 1
build/release/bench/snapshot_catchup_bench --keys=20000 | tail -n 1
scripts/bench_compare.sh --quick --raftkv-only --build-dir build/release | tail -n 1
RAFTKV_SIM_SEEDS=20 ctest --test-dir build/release -j"$jobs" \
  --output-on-failure --timeout 900

echo "== asan+ubsan: all tests"
cmake --preset asan >/dev/null
cmake --build --preset asan -- -j"$jobs"
RAFTKV_SIM_SEEDS=1 \
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/asan -j"$jobs" --output-on-failure --timeout 900
