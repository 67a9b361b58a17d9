#include "raft/quorum/majority.h"

#include <algorithm>
#include <functional>
#include <limits>

namespace raftkv::raft {

uint64_t MajorityCommittedIndex(std::vector<uint64_t> acked) {
  if (acked.empty()) return std::numeric_limits<uint64_t>::max();
  // The (n/2+1)-th largest value is acknowledged by a majority.
  size_t q = acked.size() / 2;
  std::nth_element(acked.begin(), acked.begin() + q, acked.end(),
                   std::greater<uint64_t>());
  return acked[q];
}

VoteResult MajorityVoteResult(const std::vector<uint64_t>& voters,
                              const std::map<uint64_t, bool>& votes) {
  if (voters.empty()) return VoteResult::kWon;
  size_t granted = 0, missing = 0;
  for (uint64_t id : voters) {
    auto it = votes.find(id);
    if (it == votes.end()) {
      ++missing;
    } else if (it->second) {
      ++granted;
    }
  }
  size_t q = voters.size() / 2 + 1;
  if (granted >= q) return VoteResult::kWon;
  if (granted + missing >= q) return VoteResult::kPending;
  return VoteResult::kLost;
}

}  // namespace raftkv::raft
