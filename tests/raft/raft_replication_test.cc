// Log replication tests for the raft core (Raft paper §5.3 and §5.4): how a
// leader replicates and commits entries, how a follower checks and accepts
// appends, and how elections interact with log contents. These re-create the
// "2AB: log replication" scenarios of the TinyKV Project 2A suite in our own
// words, against raftkv's etcd-style semantics.

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "raft/errors.h"
#include "raft/raft.h"
#include "raft/storage.h"
#include "raft/types.h"
#include "test_util.h"

namespace raftkv::raft::test {
namespace {

using raftpb::Entry;
using raftpb::Message;

// ---- helpers ---------------------------------------------------------------

Message Hup(uint64_t id) { return MakeMsg(id, id, raftpb::MsgHup); }
Message Beat(uint64_t id) { return MakeMsg(id, id, raftpb::MsgBeat); }

// A local proposal of one entry carrying `data`.
Message Propose(uint64_t id, const std::string& data) {
  Message m = MakeMsg(id, id, raftpb::MsgPropose);
  *m.add_entries() = MakeEntry(0, 0, data);
  return m;
}

// A MsgAppend from -> to at `term` whose entries follow (index, log_term).
Message Append(uint64_t from, uint64_t to, uint64_t term, uint64_t log_term,
               uint64_t index, uint64_t commit,
               const std::vector<Entry>& ents = {}) {
  Message m = MakeMsg(from, to, raftpb::MsgAppend, term);
  m.set_log_term(log_term);
  m.set_index(index);
  m.set_commit(commit);
  for (const Entry& e : ents) *m.add_entries() = e;
  return m;
}

// A MsgRequestVote from -> to at `term` for a log ending at (index, log_term).
Message VoteRequest(uint64_t from, uint64_t to, uint64_t term,
                    uint64_t log_term, uint64_t index) {
  Message m = MakeMsg(from, to, raftpb::MsgRequestVote, term);
  m.set_log_term(log_term);
  m.set_index(index);
  return m;
}

// Entries (index i+1, term terms[i]) with no data.
std::vector<Entry> EntriesWithTerms(const std::vector<uint64_t>& terms) {
  std::vector<Entry> ents;
  for (size_t i = 0; i < terms.size(); ++i) {
    ents.push_back(MakeEntry(i + 1, terms[i]));
  }
  return ents;
}

// A storage that already holds (persisted) `ents` and the hard state `hs`.
std::unique_ptr<MemoryStorage> StorageWith(
    const std::vector<Entry>& ents,
    const raftpb::HardState& hs = raftpb::HardState()) {
  auto s = std::make_unique<MemoryStorage>();
  if (!ents.empty()) {
    EXPECT_TRUE(s->Append(ents).ok());
  }
  s->SetHardState(hs);
  return s;
}

raftpb::HardState MakeHardState(uint64_t term, uint64_t vote, uint64_t commit) {
  raftpb::HardState hs;
  hs.set_term(term);
  hs.set_vote(vote);
  hs.set_commit(commit);
  return hs;
}

// Renders entries as "index/term" or "index/term:data", space separated, so
// that logs compare as strings with a readable diff.
std::string Summary(const std::vector<Entry>& ents) {
  return absl::StrJoin(ents, " ", [](std::string* out, const Entry& e) {
    absl::StrAppend(out, e.index(), "/", e.term());
    if (!e.data().empty()) absl::StrAppend(out, ":", e.data());
  });
}

std::string Summary(const RaftLog& log) { return Summary(log.AllEntries()); }

// The data of the non-empty entries (no-ops skipped), in order.
std::vector<std::string> Payloads(const std::vector<Entry>& ents) {
  std::vector<std::string> out;
  for (const Entry& e : ents) {
    if (!e.data().empty()) out.push_back(e.data());
  }
  return out;
}

std::vector<Message> SortedByTo(std::vector<Message> msgs) {
  std::stable_sort(
      msgs.begin(), msgs.end(),
      [](const Message& a, const Message& b) { return a.to() < b.to(); });
  return msgs;
}

std::string Describe(const std::vector<Message>& msgs) {
  return absl::StrJoin(msgs, "\n", [](std::string* out, const Message& m) {
    absl::StrAppend(out, DescribeMessage(m));
  });
}

// n fresh nodes (ids 1..n) for a Network.
std::vector<PeerSpec> FreshPeers(size_t n) {
  std::vector<PeerSpec> peers;
  for (size_t i = 0; i < n; ++i) peers.push_back(PeerSpec::Fresh());
  return peers;
}

// A leader of {1..n} whose no-op is committed, persisted and applied on it.
// `edit` may change its config.
TestRaft CommittedLeader(uint64_t n,
                         const std::function<void(Config*)>& edit = {}) {
  std::vector<uint64_t> peers;
  for (uint64_t i = 1; i <= n; ++i) peers.push_back(i);
  TestRaft t = NewTestRaft(1, peers, 10, 1, nullptr, edit);
  t->BecomeCandidate();
  t->BecomeLeader();
  CommitNoopEntry(t.raft.get(), t.storage.get());
  return t;
}

// ---- leader side -----------------------------------------------------------

// §5.3: "the leader appends the command to its log as a new entry, then issues
// AppendEntries RPCs in parallel to each of the other servers to replicate the
// entry."
TEST(RaftReplicationTest, LeaderStartsReplicationOnProposal) {
  TestRaft r = CommittedLeader(3);
  if (HasFatalFailure()) return;
  const uint64_t li = r->raft_log().last_index();

  ASSERT_TRUE(r->Step(Propose(1, "some data")).ok());

  EXPECT_EQ(r->raft_log().last_index(), li + 1);
  EXPECT_EQ(r->raft_log().committed(), li);
  std::vector<Message> msgs = SortedByTo(r->ReadMessages());
  ASSERT_EQ(msgs.size(), 2u) << Describe(msgs);
  for (size_t i = 0; i < msgs.size(); ++i) {
    const Message& m = msgs[i];
    SCOPED_TRACE(DescribeMessage(m));
    EXPECT_EQ(m.msg_type(), raftpb::MsgAppend);
    EXPECT_EQ(m.from(), 1u);
    EXPECT_EQ(m.to(), i + 2);
    EXPECT_EQ(m.term(), 1u);
    EXPECT_EQ(m.index(), li);
    EXPECT_EQ(m.log_term(), 1u);
    EXPECT_EQ(m.commit(), li);
    EXPECT_EQ(Summary({m.entries().begin(), m.entries().end()}),
              absl::StrCat(li + 1, "/1:some data"));
  }
  EXPECT_EQ(Summary(r->raft_log().UnstableEntries()),
            absl::StrCat(li + 1, "/1:some data"));
}

// §5.3: "When the entry has been safely replicated, the leader applies the
// entry to its state machine"; the leader then tells followers the new commit
// index (we broadcast it with MsgAppend).
TEST(RaftReplicationTest, LeaderCommitsEntryReplicatedOnMajority) {
  TestRaft r = CommittedLeader(3);
  if (HasFatalFailure()) return;
  const uint64_t li = r->raft_log().last_index();
  ASSERT_TRUE(r->Step(Propose(1, "some data")).ok());

  for (const Message& m : r->ReadMessages()) {
    ASSERT_TRUE(r->Step(AcceptAndReply(m)).ok());
  }

  EXPECT_EQ(r->raft_log().committed(), li + 1);
  EXPECT_EQ(Summary(NextEnts(r.raft.get(), r.storage.get())),
            absl::StrCat(li + 1, "/1:some data"));
  std::vector<Message> msgs = SortedByTo(r->ReadMessages());
  ASSERT_EQ(msgs.size(), 2u) << Describe(msgs);
  for (size_t i = 0; i < msgs.size(); ++i) {
    SCOPED_TRACE(DescribeMessage(msgs[i]));
    EXPECT_EQ(msgs[i].msg_type(), raftpb::MsgAppend);
    EXPECT_EQ(msgs[i].to(), i + 2);
    EXPECT_EQ(msgs[i].commit(), li + 1);
  }
}

// §5.3: "A log entry is committed once the leader that created the entry has
// replicated it on a majority of the servers."
TEST(RaftReplicationTest, LeaderCommitsOnlyWithMajorityIncludingItself) {
  struct Case {
    uint64_t size;
    std::vector<uint64_t> acceptors;
    bool committed;
  };
  const std::vector<Case> cases = {
      {1, {}, true},     {3, {}, false},       {3, {2}, true},
      {3, {2, 3}, true}, {5, {}, false},       {5, {2}, false},
      {5, {2, 3}, true}, {5, {2, 3, 4}, true}, {5, {2, 3, 4, 5}, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("size ", c.size, " acceptors {",
                              absl::StrJoin(c.acceptors, ","), "}"));
    TestRaft r = CommittedLeader(c.size);
    if (HasFatalFailure()) return;
    const uint64_t li = r->raft_log().last_index();
    ASSERT_TRUE(r->Step(Propose(1, "some data")).ok());
    for (const Message& m : r->ReadMessages()) {
      if (std::count(c.acceptors.begin(), c.acceptors.end(), m.to())) {
        ASSERT_TRUE(r->Step(AcceptAndReply(m)).ok());
      }
    }
    EXPECT_EQ(r->raft_log().committed() > li, c.committed);
  }
}

// §5.3: committing an entry "also commits all preceding entries in the
// leader's log, including entries created by previous leaders."
TEST(RaftReplicationTest, LeaderCommitsPrecedingEntries) {
  const std::vector<std::vector<Entry>> cases = {
      {},
      {MakeEntry(1, 2)},
      {MakeEntry(1, 1), MakeEntry(2, 2)},
      {MakeEntry(1, 1)},
  };
  for (const std::vector<Entry>& old : cases) {
    SCOPED_TRACE(absl::StrCat("old log [", Summary(old), "]"));
    TestRaft r = NewTestRaft(1, {1, 2, 3}, 10, 1,
                             StorageWith(old, MakeHardState(2, 0, 0)));
    ASSERT_EQ(r->term(), 2u);
    r->BecomeCandidate();
    r->BecomeLeader();
    ASSERT_EQ(r->term(), 3u);
    ASSERT_TRUE(r->Step(Propose(1, "some data")).ok());
    for (const Message& m : r->ReadMessages()) {
      ASSERT_TRUE(r->Step(AcceptAndReply(m)).ok());
    }

    const uint64_t li = old.size();
    std::vector<Entry> want = old;
    want.push_back(MakeEntry(li + 1, 3));
    want.push_back(MakeEntry(li + 2, 3, "some data"));
    EXPECT_EQ(Summary(NextEnts(r.raft.get(), r.storage.get())), Summary(want));
  }
}

// §5.4.2: "Raft never commits log entries from previous terms by counting
// replicas. Only log entries from the leader's current term are committed by
// counting replicas."
TEST(RaftReplicationTest, LeaderOnlyCommitsEntriesOfItsOwnTerm) {
  struct Case {
    uint64_t ack_index;
    uint64_t want_committed;
  };
  for (const Case& c : std::vector<Case>{{1, 0}, {2, 0}, {3, 3}}) {
    SCOPED_TRACE(absl::StrCat("ack index ", c.ack_index));
    TestRaft r = NewTestRaft(
        1, {1, 2}, 10, 1,
        StorageWith(EntriesWithTerms({1, 2}), MakeHardState(2, 0, 0)));
    r->BecomeCandidate();
    r->BecomeLeader();  // no-op at (3, 3)
    r->ReadMessages();
    ASSERT_TRUE(r->Step(Propose(1, "data")).ok());  // (4, 3)
    ASSERT_EQ(r->raft_log().last_index(), 4u);

    Message resp = MakeMsg(2, 1, raftpb::MsgAppendResponse, r->term());
    resp.set_index(c.ack_index);
    ASSERT_TRUE(r->Step(resp).ok());
    EXPECT_EQ(r->raft_log().committed(), c.want_committed);
  }
}

// The leader tracks its own progress like any other: after each append its
// match is its last index and next the one after.
TEST(RaftReplicationTest, LeaderTracksItsOwnProgress) {
  TestRaft r = NewTestRaft(1, {1, 2}, 5, 1);
  r->BecomeCandidate();
  r->BecomeLeader();
  for (uint64_t i = 0; i < 5; ++i) {
    const Progress* pr = r->tracker().Get(1);
    ASSERT_NE(pr, nullptr);
    EXPECT_EQ(pr->state, ProgressState::kReplicate) << "proposal " << i;
    EXPECT_EQ(pr->match, i + 1) << "proposal " << i;
    EXPECT_EQ(pr->next, pr->match + 1) << "proposal " << i;
    ASSERT_TRUE(r->Step(Propose(1, "foo")).ok());
  }
}

// After probing, the leader streams entries to a follower; once the follower
// acknowledged everything, next is one past the leader's last index.
TEST(RaftReplicationTest, LeaderAdvancesNextAfterFollowerCatchesUp) {
  TestRaft sm =
      NewTestRaft(1, {1, 2}, 10, 1, StorageWith(EntriesWithTerms({1, 1, 1})));
  std::vector<PeerSpec> peers;
  peers.push_back(PeerSpec::Node(std::move(sm)));
  peers.push_back(PeerSpec::Fresh());
  peers.push_back(PeerSpec::Fresh());
  Network nt(std::move(peers));

  nt.Send(Hup(1));
  ASSERT_EQ(nt.raft(1)->state(), StateType::kLeader);
  nt.Send(Propose(1, "somedata"));

  // 3 old entries, the no-op and the proposal: next is 6.
  const Progress* pr = nt.raft(1)->tracker().Get(2);
  ASSERT_NE(pr, nullptr);
  EXPECT_EQ(pr->match, 5u);
  EXPECT_EQ(pr->next, 6u);
  EXPECT_EQ(Summary(nt.raft(2)->raft_log()), "1/1 2/1 3/1 4/1 5/1:somedata");
}

// ---- follower side ---------------------------------------------------------

// §5.3: "Once a follower learns that a log entry is committed, it applies the
// entry to its local state machine (in log order)."
TEST(RaftReplicationTest, FollowerCommitsEntriesTheLeaderCommitted) {
  struct Case {
    std::vector<Entry> ents;
    uint64_t commit;
  };
  const std::vector<Case> cases = {
      {{MakeEntry(1, 1, "some data")}, 1},
      {{MakeEntry(1, 1, "some data"), MakeEntry(2, 1, "some data2")}, 2},
      {{MakeEntry(1, 1, "some data2"), MakeEntry(2, 1, "some data")}, 2},
      {{MakeEntry(1, 1, "some data"), MakeEntry(2, 1, "some data2")}, 1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("[", Summary(c.ents), "] commit ", c.commit));
    TestRaft r = NewTestRaft(1, {1, 2, 3}, 10, 1);
    r->BecomeFollower(1, 2);
    ASSERT_TRUE(r->Step(Append(2, 1, 1, 0, 0, c.commit, c.ents)).ok());

    EXPECT_EQ(r->raft_log().committed(), c.commit);
    std::vector<Entry> want(c.ents.begin(), c.ents.begin() + c.commit);
    EXPECT_EQ(Summary(NextEnts(r.raft.get(), r.storage.get())), Summary(want));
  }
}

// §5.3: "If the follower does not find an entry in its log with the same
// index and term, then it refuses the new entries." A rejection carries a
// hint (etcd's fast backtracking): the largest index at or below
// min(m.index, last) whose term is <= m.log_term, with that term.
TEST(RaftReplicationTest, FollowerChecksPrecedingEntryOfAppend) {
  struct Case {
    uint64_t log_term, index;
    uint64_t want_index;
    bool want_reject;
    uint64_t want_hint, want_hint_term;
  };
  const std::vector<Case> cases = {
      // Matches a committed entry: the follower answers with what it knows
      // to match, at least its committed index.
      {0, 0, 1, false, 0, 0},
      {1, 1, 1, false, 0, 0},
      // Matches an uncommitted entry.
      {2, 2, 2, false, 0, 0},
      // Entry 2 exists with another term: hint at entry 1 (term 1 <= 1).
      {1, 2, 2, true, 1, 1},
      // Entry 3 does not exist: hint at the last entry (2, 2).
      {3, 3, 3, true, 2, 2},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("append after (", c.index, ",", c.log_term, ")"));
    TestRaft r = NewTestRaft(
        1, {1, 2, 3}, 10, 1,
        StorageWith(EntriesWithTerms({1, 2}), MakeHardState(0, 0, 1)));
    r->BecomeFollower(2, 2);
    ASSERT_TRUE(r->Step(Append(2, 1, 2, c.log_term, c.index, 0)).ok());

    std::vector<Message> msgs = r->ReadMessages();
    ASSERT_EQ(msgs.size(), 1u) << Describe(msgs);
    const Message& m = msgs[0];
    SCOPED_TRACE(DescribeMessage(m));
    EXPECT_EQ(m.msg_type(), raftpb::MsgAppendResponse);
    EXPECT_EQ(m.from(), 1u);
    EXPECT_EQ(m.to(), 2u);
    EXPECT_EQ(m.term(), 2u);
    EXPECT_EQ(m.index(), c.want_index);
    EXPECT_EQ(m.reject(), c.want_reject);
    if (c.want_reject) {
      EXPECT_EQ(m.reject_hint(), c.want_hint);
      EXPECT_EQ(m.log_term(), c.want_hint_term);
    }
    // A rejected or empty append never changes the log.
    EXPECT_EQ(Summary(r->raft_log()), "1/1 2/2");
  }
}

// §5.3: "If an existing entry conflicts with a new one (same index but
// different terms), delete the existing entry and all that follow it; append
// any new entries not already in the log." The entries start persisted, so a
// truncation must move stabled() back to the last surviving stable entry.
TEST(RaftReplicationTest, FollowerAppendsAndTruncatesConflictingEntries) {
  struct Case {
    uint64_t index, log_term, term;
    std::vector<Entry> ents;
    std::string want_log, want_unstable;
    uint64_t want_stabled;
  };
  const std::vector<Case> cases = {
      {2, 2, 3, {MakeEntry(3, 3)}, "1/1 2/2 3/3", "3/3", 2},
      {1,
       1,
       4,
       {MakeEntry(2, 3), MakeEntry(3, 4)},
       "1/1 2/3 3/4",
       "2/3 3/4",
       1},
      {0, 0, 2, {MakeEntry(1, 1)}, "1/1 2/2", "", 2},
      {0, 0, 3, {MakeEntry(1, 3)}, "1/3", "1/3", 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("append [", Summary(c.ents), "] after (", c.index,
                              ",", c.log_term, ") at term ", c.term));
    TestRaft r = NewTestRaft(
        1, {1, 2, 3}, 10, 1,
        StorageWith(EntriesWithTerms({1, 2}), MakeHardState(2, 0, 0)));
    r->BecomeFollower(2, 2);
    ASSERT_EQ(r->raft_log().stabled(), 2u);

    ASSERT_TRUE(
        r->Step(Append(2, 1, c.term, c.log_term, c.index, 0, c.ents)).ok());

    EXPECT_EQ(Summary(r->raft_log()), c.want_log);
    EXPECT_EQ(Summary(r->raft_log().UnstableEntries()), c.want_unstable);
    EXPECT_EQ(r->raft_log().stabled(), c.want_stabled);
    EXPECT_EQ(r->term(), c.term);
    std::vector<Message> msgs = r->ReadMessages();
    ASSERT_EQ(msgs.size(), 1u) << Describe(msgs);
    EXPECT_EQ(msgs[0].msg_type(), raftpb::MsgAppendResponse);
    EXPECT_FALSE(msgs[0].reject());
    EXPECT_EQ(msgs[0].index(), c.index + c.ents.size());
  }
}

// MsgAppend handling in full: the consistency check, the append and the
// commit rule "If leaderCommit > commitIndex, set commitIndex =
// min(leaderCommit, index of last new entry)" (Figure 2). The follower is at
// term 2 with log (1,1),(2,2) and committed 0; every append is at term 2.
TEST(RaftReplicationTest, FollowerHandlesAppendConsistencyAndCommit) {
  struct Case {
    uint64_t log_term, index, commit;
    std::vector<Entry> ents;
    uint64_t want_last, want_committed;
    bool want_reject;
  };
  const std::vector<Case> cases = {
      // The previous entry does not match: reject, nothing changes.
      {3, 2, 3, {}, 2, 0, true},
      {3, 3, 3, {}, 2, 0, true},
      // Matches; commit bounded by the last entry the append vouches for.
      {1, 1, 1, {}, 2, 1, false},
      {0, 0, 1, {MakeEntry(1, 2)}, 1, 1, false},
      {2, 2, 3, {MakeEntry(3, 2), MakeEntry(4, 2)}, 4, 3, false},
      {2, 2, 4, {MakeEntry(3, 2)}, 3, 3, false},
      {1, 1, 4, {MakeEntry(2, 2)}, 2, 2, false},
      // Matching but no entries: commit min(leader commit, index).
      {1, 1, 3, {}, 2, 1, false},
      {1, 1, 3, {MakeEntry(2, 2)}, 2, 2, false},
      {2, 2, 3, {}, 2, 2, false},
      {2, 2, 4, {}, 2, 2, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("append [", Summary(c.ents), "] after (", c.index,
                              ",", c.log_term, ") commit ", c.commit));
    TestRaft r =
        NewTestRaft(1, {1, 2, 3}, 10, 1, StorageWith(EntriesWithTerms({1, 2})));
    r->BecomeFollower(2, kNone);

    ASSERT_TRUE(
        r->Step(Append(2, 1, 2, c.log_term, c.index, c.commit, c.ents)).ok());

    EXPECT_EQ(r->raft_log().last_index(), c.want_last);
    EXPECT_EQ(r->raft_log().committed(), c.want_committed);
    EXPECT_EQ(r->term(), 2u);
    EXPECT_EQ(r->lead(), 2u);
    std::vector<Message> msgs = r->ReadMessages();
    ASSERT_EQ(msgs.size(), 1u) << Describe(msgs);
    EXPECT_EQ(msgs[0].msg_type(), raftpb::MsgAppendResponse);
    EXPECT_EQ(msgs[0].term(), 2u);
    EXPECT_EQ(msgs[0].reject(), c.want_reject) << DescribeMessage(msgs[0]);
  }
}

// ---- votes and logs (§5.4.1) -----------------------------------------------

// §5.4.1: the RequestVote RPC "includes information about the candidate's
// log": the index and term of its last entry.
TEST(RaftReplicationTest, VoteRequestCarriesLastLogPosition) {
  struct Case {
    std::vector<Entry> ents;
    uint64_t want_term;
  };
  const std::vector<Case> cases = {
      {{MakeEntry(1, 1)}, 2},
      {{MakeEntry(1, 1), MakeEntry(2, 2)}, 3},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("log [", Summary(c.ents), "]"));
    TestRaft r = NewTestRaft(1, {1, 2, 3}, 10, 1);
    ASSERT_TRUE(r->Step(Append(2, 1, c.want_term - 1, 0, 0, 0, c.ents)).ok());
    r->ReadMessages();

    // The randomized timeout is in [10, 20): 19 ticks start exactly one
    // election.
    for (int i = 1; i < 2 * 10; ++i) r->Tick();

    ASSERT_EQ(r->state(), StateType::kCandidate);
    std::vector<Message> msgs = SortedByTo(r->ReadMessages());
    ASSERT_EQ(msgs.size(), 2u) << Describe(msgs);
    for (size_t i = 0; i < msgs.size(); ++i) {
      const Message& m = msgs[i];
      SCOPED_TRACE(DescribeMessage(m));
      EXPECT_EQ(m.msg_type(), raftpb::MsgRequestVote);
      EXPECT_EQ(m.to(), i + 2);
      EXPECT_EQ(m.term(), c.want_term);
      EXPECT_EQ(m.index(), c.ents.back().index());
      EXPECT_EQ(m.log_term(), c.ents.back().term());
    }
  }
}

