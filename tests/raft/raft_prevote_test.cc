// PreVote and CheckQuorum scenarios for the raft core (Raft thesis §9.6,
// "Preventing disruptions when a server rejoins the cluster"), following the
// semantics of etcd/raft: a pre-vote round that must be won before a node
// raises its term, a leader that steps down when it lost its quorum, and a
// follower lease during which vote requests of a higher term are ignored
// (unless they come from a leader transfer).
//
// Thesis §9.6, PreVote: "a candidate would first ask other servers whether
// its log was up-to-date enough to get their vote. Only if the candidate
// believed it could get votes from a majority of the cluster would it
// increment its term and start a normal election."
// Thesis §9.6, leases: "if a server receives a RequestVote request within
// the minimum election timeout of hearing from a current leader, it does not
// update its term or grant its vote." And §6.2: "a leader [...] steps down if
// an election timeout elapses without a successful round of heartbeats to a
// majority of its cluster."

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "raft/config.h"
#include "raft/raft.h"
#include "raft/raw_node.h"
#include "raft/storage.h"
#include "raft/types.h"
#include "test_util.h"

namespace raftkv::raft::test {
namespace {

using raftpb::Message;
using raftpb::MessageType;

constexpr int kElection = 10;
constexpr int kHeartbeat = 1;

using Edit = std::function<void(Config*)>;

const Edit kPreVote = [](Config* c) { c->pre_vote = true; };
const Edit kCheckQuorum = [](Config* c) { c->check_quorum = true; };
const Edit kPreVoteAndCheckQuorum = [](Config* c) {
  c->pre_vote = true;
  c->check_quorum = true;
};
const Edit kPlain = [](Config*) {};

// Steps `m` on `r`, failing the test on an error status.
void StepOk(Raft* r, Message m) {
  std::string what = DescribeMessage(m);
  absl::Status s = r->Step(std::move(m));
  EXPECT_TRUE(s.ok()) << what << ": " << s;
}

Message Hup(uint64_t id) { return MakeMsg(id, id, raftpb::MsgHup); }

// A vote request (or pre-vote request) for `term` from `from` to `to` whose
// log ends at (index, log_term).
Message VoteReq(MessageType t, uint64_t from, uint64_t to, uint64_t term,
                uint64_t log_term, uint64_t index) {
  Message m = MakeMsg(from, to, t, term);
  m.set_log_term(log_term);
  m.set_index(index);
  return m;
}

Message Proposal(uint64_t to, std::string data) {
  Message m = MakeMsg(to, to, raftpb::MsgPropose);
  *m.add_entries() = MakeEntry(0, 0, std::move(data));
  return m;
}

std::string Describe(const std::vector<Message>& msgs) {
  std::string s;
  for (const Message& m : msgs) s += DescribeMessage(m) + "\n";
  return s;
}

std::string StateName(StateType s) { return StateTypeName(s); }

// `n` fresh nodes, for a Network.
std::vector<PeerSpec> Fresh(int n) {
  std::vector<PeerSpec> specs;
  for (int i = 0; i < n; ++i) specs.push_back(PeerSpec::Fresh());
  return specs;
}

std::set<uint64_t> Recipients(const std::vector<Message>& msgs) {
  std::set<uint64_t> out;
  for (const Message& m : msgs) out.insert(m.to());
  return out;
}

// The ids of the nodes of `net` that are leaders.
std::vector<uint64_t> Leaders(Network& net) {
  std::vector<uint64_t> out;
  for (uint64_t id : net.ids()) {
    Raft* r = net.raft(id);
    if (r != nullptr && r->state() == StateType::kLeader) out.push_back(id);
  }
  return out;
}

// True when exactly one node leads and every node is at its term and knows
// it as leader.
bool Settled(Network& net) {
  std::vector<uint64_t> leaders = Leaders(net);
  if (leaders.size() != 1) return false;
  uint64_t term = net.raft(leaders[0])->term();
  for (uint64_t id : net.ids()) {
    Raft* r = net.raft(id);
    if (r->term() != term || r->lead() != leaders[0]) return false;
  }
  return true;
}

// Drives a Network with ticks. Network::Send does not filter the messages it
// is handed (only what they cause), so the messages a tick produces are
// filtered here against the same isolation that the network applies.
class Ticker {
 public:
  explicit Ticker(Network* net) : net_(net) {}

  void Isolate(uint64_t id) {
    isolated_.insert(id);
    net_->Isolate(id);
  }
  void Recover() {
    isolated_.clear();
    net_->Recover();
  }

  // Ticks node `id` once and delivers what it sends.
  void Tick(uint64_t id) {
    Raft* r = net_->raft(id);
    if (r == nullptr) return;
    r->Tick();
    Deliver(r->ReadMessages());
  }

  // Ticks every node once, in id order.
  void TickAll() {
    for (uint64_t id : net_->ids()) Tick(id);
  }

  // Sends `msgs`, dropping those that cross the isolation.
  void Deliver(std::vector<Message> msgs) {
    std::vector<Message> out;
    for (Message& m : msgs) {
      if (isolated_.count(m.from()) || isolated_.count(m.to())) continue;
      out.push_back(std::move(m));
    }
    net_->Send(std::move(out));
  }

