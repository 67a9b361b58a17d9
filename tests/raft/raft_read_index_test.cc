// Tests for linearizable reads without log writes (Raft thesis §6.4):
// ReadIndex with a heartbeat round (ReadOnlyOption::kSafe), lease-based
// reads (kLeaseBased), the forwarding of a follower's request to the leader,
// RawNode's ReadIndex / Ready::read_states, and the ReadOnly queue that
// groups concurrent requests into rounds (src/raft/read_only.h).
#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "raft/config.h"
#include "raft/errors.h"
#include "raft/raft.h"
#include "raft/raw_node.h"
#include "raft/read_only.h"
#include "raft/storage.h"
#include "raft/types.h"
#include "test_util.h"

namespace raftkv::raft {

// Lets gtest print ReadStates in failure messages (found by ADL).
void PrintTo(const ReadState& rs, std::ostream* os) {
  *os << "{index=" << rs.index << " ctx=\"" << rs.request_ctx << "\"}";
}

namespace {

using raftpb::Message;
using raftpb::MessageType;
using test::MakeMsg;
using test::Network;
using test::NewTestRaft;
using test::PeerSpec;
using test::TestConfig;

// A read-index request as the application makes it: term 0, from 0.
Message ReadReq(std::string ctx, uint64_t to = kNone) {
  Message m;
  m.set_msg_type(raftpb::MsgReadIndex);
  m.set_to(to);
  m.set_context(std::move(ctx));
  return m;
}

Message ProposeMsg(uint64_t to, std::string data) {
  Message m = MakeMsg(to, to, raftpb::MsgPropose);
  m.add_entries()->set_data(std::move(data));
  return m;
}

Network NewNet(int n, const std::function<void(Config*)>& edit = {}) {
  std::vector<PeerSpec> specs;
  for (int i = 0; i < n; ++i) specs.push_back(PeerSpec::Fresh());
  return Network(std::move(specs), edit);
}

// A network of n fresh nodes in which node 1 was elected and committed
// `proposals` entries after its no-op (everything delivered).
Network ElectedNet(int n, int proposals = 2,
                   const std::function<void(Config*)>& edit = {}) {
  Network nt = NewNet(n, edit);
  nt.Send(MakeMsg(1, 1, raftpb::MsgHup));
  for (int i = 0; i < proposals; ++i) {
    nt.Send(ProposeMsg(1, "p" + std::to_string(i)));
  }
  return nt;
}

std::vector<Message> OfType(const std::vector<Message>& msgs, MessageType t) {
  std::vector<Message> out;
  for (const Message& m : msgs) {
    if (m.msg_type() == t) out.push_back(m);
  }
  return out;
}

// The heartbeat from `msgs` addressed to `to` (fails the test if there is
// not exactly one).
Message HeartbeatTo(const std::vector<Message>& msgs, uint64_t to) {
  Message found;
  int n = 0;
  for (const Message& m : msgs) {
    if (m.msg_type() == raftpb::MsgHeartbeat && m.to() == to) {
      found = m;
      ++n;
    }
  }
  EXPECT_EQ(n, 1) << "heartbeats to " << to;
  return found;
}

// Steps `m` on its recipient in `nt` and returns what the recipient says.
std::vector<Message> Deliver(Network& nt, const Message& m) {
  Raft* r = nt.raft(m.to());
  EXPECT_NE(r, nullptr);
  if (r == nullptr) return {};
  EXPECT_TRUE(r->Step(m).ok()) << DescribeMessage(m);
  return r->ReadMessages();
}

// Delivers the heartbeat `hb` to its follower and that follower's heartbeat
// response back to the leader `hb.from()`.
void RoundTrip(Network& nt, const Message& hb) {
  std::vector<Message> resp =
      OfType(Deliver(nt, hb), raftpb::MsgHeartbeatResponse);
  ASSERT_EQ(resp.size(), 1u) << DescribeMessage(hb);
  EXPECT_EQ(resp[0].context(), hb.context());
  ASSERT_TRUE(nt.raft(hb.from())->Step(resp[0]).ok());
}

// ---- Leader, kSafe ----

// Thesis §6.4, step 3: the leader records its commit index as the read index,
// then sends a heartbeat round; only once a majority acknowledged it does it
// know it was still the leader when the request arrived.
TEST(RaftReadIndexTest, LeaderReadAnsweredAfterQuorumEchoesHeartbeat) {
  Network nt = ElectedNet(3, 2);
  Raft* r1 = nt.raft(1);
  ASSERT_EQ(r1->state(), StateType::kLeader);
  const uint64_t commit = r1->raft_log().committed();
  ASSERT_EQ(commit, 3u);  // no-op + 2 proposals

  ASSERT_TRUE(r1->Step(ReadReq("ctx-1")).ok());
  EXPECT_TRUE(r1->read_states().empty()) << "answered before any heartbeat";
  std::vector<Message> msgs = r1->ReadMessages();
  std::vector<Message> hbs = OfType(msgs, raftpb::MsgHeartbeat);
  ASSERT_EQ(hbs.size(), 2u);
  for (const Message& hb : hbs) {
    EXPECT_FALSE(hb.context().empty()) << "heartbeat of a read round has ctx";
    EXPECT_EQ(hb.context(), hbs[0].context());
    EXPECT_EQ(hb.term(), r1->term());
  }

  // The heartbeats reach the followers; their answers are not back yet.
  std::vector<Message> resp2 =
      OfType(Deliver(nt, HeartbeatTo(msgs, 2)), raftpb::MsgHeartbeatResponse);
  std::vector<Message> resp3 =
      OfType(Deliver(nt, HeartbeatTo(msgs, 3)), raftpb::MsgHeartbeatResponse);
  ASSERT_EQ(resp2.size(), 1u);
  ASSERT_EQ(resp3.size(), 1u);
  EXPECT_TRUE(r1->read_states().empty());

  // One echo + the leader itself = a quorum of 3.
  ASSERT_TRUE(r1->Step(resp2[0]).ok());
  std::vector<ReadState> want = {ReadState{commit, "ctx-1"}};
  EXPECT_EQ(r1->read_states(), want);
  EXPECT_EQ(r1->read_only().PendingCount(), 0u);

  // The second echo of the same, already answered round adds nothing.
  ASSERT_TRUE(r1->Step(resp3[0]).ok());
  EXPECT_EQ(r1->read_states(), want);
}

// Thesis §6.4: a follower asks the leader for the read index; the leader
// confirms its leadership and returns its commit index, which the follower
// uses (it then waits to apply up to it).
TEST(RaftReadIndexTest, FollowerRequestIsForwardedAndAnsweredWithLeaderCommit) {
  Network nt = ElectedNet(3, 1);
  Raft* r1 = nt.raft(1);
  Raft* r2 = nt.raft(2);
  // Let node 2 fall behind on commit: it does not hear the next appends.
  nt.SetMsgHook([](const Message& m) {
    return !(m.msg_type() == raftpb::MsgAppend && m.to() == 2);
  });
  nt.Send(ProposeMsg(1, "x"));
  nt.SetMsgHook({});
  const uint64_t leader_commit = r1->raft_log().committed();
  ASSERT_EQ(leader_commit, 3u);
  ASSERT_LT(r2->raft_log().committed(), leader_commit);

  ASSERT_TRUE(r2->Step(ReadReq("f-ctx")).ok());
  EXPECT_TRUE(r2->read_states().empty());
  std::vector<Message> fwd = r2->ReadMessages();
  ASSERT_EQ(fwd.size(), 1u);
  EXPECT_EQ(fwd[0].msg_type(), raftpb::MsgReadIndex);
  EXPECT_EQ(fwd[0].to(), 1u);
  EXPECT_EQ(fwd[0].from(), 2u);
  EXPECT_EQ(fwd[0].term(), 0u) << "forwarded reads carry no term";
  EXPECT_EQ(fwd[0].context(), "f-ctx");

  nt.Send(fwd);
  std::vector<ReadState> want = {ReadState{leader_commit, "f-ctx"}};
  EXPECT_EQ(r2->read_states(), want);
  EXPECT_TRUE(r1->read_states().empty())
      << "the leader answers a follower's request with a message, not a "
         "ReadState of its own";
}

// The leader's side of a follower's request: the answer, a
// MsgReadIndexResponse, leaves only after the round is confirmed.
TEST(RaftReadIndexTest, FollowerRequestAnsweredOnlyAfterTheRound) {
  Network nt = ElectedNet(3, 1);
  Raft* r1 = nt.raft(1);
  const uint64_t commit = r1->raft_log().committed();
  Message req = ReadReq("from-3", 1);
  req.set_from(3);
  ASSERT_TRUE(r1->Step(req).ok());
  std::vector<Message> msgs = r1->ReadMessages();
  EXPECT_TRUE(OfType(msgs, raftpb::MsgReadIndexResponse).empty());
  ASSERT_EQ(OfType(msgs, raftpb::MsgHeartbeat).size(), 2u);

  RoundTrip(nt, HeartbeatTo(msgs, 2));
  std::vector<Message> resps =
      OfType(r1->ReadMessages(), raftpb::MsgReadIndexResponse);
  ASSERT_EQ(resps.size(), 1u);
  EXPECT_EQ(resps[0].to(), 3u);
  EXPECT_EQ(resps[0].index(), commit);
  EXPECT_EQ(resps[0].context(), "from-3");
  EXPECT_EQ(resps[0].term(), r1->term());
  EXPECT_TRUE(r1->read_states().empty());
}

// Thesis §6.4 (batching): requests that arrive while the round's heartbeats
// have not left the leader share that one round, and each is answered with
// its own context, in arrival order.
TEST(RaftReadIndexTest, ConcurrentRequestsShareOneHeartbeatRound) {
  Network nt = ElectedNet(3, 1);
  Raft* r1 = nt.raft(1);
  const uint64_t commit = r1->raft_log().committed();
  const int kReads = 5;
  for (int i = 0; i < kReads; ++i) {
    ASSERT_TRUE(r1->Step(ReadReq("r" + std::to_string(i))).ok());
  }
  std::vector<Message> msgs = r1->ReadMessages();
  std::map<uint64_t, int> heartbeats;
  for (const Message& m : OfType(msgs, raftpb::MsgHeartbeat)) {
    ++heartbeats[m.to()];
  }
  EXPECT_EQ(heartbeats, (std::map<uint64_t, int>{{2, 1}, {3, 1}}))
      << "one heartbeat per follower for the whole batch";
  EXPECT_TRUE(r1->read_states().empty());

  RoundTrip(nt, HeartbeatTo(msgs, 3));
  std::vector<ReadState> want;
  for (int i = 0; i < kReads; ++i) {
    want.push_back(ReadState{commit, "r" + std::to_string(i)});
  }
  EXPECT_EQ(r1->read_states(), want);
}

// Each request's read index is the commit index when it arrived, even when
// requests with different indexes share a round.
TEST(RaftReadIndexTest, EachRequestKeepsTheCommitIndexAtItsArrival) {
  Network nt = ElectedNet(3, 1);
  Raft* r1 = nt.raft(1);
  const uint64_t c0 = r1->raft_log().committed();
  ASSERT_TRUE(r1->Step(ProposeMsg(1, "y")).ok());
  ASSERT_TRUE(r1->Step(ReadReq("before")).ok());
  // Node 2 acknowledges the new entry: it commits at the leader.
  Message app;
  for (const Message& m : r1->msgs()) {
    if (m.msg_type() == raftpb::MsgAppend && m.to() == 2) app = m;
  }
  ASSERT_EQ(app.entries_size(), 1) << "append of the proposal to 2";
  ASSERT_TRUE(r1->Step(test::AcceptAndReply(app)).ok());
  ASSERT_EQ(r1->raft_log().committed(), c0 + 1);
  ASSERT_TRUE(r1->Step(ReadReq("after")).ok());

  std::vector<Message> msgs = r1->ReadMessages();
  ASSERT_EQ(OfType(msgs, raftpb::MsgHeartbeat).size(), 2u)
      << "both requests share the round";
  RoundTrip(nt, HeartbeatTo(msgs, 2));
  std::vector<ReadState> want = {ReadState{c0, "before"},
                                 ReadState{c0 + 1, "after"}};
  EXPECT_EQ(r1->read_states(), want);
}

// A request that arrives after the round's heartbeats were handed out can
// not be covered by that round (its echoes may predate the request): it
// opens a new one.
TEST(RaftReadIndexTest, RequestAfterHeartbeatsLeftOpensNewRound) {
  Network nt = ElectedNet(3, 1);
  Raft* r1 = nt.raft(1);
  const uint64_t commit = r1->raft_log().committed();
  ASSERT_TRUE(r1->Step(ReadReq("a")).ok());
  std::vector<Message> round1 = r1->ReadMessages();
  ASSERT_TRUE(r1->Step(ReadReq("b")).ok());
  std::vector<Message> round2 = r1->ReadMessages();
  ASSERT_EQ(OfType(round1, raftpb::MsgHeartbeat).size(), 2u);
  ASSERT_EQ(OfType(round2, raftpb::MsgHeartbeat).size(), 2u)
      << "a new round is broadcast";
  Message hb1 = HeartbeatTo(round1, 2);
  Message hb2 = HeartbeatTo(round2, 2);
  EXPECT_NE(hb1.context(), hb2.context());

  RoundTrip(nt, hb1);
  EXPECT_EQ(r1->read_states(), (std::vector<ReadState>{ReadState{commit, "a"}}))
      << "the first round answers only its own request";
  RoundTrip(nt, hb2);
  EXPECT_EQ(
      r1->read_states(),
      (std::vector<ReadState>{ReadState{commit, "a"}, ReadState{commit, "b"}}));
}

// An echo of a later round shows the follower still followed this leader
// after the earlier rounds began, so it confirms them too.
TEST(RaftReadIndexTest, AckOfLaterRoundAnswersEarlierRounds) {
  Network nt = ElectedNet(3, 1);
  Raft* r1 = nt.raft(1);
  const uint64_t commit = r1->raft_log().committed();
  ASSERT_TRUE(r1->Step(ReadReq("a")).ok());
  std::vector<Message> round1 = r1->ReadMessages();
  ASSERT_TRUE(r1->Step(ReadReq("b")).ok());
  std::vector<Message> round2 = r1->ReadMessages();

  RoundTrip(nt, HeartbeatTo(round2, 3));
  std::vector<ReadState> want = {ReadState{commit, "a"},
                                 ReadState{commit, "b"}};
  EXPECT_EQ(r1->read_states(), want);
  EXPECT_EQ(r1->read_only().PendingCount(), 0u);
  // The late echo of round 1 answers nothing twice.
  RoundTrip(nt, HeartbeatTo(round1, 3));
  EXPECT_EQ(r1->read_states(), want);
}

// The periodic heartbeat repeats the newest pending round, so a round whose
// heartbeats were all lost is still confirmed.
TEST(RaftReadIndexTest, LostRoundIsConfirmedByTheNextHeartbeat) {
  Network nt = ElectedNet(3, 1);
  Raft* r1 = nt.raft(1);
  const uint64_t commit = r1->raft_log().committed();
  ASSERT_TRUE(r1->Step(ReadReq("lost")).ok());
  std::vector<Message> lost = r1->ReadMessages();  // never delivered
  ASSERT_TRUE(r1->Step(MakeMsg(1, 1, raftpb::MsgBeat)).ok());
  std::vector<Message> beat = r1->ReadMessages();
  Message hb = HeartbeatTo(beat, 2);
  EXPECT_EQ(hb.context(), HeartbeatTo(lost, 2).context());
  EXPECT_TRUE(r1->read_states().empty());
  RoundTrip(nt, hb);
  EXPECT_EQ(r1->read_states(),
            (std::vector<ReadState>{ReadState{commit, "lost"}}));
}

// Thesis §6.4, step 1: a new leader does not know the latest commit index
// until it commits an entry of its own term (its no-op), so it holds reads
// until then; otherwise it could hand out an index older than a write an
// earlier leader already acknowledged.
class RaftReadIndexNewLeaderTest
    : public ::testing::TestWithParam<ReadOnlyOption> {};

TEST_P(RaftReadIndexNewLeaderTest, WaitsUntilNoopCommits) {
  const ReadOnlyOption opt = GetParam();
  Network nt = NewNet(3, [opt](Config* c) {
    c->read_only_option = opt;
    c->check_quorum = opt == ReadOnlyOption::kLeaseBased;
  });
  // Hold back the no-op's commit: no append acknowledgement gets through.
  int read_heartbeats = 0;
  bool drop_acks = true;
  nt.SetMsgHook([&](const Message& m) {
    if (m.msg_type() == raftpb::MsgHeartbeat && !m.context().empty()) {
      ++read_heartbeats;
    }
    return !(drop_acks && m.msg_type() == raftpb::MsgAppendResponse);
  });
  nt.Send(MakeMsg(1, 1, raftpb::MsgHup));
  Raft* r1 = nt.raft(1);
  ASSERT_EQ(r1->state(), StateType::kLeader);
  ASSERT_EQ(r1->raft_log().committed(), 0u);
  ASSERT_EQ(r1->raft_log().last_index(), 1u);

  ASSERT_TRUE(r1->Step(ReadReq("early")).ok());
  EXPECT_TRUE(OfType(r1->msgs(), raftpb::MsgHeartbeat).empty())
      << "no read round before the no-op commits";
  nt.Send(r1->ReadMessages());
  // A follower's request waits at the leader as well.
  Raft* r2 = nt.raft(2);
  ASSERT_EQ(r2->lead(), 1u);
  ASSERT_TRUE(r2->Step(ReadReq("early-f")).ok());
  nt.Send(r2->ReadMessages());
  EXPECT_TRUE(r2->read_states().empty());
  // Heartbeats answered by every follower still do not release the read.
  nt.Send(MakeMsg(1, 1, raftpb::MsgBeat));
  EXPECT_EQ(r1->raft_log().committed(), 0u);
  EXPECT_TRUE(r1->read_states().empty());
  EXPECT_EQ(read_heartbeats, 0);

  drop_acks = false;
  nt.Send(MakeMsg(1, 1, raftpb::MsgBeat));
  ASSERT_EQ(r1->raft_log().committed(), 1u);
  EXPECT_EQ(r1->read_states(), (std::vector<ReadState>{ReadState{1, "early"}}));
  EXPECT_EQ(r2->read_states(),
            (std::vector<ReadState>{ReadState{1, "early-f"}}));
  if (opt == ReadOnlyOption::kSafe) {
    EXPECT_EQ(read_heartbeats, 2)
        << "both requests share one round once released";
  } else {
    EXPECT_EQ(read_heartbeats, 0) << "a lease read needs no round";
  }
}

INSTANTIATE_TEST_SUITE_P(Options, RaftReadIndexNewLeaderTest,
                         ::testing::Values(ReadOnlyOption::kSafe,
                                           ReadOnlyOption::kLeaseBased),
                         [](const ::testing::TestParamInfo<ReadOnlyOption>& p) {
                           return std::string(p.param == ReadOnlyOption::kSafe
                                                  ? "Safe"
                                                  : "LeaseBased");
                         });

// A group of one needs nobody to confirm its leadership.
TEST(RaftReadIndexTest, SingleNodeAnswersAtOnce) {
  test::TestRaft t = NewTestRaft(1, {1}, 10, 1);
  ASSERT_TRUE(t->Step(MakeMsg(1, 1, raftpb::MsgHup)).ok());
  ASSERT_EQ(t->state(), StateType::kLeader);
  ASSERT_TRUE(t->Step(ProposeMsg(1, "v")).ok());
  ASSERT_EQ(t->raft_log().committed(), 2u);
  t->ReadMessages();
  ASSERT_TRUE(t->Step(ReadReq("solo")).ok());
  EXPECT_EQ(t->read_states(), (std::vector<ReadState>{ReadState{2, "solo"}}));
  EXPECT_TRUE(t->msgs().empty());
}

// Without a leader there is nobody to confirm a read index: the request is
// refused at once rather than kept.
TEST(RaftReadIndexTest, NoLeaderRefusesReadIndex) {
  struct Case {
    std::string name;
    bool pre_vote;
    bool campaign;
    StateType want_state;
  };
  const std::vector<Case> cases = {
      {"follower without leader", false, false, StateType::kFollower},
      {"candidate", false, true, StateType::kCandidate},
      {"pre-candidate", true, true, StateType::kPreCandidate},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    MemoryStorage s;
    Config cfg = TestConfig(1, {1, 2, 3}, 10, 1, &s);
    cfg.pre_vote = c.pre_vote;
    auto rn = RawNode::Create(cfg);
    ASSERT_TRUE(rn.ok()) << rn.status();
    RawNode& node = **rn;
    if (c.campaign) node.Campaign();
    ASSERT_EQ(node.raft().state(), c.want_state);
    ASSERT_EQ(node.raft().lead(), kNone);
    size_t msgs_before = node.raft().msgs().size();
    absl::Status st = node.ReadIndex("nope");
    EXPECT_TRUE(IsError(st, ErrorKind::kProposalDropped)) << st;
    EXPECT_EQ(node.raft().msgs().size(), msgs_before) << "nothing forwarded";
    EXPECT_TRUE(node.raft().read_states().empty());
    // Also when stepped as a message.
    st = node.raft().Step(ReadReq("nope2"));
    EXPECT_TRUE(IsError(st, ErrorKind::kProposalDropped)) << st;
  }
}

// A leader cut off from the majority cannot confirm it still leads; the
// majority elects a new leader and commits new writes, so answering with the
// old leader's commit index would be a stale read. It must never answer.
TEST(RaftReadIndexTest, PartitionedLeaderNeverAnswers) {
  Network nt = ElectedNet(3, 1);
  Raft* r1 = nt.raft(1);
  nt.Isolate(1);
  ASSERT_TRUE(r1->Step(ReadReq("stale?")).ok());
  r1->ReadMessages();  // lost in the partition

  nt.Send(MakeMsg(2, 2, raftpb::MsgHup));
  ASSERT_EQ(nt.raft(2)->state(), StateType::kLeader);
  nt.Send(ProposeMsg(2, "new write"));
  ASSERT_GT(nt.raft(2)->raft_log().committed(), r1->raft_log().committed());

  for (int i = 0; i < 50; ++i) {
    r1->Tick();
    r1->ReadMessages();  // every heartbeat is lost
  }
  EXPECT_EQ(r1->state(), StateType::kLeader) << "no check_quorum here";
  EXPECT_TRUE(r1->read_states().empty());

  // The partition heals: the old leader learns the new term and steps down
  // without ever answering.
  nt.Recover();
  ASSERT_TRUE(r1->Step(MakeMsg(1, 1, raftpb::MsgBeat)).ok());
  nt.Send(r1->ReadMessages());
  EXPECT_EQ(r1->state(), StateType::kFollower);
  EXPECT_TRUE(r1->read_states().empty());
  EXPECT_EQ(r1->read_only().PendingCount(), 0u);
}

// Reads waiting at a leader are dropped when it steps down, and echoes of
// their round that arrive later (even after it leads again) answer nothing.
TEST(RaftReadIndexTest, PendingReadsVanishWhenLeaderStepsDown) {
  Network nt = ElectedNet(3, 1);
  Raft* r1 = nt.raft(1);
  ASSERT_TRUE(r1->Step(ReadReq("doomed")).ok());
  std::vector<Message> round = r1->ReadMessages();
  ASSERT_EQ(r1->read_only().PendingCount(), 1u);
  Message hb2 = HeartbeatTo(round, 2);

  // Node 3 campaigns at a higher term; node 1 steps down and votes for it.
  Message vote = MakeMsg(3, 1, raftpb::MsgRequestVote, r1->term() + 1);
  vote.set_index(r1->raft_log().last_index());
  vote.set_log_term(r1->raft_log().LastTerm());
  ASSERT_TRUE(r1->Step(vote).ok());
  ASSERT_EQ(r1->state(), StateType::kFollower);
  EXPECT_EQ(r1->read_only().PendingCount(), 0u);
  r1->ReadMessages();

  // The echo of the old round comes back (at the old term).
  std::vector<Message> resp =
      OfType(Deliver(nt, hb2), raftpb::MsgHeartbeatResponse);
  ASSERT_EQ(resp.size(), 1u);
  ASSERT_TRUE(r1->Step(resp[0]).ok());
  EXPECT_TRUE(r1->read_states().empty());

  // Node 1 leads again; the old round's context still answers nothing.
  nt.Send(MakeMsg(1, 1, raftpb::MsgHup));
  ASSERT_EQ(r1->state(), StateType::kLeader);
  Message late = MakeMsg(2, 1, raftpb::MsgHeartbeatResponse, r1->term());
  late.set_context(hb2.context());
  ASSERT_TRUE(r1->Step(late).ok());
  late.set_from(3);
  ASSERT_TRUE(r1->Step(late).ok());
  EXPECT_TRUE(r1->read_states().empty());
}

// Leadership is confirmed by a majority of the voters, the leader included:
// in a group of 5, one echo (2 of 5) is not enough, nor is the same echo
// counted twice.
TEST(RaftReadIndexTest, EchoesBelowQuorumDoNotAnswer) {
  Network nt = ElectedNet(5, 1);
  Raft* r1 = nt.raft(1);
  const uint64_t commit = r1->raft_log().committed();
  ASSERT_TRUE(r1->Step(ReadReq("q")).ok());
  std::vector<Message> msgs = r1->ReadMessages();
  ASSERT_EQ(OfType(msgs, raftpb::MsgHeartbeat).size(), 4u);

  std::vector<Message> resp2 =
      OfType(Deliver(nt, HeartbeatTo(msgs, 2)), raftpb::MsgHeartbeatResponse);
  ASSERT_EQ(resp2.size(), 1u);
  ASSERT_TRUE(r1->Step(resp2[0]).ok());
  EXPECT_TRUE(r1->read_states().empty()) << "2 of 5";
  ASSERT_TRUE(r1->Step(resp2[0]).ok());
  EXPECT_TRUE(r1->read_states().empty()) << "a duplicate echo counts once";
  EXPECT_EQ(r1->read_only().PendingCount(), 1u);

  RoundTrip(nt, HeartbeatTo(msgs, 4));
  EXPECT_EQ(r1->read_states(), (std::vector<ReadState>{ReadState{commit, "q"}}))
      << "3 of 5";
}

// Only voters confirm leadership: a learner's echo does not count.
TEST(RaftReadIndexTest, LearnerEchoDoesNotCountTowardQuorum) {
  std::vector<PeerSpec> specs;
  for (uint64_t id = 1; id <= 4; ++id) {
    specs.push_back(PeerSpec::Node(NewTestRaft(
        id, {1, 2, 3}, 10, 1, nullptr, [](Config* c) { c->learners = {4}; })));
  }
  Network nt(std::move(specs));
  nt.Send(MakeMsg(1, 1, raftpb::MsgHup));
  Raft* r1 = nt.raft(1);
  ASSERT_EQ(r1->state(), StateType::kLeader);
  ASSERT_TRUE(r1->tracker().Get(4)->is_learner);
  const uint64_t commit = r1->raft_log().committed();
  ASSERT_EQ(commit, 1u);

  ASSERT_TRUE(r1->Step(ReadReq("l")).ok());
  std::vector<Message> msgs = r1->ReadMessages();
  ASSERT_EQ(OfType(msgs, raftpb::MsgHeartbeat).size(), 3u)
      << "learners get heartbeats too";
  RoundTrip(nt, HeartbeatTo(msgs, 4));
  EXPECT_TRUE(r1->read_states().empty()) << "leader + learner is no quorum";
  RoundTrip(nt, HeartbeatTo(msgs, 2));
  EXPECT_EQ(r1->read_states(),
            (std::vector<ReadState>{ReadState{commit, "l"}}));
}

// ---- kLeaseBased ----

void LeaseEdit(Config* c) {
  c->check_quorum = true;
  c->read_only_option = ReadOnlyOption::kLeaseBased;
}

// Thesis §6.4.1: with a leader lease (check_quorum bounds how long a deposed
// leader may believe it leads), the leader answers from its commit index at
// once, without a heartbeat round.
TEST(RaftReadIndexTest, LeaseBasedAnswersAtOnceWithoutRound) {
  Network nt = ElectedNet(3, 2, LeaseEdit);
  Raft* r1 = nt.raft(1);
  Raft* r2 = nt.raft(2);
  ASSERT_EQ(r1->state(), StateType::kLeader);
  const uint64_t commit = r1->raft_log().committed();
  ASSERT_EQ(commit, 3u);

  ASSERT_TRUE(r1->Step(ReadReq("lease")).ok());
  EXPECT_EQ(r1->read_states(),
            (std::vector<ReadState>{ReadState{commit, "lease"}}));
  EXPECT_TRUE(OfType(r1->msgs(), raftpb::MsgHeartbeat).empty());
  r1->ReadMessages();

  // A follower's request: forwarded and answered without a round either.
  int heartbeats = 0;
  nt.SetMsgHook([&](const Message& m) {
    heartbeats += m.msg_type() == raftpb::MsgHeartbeat;
    return true;
  });
  ASSERT_TRUE(r2->Step(ReadReq("lease-f")).ok());
  nt.Send(r2->ReadMessages());
  EXPECT_EQ(r2->read_states(),
            (std::vector<ReadState>{ReadState{commit, "lease-f"}}));
  EXPECT_EQ(heartbeats, 0);
}

TEST(RaftReadIndexTest, ConfigRejectsLeaseWithoutCheckQuorum) {
  MemoryStorage s;
  Config c = TestConfig(1, {1, 2, 3}, 10, 1, &s);
  c.read_only_option = ReadOnlyOption::kLeaseBased;
  c.check_quorum = false;
  EXPECT_TRUE(absl::IsInvalidArgument(c.Validate())) << c.Validate();
  EXPECT_FALSE(Raft::Create(c).ok());
  EXPECT_FALSE(RawNode::Create(c).ok());
  c.check_quorum = true;
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
  EXPECT_TRUE(Raft::Create(c).ok());
}

// ---- RawNode ----

void Persist(MemoryStorage* s, const Ready& rd) {
  if (!rd.entries.empty()) {
    ASSERT_TRUE(s->Append(rd.entries).ok());
  }
  if (!IsEmptyHardState(rd.hard_state)) s->SetHardState(rd.hard_state);
}

// RawNode::ReadIndex answers through Ready::read_states, once.
TEST(RaftReadIndexRawNodeTest, ReadyCarriesReadState) {
  MemoryStorage s;
  auto made = RawNode::Create(TestConfig(1, {1}, 10, 1, &s));
  ASSERT_TRUE(made.ok()) << made.status();
  RawNode& rn = **made;
  rn.Campaign();
  ASSERT_TRUE(rn.Propose("w").ok());
  for (int i = 0; i < 10 && rn.HasReady(); ++i) {
    Ready rd = rn.GetReady();
    Persist(&s, rd);
    EXPECT_TRUE(rd.read_states.empty());
    rn.Advance();
  }
  ASSERT_FALSE(rn.HasReady());
  const uint64_t commit = rn.raft().raft_log().committed();
  ASSERT_EQ(commit, 2u);

  ASSERT_TRUE(rn.ReadIndex("rn-ctx").ok());
  ASSERT_TRUE(rn.HasReady());
  Ready rd = rn.GetReady();
  EXPECT_EQ(rd.read_states,
            (std::vector<ReadState>{ReadState{commit, "rn-ctx"}}));
  rn.Advance();
  EXPECT_FALSE(rn.HasReady()) << "a read state is handed out once";
}

// A group of RawNodes driven as an application would (persist, send, apply,
// advance), recording each node's read states and applied index.
class RawCluster {
 public:
  explicit RawCluster(uint64_t n) {
    std::vector<uint64_t> peers;
    for (uint64_t id = 1; id <= n; ++id) peers.push_back(id);
    for (uint64_t id = 1; id <= n; ++id) {
      Node& node = nodes_[id];
      node.storage = std::make_unique<MemoryStorage>();
      auto rn =
          RawNode::Create(TestConfig(id, peers, 10, 1, node.storage.get()));
      EXPECT_TRUE(rn.ok()) << rn.status();
      if (rn.ok()) node.rn = std::move(rn).value();
    }
  }