// §5.4.1: "the voter denies its vote if its own log is more up-to-date than
// that of the candidate": the later last term wins; with equal last terms the
// longer log wins.
TEST(RaftReplicationTest, VoterComparesLogs) {
  struct Case {
    std::vector<Entry> ents;
    uint64_t log_term, index;
    bool want_reject;
  };
  const std::vector<Case> cases = {
      // Same last term: candidate at least as long.
      {{MakeEntry(1, 1)}, 1, 1, false},
      {{MakeEntry(1, 1)}, 1, 2, false},
      {{MakeEntry(1, 1), MakeEntry(2, 1)}, 1, 1, true},
      // Candidate's last term is higher.
      {{MakeEntry(1, 1)}, 2, 1, false},
      {{MakeEntry(1, 1)}, 2, 2, false},
      {{MakeEntry(1, 1), MakeEntry(2, 1)}, 2, 1, false},
      {{MakeEntry(1, 1), MakeEntry(2, 1)}, 2, 2, false},
      // Candidate's last term is lower.
      {{MakeEntry(1, 2)}, 1, 1, true},
      {{MakeEntry(1, 2)}, 1, 2, true},
      {{MakeEntry(1, 2), MakeEntry(2, 1)}, 1, 1, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("log [", Summary(c.ents), "] vs candidate (",
                              c.index, ",", c.log_term, ")"));
    TestRaft r = NewTestRaft(1, {1, 2}, 10, 1, StorageWith(c.ents));
    ASSERT_TRUE(r->Step(VoteRequest(2, 1, 3, c.log_term, c.index)).ok());

    std::vector<Message> msgs = r->ReadMessages();
    ASSERT_EQ(msgs.size(), 1u) << Describe(msgs);
    EXPECT_EQ(msgs[0].msg_type(), raftpb::MsgRequestVoteResponse);
    EXPECT_EQ(msgs[0].to(), 2u);
    EXPECT_EQ(msgs[0].term(), 3u);
    EXPECT_EQ(msgs[0].reject(), c.want_reject);
  }
}

