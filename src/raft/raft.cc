#include "raft/raft.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "raft/errors.h"

namespace raftkv::raft {

using raftpb::Entry;
using raftpb::Message;

namespace {
// The context of a vote request forced by a leader transfer: it overrides
// the CheckQuorum lease of the voters.
constexpr std::string_view kCampaignTransfer = "transfer";
}  // namespace

// Formats and writes a line only when its level is enabled, so a disabled
// level costs one virtual call.
#define RAFT_LOG_ON(node, level, ...)                       \
  do {                                                      \
    if ((node)->logger_->Enabled(level)) {                  \
      (node)->LogLine(level, absl::StrFormat(__VA_ARGS__)); \
    }                                                       \
  } while (0)
#define RAFT_LOG(level, ...) RAFT_LOG_ON(this, level, __VA_ARGS__)

absl::StatusOr<std::unique_ptr<Raft>> Raft::Create(const Config& config) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  absl::StatusOr<RaftState> state = config.storage->InitialState();
  if (!state.ok()) return state.status();
  const raftpb::ConfState& cs = state->conf_state;
  bool stored_members = cs.voters_size() > 0 || cs.learners_size() > 0;
  if (stored_members && (!config.peers.empty() || !config.learners.empty())) {
    return absl::InvalidArgumentError(
        "cannot specify both Config.peers and a membership in Storage");
  }
  std::unique_ptr<Raft> r(new Raft(config));
  const raftpb::HardState& hs = state->hard_state;
  if (!IsEmptyHardState(hs)) {
    if (hs.commit() < r->raft_log_.committed() ||
        hs.commit() > r->raft_log_.last_index()) {
      return absl::DataLossError(absl::StrFormat(
          "hard state commit %d is out of range [%d, %d]", hs.commit(),
          r->raft_log_.committed(), r->raft_log_.last_index()));
    }
    r->LoadState(hs);
  }
  if (stored_members) {
    r->ApplyConfState(cs);
  } else {
    raftpb::ConfState initial;
    for (uint64_t p : config.peers) initial.add_voters(p);
    for (uint64_t l : config.learners) initial.add_learners(l);
    r->ApplyConfState(initial);
  }
  if (config.applied > 0) {
    if (config.applied > r->raft_log_.committed()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("applied index %d is past the committed index %d",
                          config.applied, r->raft_log_.committed()));
    }
    r->raft_log_.AppliedTo(config.applied);
  }
  r->BecomeFollower(r->term_, kNone);
  RAFT_LOG_ON(r, LogLevel::kInfo,
              "newRaft [peers: [%s], term: %d, commit: %d, applied: %d, "
              "last index: %d, last term: %d]",
              absl::StrJoin(r->tracker_.Voters(), ","), r->term_,
              r->raft_log_.committed(), r->raft_log_.applied(),
              r->raft_log_.last_index(), r->raft_log_.LastTerm());
  return r;
}

Raft::Raft(const Config& config)
    : id_(config.id),
      raft_log_(config.storage, config.logger ? config.logger : DefaultLogger(),
                config.max_committed_size_per_ready),
      max_msg_size_(config.max_size_per_msg),
      max_inflight_msgs_(config.max_inflight_msgs),
      max_inflight_bytes_(config.max_inflight_bytes),
      max_uncommitted_size_(config.max_uncommitted_entries_size),
      pre_vote_(config.pre_vote),
      check_quorum_(config.check_quorum),
      forward_proposals_(config.forward_proposals),
      skip_bcast_commit_(config.skip_bcast_commit),
      read_only_option_(config.read_only_option),
      election_timeout_(config.election_tick),
      heartbeat_timeout_(config.heartbeat_tick),
      rand_(config.seed != 0 ? config.seed
                             : config.id * 0x9E3779B97F4A7C15ULL + 1),
      logger_(config.logger ? config.logger : DefaultLogger()) {}

void Raft::LogLine(LogLevel level, std::string_view msg) const {
  std::string line = absl::StrCat("[node=", id_, " term=", term_, "] ");
  line.append(msg);
  logger_->Log(level, line);
}

void Raft::Fatal(const std::string& what) const {
  std::string line = absl::StrCat("[node=", id_, " term=", term_, "] ", what);
  logger_->Log(LogLevel::kError, line);
  std::fprintf(stderr, "raft fatal: %s\n", line.c_str());
  std::abort();
}

raftpb::HardState Raft::GetHardState() const {
  raftpb::HardState hs;
  hs.set_term(term_);
  hs.set_vote(vote_);
  hs.set_commit(raft_log_.committed());
  return hs;
}

void Raft::LoadState(const raftpb::HardState& hs) {
  raft_log_.CommitTo(hs.commit());
  term_ = hs.term();
  vote_ = hs.vote();
}

Progress Raft::NewProgress(uint64_t next, bool learner) const {
  Progress pr;
  pr.next = next;
  pr.is_learner = learner;
  pr.inflights = Inflights(max_inflight_msgs_, max_inflight_bytes_);
  return pr;
}

void Raft::ApplyConfState(const raftpb::ConfState& cs) {
  tracker_.Clear();
  uint64_t next = raft_log_.last_index() + 1;
  for (uint64_t id : cs.voters())
    tracker_.SetProgress(id, NewProgress(next, false));
  for (uint64_t id : cs.learners()) {
    tracker_.SetProgress(id, NewProgress(next, true));
  }
  if (Progress* self = tracker_.Get(id_)) {
    self->match = raft_log_.last_index();
  }
}

std::vector<Message> Raft::ReadMessages() {
  std::vector<Message> out;
  out.swap(msgs_);
  queued_append_bytes_.clear();
  read_round_open_ = false;
  return out;
}

std::vector<ReadState> Raft::TakeReadStates() {
  std::vector<ReadState> out;
  out.swap(read_states_);
  return out;
}

// ---- Role transitions ----------------------------------------------------

void Raft::Reset(uint64_t term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNone;
  }
  lead_ = kNone;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
  AbortLeaderTransfer();
  tracker_.ResetVotes();
  uint64_t last = raft_log_.last_index();
  for (auto& [id, pr] : tracker_.progress()) {
    pr = NewProgress(last + 1, pr.is_learner);
    if (id == id_) pr.match = last;
  }
  pending_conf_index_ = 0;
  uncommitted_size_ = 0;
  // Reads pending at a leader die with its leadership; the application
  // fails its outstanding reads when it sees the leader change.
  read_only_.Reset();
  read_round_open_ = false;
  pending_read_index_messages_.clear();
}

