// Unit tests for the log layers of the raft core: Unstable (log_unstable.h),
// RaftLog (raft_log.h), the majority quorum arithmetic (quorum/majority.h)
// and the Progress flow-control state machine (tracker/progress.h).
#include "raft/raft_log.h"

#include <csignal>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "raft/errors.h"
#include "raft/log_unstable.h"
#include "raft/logger.h"
#include "raft/quorum/majority.h"
#include "raft/storage.h"
#include "raft/tracker/progress.h"
#include "raft/tracker/tracker.h"
#include "raft/types.h"
#include "test_util.h"

namespace raftkv::raft {
namespace {

using raftpb::Entry;
using raftpb::Snapshot;
using test::MakeEntry;

using IndexTerm = std::pair<uint64_t, uint64_t>;
using IndexTerms = std::vector<IndexTerm>;

IndexTerms Pairs(const std::vector<Entry>& ents) {
  IndexTerms out;
  for (const Entry& e : ents) out.emplace_back(e.index(), e.term());
  return out;
}

std::vector<Entry> Ents(const IndexTerms& its) {
  std::vector<Entry> out;
  for (const auto& [i, t] : its) out.push_back(MakeEntry(i, t));
  return out;
}

Snapshot MakeSnap(uint64_t index, uint64_t term,
                  std::vector<uint64_t> voters = {}) {
  Snapshot s;
  s.mutable_metadata()->set_index(index);
  s.mutable_metadata()->set_term(term);
  for (uint64_t v : voters) {
    s.mutable_metadata()->mutable_conf_state()->add_voters(v);
  }
  return s;
}

RaftLog NewLog(MemoryStorage* s, uint64_t max_next_ents_size = kNoLimit) {
  return RaftLog(s, DefaultLogger(), max_next_ents_size);
}

// ---------------------------------------------------------------------------
// Unstable
// ---------------------------------------------------------------------------

// An Unstable holding an optional snapshot (index, term) followed by `ents`.
// Without a snapshot the offset is the first entry's index (or `offset`).
Unstable MakeUnstable(std::optional<IndexTerm> snap, const IndexTerms& ents,
                      uint64_t offset) {
  Unstable u(offset);
  if (snap) u.Restore(MakeSnap(snap->first, snap->second));
  if (!ents.empty()) u.TruncateAndAppend(Ents(ents));
  return u;
}

TEST(UnstableTest, MaybeFirstIndexOnlyWithSnapshot) {
  EXPECT_EQ(MakeUnstable(std::nullopt, {{5, 1}}, 5).MaybeFirstIndex(),
            std::nullopt);
  EXPECT_EQ(MakeUnstable(std::nullopt, {}, 0).MaybeFirstIndex(), std::nullopt);
  EXPECT_EQ(MakeUnstable(IndexTerm{4, 1}, {{5, 1}}, 0).MaybeFirstIndex(),
            std::optional<uint64_t>(5));
  EXPECT_EQ(MakeUnstable(IndexTerm{4, 1}, {}, 0).MaybeFirstIndex(),
            std::optional<uint64_t>(5));
}

TEST(UnstableTest, MaybeLastIndex) {
  EXPECT_EQ(MakeUnstable(std::nullopt, {{5, 1}}, 5).MaybeLastIndex(),
            std::optional<uint64_t>(5));
  EXPECT_EQ(MakeUnstable(std::nullopt, {{5, 1}, {6, 1}}, 5).MaybeLastIndex(),
            std::optional<uint64_t>(6));
  EXPECT_EQ(MakeUnstable(IndexTerm{4, 1}, {{5, 1}}, 0).MaybeLastIndex(),
            std::optional<uint64_t>(5));
  EXPECT_EQ(MakeUnstable(IndexTerm{4, 1}, {}, 0).MaybeLastIndex(),
            std::optional<uint64_t>(4));
  EXPECT_EQ(MakeUnstable(std::nullopt, {}, 0).MaybeLastIndex(), std::nullopt);
}

TEST(UnstableTest, MaybeTerm) {
  struct Case {
    std::optional<IndexTerm> snap;
    IndexTerms ents;
    uint64_t offset;
    uint64_t index;
    std::optional<uint64_t> want;
  };
  const Case cases[] = {
      // Entries only.
      {std::nullopt, {{5, 1}}, 5, 5, 1},
      {std::nullopt, {{5, 1}}, 5, 6, std::nullopt},
      {std::nullopt, {{5, 1}}, 5, 4, std::nullopt},
      // Snapshot (term 2) and entries (term 3).
      {IndexTerm{4, 2}, {{5, 3}}, 0, 5, 3},
      {IndexTerm{4, 2}, {{5, 3}}, 0, 6, std::nullopt},
      {IndexTerm{4, 2}, {{5, 3}}, 0, 4, 2},
      {IndexTerm{4, 2}, {{5, 3}}, 0, 3, std::nullopt},
      // Snapshot only.
      {IndexTerm{4, 2}, {}, 0, 5, std::nullopt},
      {IndexTerm{4, 2}, {}, 0, 4, 2},
      {IndexTerm{4, 2}, {}, 0, 3, std::nullopt},
      // Nothing.
      {std::nullopt, {}, 0, 5, std::nullopt},
  };
  for (const Case& c : cases) {
    Unstable u = MakeUnstable(c.snap, c.ents, c.offset);
    EXPECT_EQ(u.MaybeTerm(c.index), c.want)
        << "snap=" << (c.snap ? c.snap->first : 0) << " index=" << c.index;
  }
}

TEST(UnstableTest, RestoreReplacesEverything) {
  Unstable u = MakeUnstable(IndexTerm{4, 1}, {{5, 1}, {6, 1}}, 0);
  u.Restore(MakeSnap(8, 2));
  EXPECT_EQ(u.offset(), 9u);
  EXPECT_TRUE(u.entries().empty());
  ASSERT_TRUE(u.snapshot().has_value());
  EXPECT_EQ(u.snapshot()->metadata().index(), 8u);
  EXPECT_EQ(u.snapshot()->metadata().term(), 2u);
  EXPECT_EQ(u.MaybeLastIndex(), std::optional<uint64_t>(8));
}

TEST(UnstableTest, StableTo) {
  struct Case {
    std::optional<IndexTerm> snap;
    IndexTerms ents;
    uint64_t offset;
    uint64_t index, term;
    uint64_t want_offset;
    size_t want_len;
  };
  const Case cases[] = {
      // Nothing held: no-op.
      {std::nullopt, {}, 0, 5, 1, 0, 0},
      // Stable the only entry.
      {std::nullopt, {{5, 1}}, 5, 5, 1, 6, 0},
      // Stable the first of two.
      {std::nullopt, {{5, 1}, {6, 1}}, 5, 5, 1, 6, 1},
      // Stale term (entry 6 was replaced after the Ready): no-op.
      {std::nullopt, {{6, 2}}, 6, 6, 1, 6, 1},
      // Index below the offset: no-op.
      {std::nullopt, {{5, 1}}, 5, 4, 1, 5, 1},
      {std::nullopt, {{5, 1}}, 5, 4, 2, 5, 1},
      // Index past the end: no-op.
      {std::nullopt, {{5, 1}}, 5, 6, 1, 5, 1},
      // With a snapshot.
      {IndexTerm{4, 1}, {{5, 1}}, 0, 5, 1, 6, 0},
      {IndexTerm{4, 1}, {{5, 1}, {6, 1}}, 0, 5, 1, 6, 1},
      {IndexTerm{5, 1}, {{6, 2}}, 0, 6, 1, 6, 1},  // stale term
      {IndexTerm{4, 1}, {{5, 1}}, 0, 4, 1, 5, 1},  // the snapshot index
      {IndexTerm{4, 2}, {{5, 2}}, 0, 4, 1, 5, 1},
  };
  for (const Case& c : cases) {
    Unstable u = MakeUnstable(c.snap, c.ents, c.offset);
    u.StableTo(c.index, c.term);
    EXPECT_EQ(u.offset(), c.want_offset)
        << "StableTo(" << c.index << "," << c.term << ") on "
        << testing::PrintToString(c.ents);
    EXPECT_EQ(u.entries().size(), c.want_len)
        << "StableTo(" << c.index << "," << c.term << ") on "
        << testing::PrintToString(c.ents);
  }
}

TEST(UnstableTest, StableToKeepsTheRemainingEntries) {
  Unstable u = MakeUnstable(std::nullopt, {{5, 1}, {6, 1}, {7, 2}}, 5);
  u.StableTo(6, 1);
  EXPECT_EQ(u.offset(), 7u);
  EXPECT_EQ(Pairs(u.entries()), (IndexTerms{{7, 2}}));
  EXPECT_EQ(u.MaybeTerm(7), std::optional<uint64_t>(2));
  EXPECT_EQ(u.MaybeTerm(6), std::nullopt);
}

TEST(UnstableTest, StableSnapTo) {
  Unstable u = MakeUnstable(IndexTerm{4, 1}, {{5, 1}}, 0);
  u.StableSnapTo(3);  // not this snapshot
  EXPECT_TRUE(u.snapshot().has_value());
  u.StableSnapTo(4);
  EXPECT_FALSE(u.snapshot().has_value());
  EXPECT_EQ(u.offset(), 5u);
  EXPECT_EQ(Pairs(u.entries()), (IndexTerms{{5, 1}}));
}

TEST(UnstableTest, TruncateAndAppend) {
  struct Case {
    IndexTerms ents;
    uint64_t offset;
    IndexTerms append;
    uint64_t want_offset;
    IndexTerms want;
  };
  const Case cases[] = {
      // Append directly after the last entry.
      {{{5, 1}}, 5, {{6, 1}, {7, 1}}, 5, {{5, 1}, {6, 1}, {7, 1}}},
      // Replace the whole unstable tail.
      {{{5, 1}}, 5, {{5, 2}, {6, 2}}, 5, {{5, 2}, {6, 2}}},
      // Rewind before the offset (overwrites stable entries).
      {{{5, 1}}, 5, {{4, 2}, {5, 2}, {6, 2}}, 4, {{4, 2}, {5, 2}, {6, 2}}},
      // Truncate in the middle.
      {{{5, 1}, {6, 1}, {7, 1}}, 5, {{6, 2}}, 5, {{5, 1}, {6, 2}}},
      {{{5, 1}, {6, 1}, {7, 1}},
       5,
       {{7, 2}, {8, 2}},
       5,
       {{5, 1}, {6, 1}, {7, 2}, {8, 2}}},
      // Nothing unstable yet.
      {{}, 5, {{5, 1}}, 5, {{5, 1}}},
  };
  for (const Case& c : cases) {
    Unstable u = MakeUnstable(std::nullopt, c.ents, c.offset);
    u.TruncateAndAppend(Ents(c.append));
    EXPECT_EQ(u.offset(), c.want_offset)
        << testing::PrintToString(c.ents) << " + "
        << testing::PrintToString(c.append);
    EXPECT_EQ(Pairs(u.entries()), c.want)
        << testing::PrintToString(c.ents) << " + "
        << testing::PrintToString(c.append);
  }
}

TEST(UnstableTest, Slice) {
  Unstable u = MakeUnstable(std::nullopt, {{5, 1}, {6, 1}, {7, 2}}, 5);
  EXPECT_EQ(Pairs(u.Slice(5, 7)), (IndexTerms{{5, 1}, {6, 1}}));
  EXPECT_EQ(Pairs(u.Slice(6, 8)), (IndexTerms{{6, 1}, {7, 2}}));
  EXPECT_TRUE(u.Slice(6, 6).empty());
}

// ---------------------------------------------------------------------------
// RaftLog
// ---------------------------------------------------------------------------

TEST(RaftLogTest, FindConflict) {
  const IndexTerms prev = {{1, 1}, {2, 2}, {3, 3}};
  struct Case {
    IndexTerms ents;
    uint64_t want;
  };
  const Case cases[] = {
      // No conflict, empty.
      {{}, 0},
      // No conflict, all present.
      {{{1, 1}, {2, 2}, {3, 3}}, 0},
      {{{2, 2}, {3, 3}}, 0},
      {{{3, 3}}, 0},
      // No conflict, with new entries: the first new index.
      {{{1, 1}, {2, 2}, {3, 3}, {4, 4}, {5, 4}}, 4},
      {{{2, 2}, {3, 3}, {4, 4}, {5, 4}}, 4},
      {{{3, 3}, {4, 4}, {5, 4}}, 4},
      {{{4, 4}, {5, 4}}, 4},
      // Conflicts with existing entries.
      {{{1, 4}, {2, 4}}, 1},
      {{{2, 1}, {3, 4}, {4, 4}}, 2},
      {{{3, 1}, {4, 2}, {5, 4}, {6, 4}}, 3},
  };
  for (const Case& c : cases) {
    MemoryStorage s;
    RaftLog log = NewLog(&s);
    log.Append(Ents(prev));
    EXPECT_EQ(log.FindConflict(Ents(c.ents)), c.want)
        << testing::PrintToString(c.ents);
  }
}

// §5.3 (optimization): a rejecting follower names the last index whose term
// is at most the leader's term, so whole conflicting terms are skipped.
TEST(RaftLogTest, FindConflictByTerm) {
  // Terms by index: 1:2 2:2 3:5 4:5 5:5; entries 1-3 stable, 4-5 unstable.
  MemoryStorage s;
  ASSERT_TRUE(s.Append(Ents({{1, 2}, {2, 2}, {3, 5}})).ok());
  RaftLog log = NewLog(&s);
  log.Append(Ents({{4, 5}, {5, 5}}));
  struct Case {
    uint64_t index, term;
    IndexTerm want;
  };
  const Case cases[] = {
      {5, 5, {5, 5}}, {5, 6, {5, 5}}, {5, 4, {2, 2}}, {5, 2, {2, 2}},
      {5, 1, {0, 0}}, {3, 3, {2, 2}}, {4, 6, {4, 5}}, {1, 1, {0, 0}},
      {2, 2, {2, 2}}, {0, 0, {0, 0}},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(log.FindConflictByTerm(c.index, c.term), c.want)
        << "index=" << c.index << " term=" << c.term;
  }
}

TEST(RaftLogTest, FindConflictByTermOverCompactedStorage) {
  // Dummy (10,3); entries 11:3 12:3 13:4 14:4 15:5.
  MemoryStorage s;
  ASSERT_TRUE(s.ApplySnapshot(MakeSnap(10, 3)).ok());
  ASSERT_TRUE(
      s.Append(Ents({{11, 3}, {12, 3}, {13, 4}, {14, 4}, {15, 5}})).ok());
  RaftLog log = NewLog(&s);
  EXPECT_EQ(log.FindConflictByTerm(15, 4), (IndexTerm{14, 4}));
  EXPECT_EQ(log.FindConflictByTerm(15, 3), (IndexTerm{12, 3}));
  EXPECT_EQ(log.FindConflictByTerm(13, 3), (IndexTerm{12, 3}));
  EXPECT_EQ(log.FindConflictByTerm(10, 3), (IndexTerm{10, 3}));
}

// §5.3: the follower appends only if its log has the leader's previous entry;
// it advances its commit index to min(leader commit, last new entry).
TEST(RaftLogTest, MaybeAppend) {
  const IndexTerms prev = {{1, 1}, {2, 2}, {3, 3}};
  const uint64_t last_index = 3, last_term = 3, commit = 1;
  struct Case {
    uint64_t log_term, index, committed;
    IndexTerms ents;
    std::optional<uint64_t> want_last;
    uint64_t want_commit;
    IndexTerms want_log;
  };
  const Case cases[] = {
      // Term mismatch at the previous index: refused.
      {last_term - 1,
       last_index,
       last_index,
       {{4, 4}},
       std::nullopt,
       commit,
       prev},
      // Previous index past the end: refused.
      {last_term,
       last_index + 1,
       last_index,
       {{5, 4}},
       std::nullopt,
       commit,
       prev},
      // Match, no entries: commit = min(leader commit, index).
      {last_term, last_index, last_index, {}, last_index, last_index, prev},
      {last_term, last_index, last_index + 1, {}, last_index, last_index, prev},
      {last_term,
       last_index,
       last_index - 1,
       {},
       last_index,
       last_index - 1,
       prev},
      // Commit never moves backwards.
      {last_term, last_index, 0, {}, last_index, commit, prev},
      {0, 0, last_index, {}, 0, commit, prev},
      // Match, new entries.
      {last_term,
       last_index,
       last_index,
       {{4, 4}},
       last_index + 1,
       last_index,
       {{1, 1}, {2, 2}, {3, 3}, {4, 4}}},
      {last_term,
       last_index,
       last_index + 1,
       {{4, 4}},
       last_index + 1,
       last_index + 1,
       {{1, 1}, {2, 2}, {3, 3}, {4, 4}}},
      // Leader commit past the new entries: limited to the last new index.
      {last_term,
       last_index,
       last_index + 2,
       {{4, 4}},
       last_index + 1,
       last_index + 1,
       {{1, 1}, {2, 2}, {3, 3}, {4, 4}}},
      {last_term,
       last_index,
       last_index + 2,
       {{4, 4}, {5, 4}},
       last_index + 2,
       last_index + 2,
       {{1, 1}, {2, 2}, {3, 3}, {4, 4}, {5, 4}}},
      // Conflicting tail above committed: truncated and replaced.
      {2, 2, last_index, {{3, 4}}, 3, 3, {{1, 1}, {2, 2}, {3, 4}}},
      {2,
       2,
       last_index + 1,
       {{3, 4}, {4, 4}},
       4,
       4,
       {{1, 1}, {2, 2}, {3, 4}, {4, 4}}},
      {1, 1, last_index, {{2, 4}}, 2, 2, {{1, 1}, {2, 4}}},
      {1, 1, last_index + 1, {{2, 4}, {3, 4}}, 3, 3, {{1, 1}, {2, 4}, {3, 4}}},
  };
  for (const Case& c : cases) {
    MemoryStorage s;
    RaftLog log = NewLog(&s);
    log.Append(Ents(prev));
    log.CommitTo(commit);
    std::optional<uint64_t> got =
        log.MaybeAppend(c.index, c.log_term, c.committed, Ents(c.ents));
    std::string what = "MaybeAppend(index=" + std::to_string(c.index) +
                       ", log_term=" + std::to_string(c.log_term) +
                       ", commit=" + std::to_string(c.committed) + ", " +
                       testing::PrintToString(c.ents) + ")";
    EXPECT_EQ(got, c.want_last) << what;
    EXPECT_EQ(log.committed(), c.want_commit) << what;
    EXPECT_EQ(Pairs(log.AllEntries()), c.want_log) << what;
  }
}

TEST(RaftLogDeathTest, MaybeAppendConflictAtCommittedAborts) {
  MemoryStorage s;
  RaftLog log = NewLog(&s);
  log.Append(Ents({{1, 1}, {2, 2}, {3, 3}}));
  log.CommitTo(1);
  // Entry 1 is committed; replacing it would violate safety.
  EXPECT_EXIT(log.MaybeAppend(0, 0, 3, Ents({{1, 4}})),
              testing::KilledBySignal(SIGABRT), "");
}

// Entries the follower already has (same index and term) are not appended
// again, so the stable log is not rewritten.
TEST(RaftLogTest, MaybeAppendKeepsMatchingStableEntries) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append(Ents({{1, 1}, {2, 2}, {3, 3}})).ok());
  RaftLog log = NewLog(&s);
  ASSERT_EQ(log.stabled(), 3u);
  auto got = log.MaybeAppend(1, 1, 3, Ents({{2, 2}, {3, 3}}));
  EXPECT_EQ(got, std::optional<uint64_t>(3));
  EXPECT_EQ(log.stabled(), 3u);
  EXPECT_TRUE(log.UnstableEntries().empty());
  EXPECT_EQ(log.committed(), 3u);
}

