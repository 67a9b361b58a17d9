// Log compaction and region snapshots across three stores in one process:
// CompactLog and the log GC, a lagging follower caught up by a snapshot
// (with the exactly-once table), restarts and crashes at every failpoint of
// the snapshot and compaction paths, corrupt and broken snapshot streams,
// snapshots that overlap, and compaction while a snapshot is in flight.
//
// The harness is deterministic and single-threaded: each store has its own
// engines and SnapDir on one InMemoryEnv (a crash drops the Store and its
// engines and loses the kv engine's unsynced writes), a TestScheduler whose
// tasks run inside Settle unless their kind is held, and one TestTransport
// whose snapshot streams go chunk by chunk from the sender's SnapDir
// (SnapshotSender) to the receiver's (SnapshotReceiver), with faults on
// demand.
#include <rocksdb/env.h>  // only to see the raw files (".tmp") of a SnapDir

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "raft/errors.h"
#include "raftstore/peer_storage.h"
#include "raftstore/scheduler.h"
#include "raftstore/snap.h"
#include "raftstore/store.h"
#include "storage/engine.h"
#include "storage/keys.h"
#include "storage/snap_files.h"
#include "test_requests.h"

namespace raftkv::raftstore {
namespace {

using raft_cmdpb::RaftCmdRequest;
using test::Get;
using test::Header;
using test::Put;

constexpr uint64_t kRegion = 1;
constexpr uint64_t kGcLimit = 10;
constexpr size_t kChunkSize = 512;

// Runs tasks when the test lets it: queued in order, run inside
// Cluster::Settle unless their kind is held.
class TestScheduler : public Scheduler {
 public:
  // `crashed` tells whether a failpoint fired in the task just run (then
  // its `done` must not run and nothing more runs).
  explicit TestScheduler(std::function<bool()> crashed)
      : crashed_(std::move(crashed)) {}

  void Schedule(TaskKind kind, std::function<void()> work,
                std::function<void()> done) override {
    tasks_.push_back(Task{kind, std::move(work), std::move(done)});
    ++scheduled_[kind];
  }

  // Runs every queued task whose kind is not held, in order. Returns whether
  // any ran.
  bool RunReady() {
    bool ran = false;
    for (size_t i = 0; i < tasks_.size();) {
      if (held_.count(tasks_[i].kind) > 0) {
        ++i;
        continue;
      }
      Task t = std::move(tasks_[i]);
      tasks_.erase(tasks_.begin() + static_cast<std::ptrdiff_t>(i));
      ran = true;
      t.work();
      if (crashed_()) return true;
      t.done();
    }
    return ran;
  }

  void Hold(TaskKind kind) { held_.insert(kind); }
  void Release(TaskKind kind) { held_.erase(kind); }
  size_t Pending(TaskKind kind) const {
    return static_cast<size_t>(
        std::count_if(tasks_.begin(), tasks_.end(),
                      [kind](const Task& t) { return t.kind == kind; }));
  }
  int Scheduled(TaskKind kind) const {
    auto it = scheduled_.find(kind);
    return it == scheduled_.end() ? 0 : it->second;
  }
  // A crash: queued tasks are lost.
  void Clear() { tasks_.clear(); }

 private:
  struct Task {
    TaskKind kind;
    std::function<void()> work;
    std::function<void()> done;
  };
  std::function<bool()> crashed_;
  std::deque<Task> tasks_;
  std::set<TaskKind> held_;
  std::map<TaskKind, int> scheduled_;
};

// One snapshot on its way; see Cluster::StepStream.
struct Stream {
  raft_serverpb::RaftMessage msg;
  uint64_t from = 0;
  uint64_t to = 0;
  std::unique_ptr<SnapshotSender> sender;
  std::unique_ptr<SnapshotReceiver> receiver;
  int chunks = 0;  // chunks handed to the receiver so far
  int corrupt_chunk = -1;
  int break_after = -1;
  // Stops after TestTransport::hold_after_chunks chunks while set.
  bool hold = false;
};

class Cluster;

class TestTransport : public Transport {
 public:
  explicit TestTransport(Cluster* c) : c_(c) {}
  absl::Status Send(raft_serverpb::RaftMessage msg) override;
  void SendSnapshot(raft_serverpb::RaftMessage msg) override;

  std::deque<raft_serverpb::RaftMessage> queue_;
  std::deque<Stream> streams_;
  // Stores cut off: messages and streams to or from them are lost.
  std::set<uint64_t> cut_;

  // Faults for the next stream started (then reset): flip a byte of data
  // chunk number `corrupt_next_chunk` (the head is chunk 0), or drop the
  // stream after `break_next_after` chunks.
  int corrupt_next_chunk = -1;
  int break_next_after = -1;
  // While set, streams stop after `hold_after_chunks` chunks; so does the
  // next stream started after `hold_next_stream` was set, until its own
  // `hold` is cleared.
  bool hold_streams = false;
  bool hold_next_stream = false;
  int hold_after_chunks = 0;
  // While set, complete snapshots are parked instead of being handed to the
  // receiving store (ReleaseParked hands them on).
  bool park_deliveries = false;
  std::deque<raft_serverpb::RaftMessage> parked_;

  // What happened.
  int streams_started = 0;
  int streams_ok = 0;
  int streams_failed = 0;
  int corruptions = 0;
  int breaks = 0;
  int rejects_sent = 0;
  // Every MsgSnapshot handed to a receiving store (or parked), by store.
  std::map<uint64_t, std::vector<raftpb::SnapshotMetadata>> delivered_;

 private:
  Cluster* c_;
};

struct ClusterOptions {
  // Use a TestScheduler (else the stores' inline schedulers).
  bool test_scheduler = true;
  bool lose_unsynced = true;
  int gc_tick_interval = 1;
  uint64_t seed = 7;
};

class Cluster {
 public:
  explicit Cluster(ClusterOptions options = {})
      : options_(options), transport_(this) {
    metapb::Region region = InitialRegion(3);
    for (uint64_t id = 1; id <= 3; ++id) {
      Node& n = nodes_[id];
      OpenEngines(id);
      EXPECT_TRUE(BootstrapStore(n.raft.get(), n.kv.get(), 1, id, region).ok());
      StartStore(id);
    }
  }

  ~Cluster() {
    transport_.streams_.clear();  // their receivers use the SnapDirs
    for (auto& [id, n] : nodes_) Drop(id);
  }

  // --- failpoints ---------------------------------------------------------

  // The next call of failpoint `name` (on any store) crashes that store.
  void Arm(std::string name) { armed_ = std::move(name); }
  bool fired() const { return fired_; }
  uint64_t fired_store() const { return fired_store_; }
  int hits(const std::string& name) const {
    auto it = hits_.find(name);
    return it == hits_.end() ? 0 : it->second;
  }

  // --- lifecycle ----------------------------------------------------------