 private:
  Network* net_;
  std::set<uint64_t> isolated_;
};

// Node 1 of {1,2,3} with check_quorum, a follower at term 2 that just heard
// a heartbeat from leader 2, and whose randomized election timeout is longer
// than election_tick: ticking it election_tick times lets its lease expire
// without it campaigning. The timeout is drawn at random, so the seed is
// searched (deterministically) for one that gives a long timeout.
TestRaft FollowerInLeaseWithLongTimeout(const Edit& extra) {
  for (uint64_t seed = 1; seed <= 64; ++seed) {
    TestRaft t = NewTestRaft(1, {1, 2, 3}, kElection, kHeartbeat, nullptr,
                             [&](Config* c) {
                               c->check_quorum = true;
                               c->seed = seed;
                               extra(c);
                             });
    StepOk(t.raft.get(), MakeMsg(2, 1, raftpb::MsgHeartbeat, 2));
    t->ReadMessages();
    if (t->randomized_election_timeout() > kElection) return t;
  }
  ADD_FAILURE() << "no seed in [1, 64] gives a timeout above election_tick";
  return NewTestRaft(1, {1, 2, 3}, kElection, kHeartbeat);
}

// ===========================================================================
// PreVote (thesis §9.6).

// A pre-candidate only asks: its term and vote stay, and it asks about the
// term it would move to (term + 1) with its last log position.
TEST(PreVoteTest, PreCandidateKeepsTermAndVote) {
  TestRaft n = VotedWithConfig(kPreVote, 1, {1, 2, 3}, /*vote=*/2, /*term=*/2);
  ASSERT_EQ(n->term(), 2u);
  ASSERT_EQ(n->vote(), 2u);

  StepOk(n.raft.get(), Hup(1));

  EXPECT_EQ(n->state(), StateType::kPreCandidate);
  EXPECT_EQ(n->term(), 2u);
  EXPECT_EQ(n->vote(), 2u);
  EXPECT_EQ(n->GetHardState().term(), 2u);
  EXPECT_EQ(n->GetHardState().vote(), 2u);
  std::vector<Message> msgs = n->ReadMessages();
  ASSERT_EQ(msgs.size(), 2u) << Describe(msgs);
  EXPECT_EQ(Recipients(msgs), (std::set<uint64_t>{2, 3}));
  for (const Message& m : msgs) {
    EXPECT_EQ(m.msg_type(), raftpb::MsgPreVote) << DescribeMessage(m);
    EXPECT_EQ(m.term(), 3u) << DescribeMessage(m);
    EXPECT_EQ(m.index(), 0u) << DescribeMessage(m);
    EXPECT_EQ(m.log_term(), 0u) << DescribeMessage(m);
  }
}

// Pre-vote messages carry the pre-candidate's last log position, used by the
// voters' up-to-date check (§5.4.1).
TEST(PreVoteTest, PreVoteCarriesLastLogPosition) {
  TestRaft n = EntsWithConfig(kPreVote, 1, {1, 2, 3}, {1, 1, 2});
  ASSERT_EQ(n->term(), 2u);
  StepOk(n.raft.get(), Hup(1));
  std::vector<Message> msgs = n->ReadMessages();
  ASSERT_EQ(msgs.size(), 2u) << Describe(msgs);
  for (const Message& m : msgs) {
    EXPECT_EQ(m.msg_type(), raftpb::MsgPreVote);
    EXPECT_EQ(m.term(), 3u);
    EXPECT_EQ(m.index(), 3u);
    EXPECT_EQ(m.log_term(), 2u);
  }
  EXPECT_EQ(n->term(), 2u);
}

// Winning the pre-vote round leads to a real election at term + 1, and
// winning that makes the node leader.
TEST(PreVoteTest, WinningPreVoteLeadsToRealElectionAndLeadership) {
  TestRaft n =
      NewTestRaft(1, {1, 2, 3}, kElection, kHeartbeat, nullptr, kPreVote);
  n->BecomeFollower(1, kNone);
  StepOk(n.raft.get(), Hup(1));
  ASSERT_EQ(n->state(), StateType::kPreCandidate);
  n->ReadMessages();

  // One grant (for term 2) plus its own makes a quorum of 3. The grant
  // carries the asked-about term, which must not move the node's term.
  Message grant = MakeMsg(2, 1, raftpb::MsgPreVoteResponse, 2);
  StepOk(n.raft.get(), grant);

  EXPECT_EQ(n->state(), StateType::kCandidate);
  EXPECT_EQ(n->term(), 2u);
  EXPECT_EQ(n->vote(), 1u);
  std::vector<Message> msgs = n->ReadMessages();
  ASSERT_EQ(msgs.size(), 2u) << Describe(msgs);
  EXPECT_EQ(Recipients(msgs), (std::set<uint64_t>{2, 3}));
  for (const Message& m : msgs) {
    EXPECT_EQ(m.msg_type(), raftpb::MsgRequestVote) << DescribeMessage(m);
    EXPECT_EQ(m.term(), 2u) << DescribeMessage(m);
    EXPECT_TRUE(m.context().empty()) << DescribeMessage(m);
  }

  StepOk(n.raft.get(), MakeMsg(3, 1, raftpb::MsgRequestVoteResponse, 2));
  EXPECT_EQ(n->state(), StateType::kLeader);
  EXPECT_EQ(n->term(), 2u);
  EXPECT_EQ(n->lead(), 1u);
}

// The same through a network: one Hup with pre_vote elects the node at term
// 1 (the pre-vote round did not consume a term), and everybody follows.
TEST(PreVoteTest, NetworkElectsLeaderAtNextTerm) {
  Network net(Fresh(3), kPreVote);
  net.Send(Hup(1));
  EXPECT_EQ(net.raft(1)->state(), StateType::kLeader);
  for (uint64_t id : {1, 2, 3}) {
    SCOPED_TRACE(id);
    EXPECT_EQ(net.raft(id)->term(), 1u);
    EXPECT_EQ(net.raft(id)->vote(), 1u);
    EXPECT_EQ(net.raft(id)->lead(), 1u);
  }
}

// Granting a pre-vote changes nothing at the voters: with the real vote
// requests dropped, the pre-candidate got through the pre-vote round (it is a
// candidate at term 1) while the voters stay at term 0 with no vote.
TEST(PreVoteTest, GrantingPreVoteLeavesVotersTermAndVoteUnchanged) {
  Network net(Fresh(3), kPreVote);
  net.Ignore(raftpb::MsgRequestVote);
  net.Send(Hup(1));
  EXPECT_EQ(net.raft(1)->state(), StateType::kCandidate);
  EXPECT_EQ(net.raft(1)->term(), 1u);
  for (uint64_t id : {2, 3}) {
    SCOPED_TRACE(id);
    EXPECT_EQ(net.raft(id)->state(), StateType::kFollower);
    EXPECT_EQ(net.raft(id)->term(), 0u);
    EXPECT_EQ(net.raft(id)->vote(), kNone);
  }
}

// Granting a pre-vote does not reset the voter's election timer either (a
// real vote does): a pre-vote is not a promise.
TEST(PreVoteTest, GrantingPreVoteDoesNotResetElectionTimer) {
  TestRaft n = VotedWithConfig(kPreVote, 1, {1, 2, 3}, /*vote=*/3, /*term=*/1);
  for (int i = 0; i < 3; ++i) n->Tick();  // election is 5: no timeout yet
  ASSERT_EQ(n->election_elapsed(), 3);
  ASSERT_TRUE(n->msgs().empty());

  StepOk(n.raft.get(), VoteReq(raftpb::MsgPreVote, 2, 1, 2, 1, 5));

  std::vector<Message> msgs = n->ReadMessages();
  ASSERT_EQ(msgs.size(), 1u) << Describe(msgs);
  EXPECT_EQ(msgs[0].msg_type(), raftpb::MsgPreVoteResponse);
  EXPECT_FALSE(msgs[0].reject());
  EXPECT_EQ(msgs[0].term(), 2u);
  EXPECT_EQ(n->term(), 1u);
  EXPECT_EQ(n->vote(), 3u);
  EXPECT_EQ(n->election_elapsed(), 3);
}

// A pre-vote for a later term is granted from any state, and granting it
// changes neither the state nor the term nor the vote (etcd
// TestPreVoteFromAnyState).
enum class Start { kFollower, kPreCandidate, kCandidate, kLeader };

std::string StartName(Start s) {
  switch (s) {
    case Start::kFollower:
      return "Follower";
    case Start::kPreCandidate:
      return "PreCandidate";
    case Start::kCandidate:
      return "Candidate";
    case Start::kLeader:
      return "Leader";
  }
  return "?";
}

class PreVoteFromAnyStateTest : public ::testing::TestWithParam<Start> {};

TEST_P(PreVoteFromAnyStateTest, GrantedWithoutChangingState) {
  TestRaft n =
      NewTestRaft(1, {1, 2, 3}, kElection, kHeartbeat, nullptr, kPreVote);
  StateType want_state = StateType::kFollower;
  switch (GetParam()) {
    case Start::kFollower:
      n->BecomeFollower(1, kNone);
      break;
    case Start::kPreCandidate:
      n->BecomeFollower(1, kNone);
      n->BecomePreCandidate();
      want_state = StateType::kPreCandidate;
      break;
    case Start::kCandidate:
      n->BecomeCandidate();
      want_state = StateType::kCandidate;
      break;
    case Start::kLeader:
      n->BecomeCandidate();
      n->BecomeLeader();
      want_state = StateType::kLeader;
      break;
  }
  n->ReadMessages();
  ASSERT_EQ(n->term(), 1u);
  uint64_t vote_before = n->vote();

  StepOk(n.raft.get(), VoteReq(raftpb::MsgPreVote, 2, 1, 2, 2, 42));

  std::vector<Message> msgs = n->ReadMessages();
  ASSERT_EQ(msgs.size(), 1u) << Describe(msgs);
  EXPECT_EQ(msgs[0].msg_type(), raftpb::MsgPreVoteResponse);
  EXPECT_EQ(msgs[0].to(), 2u);
  EXPECT_FALSE(msgs[0].reject());
  EXPECT_EQ(msgs[0].term(), 2u);
  EXPECT_EQ(n->state(), want_state) << StateName(n->state());
  EXPECT_EQ(n->term(), 1u);
  EXPECT_EQ(n->vote(), vote_before);
}

INSTANTIATE_TEST_SUITE_P(AllStates, PreVoteFromAnyStateTest,
                         ::testing::Values(Start::kFollower,
                                           Start::kPreCandidate,
                                           Start::kCandidate, Start::kLeader),
                         [](const ::testing::TestParamInfo<Start>& p) {
                           return StartName(p.param);
                         });

// A pre-vote is judged by the up-to-date rule (§5.4.1): a log behind the
// voter's is rejected, at the voter's term, and the voter's term stays.
TEST(PreVoteTest, RejectedWhenCandidateLogIsBehind) {
  struct Case {
    uint64_t log_term, index;
    bool reject;
  };
  // The voter's log is terms [1, 1, 2]: last (index 3, term 2).
  const Case cases[] = {
      {1, 3, true},   // older last term, same length
      {1, 10, true},  // older last term, longer log
      {2, 2, true},   // same last term, shorter
      {2, 3, false},  // identical
      {2, 4, false},  // same last term, longer
      {3, 1, false},  // newer last term
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message()
                 << "log_term=" << c.log_term << " index=" << c.index);
    TestRaft n = EntsWithConfig(kPreVote, 1, {1, 2, 3}, {1, 1, 2});
    ASSERT_EQ(n->term(), 2u);
    StepOk(n.raft.get(),
           VoteReq(raftpb::MsgPreVote, 2, 1, 3, c.log_term, c.index));
    std::vector<Message> msgs = n->ReadMessages();
    ASSERT_EQ(msgs.size(), 1u) << Describe(msgs);
    EXPECT_EQ(msgs[0].msg_type(), raftpb::MsgPreVoteResponse);
    EXPECT_EQ(msgs[0].reject(), c.reject);
    // A grant names the asked-about term, a rejection the voter's own.
    EXPECT_EQ(msgs[0].term(), c.reject ? 2u : 3u);
    EXPECT_EQ(n->term(), 2u);
    EXPECT_EQ(n->vote(), kNone);
    EXPECT_EQ(n->state(), StateType::kFollower);
  }
}

// A node that already voted in its current term still grants a pre-vote for
// a later term (the pre-vote binds nothing in its term), but not one for its
// current term from somebody else.
TEST(PreVoteTest, VoterThatVotedGrantsPreVoteOnlyForLaterTerm) {
  struct Case {
    uint64_t from, term;
    bool reject;
  };
  const Case cases[] = {
      {3, 3, false},  // later term: granted although it voted for 2
      {3, 2, true},   // its own term, voted for someone else
      {2, 2, false},  // its own term, from the node it voted for
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "from=" << c.from << " term=" << c.term);
    TestRaft n = VotedWithConfig(kPreVote, 1, {1, 2, 3}, /*vote=*/2,
                                 /*term=*/2);
    StepOk(n.raft.get(), VoteReq(raftpb::MsgPreVote, c.from, 1, c.term, 2, 1));
    std::vector<Message> msgs = n->ReadMessages();
    ASSERT_EQ(msgs.size(), 1u) << Describe(msgs);
    EXPECT_EQ(msgs[0].msg_type(), raftpb::MsgPreVoteResponse);
    EXPECT_EQ(msgs[0].to(), c.from);
    EXPECT_EQ(msgs[0].reject(), c.reject);
    EXPECT_EQ(n->term(), 2u);
    EXPECT_EQ(n->vote(), 2u);
  }
}

