// Simulator: a cluster of raftstore Stores in one process, on one thread, in
// virtual time.
//
// Everything that happens is an event in one queue ordered by (virtual time
// in microseconds, sequence number): store ticks, raft worker passes, raft
// message deliveries, background tasks, snapshot chunks, client command
// arrivals and answers, and the actions of scenarios and clients. Every
// random choice (network latency, faults, task delays, failpoints, client
// decisions, the stores' raft seeds) comes from ONE std::mt19937_64 seeded
// from SimConfig::seed, nothing reads a clock, and containers are ordered,
// so a run is a function of its seed and its driver's calls.
//
// The cluster: stores 1..N, each bootstrapped with region 1 ["", "") whose
// peer i lives on store i, each on a raft engine, a kv engine and a SnapDir
// ("/sim/store<N>/snap") in one InMemoryEnv shared by the cluster. A store
// ticks every tick_us; any event touching a store (a tick, a delivered
// message, a proposal, a finished background task) schedules one worker
// pass for it worker_delay_us later (events in between join that pass),
// which calls HandleReadies until it has nothing left to do.
//
// Background tasks (raftstore::Scheduler: log GC, snapshot generation and
// apply): a task's `work` runs as its own event a random
// [task_delay_min_us, task_delay_max_us] after it was scheduled, and never
// before the previous task of the same kind on the same store (FIFO per
// store and kind); its `done` runs as a later event (worker_delay_us after
// the work), which touches the store. A crash drops the store's pending
// tasks: neither their `work` nor their `done` ever runs.
//
// Failpoints (StoreConfig::failpoint, names in raftstore::kFailpoints):
// each call returns true with the probability configured for its name
// (SimConfig::failpoints, set_failpoints); then the store stops at that
// point and the simulator crashes it right after the current event, and
// restarts it a random [failpoint_restart_min_us, failpoint_restart_max_us]
// later unless something else restarted it first. Calls and crashes are
// counted per name in SimStats.
//
// The network: a raft message sent at t arrives at t + a random base latency
// in [net_latency_min_us, net_latency_max_us], kept FIFO per link, plus the
// extra delays of the NetworkFilters (which reorder), unless the filters
// drop it. A crash destroys a store and its engines (their in-memory state
// is lost; the "disk" in the InMemoryEnv survives) and drops every message
// in flight to it; a restart reopens the engines and the Store.
//
// Snapshots (Transport::SendSnapshot) travel as a TCP-like stream of
// SnapshotChunks: a SnapshotSender reads the sender's SnapDir one chunk
// (snap_chunk_size bytes) at a time; each chunk leaves once the previous
// one has been transmitted ((file bytes + a fixed framing cost) /
// snap_bandwidth_bytes_per_s) and arrives a base latency plus the filters'
// extra delay later, never before the chunk ahead of it (duplicates are not
// delivered twice); at arrival a SnapshotReceiver on the receiver's SnapDir
// takes it. (Timing and the trace use file bytes only, never the encoded
// chunk size or the files' checksums: RocksDB stamps SST files with
// run-dependent properties such as their creation time and session id, so
// the checksums, and the varint length of the head's metadata that holds
// them, differ from run to run.) A chunk the filters drop (a partition
// or a drop filter), a crash of either end, or an error of the sender or the
// receiver breaks the stream: the receiver is dropped (its partial files go)
// and the sender, if still up, gets MsgSnapStatus with reject = true. When
// the receiver yields the MsgSnapshot it is stepped into the receiving store
// like any raft message and the sender gets MsgSnapStatus with reject =
// false. Only one stream per receiving store and snapshot (its rcv_ file
// names) is in flight at a time: a second one fails at once.
//
// Invariant watched on every store: within one incarnation the applied
// index of region 1 in the kv engine never decreases (a stale snapshot
// applied over newer data would move it back); violations are reported by
// violations().
//
// Every event is folded into a trace hash (see TraceHasher); with
// SimConfig::verbose each is also printed to stderr.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "raftstore/scheduler.h"
#include "raftstore/snap.h"
#include "raftstore/store.h"
#include "sim/network.h"
#include "sim/trace.h"
#include "storage/engine.h"
#include "storage/snap_files.h"
#include "storepb/raft_cmdpb.pb.h"
#include "storepb/raft_serverpb.pb.h"

