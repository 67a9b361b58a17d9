// Unstable: the part of the log not yet persisted by the application. It
// holds an optional incoming snapshot and the entries after it (or after the
// stable log); entry i is entries[i - offset].
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "raft/logger.h"
#include "raft/types.h"

namespace raftkv::raft {

class Unstable {
 public:
  // `offset` is the index the first unstable entry will have.
  explicit Unstable(uint64_t offset) : offset_(offset) {}

  // If there is an unstable snapshot, the index after it.
  std::optional<uint64_t> MaybeFirstIndex() const;
  // The last index held here, if any entry or snapshot is held.
  std::optional<uint64_t> MaybeLastIndex() const;
  // The term of entry `i`, if this part of the log knows it.
  std::optional<uint64_t> MaybeTerm(uint64_t i) const;

  // Marks entries up to (index i, term t) as persisted and drops them. Does
  // nothing if entry i is not here or its term is not t (it was replaced
  // after the Ready that carried it was handed out).
  void StableTo(uint64_t i, uint64_t t);
  // Marks the snapshot at index i as persisted and drops it.
  void StableSnapTo(uint64_t i);
  // Replaces everything with `snap`; following entries start after it.
  void Restore(raftpb::Snapshot snap);
  // Appends `ents`, truncating any entries at or after ents[0].index().
  // Precondition: ents[0].index() >= offset() is not required: entries
  // before the offset rewind it (the stable log is then overwritten by the
  // application on persist). `ents` must be non-empty and contiguous.
  void TruncateAndAppend(std::vector<raftpb::Entry>&& ents);

  // Entries [lo, hi). Precondition: offset() <= lo <= hi <= last + 1.
  std::vector<raftpb::Entry> Slice(uint64_t lo, uint64_t hi) const;

  uint64_t offset() const { return offset_; }
  const std::vector<raftpb::Entry>& entries() const { return entries_; }
  const std::optional<raftpb::Snapshot>& snapshot() const { return snapshot_; }

 private:
  std::optional<raftpb::Snapshot> snapshot_;
  std::vector<raftpb::Entry> entries_;
  uint64_t offset_;
};

}  // namespace raftkv::raft
