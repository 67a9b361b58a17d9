// Tests for the leader's flow control (as in etcd/raft): the Inflights window
// (src/raft/tracker/inflights.h), Progress pausing in Probe / Replicate /
// Snapshot (tracker/progress.h), how the leader paces, sizes and merges its
// append messages, the cap on uncommitted bytes, and the contract that every
// refused proposal fails at once with kProposalDropped and changes nothing.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "raft/config.h"
#include "raft/errors.h"
#include "raft/raft.h"
#include "raft/raw_node.h"
#include "raft/storage.h"
#include "raft/tracker/inflights.h"
#include "raft/tracker/progress.h"
#include "raft/types.h"
#include "test_util.h"

namespace raftkv::raft {
namespace {

using raftpb::Entry;
using raftpb::Message;
using test::AcceptAndReply;
using test::MakeEntry;
using test::MakeMsg;
using test::Network;
using test::NewTestRaft;
using test::PeerSpec;
using test::TestConfig;
using test::TestRaft;

using Edit = std::function<void(Config*)>;

// ---- Inflights ----

TEST(InflightsTest, FullByCount) {
  Inflights in(3, kNoLimit);
  EXPECT_FALSE(in.Full());
  EXPECT_EQ(in.LastIndex(), 0u);
  in.Add(1, 10);
  in.Add(2, 10);
  EXPECT_FALSE(in.Full());
  in.Add(5, 10);
  EXPECT_TRUE(in.Full());
  EXPECT_EQ(in.Count(), 3u);
  EXPECT_EQ(in.Bytes(), 30u);
  EXPECT_EQ(in.LastIndex(), 5u);
}

TEST(InflightsTest, FullByBytes) {
  Inflights in(100, 100);
  in.Add(1, 60);
  EXPECT_FALSE(in.Full());
  in.Add(2, 39);
  EXPECT_FALSE(in.Full()) << "99 of 100 bytes";
  in.Add(3, 1);
  EXPECT_TRUE(in.Full()) << "100 of 100 bytes";
  EXPECT_EQ(in.Count(), 3u);
  EXPECT_EQ(in.Bytes(), 100u);

  // A single message larger than the byte limit fills the window alone.
  Inflights big(100, 100);
  big.Add(7, 500);
  EXPECT_TRUE(big.Full());
  EXPECT_EQ(big.Count(), 1u);
}

TEST(InflightsTest, FreeLEFreesAcknowledgedMessages) {
  Inflights in(10, kNoLimit);
  for (uint64_t i = 1; i <= 5; ++i) in.Add(2 * i, i);  // indexes 2,4,..,10
  in.FreeLE(1);
  EXPECT_EQ(in.Count(), 5u) << "nothing at or below 1";
  in.FreeLE(5);  // frees 2 and 4
  EXPECT_EQ(in.Count(), 3u);
  EXPECT_EQ(in.Bytes(), 3u + 4u + 5u);
  EXPECT_EQ(in.LastIndex(), 10u);
  in.FreeLE(6);  // frees 6
  EXPECT_EQ(in.Count(), 2u);
  EXPECT_EQ(in.Bytes(), 4u + 5u);
  in.FreeLE(100);
  EXPECT_EQ(in.Count(), 0u);
  EXPECT_EQ(in.Bytes(), 0u);
  EXPECT_EQ(in.LastIndex(), 0u);
}

TEST(InflightsTest, FreeLEUnfillsAFullWindow) {
  Inflights in(2, kNoLimit);
  in.Add(3, 1);
  in.Add(6, 1);
  ASSERT_TRUE(in.Full());
  in.FreeLE(3);
  EXPECT_FALSE(in.Full());
  in.Add(9, 1);
  EXPECT_TRUE(in.Full());
}

TEST(InflightsTest, FreeFirstOneFreesTheOldest) {
  Inflights in(3, kNoLimit);
  in.FreeFirstOne();  // no-op on an empty window
  EXPECT_EQ(in.Count(), 0u);
  in.Add(1, 10);
  in.Add(2, 20);
  in.Add(3, 30);
  ASSERT_TRUE(in.Full());
  in.FreeFirstOne();
  EXPECT_FALSE(in.Full());
  EXPECT_EQ(in.Count(), 2u);
  EXPECT_EQ(in.Bytes(), 50u);
  EXPECT_EQ(in.LastIndex(), 3u);
  in.FreeLE(2);
  EXPECT_EQ(in.Count(), 1u) << "the message for 2 was left, 1 was freed";
}

TEST(InflightsTest, ExtendLastGrowsTheNewestMessage) {
  Inflights in(2, kNoLimit);
  in.Add(5, 10);
  in.ExtendLast(8, 20);
  EXPECT_EQ(in.Count(), 1u) << "still one message";
  EXPECT_EQ(in.LastIndex(), 8u);
  EXPECT_EQ(in.Bytes(), 30u);
  in.FreeLE(7);
  EXPECT_EQ(in.Count(), 1u) << "the merged message is acknowledged whole";
  in.FreeLE(8);
  EXPECT_EQ(in.Count(), 0u);
  EXPECT_EQ(in.Bytes(), 0u);
}

TEST(InflightsTest, ResetEmptiesAndKeepsLimits) {
  Inflights in(2, 100);
  in.Add(1, 10);
  in.Add(2, 10);
  ASSERT_TRUE(in.Full());
  in.Reset();
  EXPECT_FALSE(in.Full());
  EXPECT_EQ(in.Count(), 0u);
  EXPECT_EQ(in.Bytes(), 0u);
  EXPECT_EQ(in.LastIndex(), 0u);
  in.Add(1, 10);  // indexes may start over after a reset
  in.Add(2, 10);
  EXPECT_TRUE(in.Full()) << "same count limit after Reset";
  in.Reset();
  in.Add(1, 100);
  EXPECT_TRUE(in.Full()) << "same byte limit after Reset";
}

TEST(InflightsDeathTest, AddOnFullWindowAborts) {
  Inflights in(2, kNoLimit);
  in.Add(1, 1);
  in.Add(2, 1);
  ASSERT_TRUE(in.Full());
  EXPECT_DEATH(in.Add(3, 1), "full");
}

TEST(InflightsDeathTest, AddOfNonIncreasingIndexAborts) {
  Inflights in(5, kNoLimit);
  in.Add(4, 1);
  EXPECT_DEATH(in.Add(4, 1), "");
  EXPECT_DEATH(in.Add(3, 1), "");
}

// ---- Progress ----

TEST(ProgressTest, IsPausedInEachState) {
  Progress pr;
  pr.inflights = Inflights(2, kNoLimit);

  // Probe: paused exactly while an append is outstanding.
  pr.BecomeProbe();
  EXPECT_FALSE(pr.IsPaused());
  pr.probe_sent = true;
  EXPECT_TRUE(pr.IsPaused());
  EXPECT_TRUE(pr.MaybeUpdate(1));
  EXPECT_FALSE(pr.IsPaused()) << "an acknowledgement unpauses a probe";

  // Replicate: paused exactly while the window is full.
  pr.BecomeReplicate();
  EXPECT_FALSE(pr.IsPaused());
  pr.inflights.Add(2, 10);
  EXPECT_FALSE(pr.IsPaused());
  pr.inflights.Add(3, 10);
  EXPECT_TRUE(pr.IsPaused());
  pr.inflights.FreeLE(2);
  EXPECT_FALSE(pr.IsPaused());

  // Snapshot: always paused.
  pr.BecomeSnapshot(10);
  EXPECT_EQ(pr.inflights.Count(), 0u);
  EXPECT_TRUE(pr.IsPaused());
}

// ---- Leader pacing ----

Message ProposeMsg(uint64_t to, std::string data) {
  Message m = MakeMsg(to, to, raftpb::MsgPropose);
  m.add_entries()->set_data(std::move(data));
  return m;
}

absl::Status Propose(Raft* r, std::string data) {
  return r->Step(ProposeMsg(r->id(), std::move(data)));
}

// The MsgAppends to `to` among `msgs`.
std::vector<Message> AppendsTo(const std::vector<Message>& msgs, uint64_t to) {
  std::vector<Message> out;
  for (const Message& m : msgs) {
    if (m.msg_type() == raftpb::MsgAppend && m.to() == to) out.push_back(m);
  }
  return out;
}

std::vector<uint64_t> Indexes(const std::vector<Message>& msgs) {
  std::vector<uint64_t> out;
  for (const Message& m : msgs) {
    for (const Entry& e : m.entries()) out.push_back(e.index());
  }
  return out;
}

std::vector<uint64_t> Range(uint64_t lo, uint64_t hi) {
  std::vector<uint64_t> out;
  for (uint64_t i = lo; i <= hi; ++i) out.push_back(i);
  return out;
}

uint64_t MsgBytes(const Message& m) {
  return EntriesSize(m.entries().begin(), m.entries().end());
}

Message AckFrom(uint64_t from, uint64_t index, uint64_t term) {
  Message m = MakeMsg(from, 1, raftpb::MsgAppendResponse, term);
  m.set_index(index);
  return m;
}

// A payload and the EntrySize of an entry carrying it.
const std::string kData(100, 'd');
uint64_t DataEntrySize() { return EntrySize(MakeEntry(0, 0, kData)); }

// Leader 1 of {1,2,3} at term 1 whose no-op (index 1) is committed; both
// followers are in Replicate with match 1 and nothing in flight.
TestRaft NewLeader(const Edit& edit = {}) {
  TestRaft t = NewTestRaft(1, {1, 2, 3}, 10, 1, nullptr, edit);
  t->BecomeCandidate();
  t->BecomeLeader();
  test::CommitNoopEntry(t.raft.get(), t.storage.get());
  return t;
}

void ExpectReplicatingLeader(Raft* r) {
  ASSERT_EQ(r->state(), StateType::kLeader);
  ASSERT_EQ(r->raft_log().committed(), 1u);
  for (uint64_t id : {2u, 3u}) {
    const Progress* pr = r->tracker().Get(id);
    ASSERT_EQ(pr->state, ProgressState::kReplicate) << id;
    ASSERT_EQ(pr->match, 1u) << id;
    ASSERT_EQ(pr->inflights.Count(), 0u) << id;
  }
}

// A follower in Replicate that never acknowledges gets at most
// max_inflight_msgs appends; proposals are still accepted and appended
// locally; an acknowledgement opens the window for the rest.
TEST(RaftFlowControlTest, InflightWindowBoundsAppendsToSilentFollower) {
  TestRaft t = NewLeader([](Config* c) { c->max_inflight_msgs = 3; });
  Raft* r = t.raft.get();
  ExpectReplicatingLeader(r);
  std::vector<Message> to2;
  for (uint64_t i = 0; i < 10; ++i) {
    ASSERT_TRUE(Propose(r, kData).ok()) << i;
    EXPECT_EQ(r->raft_log().last_index(), 2 + i);
    for (Message& m : AppendsTo(r->ReadMessages(), 2)) to2.push_back(m);
  }
  EXPECT_EQ(to2.size(), 3u);
  EXPECT_EQ(Indexes(to2), Range(2, 4));
  const Progress* pr = r->tracker().Get(2);
  EXPECT_EQ(pr->state, ProgressState::kReplicate);
  EXPECT_TRUE(pr->IsPaused());
  EXPECT_EQ(pr->inflights.Count(), 3u);

  // The first message is acknowledged: one slot frees, and the backlog goes
  // out in it.
  ASSERT_TRUE(r->Step(AckFrom(2, 2, r->term())).ok());
  std::vector<Message> more = AppendsTo(r->ReadMessages(), 2);
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(more[0].index(), 4u) << "continues after the last sent entry";
  EXPECT_EQ(Indexes(more), Range(5, 11));
  EXPECT_EQ(r->tracker().Get(2)->next, 12u);
}

// The window counts every append message that carries entries, also when
// new entries are merged into a queued (still unsent) commit-only append: a
// silent follower gets at most max_inflight_msgs messages of entries while
// the rest of the group keeps committing.
TEST(RaftFlowControlTest, InflightWindowHoldsWhileOthersKeepCommitting) {
  TestRaft t = NewLeader([](Config* c) { c->max_inflight_msgs = 3; });
  Raft* r = t.raft.get();
  ExpectReplicatingLeader(r);
  std::vector<Message> to2;
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(Propose(r, kData).ok()) << i;
    std::vector<Message> msgs = r->ReadMessages();
    for (Message& m : AppendsTo(msgs, 2)) {
      if (m.entries_size() > 0) to2.push_back(m);
    }
    // Node 3 acknowledges at once; the new commit index is broadcast (node
    // 2's copy stays queued until the next ReadMessages).
    for (const Message& m : AppendsTo(msgs, 3)) {
      if (m.entries_size() > 0) {
        ASSERT_TRUE(r->Step(AcceptAndReply(m)).ok());
      }
    }
  }
  ASSERT_EQ(r->raft_log().committed(), 9u) << "leader and 3 commit everything";
  const Progress* pr = r->tracker().Get(2);
  EXPECT_LE(to2.size(), 3u)
      << "appends with entries to the silent follower 2: "
      << Indexes(to2).size() << " entries in " << to2.size() << " messages";
  EXPECT_EQ(pr->inflights.Count(), to2.size())
      << "the window must count every unacknowledged message";
  EXPECT_TRUE(pr->IsPaused());
}

// max_inflight_bytes bounds the entry bytes in flight: the window closes
// once the bytes reach the limit.
TEST(RaftFlowControlTest, InflightBytesBoundBytesInFlight) {
  const uint64_t sz = DataEntrySize();
  const uint64_t limit = sz + sz / 2;
  TestRaft t = NewLeader([&](Config* c) {
    c->max_inflight_bytes = limit;
    c->max_size_per_msg = sz;  // one entry per message
  });
  Raft* r = t.raft.get();
  ExpectReplicatingLeader(r);
  std::vector<Message> to2;
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(Propose(r, kData).ok());
    for (Message& m : AppendsTo(r->ReadMessages(), 2)) to2.push_back(m);
  }
  ASSERT_EQ(to2.size(), 2u) << "the second message reaches the byte limit";
  EXPECT_EQ(Indexes(to2), Range(2, 3));
  const Progress* pr = r->tracker().Get(2);
  EXPECT_EQ(pr->inflights.Bytes(), 2 * sz);
  EXPECT_EQ(pr->inflights.Count(), 2u) << "far below the message limit";
  EXPECT_TRUE(pr->IsPaused());