// A conflict below the stable index moves `stabled` back, so the replacing
// entries are handed out to be persisted again.
TEST(RaftLogTest, MaybeAppendConflictMovesStabledBack) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append(Ents({{1, 1}, {2, 2}, {3, 3}})).ok());
  RaftLog log = NewLog(&s);
  ASSERT_EQ(log.stabled(), 3u);
  auto got = log.MaybeAppend(1, 1, 1, Ents({{2, 4}}));
  EXPECT_EQ(got, std::optional<uint64_t>(2));
  EXPECT_EQ(log.stabled(), 1u);
  EXPECT_EQ(Pairs(log.UnstableEntries()), (IndexTerms{{2, 4}}));
  EXPECT_EQ(Pairs(log.AllEntries()), (IndexTerms{{1, 1}, {2, 4}}));
  EXPECT_EQ(log.last_index(), 2u);
  EXPECT_EQ(log.LastTerm(), 4u);
}

TEST(RaftLogTest, Append) {
  struct Case {
    IndexTerms ents;
    uint64_t want_last;
    IndexTerms want;
    uint64_t want_stabled;
  };
  const Case cases[] = {
      {{}, 2, {{1, 1}, {2, 2}}, 2},
      {{{3, 2}}, 3, {{1, 1}, {2, 2}, {3, 2}}, 2},
      // Conflicts with stable index 1.
      {{{1, 2}}, 1, {{1, 2}}, 0},
      // Conflicts with stable index 2.
      {{{2, 3}, {3, 3}}, 3, {{1, 1}, {2, 3}, {3, 3}}, 1},
  };
  for (const Case& c : cases) {
    MemoryStorage s;
    ASSERT_TRUE(s.Append(Ents({{1, 1}, {2, 2}})).ok());
    RaftLog log = NewLog(&s);
    EXPECT_EQ(log.Append(Ents(c.ents)), c.want_last)
        << testing::PrintToString(c.ents);
    EXPECT_EQ(Pairs(log.AllEntries()), c.want)
        << testing::PrintToString(c.ents);
    EXPECT_EQ(log.stabled(), c.want_stabled) << testing::PrintToString(c.ents);
  }
}

