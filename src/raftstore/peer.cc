#include "raftstore/peer.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "raft/errors.h"
#include "raftstore/snap.h"
#include "raftstore/store.h"
#include "storage/keys.h"

namespace raftkv::raftstore {

using raft_cmdpb::CmdType;
using raft_cmdpb::RaftCmdRequest;
using raft_cmdpb::RaftCmdResponse;

raft_cmdpb::RaftCmdResponse ErrorResponse(const errorpb::Error& err,
                                          uint64_t current_term) {
  RaftCmdResponse resp;
  *resp.mutable_header()->mutable_error() = err;
  resp.mutable_header()->set_current_term(current_term);
  return resp;
}

errorpb::Error NotLeaderError(uint64_t region_id, const metapb::Peer* leader) {
  errorpb::Error e;
  e.set_message(absl::StrCat("peer is not the leader of region ", region_id));
  e.mutable_not_leader()->set_region_id(region_id);
  if (leader != nullptr) *e.mutable_not_leader()->mutable_leader() = *leader;
  return e;
}

errorpb::Error StaleCommandError() {
  errorpb::Error e;
  e.set_message("stale command");
  e.mutable_stale_command();
  return e;
}

errorpb::Error EpochNotMatchError(const metapb::Region& current) {
  errorpb::Error e;
  e.set_message("epoch not match");
  *e.mutable_epoch_not_match()->add_current_regions() = current;
  return e;
}

errorpb::Error KeyNotInRegionError(const std::string& key,
                                   const metapb::Region& region) {
  errorpb::Error e;
  e.set_message("key is not in region");
  auto* k = e.mutable_key_not_in_region();
  k->set_key(key);
  k->set_region_id(region.id());
  k->set_start_key(region.start_key());
  k->set_end_key(region.end_key());
  return e;
}

errorpb::Error MessageError(const std::string& message) {
  errorpb::Error e;
  e.set_message(message);
  return e;
}

namespace {

bool KeyInRegion(const std::string& key, const metapb::Region& r) {
  return key >= r.start_key() && (r.end_key().empty() || key < r.end_key());
}

const metapb::Peer* FindPeer(const metapb::Region& r, uint64_t peer_id) {
  for (const metapb::Peer& p : r.peers()) {
    if (p.id() == peer_id) return &p;
  }
  return nullptr;
}

[[noreturn]] void Panic(const std::string& what) {
  std::fprintf(stderr, "raftstore fatal: %s\n", what.c_str());
  std::abort();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Peer>> Peer::Create(
    const PeerEnv& env, const metapb::Region& region) {
  const StoreConfig& config = *env.config;
  const metapb::Peer* meta = nullptr;
  for (const metapb::Peer& p : region.peers()) {
    if (p.store_id() == config.store_id) meta = &p;
  }
  if (meta == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "region ", region.id(), " has no peer on store ", config.store_id));
  }
  std::string tag = absl::StrCat("[region ", region.id(), "] ", meta->id());
  absl::StatusOr<std::unique_ptr<PeerStorage>> ps =
      PeerStorage::Create(env.raft_engine, env.kv_engine, region, tag);
  if (!ps.ok()) return ps.status();
  raft::Config rc;
  rc.id = meta->id();
  rc.election_tick = config.election_ticks;
  rc.heartbeat_tick = config.heartbeat_ticks;
  rc.storage = ps->get();
  rc.applied = (*ps)->applied_index();
  rc.pre_vote = config.pre_vote;
  rc.check_quorum = config.check_quorum;
  rc.skip_bcast_commit = config.skip_bcast_commit;
  rc.max_size_per_msg = config.max_size_per_msg;
  rc.max_inflight_msgs = config.max_inflight_msgs;
  rc.seed = config.seed * 0x9E3779B97F4A7C15ULL + meta->id();
  absl::StatusOr<std::unique_ptr<raft::RawNode>> node =
      raft::RawNode::Create(rc);
  if (!node.ok()) return node.status();
  std::unique_ptr<Peer> peer(
      new Peer(*meta, *std::move(ps), *std::move(node), env));
  if (absl::Status s = peer->LoadDedupTable(); !s.ok()) return s;
  peer->kv_store_.set_revision_hint(env.revision_hint);
  // Entries at or below the truncated index that are still on disk (a log
  // GC that never ran before a restart) are left to the first GC tick.
  {
    auto it =
        env.raft_engine->NewIterator(storage::RaftLogStartKey(region.id()),
                                     storage::RaftLogEndKey(region.id()));
    it->SeekToFirst();
    uint64_t first = ~0ull;
    if (it->Valid()) {
      absl::StatusOr<uint64_t> i =
          storage::DecodeRaftLogIndex(region.id(), it->key());
      if (!i.ok()) return i.status();
      first = *i;
    }
    if (!it->status().ok()) return it->status();
    uint64_t truncated = peer->storage_->truncated_index();
    peer->gc_done_ = first > truncated ? truncated : first - 1;
  }
  if (env.snap_dir != nullptr) {
    Peer* p = peer.get();
    p->storage_->set_snapshot_generator([p] { p->GenerateSnapshot(); });
  }
  return peer;
}

absl::Status Peer::LoadDedupTable() {
  dedup_.clear();
  auto it = kv_engine_->NewIterator(storage::DedupStartKey(region_id()),
                                    storage::DedupEndKey(region_id()));
  std::string prefix = storage::DedupStartKey(region_id());
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    uint64_t client = 0, seq = 0;
    if (!storage::DecodeU64(it->key().substr(prefix.size()), &client) ||
        !storage::DecodeU64(it->value(), &seq)) {
      return absl::DataLossError("malformed exactly-once entry");
    }
    dedup_[client] = seq;
  }
  return it->status();
}

