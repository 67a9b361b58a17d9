// Unit tests for MemoryStorage (src/raft/storage.h): the dummy entry, term and
// entry lookups with their errors, compaction, snapshots and appends.
#include "raft/storage.h"

#include <csignal>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "raft/errors.h"
#include "raft/types.h"
#include "test_util.h"

namespace raftkv::raft {
namespace {

using raftpb::ConfState;
using raftpb::Entry;
using raftpb::HardState;
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

ConfState Voters(std::vector<uint64_t> ids) {
  ConfState cs;
  for (uint64_t id : ids) cs.add_voters(id);
  return cs;
}

Snapshot MakeSnap(uint64_t index, uint64_t term,
                  std::vector<uint64_t> voters = {}) {
  Snapshot s;
  s.mutable_metadata()->set_index(index);
  s.mutable_metadata()->set_term(term);
  *s.mutable_metadata()->mutable_conf_state() = Voters(std::move(voters));
  return s;
}

// A storage whose dummy entry is (3,3) followed by `rest` (by default the
// entries (4,4) and (5,5)), like a log compacted up to index 3.
std::unique_ptr<MemoryStorage> Compacted33(IndexTerms rest = {{4, 4}, {5, 5}}) {
  auto s = std::make_unique<MemoryStorage>();
  EXPECT_TRUE(s->ApplySnapshot(MakeSnap(3, 3)).ok());
  EXPECT_TRUE(s->Append(Ents(rest)).ok());
  return s;
}

// Every entry the storage holds, from FirstIndex to LastIndex.
IndexTerms AllPairs(MemoryStorage* s) {
  uint64_t first = s->FirstIndex().value();
  uint64_t last = s->LastIndex().value();
  auto ents = s->Entries(first, last + 1, kNoLimit);
  EXPECT_TRUE(ents.ok()) << ents.status();
  return ents.ok() ? Pairs(*ents) : IndexTerms{};
}

TEST(MemoryStorageTest, EmptyStorageHasDummyEntryAtZero) {
  MemoryStorage s;
  EXPECT_EQ(s.FirstIndex().value(), 1u);
  EXPECT_EQ(s.LastIndex().value(), 0u);
  // The dummy entry's term is known even though it holds no data.
  auto t0 = s.Term(0);
  ASSERT_TRUE(t0.ok()) << t0.status();
  EXPECT_EQ(*t0, 0u);
  EXPECT_TRUE(IsError(s.Term(1).status(), ErrorKind::kUnavailable));
  auto snap = s.Snapshot();
  ASSERT_TRUE(snap.ok());
  EXPECT_TRUE(IsEmptySnap(*snap));
  auto st = s.InitialState();
  ASSERT_TRUE(st.ok());
  EXPECT_TRUE(IsEmptyHardState(st->hard_state));
  EXPECT_EQ(st->conf_state.voters_size(), 0);
}

TEST(MemoryStorageTest, TermErrorsOutsideDummyToLast) {
  auto s = Compacted33();
  struct Case {
    uint64_t i;
    bool ok;
    ErrorKind err;
    uint64_t term;
  };
  const Case cases[] = {
      {2, false, ErrorKind::kCompacted, 0},
      {3, true, ErrorKind::kCompacted, 3},  // the dummy: term still known
      {4, true, ErrorKind::kCompacted, 4},
      {5, true, ErrorKind::kCompacted, 5},
      {6, false, ErrorKind::kUnavailable, 0},
  };
  for (const Case& c : cases) {
    auto t = s->Term(c.i);
    if (c.ok) {
      ASSERT_TRUE(t.ok()) << "i=" << c.i << " " << t.status();
      EXPECT_EQ(*t, c.term) << "i=" << c.i;
    } else {
      EXPECT_TRUE(IsError(t.status(), c.err))
          << "i=" << c.i << " " << t.status();
    }
  }
}

TEST(MemoryStorageTest, EntriesRangeErrors) {
  auto s = Compacted33({{4, 4}, {5, 5}, {6, 6}});
  // Below the first index (the dummy itself included): compacted.
  EXPECT_TRUE(
      IsError(s->Entries(2, 6, kNoLimit).status(), ErrorKind::kCompacted));
  EXPECT_TRUE(
      IsError(s->Entries(3, 4, kNoLimit).status(), ErrorKind::kCompacted));
  // Past LastIndex() + 1: unavailable.
  EXPECT_TRUE(
      IsError(s->Entries(4, 8, kNoLimit).status(), ErrorKind::kUnavailable));
}

TEST(MemoryStorageTest, EntriesReturnsHalfOpenRange) {
  auto s = Compacted33({{4, 4}, {5, 5}, {6, 6}});
  struct Case {
    uint64_t lo, hi;
    IndexTerms want;
  };
  const Case cases[] = {
      {4, 5, {{4, 4}}},
      {4, 6, {{4, 4}, {5, 5}}},
      {4, 7, {{4, 4}, {5, 5}, {6, 6}}},
      {5, 7, {{5, 5}, {6, 6}}},
      {6, 7, {{6, 6}}},
  };
  for (const Case& c : cases) {
    auto ents = s->Entries(c.lo, c.hi, kNoLimit);
    ASSERT_TRUE(ents.ok()) << c.lo << "," << c.hi << " " << ents.status();
    EXPECT_EQ(Pairs(*ents), c.want) << c.lo << "," << c.hi;
  }
}

TEST(MemoryStorageTest, EntriesRespectsMaxSizeButReturnsAtLeastOne) {
  auto s = Compacted33({{4, 4}, {5, 5}, {6, 6}});
  const uint64_t sz = EntrySize(MakeEntry(4, 4));
  ASSERT_GT(sz, 0u);
  struct Case {
    uint64_t max_size;
    IndexTerms want;
  };
  const Case cases[] = {
      {0, {{4, 4}}},  // even a zero limit yields one entry
      {sz - 1, {{4, 4}}},
      {sz, {{4, 4}}},
      {sz + 1, {{4, 4}}},
      {2 * sz - 1, {{4, 4}}},
      {2 * sz, {{4, 4}, {5, 5}}},
      {3 * sz - 1, {{4, 4}, {5, 5}}},
      {3 * sz, {{4, 4}, {5, 5}, {6, 6}}},
      {kNoLimit, {{4, 4}, {5, 5}, {6, 6}}},
  };
  for (const Case& c : cases) {
    auto ents = s->Entries(4, 7, c.max_size);
    ASSERT_TRUE(ents.ok()) << ents.status();
    EXPECT_EQ(Pairs(*ents), c.want) << "max_size=" << c.max_size;
  }
}

TEST(MemoryStorageTest, EntriesMaxSizeCountsData) {
  auto s = std::make_unique<MemoryStorage>();
  std::vector<Entry> ents = {MakeEntry(1, 1, std::string(100, 'a')),
                             MakeEntry(2, 1, std::string(100, 'b')),
                             MakeEntry(3, 1, "c")};
  const uint64_t s1 = EntrySize(ents[0]);
  const uint64_t s2 = EntrySize(ents[1]);
  ASSERT_GE(s1, 100u);
  ASSERT_TRUE(s->Append(ents).ok());
  auto got = s->Entries(1, 4, s1 + s2 - 1);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(Pairs(*got), (IndexTerms{{1, 1}}));
  got = s->Entries(1, 4, s1 + s2);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[1].data(), std::string(100, 'b'));
}

TEST(MemoryStorageTest, FirstAndLastIndex) {
  auto s = Compacted33();
  EXPECT_EQ(s->FirstIndex().value(), 4u);
  EXPECT_EQ(s->LastIndex().value(), 5u);

  ASSERT_TRUE(s->Append(Ents({{6, 5}})).ok());
  EXPECT_EQ(s->LastIndex().value(), 6u);
  EXPECT_EQ(s->FirstIndex().value(), 4u);

  ASSERT_TRUE(s->Compact(4).ok());
  EXPECT_EQ(s->FirstIndex().value(), 5u);
  EXPECT_EQ(s->LastIndex().value(), 6u);
}

TEST(MemoryStorageTest, CompactMovesDummyEntry) {
  struct Case {
    uint64_t index;
    bool ok;
    uint64_t dummy_index, dummy_term;
    size_t len;  // entries after the dummy
  };
  const Case cases[] = {
      {2, false, 3, 3, 2},  // below the dummy: already compacted
      {3, false, 3, 3, 2},  // the dummy itself: already compacted
      {4, true, 4, 4, 1},
      {5, true, 5, 5, 0},
  };
  for (const Case& c : cases) {
    auto s = Compacted33();
    absl::Status st = s->Compact(c.index);
    if (c.ok) {
      EXPECT_TRUE(st.ok()) << c.index << " " << st;
    } else {
      EXPECT_TRUE(IsError(st, ErrorKind::kCompacted)) << c.index << " " << st;
    }
    EXPECT_EQ(s->FirstIndex().value(), c.dummy_index + 1) << c.index;
    auto t = s->Term(c.dummy_index);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(*t, c.dummy_term);
    EXPECT_TRUE(
        IsError(s->Term(c.dummy_index - 1).status(), ErrorKind::kCompacted))
        << c.index;
    EXPECT_EQ(s->LastIndex().value() - c.dummy_index, c.len) << c.index;
  }
}

TEST(MemoryStorageTest, CompactTwiceToSameIndexIsCompactedError) {
  auto s = Compacted33();
  ASSERT_TRUE(s->Compact(4).ok());
  EXPECT_TRUE(IsError(s->Compact(4), ErrorKind::kCompacted));
  EXPECT_EQ(s->FirstIndex().value(), 5u);
}

TEST(MemoryStorageTest, CreateSnapshotRecordsIndexTermConfAndData) {
  const ConfState cs = Voters({1, 2, 3});
  struct Case {
    uint64_t i;
    uint64_t term;
  };
  for (const Case& c : {Case{4, 4}, Case{5, 5}}) {
    auto s = Compacted33();
    auto snap = s->CreateSnapshot(c.i, &cs, "data");
    ASSERT_TRUE(snap.ok()) << snap.status();
    EXPECT_EQ(snap->metadata().index(), c.i);
    EXPECT_EQ(snap->metadata().term(), c.term);
    EXPECT_EQ(snap->data(), "data");
    ASSERT_EQ(snap->metadata().conf_state().voters_size(), 3);
    EXPECT_EQ(snap->metadata().conf_state().voters(2), 3u);
    // Snapshot() now returns it; the log itself is not compacted.
    auto cur = s->Snapshot();
    ASSERT_TRUE(cur.ok());
    EXPECT_EQ(cur->metadata().index(), c.i);
    EXPECT_EQ(cur->data(), "data");
    EXPECT_EQ(s->FirstIndex().value(), 4u);
  }
}

TEST(MemoryStorageTest, CreateSnapshotNotNewerIsOutOfDate) {
  const ConfState cs = Voters({1, 2, 3});
  auto s = Compacted33();
  // The storage's snapshot is at 3 (from ApplySnapshot).
  EXPECT_TRUE(IsError(s->CreateSnapshot(3, &cs, "x").status(),
                      ErrorKind::kSnapshotOutOfDate));
  ASSERT_TRUE(s->CreateSnapshot(5, &cs, "five").ok());
  EXPECT_TRUE(IsError(s->CreateSnapshot(5, &cs, "again").status(),
                      ErrorKind::kSnapshotOutOfDate));
  EXPECT_TRUE(IsError(s->CreateSnapshot(4, &cs, "older").status(),
                      ErrorKind::kSnapshotOutOfDate));
  EXPECT_EQ(s->Snapshot()->data(), "five");
}

TEST(MemoryStorageTest, ApplySnapshotReplacesLog) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append(Ents({{1, 1}, {2, 1}, {3, 2}})).ok());
  ASSERT_TRUE(s.ApplySnapshot(MakeSnap(10, 4, {1, 2})).ok());
  EXPECT_EQ(s.FirstIndex().value(), 11u);
  EXPECT_EQ(s.LastIndex().value(), 10u);
  EXPECT_EQ(s.Term(10).value(), 4u);
  EXPECT_TRUE(IsError(s.Term(3).status(), ErrorKind::kCompacted));
  EXPECT_EQ(s.Snapshot()->metadata().index(), 10u);
}

