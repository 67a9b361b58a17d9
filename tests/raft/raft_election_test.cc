// Leader election scenarios for the raft core (Raft paper §5.1 and §5.2),
// covering the election behaviours of TinyKV's Project 2AA suite and
// etcd/raft's election tests: term updates, timeouts and their randomization,
// vote granting, quorum counting, stepping down and split votes.

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <ostream>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "raft/raft.h"
#include "raft/storage.h"
#include "raft/types.h"
#include "test_util.h"

namespace raftkv::raft::test {
namespace {

using raftpb::Message;
using raftpb::MessageType;

constexpr int kElection = 10;
constexpr int kHeartbeat = 1;

// Steps `m` on `r`, failing the test on an error status.
void StepOk(Raft* r, Message m) {
  std::string what = DescribeMessage(m);
  absl::Status s = r->Step(std::move(m));
  EXPECT_TRUE(s.ok()) << what << ": " << s;
}

Message Hup(uint64_t id) { return MakeMsg(id, id, raftpb::MsgHup); }

// The fields of a message the election tests care about, in a form gtest can
// compare and print.
using MsgFields =
    std::tuple<MessageType, uint64_t /*from*/, uint64_t /*to*/,
               uint64_t /*term*/, uint64_t /*log_term*/, uint64_t /*index*/,
               uint64_t /*commit*/, bool /*reject*/, int /*entries*/>;

MsgFields Fields(const Message& m) {
  return {m.msg_type(), m.from(),   m.to(),     m.term(),        m.log_term(),
          m.index(),    m.commit(), m.reject(), m.entries_size()};
}

std::vector<MsgFields> FieldsSortedByTo(std::vector<Message> msgs) {
  std::vector<MsgFields> out;
  for (const Message& m : msgs) out.push_back(Fields(m));
  std::sort(out.begin(), out.end(), [](const MsgFields& a, const MsgFields& b) {
    return std::get<2>(a) < std::get<2>(b);
  });
  return out;
}

std::string Describe(const std::vector<Message>& msgs) {
  std::string s;
  for (const Message& m : msgs) s += DescribeMessage(m) + "\n";
  return s;
}

std::vector<uint64_t> PeersUpTo(uint64_t n) {
  std::vector<uint64_t> ids;
  for (uint64_t i = 1; i <= n; ++i) ids.push_back(i);
  return ids;
}

TestRaft NewNode(uint64_t id, std::vector<uint64_t> peers = {1, 2, 3}) {
  return NewTestRaft(id, std::move(peers), kElection, kHeartbeat);
}

// Ticks `r` until it has produced output, at most `limit` ticks. Returns the
// number of ticks taken (limit + 1 if nothing was produced).
int TicksUntilOutput(Raft* r, int limit) {
  for (int n = 1; n <= limit; ++n) {
    r->Tick();
    if (!r->msgs().empty()) return n;
  }
  return limit + 1;
}

// Ticks `r` until it is a candidate, at most 2 * election ticks. Returns
// whether it got there.
bool TickToCandidate(Raft* r) {
  for (int i = 0; i < 2 * kElection && r->state() != StateType::kCandidate;
       ++i) {
    r->Tick();
  }
  return r->state() == StateType::kCandidate;
}

std::string StateName(StateType s) { return std::string(StateTypeName(s)); }

// ---------------------------------------------------------------------------
// Term updates (§5.1): "If one server's current term is smaller than the
// other's, then it updates its current term to the larger value. If a
// candidate or leader discovers that its term is out of date, it immediately
// reverts to follower state."

enum class StartState { kFollower, kCandidate, kLeader };

std::string StartStateName(StartState s) {
  switch (s) {
    case StartState::kFollower:
      return "Follower";
    case StartState::kCandidate:
      return "Candidate";
    case StartState::kLeader:
      return "Leader";
  }
  return "?";
}

void PrintTo(StartState s, std::ostream* os) { *os << StartStateName(s); }

// Puts a fresh node 1 of {1,2,3} into `s` at term 1 and clears its output.
void MoveTo(Raft* r, StartState s) {
  switch (s) {
    case StartState::kFollower:
      r->BecomeFollower(1, 2);
      break;
    case StartState::kCandidate:
      r->BecomeCandidate();
      break;
    case StartState::kLeader:
      r->BecomeCandidate();
      r->BecomeLeader();
      break;
  }
  r->ReadMessages();
}

class UpdateTermFromMessageTest : public ::testing::TestWithParam<StartState> {
};

TEST_P(UpdateTermFromMessageTest, HigherTermAppendMakesFollowerOfThatTerm) {
  TestRaft n = NewNode(1);
  MoveTo(n.raft.get(), GetParam());
  ASSERT_EQ(n->term(), 1u);

  StepOk(n.raft.get(), MakeMsg(2, 1, raftpb::MsgAppend, 2));

  EXPECT_EQ(n->term(), 2u);
  EXPECT_EQ(n->state(), StateType::kFollower);
  // An append can only come from the leader of its term.
  EXPECT_EQ(n->lead(), 2u);
}

INSTANTIATE_TEST_SUITE_P(AllStates, UpdateTermFromMessageTest,
                         ::testing::Values(StartState::kFollower,
                                           StartState::kCandidate,
                                           StartState::kLeader),
                         [](const ::testing::TestParamInfo<StartState>& p) {
                           return StartStateName(p.param);
                         });

// ---------------------------------------------------------------------------
// §5.2: "When servers start up, they begin as followers."

TEST(RaftElectionTest, NewNodeStartsAsFollowerAtTermZero) {
  TestRaft n = NewNode(1);
  EXPECT_EQ(n->state(), StateType::kFollower);
  EXPECT_EQ(n->term(), 0u);
  EXPECT_EQ(n->vote(), kNone);
  EXPECT_EQ(n->lead(), kNone);
  EXPECT_TRUE(n->msgs().empty());
}

// §5.2: "Leaders send periodic heartbeats (AppendEntries RPCs that carry no
// log entries) to all followers in order to maintain their authority."
TEST(RaftElectionTest, LeaderBroadcastsHeartbeatOnHeartbeatTick) {
  TestRaft n = NewNode(1);
  n->BecomeCandidate();
  n->BecomeLeader();
  ASSERT_EQ(n->term(), 1u);
  Message prop = MakeMsg(1, 1, raftpb::MsgPropose);
  *prop.add_entries() = MakeEntry(0, 0, "somedata");
  StepOk(n.raft.get(), prop);
  n->ReadMessages();

  n->Tick();  // heartbeat_tick is 1

  // Nothing acknowledged yet: match is 0 for both followers, so commit is 0.
  std::vector<MsgFields> want = {
      {raftpb::MsgHeartbeat, 1, 2, 1, 0, 0, 0, false, 0},
      {raftpb::MsgHeartbeat, 1, 3, 1, 0, 0, 0, false, 0},
  };
  std::vector<Message> got = n->ReadMessages();
  EXPECT_EQ(FieldsSortedByTo(got), want) << Describe(got);
}

// §5.2: "If a follower receives no communication over a period of time called
// the election timeout, then it assumes there is no viable leader and begins
// an election ... it increments its current term and transitions to candidate
// state. It then votes for itself and issues RequestVote RPCs in parallel to
// each of the other servers." A candidate whose election times out does the
// same: "each candidate will time out and start a new election by
// incrementing its term and initiating another round of RequestVote RPCs."
class StartElectionTest : public ::testing::TestWithParam<StartState> {};

TEST_P(StartElectionTest, TimeoutStartsElectionAtNextTerm) {
  TestRaft n = NewNode(1);
  MoveTo(n.raft.get(), GetParam());
  ASSERT_EQ(n->term(), 1u);

  // The randomized timeout is below 2 * election, so this is always enough.
  for (int i = 0; i < 2 * kElection - 1; ++i) n->Tick();

  EXPECT_EQ(n->term(), 2u);
  EXPECT_EQ(n->state(), StateType::kCandidate);
  EXPECT_EQ(n->vote(), 1u);
  EXPECT_EQ(n->tracker().votes(), (std::map<uint64_t, bool>{{1, true}}));
  std::vector<MsgFields> want = {
      {raftpb::MsgRequestVote, 1, 2, 2, 0, 0, 0, false, 0},
      {raftpb::MsgRequestVote, 1, 3, 2, 0, 0, 0, false, 0},
  };
  std::vector<Message> got = n->ReadMessages();
  EXPECT_EQ(FieldsSortedByTo(got), want) << Describe(got);
}

INSTANTIATE_TEST_SUITE_P(FollowerAndCandidate, StartElectionTest,
                         ::testing::Values(StartState::kFollower,
                                           StartState::kCandidate),
                         [](const ::testing::TestParamInfo<StartState>& p) {
                           return StartStateName(p.param);
                         });

// §5.2: "A candidate wins an election if it receives votes from a majority of
// the servers in the full cluster for the same term." A candidate rejected by
// a majority cannot win and steps down (etcd); otherwise it keeps waiting.
struct OneRoundCase {
  uint64_t size;
  std::map<uint64_t, bool> votes;  // voter -> granted
  StateType want;
};

void PrintTo(const OneRoundCase& c, std::ostream* os) {
  *os << "size " << c.size << ", votes {";
  for (const auto& [id, granted] : c.votes) {
    *os << " " << id << (granted ? ":grant" : ":reject");
  }
  *os << " } -> " << StateName(c.want);
}

class ElectionInOneRoundTest : public ::testing::TestWithParam<OneRoundCase> {};

TEST_P(ElectionInOneRoundTest, OutcomeDependsOnMajority) {
  const OneRoundCase& c = GetParam();
  TestRaft n = NewNode(1, PeersUpTo(c.size));

  StepOk(n.raft.get(), Hup(1));
  for (const auto& [id, granted] : c.votes) {
    Message resp = MakeMsg(id, 1, raftpb::MsgRequestVoteResponse, n->term());
    resp.set_reject(!granted);
    StepOk(n.raft.get(), resp);
  }

  EXPECT_EQ(n->state(), c.want);
  EXPECT_EQ(n->term(), 1u);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ElectionInOneRoundTest,
    ::testing::Values(
        // Wins.
        OneRoundCase{1, {}, StateType::kLeader},
        OneRoundCase{3, {{2, true}, {3, true}}, StateType::kLeader},
        OneRoundCase{3, {{2, true}}, StateType::kLeader},
        OneRoundCase{5,
                     {{2, true}, {3, true}, {4, true}, {5, true}},
                     StateType::kLeader},
        OneRoundCase{5, {{2, true}, {3, true}, {4, true}}, StateType::kLeader},
        OneRoundCase{5, {{2, true}, {3, true}}, StateType::kLeader},
        // Rejected by a majority.
        OneRoundCase{3, {{2, false}, {3, false}}, StateType::kFollower},
        OneRoundCase{5,
                     {{2, false}, {3, false}, {4, false}, {5, false}},
                     StateType::kFollower},
        OneRoundCase{5,
                     {{2, true}, {3, false}, {4, false}, {5, false}},
                     StateType::kFollower},
        // Undecided.
        OneRoundCase{3, {}, StateType::kCandidate},
        OneRoundCase{5, {{2, true}}, StateType::kCandidate},
        OneRoundCase{5, {{2, false}, {3, false}}, StateType::kCandidate},
        OneRoundCase{5, {}, StateType::kCandidate}));

// §5.2: "Each server will vote for at most one candidate in a given term, on a
// first-come-first-served basis."
struct FollowerVoteCase {
  uint64_t vote;  // preset vote at term 1
  uint64_t from;  // requester
  bool want_reject;
};

void PrintTo(const FollowerVoteCase& c, std::ostream* os) {
  *os << "vote " << c.vote << ", request from " << c.from << " -> "
      << (c.want_reject ? "reject" : "grant");
}

class FollowerVoteTest : public ::testing::TestWithParam<FollowerVoteCase> {};

TEST_P(FollowerVoteTest, GrantsOnlyUnvotedOrSameCandidate) {
  const FollowerVoteCase& c = GetParam();
  TestRaft n = VotedWithConfig({}, 1, {1, 2, 3}, c.vote, 1);
  ASSERT_EQ(n->term(), 1u);
  ASSERT_EQ(n->vote(), c.vote);

  StepOk(n.raft.get(), MakeMsg(c.from, 1, raftpb::MsgRequestVote, 1));

  std::vector<Message> got = n->ReadMessages();
  std::vector<MsgFields> want = {{raftpb::MsgRequestVoteResponse, 1, c.from, 1,
                                  0, 0, 0, c.want_reject, 0}};
  EXPECT_EQ(FieldsSortedByTo(got), want) << Describe(got);
  // A granted vote is recorded; a rejection leaves the old vote in place.
  EXPECT_EQ(n->vote(), c.want_reject ? c.vote : c.from);
  EXPECT_EQ(n->term(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Cases, FollowerVoteTest,
                         ::testing::Values(FollowerVoteCase{kNone, 1, false},
                                           FollowerVoteCase{kNone, 2, false},
                                           FollowerVoteCase{1, 1, false},
                                           FollowerVoteCase{2, 2, false},
                                           FollowerVoteCase{1, 2, true},
                                           FollowerVoteCase{2, 1, true}));

// §5.2: "If the leader's term (included in its RPC) is at least as large as
// the candidate's current term, then the candidate recognizes the leader as
// legitimate and returns to follower state."
class CandidateFallbackTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(CandidateFallbackTest, AppendFromLeaderOfSameOrNewerTerm) {
  const uint64_t leader_term = GetParam();
  TestRaft n = NewNode(1);
  StepOk(n.raft.get(), Hup(1));
  ASSERT_EQ(n->state(), StateType::kCandidate);
  ASSERT_EQ(n->term(), 1u);

  StepOk(n.raft.get(), MakeMsg(2, 1, raftpb::MsgAppend, leader_term));

  EXPECT_EQ(n->state(), StateType::kFollower);
  EXPECT_EQ(n->term(), leader_term);
  EXPECT_EQ(n->lead(), 2u);
}

INSTANTIATE_TEST_SUITE_P(SameAndNewerTerm, CandidateFallbackTest,
                         ::testing::Values(1u, 2u));

// §5.2: "Raft uses randomized election timeouts to ensure that split votes
// are rare ... election timeouts are chosen randomly from a fixed interval."
// Here the interval is [election, 2 * election).
class ElectionTimeoutRandomizedTest
    : public ::testing::TestWithParam<StartState> {};

TEST_P(ElectionTimeoutRandomizedTest, CoversWholeIntervalAndNothingElse) {
  TestRaft n = NewNode(1);
  std::set<int> seen;
  for (int round = 0; round < 50 * kElection; ++round) {
    if (GetParam() == StartState::kFollower) {
      n->BecomeFollower(n->term() + 1, 2);
    } else {
      n->BecomeCandidate();
    }
    // Changing role sends nothing by itself.
    ASSERT_TRUE(n->msgs().empty()) << Describe(n->msgs());
    int ticks = TicksUntilOutput(n.raft.get(), 3 * kElection);
    ASSERT_GE(ticks, kElection) << "round " << round;
    ASSERT_LT(ticks, 2 * kElection) << "round " << round;
    seen.insert(ticks);
    n->ReadMessages();
  }
  for (int t = kElection; t < 2 * kElection; ++t) {
    EXPECT_TRUE(seen.count(t)) << "no election after exactly " << t
                               << " ticks in " << 50 * kElection << " rounds";
  }
}

INSTANTIATE_TEST_SUITE_P(FollowerAndCandidate, ElectionTimeoutRandomizedTest,
                         ::testing::Values(StartState::kFollower,
                                           StartState::kCandidate),
                         [](const ::testing::TestParamInfo<StartState>& p) {
                           return StartStateName(p.param);
                         });

// §5.2: randomized timeouts "spread out the servers so that in most cases
// only a single server will time out". With 5 nodes and 10 possible timeouts
// about 23% of rounds have a tie for the first timeout; allow up to 30%.
class ElectionTimeoutNonconflictTest
    : public ::testing::TestWithParam<StartState> {};

TEST_P(ElectionTimeoutNonconflictTest, RarelyTwoNodesTimeOutTogether) {
  constexpr int kSize = 5;
  constexpr int kRounds = 1000;
  std::vector<TestRaft> nodes;
  for (uint64_t id = 1; id <= kSize; ++id) {
    nodes.push_back(NewNode(id, PeersUpTo(kSize)));
  }

  int conflicts = 0;
  for (int round = 0; round < kRounds; ++round) {
    for (TestRaft& n : nodes) {
      if (GetParam() == StartState::kFollower) {
        n->BecomeFollower(n->term() + 1, kNone);
      } else {
        n->BecomeCandidate();
      }
    }
    int timed_out = 0;
    for (int tick = 0; tick < 2 * kElection && timed_out == 0; ++tick) {
      for (TestRaft& n : nodes) {
        n->Tick();
        if (!n->ReadMessages().empty()) ++timed_out;
      }
    }
    ASSERT_GT(timed_out, 0) << "round " << round << ": nobody timed out";
    if (timed_out > 1) ++conflicts;
  }
  EXPECT_LE(static_cast<double>(conflicts) / kRounds, 0.3)
      << conflicts << " conflicting rounds of " << kRounds;
}

INSTANTIATE_TEST_SUITE_P(FollowersAndCandidates, ElectionTimeoutNonconflictTest,
                         ::testing::Values(StartState::kFollower,
                                           StartState::kCandidate),
                         [](const ::testing::TestParamInfo<StartState>& p) {
                           return StartStateName(p.param);
                         });

// §5.2: a candidate wins with the votes of a majority of the full cluster;
// unreachable nodes (black holes) count against it. §5.4.1: a voter denies
// its vote to a candidate whose log is less up-to-date.
struct LeaderElectionCase {
  std::string name;
  std::function<Network()> make;
  StateType want;
  uint64_t want_term;
};

void PrintTo(const LeaderElectionCase& c, std::ostream* os) {
  *os << c.name << " -> " << StateName(c.want) << " at term " << c.want_term;
}

class LeaderElectionTest : public ::testing::TestWithParam<LeaderElectionCase> {
};

TEST_P(LeaderElectionTest, HupOnNodeOne) {
  Network net = GetParam().make();
  net.Send(Hup(1));
  EXPECT_EQ(net.raft(1)->state(), GetParam().want);
  EXPECT_EQ(net.raft(1)->term(), GetParam().want_term);
}

std::vector<PeerSpec> Specs(const std::string& layout) {
  std::vector<PeerSpec> specs;
  for (char c : layout) {
    specs.push_back(c == 'x' ? PeerSpec::BlackHole() : PeerSpec::Fresh());
  }
  return specs;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, LeaderElectionTest,
    ::testing::Values(
        LeaderElectionCase{"ThreeHealthy", [] { return Network(Specs("ooo")); },
                           StateType::kLeader, 1},
        LeaderElectionCase{"ThreeOneDown", [] { return Network(Specs("oox")); },
                           StateType::kLeader, 1},
        LeaderElectionCase{"FiveTwoDown",
                           [] { return Network(Specs("ooxxo")); },
                           StateType::kLeader, 1},
        LeaderElectionCase{"ThreeTwoDown", [] { return Network(Specs("oxx")); },
                           StateType::kCandidate, 1},
        LeaderElectionCase{"FourTwoDown", [] { return Network(Specs("oxxo")); },
                           StateType::kCandidate, 1},
        LeaderElectionCase{"StaleLogLosesToMajority",
                           [] {
                             // Node 1 has an empty log; nodes 2-4 hold term-1
                             // entries and refuse it; only node 5 grants.
                             // Rejected by a majority, it steps down at the
                             // term it campaigned in.
                             const std::vector<uint64_t> peers = PeersUpTo(5);
                             std::vector<PeerSpec> specs;
                             specs.push_back(PeerSpec::Fresh());
                             specs.push_back(PeerSpec::Node(
                                 EntsWithConfig({}, 2, peers, {1})));
                             specs.push_back(PeerSpec::Node(
                                 EntsWithConfig({}, 3, peers, {1})));
                             specs.push_back(PeerSpec::Node(
                                 EntsWithConfig({}, 4, peers, {1, 1})));
                             specs.push_back(PeerSpec::Fresh());
                             return Network(std::move(specs));
                           },
                           StateType::kFollower, 1}),
    [](const ::testing::TestParamInfo<LeaderElectionCase>& p) {
      return p.param.name;
    });

// Leadership moves around the group as each node campaigns in turn: every
// campaigner's log is as up-to-date as the others', so each one wins.
TEST(RaftElectionTest, LeaderCycle) {
  Network net(Specs("ooo"));
  for (uint64_t campaigner = 1; campaigner <= 3; ++campaigner) {
    net.Send(Hup(campaigner));
    for (uint64_t id = 1; id <= 3; ++id) {
      EXPECT_EQ(net.raft(id)->state(),
                id == campaigner ? StateType::kLeader : StateType::kFollower)
          << "campaigner " << campaigner << ", node " << id;
      EXPECT_EQ(net.raft(id)->lead(), campaigner)
          << "campaigner " << campaigner << ", node " << id;
    }
  }
}

// §5.1: a request with a newer term turns any server into a follower of that
// term; §5.2/§5.4.1: it then grants its vote to an up-to-date candidate.
class VoteFromAnyStateTest : public ::testing::TestWithParam<StartState> {};

TEST_P(VoteFromAnyStateTest, NewerTermVoteRequestIsGranted) {
  TestRaft n = NewNode(1);
  n->BecomeFollower(1, kNone);
  switch (GetParam()) {
    case StartState::kFollower:
      n->BecomeFollower(1, 3);
      break;
    case StartState::kCandidate:
      n->BecomeCandidate();
      break;
    case StartState::kLeader:
      n->BecomeCandidate();
      n->BecomeLeader();
      break;
  }
  n->ReadMessages();
  const uint64_t new_term = n->term() + 1;

  Message req = MakeMsg(2, 1, raftpb::MsgRequestVote, new_term);
  req.set_log_term(new_term);
  req.set_index(42);
  StepOk(n.raft.get(), req);

  std::vector<Message> got = n->ReadMessages();
  ASSERT_EQ(got.size(), 1u) << Describe(got);
  EXPECT_EQ(got[0].msg_type(), raftpb::MsgRequestVoteResponse);
  EXPECT_EQ(got[0].to(), 2u);
  EXPECT_EQ(got[0].term(), new_term);
  EXPECT_FALSE(got[0].reject());
  EXPECT_EQ(n->state(), StateType::kFollower);
  EXPECT_EQ(n->term(), new_term);
  EXPECT_EQ(n->vote(), 2u);
}

INSTANTIATE_TEST_SUITE_P(AllStates, VoteFromAnyStateTest,
                         ::testing::Values(StartState::kFollower,
                                           StartState::kCandidate,
                                           StartState::kLeader),
                         [](const ::testing::TestParamInfo<StartState>& p) {
                           return StartStateName(p.param);
                         });

// A group of one is its own majority: campaigning makes it leader at once.
TEST(RaftElectionTest, SingleNodeCandidateBecomesLeader) {
  Network net(Specs("o"));
  net.Send(Hup(1));
  EXPECT_EQ(net.raft(1)->state(), StateType::kLeader);
  EXPECT_EQ(net.raft(1)->term(), 1u);
}

// §5.2: a candidate that hears from the current leader (term at least its
// own) returns to follower and adopts the leader's term. Node 3, cut off
// while the others moved on to term 3, times out to a candidate of a smaller
// term; the leader's heartbeat or append must bring it back.
class CandidateResetTermTest : public ::testing::TestWithParam<MessageType> {};

TEST_P(CandidateResetTermTest, LeaderMessageTurnsStaleCandidateToFollower) {
  Network net(Specs("ooo"));
  Raft* a = net.raft(1);
  Raft* b = net.raft(2);
  Raft* c = net.raft(3);

  net.Send(Hup(1));
  ASSERT_EQ(a->state(), StateType::kLeader);
  ASSERT_EQ(b->state(), StateType::kFollower);
  ASSERT_EQ(c->state(), StateType::kFollower);

  net.Isolate(3);
  net.Send(Hup(2));
  net.Send(Hup(1));
  ASSERT_EQ(a->state(), StateType::kLeader);
  ASSERT_EQ(b->state(), StateType::kFollower);
  ASSERT_EQ(a->term(), 3u);

  // Node 3 times out; its vote requests stay queued on it.
  ASSERT_TRUE(TickToCandidate(c));
  ASSERT_LT(c->term(), a->term());

  net.Recover();
  net.Send(MakeMsg(1, 3, GetParam(), a->term()));

  EXPECT_EQ(c->state(), StateType::kFollower);
  EXPECT_EQ(c->term(), a->term());
  EXPECT_EQ(c->lead(), 1u);
  // Its stale vote requests did not disturb the leader.
  EXPECT_EQ(a->state(), StateType::kLeader);
  EXPECT_EQ(a->term(), 3u);
}

INSTANTIATE_TEST_SUITE_P(HeartbeatAndAppend, CandidateResetTermTest,
                         ::testing::Values(raftpb::MsgHeartbeat,
                                           raftpb::MsgAppend),
                         [](const ::testing::TestParamInfo<MessageType>& p) {
                           return raftpb::MessageType_Name(p.param);
                         });

// A follower that times out just before the leader's (delayed) heartbeat
// arrives becomes a candidate of a newer term. The heartbeat carries the old
// term, so the candidate does not step down; instead the newer term (its vote
// requests, or a response to the heartbeat) reaches the leader, which must
// step down to follower at that term (§5.1).
TEST(RaftElectionTest, DisruptiveFollowerForcesLeaderToNewTerm) {
  std::vector<PeerSpec> specs;
  for (uint64_t id = 1; id <= 3; ++id) {
    TestRaft n = NewNode(id);
    n->BecomeFollower(1, kNone);
    specs.push_back(PeerSpec::Node(std::move(n)));
  }
  Network net(std::move(specs));
  Raft* n1 = net.raft(1);
  Raft* n2 = net.raft(2);
  Raft* n3 = net.raft(3);

  net.Send(Hup(1));
  ASSERT_EQ(n1->state(), StateType::kLeader);
  ASSERT_EQ(n2->state(), StateType::kFollower);
  ASSERT_EQ(n3->state(), StateType::kFollower);
  ASSERT_EQ(n1->term(), 2u);

  ASSERT_TRUE(TickToCandidate(n3));
  ASSERT_FALSE(n3->msgs().empty());  // queued vote requests

  EXPECT_EQ(n1->state(), StateType::kLeader);
  EXPECT_EQ(n1->term(), 2u);
  EXPECT_EQ(n2->term(), 2u);
  EXPECT_EQ(n3->term(), 3u);

  net.Send(MakeMsg(1, 3, raftpb::MsgHeartbeat, n1->term()));

  EXPECT_EQ(n1->state(), StateType::kFollower);
  EXPECT_EQ(n1->term(), 3u);
  EXPECT_EQ(n3->term(), 3u);
}

// MsgBeat asks a leader to heartbeat every follower; other roles ignore it.
struct BeatCase {
  StartState state;
  size_t want_heartbeats;
};

void PrintTo(const BeatCase& c, std::ostream* os) {
  *os << StartStateName(c.state) << " -> " << c.want_heartbeats
      << " heartbeats";
}

class RecvBeatTest : public ::testing::TestWithParam<BeatCase> {};

TEST_P(RecvBeatTest, OnlyLeaderSendsHeartbeats) {
  TestRaft n = NewNode(1);
  MoveTo(n.raft.get(), GetParam().state);

  StepOk(n.raft.get(), MakeMsg(1, 1, raftpb::MsgBeat));

  std::vector<Message> got = n->ReadMessages();
  ASSERT_EQ(got.size(), GetParam().want_heartbeats) << Describe(got);
  std::set<uint64_t> to;
  for (const Message& m : got) {
    EXPECT_EQ(m.msg_type(), raftpb::MsgHeartbeat) << DescribeMessage(m);
    EXPECT_EQ(m.term(), n->term()) << DescribeMessage(m);
    to.insert(m.to());
  }
  if (GetParam().want_heartbeats > 0) {
    EXPECT_EQ(to, (std::set<uint64_t>{2, 3}));
  }
}

INSTANTIATE_TEST_SUITE_P(AllStates, RecvBeatTest,
                         ::testing::Values(BeatCase{StartState::kLeader, 2},
                                           BeatCase{StartState::kCandidate, 0},
                                           BeatCase{StartState::kFollower, 0}),
                         [](const ::testing::TestParamInfo<BeatCase>& p) {
                           return StartStateName(p.param.state);
                         });

// Campaigning as a leader is a no-op: no new term, no lost leadership.
TEST(RaftElectionTest, CampaignWhileLeaderKeepsLeadershipAndTerm) {
  TestRaft n = NewNode(1, {1});
  EXPECT_EQ(n->state(), StateType::kFollower);

  StepOk(n.raft.get(), Hup(1));
  ASSERT_EQ(n->state(), StateType::kLeader);
  const uint64_t term = n->term();

  StepOk(n.raft.get(), Hup(1));
  EXPECT_EQ(n->state(), StateType::kLeader);
  EXPECT_EQ(n->term(), term);
}

// §5.2: "if many followers become candidates at the same time, votes could be
// split so that no candidate obtains a majority. When this happens, each
// candidate will time out and start a new election by incrementing its term."
TEST(RaftElectionTest, SplitVoteResolvedByNextElection) {
  std::vector<PeerSpec> specs;
  for (uint64_t id = 1; id <= 3; ++id) {
    TestRaft n = NewNode(id);
    n->BecomeFollower(1, kNone);
    specs.push_back(PeerSpec::Node(std::move(n)));
  }
  Network net(std::move(specs));
  net.Send(Hup(1));
  ASSERT_EQ(net.raft(1)->state(), StateType::kLeader);
  ASSERT_EQ(net.raft(1)->term(), 2u);

  // The leader goes away; 2 and 3 campaign at the same moment and each votes
  // for itself, so neither can get a majority.
  net.Isolate(1);
  net.Send(std::vector<Message>{Hup(2), Hup(3)});
  for (uint64_t id : {2u, 3u}) {
    EXPECT_EQ(net.raft(id)->state(), StateType::kCandidate) << "node " << id;
    EXPECT_EQ(net.raft(id)->term(), 3u) << "node " << id;
  }

  // Node 2 times out first and wins the next term.
  net.Send(Hup(2));
  EXPECT_EQ(net.raft(2)->state(), StateType::kLeader);
  EXPECT_EQ(net.raft(2)->term(), 4u);
  EXPECT_EQ(net.raft(3)->state(), StateType::kFollower);
  EXPECT_EQ(net.raft(3)->term(), 4u);
  EXPECT_EQ(net.raft(3)->lead(), 2u);
}

}  // namespace
}  // namespace raftkv::raft::test
