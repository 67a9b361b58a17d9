// Membership tests for the raft core: leader transfer (Raft thesis §3.10),
// single-server membership changes (thesis §4.1, and §4.2.2 for removing the
// leader), and learners, the non-voting members a new server joins as while
// it catches up (thesis §4.2.1). Most tests drive Raft nodes through the
// synchronous test Network; a few drive a RawNode through its Ready loop.
//
// A membership change is made the way an application makes it: propose an
// EntryConfChange entry whose data is a serialized ConfChange, wait for it to
// commit, then call ApplyConfChange on every node that applies the entry.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "raft/errors.h"
#include "raft/raft.h"
#include "raft/raw_node.h"
#include "raft/storage.h"
#include "raft/types.h"
#include "test_util.h"

namespace raftkv::raft {
namespace {

using raftpb::ConfChange;
using raftpb::ConfState;
using raftpb::Entry;
using raftpb::Message;
using raftpb::Snapshot;
using test::AcceptAndReply;
using test::CommitNoopEntry;
using test::MakeMsg;
using test::Network;
using test::NewTestRaft;
using test::NextEnts;
using test::Nodes;
using test::PeerSpec;
using test::TestConfig;
using test::TestRaft;

using Ids = std::vector<uint64_t>;

// Election timeout of the nodes Network creates.
constexpr int kElection = 10;

ConfChange MakeConfChange(raftpb::ConfChangeType type, uint64_t node) {
  ConfChange cc;
  cc.set_change_type(type);
  cc.set_node_id(node);
  return cc;
}

// A proposal of `data`, made by node `id`'s application.
Message Proposal(uint64_t id, std::string data) {
  Message m = MakeMsg(id, id, raftpb::MsgPropose);
  m.add_entries()->set_data(std::move(data));
  return m;
}

// A proposal of a membership change, made by node `id`'s application: one
// EntryConfChange entry carrying the serialized ConfChange.
Message ConfChangeProposal(uint64_t id, const ConfChange& cc) {
  Message m = MakeMsg(id, id, raftpb::MsgPropose);
  Entry* e = m.add_entries();
  e->set_entry_type(raftpb::EntryConfChange);
  e->set_data(cc.SerializeAsString());
  return m;
}

// Asks node `to` (the leader, or a follower that forwards it) to hand
// leadership to `transferee`.
Message TransferRequest(uint64_t transferee, uint64_t to) {
  return MakeMsg(transferee, to, raftpb::MsgTransferLeader);
}

Message Hup(uint64_t id) { return MakeMsg(id, id, raftpb::MsgHup); }
Message Beat(uint64_t id) { return MakeMsg(id, id, raftpb::MsgBeat); }

Ids Voters(const ConfState& cs) {
  return Ids(cs.voters().begin(), cs.voters().end());
}
Ids Learners(const ConfState& cs) {
  return Ids(cs.learners().begin(), cs.learners().end());
}

bool IsDropped(const absl::Status& s) {
  return IsError(s, ErrorKind::kProposalDropped);
}

// The application's apply step on a Raft-level node: persists its unstable
// entries, takes the newly committed ones and applies every membership change
// among them. Returns the committed entries; `cs` (if given) receives the
// membership returned by the last ApplyConfChange.
std::vector<Entry> ApplyCommitted(Raft* r, MemoryStorage* s,
                                  ConfState* cs = nullptr) {
  std::vector<Entry> ents = NextEnts(r, s);
  for (const Entry& e : ents) {
    if (e.entry_type() != raftpb::EntryConfChange) continue;
    ConfChange cc;
    EXPECT_TRUE(cc.ParseFromString(e.data()));
    ConfState got = r->ApplyConfChange(cc);
    if (cs != nullptr) *cs = got;
  }
  return ents;
}

// Delivers what node `id` has queued (Network only collects a node's output
// after stepping a message on it), dropping messages to or from the nodes in
// `down`: Network::Send does not filter the messages it is handed.
void Flush(Network& net, uint64_t id, const std::set<uint64_t>& down = {}) {
  std::vector<Message> out;
  for (Message& m : net.raft(id)->ReadMessages()) {
    if (down.count(m.to()) == 0 && down.count(m.from()) == 0) {
      out.push_back(std::move(m));
    }
  }
  net.Send(std::move(out));
}

// Applies node `id`'s committed entries and delivers what that produced.
void ApplyAndFlush(Network& net, uint64_t id,
                   const std::set<uint64_t>& down = {}) {
  ApplyCommitted(net.raft(id), net.storage(id));
  Flush(net, id, down);
}

// A node of a new group with the given voters and learners.
TestRaft MemberNode(uint64_t id, const Ids& voters, const Ids& learners) {
  return NewTestRaft(id, voters, kElection, 1, nullptr,
                     [learners](Config* c) { c->learners = learners; });
}

Network FreshNodes(size_t n, const std::function<void(Config*)>& edit = {}) {
  std::vector<PeerSpec> specs;
  for (size_t i = 0; i < n; ++i) specs.push_back(PeerSpec::Fresh());
  return Network(std::move(specs), edit);
}

Network ThreeFreshNodes(const std::function<void(Config*)>& edit = {}) {
  return FreshNodes(3, edit);
}

// A network of the given nodes (ids 1..3 in order).
Network NetworkOf(TestRaft n1, TestRaft n2, TestRaft n3) {
  std::vector<PeerSpec> specs;
  specs.push_back(PeerSpec::Node(std::move(n1)));
  specs.push_back(PeerSpec::Node(std::move(n2)));
  specs.push_back(PeerSpec::Node(std::move(n3)));
  return Network(std::move(specs));
}

// What etcd's leader-transfer tests check once a transfer finished or was
// abandoned: the node's role, the leader it knows, no transfer in progress.
void ExpectTransferDone(const Raft& r, StateType state, uint64_t lead) {
  EXPECT_EQ(StateTypeName(r.state()), std::string(StateTypeName(state)))
      << "node " << r.id();
  EXPECT_EQ(r.lead(), lead) << "node " << r.id();
  EXPECT_EQ(r.lead_transferee(), kNone) << "node " << r.id();
}

bool HasMessage(const std::vector<Message>& msgs, raftpb::MessageType t) {
  return std::any_of(msgs.begin(), msgs.end(),
                     [t](const Message& m) { return m.msg_type() == t; });
}

// ---------------------------------------------------------------------------
// Membership changes applied directly (TinyKV TestAddNode3A,
// TestRemoveNode3A, TestCommitAfterRemoveNode3A).

// TinyKV TestAddNode3A: applying AddNode makes the node a voter.
TEST(RaftMembershipTest, AddNodeAddsVoter) {
  TestRaft r = NewTestRaft(1, {1}, kElection, 1);
  ConfState cs = r->ApplyConfChange(MakeConfChange(raftpb::AddNode, 2));
  EXPECT_EQ(Nodes(*r.raft), (Ids{1, 2}));
  EXPECT_TRUE(r->tracker().IsVoter(2));
  EXPECT_EQ(Voters(cs), (Ids{1, 2}));
  EXPECT_TRUE(Learners(cs).empty());
}

// TinyKV TestRemoveNode3A: applying RemoveNode drops the member, the node's
// own id included.
TEST(RaftMembershipTest, RemoveNodeDropsMember) {
  TestRaft r = NewTestRaft(1, {1, 2}, kElection, 1);
  ConfState cs = r->ApplyConfChange(MakeConfChange(raftpb::RemoveNode, 2));
  EXPECT_EQ(Nodes(*r.raft), (Ids{1}));
  EXPECT_EQ(Voters(cs), (Ids{1}));

  cs = r->ApplyConfChange(MakeConfChange(raftpb::RemoveNode, 1));
  EXPECT_TRUE(Nodes(*r.raft).empty());
  EXPECT_TRUE(Voters(cs).empty());
}

// With Config::skip_bcast_commit a leader still broadcasts the commit index
// of a configuration change at once (it must be applied everywhere for the
// change to complete), and goes back to letting commit indexes ride on the
// next append once the change is applied.
TEST(RaftMembershipTest, SkipBcastCommitStillBroadcastsAPendingConfChange) {
  TestRaft r = NewTestRaft(1, {1, 2, 3}, 10, 1, nullptr,
                           [](Config* c) { c->skip_bcast_commit = true; });
  r->BecomeCandidate();
  r->BecomeLeader();
  CommitNoopEntry(r.raft.get(), r.storage.get());

  ConfChange cc = MakeConfChange(raftpb::AddLearnerNode, 4);
  ASSERT_TRUE(r->Step(ConfChangeProposal(1, cc)).ok());
  const uint64_t cc_index = r->raft_log().last_index();
  for (const Message& m : r->ReadMessages()) {
    ASSERT_TRUE(r->Step(AcceptAndReply(m)).ok());
  }
  ASSERT_EQ(r->raft_log().committed(), cc_index);
  std::vector<Message> msgs = r->ReadMessages();
  ASSERT_EQ(msgs.size(), 2u) << "the commit of the change is broadcast";
  for (const Message& m : msgs) {
    EXPECT_EQ(m.msg_type(), raftpb::MsgAppend);
    EXPECT_EQ(m.commit(), cc_index);
  }

  NextEnts(r.raft.get(), r.storage.get());
  r->ApplyConfChange(cc);
  r->ReadMessages();  // appends to the new learner
  ASSERT_TRUE(r->Step(Proposal(1, "after")).ok());
  for (const Message& m : r->ReadMessages()) {
    if (m.msg_type() == raftpb::MsgAppend && m.to() != 4) {
      ASSERT_TRUE(r->Step(AcceptAndReply(m)).ok());
    }
  }
  ASSERT_EQ(r->raft_log().committed(), cc_index + 1);
  msgs = r->ReadMessages();
  for (const Message& m : msgs) {
    EXPECT_NE(m.to(), 2u) << "a commit-only append once the change applied";
    EXPECT_NE(m.to(), 3u) << "a commit-only append once the change applied";
  }
}

// TinyKV TestCommitAfterRemoveNode3A: an entry proposed while a removal is
// pending commits as soon as the removal is applied, because the quorum is
// then counted over the remaining voters (thesis §4.1; as in etcd/raft, a
// configuration takes effect when its entry is applied).
TEST(RaftMembershipTest, CommitAfterRemoveNode) {
  TestRaft r = NewTestRaft(1, {1, 2}, 5, 1);
  r->BecomeCandidate();
  r->BecomeLeader();
  CommitNoopEntry(r.raft.get(), r.storage.get());

  ConfChange cc = MakeConfChange(raftpb::RemoveNode, 2);
  ASSERT_TRUE(r->Step(ConfChangeProposal(1, cc)).ok());
  EXPECT_TRUE(NextEnts(r.raft.get(), r.storage.get()).empty())
      << "nothing may commit before node 2 acknowledges";
  uint64_t cc_index = r->raft_log().last_index();

  // A proposal while the removal is pending.
  ASSERT_TRUE(r->Step(Proposal(1, "hello")).ok());

  // Node 2 acknowledges the conf change only.
  Message ack = MakeMsg(2, 1, raftpb::MsgAppendResponse, r->term());
  ack.set_index(cc_index);
  ASSERT_TRUE(r->Step(ack).ok());
  std::vector<Entry> ents = NextEnts(r.raft.get(), r.storage.get());
  ASSERT_EQ(ents.size(), 1u);
  EXPECT_EQ(ents[0].entry_type(), raftpb::EntryConfChange);
  EXPECT_EQ(ents[0].index(), cc_index);

  // Applying it leaves node 1 the only voter: "hello" needs no other ack.
  r->ApplyConfChange(cc);
  ents = NextEnts(r.raft.get(), r.storage.get());
  ASSERT_EQ(ents.size(), 1u);
  EXPECT_EQ(ents[0].entry_type(), raftpb::EntryNormal);
  EXPECT_EQ(ents[0].data(), "hello");
}

// ---------------------------------------------------------------------------
// Leader transfer (thesis §3.10): the leader brings the transferee's log up
// to date, then sends it MsgTimeoutNow so it starts an election at once.

// TinyKV/etcd TestLeaderTransferToUpToDateNode.
TEST(RaftLeaderTransferTest, ToUpToDateNode) {
  Network net = ThreeFreshNodes();
  net.Send(Hup(1));
  Raft* n1 = net.raft(1);
  ASSERT_EQ(n1->state(), StateType::kLeader);

  net.Send(TransferRequest(2, 1));
  ExpectTransferDone(*n1, StateType::kFollower, 2);
  EXPECT_EQ(net.raft(2)->state(), StateType::kLeader);
  EXPECT_EQ(net.raft(2)->term(), 2u);

  // After more replication, hand leadership back to node 1.
  net.Send(Proposal(2, "x"));
  net.Send(TransferRequest(1, 2));
  ExpectTransferDone(*n1, StateType::kLeader, 1);
  ExpectTransferDone(*net.raft(2), StateType::kFollower, 1);
  EXPECT_EQ(n1->term(), 3u);
}

// TinyKV/etcd TestLeaderTransferToUpToDateNodeFromFollower: a follower that
// receives a transfer request forwards it to the leader.
TEST(RaftLeaderTransferTest, ToUpToDateNodeFromFollower) {
  Network net = ThreeFreshNodes();
  net.Send(Hup(1));
  Raft* n1 = net.raft(1);
  ASSERT_EQ(n1->state(), StateType::kLeader);

  net.Send(TransferRequest(2, 2));  // to follower 2 itself
  ExpectTransferDone(*n1, StateType::kFollower, 2);
  EXPECT_EQ(net.raft(2)->state(), StateType::kLeader);

  net.Send(Proposal(2, "x"));
  net.Send(TransferRequest(1, 1));  // to follower 1, forwarded to leader 2
  ExpectTransferDone(*n1, StateType::kLeader, 1);
  ExpectTransferDone(*net.raft(2), StateType::kFollower, 1);
}

// etcd TestLeaderTransferWithCheckQuorum: the transferee's vote requests are
// marked as a transfer, which overrides the CheckQuorum lease of voters that
// heard from the leader recently (thesis §4.2.3 / §3.10).
TEST(RaftLeaderTransferTest, WithCheckQuorum) {
  Network net = ThreeFreshNodes([](Config* c) { c->check_quorum = true; });
  net.Send(Hup(1));
  Raft* n1 = net.raft(1);
  ASSERT_EQ(n1->state(), StateType::kLeader);

  // The lease is in force at node 3: a plain vote request of a higher term
  // is ignored (no answer, no term change). So the transfer below succeeds
  // only thanks to the transfer marking.
  Message plain = MakeMsg(2, 3, raftpb::MsgRequestVote, 2);
  plain.set_index(net.raft(2)->raft_log().last_index());
  plain.set_log_term(net.raft(2)->raft_log().LastTerm());
  ASSERT_TRUE(net.raft(3)->Step(plain).ok());
  ASSERT_EQ(net.raft(3)->term(), 1u);
  ASSERT_TRUE(net.raft(3)->msgs().empty());

  std::vector<std::string> vote_contexts;
  net.SetMsgHook([&](const Message& m) {
    if (m.msg_type() == raftpb::MsgRequestVote) {
      vote_contexts.push_back(m.context());
    }
    return true;
  });
  net.Send(TransferRequest(2, 1));
  ExpectTransferDone(*n1, StateType::kFollower, 2);
  EXPECT_EQ(net.raft(2)->state(), StateType::kLeader);
  ASSERT_EQ(vote_contexts.size(), 2u);
  for (const std::string& ctx : vote_contexts) EXPECT_EQ(ctx, "transfer");

  net.Send(Proposal(2, "x"));
  net.Send(TransferRequest(1, 2));
  ExpectTransferDone(*n1, StateType::kLeader, 1);
  ExpectTransferDone(*net.raft(2), StateType::kFollower, 1);
}

// TinyKV/etcd TestLeaderTransferToSlowFollower: the transferee lacks entries;
// the leader first sends them, then MsgTimeoutNow, and the transferee wins.
TEST(RaftLeaderTransferTest, ToSlowFollower) {
  Network net = ThreeFreshNodes();
  net.Send(Hup(1));
  net.Isolate(3);
  net.Send(Proposal(1, "x"));
  net.Recover();
  Raft* n1 = net.raft(1);
  ASSERT_EQ(n1->tracker().Get(3)->match, 1u);
  ASSERT_EQ(n1->raft_log().last_index(), 2u);

  std::vector<raftpb::MessageType> to3;
  net.SetMsgHook([&](const Message& m) {
    if (m.from() == 1 && m.to() == 3) to3.push_back(m.msg_type());
    return true;
  });
  net.Send(TransferRequest(3, 1));
  ExpectTransferDone(*n1, StateType::kFollower, 3);
  EXPECT_EQ(net.raft(3)->state(), StateType::kLeader);

  auto timeout_now = std::find(to3.begin(), to3.end(), raftpb::MsgTimeoutNow);
  ASSERT_NE(timeout_now, to3.end()) << "no MsgTimeoutNow sent to node 3";
  EXPECT_NE(std::find(to3.begin(), timeout_now, raftpb::MsgAppend), timeout_now)
      << "the leader must send the missing entries before MsgTimeoutNow";
  std::vector<Entry> ents3 = net.raft(3)->raft_log().AllEntries();
  ASSERT_GE(ents3.size(), 2u);
  EXPECT_EQ(ents3[1].data(), "x");
}

// TinyKV/etcd TestLeaderTransferAfterSnapshot: the transferee needs a
// snapshot; it may only campaign after persisting it, and the leader sends
// MsgTimeoutNow once the transferee acknowledges the snapshot.
TEST(RaftLeaderTransferTest, AfterSnapshot) {
  Network net = ThreeFreshNodes();
  net.Send(Hup(1));
  net.Isolate(3);
  net.Send(Proposal(1, "x"));
  Raft* n1 = net.raft(1);
  NextEnts(n1, net.storage(1));
  ConfState cs = n1->tracker().GetConfState();
  uint64_t applied = n1->raft_log().applied();
  ASSERT_EQ(applied, 2u);
  ASSERT_TRUE(net.storage(1)->CreateSnapshot(applied, &cs, "").ok());
  ASSERT_TRUE(net.storage(1)->Compact(applied).ok());
  net.Recover();
  ASSERT_EQ(n1->tracker().Get(3)->match, 1u);

  // Hold back node 3's acknowledgement: the application must persist the
  // snapshot before the node's answer leaves.
  std::vector<Message> held;
  net.SetMsgHook([&](const Message& m) {
    if (m.from() == 3 && m.msg_type() == raftpb::MsgAppendResponse &&
        !m.reject()) {
      held.push_back(m);
      return false;
    }
    return true;
  });
  net.Send(TransferRequest(3, 1));
  EXPECT_EQ(n1->state(), StateType::kLeader);
  EXPECT_EQ(n1->lead_transferee(), 3u);
  ASSERT_EQ(held.size(), 1u) << "node 3 should acknowledge the snapshot";

  // Persist the snapshot on node 3, as RawNode's Ready loop would.
  Raft* n3 = net.raft(3);
  ASSERT_TRUE(n3->raft_log().UnstableSnapshot().has_value());
  Snapshot snap = *n3->raft_log().UnstableSnapshot();
  ASSERT_TRUE(net.storage(3)->ApplySnapshot(snap).ok());
  n3->raft_log().StableSnapTo(snap.metadata().index());
  n3->raft_log().AppliedTo(snap.metadata().index());

  net.SetMsgHook(nullptr);
  net.Send(held);
  ExpectTransferDone(*n1, StateType::kFollower, 3);
  EXPECT_EQ(n3->state(), StateType::kLeader);
}

// TinyKV/etcd TestLeaderTransferToSelf: a no-op.
TEST(RaftLeaderTransferTest, ToSelfIsNoop) {
  Network net = ThreeFreshNodes();
  net.Send(Hup(1));
  Raft* n1 = net.raft(1);
  bool timeout_now = false;
  net.SetMsgHook([&](const Message& m) {
    timeout_now = timeout_now || m.msg_type() == raftpb::MsgTimeoutNow;
    return true;
  });
  net.Send(TransferRequest(1, 1));
  ExpectTransferDone(*n1, StateType::kLeader, 1);
  EXPECT_EQ(n1->term(), 1u);
  EXPECT_FALSE(timeout_now);
  EXPECT_TRUE(n1->Step(Proposal(1, "x")).ok());
}

// TinyKV/etcd TestLeaderTransferToNonExistingNode: a no-op.
TEST(RaftLeaderTransferTest, ToNonExistingNodeIsNoop) {
  Network net = ThreeFreshNodes();
  net.Send(Hup(1));
  Raft* n1 = net.raft(1);
  net.Send(TransferRequest(4, 1));
  ExpectTransferDone(*n1, StateType::kLeader, 1);
  EXPECT_EQ(n1->term(), 1u);
  EXPECT_TRUE(n1->Step(Proposal(1, "x")).ok());
}

// etcd TestLeaderTransferTimeout: a transfer that does not complete within
// an election timeout of its start is abandoned, and proposals are accepted
// again (thesis §3.10: the leader aborts the transfer after an election
// timeout).
TEST(RaftLeaderTransferTest, TimeoutAbortsTransfer) {
  Network net = ThreeFreshNodes();
  net.Send(Hup(1));
  net.Isolate(3);
  Raft* n1 = net.raft(1);
  // Time passes before the request: the deadline counts from its start.
  for (int i = 0; i < kElection / 2; ++i) n1->Tick();

  net.Send(TransferRequest(3, 1));
  ASSERT_EQ(n1->lead_transferee(), 3u);
  for (int i = 0; i < kElection - 1; ++i) n1->Tick();
  EXPECT_EQ(n1->lead_transferee(), 3u)
      << "aborted before an election timeout since the request";
  EXPECT_TRUE(IsDropped(n1->Step(Proposal(1, "during"))));

  n1->Tick();
  ExpectTransferDone(*n1, StateType::kLeader, 1);
  uint64_t last = n1->raft_log().last_index();
  EXPECT_TRUE(n1->Step(Proposal(1, "after")).ok());
  EXPECT_EQ(n1->raft_log().last_index(), last + 1);
}

// etcd TestLeaderTransferIgnoreProposal: while a transfer is in progress the
// leader refuses proposals (it is about to hand over).
TEST(RaftLeaderTransferTest, IgnoresProposalsWhileTransferring) {
  Network net = ThreeFreshNodes();
  net.Send(Hup(1));
  net.Isolate(3);
  Raft* n1 = net.raft(1);
  net.Send(TransferRequest(3, 1));
  ASSERT_EQ(n1->lead_transferee(), 3u);

  uint64_t last = n1->raft_log().last_index();
  EXPECT_TRUE(IsDropped(n1->Step(Proposal(1, "x"))));
  EXPECT_TRUE(IsDropped(
      n1->Step(ConfChangeProposal(1, MakeConfChange(raftpb::AddNode, 4)))));
  EXPECT_EQ(n1->raft_log().last_index(), last);
  EXPECT_EQ(n1->tracker().Get(1)->match, last);
  EXPECT_EQ(n1->lead_transferee(), 3u);
}

// TinyKV/etcd TestLeaderTransferReceiveHigherTermVote: a leader that steps
// down for a higher-term vote request abandons its transfer.
TEST(RaftLeaderTransferTest, ReceiveHigherTermVoteAborts) {
  Network net = ThreeFreshNodes();
  net.Send(Hup(1));
  net.Isolate(3);
  Raft* n1 = net.raft(1);
  net.Send(TransferRequest(3, 1));
  ASSERT_EQ(n1->lead_transferee(), 3u);

  net.Send(Hup(2));
  ExpectTransferDone(*n1, StateType::kFollower, 2);
  EXPECT_EQ(net.raft(2)->state(), StateType::kLeader);
  EXPECT_EQ(n1->term(), 2u);
}

// TinyKV/etcd TestLeaderTransferRemoveNode: removing the transferee from the
// group abandons the transfer.
TEST(RaftLeaderTransferTest, RemovingTransfereeAborts) {
  Network net = ThreeFreshNodes();
  net.Send(Hup(1));
  net.Ignore(raftpb::MsgTimeoutNow);
  Raft* n1 = net.raft(1);
  net.Send(TransferRequest(3, 1));
  ASSERT_EQ(n1->lead_transferee(), 3u);

  n1->ApplyConfChange(MakeConfChange(raftpb::RemoveNode, 3));
  ExpectTransferDone(*n1, StateType::kLeader, 1);
  EXPECT_TRUE(n1->Step(Proposal(1, "x")).ok());
}

// TinyKV/etcd TestLeaderTransferBack: asking to transfer to the leader itself
// while a transfer is in progress abandons that transfer.
TEST(RaftLeaderTransferTest, BackToSelfAbortsTransfer) {
  Network net = ThreeFreshNodes();
  net.Send(Hup(1));
  net.Isolate(3);
  Raft* n1 = net.raft(1);
  net.Send(TransferRequest(3, 1));
  ASSERT_EQ(n1->lead_transferee(), 3u);

  net.Send(TransferRequest(1, 1));
  ExpectTransferDone(*n1, StateType::kLeader, 1);
  EXPECT_TRUE(n1->Step(Proposal(1, "x")).ok());
}

// A repeated request for the transfer in progress is ignored (no new
// messages), and the first transfer still completes.
TEST(RaftLeaderTransferTest, BackToBackSameNodeIgnoresSecondRequest) {
  Network net = ThreeFreshNodes();
  net.Send(Hup(1));
  net.Isolate(3);
  net.Send(Proposal(1, "x"));
  net.Recover();
  Raft* n1 = net.raft(1);
  ASSERT_EQ(n1->tracker().Get(3)->match, 1u);

  // Hold the catch-up appends to node 3.
  std::vector<Message> held;
  net.SetMsgHook([&](const Message& m) {
    if (m.to() == 3 && m.msg_type() == raftpb::MsgAppend) {
      held.push_back(m);
      return false;
    }
    return true;
  });
  net.Send(TransferRequest(3, 1));
  ASSERT_EQ(n1->lead_transferee(), 3u);
  ASSERT_FALSE(held.empty()) << "the leader should start catching node 3 up";

  ASSERT_TRUE(n1->msgs().empty());
  EXPECT_TRUE(n1->Step(TransferRequest(3, 1)).ok());
  EXPECT_EQ(n1->lead_transferee(), 3u);
  EXPECT_TRUE(n1->msgs().empty())
      << "a second request for the same transferee should be ignored, got "
      << DescribeMessage(n1->msgs().front());

  net.SetMsgHook(nullptr);
  net.Send(held);
  ExpectTransferDone(*n1, StateType::kFollower, 3);
  EXPECT_EQ(net.raft(3)->state(), StateType::kLeader);
}

// TinyKV/etcd TestLeaderTransferSecondTransferToAnotherNode: a request for
// another transferee abandons the first transfer and starts the second.
TEST(RaftLeaderTransferTest, SecondTransferToAnotherNode) {
  Network net = ThreeFreshNodes();
  net.Send(Hup(1));
  net.Isolate(3);
  Raft* n1 = net.raft(1);
  net.Send(TransferRequest(3, 1));
  ASSERT_EQ(n1->lead_transferee(), 3u);

  net.Send(TransferRequest(2, 1));
  ExpectTransferDone(*n1, StateType::kFollower, 2);
  EXPECT_EQ(net.raft(2)->state(), StateType::kLeader);
}

// TinyKV/etcd TestLeaderTransferSecondTransferToSameNode: a repeated request
// does not restart the transfer's election-timeout deadline.
TEST(RaftLeaderTransferTest, SecondTransferToSameNodeKeepsDeadline) {
  Network net = ThreeFreshNodes();
  net.Send(Hup(1));
  net.Isolate(3);
  Raft* n1 = net.raft(1);
  net.Send(TransferRequest(3, 1));
  ASSERT_EQ(n1->lead_transferee(), 3u);

  constexpr int kBefore = kElection / 2;
  for (int i = 0; i < kBefore; ++i) n1->Tick();
  net.Send(TransferRequest(3, 1));
  for (int i = 0; i < kElection - kBefore - 1; ++i) n1->Tick();
  EXPECT_EQ(n1->lead_transferee(), 3u);
  n1->Tick();  // an election timeout since the FIRST request
  ExpectTransferDone(*n1, StateType::kLeader, 1);
}

// TinyKV/etcd TestTransferNonMember: a node outside the membership cannot
// be made to campaign, neither by MsgTimeoutNow nor by votes it did not ask
// for. The same MsgTimeoutNow does make a member campaign.
TEST(RaftMembershipTest, NonMemberIgnoresTimeoutNowAndVotes) {
  TestRaft r = NewTestRaft(1, {2, 3, 4}, 5, 1);
  ASSERT_TRUE(r->Step(MakeMsg(2, 1, raftpb::MsgTimeoutNow, 1)).ok());
  ASSERT_TRUE(r->Step(MakeMsg(2, 1, raftpb::MsgRequestVoteResponse, 1)).ok());
  ASSERT_TRUE(r->Step(MakeMsg(3, 1, raftpb::MsgRequestVoteResponse, 1)).ok());
  EXPECT_EQ(r->state(), StateType::kFollower);
  EXPECT_EQ(r->term(), 1u);
  EXPECT_EQ(r->vote(), kNone);
  EXPECT_FALSE(HasMessage(r->msgs(), raftpb::MsgRequestVote));

  TestRaft member = NewTestRaft(1, {1, 2, 3, 4}, 5, 1);
  ASSERT_TRUE(member->Step(MakeMsg(2, 1, raftpb::MsgTimeoutNow, 1)).ok());
  EXPECT_EQ(member->state(), StateType::kCandidate);
  EXPECT_EQ(member->term(), 2u);
  EXPECT_TRUE(HasMessage(member->msgs(), raftpb::MsgRequestVote));
}

// ---------------------------------------------------------------------------
// RawNode-level membership changes.

std::unique_ptr<RawNode> NewRawNode(uint64_t id, Ids peers, Storage* s,
                                    Ids learners = {}) {
  Config c = TestConfig(id, std::move(peers), kElection, 1, s);
  c.learners = std::move(learners);
  auto rn = RawNode::Create(c);
  EXPECT_TRUE(rn.ok()) << rn.status();
  return rn.ok() ? std::move(rn).value() : nullptr;
}

void Persist(MemoryStorage* s, const Ready& rd) {
  if (!IsEmptySnap(rd.snapshot)) {
    ASSERT_TRUE(s->ApplySnapshot(rd.snapshot).ok());
  }
  if (!rd.entries.empty()) {
    ASSERT_TRUE(s->Append(rd.entries).ok());
  }
  if (!IsEmptyHardState(rd.hard_state)) s->SetHardState(rd.hard_state);
}

// Handles Readies (persist, apply conf changes, advance) until none is left.
// Returns the number of membership changes applied; `cs` receives the last
// resulting membership.
int Drain(RawNode* rn, MemoryStorage* s, ConfState* cs = nullptr) {
  int changes = 0;
  for (int n = 0; rn->HasReady() && n < 20; ++n) {
    Ready rd = rn->GetReady();
    Persist(s, rd);
    for (const Entry& e : rd.committed_entries) {
      if (e.entry_type() != raftpb::EntryConfChange) continue;
      ConfChange cc;
      EXPECT_TRUE(cc.ParseFromString(e.data()));
      ConfState got = rn->ApplyConfChange(cc);
      if (cs != nullptr) *cs = got;
      ++changes;
    }
    rn->Advance();
  }
  EXPECT_FALSE(rn->HasReady()) << "node never ran out of Readies";
  return changes;
}

// A single-node RawNode group that has elected itself and applied its no-op.
std::unique_ptr<RawNode> SingleLeader(MemoryStorage* s) {
  auto rn = NewRawNode(1, {1}, s);
  if (rn == nullptr) return nullptr;
  rn->Campaign();
  Drain(rn.get(), s);
  EXPECT_EQ(rn->raft().state(), StateType::kLeader);
  return rn;
}

// TinyKV/etcd TestRawNodeProposeAndConfChange: data and a conf change
// proposed through RawNode are both appended and committed, in order, and
// ApplyConfChange returns the new membership, which is then in effect.
TEST(RawNodeMembershipTest, ProposeAndConfChange) {
  MemoryStorage s;
  auto rn = SingleLeader(&s);
  ASSERT_NE(rn, nullptr);

  ConfChange cc = MakeConfChange(raftpb::AddNode, 2);
  ASSERT_TRUE(rn->Propose("somedata").ok());
  ASSERT_TRUE(rn->ProposeConfChange(cc).ok());

  ASSERT_TRUE(rn->HasReady());
  Ready rd = rn->GetReady();
  Persist(&s, rd);
  ASSERT_EQ(rd.entries.size(), 2u);
  EXPECT_EQ(rd.entries[0].entry_type(), raftpb::EntryNormal);
  EXPECT_EQ(rd.entries[0].data(), "somedata");
  EXPECT_EQ(rd.entries[1].entry_type(), raftpb::EntryConfChange);
  EXPECT_EQ(rd.entries[1].data(), cc.SerializeAsString());
  // The lone voter commits both at once.
  ASSERT_EQ(rd.committed_entries.size(), 2u);
  EXPECT_EQ(rd.committed_entries[0].data(), "somedata");
  ASSERT_EQ(rd.committed_entries[1].entry_type(), raftpb::EntryConfChange);
  ConfChange applied;
  ASSERT_TRUE(applied.ParseFromString(rd.committed_entries[1].data()));
  ConfState cs = rn->ApplyConfChange(applied);
  rn->Advance();
  EXPECT_EQ(Voters(cs), (Ids{1, 2}));
  EXPECT_TRUE(Learners(cs).empty());

  uint64_t last = *s.LastIndex();
  auto stored = s.Entries(last - 1, last + 1, kNoLimit);
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 2u);
  EXPECT_EQ((*stored)[0].data(), "somedata");
  EXPECT_EQ((*stored)[1].entry_type(), raftpb::EntryConfChange);
  EXPECT_EQ((*stored)[1].data(), cc.SerializeAsString());

