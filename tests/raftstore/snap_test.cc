// Region snapshots at the unit level: generating the files, streaming them
// through SnapshotSender and SnapshotReceiver (chunking, malformed and
// corrupt streams, cleanup), applying them, and PeerStorage's recovery of a
// raft state left behind an applied snapshot by a crash.
#include "raftstore/snap.h"

#include <rocksdb/env.h>  // only to see the raw files (".tmp") of a SnapDir

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "raft/errors.h"
#include "raftstore/peer_storage.h"
#include "storage/engine.h"
#include "storage/keys.h"
#include "storage/snap_files.h"

namespace raftkv::raftstore {
namespace {

using raft_serverpb::RaftMessage;
using raft_serverpb::SnapshotChunk;

constexpr uint64_t kIndex = 50;
constexpr uint64_t kTerm = 6;

// The user data and exactly-once entries of `region` in `kv`, as
// "<cf>/<key>" -> value (dedup entries as "dedup/<client>").
std::map<std::string, std::string> RegionContent(storage::Engine& kv,
                                                 const metapb::Region& region) {
  std::map<std::string, std::string> out;
  for (std::string_view cf :
       {storage::kCfDefault, storage::kCfLock, storage::kCfWrite}) {
    auto it = kv.NewIterator(storage::DataStartKey(cf, region.start_key()),
                             storage::DataEndKey(cf, region.end_key()));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      out[std::string(it->key())] = std::string(it->value());
    }
    EXPECT_TRUE(it->status().ok());
  }
  auto it = kv.NewIterator(storage::DedupStartKey(region.id()),
                           storage::DedupEndKey(region.id()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    out["dedup/" + std::string(it->key())] = std::string(it->value());
  }
  return out;
}

class SnapTest : public testing::Test {
 protected:
  void SetUp() override {
    src_kv_ = *storage::Engine::Open({"/src/kv", env_});
    dst_kv_ = *storage::Engine::Open({"/dst/kv", env_});
    src_dir_ = *storage::SnapDir::Open("/src/snap", env_);
    dst_dir_ = *storage::SnapDir::Open("/dst/snap", env_);
    region_ = InitialRegion(3);
    region_.set_start_key("b");
    region_.set_end_key("x");
    // Data in and around the region, in several column families, and the
    // exactly-once tables of this region and of another.
    std::mt19937_64 rng(42);
    storage::WriteBatch wb;
    for (int i = 0; i < 200; ++i) {
      std::string v(100, '\0');
      for (char& ch : v) ch = static_cast<char>('a' + rng() % 26);
      wb.Put(storage::DataKey(storage::kCfDefault, "key" + std::to_string(i)),
             v);
    }
    wb.Put(storage::DataKey(storage::kCfDefault, "a-outside"), "no");
    wb.Put(storage::DataKey(storage::kCfDefault, "x-outside"), "no");
    wb.Put(storage::DataKey(storage::kCfLock, "lock-me"), "lock");
    wb.Put(storage::DedupKey(1, 77), storage::EncodeU64(3));
    wb.Put(storage::DedupKey(1, 78), storage::EncodeU64(9));
    wb.Put(storage::DedupKey(2, 77), storage::EncodeU64(1));
    ASSERT_TRUE(src_kv_->Write(wb, false).ok());
    Generate(region_, kIndex);
  }

  // Generates a snapshot of `region` at (kTerm, index) in the source dir
  // and makes msg_ the MsgSnapshot carrying it.
  void Generate(const metapb::Region& region, uint64_t index) {
    auto view = src_kv_->NewSnapshot();
    auto snap = GenerateSnapshot(src_dir_.get(), *view, region, index, kTerm);
    ASSERT_TRUE(snap.ok()) << snap.status();
    msg_.Clear();
    msg_.set_region_id(region.id());
    msg_.mutable_from_peer()->set_id(1);
    msg_.mutable_from_peer()->set_store_id(1);
    msg_.mutable_to_peer()->set_id(2);
    msg_.mutable_to_peer()->set_store_id(2);
    auto* m = msg_.mutable_message();
    m->set_msg_type(raftpb::MsgSnapshot);
    m->set_from(1);
    m->set_to(2);
    m->set_term(kTerm);
    *m->mutable_snapshot() = *snap;
  }

