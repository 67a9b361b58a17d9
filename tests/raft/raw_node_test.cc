// Tests for RawNode (src/raft/raw_node.h): the Ready/Advance cycle, restarts
// from persisted state, a small cluster driven only through RawNode, and the
// errors RawNode reports.
#include "raft/raw_node.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "raft/errors.h"
#include "raft/storage.h"
#include "raft/types.h"
#include "test_util.h"

namespace raftkv::raft {
namespace {

using raftpb::Entry;
using raftpb::HardState;
using raftpb::Message;
using raftpb::Snapshot;
using test::MakeEntry;
using test::MakeMsg;
using test::Nodes;
using test::TestConfig;

std::unique_ptr<RawNode> NewRawNode(uint64_t id, std::vector<uint64_t> peers,
                                    Storage* storage,
                                    bool forward_proposals = false) {
  Config cfg = TestConfig(id, std::move(peers), 10, 1, storage);
  cfg.forward_proposals = forward_proposals;
  auto rn = RawNode::Create(cfg);
  EXPECT_TRUE(rn.ok()) << rn.status();
  return rn.ok() ? std::move(rn).value() : nullptr;
}

// Step a of the application loop: make the Ready's state durable.
void Persist(MemoryStorage* s, const Ready& rd) {
  if (!IsEmptySnap(rd.snapshot)) {
    ASSERT_TRUE(s->ApplySnapshot(rd.snapshot).ok());
  }
  if (!rd.entries.empty()) {
    ASSERT_TRUE(s->Append(rd.entries).ok());
  }
  if (!IsEmptyHardState(rd.hard_state)) s->SetHardState(rd.hard_state);
}

// Handles every pending Ready of `rn` (persist, advance) without sending
// anything; returns how many Readies there were.
int Drain(RawNode* rn, MemoryStorage* s) {
  int n = 0;
  while (rn->HasReady() && n < 20) {
    Ready rd = rn->GetReady();
    Persist(s, rd);
    rn->Advance();
    ++n;
  }
  EXPECT_FALSE(rn->HasReady()) << "node never ran out of Readies";
  return n;
}

std::vector<std::string> Datas(const std::vector<Entry>& ents) {
  std::vector<std::string> out;
  for (const Entry& e : ents) out.push_back(e.data());
  return out;
}

// A group of RawNodes 1..n, each with its own MemoryStorage, connected by a
// perfect synchronous network. Every Ready is handled as an application
// would: persist, send, apply (recorded), advance.
class Cluster {
 public:
  explicit Cluster(uint64_t n, bool forward_proposals = false) {
    std::vector<uint64_t> peers;
    for (uint64_t id = 1; id <= n; ++id) peers.push_back(id);
    for (uint64_t id = 1; id <= n; ++id) {
      auto& slot = nodes_[id];
      slot.storage = std::make_unique<MemoryStorage>();
      slot.node = NewRawNode(id, peers, slot.storage.get(), forward_proposals);
    }
  }

  RawNode* node(uint64_t id) { return nodes_.at(id).node.get(); }
  MemoryStorage* storage(uint64_t id) { return nodes_.at(id).storage.get(); }
  const std::vector<Entry>& applied(uint64_t id) {
    return nodes_.at(id).applied;
  }
  // The soft state of every Ready that carried one, in order.
  const std::vector<SoftState>& soft_states(uint64_t id) {
    return nodes_.at(id).soft_states;
  }

