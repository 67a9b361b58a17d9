// Three stores in one process on one thread, with an in-memory transport
// queue: elections, commands through raft, the errors a store answers with,
// exactly-once retries, and restart from the engines.
#include "raftstore/store.h"

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "mvcc/kv_store.h"
#include "raftstore/snap.h"
#include "storage/keys.h"
#include "test_requests.h"

namespace raftkv::raftstore {
namespace {

using raft_cmdpb::RaftCmdRequest;
using raft_cmdpb::RaftCmdResponse;

class QueueTransport : public Transport {
 public:
  absl::Status Send(raft_serverpb::RaftMessage msg) override {
    if (cut_.count(msg.to_peer().store_id()) ||
        cut_.count(msg.from_peer().store_id())) {
      return absl::OkStatus();  // lost on the way
    }
    queue_.push_back(std::move(msg));
    return absl::OkStatus();
  }
  // These stores have no snapshot dir: a snapshot cannot travel, and the
  // sender hears so, as from a broken stream.
  void SendSnapshot(raft_serverpb::RaftMessage msg) override {
    queue_.push_back(SnapStatusMessage(msg, /*reject=*/true));
  }
  std::deque<raft_serverpb::RaftMessage> queue_;
  std::set<uint64_t> cut_;
};

metapb::Region MakeRegion(std::string end_key = "") {
  metapb::Region r = InitialRegion(3);
  r.set_end_key(std::move(end_key));
  return r;
}

class Cluster {
 public:
  explicit Cluster(const metapb::Region& region) : region_(region) {
    for (uint64_t id = 1; id <= 3; ++id) {
      OpenEngines(id);
      EXPECT_TRUE(
          BootstrapStore(raft_[id].get(), kv_[id].get(), 1, id, region).ok());
      StartStore(id);
    }
  }

  void OpenEngines(uint64_t id) {
    std::string dir = "/cluster/store" + std::to_string(id);
    raft_[id] = *storage::Engine::Open({dir + "/raft", env_});
    // The kv engine is written unsynced; with this hook a restart loses
    // every unsynced write, as a power cut would.
    kv_[id] = *storage::Engine::Open({dir + "/kv", env_, lose_unsynced_});
  }

  void StartStore(uint64_t id) {
    StoreConfig c;
    c.store_id = id;
    c.seed = 7;
    auto s = Store::Open(c, raft_[id].get(), kv_[id].get(), &transport_);
    ASSERT_TRUE(s.ok()) << s.status();
    stores_[id] = *std::move(s);
  }

  // Crash: drop the store and its engines; the in-memory disk survives.
  void Restart(uint64_t id) {
    stores_.erase(id);
    raft_[id].reset();
    kv_[id].reset();
    OpenEngines(id);
    StartStore(id);
  }

  // Delivers messages and handles Readies until nothing moves.
  void Settle() {
    for (int i = 0; i < 10000; ++i) {
      bool busy = false;
      for (auto& [id, s] : stores_) busy |= s->HandleReadies();
      while (!transport_.queue_.empty()) {
        busy = true;
        raft_serverpb::RaftMessage m = std::move(transport_.queue_.front());
        transport_.queue_.pop_front();
        auto it = stores_.find(m.to_peer().store_id());
        if (it != stores_.end()) it->second->Step(std::move(m));
      }
      if (!busy) return;
    }
    ADD_FAILURE() << "cluster never settled";
  }

  void TickAll(int n) {
    for (int i = 0; i < n; ++i) {
      for (auto& [id, s] : stores_) s->Tick();
      Settle();
    }
  }

  // The store whose peer leads, after ticking until there is one.
  uint64_t Leader() {
    for (int i = 0; i < 200; ++i) {
      for (auto& [id, s] : stores_) {
        if (s->GetPeer(1)->IsLeader()) return id;
      }
      TickAll(1);
    }
    ADD_FAILURE() << "no leader";
    return 0;
  }

  // Proposes on store `id` and settles; returns the answer, if any came.
  std::optional<CmdResult> Run(uint64_t id, RaftCmdRequest req) {
    std::optional<CmdResult> out;
    stores_[id]->Propose(std::move(req),
                         [&out](CmdResult r) { out = std::move(r); });
    Settle();
    return out;
  }

