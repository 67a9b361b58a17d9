// ProgressTracker: the membership of the group (voters and learners), the
// leader's Progress for every member, and the votes of an election.
// Iteration is always in ascending node id, so that a node's output is a
// deterministic function of its input.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "raft/quorum/majority.h"
#include "raft/tracker/progress.h"
#include "raft/types.h"

namespace raftkv::raft {

class ProgressTracker {
 public:
  using ProgressMap = std::map<uint64_t, Progress>;

  // The membership as a ConfState (voters and learners in ascending order).
  raftpb::ConfState GetConfState() const;
  // Voter ids, ascending.
  std::vector<uint64_t> Voters() const;
  // Learner ids, ascending.
  std::vector<uint64_t> Learners() const;
  bool IsVoter(uint64_t id) const;
  bool IsMember(uint64_t id) const { return progress_.count(id) != 0; }
  // True when the group has exactly one voter.
  bool IsSingleton() const;

  // Adds (or replaces) a member with the given progress.
  void SetProgress(uint64_t id, Progress pr) { progress_[id] = pr; }
  // Removes a member (no-op if absent).
  void RemoveProgress(uint64_t id) { progress_.erase(id); }
  // Removes every member.
  void Clear() { progress_.clear(); }

  // The member's progress, or null if `id` is not a member.
  Progress* Get(uint64_t id);
  const Progress* Get(uint64_t id) const;
  ProgressMap& progress() { return progress_; }
  const ProgressMap& progress() const { return progress_; }

  // The largest index replicated on a majority of voters.
  uint64_t Committed() const;
  // True when a majority of voters (counting `self`) were recently active.
  bool QuorumActive(uint64_t self) const;

  // Forgets every vote.
  void ResetVotes() { votes_.clear(); }
  // Records the vote of `id` (the first one per id counts).
  void RecordVote(uint64_t id, bool granted);
  // Counts grants and rejections from voters, and the election result.
  VoteResult TallyVotes(int* granted, int* rejected) const;
  const std::map<uint64_t, bool>& votes() const { return votes_; }

 private:
  ProgressMap progress_;
  std::map<uint64_t, bool> votes_;
};

}  // namespace raftkv::raft
