#include "raft/log_unstable.h"

#include <cstdio>
#include <cstdlib>

namespace raftkv::raft {

std::optional<uint64_t> Unstable::MaybeFirstIndex() const {
  if (snapshot_) return snapshot_->metadata().index() + 1;
  return std::nullopt;
}

std::optional<uint64_t> Unstable::MaybeLastIndex() const {
  if (!entries_.empty()) return offset_ + entries_.size() - 1;
  if (snapshot_) return snapshot_->metadata().index();
  return std::nullopt;
}

std::optional<uint64_t> Unstable::MaybeTerm(uint64_t i) const {
  if (i < offset_) {
    if (snapshot_ && snapshot_->metadata().index() == i) {
      return snapshot_->metadata().term();
    }
    return std::nullopt;
  }
  if (i - offset_ >= entries_.size()) return std::nullopt;
  return entries_[i - offset_].term();
}

void Unstable::StableTo(uint64_t i, uint64_t t) {
  std::optional<uint64_t> gt = MaybeTerm(i);
  if (!gt || i < offset_) return;
  // An entry replaced since the Ready that carried (i, t) must stay.
  if (*gt != t) return;
  entries_.erase(entries_.begin(),
                 entries_.begin() + static_cast<ptrdiff_t>(i + 1 - offset_));
  offset_ = i + 1;
}

void Unstable::StableSnapTo(uint64_t i) {
  if (snapshot_ && snapshot_->metadata().index() == i) snapshot_.reset();
}

void Unstable::Restore(raftpb::Snapshot snap) {
  offset_ = snap.metadata().index() + 1;
  entries_.clear();
  snapshot_ = std::move(snap);
}

void Unstable::TruncateAndAppend(std::vector<raftpb::Entry>&& ents) {
  uint64_t after = ents.front().index();
  if (after == offset_ + entries_.size()) {
    // The common case: a direct continuation.
  } else if (after <= offset_) {
    // Replaces everything unstable, and rewinds into the stable log.
    offset_ = after;
    entries_.clear();
  } else if (after > offset_ + entries_.size()) {
    std::fprintf(stderr, "Unstable: gap appending at %lu after %lu\n",
                 static_cast<unsigned long>(after),
                 static_cast<unsigned long>(offset_ + entries_.size()));
    std::abort();
  } else {
    // Keep [offset, after), drop the rest.
    entries_.resize(after - offset_);
  }
  if (entries_.empty()) {
    entries_ = std::move(ents);
  } else {
    entries_.insert(entries_.end(), std::make_move_iterator(ents.begin()),
                    std::make_move_iterator(ents.end()));
  }
}

std::vector<raftpb::Entry> Unstable::Slice(uint64_t lo, uint64_t hi) const {
  if (lo > hi || lo < offset_ || hi - offset_ > entries_.size()) {
    std::fprintf(stderr, "Unstable::Slice: invalid [%lu, %lu) offset %lu\n",
                 static_cast<unsigned long>(lo), static_cast<unsigned long>(hi),
                 static_cast<unsigned long>(offset_));
    std::abort();
  }
  return std::vector<raftpb::Entry>(entries_.begin() + (lo - offset_),
                                    entries_.begin() + (hi - offset_));
}

}  // namespace raftkv::raft