// Vote handling across roles. A node grants a vote in its current term only
// if it has not voted for someone else (§5.2: "each server will vote for at
// most one candidate in a given term") and the candidate's log is at least as
// up-to-date (§5.4.1). The node's log is (1,2),(2,2).
TEST(RaftReplicationTest, ReceiverDecidesVoteRequest) {
  struct Case {
    StateType state;
    uint64_t index, log_term, vote;
    bool want_reject;
  };
  std::vector<Case> cases;
  for (uint64_t index = 0; index <= 3; ++index) {
    for (uint64_t log_term = 0; log_term <= 3; ++log_term) {
      bool reject = log_term < 2 || (log_term == 2 && index < 2);
      cases.push_back({StateType::kFollower, index, log_term, kNone, reject});
    }
  }
  cases.push_back({StateType::kFollower, 3, 2, 2, false});  // same candidate
  cases.push_back({StateType::kFollower, 3, 2, 1, true});   // voted for 1
  cases.push_back({StateType::kLeader, 3, 3, 1, true});
  cases.push_back({StateType::kCandidate, 3, 3, 1, true});

  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat(std::string(StateTypeName(c.state)), " vote ",
                              c.vote, " request (", c.index, ",", c.log_term,
                              ")"));
    const uint64_t term = std::max<uint64_t>(2, c.log_term);
    // Followers load (term, vote); leader and candidate reach `term` by
    // campaigning, which votes for themselves (vote 1).
    const bool follower = c.state == StateType::kFollower;
    TestRaft r =
        NewTestRaft(1, {1, 2, 3}, 10, 1,
                    StorageWith(EntriesWithTerms({2, 2}),
                                MakeHardState(follower ? term : term - 1,
                                              follower ? c.vote : kNone, 0)));
    if (!follower) {
      r->BecomeCandidate();
      if (c.state == StateType::kLeader) r->BecomeLeader();
    }
    r->ReadMessages();
    ASSERT_EQ(r->state(), c.state);
    ASSERT_EQ(r->term(), term);
    ASSERT_EQ(r->vote(), c.vote);

    ASSERT_TRUE(r->Step(VoteRequest(2, 1, term, c.log_term, c.index)).ok());

    std::vector<Message> msgs = r->ReadMessages();
    ASSERT_EQ(msgs.size(), 1u) << Describe(msgs);
    EXPECT_EQ(msgs[0].msg_type(), raftpb::MsgRequestVoteResponse);
    EXPECT_EQ(msgs[0].to(), 2u);
    EXPECT_EQ(msgs[0].term(), term);
    EXPECT_EQ(msgs[0].reject(), c.want_reject);
  }
}