void Raft::ResetRandomizedElectionTimeout() {
  randomized_election_timeout_ =
      election_timeout_ +
      static_cast<int>(rand_() % static_cast<uint64_t>(election_timeout_));
}

void Raft::BecomeFollower(uint64_t term, uint64_t lead) {
  Reset(term);
  lead_ = lead;
  state_ = StateType::kFollower;
  RAFT_LOG(LogLevel::kInfo, "became follower at term %d", term_);
}

void Raft::BecomeCandidate() {
  if (state_ == StateType::kLeader) {
    Fatal("invalid transition [leader -> candidate]");
  }
  Reset(term_ + 1);
  vote_ = id_;
  state_ = StateType::kCandidate;
  RAFT_LOG(LogLevel::kInfo, "became candidate at term %d", term_);
}

void Raft::BecomePreCandidate() {
  if (state_ == StateType::kLeader) {
    Fatal("invalid transition [leader -> pre-candidate]");
  }
  // A pre-candidate changes neither its term nor its vote: it only asks.
  tracker_.ResetVotes();
  lead_ = kNone;
  state_ = StateType::kPreCandidate;
  RAFT_LOG(LogLevel::kInfo, "became pre-candidate at term %d", term_);
}

void Raft::BecomeLeader() {
  if (state_ == StateType::kFollower) {
    Fatal("invalid transition [follower -> leader]");
  }
  Reset(term_);
  lead_ = id_;
  state_ = StateType::kLeader;
  if (Progress* self = tracker_.Get(id_)) {
    self->BecomeReplicate();
    self->recent_active = true;
  }
  // Entries of earlier terms may hide a pending membership change; be
  // conservative and treat everything up to here as possibly one.
  pending_conf_index_ = raft_log_.last_index();
  // The no-op of this term (Raft paper §5.4.2, §8): committing it commits
  // every earlier entry. It has no payload, so the uncommitted cap never
  // refuses it.
  std::vector<Entry> noop(1);
  AppendEntry(std::move(noop));
  RAFT_LOG(LogLevel::kInfo, "became leader at term %d", term_);
}

bool Raft::Promotable() const {
  // A node holding a snapshot it has not persisted yet must not campaign:
  // its log and membership are in flux.
  return tracker_.IsVoter(id_) && !raft_log_.UnstableSnapshot().has_value();
}

bool Raft::PastElectionTimeout() const {
  return election_elapsed_ >= randomized_election_timeout_;
}

// ---- Ticks ---------------------------------------------------------------

void Raft::Tick() {
  if (state_ == StateType::kLeader) {
    TickHeartbeat();
  } else {
    TickElection();
  }
}

void Raft::TickElection() {
  ++election_elapsed_;
  if (Promotable() && PastElectionTimeout()) {
    election_elapsed_ = 0;
    Message m;
    m.set_msg_type(raftpb::MsgHup);
    m.set_from(id_);
    (void)Step(std::move(m));
  }
}

void Raft::TickHeartbeat() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= election_timeout_) {
    election_elapsed_ = 0;
    if (check_quorum_) CheckQuorumActive();
    if (state_ == StateType::kLeader && lead_transferee_ != kNone) {
      // The transferee did not take over within an election timeout.
      RAFT_LOG(LogLevel::kInfo, "abort leader transfer to %d (timed out)",
               lead_transferee_);
      AbortLeaderTransfer();
    }
  }
  if (state_ != StateType::kLeader) return;
  if (heartbeat_elapsed_ >= heartbeat_timeout_) {
    heartbeat_elapsed_ = 0;
    Message m;
    m.set_msg_type(raftpb::MsgBeat);
    m.set_from(id_);
    (void)Step(std::move(m));
  }
}

void Raft::CheckQuorumActive() {
  if (Progress* self = tracker_.Get(id_)) self->recent_active = true;
  if (!tracker_.QuorumActive(id_)) {
    RAFT_LOG(LogLevel::kWarning,
             "stepped down to follower since quorum is not active");
    BecomeFollower(term_, kNone);
  }
  for (auto& [id, pr] : tracker_.progress()) {
    if (id != id_) pr.recent_active = false;
  }
}

// ---- Sending -------------------------------------------------------------

void Raft::Send(Message&& m) {
  // A forwarded request keeps its origin (the transferee of a leader
  // transfer); everything this node says is from this node.
  if (m.from() == kNone) m.set_from(id_);
  auto t = m.msg_type();
  if (t == raftpb::MsgRequestVote || t == raftpb::MsgPreVote) {
    // Vote requests carry the term they are about, set by the caller.
    if (m.term() == 0) {
      Fatal(absl::StrCat("term should be set when sending ",
                         raftpb::MessageType_Name(t)));
    }
  } else if (t == raftpb::MsgRequestVoteResponse ||
             t == raftpb::MsgPreVoteResponse) {
    // The caller sets the term: the request's (granted) or ours (rejected).
  } else {
    if (m.term() != 0) {
      Fatal(absl::StrCat("term should not be set when sending ",
                         raftpb::MessageType_Name(t), " (was ", m.term(), ")"));
    }
    // Proposals and read requests forwarded to the leader carry no term:
    // they are not bound to one.
    if (t != raftpb::MsgPropose && t != raftpb::MsgReadIndex) {
      m.set_term(term_);
    }
  }
  msgs_.push_back(std::move(m));
}

void Raft::SendAppend(uint64_t to) { MaybeSendAppend(to, true); }

