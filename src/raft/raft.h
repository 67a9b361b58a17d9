// Raft: the consensus state machine of one node (Raft paper §5), with what a
// production group needs beyond it, as in etcd/raft: PreVote and
// CheckQuorum (thesis §9.6), ReadIndex and lease reads (§6.4), leader
// transfer (§3.10), single-step membership changes with learners (§4.1),
// and flow control (Probe/Replicate/Snapshot, an inflight window, a cap on
// uncommitted bytes) with fast log backtracking.
//
// It is pure and deterministic. Time advances only through Tick(); input
// arrives only through Step(); output is left in the node for the caller to
// collect: outgoing messages (ReadMessages), log entries to persist and
// committed entries to apply (through raft_log()), and the hard and soft
// state. RawNode (raw_node.h) packages this output as a Ready. The election
// timeout is drawn from a generator seeded by Config::seed, so a node's
// behaviour is a function of its config and its input sequence.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "raft/config.h"
#include "raft/logger.h"
#include "raft/raft_log.h"
#include "raft/read_only.h"
#include "raft/tracker/tracker.h"
#include "raft/types.h"

namespace raftkv::raft {

class Raft {
 public:
  // Validates `config`, restores the hard state and membership from its
  // storage and returns a follower. Errors: InvalidArgument for a bad config
  // (see Config::Validate) or when both the storage and config.peers name a
  // membership; storage errors are passed on.
  static absl::StatusOr<std::unique_ptr<Raft>> Create(const Config& config);

  Raft(const Raft&) = delete;
  Raft& operator=(const Raft&) = delete;

  // Advances logical time by one tick: a follower or candidate may start an
  // election; a leader may send heartbeats.
  void Tick();

  // Handles one message: a local one (MsgHup, MsgBeat, MsgPropose,
  // MsgSnapStatus, MsgUnreachable, and MsgReadIndex / MsgTransferLeader made
  // by this node's application) or one from a peer. A message of a higher
  // term first moves the node to that term (except pre-votes, and vote
  // requests inside a CheckQuorum lease); one of a lower term is ignored or
  // answered so the sender learns the newer term. Errors: kProposalDropped
  // for a MsgPropose or MsgReadIndex this node cannot take (no leader; not
  // leader and not forwarding proposals; leader transfer in progress,
  // uncommitted cap reached, a membership change pending or the leader not yet
  // committed in its term, leader not a member). Other messages never fail.
  absl::Status Step(raftpb::Message&& m);
  // As above, stepping a copy of `m`.
  absl::Status Step(const raftpb::Message& m) {
    return Step(raftpb::Message(m));
  }

  // Role transitions (Raft paper §5.2). BecomeLeader aborts unless the node
  // is a candidate; BecomeCandidate and BecomePreCandidate abort if it is a
  // leader. BecomePreCandidate keeps the term and vote.
  void BecomeFollower(uint64_t term, uint64_t lead);
  void BecomeCandidate();
  void BecomePreCandidate();
  void BecomeLeader();

  // Sends an append (or a snapshot, if the follower's next entry was
  // compacted) to `to` if its progress allows. Leader only.
  void SendAppend(uint64_t to);

  // Moves out the messages produced since the last call.
  std::vector<raftpb::Message> ReadMessages();
  // The messages produced since the last ReadMessages.
  const std::vector<raftpb::Message>& msgs() const { return msgs_; }
  // Moves out the read states produced since the last call.
  std::vector<ReadState> TakeReadStates();
  const std::vector<ReadState>& read_states() const { return read_states_; }

  // Releases `bytes` of the uncommitted-bytes budget (the payload of
  // committed entries handed to the application). Leader only; no-op
  // otherwise.
  void ReduceUncommittedSize(uint64_t bytes);
  uint64_t uncommitted_size() const { return uncommitted_size_; }

  // Applies a committed membership change: AddNode adds a voter (or promotes
  // a learner), AddLearnerNode adds a learner, RemoveNode removes a member.
  // Returns the resulting membership. A leader may commit more entries once
  // the quorum shrinks, and broadcasts the new commit index.
  raftpb::ConfState ApplyConfChange(const raftpb::ConfChange& cc);

  // Applies an incoming snapshot's log and membership if it is newer than
  // the committed index. Returns false if it was stale and ignored. (Step
  // calls this for MsgSnapshot; exposed for tests and restores.)
  bool Restore(raftpb::Snapshot snap);

  uint64_t id() const { return id_; }
  uint64_t term() const { return term_; }
  uint64_t vote() const { return vote_; }
  uint64_t lead() const { return lead_; }
  StateType state() const { return state_; }
  bool forward_proposals() const { return forward_proposals_; }
  RaftLog& raft_log() { return raft_log_; }
  const RaftLog& raft_log() const { return raft_log_; }
  ProgressTracker& tracker() { return tracker_; }
  const ProgressTracker& tracker() const { return tracker_; }
  int election_elapsed() const { return election_elapsed_; }
  int heartbeat_elapsed() const { return heartbeat_elapsed_; }
  int randomized_election_timeout() const {
    return randomized_election_timeout_;
  }
  // The index of the newest unapplied membership change, or 0.
  uint64_t pending_conf_index() const { return pending_conf_index_; }
  // The node a leader transfer is handing leadership to, or kNone.
  uint64_t lead_transferee() const { return lead_transferee_; }
  // Read-index requests waiting for a quorum to confirm leadership.
  const ReadOnly& read_only() const { return read_only_; }