// §5.1: "If one server's current term is smaller than the other's, then it
// updates its current term to the larger value. If a candidate or leader
// discovers that its term is out of date, it immediately reverts to follower
// state." A vote request and then an append at term 3 leave any role a
// follower at term 3; the append does not match (no entry at index 0 has
// term 3), so it must not truncate anything, but it names the leader.
TEST(RaftReplicationTest, AllServersStepDownOnHigherTerm) {
  struct Case {
    StateType state;
    uint64_t want_last_index;
  };
  const std::vector<Case> cases = {
      {StateType::kFollower, 0},
      {StateType::kCandidate, 0},
      {StateType::kLeader, 1},  // keeps its no-op
  };
  for (const Case& c : cases) {
    TestRaft r = NewTestRaft(1, {1, 2, 3}, 10, 1);
    switch (c.state) {
      case StateType::kFollower:
        r->BecomeFollower(1, kNone);
        break;
      case StateType::kCandidate:
        r->BecomeCandidate();
        break;
      case StateType::kLeader:
        r->BecomeCandidate();
        r->BecomeLeader();
        break;
      case StateType::kPreCandidate:
        FAIL() << "not a case of this test";
    }
    r->ReadMessages();

    for (raftpb::MessageType type :
         {raftpb::MsgRequestVote, raftpb::MsgAppend}) {
      SCOPED_TRACE(absl::StrCat(std::string(StateTypeName(c.state)), " then ",
                                raftpb::MessageType_Name(type)));
      Message m = MakeMsg(2, 1, type, 3);
      m.set_log_term(3);
      ASSERT_TRUE(r->Step(m).ok());

      EXPECT_EQ(r->state(), StateType::kFollower);
      EXPECT_EQ(r->term(), 3u);
      EXPECT_EQ(r->raft_log().last_index(), c.want_last_index);
      EXPECT_EQ(r->raft_log().AllEntries().size(), c.want_last_index);
      EXPECT_EQ(r->lead(), type == raftpb::MsgAppend ? 2u : kNone);
    }
  }
}

