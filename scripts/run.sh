#!/usr/bin/env bash
# The main job. Until raftkv-server exists this builds the Release tree and
# runs the raft core benchmark (three RawNodes in one process); see README.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target raft_core_bench
if (($# == 0)); then
  set -- --benchmark_min_time=2 --benchmark_repetitions=3
fi
exec build/release/bench/raft_core_bench "$@"