  ASSERT_TRUE(r->Step(AckFrom(2, 2, r->term())).ok());
  std::vector<Message> more = AppendsTo(r->ReadMessages(), 2);
  EXPECT_EQ(Indexes(more), std::vector<uint64_t>{4});
  EXPECT_EQ(pr->inflights.Bytes(), 2 * sz);
  EXPECT_TRUE(pr->IsPaused());
}

// A heartbeat response on a full window frees the oldest slot: exactly one
// more append goes out (if the window's messages were lost, the follower's
// answer to it restarts replication).
TEST(RaftFlowControlTest, HeartbeatResponseOnFullWindowLetsOneAppendOut) {
  TestRaft t = NewLeader([](Config* c) {
    c->max_inflight_msgs = 3;
    c->max_size_per_msg = DataEntrySize();
  });
  Raft* r = t.raft.get();
  ExpectReplicatingLeader(r);
  std::vector<Message> to2;
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(Propose(r, kData).ok());
    for (Message& m : AppendsTo(r->ReadMessages(), 2)) to2.push_back(m);
  }
  ASSERT_EQ(Indexes(to2), Range(2, 4));
  ASSERT_TRUE(r->tracker().Get(2)->IsPaused());

  for (uint64_t want : {5u, 6u}) {
    ASSERT_TRUE(
        r->Step(MakeMsg(2, 1, raftpb::MsgHeartbeatResponse, r->term())).ok());
    std::vector<Message> out = AppendsTo(r->ReadMessages(), 2);
    ASSERT_EQ(out.size(), 1u) << "after heartbeat response, want " << want;
    EXPECT_EQ(Indexes(out), std::vector<uint64_t>{want});
    EXPECT_TRUE(r->tracker().Get(2)->IsPaused()) << "full again";
  }
}