  Store& store(uint64_t id) { return *stores_[id]; }
  // From now on, restarts lose the kv engines' unsynced writes.
  void LoseUnsyncedKvWritesOnRestart() {
    lose_unsynced_ = true;
    for (uint64_t id = 1; id <= 3; ++id) Restart(id);  // reopen with the hook
  }
  QueueTransport& transport() { return transport_; }
  storage::Engine& kv(uint64_t id) { return *kv_[id]; }

 private:
  metapb::Region region_;
  std::shared_ptr<storage::InMemoryEnv> env_ =
      std::make_shared<storage::InMemoryEnv>();
  QueueTransport transport_;
  bool lose_unsynced_ = false;
  std::map<uint64_t, std::unique_ptr<storage::Engine>> raft_, kv_;
  std::map<uint64_t, std::unique_ptr<Store>> stores_;
};

using test::EtcdPut;
using test::Get;
using test::Header;
using test::Put;

std::string Value(const std::optional<CmdResult>& r) {
  EXPECT_TRUE(r.has_value());
  if (!r) return "<no answer>";
  EXPECT_FALSE(r->response.header().has_error())
      << r->response.header().error().message();
  if (r->response.responses_size() != 1) return "<bad response>";
  return r->response.responses(0).get().value();
}

TEST(StoreTest, ElectsALeaderAndAppliesCommandsOnEveryStore) {
  Cluster c(MakeRegion());
  uint64_t leader = c.Leader();
  ASSERT_NE(leader, 0u);
  auto put = c.Run(leader, Put(leader, "k1", "v1"));
  ASSERT_TRUE(put.has_value());
  EXPECT_FALSE(put->response.header().has_error());
  EXPECT_EQ(Value(c.Run(leader, Get(leader, "k1"))), "v1");
  c.TickAll(3);  // followers learn the commit index
  for (uint64_t id = 1; id <= 3; ++id) {
    auto v = c.kv(id).Get(storage::DataKey(storage::kCfDefault, "k1"));
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->value_or("<absent>"), "v1") << "store " << id;
  }
}

TEST(StoreTest, SnapHandsBackAReadViewTakenAtApply) {
  Cluster c(MakeRegion());
  uint64_t leader = c.Leader();
  ASSERT_TRUE(c.Run(leader, Put(leader, "a", "1")).has_value());
  RaftCmdRequest snap = Header(leader);
  snap.add_requests()->set_cmd_type(raft_cmdpb::Snap);
  auto r = c.Run(leader, snap);
  ASSERT_TRUE(r.has_value());
  ASSERT_NE(r->snap, nullptr);
  EXPECT_EQ(r->response.responses(0).snap().region().id(), 1u);
  ASSERT_TRUE(c.Run(leader, Put(leader, "a", "2")).has_value());
  // The view is frozen at the Snap's apply.
  EXPECT_EQ(r->snap->Get(storage::DataKey(storage::kCfDefault, "a"))->value(),
            "1");
}

TEST(StoreTest, FollowerAnswersNotLeaderWithTheLeader) {
  Cluster c(MakeRegion());
  uint64_t leader = c.Leader();
  c.TickAll(2);
  uint64_t follower = leader == 1 ? 2 : 1;
  auto r = c.Run(follower, Put(follower, "k", "v"));
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->response.header().error().has_not_leader());
  EXPECT_EQ(r->response.header().error().not_leader().leader().id(), leader);
}

TEST(StoreTest, RequestsCheckedBeforeProposing) {
  Cluster c(MakeRegion("m"));
  uint64_t leader = c.Leader();
  // Addressed to another store.
  RaftCmdRequest wrong_store = Put(leader, "a", "1");
  wrong_store.mutable_header()->mutable_peer()->set_store_id(leader % 3 + 1);
  auto r = c.Run(leader, wrong_store);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->response.header().error().has_store_not_match());
  // An unknown region.
  RaftCmdRequest unknown = Put(leader, "a", "1");
  unknown.mutable_header()->set_region_id(99);
  r = c.Run(leader, unknown);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->response.header().error().has_region_not_found());
  // A stale epoch.
  RaftCmdRequest stale = Put(leader, "a", "1");
  stale.mutable_header()->mutable_region_epoch()->set_version(0);
  r = c.Run(leader, stale);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->response.header().error().has_epoch_not_match());
  // A key outside the region ["", "m").
  r = c.Run(leader, Put(leader, "z", "1"));
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->response.header().error().has_key_not_in_region());
  // An invalid column family fails the whole command: nothing applies.
  RaftCmdRequest mixed = Put(leader, "b", "1");
  auto* bad = mixed.add_requests();
  bad->set_cmd_type(raft_cmdpb::Put);
  bad->mutable_put()->set_cf("nope");
  bad->mutable_put()->set_key("c");
  r = c.Run(leader, mixed);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->response.header().has_error());
  EXPECT_EQ(Value(c.Run(leader, Get(leader, "b"))), "");
}