  // Node 2 now counts: a new proposal is sent to it and waits for it.
  ASSERT_TRUE(rn->Propose("after").ok());
  rd = rn->GetReady();
  Persist(&s, rd);
  EXPECT_TRUE(rd.committed_entries.empty());
  bool sent_to_2 =
      std::any_of(rd.messages.begin(), rd.messages.end(), [](const Message& m) {
        return m.to() == 2 && m.msg_type() == raftpb::MsgAppend;
      });
  EXPECT_TRUE(sent_to_2);
  rn->Advance();
}

// TinyKV/etcd TestRawNodeProposeAddDuplicateNode: adding a node that is
// already a member changes nothing; later proposals and changes still work.
TEST(RawNodeMembershipTest, ProposeAddDuplicateNode) {
  MemoryStorage s;
  auto rn = SingleLeader(&s);
  ASSERT_NE(rn, nullptr);

  auto propose_and_apply = [&](const ConfChange& cc) {
    EXPECT_TRUE(rn->ProposeConfChange(cc).ok());
    ConfState cs;
    EXPECT_EQ(Drain(rn.get(), &s, &cs), 1);
    return cs;
  };
  ConfChange add1 = MakeConfChange(raftpb::AddNode, 1);
  EXPECT_EQ(Voters(propose_and_apply(add1)), (Ids{1}));
  EXPECT_EQ(Voters(propose_and_apply(add1)), (Ids{1}));  // again
  ASSERT_NE(rn->raft().tracker().Get(1), nullptr);
  EXPECT_EQ(rn->raft().tracker().Get(1)->match,
            rn->raft().raft_log().last_index())
      << "the duplicate add must not reset the leader's own progress";

  // The lone voter still commits a proposal at once.
  ASSERT_TRUE(rn->Propose("data").ok());
  Ready rd = rn->GetReady();
  Persist(&s, rd);
  ASSERT_EQ(rd.committed_entries.size(), 1u);
  EXPECT_EQ(rd.committed_entries[0].data(), "data");
  rn->Advance();

  ConfChange add2 = MakeConfChange(raftpb::AddNode, 2);
  EXPECT_EQ(Voters(propose_and_apply(add2)), (Ids{1, 2}));

  uint64_t last = *s.LastIndex();
  auto stored = s.Entries(last - 3, last + 1, kNoLimit);
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 4u);
  EXPECT_EQ((*stored)[0].data(), add1.SerializeAsString());
  EXPECT_EQ((*stored)[1].data(), add1.SerializeAsString());
  EXPECT_EQ((*stored)[2].data(), "data");
  EXPECT_EQ((*stored)[3].data(), add2.SerializeAsString());
  EXPECT_EQ((*stored)[3].entry_type(), raftpb::EntryConfChange);
}

