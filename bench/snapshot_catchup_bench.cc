// snapshot_catchup_bench: a follower catching up by snapshot (issue 5).
//
// Three stores in one process on real disk (a fresh directory under /tmp,
// removed at the end), each run by a StoreDriver with a WorkerScheduler and
// a SnapDir, connected by one InProcessTransport (1 MiB snapshot chunks).
// Store 3 is cut off; N keys (--keys=N, default 1,000,000) with 256-byte
// incompressible values are loaded through raft, 1,000 puts per command
// and several commands in flight; a small raft_log_gc_count_limit makes the
// leader compact its log past store 3's last index. Then the measured part:
// store 3 is reconnected, and the clock runs until its applied index
// reaches the leader's and its kv engine holds the last key and a sample of
// others (all N keys and values are checked afterwards, untimed).
//
// Reported (Google Benchmark counters, manual time, one iteration):
//   MB_per_s            user data, N * (key + value) bytes / 10^6, per
//                       second of catch-up;
//   rss_growth_MiB      VmRSS sampled every ~10 ms during the catch-up: the
//                       maximum minus the value before. Sender AND receiver
//                       live in this one process, so this covers both
//                       stores together (stricter than a per-store bound);
//   vmhwm_MiB           VmHWM at the end, reset just before the catch-up
//                       (/proc/self/clear_refs) when the kernel allows it;
//   snap_file_MB        the size of the generated snapshot files;
//   phase counters      seconds from the reconnect until each step was seen
//                       by polling the snapshot directories every ~10 ms:
//                       gen_start_s (the leader's gen_ file appears),
//                       gen_done_s (it is finished), rcv_start_s (the
//                       receiver's rcv_ file appears), rcv_done_s (it is
//                       verified and renamed), rcv_gone_s (the receiver
//                       deleted it: ingested and the raft part persisted);
//                       -1 if the step was not seen (the catch-up ended
//                       before the next poll);
//   load_s              how long loading the N keys took (not measured).
// The same figures are printed on stderr as one line.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "raftstore/peer_storage.h"
#include "raftstore/store.h"
#include "raftstore/store_driver.h"
#include "storage/engine.h"
#include "storage/keys.h"
#include "storage/snap_files.h"
#include "storepb/raft_cmdpb.pb.h"

namespace raftkv::raftstore {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kRegion = 1;
constexpr uint64_t kLagging = 3;  // the store that catches up
constexpr size_t kKeySize = 16;
constexpr size_t kValueSize = 256;
constexpr int kPutsPerCommand = 1000;
constexpr int kCommandsInFlight = 8;
// Keeps the leader's log short: it compacts once 64 applied entries (64,000
// puts) pile up, keeping a window of 32; fewer for small runs, so that the
// log is compacted past the lagging store whatever the number of keys.
uint64_t GcCountLimit(int64_t keys) {
  int64_t commands = (keys + kPutsPerCommand - 1) / kPutsPerCommand;
  return static_cast<uint64_t>(std::clamp<int64_t>(commands / 4, 4, 64));
}
constexpr auto kTick = std::chrono::milliseconds(50);
constexpr auto kSetupWait = std::chrono::seconds(30);
constexpr auto kCatchUpWait = std::chrono::seconds(300);

// The number of keys, from --keys=N.
int64_t g_keys = 1'000'000;
// Set when a run found wrong data: the process then exits non-zero.
bool g_failed = false;

// The cluster's directory while it exists, for Die to remove.
std::string g_dir;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "snapshot_catchup_bench: %s\n", what.c_str());
  if (!g_dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(g_dir, ec);
  }
  std::abort();
}

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

std::string KeyOf(int64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "user%012lld", static_cast<long long>(i));
  return std::string(buf, kKeySize);
}

// 256 pseudo-random bytes determined by `i` (splitmix64), so that neither
// RocksDB's compression nor anything else can shrink the data.
std::string ValueOf(int64_t i) {
  std::string v(kValueSize, '\0');
  // Key i draws words 32i+1 .. 32i+32 of one splitmix64 sequence: no two
  // values share a run of bytes that a compressor could find.
  uint64_t x =
      static_cast<uint64_t>(i) * (kValueSize / 8) * 0x9E3779B97F4A7C15ULL;
  for (size_t off = 0; off < kValueSize; off += 8) {
    x += 0x9E3779B97F4A7C15ULL;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    std::memcpy(v.data() + off, &z, 8);
  }
  return v;
}

