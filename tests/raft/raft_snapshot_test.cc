// Snapshot tests for the raft core (Raft paper §7, log compaction): a
// follower installing a snapshot, a leader sending one when a follower's next
// entry was compacted, a storage that cannot produce a snapshot yet, and the
// return to normal replication once a snapshot is acknowledged.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "raft/errors.h"
#include "raft/raft.h"
#include "raft/storage.h"
#include "raft/types.h"
#include "test_util.h"

namespace raftkv::raft {
namespace {

using raftpb::ConfState;
using raftpb::Entry;
using raftpb::HardState;
using raftpb::Message;
using raftpb::Snapshot;
using test::AcceptAndReply;
using test::MakeEntry;
using test::MakeMsg;
using test::Network;
using test::NewTestRaft;
using test::NextEnts;
using test::Nodes;
using test::PeerSpec;
using test::TestRaft;

Snapshot MakeSnap(uint64_t index, uint64_t term,
                  const std::vector<uint64_t>& voters) {
  Snapshot s;
  s.mutable_metadata()->set_index(index);
  s.mutable_metadata()->set_term(term);
  for (uint64_t v : voters) {
    s.mutable_metadata()->mutable_conf_state()->add_voters(v);
  }
  return s;
}

Message Propose(uint64_t id, std::string data) {
  Message m = MakeMsg(id, id, raftpb::MsgPropose);
  m.add_entries()->set_data(std::move(data));
  return m;
}

std::string Describe(const std::vector<Message>& msgs) {
  std::string s;
  for (const Message& m : msgs) s += DescribeMessage(m) + "\n";
  return s;
}

// A Storage that delegates to a MemoryStorage but can be told to answer
// Snapshot() with kSnapshotTemporarilyUnavailable, like a storage that is
// still producing a snapshot in the background.
class FlakySnapshotStorage final : public Storage {
 public:
  explicit FlakySnapshotStorage(MemoryStorage* mem) : mem_(mem) {}

  absl::StatusOr<RaftState> InitialState() override {
    return mem_->InitialState();
  }
  absl::StatusOr<std::vector<Entry>> Entries(uint64_t lo, uint64_t hi,
                                             uint64_t max_size) override {
    return mem_->Entries(lo, hi, max_size);
  }
  absl::StatusOr<uint64_t> Term(uint64_t i) override { return mem_->Term(i); }
  absl::StatusOr<uint64_t> FirstIndex() override { return mem_->FirstIndex(); }
  absl::StatusOr<uint64_t> LastIndex() override { return mem_->LastIndex(); }
  absl::StatusOr<raftpb::Snapshot> Snapshot() override {
    ++snapshot_calls_;
    if (unavailable_) {
      return MakeError(ErrorKind::kSnapshotTemporarilyUnavailable,
                       "test storage is still building the snapshot");
    }
    return mem_->Snapshot();
  }

  void set_unavailable(bool v) { unavailable_ = v; }
  int snapshot_calls() const { return snapshot_calls_; }

