// The simulator's own machinery: network filters, crashes, restarts,
// background tasks, snapshot streams, and the checkers on fabricated
// histories.
#include "sim/simulator.h"

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "raftstore/snap.h"
#include "sim/checkers.h"
#include "sim/client.h"
#include "storage/keys.h"

namespace raftkv::sim {
namespace {

constexpr uint64_t kFakeRegion = 999;  // no store has it: Step drops it

raft_serverpb::RaftMessage Fake(uint64_t from, uint64_t to) {
  raft_serverpb::RaftMessage m;
  m.set_region_id(kFakeRegion);
  m.mutable_from_peer()->set_id(from);
  m.mutable_from_peer()->set_store_id(from);
  m.mutable_to_peer()->set_id(to);
  m.mutable_to_peer()->set_store_id(to);
  return m;
}

class SimulatorTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(sim_.Start().ok());
    sim_.set_delivery_hook([this](const raft_serverpb::RaftMessage& m) {
      if (m.region_id() == kFakeRegion) {
        ++delivered_[{m.from_peer().store_id(), m.to_peer().store_id()}];
      }
    });
  }

  Simulator sim_{SimConfig{.seed = 3}};
  std::map<std::pair<uint64_t, uint64_t>, int> delivered_;
};

TEST(NetworkFiltersTest, PartitionCutsOnlyLinksAcrossTheSets) {
  NetworkFilters f;
  f.Partition({1, 2}, {3, 4});
  EXPECT_FALSE(f.Cut(1, 2));
  EXPECT_FALSE(f.Cut(4, 3));
  EXPECT_TRUE(f.Cut(1, 3));
  EXPECT_TRUE(f.Cut(4, 2));
  EXPECT_FALSE(f.Cut(5, 1));  // in neither set
  EXPECT_FALSE(f.Cut(2, 5));
  f.Clear();
  EXPECT_FALSE(f.Cut(1, 3));
}

TEST(NetworkFiltersTest, DropsDelaysAndDuplicatesAtTheirRates) {
  NetworkFilters f;
  f.AddUnreliable(
      {.drop = 0.1, .delay_min_us = 5, .delay_max_us = 9, .duplicate = 0.2});
  f.AddUnreliable(
      {.drop = 0.1, .delay_min_us = 5, .delay_max_us = 9, .duplicate = 0.2});
  std::mt19937_64 rng(1);
  std::vector<int64_t> delays;
  int dropped = 0, duplicated = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    f.Route(1, 2, rng, &delays);
    if (delays.empty()) ++dropped;
    if (delays.size() == 2) ++duplicated;
    for (int64_t d : delays) {
      EXPECT_GE(d, 5);
      EXPECT_LE(d, 9);
    }
  }
  // Two stacked 10% filters drop 19%; 20% of the rest are duplicated.
  EXPECT_NEAR(dropped / double(n), 0.19, 0.02);
  EXPECT_NEAR(duplicated / double(n - dropped), 0.2, 0.02);
}