  // Crash: the store, its queued tasks and its streams are lost, its engines
  // closed (losing the kv engine's unsynced writes).
  void Crash(uint64_t id) {
    EndStreamsOf(id);
    Drop(id);
  }
  void Reopen(uint64_t id) {
    ASSERT_EQ(nodes_[id].store, nullptr) << "store " << id << " is running";
    OpenEngines(id);
    StartStore(id);
  }
  bool up(uint64_t id) { return nodes_[id].store != nullptr; }

  // --- driving ------------------------------------------------------------

  // Runs tasks, worker passes, messages and streams until nothing moves. A
  // store whose failpoint fired crashes here.
  void Settle() {
    for (int round = 0; round < 100000; ++round) {
      bool busy = false;
      for (auto& [id, n] : nodes_) {
        if (n.store == nullptr) continue;
        if (n.scheduler != nullptr && n.scheduler->RunReady()) busy = true;
        if (n.crash_pending) {
          Crash(id);
          busy = true;
          continue;
        }
        busy |= n.store->HandleReadies();
      }
      while (!transport_.queue_.empty()) {
        busy = true;
        raft_serverpb::RaftMessage m = std::move(transport_.queue_.front());
        transport_.queue_.pop_front();
        Node& n = nodes_[m.to_peer().store_id()];
        if (n.store != nullptr) n.store->Step(std::move(m));
      }
      busy |= StepStreams();
      if (!busy) return;
    }
    ADD_FAILURE() << "cluster never settled";
  }

  // Ticks every running store `n` times, settling after each. Stores a
  // failpoint crashed are reopened first.
  void TickAll(int n) {
    for (int i = 0; i < n; ++i) {
      for (auto& [id, node] : nodes_) {
        if (node.store == nullptr && node.crashed_by_failpoint) {
          node.crashed_by_failpoint = false;
          Reopen(id);
          reopened_after_failpoint_.push_back(id);
        }
      }
      for (auto& [id, node] : nodes_) {
        if (node.store != nullptr) node.store->Tick();
      }
      Settle();
    }
  }

  Peer* peer(uint64_t id) {
    Node& n = nodes_[id];
    return n.store == nullptr ? nullptr : n.store->GetPeer(kRegion);
  }
  const PeerStorage& ps(uint64_t id) { return peer(id)->peer_storage(); }
  Store& store(uint64_t id) { return *nodes_[id].store; }

  // The running, connected store whose peer leads with the highest term,
  // after ticking until there is one; 0 if none.
  uint64_t Leader(int max_ticks = 300) {
    for (int i = 0; i <= max_ticks; ++i) {
      uint64_t best = 0, best_term = 0;
      for (uint64_t id = 1; id <= 3; ++id) {
        Peer* p = peer(id);
        if (p == nullptr || transport_.cut_.count(id) > 0) continue;
        if (p->IsLeader() && p->term() >= best_term) {
          best = id;
          best_term = p->term();
        }
      }
      if (best != 0) return best;
      TickAll(1);
    }
    return 0;
  }

  // Makes a store other than `not_this` lead.
  uint64_t LeaderOtherThan(uint64_t not_this) {
    uint64_t l = Leader();
    if (l != not_this) return l;
    TransferLeader(l, not_this % 3 + 1);
    return Leader();
  }

  // Asks the leader `from` to hand leadership to `to` and ticks until it
  // did. Returns whether it did.
  bool TransferLeader(uint64_t from, uint64_t to) {
    RaftCmdRequest req = Header(from);
    auto* admin = req.mutable_admin_request();
    admin->set_cmd_type(raft_cmdpb::TransferLeader);
    admin->mutable_transfer_leader()->mutable_peer()->set_id(to);
    admin->mutable_transfer_leader()->mutable_peer()->set_store_id(to);
    for (int i = 0; i < 100; ++i) {
      if (peer(to) != nullptr && peer(to)->IsLeader()) return true;
      if (i % 20 == 0) {
        uint64_t l = Leader();
        if (l != 0 && l != to) {
          RaftCmdRequest r = req;
          r.mutable_header()->mutable_peer()->set_id(l);
          r.mutable_header()->mutable_peer()->set_store_id(l);
          r.mutable_admin_request()
              ->mutable_transfer_leader()
              ->mutable_peer()
              ->set_id(to);
          (void)Run(l, r);
        }
      }
      TickAll(1);
    }
    return peer(to) != nullptr && peer(to)->IsLeader();
  }

  // Proposes on store `id` and settles; the answer, if any came.
  std::optional<CmdResult> Run(uint64_t id, RaftCmdRequest req) {
    auto out = std::make_shared<std::optional<CmdResult>>();
    if (nodes_[id].store == nullptr) return std::nullopt;
    nodes_[id].store->Propose(std::move(req),
                              [out](CmdResult r) { *out = std::move(r); });
    Settle();
    return *out;
  }

  // Puts through whichever store leads, retrying (same client id and
  // sequence) until it succeeds; ticks `ticks_after` times afterwards.
  // Returns whether it succeeded.
  bool MustPut(const std::string& k, const std::string& v, uint64_t client = 0,
               uint64_t seq = 0, int ticks_after = 1) {
    for (int attempt = 0; attempt < 40; ++attempt) {
      uint64_t l = Leader();
      if (l != 0) {
        auto r = Run(l, Put(l, k, v, client, seq));
        if (r.has_value() && !r->response.header().has_error()) {
          TickAll(ticks_after);
          return true;
        }
      }
      TickAll(2);
    }
    ADD_FAILURE() << "put " << k << " never succeeded";
    return false;
  }

  // Whether every store runs, none is applying a snapshot, no stream or
  // task is pending, and all have applied the same index.
  bool Quiet() {
    if (!transport_.streams_.empty() || !transport_.parked_.empty()) {
      return false;
    }
    std::optional<uint64_t> applied;
    for (uint64_t id = 1; id <= 3; ++id) {
      Peer* p = peer(id);
      if (p == nullptr || p->applying_snapshot()) return false;
      if (applied.has_value() && *applied != p->peer_storage().applied_index())
        return false;
      applied = p->peer_storage().applied_index();
    }
    for (uint64_t id = 1; id <= 3; ++id) {
      if (peer(id)->IsLeader() &&
          peer(id)->raw_node().raft().raft_log().committed() == *applied) {
        return true;
      }
    }
    return false;
  }

  // Ticks until Quiet (at most `max_ticks`); returns whether it got there.
  bool Converge(int max_ticks = 400) {
    for (int i = 0; i < max_ticks; ++i) {
      TickAll(1);
      if (Quiet()) return true;
    }
    return false;
  }

  // --- inspection ---------------------------------------------------------

  storage::Engine& kv(uint64_t id) { return *nodes_[id].kv; }
  storage::Engine& raft(uint64_t id) { return *nodes_[id].raft; }
  storage::SnapDir& snap_dir(uint64_t id) { return *nodes_[id].snap_dir; }
  TestScheduler* scheduler(uint64_t id) { return nodes_[id].scheduler.get(); }
  TestTransport& transport() { return transport_; }
  const std::vector<uint64_t>& reopened_after_failpoint() const {
    return reopened_after_failpoint_;
  }