  SoftState GetSoftState() const { return SoftState{lead_, state_}; }
  raftpb::HardState GetHardState() const;

 private:
  explicit Raft(const Config& config);

  enum class CampaignType { kPreElection, kElection, kTransfer };

  // Per-role message handling, after the term checks in Step.
  absl::Status StepLeader(raftpb::Message& m);
  absl::Status StepCandidate(raftpb::Message& m);
  absl::Status StepFollower(raftpb::Message& m);

  void TickElection();
  void TickHeartbeat();
  void Reset(uint64_t term);
  void ResetRandomizedElectionTimeout();
  bool PastElectionTimeout() const;
  bool Promotable() const;
  void Hup(CampaignType t);
  void Campaign(CampaignType t);
  // Records a vote and returns the election's result so far.
  VoteResult Poll(uint64_t id, raftpb::MessageType t, bool granted);
  void HandleVoteRequest(const raftpb::Message& m);
  void HandleHeartbeatResponse(const raftpb::Message& m, Progress* pr);
  void HandleTransferLeader(const raftpb::Message& m, Progress* pr);
  void SendTimeoutNow(uint64_t to);
  void AbortLeaderTransfer() { lead_transferee_ = kNone; }
  // Leader: has an entry of the current term been committed? (Reads wait
  // for it: until then the leader's commit index may be stale.)
  bool CommittedEntryInCurrentTerm() const;
  void HandleReadIndex(raftpb::Message m);
  void SendReadIndexResponse(raftpb::Message req);
  // Answers a read request with `index`: a read state for this node's own
  // requests, a MsgReadIndexResponse for a follower's.
  void ResponseToReadIndexReq(const raftpb::Message& req, uint64_t index);
  void ReleasePendingReadIndexMessages();
  void BcastHeartbeatWithCtx(const std::string& ctx);
  // Leader only: steps down if a quorum was not heard from recently.
  void CheckQuorumActive();
  Progress NewProgress(uint64_t next, bool learner) const;
  // True when `ents` would take the uncommitted bytes past the cap.
  bool IncreaseUncommittedSize(const std::vector<raftpb::Entry>& ents);
  void Send(raftpb::Message&& m);
  void BcastAppend();
  void BcastHeartbeat();
  void SendHeartbeat(uint64_t to, const std::string& ctx);
  // Appends `ents` as the leader, stamping term and index, and commits at
  // once when this node is the only voter.
  void AppendEntry(std::vector<raftpb::Entry>&& ents);
  bool MaybeCommit();
  // Whether a commit index that just advanced goes to every follower at once
  // (see Config::skip_bcast_commit).
  bool ShouldBcastCommit() const;
  bool MaybeSendAppend(uint64_t to, bool send_if_empty);
  // Adds `ents` (which follow prev_index) to a MsgAppend to `to` still
  // waiting in msgs_, if there is one they continue and the size limit
  // allows; refreshes its commit index. Returns false if none fits. Sets
  // *had_entries to whether that message already carried entries (and so
  // already holds a slot in the inflight window).
  bool TryBatchAppend(uint64_t to, uint64_t prev_index,
                      std::vector<raftpb::Entry>* ents, bool* had_entries);
  bool MaybeSendSnapshot(uint64_t to, Progress* pr);
  void HandleAppendEntries(raftpb::Message& m);
  void HandleHeartbeat(const raftpb::Message& m);
  void HandleSnapshot(raftpb::Message& m);
  void HandleAppendResponse(const raftpb::Message& m, Progress* pr);
  void ApplyConfState(const raftpb::ConfState& cs);
  void LoadState(const raftpb::HardState& hs);
  uint64_t NumPendingConf(const std::vector<raftpb::Entry>& ents) const;

  // Writes `msg` with the "[node=<id> term=<term>]" prefix. Callers check
  // logger_->Enabled(level) first (see RAFT_LOG in raft.cc).
  void LogLine(LogLevel level, std::string_view msg) const;
  [[noreturn]] void Fatal(const std::string& what) const;

  uint64_t id_;
  uint64_t term_ = 0;
  uint64_t vote_ = kNone;
  uint64_t lead_ = kNone;
  StateType state_ = StateType::kFollower;

  RaftLog raft_log_;
  ProgressTracker tracker_;
  std::vector<raftpb::Message> msgs_;
  // For each follower whose newest message in msgs_ is a MsgAppend: the
  // EntrySize total of that message's entries (see TryBatchAppend).
  std::map<uint64_t, uint64_t> queued_append_bytes_;

  uint64_t max_msg_size_;
  uint64_t max_inflight_msgs_;
  uint64_t max_inflight_bytes_;
  uint64_t max_uncommitted_size_;
  uint64_t uncommitted_size_ = 0;
  uint64_t pending_conf_index_ = 0;
  uint64_t lead_transferee_ = kNone;
  bool pre_vote_;
  bool check_quorum_;
  bool forward_proposals_;
  bool skip_bcast_commit_;

  ReadOnlyOption read_only_option_;
  ReadOnly read_only_;
  // A read round was opened since msgs_ was last drained: its heartbeats are
  // still queued, so new requests may join it.
  bool read_round_open_ = false;
  // Read requests received before the leader committed in its term.
  std::vector<raftpb::Message> pending_read_index_messages_;
  std::vector<ReadState> read_states_;

  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int election_timeout_;
  int heartbeat_timeout_;
  int randomized_election_timeout_ = 0;
  std::mt19937_64 rand_;

  Logger* logger_;
};

}  // namespace raftkv::raft