  // Runs Ready rounds and delivers the messages until nothing happens.
  void Stabilize() {
    for (int round = 0; round < 50; ++round) {
      std::vector<Message> msgs;
      bool any = false;
      for (auto& [id, slot] : nodes_) {
        if (!slot.node->HasReady()) continue;
        any = true;
        Ready rd = slot.node->GetReady();
        Persist(slot.storage.get(), rd);
        for (const Message& m : rd.messages) {
          EXPECT_EQ(m.from(), id) << DescribeMessage(m);
          msgs.push_back(m);
        }
        if (rd.soft_state) slot.soft_states.push_back(*rd.soft_state);
        for (const Entry& e : rd.committed_entries) slot.applied.push_back(e);
        slot.node->Advance();
      }
      if (!any) return;
      for (const Message& m : msgs) {
        absl::Status st = node(m.to())->Step(m);
        EXPECT_TRUE(st.ok()) << st << " for " << DescribeMessage(m);
      }
    }
    ADD_FAILURE() << "cluster did not stabilize in 50 rounds";
  }

 private:
  struct Slot {
    std::unique_ptr<MemoryStorage> storage;
    std::unique_ptr<RawNode> node;
    std::vector<Entry> applied;
    std::vector<SoftState> soft_states;
  };
  std::map<uint64_t, Slot> nodes_;
};

// TinyKV TestRawNodeStart2AC: a single node campaigns, then a proposal comes
// out as one entry to persist and, being committed by the lone voter, as one
// entry to apply.
TEST(RawNodeTest, SingleNodeStartCampaignAndPropose) {
  MemoryStorage s;
  auto rn = NewRawNode(1, {1}, &s);
  ASSERT_NE(rn, nullptr);

  rn->Campaign();
  ASSERT_TRUE(rn->HasReady());
  Ready rd = rn->GetReady();
  ASSERT_TRUE(rd.soft_state.has_value());
  EXPECT_EQ(rd.soft_state->raft_state, StateType::kLeader);
  EXPECT_EQ(rd.soft_state->lead, 1u);
  EXPECT_EQ(rd.hard_state.term(), 1u);
  EXPECT_EQ(rd.hard_state.vote(), 1u);
  // The new leader's no-op.
  ASSERT_EQ(rd.entries.size(), 1u);
  EXPECT_TRUE(rd.entries[0].data().empty());
  EXPECT_EQ(rd.entries[0].index(), 1u);
  EXPECT_TRUE(rd.must_sync);
  Persist(&s, rd);
  rn->Advance();
  Drain(rn.get(), &s);
  ASSERT_EQ(rn->raft().raft_log().committed(), 1u);
  ASSERT_EQ(rn->raft().raft_log().applied(), 1u);

  ASSERT_TRUE(rn->Propose("foo").ok());
  ASSERT_TRUE(rn->HasReady());
  rd = rn->GetReady();
  ASSERT_EQ(rd.entries.size(), 1u);
  EXPECT_EQ(rd.entries[0].data(), "foo");
  EXPECT_EQ(rd.entries[0].index(), 2u);
  EXPECT_EQ(rd.entries[0].term(), 1u);
  ASSERT_EQ(rd.committed_entries.size(), 1u);
  EXPECT_EQ(rd.committed_entries[0].data(), "foo");
  EXPECT_EQ(rd.committed_entries[0].index(), 2u);
  EXPECT_EQ(rd.hard_state.commit(), 2u);
  Persist(&s, rd);
  rn->Advance();
  EXPECT_FALSE(rn->HasReady());
}

// TinyKV TestRawNodeRestart2AC: a node restarted over a storage with a hard
// state (term 1, commit 1) and two entries re-applies the committed entry,
// and reports nothing else: state unchanged, nothing new to persist.
TEST(RawNodeTest, RestartReappliesCommittedEntries) {
  MemoryStorage s;
  HardState hs;
  hs.set_term(1);
  hs.set_commit(1);
  ASSERT_TRUE(s.Append({MakeEntry(1, 1), MakeEntry(2, 1, "foo")}).ok());
  s.SetHardState(hs);

  auto rn = NewRawNode(1, {}, &s);
  ASSERT_NE(rn, nullptr);
  ASSERT_TRUE(rn->HasReady());
  Ready rd = rn->GetReady();
  EXPECT_FALSE(rd.soft_state.has_value());
  EXPECT_TRUE(IsEmptyHardState(rd.hard_state));
  EXPECT_TRUE(rd.entries.empty());
  ASSERT_EQ(rd.committed_entries.size(), 1u);
  EXPECT_EQ(rd.committed_entries[0].index(), 1u);
  EXPECT_EQ(rd.committed_entries[0].term(), 1u);
  EXPECT_TRUE(rd.messages.empty());
  EXPECT_TRUE(IsEmptySnap(rd.snapshot));
  EXPECT_FALSE(rd.must_sync);
  rn->Advance();
  EXPECT_FALSE(rn->HasReady());
  EXPECT_EQ(rn->raft().term(), 1u);
}

// TinyKV TestRawNodeRestartFromSnapshot2C: applied starts at the snapshot
// index, so only the committed entry after the snapshot is handed out.
TEST(RawNodeTest, RestartFromSnapshot) {
  MemoryStorage s;
  Snapshot snap;
  snap.mutable_metadata()->set_index(2);
  snap.mutable_metadata()->set_term(1);
  snap.mutable_metadata()->mutable_conf_state()->add_voters(1);
  snap.mutable_metadata()->mutable_conf_state()->add_voters(2);
  HardState hs;
  hs.set_term(1);
  hs.set_commit(3);
  ASSERT_TRUE(s.ApplySnapshot(snap).ok());
  ASSERT_TRUE(s.Append({MakeEntry(3, 1, "foo")}).ok());
  s.SetHardState(hs);

  auto rn = NewRawNode(1, {}, &s);
  ASSERT_NE(rn, nullptr);
  EXPECT_EQ(rn->raft().raft_log().applied(), 2u);
  ASSERT_TRUE(rn->HasReady());
  Ready rd = rn->GetReady();
  EXPECT_FALSE(rd.soft_state.has_value());
  EXPECT_TRUE(IsEmptyHardState(rd.hard_state));
  EXPECT_TRUE(rd.entries.empty());
  EXPECT_TRUE(IsEmptySnap(rd.snapshot));
  EXPECT_TRUE(rd.messages.empty());
  ASSERT_EQ(rd.committed_entries.size(), 1u);
  EXPECT_EQ(rd.committed_entries[0].index(), 3u);
  EXPECT_EQ(rd.committed_entries[0].data(), "foo");
  rn->Advance();
  EXPECT_FALSE(rn->HasReady());
  EXPECT_EQ(Nodes(rn->raft()), (std::vector<uint64_t>{1, 2}));
}

// §5.2-5.3 end to end through RawNode: an election, then a proposal that is
// replicated, committed and applied in the same order everywhere.
TEST(RawNodeClusterTest, ElectProposeAndApplyOnAllNodes) {
  Cluster c(3);
  c.node(1)->Campaign();
  c.Stabilize();
  ASSERT_EQ(c.node(1)->raft().state(), StateType::kLeader);
  EXPECT_EQ(c.node(2)->raft().state(), StateType::kFollower);
  EXPECT_EQ(c.node(3)->raft().state(), StateType::kFollower);
  EXPECT_EQ(c.node(2)->raft().lead(), 1u);
  EXPECT_EQ(c.node(3)->raft().lead(), 1u);

  ASSERT_TRUE(c.node(1)->Propose("hello").ok());
  ASSERT_TRUE(c.node(1)->Propose("world").ok());
  c.Stabilize();

  const std::vector<std::string> want = {"", "hello", "world"};
  for (uint64_t id = 1; id <= 3; ++id) {
    EXPECT_EQ(Datas(c.applied(id)), want) << "node " << id;
    ASSERT_EQ(c.applied(id).size(), 3u) << "node " << id;
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(c.applied(id)[i].index(), i + 1) << "node " << id;
      EXPECT_EQ(c.applied(id)[i].term(), 1u) << "node " << id;
    }
    // Everything applied was persisted, and the commit index was saved.
    EXPECT_EQ(c.storage(id)->LastIndex().value(), 3u) << "node " << id;
    EXPECT_EQ(c.storage(id)->InitialState()->hard_state.commit(), 3u)
        << "node " << id;
    EXPECT_FALSE(c.node(id)->HasReady()) << "node " << id;
  }
}

// A proposal on node 2 before any leader exists is dropped; then node 1
// is elected.
void DropBeforeLeaderThenElect1(Cluster& c) {
  EXPECT_TRUE(
      IsError(c.node(2)->Propose("early"), ErrorKind::kProposalDropped));
  c.node(1)->Campaign();
  c.Stabilize();
  ASSERT_EQ(c.node(1)->raft().state(), StateType::kLeader);
}

TEST(RawNodeClusterTest, ProposeOnFollowerIsDropped) {
  Cluster c(3);
  ASSERT_NO_FATAL_FAILURE(DropBeforeLeaderThenElect1(c));

  const uint64_t last = c.node(2)->raft().raft_log().last_index();
  absl::Status st = c.node(2)->Propose("x");
  EXPECT_TRUE(IsError(st, ErrorKind::kProposalDropped)) << st;
  EXPECT_EQ(c.node(2)->raft().raft_log().last_index(), last);
  // Not forwarded and nothing to do.
  EXPECT_FALSE(c.node(2)->HasReady());
  c.Stabilize();
  EXPECT_EQ(c.node(1)->raft().raft_log().last_index(), last);
  for (uint64_t id = 1; id <= 3; ++id) {
    EXPECT_EQ(Datas(c.applied(id)), std::vector<std::string>{""})
        << "node " << id;
  }
}

// With forward_proposals, a follower sends a proposal on to the leader
// (etcd/raft's default): Propose succeeds at once, the follower's log does
// not change, and the entry is appended by the leader at its term and
// applied everywhere in the leader's order.
TEST(RawNodeClusterTest, ProposeOnFollowerIsForwardedToTheLeader) {
  Cluster c(3, /*forward_proposals=*/true);
  // No leader yet: there is nobody to forward to either.
  ASSERT_NO_FATAL_FAILURE(DropBeforeLeaderThenElect1(c));

  const uint64_t last = c.node(2)->raft().raft_log().last_index();
  ASSERT_TRUE(c.node(2)->Propose("via-2").ok());
  ASSERT_TRUE(c.node(1)->Propose("at-1").ok());
  ASSERT_TRUE(c.node(3)->Propose("via-3").ok());
  EXPECT_EQ(c.node(2)->raft().raft_log().last_index(), last);
  // The follower's only output is the MsgPropose to the leader, termless.
  ASSERT_TRUE(c.node(2)->HasReady());
  Ready rd = c.node(2)->GetReady();
  EXPECT_TRUE(rd.entries.empty());
  ASSERT_EQ(rd.messages.size(), 1u);
  EXPECT_EQ(rd.messages[0].msg_type(), raftpb::MsgPropose);
  EXPECT_EQ(rd.messages[0].to(), 1u);
  EXPECT_EQ(rd.messages[0].from(), 2u);
  EXPECT_EQ(rd.messages[0].term(), 0u);
  ASSERT_EQ(rd.messages[0].entries_size(), 1);
  EXPECT_EQ(rd.messages[0].entries(0).data(), "via-2");
  c.node(2)->Advance();
  ASSERT_TRUE(c.node(1)->Step(rd.messages[0]).ok());
  c.Stabilize();

  const std::vector<std::string> want = {"", "at-1", "via-2", "via-3"};
  for (uint64_t id = 1; id <= 3; ++id) {
    EXPECT_EQ(Datas(c.applied(id)), want) << "node " << id;
    for (const Entry& e : c.applied(id)) {
      EXPECT_EQ(e.term(), 1u) << "node " << id;
    }
  }
}

// A forwarded proposal the leader cannot take is dropped there without an
// answer: here a leader transfer is in progress.
TEST(RawNodeClusterTest, ForwardedProposalRefusedByTheLeaderIsDropped) {
  Cluster c(3, /*forward_proposals=*/true);
  c.node(1)->Campaign();
  c.Stabilize();
  ASSERT_EQ(c.node(1)->raft().state(), StateType::kLeader);
  const uint64_t last = c.node(1)->raft().raft_log().last_index();
  // Transfer to node 3 while it cannot hear anything: the transfer stays
  // pending, and the leader refuses proposals meanwhile.
  c.node(1)->TransferLeader(3);
  ASSERT_EQ(c.node(1)->raft().lead_transferee(), 3u);
  ASSERT_TRUE(c.node(2)->Propose("x").ok());
  Ready rd = c.node(2)->GetReady();
  ASSERT_EQ(rd.messages.size(), 1u);
  c.node(2)->Advance();
  absl::Status st = c.node(1)->Step(rd.messages[0]);
  EXPECT_TRUE(IsError(st, ErrorKind::kProposalDropped)) << st;
  EXPECT_EQ(c.node(1)->raft().raft_log().last_index(), last);
}

// Without forward_proposals a MsgPropose is local-only: it may not come in
// from the network. With it, the leader takes one from a follower.
TEST(RawNodeTest, MsgProposeFromTheNetworkOnlyWhenForwarding) {
  for (bool forward : {false, true}) {
    MemoryStorage s;
    auto rn = NewRawNode(1, {1, 2}, &s, forward);
    ASSERT_NE(rn, nullptr);
    rn->Campaign();
    ASSERT_TRUE(
        rn->Step(MakeMsg(2, 1, raftpb::MsgRequestVoteResponse, 1)).ok());
    ASSERT_EQ(rn->raft().state(), StateType::kLeader) << forward;
    const uint64_t last = rn->raft().raft_log().last_index();
    Message m = MakeMsg(2, 1, raftpb::MsgPropose);
    m.add_entries()->set_data("from-2");
    absl::Status st = rn->Step(m);
    if (forward) {
      EXPECT_TRUE(st.ok()) << st;
      EXPECT_EQ(rn->raft().raft_log().last_index(), last + 1);
    } else {
      EXPECT_TRUE(IsError(st, ErrorKind::kStepLocalMsg)) << st;
      EXPECT_EQ(rn->raft().raft_log().last_index(), last);
    }
  }
}

// A local-only message may not come in from the network: RawNode::Step
// refuses it and the node is unchanged (a single voter would otherwise win
// an election on MsgHup).
TEST(RawNodeTest, StepLocalMessageIsRefused) {
  MemoryStorage s;
  auto rn = NewRawNode(1, {1}, &s);
  ASSERT_NE(rn, nullptr);
  ASSERT_TRUE(IsLocalMsg(raftpb::MsgHup));

  absl::Status st = rn->Step(MakeMsg(1, 1, raftpb::MsgHup));
  EXPECT_TRUE(IsError(st, ErrorKind::kStepLocalMsg)) << st;
  st = rn->Step(MakeMsg(1, 1, raftpb::MsgBeat));
  EXPECT_TRUE(IsError(st, ErrorKind::kStepLocalMsg)) << st;

  EXPECT_EQ(rn->raft().state(), StateType::kFollower);
  EXPECT_EQ(rn->raft().term(), 0u);
  EXPECT_TRUE(rn->raft().msgs().empty());
  EXPECT_FALSE(rn->HasReady());

  // The same node does campaign when asked through the API.
  rn->Campaign();
  EXPECT_EQ(rn->raft().state(), StateType::kLeader);
}

// A Ready that carries only messages (leader heartbeats) has an empty hard
// state, no soft state and nothing to persist or apply.
TEST(RawNodeClusterTest, HeartbeatReadyLeavesHardStateEmpty) {
  Cluster c(3);
  c.node(1)->Campaign();
  c.Stabilize();
  ASSERT_EQ(c.node(1)->raft().state(), StateType::kLeader);
  ASSERT_FALSE(c.node(1)->HasReady());

  c.node(1)->Tick();  // heartbeat_tick = 1
  ASSERT_TRUE(c.node(1)->HasReady());
  Ready rd = c.node(1)->GetReady();
  EXPECT_TRUE(IsEmptyHardState(rd.hard_state));
  EXPECT_FALSE(rd.soft_state.has_value());
  EXPECT_TRUE(rd.entries.empty());
  EXPECT_TRUE(rd.committed_entries.empty());
  EXPECT_TRUE(IsEmptySnap(rd.snapshot));
  EXPECT_FALSE(rd.must_sync);
  ASSERT_EQ(rd.messages.size(), 2u);
  for (const Message& m : rd.messages) {
    EXPECT_EQ(m.msg_type(), raftpb::MsgHeartbeat) << DescribeMessage(m);
  }
  c.node(1)->Advance();
  EXPECT_FALSE(c.node(1)->HasReady());
}

// soft_state is reported exactly when the role or the known leader changes.
TEST(RawNodeClusterTest, SoftStateOnlyOnChange) {
  Cluster c(3);
  c.node(1)->Campaign();
  c.Stabilize();
  ASSERT_EQ(c.node(1)->raft().state(), StateType::kLeader);

  // Node 1: follower -> candidate (no leader) -> leader (itself).
  const std::vector<SoftState> want1 = {SoftState{kNone, StateType::kCandidate},
                                        SoftState{1, StateType::kLeader}};
  ASSERT_EQ(c.soft_states(1).size(), want1.size());
  for (size_t i = 0; i < want1.size(); ++i) {
    EXPECT_TRUE(c.soft_states(1)[i] == want1[i]) << "change " << i;
  }
  // Nodes 2 and 3 stay followers; the only change is learning the leader
  // (voting moves the term, which is hard state, not soft state).
  for (uint64_t id : {2, 3}) {
    ASSERT_EQ(c.soft_states(id).size(), 1u) << "node " << id;
    EXPECT_TRUE((c.soft_states(id)[0] == SoftState{1, StateType::kFollower}))
        << "node " << id;
  }

  // More traffic in the same term changes nothing.
  ASSERT_TRUE(c.node(1)->Propose("x").ok());
  c.node(1)->Tick();
  c.Stabilize();
  EXPECT_EQ(c.soft_states(1).size(), 2u);
  EXPECT_EQ(c.soft_states(2).size(), 1u);
  EXPECT_EQ(c.soft_states(3).size(), 1u);
}

// Advance acknowledges a Ready: with no new input there is nothing left, and
// its entries are neither persisted nor applied twice.
TEST(RawNodeTest, AdvanceClearsHasReady) {
  MemoryStorage s;
  auto rn = NewRawNode(1, {1}, &s);
  ASSERT_NE(rn, nullptr);
  EXPECT_FALSE(rn->HasReady());
  rn->Campaign();
  Drain(rn.get(), &s);

  ASSERT_TRUE(rn->Propose("a").ok());
  ASSERT_TRUE(rn->HasReady());
  Ready rd = rn->GetReady();
  ASSERT_FALSE(rd.entries.empty());
  Persist(&s, rd);
  rn->Advance();
  const RaftLog& log = rn->raft().raft_log();
  EXPECT_EQ(log.stabled(), log.last_index());
  EXPECT_TRUE(log.UnstableEntries().empty());
  // Drain whatever the commit may still need, then nothing is left.
  Drain(rn.get(), &s);
  EXPECT_EQ(log.applied(), log.committed());
  EXPECT_EQ(log.committed(), 2u);
  EXPECT_FALSE(rn->HasReady());
  // Ticking a lone leader produces nothing to do either.
  rn->Tick();
  EXPECT_FALSE(rn->HasReady());
}

}  // namespace
}  // namespace raftkv::raft