TEST_F(SimulatorTest, PartitionDropsExactlyTheMessagesAcrossIt) {
  std::set<uint64_t> a = {1, 2}, b = {3, 4, 5};
  sim_.filters().Partition(a, b);
  for (uint64_t from = 1; from <= 5; ++from) {
    for (uint64_t to = 1; to <= 5; ++to) {
      if (from == to) continue;
      for (int i = 0; i < 10; ++i) {
        EXPECT_TRUE(sim_.SendMessage(from, Fake(from, to)).ok());
      }
    }
  }
  sim_.RunUntil(sim_.now() + 100'000);
  for (uint64_t from = 1; from <= 5; ++from) {
    for (uint64_t to = 1; to <= 5; ++to) {
      if (from == to) continue;
      bool across = a.count(from) != a.count(to);
      EXPECT_EQ((delivered_[{from, to}]), across ? 0 : 10)
          << from << " -> " << to;
    }
  }
}

TEST_F(SimulatorTest, CrashDropsMessagesInFlight) {
  sim_.RunUntil(1'000'000);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(sim_.SendMessage(1, Fake(1, 3)).ok());
    ASSERT_TRUE(sim_.SendMessage(1, Fake(1, 2)).ok());
  }
  uint64_t dropped = sim_.stats().messages_dropped;
  sim_.Crash(3);
  EXPECT_FALSE(sim_.IsUp(3));
  EXPECT_EQ(sim_.store(3), nullptr);
  // Restarted before they would have arrived: they are lost all the same.
  ASSERT_TRUE(sim_.Restart(3).ok());
  EXPECT_TRUE(sim_.IsUp(3));
  sim_.RunUntil(sim_.now() + 100'000);
  EXPECT_EQ((delivered_[{1, 3}]), 0);
  EXPECT_EQ((delivered_[{1, 2}]), 5);
  EXPECT_GE(sim_.stats().messages_dropped, dropped + 5);
  // A message to a store that is down is refused at once.
  sim_.Crash(3);
  EXPECT_FALSE(sim_.SendMessage(1, Fake(1, 3)).ok());
}

TEST_F(SimulatorTest, DataSurvivesACrashOfEveryStore) {
  ClientStats stats;
  KvClient client(&sim_, 1, ClientOptions(), &stats);
  auto call = [&](raft_cmdpb::RaftCmdRequest req) {
    std::optional<ClientReply> out;
    client.Call(std::move(req), std::nullopt,
                [&out](ClientReply r) { out = std::move(r); });
    sim_.RunUntilTrue([&out] { return out.has_value(); },
                      sim_.now() + 30'000'000);
    return out;
  };
  raft_cmdpb::RaftCmdRequest put;
  auto* p = put.add_requests();
  p->set_cmd_type(raft_cmdpb::Put);
  p->mutable_put()->set_cf("default");
  p->mutable_put()->set_key("k");
  p->mutable_put()->set_value("v");
  auto r = call(put);
  ASSERT_TRUE(r.has_value() && r->status.ok());
  for (uint64_t s = 1; s <= 5; ++s) sim_.Crash(s);
  sim_.RunUntil(sim_.now() + 500'000);
  for (uint64_t s = 1; s <= 5; ++s) ASSERT_TRUE(sim_.Restart(s).ok());
  raft_cmdpb::RaftCmdRequest get;
  auto* g = get.add_requests();
  g->set_cmd_type(raft_cmdpb::Get);
  g->mutable_get()->set_cf("default");
  g->mutable_get()->set_key("k");
  r = call(get);
  ASSERT_TRUE(r.has_value() && r->status.ok());
  EXPECT_EQ(r->response.responses(0).get().value(), "v");
  EXPECT_EQ(sim_.stats().crashes, 5u);
  EXPECT_GE(sim_.stats().elections, 2u);
}

TEST_F(SimulatorTest, TasksRunInOrderPerKindAndDieWithTheirStore) {
  using raftstore::TaskKind;
  sim_.RunUntil(1'000'000);
  std::vector<std::string> log;
  auto task = [&](uint64_t store, TaskKind kind, std::string name) {
    sim_.scheduler(store)->Schedule(
        kind, [&log, name] { log.push_back(name + " work"); },
        [&log, name] { log.push_back(name + " done"); });
  };
  for (int i = 0; i < 5; ++i) {
    task(1, TaskKind::kLogGc, absl::StrCat("gc", i));
  }
  int64_t start = sim_.now();
  sim_.RunUntilTrue([&] { return log.size() == 10; }, start + 1'000'000);
  ASSERT_EQ(log.size(), 10u);
  // Each kind is FIFO; each `done` follows its `work`; none runs sooner
  // than the configured delay.
  std::vector<std::string> works;
  for (size_t i = 0; i < log.size(); ++i) {
    if (log[i].ends_with(" work")) works.push_back(log[i]);
    if (log[i].ends_with(" done")) {
      std::string name = log[i].substr(0, log[i].size() - 5);
      auto w = std::find(log.begin(), log.begin() + i, name + " work");
      EXPECT_NE(w, log.begin() + i) << log[i] << " before its work";
    }
  }
  EXPECT_EQ(works, (std::vector<std::string>{"gc0 work", "gc1 work", "gc2 work",
                                             "gc3 work", "gc4 work"}));
  EXPECT_EQ(sim_.stats().tasks_run.at(static_cast<int>(TaskKind::kLogGc)), 5u);

  // A crash drops the pending tasks of its store: neither part runs, not
  // even after a restart; other stores' tasks are unaffected.
  log.clear();
  task(2, TaskKind::kSnapApply, "lost");
  task(3, TaskKind::kSnapApply, "kept");
  sim_.Crash(2);
  ASSERT_TRUE(sim_.Restart(2).ok());
  sim_.RunUntil(sim_.now() + 1'000'000);
  EXPECT_EQ(log, (std::vector<std::string>{"kept work", "kept done"}));

  // A crash between `work` and `done`: `done` never runs.
  log.clear();
  task(4, TaskKind::kSnapGenerate, "half");
  sim_.RunUntilTrue([&] { return !log.empty(); }, sim_.now() + 1'000'000);
  ASSERT_EQ(log, (std::vector<std::string>{"half work"}));
  sim_.Crash(4);
  ASSERT_TRUE(sim_.Restart(4).ok());
  sim_.RunUntil(sim_.now() + 1'000'000);
  EXPECT_EQ(log, (std::vector<std::string>{"half work"}));
}

// Snapshot streams of region 1's files, addressed to a region no store has
// (the receiving store drops the message after the transport delivered it).
class SnapshotStreamTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(sim_.Start().ok());
    sim_.set_delivery_hook([this](const raft_serverpb::RaftMessage& m) {
      if (m.region_id() == kFakeRegion &&
          m.message().msg_type() == raftpb::MsgSnapshot) {
        ++snapshots_delivered_[m.to_peer().store_id()];
      }
    });
    sim_.RunUntil(1'000'000);
    // About 40 KB of data on store 1 (written behind raft's back: only the
    // files matter here), so a stream has several 4 KiB chunks.
    // Values that do not compress (the files are compressed SSTs).
    storage::WriteBatch wb;
    std::mt19937_64 rng(1);
    for (int i = 0; i < 400; ++i) {
      std::string value;
      for (int b = 0; b < 100; ++b) value.push_back(static_cast<char>(rng()));
      wb.Put(storage::DataKey(storage::kCfDefault, absl::StrCat("key", i)),
             value);
    }
    ASSERT_TRUE(sim_.kv_engine(1)->Write(wb, /*sync=*/true).ok());
    raftstore::Store* s1 = sim_.store(1);
    // Region 1's key range under the fake region's id (file names and
    // messages carry it).
    region_ = s1->GetPeer(1)->region();
    region_.set_id(kFakeRegion);
    std::unique_ptr<storage::Snapshot> view = sim_.kv_engine(1)->NewSnapshot();
    auto snap = raftstore::GenerateSnapshot(s1->snap_dir(), *view, region_,
                                            /*index=*/100, /*term=*/7);
    ASSERT_TRUE(snap.ok()) << snap.status();
    snap_ = *std::move(snap);
  }

  raft_serverpb::RaftMessage SnapMsg(uint64_t to) {
    raft_serverpb::RaftMessage m = Fake(1, to);
    m.mutable_message()->set_msg_type(raftpb::MsgSnapshot);
    m.mutable_message()->set_from(1);
    m.mutable_message()->set_to(to);
    *m.mutable_message()->mutable_snapshot() = snap_;
    return m;
  }

  // The received files of the snapshot on store `s`.
  size_t ReceivedFiles(uint64_t s) {
    auto names = sim_.store(s)->snap_dir()->List(
        raftstore::SnapPrefix(/*received=*/true, kFakeRegion, 7, 100));
    EXPECT_TRUE(names.ok()) << names.status();
    return names.ok() ? names->size() : 0;
  }

  Simulator sim_{SimConfig{.seed = 5}};
  metapb::Region region_;
  raftpb::Snapshot snap_;
  std::map<uint64_t, int> snapshots_delivered_;
};

