#include "storage/engine.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "raftpb/raft.pb.h"
#include "storage/keys.h"

namespace raftkv::storage {
namespace {

// A fresh directory under the system temp dir, removed at the end.
class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "raftkv-engine-XXXXXX")
            .string();
    char* p = mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::unique_ptr<Engine> MustOpen(const EngineOptions& o) {
  auto e = Engine::Open(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? *std::move(e) : nullptr;
}

std::vector<std::pair<std::string, std::string>> Scan(Iterator& it) {
  std::vector<std::pair<std::string, std::string>> out;
  for (it.SeekToFirst(); it.Valid(); it.Next()) {
    out.emplace_back(it.key(), it.value());
  }
  EXPECT_TRUE(it.status().ok());
  return out;
}

TEST(EngineTest, PutGetDeleteThroughBatches) {
  TempDir dir;
  auto e = MustOpen({dir.path() + "/db", nullptr});
  ASSERT_NE(e, nullptr);
  auto missing = e->Get("nope");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());

  WriteBatch b;
  b.Put("a", "1");
  b.Put("b", "2");
  b.Delete("a");
  EXPECT_EQ(b.Count(), 3);
  ASSERT_TRUE(e->Write(b, /*sync=*/true).ok());
  EXPECT_FALSE(e->Get("a")->has_value());
  EXPECT_EQ(e->Get("b")->value(), "2");
  // Writing a batch leaves it intact; Clear empties it.
  EXPECT_EQ(b.Count(), 3);
  b.Clear();
  EXPECT_TRUE(b.Empty());
}

TEST(EngineTest, DeleteRangeRemovesExactlyTheRange) {
  TempDir dir;
  auto e = MustOpen({dir.path(), nullptr});
  WriteBatch b;
  for (uint64_t i = 1; i <= 10; ++i) b.Put(RaftLogKey(1, i), "e");
  b.Put(RaftLogKey(2, 1), "other region");
  b.Put(RaftStateKey(1), "state");
  ASSERT_TRUE(e->Write(b, true).ok());
  WriteBatch del;
  del.DeleteRange(RaftLogKey(1, 0), RaftLogKey(1, 6));  // entries 1..5
  ASSERT_TRUE(e->Write(del, true).ok());
  auto it = e->NewIterator(RaftLogStartKey(1), RaftLogEndKey(1));
  auto rows = Scan(*it);
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(*DecodeRaftLogIndex(1, rows.front().first), 6u);
  EXPECT_EQ(*DecodeRaftLogIndex(1, rows.back().first), 10u);
  EXPECT_TRUE(e->Get(RaftLogKey(2, 1))->has_value());
  EXPECT_TRUE(e->Get(RaftStateKey(1))->has_value());
}

TEST(EngineTest, IteratorHonoursBoundsAndSeek) {
  TempDir dir;
  auto e = MustOpen({dir.path(), nullptr});
  WriteBatch b;
  for (const char* k : {"a", "b", "c", "d", "e"}) b.Put(k, k);
  ASSERT_TRUE(e->Write(b, false).ok());
  auto it = e->NewIterator("b", "e");
  auto rows = Scan(*it);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].first, "b");
  EXPECT_EQ(rows[2].first, "d");
  it->Seek("c");
  ASSERT_TRUE(it->Valid());
  EXPECT_EQ(it->key(), "c");
  it->Seek("a");  // below the lower bound: clamps to it
  ASSERT_TRUE(it->Valid());
  EXPECT_EQ(it->key(), "b");
}

TEST(EngineTest, SnapshotIsAConsistentPastView) {
  TempDir dir;
  auto e = MustOpen({dir.path(), nullptr});
  WriteBatch b;
  b.Put("k1", "old");
  b.Put("k2", "old");
  ASSERT_TRUE(e->Write(b, false).ok());
  auto snap = e->NewSnapshot();
  WriteBatch b2;
  b2.Put("k1", "new");
  b2.Delete("k2");
  b2.Put("k3", "new");
  ASSERT_TRUE(e->Write(b2, false).ok());

  EXPECT_EQ(snap->Get("k1")->value(), "old");
  EXPECT_EQ(snap->Get("k2")->value(), "old");
  EXPECT_FALSE(snap->Get("k3")->has_value());
  auto it = snap->NewIterator("k", "l");
  auto rows = Scan(*it);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].second, "old");
  EXPECT_EQ(e->Get("k1")->value(), "new");
}

