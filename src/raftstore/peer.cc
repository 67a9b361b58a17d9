#include "raftstore/peer.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "raft/errors.h"
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
    const StoreConfig& config, storage::Engine* raft_engine,
    storage::Engine* kv_engine, const metapb::Region& region) {
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
      PeerStorage::Create(raft_engine, kv_engine, region, tag);
  if (!ps.ok()) return ps.status();
  raft::Config rc;
  rc.id = meta->id();
  rc.election_tick = config.election_ticks;
  rc.heartbeat_tick = config.heartbeat_ticks;
  rc.storage = ps->get();
  rc.applied = (*ps)->applied_index();
  rc.pre_vote = config.pre_vote;
  rc.check_quorum = config.check_quorum;
  rc.max_size_per_msg = config.max_size_per_msg;
  rc.max_inflight_msgs = config.max_inflight_msgs;
  rc.seed = config.seed * 0x9E3779B97F4A7C15ULL + meta->id();
  absl::StatusOr<std::unique_ptr<raft::RawNode>> node =
      raft::RawNode::Create(rc);
  if (!node.ok()) return node.status();
  std::unique_ptr<Peer> peer(new Peer(*meta, *std::move(ps), *std::move(node),
                                      raft_engine, kv_engine));
  if (absl::Status s = peer->LoadDedupTable(); !s.ok()) return s;
  return peer;
}

absl::Status Peer::LoadDedupTable() {
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
  // Errors are messages from non-members or of local types: drop them.
  (void)node_->Step(std::move(m));
}

bool Peer::PrepareReady(storage::WriteBatch* raft_wb) {
  if (!node_->HasReady()) return false;
  ready_ = node_->GetReady();
  storage_->SaveReadyState(*ready_, raft_wb);
  return true;
}

void Peer::FinishReady(Transport* transport) {
  raft::Ready rd = std::move(*ready_);
  ready_.reset();
  Send(std::move(rd.messages), transport);
  if (!rd.committed_entries.empty()) ApplyEntries(rd.committed_entries);
  if (rd.soft_state && rd.soft_state->raft_state != raft::StateType::kLeader) {
    AbandonProposals();
  }
  node_->Advance();
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
    *rm.mutable_message() = std::move(m);
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
  if (kv_wb->Empty()) return;
  // Unsynced: after a crash the kv engine is rebuilt by re-applying the raft
  // log from the durable applied index, which is written in this same batch.
  if (absl::Status s = kv_engine_->Write(*kv_wb, /*sync=*/false); !s.ok()) {
    Panic(absl::StrCat(storage_->tag(), " apply write failed: ", s.ToString()));
  }
  kv_wb->Clear();
}

void Peer::ApplyEntries(const std::vector<raftpb::Entry>& entries) {
  storage::WriteBatch kv_wb;
  std::vector<Answer> answers;
  raft_serverpb::RaftApplyState apply = storage_->apply_state();
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
    kv_wb.PutProto(storage::ApplyStateKey(region_id()), apply);
  }
  FlushApply(&kv_wb);
  storage_->set_apply_state(apply);
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
      default:
        break;  // rejected by the validation above
    }
  }
  return result;
}

}  // namespace raftkv::raftstore