// ---------------------------------------------------------------------------
// Membership changes through the log (thesis §4.1).

// A node added to a 2-node group receives the log and counts toward the
// commit quorum: with one of the two original nodes down nothing commits,
// until the new node joins.
TEST(RaftMembershipTest, AddedNodeReceivesAppendsAndCountsInQuorum) {
  // Node 3 starts empty: it learns everything from the leader.
  Network net = NetworkOf(NewTestRaft(1, {1, 2}, kElection, 1),
                          NewTestRaft(2, {1, 2}, kElection, 1),
                          NewTestRaft(3, {}, kElection, 1));
  net.Send(Hup(1));
  Raft* n1 = net.raft(1);
  Raft* n3 = net.raft(3);
  ASSERT_EQ(n1->state(), StateType::kLeader);
  EXPECT_EQ(n3->raft_log().last_index(), 0u) << "not a member yet";

  ASSERT_TRUE(
      n1->Step(ConfChangeProposal(1, MakeConfChange(raftpb::AddNode, 3))).ok());
  Flush(net, 1);
  ASSERT_EQ(n1->raft_log().committed(), 2u);

  // Node 2 goes down: the 2-node group cannot commit.
  net.Isolate(2);
  net.Send(Proposal(1, "x"));
  EXPECT_EQ(n1->raft_log().committed(), 2u);

  // The leader applies the addition; a heartbeat round finds node 3, which
  // is caught up and whose acknowledgement makes a majority of {1,2,3}.
  ConfState cs;
  ApplyCommitted(n1, net.storage(1), &cs);
  EXPECT_EQ(Voters(cs), (Ids{1, 2, 3}));
  Flush(net, 1, {2});
  net.Send(Beat(1));
  EXPECT_EQ(n1->raft_log().committed(), 3u);
  ASSERT_NE(n1->tracker().Get(3), nullptr);
  EXPECT_EQ(n1->tracker().Get(3)->match, 3u);
  EXPECT_EQ(n3->raft_log().last_index(), 3u);
  EXPECT_EQ(n3->raft_log().committed(), 3u);
  std::vector<Entry> ents3 = n3->raft_log().AllEntries();
  ASSERT_EQ(ents3.size(), 3u);
  EXPECT_EQ(ents3[2].data(), "x");
  EXPECT_EQ(n3->lead(), 1u);
}