void Peer::Propose(RaftCmdRequest req, Callback cb) {
  if (!IsLeader()) {
    cb(CmdResult{ErrorResponse(
        NotLeaderError(region_id(), FindPeer(region(), LeaderId())), term())});
    return;
  }
  if (req.has_admin_request()) {
    const raft_cmdpb::AdminRequest& admin = req.admin_request();
    if (admin.cmd_type() != raft_cmdpb::TransferLeader) {
      cb(CmdResult{
          ErrorResponse(MessageError(absl::StrCat(
                            "unsupported admin command ",
                            raft_cmdpb::AdminCmdType_Name(admin.cmd_type()))),
                        term())});
      return;
    }
    if (FindPeer(region(), admin.transfer_leader().peer().id()) == nullptr) {
      cb(CmdResult{ErrorResponse(
          MessageError("transfer target is not a peer of the region"),
          term())});
      return;
    }
    node_->TransferLeader(admin.transfer_leader().peer().id());
    RaftCmdResponse resp;
    resp.mutable_header()->set_current_term(term());
    resp.mutable_admin_response()->set_cmd_type(raft_cmdpb::TransferLeader);
    resp.mutable_admin_response()->mutable_transfer_leader();
    cb(CmdResult{std::move(resp)});
    return;
  }
  std::string data = req.SerializeAsString();
  if (absl::Status s = node_->Propose(std::move(data)); !s.ok()) {
    // Refused by raft (e.g. a leader transfer is in progress): the client
    // retries, like for any other NotLeader.
    errorpb::Error e = NotLeaderError(region_id(), nullptr);
    e.set_message(s.ToString());
    cb(CmdResult{ErrorResponse(e, term())});
    return;
  }
  proposals_.push_back(
      Proposal{node_->raft().raft_log().last_index(), term(), std::move(cb)});
}

void Peer::Step(raftpb::Message m) {
  if (m.msg_type() != raftpb::MsgSnapshot) {
    // Errors are messages from non-members or of local types: drop them.
    (void)node_->Step(std::move(m));
    return;
  }
  if (env_.snap_dir == nullptr) return;  // nowhere to apply it from
  raftpb::Snapshot incoming = m.snapshot();
  (void)node_->Step(std::move(m));
  // Raft ignores a snapshot that is not newer than what it has: the files
  // of that stream are of no use then. (Those of the snapshot raft took, or
  // of the one being applied, are another stream's: different receive tag.)
  auto same = [&incoming](const raftpb::Snapshot& s) {
    return s.metadata().index() == incoming.metadata().index() &&
           s.metadata().term() == incoming.metadata().term() &&
           s.data() == incoming.data();
  };
  const auto& pending = node_->raft().raft_log().UnstableSnapshot();
  if ((pending && same(*pending)) || (ready_ && same(ready_->snapshot))) {
    return;
  }
  DeleteSnapshotFiles(env_.snap_dir, /*received=*/true, region_id(), incoming);
}