TEST(RaftLogDeathTest, AppendOverCommittedAborts) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append(Ents({{1, 1}, {2, 2}})).ok());
  RaftLog log = NewLog(&s);
  log.CommitTo(2);
  EXPECT_EXIT(log.Append(Ents({{2, 3}})), testing::KilledBySignal(SIGABRT), "");
}

// §5.4.1: a log is more up-to-date if its last term is higher, or the terms
// are equal and it is at least as long.
TEST(RaftLogTest, IsUpToDate) {
  MemoryStorage s;
  RaftLog log = NewLog(&s);
  log.Append(Ents({{1, 1}, {2, 2}, {3, 3}}));
  const uint64_t li = log.last_index();
  struct Case {
    uint64_t index, term;
    bool want;
  };
  const Case cases[] = {
      // Greater term wins regardless of index.
      {li - 1, 4, true},
      {li, 4, true},
      {li + 1, 4, true},
      // Smaller term loses regardless of index.
      {li - 1, 2, false},
      {li, 2, false},
      {li + 1, 2, false},
      // Equal term: the longer (or equal) log wins.
      {li - 1, 3, false},
      {li, 3, true},
      {li + 1, 3, true},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(log.IsUpToDate(c.index, c.term), c.want)
        << "(" << c.index << "," << c.term << ")";
  }
}

