// Basic vocabulary shared by every module of the raft core.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "raftpb/raft.pb.h"

namespace raftkv::raft {

// The id that means "no node": no vote, no known leader.
inline constexpr uint64_t kNone = 0;

// An unlimited size, for the size limits of Config.
inline constexpr uint64_t kNoLimit = std::numeric_limits<uint64_t>::max();

// The role of a node, as in the Raft paper.
enum class StateType { kFollower, kCandidate, kLeader, kPreCandidate };

// Returns "Follower", "Candidate", "Leader" or "PreCandidate".
const char* StateTypeName(StateType state);

// The volatile state a node reports to the application in Ready when it
// changes: who leads, and in which role this node is.
struct SoftState {
  uint64_t lead = kNone;
  StateType raft_state = StateType::kFollower;

  friend bool operator==(const SoftState&, const SoftState&) = default;
};

// The answer to a read-index request: once the state machine has applied
// `index`, a read of it observes every write committed before the request
// was made. `request_ctx` is the context the application gave ReadIndex.
struct ReadState {
  uint64_t index = 0;
  std::string request_ctx;

  friend bool operator==(const ReadState&, const ReadState&) = default;
};

// How the leader confirms it still leads before answering a read index.
enum class ReadOnlyOption {
  // A heartbeat round acknowledged by a quorum (always safe).
  kSafe,
  // The leader lease: a leader that heard from a quorum within the election
  // timeout answers at once. Needs check_quorum, and relies on bounded clock
  // drift between nodes.
  kLeaseBased,
};

// True when every field of `hs` is zero (Ready uses this for "unchanged").
bool IsEmptyHardState(const raftpb::HardState& hs);

// True when the two hard states are field-by-field equal.
bool HardStateEqual(const raftpb::HardState& a, const raftpb::HardState& b);

// True when `snap` carries no snapshot (its index is zero).
bool IsEmptySnap(const raftpb::Snapshot& snap);

// The payload size of an entry as counted against the byte limits of Config
// (MaxSizePerMsg, MaxCommittedSizePerReady): its data plus a fixed overhead.
uint64_t EntrySize(const raftpb::Entry& e);

// Total EntrySize of entries [begin, end).
template <typename It>
uint64_t EntriesSize(It begin, It end) {
  uint64_t n = 0;
  for (; begin != end; ++begin) n += EntrySize(*begin);
  return n;
}

// Returns true for messages that never leave the node (Hup, Beat, Propose,
// SnapStatus, Unreachable).
bool IsLocalMsg(raftpb::MessageType t);

// Returns true for responses (AppendResponse, RequestVoteResponse,
// HeartbeatResponse, PreVoteResponse, ReadIndexResponse).
bool IsResponseMsg(raftpb::MessageType t);

// A short human-readable rendering of a message for logs and test failures:
// type, from, to, term, log term, index, commit, reject and entries.
std::string DescribeMessage(const raftpb::Message& m);

// A short rendering of an entry: "index/term type [size]".
std::string DescribeEntry(const raftpb::Entry& e);

}  // namespace raftkv::raft
