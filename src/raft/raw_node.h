// RawNode: the application's handle on a raft node, and Ready, the batch of
// work the node hands out.
//
// The application drives a RawNode from one thread in a loop:
//
//   1. Feed input: Tick() on a timer, Step() for every message received,
//      Propose()/Campaign() on request.
//   2. If HasReady(), take rd = GetReady() and handle it in this order:
//      a. Persist: if rd.snapshot is not empty, install it; append
//         rd.entries (an entry at index i replaces any persisted entry at or
//         after i); save rd.hard_state if it is not empty. All of this must
//         be durable (fsynced) before step b when rd.must_sync is set.
//      b. Send rd.messages. A leader may send while its own persist is still
//         in flight (thesis §10.2.1), but it must finish that persist before
//         it steps anything else or calls Advance: it already counts its own
//         new entries toward the commit quorum. Every other node's messages
//         (acknowledgements, votes) must not leave before its persist.
//      c. Apply rd.committed_entries to the state machine, in order. For an
//         EntryConfChange entry, apply the change to the node. Serve each of
//         rd.read_states once the applied index reaches its index.
//      d. Call Advance().
//
// Also report the fate of every MsgSnapshot sent (ReportSnapshot) and
// unreachable peers (ReportUnreachable).
//
// Persist before send is what makes a vote or an acknowledgement a promise
// that survives a crash. Advance tells the node that everything in rd was
// done, so the next Ready starts after it. The node remembers what it handed
// out, so the application may move entries and messages out of rd.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "raft/config.h"
#include "raft/raft.h"
#include "raft/types.h"

namespace raftkv::raft {

// One batch of work. Fields the node did not change are left empty.
struct Ready {
  // Set when the leader or this node's role changed.
  std::optional<SoftState> soft_state;
  // Set (non-empty) when term, vote or commit changed; must be persisted.
  raftpb::HardState hard_state;
  // Entries to persist before sending messages.
  std::vector<raftpb::Entry> entries;
  // A snapshot to install, if its index is non-zero.
  raftpb::Snapshot snapshot;
  // Answers to read-index requests (see ReadIndex).
  std::vector<ReadState> read_states;
  // Committed entries to apply, in order. They were persisted earlier, or
  // are among `entries` of this same Ready.
  std::vector<raftpb::Entry> committed_entries;
  // Messages to send after persisting.
  std::vector<raftpb::Message> messages;
  // True when the hard state or entries must be fsynced before sending.
  bool must_sync = false;
};

class RawNode {
 public:
  // Creates a node from `config` (see Raft::Create for errors). A node whose
  // storage already holds state restarts from it.
  static absl::StatusOr<std::unique_ptr<RawNode>> Create(const Config& config);

  // Advances logical time by one tick.
  void Tick();
  // Starts an election now (a MsgHup).
  void Campaign();
  // Proposes `data` to be appended. A follower with Config::forward_proposals
  // sends it on to the leader it knows and returns OK (the entry may still
  // never be appended). Errors: kProposalDropped if this node cannot take or
  // forward proposals now (no leader; not the leader and not forwarding;
  // the leader's refusals).
  absl::Status Propose(std::string data);
  // Proposes a membership change. Errors as Propose.
  absl::Status ProposeConfChange(const raftpb::ConfChange& cc);
  // Applies a committed membership change and returns the new membership.
  raftpb::ConfState ApplyConfChange(const raftpb::ConfChange& cc);
  // Asks for a read index: a later Ready carries a ReadState with `ctx` and
  // an index; once the application has applied that index, a read of its
  // state machine is linearizable. A follower forwards the request to the
  // leader; many concurrent requests share one confirmation round. Errors:
  // kProposalDropped when there is no leader to ask (the request is not
  // kept).
  absl::Status ReadIndex(std::string ctx);
  // Asks the leader to hand leadership to `transferee` (this node's own
  // application may call it on any member; followers forward it). The
  // leader brings the transferee's log up to date, then tells it to start an
  // election at once; proposals are refused meanwhile; the transfer is
  // abandoned after an election timeout.
  void TransferLeader(uint64_t transferee);
  // Hands a message from a peer to the node. Errors: kStepLocalMsg for a
  // local-only type (MsgPropose is one unless Config::forward_proposals);
  // those of Raft::Step. An error leaves the node unchanged.
  absl::Status Step(raftpb::Message m);

  // The outcome of sending a snapshot to a peer, reported by the
  // application.
  enum class SnapshotStatus { kFinish, kFailure };

  // Reports that the snapshot last sent to `id` was delivered (kFinish) or
  // lost (kFailure). The leader does not send that follower anything else
  // while its snapshot is outstanding, so the application MUST report every
  // MsgSnapshot it was handed, whatever became of it. After kFailure the
  // leader retries once the follower answers a heartbeat.
  void ReportSnapshot(uint64_t id, SnapshotStatus status);
  // Reports that a message to `id` could not be delivered. The leader stops
  // streaming to it and probes instead.
  void ReportUnreachable(uint64_t id);

  // True when GetReady would return something to do.
  bool HasReady() const;
  // Returns the pending work. Call Advance() once it is handled, before the
  // next GetReady.
  Ready GetReady();
  // Records that the Ready last returned by GetReady was fully handled:
  // its entries and snapshot are stable and its committed entries applied.
  // Aborts if no Ready is outstanding.
  void Advance();

  // The underlying state machine, for inspection and tests.
  Raft& raft() { return *raft_; }
  const Raft& raft() const { return *raft_; }

 private:
  explicit RawNode(std::unique_ptr<Raft> raft);

  // What the outstanding Ready handed out, for Advance.
  struct Handed {
    raftpb::HardState hard_state;                        // empty if unchanged
    uint64_t last_entry_index = 0, last_entry_term = 0;  // 0: no entries
    uint64_t snapshot_index = 0;                         // 0: no snapshot
    uint64_t applied_index = 0;    // 0: no committed entries
    uint64_t applied_payload = 0;  // data bytes of the committed entries
  };

  std::unique_ptr<Raft> raft_;
  SoftState prev_soft_state_;
  raftpb::HardState prev_hard_state_;
  std::optional<Handed> handed_;
};

}  // namespace raftkv::raft
