#include "raft/raw_node.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "raft/errors.h"

namespace raftkv::raft {

absl::StatusOr<std::unique_ptr<RawNode>> RawNode::Create(const Config& config) {
  absl::StatusOr<std::unique_ptr<Raft>> r = Raft::Create(config);
  if (!r.ok()) return r.status();
  return std::unique_ptr<RawNode>(new RawNode(*std::move(r)));
}

RawNode::RawNode(std::unique_ptr<Raft> raft)
    : raft_(std::move(raft)),
      prev_soft_state_(raft_->GetSoftState()),
      prev_hard_state_(raft_->GetHardState()) {}

void RawNode::Tick() { raft_->Tick(); }

void RawNode::Campaign() {
  raftpb::Message m;
  m.set_msg_type(raftpb::MsgHup);
  (void)raft_->Step(std::move(m));
}

absl::Status RawNode::Propose(std::string data) {
  raftpb::Message m;
  m.set_msg_type(raftpb::MsgPropose);
  m.set_from(raft_->id());
  m.add_entries()->set_data(std::move(data));
  return raft_->Step(std::move(m));
}

absl::Status RawNode::ProposeConfChange(const raftpb::ConfChange& cc) {
  raftpb::Message m;
  m.set_msg_type(raftpb::MsgPropose);
  m.set_from(raft_->id());
  raftpb::Entry* e = m.add_entries();
  e->set_entry_type(raftpb::EntryConfChange);
  e->set_data(cc.SerializeAsString());
  return raft_->Step(std::move(m));
}

raftpb::ConfState RawNode::ApplyConfChange(const raftpb::ConfChange& cc) {
  return raft_->ApplyConfChange(cc);
}

absl::Status RawNode::Step(raftpb::Message m) {
  // A proposal crosses the network only when followers forward them.
  bool forwarded_proposal =
      m.msg_type() == raftpb::MsgPropose && raft_->forward_proposals();
  if (IsLocalMsg(m.msg_type()) && !forwarded_proposal) {
    return MakeError(ErrorKind::kStepLocalMsg);
  }
  if (IsResponseMsg(m.msg_type()) && !raft_->tracker().IsMember(m.from())) {
    return MakeError(ErrorKind::kStepPeerNotFound);
  }
  return raft_->Step(std::move(m));
}

void RawNode::ReportSnapshot(uint64_t id, SnapshotStatus status) {
  raftpb::Message m;
  m.set_msg_type(raftpb::MsgSnapStatus);
  m.set_from(id);
  m.set_reject(status == SnapshotStatus::kFailure);
  (void)raft_->Step(std::move(m));
}

void RawNode::ReportUnreachable(uint64_t id) {
  raftpb::Message m;
  m.set_msg_type(raftpb::MsgUnreachable);
  m.set_from(id);
  (void)raft_->Step(std::move(m));
}

absl::Status RawNode::ReadIndex(std::string ctx) {
  raftpb::Message m;
  m.set_msg_type(raftpb::MsgReadIndex);
  m.set_context(std::move(ctx));
  return raft_->Step(std::move(m));
}

void RawNode::TransferLeader(uint64_t transferee) {
  raftpb::Message m;
  m.set_msg_type(raftpb::MsgTransferLeader);
  m.set_from(transferee);
  (void)raft_->Step(std::move(m));
}

bool RawNode::HasReady() const {
  const Raft& r = *raft_;
  if (!(r.GetSoftState() == prev_soft_state_)) return true;
  raftpb::HardState hs = r.GetHardState();
  if (!IsEmptyHardState(hs) && !HardStateEqual(hs, prev_hard_state_)) {
    return true;
  }
  const RaftLog& log = r.raft_log();
  return log.UnstableSnapshot().has_value() || !r.msgs().empty() ||
         !r.read_states().empty() || !log.UnstableEntries().empty() ||
         log.HasNextCommittedEntries();
}

Ready RawNode::GetReady() {
  Raft& r = *raft_;
  RaftLog& log = r.raft_log();
  Ready rd;
  rd.entries = log.UnstableEntries();
  rd.committed_entries = log.NextCommittedEntries();
  rd.messages = r.ReadMessages();
  rd.read_states = r.TakeReadStates();
  SoftState ss = r.GetSoftState();
  if (!(ss == prev_soft_state_)) {
    rd.soft_state = ss;
    prev_soft_state_ = ss;
  }
  raftpb::HardState hs = r.GetHardState();
  if (!HardStateEqual(hs, prev_hard_state_)) rd.hard_state = hs;
  if (log.UnstableSnapshot()) rd.snapshot = *log.UnstableSnapshot();
  rd.must_sync = !rd.entries.empty() || hs.term() != prev_hard_state_.term() ||
                 hs.vote() != prev_hard_state_.vote();
  Handed h;
  h.hard_state = rd.hard_state;
  if (!rd.entries.empty()) {
    h.last_entry_index = rd.entries.back().index();
    h.last_entry_term = rd.entries.back().term();
  }
  h.snapshot_index = rd.snapshot.metadata().index();
  if (!rd.committed_entries.empty()) {
    h.applied_index = rd.committed_entries.back().index();
    for (const raftpb::Entry& e : rd.committed_entries) {
      h.applied_payload += e.data().size();
    }
  }
  handed_ = h;
  return rd;
}

void RawNode::Advance() {
  if (!handed_) {
    std::fprintf(stderr, "RawNode::Advance called without a Ready\n");
    std::abort();
  }
  Handed h = *handed_;
  handed_.reset();
  RaftLog& log = raft_->raft_log();
  if (!IsEmptyHardState(h.hard_state)) prev_hard_state_ = h.hard_state;
  if (h.last_entry_index != 0) {
    log.StableTo(h.last_entry_index, h.last_entry_term);
  }
  if (h.snapshot_index != 0) {
    log.StableSnapTo(h.snapshot_index);
    log.AppliedTo(h.snapshot_index);
  }
  if (h.applied_index != 0) log.AppliedTo(h.applied_index);
  // Applied entries no longer count against the uncommitted-bytes cap.
  raft_->ReduceUncommittedSize(h.applied_payload);
}

}  // namespace raftkv::raft