TEST(MemoryStorageTest, ApplySnapshotRejectsStaleSnapshot) {
  MemoryStorage s;
  ASSERT_TRUE(s.ApplySnapshot(MakeSnap(4, 4, {1, 2, 3})).ok());
  ASSERT_TRUE(s.Append(Ents({{5, 4}})).ok());
  EXPECT_TRUE(IsError(s.ApplySnapshot(MakeSnap(3, 3, {1})),
                      ErrorKind::kSnapshotOutOfDate));
  EXPECT_TRUE(IsError(s.ApplySnapshot(MakeSnap(4, 4, {1})),
                      ErrorKind::kSnapshotOutOfDate));
  // Nothing changed.
  EXPECT_EQ(s.FirstIndex().value(), 5u);
  EXPECT_EQ(s.LastIndex().value(), 5u);
  EXPECT_EQ(s.Term(4).value(), 4u);
  EXPECT_EQ(s.Snapshot()->metadata().index(), 4u);
  EXPECT_EQ(s.InitialState()->conf_state.voters_size(), 3);
}

TEST(MemoryStorageTest, AppendTable) {
  struct Case {
    IndexTerms ents;
    IndexTerms want;  // entries after the dummy (3,3)
  };
  const Case cases[] = {
      // Same entries (the leading dummy copy is skipped).
      {{{3, 3}, {4, 4}, {5, 5}}, {{4, 4}, {5, 5}}},
      // Conflicting tail replaced.
      {{{3, 3}, {4, 6}, {5, 6}}, {{4, 6}, {5, 6}}},
      // Extended.
      {{{3, 3}, {4, 4}, {5, 5}, {6, 5}}, {{4, 4}, {5, 5}, {6, 5}}},
      // Below first index skipped, then a conflict truncates the tail.
      {{{2, 3}, {3, 3}, {4, 5}}, {{4, 5}}},
      // A conflict at the first index.
      {{{4, 5}}, {{4, 5}}},
      // Directly after the last index.
      {{{6, 5}}, {{4, 4}, {5, 5}, {6, 5}}},
      // A conflict in the middle drops the rest.
      {{{5, 6}}, {{4, 4}, {5, 6}}},
      // Entirely compacted: nothing happens.
      {{{2, 2}, {3, 3}}, {{4, 4}, {5, 5}}},
      // Empty append.
      {{}, {{4, 4}, {5, 5}}},
  };
  for (const Case& c : cases) {
    auto s = Compacted33();
    absl::Status st = s->Append(Ents(c.ents));
    ASSERT_TRUE(st.ok()) << st;
    EXPECT_EQ(AllPairs(s.get()), c.want)
        << "appending " << testing::PrintToString(c.ents);
    EXPECT_EQ(s->FirstIndex().value(), 4u);
  }
}

