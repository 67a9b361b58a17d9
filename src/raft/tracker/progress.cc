#include "raft/tracker/progress.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace raftkv::raft {

const char* ProgressStateName(ProgressState s) {
  switch (s) {
    case ProgressState::kProbe:
      return "Probe";
    case ProgressState::kReplicate:
      return "Replicate";
    case ProgressState::kSnapshot:
      return "Snapshot";
  }
  return "Unknown";
}

void Progress::BecomeProbe() {
  if (state == ProgressState::kSnapshot) {
    // The follower may have installed the snapshot: resume after it.
    uint64_t from = std::max(match, pending_snapshot);
    state = ProgressState::kProbe;
    next = from + 1;
  } else {
    state = ProgressState::kProbe;
    next = match + 1;
  }
  pending_snapshot = 0;
  probe_sent = false;
  inflights.Reset();
}

void Progress::BecomeReplicate() {
  state = ProgressState::kReplicate;
  next = match + 1;
  pending_snapshot = 0;
  probe_sent = false;
  inflights.Reset();
}

void Progress::BecomeSnapshot(uint64_t snapshot_index) {
  state = ProgressState::kSnapshot;
  pending_snapshot = snapshot_index;
  probe_sent = false;
  inflights.Reset();
}

bool Progress::MaybeUpdate(uint64_t n) {
  bool updated = false;
  if (match < n) {
    match = n;
    updated = true;
    probe_sent = false;
  }
  next = std::max(next, n + 1);
  return updated;
}

bool Progress::MaybeDecrTo(uint64_t rejected, uint64_t match_hint) {
  if (state == ProgressState::kReplicate) {
    // A rejection of an index at or below match is stale: that append was
    // overtaken by a later successful one.
    if (rejected <= match) return false;
    next = match + 1;
    return true;
  }
  // Probe (or Snapshot): only the answer to the append last sent, which was
  // for index next - 1, counts.
  if (next - 1 != rejected) return false;
  next = std::max(std::min(rejected, match_hint + 1), match + 1);
  probe_sent = false;
  return true;
}

bool Progress::IsPaused() const {
  switch (state) {
    case ProgressState::kProbe:
      return probe_sent;
    case ProgressState::kReplicate:
      return inflights.Full();
    case ProgressState::kSnapshot:
      return true;
  }
  return true;
}

std::string Progress::ToString() const {
  return absl::StrFormat(
      "%s match=%d next=%d%s%s", ProgressStateName(state), match, next,
      is_learner ? " learner" : "",
      state == ProgressState::kSnapshot
          ? absl::StrFormat(" pending_snap=%d", pending_snapshot)
          : "");
}

}  // namespace raftkv::raft