  // Every chunk of a stream of msg_ in chunks of `chunk_size`.
  std::vector<SnapshotChunk> Chunks(size_t chunk_size) {
    SnapshotSender sender(src_dir_.get(), msg_, chunk_size);
    std::vector<SnapshotChunk> out;
    for (;;) {
      SnapshotChunk c;
      auto more = sender.Next(&c);
      EXPECT_TRUE(more.ok()) << more.status();
      if (!more.ok() || !*more) break;
      if (!out.empty()) {
        EXPECT_FALSE(c.has_message());
        EXPECT_LE(c.data().size(), chunk_size);
        EXPECT_FALSE(c.data().empty());
      }
      out.push_back(std::move(c));
      if (out.size() > 1'000'000) break;
    }
    return out;
  }

  // Every file of the destination dir, ".tmp" ones included.
  std::vector<std::string> RawDstFiles() {
    std::vector<std::string> children;
    (void)env_->env()->GetChildren("/dst/snap", &children);
    std::vector<std::string> out;
    for (std::string& c : children) {
      if (c != "." && c != "..") out.push_back(std::move(c));
    }
    return out;
  }

  raft_serverpb::RaftSnapshotData Data() {
    auto d = ParseSnapshotData(msg_.message().snapshot());
    EXPECT_TRUE(d.ok());
    return d.value_or(raft_serverpb::RaftSnapshotData());
  }

