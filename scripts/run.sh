#!/usr/bin/env bash
# The main job: builds the Release tree and runs a local 3-member raftkv
# cluster on 127.0.0.1, laid out like etcd's Procfile:
#   infra1  client 127.0.0.1:2379   peer 127.0.0.1:2380
#   infra2  client 127.0.0.1:22379  peer 127.0.0.1:22380
#   infra3  client 127.0.0.1:32379  peer 127.0.0.1:32380
# Data in ./data/<name> (a restart resumes from it; rm -rf data for a fresh
# cluster), logs in ./data/<name>.log. Waits until every member answers,
# prints how to reach the cluster, and stays in the foreground until Ctrl-C,
# which stops the members cleanly.
#
#   scripts/run.sh           the cluster
#   scripts/run.sh --bench [benchmark flags]
#                            the raft core benchmark instead (three RawNodes
#                            in one process; see docs/benchmarks.md)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null

if [[ "${1:-}" == "--bench" ]]; then
  shift
  cmake --build --preset release --target raft_core_bench
  if (($# == 0)); then
    set -- --benchmark_min_time=2 --benchmark_repetitions=3
  fi
  exec build/release/bench/raft_core_bench "$@"
fi
if (($# != 0)); then
  echo "usage: scripts/run.sh [--bench [benchmark flags]]" >&2
  exit 2
fi

cmake --build --preset release --target raftkv-server raftkv
server=build/release/tools/raftkv_server/raftkv-server
cli=build/release/tools/raftkv_cli/raftkv

names=(infra1 infra2 infra3)
client_ports=(2379 22379 32379)
peer_ports=(2380 22380 32380)
cluster=""
for i in 0 1 2; do
  cluster+="${cluster:+,}${names[i]}=http://127.0.0.1:${peer_ports[i]}"
done
endpoints="127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379"

# Something already listening on our ports (an earlier run, or Debian's etcd
# service) would make a member fail; say so plainly.
for port in "${client_ports[@]}" "${peer_ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "run: 127.0.0.1:$port is already in use (an earlier run? Debian's" \
      "etcd service: systemctl disable --now etcd)" >&2
    exit 1
  fi
done

mkdir -p data
pids=()
stopping=0
stop_members() {
  ((stopping)) && return
  stopping=1
  echo
  echo "run: stopping the members"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # Clean shutdown is bounded in time; kill -9 loses nothing acknowledged.
  for _ in $(seq 100); do
    alive=0
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null && alive=1
    done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "run: stopped; data in ./data"
}
trap 'stop_members; exit 0' INT TERM
trap 'stop_members' EXIT

# Each member in its own process group (job control on while they start):
# a Ctrl-C reaches only this script, which then stops each member with one
# SIGTERM (a second signal makes raftkv-server exit at once).
set -m
for i in 0 1 2; do
  name=${names[i]}
  client_url=http://127.0.0.1:${client_ports[i]}
  peer_url=http://127.0.0.1:${peer_ports[i]}
  "$server" --name="$name" --data-dir="data/$name" \
    --listen-client-urls="$client_url" --advertise-client-urls="$client_url" \
    --listen-peer-urls="$peer_url" --initial-advertise-peer-urls="$peer_url" \
    --initial-cluster="$cluster" --initial-cluster-state=new \
    --initial-cluster-token=raftkv-local-cluster --log-level=info \
    >>"data/$name.log" 2>&1 &
  pids+=($!)
done
set +m

# Fails (with the member's log tail) if a member exited.
check_alive() {
  for i in 0 1 2; do
    if ! kill -0 "${pids[i]}" 2>/dev/null; then
      echo "run: ${names[i]} exited; the end of data/${names[i]}.log:" >&2
      tail -n 20 "data/${names[i]}.log" >&2
      exit 1
    fi
  done
}

echo "run: starting ${names[*]} (logs in data/<name>.log)"
# Ready when every member answers and one of them leads.
ready=0
for _ in $(seq 300); do
  check_alive
  if status=$("$cli" --endpoints="$endpoints" --dial-timeout=500ms \
    --command-timeout=1s status 2>/dev/null) && [[ $status == *", true, "* ]]; then
    ready=1
    break
  fi
  sleep 0.1
done
if ((!ready)); then
  echo "run: no leader, or not every member answers, after 30 s:" >&2
  "$cli" --endpoints="$endpoints" --dial-timeout=1s status >&2 || true
  echo "run: see data/<name>.log" >&2
  exit 1
fi
echo "$status"

cat <<EOF

The cluster is up: 3 members on 127.0.0.1 (clients: $endpoints).
  The raftkv CLI:
    $cli --endpoints=$endpoints put foo bar
    $cli --endpoints=$endpoints get foo
    $cli --endpoints=$endpoints get --prefix f
    $cli --endpoints=$endpoints del foo
    $cli --endpoints=$endpoints status
    $cli --endpoints=$endpoints member list
  etcdctl (Debian's etcd-client):
    ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:2379 put foo bar
    ETCDCTL_API=3 etcdctl --endpoints=$endpoints endpoint status
Ctrl-C stops the members (a new run resumes from ./data; rm -rf data to
start afresh).
EOF

# In the foreground until Ctrl-C, or until a member exits on its own.
while true; do
  wait -n "${pids[@]}" || true
  if ((stopping)); then break; fi
  check_alive
done
