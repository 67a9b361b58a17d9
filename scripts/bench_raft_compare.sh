#!/usr/bin/env bash
# Compares the throughput of raftkv's raft core with etcd/raft's on this
# machine, offline, with the same workload on both sides:
#   ours:   bench/raft_core_bench.cc (Release build, Google Benchmark)
#   theirs: bench/etcd_raft/main.go  (etcd 3.4 raft from Debian, Go)
# Three nodes in one process on MemoryStorage, messages delivered at once;
# the leader proposes 256-byte entries in rounds of 64 (and of 1), each round
# driven until quiet; the rate is entries committed and applied per second.
#
# Steps:
#   1. installs golang-go and golang-etcd-server-dev if missing (root only;
#      like setup.sh, it checks dpkg-query first and only then runs apt-get);
#   2. builds raft_core_bench (cmake release preset) and the Go program, in
#      GOPATH mode against /usr/share/gocode (no Go module proxy needed), into
#      build/etcd_raft_bench;
#   3. runs ours (min time 2 s, 3 repetitions, median), then theirs (same);
#   4. prints both outputs, then a side-by-side table with the machine's
#      details (go version, etcd package version, nproc, CPU model, load).
# Figures are wall-clock throughput: on a shared or busy machine they are
# noisy, so compare runs made together and look at the load averages.
set -euo pipefail
cd "$(dirname "$0")/.."

go_packages=(golang-go golang-etcd-server-dev)
missing=()
for p in "${go_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} > 0)); then
  echo "bench_raft_compare: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "bench_raft_compare: must run as root to install packages" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi

jobs=$(nproc)

echo "== build: raft_core_bench (release)"
cmake --preset release >/dev/null
cmake --build --preset release --target raft_core_bench -- -j"$jobs"

echo "== build: etcd_raft_bench (Go, GOPATH mode)"
# The etcd raft package and its dependencies come from Debian's golang-*-dev
# packages under /usr/share/gocode; bench/etcd_raft lives outside any GOPATH
# and is built as a local package, which GOPATH mode allows.
GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS='' \
  GOCACHE="$PWD/build/go-cache" \
  go build -o build/etcd_raft_bench ./bench/etcd_raft

load_before=$(uptime)

echo "== run: raftkv raft core"
ours_out=$(build/release/bench/raft_core_bench \
  --benchmark_min_time=2 --benchmark_repetitions=3)
echo "$ours_out"

echo "== run: etcd/raft"
theirs_out=$(build/etcd_raft_bench -min_time=2s -repetitions=3)
echo "$theirs_out"

load_after=$(uptime)

# Reads N from "batchB_entries_per_s=N" in the summary line of an output.
rate() {
  local out=$1 batch=$2 v
  v=$(tail -n 1 <<<"$out" | tr ' ' '\n' | sed -n "s/^batch${batch}_entries_per_s=//p")
  if [[ -z $v ]]; then
    echo "bench_raft_compare: no batch${batch} rate in output" >&2
    exit 1
  fi
  echo "$v"
}

echo
echo "== raft core throughput (entries committed and applied per second;"
echo "   median of 3 repetitions of >= 2 s each; ratio = raftkv / etcd)"
printf '%-10s | %16s | %19s | %6s\n' "batch size" "raftkv entries/s" "etcd/raft entries/s" "ratio"
printf '%-10s-+-%16s-+-%19s-+-%6s\n' "----------" "----------------" "-------------------" "------"
for batch in 64 1; do
  ours=$(rate "$ours_out" "$batch")
  theirs=$(rate "$theirs_out" "$batch")
  ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
  printf '%-10s | %16s | %19s | %6s\n' "$batch" "$ours" "$theirs" "$ratio"
done
echo
echo "go:     $(go version)"
echo "etcd:   $(dpkg-query -W golang-etcd-server-dev)"
echo "nproc:  $(nproc)"
echo "cpu:    $(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)"
echo "load before runs: ${load_before}"
echo "load after runs:  ${load_after}"