// Removing a follower shrinks the quorum: an entry that was waiting for a
// third acknowledgement in a 4-node group commits once the removal applied.
TEST(RaftMembershipTest, RemovedFollowerShrinksQuorumAndCommitsWaitingEntry) {
  Network net = FreshNodes(4);
  net.Send(Hup(1));
  Raft* n1 = net.raft(1);
  ASSERT_EQ(n1->state(), StateType::kLeader);
  ASSERT_TRUE(
      n1->Step(ConfChangeProposal(1, MakeConfChange(raftpb::RemoveNode, 4)))
          .ok());
  Flush(net, 1);
  ASSERT_EQ(n1->raft_log().committed(), 2u);

  // Nodes 3 and 4 go down: only 1 and 2 of four voters hold "x".
  net.Isolate(3);
  net.Isolate(4);
  net.Send(Proposal(1, "x"));
  EXPECT_EQ(n1->raft_log().committed(), 2u);

  // After the removal {1, 2} is a majority of {1, 2, 3}.
  ApplyAndFlush(net, 1, {3, 4});
  EXPECT_EQ(Nodes(*n1), (Ids{1, 2, 3}));
  EXPECT_EQ(n1->raft_log().committed(), 3u);
  EXPECT_EQ(net.raft(2)->raft_log().committed(), 3u)
      << "the new commit index should be broadcast";
  std::vector<Entry> ents = NextEnts(n1, net.storage(1));
  ASSERT_EQ(ents.size(), 1u);
  EXPECT_EQ(ents[0].data(), "x");

  // The removed node hears nothing more.
  net.Recover();
  std::set<uint64_t> receivers;
  net.SetMsgHook([&](const Message& m) {
    if (m.from() == 1) receivers.insert(m.to());
    return true;
  });
  net.Send(Beat(1));
  EXPECT_EQ(receivers, (std::set<uint64_t>{2, 3}));
}