namespace raftkv::sim {

// Failpoint name -> the probability that one call of it crashes the store.
using FailpointProbabilities = std::map<std::string, double, std::less<>>;

struct SimConfig {
  uint64_t seed = 1;
  int num_stores = 5;
  // TinyKV's test config: a 50 ms base tick, elections after 10 ticks,
  // heartbeats every 2.
  int64_t tick_us = 50'000;
  int election_ticks = 10;
  int heartbeat_ticks = 2;
  // Log compaction (StoreConfig): the GC tick interval in ticks and the
  // count limit (the default never compacts in a simulated run).
  int raft_log_gc_tick_interval = 2;
  uint64_t raft_log_gc_count_limit = 100'000;
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
  // The delay from scheduling a background task to its `work`.
  int64_t task_delay_min_us = 1'000;
  int64_t task_delay_max_us = 5'000;
  // Snapshot streams: the largest chunk and the stream's bandwidth.
  int64_t snap_chunk_size = 4 * 1024;
  int64_t snap_bandwidth_bytes_per_s = 50'000'000;
  // Failpoint crashes (none by default) and the restart delay after one.
  FailpointProbabilities failpoints = {};
  int64_t failpoint_restart_min_us = 100'000;
  int64_t failpoint_restart_max_us = 600'000;
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
  // Background tasks whose `work` ran, by kind (0 log GC, 1 snapshot
  // generation, 2 snapshot apply).
  std::map<int, uint64_t> tasks_run;
  // Snapshot streams started, delivered to the receiving store, and broken.
  uint64_t snapshots_sent = 0;
  uint64_t snapshots_completed = 0;
  uint64_t snapshots_failed = 0;
  // Streams during which the sender's truncated index of the region moved
  // (the leader compacted its log while the snapshot was in flight).
  uint64_t snapshots_outlived_by_compaction = 0;
  uint64_t snapshot_chunks = 0;
  uint64_t snapshot_bytes = 0;
  // Completed snapshots delivered while the receiver still had a snapshot
  // apply task pending.
  uint64_t snapshots_while_applying = 0;
  // Completed snapshots by receiving store.
  std::map<uint64_t, uint64_t> snapshots_received;
  // Failpoint calls, and the crashes they caused, by name.
  std::map<std::string, uint64_t> failpoint_calls;
  std::map<std::string, uint64_t> failpoint_crashes;
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

  // The network's filters; changes apply to messages (and snapshot chunks)
  // sent afterwards.
  NetworkFilters& filters() { return filters_; }
  // Replaces the failpoint probabilities (an empty map turns failpoint
  // crashes off). Restarts already scheduled still happen.
  void set_failpoints(FailpointProbabilities failpoints) {
    config_.failpoints = std::move(failpoints);
  }

  // Crashes store `id`: breaks its snapshot streams, drops its pending
  // background tasks, destroys the Store, its SnapDir and its engines, drops
  // the messages in flight to it, and stops its ticks. Its pending commands
  // are never answered. No-op if it is down.
  void Crash(uint64_t id);
  // Restarts a crashed store from its engines on the shared InMemoryEnv.
  // Errors: engine or store errors. No-op if it is up.
  absl::Status Restart(uint64_t id);
  bool IsUp(uint64_t id) const;
  // The store, or null when it is down or unknown.
  raftstore::Store* store(uint64_t id);
  // The Scheduler store `id` runs its background tasks on (for tests too),
  // or null for an unknown store. Outlives crashes.
  raftstore::Scheduler* scheduler(uint64_t id);
  // Store `id`'s kv engine, or null when it is down.
  storage::Engine* kv_engine(uint64_t id);
  // Store `id`'s RaftApplyState of region 1 as its kv engine holds it, or
  // nullopt when the store is down or has none.
  std::optional<raft_serverpb::RaftApplyState> ApplyState(uint64_t id);
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
  // Starts a snapshot stream from store `from` as its Transport's
  // SendSnapshot does (see the file comment). `msg` carries a MsgSnapshot.
  void SendSnapshot(uint64_t from, raft_serverpb::RaftMessage msg);
  // Called with every message delivered to a store, before it is stepped
  // (a completed snapshot's MsgSnapshot included; MsgSnapStatus reports
  // excluded).
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
  // Broken invariants and failed automatic restarts seen so far (empty when
  // all is well).
  const std::vector<std::string>& violations() const { return violations_; }
  // Inside a worker pass: the virtual time it takes, by which what it sends
  // is delayed; 0 outside passes.
  int64_t processing_delay() const { return pass_delay_; }