// max_size_per_msg splits a backlog into several appends, each within the
// limit but carrying at least one entry even when one entry exceeds it.
TEST(RaftFlowControlTest, MaxSizePerMsgSplitsBacklog) {
  const uint64_t sz = DataEntrySize();
  struct Case {
    uint64_t limit;
    int max_entries_per_msg;
  };
  for (const Case& c : {Case{2 * sz + 10, 2}, Case{1, 1}}) {
    SCOPED_TRACE(testing::Message() << "limit " << c.limit);
    Edit edit = [&c](Config* cfg) { cfg->max_size_per_msg = c.limit; };
    // Node 1 starts with 10 entries of term 1 that 2 and 3 lack.
    auto s = std::make_unique<MemoryStorage>();
    std::vector<Entry> ents;
    for (uint64_t i = 1; i <= 10; ++i) ents.push_back(MakeEntry(i, 1, kData));
    ASSERT_TRUE(s->Append(ents).ok());
    raftpb::HardState hs;
    hs.set_term(1);
    s->SetHardState(hs);
    std::vector<PeerSpec> specs;
    specs.push_back(
        PeerSpec::Node(NewTestRaft(1, {1, 2, 3}, 10, 1, std::move(s), edit)));
    specs.push_back(PeerSpec::Fresh());
    specs.push_back(PeerSpec::Fresh());
    Network nt(std::move(specs), edit);
    std::vector<Message> to2;
    nt.SetMsgHook([&](const Message& m) {
      if (m.msg_type() == raftpb::MsgAppend && m.to() == 2 &&
          m.entries_size() > 0) {
        to2.push_back(m);
      }
      return true;
    });
    nt.Send(MakeMsg(1, 1, raftpb::MsgHup));
    ASSERT_EQ(nt.raft(1)->state(), StateType::kLeader);
    ASSERT_EQ(nt.raft(1)->raft_log().last_index(), 11u);

    EXPECT_EQ(nt.raft(2)->raft_log().last_index(), 11u);
    EXPECT_EQ(nt.raft(2)->raft_log().committed(), 11u);
    int most = 0;
    for (const Message& m : to2) {
      EXPECT_TRUE(MsgBytes(m) <= c.limit || m.entries_size() == 1)
          << DescribeMessage(m);
      most = std::max(most, m.entries_size());
    }
    EXPECT_EQ(most, c.max_entries_per_msg);
    // 11 entries at most `max_entries_per_msg` at a time.
    EXPECT_GE(static_cast<int>(to2.size()),
              (11 + c.max_entries_per_msg - 1) / c.max_entries_per_msg);
  }
}

