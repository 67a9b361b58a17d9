#include "raft/config.h"

namespace raftkv::raft {

absl::Status Config::Validate() const {
  if (id == kNone) {
    return absl::InvalidArgumentError("cannot use none as id");
  }
  if (heartbeat_tick <= 0) {
    return absl::InvalidArgumentError("heartbeat tick must be greater than 0");
  }
  if (election_tick <= heartbeat_tick) {
    return absl::InvalidArgumentError(
        "election tick must be greater than heartbeat tick");
  }
  if (storage == nullptr) {
    return absl::InvalidArgumentError("storage cannot be null");
  }
  if (max_size_per_msg == 0 || max_committed_size_per_ready == 0 ||
      max_inflight_bytes == 0 || max_uncommitted_entries_size == 0) {
    return absl::InvalidArgumentError("size limits must be greater than 0");
  }
  if (max_inflight_msgs == 0) {
    return absl::InvalidArgumentError(
        "max inflight messages must be greater than 0");
  }
  if (read_only_option == ReadOnlyOption::kLeaseBased && !check_quorum) {
    return absl::InvalidArgumentError(
        "lease-based read-only requires check_quorum");
  }
  for (uint64_t p : peers) {
    if (p == kNone) return absl::InvalidArgumentError("peer id cannot be 0");
  }
  for (uint64_t l : learners) {
    if (l == kNone) return absl::InvalidArgumentError("learner id cannot be 0");
    for (uint64_t p : peers) {
      if (p == l) {
        return absl::InvalidArgumentError(
            "a node cannot be both a peer and a learner");
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace raftkv::raft