// Removing the leader (thesis §4.2.2): once it applies its own removal the
// leader steps down and never campaigns again; the remaining nodes elect a
// leader among themselves and keep committing.
TEST(RaftMembershipTest, RemovedLeaderStepsDownAndOthersElectNewLeader) {
  Network net = ThreeFreshNodes();
  net.Send(Hup(1));
  Raft* n1 = net.raft(1);
  ASSERT_EQ(n1->state(), StateType::kLeader);
  ASSERT_TRUE(
      n1->Step(ConfChangeProposal(1, MakeConfChange(raftpb::RemoveNode, 1)))
          .ok());
  Flush(net, 1);
  for (uint64_t id : {1, 2, 3}) {
    ASSERT_EQ(net.raft(id)->raft_log().committed(), 2u) << "node " << id;
  }

  ApplyAndFlush(net, 1);
  EXPECT_EQ(n1->state(), StateType::kFollower);
  EXPECT_EQ(n1->lead(), kNone);
  EXPECT_EQ(n1->term(), 1u);
  EXPECT_TRUE(IsDropped(n1->Step(Proposal(1, "x"))));
  ApplyAndFlush(net, 2);
  ApplyAndFlush(net, 3);
  EXPECT_EQ(Nodes(*net.raft(2)), (Ids{2, 3}));
  EXPECT_EQ(Nodes(*net.raft(3)), (Ids{2, 3}));

  // Let time pass everywhere until a new leader emerges.
  std::set<uint64_t> to_1;
  net.SetMsgHook([&](const Message& m) {
    if (m.to() == 1 || m.from() == 1) to_1.insert(m.msg_type());
    return true;
  });
  uint64_t leader = kNone;
  for (int t = 0; t < 10 * kElection && leader == kNone; ++t) {
    for (uint64_t id : {1, 2, 3}) {
      net.raft(id)->Tick();
      Flush(net, id);
    }
    for (uint64_t id : {2, 3}) {
      if (net.raft(id)->state() == StateType::kLeader) leader = id;
    }
  }
  ASSERT_NE(leader, kNone) << "nodes 2 and 3 elected no leader";
  EXPECT_EQ(n1->state(), StateType::kFollower);
  EXPECT_EQ(n1->term(), 1u) << "the removed node must not campaign";
  EXPECT_TRUE(to_1.empty()) << "nobody should talk to the removed node";

  net.Send(Proposal(leader, "after"));
  uint64_t last = net.raft(leader)->raft_log().last_index();
  for (uint64_t id : {2, 3}) {
    EXPECT_EQ(net.raft(id)->raft_log().committed(), last) << "node " << id;
  }
  std::vector<Entry> ents = net.raft(leader)->raft_log().AllEntries();
  EXPECT_EQ(ents.back().data(), "after");
}