// Appends queued for the same follower (not yet handed out) are merged: many
// proposals between two ReadMessages cost one message per follower, and one
// inflight slot.
TEST(RaftFlowControlTest, QueuedAppendsToAFollowerAreMerged) {
  TestRaft t = NewLeader();
  Raft* r = t.raft.get();
  ExpectReplicatingLeader(r);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Propose(r, kData).ok());
  std::vector<Message> msgs = r->ReadMessages();
  for (uint64_t id : {2u, 3u}) {
    std::vector<Message> to = AppendsTo(msgs, id);
    ASSERT_EQ(to.size(), 1u) << "to " << id;
    EXPECT_EQ(to[0].index(), 1u);
    EXPECT_EQ(to[0].log_term(), 1u);
    EXPECT_EQ(Indexes(to), Range(2, 6));
    EXPECT_EQ(r->tracker().Get(id)->inflights.Count(), 1u) << id;
  }
  // Acknowledging the merged message frees its one slot.
  ASSERT_TRUE(r->Step(AcceptAndReply(AppendsTo(msgs, 2)[0])).ok());
  EXPECT_EQ(r->tracker().Get(2)->inflights.Count(), 0u);
  EXPECT_EQ(r->raft_log().committed(), 6u);
}

TEST(RaftFlowControlTest, QueuedAppendsAreNotMergedPastMaxSizePerMsg) {
  const uint64_t sz = DataEntrySize();
  const uint64_t limit = 2 * sz + sz / 2;  // two entries fit, three do not
  TestRaft t = NewLeader([&](Config* c) { c->max_size_per_msg = limit; });
  Raft* r = t.raft.get();
  ExpectReplicatingLeader(r);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Propose(r, kData).ok());
  std::vector<Message> to2 = AppendsTo(r->ReadMessages(), 2);
  ASSERT_EQ(to2.size(), 3u);
  for (const Message& m : to2) {
    EXPECT_LE(MsgBytes(m), limit) << DescribeMessage(m);
  }
  EXPECT_EQ(Indexes(to2), Range(2, 6));
  EXPECT_EQ(to2[0].entries_size(), 2);
  EXPECT_EQ(to2[1].entries_size(), 2);
  EXPECT_EQ(to2[1].index(), 3u) << "each message follows the previous one";
  EXPECT_EQ(to2[2].index(), 5u);
  EXPECT_EQ(r->tracker().Get(2)->inflights.Count(), 3u);
}

