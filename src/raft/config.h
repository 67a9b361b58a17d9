// Config: everything a raft node is started with.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "raft/logger.h"
#include "raft/storage.h"
#include "raft/types.h"

namespace raftkv::raft {

struct Config {
  // This node's id. Must not be kNone.
  uint64_t id = kNone;

  // A follower that hears nothing from a leader for a randomized timeout in
  // [election_tick, 2 * election_tick) ticks starts an election. Must be
  // greater than heartbeat_tick.
  int election_tick = 10;
  // A leader sends heartbeats every heartbeat_tick ticks. Must be > 0.
  int heartbeat_tick = 1;

  // The node's log and persisted state. Not owned; must outlive the node.
  Storage* storage = nullptr;

  // The last applied index, for a restart. Committed entries after it are
  // handed out again. 0 means "the storage's snapshot index".
  uint64_t applied = 0;

  // The members of a brand-new group (voters). Only used when the storage
  // has no membership yet; giving both is an error.
  std::vector<uint64_t> peers;
  // Learners of a brand-new group, under the same rule as peers.
  std::vector<uint64_t> learners;

  // The largest total EntrySize of the entries in one append message. At
  // least one entry is always sent. kNoLimit means no limit.
  uint64_t max_size_per_msg = 1 << 20;
  // The largest total EntrySize of committed entries in one Ready. At least
  // one entry is handed out. kNoLimit means no limit.
  uint64_t max_committed_size_per_ready = kNoLimit;

  // The most append messages in flight to one follower in Replicate state
  // (pipelining depth). Must be > 0.
  uint64_t max_inflight_msgs = 256;
  // The most entry bytes (EntrySize) in flight to one follower. kNoLimit
  // means only max_inflight_msgs bounds the window.
  uint64_t max_inflight_bytes = kNoLimit;
  // The most bytes of entry payload the leader holds uncommitted; past it
  // proposals are refused with kProposalDropped (one proposal is always
  // accepted when nothing is uncommitted). kNoLimit means no cap.
  uint64_t max_uncommitted_entries_size = kNoLimit;

  // PreVote (Raft thesis §9.6): before an election a node asks whether it
  // could win; it increments its term only if a quorum says yes, so a node
  // that was partitioned does not disrupt the group when it returns.
  bool pre_vote = false;
  // CheckQuorum: a leader that has not heard from a quorum within an
  // election timeout steps down; a node that heard from a leader within the
  // election timeout ignores vote requests (unless forced by a leader
  // transfer).
  bool check_quorum = false;
  // How read-index requests confirm leadership. kLeaseBased requires
  // check_quorum.
  ReadOnlyOption read_only_option = ReadOnlyOption::kSafe;
  // Proposal forwarding (etcd/raft's default, TinyKV's refusal otherwise):
  // a follower that knows the leader sends a proposal on to it as a
  // MsgPropose and reports success; whether the entry is ever appended is
  // learnt only from the log (the leader drops what it cannot take, with no
  // answer). Off: proposals on a node that does not lead fail with
  // kProposalDropped, and MsgPropose never crosses the network (RawNode::Step
  // refuses it as a local message). Every member of a group should agree.
  bool forward_proposals = false;
  // Commit notification (raft-rs's skip_bcast_commit, which TiKV uses). Off
  // (etcd/raft's behaviour): when an append response advances the leader's
  // commit index, the leader sends every follower an append at once, empty if
  // need be, to carry the new index. On: it does not; followers learn the
  // index from the next append or heartbeat, so with a steady stream of
  // proposals each commit index rides on the next entries instead of a
  // message of its own (about a quarter fewer context switches per write
  // with one client, in raftkv). The price: when proposals stop, followers
  // apply the last entries up to a heartbeat interval later. To keep
  // follower reads prompt, a follower reports its commit index in every
  // MsgHeartbeatResponse and the leader answers one that is behind with an
  // append carrying the index, so a read-index round never waits for the
  // next heartbeat. While a configuration change is pending the leader
  // broadcasts as usual, so that it is applied everywhere promptly.
  bool skip_bcast_commit = false;

  // Seeds the generator behind the randomized election timeout. 0 means
  // "derive from id", so a group's behaviour is a function of its config.
  uint64_t seed = 0;

  // Where log lines go; null means nowhere. Not owned; must outlive the node.
  Logger* logger = nullptr;

  // Returns OK, or InvalidArgument naming the first offending field.
  absl::Status Validate() const;
};

}  // namespace raftkv::raft