bool Raft::MaybeSendAppend(uint64_t to, bool send_if_empty) {
  Progress* pr = tracker_.Get(to);
  if (pr == nullptr || pr->IsPaused()) return false;
  uint64_t prev_index = pr->next - 1;
  absl::StatusOr<uint64_t> prev_term = raft_log_.Term(prev_index);
  absl::StatusOr<std::vector<Entry>> ents =
      raft_log_.Entries(pr->next, max_msg_size_);
  if (ents.ok() && ents->empty() && !send_if_empty) return false;
  if (!prev_term.ok() || !ents.ok()) {
    // The entries the follower needs were compacted: send a snapshot.
    return MaybeSendSnapshot(to, pr);
  }
  uint64_t last = ents->empty() ? 0 : ents->back().index();
  uint64_t bytes = EntriesSize(ents->begin(), ents->end());
  bool had_entries = false;
  bool batched = TryBatchAppend(to, prev_index, &*ents, &had_entries);
  if (!batched) {
    Message m;
    m.set_msg_type(raftpb::MsgAppend);
    m.set_to(to);
    m.set_index(prev_index);
    m.set_log_term(*prev_term);
    m.set_commit(raft_log_.committed());
    auto* out = m.mutable_entries();
    out->Reserve(static_cast<int>(ents->size()));
    for (Entry& e : *ents) *out->Add() = std::move(e);
    Send(std::move(m));
    queued_append_bytes_[to] = bytes;
  }
  if (last != 0) {
    switch (pr->state) {
      case ProgressState::kReplicate:
        pr->OptimisticUpdate(last);
        // Merged into a queued message that already holds a window slot:
        // grow that slot. A queued commit-only append holds none, so the
        // entries merged into it take a new one.
        if (batched && had_entries && pr->inflights.Count() > 0 &&
            pr->inflights.LastIndex() == prev_index) {
          pr->inflights.ExtendLast(last, bytes);
        } else {
          pr->inflights.Add(last, bytes);
        }
        break;
      case ProgressState::kProbe:
        pr->probe_sent = true;
        break;
      case ProgressState::kSnapshot:
        Fatal(
            absl::StrCat("sending append in unhandled state ", pr->ToString()));
    }
  }
  return true;
}

bool Raft::TryBatchAppend(uint64_t to, uint64_t prev_index,
                          std::vector<Entry>* ents, bool* had_entries) {
  // Only the newest queued message to `to` may be extended, so that the
  // order of what `to` receives does not change.
  for (auto it = msgs_.rbegin(); it != msgs_.rend(); ++it) {
    if (it->to() != to) continue;
    if (it->msg_type() != raftpb::MsgAppend) return false;
    Message& m = *it;
    if (m.index() + static_cast<uint64_t>(m.entries_size()) != prev_index) {
      return false;
    }
    *had_entries = m.entries_size() > 0;
    if (!ents->empty()) {
      uint64_t& queued = queued_append_bytes_[to];
      uint64_t size = queued + EntriesSize(ents->begin(), ents->end());
      if (m.entries_size() > 0 && size > max_msg_size_) return false;
      queued = size;
      auto* out = m.mutable_entries();
      out->Reserve(out->size() + static_cast<int>(ents->size()));
      for (Entry& e : *ents) *out->Add() = std::move(e);
    }
    m.set_commit(raft_log_.committed());
    return true;
  }
  return false;
}

bool Raft::MaybeSendSnapshot(uint64_t to, Progress* pr) {
  absl::StatusOr<raftpb::Snapshot> snap = raft_log_.Snapshot();
  if (!snap.ok()) {
    if (IsError(snap.status(), ErrorKind::kSnapshotTemporarilyUnavailable)) {
      RAFT_LOG(LogLevel::kDebug,
               "failed to send snapshot to %d because snapshot is temporarily "
               "unavailable",
               to);
      return false;
    }
    Fatal(absl::StrCat("snapshot for ", to, ": ", snap.status().ToString()));
  }
  if (IsEmptySnap(*snap)) Fatal("need non-empty snapshot");
  uint64_t sindex = snap->metadata().index();
  RAFT_LOG(LogLevel::kInfo,
           "[first index: %d, commit: %d] sent snapshot[index: %d, term: %d] "
           "to %d [%s]",
           raft_log_.first_index(), raft_log_.committed(), sindex,
           snap->metadata().term(), to, pr->ToString());
  pr->BecomeSnapshot(sindex);
  Message m;
  m.set_msg_type(raftpb::MsgSnapshot);
  m.set_to(to);
  *m.mutable_snapshot() = *std::move(snap);
  Send(std::move(m));
  return true;
}

void Raft::BcastAppend() {
  for (auto& [id, pr] : tracker_.progress()) {
    if (id != id_) SendAppend(id);
  }
}

void Raft::BcastHeartbeat() {
  // Repeat the newest pending read round, so that a round whose heartbeats
  // or answers were lost is still confirmed.
  uint64_t round = read_only_.LastPendingRound();
  BcastHeartbeatWithCtx(round == 0 ? std::string()
                                   : ReadOnly::EncodeRound(round));
}

void Raft::BcastHeartbeatWithCtx(const std::string& ctx) {
  for (auto& [id, pr] : tracker_.progress()) {
    if (id != id_) SendHeartbeat(id, ctx);
  }
}

void Raft::SendHeartbeat(uint64_t to, const std::string& ctx) {
  const Progress* pr = tracker_.Get(to);
  // Never tell a follower to commit past what it is known to hold: its log
  // may still diverge beyond its match index.
  Message m;
  m.set_msg_type(raftpb::MsgHeartbeat);
  m.set_to(to);
  m.set_commit(std::min(pr->match, raft_log_.committed()));
  if (!ctx.empty()) m.set_context(ctx);
  Send(std::move(m));
}

void Raft::SendTimeoutNow(uint64_t to) {
  RAFT_LOG(LogLevel::kInfo, "sends MsgTimeoutNow to %d immediately", to);
  Message m;
  m.set_msg_type(raftpb::MsgTimeoutNow);
  m.set_to(to);
  Send(std::move(m));
}

// ---- Log ------------------------------------------------------------------

void Raft::AppendEntry(std::vector<Entry>&& ents) {
  uint64_t li = raft_log_.last_index();
  for (size_t i = 0; i < ents.size(); ++i) {
    ents[i].set_term(term_);
    ents[i].set_index(li + 1 + i);
  }
  li = raft_log_.Append(std::move(ents));
  if (Progress* self = tracker_.Get(id_)) self->MaybeUpdate(li);
  // A single voter commits on its own append.
  MaybeCommit();
}

bool Raft::MaybeCommit() {
  return raft_log_.MaybeCommit(tracker_.Committed(), term_);
}

bool Raft::ShouldBcastCommit() const {
  return !skip_bcast_commit_ || pending_conf_index_ > raft_log_.applied();
}

