#include "storage/snap_files.h"

// Only for looking at raw paths of an InMemoryEnv (the ".tmp" files a
// SnapDir hides); the code under test never exposes RocksDB.
#include <rocksdb/env.h>
#include <stdlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "storage/engine.h"
#include "storage/keys.h"

namespace raftkv::storage {
namespace {

using KeyValues = std::map<std::string, std::string>;

// The test's own bitwise CRC32C (Castagnoli, reflected polynomial
// 0x82F63B78), independent of RocksDB's.
uint32_t Crc32c(std::string_view data) {
  uint32_t crc = ~0u;
  for (unsigned char c : data) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) {
      crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
  }
  return ~crc;
}

enum class Fs { kDisk, kMemory };

void PrintTo(Fs fs, std::ostream* os) {
  *os << (fs == Fs::kDisk ? "disk" : "memory");
}

std::string FsName(const ::testing::TestParamInfo<Fs>& info) {
  return info.param == Fs::kDisk ? "Disk" : "Memory";
}

// Every key of [lower, upper) of an engine.
KeyValues Scan(const Engine& e, std::string lower = "",
               std::string upper = "\xff\xff") {
  KeyValues out;
  auto it = e.NewIterator(std::move(lower), std::move(upper));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    out.emplace(std::string(it->key()), std::string(it->value()));
  }
  EXPECT_TRUE(it->status().ok()) << it->status();
  return out;
}

KeyValues InRange(const KeyValues& kvs, const SnapRange& r) {
  return KeyValues(kvs.lower_bound(r.lower), kvs.lower_bound(r.upper));
}

// Reads file `name` of `dir` in chunks of `chunk` bytes.
std::vector<std::string> ReadChunks(SnapDir& dir, const std::string& name,
                                    size_t chunk) {
  std::vector<std::string> chunks;
  auto reader = dir.OpenReader(name);
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (!reader.ok()) return chunks;
  for (;;) {
    std::string data;
    absl::Status s = (*reader)->Read(chunk, &data);
    EXPECT_TRUE(s.ok()) << s;
    if (!s.ok() || data.empty()) break;
    EXPECT_LE(data.size(), chunk);
    chunks.push_back(std::move(data));
  }
  return chunks;
}

std::string ReadAll(SnapDir& dir, const std::string& name) {
  std::string all;
  for (const std::string& c : ReadChunks(dir, name, 64 << 10)) all += c;
  return all;
}

// Writes `chunks` as file `name` of `dir` and finishes it with the given
// size and checksum.
absl::Status Receive(SnapDir& dir, const std::string& name,
                     const std::vector<std::string>& chunks, uint64_t size,
                     uint32_t crc) {
  auto w = dir.NewWriter(name);
  if (!w.ok()) return w.status();
  for (const std::string& c : chunks) {
    absl::Status s = (*w)->Append(c);
    if (!s.ok()) return s;
  }
  return (*w)->Finish(size, crc);
}

// A 200-byte value that does not compress (the files are compressed, and
// the tests need files of many blocks), the same for the same arguments.
std::string Value(std::string_view tag, int i) {
  std::string v = std::string(tag) + "-" + std::to_string(i) + "-";
  std::mt19937 gen(static_cast<uint32_t>(i * 131 + tag[0]));
  while (v.size() < 200) v.push_back(static_cast<char>('!' + gen() % 90));
  return v;
}

std::string UserKey(int i) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "k%03d", i);
  return buf;
}

class SnapFilesTest : public ::testing::TestWithParam<Fs> {
 protected:
  void SetUp() override {
    if (GetParam() == Fs::kDisk) {
      std::string tmpl =
          (std::filesystem::temp_directory_path() / "raftkv-snapfiles-XXXXXX")
              .string();
      ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
      base_ = tmpl;
    } else {
      memory_ = std::make_shared<InMemoryEnv>();
      base_ = "/raftkv-snapfiles";
    }
  }
  void TearDown() override {
    if (GetParam() == Fs::kDisk) std::filesystem::remove_all(base_);
  }

