#include "raft/storage.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "raft/errors.h"

namespace raftkv::raft {
namespace {

[[noreturn]] void StoragePanic(const std::string& what) {
  std::fprintf(stderr, "MemoryStorage: %s\n", what.c_str());
  std::abort();
}

}  // namespace

MemoryStorage::MemoryStorage() { ents_.emplace_back(); }

absl::StatusOr<RaftState> MemoryStorage::InitialState() {
  return RaftState{hard_state_, snapshot_.metadata().conf_state()};
}

void MemoryStorage::SetHardState(const raftpb::HardState& hs) {
  hard_state_ = hs;
}

absl::StatusOr<std::vector<raftpb::Entry>> MemoryStorage::Entries(
    uint64_t lo, uint64_t hi, uint64_t max_size) {
  uint64_t offset = ents_.front().index();
  if (lo <= offset) return MakeError(ErrorKind::kCompacted);
  if (hi > last_index() + 1) {
    return MakeError(
        ErrorKind::kUnavailable,
        absl::StrCat("hi ", hi, " is out of bound last index ", last_index()));
  }
  std::vector<raftpb::Entry> out;
  if (lo >= hi) return out;
  uint64_t size = 0;
  for (uint64_t i = lo; i < hi; ++i) {
    const raftpb::Entry& e = ents_[i - offset];
    size += EntrySize(e);
    if (!out.empty() && size > max_size) break;
    out.push_back(e);
  }
  return out;
}

absl::StatusOr<uint64_t> MemoryStorage::Term(uint64_t i) {
  uint64_t offset = ents_.front().index();
  if (i < offset) return MakeError(ErrorKind::kCompacted);
  if (i - offset >= ents_.size()) return MakeError(ErrorKind::kUnavailable);
  return ents_[i - offset].term();
}

absl::StatusOr<uint64_t> MemoryStorage::FirstIndex() { return first_index(); }

absl::StatusOr<uint64_t> MemoryStorage::LastIndex() { return last_index(); }

absl::StatusOr<raftpb::Snapshot> MemoryStorage::Snapshot() { return snapshot_; }

absl::Status MemoryStorage::ApplySnapshot(raftpb::Snapshot snap) {
  if (snapshot_.metadata().index() >= snap.metadata().index()) {
    return MakeError(ErrorKind::kSnapshotOutOfDate);
  }
  raftpb::Entry dummy;
  dummy.set_index(snap.metadata().index());
  dummy.set_term(snap.metadata().term());
  ents_.clear();
  ents_.push_back(std::move(dummy));
  snapshot_ = std::move(snap);
  return absl::OkStatus();
}

absl::StatusOr<raftpb::Snapshot> MemoryStorage::CreateSnapshot(
    uint64_t i, const raftpb::ConfState* cs, std::string data) {
  if (i <= snapshot_.metadata().index()) {
    return MakeError(ErrorKind::kSnapshotOutOfDate);
  }
  uint64_t offset = ents_.front().index();
  if (i > last_index()) {
    StoragePanic(absl::StrCat("snapshot ", i, " is out of bound last index ",
                              last_index()));
  }
  snapshot_.mutable_metadata()->set_index(i);
  snapshot_.mutable_metadata()->set_term(ents_[i - offset].term());
  if (cs != nullptr) *snapshot_.mutable_metadata()->mutable_conf_state() = *cs;
  snapshot_.set_data(std::move(data));
  return snapshot_;
}

absl::Status MemoryStorage::Compact(uint64_t compact_index) {
  uint64_t offset = ents_.front().index();
  if (compact_index <= offset) return MakeError(ErrorKind::kCompacted);
  if (compact_index > last_index()) {
    StoragePanic(absl::StrCat("compact ", compact_index,
                              " is out of bound last index ", last_index()));
  }
  uint64_t n = compact_index - offset;
  ents_.erase(ents_.begin(), ents_.begin() + static_cast<ptrdiff_t>(n));
  // The new dummy keeps only index and term.
  ents_.front().clear_data();
  ents_.front().set_entry_type(raftpb::EntryNormal);
  return absl::OkStatus();
}

absl::Status MemoryStorage::Append(std::vector<raftpb::Entry> entries) {
  if (entries.empty()) return absl::OkStatus();
  uint64_t first = first_index();
  uint64_t last = entries.back().index();
  if (last < first) return absl::OkStatus();  // all already compacted
  size_t skip = 0;
  if (entries.front().index() < first) skip = first - entries.front().index();
  uint64_t start = entries[skip].index();
  if (start > last_index() + 1) {
    StoragePanic(absl::StrCat("missing log entry [last: ", last_index(),
                              ", append at: ", start, "]"));
  }
  // Drop the tail from `start` on (a no-op when appending at the end).
  ents_.resize(start - ents_.front().index());
  for (size_t i = skip; i < entries.size(); ++i) {
    ents_.push_back(std::move(entries[i]));
  }
  return absl::OkStatus();
}

}  // namespace raftkv::raft