// At most one membership change may be pending (thesis §4.1): a second one
// is refused until the first is applied; ordinary proposals are not.
TEST(RaftMembershipTest, SecondConfChangeRefusedWhileOneIsPending) {
  Network net = ThreeFreshNodes();
  net.Send(Hup(1));
  Raft* n1 = net.raft(1);
  ASSERT_EQ(n1->state(), StateType::kLeader);

  ASSERT_TRUE(
      n1->Step(ConfChangeProposal(1, MakeConfChange(raftpb::AddNode, 4))).ok());
  Flush(net, 1);
  EXPECT_EQ(n1->pending_conf_index(), 2u);
  ConfChange second = MakeConfChange(raftpb::RemoveNode, 3);
  EXPECT_TRUE(IsDropped(n1->Step(ConfChangeProposal(1, second))));
  EXPECT_EQ(n1->raft_log().last_index(), 2u);

  // Committed but not yet applied: still pending.
  ASSERT_TRUE(n1->Step(Proposal(1, "x")).ok());
  Flush(net, 1);
  ASSERT_EQ(n1->raft_log().committed(), 3u);
  EXPECT_TRUE(IsDropped(n1->Step(ConfChangeProposal(1, second))));
  EXPECT_EQ(n1->raft_log().last_index(), 3u);

  ApplyAndFlush(net, 1);
  ASSERT_TRUE(n1->tracker().IsVoter(4));
  EXPECT_TRUE(n1->Step(ConfChangeProposal(1, second)).ok());
  EXPECT_EQ(n1->raft_log().last_index(), 4u);
  EXPECT_EQ(n1->pending_conf_index(), 4u);
}