  // The user data (default cf) of store `id`'s kv engine.
  std::map<std::string, std::string> Data(uint64_t id) {
    std::map<std::string, std::string> out;
    auto it = kv(id).NewIterator(storage::DataStartKey(storage::kCfDefault, ""),
                                 storage::DataEndKey(storage::kCfDefault, ""));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      auto k = storage::DecodeDataKey(storage::kCfDefault, it->key());
      EXPECT_TRUE(k.ok());
      out[k.value_or("?")] = std::string(it->value());
    }
    EXPECT_TRUE(it->status().ok());
    return out;
  }

  // The exactly-once table of store `id`'s kv engine.
  std::map<uint64_t, uint64_t> Dedup(uint64_t id) {
    std::map<uint64_t, uint64_t> out;
    std::string prefix = storage::DedupStartKey(kRegion);
    auto it = kv(id).NewIterator(prefix, storage::DedupEndKey(kRegion));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      uint64_t client = 0, seq = 0;
      EXPECT_TRUE(storage::DecodeU64(it->key().substr(prefix.size()), &client));
      EXPECT_TRUE(storage::DecodeU64(it->value(), &seq));
      out[client] = seq;
    }
    return out;
  }

  // The indexes of the raft-log entries in store `id`'s raft engine.
  std::vector<uint64_t> LogIndexes(uint64_t id) {
    std::vector<uint64_t> out;
    auto it = raft(id).NewIterator(storage::RaftLogStartKey(kRegion),
                                   storage::RaftLogEndKey(kRegion));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      auto i = storage::DecodeRaftLogIndex(kRegion, it->key());
      EXPECT_TRUE(i.ok());
      out.push_back(i.value_or(0));
    }
    return out;
  }

  // Every file of store `id`'s snapshot directory, ".tmp" ones included.
  std::vector<std::string> RawSnapFiles(uint64_t id) {
    std::vector<std::string> children;
    (void)env_->env()->GetChildren(SnapPath(id), &children);
    std::vector<std::string> out;
    for (std::string& c : children) {
      if (c != "." && c != "..") out.push_back(std::move(c));
    }
    return out;
  }

  // The region state of store `id` as persisted.
  raft_serverpb::RegionLocalState RegionState(uint64_t id) {
    raft_serverpb::RegionLocalState rs;
    EXPECT_TRUE(*kv(id).GetProto(storage::RegionStateKey(kRegion), &rs));
    return rs;
  }

 private:
  friend class TestTransport;

  struct Node {
    std::unique_ptr<storage::Engine> raft, kv;
    std::unique_ptr<storage::SnapDir> snap_dir;
    std::unique_ptr<TestScheduler> scheduler;
    std::unique_ptr<Store> store;
    bool crash_pending = false;
    bool crashed_by_failpoint = false;
  };

  static std::string Dir(uint64_t id) {
    return "/cluster/store" + std::to_string(id);
  }
  static std::string SnapPath(uint64_t id) { return Dir(id) + "/snap"; }

  void OpenEngines(uint64_t id) {
    Node& n = nodes_[id];
    n.raft = *storage::Engine::Open({Dir(id) + "/raft", env_});
    n.kv =
        *storage::Engine::Open({Dir(id) + "/kv", env_, options_.lose_unsynced});
    n.snap_dir = *storage::SnapDir::Open(SnapPath(id), env_);
  }

  void StartStore(uint64_t id) {
    Node& n = nodes_[id];
    StoreConfig c;
    c.store_id = id;
    c.seed = options_.seed;
    c.raft_log_gc_count_limit = kGcLimit;
    c.raft_log_gc_tick_interval = options_.gc_tick_interval;
    c.failpoint = [this, id](std::string_view name) {
      return Failpoint(id, name);
    };
    n.scheduler.reset();
    if (options_.test_scheduler) {
      n.scheduler = std::make_unique<TestScheduler>(
          [this, id] { return nodes_[id].crash_pending; });
    }
    auto s = Store::Open(c, n.raft.get(), n.kv.get(), &transport_,
                         n.snap_dir.get(), n.scheduler.get());
    ASSERT_TRUE(s.ok()) << "store " << id << ": " << s.status();
    n.store = *std::move(s);
  }

  bool Failpoint(uint64_t id, std::string_view name) {
    ++hits_[std::string(name)];
    Node& n = nodes_[id];
    if (n.crash_pending) return true;
    if (!fired_ && name == armed_) {
      fired_ = true;
      fired_store_ = id;
      n.crash_pending = true;
      n.crashed_by_failpoint = true;
      return true;
    }
    return false;
  }

  // Drops the store and everything it holds; the disk stays.
  void Drop(uint64_t id) {
    Node& n = nodes_[id];
    if (n.scheduler != nullptr) n.scheduler->Clear();  // before the engines
    n.store.reset();
    n.scheduler.reset();
    n.snap_dir.reset();
    n.kv.reset();
    n.raft.reset();
    n.crash_pending = false;
  }

  void Status(const Stream& s, bool reject) {
    raft_serverpb::RaftMessage st = SnapStatusMessage(s.msg, reject);
    if (reject) ++transport_.rejects_sent;
    transport_.queue_.push_back(std::move(st));
  }

  // Ends the streams from or to store `id` (it crashed): the sender, if it
  // runs, hears of the failure.
  void EndStreamsOf(uint64_t id) {
    auto& streams = transport_.streams_;
    for (auto it = streams.begin(); it != streams.end();) {
      if (it->from == id || it->to == id) {
        it->receiver.reset();  // drops its partial files
        it->sender.reset();
        ++transport_.streams_failed;
        if (it->from != id) Status(*it, /*reject=*/true);
        it = streams.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Moves every stream on by one chunk; returns whether any moved.
  bool StepStreams() {
    auto& streams = transport_.streams_;
    bool moved = false;
    for (auto it = streams.begin(); it != streams.end();) {
      Stream& s = *it;
      if ((transport_.hold_streams || s.hold) &&
          s.chunks >= transport_.hold_after_chunks) {
        ++it;
        continue;
      }
      moved = true;
      std::optional<bool> outcome = StepStream(s);
      if (!outcome.has_value()) {
        ++it;
        continue;
      }
      s.receiver.reset();
      s.sender.reset();
      if (*outcome) {
        ++transport_.streams_ok;
      } else {
        ++transport_.streams_failed;
      }
      if (up(s.from)) Status(s, !*outcome);
      it = streams.erase(it);
    }
    return moved;
  }

  // One chunk of `s`: nullopt while it goes on, else whether it succeeded.
  std::optional<bool> StepStream(Stream& s) {
    if (!up(s.from) || !up(s.to) || transport_.cut_.count(s.from) > 0 ||
        transport_.cut_.count(s.to) > 0) {
      return false;
    }
    if (s.sender == nullptr) {
      s.sender = std::make_unique<SnapshotSender>(nodes_[s.from].snap_dir.get(),
                                                  s.msg, kChunkSize);
      s.receiver =
          std::make_unique<SnapshotReceiver>(nodes_[s.to].snap_dir.get());
    }
    if (s.break_after >= 0 && s.chunks >= s.break_after) {
      ++transport_.breaks;
      return false;
    }
    raft_serverpb::SnapshotChunk chunk;
    absl::StatusOr<bool> more = s.sender->Next(&chunk);
    if (!more.ok()) return false;
    if (!*more) {
      ADD_FAILURE() << "the sender ended a stream the receiver did not take";
      return false;
    }
    if (s.chunks == s.corrupt_chunk && !chunk.data().empty()) {
      (*chunk.mutable_data())[chunk.data().size() / 2] ^= 0x5a;
      ++transport_.corruptions;
    }
    ++s.chunks;
    auto got = s.receiver->Add(std::move(chunk));
    if (!got.ok()) return false;
    if (!got->has_value()) return std::nullopt;
    transport_.delivered_[s.to].push_back(
        (*got)->message().snapshot().metadata());
    if (transport_.park_deliveries) {
      transport_.parked_.push_back(**std::move(got));
    } else {
      transport_.queue_.push_back(**std::move(got));
    }
    return true;
  }

  ClusterOptions options_;
  std::shared_ptr<storage::InMemoryEnv> env_ =
      std::make_shared<storage::InMemoryEnv>();
  TestTransport transport_;
  std::map<uint64_t, Node> nodes_;
  std::string armed_;
  bool fired_ = false;
  uint64_t fired_store_ = 0;
  std::map<std::string, int> hits_;
  std::vector<uint64_t> reopened_after_failpoint_;
};

absl::Status TestTransport::Send(raft_serverpb::RaftMessage msg) {
  if (cut_.count(msg.to_peer().store_id()) > 0 ||
      cut_.count(msg.from_peer().store_id()) > 0) {
    return absl::OkStatus();  // lost on the way
  }
  queue_.push_back(std::move(msg));
  return absl::OkStatus();
}

void TestTransport::SendSnapshot(raft_serverpb::RaftMessage msg) {
  Stream s;
  s.from = msg.from_peer().store_id();
  s.to = msg.to_peer().store_id();
  s.msg = std::move(msg);
  s.corrupt_chunk = corrupt_next_chunk;
  s.break_after = break_next_after;
  s.hold = hold_next_stream;
  corrupt_next_chunk = -1;
  break_next_after = -1;
  hold_next_stream = false;
  ++streams_started;
  streams_.push_back(std::move(s));
}

// A value of `n` pseudo-random bytes (they do not compress away, so the
// snapshot files span many chunks).
std::string Value(std::mt19937_64& rng, int n = 64) {
  std::string v(static_cast<size_t>(n), '\0');
  for (char& ch : v) ch = static_cast<char>('a' + rng() % 26);
  return v;
}

std::string Key(int i) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "k%04d", i);
  return buf;
}

