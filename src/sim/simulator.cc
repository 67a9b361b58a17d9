#include "sim/simulator.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "raft/types.h"
#include "storage/keys.h"

namespace raftkv::sim {

namespace {

constexpr uint64_t kRegionId = 1;
// What the network charges a snapshot chunk beyond its file bytes.
constexpr size_t kChunkFramingBytes = 128;

// SplitMix64: derives independent seeds from one.
uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace

class Simulator::StoreTransport : public raftstore::Transport {
 public:
  StoreTransport(Simulator* sim, uint64_t from) : sim_(sim), from_(from) {}
  absl::Status Send(raft_serverpb::RaftMessage msg) override {
    return sim_->SendMessage(from_, std::move(msg));
  }
  void SendSnapshot(raft_serverpb::RaftMessage msg) override {
    sim_->SendSnapshot(from_, std::move(msg));
  }

 private:
  Simulator* sim_;
  uint64_t from_;
};

class Simulator::StoreScheduler : public raftstore::Scheduler {
 public:
  StoreScheduler(Simulator* sim, uint64_t id) : sim_(sim), id_(id) {}
  void Schedule(raftstore::TaskKind kind, std::function<void()> work,
                std::function<void()> done) override {
    sim_->ScheduleTask(id_, kind, std::move(work), std::move(done));
  }