// A pre-vote of a lower term is answered with a rejection at the receiver's
// (higher) term, so that the pre-candidate learns it is behind.
TEST(PreVoteTest, StalePreVoteGetsRejectionAtHigherTerm) {
  TestRaft n =
      NewTestRaft(1, {1, 2, 3}, kElection, kHeartbeat, nullptr, kPreVote);
  n->BecomeFollower(5, kNone);
  // The requester's log is even ahead: only the term makes it stale.
  StepOk(n.raft.get(), VoteReq(raftpb::MsgPreVote, 2, 1, 3, 9, 100));
  std::vector<Message> msgs = n->ReadMessages();
  ASSERT_EQ(msgs.size(), 1u) << Describe(msgs);
  EXPECT_EQ(msgs[0].msg_type(), raftpb::MsgPreVoteResponse);
  EXPECT_EQ(msgs[0].to(), 2u);
  EXPECT_TRUE(msgs[0].reject());
  EXPECT_EQ(msgs[0].term(), 5u);
  EXPECT_EQ(n->term(), 5u);
  EXPECT_EQ(n->vote(), kNone);
  EXPECT_EQ(n->state(), StateType::kFollower);
}

// A pre-candidate that hears from a leader of its own term (§5.2: "If the
// AppendEntries RPC is from a new leader and its term is at least as large as
// the candidate's current term ... the candidate ... returns to follower
// state") becomes its follower, for appends and heartbeats alike; a higher
// term moves it to that term.
TEST(PreVoteTest, PreCandidateBecomesFollowerOnLeaderMessage) {
  for (MessageType t : {raftpb::MsgAppend, raftpb::MsgHeartbeat}) {
    for (uint64_t term : {2, 3}) {
      SCOPED_TRACE(testing::Message()
                   << raftpb::MessageType_Name(t) << " term=" << term);
      TestRaft n =
          NewTestRaft(1, {1, 2, 3}, kElection, kHeartbeat, nullptr, kPreVote);
      n->BecomeFollower(2, kNone);
      StepOk(n.raft.get(), Hup(1));
      ASSERT_EQ(n->state(), StateType::kPreCandidate);
      ASSERT_EQ(n->term(), 2u);
      n->ReadMessages();

      StepOk(n.raft.get(), MakeMsg(2, 1, t, term));

      EXPECT_EQ(n->state(), StateType::kFollower);
      EXPECT_EQ(n->term(), term);
      EXPECT_EQ(n->lead(), 2u);
      // It answers the leader.
      std::vector<Message> msgs = n->ReadMessages();
      ASSERT_EQ(msgs.size(), 1u) << Describe(msgs);
      EXPECT_EQ(msgs[0].to(), 2u);
      EXPECT_EQ(msgs[0].msg_type(), t == raftpb::MsgAppend
                                        ? raftpb::MsgAppendResponse
                                        : raftpb::MsgHeartbeatResponse);
    }
  }
}