// §5.4.2: the leader commits by counting replicas only for an entry of its
// current term; MaybeCommit applies that rule.
TEST(RaftLogTest, MaybeCommitOnlyIfTermMatches) {
  MemoryStorage s;
  RaftLog log = NewLog(&s);
  log.Append(Ents({{1, 1}, {2, 2}, {3, 3}}));
  EXPECT_FALSE(log.MaybeCommit(3, 2));  // entry 3 has term 3
  EXPECT_EQ(log.committed(), 0u);
  EXPECT_TRUE(log.MaybeCommit(2, 2));
  EXPECT_EQ(log.committed(), 2u);
  EXPECT_FALSE(log.MaybeCommit(1, 1));  // not beyond committed
  EXPECT_EQ(log.committed(), 2u);
  EXPECT_FALSE(log.MaybeCommit(2, 2));  // already committed
  EXPECT_FALSE(log.MaybeCommit(4, 3));  // no entry 4
  EXPECT_EQ(log.committed(), 2u);
  EXPECT_TRUE(log.MaybeCommit(3, 3));
  EXPECT_EQ(log.committed(), 3u);
}

TEST(RaftLogTest, CommitToNeverDecreases) {
  MemoryStorage s;
  RaftLog log = NewLog(&s);
  log.Append(Ents({{1, 1}, {2, 2}, {3, 3}}));
  log.CommitTo(2);
  EXPECT_EQ(log.committed(), 2u);
  log.CommitTo(3);
  EXPECT_EQ(log.committed(), 3u);
  log.CommitTo(1);
  EXPECT_EQ(log.committed(), 3u);
}

TEST(RaftLogDeathTest, CommitToPastLastIndexAborts) {
  MemoryStorage s;
  RaftLog log = NewLog(&s);
  log.Append(Ents({{1, 1}, {2, 2}, {3, 3}}));
  EXPECT_EXIT(log.CommitTo(4), testing::KilledBySignal(SIGABRT), "");
}