bool Raft::IncreaseUncommittedSize(const std::vector<Entry>& ents) {
  uint64_t s = 0;
  for (const Entry& e : ents) s += e.data().size();
  // Always accept something when nothing is uncommitted, so that a single
  // entry larger than the cap still goes through.
  if (uncommitted_size_ > 0 && s > 0 &&
      uncommitted_size_ + s > max_uncommitted_size_) {
    return false;
  }
  uncommitted_size_ += s;
  return true;
}

void Raft::ReduceUncommittedSize(uint64_t bytes) {
  if (state_ != StateType::kLeader) return;
  uncommitted_size_ = bytes > uncommitted_size_ ? 0 : uncommitted_size_ - bytes;
}

uint64_t Raft::NumPendingConf(const std::vector<Entry>& ents) const {
  uint64_t n = 0;
  for (const Entry& e : ents) n += e.entry_type() == raftpb::EntryConfChange;
  return n;
}

bool Raft::CommittedEntryInCurrentTerm() const {
  return raft_log_.ZeroTermOnErr(raft_log_.committed()) == term_;
}

// ---- Step ------------------------------------------------------------------

absl::Status Raft::Step(Message&& m) {
  auto t = m.msg_type();
  if (m.term() == 0) {
    if (!IsLocalMsg(t) && t != raftpb::MsgReadIndex &&
        t != raftpb::MsgTransferLeader) {
      // Every message between nodes carries a term; this one is malformed.
      RAFT_LOG(LogLevel::kWarning, "ignored %s without a term from %d",
               raftpb::MessageType_Name(t), m.from());
      return absl::OkStatus();
    }
  } else if (m.term() > term_) {
    if (t == raftpb::MsgRequestVote || t == raftpb::MsgPreVote) {
      bool force = m.context() == kCampaignTransfer;
      bool in_lease = check_quorum_ && lead_ != kNone &&
                      election_elapsed_ < election_timeout_;
      if (!force && in_lease) {
        // We heard from a live leader within the election timeout: this
        // candidate cannot have a reason to disrupt it.
        RAFT_LOG(LogLevel::kInfo,
                 "[logterm: %d, index: %d, vote: %d] ignored %s from %d "
                 "[logterm: %d, index: %d] at term %d: lease is not expired "
                 "(remaining ticks: %d)",
                 raft_log_.LastTerm(), raft_log_.last_index(), vote_,
                 raftpb::MessageType_Name(t), m.from(), m.log_term(), m.index(),
                 term_, election_timeout_ - election_elapsed_);
        return absl::OkStatus();
      }
    }
    if (t == raftpb::MsgPreVote) {
      // A pre-vote never changes our term.
    } else if (t == raftpb::MsgPreVoteResponse && !m.reject()) {
      // A granted pre-vote carries the term we asked about; our term moves
      // only when a quorum granted it.
    } else {
      RAFT_LOG(LogLevel::kInfo, "received %s with higher term %d from %d",
               raftpb::MessageType_Name(t), m.term(), m.from());
      if (t == raftpb::MsgAppend || t == raftpb::MsgHeartbeat ||
          t == raftpb::MsgSnapshot) {
        BecomeFollower(m.term(), m.from());
      } else {
        BecomeFollower(m.term(), kNone);
      }
    }
  } else if (m.term() < term_) {
    if (t == raftpb::MsgAppend || t == raftpb::MsgHeartbeat) {
      // A deposed leader still thinks it leads: tell it the newer term so it
      // steps down, instead of letting it wait for an election timeout.
      Message resp;
      resp.set_msg_type(raftpb::MsgAppendResponse);
      resp.set_to(m.from());
      Send(std::move(resp));
    } else if (t == raftpb::MsgPreVote) {
      // Tell a pre-candidate behind us so it stops asking.
      Message resp;
      resp.set_msg_type(raftpb::MsgPreVoteResponse);
      resp.set_to(m.from());
      resp.set_term(term_);
      resp.set_reject(true);
      Send(std::move(resp));
    } else {
      RAFT_LOG(LogLevel::kDebug, "ignored %s with lower term %d from %d",
               raftpb::MessageType_Name(t), m.term(), m.from());
    }
    return absl::OkStatus();
  }

  switch (t) {
    case raftpb::MsgHup:
      Hup(pre_vote_ ? CampaignType::kPreElection : CampaignType::kElection);
      return absl::OkStatus();
    case raftpb::MsgRequestVote:
    case raftpb::MsgPreVote:
      HandleVoteRequest(m);
      return absl::OkStatus();
    default:
      break;
  }
  switch (state_) {
    case StateType::kLeader:
      return StepLeader(m);
    case StateType::kCandidate:
    case StateType::kPreCandidate:
      return StepCandidate(m);
    case StateType::kFollower:
      return StepFollower(m);
  }
  return absl::OkStatus();
}

void Raft::HandleVoteRequest(const Message& m) {
  // One vote per term (§5.2), only for a log at least as up-to-date as ours
  // (§5.4.1). A repeated request from the node we voted for is granted again
  // (the first answer may have been lost). A pre-vote for a future term is
  // judged on the log alone: it binds nobody.
  bool pre = m.msg_type() == raftpb::MsgPreVote;
  bool can_vote = vote_ == m.from() || (vote_ == kNone && lead_ == kNone) ||
                  (pre && m.term() > term_);
  Message resp;
  resp.set_msg_type(pre ? raftpb::MsgPreVoteResponse
                        : raftpb::MsgRequestVoteResponse);
  resp.set_to(m.from());
  if (can_vote && raft_log_.IsUpToDate(m.index(), m.log_term())) {
    RAFT_LOG(LogLevel::kInfo,
             "[logterm: %d, index: %d, vote: %d] cast %s for %d [logterm: %d, "
             "index: %d] at term %d",
             raft_log_.LastTerm(), raft_log_.last_index(), vote_,
             raftpb::MessageType_Name(m.msg_type()), m.from(), m.log_term(),
             m.index(), term_);
    // The answer carries the term asked about, so a pre-candidate can tell
    // it apart from answers to older rounds.
    resp.set_term(m.term());
    if (!pre) {
      election_elapsed_ = 0;
      vote_ = m.from();
    }
  } else {
    RAFT_LOG(LogLevel::kInfo,
             "[logterm: %d, index: %d, vote: %d] rejected %s from %d "
             "[logterm: %d, index: %d] at term %d",
             raft_log_.LastTerm(), raft_log_.last_index(), vote_,
             raftpb::MessageType_Name(m.msg_type()), m.from(), m.log_term(),
             m.index(), term_);
    resp.set_term(term_);
    resp.set_reject(true);
  }
  Send(std::move(resp));
}

