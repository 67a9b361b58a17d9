#!/usr/bin/env bash
# Builds and runs every test:
#   1. a Release build of the benchmarks and a short smoke run of each
#      (proves they work; benchmarks are never timed tests);
#   2. a Debug build with every test;
#   3. an ASan+UBSan build with every test.
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)

echo "== release: benchmark smoke run"
cmake --preset release >/dev/null
cmake --build --preset release --target raft_core_bench -- -j"$jobs"
build/release/bench/raft_core_bench --benchmark_min_time=0.05 | tail -n 1

echo "== debug: all tests"
cmake --preset debug >/dev/null
cmake --build --preset debug -- -j"$jobs"
ctest --test-dir build/debug -j"$jobs" --output-on-failure --timeout 600

echo "== asan+ubsan: all tests"
cmake --preset asan >/dev/null
cmake --build --preset asan -- -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/asan -j"$jobs" --output-on-failure --timeout 900
