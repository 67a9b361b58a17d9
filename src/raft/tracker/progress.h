// Progress: the leader's view of one follower's log, and the flow-control
// state machine that decides what the leader may send it.
//
//   Probe:     the leader does not know where the follower's log ends. It
//              sends one append at a time and waits for the answer (or a
//              heartbeat response) before sending the next.
//   Replicate: the follower is known to match up to `match`. The leader
//              streams appends optimistically, advancing `next` as it sends,
//              as long as the Inflights window has room.
//   Snapshot:  the follower needs a snapshot; nothing else is sent until the
//              snapshot is acknowledged or reported failed.
#pragma once

#include <cstdint>
#include <string>

#include "raft/tracker/inflights.h"

namespace raftkv::raft {

enum class ProgressState { kProbe, kReplicate, kSnapshot };

const char* ProgressStateName(ProgressState s);

struct Progress {
  // The highest index known to be replicated on the follower.
  uint64_t match = 0;
  // The next index to send.
  uint64_t next = 1;
  ProgressState state = ProgressState::kProbe;
  // In Snapshot state: the index of the snapshot sent.
  uint64_t pending_snapshot = 0;
  // In Probe state: an append was sent and not yet answered.
  bool probe_sent = false;
  // The follower was heard from since the last check (for CheckQuorum).
  bool recent_active = false;
  // Learners receive the log but do not vote or count toward a quorum.
  bool is_learner = false;
  // In Replicate state: the appends sent and not yet acknowledged.
  Inflights inflights;

  // Switches to Probe; next becomes match + 1 (or, coming from Snapshot,
  // max(match, pending_snapshot) + 1).
  void BecomeProbe();
  // Switches to Replicate; next becomes match + 1.
  void BecomeReplicate();
  // Switches to Snapshot with the given snapshot index.
  void BecomeSnapshot(uint64_t snapshot_index);

  // Records an acknowledgement up to n. Returns true if match moved.
  // Unpauses a probe.
  bool MaybeUpdate(uint64_t n);
  // In Replicate state, records that entries up to n were sent.
  void OptimisticUpdate(uint64_t n) { next = n + 1; }
  // Handles a rejected append of index `rejected` with the follower's hint
  // `match_hint`. Returns false if the rejection is stale (ignored).
  bool MaybeDecrTo(uint64_t rejected, uint64_t match_hint);
  // True when the leader must not send appends to this follower now: a
  // probe is outstanding, the inflight window is full, or a snapshot is.
  bool IsPaused() const;

  std::string ToString() const;
};

}  // namespace raftkv::raft