void Raft::Hup(CampaignType t) {
  if (state_ == StateType::kLeader) {
    RAFT_LOG(LogLevel::kDebug, "ignoring MsgHup because already leader");
    return;
  }
  if (!Promotable()) {
    RAFT_LOG(LogLevel::kWarning, "is unpromotable and can not campaign");
    return;
  }
  // A node must not campaign while it has committed membership changes it
  // has not applied: its view of the voters may be stale. Entries below the
  // first index were replaced by a snapshot whose membership is already in
  // effect, so the scan starts at the first index.
  uint64_t scan_from =
      std::max(raft_log_.applied() + 1, raft_log_.first_index());
  if (raft_log_.committed() >= scan_from) {
    absl::StatusOr<std::vector<Entry>> ents =
        raft_log_.Slice(scan_from, raft_log_.committed() + 1, kNoLimit);
    if (!ents.ok()) {
      Fatal(absl::StrCat("unexpected error getting unapplied entries: ",
                         ents.status().ToString()));
    }
    if (uint64_t n = NumPendingConf(*ents); n != 0) {
      RAFT_LOG(LogLevel::kWarning,
               "cannot campaign at term %d since there are still %d pending "
               "configuration changes to apply",
               term_, n);
      return;
    }
  }
  RAFT_LOG(LogLevel::kInfo, "is starting a new election at term %d", term_);
  Campaign(t);
}

void Raft::Campaign(CampaignType t) {
  raftpb::MessageType vote_msg;
  uint64_t term;
  if (t == CampaignType::kPreElection) {
    BecomePreCandidate();
    vote_msg = raftpb::MsgPreVote;
    // Ask about the next term without moving to it.
    term = term_ + 1;
  } else {
    BecomeCandidate();
    vote_msg = raftpb::MsgRequestVote;
    term = term_;
  }
  raftpb::MessageType resp_type = vote_msg == raftpb::MsgPreVote
                                      ? raftpb::MsgPreVoteResponse
                                      : raftpb::MsgRequestVoteResponse;
  if (Poll(id_, resp_type, true) == VoteResult::kWon) {
    // A group of one wins at once.
    if (t == CampaignType::kPreElection) {
      Campaign(CampaignType::kElection);
    } else {
      BecomeLeader();
    }
    return;
  }
  for (const auto& [id, pr] : tracker_.progress()) {
    if (id == id_ || pr.is_learner) continue;
    RAFT_LOG(LogLevel::kInfo,
             "[logterm: %d, index: %d] sent %s request to %d at term %d",
             raft_log_.LastTerm(), raft_log_.last_index(),
             raftpb::MessageType_Name(vote_msg), id, term);
    Message m;
    m.set_msg_type(vote_msg);
    m.set_to(id);
    m.set_term(term);
    m.set_index(raft_log_.last_index());
    m.set_log_term(raft_log_.LastTerm());
    if (t == CampaignType::kTransfer) {
      m.set_context(std::string(kCampaignTransfer));
    }
    Send(std::move(m));
  }
}

VoteResult Raft::Poll(uint64_t id, raftpb::MessageType t, bool granted) {
  RAFT_LOG(LogLevel::kInfo, "received %s %s from %d",
           raftpb::MessageType_Name(t), granted ? "grant" : "rejection", id);
  tracker_.RecordVote(id, granted);
  int g = 0, r = 0;
  VoteResult res = tracker_.TallyVotes(&g, &r);
  RAFT_LOG(LogLevel::kInfo, "has received %d %s votes and %d rejections", g,
           raftpb::MessageType_Name(t), r);
  return res;
}

absl::Status Raft::StepLeader(Message& m) {
  switch (m.msg_type()) {
    case raftpb::MsgBeat:
      BcastHeartbeat();
      return absl::OkStatus();
    case raftpb::MsgPropose: {
      if (m.entries_size() == 0) {
        return absl::InvalidArgumentError("proposal without entries");
      }
      if (!tracker_.IsMember(id_)) {
        // Removed from the group while leading: it cannot commit anything.
        return MakeError(ErrorKind::kProposalDropped,
                         "leader is not a member of the group");
      }
      if (lead_transferee_ != kNone) {
        return MakeError(ErrorKind::kProposalDropped,
                         absl::StrCat("leadership is being transferred to ",
                                      lead_transferee_));
      }
      std::vector<Entry> ents;
      ents.reserve(static_cast<size_t>(m.entries_size()));
      uint64_t conf_index = 0;
      for (Entry& e : *m.mutable_entries()) {
        if (e.entry_type() == raftpb::EntryConfChange) {
          if (conf_index != 0 || pending_conf_index_ > raft_log_.applied()) {
            return MakeError(
                ErrorKind::kProposalDropped,
                absl::StrCat("a membership change is pending at index ",
                             pending_conf_index_, " (applied ",
                             raft_log_.applied(), ")"));
          }
          if (!CommittedEntryInCurrentTerm()) {
            return MakeError(ErrorKind::kProposalDropped,
                             "the leader has not committed an entry in its "
                             "term yet");
          }
          conf_index = raft_log_.last_index() + ents.size() + 1;
        }
        ents.push_back(std::move(e));
      }
      if (!IncreaseUncommittedSize(ents)) {
        return MakeError(
            ErrorKind::kProposalDropped,
            absl::StrCat("too many uncommitted bytes (", uncommitted_size_,
                         " of ", max_uncommitted_size_, ")"));
      }
      if (conf_index != 0) pending_conf_index_ = conf_index;
      AppendEntry(std::move(ents));
      BcastAppend();
      return absl::OkStatus();
    }
    case raftpb::MsgReadIndex:
      HandleReadIndex(std::move(m));
      return absl::OkStatus();
    default:
      break;
  }

  // Messages about one follower.
  Progress* pr = tracker_.Get(m.from());
  if (pr == nullptr) {
    RAFT_LOG(LogLevel::kDebug, "no progress available for %d", m.from());
    return absl::OkStatus();
  }
  switch (m.msg_type()) {
    case raftpb::MsgAppendResponse:
      HandleAppendResponse(m, pr);
      break;
    case raftpb::MsgHeartbeatResponse:
      HandleHeartbeatResponse(m, pr);
      break;
    case raftpb::MsgSnapStatus:
      if (pr->state != ProgressState::kSnapshot) break;
      if (m.reject()) {
        pr->pending_snapshot = 0;
        RAFT_LOG(LogLevel::kInfo,
                 "snapshot to %d failed, resumed sending replication "
                 "messages [%s]",
                 m.from(), pr->ToString());
      }
      pr->BecomeProbe();
      // Wait for the follower's answer (or a heartbeat response, after a
      // failure) before sending the next append.
      pr->probe_sent = true;
      break;
    case raftpb::MsgUnreachable:
      // Streamed appends were probably lost: fall back to probing.
      if (pr->state == ProgressState::kReplicate) pr->BecomeProbe();
      break;
    case raftpb::MsgTransferLeader:
      HandleTransferLeader(m, pr);
      break;
    default:
      break;
  }
  return absl::OkStatus();
}