  RawNode& rn(uint64_t id) { return *nodes_.at(id).rn; }
  const std::vector<ReadState>& reads(uint64_t id) {
    return nodes_.at(id).reads;
  }
  uint64_t applied(uint64_t id) { return nodes_.at(id).applied; }
  uint64_t MaxCommitted() {
    uint64_t c = 0;
    for (auto& [id, node] : nodes_) {
      c = std::max(c, node.rn->raft().raft_log().committed());
    }
    return c;
  }

  // Handles Readies and delivers messages until every node is quiet.
  void Pump() {
    for (int iter = 0; iter < 200; ++iter) {
      std::vector<Message> out;
      bool any = false;
      for (auto& [id, node] : nodes_) {
        if (!node.rn->HasReady()) continue;
        any = true;
        Ready rd = node.rn->GetReady();
        Persist(node.storage.get(), rd);
        for (const ReadState& rs : rd.read_states) node.reads.push_back(rs);
        for (const raftpb::Entry& e : rd.committed_entries) {
          node.applied = e.index();
        }
        for (Message& m : rd.messages) out.push_back(std::move(m));
        node.rn->Advance();
      }
      if (!any) return;
      for (Message& m : out) {
        auto it = nodes_.find(m.to());
        if (it != nodes_.end()) (void)it->second.rn->Step(std::move(m));
      }
    }
    ADD_FAILURE() << "the cluster never went quiet";
  }

