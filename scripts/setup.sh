#!/usr/bin/env bash
# Installs raftkv's build and test dependencies from Debian's packages on a
# fresh machine (run as root). On a machine that already has them it does
# nothing and returns at once.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git clang-format
  libprotobuf-dev protobuf-compiler libabsl-dev
  librocksdb-dev
  libgrpc++-dev protobuf-compiler-grpc
  libspdlog-dev libfmt-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libjemalloc-dev
  etcd-client etcd-server gnuplot-nox
)
# etcd-client: etcdctl, for the interop tests (tests/process); etcd-server:
# etcd itself, to compare against (scripts/bench_compare.sh, which draws its
# charts with gnuplot-nox). Debian's etcd-server package starts an
# etcd service on 127.0.0.1:2379/2380, the ports of scripts/run.sh's first
# member: it is stopped and disabled below right after the install.

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "setup: installing ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "setup: must run as root to install packages" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
if [[ " ${missing[*]} " == *" etcd-server "* ]] && [[ -d /run/systemd/system ]]; then
  systemctl disable --now etcd.service || true
fi