void Peer::Tick() {
  node_->Tick();
  ++ticks_;
  // A round raft never answered (its message was lost, the leader went
  // away without this peer noticing yet) is given up: the caller retries.
  uint64_t limit = 2 * static_cast<uint64_t>(env_.config->election_ticks);
  for (auto it = read_rounds_.begin(); it != read_rounds_.end();) {
    if (ticks_ - it->second.started_tick <= limit) {
      ++it;
      continue;
    }
    errorpb::Error e = StaleCommandError();
    e.set_message("read index round timed out");
    for (Callback& cb : it->second.cbs) {
      cb(CmdResult{ErrorResponse(e, term())});
    }
    it = read_rounds_.erase(it);
  }
}

void Peer::ReadIndex(Callback cb) { queued_reads_.push_back(std::move(cb)); }

void Peer::FlushReads() {
  if (queued_reads_.empty()) return;
  std::vector<Callback> cbs;
  cbs.swap(queued_reads_);
  std::string ctx = storage::EncodeU64(++next_read_ctx_);
  if (LeaderId() == 0 || !node_->ReadIndex(ctx).ok()) {
    for (Callback& cb : cbs) {
      cb(CmdResult{
          ErrorResponse(NotLeaderError(region_id(), nullptr), term())});
    }
    return;
  }
  read_rounds_[ctx] = ReadRound{std::move(cbs), ticks_};
}

void Peer::TakeReadStates(std::vector<raft::ReadState> states) {
  for (raft::ReadState& rs : states) {
    auto it = read_rounds_.find(rs.request_ctx);
    if (it == read_rounds_.end()) continue;  // given up already
    ready_reads_.push_back(ReadyRead{rs.index, std::move(it->second.cbs)});
    read_rounds_.erase(it);
  }
}

void Peer::ServeReadyReads() {
  uint64_t applied = storage_->applied_index();
  while (!ready_reads_.empty() && ready_reads_.front().index <= applied) {
    ReadyRead r = std::move(ready_reads_.front());
    ready_reads_.pop_front();
    // One view for the whole round: it includes everything applied.
    std::shared_ptr<storage::Snapshot> view = kv_engine_->NewSnapshot();
    for (Callback& cb : r.cbs) {
      CmdResult result;
      result.response.mutable_header()->set_current_term(term());
      auto* out = result.response.add_responses();
      out->set_cmd_type(raft_cmdpb::Snap);
      *out->mutable_snap()->mutable_region() = region();
      result.snap = view;
      cb(std::move(result));
    }
  }
}

void Peer::FailReads(const errorpb::Error& err) {
  std::vector<Callback> cbs;
  for (auto& [ctx, round] : read_rounds_) {
    for (Callback& cb : round.cbs) cbs.push_back(std::move(cb));
  }
  read_rounds_.clear();
  for (Callback& cb : cbs) cb(CmdResult{ErrorResponse(err, term())});
}

void Peer::ReportSnapshot(uint64_t to, bool failed) {
  node_->ReportSnapshot(to, failed ? raft::RawNode::SnapshotStatus::kFailure
                                   : raft::RawNode::SnapshotStatus::kFinish);
}