 private:
  MemoryStorage* mem_;
  bool unavailable_ = false;
  int snapshot_calls_ = 0;
};

// TinyKV TestRestoreSnapshot2C: a fresh node restores a snapshot; its log
// ends at the snapshot and the membership is the snapshot's.
TEST(RaftSnapshotTest, RestoreSnapshotOnFreshNode) {
  TestRaft r = NewTestRaft(1, {1, 2}, 10, 1);
  const Snapshot snap = MakeSnap(11, 11, {1, 2, 3});
  ASSERT_TRUE(r->Restore(snap));
  EXPECT_EQ(r->raft_log().last_index(), 11u);
  EXPECT_EQ(r->raft_log().Term(11).value(), 11u);
  EXPECT_EQ(r->raft_log().committed(), 11u);
  EXPECT_EQ(Nodes(*r.raft), (std::vector<uint64_t>{1, 2, 3}));
  // The same snapshot again is not newer than the committed index.
  EXPECT_FALSE(r->Restore(snap));
  EXPECT_EQ(r->raft_log().last_index(), 11u);
}

// TinyKV TestRestoreIgnoreSnapshot2C: a snapshot at or below the committed
// index carries nothing new and is ignored.
TEST(RaftSnapshotTest, RestoreIgnoresSnapshotBelowCommitted) {
  auto storage = std::make_unique<MemoryStorage>();
  ASSERT_TRUE(
      storage->Append({MakeEntry(1, 1), MakeEntry(2, 1), MakeEntry(3, 1)})
          .ok());
  TestRaft r = NewTestRaft(1, {1, 2}, 10, 1, std::move(storage));
  r->raft_log().CommitTo(3);

  EXPECT_FALSE(r->Restore(MakeSnap(1, 1, {1, 2})));
  EXPECT_EQ(r->raft_log().committed(), 3u);
  EXPECT_EQ(r->raft_log().last_index(), 3u);
  EXPECT_FALSE(r->raft_log().UnstableSnapshot().has_value());

  // Through Step: the stale snapshot is acknowledged with the committed index
  // so the leader learns how far this follower really is.
  Message m = MakeMsg(2, 1, raftpb::MsgSnapshot, 1);
  *m.mutable_snapshot() = MakeSnap(2, 1, {1, 2});
  ASSERT_TRUE(r->Step(m).ok());
  EXPECT_EQ(r->raft_log().committed(), 3u);
  EXPECT_EQ(r->raft_log().last_index(), 3u);
  EXPECT_FALSE(r->raft_log().UnstableSnapshot().has_value());
  std::vector<Message> msgs = r->ReadMessages();
  ASSERT_EQ(msgs.size(), 1u) << Describe(msgs);
  EXPECT_EQ(msgs[0].msg_type(), raftpb::MsgAppendResponse);
  EXPECT_EQ(msgs[0].to(), 2u);
  EXPECT_FALSE(msgs[0].reject());
  EXPECT_EQ(msgs[0].index(), 3u);
}

// A leader over a storage compacted up to (11, 11), with voters {1, 2}, in a
// term after the snapshot's. Its log is the dummy (11) and its no-op at 12.
class SnapshotLeaderTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(mem_.ApplySnapshot(MakeSnap(11, 11, {1, 2})).ok());
    HardState hs;
    hs.set_term(11);
    hs.set_commit(11);
    mem_.SetHardState(hs);
    auto created = Raft::Create(test::TestConfig(1, {}, 10, 1, &storage_));
    ASSERT_TRUE(created.ok()) << created.status();
    r_ = std::move(created).value();
    r_->BecomeCandidate();
    r_->BecomeLeader();
    r_->ReadMessages();
    ASSERT_EQ(r_->raft_log().first_index(), 12u);
    pr2_ = r_->tracker().Get(2);
    ASSERT_NE(pr2_, nullptr);
  }

  // Makes follower 2 look like it needs entry 11, which is compacted: the
  // leader can only catch it up with a snapshot.
  void MakeFollowerNeedSnapshot() {
    pr2_->BecomeProbe();
    pr2_->match = 0;
    pr2_->next = 11;
    pr2_->probe_sent = false;
  }

  std::vector<Message> MessagesTo(uint64_t to) {
    std::vector<Message> out;
    for (Message& m : r_->ReadMessages()) {
      if (m.to() == to) out.push_back(std::move(m));
    }
    return out;
  }

  MemoryStorage mem_;
  FlakySnapshotStorage storage_{&mem_};
  std::unique_ptr<Raft> r_;
  Progress* pr2_ = nullptr;
};

// TinyKV TestProvideSnap2C / §7: when the leader has discarded the next entry
// it needs to send, it sends its snapshot instead.
TEST_F(SnapshotLeaderTest, ProvidesSnapshotWhenNextEntryIsCompacted) {
  MakeFollowerNeedSnapshot();
  ASSERT_TRUE(r_->Step(Propose(1, "somedata")).ok());
  std::vector<Message> msgs = r_->ReadMessages();
  ASSERT_EQ(msgs.size(), 1u) << Describe(msgs);
  EXPECT_EQ(msgs[0].msg_type(), raftpb::MsgSnapshot);
  EXPECT_EQ(msgs[0].to(), 2u);
  EXPECT_EQ(msgs[0].term(), r_->term());
  EXPECT_EQ(msgs[0].snapshot().metadata().index(), 11u);
  EXPECT_EQ(msgs[0].snapshot().metadata().term(), 11u);
  EXPECT_EQ(msgs[0].snapshot().metadata().conf_state().voters_size(), 2);
  EXPECT_EQ(pr2_->state, ProgressState::kSnapshot);
  EXPECT_EQ(pr2_->pending_snapshot, 11u);

  // While the snapshot is in flight nothing else goes to node 2.
  ASSERT_TRUE(r_->Step(Propose(1, "more")).ok());
  EXPECT_TRUE(MessagesTo(2).empty());
}