void Raft::HandleAppendResponse(const Message& m, Progress* pr) {
  pr->recent_active = true;
  if (m.reject()) {
    RAFT_LOG(LogLevel::kDebug,
             "received MsgAppendResponse(rejected, hint: (index %d, term %d)) "
             "from %d for index %d",
             m.reject_hint(), m.log_term(), m.from(), m.index());
    uint64_t next_probe = m.reject_hint();
    if (m.log_term() > 0) {
      // Skip every entry of ours whose term is above the follower's term at
      // its hint: none of them can match (fast backtracking).
      next_probe =
          raft_log_.FindConflictByTerm(m.reject_hint(), m.log_term()).first;
    }
    if (pr->MaybeDecrTo(m.index(), next_probe)) {
      if (pr->state == ProgressState::kReplicate) pr->BecomeProbe();
      SendAppend(m.from());
    }
    return;
  }
  bool old_paused = pr->IsPaused();
  if (!pr->MaybeUpdate(m.index())) return;
  switch (pr->state) {
    case ProgressState::kProbe:
      pr->BecomeReplicate();
      break;
    case ProgressState::kSnapshot:
      if (pr->match + 1 >= raft_log_.first_index()) {
        // The follower caught up past the snapshot (through it or through
        // appends): resume normal replication.
        pr->BecomeProbe();
        pr->BecomeReplicate();
      } else if (pr->match >= pr->pending_snapshot) {
        // It installed the snapshot, but the log was compacted past it in
        // the meantime: probe, which sends a newer snapshot.
        pr->BecomeProbe();
      }
      break;
    case ProgressState::kReplicate:
      pr->inflights.FreeLE(m.index());
      break;
  }
  const bool committed = MaybeCommit();
  if (committed) ReleasePendingReadIndexMessages();
  if (committed && ShouldBcastCommit()) {
    BcastAppend();
  } else if (old_paused) {
    SendAppend(m.from());
  }
  // Send whatever the size limit or the inflight window held back.
  while (MaybeSendAppend(m.from(), false)) {
  }
  if (m.from() == lead_transferee_ && pr->match == raft_log_.last_index()) {
    RAFT_LOG(LogLevel::kInfo,
             "sent MsgTimeoutNow to %d after received MsgAppendResponse",
             m.from());
    SendTimeoutNow(m.from());
  }
}

void Raft::HandleHeartbeatResponse(const Message& m, Progress* pr) {
  pr->recent_active = true;
  pr->probe_sent = false;
  if (pr->state == ProgressState::kReplicate && pr->inflights.Full()) {
    // Let one append through a full window: if the window's messages were
    // lost, the follower's rejection of it restarts replication.
    pr->inflights.FreeFirstOne();
  }
  if (pr->match < raft_log_.last_index()) {
    SendAppend(m.from());
  } else if (skip_bcast_commit_ && m.commit() < raft_log_.committed()) {
    // Holds the whole log but not the commit index, which no broadcast
    // carried: an (empty) append does.
    SendAppend(m.from());
  }

  if (read_only_option_ != ReadOnlyOption::kSafe || m.context().empty()) {
    return;
  }
  uint64_t round = ReadOnly::DecodeRound(m.context());
  const std::set<uint64_t>* acks = read_only_.RecvAck(m.from(), round);
  if (acks == nullptr) return;
  std::map<uint64_t, bool> votes;
  for (uint64_t id : *acks) votes[id] = true;
  if (MajorityVoteResult(tracker_.Voters(), votes) != VoteResult::kWon) return;
  for (ReadIndexStatus& rs : read_only_.Advance(round)) {
    ResponseToReadIndexReq(rs.req, rs.index);
  }
}

void Raft::HandleTransferLeader(const Message& m, Progress* pr) {
  if (pr->is_learner) {
    RAFT_LOG(LogLevel::kDebug, "ignored transferring leadership to learner %d",
             m.from());
    return;
  }
  uint64_t transferee = m.from();
  if (lead_transferee_ != kNone) {
    if (lead_transferee_ == transferee) {
      RAFT_LOG(LogLevel::kInfo,
               "transfer leadership to %d is in progress, ignores request to "
               "the same node",
               transferee);
      return;
    }
    RAFT_LOG(LogLevel::kInfo, "abort previous transferring leadership to %d",
             lead_transferee_);
    AbortLeaderTransfer();
  }
  if (transferee == id_) {
    RAFT_LOG(LogLevel::kDebug,
             "is already leader, ignored transferring leadership to self");
    return;
  }
  RAFT_LOG(LogLevel::kInfo, "starts to transfer leadership to %d", transferee);
  // The transfer must finish within an election timeout.
  election_elapsed_ = 0;
  lead_transferee_ = transferee;
  if (pr->match == raft_log_.last_index()) {
    SendTimeoutNow(transferee);
  } else {
    SendAppend(transferee);
  }
}