// The answer's single Get value; fails the test on an error.
std::string GetValue(const std::optional<CmdResult>& r) {
  EXPECT_TRUE(r.has_value());
  if (!r) return "<no answer>";
  EXPECT_FALSE(r->response.header().has_error())
      << r->response.header().error().message();
  if (r->response.responses_size() != 1) return "<bad response>";
  return r->response.responses(0).get().value();
}

// Expects every store to hold `want` (user data) and the same exactly-once
// table.
void ExpectConverged(Cluster& c,
                     const std::map<std::string, std::string>& want) {
  for (uint64_t id = 1; id <= 3; ++id) {
    ASSERT_TRUE(c.up(id)) << "store " << id;
    EXPECT_EQ(c.Data(id), want) << "store " << id;
    EXPECT_EQ(c.Dedup(id), c.Dedup(1)) << "store " << id;
  }
}

// Writes keys [from, to) with ticks in between (so the leader compacts).
void WriteKeys(Cluster& c, std::mt19937_64& rng, int from, int to,
               std::map<std::string, std::string>* want) {
  for (int i = from; i < to; ++i) {
    std::string v = Value(rng);
    ASSERT_TRUE(c.MustPut(Key(i), v));
    (*want)[Key(i)] = v;
  }
}

// --- 1. CompactLog and the log GC --------------------------------------------

void CheckCompacted(Cluster& c, bool gc_done) {
  for (uint64_t id = 1; id <= 3; ++id) {
    SCOPED_TRACE("store " + std::to_string(id));
    const PeerStorage& ps = c.ps(id);
    uint64_t truncated = ps.truncated_index();
    uint64_t last = ps.raft_state().last_index();
    EXPECT_GT(truncated, kRaftInitLogIndex) << "the log was never compacted";
    EXPECT_LE(ps.applied_index() - truncated, 2 * kGcLimit);
    if (!gc_done) continue;
    // The raft engine holds exactly (truncated, last].
    std::vector<uint64_t> on_disk = c.LogIndexes(id);
    ASSERT_FALSE(on_disk.empty());
    EXPECT_EQ(on_disk.front(), truncated + 1);
    EXPECT_EQ(on_disk.back(), last);
    EXPECT_EQ(on_disk.size(), last - truncated);
    // A PeerStorage over the same engines sees the same log.
    auto fresh =
        PeerStorage::Create(&c.raft(id), &c.kv(id), c.ps(id).region(), "check");
    ASSERT_TRUE(fresh.ok()) << fresh.status();
    EXPECT_EQ((*fresh)->truncated_index(), truncated);
    auto below = (*fresh)->Entries(truncated, truncated + 1, UINT64_MAX);
    EXPECT_TRUE(raft::IsError(below.status(), raft::ErrorKind::kCompacted))
        << below.status();
    EXPECT_TRUE(raft::IsError((*fresh)->Term(truncated - 1).status(),
                              raft::ErrorKind::kCompacted));
    auto kept = (*fresh)->Entries(truncated + 1, last + 1, UINT64_MAX);
    ASSERT_TRUE(kept.ok()) << kept.status();
    EXPECT_EQ(kept->size(), last - truncated);
  }
}

TEST(SnapshotTest, CompactLogTruncatesEveryStoreAndTheGcDeletesTheLog) {
  Cluster c;
  std::mt19937_64 rng(1);
  std::map<std::string, std::string> want;
  uint64_t leader = c.Leader();
  ASSERT_NE(leader, 0u);
  for (int i = 0; i < 60; ++i) {
    std::string v = Value(rng);
    auto r = c.Run(leader, Put(leader, Key(i), v));
    ASSERT_TRUE(r.has_value());
    ASSERT_FALSE(r->response.header().has_error())
        << r->response.header().error().message();
    want[Key(i)] = v;
    c.TickAll(1);
    // The log stays bounded all along.
    for (uint64_t id = 1; id <= 3; ++id) {
      EXPECT_LE(c.ps(id).applied_index() - c.ps(id).truncated_index(),
                2 * kGcLimit)
          << "store " << id << " after put " << i;
    }
  }
  ASSERT_TRUE(c.Converge());
  ASSERT_EQ(c.Leader(), leader) << "leadership moved: the test is off script";
  CheckCompacted(c, /*gc_done=*/true);
  // Every store truncated past the writes' first half.
  for (uint64_t id = 1; id <= 3; ++id) {
    EXPECT_GT(c.ps(id).truncated_index(), kRaftInitLogIndex + 30)
        << "store " << id;
    EXPECT_GE(c.scheduler(id)->Scheduled(TaskKind::kLogGc), 1);
  }
  ExpectConverged(c, want);
  // Reads still work after the log they were written by is gone.
  EXPECT_EQ(GetValue(c.Run(leader, Get(leader, Key(0)))), want[Key(0)]);
}