bool Peer::PrepareReady(storage::WriteBatch* raft_wb, Transport* transport,
                        bool* must_sync) {
  if (ready_.has_value()) {
    // A held snapshot Ready: its raft part is persisted once its kv part
    // is applied.
    if (!snapshot_kv_done_) return false;
    if (storage_->SaveReadyState(*ready_, raft_wb)) *must_sync = true;
    return true;
  }
  if (!node_->HasReady()) return false;
  ready_ = node_->GetReady();
  if (!raft::IsEmptySnap(ready_->snapshot)) {
    StartApplySnapshot(ready_->snapshot);
    return false;
  }
  if (storage_->SaveReadyState(*ready_, raft_wb)) *must_sync = true;
  if (IsLeader() && !ready_->messages.empty()) {
    // A leader's messages may leave before its own write is durable (Raft
    // thesis 10.2.1): it counts its own log only when it steps the next
    // message, which happens after this pass's synced write. Followers'
    // answers (and votes) wait for the write.
    Send(std::move(ready_->messages), transport);
    ready_->messages.clear();
  }
  return true;
}

void Peer::FinishReady(Transport* transport) {
  raft::Ready rd = std::move(*ready_);
  ready_.reset();
  if (snapshot_kv_done_) {
    // The raft engine now starts after the snapshot: its files can go.
    snapshot_kv_done_ = false;
    DeleteSnapshotFiles(env_.snap_dir, /*received=*/true, region_id(),
                        rd.snapshot);
  }
  Send(std::move(rd.messages), transport);
  if (!rd.read_states.empty()) TakeReadStates(std::move(rd.read_states));
  if (!rd.committed_entries.empty()) ApplyEntries(rd.committed_entries);
  if (rd.soft_state) {
    if (rd.soft_state->raft_state != raft::StateType::kLeader) {
      AbandonProposals();
    }
    compact_proposed_ = 0;
    // A round in flight may have been dropped by a leader that is gone.
    errorpb::Error e = StaleCommandError();
    e.set_message("leadership changed during a read index round");
    FailReads(e);
  }
  ServeReadyReads();
  node_->Advance();
}

void Peer::OnGcTick() {
  if (IsLeader()) ProposeCompactLog();
  ScheduleLogGc();
}

void Peer::ProposeCompactLog() {
  uint64_t applied = storage_->applied_index();
  uint64_t truncated = storage_->truncated_index();
  uint64_t limit = env_.config->raft_log_gc_count_limit;
  if (limit == 0 || applied - truncated < limit) return;
  // One at a time: wait until the last one is applied (or leadership
  // changed, which resets compact_proposed_).
  if (compact_proposed_ > truncated) return;
  uint64_t index = applied - limit / 2;
  absl::StatusOr<uint64_t> term = storage_->Term(index);
  if (!term.ok()) return;
  RaftCmdRequest req;
  req.mutable_header()->set_region_id(region_id());
  *req.mutable_header()->mutable_peer() = meta_;
  *req.mutable_header()->mutable_region_epoch() = region().region_epoch();
  auto* admin = req.mutable_admin_request();
  admin->set_cmd_type(raft_cmdpb::CompactLog);
  admin->mutable_compact_log()->set_compact_index(index);
  admin->mutable_compact_log()->set_compact_term(*term);
  if (node_->Propose(req.SerializeAsString()).ok()) compact_proposed_ = index;
}

void Peer::ScheduleLogGc() {
  uint64_t truncated = storage_->truncated_index();
  if (gc_running_ || truncated <= gc_done_) return;
  gc_running_ = true;
  storage::Engine* kv = kv_engine_;
  storage::Engine* raft = raft_engine_;
  uint64_t region = region_id();
  uint64_t from = gc_done_;
  std::string tag = storage_->tag();
  // A copy: the work may outlive nothing of the store's.
  auto fail = [fp = env_.config->failpoint](std::string_view name) {
    return fp && fp(name);
  };
  env_.scheduler->Schedule(
      TaskKind::kLogGc,
      [kv, raft, region, from, truncated, tag, fail] {
        if (fail("log_gc_before_sync")) return;
        // The truncation rests on applied state the kv engine has not
        // necessarily synced: make it durable before the entries go.
        if (absl::Status s = kv->SyncWal(); !s.ok()) {
          Panic(absl::StrCat(tag,
                             " kv sync before log GC failed: ", s.ToString()));
        }
        if (fail("log_gc_before_delete")) return;
        storage::WriteBatch wb;
        wb.DeleteRange(storage::RaftLogKey(region, from),
                       storage::RaftLogKey(region, truncated + 1));
        if (absl::Status s = raft->Write(wb, /*sync=*/false); !s.ok()) {
          Panic(absl::StrCat(tag, " log GC failed: ", s.ToString()));
        }
      },
      [this, truncated] {
        gc_running_ = false;
        gc_done_ = truncated;
      });
}

