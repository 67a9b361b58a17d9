#include "raft/read_only.h"

namespace raftkv::raft {

uint64_t ReadOnly::AddRequest(uint64_t index, raftpb::Message req,
                              bool join_open_round, bool* opened) {
  *opened = false;
  if (!join_open_round || rounds_.empty()) {
    rounds_.push_back(Round{next_round_++, {}});
    *opened = true;
  }
  uint64_t round = rounds_.back().id;
  queue_.push_back(ReadIndexStatus{std::move(req), index, round});
  return round;
}

const std::set<uint64_t>* ReadOnly::RecvAck(uint64_t id, uint64_t round) {
  const std::set<uint64_t>* found = nullptr;
  // An acknowledgement of round r also vouches for every earlier round: the
  // follower answered r's heartbeat after the earlier ones were sent.
  for (Round& r : rounds_) {
    if (r.id > round) break;
    r.acks.insert(id);
    if (r.id == round) found = &r.acks;
  }
  return found;
}

std::vector<ReadIndexStatus> ReadOnly::Advance(uint64_t round) {
  std::vector<ReadIndexStatus> out;
  while (!queue_.empty() && queue_.front().round <= round) {
    out.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  while (!rounds_.empty() && rounds_.front().id <= round) rounds_.pop_front();
  return out;
}

uint64_t ReadOnly::LastPendingRound() const {
  return rounds_.empty() ? 0 : rounds_.back().id;
}

void ReadOnly::Reset() {
  rounds_.clear();
  queue_.clear();
}

std::string ReadOnly::EncodeRound(uint64_t round) {
  std::string s(8, '\0');
  for (int i = 7; i >= 0; --i) {
    s[i] = static_cast<char>(round & 0xff);
    round >>= 8;
  }
  return s;
}

uint64_t ReadOnly::DecodeRound(const std::string& ctx) {
  if (ctx.size() != 8) return 0;
  uint64_t round = 0;
  for (char c : ctx) round = (round << 8) | static_cast<unsigned char>(c);
  return round;
}

}  // namespace raftkv::raft
