#include "raftstore/peer_storage.h"

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "raft/errors.h"
#include "storage/keys.h"

namespace raftkv::raftstore {
namespace {

using raftpb::Entry;

Entry E(uint64_t index, uint64_t term) {
  Entry e;
  e.set_index(index);
  e.set_term(term);
  return e;
}

metapb::Region Region1() { return InitialRegion(3); }

// Two engines on one in-memory file system.
struct Engines {
  std::shared_ptr<storage::InMemoryEnv> env =
      std::make_shared<storage::InMemoryEnv>();
  std::unique_ptr<storage::Engine> raft, kv;

  Engines() { Open(); }
  void Open() {
    raft.reset();
    kv.reset();
    raft = *storage::Engine::Open({"/store/raft", env});
    kv = *storage::Engine::Open({"/store/kv", env});
  }
};

// A peer storage whose log holds `ents`, the first of which stands for the
// truncated state (as TinyKV's peer storage tests set it up).
std::unique_ptr<PeerStorage> WithEntries(Engines& eng,
                                         const std::vector<Entry>& ents) {
  raft_serverpb::RaftApplyState apply;
  apply.set_applied_index(ents.front().index());
  apply.mutable_truncated_state()->set_index(ents.front().index());
  apply.mutable_truncated_state()->set_term(ents.front().term());
  raft_serverpb::RaftLocalState rs;
  rs.mutable_hard_state()->set_term(ents.back().term());
  rs.mutable_hard_state()->set_commit(ents.front().index());
  rs.set_last_index(ents.front().index());
  rs.set_last_term(ents.front().term());
  storage::WriteBatch kv_wb, raft_wb;
  kv_wb.PutProto(storage::ApplyStateKey(1), apply);
  raft_wb.PutProto(storage::RaftStateKey(1), rs);
  EXPECT_TRUE(eng.kv->Write(kv_wb, true).ok());
  EXPECT_TRUE(eng.raft->Write(raft_wb, true).ok());
  auto ps = PeerStorage::Create(eng.raft.get(), eng.kv.get(), Region1(), "t");
  EXPECT_TRUE(ps.ok()) << ps.status();
  std::vector<Entry> rest(ents.begin() + 1, ents.end());
  storage::WriteBatch wb;
  (*ps)->Append(rest, &wb);
  wb.PutProto(storage::RaftStateKey(1), (*ps)->raft_state());
  EXPECT_TRUE(eng.raft->Write(wb, true).ok());
  return *std::move(ps);
}

std::vector<std::pair<uint64_t, uint64_t>> Log(PeerStorage& ps) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  auto ents = ps.Entries(*ps.FirstIndex(), *ps.LastIndex() + 1, raft::kNoLimit);
  EXPECT_TRUE(ents.ok()) << ents.status();
  if (!ents.ok()) return out;
  for (const Entry& e : *ents) out.emplace_back(e.index(), e.term());
  return out;
}

TEST(PeerStorageTest, TermOfCompactedTruncatedAndStoredEntries) {
  Engines eng;
  auto ps = WithEntries(eng, {E(3, 3), E(4, 4), E(5, 5)});
  EXPECT_TRUE(raft::IsError(ps->Term(2).status(), raft::ErrorKind::kCompacted));
  EXPECT_EQ(*ps->Term(3), 3u);  // the truncated state
  EXPECT_EQ(*ps->Term(4), 4u);
  EXPECT_EQ(*ps->Term(5), 5u);
  EXPECT_TRUE(
      raft::IsError(ps->Term(6).status(), raft::ErrorKind::kUnavailable));
  EXPECT_EQ(*ps->FirstIndex(), 4u);
  EXPECT_EQ(*ps->LastIndex(), 5u);
}

TEST(PeerStorageTest, EntriesRangesAndSizeLimit) {
  Engines eng;
  auto ps = WithEntries(eng, {E(3, 3), E(4, 4), E(5, 5), E(6, 6)});
  EXPECT_TRUE(raft::IsError(ps->Entries(2, 6, raft::kNoLimit).status(),
                            raft::ErrorKind::kCompacted));
  EXPECT_TRUE(raft::IsError(ps->Entries(3, 4, raft::kNoLimit).status(),
                            raft::ErrorKind::kCompacted));
  auto one = ps->Entries(4, 5, raft::kNoLimit);
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].index(), 4u);
  auto two = ps->Entries(4, 6, raft::kNoLimit);
  ASSERT_TRUE(two.ok());
  ASSERT_EQ(two->size(), 2u);
  EXPECT_EQ((*two)[1].index(), 5u);
  // A limit below one entry still returns one; a limit of two entries' size
  // returns two of three.
  EXPECT_EQ(ps->Entries(4, 7, 0)->size(), 1u);
  uint64_t two_size = raft::EntrySize(E(4, 4)) + raft::EntrySize(E(5, 5));
  EXPECT_EQ(ps->Entries(4, 7, two_size)->size(), 2u);
  EXPECT_TRUE(raft::IsError(ps->Entries(4, 8, raft::kNoLimit).status(),
                            raft::ErrorKind::kUnavailable));
}