 private:
  struct Node {
    std::unique_ptr<MemoryStorage> storage;
    std::unique_ptr<RawNode> rn;
    std::vector<ReadState> reads;
    uint64_t applied = 0;
  };
  std::map<uint64_t, Node> nodes_;
};

// Linearizability of ReadIndex (thesis §6.4): the index handed out covers
// every entry committed before the request was made, on the leader and on a
// follower, and the node can apply up to it.
TEST(RaftReadIndexRawNodeTest, ReadIndexCoversEveryEarlierCommit) {
  RawCluster c(3);
  c.rn(1).Campaign();
  c.Pump();
  ASSERT_EQ(c.rn(1).raft().state(), StateType::kLeader);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.rn(1).Propose("w" + std::to_string(i)).ok());
  }
  c.Pump();
  const uint64_t committed_before = c.MaxCommitted();
  ASSERT_EQ(committed_before, 4u);

  ASSERT_TRUE(c.rn(1).ReadIndex("leader").ok());
  ASSERT_TRUE(c.rn(3).ReadIndex("follower").ok());
  c.Pump();
  ASSERT_EQ(c.reads(1).size(), 1u);
  EXPECT_EQ(c.reads(1)[0].request_ctx, "leader");
  EXPECT_GE(c.reads(1)[0].index, committed_before);
  ASSERT_EQ(c.reads(3).size(), 1u);
  EXPECT_EQ(c.reads(3)[0].request_ctx, "follower");
  EXPECT_GE(c.reads(3)[0].index, committed_before);
  EXPECT_GE(c.applied(3), c.reads(3)[0].index)
      << "the follower applies up to its read index";
  EXPECT_TRUE(c.reads(2).empty());
}