void Peer::ExecCompactLog(const raft_cmdpb::CompactLogRequest& req,
                          raft_serverpb::RaftApplyState* apply) {
  uint64_t index = req.compact_index();
  // Stale (an earlier compaction or a snapshot went further) or invalid
  // (past what is applied): nothing to do.
  if (index <= apply->truncated_state().index() ||
      index > apply->applied_index()) {
    return;
  }
  apply->mutable_truncated_state()->set_index(index);
  apply->mutable_truncated_state()->set_term(req.compact_term());
}

void Peer::ExecuteEtcd(const raft_cmdpb::EtcdRequest& req,
                       raft_cmdpb::EtcdResponse* out,
                       storage::WriteBatch* kv_wb) {
  absl::Status st;
  auto take = [&st](auto&& result, auto* into) {
    if (result.ok()) {
      *into = *std::move(result);
    } else {
      st = result.status();
    }
  };
  switch (req.request_case()) {
    case raft_cmdpb::EtcdRequest::kPut:
      take(kv_store_.Put(req.put(), kv_wb), out->mutable_put());
      break;
    case raft_cmdpb::EtcdRequest::kDeleteRange:
      take(kv_store_.DeleteRange(req.delete_range(), kv_wb),
           out->mutable_delete_range());
      break;
    case raft_cmdpb::EtcdRequest::kTxn:
      take(kv_store_.Txn(req.txn(), kv_wb), out->mutable_txn());
      break;
    case raft_cmdpb::EtcdRequest::kCompaction:
      take(kv_store_.Compact(req.compaction(), kv_wb),
           out->mutable_compaction());
      break;
    case raft_cmdpb::EtcdRequest::kRange:
      take(kv_store_.Range(req.range()), out->mutable_range());
      break;
    default:
      st = absl::InvalidArgumentError("etcdserver: empty request");
      break;
  }
  if (st.ok()) return;
  // The engine failing under the state machine is not an answer: every
  // replica must apply the same, so stop here.
  switch (st.code()) {
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kUnknown:
      Panic(absl::StrCat(storage_->tag(), " etcd apply: ", st.ToString()));
    default:
      break;
  }
  out->Clear();
  out->set_error_code(static_cast<int32_t>(st.code()));
  out->set_error_message(std::string(st.message()));
}

void Peer::GenerateSnapshot() {
  // The kv engine holds exactly what is applied (apply writes are flushed
  // before the apply state moves), so a view taken now is the state at
  // applied_index.
  uint64_t index = storage_->applied_index();
  absl::StatusOr<uint64_t> term = storage_->Term(index);
  if (!term.ok()) {
    (void)storage_->OnSnapshotGenerated(term.status());
    return;
  }
  auto view = std::shared_ptr<storage::Snapshot>(kv_engine_->NewSnapshot());
  auto result = std::make_shared<absl::StatusOr<raftpb::Snapshot>>(
      absl::UnknownError("not generated"));
  storage::SnapDir* dir = env_.snap_dir;
  metapb::Region region = this->region();
  uint64_t t = *term;
  FailpointFn fp = env_.config->failpoint;
  env_.scheduler->Schedule(
      TaskKind::kSnapGenerate,
      [dir, view, region, index, t, result, fp] {
        *result =
            raftkv::raftstore::GenerateSnapshot(dir, *view, region, index, t);
        // A crash here loses the generation: raft asks again.
        if (fp) (void)fp("snap_gen_after_files");
      },
      [this, result] {
        std::optional<raftpb::Snapshot> old =
            storage_->OnSnapshotGenerated(std::move(*result));
        if (old.has_value()) {
          DeleteSnapshotFiles(env_.snap_dir, /*received=*/false, region_id(),
                              *old);
        }
      });
}