TEST(PeerStorageTest, AppendTable) {
  using Log_ = std::vector<std::pair<uint64_t, uint64_t>>;
  struct Case {
    std::vector<Entry> append;
    Log_ want;
  };
  std::vector<Case> cases = {
      // The same entries: unchanged.
      {{E(3, 3), E(4, 4), E(5, 5)}, {{4, 4}, {5, 5}}},
      // A conflicting entry replaces the tail.
      {{E(3, 3), E(4, 6), E(5, 6)}, {{4, 6}, {5, 6}}},
      // Longer: extends.
      {{E(3, 3), E(4, 4), E(5, 5), E(6, 5)}, {{4, 4}, {5, 5}, {6, 5}}},
      // Entries below the first index are skipped; the tail after the new
      // last entry is deleted.
      {{E(2, 3), E(3, 3), E(4, 5)}, {{4, 5}}},
      {{E(4, 5)}, {{4, 5}}},
      // A continuation.
      {{E(6, 5)}, {{4, 4}, {5, 5}, {6, 5}}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    Engines eng;
    auto ps = WithEntries(eng, {E(3, 3), E(4, 4), E(5, 5)});
    storage::WriteBatch wb;
    ps->Append(cases[i].append, &wb);
    wb.PutProto(storage::RaftStateKey(1), ps->raft_state());
    ASSERT_TRUE(eng.raft->Write(wb, true).ok());
    EXPECT_EQ(Log(*ps), cases[i].want) << "case " << i;
    // What was written is what a restarted peer reads back.
    auto again =
        PeerStorage::Create(eng.raft.get(), eng.kv.get(), Region1(), "t");
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(Log(**again), cases[i].want) << "case " << i << " after reload";
    EXPECT_EQ((*again)->raft_state().last_index(), cases[i].want.back().first);
    EXPECT_EQ((*again)->raft_state().last_term(), cases[i].want.back().second);
    // No stale entry is left past the last index in the engine.
    auto it = eng.raft->NewIterator(storage::RaftLogStartKey(1),
                                    storage::RaftLogEndKey(1));
    int n = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) ++n;
    EXPECT_EQ(n, static_cast<int>(cases[i].want.size())) << "case " << i;
  }
}

TEST(PeerStorageTest, ClearMetaDeletesEveryState) {
  Engines eng;
  auto ps = WithEntries(eng, {E(3, 3), E(4, 4), E(5, 5)});
  raft_serverpb::RegionLocalState region_state;
  *region_state.mutable_region() = Region1();
  storage::WriteBatch kv;
  kv.PutProto(storage::RegionStateKey(1), region_state);
  ASSERT_TRUE(eng.kv->Write(kv, true).ok());
  auto count = [&]() {
    int n = 0;
    for (storage::Engine* e : {eng.raft.get(), eng.kv.get()}) {
      auto it = e->NewIterator(std::string(1, '\0'), std::string(1, '\x02'));
      for (it->SeekToFirst(); it->Valid(); it->Next()) ++n;
    }
    return n;
  };
  // 2 log entries, raft state, apply state, region state, plus nothing else.
  EXPECT_EQ(count(), 5);
  storage::WriteBatch raft_wb, kv_wb;
  ps->ClearMeta(&raft_wb, &kv_wb);
  ASSERT_TRUE(eng.raft->Write(raft_wb, true).ok());
  ASSERT_TRUE(eng.kv->Write(kv_wb, true).ok());
  EXPECT_EQ(count(), 0);
}

TEST(PeerStorageTest, BootstrapStatesAndRestartThroughRawNode) {
  Engines eng;
  ASSERT_TRUE(WriteInitialStates(eng.raft.get(), eng.kv.get(), Region1()).ok());
  EXPECT_EQ(WriteInitialStates(eng.raft.get(), eng.kv.get(), Region1()).code(),
            absl::StatusCode::kFailedPrecondition);
  auto ps = PeerStorage::Create(eng.raft.get(), eng.kv.get(), Region1(), "t");
  ASSERT_TRUE(ps.ok()) << ps.status();
  EXPECT_EQ(*(*ps)->FirstIndex(), kRaftInitLogIndex + 1);
  EXPECT_EQ(*(*ps)->LastIndex(), kRaftInitLogIndex);
  EXPECT_EQ(*(*ps)->Term(kRaftInitLogIndex), kRaftInitLogTerm);
  auto init = (*ps)->InitialState();
  ASSERT_TRUE(init.ok());
  EXPECT_EQ(init->hard_state.term(), kRaftInitLogTerm);
  EXPECT_EQ(init->hard_state.commit(), kRaftInitLogIndex);
  EXPECT_EQ(init->conf_state.voters_size(), 3);

  // A single-voter view of the region, so the node elects itself and
  // commits; every Ready is persisted through SaveReadyState.
  metapb::Region solo = Region1();
  solo.mutable_peers()->DeleteSubrange(1, 2);
  (*ps)->set_region(solo);
  raft::Config c;
  c.id = 1;
  c.storage = ps->get();
  c.applied = kRaftInitLogIndex;
  auto node = raft::RawNode::Create(c);
  ASSERT_TRUE(node.ok()) << node.status();
  (*node)->Campaign();
  ASSERT_TRUE((*node)->Propose("hello").ok());
  std::vector<std::string> applied;
  while ((*node)->HasReady()) {
    raft::Ready rd = (*node)->GetReady();
    storage::WriteBatch wb;
    (*ps)->SaveReadyState(rd, &wb);
    ASSERT_TRUE(eng.raft->Write(wb, /*sync=*/true).ok());
    for (const Entry& e : rd.committed_entries) {
      if (!e.data().empty()) applied.push_back(e.data());
    }
    (*node)->Advance();
  }
  EXPECT_EQ(applied, std::vector<std::string>{"hello"});
  uint64_t last = (*ps)->raft_state().last_index();
  EXPECT_EQ(last, kRaftInitLogIndex + 2);  // no-op and "hello"

  // Restart: engines closed and reopened, state read back.
  ps->reset();
  eng.Open();
  auto back = PeerStorage::Create(eng.raft.get(), eng.kv.get(), solo, "t");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)->raft_state().last_index(), last);
  EXPECT_EQ((*back)->raft_state().hard_state().commit(), last);
  EXPECT_EQ((*back)->raft_state().hard_state().term(), kRaftInitLogTerm + 1);
  auto ents = (*back)->Entries(kRaftInitLogIndex + 1, last + 1, raft::kNoLimit);
  ASSERT_TRUE(ents.ok());
  ASSERT_EQ(ents->size(), 2u);
  EXPECT_EQ((*ents)[1].data(), "hello");
}