TEST(MemoryStorageTest, AppendToEmptyWithLeadingZeroEntryIsHarmless) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append(Ents({{0, 0}, {1, 1}, {2, 1}})).ok());
  EXPECT_EQ(s.FirstIndex().value(), 1u);
  EXPECT_EQ(s.LastIndex().value(), 2u);
  EXPECT_EQ(AllPairs(&s), (IndexTerms{{1, 1}, {2, 1}}));
  EXPECT_EQ(s.Term(0).value(), 0u);
}

TEST(MemoryStorageTest, AppendKeepsEntryData) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append({MakeEntry(1, 1, "one"), MakeEntry(2, 1, "two")}).ok());
  // Replace entry 2 with a different payload and term.
  ASSERT_TRUE(s.Append({MakeEntry(2, 2, "TWO")}).ok());
  auto ents = s.Entries(1, 3, kNoLimit);
  ASSERT_TRUE(ents.ok());
  ASSERT_EQ(ents->size(), 2u);
  EXPECT_EQ((*ents)[0].data(), "one");
  EXPECT_EQ((*ents)[1].data(), "TWO");
  EXPECT_EQ((*ents)[1].term(), 2u);
}

TEST(MemoryStorageDeathTest, AppendWithGapAborts) {
  auto s = Compacted33();
  EXPECT_EXIT((void)s->Append(Ents({{7, 5}})), testing::KilledBySignal(SIGABRT),
              "");
}