// ---- RawNode: unreachable followers, probing, the uncommitted cap ----

// Persists every pending Ready of `rn` and returns its messages.
std::vector<Message> Handle(RawNode* rn, MemoryStorage* s) {
  std::vector<Message> out;
  for (int i = 0; i < 20 && rn->HasReady(); ++i) {
    Ready rd = rn->GetReady();
    if (!rd.entries.empty()) {
      EXPECT_TRUE(s->Append(rd.entries).ok());
    }
    if (!IsEmptyHardState(rd.hard_state)) s->SetHardState(rd.hard_state);
    for (Message& m : rd.messages) out.push_back(std::move(m));
    rn->Advance();
  }
  EXPECT_FALSE(rn->HasReady());
  return out;
}

struct RawLeader {
  std::unique_ptr<MemoryStorage> storage;
  std::unique_ptr<RawNode> rn;
};

// RawNode 1 of {1,2,3}, elected at term 1 with node 2's vote. With
// `commit_noop` its no-op is acknowledged by both followers (both then in
// Replicate), committed, applied and advanced.
RawLeader NewRawLeader(const Edit& edit, bool commit_noop = true) {
  RawLeader l;
  l.storage = std::make_unique<MemoryStorage>();
  Config c = TestConfig(1, {1, 2, 3}, 10, 1, l.storage.get());
  if (edit) edit(&c);
  auto made = RawNode::Create(c);
  EXPECT_TRUE(made.ok()) << made.status();
  if (!made.ok()) return l;
  l.rn = std::move(made).value();
  l.rn->Campaign();
  Handle(l.rn.get(), l.storage.get());
  EXPECT_TRUE(
      l.rn->Step(MakeMsg(2, 1, raftpb::MsgRequestVoteResponse, 1)).ok());
  EXPECT_EQ(l.rn->raft().state(), StateType::kLeader);
  if (!commit_noop) return l;
  for (const Message& m : Handle(l.rn.get(), l.storage.get())) {
    if (m.msg_type() == raftpb::MsgAppend) {
      EXPECT_TRUE(l.rn->Step(AcceptAndReply(m)).ok());
    }
  }
  Handle(l.rn.get(), l.storage.get());
  EXPECT_EQ(l.rn->raft().raft_log().committed(), 1u);
  EXPECT_EQ(l.rn->raft().raft_log().applied(), 1u);
  return l;
}