// A rejected pre-vote carrying a higher term tells the pre-candidate it is
// behind: it becomes a follower at that term, with no vote and no leader.
TEST(PreVoteTest, RejectionWithHigherTermMakesPreCandidateFollower) {
  TestRaft n =
      NewTestRaft(1, {1, 2, 3}, kElection, kHeartbeat, nullptr, kPreVote);
  n->BecomeFollower(2, kNone);
  StepOk(n.raft.get(), Hup(1));
  ASSERT_EQ(n->state(), StateType::kPreCandidate);
  n->ReadMessages();

  Message rej = MakeMsg(2, 1, raftpb::MsgPreVoteResponse, 5);
  rej.set_reject(true);
  StepOk(n.raft.get(), rej);

  EXPECT_EQ(n->state(), StateType::kFollower);
  EXPECT_EQ(n->term(), 5u);
  EXPECT_EQ(n->vote(), kNone);
  EXPECT_EQ(n->lead(), kNone);
}

// A pre-candidate rejected by a quorum at its own term gives up the round and
// goes back to follower without touching its term.
TEST(PreVoteTest, PreCandidateRejectedByQuorumFallsBackAtSameTerm) {
  TestRaft n =
      NewTestRaft(1, {1, 2, 3}, kElection, kHeartbeat, nullptr, kPreVote);
  n->BecomeFollower(2, kNone);
  StepOk(n.raft.get(), Hup(1));
  n->ReadMessages();

  Message rej = MakeMsg(2, 1, raftpb::MsgPreVoteResponse, 2);
  rej.set_reject(true);
  StepOk(n.raft.get(), rej);
  // One rejection out of three: the round is still open.
  EXPECT_EQ(n->state(), StateType::kPreCandidate);
  rej.set_from(3);
  StepOk(n.raft.get(), rej);

  EXPECT_EQ(n->state(), StateType::kFollower);
  EXPECT_EQ(n->term(), 2u);
  EXPECT_EQ(n->vote(), kNone);
  EXPECT_TRUE(n->ReadMessages().empty());
}

// Without a quorum of reachable voters the pre-vote round cannot be won and
// the term does not move; with a reachable quorum the election completes
// (etcd TestLeaderElectionPreVote).
TEST(PreVoteTest, ElectionNeedsReachableQuorum) {
  struct Case {
    std::vector<bool> alive;  // by position; false = black hole
    StateType want;
    uint64_t want_term;
  };
  const Case cases[] = {
      {{true, true, true}, StateType::kLeader, 1},
      {{true, true, false}, StateType::kLeader, 1},
      {{true, false, false}, StateType::kPreCandidate, 0},
      {{true, false, false, true}, StateType::kPreCandidate, 0},
      {{true, false, false, true, true}, StateType::kLeader, 1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "size=" << c.alive.size());
    std::vector<PeerSpec> peers;
    for (bool a : c.alive) {
      peers.push_back(a ? PeerSpec::Fresh() : PeerSpec::BlackHole());
    }
    Network net(std::move(peers), kPreVote);
    net.Send(Hup(1));
    EXPECT_EQ(net.raft(1)->state(), c.want) << StateName(net.raft(1)->state());
    EXPECT_EQ(net.raft(1)->term(), c.want_term);
  }
}

// A single voter with pre_vote wins its pre-vote round and its election
// in one Campaign call.
TEST(PreVoteTest, SingleNodeBecomesLeaderInOneCampaign) {
  MemoryStorage storage;
  Config c = TestConfig(1, {1}, kElection, kHeartbeat, &storage);
  c.pre_vote = true;
  auto rn = RawNode::Create(c);
  ASSERT_TRUE(rn.ok()) << rn.status();
  (*rn)->Campaign();

  EXPECT_EQ((*rn)->raft().state(), StateType::kLeader);
  EXPECT_EQ((*rn)->raft().term(), 1u);
  ASSERT_TRUE((*rn)->HasReady());
  Ready rd = (*rn)->GetReady();
  ASSERT_TRUE(rd.soft_state.has_value());
  EXPECT_EQ(rd.soft_state->raft_state, StateType::kLeader);
  EXPECT_EQ(rd.soft_state->lead, 1u);
  EXPECT_EQ(rd.hard_state.term(), 1u);
  EXPECT_EQ(rd.hard_state.vote(), 1u);
  // Nobody else to talk to.
  EXPECT_TRUE(rd.messages.empty());
}

// A node at a smaller term with a shorter log can still let the group
// complete an election: its pre-vote is refused at the higher term, which
// moves it to that term, and it then grants the others (etcd
// TestNodeWithSmallerTermCanCompleteElection).
TEST(PreVoteTest, NodeWithSmallerTermCanCompleteElection) {
  Network net(Fresh(3), kPreVote);
  net.Cut(1, 3);
  net.Cut(2, 3);
  net.Send(Hup(1));
  ASSERT_EQ(net.raft(1)->state(), StateType::kLeader);
  net.Send(Hup(3));
  ASSERT_EQ(net.raft(3)->state(), StateType::kPreCandidate);
  net.Send(Hup(2));
  ASSERT_EQ(net.raft(2)->state(), StateType::kLeader);
  EXPECT_EQ(net.raft(1)->term(), 2u);
  EXPECT_EQ(net.raft(2)->term(), 2u);
  EXPECT_EQ(net.raft(3)->term(), 0u);

  // Bring 3 back, and lose 2 (the leader).
  net.Recover();
  net.Cut(2, 1);
  net.Cut(2, 3);
  net.Send(Hup(3));
  // Node 1 refused at term 2: node 3 moved there, still a follower.
  EXPECT_EQ(net.raft(3)->state(), StateType::kFollower);
  EXPECT_EQ(net.raft(3)->term(), 2u);
  EXPECT_EQ(net.raft(1)->term(), 2u);
  net.Send(Hup(1));
  EXPECT_EQ(net.raft(1)->state(), StateType::kLeader);
  EXPECT_EQ(net.raft(1)->term(), 3u);
  EXPECT_EQ(net.raft(3)->lead(), 1u);
}

// ---------------------------------------------------------------------------
// Partition and heal. Node 3 is cut off from a group led by node 1 for ten
// election timeouts; then the partition heals. Thesis §9.6: "when a
// partitioned server rejoins the cluster [...] Pre-Vote [...] a server won't
// be able to increment its term while it's partitioned."

struct PartitionRun {
  uint64_t term_before = 0;        // the group's term when 3 was cut off
  uint64_t isolated_max_term = 0;  // node 3's highest term while cut off
  bool leader_kept = true;         // node 1 led at every tick while cut off
  // What node 3 sent when it first campaigned after the heal.
  MessageType heal_campaign = raftpb::MsgHup;
  // Node 1 right after that campaign's messages were delivered.
  StateType leader_state_after_campaign = StateType::kFollower;
  uint64_t leader_term_after_campaign = 0;
  uint64_t follower_term_after_campaign = 0;  // node 2
  bool settled = false;  // one leader, one term, everybody following it
  std::vector<uint64_t> final_leaders;
  uint64_t final_term = 0;
  bool logs_converged = false;  // all three committed the same index
};

