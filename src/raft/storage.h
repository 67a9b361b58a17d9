// Storage: the raft core's read-only view of the durable log, and
// MemoryStorage, an in-memory implementation for tests and benchmarks.
//
// The core only reads Storage. The application writes to it: it persists the
// entries, hard state and snapshot handed out in a Ready (see raw_node.h) and
// then calls Advance. Every index the core asks about lies in
// [FirstIndex() - 1, LastIndex()]; the term of FirstIndex() - 1 (the index of
// the last compacted entry, or of the snapshot) stays known for log matching
// even though its entry is gone.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "raft/types.h"

namespace raftkv::raft {

// What a node recovers at start: its persisted hard state and the membership
// of its last snapshot.
struct RaftState {
  raftpb::HardState hard_state;
  raftpb::ConfState conf_state;
};

class Storage {
 public:
  virtual ~Storage() = default;

  // Returns the saved hard state and the membership to start from.
  virtual absl::StatusOr<RaftState> InitialState() = 0;

  // Returns the entries in [lo, hi), stopping early once their total
  // EntrySize exceeds `max_size`, but always returning at least one entry
  // when lo < hi. Preconditions: FirstIndex() <= lo <= hi <= LastIndex() + 1
  // (checked loosely). Errors: kCompacted if lo < FirstIndex();
  // kUnavailable if hi > LastIndex() + 1.
  virtual absl::StatusOr<std::vector<raftpb::Entry>> Entries(
      uint64_t lo, uint64_t hi, uint64_t max_size) = 0;

  // Returns the term of entry `i`, for i in [FirstIndex() - 1, LastIndex()].
  // Errors: kCompacted below FirstIndex() - 1; kUnavailable past LastIndex().
  virtual absl::StatusOr<uint64_t> Term(uint64_t i) = 0;

  // Returns the index of the first entry still available (the one after the
  // snapshot or the last compacted entry).
  virtual absl::StatusOr<uint64_t> FirstIndex() = 0;

  // Returns the index of the last entry in the log.
  virtual absl::StatusOr<uint64_t> LastIndex() = 0;

  // Returns the most recent snapshot. Errors: kSnapshotTemporarilyUnavailable
  // while a snapshot is being produced; the core then retries later.
  virtual absl::StatusOr<raftpb::Snapshot> Snapshot() = 0;
};

// An in-memory Storage. Like a real storage it keeps a dummy entry at the
// front whose index and term are those of the last compacted entry (or the
// snapshot). Not thread-safe: use it from the thread that drives the node.
class MemoryStorage final : public Storage {
 public:
  // An empty storage: the dummy entry is (index 0, term 0).
  MemoryStorage();

  absl::StatusOr<RaftState> InitialState() override;
  absl::StatusOr<std::vector<raftpb::Entry>> Entries(
      uint64_t lo, uint64_t hi, uint64_t max_size) override;
  absl::StatusOr<uint64_t> Term(uint64_t i) override;
  absl::StatusOr<uint64_t> FirstIndex() override;
  absl::StatusOr<uint64_t> LastIndex() override;
  absl::StatusOr<raftpb::Snapshot> Snapshot() override;

  // Saves the hard state returned by later InitialState() calls.
  void SetHardState(const raftpb::HardState& hs);

  // Replaces the whole content with `snap`: the log becomes empty, its dummy
  // entry (snap index, snap term). Errors: kSnapshotOutOfDate if `snap` is
  // not newer than the current snapshot (nothing changes).
  absl::Status ApplySnapshot(raftpb::Snapshot snap);

  // Records a snapshot at applied index `i` with the given membership and
  // state-machine data, and returns it. Does not compact the log (call
  // Compact). Errors: kSnapshotOutOfDate if i <= the current snapshot index.
  // Precondition: i <= LastIndex() (aborts otherwise).
  absl::StatusOr<raftpb::Snapshot> CreateSnapshot(uint64_t i,
                                                  const raftpb::ConfState* cs,
                                                  std::string data);

  // Discards every entry before `compact_index`; entry `compact_index` becomes
  // the dummy entry. Errors: kCompacted if compact_index <= the current dummy
  // index. Precondition: compact_index <= LastIndex() (aborts otherwise).
  absl::Status Compact(uint64_t compact_index);

  // Appends `entries`, which must be contiguous. Entries below FirstIndex()
  // are skipped; an entry at an index already present replaces it and every
  // entry after it (a conflicting tail is truncated). Precondition: the first
  // new entry is at most LastIndex() + 1 (aborts otherwise, a gap is a bug).
  absl::Status Append(std::vector<raftpb::Entry> entries);

 private:
  uint64_t first_index() const { return ents_.front().index() + 1; }
  uint64_t last_index() const {
    return ents_.front().index() + ents_.size() - 1;
  }

  raftpb::HardState hard_state_;
  raftpb::Snapshot snapshot_;
  // ents_[i] has index ents_[0].index() + i; ents_[0] is the dummy entry.
  std::vector<raftpb::Entry> ents_;
};

}  // namespace raftkv::raft