TEST(StoreTest, RetriedCommandIsAppliedOnce) {
  Cluster c(MakeRegion());
  uint64_t leader = c.Leader();
  ASSERT_TRUE(c.Run(leader, Put(leader, "k", "first", 42, 1)).has_value());
  ASSERT_TRUE(c.Run(leader, Put(leader, "k", "second", 42, 2)).has_value());
  // A retry of sequence 1 (its answer was lost, say) must not undo 2.
  auto retry = c.Run(leader, Put(leader, "k", "first", 42, 1));
  ASSERT_TRUE(retry.has_value());
  EXPECT_FALSE(retry->response.header().has_error());
  EXPECT_EQ(Value(c.Run(leader, Get(leader, "k"))), "second");
  // The table survives a restart of every store.
  for (uint64_t id = 1; id <= 3; ++id) c.Restart(id);
  leader = c.Leader();
  ASSERT_TRUE(c.Run(leader, Put(leader, "k", "first", 42, 1)).has_value());
  EXPECT_EQ(Value(c.Run(leader, Get(leader, "k"))), "second");
}

TEST(StoreTest, OverwrittenProposalIsAnsweredStale) {
  Cluster c(MakeRegion());
  uint64_t old_leader = c.Leader();
  c.TickAll(2);
  // The leader is cut off; its proposal cannot commit.
  c.transport().cut_.insert(old_leader);
  std::optional<CmdResult> answer;
  c.store(old_leader).Propose(Put(old_leader, "k", "lost"), [&](CmdResult r) {
    answer = std::move(r);
  });
  c.Settle();
  EXPECT_FALSE(answer.has_value());
  // The others elect a new leader and commit something else.
  uint64_t new_leader = 0;
  for (int i = 0; i < 300 && new_leader == 0; ++i) {
    c.TickAll(1);
    for (uint64_t id = 1; id <= 3; ++id) {
      if (id != old_leader && c.store(id).GetPeer(1)->IsLeader()) {
        new_leader = id;
      }
    }
  }
  ASSERT_NE(new_leader, 0u);
  ASSERT_TRUE(c.Run(new_leader, Put(new_leader, "k", "won")).has_value());
  // Heal: the old leader's entry is overwritten and its proposal answered.
  c.transport().cut_.clear();
  c.TickAll(30);
  ASSERT_TRUE(answer.has_value()) << "the proposal was left hanging";
  EXPECT_TRUE(answer->response.header().error().has_stale_command());
  EXPECT_EQ(Value(c.Run(new_leader, Get(new_leader, "k"))), "won");
}

// Regression: a deposed leader's proposals used to wait until their index was
// applied. Here the new leader writes nothing but its no-op, so the old
// leader's later indexes are never reached: the proposals must be answered
// (StaleCommand: retry with the same client id and sequence) once it learns
// it no longer leads.
TEST(StoreTest, ProposalsOfADeposedLeaderAreAnsweredInAQuietGroup) {
  Cluster c(MakeRegion());
  uint64_t old_leader = c.Leader();
  c.TickAll(2);
  c.transport().cut_.insert(old_leader);
  std::vector<std::optional<CmdResult>> answers(3);
  for (size_t i = 0; i < answers.size(); ++i) {
    c.store(old_leader)
        .Propose(Put(old_leader, "k" + std::to_string(i), "v", 9, i + 1),
                 [&answers, i](CmdResult r) { answers[i] = std::move(r); });
  }
  c.Settle();
  uint64_t new_leader = 0;
  for (int i = 0; i < 300 && new_leader == 0; ++i) {
    c.TickAll(1);
    for (uint64_t id = 1; id <= 3; ++id) {
      if (id != old_leader && c.store(id).GetPeer(1)->IsLeader()) {
        new_leader = id;
      }
    }
  }
  ASSERT_NE(new_leader, 0u);
  c.transport().cut_.clear();
  c.TickAll(30);
  for (size_t i = 0; i < answers.size(); ++i) {
    ASSERT_TRUE(answers[i].has_value()) << "proposal " << i << " hangs";
    EXPECT_TRUE(answers[i]->response.header().error().has_stale_command());
  }
  // Retrying with the same sequence numbers applies each write once.
  for (size_t i = 0; i < answers.size(); ++i) {
    auto r = c.Run(new_leader,
                   Put(new_leader, "k" + std::to_string(i), "v", 9, i + 1));
    ASSERT_TRUE(r.has_value());
    EXPECT_FALSE(r->response.header().has_error());
    EXPECT_EQ(
        Value(c.Run(new_leader, Get(new_leader, "k" + std::to_string(i)))),
        "v");
  }
}