PartitionRun RunPartitionAndHeal(const Edit& edit, bool propose) {
  PartitionRun out;
  Network net(Fresh(3), edit);
  net.Send(Hup(1));
  EXPECT_EQ(net.raft(1)->state(), StateType::kLeader);
  out.term_before = net.raft(1)->term();

  Ticker ticker(&net);
  ticker.Isolate(3);
  if (propose) {
    // Entries node 3 misses: once healed, its log is behind.
    for (int i = 0; i < 3; ++i) net.Send(Proposal(1, "somedata"));
    EXPECT_EQ(net.raft(2)->raft_log().committed(),
              net.raft(1)->raft_log().last_index());
  }
  for (int i = 0; i < 10 * kElection; ++i) {
    ticker.TickAll();
    out.isolated_max_term =
        std::max(out.isolated_max_term, net.raft(3)->term());
    out.leader_kept = out.leader_kept &&
                      net.raft(1)->state() == StateType::kLeader &&
                      net.raft(1)->term() == out.term_before;
  }

  // Heal, and let node 3 campaign before it hears from the leader.
  ticker.Recover();
  Raft* r3 = net.raft(3);
  for (int i = 0; i < 3 * kElection; ++i) {
    r3->Tick();
    std::vector<Message> msgs = r3->ReadMessages();
    if (msgs.empty()) continue;
    out.heal_campaign = msgs[0].msg_type();
    ticker.Deliver(std::move(msgs));
    break;
  }
  out.leader_state_after_campaign = net.raft(1)->state();
  out.leader_term_after_campaign = net.raft(1)->term();
  out.follower_term_after_campaign = net.raft(2)->term();

  for (int i = 0; i < 20 * kElection && !Settled(net); ++i) ticker.TickAll();
  out.settled = Settled(net);
  // A few more rounds so the leader brings node 3's log up to date.
  for (int i = 0; i < 3; ++i) ticker.TickAll();
  out.final_leaders = Leaders(net);
  out.final_term = net.raft(1)->term();
  uint64_t c1 = net.raft(1)->raft_log().committed();
  out.logs_converged = net.raft(2)->raft_log().committed() == c1 &&
                       net.raft(3)->raft_log().committed() == c1 &&
                       net.raft(3)->raft_log().last_index() ==
                           net.raft(1)->raft_log().last_index();
  return out;
}

// With PreVote, the cut-off node never raises its term; when it comes back
// behind the group's log its pre-vote is refused and the leader is not
// disrupted: same leader, same term.
TEST(PreVotePartitionTest, PartitionedNodeDoesNotDisruptLeaderOnHeal) {
  PartitionRun run = RunPartitionAndHeal(kPreVote, /*propose=*/true);
  EXPECT_EQ(run.isolated_max_term, run.term_before);
  EXPECT_TRUE(run.leader_kept);
  EXPECT_EQ(run.heal_campaign, raftpb::MsgPreVote)
      << raftpb::MessageType_Name(run.heal_campaign);
  EXPECT_EQ(run.leader_state_after_campaign, StateType::kLeader);
  EXPECT_EQ(run.leader_term_after_campaign, run.term_before);
  EXPECT_EQ(run.follower_term_after_campaign, run.term_before);
  EXPECT_TRUE(run.settled);
  EXPECT_EQ(run.final_leaders, std::vector<uint64_t>{1});
  EXPECT_EQ(run.final_term, run.term_before);
  EXPECT_TRUE(run.logs_converged);
}

// Control: the same scenario without PreVote. The cut-off node campaigns
// again and again, raising its term; on its return its vote request of that
// term deposes the leader (term rises), although its log cannot win.
TEST(PreVotePartitionTest, WithoutPreVotePartitionedNodeDisruptsLeader) {
  PartitionRun run = RunPartitionAndHeal(kPlain, /*propose=*/true);
  EXPECT_GT(run.isolated_max_term, run.term_before + 1);
  EXPECT_TRUE(run.leader_kept);
  EXPECT_EQ(run.heal_campaign, raftpb::MsgRequestVote)
      << raftpb::MessageType_Name(run.heal_campaign);
  EXPECT_EQ(run.leader_state_after_campaign, StateType::kFollower);
  EXPECT_GT(run.leader_term_after_campaign, run.term_before);
  EXPECT_GT(run.follower_term_after_campaign, run.term_before);
  // The group recovers, at a higher term, under a node with the full log.
  EXPECT_TRUE(run.settled);
  ASSERT_EQ(run.final_leaders.size(), 1u);
  EXPECT_NE(run.final_leaders[0], 3u);
  EXPECT_GT(run.final_term, run.isolated_max_term);
  EXPECT_TRUE(run.logs_converged);
}

// PreVote with CheckQuorum: even when the returning node's log is as good as
// everybody's (no writes during the partition), its pre-votes fall inside the
// voters' leases and are ignored; the leader is not disrupted.
TEST(PreVotePartitionTest, PreVoteWithCheckQuorumDoesNotDisruptOnHeal) {
  PartitionRun run = RunPartitionAndHeal(kPreVoteAndCheckQuorum,
                                         /*propose=*/false);
  EXPECT_EQ(run.isolated_max_term, run.term_before);
  EXPECT_TRUE(run.leader_kept);
  EXPECT_EQ(run.heal_campaign, raftpb::MsgPreVote)
      << raftpb::MessageType_Name(run.heal_campaign);
  EXPECT_EQ(run.leader_state_after_campaign, StateType::kLeader);
  EXPECT_EQ(run.leader_term_after_campaign, run.term_before);
  EXPECT_EQ(run.follower_term_after_campaign, run.term_before);
  EXPECT_TRUE(run.settled);
  EXPECT_EQ(run.final_leaders, std::vector<uint64_t>{1});
  EXPECT_EQ(run.final_term, run.term_before);
  EXPECT_TRUE(run.logs_converged);
}

// ===========================================================================
// CheckQuorum (thesis §6.2 and §9.6).

// A leader that hears from no follower steps down after an election timeout,
// keeping its term and forgetting itself as leader (etcd
// TestLeaderStepdownWhenQuorumLost).
TEST(CheckQuorumTest, LeaderWithoutQuorumStepsDownAfterElectionTimeout) {
  TestRaft n =
      NewTestRaft(1, {1, 2, 3}, kElection, kHeartbeat, nullptr, kCheckQuorum);
  n->BecomeCandidate();
  n->BecomeLeader();
  ASSERT_EQ(n->term(), 1u);
  for (int i = 0; i < kElection - 1; ++i) n->Tick();
  EXPECT_EQ(n->state(), StateType::kLeader);
  n->Tick();
  n->Tick();
  EXPECT_EQ(n->state(), StateType::kFollower);
  EXPECT_EQ(n->term(), 1u);
  EXPECT_EQ(n->lead(), kNone);
}

// A leader that keeps hearing from a quorum stays leader, over many
// election timeouts (etcd TestLeaderStepdownWhenQuorumActive).
TEST(CheckQuorumTest, LeaderWithActiveQuorumKeepsLeadership) {
  TestRaft n =
      NewTestRaft(1, {1, 2, 3}, kElection, kHeartbeat, nullptr, kCheckQuorum);
  n->BecomeCandidate();
  n->BecomeLeader();
  for (int i = 0; i < 10 * kElection; ++i) {
    n->Tick();
    // Only node 2 answers: with the leader that is 2 of 3.
    StepOk(n.raft.get(), MakeMsg(2, 1, raftpb::MsgHeartbeatResponse, 1));
    ASSERT_EQ(n->state(), StateType::kLeader) << "tick " << i;
  }
  EXPECT_EQ(n->term(), 1u);
}