// With the GC held, the entries stay on disk while the truncated index
// moves; releasing it deletes them.
TEST(SnapshotTest, HeldLogGcKeepsEntriesUntilItRuns) {
  Cluster c;
  std::mt19937_64 rng(2);
  std::map<std::string, std::string> want;
  for (uint64_t id = 1; id <= 3; ++id) c.scheduler(id)->Hold(TaskKind::kLogGc);
  WriteKeys(c, rng, 0, 30, &want);
  ASSERT_TRUE(c.Converge());
  for (uint64_t id = 1; id <= 3; ++id) {
    EXPECT_GT(c.ps(id).truncated_index(), kRaftInitLogIndex) << id;
    EXPECT_GE(c.scheduler(id)->Pending(TaskKind::kLogGc), 1u) << id;
    std::vector<uint64_t> on_disk = c.LogIndexes(id);
    ASSERT_FALSE(on_disk.empty());
    EXPECT_EQ(on_disk.front(), kRaftInitLogIndex + 1) << id;
  }
  CheckCompacted(c, /*gc_done=*/false);
  for (uint64_t id = 1; id <= 3; ++id) {
    c.scheduler(id)->Release(TaskKind::kLogGc);
  }
  c.TickAll(3);
  CheckCompacted(c, /*gc_done=*/true);
  ExpectConverged(c, want);
}

// The inline scheduler (no Scheduler given) runs the GC too.
TEST(SnapshotTest, InlineSchedulerCompactsAndCollects) {
  ClusterOptions o;
  o.test_scheduler = false;
  o.gc_tick_interval = 2;
  Cluster c(o);
  std::mt19937_64 rng(3);
  std::map<std::string, std::string> want;
  WriteKeys(c, rng, 0, 40, &want);
  ASSERT_TRUE(c.Converge());
  c.TickAll(4);
  CheckCompacted(c, /*gc_done=*/true);
  ExpectConverged(c, want);
}

// --- 2. The log GC syncs the kv engine first
// ----------------------------------

TEST(SnapshotTest, CrashAfterLogGcKeepsEverything) {
  Cluster c;
  std::mt19937_64 rng(4);
  std::map<std::string, std::string> want;
  WriteKeys(c, rng, 0, 40, &want);
  ASSERT_TRUE(c.Converge());
  CheckCompacted(c, /*gc_done=*/true);
  // A few more writes without ticks: no CompactLog, no GC, so they stay
  // unsynced in the kv engines and the crash below loses them there.
  uint64_t leader = c.Leader();
  for (int i = 40; i < 44; ++i) {
    std::string v = Value(rng);
    auto r = c.Run(leader, Put(leader, Key(i), v));
    ASSERT_TRUE(r.has_value() && !r->response.header().has_error());
    want[Key(i)] = v;
  }
  std::map<uint64_t, uint64_t> applied_before;
  for (uint64_t id = 1; id <= 3; ++id) {
    applied_before[id] = c.ps(id).applied_index();
  }
  for (uint64_t id = 1; id <= 3; ++id) c.Crash(id);
  for (uint64_t id = 1; id <= 3; ++id) c.Reopen(id);
  bool lost_some = false;
  for (uint64_t id = 1; id <= 3; ++id) {
    SCOPED_TRACE("store " + std::to_string(id));
    const PeerStorage& ps = c.ps(id);
    lost_some |= ps.applied_index() < applied_before[id];
    EXPECT_GE(ps.applied_index(), ps.truncated_index());
    // The durable truncated state covers every entry the GC deleted: the
    // log on disk starts right after it, without a hole.
    std::vector<uint64_t> on_disk = c.LogIndexes(id);
    ASSERT_FALSE(on_disk.empty());
    EXPECT_LE(on_disk.front(), ps.truncated_index() + 1);
    EXPECT_EQ(on_disk.back(), ps.raft_state().last_index());
    for (size_t i = 1; i < on_disk.size(); ++i) {
      ASSERT_EQ(on_disk[i], on_disk[i - 1] + 1) << "hole in the raft log";
    }
  }
  EXPECT_TRUE(lost_some) << "the crash lost no kv write: the test proves "
                            "nothing about the order of sync and GC";
  ASSERT_TRUE(c.Converge());
  ExpectConverged(c, want);
  ASSERT_TRUE(c.MustPut("after", "crash"));
  want["after"] = "crash";
  ASSERT_TRUE(c.Converge());
  ExpectConverged(c, want);
}

// A crash while the GC is held: the entries are still there and the store
// comes back.
TEST(SnapshotTest, CrashWithLogGcPendingRestartsCleanly) {
  Cluster c;
  std::mt19937_64 rng(5);
  std::map<std::string, std::string> want;
  for (uint64_t id = 1; id <= 3; ++id) c.scheduler(id)->Hold(TaskKind::kLogGc);
  WriteKeys(c, rng, 0, 30, &want);
  ASSERT_TRUE(c.Converge());
  for (uint64_t id = 1; id <= 3; ++id) c.Crash(id);
  for (uint64_t id = 1; id <= 3; ++id) c.Reopen(id);
  WriteKeys(c, rng, 30, 40, &want);
  ASSERT_TRUE(c.Converge());
  c.TickAll(3);
  CheckCompacted(c, /*gc_done=*/true);
  ExpectConverged(c, want);
}

// --- 3 and 4. A follower catches up by snapshot
// -------------------------------

// Cuts store 3 off, writes until the others compacted past its log, and
// heals. Checks that store 3 caught up through a snapshot. Returns store
// 3's last index before the cut.
uint64_t LagAndCatchUp(Cluster& c, std::mt19937_64& rng,
                       std::map<std::string, std::string>* want, int* next_key,
                       int n = 40) {
  c.TickAll(2);
  uint64_t last3 = c.ps(3).raft_state().last_index();
  size_t delivered = c.transport().delivered_[3].size();
  c.transport().cut_.insert(3);
  uint64_t leader = c.LeaderOtherThan(3);
  EXPECT_NE(leader, 3u);
  WriteKeys(c, rng, *next_key, *next_key + n, want);
  *next_key += n;
  EXPECT_GT(c.ps(leader).truncated_index(), last3 + 1)
      << "the leader did not compact past store 3's log";
  c.transport().cut_.erase(3);
  EXPECT_TRUE(c.Converge());
  EXPECT_GT(c.transport().delivered_[3].size(), delivered)
      << "store 3 got no snapshot";
  EXPECT_GT(c.ps(3).truncated_index(), last3)
      << "store 3 caught up from the log, not a snapshot";
  return last3;
}