TEST(RaftLogTest, AppliedTo) {
  MemoryStorage s;
  RaftLog log = NewLog(&s);
  log.Append(Ents({{1, 1}, {2, 2}, {3, 3}}));
  log.CommitTo(3);
  EXPECT_EQ(log.applied(), 0u);
  log.AppliedTo(2);
  EXPECT_EQ(log.applied(), 2u);
  log.AppliedTo(3);
  EXPECT_EQ(log.applied(), 3u);
}

TEST(RaftLogDeathTest, AppliedToOutsideAppliedCommittedAborts) {
  MemoryStorage s;
  RaftLog log = NewLog(&s);
  log.Append(Ents({{1, 1}, {2, 2}, {3, 3}}));
  log.CommitTo(2);
  EXPECT_EXIT(log.AppliedTo(3), testing::KilledBySignal(SIGABRT),
              "");  // past committed
  log.AppliedTo(2);
  EXPECT_EXIT(log.AppliedTo(1), testing::KilledBySignal(SIGABRT),
              "");  // below applied
}

// A log over storage with snapshot (3,1) and entries 4, 5, 6 (term 1) in its
// unstable part, committed up to 5.
struct NextEntsFixture {
  MemoryStorage storage;
  std::vector<Entry> ents = {MakeEntry(4, 1, std::string(50, 'a')),
                             MakeEntry(5, 1, std::string(50, 'b')),
                             MakeEntry(6, 1, std::string(50, 'c'))};

  RaftLog Make(uint64_t max_next_ents_size) {
    EXPECT_TRUE(storage.ApplySnapshot(MakeSnap(3, 1)).ok());
    RaftLog log = NewLog(&storage, max_next_ents_size);
    std::vector<Entry> copy = ents;
    log.Append(std::move(copy));
    EXPECT_TRUE(log.MaybeCommit(5, 1));
    return log;
  }
};

TEST(RaftLogTest, NextCommittedEntries) {
  struct Case {
    uint64_t applied;
    IndexTerms want;
  };
  const Case cases[] = {
      {3, {{4, 1}, {5, 1}}},
      {4, {{5, 1}}},
      {5, {}},
  };
  for (const Case& c : cases) {
    NextEntsFixture f;
    RaftLog log = f.Make(kNoLimit);
    ASSERT_EQ(log.applied(), 3u);  // starts at the snapshot index
    if (c.applied > 3) log.AppliedTo(c.applied);
    EXPECT_EQ(Pairs(log.NextCommittedEntries()), c.want)
        << "applied=" << c.applied;
    EXPECT_EQ(log.HasNextCommittedEntries(), !c.want.empty())
        << "applied=" << c.applied;
  }
}

TEST(RaftLogTest, NextCommittedEntriesByteLimit) {
  const uint64_t s4 = EntrySize(MakeEntry(4, 1, std::string(50, 'a')));
  const uint64_t s5 = EntrySize(MakeEntry(5, 1, std::string(50, 'b')));
  ASSERT_GE(s4, 50u);
  struct Case {
    uint64_t limit;
    IndexTerms want;
  };
  const Case cases[] = {
      {0, {{4, 1}}},  // at least one entry
      {s4, {{4, 1}}},
      {s4 + s5 - 1, {{4, 1}}},
      {s4 + s5, {{4, 1}, {5, 1}}},
      {s4 + s5 + 1000, {{4, 1}, {5, 1}}},  // only committed ones
  };
  for (const Case& c : cases) {
    NextEntsFixture f;
    RaftLog log = f.Make(c.limit);
    EXPECT_EQ(Pairs(log.NextCommittedEntries()), c.want) << "limit=" << c.limit;
    EXPECT_TRUE(log.HasNextCommittedEntries()) << "limit=" << c.limit;
  }
  // After applying the first batch the rest comes out.
  NextEntsFixture f;
  RaftLog log = f.Make(s4);
  ASSERT_EQ(Pairs(log.NextCommittedEntries()), (IndexTerms{{4, 1}}));
  log.AppliedTo(4);
  EXPECT_EQ(Pairs(log.NextCommittedEntries()), (IndexTerms{{5, 1}}));
  EXPECT_EQ(log.NextCommittedEntries()[0].data(), std::string(50, 'b'));
  log.AppliedTo(5);
  EXPECT_FALSE(log.HasNextCommittedEntries());
  EXPECT_TRUE(log.NextCommittedEntries().empty());
}

TEST(RaftLogTest, NextCommittedEntriesSpanStableAndUnstable) {
  MemoryStorage s;
  ASSERT_TRUE(s.ApplySnapshot(MakeSnap(3, 1)).ok());
  ASSERT_TRUE(s.Append(Ents({{4, 1}, {5, 1}})).ok());
  RaftLog log = NewLog(&s);
  log.Append(Ents({{6, 2}, {7, 2}}));
  ASSERT_EQ(log.stabled(), 5u);
  log.CommitTo(7);
  EXPECT_EQ(Pairs(log.NextCommittedEntries()),
            (IndexTerms{{4, 1}, {5, 1}, {6, 2}, {7, 2}}));
}

TEST(RaftLogTest, TermWithCompactedStorage) {
  // Dummy (100,1); stable 101:2 102:3; unstable 103:4 104:4.
  MemoryStorage s;
  ASSERT_TRUE(s.ApplySnapshot(MakeSnap(100, 1)).ok());
  ASSERT_TRUE(s.Append(Ents({{101, 2}, {102, 3}})).ok());
  RaftLog log = NewLog(&s);
  log.Append(Ents({{103, 4}, {104, 4}}));

  EXPECT_TRUE(IsError(log.Term(99).status(), ErrorKind::kCompacted));
  EXPECT_TRUE(IsError(log.Term(50).status(), ErrorKind::kCompacted));
  struct Case {
    uint64_t i, term;
  };
  for (const Case& c : {Case{100, 1}, Case{101, 2}, Case{102, 3}, Case{103, 4},
                        Case{104, 4}, Case{105, 0}}) {
    auto t = log.Term(c.i);
    ASSERT_TRUE(t.ok()) << c.i << " " << t.status();
    EXPECT_EQ(*t, c.term) << c.i;
  }
  EXPECT_EQ(log.ZeroTermOnErr(99), 0u);
  EXPECT_EQ(log.ZeroTermOnErr(102), 3u);
  EXPECT_TRUE(log.MatchTerm(103, 4));
  EXPECT_FALSE(log.MatchTerm(103, 3));
  EXPECT_TRUE(log.MatchTerm(100, 1));
  EXPECT_FALSE(log.MatchTerm(99, 1));
  EXPECT_EQ(log.first_index(), 101u);
  EXPECT_EQ(log.last_index(), 104u);
  EXPECT_EQ(log.LastTerm(), 4u);
}