// A storage still building its snapshot: the leader must neither crash nor
// send anything (or get stuck in Snapshot state); once the snapshot exists
// the next contact with the follower sends it.
TEST_F(SnapshotLeaderTest, SnapshotTemporarilyUnavailableIsRetried) {
  MakeFollowerNeedSnapshot();
  storage_.set_unavailable(true);
  const int calls_before = storage_.snapshot_calls();
  ASSERT_TRUE(r_->Step(Propose(1, "somedata")).ok());
  EXPECT_GT(storage_.snapshot_calls(), calls_before)
      << "the leader never asked the storage for a snapshot";
  std::vector<Message> to2 = MessagesTo(2);
  EXPECT_TRUE(to2.empty()) << Describe(to2);
  EXPECT_NE(pr2_->state, ProgressState::kSnapshot);
  EXPECT_EQ(r_->state(), StateType::kLeader);
  // The proposal itself was accepted.
  EXPECT_EQ(r_->raft_log().last_index(), 13u);

  // Still unavailable on the next heartbeat round: still nothing.
  Message hb_resp = MakeMsg(2, 1, raftpb::MsgHeartbeatResponse, r_->term());
  ASSERT_TRUE(r_->Step(hb_resp).ok());
  to2 = MessagesTo(2);
  EXPECT_TRUE(to2.empty()) << Describe(to2);

  // The snapshot is ready: the follower's next heartbeat response makes the
  // leader send it.
  storage_.set_unavailable(false);
  ASSERT_TRUE(r_->Step(hb_resp).ok());
  to2 = MessagesTo(2);
  ASSERT_EQ(to2.size(), 1u) << Describe(to2);
  EXPECT_EQ(to2[0].msg_type(), raftpb::MsgSnapshot);
  EXPECT_EQ(to2[0].snapshot().metadata().index(), 11u);
  EXPECT_EQ(to2[0].snapshot().metadata().term(), 11u);
  EXPECT_EQ(pr2_->state, ProgressState::kSnapshot);
  EXPECT_EQ(pr2_->pending_snapshot, 11u);
}

// Once the follower acknowledges the snapshot (an append response at the
// snapshot index), the leader leaves Snapshot state and resumes sending
// entries from just after the snapshot.
TEST_F(SnapshotLeaderTest, SnapshotAckResumesReplication) {
  MakeFollowerNeedSnapshot();
  ASSERT_TRUE(r_->Step(Propose(1, "somedata")).ok());
  ASSERT_EQ(r_->ReadMessages().size(), 1u);
  ASSERT_EQ(pr2_->state, ProgressState::kSnapshot);
  const uint64_t last = r_->raft_log().last_index();
  ASSERT_EQ(last, 13u);  // no-op at 12, proposal at 13
  ASSERT_EQ(r_->raft_log().committed(), 11u);

  Message ack = MakeMsg(2, 1, raftpb::MsgAppendResponse, r_->term());
  ack.set_index(11);
  ASSERT_TRUE(r_->Step(ack).ok());
  EXPECT_EQ(pr2_->match, 11u);
  EXPECT_NE(pr2_->state, ProgressState::kSnapshot) << pr2_->ToString();

  // Replication continues with the entries after the snapshot.
  std::vector<Message> to2 = MessagesTo(2);
  ASSERT_EQ(to2.size(), 1u) << Describe(to2);
  const Message& app = to2[0];
  EXPECT_EQ(app.msg_type(), raftpb::MsgAppend);
  EXPECT_EQ(app.index(), 11u);
  EXPECT_EQ(app.log_term(), 11u);
  ASSERT_EQ(app.entries_size(), 2);
  EXPECT_EQ(app.entries(0).index(), 12u);
  EXPECT_EQ(app.entries(1).index(), 13u);
  EXPECT_EQ(app.entries(1).data(), "somedata");

  // The follower accepts: match catches up, the flow switches to Replicate
  // and the entries commit (two of two voters).
  ASSERT_TRUE(r_->Step(AcceptAndReply(app)).ok());
  EXPECT_EQ(pr2_->match, last);
  EXPECT_EQ(pr2_->state, ProgressState::kReplicate);
  EXPECT_EQ(r_->raft_log().committed(), last);

  // New proposals are streamed to node 2 directly.
  r_->ReadMessages();
  ASSERT_TRUE(r_->Step(Propose(1, "next")).ok());
  to2 = MessagesTo(2);
  ASSERT_EQ(to2.size(), 1u) << Describe(to2);
  EXPECT_EQ(to2[0].msg_type(), raftpb::MsgAppend);
  EXPECT_EQ(to2[0].index(), last);
  ASSERT_EQ(to2[0].entries_size(), 1);
  EXPECT_EQ(to2[0].entries(0).data(), "next");
}