// ---- ReadOnly ----

Message Req(const std::string& ctx) {
  Message m;
  m.set_msg_type(raftpb::MsgReadIndex);
  m.set_context(ctx);
  return m;
}

TEST(ReadOnlyTest, AddRequestJoinsOpenRoundOrOpensNewOne) {
  ReadOnly ro;
  bool opened = false;
  EXPECT_EQ(ro.LastPendingRound(), 0u);
  // Nothing to join yet: a round opens even when joining is allowed.
  uint64_t r1 = ro.AddRequest(5, Req("a"), /*join_open_round=*/true, &opened);
  EXPECT_TRUE(opened);
  EXPECT_NE(r1, 0u);
  EXPECT_EQ(ro.AddRequest(6, Req("b"), true, &opened), r1);
  EXPECT_FALSE(opened);
  uint64_t r2 = ro.AddRequest(7, Req("c"), false, &opened);
  EXPECT_TRUE(opened);
  EXPECT_GT(r2, r1);
  EXPECT_EQ(ro.AddRequest(8, Req("d"), true, &opened), r2)
      << "joins the newest round";
  EXPECT_FALSE(opened);
  EXPECT_EQ(ro.LastPendingRound(), r2);
  EXPECT_EQ(ro.PendingCount(), 4u);
}