  std::unique_ptr<Engine> OpenEngine(const std::string& name) {
    auto e = Engine::Open({base_ + "/" + name, memory_});
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *std::move(e) : nullptr;
  }
  std::unique_ptr<SnapDir> OpenDir(const std::string& name) {
    auto d = SnapDir::Open(base_ + "/" + name, memory_);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *std::move(d) : nullptr;
  }
  // Whether `path` exists on the file system under test, ".tmp" or not.
  bool RawExists(const std::string& path) {
    if (memory_) return memory_->env()->FileExists(path).ok();
    return std::filesystem::exists(path);
  }

  // Fills `e` with local keys and keys of the three column families; the
  // same writes go to *model.
  static void Fill(Engine& e, KeyValues* model) {
    WriteBatch b;
    auto put = [&](const std::string& k, const std::string& v) {
      b.Put(k, v);
      (*model)[k] = v;
    };
    put(RegionStateKey(1), "region-1");
    put(ApplyStateKey(1), "apply-1");
    for (int i = 0; i < 300; ++i)
      put(DataKey(kCfDefault, UserKey(i)), Value("d", i));
    // The lock column family has keys only outside the snapshot's range.
    for (int i = 0; i < 10; ++i)
      put(DataKey(kCfLock, UserKey(i)), Value("l", i));
    for (int i = 0; i < 120; i += 2)
      put(DataKey(kCfWrite, UserKey(i)), Value("w", i));
    ASSERT_TRUE(e.Write(b, false).ok());
  }

  // The ranges of a region with user keys [k050, k250) in default and lock,
  // and [k050, end) in write.
  static std::vector<SnapRange> Ranges() {
    return {
        {std::string(kCfDefault), DataStartKey(kCfDefault, "k050"),
         DataEndKey(kCfDefault, "k250")},
        {std::string(kCfLock), DataStartKey(kCfLock, "k050"),
         DataEndKey(kCfLock, "k250")},
        {std::string(kCfWrite), DataStartKey(kCfWrite, "k050"),
         DataEndKey(kCfWrite, "")},
    };
  }

  // Writes a snapshot of a filled engine, taken before later writes that
  // must not show in the files. Sets *model to the snapshot's content.
  std::vector<SnapFileMeta> MakeSnapshotFiles(SnapDir& dir, KeyValues* model) {
    auto src = OpenEngine("src");
    if (src == nullptr) return {};
    Fill(*src, model);
    auto snap = src->NewSnapshot();
    WriteBatch later;
    later.Put(DataKey(kCfDefault, "k100"), "changed");
    later.Delete(DataKey(kCfDefault, "k060"));
    later.Put(DataKey(kCfDefault, "k0605"), "new");
    later.Put(DataKey(kCfLock, "k100"), "new lock");
    later.DeleteRange(DataKey(kCfWrite, "k090"), DataKey(kCfWrite, "k100"));
    EXPECT_TRUE(src->Write(later, false).ok());
    auto metas = dir.WriteSstFiles(*snap, Ranges(), "r1_5_7");
    EXPECT_TRUE(metas.ok()) << metas.status();
    return metas.ok() ? *std::move(metas) : std::vector<SnapFileMeta>();
  }

  std::string base_;
  std::shared_ptr<InMemoryEnv> memory_;  // null on disk
};

INSTANTIATE_TEST_SUITE_P(Fs, SnapFilesTest,
                         ::testing::Values(Fs::kDisk, Fs::kMemory), FsName);