TEST(RaftLogTest, TermWithUnstableSnapshot) {
  MemoryStorage s;
  ASSERT_TRUE(s.ApplySnapshot(MakeSnap(100, 1)).ok());
  RaftLog log = NewLog(&s);
  log.Restore(MakeSnap(105, 5));
  for (uint64_t i = 100; i < 105; ++i) {
    EXPECT_TRUE(IsError(log.Term(i).status(), ErrorKind::kCompacted)) << i;
  }
  EXPECT_EQ(log.Term(105).value(), 5u);
  EXPECT_EQ(log.Term(106).value(), 0u);
  EXPECT_EQ(log.first_index(), 106u);
  EXPECT_EQ(log.last_index(), 105u);
}

// Storage snapshot (3,3); stable 4, 5, 6; unstable 7, 8, 9 (term = index).
class RaftLogSliceTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(storage_.ApplySnapshot(MakeSnap(3, 3)).ok());
    ASSERT_TRUE(storage_.Append(Ents({{4, 4}, {5, 5}, {6, 6}})).ok());
    // The log reads the storage when it is built, so build it now.
    log_.emplace(&storage_, DefaultLogger(), kNoLimit);
    log_->Append(Ents({{7, 7}, {8, 8}, {9, 9}}));
    ASSERT_EQ(log_->stabled(), 6u);
  }

  RaftLog& log() { return *log_; }

  MemoryStorage storage_;
  std::optional<RaftLog> log_;
};

TEST_F(RaftLogSliceTest, Slice) {
  const uint64_t sz = EntrySize(MakeEntry(4, 4));
  struct Case {
    uint64_t lo, hi, max;
    bool compacted;
    IndexTerms want;
  };
  const Case cases[] = {
      {2, 6, kNoLimit, true, {}},
      {3, 4, kNoLimit, true, {}},
      {4, 4, kNoLimit, false, {}},
      {4, 5, kNoLimit, false, {{4, 4}}},
      {4, 7, kNoLimit, false, {{4, 4}, {5, 5}, {6, 6}}},
      {5, 8, kNoLimit, false, {{5, 5}, {6, 6}, {7, 7}}},  // across
      {6, 8, kNoLimit, false, {{6, 6}, {7, 7}}},
      {7, 10, kNoLimit, false, {{7, 7}, {8, 8}, {9, 9}}},
      {9, 10, kNoLimit, false, {{9, 9}}},
      {4,
       10,
       kNoLimit,
       false,
       {{4, 4}, {5, 5}, {6, 6}, {7, 7}, {8, 8}, {9, 9}}},
      // Size limits (every entry has the same size).
      {4, 10, 0, false, {{4, 4}}},
      {4, 10, sz, false, {{4, 4}}},
      {4, 10, 2 * sz, false, {{4, 4}, {5, 5}}},
      {4, 10, 3 * sz + 1, false, {{4, 4}, {5, 5}, {6, 6}}},
      {4, 10, 4 * sz, false, {{4, 4}, {5, 5}, {6, 6}, {7, 7}}},
      {5, 10, 3 * sz, false, {{5, 5}, {6, 6}, {7, 7}}},
      {6, 10, 2 * sz, false, {{6, 6}, {7, 7}}},
      {7, 10, 2 * sz, false, {{7, 7}, {8, 8}}},
      {7, 10, 0, false, {{7, 7}}},
  };
  for (const Case& c : cases) {
    auto got = log().Slice(c.lo, c.hi, c.max);
    if (c.compacted) {
      EXPECT_TRUE(IsError(got.status(), ErrorKind::kCompacted))
          << c.lo << "," << c.hi << " " << got.status();
      continue;
    }
    ASSERT_TRUE(got.ok()) << c.lo << "," << c.hi << " " << got.status();
    EXPECT_EQ(Pairs(*got), c.want)
        << "Slice(" << c.lo << "," << c.hi << "," << c.max << ")";
  }
}

TEST_F(RaftLogSliceTest, EntriesAndAllEntries) {
  const uint64_t sz = EntrySize(MakeEntry(4, 4));
  auto got = log().Entries(7, kNoLimit);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(Pairs(*got), (IndexTerms{{7, 7}, {8, 8}, {9, 9}}));
  got = log().Entries(5, 2 * sz);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(Pairs(*got), (IndexTerms{{5, 5}, {6, 6}}));
  got = log().Entries(10, kNoLimit);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->empty());
  EXPECT_TRUE(
      IsError(log().Entries(3, kNoLimit).status(), ErrorKind::kCompacted));
  EXPECT_EQ(Pairs(log().AllEntries()),
            (IndexTerms{{4, 4}, {5, 5}, {6, 6}, {7, 7}, {8, 8}, {9, 9}}));
}

using RaftLogSliceDeathTest = RaftLogSliceTest;

TEST_F(RaftLogSliceDeathTest, SlicePastEndAborts) {
  EXPECT_EXIT((void)log().Slice(4, 11, kNoLimit),
              testing::KilledBySignal(SIGABRT), "");
}

// The leader's storage is compacted under a live log: the log follows.
TEST_F(RaftLogSliceTest, StorageCompactionMovesFirstIndex) {
  ASSERT_TRUE(storage_.Compact(5).ok());
  EXPECT_EQ(log().first_index(), 6u);
  EXPECT_EQ(log().Term(5).value(), 5u);
  EXPECT_TRUE(IsError(log().Term(4).status(), ErrorKind::kCompacted));
  EXPECT_TRUE(
      IsError(log().Slice(5, 7, kNoLimit).status(), ErrorKind::kCompacted));
  EXPECT_EQ(Pairs(log().AllEntries()),
            (IndexTerms{{6, 6}, {7, 7}, {8, 8}, {9, 9}}));
}