// A command of puts of keys [first, first + count) addressed to the peer on
// `store_id` (peer i lives on store i; epoch (1, 1) of InitialRegion).
raft_cmdpb::RaftCmdRequest PutBatch(uint64_t store_id, int64_t first,
                                    int64_t count) {
  raft_cmdpb::RaftCmdRequest req;
  auto* h = req.mutable_header();
  h->set_region_id(kRegion);
  h->mutable_peer()->set_id(store_id);
  h->mutable_peer()->set_store_id(store_id);
  h->mutable_region_epoch()->set_conf_ver(1);
  h->mutable_region_epoch()->set_version(1);
  for (int64_t i = first; i < first + count; ++i) {
    auto* r = req.add_requests();
    r->set_cmd_type(raft_cmdpb::Put);
    r->mutable_put()->set_cf(std::string(storage::kCfDefault));
    r->mutable_put()->set_key(KeyOf(i));
    r->mutable_put()->set_value(ValueOf(i));
  }
  return req;
}

// VmRSS or VmHWM of this process in bytes (0 if unreadable).
uint64_t ProcStatusBytes(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(field);
  while (std::getline(in, line)) {
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':') {
      return std::strtoull(line.c_str() + n + 1, nullptr, 10) * 1024;
    }
  }
  return 0;
}

// Resets VmHWM to the current RSS; false if the kernel refuses.
bool ResetHwm() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return out.good();
}

// What a snapshot directory holds of files starting with `prefix`:
// finished ones, and ones still being written (".tmp").
struct DirSeen {
  bool any = false;
  bool finished = false;
  uint64_t finished_bytes = 0;
};
DirSeen Scan(const std::string& dir, const std::string& prefix) {
  DirSeen seen;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    seen.any = true;
    if (name.size() < 4 || name.compare(name.size() - 4, 4, ".tmp") != 0) {
      seen.finished = true;
      seen.finished_bytes += e.file_size(ec);
    }
  }
  return seen;
}

class Cluster {
 public:
  explicit Cluster(uint64_t gc_count_limit) : gc_count_limit_(gc_count_limit) {
    std::string tmpl = "/tmp/raftkv-snapbench-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) Die("mkdtemp failed");
    dir_ = tmpl;
    g_dir = dir_;
    transport_.set_snapshot_chunk_size(1 << 20);
    for (uint64_t id = 1; id <= 3; ++id) Open(id);
  }

  ~Cluster() {
    for (uint64_t id = 1; id <= 3; ++id) {
      transport_.Unregister(id);
      drivers_[id]->Stop();
      schedulers_[id]->Shutdown();
    }
    transport_.WaitSnapshots();
    drivers_.clear();  // stores go before their scheduler, dirs, engines
    schedulers_.clear();
    snap_dirs_.clear();
    raft_.clear();
    kv_.clear();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    g_dir.clear();
  }

  StoreDriver& driver(uint64_t id) { return *drivers_.at(id); }
  InProcessTransport& transport() { return transport_; }
  storage::Engine& kv(uint64_t id) { return *kv_.at(id); }
  std::string SnapPath(uint64_t id) const {
    return dir_ + "/store" + std::to_string(id) + "/snap";
  }

  // Runs `fn` on the peer of the region of store `id`, on its driver
  // thread.
  template <typename Fn>
  void OnPeer(uint64_t id, Fn fn) {
    if (!drivers_.at(id)->Run([&](Store& s) {
          Peer* p = s.GetPeer(kRegion);
          if (p == nullptr) Die("no peer");
          fn(*p);
        })) {
      Die("driver stopped");
    }
  }

  uint64_t Applied(uint64_t id) {
    uint64_t v = 0;
    OnPeer(id, [&](Peer& p) { v = p.peer_storage().applied_index(); });
    return v;
  }

