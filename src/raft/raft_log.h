// RaftLog: one node's view of the replicated log, the stable entries in
// Storage followed by the Unstable tail that the application has not yet
// persisted.
//
//   first_index()          stabled()            last_index()
//       |---- in Storage ------|---- unstable -------|
//   applied() <= committed() <= last_index(); applied() >= first_index() - 1.
//
// Compaction is the storage's business: once the application compacts its
// Storage (after a snapshot), FirstIndex moves up and entries below it are
// answered with kCompacted; the leader then sends a snapshot instead. The
// log never keeps a second in-memory copy of stable entries.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "raft/log_unstable.h"
#include "raft/logger.h"
#include "raft/storage.h"
#include "raft/types.h"

namespace raftkv::raft {

class RaftLog {
 public:
  // A log over `storage` (not owned; must outlive the log). committed and
  // applied start at the storage's FirstIndex() - 1. `max_next_ents_size`
  // bounds the bytes of committed entries returned by NextCommittedEntries
  // (at least one entry is always returned). Aborts if storage fails.
  RaftLog(Storage* storage, Logger* logger, uint64_t max_next_ents_size);

  uint64_t committed() const { return committed_; }
  uint64_t applied() const { return applied_; }
  // The last index persisted by the application.
  uint64_t stabled() const { return unstable_.offset() - 1; }
  uint64_t first_index() const;
  uint64_t last_index() const;
  uint64_t LastTerm() const;
  Storage* storage() const { return storage_; }
  const Unstable& unstable() const { return unstable_; }

  // The term of entry i. Returns 0 (no error) for an index outside
  // [first_index() - 1, last_index()] that is past the end; kCompacted below
  // the start. Aborts on other storage errors.
  absl::StatusOr<uint64_t> Term(uint64_t i) const;
  // Term(i), with 0 for any index whose term is unknown.
  uint64_t ZeroTermOnErr(uint64_t i) const;
  // True when entry i exists with term t.
  bool MatchTerm(uint64_t i, uint64_t t) const;

  // The follower side of MsgAppend: if entry `index` has term `log_term`,
  // appends `ents` (dropping a conflicting tail, keeping matching entries),
  // advances committed to min(committed, index + len(ents)) and returns the
  // last index of the new entries. Returns nullopt if the terms do not match.
  // Aborts if a conflict lies at or below committed (a safety violation).
  std::optional<uint64_t> MaybeAppend(uint64_t index, uint64_t log_term,
                                      uint64_t committed,
                                      std::vector<raftpb::Entry>&& ents);

  // Appends `ents` (leader side), truncating any unstable entries at or after
  // their first index. Returns the new last index. Aborts if ents would
  // overwrite a committed entry.
  uint64_t Append(std::vector<raftpb::Entry>&& ents);

  // The index of the first entry of `ents` whose index exists here with a
  // different term, or the first new index if all present ones match, or 0
  // if every entry is already present with the same term.
  uint64_t FindConflict(const std::vector<raftpb::Entry>& ents) const;

  // Fast backtracking for a rejected append (etcd's findConflictByTerm).
  // Returns the largest index j <= index whose term is <= term, with its
  // term. Used by the follower to give a hint and by the leader to jump past
  // a whole conflicting term.
  std::pair<uint64_t, uint64_t> FindConflictByTerm(uint64_t index,
                                                   uint64_t term) const;

  // Entries [i, last_index()], at most max_size bytes but at least one.
  // Errors: kCompacted if i < first_index().
  absl::StatusOr<std::vector<raftpb::Entry>> Entries(uint64_t i,
                                                     uint64_t max_size) const;
  // Every entry from first_index() to last_index() (for tests and dumps).
  // Aborts on a storage error.
  std::vector<raftpb::Entry> AllEntries() const;
  // Entries [lo, hi), at most max_size bytes but at least one when lo < hi.
  // Errors: kCompacted if lo < first_index(). Precondition: hi <=
  // last_index() + 1 (aborts otherwise).
  absl::StatusOr<std::vector<raftpb::Entry>> Slice(uint64_t lo, uint64_t hi,
                                                   uint64_t max_size) const;

  // The entries not yet persisted (what Ready::entries carries).
  const std::vector<raftpb::Entry>& UnstableEntries() const {
    return unstable_.entries();
  }
  // The committed entries not yet applied, up to max_next_ents_size bytes.
  std::vector<raftpb::Entry> NextCommittedEntries() const;
  // True when NextCommittedEntries would return something.
  bool HasNextCommittedEntries() const;
  // An unstable snapshot waiting to be persisted, if any.
  const std::optional<raftpb::Snapshot>& UnstableSnapshot() const {
    return unstable_.snapshot();
  }
  // The latest snapshot: the unstable one if present, else the storage's.
  // Errors: whatever Storage::Snapshot returns (e.g. temporarily
  // unavailable).
  absl::StatusOr<raftpb::Snapshot> Snapshot() const;

  // True when a log ending at (lasti, term) is at least as up-to-date as this
  // one (Raft paper §5.4.1): a higher last term, or the same with an index at
  // least as large.
  bool IsUpToDate(uint64_t lasti, uint64_t term) const;

  // Advances committed to max_index if entry max_index has term `term`.
  // Returns true if committed moved.
  bool MaybeCommit(uint64_t max_index, uint64_t term);
  // Sets committed to `to` if larger. Aborts if `to` > last_index().
  void CommitTo(uint64_t to);
  // Records that entries up to `i` were applied. Aborts if i is outside
  // [applied, committed].
  void AppliedTo(uint64_t i);
  // The application persisted entries up to (i, t).
  void StableTo(uint64_t i, uint64_t t) { unstable_.StableTo(i, t); }
  // The application persisted the snapshot at index i.
  void StableSnapTo(uint64_t i) { unstable_.StableSnapTo(i); }
  // Replaces the log with `snap` (follower installing a snapshot): committed
  // moves to the snapshot index.
  void Restore(raftpb::Snapshot snap);

 private:
  [[noreturn]] void Fatal(const std::string& what) const;

  Storage* storage_;
  Logger* logger_;
  Unstable unstable_;
  uint64_t committed_ = 0;
  uint64_t applied_ = 0;
  uint64_t max_next_ents_size_;
};

}  // namespace raftkv::raft
