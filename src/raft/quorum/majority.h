// Majority quorum arithmetic, as pure functions over a voter set.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

namespace raftkv::raft {

enum class VoteResult { kPending, kLost, kWon };

// The largest index acknowledged by a majority of voters, given each voter's
// acknowledged index in `acked` (one entry per voter, any order). An empty
// voter set yields the maximum uint64 (it agrees to everything), so that a
// joint configuration with an empty half reduces to the other half.
uint64_t MajorityCommittedIndex(std::vector<uint64_t> acked);

// The outcome of an election among `voters` given the votes received so far
// (`votes[id]` is true for a grant, false for a rejection; voters missing
// from `votes` have not answered). Won once a majority granted, Lost once a
// majority can no longer be reached, Pending otherwise. An empty voter set
// wins.
VoteResult MajorityVoteResult(const std::vector<uint64_t>& voters,
                              const std::map<uint64_t, bool>& votes);

}  // namespace raftkv::raft