TEST_F(SnapshotStreamTest, ACompleteStreamIsDeliveredOnce) {
  sim_.filters().AddUnreliable(
      {.drop = 0, .delay_min_us = 0, .delay_max_us = 5'000, .duplicate = 1.0});
  sim_.SendSnapshot(1, SnapMsg(2));
  sim_.RunUntil(sim_.now() + 1'000'000);
  EXPECT_EQ(snapshots_delivered_[2], 1);  // duplicated chunks do not count
  EXPECT_EQ(sim_.stats().snapshots_sent, 1u);
  EXPECT_EQ(sim_.stats().snapshots_completed, 1u);
  EXPECT_EQ(sim_.stats().snapshots_failed, 0u);
  EXPECT_EQ(sim_.stats().snapshots_received.at(2), 1u);
  EXPECT_GE(sim_.stats().snapshot_chunks, 5u);  // the head and the data
  EXPECT_GE(sim_.stats().snapshot_bytes, 10'000u);
  EXPECT_GT(ReceivedFiles(2), 0u);
}

TEST_F(SnapshotStreamTest, ACutOrACrashBreaksTheStreamAndLeavesNoFiles) {
  sim_.filters().Partition({1}, {3});
  sim_.SendSnapshot(1, SnapMsg(3));
  sim_.RunUntil(sim_.now() + 1'000'000);
  EXPECT_EQ(snapshots_delivered_[3], 0);
  EXPECT_EQ(sim_.stats().snapshots_failed, 1u);
  EXPECT_EQ(ReceivedFiles(3), 0u);
  sim_.filters().Clear();

  // The receiver crashes after the first chunks arrived.
  sim_.SendSnapshot(1, SnapMsg(4));
  ASSERT_TRUE(
      sim_.RunUntilTrue([&] { return sim_.stats().snapshot_chunks >= 3; },
                        sim_.now() + 1'000'000));
  sim_.Crash(4);
  ASSERT_TRUE(sim_.Restart(4).ok());
  sim_.RunUntil(sim_.now() + 1'000'000);
  EXPECT_EQ(snapshots_delivered_[4], 0);
  EXPECT_EQ(sim_.stats().snapshots_failed, 2u);
  EXPECT_EQ(ReceivedFiles(4), 0u);

  // The sender crashes mid-stream.
  uint64_t chunks = sim_.stats().snapshot_chunks;
  sim_.SendSnapshot(1, SnapMsg(5));
  sim_.RunUntilTrue([&] { return sim_.stats().snapshot_chunks >= chunks + 2; },
                    sim_.now() + 1'000'000);
  sim_.Crash(1);
  sim_.RunUntil(sim_.now() + 1'000'000);
  EXPECT_EQ(snapshots_delivered_[5], 0);
  EXPECT_EQ(sim_.stats().snapshots_failed, 3u);
  EXPECT_EQ(ReceivedFiles(5), 0u);
  EXPECT_EQ(sim_.stats().snapshots_completed, 0u);
}

TEST_F(SnapshotStreamTest, OneStreamPerSnapshotAndReceiver) {
  sim_.SendSnapshot(1, SnapMsg(2));
  sim_.SendSnapshot(1, SnapMsg(2));  // the same files: refused
  sim_.RunUntil(sim_.now() + 1'000'000);
  EXPECT_EQ(snapshots_delivered_[2], 1);
  EXPECT_EQ(sim_.stats().snapshots_completed, 1u);
  EXPECT_EQ(sim_.stats().snapshots_failed, 1u);
}

TEST(CheckersTest, ClientAppendsCatchesLostDuplicateAndMisplacedValues) {
  std::string v0 = AppendValue(3, 0), v1 = AppendValue(3, 1),
              v2 = AppendValue(3, 2);
  EXPECT_TRUE(CheckClientAppends(3, v0 + v1 + v2, 3).ok());
  EXPECT_TRUE(CheckClientAppends(3, v0 + v1 + v2, 2).ok());
  absl::Status lost = CheckClientAppends(3, v0 + v2, 3);
  EXPECT_FALSE(lost.ok());
  EXPECT_NE(lost.message().find("missing element \"x 3 1 y\""),
            std::string::npos)
      << lost;
  absl::Status dup = CheckClientAppends(3, v0 + v1 + v1 + v2, 3);
  EXPECT_NE(dup.message().find("duplicate"), std::string::npos) << dup;
  absl::Status order = CheckClientAppends(3, v1 + v0 + v2, 3);
  EXPECT_NE(order.message().find("wrong order"), std::string::npos) << order;
}

TEST(CheckersTest, LinearizabilityCatchesALostAppend) {
  std::vector<check::KvOperation> h = {
      check::KvAppend(0, "c0", "a", std::nullopt, 0, 10),
      check::KvAppend(0, "c0", "b", std::nullopt, 20, 30),
      check::KvGet(0, "c0", "a", 40, 50),  // "b" was lost
  };
  std::string summary;
  absl::Status s = CheckLinearizable(h, &summary);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  h[2] = check::KvGet(0, "c0", "ab", 40, 50);
  EXPECT_TRUE(CheckLinearizable(h, &summary).ok()) << summary;
}

TEST(CheckersTest, LinearizabilityCatchesAStaleRead) {
  std::vector<check::KvOperation> h = {
      check::KvAppend(0, "c0", "a", std::nullopt, 0, 10),
      check::KvGet(1, "c0", "a", 15, 18),
      check::KvAppend(0, "c0", "b", std::nullopt, 20, 30),
      check::KvGet(1, "c0", "a", 35, 40),  // stale: "ab" had completed
  };
  EXPECT_EQ(CheckLinearizable(h, nullptr).code(), absl::StatusCode::kInternal);
  // Concurrent with the append, the old value is fine.
  h[3] = check::KvGet(1, "c0", "a", 25, 40);
  EXPECT_TRUE(CheckLinearizable(h, nullptr).ok());
}

TEST(CheckersTest, IndeterminateAppendMayOrMayNotHaveHappened) {
  std::vector<check::KvOperation> h = {
      check::KvAppend(0, "c0", "a", std::nullopt, 0, check::kUnknownReturnTime),
      check::KvGet(1, "c0", std::nullopt, 10, 20),
      check::KvGet(1, "c0", "a", 30, 40),
  };
  EXPECT_TRUE(CheckLinearizable(h, nullptr).ok());
  h.push_back(check::KvGet(1, "c0", std::nullopt, 50, 60));  // then lost
  EXPECT_FALSE(CheckLinearizable(h, nullptr).ok());
}

}  // namespace
}  // namespace raftkv::sim