void Peer::StartApplySnapshot(const raftpb::Snapshot& snap) {
  if (env_.snap_dir == nullptr) {
    Panic(absl::StrCat(storage_->tag(),
                       " got a snapshot but this store has no snapshot dir"));
  }
  absl::StatusOr<raft_serverpb::RaftSnapshotData> data =
      ParseSnapshotData(snap);
  if (!data.ok()) {
    // The transport verified it before raft accepted it.
    Panic(absl::StrCat(storage_->tag(), " accepted a malformed snapshot: ",
                       data.status().ToString()));
  }
  // The ingest replaces the state machine underneath the revisions and keys
  // cached since the last apply (and may not move the engine's sequence):
  // forget them first, for readers too (mvcc::RevisionHint).
  kv_store_.ClearPending();
  metapb::Region region = data->region();
  int files = data->meta().cf_files_size();
  std::string rtag = data->receive_tag();
  storage::Engine* kv = kv_engine_;
  storage::SnapDir* dir = env_.snap_dir;
  std::string tag = storage_->tag();
  // A copy: the work may outlive nothing of the store's.
  auto fail = [fp = env_.config->failpoint](std::string_view name) {
    return fp && fp(name);
  };
  env_.scheduler->Schedule(
      TaskKind::kSnapApply,
      [kv, dir, region, snap, files, rtag, tag, fail] {
        const raftpb::SnapshotMetadata& md = snap.metadata();
        // 1. Commit to the snapshot: from here a restart finishes it.
        raft_serverpb::RegionLocalState rs;
        rs.set_state(raft_serverpb::Applying);
        *rs.mutable_region() = region;
        rs.set_applying_tag(rtag);
        raft_serverpb::RaftApplyState as;
        as.set_applied_index(md.index());
        as.mutable_truncated_state()->set_index(md.index());
        as.mutable_truncated_state()->set_term(md.term());
        storage::WriteBatch wb;
        wb.PutProto(storage::RegionStateKey(region.id()), rs);
        wb.PutProto(storage::ApplyStateKey(region.id()), as);
        if (absl::Status s = kv->Write(wb, /*sync=*/true); !s.ok()) {
          Panic(absl::StrCat(tag, " snapshot apply: ", s.ToString()));
        }
        if (fail("snap_apply_after_applying_state")) return;
        // 2. The data.
        if (absl::Status s = ApplySnapshotFiles(kv, dir, region, md.term(),
                                                md.index(), files, rtag);
            !s.ok()) {
          Panic(absl::StrCat(tag, " snapshot apply: ", s.ToString()));
        }
        if (fail("snap_apply_after_ingest")) return;
        // 3. Done with the kv engine.
        rs.set_state(raft_serverpb::Normal);
        rs.clear_applying_tag();
        wb.Clear();
        wb.PutProto(storage::RegionStateKey(region.id()), rs);
        if (absl::Status s = kv->Write(wb, /*sync=*/true); !s.ok()) {
          Panic(absl::StrCat(tag, " snapshot apply: ", s.ToString()));
        }
        if (fail("snap_apply_after_normal_state")) return;
      },
      [this, snap, region] {
        storage_->OnSnapshotApplied(snap, region);
        kv_store_.ClearPending();
        if (absl::Status s = LoadDedupTable(); !s.ok()) {
          Panic(absl::StrCat(
              storage_->tag(),
              " reloading the exactly-once table: ", s.ToString()));
        }
        // 4. The raft part goes with the next pass's group commit.
        snapshot_kv_done_ = true;
      });
}

void Peer::AbandonProposals() {
  std::deque<Proposal> pending;
  pending.swap(proposals_);
  for (Proposal& p : pending) {
    errorpb::Error e = StaleCommandError();
    e.set_message(
        "leadership lost; the command may or may not be applied: retry with "
        "the same client id and sequence number");
    p.cb(CmdResult{ErrorResponse(e, term())});
  }
}