TEST(ReadOnlyTest, RecvAckOfUnknownRoundReturnsNull) {
  ReadOnly ro;
  EXPECT_EQ(ro.RecvAck(2, 1), nullptr);
  bool opened = false;
  uint64_t r = ro.AddRequest(1, Req("a"), false, &opened);
  EXPECT_EQ(ro.RecvAck(2, r + 1), nullptr);
  EXPECT_EQ(ro.RecvAck(2, 0), nullptr);
  const std::set<uint64_t>* acks = ro.RecvAck(2, r);
  ASSERT_NE(acks, nullptr);
  EXPECT_EQ(*acks, (std::set<uint64_t>{2}));
  ro.Advance(r);
  EXPECT_EQ(ro.RecvAck(3, r), nullptr) << "an answered round is gone";
}

TEST(ReadOnlyTest, AckOfLaterRoundCountsForEarlierRounds) {
  ReadOnly ro;
  bool opened = false;
  uint64_t r1 = ro.AddRequest(1, Req("a"), false, &opened);
  uint64_t r2 = ro.AddRequest(2, Req("b"), false, &opened);
  uint64_t r3 = ro.AddRequest(3, Req("c"), false, &opened);
  const std::set<uint64_t>* acks = ro.RecvAck(2, r2);
  ASSERT_NE(acks, nullptr);
  EXPECT_EQ(*acks, (std::set<uint64_t>{2}));
  acks = ro.RecvAck(3, r1);
  ASSERT_NE(acks, nullptr);
  EXPECT_EQ(*acks, (std::set<uint64_t>{2, 3})) << "2's ack of r2 counts for r1";
  acks = ro.RecvAck(3, r3);
  ASSERT_NE(acks, nullptr);
  EXPECT_EQ(*acks, (std::set<uint64_t>{3})) << "an earlier ack says nothing";
}