void Raft::HandleReadIndex(Message m) {
  if (tracker_.IsSingleton() && tracker_.IsVoter(id_)) {
    // A group of one confirms its leadership by itself.
    ResponseToReadIndexReq(m, raft_log_.committed());
    return;
  }
  if (!CommittedEntryInCurrentTerm()) {
    // Until an entry of this term commits, the commit index may trail what
    // an earlier leader committed: wait for the no-op.
    pending_read_index_messages_.push_back(std::move(m));
    return;
  }
  SendReadIndexResponse(std::move(m));
}

void Raft::SendReadIndexResponse(Message req) {
  switch (read_only_option_) {
    case ReadOnlyOption::kSafe: {
      bool opened = false;
      uint64_t round = read_only_.AddRequest(
          raft_log_.committed(), std::move(req), read_round_open_, &opened);
      if (opened) {
        read_only_.RecvAck(id_, round);
        read_round_open_ = true;
        BcastHeartbeatWithCtx(ReadOnly::EncodeRound(round));
      }
      break;
    }
    case ReadOnlyOption::kLeaseBased:
      ResponseToReadIndexReq(req, raft_log_.committed());
      break;
  }
}

void Raft::ResponseToReadIndexReq(const Message& req, uint64_t index) {
  if (req.from() == kNone || req.from() == id_) {
    read_states_.push_back(ReadState{index, req.context()});
    return;
  }
  Message resp;
  resp.set_msg_type(raftpb::MsgReadIndexResponse);
  resp.set_to(req.from());
  resp.set_index(index);
  resp.set_context(req.context());
  Send(std::move(resp));
}

void Raft::ReleasePendingReadIndexMessages() {
  if (pending_read_index_messages_.empty()) return;
  if (!CommittedEntryInCurrentTerm()) return;
  std::vector<Message> pending;
  pending.swap(pending_read_index_messages_);
  for (Message& m : pending) SendReadIndexResponse(std::move(m));
}

absl::Status Raft::StepCandidate(Message& m) {
  // A pre-candidate counts pre-votes, a candidate votes; answers of the
  // other kind belong to an earlier round.
  raftpb::MessageType my_resp = state_ == StateType::kPreCandidate
                                    ? raftpb::MsgPreVoteResponse
                                    : raftpb::MsgRequestVoteResponse;
  switch (m.msg_type()) {
    case raftpb::MsgPropose:
      RAFT_LOG(LogLevel::kInfo, "no leader at term %d; dropping proposal",
               term_);
      return MakeError(ErrorKind::kProposalDropped, "no leader");
    case raftpb::MsgReadIndex:
      return MakeError(ErrorKind::kProposalDropped,
                       "no leader to confirm the read index");
    case raftpb::MsgAppend:
      BecomeFollower(m.term(), m.from());
      HandleAppendEntries(m);
      break;
    case raftpb::MsgHeartbeat:
      BecomeFollower(m.term(), m.from());
      HandleHeartbeat(m);
      break;
    case raftpb::MsgSnapshot:
      BecomeFollower(m.term(), m.from());
      HandleSnapshot(m);
      break;
    case raftpb::MsgRequestVoteResponse:
    case raftpb::MsgPreVoteResponse: {
      if (m.msg_type() != my_resp || !tracker_.IsVoter(m.from())) break;
      VoteResult res = Poll(m.from(), m.msg_type(), !m.reject());
      if (res == VoteResult::kWon) {
        if (state_ == StateType::kPreCandidate) {
          Campaign(CampaignType::kElection);
        } else {
          BecomeLeader();
          BcastAppend();
        }
      } else if (res == VoteResult::kLost) {
        // A pre-vote response may carry a future term: fall back at ours.
        BecomeFollower(term_, kNone);
      }
      break;
    }
    default:
      break;
  }
  return absl::OkStatus();
}

absl::Status Raft::StepFollower(Message& m) {
  switch (m.msg_type()) {
    case raftpb::MsgPropose:
      if (lead_ == kNone) {
        RAFT_LOG(LogLevel::kInfo, "no leader at term %d; dropping proposal",
                 term_);
        return MakeError(ErrorKind::kProposalDropped, "no leader");
      }
      if (!forward_proposals_) {
        return MakeError(
            ErrorKind::kProposalDropped,
            absl::StrCat("not the leader (leader is ", lead_, ")"));
      }
      // On to the leader, without a term: it appends the entries at its own.
      m.set_to(lead_);
      Send(std::move(m));
      break;
    case raftpb::MsgAppend:
      election_elapsed_ = 0;
      lead_ = m.from();
      HandleAppendEntries(m);
      break;
    case raftpb::MsgHeartbeat:
      election_elapsed_ = 0;
      lead_ = m.from();
      HandleHeartbeat(m);
      break;
    case raftpb::MsgSnapshot:
      election_elapsed_ = 0;
      lead_ = m.from();
      HandleSnapshot(m);
      break;
    case raftpb::MsgTransferLeader:
      if (lead_ == kNone) {
        RAFT_LOG(LogLevel::kInfo,
                 "no leader at term %d; dropping leader transfer message",
                 term_);
        break;
      }
      // Forward to the leader; `from` still names the transferee.
      m.set_to(lead_);
      m.set_term(0);
      Send(std::move(m));
      break;
    case raftpb::MsgTimeoutNow:
      RAFT_LOG(LogLevel::kInfo,
               "received MsgTimeoutNow from %d and starts an election to get "
               "leadership",
               m.from());
      // Leadership transfers never use pre-vote: the leader asked for it.
      Hup(CampaignType::kTransfer);
      break;
    case raftpb::MsgReadIndex:
      if (lead_ == kNone) {
        return MakeError(ErrorKind::kProposalDropped,
                         "no leader to confirm the read index");
      }
      m.set_to(lead_);
      Send(std::move(m));
      break;
    case raftpb::MsgReadIndexResponse:
      read_states_.push_back(ReadState{m.index(), m.context()});
      break;
    default:
      break;
  }
  return absl::OkStatus();
}