// ---- whole-group scenarios
// ---------------------------------------------------

// §5.3, Figure 7: whatever the follower's log (missing entries, extra
// uncommitted entries, entries of other terms), the new leader brings it to
// match its own by backing up and overwriting.
TEST(RaftReplicationTest, LeaderSyncsFollowerLogFigure7) {
  const std::vector<uint64_t> leader_terms = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
  const uint64_t term = 8;
  const std::vector<std::vector<uint64_t>> follower_terms = {
      {1, 1, 1, 4, 4, 5, 5, 6, 6},           // (a) missing one
      {1, 1, 1, 4},                          // (b) missing many
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6},     // (c) one extra
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7},  // (d) extra of a later term
      {1, 1, 1, 4, 4, 4, 4},                 // (e) missing and extra
      {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3},     // (f) many of old terms
  };
  for (size_t i = 0; i < follower_terms.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("follower (", std::string(1, 'a' + i), ")"));
    TestRaft lead =
        NewTestRaft(1, {1, 2, 3}, 10, 1,
                    StorageWith(EntriesWithTerms(leader_terms),
                                MakeHardState(term, 0, leader_terms.size())));
    TestRaft follower =
        NewTestRaft(2, {1, 2, 3}, 10, 1,
                    StorageWith(EntriesWithTerms(follower_terms[i]),
                                MakeHardState(term - 1, 0, 0)));
    std::vector<PeerSpec> peers;
    peers.push_back(PeerSpec::Node(std::move(lead)));
    peers.push_back(PeerSpec::Node(std::move(follower)));
    peers.push_back(PeerSpec::BlackHole());
    Network nt(std::move(peers));

    nt.Send(Hup(1));
    // Node 3 (a black hole) "grants" its vote, so node 1 wins even if the
    // follower's log is more up-to-date (case d).
    Message grant = MakeMsg(3, 1, raftpb::MsgRequestVoteResponse, term + 1);
    nt.Send(grant);
    ASSERT_EQ(nt.raft(1)->state(), StateType::kLeader);
    nt.Send(Propose(1, "x"));

    const std::string want =
        absl::StrCat(Summary(EntriesWithTerms(leader_terms)), " 11/9 12/9:x");
    EXPECT_EQ(Summary(nt.raft(1)->raft_log()), want);
    EXPECT_EQ(LogString(nt.raft(2)->raft_log()),
              LogString(nt.raft(1)->raft_log()));
    EXPECT_EQ(nt.raft(2)->raft_log().committed(), 12u);
  }
}