TEST(ReadOnlyTest, AdvancePopsRequestsOfRoundsUpToInOrder) {
  ReadOnly ro;
  bool opened = false;
  uint64_t r1 = ro.AddRequest(5, Req("a"), false, &opened);
  ro.AddRequest(6, Req("b"), true, &opened);
  uint64_t r2 = ro.AddRequest(7, Req("c"), false, &opened);
  uint64_t r3 = ro.AddRequest(8, Req("d"), false, &opened);

  EXPECT_TRUE(ro.Advance(r1 - 1).empty());
  std::vector<ReadIndexStatus> out = ro.Advance(r2);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].req.context(), "a");
  EXPECT_EQ(out[0].index, 5u);
  EXPECT_EQ(out[0].round, r1);
  EXPECT_EQ(out[1].req.context(), "b");
  EXPECT_EQ(out[1].index, 6u);
  EXPECT_EQ(out[1].round, r1);
  EXPECT_EQ(out[2].req.context(), "c");
  EXPECT_EQ(out[2].index, 7u);
  EXPECT_EQ(out[2].round, r2);
  EXPECT_EQ(ro.PendingCount(), 1u);
  EXPECT_EQ(ro.LastPendingRound(), r3);
  EXPECT_TRUE(ro.Advance(r2).empty());

  out = ro.Advance(r3);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].req.context(), "d");
  EXPECT_EQ(ro.PendingCount(), 0u);
  EXPECT_EQ(ro.LastPendingRound(), 0u);
}