// Every write moves the sequence forward; a snapshot sees the sequence of
// the engine when it was taken, so equal sequences mean equal views.
TEST(EngineTest, SequenceMovesWithEveryWriteAndSnapshotsKeepTheirs) {
  TempDir dir;
  auto e = MustOpen({dir.path(), nullptr});
  const uint64_t s0 = e->LatestSequence();
  EXPECT_EQ(e->NewSnapshot()->sequence(), s0);
  WriteBatch b;
  b.Put("a", "1");
  b.Put("b", "1");
  ASSERT_TRUE(e->Write(b, false).ok());
  const uint64_t s1 = e->LatestSequence();
  EXPECT_GT(s1, s0);
  auto snap = e->NewSnapshot();
  EXPECT_EQ(snap->sequence(), s1);
  WriteBatch d;
  d.Delete("a");
  ASSERT_TRUE(e->Write(d, false).ok());
  EXPECT_GT(e->LatestSequence(), s1);
  EXPECT_EQ(snap->sequence(), s1);
  EXPECT_EQ(e->NewSnapshot()->sequence(), e->LatestSequence());
}

TEST(EngineTest, ProtoValuesRoundTripAndGarbageIsDataLoss) {
  TempDir dir;
  auto e = MustOpen({dir.path(), nullptr});
  raftpb::HardState hs;
  hs.set_term(7);
  hs.set_vote(2);
  hs.set_commit(41);
  WriteBatch b;
  b.PutProto(RaftStateKey(1), hs);
  b.Put("garbage", std::string("\xff\xff\xff", 3));
  ASSERT_TRUE(e->Write(b, true).ok());

  raftpb::HardState got;
  auto found = e->GetProto(RaftStateKey(1), &got);
  ASSERT_TRUE(found.ok());
  EXPECT_TRUE(*found);
  EXPECT_EQ(got.term(), 7u);
  EXPECT_EQ(got.commit(), 41u);
  auto absent = e->GetProto("absent", &got);
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(*absent);
  auto bad = e->GetProto("garbage", &got);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss) << bad.status();
}

TEST(EngineTest, SyncedDataSurvivesReopen) {
  TempDir dir;
  {
    auto e = MustOpen({dir.path(), nullptr});
    WriteBatch b;
    b.Put("durable", "yes");
    ASSERT_TRUE(e->Write(b, true).ok());
    WriteBatch b2;
    b2.Put("unsynced", "yes");
    ASSERT_TRUE(e->Write(b2, false).ok());
    ASSERT_TRUE(e->SyncWal().ok());
  }
  auto e = MustOpen({dir.path(), nullptr});
  EXPECT_EQ(e->Get("durable")->value(), "yes");
  EXPECT_EQ(e->Get("unsynced")->value(), "yes");
}

TEST(EngineTest, TestHookLosesUnsyncedWritesOnClose) {
  auto env = std::make_shared<InMemoryEnv>();
  EngineOptions o{"/raftkv-test-lossy/kv", env, true};
  {
    auto e = MustOpen(o);
    WriteBatch synced, unsynced;
    synced.Put("durable", "yes");
    unsynced.Put("volatile", "yes");
    ASSERT_TRUE(e->Write(synced, true).ok());
    ASSERT_TRUE(e->Write(unsynced, false).ok());
    EXPECT_EQ(e->Get("volatile")->value(), "yes");  // visible while open
  }
  {
    auto e = MustOpen(o);
    EXPECT_EQ(e->Get("durable")->value(), "yes");
    EXPECT_FALSE(e->Get("volatile")->has_value());
    // SyncWal keeps its promise under the hook.
    WriteBatch later;
    later.Put("synced-later", "yes");
    ASSERT_TRUE(e->Write(later, false).ok());
    ASSERT_TRUE(e->SyncWal().ok());
  }
  auto e = MustOpen(o);
  EXPECT_EQ(e->Get("synced-later")->value(), "yes");
}

TEST(EngineTest, InMemoryEnvKeepsDataAcrossReopenAndWritesNothingToDisk) {
  auto env = std::make_shared<InMemoryEnv>();
  std::string path = "/raftkv-test-memory-engine/store1/kv";
  {
    auto e = MustOpen({path, env});
    WriteBatch b;
    b.Put("k", "v");
    ASSERT_TRUE(e->Write(b, true).ok());
  }
  EXPECT_FALSE(std::filesystem::exists("/raftkv-test-memory-engine"));
  auto e = MustOpen({path, env});
  EXPECT_EQ(e->Get("k")->value(), "v");
  // A different in-memory env is a different disk. (Regression: the engine
  // keeps its env alive although the caller drops its only reference here.)
  auto other = MustOpen({path, std::make_shared<InMemoryEnv>()});
  EXPECT_FALSE(other->Get("k")->has_value());
}

TEST(EngineTest, OpenOnAFileFailsWithAStatus) {
  TempDir dir;
  std::string file = dir.path() + "/plain-file";
  std::ofstream(file) << "not a directory";
  auto e = Engine::Open({file + "/db", nullptr});
  EXPECT_FALSE(e.ok());
}

}  // namespace
}  // namespace raftkv::storage