// A log built over a storage that holds a snapshot starts with committed and
// applied at the snapshot index, and nothing unstable.
TEST(RaftLogTest, ConstructOverCompactedStorage) {
  MemoryStorage s;
  ASSERT_TRUE(s.ApplySnapshot(MakeSnap(5, 2)).ok());
  ASSERT_TRUE(s.Append(Ents({{6, 2}, {7, 3}})).ok());
  RaftLog log = NewLog(&s);
  EXPECT_EQ(log.committed(), 5u);
  EXPECT_EQ(log.applied(), 5u);
  EXPECT_EQ(log.first_index(), 6u);
  EXPECT_EQ(log.last_index(), 7u);
  EXPECT_EQ(log.LastTerm(), 3u);
  EXPECT_EQ(log.stabled(), 7u);
  EXPECT_TRUE(log.UnstableEntries().empty());
  EXPECT_FALSE(log.UnstableSnapshot().has_value());
  EXPECT_FALSE(log.HasNextCommittedEntries());
}

TEST(RaftLogTest, ConstructOverSnapshotOnlyStorage) {
  MemoryStorage s;
  ASSERT_TRUE(s.ApplySnapshot(MakeSnap(1000, 1000)).ok());
  RaftLog log = NewLog(&s);
  EXPECT_TRUE(log.AllEntries().empty());
  EXPECT_EQ(log.first_index(), 1001u);
  EXPECT_EQ(log.last_index(), 1000u);
  EXPECT_EQ(log.committed(), 1000u);
  EXPECT_EQ(log.applied(), 1000u);
  EXPECT_EQ(log.stabled(), 1000u);
  EXPECT_EQ(log.Term(1000).value(), 1000u);
  EXPECT_EQ(log.LastTerm(), 1000u);
}

// §7: a follower that installs a snapshot discards its log; the snapshot
// becomes the base of the log and is committed.
TEST(RaftLogTest, RestoreFromSnapshot) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append(Ents({{1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}})).ok());
  RaftLog log = NewLog(&s);
  log.CommitTo(2);
  log.Restore(MakeSnap(10, 3, {1, 2}));
  EXPECT_EQ(log.committed(), 10u);
  EXPECT_EQ(log.first_index(), 11u);
  EXPECT_EQ(log.last_index(), 10u);
  EXPECT_EQ(log.LastTerm(), 3u);
  EXPECT_EQ(log.Term(10).value(), 3u);
  EXPECT_TRUE(log.AllEntries().empty());
  EXPECT_TRUE(log.UnstableEntries().empty());
  ASSERT_TRUE(log.UnstableSnapshot().has_value());
  EXPECT_EQ(log.UnstableSnapshot()->metadata().index(), 10u);
  auto snap = log.Snapshot();
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->metadata().index(), 10u);
  // The log continues after the snapshot.
  EXPECT_EQ(log.Append(Ents({{11, 3}})), 11u);
  EXPECT_EQ(Pairs(log.AllEntries()), (IndexTerms{{11, 3}}));
  // The application persists the snapshot, then reports it stable.
  ASSERT_TRUE(s.ApplySnapshot(*log.UnstableSnapshot()).ok());
  log.StableSnapTo(10);
  EXPECT_FALSE(log.UnstableSnapshot().has_value());
  EXPECT_EQ(log.Term(10).value(), 3u);
}

// ---------------------------------------------------------------------------
// Quorum
// ---------------------------------------------------------------------------

TEST(MajorityTest, CommittedIndex) {
  struct Case {
    std::vector<uint64_t> acked;
    uint64_t want;
  };
  const Case cases[] = {
      {{}, std::numeric_limits<uint64_t>::max()},
      {{5}, 5},
      {{0}, 0},
      {{5, 3}, 3},
      {{1, 2, 3}, 2},
      {{3, 1, 2}, 2},
      {{0, 0, 5}, 0},
      {{5, 5, 0}, 5},
      {{1, 2, 3, 4}, 2},
      {{5, 4, 3, 2, 1}, 3},
      {{2, 2, 2, 1, 1}, 2},
      {{1, 1, 2, 2, 2}, 2},
      {{10, 10, 1, 1, 1}, 1},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(MajorityCommittedIndex(c.acked), c.want)
        << testing::PrintToString(c.acked);
  }
}

TEST(MajorityTest, VoteResult) {
  using Votes = std::map<uint64_t, bool>;
  struct Case {
    std::vector<uint64_t> voters;
    Votes votes;
    VoteResult want;
  };
  const Case cases[] = {
      {{}, {}, VoteResult::kWon},
      {{1}, {}, VoteResult::kPending},
      {{1}, {{1, true}}, VoteResult::kWon},
      {{1}, {{1, false}}, VoteResult::kLost},
      {{1, 2, 3}, {}, VoteResult::kPending},
      {{1, 2, 3}, {{1, true}}, VoteResult::kPending},
      {{1, 2, 3}, {{1, true}, {2, true}}, VoteResult::kWon},
      {{1, 2, 3}, {{1, true}, {2, false}}, VoteResult::kPending},
      {{1, 2, 3}, {{1, false}, {2, false}}, VoteResult::kLost},
      {{1, 2, 3}, {{1, true}, {2, false}, {3, false}}, VoteResult::kLost},
      {{1, 2, 3}, {{1, true}, {2, false}, {3, true}}, VoteResult::kWon},
      {{1, 2, 3, 4}, {{1, true}, {2, true}}, VoteResult::kPending},
      {{1, 2, 3, 4}, {{1, true}, {2, true}, {3, true}}, VoteResult::kWon},
      {{1, 2, 3, 4}, {{1, false}, {2, false}}, VoteResult::kLost},
      {{1, 2, 3, 4}, {{1, true}, {2, false}, {3, true}}, VoteResult::kPending},
      // Votes from non-voters do not count.
      {{1, 2, 3}, {{1, true}, {4, true}, {5, true}}, VoteResult::kPending},
      {{1, 2, 3}, {{4, false}, {5, false}}, VoteResult::kPending},
  };
  for (const Case& c : cases) {
    std::string votes;
    for (const auto& [id, v] : c.votes) {
      votes += std::to_string(id) + (v ? "+ " : "- ");
    }
    EXPECT_EQ(MajorityVoteResult(c.voters, c.votes), c.want)
        << "voters " << testing::PrintToString(c.voters) << " votes " << votes;
  }
}

