#!/usr/bin/env bash
# Counts the instructions one process spends on a fixed workload, with
# valgrind's callgrind: the deterministic measure behind the fourth round of
# docs/benchmarks.md (wall-clock runs on a shared 2-core machine drift by
# tens of percent).
#
#   scripts/callgrind_profile.sh MODE OUT [BUILD_DIR]
#
# Starts a 3-member raftkv cluster on loopback (ports 45379-45580) in a
# temporary directory, and profiles:
#   reads  member 1, the leader, while it serves 20,000 serializable point
#          reads from 64 clients over 8 connections (20,000 keys loaded
#          first);
#   puts   member 1, the leader, during 5,000 puts from 64 clients over 8 connections to it, after
#          3,000 warm-up puts;
#   lreads the same with linearizable reads;
#   bench  raftkv-bench itself, issuing 20,000 serializable reads spread
#          over the three members.
# The counters are zeroed after the warm-up and dumped after the measured
# requests, into OUT (callgrind writes OUT.1 for the dump). Member 1 leads
# in reads and puts: the others get a 30 s election timeout. Read it with
#   callgrind_annotate --inclusive=yes OUT.1
# BUILD_DIR defaults to build/release (a Release build with the tools).
# Needs valgrind (apt-get install valgrind). Every process is killed and
# the temporary directory removed on exit.
set -euo pipefail

usage() {
  echo "usage: $0 reads|lreads|puts|bench OUT [BUILD_DIR]" >&2
  exit 2
}
[[ $# -ge 2 ]] || usage
mode=$1
out=$2
build=${3:-build/release}
case $mode in reads | lreads | puts | bench) ;; *) usage ;; esac
command -v valgrind >/dev/null || {
  echo "$0: valgrind is not installed (apt-get install valgrind)" >&2
  exit 1
}
server=$build/tools/raftkv_server/raftkv-server
bench=$build/tools/raftkv_bench/raftkv-bench
for b in "$server" "$bench"; do
  [[ -x $b ]] || {
    echo "$0: $b not found: build the tools first" >&2
    exit 1
  }
done

tmp=$(mktemp -d /tmp/raftkv-callgrind.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 2
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

cluster="r1=http://127.0.0.1:45380,r2=http://127.0.0.1:45480,r3=http://127.0.0.1:45580"
for i in 1 2 3; do
  cport=$((45279 + i * 100))
  pport=$((45280 + i * 100))
  wrap=()
  timing=()
  if [[ $i == 1 && $mode != bench ]]; then
    wrap=(valgrind --tool=callgrind "--callgrind-out-file=$out")
  fi
  if [[ $mode != bench ]]; then
    # Member 1 leads: the others wait far longer before campaigning.
    if [[ $i == 1 ]]; then timing=(--election-timeout=3000); else timing=(--election-timeout=30000); fi
  fi
  "${wrap[@]}" "$server" --name=r$i --data-dir="$tmp/r$i" \
    --listen-client-urls=http://127.0.0.1:$cport \
    --advertise-client-urls=http://127.0.0.1:$cport \
    --listen-peer-urls=http://127.0.0.1:$pport \
    --initial-advertise-peer-urls=http://127.0.0.1:$pport \
    --initial-cluster="$cluster" --initial-cluster-state=new \
    --log-level=warn "${timing[@]}" >"$tmp/r$i.log" 2>&1 &
  pids+=($!)
done
sleep 8

m1=127.0.0.1:45379
all=127.0.0.1:45379,127.0.0.1:45479,127.0.0.1:45579
common=(--clients=64 --conns=8 --key-size=8 --val-size=256 --key-space-size=20000)
case $mode in
  reads | lreads)
    consistency=s
    [[ $mode == lreads ]] && consistency=l
    "$bench" --endpoints=$m1 "${common[@]}" --total=20000 --sequential-keys \
      --seed=7 --mode=put | tail -1
    callgrind_control -z "${pids[0]}" >/dev/null
    "$bench" --endpoints=$m1 "${common[@]}" --total=20000 --seed=8 \
      --mode=range --consistency=$consistency | tail -1
    callgrind_control -d "${pids[0]}" >/dev/null
    ;;
  puts)
    "$bench" --endpoints=$m1 "${common[@]}" --total=3000 --seed=7 \
      --mode=put | tail -1
    callgrind_control -z "${pids[0]}" >/dev/null
    "$bench" --endpoints=$m1 "${common[@]}" --total=5000 --seed=8 \
      --mode=put | tail -1
    callgrind_control -d "${pids[0]}" >/dev/null
    ;;
  bench)
    "$bench" --endpoints=$all "${common[@]}" --total=20000 --sequential-keys \
      --seed=7 --mode=put | tail -1
    valgrind --tool=callgrind "--callgrind-out-file=$out.1" "$bench" \
      --endpoints=$all "${common[@]}" --total=20000 --seed=8 --mode=range \
      --consistency=s 2>&1 | grep -E "ops_per_s|I +refs"
    ;;
esac
sleep 1
echo "callgrind_profile: $mode: $out.1"