// A new leader refuses a membership change until an entry of its own term
// (its no-op) is committed; ordinary proposals are accepted meanwhile.
TEST(RaftMembershipTest, NewLeaderRefusesConfChangeUntilItsTermCommits) {
  Network net = ThreeFreshNodes();
  net.Ignore(raftpb::MsgAppend);
  net.Send(Hup(1));
  Raft* n1 = net.raft(1);
  ASSERT_EQ(n1->state(), StateType::kLeader);
  ASSERT_EQ(n1->raft_log().committed(), 0u);

  ConfChange cc = MakeConfChange(raftpb::AddNode, 4);
  EXPECT_TRUE(IsDropped(n1->Step(ConfChangeProposal(1, cc))));
  EXPECT_EQ(n1->raft_log().last_index(), 1u);
  EXPECT_TRUE(n1->Step(Proposal(1, "x")).ok());
  n1->ReadMessages();

  net.Recover();
  net.Send(Beat(1));
  ASSERT_EQ(n1->raft_log().committed(), 2u);
  EXPECT_TRUE(n1->Step(ConfChangeProposal(1, cc)).ok());
  EXPECT_EQ(n1->raft_log().last_index(), 3u);
}

// ---------------------------------------------------------------------------
// Learners: members that receive the log but never vote, never campaign and
// never count toward a quorum.

// AddLearnerNode through the log: the learner receives and applies the log.
TEST(RaftLearnerTest, AddLearnerNodeReplicatesLogToLearner) {
  Network net = NetworkOf(NewTestRaft(1, {1, 2}, kElection, 1),
                          NewTestRaft(2, {1, 2}, kElection, 1),
                          NewTestRaft(3, {}, kElection, 1));
  net.Send(Hup(1));
  Raft* n1 = net.raft(1);
  ASSERT_EQ(n1->state(), StateType::kLeader);
  ASSERT_TRUE(
      n1->Step(ConfChangeProposal(1, MakeConfChange(raftpb::AddLearnerNode, 3)))
          .ok());
  Flush(net, 1);
  ASSERT_EQ(n1->raft_log().committed(), 2u);

  ConfState cs;
  ApplyCommitted(n1, net.storage(1), &cs);
  Flush(net, 1);
  EXPECT_EQ(Voters(cs), (Ids{1, 2}));
  EXPECT_EQ(Learners(cs), (Ids{3}));
  ASSERT_NE(n1->tracker().Get(3), nullptr);
  EXPECT_TRUE(n1->tracker().Get(3)->is_learner);
  EXPECT_FALSE(n1->tracker().IsVoter(3));
  ApplyAndFlush(net, 2);

  net.Send(Proposal(1, "x"));
  Raft* n3 = net.raft(3);
  EXPECT_EQ(n3->raft_log().last_index(), 3u);
  EXPECT_EQ(n3->raft_log().committed(), 3u);
  EXPECT_EQ(n3->lead(), 1u);
  std::vector<Entry> applied = NextEnts(n3, net.storage(3));
  ASSERT_EQ(applied.size(), 3u);
  EXPECT_EQ(applied[1].entry_type(), raftpb::EntryConfChange);
  EXPECT_EQ(applied[2].data(), "x");
}

// A candidate asks only voters, and a learner's grant does not count.
TEST(RaftLearnerTest, VoteRequestsSkipLearnersAndLearnerVotesDoNotCount) {
  TestRaft r = MemberNode(1, {1, 2, 3}, {4, 5});
  ASSERT_TRUE(r->Step(Hup(1)).ok());
  ASSERT_EQ(r->state(), StateType::kCandidate);
  std::set<uint64_t> asked;
  for (const Message& m : r->ReadMessages()) {
    if (m.msg_type() == raftpb::MsgRequestVote) asked.insert(m.to());
  }
  EXPECT_EQ(asked, (std::set<uint64_t>{2, 3}));

  // Counting the learners' grants (as votes among the voters, or the
  // learners as extra voters: 3 of 5) would make the candidate win.
  for (uint64_t learner : {4, 5}) {
    ASSERT_TRUE(
        r->Step(MakeMsg(learner, 1, raftpb::MsgRequestVoteResponse, r->term()))
            .ok());
  }
  EXPECT_EQ(r->state(), StateType::kCandidate);
  ASSERT_TRUE(
      r->Step(MakeMsg(2, 1, raftpb::MsgRequestVoteResponse, r->term())).ok());
  EXPECT_EQ(r->state(), StateType::kLeader);
}

// A learner never campaigns: neither Campaign, nor ticks, nor MsgTimeoutNow.
TEST(RaftLearnerTest, LearnerNeverCampaigns) {
  MemoryStorage s;
  auto rn = NewRawNode(3, {1, 2}, &s, {3});
  ASSERT_NE(rn, nullptr);
  Drain(rn.get(), &s);
  rn->Campaign();
  EXPECT_FALSE(rn->HasReady());
  for (int i = 0; i < 3 * kElection; ++i) rn->Tick();
  EXPECT_FALSE(rn->HasReady());
  EXPECT_EQ(rn->raft().state(), StateType::kFollower);
  EXPECT_EQ(rn->raft().term(), 0u);

  Raft& r = rn->raft();
  ASSERT_TRUE(r.Step(MakeMsg(1, 3, raftpb::MsgTimeoutNow, 1)).ok());
  EXPECT_EQ(r.state(), StateType::kFollower);
  EXPECT_EQ(r.term(), 1u);
  EXPECT_FALSE(HasMessage(r.msgs(), raftpb::MsgRequestVote));
}

// A learner's acknowledgement does not count toward the commit quorum
// (contrast: the same acknowledgement from a third voter does).
TEST(RaftLearnerTest, LearnerDoesNotCountTowardCommitQuorum) {
  // Elects `r` and returns its no-op appends to nodes 2 and 3.
  auto elect = [](Raft* r) {
    r->BecomeCandidate();
    r->BecomeLeader();
    r->SendAppend(2);
    r->SendAppend(3);
    std::map<uint64_t, Message> appends;
    for (Message& m : r->ReadMessages()) {
      if (m.msg_type() == raftpb::MsgAppend) appends[m.to()] = m;
    }
    EXPECT_EQ(appends.size(), 2u);
    return appends;
  };

  TestRaft r = MemberNode(1, {1, 2}, {3});
  std::map<uint64_t, Message> appends = elect(r.raft.get());
  ASSERT_EQ(appends.size(), 2u);
  ASSERT_TRUE(r->Step(AcceptAndReply(appends[3])).ok());
  ASSERT_NE(r->tracker().Get(3), nullptr);
  EXPECT_EQ(r->tracker().Get(3)->match, 1u);
  EXPECT_EQ(r->raft_log().committed(), 0u)
      << "the learner's acknowledgement made a quorum";
  ASSERT_TRUE(r->Step(AcceptAndReply(appends[2])).ok());
  EXPECT_EQ(r->raft_log().committed(), 1u);

  TestRaft v = NewTestRaft(1, {1, 2, 3}, kElection, 1);
  appends = elect(v.raft.get());
  ASSERT_EQ(appends.size(), 2u);
  ASSERT_TRUE(v->Step(AcceptAndReply(appends[3])).ok());
  EXPECT_EQ(v->raft_log().committed(), 1u);
}