TEST_P(SnapFilesTest, SstFilesHoldExactlyTheSnapshotOfEachRange) {
  auto dir = OpenDir("snap");
  ASSERT_NE(dir, nullptr);
  KeyValues model;
  std::vector<SnapFileMeta> metas = MakeSnapshotFiles(*dir, &model);
  // The lock range is empty: no file for it.
  ASSERT_EQ(metas.size(), 2u);
  EXPECT_EQ(metas[0].cf, "default");
  EXPECT_EQ(metas[0].name, "r1_5_7_default.sst");
  EXPECT_EQ(metas[1].cf, "write");
  EXPECT_EQ(metas[1].name, "r1_5_7_write.sst");
  EXPECT_FALSE(dir->Exists("r1_5_7_lock.sst"));
  auto listed = dir->List("r1_5_7");
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(*listed, (std::vector<std::string>{"r1_5_7_default.sst",
                                               "r1_5_7_write.sst"}));

  std::vector<SnapRange> ranges = Ranges();
  const SnapRange* range_of[2] = {&ranges[0], &ranges[2]};
  for (int f = 0; f < 2; ++f) {
    SCOPED_TRACE(metas[f].name);
    KeyValues want = InRange(model, *range_of[f]);
    ASSERT_FALSE(want.empty());
    EXPECT_EQ(metas[f].key_count, want.size());
    std::string content = ReadAll(*dir, metas[f].name);
    EXPECT_EQ(metas[f].size, content.size());
    EXPECT_EQ(metas[f].crc32c, Crc32c(content));
    EXPECT_TRUE(
        dir->Verify(metas[f].name, metas[f].size, metas[f].crc32c).ok());

    // The file's keys, seen by ingesting it alone into an empty engine.
    auto e = OpenEngine("check" + std::to_string(f));
    ASSERT_NE(e, nullptr);
    ASSERT_TRUE(e->IngestFiles({dir->PathOf(metas[f].name)}).ok());
    EXPECT_EQ(Scan(*e), want);
    // The original stays (it was copied).
    EXPECT_TRUE(dir->Exists(metas[f].name));
  }
}

TEST_P(SnapFilesTest, EmptyRangesWriteNoFileAndBadRangesAreRefused) {
  auto src = OpenEngine("src");
  auto dir = OpenDir("snap");
  ASSERT_NE(src, nullptr);
  ASSERT_NE(dir, nullptr);
  KeyValues model;
  Fill(*src, &model);
  auto snap = src->NewSnapshot();
  auto none = dir->WriteSstFiles(
      *snap,
      {{"default", DataStartKey(kCfDefault, "x"), DataEndKey(kCfDefault, "")}},
      "empty");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
  auto twice = dir->WriteSstFiles(*snap, {Ranges()[0], Ranges()[0]}, "dup");
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kInvalidArgument);
  auto listed = dir->List("");
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());
}

TEST_P(SnapFilesTest, ChunkedRoundTripThroughReaderAndWriter) {
  auto dir = OpenDir("snap");
  auto recv = OpenDir("recv");
  ASSERT_NE(dir, nullptr);
  ASSERT_NE(recv, nullptr);
  KeyValues model;
  std::vector<SnapFileMeta> metas = MakeSnapshotFiles(*dir, &model);
  ASSERT_FALSE(metas.empty());
  const SnapFileMeta& m = metas[0];
  const std::string original = ReadAll(*dir, m.name);
  for (size_t chunk : {size_t{4096}, size_t{1000}, size_t{7}}) {
    SCOPED_TRACE(chunk);
    std::vector<std::string> chunks = ReadChunks(*dir, m.name, chunk);
    EXPECT_EQ(chunks.size(), (m.size + chunk - 1) / chunk);
    const std::string name = std::to_string(chunk) + "_" + m.name;
    ASSERT_TRUE(Receive(*recv, name, chunks, m.size, m.crc32c).ok());
    EXPECT_TRUE(recv->Exists(name));
    EXPECT_FALSE(RawExists(recv->PathOf(name) + ".tmp"));
    EXPECT_TRUE(recv->Verify(name, m.size, m.crc32c).ok());
    EXPECT_EQ(ReadAll(*recv, name), original);
  }
}