void Raft::HandleAppendEntries(Message& m) {
  Message resp;
  resp.set_msg_type(raftpb::MsgAppendResponse);
  resp.set_to(m.from());
  if (m.index() < raft_log_.committed()) {
    // Everything up to committed matches the leader already.
    resp.set_index(raft_log_.committed());
    Send(std::move(resp));
    return;
  }
  std::vector<Entry> ents;
  ents.reserve(static_cast<size_t>(m.entries_size()));
  for (Entry& e : *m.mutable_entries()) ents.push_back(std::move(e));
  if (std::optional<uint64_t> last = raft_log_.MaybeAppend(
          m.index(), m.log_term(), m.commit(), std::move(ents))) {
    resp.set_index(*last);
    Send(std::move(resp));
    return;
  }
  // Reject, with a hint: the largest index at or below the leader's probe
  // whose term is at most the leader's term there. The leader can skip
  // straight past every entry that cannot match.
  uint64_t hint_index = std::min(m.index(), raft_log_.last_index());
  auto [hint, hint_term] =
      raft_log_.FindConflictByTerm(hint_index, m.log_term());
  RAFT_LOG(LogLevel::kDebug,
           "[logterm: %d, index: %d] rejected MsgAppend [logterm: %d, index: "
           "%d] from %d",
           raft_log_.ZeroTermOnErr(m.index()), m.index(), m.log_term(),
           m.index(), m.from());
  resp.set_index(m.index());
  resp.set_reject(true);
  resp.set_reject_hint(hint);
  resp.set_log_term(hint_term);
  Send(std::move(resp));
}

void Raft::HandleHeartbeat(const Message& m) {
  raft_log_.CommitTo(m.commit());
  Message resp;
  resp.set_msg_type(raftpb::MsgHeartbeatResponse);
  resp.set_to(m.from());
  resp.set_context(m.context());
  // For a leader with Config::skip_bcast_commit: whether this node still
  // needs the commit index.
  resp.set_commit(raft_log_.committed());
  Send(std::move(resp));
}

void Raft::HandleSnapshot(Message& m) {
  uint64_t sindex = m.snapshot().metadata().index();
  uint64_t sterm = m.snapshot().metadata().term();
  Message resp;
  resp.set_msg_type(raftpb::MsgAppendResponse);
  resp.set_to(m.from());
  if (Restore(std::move(*m.mutable_snapshot()))) {
    RAFT_LOG(LogLevel::kInfo,
             "[commit: %d] restored snapshot [index: %d, term: %d]",
             raft_log_.committed(), sindex, sterm);
    resp.set_index(raft_log_.last_index());
  } else {
    RAFT_LOG(LogLevel::kInfo,
             "[commit: %d] ignored snapshot [index: %d, term: %d]",
             raft_log_.committed(), sindex, sterm);
    resp.set_index(raft_log_.committed());
  }
  Send(std::move(resp));
}

bool Raft::Restore(raftpb::Snapshot snap) {
  const raftpb::SnapshotMetadata& meta = snap.metadata();
  if (meta.index() <= raft_log_.committed()) return false;
  if (state_ != StateType::kFollower) {
    // Only a follower installs snapshots; a leader or candidate receiving
    // one of its own term means something is badly wrong elsewhere, so get
    // out of the way.
    RAFT_LOG(LogLevel::kWarning,
             "attempted to restore snapshot as %s; becoming follower",
             StateTypeName(state_));
    BecomeFollower(term_ + 1, kNone);
    return false;
  }
  const raftpb::ConfState& cs = meta.conf_state();
  bool found = false;
  for (uint64_t id : cs.voters()) found = found || id == id_;
  for (uint64_t id : cs.learners()) found = found || id == id_;
  if (!found) {
    RAFT_LOG(LogLevel::kWarning,
             "attempted to restore snapshot but it is not in the ConfState; "
             "should never happen");
    return false;
  }
  if (raft_log_.MatchTerm(meta.index(), meta.term())) {
    // We already hold the snapshot's last entry: just commit up to it.
    RAFT_LOG(LogLevel::kInfo,
             "fast-forwarded commit to snapshot [index: %d, term: %d]",
             meta.index(), meta.term());
    raft_log_.CommitTo(meta.index());
    return false;
  }
  raftpb::ConfState membership = cs;
  raft_log_.Restore(std::move(snap));
  ApplyConfState(membership);
  return true;
}

raftpb::ConfState Raft::ApplyConfChange(const raftpb::ConfChange& cc) {
  uint64_t id = cc.node_id();
  uint64_t next = raft_log_.last_index() + 1;
  switch (cc.change_type()) {
    case raftpb::AddNode: {
      Progress* pr = tracker_.Get(id);
      if (pr == nullptr) {
        Progress fresh = NewProgress(next, false);
        fresh.recent_active = true;
        tracker_.SetProgress(id, fresh);
      } else {
        pr->is_learner = false;
      }
      break;
    }
    case raftpb::AddLearnerNode: {
      Progress* pr = tracker_.Get(id);
      if (pr == nullptr) {
        Progress fresh = NewProgress(next, true);
        fresh.recent_active = true;
        tracker_.SetProgress(id, fresh);
      } else if (!pr->is_learner) {
        RAFT_LOG(LogLevel::kWarning, "ignoring demotion of voter %d to learner",
                 id);
      }
      break;
    }
    case raftpb::RemoveNode:
      tracker_.RemoveProgress(id);
      break;
    default:
      RAFT_LOG(LogLevel::kWarning, "unknown conf change type %d",
               static_cast<int>(cc.change_type()));
      break;
  }
  RAFT_LOG(LogLevel::kInfo, "applied %s of %d: voters [%s] learners [%s]",
           raftpb::ConfChangeType_Name(cc.change_type()), id,
           absl::StrJoin(tracker_.Voters(), ","),
           absl::StrJoin(tracker_.Learners(), ","));
  if (state_ != StateType::kLeader) return tracker_.GetConfState();
  if (!tracker_.IsVoter(id_)) {
    // The leader was removed (or is no longer a voter): it cannot count
    // itself toward any quorum, so it steps down and lets the remaining
    // voters elect a leader.
    RAFT_LOG(LogLevel::kInfo, "removed from the voters; stepping down");
    BecomeFollower(term_, kNone);
    return tracker_.GetConfState();
  }
  if (lead_transferee_ != kNone && !tracker_.IsVoter(lead_transferee_)) {
    AbortLeaderTransfer();
  }
  // A smaller quorum may commit entries that were waiting.
  if (MaybeCommit()) {
    ReleasePendingReadIndexMessages();
    BcastAppend();
  }
  return tracker_.GetConfState();
}

}  // namespace raftkv::raft