// Without CheckQuorum a leader that hears from nobody stays leader: the step
// down above is the feature, not a side effect of ticking.
TEST(CheckQuorumTest, WithoutCheckQuorumLoneLeaderStays) {
  TestRaft n = NewTestRaft(1, {1, 2, 3}, kElection, kHeartbeat);
  n->BecomeCandidate();
  n->BecomeLeader();
  for (int i = 0; i < 10 * kElection; ++i) n->Tick();
  EXPECT_EQ(n->state(), StateType::kLeader);
}

// In a network: the leader cut off from both followers steps down within
// two election timeouts (the check after the first one still counts the
// acknowledgements from before the cut), at its term; the majority elects a
// new leader at a higher term.
TEST(CheckQuorumTest, IsolatedLeaderStepsDownAndMajorityMovesOn) {
  Network net(Fresh(3), kCheckQuorum);
  net.Send(Hup(1));
  ASSERT_EQ(net.raft(1)->state(), StateType::kLeader);
  uint64_t term = net.raft(1)->term();

  Ticker ticker(&net);
  ticker.Isolate(1);
  int stepped_down_at = -1;
  uint64_t term_at_stepdown = 0;
  for (int i = 1; i <= 4 * kElection; ++i) {
    ticker.TickAll();
    if (stepped_down_at < 0 && net.raft(1)->state() != StateType::kLeader) {
      stepped_down_at = i;
      term_at_stepdown = net.raft(1)->term();
      EXPECT_EQ(net.raft(1)->state(), StateType::kFollower);
      EXPECT_EQ(net.raft(1)->lead(), kNone);
    }
  }
  ASSERT_GT(stepped_down_at, 0) << "isolated leader never stepped down";
  EXPECT_GE(stepped_down_at, kElection);
  EXPECT_LE(stepped_down_at, 2 * kElection);
  EXPECT_EQ(term_at_stepdown, term);

  std::vector<uint64_t> leaders;
  for (uint64_t id : {2, 3}) {
    if (net.raft(id)->state() == StateType::kLeader) leaders.push_back(id);
  }
  ASSERT_EQ(leaders.size(), 1u);
  EXPECT_GT(net.raft(leaders[0])->term(), term);
  EXPECT_NE(net.raft(1)->state(), StateType::kLeader);
}

// With one follower cut off the leader still has a quorum (itself and the
// other follower): it keeps leading at its term over many timeouts.
TEST(CheckQuorumTest, LeaderWithMajorityKeepsLeadershipInNetwork) {
  Network net(Fresh(3), kCheckQuorum);
  net.Send(Hup(1));
  ASSERT_EQ(net.raft(1)->state(), StateType::kLeader);
  uint64_t term = net.raft(1)->term();
  Ticker ticker(&net);
  ticker.Isolate(3);
  for (int i = 0; i < 10 * kElection; ++i) {
    ticker.TickAll();
    ASSERT_EQ(net.raft(1)->state(), StateType::kLeader) << "tick " << i;
  }
  EXPECT_EQ(net.raft(1)->term(), term);
  EXPECT_EQ(net.raft(2)->lead(), 1u);
  EXPECT_EQ(net.raft(2)->term(), term);
}

// A follower that heard from its leader within the election timeout ignores
// a vote or pre-vote request of a higher term: no term change, no answer
// (thesis §9.6).
TEST(CheckQuorumTest, FollowerInLeaseIgnoresHigherTermVoteRequest) {
  for (MessageType t : {raftpb::MsgRequestVote, raftpb::MsgPreVote}) {
    SCOPED_TRACE(raftpb::MessageType_Name(t));
    TestRaft n =
        NewTestRaft(1, {1, 2, 3}, kElection, kHeartbeat, nullptr, kCheckQuorum);
    StepOk(n.raft.get(), MakeMsg(2, 1, raftpb::MsgHeartbeat, 2));
    ASSERT_EQ(n->lead(), 2u);
    n->ReadMessages();
    n->Tick();  // still well inside the lease

    StepOk(n.raft.get(), VoteReq(t, 3, 1, 3, 2, 10));

    EXPECT_TRUE(n->msgs().empty()) << Describe(n->msgs());
    EXPECT_EQ(n->term(), 2u);
    EXPECT_EQ(n->vote(), kNone);
    EXPECT_EQ(n->lead(), 2u);
    EXPECT_EQ(n->state(), StateType::kFollower);
  }
}

// Once the lease has expired (election_tick ticks without hearing from the
// leader) the same request is granted; a real vote moves the term.
TEST(CheckQuorumTest, FollowerWithExpiredLeaseGrantsHigherTermVote) {
  for (MessageType t : {raftpb::MsgRequestVote, raftpb::MsgPreVote}) {
    SCOPED_TRACE(raftpb::MessageType_Name(t));
    TestRaft n = FollowerInLeaseWithLongTimeout(kPlain);
    for (int i = 0; i < kElection; ++i) n->Tick();
    ASSERT_EQ(n->state(), StateType::kFollower);
    ASSERT_TRUE(n->msgs().empty()) << Describe(n->msgs());

    StepOk(n.raft.get(), VoteReq(t, 3, 1, 3, 2, 10));

    std::vector<Message> msgs = n->ReadMessages();
    ASSERT_EQ(msgs.size(), 1u) << Describe(msgs);
    EXPECT_EQ(msgs[0].to(), 3u);
    EXPECT_FALSE(msgs[0].reject());
    EXPECT_EQ(msgs[0].term(), 3u);
    if (t == raftpb::MsgRequestVote) {
      EXPECT_EQ(msgs[0].msg_type(), raftpb::MsgRequestVoteResponse);
      EXPECT_EQ(n->term(), 3u);
      EXPECT_EQ(n->vote(), 3u);
    } else {
      EXPECT_EQ(msgs[0].msg_type(), raftpb::MsgPreVoteResponse);
      EXPECT_EQ(n->term(), 2u);
      EXPECT_EQ(n->vote(), kNone);
    }
  }
}

// A vote request forced by a leader transfer (context "transfer") is not
// subject to the lease: the leader asked for it.
TEST(CheckQuorumTest, TransferVoteRequestOverridesLease) {
  TestRaft n =
      NewTestRaft(1, {1, 2, 3}, kElection, kHeartbeat, nullptr, kCheckQuorum);
  StepOk(n.raft.get(), MakeMsg(2, 1, raftpb::MsgHeartbeat, 2));
  n->ReadMessages();

  Message req = VoteReq(raftpb::MsgRequestVote, 3, 1, 3, 2, 10);
  req.set_context("transfer");
  StepOk(n.raft.get(), req);

  std::vector<Message> msgs = n->ReadMessages();
  ASSERT_EQ(msgs.size(), 1u) << Describe(msgs);
  EXPECT_EQ(msgs[0].msg_type(), raftpb::MsgRequestVoteResponse);
  EXPECT_FALSE(msgs[0].reject());
  EXPECT_EQ(msgs[0].term(), 3u);
  EXPECT_EQ(n->term(), 3u);
  EXPECT_EQ(n->vote(), 3u);
}

