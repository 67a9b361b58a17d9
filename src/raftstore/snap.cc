#include "raftstore/snap.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "storage/keys.h"

namespace raftkv::raftstore {

std::string SnapPrefix(bool received, uint64_t region_id, uint64_t term,
                       uint64_t index, const std::string& tag) {
  std::string p = absl::StrCat(received ? "rcv_" : "gen_", region_id, "_", term,
                               "_", index);
  if (received && !tag.empty()) absl::StrAppend(&p, "_", tag);
  return p;
}

std::string SnapFileName(const std::string& prefix, const std::string& cf) {
  return absl::StrCat(prefix, "_", cf, ".sst");
}

std::vector<storage::SnapRange> RegionSnapRanges(const metapb::Region& region) {
  std::vector<storage::SnapRange> ranges;
  for (std::string_view cf :
       {storage::kCfDefault, storage::kCfLock, storage::kCfWrite}) {
    ranges.push_back(storage::SnapRange{
        std::string(cf), storage::DataStartKey(cf, region.start_key()),
        storage::DataEndKey(cf, region.end_key())});
  }
  ranges.push_back(storage::SnapRange{kDedupCf,
                                      storage::DedupStartKey(region.id()),
                                      storage::DedupEndKey(region.id())});
  return ranges;
}

absl::StatusOr<raft_serverpb::RaftSnapshotData> ParseSnapshotData(
    const raftpb::Snapshot& snap) {
  raft_serverpb::RaftSnapshotData data;
  if (!data.ParseFromString(snap.data()) || !data.has_region()) {
    return absl::InvalidArgumentError("malformed snapshot data");
  }
  uint64_t total = 0;
  for (const auto& f : data.meta().cf_files()) total += f.size();
  if (total != data.file_size()) {
    return absl::InvalidArgumentError("snapshot file sizes do not add up");
  }
  return data;
}

absl::StatusOr<raftpb::Snapshot> GenerateSnapshot(
    storage::SnapDir* dir, const storage::Snapshot& kv_snap,
    const metapb::Region& region, uint64_t index, uint64_t term) {
  std::string prefix = SnapPrefix(false, region.id(), term, index);
  absl::StatusOr<std::vector<storage::SnapFileMeta>> files =
      dir->WriteSstFiles(kv_snap, RegionSnapRanges(region), prefix);
  if (!files.ok()) return files.status();
  raft_serverpb::RaftSnapshotData data;
  *data.mutable_region() = region;
  uint64_t total = 0;
  for (const storage::SnapFileMeta& f : *files) {
    auto* cf = data.mutable_meta()->add_cf_files();
    cf->set_cf(f.cf);
    cf->set_size(f.size);
    cf->set_checksum(f.crc32c);
    cf->set_key_count(f.key_count);
    total += f.size;
  }
  data.set_file_size(total);
  raftpb::Snapshot snap;
  snap.set_data(data.SerializeAsString());
  auto* md = snap.mutable_metadata();
  md->set_index(index);
  md->set_term(term);
  for (const metapb::Peer& p : region.peers()) {
    md->mutable_conf_state()->add_voters(p.id());
  }
  return snap;
}

absl::Status ApplySnapshotFiles(storage::Engine* kv, storage::SnapDir* dir,
                                const metapb::Region& region, uint64_t term,
                                uint64_t index, int expected_files,
                                const std::string& tag) {
  std::string prefix = SnapPrefix(true, region.id(), term, index, tag);
  absl::StatusOr<std::vector<std::string>> names = dir->List(prefix + "_");
  if (!names.ok()) return names.status();
  if (expected_files >= 0 &&
      names->size() != static_cast<size_t>(expected_files)) {
    return absl::NotFoundError(absl::StrCat("snapshot ", prefix, " has ",
                                            names->size(), " of ",
                                            expected_files, " files"));
  }
  // The received files must outlive the ingestion (a crash before the raft
  // part is persisted applies them again), so the engine gets second names
  // of them to move in: no data is copied. Where the file system cannot
  // link, the engine copies the files instead.
  std::vector<std::string> paths;
  bool linked = true;
  for (const std::string& n : *names) {
    std::string link = "ing_" + n;
    if (absl::Status s = dir->Delete(link); !s.ok()) return s;
    if (linked && !dir->Link(n, link).ok()) linked = false;
    paths.push_back(dir->PathOf(linked ? link : n));
  }
  if (!linked) {
    paths.clear();
    for (const std::string& n : *names) {
      (void)dir->Delete("ing_" + n);
      paths.push_back(dir->PathOf(n));
    }
  }
  storage::WriteBatch clear;
  for (const storage::SnapRange& r : RegionSnapRanges(region)) {
    clear.DeleteRange(r.lower, r.upper);
  }
  if (absl::Status s = kv->Write(clear, /*sync=*/true); !s.ok()) return s;
  if (paths.empty()) return absl::OkStatus();
  return kv->IngestFiles(paths, /*move=*/linked);
}

raft_serverpb::RaftMessage SnapStatusMessage(
    const raft_serverpb::RaftMessage& msg, bool reject) {
  raft_serverpb::RaftMessage status;
  status.set_region_id(msg.region_id());
  *status.mutable_from_peer() = msg.to_peer();
  *status.mutable_to_peer() = msg.from_peer();
  *status.mutable_region_epoch() = msg.region_epoch();
  raftpb::Message* m = status.mutable_message();
  m->set_msg_type(raftpb::MsgSnapStatus);
  m->set_from(msg.to_peer().id());
  m->set_to(msg.from_peer().id());
  m->set_reject(reject);
  return status;
}

void DeleteSnapshotFiles(storage::SnapDir* dir, bool received,
                         uint64_t region_id, const raftpb::Snapshot& snap) {
  std::string tag;
  if (received) {
    raft_serverpb::RaftSnapshotData data;
    if (data.ParseFromString(snap.data())) tag = data.receive_tag();
  }
  std::string prefix = SnapPrefix(received, region_id, snap.metadata().term(),
                                  snap.metadata().index(), tag);
  absl::StatusOr<std::vector<std::string>> names = dir->List(prefix + "_");
  if (!names.ok()) return;
  for (const std::string& n : *names) (void)dir->Delete(n);
}

SnapshotSender::SnapshotSender(storage::SnapDir* dir,
                               raft_serverpb::RaftMessage msg,
                               size_t chunk_size, uint64_t stream_id)
    : dir_(dir),
      msg_(std::move(msg)),
      chunk_size_(chunk_size),
      stream_id_(stream_id) {}

absl::StatusOr<bool> SnapshotSender::Next(raft_serverpb::SnapshotChunk* chunk) {
  chunk->Clear();
  if (!sent_head_) {
    absl::StatusOr<raft_serverpb::RaftSnapshotData> data =
        ParseSnapshotData(msg_.message().snapshot());
    if (!data.ok()) return data.status();
    data_ = *std::move(data);
    *chunk->mutable_message() = msg_;
    chunk->set_stream_id(stream_id_);
    sent_head_ = true;
    return true;
  }
  const auto& files = data_.meta().cf_files();
  while (file_ < files.size() && reader_ == nullptr) {
    if (files[file_].size() == 0) {
      ++file_;
      continue;
    }
    std::string prefix = SnapPrefix(
        false, msg_.region_id(), msg_.message().snapshot().metadata().term(),
        msg_.message().snapshot().metadata().index());
    absl::StatusOr<std::unique_ptr<storage::SnapFileReader>> r =
        dir_->OpenReader(SnapFileName(prefix, files[file_].cf()));
    if (!r.ok()) return r.status();
    reader_ = *std::move(r);
    left_ = files[file_].size();
  }
  if (file_ >= files.size()) return false;
  std::string* out = chunk->mutable_data();
  size_t want = left_ < chunk_size_ ? left_ : chunk_size_;
  if (absl::Status s = reader_->Read(want, out); !s.ok()) return s;
  if (out->empty()) {
    return absl::DataLossError("snapshot file is shorter than its meta says");
  }
  left_ -= out->size();
  if (left_ == 0) {
    reader_.reset();
    ++file_;
  }
  return true;
}

SnapshotReceiver::~SnapshotReceiver() {
  if (writer_ != nullptr) writer_->Abort();
  if (have_head_ && !complete_) {
    // Drop the files of the stream that were already complete.
    DeleteSnapshotFiles(dir_, true, msg_.region_id(),
                        msg_.message().snapshot());
  }
}

absl::Status SnapshotReceiver::OpenNext() {
  const auto& files = data_.meta().cf_files();
  while (file_ < files.size() && files[file_].size() == 0) ++file_;
  if (file_ >= files.size()) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<storage::SnapFileWriter>> w =
      dir_->NewWriter(SnapFileName(prefix_, files[file_].cf()));
  if (!w.ok()) return w.status();
  writer_ = *std::move(w);
  left_ = files[file_].size();
  return absl::OkStatus();
}

absl::StatusOr<std::optional<raft_serverpb::RaftMessage>> SnapshotReceiver::Add(
    raft_serverpb::SnapshotChunk chunk) {
  if (complete_) return absl::InvalidArgumentError("snapshot stream is over");
  if (!have_head_) {
    if (!chunk.has_message() ||
        chunk.message().message().msg_type() != raftpb::MsgSnapshot) {
      return absl::InvalidArgumentError(
          "snapshot stream does not start with a MsgSnapshot");
    }
    msg_ = std::move(*chunk.mutable_message());
    absl::StatusOr<raft_serverpb::RaftSnapshotData> data =
        ParseSnapshotData(msg_.message().snapshot());
    if (!data.ok()) return data.status();
    data_ = *std::move(data);
    have_head_ = true;
    tag_ = absl::StrCat(msg_.from_peer().id(), "-", msg_.message().term(), "-",
                        chunk.stream_id());
    data_.set_receive_tag(tag_);
    msg_.mutable_message()->mutable_snapshot()->set_data(
        data_.SerializeAsString());
    const auto& md = msg_.message().snapshot().metadata();
    prefix_ = SnapPrefix(true, msg_.region_id(), md.term(), md.index(), tag_);
    if (absl::Status s = OpenNext(); !s.ok()) return s;
  } else {
    std::string_view rest = chunk.data();
    while (!rest.empty()) {
      if (writer_ == nullptr) {
        return absl::InvalidArgumentError(
            "snapshot stream carries bytes past its last file");
      }
      size_t n = rest.size() < left_ ? rest.size() : left_;
      if (absl::Status s = writer_->Append(rest.substr(0, n)); !s.ok()) {
        return s;
      }
      rest.remove_prefix(n);
      left_ -= n;
      if (left_ == 0) {
        const auto& f = data_.meta().cf_files(file_);
        absl::Status s = writer_->Finish(f.size(), f.checksum());
        writer_.reset();
        if (!s.ok()) return s;
        ++file_;
        if (s = OpenNext(); !s.ok()) return s;
      }
    }
  }
  if (writer_ == nullptr && file_ >= data_.meta().cf_files_size()) {
    complete_ = true;
    return std::optional<raft_serverpb::RaftMessage>(msg_);
  }
  return std::optional<raft_serverpb::RaftMessage>();
}

}  // namespace raftkv::raftstore