  // Polls until a store other than `exclude` leads.
  uint64_t WaitForLeader(uint64_t exclude) {
    Clock::time_point deadline = Clock::now() + kSetupWait;
    while (Clock::now() < deadline) {
      for (uint64_t id = 1; id <= 3; ++id) {
        if (id == exclude) continue;
        bool leader = false;
        OnPeer(id, [&](Peer& p) { leader = p.IsLeader(); });
        if (leader) return id;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    Die("no leader");
  }

 private:
  void Open(uint64_t id) {
    std::string base = dir_ + "/store" + std::to_string(id);
    std::filesystem::create_directories(base);
    storage::EngineOptions o;
    o.path = base + "/raft";
    auto raft = storage::Engine::Open(o);
    o.path = base + "/kv";
    auto kv = storage::Engine::Open(o);
    if (!raft.ok() || !kv.ok()) Die("cannot open engines");
    raft_[id] = *std::move(raft);
    kv_[id] = *std::move(kv);
    auto snap = storage::SnapDir::Open(SnapPath(id), nullptr);
    if (!snap.ok()) Die("cannot open snap dir: " + snap.status().ToString());
    snap_dirs_[id] = *std::move(snap);
    if (!BootstrapStore(raft_[id].get(), kv_[id].get(), 1, id, InitialRegion(3))
             .ok()) {
      Die("bootstrap failed");
    }
    StoreConfig c;
    c.store_id = id;
    c.election_ticks = 20;  // 1 s
    c.heartbeat_ticks = 2;  // 100 ms
    c.seed = 7;
    c.raft_log_gc_tick_interval = 2;
    c.raft_log_gc_count_limit = gc_count_limit_;
    schedulers_[id] = std::make_unique<WorkerScheduler>();
    auto s = Store::Open(c, raft_[id].get(), kv_[id].get(), &transport_,
                         snap_dirs_[id].get(), schedulers_[id].get());
    if (!s.ok()) Die("cannot open store: " + s.status().ToString());
    StoreDriverOptions d;
    d.tick_interval = kTick;
    drivers_[id] = std::make_unique<StoreDriver>(*std::move(s), d);
    schedulers_[id]->Bind(drivers_[id].get());
    transport_.Register(id, drivers_[id].get(), snap_dirs_[id].get());
    if (!drivers_[id]->Start().ok()) Die("cannot start driver");
  }

  const uint64_t gc_count_limit_;
  std::string dir_;
  // Declared first: destroyed last, after every store that sends through it.
  InProcessTransport transport_;
  std::map<uint64_t, std::unique_ptr<storage::Engine>> raft_, kv_;
  std::map<uint64_t, std::unique_ptr<storage::SnapDir>> snap_dirs_;
  std::map<uint64_t, std::unique_ptr<WorkerScheduler>> schedulers_;
  std::map<uint64_t, std::unique_ptr<StoreDriver>> drivers_;
};

// Loads keys [0, n) through the leader, kCommandsInFlight commands of
// kPutsPerCommand puts at a time; a command that fails is sent again to
// whoever leads then (puts are idempotent). Returns the leader.
uint64_t Load(Cluster& cluster, uint64_t leader, int64_t n) {
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  std::deque<int64_t> retry;  // first keys of failed commands
  int64_t next = 0;
  int failures = 0;
  for (;;) {
    int64_t first = 0;
    bool retrying = false;
    {
      std::unique_lock l(mu);
      cv.wait(l, [&] {
        return in_flight == 0 ||
               (in_flight < kCommandsInFlight && (next < n || !retry.empty()));
      });
      if (failures > 1000) Die("too many failed load commands");
      if (!retry.empty()) {
        first = retry.front();
        retry.pop_front();
        retrying = true;
      } else if (next < n) {
        first = next;
        next += kPutsPerCommand;
      } else {
        break;  // nothing in flight, nothing left
      }
      ++in_flight;
    }
    if (retrying) leader = cluster.WaitForLeader(kLagging);
    int64_t count = std::min<int64_t>(kPutsPerCommand, n - first);
    cluster.driver(leader).Propose(PutBatch(leader, first, count),
                                   [&, first](CmdResult r) {
                                     std::lock_guard l(mu);
                                     --in_flight;
                                     if (r.response.header().has_error()) {
                                       ++failures;
                                       retry.push_back(first);
                                     }
                                     cv.notify_all();
                                   });
  }
  return leader;
}

void BM_SnapshotCatchUp(benchmark::State& state) {
  const int64_t n = state.range(0);
  for (auto _ : state) {
    Cluster cluster(GcCountLimit(n));
    uint64_t leader = cluster.WaitForLeader(0);
    // Store 3 first follows normally (one command), then is cut off.
    leader = Load(cluster, leader, 1);
    Clock::time_point deadline = Clock::now() + kSetupWait;
    while (cluster.Applied(kLagging) < cluster.Applied(leader)) {
      if (Clock::now() > deadline) Die("store 3 never caught up at first");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    cluster.transport().Isolate(kLagging);
    leader = cluster.WaitForLeader(kLagging);

    Clock::time_point load_start = Clock::now();
    leader = Load(cluster, leader, n);
    double load_s = Seconds(Clock::now() - load_start);

    // Wait until the leader's log is compacted past store 3's last index.
    uint64_t lag_last = 0;
    cluster.OnPeer(kLagging, [&](Peer& p) {
      lag_last = p.raw_node().raft().raft_log().last_index();
    });
    uint64_t truncated = 0;
    deadline = Clock::now() + kSetupWait;
    for (;;) {
      cluster.OnPeer(leader, [&](Peer& p) {
        truncated = p.peer_storage().truncated_index();
      });
      if (truncated > lag_last) break;
      if (Clock::now() > deadline) Die("the leader never compacted its log");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const std::string gen_dir = cluster.SnapPath(leader);
    const std::string rcv_dir = cluster.SnapPath(kLagging);
    const bool gen_before = Scan(gen_dir, "gen_").any;

    // The measured part.
    const bool hwm_reset = ResetHwm();
    const uint64_t rss_before = ProcStatusBytes("VmRSS");
    std::atomic<bool> stop_sampling{false};
    std::atomic<uint64_t> rss_max{rss_before};
    // Phase times (seconds after the reconnect; negative: never seen).
    double gen_start = -1, gen_done = -1, rcv_start = -1, rcv_done = -1,
           rcv_gone = -1;
    uint64_t snap_bytes = 0;  // the generated files' size
    Clock::time_point start = Clock::now();
    std::thread sampler([&] {
      while (!stop_sampling.load()) {
        uint64_t rss = ProcStatusBytes("VmRSS");
        if (rss > rss_max.load()) rss_max.store(rss);
        double t = Seconds(Clock::now() - start);
        DirSeen g = Scan(gen_dir, "gen_");
        DirSeen r = Scan(rcv_dir, "rcv_");
        if (gen_start < 0 && g.any) gen_start = t;
        if (gen_done < 0 && g.finished) {
          gen_done = t;
          snap_bytes = g.finished_bytes;
        }
        if (rcv_start < 0 && r.any) rcv_start = t;
        if (rcv_done < 0 && r.finished) rcv_done = t;
        if (rcv_done >= 0 && rcv_gone < 0 && !r.any) rcv_gone = t;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    });
    cluster.transport().Reconnect(kLagging);

    const std::string last_key =
        storage::DataKey(storage::kCfDefault, KeyOf(n - 1));
    const std::string last_value = ValueOf(n - 1);
    storage::Engine* kv3 = &cluster.kv(kLagging);
    auto holds_sample = [&] {
      for (int64_t i = 0; i < n; i += std::max<int64_t>(1, n / 100)) {
        auto got = kv3->Get(storage::DataKey(storage::kCfDefault, KeyOf(i)));
        if (!got.ok() || !got->has_value() || **got != ValueOf(i)) {
          return false;
        }
      }
      auto got = kv3->Get(last_key);
      return got.ok() && got->has_value() && **got == last_value;
    };
    deadline = Clock::now() + kCatchUpWait;
    for (;;) {
      uint64_t target = cluster.Applied(leader);
      if (cluster.Applied(kLagging) >= target && holds_sample()) break;
      if (Clock::now() > deadline) Die("store 3 never caught up");
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    const double elapsed = Seconds(Clock::now() - start);
    stop_sampling.store(true);
    sampler.join();
    const uint64_t hwm = ProcStatusBytes("VmHWM");
    state.SetIterationTime(elapsed);

    // Untimed: store 3 holds exactly keys [0, n) with their values.
    int64_t count = 0;
    bool values_ok = true;
    {
      auto it = kv3->NewIterator(storage::DataStartKey(storage::kCfDefault, ""),
                                 storage::DataEndKey(storage::kCfDefault, ""));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        if (count < n &&
            (it->key() != storage::DataKey(storage::kCfDefault, KeyOf(count)) ||
             it->value() != ValueOf(count))) {
          values_ok = false;
        }
        ++count;
      }
      if (!it->status().ok()) values_ok = false;
    }
    if (count != n || !values_ok) {
      g_failed = true;
      state.SkipWithError("store 3 does not hold exactly the loaded keys");
      return;
    }

    constexpr double kMiB = 1024.0 * 1024.0;
    const double user_bytes =
        static_cast<double>(n) * static_cast<double>(kKeySize + kValueSize);
    state.counters["MB_per_s"] = user_bytes / 1e6 / elapsed;
    state.counters["user_MB"] = user_bytes / 1e6;
    state.counters["rss_growth_MiB"] =
        static_cast<double>(rss_max.load() - rss_before) / kMiB;
    state.counters["rss_before_MiB"] = static_cast<double>(rss_before) / kMiB;
    state.counters["vmhwm_MiB"] = static_cast<double>(hwm) / kMiB;
    state.counters["gen_start_s"] = gen_start;
    state.counters["gen_done_s"] = gen_done;
    state.counters["rcv_start_s"] = rcv_start;
    state.counters["rcv_done_s"] = rcv_done;
    state.counters["rcv_gone_s"] = rcv_gone;
    state.counters["load_s"] = load_s;
    state.counters["snap_file_MB"] = static_cast<double>(snap_bytes) / 1e6;
    std::string label = "RSS growth covers sender+receiver (one process)";
    if (!hwm_reset) label += "; VmHWM not reset (whole run)";
    if (gen_before) label += "; a snapshot was generated before reconnect";
    state.SetLabel(label);
    std::fprintf(
        stderr,
        "snapshot catch-up: %lld keys, %.1f MB user data, load %.1f s; "
        "catch-up %.3f s = %.1f MB/s; phases after reconnect: gen "
        "start %.3f s, gen done %.3f s, rcv start %.3f s, rcv done "
        "%.3f s, rcv deleted %.3f s; snapshot files %.1f MB; RSS before "
        "%.1f MiB, max growth %.1f MiB, VmHWM %.1f MiB%s\n",
        static_cast<long long>(n), user_bytes / 1e6, load_s, elapsed,
        user_bytes / 1e6 / elapsed, gen_start, gen_done, rcv_start, rcv_done,
        rcv_gone, static_cast<double>(snap_bytes) / 1e6,
        static_cast<double>(rss_before) / kMiB,
        static_cast<double>(rss_max.load() - rss_before) / kMiB,
        static_cast<double>(hwm) / kMiB,
        hwm_reset ? " (reset before the catch-up)" : "");
  }
}

}  // namespace
}  // namespace raftkv::raftstore

int main(int argc, char** argv) {
  // Our own flag, taken out before Google Benchmark sees the rest.
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--keys=", 7) == 0) {
      raftkv::raftstore::g_keys = std::atoll(argv[i] + 7);
      if (raftkv::raftstore::g_keys <= 0) {
        std::fprintf(stderr, "--keys must be positive\n");
        return 2;
      }
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RegisterBenchmark("BM_SnapshotCatchUp",
                               raftkv::raftstore::BM_SnapshotCatchUp)
      ->Arg(raftkv::raftstore::g_keys)
      ->UseManualTime()
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return raftkv::raftstore::g_failed ? 1 : 0;
}