void Peer::Send(std::vector<raftpb::Message> msgs, Transport* transport) {
  for (raftpb::Message& m : msgs) {
    const metapb::Peer* to = FindPeer(region(), m.to());
    if (to == nullptr) continue;  // not a member any more
    raft_serverpb::RaftMessage rm;
    rm.set_region_id(region_id());
    *rm.mutable_from_peer() = meta_;
    *rm.mutable_to_peer() = *to;
    *rm.mutable_region_epoch() = region().region_epoch();
    uint64_t to_id = m.to();
    bool snapshot = m.msg_type() == raftpb::MsgSnapshot;
    *rm.mutable_message() = std::move(m);
    if (snapshot) {
      // Its outcome comes back as a MsgSnapStatus (ReportSnapshot).
      transport->SendSnapshot(std::move(rm));
      continue;
    }
    if (!transport->Send(std::move(rm)).ok()) {
      node_->ReportUnreachable(to_id);
    }
  }
}

std::optional<Callback> Peer::TakeProposal(uint64_t index, uint64_t term,
                                           std::vector<Answer>* answers) {
  while (!proposals_.empty() && proposals_.front().index <= index) {
    Proposal p = std::move(proposals_.front());
    proposals_.pop_front();
    if (p.index == index && p.term == term) return std::move(p.cb);
    // Its entry was overwritten by another leader's (or never made it).
    answers->push_back(
        Answer{std::move(p.cb),
               CmdResult{ErrorResponse(StaleCommandError(), this->term())}});
  }
  return std::nullopt;
}

void Peer::FlushApply(storage::WriteBatch* kv_wb) {
  kv_store_.FinishBatch(kv_wb);
  if (batch_apply_.has_value()) {
    kv_wb->PutProto(storage::ApplyStateKey(region_id()), *batch_apply_);
  }
  if (kv_wb->Empty()) return;
  // Unsynced: after a crash the kv engine is rebuilt by re-applying the raft
  // log from the durable applied index, which is written in this same batch.
  if (absl::Status s = kv_engine_->Write(*kv_wb, /*sync=*/false); !s.ok()) {
    Panic(absl::StrCat(storage_->tag(), " apply write failed: ", s.ToString()));
  }
  kv_wb->Clear();
  kv_store_.MarkWritten();
}

void Peer::ApplyEntries(const std::vector<raftpb::Entry>& entries) {
  storage::WriteBatch kv_wb;
  std::vector<Answer> answers;
  raft_serverpb::RaftApplyState apply = storage_->apply_state();
  uint64_t truncated_before = apply.truncated_state().index();
  for (const raftpb::Entry& e : entries) {
    std::optional<Callback> cb = TakeProposal(e.index(), e.term(), &answers);
    if (e.entry_type() == raftpb::EntryConfChange) {
      raftpb::ConfChange cc;
      if (cc.ParseFromString(e.data())) node_->ApplyConfChange(cc);
    } else if (!e.data().empty()) {
      RaftCmdRequest req;
      CmdResult result;
      if (!req.ParseFromString(e.data())) {
        result.response = ErrorResponse(MessageError("malformed command"));
      } else if (req.has_admin_request() &&
                 req.admin_request().cmd_type() == raft_cmdpb::CompactLog) {
        apply.set_applied_index(e.index());
        ExecCompactLog(req.admin_request().compact_log(), &apply);
        result.response.mutable_admin_response()->set_cmd_type(
            raft_cmdpb::CompactLog);
        result.response.mutable_admin_response()->mutable_compact_log();
      } else {
        result = ExecuteCommand(req, &kv_wb);
      }
      result.response.mutable_header()->set_current_term(term());
      if (cb) answers.push_back(Answer{std::move(*cb), std::move(result)});
      cb.reset();
    }
    if (cb) {
      // A no-op or membership entry at a proposal's index cannot be it.
      answers.push_back(
          Answer{std::move(*cb),
                 CmdResult{ErrorResponse(StaleCommandError(), term())}});
    }
    apply.set_applied_index(e.index());
    // The apply state goes with the batch that holds its entries' writes
    // (FlushApply adds it): once per batch, not once per entry.
    batch_apply_ = apply;
  }
  FlushApply(&kv_wb);
  batch_apply_.reset();
  storage_->set_apply_state(apply);
  if (apply.truncated_state().index() > truncated_before) ScheduleLogGc();
  for (Answer& a : answers) a.cb(std::move(a.result));
}