  std::shared_ptr<storage::InMemoryEnv> env_ =
      std::make_shared<storage::InMemoryEnv>();
  std::unique_ptr<storage::Engine> src_kv_, dst_kv_;
  std::unique_ptr<storage::SnapDir> src_dir_, dst_dir_;
  metapb::Region region_;
  RaftMessage msg_;
};

TEST_F(SnapTest, GeneratedSnapshotDescribesTheRegionAndItsFiles) {
  const raftpb::Snapshot& snap = msg_.message().snapshot();
  EXPECT_EQ(snap.metadata().index(), kIndex);
  EXPECT_EQ(snap.metadata().term(), kTerm);
  ASSERT_EQ(snap.metadata().conf_state().voters_size(), 3);
  raft_serverpb::RaftSnapshotData data = Data();
  EXPECT_EQ(data.region().start_key(), "b");
  EXPECT_EQ(data.region().end_key(), "x");
  // default, lock and dedup hold keys; write is empty and has no file.
  std::map<std::string, uint64_t> keys;
  for (const auto& f : data.meta().cf_files()) {
    keys[f.cf()] = f.key_count();
    std::string name =
        SnapFileName(SnapPrefix(false, 1, kTerm, kIndex), f.cf());
    EXPECT_TRUE(src_dir_->Verify(name, f.size(), f.checksum()).ok()) << name;
  }
  EXPECT_EQ(keys, (std::map<std::string, uint64_t>{
                      {"default", 200}, {"lock", 1}, {kDedupCf, 2}}));
}

// The message a receiver hands over: the sent one, its snapshot data
// stamped with the receive tag of the stream (sender peer, message term,
// stream id).
RaftMessage WithReceiveTag(RaftMessage m, const std::string& tag) {
  raft_serverpb::RaftSnapshotData data;
  EXPECT_TRUE(data.ParseFromString(m.message().snapshot().data()));
  data.set_receive_tag(tag);
  m.mutable_message()->mutable_snapshot()->set_data(data.SerializeAsString());
  return m;
}

TEST_F(SnapTest, RoundTripWithOddChunkSizesAndApply) {
  const std::string tag =
      absl::StrCat(msg_.from_peer().id(), "-", msg_.message().term(), "-0");
  const std::string prefix = SnapPrefix(true, 1, kTerm, kIndex, tag);
  for (size_t chunk_size : {size_t{1}, size_t{7}, size_t{333}, size_t{512},
                            size_t{4096}, size_t{1} << 20}) {
    SCOPED_TRACE("chunk size " + std::to_string(chunk_size));
    std::vector<SnapshotChunk> chunks = Chunks(chunk_size);
    ASSERT_GE(chunks.size(), 2u);
    ASSERT_TRUE(chunks.front().has_message());
    uint64_t bytes = 0;
    for (const SnapshotChunk& c : chunks) bytes += c.data().size();
    EXPECT_EQ(bytes, Data().file_size());
    std::optional<RaftMessage> got;
    {
      SnapshotReceiver receiver(dst_dir_.get());
      for (size_t i = 0; i < chunks.size(); ++i) {
        auto r = receiver.Add(chunks[i]);
        ASSERT_TRUE(r.ok()) << "chunk " << i << ": " << r.status();
        // Only the last chunk completes the snapshot.
        ASSERT_EQ(r->has_value(), i + 1 == chunks.size()) << "chunk " << i;
        if (r->has_value()) got = **r;
      }
      // Nothing more is taken once it is complete.
      EXPECT_EQ(receiver.Add(chunks.back()).status().code(),
                absl::StatusCode::kInvalidArgument);
    }
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->SerializeAsString(),
              WithReceiveTag(msg_, tag).SerializeAsString());
    // The receiver kept the verified files of a complete stream.
    std::vector<std::string> want_files;
    const raft_serverpb::RaftSnapshotData data = Data();
    for (const auto& f : data.meta().cf_files()) {
      std::string name = SnapFileName(prefix, f.cf());
      want_files.push_back(name);
      EXPECT_TRUE(dst_dir_->Verify(name, f.size(), f.checksum()).ok()) << name;
    }
    std::sort(want_files.begin(), want_files.end());
    EXPECT_EQ(RawDstFiles(), want_files);
    DeleteSnapshotFiles(dst_dir_.get(), true, 1, got->message().snapshot());
    EXPECT_EQ(RawDstFiles(), std::vector<std::string>{});
  }
}

TEST_F(SnapTest, ApplyReplacesTheRegionsContentOnly) {
  // The destination has stale data inside the region and data outside it.
  storage::WriteBatch wb;
  wb.Put(storage::DataKey(storage::kCfDefault, "key0"), "stale");
  wb.Put(storage::DataKey(storage::kCfDefault, "stale-only-here"), "stale");
  wb.Put(storage::DataKey(storage::kCfWrite, "old-write"), "stale");
  wb.Put(storage::DedupKey(1, 5), storage::EncodeU64(100));
  wb.Put(storage::DataKey(storage::kCfDefault, "a-mine"), "keep");
  wb.Put(storage::DedupKey(2, 5), storage::EncodeU64(100));
  ASSERT_TRUE(dst_kv_->Write(wb, true).ok());
  {
    SnapshotReceiver receiver(dst_dir_.get());
    std::optional<RaftMessage> got;
    for (SnapshotChunk& c : Chunks(512)) {
      auto r = receiver.Add(std::move(c));
      ASSERT_TRUE(r.ok()) << r.status();
      if (r->has_value()) got = **r;
    }
    ASSERT_TRUE(got.has_value());
  }
  int files = Data().meta().cf_files_size();
  ASSERT_TRUE(ApplySnapshotFiles(dst_kv_.get(), dst_dir_.get(), region_, kTerm,
                                 kIndex, files)
                  .ok());
  EXPECT_EQ(RegionContent(*dst_kv_, region_), RegionContent(*src_kv_, region_));
  EXPECT_EQ(RegionContent(*dst_kv_, region_).size(), 203u);
  // Outside the region nothing changed.
  EXPECT_EQ(
      dst_kv_->Get(storage::DataKey(storage::kCfDefault, "a-mine"))->value(),
      "keep");
  EXPECT_FALSE(dst_kv_->Get(storage::DataKey(storage::kCfDefault, "a-outside"))
                   ->has_value());
  EXPECT_TRUE(dst_kv_->Get(storage::DedupKey(2, 5))->has_value());
  EXPECT_FALSE(dst_kv_->Get(storage::DedupKey(2, 77))->has_value());
  // Applying again (a restart finishing the apply) gives the same result.
  ASSERT_TRUE(ApplySnapshotFiles(dst_kv_.get(), dst_dir_.get(), region_, kTerm,
                                 kIndex, -1)
                  .ok());
  EXPECT_EQ(RegionContent(*dst_kv_, region_), RegionContent(*src_kv_, region_));
  // A missing file is refused.
  EXPECT_EQ(ApplySnapshotFiles(dst_kv_.get(), dst_dir_.get(), region_, kTerm,
                               kIndex, files + 1)
                .code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SnapTest, StreamWithoutHeadIsRefused) {
  std::vector<SnapshotChunk> chunks = Chunks(512);
  {
    SnapshotReceiver receiver(dst_dir_.get());
    EXPECT_EQ(receiver.Add(chunks[1]).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  {
    // A head that is not a MsgSnapshot.
    SnapshotChunk head = chunks[0];
    head.mutable_message()->mutable_message()->set_msg_type(raftpb::MsgAppend);
    SnapshotReceiver receiver(dst_dir_.get());
    EXPECT_EQ(receiver.Add(head).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  {
    // A head whose file sizes do not add up.
    raft_serverpb::RaftSnapshotData data = Data();
    data.set_file_size(data.file_size() + 1);
    SnapshotChunk head = chunks[0];
    head.mutable_message()->mutable_message()->mutable_snapshot()->set_data(
        data.SerializeAsString());
    SnapshotReceiver receiver(dst_dir_.get());
    EXPECT_EQ(receiver.Add(head).status().code(),
              absl::StatusCode::kInvalidArgument);
    // The sender refuses it too.
    RaftMessage bad = msg_;
    *bad.mutable_message()->mutable_snapshot() =
        head.message().message().snapshot();
    SnapshotSender sender(src_dir_.get(), bad, 512);
    SnapshotChunk c;
    EXPECT_EQ(sender.Next(&c).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(RawDstFiles(), std::vector<std::string>{});
}

TEST_F(SnapTest, BytesPastTheEndAreRefused) {
  std::vector<SnapshotChunk> chunks = Chunks(512);
  chunks.back().mutable_data()->append("x");
  {
    SnapshotReceiver receiver(dst_dir_.get());
    for (size_t i = 0; i + 1 < chunks.size(); ++i) {
      auto r = receiver.Add(chunks[i]);
      ASSERT_TRUE(r.ok() && !r->has_value()) << "chunk " << i;
    }
    EXPECT_EQ(receiver.Add(chunks.back()).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(RawDstFiles(), std::vector<std::string>{});
  // A whole extra chunk after the last one.
  chunks.back().mutable_data()->pop_back();
  SnapshotChunk extra;
  extra.set_data("more");
  chunks.push_back(extra);
  {
    SnapshotReceiver receiver(dst_dir_.get());
    for (size_t i = 0; i + 1 < chunks.size(); ++i) {
      ASSERT_TRUE(receiver.Add(chunks[i]).ok());
    }
    EXPECT_EQ(receiver.Add(chunks.back()).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST_F(SnapTest, ChecksumMismatchIsDataLossAndLeavesNoFile) {
  std::vector<SnapshotChunk> chunks = Chunks(512);
  // Corrupt a byte in the last file (so earlier files were complete).
  ASSERT_GE(Data().meta().cf_files_size(), 2);
  SnapshotChunk& victim = chunks[chunks.size() - 1];
  (*victim.mutable_data())[0] ^= 0x01;
  absl::Status failed;
  {
    SnapshotReceiver receiver(dst_dir_.get());
    for (size_t i = 0; i < chunks.size(); ++i) {
      auto r = receiver.Add(chunks[i]);
      if (!r.ok()) {
        failed = r.status();
        EXPECT_EQ(i + 1, chunks.size());
        break;
      }
      EXPECT_FALSE(r->has_value());
    }
    EXPECT_EQ(failed.code(), absl::StatusCode::kDataLoss) << failed;
  }
  EXPECT_EQ(RawDstFiles(), std::vector<std::string>{});
  // A head whose checksum is wrong, with intact data.
  chunks = Chunks(512);
  raft_serverpb::RaftSnapshotData data = Data();
  auto* f = data.mutable_meta()->mutable_cf_files(0);
  f->set_checksum(f->checksum() ^ 1);
  chunks[0].mutable_message()->mutable_message()->mutable_snapshot()->set_data(
      data.SerializeAsString());
  {
    SnapshotReceiver receiver(dst_dir_.get());
    absl::Status s;
    for (SnapshotChunk& c : chunks) {
      auto r = receiver.Add(std::move(c));
      if (!r.ok()) {
        s = r.status();
        break;
      }
    }
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  }
  EXPECT_EQ(RawDstFiles(), std::vector<std::string>{});
}

TEST_F(SnapTest, ReceiverDroppedMidStreamLeavesNoFile) {
  std::vector<SnapshotChunk> chunks = Chunks(512);
  // Feed the first file whole and part of the second.
  uint64_t first_size = Data().meta().cf_files(0).size();
  {
    SnapshotReceiver receiver(dst_dir_.get());
    uint64_t fed = 0;
    size_t i = 0;
    for (; i < chunks.size() && fed <= first_size; ++i) {
      fed += chunks[i].data().size();
      auto r = receiver.Add(chunks[i]);
      ASSERT_TRUE(r.ok() && !r->has_value());
    }
    ASSERT_LT(i, chunks.size());
    // At least one finished file, and one being written.
    int tmp = 0, finished = 0;
    for (const std::string& f : RawDstFiles()) {
      bool is_tmp = f.size() > 4 && f.compare(f.size() - 4, 4, ".tmp") == 0;
      (is_tmp ? tmp : finished)++;
    }
    EXPECT_EQ(tmp, 1);
    EXPECT_GE(finished, 1);
  }
  EXPECT_EQ(RawDstFiles(), std::vector<std::string>{});
  // Dropped right after the head.
  {
    SnapshotReceiver receiver(dst_dir_.get());
    ASSERT_TRUE(receiver.Add(chunks[0]).ok());
  }
  EXPECT_EQ(RawDstFiles(), std::vector<std::string>{});
}

TEST_F(SnapTest, EmptySnapshotCompletesWithTheHeadAlone) {
  metapb::Region empty = region_;
  empty.set_id(9);  // no exactly-once entries
  empty.set_start_key("q0");
  empty.set_end_key("q1");  // no data
  Generate(empty, 12);
  EXPECT_EQ(Data().meta().cf_files_size(), 0);
  EXPECT_EQ(Data().file_size(), 0u);
  SnapshotSender sender(src_dir_.get(), msg_, 512);
  SnapshotChunk head, next;
  ASSERT_TRUE(*sender.Next(&head));
  auto more = sender.Next(&next);
  ASSERT_TRUE(more.ok());
  EXPECT_FALSE(*more);
  SnapshotReceiver receiver(dst_dir_.get());
  auto r = receiver.Add(head);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->SerializeAsString(),
            WithReceiveTag(msg_, absl::StrCat(msg_.from_peer().id(), "-",
                                              msg_.message().term(), "-0"))
                .SerializeAsString());
  // Applying it clears the range.
  storage::WriteBatch wb;
  wb.Put(storage::DataKey(storage::kCfDefault, "q0-stale"), "x");
  ASSERT_TRUE(dst_kv_->Write(wb, true).ok());
  ASSERT_TRUE(
      ApplySnapshotFiles(dst_kv_.get(), dst_dir_.get(), empty, kTerm, 12, 0)
          .ok());
  EXPECT_FALSE(dst_kv_->Get(storage::DataKey(storage::kCfDefault, "q0-stale"))
                   ->has_value());
}

TEST_F(SnapTest, SenderReportsAFileThatIsGone) {
  SnapshotSender sender(src_dir_.get(), msg_, 512);
  SnapshotChunk c;
  ASSERT_TRUE(*sender.Next(&c));  // the head
  DeleteSnapshotFiles(src_dir_.get(), false, 1, msg_.message().snapshot());
  EXPECT_EQ(sender.Next(&c).status().code(), absl::StatusCode::kNotFound);
}

// Deleting the files of the snapshot at index 5 leaves those at index 50
// (whose names start with the same characters).
TEST_F(SnapTest, DeleteSnapshotFilesTakesOnlyItsOwn) {
  raftpb::Snapshot at50 = msg_.message().snapshot();
  Generate(region_, 5);
  auto before = src_dir_->List("gen_1_6_50_");
  ASSERT_TRUE(before.ok());
  ASSERT_FALSE(before->empty());
  DeleteSnapshotFiles(src_dir_.get(), false, 1, msg_.message().snapshot());
  EXPECT_TRUE(src_dir_->List("gen_1_6_5_")->empty());
  EXPECT_EQ(*src_dir_->List("gen_1_6_50_"), *before);
  DeleteSnapshotFiles(src_dir_.get(), false, 1, at50);
  EXPECT_TRUE(src_dir_->List("gen_")->empty());
}

// --- PeerStorage recovery
// -----------------------------------------------------

class RecoveryTest : public testing::Test {
 protected:
  void SetUp() override {
    raft_ = *storage::Engine::Open({"/r/raft", env_});
    kv_ = *storage::Engine::Open({"/r/kv", env_});
    region_ = InitialRegion(3);
    ASSERT_TRUE(WriteInitialStates(raft_.get(), kv_.get(), region_).ok());
  }

  void SetApply(uint64_t applied, uint64_t truncated, uint64_t truncated_term) {
    raft_serverpb::RaftApplyState as;
    as.set_applied_index(applied);
    as.mutable_truncated_state()->set_index(truncated);
    as.mutable_truncated_state()->set_term(truncated_term);
    storage::WriteBatch wb;
    wb.PutProto(storage::ApplyStateKey(1), as);
    ASSERT_TRUE(kv_->Write(wb, true).ok());
  }

  void SetRaft(uint64_t term, uint64_t vote, uint64_t commit, uint64_t last,
               uint64_t last_term) {
    raft_serverpb::RaftLocalState rs;
    rs.mutable_hard_state()->set_term(term);
    rs.mutable_hard_state()->set_vote(vote);
    rs.mutable_hard_state()->set_commit(commit);
    rs.set_last_index(last);
    rs.set_last_term(last_term);
    storage::WriteBatch wb;
    wb.PutProto(storage::RaftStateKey(1), rs);
    // Entries of the old log.
    for (uint64_t i = kRaftInitLogIndex + 1; i <= last; ++i) {
      raftpb::Entry e;
      e.set_index(i);
      e.set_term(last_term);
      wb.PutProto(storage::RaftLogKey(1, i), e);
    }
    ASSERT_TRUE(raft_->Write(wb, true).ok());
  }

  absl::StatusOr<std::unique_ptr<PeerStorage>> Create() {
    return PeerStorage::Create(raft_.get(), kv_.get(), region_, "[test]");
  }

  std::shared_ptr<storage::InMemoryEnv> env_ =
      std::make_shared<storage::InMemoryEnv>();
  std::unique_ptr<storage::Engine> raft_, kv_;
  metapb::Region region_;
};

// A crash after a snapshot's kv writes, before its raft write: the raft
// state still describes the old log, behind the applied snapshot.
TEST_F(RecoveryTest, RaftStateBehindTheSnapshotMovesUp) {
  SetRaft(/*term=*/5, /*vote=*/2, /*commit=*/8, /*last=*/9, /*last_term=*/5);
  SetApply(/*applied=*/20, /*truncated=*/20, /*truncated_term=*/7);
  auto ps = Create();
  ASSERT_TRUE(ps.ok()) << ps.status();
  const raft_serverpb::RaftLocalState& rs = (*ps)->raft_state();
  EXPECT_EQ(rs.last_index(), 20u);
  EXPECT_EQ(rs.last_term(), 7u);
  EXPECT_EQ(rs.hard_state().commit(), 20u);
  EXPECT_EQ(rs.hard_state().term(), 7u);
  EXPECT_EQ(rs.hard_state().vote(), 0u);  // a vote of an older term
  EXPECT_EQ(*(*ps)->FirstIndex(), 21u);
  EXPECT_EQ(*(*ps)->LastIndex(), 20u);
  EXPECT_EQ(*(*ps)->Term(20), 7u);
  EXPECT_TRUE(
      raft::IsError((*ps)->Term(9).status(), raft::ErrorKind::kCompacted));
  EXPECT_TRUE(raft::IsError((*ps)->Entries(9, 10, UINT64_MAX).status(),
                            raft::ErrorKind::kCompacted));
  auto none = (*ps)->Entries(21, 21, UINT64_MAX);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  auto init = (*ps)->InitialState();
  ASSERT_TRUE(init.ok());
  EXPECT_EQ(init->hard_state.commit(), 20u);
  EXPECT_EQ(init->hard_state.term(), 7u);
}

// The hard state's term is already past the snapshot's: it and the vote
// stay; commit and the last index still move up.
TEST_F(RecoveryTest, NewerTermAndVoteAreKept) {
  SetRaft(/*term=*/9, /*vote=*/3, /*commit=*/8, /*last=*/9, /*last_term=*/5);
  SetApply(20, 20, 7);
  auto ps = Create();
  ASSERT_TRUE(ps.ok()) << ps.status();
  const raft_serverpb::RaftLocalState& rs = (*ps)->raft_state();
  EXPECT_EQ(rs.hard_state().term(), 9u);
  EXPECT_EQ(rs.hard_state().vote(), 3u);
  EXPECT_EQ(rs.hard_state().commit(), 20u);
  EXPECT_EQ(rs.last_index(), 20u);
  EXPECT_EQ(rs.last_term(), 7u);
}

// A raft state ahead of the truncated index is left alone.
TEST_F(RecoveryTest, RaftStateAheadIsUnchanged) {
  SetRaft(/*term=*/7, /*vote=*/1, /*commit=*/24, /*last=*/25,
          /*last_term=*/7);
  SetApply(/*applied=*/22, /*truncated=*/12, /*truncated_term=*/7);
  auto ps = Create();
  ASSERT_TRUE(ps.ok()) << ps.status();
  const raft_serverpb::RaftLocalState& rs = (*ps)->raft_state();
  EXPECT_EQ(rs.last_index(), 25u);
  EXPECT_EQ(rs.hard_state().commit(), 24u);
  EXPECT_EQ(rs.hard_state().vote(), 1u);
  EXPECT_EQ(*(*ps)->FirstIndex(), 13u);
  auto ents = (*ps)->Entries(13, 26, UINT64_MAX);
  ASSERT_TRUE(ents.ok()) << ents.status();
  EXPECT_EQ(ents->size(), 13u);
}

// Applied past what the raft state says is committed, beyond the snapshot:
// no crash order produces it.
TEST_F(RecoveryTest, AppliedPastCommitIsDataLoss) {
  SetRaft(/*term=*/7, /*vote=*/0, /*commit=*/25, /*last=*/25,
          /*last_term=*/7);
  SetApply(/*applied=*/30, /*truncated=*/20, /*truncated_term=*/7);
  EXPECT_EQ(Create().status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace raftkv::raftstore