// The write must be synced when the raft core says so (entries, a new term
// or vote: rd.must_sync) or for a snapshot; a Ready that only moves the
// commit index (must_sync false) is written unsynced.
TEST(PeerStorageTest, SaveReadyStateSaysWhenTheWriteMustBeSynced) {
  Engines eng;
  auto ps = WithEntries(eng, {E(3, 3), E(4, 4), E(5, 5)});
  auto save = [&](const raft::Ready& rd) {
    storage::WriteBatch wb;
    bool sync = ps->SaveReadyState(rd, &wb);
    EXPECT_TRUE(eng.raft->Write(wb, sync).ok());
    return sync;
  };
  raft::Ready rd;
  EXPECT_FALSE(save(rd));                         // nothing at all
  rd.hard_state = ps->raft_state().hard_state();  // term 5, commit 3
  rd.hard_state.set_commit(4);
  EXPECT_FALSE(save(rd));  // the commit index alone
  EXPECT_EQ(ps->raft_state().hard_state().commit(), 4u);
  rd.hard_state.set_vote(2);
  rd.must_sync = true;  // as RawNode sets it for a new vote
  EXPECT_TRUE(save(rd));
  EXPECT_EQ(ps->raft_state().hard_state().vote(), 2u);
  raft::Ready with_entries;
  with_entries.entries = {E(6, 6)};
  with_entries.must_sync = true;
  EXPECT_TRUE(save(with_entries));
  EXPECT_EQ(ps->raft_state().last_index(), 6u);
}

// The commit index was written without an fsync and lost, while the kv
// engine kept the apply state of entries it had committed: on restart the
// commit index moves up to the applied index.
TEST(PeerStorageTest, CommitIndexBehindTheAppliedIndexMovesUpOnRestart) {
  Engines eng;
  auto ps = WithEntries(eng, {E(3, 3), E(4, 4), E(5, 5), E(6, 5)});
  raft_serverpb::RaftApplyState apply = ps->apply_state();
  apply.set_applied_index(5);
  storage::WriteBatch kv_wb;
  kv_wb.PutProto(storage::ApplyStateKey(1), apply);
  ASSERT_TRUE(eng.kv->Write(kv_wb, true).ok());
  ASSERT_EQ(ps->raft_state().hard_state().commit(), 3u);
  ps.reset();
  auto back = PeerStorage::Create(eng.raft.get(), eng.kv.get(), Region1(), "t");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)->raft_state().hard_state().commit(), 5u);
  EXPECT_EQ((*back)->applied_index(), 5u);
  EXPECT_EQ((*back)->raft_state().last_index(), 6u);
}

TEST(PeerStorageTest, MissingOrInconsistentStatesAreErrors) {
  Engines eng;
  EXPECT_EQ(PeerStorage::Create(eng.raft.get(), eng.kv.get(), Region1(), "t")
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  raft_serverpb::RaftLocalState rs;
  rs.mutable_hard_state()->set_commit(9);
  rs.set_last_index(7);  // commit past the last index
  raft_serverpb::RaftApplyState apply;
  storage::WriteBatch raft_wb, kv_wb;
  raft_wb.PutProto(storage::RaftStateKey(1), rs);
  kv_wb.PutProto(storage::ApplyStateKey(1), apply);
  ASSERT_TRUE(eng.raft->Write(raft_wb, true).ok());
  ASSERT_TRUE(eng.kv->Write(kv_wb, true).ok());
  EXPECT_EQ(PeerStorage::Create(eng.raft.get(), eng.kv.get(), Region1(), "t")
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace raftkv::raftstore