CmdResult Peer::ExecuteCommand(const RaftCmdRequest& req,
                               storage::WriteBatch* kv_wb) {
  CmdResult result;
  RaftCmdResponse& resp = result.response;
  if (req.has_admin_request()) {
    resp = ErrorResponse(MessageError("admin commands are not supported yet"));
    return result;
  }
  const metapb::RegionEpoch& epoch = req.header().region_epoch();
  if (epoch.version() != region().region_epoch().version()) {
    resp = ErrorResponse(EpochNotMatchError(region()));
    return result;
  }
  // Validate every request before changing anything: a command applies
  // whole or not at all.
  for (const raft_cmdpb::Request& r : req.requests()) {
    const std::string* key = nullptr;
    const std::string* cf = nullptr;
    switch (r.cmd_type()) {
      case raft_cmdpb::Get:
        key = &r.get().key();
        cf = &r.get().cf();
        break;
      case raft_cmdpb::Put:
        key = &r.put().key();
        cf = &r.put().cf();
        break;
      case raft_cmdpb::Delete:
        key = &r.delete_().key();
        cf = &r.delete_().cf();
        break;
      case raft_cmdpb::Snap:
      case raft_cmdpb::Etcd:  // validated by the MVCC state machine
        break;
      default:
        resp = ErrorResponse(MessageError("invalid command type"));
        return result;
    }
    if (cf != nullptr && !storage::IsValidCf(*cf)) {
      resp = ErrorResponse(MessageError("invalid column family"));
      return result;
    }
    if (key != nullptr && !KeyInRegion(*key, region())) {
      resp = ErrorResponse(KeyNotInRegionError(*key, region()));
      return result;
    }
  }
  // Exactly-once: a retried command is answered without applying it again.
  uint64_t client = req.header().client_id();
  uint64_t seq = req.header().sequence();
  bool duplicate = false;
  if (client != 0) {
    auto it = dedup_.find(client);
    duplicate = it != dedup_.end() && seq <= it->second;
    if (!duplicate) {
      dedup_[client] = seq;
      kv_wb->Put(storage::DedupKey(region_id(), client),
                 storage::EncodeU64(seq));
    }
  }
  for (const raft_cmdpb::Request& r : req.requests()) {
    raft_cmdpb::Response* out = resp.add_responses();
    out->set_cmd_type(r.cmd_type());
    switch (r.cmd_type()) {
      case raft_cmdpb::Put:
        if (!duplicate) {
          kv_wb->Put(storage::DataKey(r.put().cf(), r.put().key()),
                     r.put().value());
        }
        out->mutable_put();
        break;
      case raft_cmdpb::Delete:
        if (!duplicate) {
          kv_wb->Delete(storage::DataKey(r.delete_().cf(), r.delete_().key()));
        }
        out->mutable_delete_();
        break;
      case raft_cmdpb::Get: {
        // Reads see every earlier write, including this batch's.
        FlushApply(kv_wb);
        auto v = kv_engine_->Get(storage::DataKey(r.get().cf(), r.get().key()));
        if (!v.ok()) {
          Panic(absl::StrCat(storage_->tag(),
                             " read failed: ", v.status().ToString()));
        }
        out->mutable_get()->set_value(v->value_or(""));
        break;
      }
      case raft_cmdpb::Snap:
        FlushApply(kv_wb);
        result.snap = kv_engine_->NewSnapshot();
        *out->mutable_snap()->mutable_region() = region();
        break;
      case raft_cmdpb::Etcd:
        if (duplicate) {
          // The first application's answer is gone; a retried etcd write
          // is answered as applied without its response body.
          out->mutable_etcd();
        } else {
          ExecuteEtcd(r.etcd(), out->mutable_etcd(), kv_wb);
        }
        break;
      default:
        break;  // rejected by the validation above
    }
  }
  return result;
}

}  // namespace raftkv::raftstore