// AddNode on a learner promotes it: it then counts toward the commit quorum
// and may take leadership.
TEST(RaftLearnerTest, AddNodePromotesLearnerToVoter) {
  Network net =
      NetworkOf(MemberNode(1, {1, 2}, {3}), MemberNode(2, {1, 2}, {3}),
                MemberNode(3, {1, 2}, {3}));
  net.Send(Hup(1));
  Raft* n1 = net.raft(1);
  Raft* n3 = net.raft(3);
  ASSERT_EQ(n1->state(), StateType::kLeader);
  ASSERT_TRUE(
      n1->Step(ConfChangeProposal(1, MakeConfChange(raftpb::AddNode, 3))).ok());
  Flush(net, 1);
  for (uint64_t id : {1, 2, 3}) {
    ASSERT_EQ(net.raft(id)->raft_log().committed(), 2u) << "node " << id;
  }

  ConfState cs;
  ApplyCommitted(n1, net.storage(1), &cs);
  Flush(net, 1);
  EXPECT_EQ(Voters(cs), (Ids{1, 2, 3}));
  EXPECT_TRUE(Learners(cs).empty());
  EXPECT_TRUE(n1->tracker().IsVoter(3));
  ASSERT_NE(n1->tracker().Get(3), nullptr);
  EXPECT_FALSE(n1->tracker().Get(3)->is_learner);
  ApplyAndFlush(net, 2);
  ApplyAndFlush(net, 3);
  EXPECT_TRUE(n3->tracker().IsVoter(3));

  // With node 2 down, 1 and 3 are now a majority.
  net.Isolate(2);
  net.Send(Proposal(1, "y"));
  EXPECT_EQ(n1->raft_log().committed(), 3u);

  net.Recover();
  net.Send(TransferRequest(3, 1));
  ExpectTransferDone(*n1, StateType::kFollower, 3);
  EXPECT_EQ(n3->state(), StateType::kLeader);
}

// Leadership cannot be handed to a learner.
TEST(RaftLearnerTest, LeaderTransferToLearnerIsIgnored) {
  Network net =
      NetworkOf(MemberNode(1, {1, 2}, {3}), MemberNode(2, {1, 2}, {3}),
                MemberNode(3, {1, 2}, {3}));
  net.Send(Hup(1));
  Raft* n1 = net.raft(1);
  ASSERT_EQ(n1->state(), StateType::kLeader);
  bool timeout_now = false;
  net.SetMsgHook([&](const Message& m) {
    timeout_now = timeout_now || m.msg_type() == raftpb::MsgTimeoutNow;
    return true;
  });
  net.Send(TransferRequest(3, 1));
  ExpectTransferDone(*n1, StateType::kLeader, 1);
  EXPECT_FALSE(timeout_now);
  EXPECT_EQ(net.raft(3)->state(), StateType::kFollower);
  EXPECT_EQ(net.raft(3)->term(), 1u);
  EXPECT_TRUE(n1->Step(Proposal(1, "x")).ok());
}

Snapshot SnapWithLearners(uint64_t index, uint64_t term, const Ids& voters,
                          const Ids& learners) {
  Snapshot s;
  s.mutable_metadata()->set_index(index);
  s.mutable_metadata()->set_term(term);
  ConfState* cs = s.mutable_metadata()->mutable_conf_state();
  for (uint64_t v : voters) cs->add_voters(v);
  for (uint64_t l : learners) cs->add_learners(l);
  return s;
}

// A snapshot received from the leader replaces the membership with its
// ConfState, learners included; a node that is a learner there stops being
// able to campaign.
TEST(RaftLearnerTest, SnapshotMessageRestoresLearners) {
  Snapshot snap = SnapWithLearners(11, 11, {1, 2}, {3});

  TestRaft n2 = NewTestRaft(2, {1, 2, 3}, kElection, 1);
  Message m = MakeMsg(1, 2, raftpb::MsgSnapshot, 11);
  *m.mutable_snapshot() = snap;
  ASSERT_TRUE(n2->Step(m).ok());
  EXPECT_EQ(n2->raft_log().last_index(), 11u);
  EXPECT_EQ(n2->tracker().Voters(), (Ids{1, 2}));
  EXPECT_EQ(n2->tracker().Learners(), (Ids{3}));
  ASSERT_NE(n2->tracker().Get(3), nullptr);
  EXPECT_TRUE(n2->tracker().Get(3)->is_learner);

  TestRaft n3 = NewTestRaft(3, {1, 2, 3}, kElection, 1);
  m.set_to(3);
  ASSERT_TRUE(n3->Step(m).ok());
  EXPECT_EQ(n3->tracker().Learners(), (Ids{3}));
  // Persist the snapshot, then try to campaign.
  ASSERT_TRUE(n3.storage->ApplySnapshot(snap).ok());
  n3->raft_log().StableSnapTo(11);
  n3->ReadMessages();
  ASSERT_TRUE(n3->Step(Hup(3)).ok());
  EXPECT_EQ(n3->state(), StateType::kFollower);
  EXPECT_EQ(n3->term(), 11u);
  EXPECT_TRUE(n3->msgs().empty());
}

// A node restarted from a storage whose snapshot names learners restores
// them: a voter's election skips the learner but replicates to it, and the
// learner itself cannot campaign.
TEST(RaftLearnerTest, RestartFromSnapshotRestoresLearners) {
  Snapshot snap = SnapWithLearners(11, 11, {1, 2}, {3});
  auto storage_with_snap = [&snap]() {
    auto s = std::make_unique<MemoryStorage>();
    EXPECT_TRUE(s->ApplySnapshot(snap).ok());
    raftpb::HardState hs;
    hs.set_term(11);
    hs.set_commit(11);
    s->SetHardState(hs);
    return s;
  };

  TestRaft n1 = NewTestRaft(1, {}, kElection, 1, storage_with_snap());
  EXPECT_EQ(n1->tracker().Voters(), (Ids{1, 2}));
  EXPECT_EQ(n1->tracker().Learners(), (Ids{3}));
  ASSERT_TRUE(n1->Step(Hup(1)).ok());
  ASSERT_EQ(n1->state(), StateType::kCandidate);
  std::vector<Message> msgs = n1->ReadMessages();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].msg_type(), raftpb::MsgRequestVote);
  EXPECT_EQ(msgs[0].to(), 2u);
  ASSERT_TRUE(
      n1->Step(MakeMsg(2, 1, raftpb::MsgRequestVoteResponse, n1->term())).ok());
  ASSERT_EQ(n1->state(), StateType::kLeader);
  std::set<uint64_t> appended;
  for (const Message& out : n1->ReadMessages()) {
    if (out.msg_type() == raftpb::MsgAppend) appended.insert(out.to());
  }
  EXPECT_EQ(appended, (std::set<uint64_t>{2, 3}));

  TestRaft n3 = NewTestRaft(3, {}, kElection, 1, storage_with_snap());
  EXPECT_EQ(n3->tracker().Learners(), (Ids{3}));
  ASSERT_TRUE(n3->Step(Hup(3)).ok());
  for (int i = 0; i < 3 * kElection; ++i) n3->Tick();
  EXPECT_EQ(n3->state(), StateType::kFollower);
  EXPECT_EQ(n3->term(), 11u);
  EXPECT_TRUE(n3->msgs().empty());
}

}  // namespace
}  // namespace raftkv::raft