 private:
  enum class Kind {
    kAction,
    kTick,
    kWorker,
    kDeliver,
    kTaskWork,
    kTaskDone,
    kSnapStatus
  };
  struct Event {
    int64_t time = 0;
    uint64_t seq = 0;
    Kind kind = Kind::kAction;
    uint64_t store = 0;
    // The incarnation of `store` the event belongs to (stale after a crash).
    uint64_t incarnation = 0;
    // kTaskWork, kTaskDone: the task's id.
    uint64_t task = 0;
    std::unique_ptr<raft_serverpb::RaftMessage> msg;
    std::function<void()> fn;
  };
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      return a.time != b.time ? a.time > b.time : a.seq > b.seq;
    }
  };
  class StoreTransport;
  class StoreScheduler;
  struct Task {
    raftstore::TaskKind kind;
    std::function<void()> work;
    std::function<void()> done;
  };
  struct Node {
    uint64_t id = 0;
    // Odd while the store is up (each crash and each restart adds one).
    uint64_t incarnation = 0;
    bool worker_pending = false;
    // Set by a failpoint that fired: crash after the current event.
    bool crash_pending = false;
    // The end of the store's last worker pass.
    int64_t busy_until = 0;
    // The time of the last task `work` of each kind (FIFO per kind).
    std::map<raftstore::TaskKind, int64_t> task_last;
    // The highest applied index of region 1 seen in this incarnation.
    uint64_t applied_seen = 0;
    std::unique_ptr<StoreTransport> transport;
    std::unique_ptr<StoreScheduler> scheduler;
    // Destroyed in reverse order: tasks, store, SnapDir, engines.
    std::unique_ptr<storage::Engine> raft_engine;
    std::unique_ptr<storage::Engine> kv_engine;
    std::unique_ptr<storage::SnapDir> snap_dir;
    std::unique_ptr<raftstore::Store> store;
    // Pending background tasks of this incarnation, by id.
    std::map<uint64_t, Task> tasks;
  };
  // One snapshot stream.
  struct Stream {
    uint64_t id = 0;
    uint64_t from = 0;
    uint64_t to = 0;
    uint64_t from_incarnation = 0;
    uint64_t to_incarnation = 0;
    // The receiver's file-name prefix of the snapshot.
    std::string rcv_prefix;
    // The MsgSnapshot (its snapshot data dropped), for the status report.
    raft_serverpb::RaftMessage header;
    uint64_t snap_index = 0;
    uint64_t sender_truncated = 0;
    bool compacted = false;
    std::unique_ptr<raftstore::SnapshotSender> sender;
    std::unique_ptr<raftstore::SnapshotReceiver> receiver;
    // The arrival time of the last chunk sent.
    int64_t last_arrival = 0;
    uint64_t chunks = 0;
  };

  void Push(Event e);
  void Dispatch(Event& e);
  absl::Status OpenNode(Node& n);
  void ScheduleTick(Node& n, int64_t delay_us);
  void ScheduleWorker(Node& n);
  void RunWorker(Node& n);
  // Crashes the stores whose failpoint fired during the last event.
  void CrashPending();
  // Background tasks (StoreScheduler).
  void ScheduleTask(uint64_t id, raftstore::TaskKind kind,
                    std::function<void()> work, std::function<void()> done);
  void RunTaskWork(Node& n, uint64_t task);
  void RunTaskDone(Node& n, uint64_t task);
  // StoreConfig::failpoint of store `id`.
  bool Failpoint(uint64_t id, std::string_view name);
  // Snapshot streams.
  void SendChunk(uint64_t stream);
  void ChunkArrives(uint64_t stream, raft_serverpb::SnapshotChunk chunk);
  // Ends stream `stream` (if it still exists): drops the receiver and
  // reports the outcome to the sender (if it is up in the same
  // incarnation) after a network latency.
  void EndStream(uint64_t stream, bool ok, std::string_view why);
  // Reports a snapshot's outcome to the sending store at `time`.
  void ReportSnapStatus(const raft_serverpb::RaftMessage& snap_msg,
                        uint64_t from_incarnation, bool reject, int64_t time);
  // Reads region 1's applied index on `n` and records a violation if it
  // moved back within the incarnation.
  void WatchApplied(Node& n);
  // Folds a raft message event into the trace.
  void TraceMessage(std::string_view what, const raft_serverpb::RaftMessage& m);
  Node* node(uint64_t id);
  bool Live(const Node* n, uint64_t incarnation) const {
    return n != nullptr && n->store != nullptr && n->incarnation == incarnation;
  }

  SimConfig config_;
  std::mt19937_64 rng_;
  int64_t now_ = 0;
  int64_t pass_delay_ = 0;
  uint64_t next_seq_ = 0;
  uint64_t next_task_ = 1;
  uint64_t next_stream_ = 1;
  std::vector<Event> queue_;  // a heap ordered by Later
  std::shared_ptr<storage::InMemoryEnv> env_;
  std::map<uint64_t, Node> nodes_;
  // Live snapshot streams, by id (destroyed before the nodes' SnapDirs).
  std::map<uint64_t, Stream> streams_;
  NetworkFilters filters_;
  // The arrival time of the last message on each link (FIFO base latency).
  std::map<std::pair<uint64_t, uint64_t>, int64_t> link_last_;
  std::set<uint64_t> leader_terms_;
  std::function<void(const raft_serverpb::RaftMessage&)> delivery_hook_;
  std::vector<int64_t> delays_scratch_;
  std::vector<std::string> violations_;
  TraceHasher trace_;
  SimStats stats_;
};

}  // namespace raftkv::sim
