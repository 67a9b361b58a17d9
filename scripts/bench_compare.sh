#!/usr/bin/env bash
# Compares raftkv-server with etcd 3.4 side by side on this machine (issue 7):
# the same load generator (tools/raftkv_bench, etcd's v3 KV API), the same
# workloads, both clusters in one run.
#
#   scripts/bench_compare.sh [--quick] [--raftkv-only] [--build-dir DIR]
#                            [--jobs N]
#
#   --quick        small totals and a 1,000-key space: a smoke run of a few
#                  seconds; results go to the temporary directory, not docs/,
#                  and any request error fails the script
#   --raftkv-only  no etcd (nothing installed, no ratios, no charts)
#   --build-dir    the Release build tree to use (default build/release, the
#                  "release" preset); configured if it has no CMakeCache.txt
#   --jobs         parallel build jobs (default: nproc)
#
# Steps:
#   1. installs etcd-server (and gnuplot-nox for the charts) from Debian if
#      /usr/bin/etcd (/usr/bin/gnuplot) is missing: root only, checked first,
#      as scripts/setup.sh does;
#   2. builds raftkv-server, raftkv-bench and the raftkv CLI (Release);
#   3. starts, in a fresh temporary directory, a 3-member etcd on
#      127.0.0.1:42379/42479/42579 (peers 42380/42480/42580) and a 3-member
#      raftkv on 127.0.0.1:41379/41479/41579 (peers 41380/41480/41580), both
#      with their default timing (heartbeat 100 ms, election 1 s).
#      Durability is the same: etcd 3.4 fsyncs its WAL before it acknowledges
#      a write (its default; --unsafe-no-fsync is not given), and raftkv's
#      raft engine syncs every Ready's writes before their entries count as
#      persisted;
#   4. waits for both, loads every key of the key space into each (sequential
#      puts), then runs each workload on etcd and on raftkv back to back
#      (alternating which goes first), recording the load average with each
#      row:
#        put    1 client,   1 connection
#        put   64 clients,  8 connections
#        put  256 clients, 16 connections
#        range 64 clients,  8 connections, linearizable
#        range 64 clients,  8 connections, serializable
#      and the client sweep of puts for the charts (1, 8, 32, 64, 128, 256
#      clients; connections clients/8, at least 1, at most 16: the rows above
#      are reused for 1, 64 and 256). Keys 8 B, values 256 B, key space
#      100,000. The endpoints are given leader first, so one connection talks
#      to the leader; more connections spread over all three members;
#   5. prints a side-by-side table: ops/s and p99 of each side and their
#      ratios (raftkv / etcd), and the resident memory (VmRSS, and the peak
#      VmHWM) of each server process after the run;
#   6. writes docs/bench/etcd.csv, docs/bench/raftkv.csv (raftkv-bench's rows),
#      docs/bench/sweep.csv and docs/bench/memory.csv, and draws
#      docs/bench/throughput_vs_clients.png and docs/bench/p99_vs_clients.png
#      with gnuplot.
# Every process started here is killed and the temporary directory removed
# on exit (trap), also on failure or Ctrl-C.
#
# Figures are wall-clock rates on a machine whose cores the clusters and the
# load generator share: compare the two sides of one run, and look at the
# load averages.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

quick=0
raftkv_only=0
build_dir=build/release
jobs=$(nproc)
while (($# > 0)); do
  case $1 in
    --quick) quick=1 ;;
    --raftkv-only) raftkv_only=1 ;;
    --build-dir) build_dir=$2; shift ;;
    --build-dir=*) build_dir=${1#--build-dir=} ;;
    --jobs) jobs=$2; shift ;;
    --jobs=*) jobs=${1#--jobs=} ;;
    *)
      echo "usage: scripts/bench_compare.sh [--quick] [--raftkv-only]" \
        "[--build-dir DIR] [--jobs N]" >&2
      exit 2
      ;;
  esac
  shift
done

log() { echo "bench_compare: $*"; }

# --- 1. packages -----------------------------------------------------------
missing=()
if ((!raftkv_only)); then
  [[ -x /usr/bin/etcd ]] || missing+=(etcd-server)
  if ((!quick)) && [[ ! -x /usr/bin/gnuplot ]]; then missing+=(gnuplot-nox); fi