TEST(StoreTest, TransferLeaderAdminMovesLeadership) {
  Cluster c(MakeRegion());
  uint64_t leader = c.Leader();
  ASSERT_TRUE(c.Run(leader, Put(leader, "k", "v")).has_value());
  uint64_t target = leader % 3 + 1;
  RaftCmdRequest req = Header(leader);
  auto* admin = req.mutable_admin_request();
  admin->set_cmd_type(raft_cmdpb::TransferLeader);
  admin->mutable_transfer_leader()->mutable_peer()->set_id(target);
  admin->mutable_transfer_leader()->mutable_peer()->set_store_id(target);
  auto r = c.Run(leader, req);
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->response.header().has_error());
  EXPECT_EQ(r->response.admin_response().cmd_type(),
            raft_cmdpb::TransferLeader);
  c.TickAll(5);
  EXPECT_TRUE(c.store(target).GetPeer(1)->IsLeader());
  EXPECT_FALSE(c.store(leader).GetPeer(1)->IsLeader());
  EXPECT_EQ(Value(c.Run(target, Get(target, "k"))), "v");

  // Other admin commands are refused with an error, not dropped.
  RaftCmdRequest compact = Header(target);
  compact.mutable_admin_request()->set_cmd_type(raft_cmdpb::CompactLog);
  r = c.Run(target, compact);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->response.header().has_error());
  // A target outside the region is refused too.
  RaftCmdRequest bad = Header(target);
  bad.mutable_admin_request()->set_cmd_type(raft_cmdpb::TransferLeader);
  bad.mutable_admin_request()
      ->mutable_transfer_leader()
      ->mutable_peer()
      ->set_id(9);
  r = c.Run(target, bad);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->response.header().has_error());
}

// The kv engine is written without sync: after a crash that loses those
// writes, each store must rebuild its state machine (data, applied index,
// exactly-once table) by re-applying its durable raft log.
TEST(StoreTest, RestartAfterLosingUnsyncedKvWritesReappliesTheLog) {
  Cluster c(MakeRegion());
  c.LoseUnsyncedKvWritesOnRestart();
  uint64_t leader = c.Leader();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(c.Run(leader, Put(leader, "k" + std::to_string(i),
                                  "v" + std::to_string(i), 5, i + 1))
                    .has_value());
  }
  c.TickAll(3);
  for (uint64_t id = 1; id <= 3; ++id) c.Restart(id);
  // The kv engines lost everything unsynced: nothing of the above is there.
  for (uint64_t id = 1; id <= 3; ++id) {
    EXPECT_FALSE(
        c.kv(id).Get(storage::DataKey(storage::kCfDefault, "k0"))->has_value())
        << "store " << id << " kept an unsynced write: the test proves nothing";
  }
  leader = c.Leader();
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(Value(c.Run(leader, Get(leader, "k" + std::to_string(i)))),
              "v" + std::to_string(i));
  }
  // The exactly-once table was rebuilt too: a retry of the first write
  // does not undo a later overwrite.
  ASSERT_TRUE(c.Run(leader, Put(leader, "k0", "newer", 5, 21)).has_value());
  ASSERT_TRUE(c.Run(leader, Put(leader, "k0", "v0", 5, 1)).has_value());
  EXPECT_EQ(Value(c.Run(leader, Get(leader, "k0"))), "newer");
  c.TickAll(3);
  for (uint64_t id = 1; id <= 3; ++id) {
    EXPECT_EQ(c.kv(id)
                  .Get(storage::DataKey(storage::kCfDefault, "k19"))
                  ->value_or("<absent>"),
              "v19")
        << "store " << id;
  }
}