// §5.4.1: a candidate whose log is behind a majority loses; a later
// candidate with an up-to-date log wins and its log overwrites newer-term
// entries that were never committed.
TEST(RaftReplicationTest, LeaderElectionOverwritesNewerUncommittedLogs) {
  const std::vector<uint64_t> ids = {1, 2, 3, 4, 5};
  std::vector<PeerSpec> peers;
  peers.push_back(PeerSpec::Node(EntsWithConfig({}, 1, ids, {1})));
  peers.push_back(PeerSpec::Node(EntsWithConfig({}, 2, ids, {1})));
  peers.push_back(PeerSpec::Node(EntsWithConfig({}, 3, ids, {2})));
  peers.push_back(PeerSpec::Node(VotedWithConfig({}, 4, ids, 3, 2)));
  peers.push_back(PeerSpec::Node(VotedWithConfig({}, 5, ids, 3, 2)));
  Network nt(std::move(peers));

  // Term 2: node 3 has a newer log, nodes 4 and 5 already voted for 3. Node 1
  // gets only node 2's vote; rejected by a majority, it steps down.
  nt.Send(Hup(1));
  EXPECT_EQ(nt.raft(1)->state(), StateType::kFollower);
  EXPECT_EQ(nt.raft(1)->term(), 2u);

  // Term 3: nodes 2, 4 and 5 vote for it.
  nt.Send(Hup(1));
  EXPECT_EQ(nt.raft(1)->state(), StateType::kLeader);
  EXPECT_EQ(nt.raft(1)->term(), 3u);

  for (uint64_t id : ids) {
    SCOPED_TRACE(absl::StrCat("node ", id));
    EXPECT_EQ(Summary(nt.raft(id)->raft_log()), "1/1 2/3");
    EXPECT_EQ(nt.raft(id)->term(), 3u);
  }
}

// Proposals on the leader are replicated and committed on every node, across
// a change of leader; committed entries come out in proposal order.
TEST(RaftReplicationTest, LogReplicationAcrossLeaders) {
  struct Case {
    std::vector<Message> msgs;
    uint64_t want_committed;
  };
  const std::vector<Case> cases = {
      {{Hup(1), Propose(1, "somedata")}, 2},
      {{Hup(1), Propose(1, "somedata"), Hup(2), Propose(2, "somedata2")}, 4},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("case ", i));
    const Case& c = cases[i];
    Network nt(FreshPeers(3));
    std::vector<std::string> proposed;
    for (const Message& m : c.msgs) {
      nt.Send(m);
      if (m.msg_type() == raftpb::MsgPropose) {
        proposed.push_back(m.entries(0).data());
      }
    }
    for (uint64_t id : nt.ids()) {
      SCOPED_TRACE(absl::StrCat("node ", id));
      Raft* r = nt.raft(id);
      EXPECT_EQ(r->raft_log().committed(), c.want_committed);
      EXPECT_EQ(Payloads(NextEnts(r, nt.storage(id))), proposed);
    }
  }
}

// A group of one commits its own entries immediately.
TEST(RaftReplicationTest, SingleNodeCommits) {
  Network nt(FreshPeers(1));
  nt.Send(Hup(1));
  nt.Send(Propose(1, "some data"));
  nt.Send(Propose(1, "some data"));
  EXPECT_EQ(nt.raft(1)->raft_log().committed(), 3u);
}

// §5.4.2: entries of an earlier term that were never committed become
// committed once the new leader commits an entry of its own term (its no-op).
TEST(RaftReplicationTest, NewLeaderCommitsOldEntriesThroughItsNoop) {
  Network nt(FreshPeers(5));
  nt.Send(Hup(1));
  nt.Cut(1, 3);
  nt.Cut(1, 4);
  nt.Cut(1, 5);
  nt.Send(Propose(1, "some data"));
  nt.Send(Propose(1, "some data"));
  // Only nodes 1 and 2 hold the proposals: no majority.
  EXPECT_EQ(nt.raft(1)->raft_log().committed(), 1u);

  nt.Recover();
  // Node 2 has the longest log; its no-op at term 2 commits everything.
  nt.Send(Hup(2));
  ASSERT_EQ(nt.raft(2)->state(), StateType::kLeader);
  EXPECT_EQ(nt.raft(1)->raft_log().committed(), 4u);
  EXPECT_EQ(Summary(nt.raft(1)->raft_log()),
            "1/1 2/1:some data 3/1:some data 4/2");
}

// A lagging follower catches up from a heartbeat: its response tells the
// leader it is behind, and the leader sends the missing entries and commit.
TEST(RaftReplicationTest, HeartbeatResponseTriggersCatchUp) {
  Network nt(FreshPeers(5));
  nt.Send(Hup(1));
  nt.Isolate(5);
  nt.Send(Propose(1, "some data"));
  nt.Send(Propose(1, "some data"));
  EXPECT_EQ(nt.raft(1)->raft_log().committed(), 3u);
  EXPECT_EQ(nt.raft(5)->raft_log().committed(), 1u);

  nt.Recover();
  nt.Send(Beat(1));
  EXPECT_EQ(nt.raft(5)->raft_log().committed(), 3u);
  EXPECT_EQ(Summary(nt.raft(5)->raft_log()), Summary(nt.raft(1)->raft_log()));
}

// ---- Config::skip_bcast_commit ---------------------------------------------

void SkipBcastCommit(Config* c) { c->skip_bcast_commit = true; }