// MsgTimeoutNow makes a follower campaign at once with a real election (no
// pre-vote, even with pre_vote on) whose requests carry the "transfer"
// context.
TEST(CheckQuorumTest, TimeoutNowCampaignsWithTransferContext) {
  TestRaft n = NewTestRaft(2, {1, 2, 3}, kElection, kHeartbeat, nullptr,
                           kPreVoteAndCheckQuorum);
  StepOk(n.raft.get(), MakeMsg(1, 2, raftpb::MsgHeartbeat, 2));
  n->ReadMessages();

  StepOk(n.raft.get(), MakeMsg(1, 2, raftpb::MsgTimeoutNow, 2));

  EXPECT_EQ(n->state(), StateType::kCandidate);
  EXPECT_EQ(n->term(), 3u);
  std::vector<Message> msgs = n->ReadMessages();
  ASSERT_EQ(msgs.size(), 2u) << Describe(msgs);
  EXPECT_EQ(Recipients(msgs), (std::set<uint64_t>{1, 3}));
  for (const Message& m : msgs) {
    EXPECT_EQ(m.msg_type(), raftpb::MsgRequestVote) << DescribeMessage(m);
    EXPECT_EQ(m.term(), 3u);
    EXPECT_EQ(m.context(), "transfer");
  }
}

// In a network with PreVote and CheckQuorum: a follower's own campaign is
// ignored by everybody (leases), but a leader transfer to it succeeds
// (etcd TestLeaderTransferWithCheckQuorum).
TEST(CheckQuorumTest, LeaderTransferSucceedsDespiteLeases) {
  Network net(Fresh(3), kPreVoteAndCheckQuorum);
  net.Send(Hup(1));
  ASSERT_EQ(net.raft(1)->state(), StateType::kLeader);
  uint64_t term = net.raft(1)->term();

  // Control: node 2 campaigning on its own gets nowhere.
  net.Send(Hup(2));
  EXPECT_EQ(net.raft(2)->state(), StateType::kPreCandidate);
  EXPECT_EQ(net.raft(1)->state(), StateType::kLeader);
  EXPECT_EQ(net.raft(2)->term(), term);
  // A heartbeat round brings node 2 back to following node 1.
  Ticker ticker(&net);
  ticker.Tick(1);
  ASSERT_EQ(net.raft(2)->state(), StateType::kFollower);
  ASSERT_EQ(net.raft(2)->lead(), 1u);

  // The transfer: node 1 tells node 2 to time out now.
  Message transfer = MakeMsg(2, 1, raftpb::MsgTransferLeader);
  net.Send(transfer);

  EXPECT_EQ(net.raft(2)->state(), StateType::kLeader);
  EXPECT_EQ(net.raft(2)->term(), term + 1);
  for (uint64_t id : {1, 3}) {
    SCOPED_TRACE(id);
    EXPECT_EQ(net.raft(id)->state(), StateType::kFollower);
    EXPECT_EQ(net.raft(id)->term(), term + 1);
    EXPECT_EQ(net.raft(id)->lead(), 2u);
  }
}

// A follower whose lease has expired supports a new candidate while another
// follower's lease holds (etcd TestLeaderSupersedingWithCheckQuorum).
TEST(CheckQuorumTest, CandidateWinsOnceAFollowerLeaseExpires) {
  // Node 2 needs a randomized timeout above election_tick after node 1's
  // election, so that its lease can run out without it campaigning.
  for (uint64_t seed = 1; seed <= 64; ++seed) {
    Network net(Fresh(3), [seed](Config* c) {
      c->check_quorum = true;
      c->seed = seed * 100 + c->id;
    });
    net.Send(Hup(1));
    ASSERT_EQ(net.raft(1)->state(), StateType::kLeader);
    Raft* b = net.raft(2);
    if (b->randomized_election_timeout() <= kElection) continue;
    uint64_t term = net.raft(1)->term();

    // Both followers are inside their lease: node 3 cannot win.
    net.Send(Hup(3));
    EXPECT_EQ(net.raft(3)->state(), StateType::kCandidate);
    EXPECT_EQ(net.raft(1)->state(), StateType::kLeader);
    EXPECT_EQ(net.raft(1)->term(), term);
    EXPECT_EQ(b->term(), term);

    // Node 2's lease runs out (without it campaigning).
    for (int i = 0; i < kElection; ++i) b->Tick();
    ASSERT_TRUE(b->msgs().empty()) << Describe(b->msgs());
    ASSERT_EQ(b->state(), StateType::kFollower);

    net.Send(Hup(3));
    EXPECT_EQ(net.raft(3)->state(), StateType::kLeader);
    EXPECT_EQ(net.raft(3)->term(), term + 2);
    EXPECT_EQ(b->lead(), 3u);
    // The old leader learns the new term from node 3's appends.
    EXPECT_EQ(net.raft(1)->state(), StateType::kFollower);
    EXPECT_EQ(net.raft(1)->term(), term + 2);
    return;
  }
  FAIL() << "no seed in [1, 64] gives node 2 a timeout above election_tick";
}

// A candidate stuck at a higher term (its requests ignored inside the lease)
// is freed once it meets the leader: its answer to the leader's stale
// heartbeat deposes the leader, and the next election resolves to a single
// leader with every node at one term (etcd
// TestFreeStuckCandidateWithCheckQuorum).
TEST(CheckQuorumTest, FreeStuckCandidate) {
  Network net(Fresh(3), kCheckQuorum);
  net.Send(Hup(1));
  ASSERT_EQ(net.raft(1)->state(), StateType::kLeader);
  Raft* a = net.raft(1);
  Raft* b = net.raft(2);
  Raft* c = net.raft(3);

  net.Isolate(1);
  net.Send(Hup(3));
  EXPECT_EQ(b->state(), StateType::kFollower);
  EXPECT_EQ(c->state(), StateType::kCandidate);
  EXPECT_EQ(c->term(), b->term() + 1);
  // Again: still stuck, one term further.
  net.Send(Hup(3));
  EXPECT_EQ(b->state(), StateType::kFollower);
  EXPECT_EQ(c->state(), StateType::kCandidate);
  EXPECT_EQ(c->term(), b->term() + 2);

  net.Recover();
  // The leader's heartbeat is of a lower term: node 3 answers at its own,
  // and the leader steps down to it.
  net.Send(MakeMsg(1, 3, raftpb::MsgHeartbeat, a->term()));
  EXPECT_EQ(a->state(), StateType::kFollower);
  EXPECT_EQ(a->term(), c->term());

  // Node 1 has no leader any more, so it grants node 3's next request.
  net.Send(Hup(3));
  EXPECT_EQ(c->state(), StateType::kLeader);
  EXPECT_EQ(Leaders(net), std::vector<uint64_t>{3});
  EXPECT_EQ(a->term(), c->term());
  EXPECT_EQ(b->term(), c->term());

  // And it stays resolved as time passes.
  Ticker ticker(&net);
  for (int i = 0; i < 5 * kElection; ++i) ticker.TickAll();
  EXPECT_TRUE(Settled(net));
  EXPECT_EQ(Leaders(net), std::vector<uint64_t>{3});
}

// The same resolution purely by ticking: node 3 is cut off and, with
// check_quorum only, campaigns repeatedly to a high term; after the heal the
// group converges on a single leader and a single term.
TEST(CheckQuorumTest, StuckCandidateResolvesByTicking) {
  Network net(Fresh(3), kCheckQuorum);
  net.Send(Hup(1));
  ASSERT_EQ(net.raft(1)->state(), StateType::kLeader);
  uint64_t term = net.raft(1)->term();
  Ticker ticker(&net);
  ticker.Isolate(3);
  for (int i = 0; i < 5 * kElection; ++i) ticker.TickAll();
  ASSERT_GT(net.raft(3)->term(), term + 1);
  ASSERT_EQ(net.raft(1)->state(), StateType::kLeader);

  ticker.Recover();
  for (int i = 0; i < 20 * kElection && !Settled(net); ++i) ticker.TickAll();
  EXPECT_TRUE(Settled(net));
  std::vector<uint64_t> leaders = Leaders(net);
  ASSERT_EQ(leaders.size(), 1u);
  uint64_t final_term = net.raft(leaders[0])->term();
  for (uint64_t id : {1, 2, 3}) {
    SCOPED_TRACE(id);
    EXPECT_EQ(net.raft(id)->term(), final_term);
  }
}