TEST(RaftFlowControlTest, ReportUnreachableMovesReplicateToProbe) {
  RawLeader l = NewRawLeader({});
  ASSERT_NE(l.rn, nullptr);
  Raft& r = l.rn->raft();
  ASSERT_EQ(r.tracker().Get(2)->state, ProgressState::kReplicate);
  ASSERT_TRUE(l.rn->Propose(kData).ok());
  Handle(l.rn.get(), l.storage.get());  // the append to 2 is lost
  ASSERT_EQ(r.tracker().Get(2)->next, 3u);

  l.rn->ReportUnreachable(2);
  const Progress* pr = r.tracker().Get(2);
  EXPECT_EQ(pr->state, ProgressState::kProbe);
  EXPECT_EQ(pr->next, pr->match + 1) << "probe from what is known to match";
  EXPECT_EQ(r.tracker().Get(3)->state, ProgressState::kReplicate);

  // Reporting a follower that is already probing changes nothing.
  l.rn->ReportUnreachable(2);
  EXPECT_EQ(r.tracker().Get(2)->state, ProgressState::kProbe);
  EXPECT_EQ(r.tracker().Get(2)->next, 2u);
}

// In Probe the leader has one append outstanding at a time; it sends the
// next after an answer (or a heartbeat response), and an accepting answer
// switches the follower to Replicate (pipelined).
TEST(RaftFlowControlTest, ProbeSendsOneAppendAtATimeUntilAcknowledged) {
  RawLeader l = NewRawLeader({});
  ASSERT_NE(l.rn, nullptr);
  Raft& r = l.rn->raft();
  l.rn->ReportUnreachable(2);
  ASSERT_EQ(r.tracker().Get(2)->state, ProgressState::kProbe);

  std::vector<Message> to2, to3;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(l.rn->Propose(kData).ok());
    std::vector<Message> out = Handle(l.rn.get(), l.storage.get());
    for (Message& m : AppendsTo(out, 2)) to2.push_back(m);
    for (Message& m : AppendsTo(out, 3)) to3.push_back(m);
  }
  EXPECT_EQ(to3.size(), 3u) << "node 3 still streams";
  ASSERT_EQ(to2.size(), 1u) << "one probe outstanding";
  EXPECT_EQ(Indexes(to2), std::vector<uint64_t>{2});
  EXPECT_TRUE(r.tracker().Get(2)->IsPaused());

  // A heartbeat response lets one more probe out (from next, which a probe
  // does not advance).
  ASSERT_TRUE(
      l.rn->Step(MakeMsg(2, 1, raftpb::MsgHeartbeatResponse, r.term())).ok());
  std::vector<Message> probe =
      AppendsTo(Handle(l.rn.get(), l.storage.get()), 2);
  ASSERT_EQ(probe.size(), 1u);
  EXPECT_EQ(probe[0].index(), 1u);
  EXPECT_EQ(Indexes(probe), Range(2, 4));
  EXPECT_EQ(r.tracker().Get(2)->state, ProgressState::kProbe);

  // The follower accepts: Replicate, and the next proposals are pipelined.
  ASSERT_TRUE(l.rn->Step(AcceptAndReply(probe[0])).ok());
  EXPECT_EQ(r.tracker().Get(2)->state, ProgressState::kReplicate);
  EXPECT_EQ(r.tracker().Get(2)->match, 4u);
  Handle(l.rn.get(), l.storage.get());
  to2.clear();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(l.rn->Propose(kData).ok());
    for (Message& m : AppendsTo(Handle(l.rn.get(), l.storage.get()), 2)) {
      to2.push_back(m);
    }
  }
  EXPECT_EQ(to2.size(), 2u);
  EXPECT_EQ(Indexes(to2), Range(5, 6));
}