TEST(ProgressTrackerTest, CommittedCountsOnlyVoters) {
  ProgressTracker t;
  auto pr = [](uint64_t match, bool learner) {
    Progress p;
    p.match = match;
    p.next = match + 1;
    p.is_learner = learner;
    return p;
  };
  t.SetProgress(1, pr(5, false));
  t.SetProgress(2, pr(3, false));
  t.SetProgress(3, pr(1, false));
  EXPECT_EQ(t.Committed(), 3u);
  t.SetProgress(4, pr(9, true));
  t.SetProgress(5, pr(9, true));
  EXPECT_EQ(t.Committed(), 3u);
  EXPECT_EQ(t.Voters(), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(t.Learners(), (std::vector<uint64_t>{4, 5}));
}

// ---------------------------------------------------------------------------
// Progress
// ---------------------------------------------------------------------------

Progress MakeProgress(ProgressState state, uint64_t match, uint64_t next,
                      uint64_t pending_snapshot = 0) {
  Progress p;
  p.state = state;
  p.match = match;
  p.next = next;
  p.pending_snapshot = pending_snapshot;
  return p;
}

TEST(ProgressTest, BecomeProbe) {
  struct Case {
    Progress p;
    uint64_t want_next;
  };
  const Case cases[] = {
      {MakeProgress(ProgressState::kReplicate, 1, 5), 2},
      {MakeProgress(ProgressState::kProbe, 1, 5), 2},
      // From Snapshot: past the snapshot if it was newer than match.
      {MakeProgress(ProgressState::kSnapshot, 1, 5, 10), 11},
      {MakeProgress(ProgressState::kSnapshot, 12, 5, 10), 13},
  };
  for (Case c : cases) {
    c.p.BecomeProbe();
    EXPECT_EQ(c.p.state, ProgressState::kProbe) << c.p.ToString();
    EXPECT_EQ(c.p.next, c.want_next) << c.p.ToString();
    EXPECT_FALSE(c.p.IsPaused()) << c.p.ToString();
  }
}

TEST(ProgressTest, BecomeReplicateAndSnapshot) {
  Progress p = MakeProgress(ProgressState::kProbe, 1, 5);
  p.BecomeReplicate();
  EXPECT_EQ(p.state, ProgressState::kReplicate);
  EXPECT_EQ(p.match, 1u);
  EXPECT_EQ(p.next, 2u);

  p.BecomeSnapshot(10);
  EXPECT_EQ(p.state, ProgressState::kSnapshot);
  EXPECT_EQ(p.pending_snapshot, 10u);
  EXPECT_EQ(p.match, 1u);
}

TEST(ProgressTest, MaybeUpdate) {
  const uint64_t match = 3, next = 5;
  struct Case {
    uint64_t update;
    uint64_t want_match, want_next;
    bool want_ok;
  };
  const Case cases[] = {
      {match - 1, match, next, false},  // stale
      {match, match, next, false},      // duplicate
      {match + 1, match + 1, next, true},
      {match + 2, match + 2, next + 1, true},
      {match + 3, match + 3, next + 2, true},
  };
  for (const Case& c : cases) {
    Progress p = MakeProgress(ProgressState::kProbe, match, next);
    EXPECT_EQ(p.MaybeUpdate(c.update), c.want_ok) << c.update;
    EXPECT_EQ(p.match, c.want_match) << c.update;
    EXPECT_EQ(p.next, c.want_next) << c.update;
  }
}

TEST(ProgressTest, MaybeUpdateUnpausesProbe) {
  Progress p = MakeProgress(ProgressState::kProbe, 3, 4);
  p.probe_sent = true;
  ASSERT_TRUE(p.IsPaused());
  EXPECT_TRUE(p.MaybeUpdate(4));
  EXPECT_FALSE(p.IsPaused());
}

TEST(ProgressTest, MaybeDecrTo) {
  struct Case {
    ProgressState state;
    uint64_t match, next;
    uint64_t rejected, hint;
    bool want_ok;
    uint64_t want_next;
  };
  const Case cases[] = {
      // Replicate: a rejection at or below match is stale.
      {ProgressState::kReplicate, 5, 10, 5, 5, false, 10},
      {ProgressState::kReplicate, 5, 10, 4, 4, false, 10},
      // Replicate: a real rejection falls back to match + 1.
      {ProgressState::kReplicate, 5, 10, 9, 9, true, 6},
      // Probe: only a rejection of next - 1 counts.
      {ProgressState::kProbe, 0, 10, 5, 5, false, 10},
      {ProgressState::kProbe, 0, 10, 9, 9, true, 9},
      {ProgressState::kProbe, 0, 2, 1, 1, true, 1},
      {ProgressState::kProbe, 0, 1, 0, 0, true, 1},  // never below 1
      // Probe: the hint jumps further back.
      {ProgressState::kProbe, 0, 10, 9, 2, true, 3},
      {ProgressState::kProbe, 0, 10, 9, 0, true, 1},
  };
  for (const Case& c : cases) {
    Progress p = MakeProgress(c.state, c.match, c.next);
    std::string before = p.ToString();
    EXPECT_EQ(p.MaybeDecrTo(c.rejected, c.hint), c.want_ok)
        << before << " rejected=" << c.rejected << " hint=" << c.hint;
    EXPECT_EQ(p.next, c.want_next)
        << before << " rejected=" << c.rejected << " hint=" << c.hint;
    EXPECT_EQ(p.match, c.match);
  }
}

TEST(ProgressTest, MaybeDecrToUnpausesProbe) {
  Progress p = MakeProgress(ProgressState::kProbe, 0, 10);
  p.probe_sent = true;
  ASSERT_TRUE(p.IsPaused());
  EXPECT_TRUE(p.MaybeDecrTo(9, 9));
  EXPECT_FALSE(p.IsPaused());
}

TEST(ProgressTest, IsPaused) {
  Progress probe = MakeProgress(ProgressState::kProbe, 0, 1);
  EXPECT_FALSE(probe.IsPaused());
  probe.probe_sent = true;
  EXPECT_TRUE(probe.IsPaused());

  Progress repl = MakeProgress(ProgressState::kReplicate, 0, 1);
  EXPECT_FALSE(repl.IsPaused());

  Progress snap = MakeProgress(ProgressState::kSnapshot, 0, 1, 10);
  EXPECT_TRUE(snap.IsPaused());
}

}  // namespace
}  // namespace raftkv::raft