TEST(StoreTest, RestartKeepsEverythingApplied) {
  Cluster c(MakeRegion());
  uint64_t leader = c.Leader();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(c.Run(leader, Put(leader, "k" + std::to_string(i),
                                  "v" + std::to_string(i)))
                    .has_value());
  }
  for (uint64_t id = 1; id <= 3; ++id) c.Restart(id);
  leader = c.Leader();
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(Value(c.Run(leader, Get(leader, "k" + std::to_string(i)))),
              "v" + std::to_string(i));
  }
}

namespace etcd_tests {

// Reads through Store::ReadIndex on `id`; returns the value of `k` in the
// view it hands back (nullopt: absent), or an error message.
std::optional<std::string> ReadIndexGet(Cluster& c, uint64_t id,
                                        const std::string& k,
                                        std::string* error) {
  std::optional<CmdResult> out;
  c.store(id).ReadIndex(Header(id),
                        [&out](CmdResult r) { out = std::move(r); });
  for (int i = 0; i < 50 && !out; ++i) c.TickAll(1);
  if (!out) {
    *error = "no answer";
    return std::nullopt;
  }
  if (out->response.header().has_error() || out->snap == nullptr) {
    *error = out->response.header().error().message();
    return std::nullopt;
  }
  etcdserverpb::RangeRequest rr;
  rr.set_key(k);
  auto resp = mvcc::Range(*out->snap, rr);
  if (!resp.ok()) {
    *error = resp.status().ToString();
    return std::nullopt;
  }
  if (resp->kvs_size() == 0) return std::nullopt;
  return resp->kvs(0).value();
}

TEST(StoreEtcdTest, EtcdWritesApplyWithRevisionsOnEveryStore) {
  Cluster c(MakeRegion());
  uint64_t leader = c.Leader();
  auto r1 = c.Run(leader, EtcdPut(leader, "a", "1"));
  ASSERT_TRUE(r1.has_value());
  ASSERT_FALSE(r1->response.header().has_error());
  const auto& put1 = r1->response.responses(0).etcd();
  EXPECT_EQ(put1.error_code(), 0);
  EXPECT_EQ(put1.put().header().revision(), 2);  // etcd starts at 1
  auto r2 = c.Run(leader, EtcdPut(leader, "a", "2"));
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ(r2->response.responses(0).etcd().put().header().revision(), 3);
  c.TickAll(3);
  for (uint64_t id = 1; id <= 3; ++id) {
    etcdserverpb::RangeRequest rr;
    rr.set_key("a");
    auto got = mvcc::Range(*c.store(id).kv_engine(), rr);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->kvs_size(), 1) << "store " << id;
    EXPECT_EQ(got->kvs(0).value(), "2");
    EXPECT_EQ(got->kvs(0).version(), 2);
    EXPECT_EQ(got->kvs(0).create_revision(), 2);
    EXPECT_EQ(got->kvs(0).mod_revision(), 3);
    // The apply published the revision it wrote for snapshot reads.
    storage::Engine& kv = c.kv(id);
    EXPECT_EQ(c.store(id).revision_hint()->At(kv.LatestSequence()), 3)
        << "store " << id;
  }
}