TEST(ReadOnlyTest, ResetDropsEverything) {
  ReadOnly ro;
  bool opened = false;
  uint64_t r = ro.AddRequest(5, Req("a"), false, &opened);
  ro.Reset();
  EXPECT_EQ(ro.PendingCount(), 0u);
  EXPECT_EQ(ro.LastPendingRound(), 0u);
  EXPECT_EQ(ro.RecvAck(2, r), nullptr);
  EXPECT_TRUE(ro.Advance(r).empty());
}

TEST(ReadOnlyTest, RoundContextRoundTrips) {
  for (uint64_t round :
       std::vector<uint64_t>{1, 255, 256, 0x0102030405060708ULL, UINT64_MAX}) {
    std::string ctx = ReadOnly::EncodeRound(round);
    EXPECT_EQ(ctx.size(), 8u);
    EXPECT_EQ(ReadOnly::DecodeRound(ctx), round);
  }
  EXPECT_EQ(ReadOnly::EncodeRound(0x0102030405060708ULL),
            std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8))
      << "big endian";
}

TEST(ReadOnlyTest, DecodeOfMalformedContextIsZero) {
  EXPECT_EQ(ReadOnly::DecodeRound(""), 0u);
  EXPECT_EQ(ReadOnly::DecodeRound("1234567"), 0u);
  EXPECT_EQ(ReadOnly::DecodeRound("123456789"), 0u);
}

}  // namespace
}  // namespace raftkv::raft