// A leader of {1, 2, 3} with skip_bcast_commit that proposed `data`, which
// both followers accepted. *before is its last index before the proposal.
TestRaft SkippingLeaderAfterOneProposal(const std::string& data,
                                        uint64_t* before) {
  TestRaft r = CommittedLeader(3, SkipBcastCommit);
  *before = r->raft_log().last_index();
  EXPECT_TRUE(r->Step(Propose(1, data)).ok());
  for (const Message& m : r->ReadMessages()) {
    EXPECT_TRUE(r->Step(AcceptAndReply(m)).ok());
  }
  return r;
}

// The commit index that a quorum's answers advance goes out with the next
// append instead of an append of its own.
TEST(RaftReplicationTest, SkipBcastCommitSendsTheCommitWithTheNextAppend) {
  uint64_t li = 0;
  TestRaft r = SkippingLeaderAfterOneProposal("first", &li);
  if (HasFailure()) return;
  EXPECT_EQ(r->raft_log().committed(), li + 1);
  std::vector<Message> after_commit = r->ReadMessages();
  EXPECT_TRUE(after_commit.empty()) << Describe(after_commit);

  ASSERT_TRUE(r->Step(Propose(1, "second")).ok());
  std::vector<Message> msgs = SortedByTo(r->ReadMessages());
  ASSERT_EQ(msgs.size(), 2u) << Describe(msgs);
  for (const Message& m : msgs) {
    SCOPED_TRACE(DescribeMessage(m));
    EXPECT_EQ(m.msg_type(), raftpb::MsgAppend);
    EXPECT_EQ(m.commit(), li + 1);
    EXPECT_EQ(Summary({m.entries().begin(), m.entries().end()}),
              absl::StrCat(li + 2, "/1:second"));
  }
}

// When proposals stop, the followers learn the last commit index from the
// next heartbeat.
TEST(RaftReplicationTest, SkipBcastCommitFollowersCommitOnTheNextHeartbeat) {
  Network nt(FreshPeers(3), SkipBcastCommit);
  nt.Send(Hup(1));
  nt.Send(Propose(1, "some data"));
  const uint64_t committed = nt.raft(1)->raft_log().committed();
  EXPECT_EQ(committed, 2u);
  for (uint64_t id : {2, 3}) {
    EXPECT_EQ(nt.raft(id)->raft_log().committed(), committed - 1)
        << "node " << id << " learnt the commit index without a heartbeat";
  }

  nt.Send(Beat(1));
  for (uint64_t id : {2, 3}) {
    EXPECT_EQ(nt.raft(id)->raft_log().committed(), committed) << "node " << id;
  }
}

// A follower that holds the whole log but answers a heartbeat with an old
// commit index (the heartbeat left before its append's answer arrived) gets
// an empty append carrying the index; one that is up to date gets nothing.
TEST(RaftReplicationTest, SkipBcastCommitAnswersAStaleHeartbeatResponse) {
  uint64_t li = 0;
  TestRaft r = SkippingLeaderAfterOneProposal("some data", &li);
  if (HasFailure()) return;
  ASSERT_EQ(r->raft_log().committed(), li + 1);
  ASSERT_TRUE(r->ReadMessages().empty());

  Message stale = MakeMsg(2, 1, raftpb::MsgHeartbeatResponse, r->term());
  stale.set_commit(li);
  ASSERT_TRUE(r->Step(stale).ok());
  std::vector<Message> msgs = r->ReadMessages();
  ASSERT_EQ(msgs.size(), 1u) << Describe(msgs);
  EXPECT_EQ(msgs[0].msg_type(), raftpb::MsgAppend);
  EXPECT_EQ(msgs[0].to(), 2u);
  EXPECT_EQ(msgs[0].commit(), li + 1);
  EXPECT_EQ(msgs[0].entries_size(), 0);

  Message current = MakeMsg(3, 1, raftpb::MsgHeartbeatResponse, r->term());
  current.set_commit(li + 1);
  ASSERT_TRUE(r->Step(current).ok());
  msgs = r->ReadMessages();
  EXPECT_TRUE(msgs.empty()) << Describe(msgs);
}

// Without the option (etcd/raft's behaviour) a heartbeat response's commit
// index is not looked at: commit indexes are broadcast anyway.
TEST(RaftReplicationTest, HeartbeatResponseCommitIgnoredWhenBroadcasting) {
  TestRaft r = CommittedLeader(3);
  if (HasFatalFailure()) return;
  Message stale = MakeMsg(2, 1, raftpb::MsgHeartbeatResponse, r->term());
  stale.set_commit(0);
  ASSERT_TRUE(r->Step(stale).ok());
  std::vector<Message> msgs = r->ReadMessages();
  EXPECT_TRUE(msgs.empty()) << Describe(msgs);
}

// A follower reports its commit index in every heartbeat response.
TEST(RaftReplicationTest, HeartbeatResponseCarriesTheFollowersCommit) {
  TestRaft r = NewTestRaft(2, {1, 2, 3}, 10, 1,
                           StorageWith(EntriesWithTerms({1, 1, 1})));
  r->BecomeFollower(1, 1);
  Message hb = MakeMsg(1, 2, raftpb::MsgHeartbeat, 1);
  hb.set_commit(2);
  ASSERT_TRUE(r->Step(hb).ok());
  std::vector<Message> msgs = r->ReadMessages();
  ASSERT_EQ(msgs.size(), 1u) << Describe(msgs);
  EXPECT_EQ(msgs[0].msg_type(), raftpb::MsgHeartbeatResponse);
  EXPECT_EQ(msgs[0].commit(), 2u);
}

// §5.2: "If the votes received from majority of servers: become leader"; a
// candidate that a majority refuses (its log is behind) gives up and returns
// to follower, even though it raised everyone's term.
TEST(RaftReplicationTest, DuelingCandidatesRejectedCandidateStepsDown) {
  Network nt(FreshPeers(3));
  nt.Cut(1, 3);
  nt.Send(Hup(1));
  nt.Send(Hup(3));
  // 1 wins with 2's vote; 3 (cut from 1, refused by 2) stays a candidate.
  ASSERT_EQ(nt.raft(1)->state(), StateType::kLeader);
  ASSERT_EQ(nt.raft(3)->state(), StateType::kCandidate);

  nt.Recover();
  // 3 campaigns at term 2 with an empty log; 1 and 2 move to term 2 but
  // refuse it because their log holds the committed no-op.
  nt.Send(Hup(3));

  struct Want {
    uint64_t id;
    std::string log;
    uint64_t committed;
  };
  for (const Want& w :
       std::vector<Want>{{1, "1/1", 1}, {2, "1/1", 1}, {3, "", 0}}) {
    SCOPED_TRACE(absl::StrCat("node ", w.id));
    Raft* r = nt.raft(w.id);
    EXPECT_EQ(r->state(), StateType::kFollower);
    EXPECT_EQ(r->term(), 2u);
    EXPECT_EQ(Summary(r->raft_log()), w.log);
    EXPECT_EQ(r->raft_log().committed(), w.committed);
    EXPECT_EQ(r->raft_log().applied(), 0u);
  }
}