TEST_P(SnapFilesTest, ChecksumIsTheStandardCrc32c) {
  auto dir = OpenDir("snap");
  ASSERT_NE(dir, nullptr);
  // 0xE3069283 is the CRC-32C check value (the CRC of "123456789").
  ASSERT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_TRUE(
      Receive(*dir, "check", {"1234", "", "56789"}, 9, 0xE3069283u).ok());
  EXPECT_TRUE(dir->Verify("check", 9, 0xE3069283u).ok());
  EXPECT_EQ(dir->Verify("check", 9, 0xE3069284u).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(dir->Verify("check", 10, 0xE3069283u).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(Receive(*dir, "other", {"123456789"}, 9, 0xE3069284u).code(),
            absl::StatusCode::kDataLoss);
  // An empty file has CRC 0.
  EXPECT_TRUE(Receive(*dir, "empty", {}, 0, 0).ok());
  EXPECT_TRUE(dir->Verify("empty", 0, 0).ok());
}

TEST_P(SnapFilesTest, BrokenTransfersAreRefusedAndLeaveNoFile) {
  auto dir = OpenDir("snap");
  auto recv = OpenDir("recv");
  ASSERT_NE(dir, nullptr);
  ASSERT_NE(recv, nullptr);
  KeyValues model;
  std::vector<SnapFileMeta> metas = MakeSnapshotFiles(*dir, &model);
  ASSERT_FALSE(metas.empty());
  const SnapFileMeta& m = metas[0];
  const std::vector<std::string> good = ReadChunks(*dir, m.name, 4096);
  ASSERT_GT(good.size(), 3u);

  std::vector<std::string> flipped = good;
  flipped[good.size() / 2][100] ^= 0x01;
  std::vector<std::string> missing = good;
  missing.erase(missing.begin() + 1);
  struct Case {
    const char* what;
    std::vector<std::string> chunks;
    uint64_t size;
  } cases[] = {
      {"flipped byte", flipped, m.size},
      {"missing chunk", missing, m.size},
      {"wrong size", good, m.size + 1},
      {"short size", good, m.size - 1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    absl::Status s = Receive(*recv, m.name, c.chunks, c.size, m.crc32c);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    EXPECT_FALSE(recv->Exists(m.name));
    EXPECT_FALSE(RawExists(recv->PathOf(m.name)));
    EXPECT_FALSE(RawExists(recv->PathOf(m.name) + ".tmp"));
  }
  // The intact transfer still goes through afterwards.
  EXPECT_TRUE(Receive(*recv, m.name, good, m.size, m.crc32c).ok());
  EXPECT_TRUE(recv->Exists(m.name));
}

TEST_P(SnapFilesTest, UnfinishedWritersListDeleteAndCleanup) {
  auto dir = OpenDir("snap");
  ASSERT_NE(dir, nullptr);
  const std::string tmp_a = dir->PathOf("gone.sst") + ".tmp";
  {
    auto w = dir->NewWriter("gone.sst");
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append("partial").ok());
    EXPECT_TRUE(RawExists(tmp_a));
  }  // destroyed without Finish
  EXPECT_FALSE(RawExists(tmp_a));
  EXPECT_FALSE(dir->Exists("gone.sst"));
  {
    auto w = dir->NewWriter("aborted.sst");
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append("partial").ok());
    (*w)->Abort();
    EXPECT_FALSE(RawExists(dir->PathOf("aborted.sst") + ".tmp"));
    EXPECT_EQ((*w)->Finish(7, Crc32c("partial")).code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_FALSE(dir->Exists("aborted.sst"));
  }

  for (const char* name : {"r1_a.sst", "r1_b.sst", "r2_a.sst"}) {
    ASSERT_TRUE(
        Receive(*dir, name, {name}, std::strlen(name), Crc32c(name)).ok());
  }
  // A transfer in progress: its ".tmp" is not listed.
  auto pending = dir->NewWriter("r1_c.sst");
  ASSERT_TRUE(pending.ok());
  ASSERT_TRUE((*pending)->Append("r1_c.sst").ok());
  auto r1 = dir->List("r1_");
  ASSERT_TRUE(r1.ok());
  EXPECT_EQ(*r1, (std::vector<std::string>{"r1_a.sst", "r1_b.sst"}));
  auto all = dir->List("");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all,
            (std::vector<std::string>{"r1_a.sst", "r1_b.sst", "r2_a.sst"}));

  // A restart: a new SnapDir on the same directory drops the leftover.
  const std::string tmp_c = dir->PathOf("r1_c.sst") + ".tmp";
  ASSERT_TRUE(RawExists(tmp_c));
  auto again = OpenDir("snap");
  ASSERT_NE(again, nullptr);
  ASSERT_TRUE(again->CleanTemporary().ok());
  EXPECT_FALSE(RawExists(tmp_c));
  EXPECT_TRUE(again->Exists("r1_a.sst"));
  // The old writer's file is gone, so it cannot be finished any more.
  EXPECT_FALSE((*pending)->Finish(8, Crc32c("r1_c.sst")).ok());
  EXPECT_FALSE(again->Exists("r1_c.sst"));

  EXPECT_TRUE(again->Delete("r1_a.sst").ok());
  EXPECT_FALSE(again->Exists("r1_a.sst"));
  EXPECT_TRUE(again->Delete("r1_a.sst").ok());  // missing: still OK
  EXPECT_TRUE(again->Delete("never.sst").ok());
  EXPECT_EQ(again->Verify("never.sst", 0, 0).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(again->OpenReader("never.sst").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(again->NewWriter("x.tmp").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(again->NewWriter("a/b").status().code(),
            absl::StatusCode::kInvalidArgument);
  all = again->List("");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, (std::vector<std::string>{"r1_b.sst", "r2_a.sst"}));
}

TEST_P(SnapFilesTest, IngestReplacesTheRangesAndKeepsTheRest) {
  auto dir = OpenDir("snap");
  ASSERT_NE(dir, nullptr);
  KeyValues snap_model;
  std::vector<SnapFileMeta> metas = MakeSnapshotFiles(*dir, &snap_model);
  ASSERT_EQ(metas.size(), 2u);
  std::vector<std::string> paths;
  for (const SnapFileMeta& m : metas) paths.push_back(dir->PathOf(m.name));

  auto target = OpenEngine("target");
  ASSERT_NE(target, nullptr);
  EXPECT_EQ(target->IngestFiles({}).code(), absl::StatusCode::kInvalidArgument);
  // Older content: keys inside the ranges (stale values, and keys the
  // snapshot does not have) and keys outside them.
  KeyValues target_model;
  {
    WriteBatch b;
    auto put = [&](const std::string& k, const std::string& v) {
      b.Put(k, v);
      target_model[k] = v;
    };
    put(RegionStateKey(2), "region-2");
    put(DataKey(kCfDefault, "k010"), "outside");
    put(DataKey(kCfDefault, "k100"), "stale");
    put(DataKey(kCfDefault, "k100x"), "not in the snapshot");
    put(DataKey(kCfDefault, "k250"), "outside: the end is exclusive");
    put(DataKey(kCfLock, "k060"), "stale lock");
    put(DataKey(kCfLock, "k300"), "outside lock");
    put(DataKey(kCfWrite, "k999"), "stale write");
    ASSERT_TRUE(target->Write(b, false).ok());
  }
  // What a snapshot apply does: clear the ranges, then ingest.
  KeyValues want = target_model;
  {
    WriteBatch clear;
    for (const SnapRange& r : Ranges()) {
      clear.DeleteRange(r.lower, r.upper);
      want.erase(want.lower_bound(r.lower), want.lower_bound(r.upper));
      KeyValues in = InRange(snap_model, r);
      want.insert(in.begin(), in.end());
    }
    ASSERT_TRUE(target->Write(clear, false).ok());
  }
  ASSERT_TRUE(target->IngestFiles(paths).ok());
  EXPECT_EQ(Scan(*target), want);
  EXPECT_EQ(*target->Get(DataKey(kCfDefault, "k100")),
            snap_model.at(DataKey(kCfDefault, "k100")));

  // Durable: still there after a reopen.
  target.reset();
  target = OpenEngine("target");
  ASSERT_NE(target, nullptr);
  EXPECT_EQ(Scan(*target), want);

  // A file corrupted before its checksum was computed (so the transfer
  // accepts it) is refused by the ingestion, which changes nothing.
  std::string bad = ReadAll(*dir, metas[0].name);
  bad[bad.size() / 2] ^= 0x55;
  ASSERT_TRUE(
      Receive(*dir, "corrupt.sst", {bad}, bad.size(), Crc32c(bad)).ok());
  absl::Status s = target->IngestFiles({dir->PathOf("corrupt.sst")});
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_EQ(Scan(*target), want);
  // Nor with a good file in the same call: the write range's file would
  // bring back a key deleted since.
  const std::string deleted = DataKey(kCfWrite, "k060");
  ASSERT_EQ(want.erase(deleted), 1u);
  WriteBatch del;
  del.Delete(deleted);
  ASSERT_TRUE(target->Write(del, false).ok());
  s = target->IngestFiles({paths[1], dir->PathOf("corrupt.sst")});
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(Scan(*target), want);
}

}  // namespace
}  // namespace raftkv::storage