TEST(StoreEtcdTest, EtcdErrorsAreAnswersNotFailures) {
  Cluster c(MakeRegion());
  uint64_t leader = c.Leader();
  RaftCmdRequest req = EtcdPut(leader, "missing", "");
  req.mutable_requests(0)->mutable_etcd()->mutable_put()->set_ignore_value(
      true);
  auto r = c.Run(leader, std::move(req));
  ASSERT_TRUE(r.has_value());
  ASSERT_FALSE(r->response.header().has_error());
  const auto& e = r->response.responses(0).etcd();
  EXPECT_EQ(e.error_code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(e.error_message(), mvcc::kErrKeyNotFound);
  // Nothing was written and no revision was used.
  auto r2 = c.Run(leader, EtcdPut(leader, "x", "1"));
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ(r2->response.responses(0).etcd().put().header().revision(), 2);
}

TEST(StoreEtcdTest, ReadIndexOnEveryMemberSeesTheLastWrite) {
  Cluster c(MakeRegion());
  uint64_t leader = c.Leader();
  auto w = c.Run(leader, EtcdPut(leader, "k", "v1"));
  ASSERT_TRUE(w.has_value());
  for (uint64_t id = 1; id <= 3; ++id) {
    std::string error;
    std::optional<std::string> v = ReadIndexGet(c, id, "k", &error);
    ASSERT_TRUE(v.has_value()) << "store " << id << ": " << error;
    EXPECT_EQ(*v, "v1");
  }
}

// StoreConfig::skip_bcast_commit (on by default): a write's commit index
// reaches the followers with the next heartbeat, not a message of its own.
TEST(StoreEtcdTest, FollowersApplyAWriteOnTheNextHeartbeat) {
  Cluster c(MakeRegion());
  uint64_t leader = c.Leader();
  c.TickAll(3);  // every store has applied the leader's no-op
  ASSERT_TRUE(c.Run(leader, EtcdPut(leader, "k", "v1")).has_value());
  etcdserverpb::RangeRequest rr;
  rr.set_key("k");
  for (uint64_t id = 1; id <= 3; ++id) {
    if (id == leader) continue;
    auto got = mvcc::Range(*c.store(id).kv_engine(), rr);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->kvs_size(), 0)
        << "store " << id << " applied before any heartbeat";
  }
  c.TickAll(StoreConfig().heartbeat_ticks);
  for (uint64_t id = 1; id <= 3; ++id) {
    auto got = mvcc::Range(*c.store(id).kv_engine(), rr);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->kvs_size(), 1) << "store " << id;
    EXPECT_EQ(got->kvs(0).value(), "v1");
  }
}

// ... but a follower's read-index round brings its commit index up to date
// itself: the read is answered, with the write, before any tick.
TEST(StoreEtcdTest, FollowerReadIndexRightAfterAWriteNeedsNoHeartbeat) {
  Cluster c(MakeRegion());
  uint64_t leader = c.Leader();
  c.TickAll(3);
  ASSERT_TRUE(c.Run(leader, EtcdPut(leader, "k", "v1")).has_value());
  uint64_t follower = leader == 1 ? 2 : 1;
  std::optional<CmdResult> out;
  c.store(follower).ReadIndex(Header(follower),
                              [&out](CmdResult r) { out = std::move(r); });
  c.Settle();
  ASSERT_TRUE(out.has_value()) << "the read waited for a tick";
  ASSERT_FALSE(out->response.header().has_error())
      << out->response.header().error().message();
  ASSERT_NE(out->snap, nullptr);
  etcdserverpb::RangeRequest rr;
  rr.set_key("k");
  auto got = mvcc::Range(*out->snap, rr);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->kvs_size(), 1);
  EXPECT_EQ(got->kvs(0).value(), "v1");
}

TEST(StoreEtcdTest, ReadsQueuedTogetherShareOneRound) {
  Cluster c(MakeRegion());
  uint64_t leader = c.Leader();
  ASSERT_TRUE(c.Run(leader, EtcdPut(leader, "k", "v")).has_value());
  int answered = 0;
  std::vector<std::shared_ptr<storage::Snapshot>> views;
  for (int i = 0; i < 5; ++i) {
    c.store(leader).ReadIndex(Header(leader), [&](CmdResult r) {
      ++answered;
      views.push_back(r.snap);
    });
  }
  c.Settle();
  for (int i = 0; i < 5 && answered < 5; ++i) c.TickAll(1);
  ASSERT_EQ(answered, 5);
  // One round: one view handed to all five.
  for (const auto& v : views) EXPECT_EQ(v.get(), views[0].get());
}

TEST(StoreEtcdTest, ReadIndexWithoutALeaderIsRefused) {
  Cluster c(MakeRegion());
  // Before any election no member knows a leader.
  std::optional<CmdResult> out;
  c.store(1).ReadIndex(Header(1), [&out](CmdResult r) { out = std::move(r); });
  c.Settle();
  ASSERT_TRUE(out.has_value());
  EXPECT_TRUE(out->response.header().error().has_not_leader());
  EXPECT_EQ(out->snap, nullptr);
}

}  // namespace etcd_tests
}  // namespace
}  // namespace raftkv::raftstore