fi
if ((${#missing[@]} > 0)); then
  log "installing ${missing[*]} from Debian"
  if [[ $(id -u) -ne 0 ]]; then
    echo "bench_compare: must run as root to install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian starts an etcd service on 2379/2380; we use other ports, but it
  # need not run.
  if [[ " ${missing[*]} " == *" etcd-server "* ]] &&
    command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
fi

# --- 2. build --------------------------------------------------------------
if [[ ! -f $build_dir/CMakeCache.txt ]]; then
  if [[ $build_dir == build/release ]]; then
    cmake --preset release >/dev/null
  else
    cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
fi
cmake --build "$build_dir" --target raftkv-server raftkv-bench raftkv -- \
  -j"$jobs" >/dev/null
server=$repo/$build_dir/tools/raftkv_server/raftkv-server
bench=$repo/$build_dir/tools/raftkv_bench/raftkv-bench
cli=$repo/$build_dir/tools/raftkv_cli/raftkv

# --- 3. clusters -----------------------------------------------------------
tmp=$(mktemp -d /tmp/raftkv-bench-compare.XXXXXX)
pids=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

systems=(raftkv)
((raftkv_only)) || systems=(etcd raftkv)
declare -A endpoints member_pids
raftkv_client_ports=(41379 41479 41579)
raftkv_peer_ports=(41380 41480 41580)
etcd_client_ports=(42379 42479 42579)
etcd_peer_ports=(42380 42480 42580)

for port in "${raftkv_client_ports[@]}" "${raftkv_peer_ports[@]}" \
  "${etcd_client_ports[@]}" "${etcd_peer_ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "bench_compare: 127.0.0.1:$port is already in use" >&2
    exit 1
  fi
done

# Starts the 3 members of system $1 (etcd | raftkv).
start_cluster() {
  local sys=$1 i name cluster="" eps="" client_url peer_url
  local -n cports=${sys}_client_ports pports=${sys}_peer_ports
  for i in 0 1 2; do
    cluster+="${cluster:+,}${sys:0:1}$((i + 1))=http://127.0.0.1:${pports[i]}"
    eps+="${eps:+,}127.0.0.1:${cports[i]}"
  done
  endpoints[$sys]=$eps
  mkdir -p "$tmp/$sys"
  for i in 0 1 2; do
    name=${sys:0:1}$((i + 1))
    client_url=http://127.0.0.1:${cports[i]}
    peer_url=http://127.0.0.1:${pports[i]}
    local -a flags=(--name="$name" --data-dir="$tmp/$sys/$name"
      --listen-client-urls="$client_url" --advertise-client-urls="$client_url"
      --listen-peer-urls="$peer_url" --initial-advertise-peer-urls="$peer_url"
      --initial-cluster="$cluster" --initial-cluster-state=new
      --initial-cluster-token="bench-$sys")
    if [[ $sys == etcd ]]; then
      /usr/bin/etcd "${flags[@]}" --logger=zap --log-level=warn \
        >"$tmp/$sys/$name.log" 2>&1 &
    else
      "$server" "${flags[@]}" --log-level=warn >"$tmp/$sys/$name.log" 2>&1 &
    fi
    pids+=($!)
    member_pids[$sys]+="${member_pids[$sys]:+ }$!"
  done
}

# Waits until system $1 has a leader and takes a write, then orders its
# endpoints leader first.
wait_ready() {
  local sys=$1 pid status leader rest ep
  for _ in $(seq 300); do
    for pid in ${member_pids[$sys]}; do
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "bench_compare: a $sys member exited; its logs:" >&2
        tail -n 20 "$tmp/$sys"/*.log >&2
        exit 1
      fi
    done
    if "$cli" --endpoints="${endpoints[$sys]}" --dial-timeout=500ms \
      --command-timeout=2s put bench-ready ok >/dev/null 2>&1; then
      status=$("$cli" --endpoints="${endpoints[$sys]}" --dial-timeout=1s \
        status 2>/dev/null || true)
      leader=$(awk -F', ' '$5 == "true" {print $1}' <<<"$status" | head -n 1)
      if [[ -n $leader ]]; then
        rest=""
        for ep in ${endpoints[$sys]//,/ }; do
          [[ $ep == "$leader" ]] || rest+=",$ep"
        done
        endpoints[$sys]=$leader$rest
        return
      fi
    fi
    sleep 0.1
  done
  echo "bench_compare: $sys has no leader after 30 s; its logs:" >&2
  tail -n 20 "$tmp/$sys"/*.log >&2
  exit 1
}

for sys in "${systems[@]}"; do start_cluster "$sys"; done
for sys in "${systems[@]}"; do
  wait_ready "$sys"
  log "$sys is up (endpoints, leader first: ${endpoints[$sys]})"
done

# --- 4. workloads ----------------------------------------------------------
if ((quick)); then
  key_space=1000
  out_dir=$tmp/results
else
  key_space=100000
  out_dir=$repo/docs/bench
fi
mkdir -p "$out_dir"
for sys in "${systems[@]}"; do rm -f "$out_dir/$sys.csv"; done

# The totals of a workload: about 5-10 s each on etcd here.
total_for() { # clients
  if ((quick)); then
    echo 300
  elif (($1 == 1)); then
    echo 8000
  elif (($1 <= 8)); then
    echo 20000
  else
    echo 60000
  fi
}

declare -A ops p99 load_of
runs=0
errors_seen=0
# run_one SYS ROW CLIENTS CONNS [bench flags]: one raftkv-bench run; the
# result goes to ops[SYS,ROW] and p99[SYS,ROW].
run_one() {
  local sys=$1 row=$2 clients=$3 conns=$4 out last
  shift 4
  out=$("$bench" --endpoints="${endpoints[$sys]}" --clients="$clients" \
    --conns="$conns" --key-size=8 --val-size=256 --key-space-size="$key_space" \
    --seed=7 --csv="$out_dir/$sys.csv" "$@")
  last=$(tail -n 1 <<<"$out")
  if [[ ! $last =~ ^ops_per_s=([0-9]+)\ p50_ms=([0-9.]+)\ p99_ms=([0-9.]+)\ errors=([0-9]+)$ ]]; then
    echo "bench_compare: unexpected raftkv-bench output:" >&2
    echo "$out" >&2
    exit 1
  fi
  runs=$((runs + 1))
  ops[$sys,$row]=${BASH_REMATCH[1]}
  p99[$sys,$row]=${BASH_REMATCH[3]}
  if ((BASH_REMATCH[4] > 0)); then
    errors_seen=$((errors_seen + BASH_REMATCH[4]))
    echo "bench_compare: $sys $row: ${BASH_REMATCH[4]} errors:" >&2
    grep '^error:' <<<"$out" >&2 || true
  fi
  printf '  %-7s %-28s %s\n' "$sys" "$row" "$last"
}

pair=0
# run_pair ROW CLIENTS CONNS [bench flags]: the row on every system, the
# first system alternating from one row to the next.
run_pair() {
  local row=$1 order=("${systems[@]}") sys
  if ((${#systems[@]} == 2 && pair % 2 == 1)); then order=(raftkv etcd); fi
  pair=$((pair + 1))
  load_of[$row]=$(awk '{print $1}' /proc/loadavg)
  for sys in "${order[@]}"; do run_one "$sys" "$@"; done
}

log "loading $key_space keys into each cluster"
for sys in "${systems[@]}"; do
  "$bench" --endpoints="${endpoints[$sys]}" --clients=64 --conns=8 \
    --total="$key_space" --key-size=8 --val-size=256 \
    --key-space-size="$key_space" --sequential-keys --seed=7 | tail -n 1 |
    sed "s/^/  $sys load: /"
done
uptime_start=$(uptime)
log "workloads; $uptime_start"

rows=("put c1" "put c64" "put c256" "range-l c64" "range-s c64")
run_pair "put c1" 1 1 --mode=put --total="$(total_for 1)"
run_pair "put c64" 64 8 --mode=put --total="$(total_for 64)"
run_pair "put c256" 256 16 --mode=put --total="$(total_for 256)"
run_pair "range-l c64" 64 8 --mode=range --consistency=l \
  --total="$(total_for 64)"
run_pair "range-s c64" 64 8 --mode=range --consistency=s \
  --total="$(total_for 64)"
if ((quick)); then
  run_pair "txn-put c8" 8 2 --mode=txn-put --total="$(total_for 8)"
  rows+=("txn-put c8")
fi
sweep=(1 8 32 64 128 256)
for c in "${sweep[@]}"; do
  [[ -n ${ops[${systems[0]},put c$c]:-} ]] && continue
  conns=$((c / 8))
  ((conns < 1)) && conns=1
  ((conns > 16)) && conns=16
  run_pair "put c$c" "$c" "$conns" --mode=put --total="$(total_for "$c")"
done
uptime_end=$(uptime)

# --- 5. memory and the table -----------------------------------------------
declare -A rss_max hwm_max
: >"$out_dir/memory.csv.tmp"
echo "system,member,pid,vmrss_kib,vmhwm_kib" >"$out_dir/memory.csv.tmp"
for sys in "${systems[@]}"; do
  i=0
  rss_max[$sys]=0
  hwm_max[$sys]=0
  for pid in ${member_pids[$sys]}; do
    i=$((i + 1))
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
    echo "$sys,${sys:0:1}$i,$pid,$rss,$hwm" >>"$out_dir/memory.csv.tmp"
    ((rss > rss_max[$sys])) && rss_max[$sys]=$rss
    ((hwm > hwm_max[$sys])) && hwm_max[$sys]=$hwm
  done
done
mv "$out_dir/memory.csv.tmp" "$out_dir/memory.csv"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

echo
echo "== results ($(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo |
  sed 's/.*: //'); key 8 B, value 256 B, key space $key_space)"
echo "   start: $uptime_start"
echo "   end:   $uptime_end"
if ((raftkv_only)); then
  printf '| %-13s | %-5s | %12s | %10s |\n' workload load "raftkv ops/s" \
    "p99 ms"
  for row in "${rows[@]}" "put c8" "put c32" "put c128"; do
    [[ -n ${ops[raftkv,$row]:-} ]] || continue
    printf '| %-13s | %-5s | %12s | %10s |\n' "$row" "${load_of[$row]}" \
      "${ops[raftkv,$row]}" "${p99[raftkv,$row]}"
  done
  printf 'resident memory per member, KiB (VmRSS max / VmHWM max): %s / %s\n' \
    "${rss_max[raftkv]}" "${hwm_max[raftkv]}"
else
  printf '| %-13s | %-5s | %10s | %12s | %5s | %11s | %13s | %5s |\n' \
    workload load "etcd ops/s" "raftkv ops/s" ratio "etcd p99 ms" \
    "raftkv p99 ms" ratio
  printf '|%s|\n' "---------------|-------|------------|--------------|-------|-------------|---------------|-------"
  for row in "${rows[@]}" "put c8" "put c32" "put c128"; do
    printf '| %-13s | %-5s | %10s | %12s | %5s | %11s | %13s | %5s |\n' \
      "$row" "${load_of[$row]}" "${ops[etcd,$row]}" "${ops[raftkv,$row]}" \
      "$(ratio "${ops[raftkv,$row]}" "${ops[etcd,$row]}")" \
      "${p99[etcd,$row]}" "${p99[raftkv,$row]}" \
      "$(ratio "${p99[raftkv,$row]}" "${p99[etcd,$row]}")"
  done
  printf '| %-13s | %-5s | %10s | %12s | %5s |\n' "VmRSS max KiB" "" \
    "${rss_max[etcd]}" "${rss_max[raftkv]}" \
    "$(ratio "${rss_max[raftkv]}" "${rss_max[etcd]}")"
  printf '| %-13s | %-5s | %10s | %12s | %5s |\n' "VmHWM max KiB" "" \
    "${hwm_max[etcd]}" "${hwm_max[raftkv]}" \
    "$(ratio "${hwm_max[raftkv]}" "${hwm_max[etcd]}")"
  echo "memory per member:"
  column -t -s, "$out_dir/memory.csv" | sed 's/^/  /'
fi

# --- 6. charts -------------------------------------------------------------
if ((!raftkv_only)); then
  {
    echo "clients,etcd_ops_per_s,raftkv_ops_per_s,etcd_p99_ms,raftkv_p99_ms"
    for c in "${sweep[@]}"; do
      echo "$c,${ops[etcd,put c$c]},${ops[raftkv,put c$c]},${p99[etcd,put c$c]},${p99[raftkv,put c$c]}"
    done
  } >"$out_dir/sweep.csv"
  if command -v gnuplot >/dev/null 2>&1; then
    gnuplot <<EOF
set datafile separator ","
set terminal pngcairo size 800,500 font ",10"
set key top left
set grid
set logscale x 2
set xlabel "clients (put, 8 B keys, 256 B values; connections = clients/8, 1..16)"
set xrange [0.8:320]
set output "$out_dir/throughput_vs_clients.png"
set title "Throughput vs clients, 3 members on 127.0.0.1, $(nproc) shared cores"
set ylabel "ops/s"
set yrange [0:*]
plot "$out_dir/sweep.csv" every ::1 using 1:2 with linespoints lw 2 title "etcd 3.4.23", \
     "" every ::1 using 1:3 with linespoints lw 2 title "raftkv"
set output "$out_dir/p99_vs_clients.png"
set title "p99 latency vs clients, 3 members on 127.0.0.1, $(nproc) shared cores"
set ylabel "p99 latency (ms)"
plot "$out_dir/sweep.csv" every ::1 using 1:4 with linespoints lw 2 title "etcd 3.4.23", \
     "" every ::1 using 1:5 with linespoints lw 2 title "raftkv"
EOF
    log "charts: $out_dir/throughput_vs_clients.png, $out_dir/p99_vs_clients.png"
  else
    log "gnuplot is missing: no charts"
  fi
fi
if ((quick)); then
  # The last line: the smoke run's verdict.
  if ((errors_seen > 0)); then
    echo "bench_compare: quick run FAILED: $errors_seen requests failed" \
      "in $runs runs" >&2
    exit 1
  fi
  log "quick run ok: $runs raftkv-bench runs on ${systems[*]}, no errors"
else
  log "results in $out_dir"
fi
