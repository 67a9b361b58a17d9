#include "raft/raft_log.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "raft/errors.h"

namespace raftkv::raft {

RaftLog::RaftLog(Storage* storage, Logger* logger, uint64_t max_next_ents_size)
    : storage_(storage),
      logger_(logger),
      unstable_(0),
      max_next_ents_size_(max_next_ents_size) {
  absl::StatusOr<uint64_t> first = storage_->FirstIndex();
  absl::StatusOr<uint64_t> last = storage_->LastIndex();
  if (!first.ok() || !last.ok()) {
    Fatal(
        absl::StrCat("cannot read storage bounds: ",
                     (first.ok() ? last.status() : first.status()).ToString()));
  }
  unstable_ = Unstable(*last + 1);
  committed_ = *first - 1;
  applied_ = *first - 1;
}

void RaftLog::Fatal(const std::string& what) const {
  if (logger_->Enabled(LogLevel::kError)) {
    logger_->Log(LogLevel::kError, absl::StrCat("raft log: ", what));
  }
  std::fprintf(stderr, "raft log fatal: %s\n", what.c_str());
  std::abort();
}

uint64_t RaftLog::first_index() const {
  if (auto i = unstable_.MaybeFirstIndex()) return *i;
  absl::StatusOr<uint64_t> i = storage_->FirstIndex();
  if (!i.ok()) Fatal(i.status().ToString());
  return *i;
}

uint64_t RaftLog::last_index() const {
  if (auto i = unstable_.MaybeLastIndex()) return *i;
  absl::StatusOr<uint64_t> i = storage_->LastIndex();
  if (!i.ok()) Fatal(i.status().ToString());
  return *i;
}

uint64_t RaftLog::LastTerm() const {
  absl::StatusOr<uint64_t> t = Term(last_index());
  if (!t.ok())
    Fatal(absl::StrCat("unexpected error getting the last term: ",
                       t.status().ToString()));
  return *t;
}

absl::StatusOr<uint64_t> RaftLog::Term(uint64_t i) const {
  // Fast path: the unstable tail (where the leader's hot entries are).
  if (auto t = unstable_.MaybeTerm(i)) return *t;
  uint64_t dummy = first_index() - 1;
  if (i < dummy) return MakeError(ErrorKind::kCompacted);
  if (i > last_index()) return uint64_t{0};
  absl::StatusOr<uint64_t> t = storage_->Term(i);
  if (t.ok()) return t;
  if (IsError(t.status(), ErrorKind::kCompacted) ||
      IsError(t.status(), ErrorKind::kUnavailable)) {
    return t;
  }
  Fatal(t.status().ToString());
}

uint64_t RaftLog::ZeroTermOnErr(uint64_t i) const {
  absl::StatusOr<uint64_t> t = Term(i);
  return t.ok() ? *t : 0;
}

bool RaftLog::MatchTerm(uint64_t i, uint64_t t) const {
  absl::StatusOr<uint64_t> term = Term(i);
  return term.ok() && *term == t;
}

std::optional<uint64_t> RaftLog::MaybeAppend(
    uint64_t index, uint64_t log_term, uint64_t committed,
    std::vector<raftpb::Entry>&& ents) {
  if (!MatchTerm(index, log_term)) return std::nullopt;
  uint64_t last_new = index + ents.size();
  uint64_t ci = FindConflict(ents);
  if (ci != 0) {
    if (ci <= committed_) {
      Fatal(absl::StrCat("entry ", ci, " conflicts with committed entry [",
                         committed_, "]"));
    }
    uint64_t skip = ci - (index + 1);
    if (skip == 0) {
      Append(std::move(ents));
    } else {
      std::vector<raftpb::Entry> rest(
          std::make_move_iterator(ents.begin() + static_cast<ptrdiff_t>(skip)),
          std::make_move_iterator(ents.end()));
      Append(std::move(rest));
    }
  }
  CommitTo(std::min(committed, last_new));
  return last_new;
}

uint64_t RaftLog::Append(std::vector<raftpb::Entry>&& ents) {
  if (ents.empty()) return last_index();
  uint64_t after = ents.front().index() - 1;
  if (after < committed_) {
    Fatal(absl::StrCat("after(", after, ") is out of range [committed(",
                       committed_, ")]"));
  }
  unstable_.TruncateAndAppend(std::move(ents));
  return last_index();
}

uint64_t RaftLog::FindConflict(const std::vector<raftpb::Entry>& ents) const {
  for (const raftpb::Entry& e : ents) {
    if (!MatchTerm(e.index(), e.term())) {
      if (e.index() <= last_index() && logger_->Enabled(LogLevel::kInfo)) {
        logger_->Log(LogLevel::kInfo,
                     absl::StrCat("found conflict at index ", e.index(),
                                  " [existing term: ", ZeroTermOnErr(e.index()),
                                  ", conflicting term: ", e.term(), "]"));
      }
      return e.index();
    }
  }
  return 0;
}

std::pair<uint64_t, uint64_t> RaftLog::FindConflictByTerm(uint64_t index,
                                                          uint64_t term) const {
  for (; index > 0; --index) {
    absl::StatusOr<uint64_t> our = Term(index);
    // An unknown term (compacted or past the end) cannot be compared: stop
    // there with term 0, which the caller treats as "no information".
    if (!our.ok()) return {index, 0};
    if (*our <= term) return {index, *our};
  }
  return {0, 0};
}

absl::StatusOr<std::vector<raftpb::Entry>> RaftLog::Entries(
    uint64_t i, uint64_t max_size) const {
  if (i > last_index()) return std::vector<raftpb::Entry>{};
  return Slice(i, last_index() + 1, max_size);
}

std::vector<raftpb::Entry> RaftLog::AllEntries() const {
  absl::StatusOr<std::vector<raftpb::Entry>> ents =
      Entries(first_index(), kNoLimit);
  if (ents.ok()) return *std::move(ents);
  // A concurrent compaction cannot happen in this single-threaded core.
  Fatal(ents.status().ToString());
}

absl::StatusOr<std::vector<raftpb::Entry>> RaftLog::Slice(
    uint64_t lo, uint64_t hi, uint64_t max_size) const {
  if (lo > hi) Fatal(absl::StrCat("invalid slice ", lo, " > ", hi));
  uint64_t fi = first_index();
  if (lo < fi) return MakeError(ErrorKind::kCompacted);
  if (hi > last_index() + 1) {
    Fatal(absl::StrCat("slice[", lo, ",", hi, ") out of bound [", fi, ",",
                       last_index(), "]"));
  }
  std::vector<raftpb::Entry> out;
  if (lo == hi) return out;
  uint64_t off = unstable_.offset();
  if (lo < off) {
    absl::StatusOr<std::vector<raftpb::Entry>> stored =
        storage_->Entries(lo, std::min(hi, off), max_size);
    if (!stored.ok()) {
      if (IsError(stored.status(), ErrorKind::kCompacted)) {
        return stored.status();
      }
      Fatal(absl::StrCat("storage entries [", lo, ",", std::min(hi, off),
                         "): ", stored.status().ToString()));
    }
    out = *std::move(stored);
    // The storage stopped early because of the size limit.
    if (out.size() < std::min(hi, off) - lo) return out;
  }
  if (hi > off) {
    uint64_t from = std::max(lo, off);
    uint64_t size = EntriesSize(out.begin(), out.end());
    const std::vector<raftpb::Entry>& u = unstable_.entries();
    for (uint64_t i = from; i < hi; ++i) {
      const raftpb::Entry& e = u[i - off];
      size += EntrySize(e);
      if (!out.empty() && size > max_size) break;
      out.push_back(e);
    }
  }
  return out;
}

std::vector<raftpb::Entry> RaftLog::NextCommittedEntries() const {
  uint64_t off = std::max(applied_ + 1, first_index());
  if (committed_ + 1 <= off) return {};
  absl::StatusOr<std::vector<raftpb::Entry>> ents =
      Slice(off, committed_ + 1, max_next_ents_size_);
  if (!ents.ok()) {
    Fatal(absl::StrCat("unexpected error getting unapplied entries: ",
                       ents.status().ToString()));
  }
  return *std::move(ents);
}

bool RaftLog::HasNextCommittedEntries() const {
  uint64_t off = std::max(applied_ + 1, first_index());
  return committed_ + 1 > off;
}

absl::StatusOr<raftpb::Snapshot> RaftLog::Snapshot() const {
  if (unstable_.snapshot()) return *unstable_.snapshot();
  return storage_->Snapshot();
}

bool RaftLog::IsUpToDate(uint64_t lasti, uint64_t term) const {
  uint64_t our = LastTerm();
  return term > our || (term == our && lasti >= last_index());
}

bool RaftLog::MaybeCommit(uint64_t max_index, uint64_t term) {
  if (max_index > committed_ && ZeroTermOnErr(max_index) == term) {
    CommitTo(max_index);
    return true;
  }
  return false;
}

void RaftLog::CommitTo(uint64_t to) {
  if (committed_ >= to) return;
  if (last_index() < to) {
    Fatal(absl::StrCat("to-commit(", to, ") is out of range [last index(",
                       last_index(),
                       ")]. Was the raft log corrupted, "
                       "truncated, or lost?"));
  }
  committed_ = to;
}

void RaftLog::AppliedTo(uint64_t i) {
  if (i == 0) return;
  if (committed_ < i || i < applied_) {
    Fatal(absl::StrCat("applied(", i, ") is out of range [prev applied(",
                       applied_, "), committed(", committed_, ")]"));
  }
  applied_ = i;
}

void RaftLog::Restore(raftpb::Snapshot snap) {
  if (logger_->Enabled(LogLevel::kInfo)) {
    logger_->Log(LogLevel::kInfo,
                 absl::StrCat("log starts to restore snapshot [index: ",
                              snap.metadata().index(),
                              ", term: ", snap.metadata().term(), "]"));
  }
  committed_ = snap.metadata().index();
  unstable_.Restore(std::move(snap));
}

}  // namespace raftkv::raft