TEST(SnapshotTest, LaggingFollowerCatchesUpBySnapshot) {
  Cluster c;
  std::mt19937_64 rng(6);
  std::map<std::string, std::string> want;
  int next = 0;
  WriteKeys(c, rng, 0, 5, &want);
  next = 5;
  // The exactly-once table must travel with the snapshot: write a client's
  // commands while store 3 is away.
  c.TickAll(2);
  uint64_t last3 = c.ps(3).raft_state().last_index();
  c.transport().cut_.insert(3);
  c.LeaderOtherThan(3);
  ASSERT_TRUE(c.MustPut("x", "first", 77, 1));
  ASSERT_TRUE(c.MustPut("x", "second", 77, 2));
  want["x"] = "second";
  c.transport().cut_.erase(3);
  LagAndCatchUp(c, rng, &want, &next);
  EXPECT_GT(c.ps(3).truncated_index(), last3);
  ExpectConverged(c, want);
  EXPECT_EQ(c.Dedup(3)[77], 2u);
  // The receiver keeps no snapshot file once applied.
  EXPECT_EQ(c.RawSnapFiles(3), std::vector<std::string>{});
  EXPECT_EQ(c.RegionState(3).state(), raft_serverpb::Normal);
  // Store 3 leads; a retry of the client's first command is not applied
  // again (it would bring "first" back).
  ASSERT_TRUE(c.TransferLeader(c.Leader(), 3));
  auto retry = c.Run(3, Put(3, "x", "first", 77, 1));
  ASSERT_TRUE(retry.has_value());
  EXPECT_FALSE(retry->response.header().has_error())
      << retry->response.header().error().message();
  EXPECT_EQ(GetValue(c.Run(3, Get(3, "x"))), "second");
  ASSERT_TRUE(c.Converge());
  ExpectConverged(c, want);
}

// The revision hint (mvcc::RevisionHint) must never claim a revision the
// kv engine does not hold: a follower that catches up by snapshot gets a
// newer revision underneath its apply, and publishes again after its next
// etcd write.
TEST(SnapshotTest, RevisionHintFollowsASnapshot) {
  Cluster c;
  std::mt19937_64 rng(11);
  std::map<std::string, std::string> want;
  uint64_t leader = c.Leader();
  ASSERT_NE(leader, 0u);
  auto put = [&](uint64_t at, const std::string& v) {
    auto r = c.Run(at, test::EtcdPut(at, "e", v));
    ASSERT_TRUE(r.has_value());
    ASSERT_FALSE(r->response.header().has_error())
        << r->response.header().error().message();
  };
  put(leader, "1");  // revision 2
  c.TickAll(2);
  auto hint_at = [&](uint64_t id) {
    return c.store(id).revision_hint()->At(c.kv(id).LatestSequence());
  };
  EXPECT_EQ(hint_at(3), 2);
  // Store 3 misses revisions 3 and 4 and the log behind them.
  const uint64_t last3 = c.ps(3).raft_state().last_index();
  c.transport().cut_.insert(3);
  leader = c.LeaderOtherThan(3);
  put(leader, "2");
  put(leader, "3");
  WriteKeys(c, rng, 0, 40, &want);
  EXPECT_GT(c.ps(leader).truncated_index(), last3 + 1);
  c.transport().cut_.erase(3);
  ASSERT_TRUE(c.Converge());
  EXPECT_GT(c.ps(3).truncated_index(), last3)
      << "store 3 caught up from the log, not a snapshot";
  absl::StatusOr<mvcc::Revisions> revs = mvcc::ReadRevisions(c.kv(3));
  ASSERT_TRUE(revs.ok()) << revs.status();
  EXPECT_EQ(revs->revision, 4);
  std::optional<int64_t> hint = hint_at(3);
  EXPECT_TRUE(!hint.has_value() || *hint == 4) << *hint;
  put(c.Leader(), "4");  // revision 5
  c.TickAll(2);
  for (uint64_t id = 1; id <= 3; ++id) {
    EXPECT_EQ(hint_at(id), 5) << "store " << id;
  }
}

TEST(SnapshotTest, RestartFromASnapshot) {
  Cluster c;
  std::mt19937_64 rng(7);
  std::map<std::string, std::string> want;
  int next = 0;
  WriteKeys(c, rng, 0, 5, &want);
  next = 5;
  LagAndCatchUp(c, rng, &want, &next);
  uint64_t snap_index = c.transport().delivered_[3].back().index();
  c.Crash(3);
  c.Reopen(3);
  // The snapshot's apply was synced: the restarted store starts from it.
  EXPECT_GE(c.ps(3).truncated_index(), snap_index);
  EXPECT_EQ(c.RegionState(3).state(), raft_serverpb::Normal);
  ASSERT_TRUE(c.Converge());
  ExpectConverged(c, want);
  // It keeps serving: it takes new writes, and leads.
  WriteKeys(c, rng, next, next + 5, &want);
  ASSERT_TRUE(c.Converge());
  ExpectConverged(c, want);
  ASSERT_TRUE(c.TransferLeader(c.Leader(), 3));
  EXPECT_EQ(GetValue(c.Run(3, Get(3, Key(0)))), want[Key(0)]);
  ASSERT_TRUE(c.MustPut("led-by", "3"));
  want["led-by"] = "3";
  ASSERT_TRUE(c.Converge());
  ExpectConverged(c, want);
  // Restart everything once more: all of it is still there.
  for (uint64_t id = 1; id <= 3; ++id) c.Crash(id);
  for (uint64_t id = 1; id <= 3; ++id) c.Reopen(id);
  ASSERT_TRUE(c.Converge());
  ExpectConverged(c, want);
}

// --- 5. A crash at every failpoint
// --------------------------------------------

class FailpointTest : public testing::TestWithParam<std::string_view> {};

TEST_P(FailpointTest, CrashThereAndConverge) {
  const std::string name(GetParam());
  Cluster c;
  std::mt19937_64 rng(8);
  std::map<std::string, std::string> want;
  int next = 0;
  WriteKeys(c, rng, 0, 5, &want);
  next = 5;
  c.Arm(name);
  // Compaction and GC everywhere, then a snapshot to store 3.
  c.TickAll(2);
  c.transport().cut_.insert(3);
  c.LeaderOtherThan(3);
  WriteKeys(c, rng, next, next + 40, &want);
  next += 40;
  c.transport().cut_.erase(3);
  for (int i = 0; i < 400 && !(c.fired() && c.Quiet()); ++i) c.TickAll(1);
  ASSERT_TRUE(c.fired()) << name << " never fired";
  EXPECT_GE(c.hits(name), 1);
  ASSERT_FALSE(c.reopened_after_failpoint().empty());
  EXPECT_EQ(c.reopened_after_failpoint().front(), c.fired_store());
  ASSERT_TRUE(c.Quiet());
  // The crashed store finished whatever it was doing.
  EXPECT_EQ(c.RegionState(c.fired_store()).state(), raft_serverpb::Normal);
  ExpectConverged(c, want);
  // Writes after the crash succeed and reach every store.
  WriteKeys(c, rng, next, next + 5, &want);
  ASSERT_TRUE(c.Converge());
  ExpectConverged(c, want);
  c.TickAll(3);
  CheckCompacted(c, /*gc_done=*/true);
}