// §5.2: "If the AppendEntries RPC is from another server claiming to be
// leader and the leader's term is at least as large as the candidate's
// current term, then the candidate recognizes the leader as legitimate and
// returns to follower state."
TEST(RaftReplicationTest, CandidateConcedesToLeaderOfSameTerm) {
  Network nt(FreshPeers(3));
  nt.Isolate(1);
  nt.Send(Hup(1));
  nt.Send(Hup(3));
  ASSERT_EQ(nt.raft(1)->state(), StateType::kCandidate);
  ASSERT_EQ(nt.raft(3)->state(), StateType::kLeader);

  nt.Recover();
  nt.Send(Beat(3));
  nt.Send(Propose(3, "force follower"));
  nt.Send(Beat(3));

  EXPECT_EQ(nt.raft(1)->state(), StateType::kFollower);
  EXPECT_EQ(nt.raft(1)->term(), 1u);
  EXPECT_EQ(nt.raft(1)->lead(), 3u);
  for (uint64_t id : nt.ids()) {
    SCOPED_TRACE(absl::StrCat("node ", id));
    EXPECT_EQ(Summary(nt.raft(id)->raft_log()), "1/1 2/1:force follower");
    EXPECT_EQ(nt.raft(id)->raft_log().committed(), 2u);
  }
}

// §5.1: "If a server receives a request with a stale term number, it rejects
// the request." An append from an old leader must not touch the log.
TEST(RaftReplicationTest, StaleTermAppendIsIgnored) {
  Network nt(FreshPeers(3));
  nt.Send(Hup(1));
  nt.Send(Hup(2));
  nt.Send(Hup(1));
  ASSERT_EQ(nt.raft(1)->state(), StateType::kLeader);
  ASSERT_EQ(nt.raft(1)->term(), 3u);
  ASSERT_EQ(Summary(nt.raft(1)->raft_log()), "1/1 2/2 3/3");

  // An append left over from node 2's reign at term 2.
  nt.Send(Append(2, 1, 2, 2, 2, 0, {MakeEntry(3, 2)}));
  EXPECT_EQ(nt.raft(1)->state(), StateType::kLeader);
  EXPECT_EQ(nt.raft(1)->term(), 3u);
  EXPECT_EQ(Summary(nt.raft(1)->raft_log()), "1/1 2/2 3/3");

  nt.Send(Propose(1, "somedata"));
  for (uint64_t id : nt.ids()) {
    SCOPED_TRACE(absl::StrCat("node ", id));
    EXPECT_EQ(Summary(nt.raft(id)->raft_log()), "1/1 2/2 3/3 4/3:somedata");
    EXPECT_EQ(nt.raft(id)->raft_log().committed(), 4u);
  }
}

// A proposal commits when the leader can reach a majority; without a leader
// (the election failed) it is dropped and no log changes.
TEST(RaftReplicationTest, ProposalCommitsOnlyWithALeader) {
  struct Case {
    std::vector<bool> alive;  // false = black hole
    bool success;
  };
  const std::vector<Case> cases = {
      {{true, true, true}, true},
      {{true, true, false}, true},
      {{true, false, false}, false},
      {{true, false, false, true}, false},
      {{true, false, false, true, true}, true},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("case ", i));
    const Case& c = cases[i];
    std::vector<PeerSpec> peers;
    for (bool alive : c.alive) {
      peers.push_back(alive ? PeerSpec::Fresh() : PeerSpec::BlackHole());
    }
    Network nt(std::move(peers));
    nt.Send(Hup(1));
    if (!c.success) {
      EXPECT_TRUE(IsError(nt.raft(1)->Step(Propose(1, "somedata")),
                          ErrorKind::kProposalDropped));
    }
    nt.Send(Propose(1, "somedata"));

    EXPECT_EQ(nt.raft(1)->state(),
              c.success ? StateType::kLeader : StateType::kCandidate);
    EXPECT_EQ(nt.raft(1)->term(), 1u);
    for (uint64_t id : nt.ids()) {
      Raft* r = nt.raft(id);
      if (r == nullptr) continue;
      SCOPED_TRACE(absl::StrCat("node ", id));
      EXPECT_EQ(Summary(r->raft_log()), c.success ? "1/1 2/1:somedata" : "");
      EXPECT_EQ(r->raft_log().committed(), c.success ? 2u : 0u);
    }
  }
}

// Heartbeats carry commit = min(follower's match, leader's commit), so an old
// leader with divergent uncommitted entries never commits them because of a
// new leader's heartbeat.
TEST(RaftReplicationTest, HeartbeatDoesNotCommitDivergentEntries) {
  struct Case {
    int fail_count, success_count;
  };
  for (const Case& c : std::vector<Case>{{1, 1}, {5, 3}, {5, 10}}) {
    SCOPED_TRACE(
        absl::StrCat("fail ", c.fail_count, " success ", c.success_count));
    Network nt(FreshPeers(3));
    nt.Send(Hup(1));
    nt.Isolate(1);
    for (int i = 0; i < c.fail_count; ++i) nt.Send(Propose(1, "fail"));
    Raft* r1 = nt.raft(1);
    EXPECT_LE(r1->raft_log().committed(), 1u);
    EXPECT_EQ(r1->raft_log().last_index(), 1u + c.fail_count);

    nt.Send(Hup(2));
    ASSERT_EQ(nt.raft(2)->state(), StateType::kLeader);
    for (int i = 0; i < c.success_count; ++i) nt.Send(Propose(2, "success"));
    const uint64_t want = 2 + c.success_count;
    EXPECT_EQ(nt.raft(2)->raft_log().committed(), want);
    EXPECT_EQ(nt.raft(3)->raft_log().committed(), want);

    nt.Recover();
    nt.Ignore(raftpb::MsgAppend);
    nt.Send(Beat(2));
    // Node 1 follows node 2 now but its entries 2.. are of term 1, which the
    // leader never confirmed: the heartbeat must not commit them.
    EXPECT_EQ(r1->state(), StateType::kFollower);
    EXPECT_EQ(r1->term(), 2u);
    EXPECT_LE(r1->raft_log().committed(), 1u);
  }
}

}  // namespace
}  // namespace raftkv::raft::test
