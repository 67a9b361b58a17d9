#include "raft/types.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace raftkv::raft {

const char* StateTypeName(StateType state) {
  switch (state) {
    case StateType::kFollower:
      return "Follower";
    case StateType::kCandidate:
      return "Candidate";
    case StateType::kLeader:
      return "Leader";
    case StateType::kPreCandidate:
      return "PreCandidate";
  }
  return "Unknown";
}

bool IsEmptyHardState(const raftpb::HardState& hs) {
  return hs.term() == 0 && hs.vote() == 0 && hs.commit() == 0;
}

bool HardStateEqual(const raftpb::HardState& a, const raftpb::HardState& b) {
  return a.term() == b.term() && a.vote() == b.vote() &&
         a.commit() == b.commit();
}

bool IsEmptySnap(const raftpb::Snapshot& snap) {
  return snap.metadata().index() == 0;
}

uint64_t EntrySize(const raftpb::Entry& e) {
  // Data plus the three integer fields, as an approximation of the encoded
  // size that is cheap to compute.
  return e.data().size() + 24;
}

bool IsLocalMsg(raftpb::MessageType t) {
  return t == raftpb::MsgHup || t == raftpb::MsgBeat ||
         t == raftpb::MsgPropose || t == raftpb::MsgSnapStatus ||
         t == raftpb::MsgUnreachable;
}

bool IsResponseMsg(raftpb::MessageType t) {
  return t == raftpb::MsgAppendResponse ||
         t == raftpb::MsgRequestVoteResponse ||
         t == raftpb::MsgHeartbeatResponse || t == raftpb::MsgPreVoteResponse ||
         t == raftpb::MsgReadIndexResponse;
}

std::string DescribeEntry(const raftpb::Entry& e) {
  return absl::StrFormat(
      "%d/%d %s [%d]", e.index(), e.term(),
      e.entry_type() == raftpb::EntryConfChange ? "ConfChange" : "Normal",
      e.data().size());
}

std::string DescribeMessage(const raftpb::Message& m) {
  std::string s =
      absl::StrFormat("%s %d->%d term=%d log_term=%d index=%d commit=%d",
                      raftpb::MessageType_Name(m.msg_type()), m.from(), m.to(),
                      m.term(), m.log_term(), m.index(), m.commit());
  if (m.reject()) absl::StrAppend(&s, " rejected hint=", m.reject_hint());
  if (m.entries_size() > 0) {
    absl::StrAppend(&s, " entries=[");
    for (int i = 0; i < m.entries_size(); ++i) {
      if (i > 0) absl::StrAppend(&s, ", ");
      absl::StrAppend(&s, DescribeEntry(m.entries(i)));
    }
    absl::StrAppend(&s, "]");
  }
  if (m.has_snapshot() && !IsEmptySnap(m.snapshot())) {
    absl::StrAppend(&s, " snapshot=", m.snapshot().metadata().index(), "/",
                    m.snapshot().metadata().term());
  }
  return s;
}

}  // namespace raftkv::raft