Edit Cap(uint64_t n) {
  return [n](Config* c) { c->max_uncommitted_entries_size = n; };
}

TEST(RaftFlowControlTest, UncommittedCapRefusesProposalsPastIt) {
  RawLeader l = NewRawLeader(Cap(1000));
  ASSERT_NE(l.rn, nullptr);
  Raft& r = l.rn->raft();
  EXPECT_EQ(r.uncommitted_size(), 0u);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(l.rn->Propose(std::string(300, 'a')).ok()) << i;
  }
  EXPECT_EQ(r.uncommitted_size(), 900u);
  const uint64_t last = r.raft_log().last_index();
  absl::Status st = l.rn->Propose(std::string(200, 'b'));
  EXPECT_TRUE(IsError(st, ErrorKind::kProposalDropped)) << st;
  EXPECT_EQ(r.raft_log().last_index(), last);
  EXPECT_EQ(r.uncommitted_size(), 900u);
  // What still fits is accepted, up to the cap exactly.
  ASSERT_TRUE(l.rn->Propose(std::string(100, 'c')).ok());
  EXPECT_EQ(r.uncommitted_size(), 1000u);
  st = l.rn->Propose("x");
  EXPECT_TRUE(IsError(st, ErrorKind::kProposalDropped)) << st;
  EXPECT_EQ(r.raft_log().last_index(), last + 1);
}

TEST(RaftFlowControlTest, UncommittedCapAcceptsOneOversizedProposal) {
  RawLeader l = NewRawLeader(Cap(1000));
  ASSERT_NE(l.rn, nullptr);
  Raft& r = l.rn->raft();
  ASSERT_TRUE(l.rn->Propose(std::string(5000, 'z')).ok())
      << "nothing is uncommitted: a single oversized entry must get through";
  EXPECT_EQ(r.uncommitted_size(), 5000u);
  absl::Status st = l.rn->Propose("x");
  EXPECT_TRUE(IsError(st, ErrorKind::kProposalDropped)) << st;
}

// The budget is returned when the application has been handed the
// committed entries and called Advance.
TEST(RaftFlowControlTest, UncommittedBudgetReleasedAtAdvance) {
  RawLeader l = NewRawLeader(Cap(1000));
  ASSERT_NE(l.rn, nullptr);
  Raft& r = l.rn->raft();
  const std::string big(600, 'q');
  ASSERT_TRUE(l.rn->Propose(big).ok());
  EXPECT_TRUE(IsError(l.rn->Propose(big), ErrorKind::kProposalDropped));

  for (const Message& m : Handle(l.rn.get(), l.storage.get())) {
    if (m.msg_type() == raftpb::MsgAppend && m.to() == 2) {
      ASSERT_TRUE(l.rn->Step(AcceptAndReply(m)).ok());
    }
  }
  ASSERT_EQ(r.raft_log().committed(), 2u);
  ASSERT_TRUE(l.rn->HasReady());
  Ready rd = l.rn->GetReady();
  ASSERT_EQ(rd.committed_entries.size(), 1u);
  EXPECT_EQ(rd.committed_entries[0].data(), big);
  EXPECT_EQ(r.uncommitted_size(), 600u) << "not released before Advance";
  EXPECT_TRUE(IsError(l.rn->Propose(big), ErrorKind::kProposalDropped));
  l.rn->Advance();
  EXPECT_EQ(r.uncommitted_size(), 0u);
  EXPECT_TRUE(l.rn->Propose(big).ok());
  EXPECT_EQ(r.uncommitted_size(), 600u);
}