 private:
  Simulator* sim_;
  uint64_t id_;
};

Simulator::Simulator(const SimConfig& config)
    : config_(config),
      rng_(Mix(config.seed)),
      env_(std::make_shared<storage::InMemoryEnv>()) {}

Simulator::~Simulator() {
  // Streams before the SnapDirs they use; in each node tasks, store, SnapDir,
  // engines (Node's member order); all before the queue's closures, which may
  // refer to clients but are never run now.
  streams_.clear();
  nodes_.clear();
}

int64_t Simulator::RandomIn(int64_t lo, int64_t hi) {
  if (hi <= lo) return lo;
  return lo + static_cast<int64_t>(Random(static_cast<uint64_t>(hi - lo + 1)));
}

absl::Status Simulator::Start() {
  for (int i = 1; i <= config_.num_stores; ++i) {
    uint64_t id = static_cast<uint64_t>(i);
    Node& n = nodes_[id];
    n.id = id;
    n.transport = std::make_unique<StoreTransport>(this, id);
    n.scheduler = std::make_unique<StoreScheduler>(this, id);
    if (absl::Status s = OpenNode(n); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Simulator::OpenNode(Node& n) {
  std::string dir = absl::StrCat("/sim/store", n.id);
  // A crash loses every unsynced write, as a power cut would: the kv
  // engine is written unsynced (it is rebuilt from the raft log), and so is
  // a raft-engine write that only moves commit indexes (Store::HandleReadies).
  auto raft = storage::Engine::Open({dir + "/raft", env_,
                                     /*lose_unsynced_writes_on_close=*/true});
  if (!raft.ok()) return raft.status();
  auto kv = storage::Engine::Open({dir + "/kv", env_,
                                   /*lose_unsynced_writes_on_close=*/true});
  if (!kv.ok()) return kv.status();
  auto snap_dir = storage::SnapDir::Open(dir + "/snap", env_);
  if (!snap_dir.ok()) return snap_dir.status();
  n.raft_engine = *std::move(raft);
  n.kv_engine = *std::move(kv);
  n.snap_dir = *std::move(snap_dir);
  if (n.incarnation == 0) {
    metapb::Region region =
        raftstore::InitialRegion(static_cast<uint64_t>(config_.num_stores));
    if (absl::Status s = raftstore::BootstrapStore(
            n.raft_engine.get(), n.kv_engine.get(), 1, n.id, region);
        !s.ok()) {
      return s;
    }
  }
  raftstore::StoreConfig sc;
  sc.store_id = n.id;
  sc.election_ticks = config_.election_ticks;
  sc.heartbeat_ticks = config_.heartbeat_ticks;
  sc.seed = Mix(config_.seed ^ Mix(n.incarnation + 1));
  sc.raft_log_gc_tick_interval = config_.raft_log_gc_tick_interval;
  sc.raft_log_gc_count_limit = config_.raft_log_gc_count_limit;
  uint64_t id = n.id;
  sc.failpoint = [this, id](std::string_view name) {
    return Failpoint(id, name);
  };
  // The new incarnation starts now: tasks the store schedules while it opens
  // belong to it.
  ++n.incarnation;
  n.worker_pending = false;
  n.crash_pending = false;
  n.busy_until = 0;
  n.task_last.clear();
  n.applied_seen = 0;
  auto store = raftstore::Store::Open(sc, n.raft_engine.get(),
                                      n.kv_engine.get(), n.transport.get(),
                                      n.snap_dir.get(), n.scheduler.get());
  if (!store.ok()) {
    n.tasks.clear();
    n.snap_dir.reset();
    n.kv_engine.reset();
    n.raft_engine.reset();
    ++n.incarnation;  // down again
    return store.status();
  }
  n.store = *std::move(store);
  ScheduleTick(n, RandomIn(1, config_.tick_us));
  // Whatever Open scheduled gets its worker pass.
  ScheduleWorker(n);
  WatchApplied(n);
  return absl::OkStatus();
}

Simulator::Node* Simulator::node(uint64_t id) {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : &it->second;
}

bool Simulator::IsUp(uint64_t id) const {
  auto it = nodes_.find(id);
  return it != nodes_.end() && it->second.store != nullptr;
}

raftstore::Store* Simulator::store(uint64_t id) {
  Node* n = node(id);
  return n == nullptr ? nullptr : n->store.get();
}

raftstore::Scheduler* Simulator::scheduler(uint64_t id) {
  Node* n = node(id);
  return n == nullptr ? nullptr : n->scheduler.get();
}

storage::Engine* Simulator::kv_engine(uint64_t id) {
  Node* n = node(id);
  return n == nullptr || n->store == nullptr ? nullptr : n->kv_engine.get();
}

std::optional<raft_serverpb::RaftApplyState> Simulator::ApplyState(
    uint64_t id) {
  storage::Engine* kv = kv_engine(id);
  if (kv == nullptr) return std::nullopt;
  raft_serverpb::RaftApplyState state;
  absl::StatusOr<bool> found =
      kv->GetProto(storage::ApplyStateKey(kRegionId), &state);
  if (!found.ok() || !*found) return std::nullopt;
  return state;
}

uint64_t Simulator::LeaderStore() {
  uint64_t best = 0, best_term = 0;
  for (auto& [id, n] : nodes_) {
    if (n.store == nullptr) continue;
    raftstore::Peer* p = n.store->GetPeer(kRegionId);
    if (p != nullptr && p->IsLeader() && p->term() > best_term) {
      best = id;
      best_term = p->term();
    }
  }
  return best;
}

void Simulator::Push(Event e) {
  e.seq = next_seq_++;
  queue_.push_back(std::move(e));
  std::push_heap(queue_.begin(), queue_.end(), Later());
}

void Simulator::After(int64_t delay_us, std::function<void()> fn) {
  Event e;
  e.time = now_ + std::max<int64_t>(delay_us, 0);
  e.kind = Kind::kAction;
  e.fn = std::move(fn);
  Push(std::move(e));
}

void Simulator::ScheduleTick(Node& n, int64_t delay_us) {
  Event e;
  e.time = now_ + delay_us;
  e.kind = Kind::kTick;
  e.store = n.id;
  e.incarnation = n.incarnation;
  Push(std::move(e));
}

void Simulator::ScheduleWorker(Node& n) {
  if (n.worker_pending) return;
  n.worker_pending = true;
  Event e;
  e.time = std::max(now_ + config_.worker_delay_us, n.busy_until);
  e.kind = Kind::kWorker;
  e.store = n.id;
  e.incarnation = n.incarnation;
  Push(std::move(e));
}

bool Simulator::RunUntil(int64_t time, const std::function<bool()>& stop) {
  while (!queue_.empty() && queue_.front().time <= time) {
    std::pop_heap(queue_.begin(), queue_.end(), Later());
    Event e = std::move(queue_.back());
    queue_.pop_back();
    now_ = std::max(now_, e.time);
    ++stats_.events;
    Dispatch(e);
    CrashPending();
    if (stop && stop()) return false;
  }
  now_ = std::max(now_, time);
  return true;
}

bool Simulator::RunUntilTrue(const std::function<bool()>& pred,
                             int64_t deadline) {
  if (pred()) return true;
  RunUntil(deadline, pred);
  return pred();
}

void Simulator::Dispatch(Event& e) {
  if (e.kind == Kind::kAction) {
    e.fn();
    return;
  }
  Node* n = node(e.store);
  bool live = Live(n, e.incarnation);
  switch (e.kind) {
    case Kind::kTick:
      if (!live) return;
      ++stats_.ticks;
      Trace("tick", {n->id});
      n->store->Tick();
      ScheduleWorker(*n);
      ScheduleTick(*n, config_.tick_us);
      return;
    case Kind::kWorker:
      if (!live) return;
      n->worker_pending = false;
      RunWorker(*n);
      return;
    case Kind::kDeliver:
      if (!live) {
        ++stats_.messages_dropped;
        TraceMessage("drop-crashed", *e.msg);
        return;
      }
      ++stats_.messages_delivered;
      TraceMessage("deliver", *e.msg);
      if (delivery_hook_) delivery_hook_(*e.msg);
      n->store->Step(std::move(*e.msg));
      ScheduleWorker(*n);
      return;
    case Kind::kSnapStatus:
      if (!live) return;
      TraceMessage("snap-status", *e.msg);
      n->store->Step(std::move(*e.msg));
      ScheduleWorker(*n);
      return;
    case Kind::kTaskWork:
      if (live) RunTaskWork(*n, e.task);
      return;
    case Kind::kTaskDone:
      if (live) RunTaskDone(*n, e.task);
      return;
    case Kind::kAction:
      return;
  }
}

void Simulator::RunWorker(Node& n) {
  ++stats_.worker_passes;
  pass_delay_ = RandomIn(config_.pass_min_us, config_.pass_max_us);
  bool worked = false;
  // A failpoint that fired stops the store where it is: no further pass.
  for (int i = 0; i < 64 && !n.crash_pending && n.store->HandleReadies(); ++i) {
    worked = true;
  }
  if (worked) {
    n.busy_until = now_ + pass_delay_;
    Trace("pass", {n.id});
  }
  pass_delay_ = 0;
  raftstore::Peer* p = n.store->GetPeer(kRegionId);
  if (p != nullptr && p->IsLeader() && leader_terms_.insert(p->term()).second) {
    ++stats_.elections;
    Trace("leader", {n.id, p->term()});
  }
  if (worked) WatchApplied(n);
}

void Simulator::WatchApplied(Node& n) {
  std::optional<raft_serverpb::RaftApplyState> st = ApplyState(n.id);
  if (!st.has_value()) return;
  if (st->applied_index() < n.applied_seen) {
    std::string v = absl::StrCat(
        "store ", n.id, ": the applied index of region 1 moved back from ",
        n.applied_seen, " to ", st->applied_index(),
        " without a crash (a stale snapshot applied?)");
    Trace("violation", {n.id}, v);
    violations_.push_back(std::move(v));
  }
  n.applied_seen = std::max(n.applied_seen, st->applied_index());
}

void Simulator::ScheduleTask(uint64_t id, raftstore::TaskKind kind,
                             std::function<void()> work,
                             std::function<void()> done) {
  Node* n = node(id);
  // Only a live store schedules (its scheduler is called from its loop).
  if (n == nullptr || n->incarnation % 2 == 0) return;
  uint64_t task = next_task_++;
  n->tasks[task] = Task{kind, std::move(work), std::move(done)};
  int64_t& last = n->task_last[kind];
  Event e;
  e.time = std::max(
      now_ + RandomIn(config_.task_delay_min_us, config_.task_delay_max_us),
      last);
  last = e.time;
  e.kind = Kind::kTaskWork;
  e.store = id;
  e.incarnation = n->incarnation;
  e.task = task;
  Trace("task", {id, static_cast<uint64_t>(kind), task});
  Push(std::move(e));
}

void Simulator::RunTaskWork(Node& n, uint64_t task) {
  auto it = n.tasks.find(task);
  if (it == n.tasks.end()) return;
  ++stats_.tasks_run[static_cast<int>(it->second.kind)];
  Trace("task-work", {n.id, static_cast<uint64_t>(it->second.kind), task});
  if (it->second.work) it->second.work();
  // A failpoint in `work` crashes the store after this event: `done` never
  // runs (the crash drops the task).
  Event e;
  e.time = now_ + config_.worker_delay_us;
  e.kind = Kind::kTaskDone;
  e.store = n.id;
  e.incarnation = n.incarnation;
  e.task = task;
  Push(std::move(e));
}

void Simulator::RunTaskDone(Node& n, uint64_t task) {
  auto it = n.tasks.find(task);
  if (it == n.tasks.end()) return;
  Task t = std::move(it->second);
  n.tasks.erase(it);
  Trace("task-done", {n.id, static_cast<uint64_t>(t.kind), task});
  if (t.done) t.done();
  ScheduleWorker(n);
  WatchApplied(n);
}

bool Simulator::Failpoint(uint64_t id, std::string_view name) {
  Node* n = node(id);
  // Not while the store opens (it is not up yet), nor twice in one event.
  if (n == nullptr || n->store == nullptr) return false;
  if (n->crash_pending) return true;
  std::string key(name);
  ++stats_.failpoint_calls[key];
  auto it = config_.failpoints.find(name);
  if (it == config_.failpoints.end() || it->second <= 0) return false;
  if (RandomUnit() >= it->second) return false;
  ++stats_.failpoint_crashes[key];
  Trace("failpoint", {id}, key);
  n->crash_pending = true;
  return true;
}

void Simulator::CrashPending() {
  for (auto& [id, n] : nodes_) {
    if (!n.crash_pending) continue;
    n.crash_pending = false;
    Crash(id);
    uint64_t incarnation = n.incarnation;
    uint64_t sid = id;
    After(RandomIn(config_.failpoint_restart_min_us,
                   config_.failpoint_restart_max_us),
          [this, sid, incarnation] {
            Node* m = node(sid);
            // Unless something else restarted it meanwhile.
            if (m == nullptr || m->incarnation != incarnation) return;
            if (absl::Status s = Restart(sid); !s.ok()) {
              violations_.push_back(
                  absl::StrCat("restart of store ", sid,
                               " after a failpoint: ", s.ToString()));
            }
          });
  }
}

void Simulator::Crash(uint64_t id) {
  Node* n = node(id);
  if (n == nullptr || n->store == nullptr) return;
  ++stats_.crashes;
  Trace("crash", {id});
  // Its streams break (their senders and receivers use its SnapDir).
  std::vector<uint64_t> broken;
  for (const auto& [sid, st] : streams_) {
    if (st.from == id || st.to == id) broken.push_back(sid);
  }
  for (uint64_t sid : broken) EndStream(sid, false, "an end crashed");
  n->tasks.clear();
  n->store.reset();
  n->snap_dir.reset();
  n->kv_engine.reset();
  n->raft_engine.reset();
  n->worker_pending = false;
  n->crash_pending = false;
  n->busy_until = 0;
  // Events of the old incarnation (ticks, passes, deliveries, tasks) are now
  // stale.
  ++n->incarnation;
}

absl::Status Simulator::Restart(uint64_t id) {
  Node* n = node(id);
  if (n == nullptr) return absl::NotFoundError(absl::StrCat("store ", id));
  if (n->store != nullptr) return absl::OkStatus();
  ++stats_.restarts;
  Trace("restart", {id});
  return OpenNode(*n);
}

void Simulator::SubmitCommand(uint64_t id, raft_cmdpb::RaftCmdRequest req,
                              raftstore::Callback cb) {
  int64_t latency =
      RandomIn(config_.client_latency_min_us, config_.client_latency_max_us);
  After(latency, [this, id, req = std::move(req),
                  cb = std::move(cb)]() mutable {
    Node* n = node(id);
    if (n == nullptr || n->store == nullptr) {
      Trace("command-lost", {id});
      return;
    }
    ++stats_.commands_proposed;
    Trace("command", {id, req.header().client_id(), req.header().sequence()});
    n->store->Propose(std::move(req), std::move(cb));
    ScheduleWorker(*n);
  });
}

absl::Status Simulator::SendMessage(uint64_t from,
                                    raft_serverpb::RaftMessage msg) {
  ++stats_.messages_sent;
  uint64_t to = msg.to_peer().store_id();
  Node* n = node(to);
  if (n == nullptr || n->store == nullptr) {
    ++stats_.messages_dropped;
    TraceMessage("drop-down", msg);
    return absl::UnavailableError(absl::StrCat("store ", to, " is down"));
  }
  filters_.Route(from, to, rng_, &delays_scratch_);
  if (delays_scratch_.empty()) {
    ++stats_.messages_dropped;
    TraceMessage("drop", msg);
    return absl::OkStatus();
  }
  int64_t arrival =
      now_ + RandomIn(config_.net_latency_min_us, config_.net_latency_max_us);
  int64_t& last = link_last_[{from, to}];
  arrival = std::max(arrival, last);
  last = arrival;
  TraceMessage("send", msg);
  for (size_t i = 0; i < delays_scratch_.size(); ++i) {
    Event e;
    e.time = arrival + delays_scratch_[i];
    e.kind = Kind::kDeliver;
    e.store = to;
    e.incarnation = n->incarnation;
    if (i + 1 < delays_scratch_.size()) {
      ++stats_.messages_duplicated;
      e.msg = std::make_unique<raft_serverpb::RaftMessage>(msg);
    } else {
      e.msg = std::make_unique<raft_serverpb::RaftMessage>(std::move(msg));
    }
    Push(std::move(e));
  }
  return absl::OkStatus();
}

void Simulator::SendSnapshot(uint64_t from, raft_serverpb::RaftMessage msg) {
  Node* src = node(from);
  if (src == nullptr || src->store == nullptr) return;  // only stores send
  ++stats_.snapshots_sent;
  uint64_t to = msg.to_peer().store_id();
  const raftpb::SnapshotMetadata& meta = msg.message().snapshot().metadata();
  std::string prefix = raftstore::SnapPrefix(/*received=*/true, msg.region_id(),
                                             meta.term(), meta.index());
  TraceMessage("snap-send", msg);
  // What a worker pass sends leaves at its end.
  int64_t start = now_ + pass_delay_;
  Node* dst = node(to);
  std::string refused;
  if (dst == nullptr || dst->store == nullptr) {
    refused = "the receiver is down";
  } else {
    for (const auto& [sid, st] : streams_) {
      if (st.to == to && st.rcv_prefix == prefix) {
        refused = "the same snapshot is already streaming to the receiver";
        break;
      }
    }
  }
  if (!refused.empty()) {
    ++stats_.snapshots_failed;
    Trace("snap-fail", {from, to, meta.index()}, refused);
    ReportSnapStatus(msg, src->incarnation, /*reject=*/true,
                     start + RandomIn(config_.net_latency_min_us,
                                      config_.net_latency_max_us));
    return;
  }
  uint64_t id = next_stream_++;
  Stream& st = streams_[id];
  st.id = id;
  st.from = from;
  st.to = to;
  st.from_incarnation = src->incarnation;
  st.to_incarnation = dst->incarnation;
  st.rcv_prefix = prefix;
  st.header = msg;
  st.header.mutable_message()->mutable_snapshot()->clear_data();
  st.snap_index = meta.index();
  std::optional<raft_serverpb::RaftApplyState> applied = ApplyState(from);
  st.sender_truncated =
      applied.has_value() ? applied->truncated_state().index() : 0;
  st.sender = std::make_unique<raftstore::SnapshotSender>(
      src->snap_dir.get(), std::move(msg),
      static_cast<size_t>(config_.snap_chunk_size));
  st.receiver =
      std::make_unique<raftstore::SnapshotReceiver>(dst->snap_dir.get());
  st.last_arrival = start;
  Trace("snap-stream", {id, from, to, st.snap_index});
  After(start - now_, [this, id] { SendChunk(id); });
}

void Simulator::SendChunk(uint64_t stream) {
  auto it = streams_.find(stream);
  if (it == streams_.end()) return;
  Stream& st = it->second;
  // Crashes end their streams at once; this is a safety net.
  if (!Live(node(st.from), st.from_incarnation) ||
      !Live(node(st.to), st.to_incarnation)) {
    EndStream(stream, false, "an end is down");
    return;
  }
  if (!st.compacted) {
    std::optional<raft_serverpb::RaftApplyState> applied = ApplyState(st.from);
    if (applied.has_value() &&
        applied->truncated_state().index() > st.sender_truncated) {
      st.compacted = true;
      ++stats_.snapshots_outlived_by_compaction;
      Trace("snap-compacted", {stream, applied->truncated_state().index()});
    }
  }
  raft_serverpb::SnapshotChunk chunk;
  absl::StatusOr<bool> more = st.sender->Next(&chunk);
  if (!more.ok()) {
    EndStream(stream, false,
              absl::StrCat("sender: ", more.status().ToString()));
    return;
  }
  if (!*more) {
    // All sent: the receiver completes on the last chunk's arrival, or the
    // stream was malformed.
    After(st.last_arrival - now_ + 1, [this, stream] {
      EndStream(stream, false, "the stream ended before the snapshot did");
    });
    return;
  }
  // The file bytes plus a fixed framing cost. Not the encoded size: the
  // head's snapshot metadata carries the files' CRC32Cs, whose varint
  // length follows the files' content, which RocksDB stamps with the real
  // time (see the file comment).
  size_t bytes = chunk.data().size();
  ++st.chunks;
  ++stats_.snapshot_chunks;
  stats_.snapshot_bytes += bytes;
  int64_t transmit = static_cast<int64_t>(bytes + kChunkFramingBytes) *
                     1'000'000 /
                     std::max<int64_t>(config_.snap_bandwidth_bytes_per_s, 1);
  filters_.Route(st.from, st.to, rng_, &delays_scratch_);
  if (delays_scratch_.empty()) {
    Trace("snap-chunk-drop", {stream, st.chunks});
    // The connection breaks; the sender notices about when the chunk would
    // have arrived.
    int64_t when = transmit + RandomIn(config_.net_latency_min_us,
                                       config_.net_latency_max_us);
    After(when,
          [this, stream] { EndStream(stream, false, "a chunk was dropped"); });
    return;
  }
  // One copy only (a stream does not duplicate), in order.
  int64_t arrival =
      now_ + transmit +
      RandomIn(config_.net_latency_min_us, config_.net_latency_max_us) +
      delays_scratch_.front();
  arrival = std::max(arrival, st.last_arrival);
  st.last_arrival = arrival;
  Trace("snap-chunk", {stream, st.chunks, static_cast<uint64_t>(bytes)});
  After(arrival - now_, [this, stream, c = std::move(chunk)]() mutable {
    ChunkArrives(stream, std::move(c));
  });
  After(transmit, [this, stream] { SendChunk(stream); });
}

void Simulator::ChunkArrives(uint64_t stream,
                             raft_serverpb::SnapshotChunk chunk) {
  auto it = streams_.find(stream);
  if (it == streams_.end()) return;
  Stream& st = it->second;
  Node* dst = node(st.to);
  if (!Live(dst, st.to_incarnation)) {
    EndStream(stream, false, "the receiver is down");
    return;
  }
  absl::StatusOr<std::optional<raft_serverpb::RaftMessage>> got =
      st.receiver->Add(std::move(chunk));
  if (!got.ok()) {
    EndStream(stream, false,
              absl::StrCat("receiver: ", got.status().ToString()));
    return;
  }
  if (!got->has_value()) return;
  raft_serverpb::RaftMessage msg = std::move(**got);
  ++stats_.snapshots_completed;
  ++stats_.snapshots_received[st.to];
  for (const auto& [tid, task] : dst->tasks) {
    if (task.kind == raftstore::TaskKind::kSnapApply) {
      ++stats_.snapshots_while_applying;
      break;
    }
  }
  ++stats_.messages_delivered;
  TraceMessage("snap-deliver", msg);
  EndStream(stream, true, "");
  if (delivery_hook_) delivery_hook_(msg);
  dst->store->Step(std::move(msg));
  ScheduleWorker(*dst);
}

void Simulator::EndStream(uint64_t stream, bool ok, std::string_view why) {
  auto it = streams_.find(stream);
  if (it == streams_.end()) return;
  Stream& st = it->second;
  if (!ok) {
    ++stats_.snapshots_failed;
    Trace("snap-fail", {stream, st.from, st.to, st.snap_index}, why);
  }
  // A completed receiver keeps its files; a broken one removes them.
  st.receiver.reset();
  st.sender.reset();
  raft_serverpb::RaftMessage header = std::move(st.header);
  uint64_t from_incarnation = st.from_incarnation;
  streams_.erase(it);
  ReportSnapStatus(
      header, from_incarnation, /*reject=*/!ok,
      now_ + RandomIn(config_.net_latency_min_us, config_.net_latency_max_us));
}

void Simulator::ReportSnapStatus(const raft_serverpb::RaftMessage& snap_msg,
                                 uint64_t from_incarnation, bool reject,
                                 int64_t time) {
  uint64_t from = snap_msg.from_peer().store_id();
  if (!Live(node(from), from_incarnation)) return;
  auto status = std::make_unique<raft_serverpb::RaftMessage>(
      raftstore::SnapStatusMessage(snap_msg, reject));
  Event e;
  e.time = std::max(time, now_);
  e.kind = Kind::kSnapStatus;
  e.store = from;
  e.incarnation = from_incarnation;
  e.msg = std::move(status);
  Push(std::move(e));
}

void Simulator::TraceMessage(std::string_view what,
                             const raft_serverpb::RaftMessage& m) {
  const raftpb::Message& r = m.message();
  if (r.msg_type() == raftpb::MsgSnapshot) {
    const raftpb::SnapshotMetadata& meta = r.snapshot().metadata();
    Trace(what, {m.from_peer().store_id(), m.to_peer().store_id(),
                 static_cast<uint64_t>(r.msg_type()), r.term(), meta.index(),
                 meta.term(), r.commit()});
    return;
  }
  Trace(what, {m.from_peer().store_id(), m.to_peer().store_id(),
               static_cast<uint64_t>(r.msg_type()), r.term(), r.log_term(),
               r.index(), r.commit(), static_cast<uint64_t>(r.entries_size()),
               static_cast<uint64_t>(r.reject())});
}

void Simulator::Trace(std::string_view what,
                      std::initializer_list<uint64_t> fields,
                      std::string_view detail) {
  trace_.Add(static_cast<uint64_t>(now_));
  trace_.AddString(what);
  for (uint64_t f : fields) trace_.Add(f);
  if (!detail.empty()) trace_.AddString(detail);
  if (!config_.verbose) return;
  std::string line = absl::StrCat("t=", now_, " ", std::string(what));
  for (uint64_t f : fields) absl::StrAppend(&line, " ", f);
  if (!detail.empty()) absl::StrAppend(&line, " ", std::string(detail));
  std::fprintf(stderr, "%s\n", line.c_str());
}

}  // namespace raftkv::sim