// A voter that is not in its own membership (so never campaigns) still votes
// and follows; with CheckQuorum its answers keep the leader's quorum alive
// (etcd TestNonPromotableVoterWithCheckQuorum).
TEST(CheckQuorumTest, NonPromotableVoter) {
  TestRaft a =
      NewTestRaft(1, {1, 2}, kElection, kHeartbeat, nullptr, kCheckQuorum);
  TestRaft b =
      NewTestRaft(2, {1}, kElection, kHeartbeat, nullptr, kCheckQuorum);
  std::vector<PeerSpec> specs;
  specs.push_back(PeerSpec::Node(std::move(a)));
  specs.push_back(PeerSpec::Node(std::move(b)));
  Network net(std::move(specs));
  Raft* rb = net.raft(2);

  // Node 2 never times out into an election.
  for (int i = 0; i < 3 * kElection; ++i) rb->Tick();
  EXPECT_TRUE(rb->msgs().empty()) << Describe(rb->msgs());
  EXPECT_EQ(rb->state(), StateType::kFollower);
  EXPECT_EQ(rb->term(), 0u);

  net.Send(Hup(1));
  EXPECT_EQ(net.raft(1)->state(), StateType::kLeader);
  EXPECT_EQ(rb->state(), StateType::kFollower);
  EXPECT_EQ(rb->lead(), 1u);

  Ticker ticker(&net);
  for (int i = 0; i < 5 * kElection; ++i) {
    ticker.TickAll();
    ASSERT_EQ(net.raft(1)->state(), StateType::kLeader) << "tick " << i;
    ASSERT_EQ(rb->state(), StateType::kFollower) << "tick " << i;
  }
  EXPECT_EQ(net.raft(1)->term(), 1u);
}

// A follower times out just before the leader's heartbeat reaches it. Its
// vote requests are ignored (leases, the leader's included), but its answer
// to the now-stale heartbeat carries its higher term and deposes the leader
// (etcd TestDisruptiveFollower).
TEST(CheckQuorumTest, DisruptiveFollower) {
  Network net(Fresh(3), kCheckQuorum);
  net.Send(Hup(1));
  Raft* n1 = net.raft(1);
  Raft* n2 = net.raft(2);
  Raft* n3 = net.raft(3);
  ASSERT_EQ(n1->state(), StateType::kLeader);
  uint64_t term = n1->term();

  // Node 3 ticks into candidacy; its vote requests stay queued.
  for (int i = 0; i < 2 * kElection && n3->state() != StateType::kCandidate;
       ++i) {
    n3->Tick();
  }
  ASSERT_EQ(n3->state(), StateType::kCandidate);
  EXPECT_EQ(n1->state(), StateType::kLeader);
  EXPECT_EQ(n1->term(), term);
  EXPECT_EQ(n2->term(), term);
  EXPECT_EQ(n3->term(), term + 1);

  // The delayed heartbeat arrives; the network then delivers node 3's queued
  // vote requests and its answer.
  net.Send(MakeMsg(1, 3, raftpb::MsgHeartbeat, term));

  EXPECT_EQ(n1->state(), StateType::kFollower);
  EXPECT_EQ(n1->term(), term + 1);
  EXPECT_EQ(n2->state(), StateType::kFollower);
  EXPECT_EQ(n2->term(), term);  // in its lease: ignored the vote request
  EXPECT_EQ(n3->state(), StateType::kCandidate);
  EXPECT_EQ(n3->term(), term + 1);

  // The freed candidate (or anyone) can now complete an election: node 1
  // has no leader and grants node 3.
  net.Send(Hup(3));
  EXPECT_EQ(n3->state(), StateType::kLeader);
  EXPECT_EQ(Leaders(net), std::vector<uint64_t>{3});
}

// The same with PreVote: the follower behind the leader's log becomes a
// pre-candidate without raising its term; its pre-votes are ignored, and the
// delayed heartbeat simply brings it back; the leader stays (etcd
// TestDisruptiveFollowerPreVote).
TEST(CheckQuorumTest, DisruptiveFollowerWithPreVote) {
  Network net(Fresh(3), kPreVoteAndCheckQuorum);
  net.Send(Hup(1));
  Raft* n1 = net.raft(1);
  Raft* n2 = net.raft(2);
  Raft* n3 = net.raft(3);
  ASSERT_EQ(n1->state(), StateType::kLeader);
  uint64_t term = n1->term();

  net.Isolate(3);
  for (int i = 0; i < 3; ++i) net.Send(Proposal(1, "somedata"));
  net.Recover();

  net.Send(Hup(3));
  EXPECT_EQ(n1->state(), StateType::kLeader);
  EXPECT_EQ(n1->term(), term);
  EXPECT_EQ(n2->state(), StateType::kFollower);
  EXPECT_EQ(n2->term(), term);
  // Its pre-votes were ignored (leases), so its round is still open.
  EXPECT_EQ(n3->state(), StateType::kPreCandidate);
  EXPECT_EQ(n3->term(), term);

  net.Send(MakeMsg(1, 3, raftpb::MsgHeartbeat, term));
  EXPECT_EQ(n1->state(), StateType::kLeader);
  EXPECT_EQ(n1->term(), term);
  EXPECT_EQ(n3->state(), StateType::kFollower);
  EXPECT_EQ(n3->lead(), 1u);
  EXPECT_EQ(n3->term(), term);
  // The heartbeat answer made the leader send node 3 what it missed.
  EXPECT_EQ(n3->raft_log().last_index(), n1->raft_log().last_index());
}

// A pre-candidate stuck because the live follower's lease ignores it does not
// block that follower from being elected once it times out: the stuck node
// has no leader, hence no lease, and grants (etcd TestPreVoteWithCheckQuorum).
TEST(CheckQuorumTest, StuckPreCandidateDoesNotBlockElection) {
  Network net(Fresh(3), kPreVoteAndCheckQuorum);
  net.Send(Hup(1));
  ASSERT_EQ(net.raft(1)->state(), StateType::kLeader);
  uint64_t term = net.raft(1)->term();

  net.Isolate(1);
  net.Send(Hup(3));
  EXPECT_EQ(net.raft(3)->state(), StateType::kPreCandidate);
  EXPECT_EQ(net.raft(3)->term(), term);
  EXPECT_EQ(net.raft(2)->state(), StateType::kFollower);
  EXPECT_EQ(net.raft(2)->lead(), 1u);

  net.Send(Hup(2));
  EXPECT_EQ(net.raft(2)->state(), StateType::kLeader);
  EXPECT_EQ(net.raft(2)->term(), term + 1);
  EXPECT_EQ(net.raft(3)->state(), StateType::kFollower);
  EXPECT_EQ(net.raft(3)->lead(), 2u);
}

}  // namespace
}  // namespace raftkv::raft::test
