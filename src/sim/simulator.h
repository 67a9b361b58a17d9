// Simulator: a cluster of raftstore Stores in one process, on one thread, in
// virtual time.
//
// Everything that happens is an event in one queue ordered by (virtual time
// in microseconds, sequence number): store ticks, raft worker passes, raft
// message deliveries, client command arrivals and answers, and the actions
// of scenarios and clients. Every random choice (network latency, faults,
// client decisions, the stores' raft seeds) comes from ONE std::mt19937_64
// seeded from SimConfig::seed, nothing reads a clock, and containers are
// ordered, so a run is a function of its seed and its driver's calls.
//
// The cluster: stores 1..N, each bootstrapped with region 1 ["", "") whose
// peer i lives on store i, each on a raft engine and a kv engine in one
// InMemoryEnv shared by the cluster. A store ticks every tick_us; any event
// touching a store (a tick, a delivered message, a proposal) schedules one
// worker pass for it worker_delay_us later (events in between join that
// pass), which calls HandleReadies until it has nothing left to do.
//
// The network: a raft message sent at t arrives at t + a random base latency
// in [net_latency_min_us, net_latency_max_us], kept FIFO per link, plus the
// extra delays of the NetworkFilters (which reorder), unless the filters
// drop it. A crash destroys a store and its engines (their in-memory state
// is lost; the "disk" in the InMemoryEnv survives) and drops every message
// in flight to it; a restart reopens the engines and the Store.
//
// Every event is folded into a trace hash (see TraceHasher); with
// SimConfig::verbose each is also printed to stderr.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "raftstore/store.h"
#include "sim/network.h"
#include "sim/trace.h"
#include "storage/engine.h"
#include "storepb/raft_cmdpb.pb.h"
#include "storepb/raft_serverpb.pb.h"

namespace raftkv::sim {

struct SimConfig {
  uint64_t seed = 1;
  int num_stores = 5;
  // TinyKV's test config: a 50 ms base tick, elections after 10 ticks,
  // heartbeats every 2.
  int64_t tick_us = 50'000;
  int election_ticks = 10;
  int heartbeat_ticks = 2;
  // One-way latency of a raft message between stores.
  int64_t net_latency_min_us = 500;
  int64_t net_latency_max_us = 1'500;
  // One-way latency between a client and a store.
  int64_t client_latency_min_us = 100;
  int64_t client_latency_max_us = 300;
  // The delay from an event touching a store to its worker pass.
  int64_t worker_delay_us = 100;
  // The virtual time a worker pass with work takes (its synced write
  // dominates): its messages leave and its answers go out at its end, and
  // the store's next pass starts no earlier.
  int64_t pass_min_us = 1'000;
  int64_t pass_max_us = 2'000;
  // Print every event to stderr.
  bool verbose = false;
};

// Counters of a run.
struct SimStats {
  uint64_t events = 0;
  uint64_t ticks = 0;
  uint64_t worker_passes = 0;
  uint64_t messages_sent = 0;
  uint64_t messages_delivered = 0;
  uint64_t messages_dropped = 0;
  uint64_t messages_duplicated = 0;
  // Distinct terms in which some store became the leader of region 1.
  uint64_t elections = 0;
  uint64_t crashes = 0;
  uint64_t restarts = 0;
  uint64_t commands_proposed = 0;
};

class Simulator {
 public:
  // Does nothing until Start. Precondition: config.num_stores >= 1.
  explicit Simulator(const SimConfig& config);
  ~Simulator();
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  // Bootstraps and opens every store, and starts their ticks (each at a
  // random phase within one tick). Errors: engine or store errors.
  absl::Status Start();

  // The configuration the simulator was built with.
  const SimConfig& config() const { return config_; }
  // The current virtual time in microseconds.
  int64_t now() const { return now_; }
  // A uniform integer in [0, n) (n > 0) from the run's generator.
  uint64_t Random(uint64_t n) { return UniformInt(rng_, n); }
  // A uniform double in [0, 1) from the run's generator.
  double RandomUnit() { return UniformUnit(rng_); }
  // A uniform integer in [lo, hi].
  int64_t RandomIn(int64_t lo, int64_t hi);

  // Schedules `fn` at now() + delay_us (delay_us >= 0).
  void After(int64_t delay_us, std::function<void()> fn);
  // Runs every event up to `time` inclusive, then sets now() to `time` (if
  // it is later). Returns early, false, once `stop` (if set) turns true after
  // an event; true otherwise.
  bool RunUntil(int64_t time, const std::function<bool()>& stop = nullptr);
  // Runs until `pred` holds (checked before and after each event) or the
  // virtual time passes `deadline`; returns whether `pred` holds.
  bool RunUntilTrue(const std::function<bool()>& pred, int64_t deadline);