INSTANTIATE_TEST_SUITE_P(
    EveryFailpoint, FailpointTest, testing::ValuesIn(kFailpoints),
    [](const testing::TestParamInfo<std::string_view>& param) {
      return std::string(param.param);
    });

// --- 6. Corrupt or broken streams
// ---------------------------------------------

enum class Fault { kCorrupt, kBreak };

class StreamFaultTest : public testing::TestWithParam<Fault> {};

TEST_P(StreamFaultTest, RejectedThenRetried) {
  Cluster c;
  std::mt19937_64 rng(9);
  std::map<std::string, std::string> want;
  WriteKeys(c, rng, 0, 5, &want);
  c.TickAll(2);
  uint64_t applied3 = c.ps(3).applied_index();
  uint64_t truncated3 = c.ps(3).truncated_index();
  c.transport().cut_.insert(3);
  uint64_t leader = c.LeaderOtherThan(3);
  WriteKeys(c, rng, 5, 45, &want);
  if (GetParam() == Fault::kCorrupt) {
    c.transport().corrupt_next_chunk = 3;
  } else {
    c.transport().break_next_after = 4;
  }
  c.transport().cut_.erase(3);
  for (int i = 0; i < 100 && c.transport().streams_failed == 0; ++i) {
    c.TickAll(1);
  }
  ASSERT_EQ(c.transport().streams_failed, 1);
  EXPECT_EQ(c.transport().streams_ok, 0);
  if (GetParam() == Fault::kCorrupt) {
    EXPECT_EQ(c.transport().corruptions, 1);
  } else {
    EXPECT_EQ(c.transport().breaks, 1);
  }
  EXPECT_GE(c.transport().rejects_sent, 1);
  // Never applied, nothing left behind.
  EXPECT_TRUE(c.transport().delivered_[3].empty());
  EXPECT_EQ(c.ps(3).applied_index(), applied3);
  EXPECT_EQ(c.ps(3).truncated_index(), truncated3);
  EXPECT_EQ(c.RawSnapFiles(3), std::vector<std::string>{});
  EXPECT_EQ(c.Data(3).count(Key(20)), 0u);
  // Raft tries again and the healthy transport gets it through.
  ASSERT_TRUE(c.Converge());
  EXPECT_GE(c.transport().streams_started, 2);
  EXPECT_GE(c.transport().streams_ok, 1);
  EXPECT_GT(c.ps(3).truncated_index(), truncated3);
  EXPECT_TRUE(c.peer(leader)->IsLeader());
  ExpectConverged(c, want);
}

INSTANTIATE_TEST_SUITE_P(Faults, StreamFaultTest,
                         testing::Values(Fault::kCorrupt, Fault::kBreak),
                         [](const testing::TestParamInfo<Fault>& param) {
                           return std::string(param.param == Fault::kCorrupt
                                                  ? "CorruptChunk"
                                                  : "BrokenStream");
                         });

// --- 7. Snapshots back to back, and one arriving during another's apply
// -------

TEST(SnapshotTest, TwoSnapshotsBackToBack) {
  Cluster c;
  std::mt19937_64 rng(10);
  std::map<std::string, std::string> want;
  int next = 0;
  WriteKeys(c, rng, 0, 5, &want);
  next = 5;
  LagAndCatchUp(c, rng, &want, &next, 30);
  uint64_t first = c.transport().delivered_[3].back().index();
  ExpectConverged(c, want);
  LagAndCatchUp(c, rng, &want, &next, 30);
  uint64_t second = c.transport().delivered_[3].back().index();
  EXPECT_GT(second, first);
  ExpectConverged(c, want);
  EXPECT_EQ(c.RawSnapFiles(3), std::vector<std::string>{});
  EXPECT_EQ(c.scheduler(3)->Scheduled(TaskKind::kSnapApply),
            static_cast<int>(c.transport().delivered_[3].size()));
}

// S1 reaches store 3 and its apply is held; then a newer S2 arrives. (Store
// 3 is silent while applying, so the leader cannot send S2 after S1 landed:
// both streams complete first, and the transport hands them over later.)
TEST(SnapshotTest, NewerSnapshotArrivesWhileOneIsApplying) {
  Cluster c;
  std::mt19937_64 rng(11);
  std::map<std::string, std::string> want;
  WriteKeys(c, rng, 0, 5, &want);
  c.TickAll(2);
  c.transport().cut_.insert(3);
  c.LeaderOtherThan(3);
  WriteKeys(c, rng, 5, 35, &want);
  c.transport().park_deliveries = true;
  c.transport().cut_.erase(3);
  for (int i = 0; i < 100 && c.transport().parked_.empty(); ++i) c.TickAll(1);
  ASSERT_EQ(c.transport().parked_.size(), 1u);
  const uint64_t s1 =
      c.transport().parked_.front().message().snapshot().metadata().index();
  // Away again while the leader compacts past S1.
  c.transport().cut_.insert(3);
  WriteKeys(c, rng, 35, 65, &want);
  ASSERT_GT(c.ps(c.Leader()).truncated_index(), s1);
  c.transport().cut_.erase(3);
  auto newest = [&c]() -> uint64_t {
    uint64_t m = 0;
    for (const auto& p : c.transport().parked_) {
      m = std::max(m, p.message().snapshot().metadata().index());
    }
    return m;
  };
  for (int i = 0; i < 100 && newest() <= s1; ++i) c.TickAll(1);
  const uint64_t s2 = newest();
  ASSERT_GT(s2, s1);
  // Take S1 and its S2 out of the parking; the rest are lost.
  raft_serverpb::RaftMessage m1 = c.transport().parked_.front();
  raft_serverpb::RaftMessage m2;
  for (const auto& p : c.transport().parked_) {
    if (p.message().snapshot().metadata().index() == s2) m2 = p;
  }
  c.transport().parked_.clear();
  c.transport().park_deliveries = false;

  TestScheduler* sched3 = c.scheduler(3);
  sched3->Hold(TaskKind::kSnapApply);
  c.transport().queue_.push_back(m1);
  c.Settle();
  ASSERT_TRUE(c.peer(3)->applying_snapshot());
  ASSERT_EQ(sched3->Pending(TaskKind::kSnapApply), 1u);
  const uint64_t truncated_during = c.ps(3).truncated_index();
  EXPECT_LT(truncated_during, s1);
  c.transport().queue_.push_back(m2);
  c.TickAll(3);
  // Still applying S1: nothing of either snapshot is visible yet.
  EXPECT_TRUE(c.peer(3)->applying_snapshot());
  EXPECT_EQ(c.ps(3).truncated_index(), truncated_during);
  // Release the apply, with no new stream allowed to start: S1 is applied,
  // then S2, which store 3 took while it applied S1.
  c.transport().hold_streams = true;
  c.transport().hold_after_chunks = 0;
  sched3->Release(TaskKind::kSnapApply);
  c.Settle();
  EXPECT_EQ(c.ps(3).truncated_index(), s2);
  EXPECT_EQ(sched3->Scheduled(TaskKind::kSnapApply), 2);
  c.transport().hold_streams = false;
  ASSERT_TRUE(c.Converge());
  EXPECT_GE(c.ps(3).truncated_index(), s2);
  ExpectConverged(c, want);
  EXPECT_EQ(c.RawSnapFiles(3), std::vector<std::string>{});
}