// The leader's no-op takes none of the budget, even before it commits.
TEST(RaftFlowControlTest, UncommittedCapIgnoresTheNoop) {
  RawLeader l = NewRawLeader(Cap(1000), /*commit_noop=*/false);
  ASSERT_NE(l.rn, nullptr);
  Raft& r = l.rn->raft();
  ASSERT_EQ(r.raft_log().committed(), 0u) << "the no-op is not committed";
  EXPECT_EQ(r.uncommitted_size(), 0u);
  ASSERT_TRUE(l.rn->Propose(std::string(500, 'a')).ok());
  ASSERT_TRUE(l.rn->Propose(std::string(500, 'b')).ok())
      << "500 + 500 fills the cap exactly when the no-op counts for nothing";
  EXPECT_EQ(r.uncommitted_size(), 1000u);
  EXPECT_TRUE(IsError(l.rn->Propose("c"), ErrorKind::kProposalDropped));
}

// ---- Refused proposals ----

// Every proposal a node cannot take fails at once with kProposalDropped and
// leaves the node unchanged: no entry, no message, no budget used.
TEST(RaftFlowControlTest, RefusedProposalsAreDroppedAndChangeNothing) {
  struct Case {
    std::string name;
    std::function<TestRaft()> make;
  };
  const std::vector<Case> cases = {
      {"follower with a leader",
       [] {
         TestRaft t = NewTestRaft(2, {1, 2, 3}, 10, 1);
         t->BecomeFollower(1, 1);
         return t;
       }},
      {"follower without a leader",
       [] {
         return NewTestRaft(2, {1, 2, 3}, 10, 1);
       }},
      {"candidate",
       [] {
         TestRaft t = NewTestRaft(2, {1, 2, 3}, 10, 1);
         t->BecomeCandidate();
         return t;
       }},
      {"pre-candidate",
       [] {
         TestRaft t = NewTestRaft(2, {1, 2, 3}, 10, 1, nullptr,
                                  [](Config* c) { c->pre_vote = true; });
         t->BecomePreCandidate();
         return t;
       }},
      {"leader transferring leadership",
       [] {
         TestRaft t = NewLeader();
         EXPECT_TRUE(Propose(t.raft.get(), "before").ok());
         t->ReadMessages();
         // Node 3 lags behind, so the transfer stays in progress.
         Message tl = MakeMsg(3, 1, raftpb::MsgTransferLeader);
         EXPECT_TRUE(t->Step(tl).ok());
         EXPECT_EQ(t->lead_transferee(), 3u);
         return t;
       }},
      {"leader over the uncommitted cap",
       [] {
         TestRaft t = NewLeader(Cap(10));
         EXPECT_TRUE(Propose(t.raft.get(), "0123456789").ok());
         return t;
       }},
      {"leader removed from the group",
       [] {
         TestRaft t = NewLeader();
         raftpb::ConfChange cc;
         cc.set_change_type(raftpb::RemoveNode);
         cc.set_node_id(1);
         t->ApplyConfChange(cc);
         return t;
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    TestRaft t = c.make();
    Raft* r = t.raft.get();
    const std::string log_before = test::LogString(r->raft_log());
    const uint64_t last_before = r->raft_log().last_index();
    const size_t msgs_before = r->msgs().size();
    const uint64_t uncommitted_before = r->uncommitted_size();
    const StateType state_before = r->state();
    const uint64_t term_before = r->term();

    absl::Status st = Propose(r, "refused");
    EXPECT_TRUE(IsError(st, ErrorKind::kProposalDropped)) << st;
    EXPECT_EQ(r->raft_log().last_index(), last_before);
    EXPECT_EQ(test::LogString(r->raft_log()), log_before);
    EXPECT_EQ(r->msgs().size(), msgs_before) << "nothing sent or forwarded";
    EXPECT_EQ(r->uncommitted_size(), uncommitted_before);
    EXPECT_EQ(r->state(), state_before);
    EXPECT_EQ(r->term(), term_before);
  }
}

}  // namespace
}  // namespace raftkv::raft