TEST(MemoryStorageTest, InitialStateReturnsHardStateAndSnapshotConf) {
  MemoryStorage s;
  HardState hs;
  hs.set_term(5);
  hs.set_vote(2);
  hs.set_commit(7);
  s.SetHardState(hs);
  auto st = s.InitialState();
  ASSERT_TRUE(st.ok());
  EXPECT_TRUE(HardStateEqual(st->hard_state, hs));
  EXPECT_EQ(st->conf_state.voters_size(), 0);

  ASSERT_TRUE(s.ApplySnapshot(MakeSnap(7, 5, {1, 2, 3})).ok());
  st = s.InitialState();
  ASSERT_TRUE(st.ok());
  // The hard state is the application's, saved separately; a snapshot
  // brings the membership.
  EXPECT_TRUE(HardStateEqual(st->hard_state, hs));
  ASSERT_EQ(st->conf_state.voters_size(), 3);
  EXPECT_EQ(st->conf_state.voters(0), 1u);
  EXPECT_EQ(st->conf_state.voters(1), 2u);
  EXPECT_EQ(st->conf_state.voters(2), 3u);

  HardState hs2 = hs;
  hs2.set_commit(9);
  s.SetHardState(hs2);
  EXPECT_TRUE(HardStateEqual(s.InitialState()->hard_state, hs2));
}

TEST(MemoryStorageTest, CreateSnapshotConfStateShowsInInitialState) {
  auto s = Compacted33();
  const ConfState cs = Voters({4, 5});
  ASSERT_TRUE(s->CreateSnapshot(5, &cs, "").ok());
  ASSERT_TRUE(s->Compact(5).ok());
  auto st = s->InitialState();
  ASSERT_TRUE(st.ok());
  ASSERT_EQ(st->conf_state.voters_size(), 2);
  EXPECT_EQ(st->conf_state.voters(0), 4u);
}

}  // namespace
}  // namespace raftkv::raft
