#include "raft/tracker/tracker.h"

namespace raftkv::raft {

raftpb::ConfState ProgressTracker::GetConfState() const {
  raftpb::ConfState cs;
  for (const auto& [id, pr] : progress_) {
    if (pr.is_learner) {
      cs.add_learners(id);
    } else {
      cs.add_voters(id);
    }
  }
  return cs;
}

std::vector<uint64_t> ProgressTracker::Voters() const {
  std::vector<uint64_t> ids;
  for (const auto& [id, pr] : progress_) {
    if (!pr.is_learner) ids.push_back(id);
  }
  return ids;
}

std::vector<uint64_t> ProgressTracker::Learners() const {
  std::vector<uint64_t> ids;
  for (const auto& [id, pr] : progress_) {
    if (pr.is_learner) ids.push_back(id);
  }
  return ids;
}

bool ProgressTracker::IsVoter(uint64_t id) const {
  auto it = progress_.find(id);
  return it != progress_.end() && !it->second.is_learner;
}

bool ProgressTracker::IsSingleton() const {
  int voters = 0;
  for (const auto& [id, pr] : progress_) voters += pr.is_learner ? 0 : 1;
  return voters == 1;
}

Progress* ProgressTracker::Get(uint64_t id) {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

const Progress* ProgressTracker::Get(uint64_t id) const {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

uint64_t ProgressTracker::Committed() const {
  std::vector<uint64_t> acked;
  acked.reserve(progress_.size());
  for (const auto& [id, pr] : progress_) {
    if (!pr.is_learner) acked.push_back(pr.match);
  }
  return MajorityCommittedIndex(std::move(acked));
}

bool ProgressTracker::QuorumActive(uint64_t self) const {
  std::vector<uint64_t> voters;
  std::map<uint64_t, bool> active;
  for (const auto& [id, pr] : progress_) {
    if (pr.is_learner) continue;
    voters.push_back(id);
    active[id] = id == self || pr.recent_active;
  }
  return MajorityVoteResult(voters, active) == VoteResult::kWon;
}

void ProgressTracker::RecordVote(uint64_t id, bool granted) {
  votes_.emplace(id, granted);
}

VoteResult ProgressTracker::TallyVotes(int* granted, int* rejected) const {
  *granted = 0;
  *rejected = 0;
  std::vector<uint64_t> voters;
  for (const auto& [id, pr] : progress_) {
    if (pr.is_learner) continue;
    voters.push_back(id);
    auto it = votes_.find(id);
    if (it == votes_.end()) continue;
    if (it->second) {
      ++*granted;
    } else {
      ++*rejected;
    }
  }
  return MajorityVoteResult(voters, votes_);
}

}  // namespace raftkv::raft