  // The network's filters; changes apply to messages sent afterwards.
  NetworkFilters& filters() { return filters_; }

  // Crashes store `id`: destroys the Store and its engines, drops the
  // messages in flight to it, and stops its ticks. Its pending commands are
  // never answered. No-op if it is down.
  void Crash(uint64_t id);
  // Restarts a crashed store from its engines on the shared InMemoryEnv.
  // Errors: engine or store errors. No-op if it is up.
  absl::Status Restart(uint64_t id);
  bool IsUp(uint64_t id) const;
  // The store, or null when it is down or unknown.
  raftstore::Store* store(uint64_t id);
  // Store `id`'s kv engine, or null when it is down.
  storage::Engine* kv_engine(uint64_t id);
  // The store whose peer of region 1 leads at the highest term, or 0.
  uint64_t LeaderStore();

  // Client side: `req` arrives at store `id` after a client latency and is
  // proposed there (if the store is up then; otherwise it is lost). `cb` is
  // called from inside the store (Propose or a worker pass), so it must not
  // call back into any store; it may schedule events.
  void SubmitCommand(uint64_t id, raft_cmdpb::RaftCmdRequest req,
                     raftstore::Callback cb);
  // Sends a raft message from store `from` as its Transport does (also for
  // tests). Errors: Unavailable if the destination is down or unknown.
  absl::Status SendMessage(uint64_t from, raft_serverpb::RaftMessage msg);
  // Called with every message delivered to a store, before it is stepped.
  void set_delivery_hook(
      std::function<void(const raft_serverpb::RaftMessage&)> hook) {
    delivery_hook_ = std::move(hook);
  }

  // Folds an event of a driver (client ops, scenario steps) into the trace:
  // `what` (a short constant name) and `fields`; `detail` is hashed too and
  // printed in verbose mode.
  void Trace(std::string_view what, std::initializer_list<uint64_t> fields,
             std::string_view detail = {});
  // The hash of every event so far.
  uint64_t trace_hash() const { return trace_.hash(); }
  // The counters so far.
  const SimStats& stats() const { return stats_; }
  // Inside a worker pass: the virtual time it takes, by which what it sends
  // is delayed; 0 outside passes.
  int64_t processing_delay() const { return pass_delay_; }

 private:
  enum class Kind { kAction, kTick, kWorker, kDeliver };
  struct Event {
    int64_t time = 0;
    uint64_t seq = 0;
    Kind kind = Kind::kAction;
    uint64_t store = 0;
    // The incarnation of `store` the event belongs to (stale after a crash).
    uint64_t incarnation = 0;
    std::unique_ptr<raft_serverpb::RaftMessage> msg;
    std::function<void()> fn;
  };
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      return a.time != b.time ? a.time > b.time : a.seq > b.seq;
    }
  };
  class StoreTransport;
  struct Node {
    uint64_t id = 0;
    uint64_t incarnation = 0;
    bool worker_pending = false;
    // The end of the store's last worker pass.
    int64_t busy_until = 0;
    std::unique_ptr<StoreTransport> transport;
    std::unique_ptr<storage::Engine> raft_engine;
    std::unique_ptr<storage::Engine> kv_engine;
    std::unique_ptr<raftstore::Store> store;
  };

  void Push(Event e);
  void Dispatch(Event& e);
  absl::Status OpenNode(Node& n);
  void ScheduleTick(Node& n, int64_t delay_us);
  void ScheduleWorker(Node& n);
  void RunWorker(Node& n);
  // Folds a raft message event into the trace.
  void TraceMessage(std::string_view what, const raft_serverpb::RaftMessage& m);
  Node* node(uint64_t id);

  SimConfig config_;
  std::mt19937_64 rng_;
  int64_t now_ = 0;
  int64_t pass_delay_ = 0;
  uint64_t next_seq_ = 0;
  std::vector<Event> queue_;  // a heap ordered by Later
  std::shared_ptr<storage::InMemoryEnv> env_;
  std::map<uint64_t, Node> nodes_;
  NetworkFilters filters_;
  // The arrival time of the last message on each link (FIFO base latency).
  std::map<std::pair<uint64_t, uint64_t>, int64_t> link_last_;
  std::set<uint64_t> leader_terms_;
  std::function<void(const raft_serverpb::RaftMessage&)> delivery_hook_;
  std::vector<int64_t> delays_scratch_;
  TraceHasher trace_;
  SimStats stats_;
};

}  // namespace raftkv::sim