// TinyKV TestRestoreFromSnapMsg2C: a MsgSnapshot from the leader installs the
// snapshot and makes its sender the known leader.
TEST(RaftSnapshotTest, RestoreFromSnapshotMessage) {
  TestRaft r = NewTestRaft(2, {1, 2}, 10, 1);
  Message m = MakeMsg(1, 2, raftpb::MsgSnapshot, 2);
  *m.mutable_snapshot() = MakeSnap(11, 11, {1, 2});
  ASSERT_TRUE(r->Step(m).ok());
  EXPECT_EQ(r->lead(), 1u);
  EXPECT_EQ(r->term(), 2u);
  EXPECT_EQ(r->state(), StateType::kFollower);
  EXPECT_EQ(r->raft_log().committed(), 11u);
  EXPECT_EQ(r->raft_log().last_index(), 11u);
  ASSERT_TRUE(r->raft_log().UnstableSnapshot().has_value());
  EXPECT_EQ(r->raft_log().UnstableSnapshot()->metadata().index(), 11u);
  // The follower acknowledges the snapshot index.
  std::vector<Message> msgs = r->ReadMessages();
  ASSERT_EQ(msgs.size(), 1u) << Describe(msgs);
  EXPECT_EQ(msgs[0].msg_type(), raftpb::MsgAppendResponse);
  EXPECT_EQ(msgs[0].to(), 1u);
  EXPECT_FALSE(msgs[0].reject());
  EXPECT_EQ(msgs[0].index(), 11u);
}

// TinyKV TestRestoreFromSnapWithOverlapingPeersMsg2C: the membership after
// the snapshot is exactly the snapshot's, whatever the node started with.
TEST(RaftSnapshotTest, RestoreFromSnapshotWithOverlappingPeers) {
  TestRaft r = NewTestRaft(2, {1, 2, 3}, 10, 1);
  Message m = MakeMsg(1, 2, raftpb::MsgSnapshot, 2);
  *m.mutable_snapshot() = MakeSnap(11, 11, {2, 3, 4});
  ASSERT_TRUE(r->Step(m).ok());
  EXPECT_EQ(r->lead(), 1u);
  EXPECT_EQ(Nodes(*r.raft), (std::vector<uint64_t>{2, 3, 4}));
  EXPECT_EQ(r->raft_log().committed(), 11u);
}

// TinyKV TestSlowNodeRestore2C: a follower cut off while the leader compacts
// its log catches up through a snapshot, then through normal appends.
TEST(RaftSnapshotTest, SlowNodeCatchesUpFromSnapshot) {
  std::vector<PeerSpec> peers;
  for (int i = 0; i < 3; ++i) peers.push_back(PeerSpec::Fresh());
  Network nt(std::move(peers));
  int snapshots_to_3 = 0;
  nt.SetMsgHook([&](const Message& m) {
    if (m.msg_type() == raftpb::MsgSnapshot && m.to() == 3) ++snapshots_to_3;
    return true;
  });
  nt.Send(MakeMsg(1, 1, raftpb::MsgHup));
  Raft* lead = nt.raft(1);
  ASSERT_EQ(lead->state(), StateType::kLeader);

  nt.Isolate(3);
  for (int i = 0; i <= 100; ++i) nt.Send(Propose(1, "somedata"));
  ASSERT_EQ(lead->raft_log().committed(), 102u);  // no-op + 101 proposals

  // The leader persists and applies everything, snapshots and compacts.
  NextEnts(lead, nt.storage(1));
  const uint64_t applied = lead->raft_log().applied();
  ASSERT_EQ(applied, 102u);
  const ConfState cs = lead->tracker().GetConfState();
  ASSERT_TRUE(nt.storage(1)->CreateSnapshot(applied, &cs, "").ok());
  ASSERT_TRUE(nt.storage(1)->Compact(applied).ok());
  ASSERT_GT(lead->raft_log().first_index(), 2u);

  nt.Recover();
  Raft* follower = nt.raft(3);
  ASSERT_EQ(follower->raft_log().committed(), 1u);
  // A heartbeat round shows the leader how far behind node 3 is.
  nt.Send(MakeMsg(1, 1, raftpb::MsgBeat));
  EXPECT_GE(snapshots_to_3, 1);
  EXPECT_GE(follower->raft_log().committed(), applied);

  // Then ordinary replication carries on.
  nt.Send(Propose(1, "after"));
  nt.Send(Propose(1, "after2"));
  EXPECT_EQ(lead->raft_log().committed(), 104u);
  EXPECT_EQ(follower->raft_log().committed(), lead->raft_log().committed());
  EXPECT_EQ(follower->raft_log().last_index(), lead->raft_log().last_index());
  EXPECT_EQ(follower->raft_log().LastTerm(), lead->raft_log().LastTerm());
  EXPECT_EQ(lead->tracker().Get(3)->match, lead->raft_log().last_index());
}

}  // namespace
}  // namespace raftkv::raft