// --- 8. Compaction on the leader while a snapshot is in flight
// ----------------

TEST(SnapshotTest, LeaderCompactsWhileASnapshotIsInFlight) {
  Cluster c;
  std::mt19937_64 rng(12);
  std::map<std::string, std::string> want;
  // Keys are written in order: a store's data must always be a prefix.
  for (int i = 0; i < 5; ++i) {
    std::string v = Value(rng);
    ASSERT_TRUE(c.MustPut(Key(i), v));
    want[Key(i)] = v;
  }
  c.TickAll(2);
  c.transport().cut_.insert(3);
  uint64_t leader = c.LeaderOtherThan(3);
  WriteKeys(c, rng, 5, 35, &want);
  // The stream starts and stops after its head and one chunk of data.
  c.transport().hold_streams = true;
  c.transport().hold_after_chunks = 2;
  c.transport().cut_.erase(3);
  for (int i = 0; i < 100 && c.transport().streams_.empty(); ++i) {
    c.TickAll(1);
  }
  ASSERT_EQ(c.transport().streams_.size(), 1u);
  ASSERT_EQ(c.transport().streams_.front().chunks, 2);
  const uint64_t s1 = c.transport()
                          .streams_.front()
                          .msg.message()
                          .snapshot()
                          .metadata()
                          .index();
  // A partial file exists on the receiver, but nothing is applied.
  EXPECT_FALSE(c.RawSnapFiles(3).empty());
  const uint64_t truncated3 = c.ps(3).truncated_index();
  // The leader compacts further meanwhile.
  WriteKeys(c, rng, 35, 65, &want);
  ASSERT_EQ(c.Leader(), leader);
  ASSERT_GT(c.ps(leader).truncated_index(), s1);
  EXPECT_EQ(c.ps(3).truncated_index(), truncated3);
  c.transport().hold_streams = false;
  // From here on store 3 only ever holds a prefix of the writes, and its
  // truncated index only grows.
  uint64_t prev = truncated3;
  for (int i = 0; i < 400 && !c.Quiet(); ++i) {
    c.TickAll(1);
    uint64_t t = c.ps(3).truncated_index();
    ASSERT_GE(t, prev);
    prev = t;
    std::map<std::string, std::string> d = c.Data(3);
    int n = 0;
    for (const auto& [k, v] : d) {
      ASSERT_EQ(k, Key(n)) << "store 3 holds a hole before " << k;
      ASSERT_EQ(v, want[k]);
      ++n;
    }
  }
  ASSERT_TRUE(c.Quiet());
  EXPECT_GE(c.transport().delivered_[3].size(), 1u);
  EXPECT_GE(c.ps(3).truncated_index(), s1);
  ExpectConverged(c, want);
  EXPECT_EQ(c.RawSnapFiles(3), std::vector<std::string>{});
}

// --- Two streams of one snapshot name --------------------------------------

// Received files are named by (region, term, index) only. After a leader
// change, the new leader can generate its snapshot at the same applied index
// (the term in the name is the entry's, not the leader's) before it applies
// its own no-op, so two streams of different files but one name can head for
// the same store. Here the old leader's stream stalls, the new leader's
// completes and is being applied, and then the old one resumes and fails:
// the files being applied must survive the failed stream's cleanup.
TEST(SnapshotTest, FailedStaleStreamKeepsTheFilesOfTheSnapshotBeingApplied) {
  Cluster c;
  std::mt19937_64 rng(13);
  std::map<std::string, std::string> want;
  WriteKeys(c, rng, 0, 5, &want);
  c.TickAll(2);
  c.transport().cut_.insert(3);
  uint64_t old_leader = c.LeaderOtherThan(3);
  WriteKeys(c, rng, 5, 35, &want);
  c.TickAll(3);
  uint64_t other = old_leader == 1 ? 2 : 1;
  ASSERT_EQ(c.ps(old_leader).applied_index(), c.ps(other).applied_index());
  // The old leader's stream stalls after its head and one chunk.
  c.transport().hold_next_stream = true;
  c.transport().hold_after_chunks = 2;
  c.transport().cut_.erase(3);
  for (int i = 0; i < 100 && c.transport().streams_.empty(); ++i) {
    c.TickAll(1);
  }
  ASSERT_EQ(c.transport().streams_.size(), 1u);
  const raftpb::SnapshotMetadata a =
      c.transport().streams_.front().msg.message().snapshot().metadata();
  ASSERT_EQ(c.transport().streams_.front().from, old_leader);
  // Leadership moves; the new leader's snapshot reaches store 3 whole and
  // its apply is held.
  c.scheduler(3)->Hold(TaskKind::kSnapApply);
  ASSERT_TRUE(c.TransferLeader(old_leader, other));
  for (int i = 0; i < 100 && c.transport().delivered_[3].empty(); ++i) {
    c.TickAll(1);
  }
  ASSERT_EQ(c.transport().delivered_[3].size(), 1u);
  const raftpb::SnapshotMetadata b = c.transport().delivered_[3].front();
  ASSERT_TRUE(c.peer(3)->applying_snapshot());
  // Today both carry one name (the point of this test); were names made
  // unique, the checks below would still hold.
  RecordProperty("same_name", a.index() == b.index() && a.term() == b.term());
  const std::string prefix = SnapPrefix(true, kRegion, b.term(), b.index());
  auto before = c.snap_dir(3).List(prefix + "_");
  ASSERT_TRUE(before.ok());
  ASSERT_FALSE(before->empty());
  // The stalled stream resumes (no fault injected). With one name, its
  // ".tmp" file was renamed away under it by the other stream, so it fails
  // and its receiver cleans up.
  ASSERT_EQ(c.transport().streams_.size(), 1u);
  c.transport().streams_.front().hold = false;
  c.Settle();
  ASSERT_TRUE(c.transport().streams_.empty());
  auto after = c.snap_dir(3).List(prefix + "_");
  ASSERT_TRUE(after.ok());
  // (Releasing the apply without its files would abort the process.)
  ASSERT_EQ(*after, *before)
      << "a failed stream deleted the files of the snapshot being applied";
  c.scheduler(3)->Release(TaskKind::kSnapApply);
  ASSERT_TRUE(c.Converge());
  ExpectConverged(c, want);
}

}  // namespace
}  // namespace raftkv::raftstore
