#include "raftstore/store.h"

#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "storage/keys.h"
#include "storepb/raft_serverpb.pb.h"

namespace raftkv::raftstore {

absl::Status BootstrapStore(storage::Engine* raft_engine,
                            storage::Engine* kv_engine, uint64_t cluster_id,
                            uint64_t store_id, const metapb::Region& region) {
  raft_serverpb::StoreIdent ident;
  absl::StatusOr<bool> found =
      kv_engine->GetProto(storage::StoreIdentKey(), &ident);
  if (!found.ok()) return found.status();
  if (*found) {
    return absl::FailedPreconditionError(
        absl::StrCat("store ", ident.store_id(), " is already bootstrapped"));
  }
  if (absl::Status s = WriteInitialStates(raft_engine, kv_engine, region);
      !s.ok()) {
    return s;
  }
  // The identity last: a store without one is an unfinished bootstrap.
  ident.set_cluster_id(cluster_id);
  ident.set_store_id(store_id);
  storage::WriteBatch wb;
  wb.PutProto(storage::StoreIdentKey(), ident);
  return kv_engine->Write(wb, /*sync=*/true);
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const StoreConfig& config,
                                                   storage::Engine* raft_engine,
                                                   storage::Engine* kv_engine,
                                                   Transport* transport) {
  raft_serverpb::StoreIdent ident;
  absl::StatusOr<bool> found =
      kv_engine->GetProto(storage::StoreIdentKey(), &ident);
  if (!found.ok()) return found.status();
  if (!*found) return absl::NotFoundError("store is not bootstrapped");
  if (ident.store_id() != config.store_id) {
    return absl::FailedPreconditionError(
        absl::StrCat("engines belong to store ", ident.store_id(), ", not ",
                     config.store_id));
  }
  std::unique_ptr<Store> store(
      new Store(config, raft_engine, kv_engine, transport));
  // Every region state of this store: keys 01 03 <region> 01.
  std::string lo = storage::RegionStateKey(0);
  std::string hi = storage::RegionStateKey(~0ull);
  hi.push_back('\0');
  auto it = kv_engine->NewIterator(lo, hi);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view k = it->key();
    if (k.size() != lo.size() || k.back() != lo.back()) continue;
    raft_serverpb::RegionLocalState rs;
    if (!rs.ParseFromArray(it->value().data(),
                           static_cast<int>(it->value().size()))) {
      return absl::DataLossError("malformed region state");
    }
    if (rs.state() == raft_serverpb::Tombstone) continue;
    absl::StatusOr<std::unique_ptr<Peer>> peer =
        Peer::Create(config, raft_engine, kv_engine, rs.region());
    if (!peer.ok()) return peer.status();
    store->peers_[rs.region().id()] = *std::move(peer);
  }
  if (absl::Status s = it->status(); !s.ok()) return s;
  return store;
}

Peer* Store::GetPeer(uint64_t region_id) {
  auto it = peers_.find(region_id);
  return it == peers_.end() ? nullptr : it->second.get();
}

void Store::Propose(raft_cmdpb::RaftCmdRequest req, Callback cb) {
  const raft_cmdpb::RaftRequestHeader& h = req.header();
  if (h.peer().store_id() != config_.store_id) {
    errorpb::Error e = MessageError("store not match");
    e.mutable_store_not_match()->set_request_store_id(h.peer().store_id());
    e.mutable_store_not_match()->set_actual_store_id(config_.store_id);
    cb(CmdResult{ErrorResponse(e)});
    return;
  }
  Peer* peer = GetPeer(h.region_id());
  if (peer == nullptr) {
    errorpb::Error e = MessageError("region not found");
    e.mutable_region_not_found()->set_region_id(h.region_id());
    cb(CmdResult{ErrorResponse(e)});
    return;
  }
  if (h.peer().id() != peer->id()) {
    cb(CmdResult{ErrorResponse(
        MessageError(absl::StrCat("mismatched peer id ", h.peer().id(),
                                  " != ", peer->id())),
        peer->term())});
    return;
  }
  // A request made against an older term than the one before ours is stale.
  if (h.term() > 0 && peer->term() > h.term() + 1) {
    cb(CmdResult{ErrorResponse(StaleCommandError(), peer->term())});
    return;
  }
  const metapb::RegionEpoch& have = peer->region().region_epoch();
  if (h.region_epoch().version() != have.version() ||
      (req.has_admin_request() &&
       h.region_epoch().conf_ver() != have.conf_ver())) {
    cb(CmdResult{
        ErrorResponse(EpochNotMatchError(peer->region()), peer->term())});
    return;
  }
  peer->Propose(std::move(req), std::move(cb));
}

void Store::Step(raft_serverpb::RaftMessage msg) {
  Peer* peer = GetPeer(msg.region_id());
  // Creating peers for regions this store does not know comes with
  // membership changes; until then such messages are dropped.
  if (peer == nullptr || msg.to_peer().id() != peer->id()) return;
  peer->Step(std::move(*msg.mutable_message()));
}

void Store::Tick() {
  for (auto& [id, peer] : peers_) peer->Tick();
}

bool Store::HandleReadies() {
  storage::WriteBatch raft_wb;
  std::vector<Peer*> ready;
  for (auto& [id, peer] : peers_) {
    if (peer->PrepareReady(&raft_wb)) ready.push_back(peer.get());
  }
  if (ready.empty()) return false;
  if (!raft_wb.Empty()) {
    // One synced write for every peer of this pass (group commit). A failed
    // fsync means durability can no longer be promised: stop here.
    if (absl::Status s = raft_engine_->Write(raft_wb, /*sync=*/true); !s.ok()) {
      std::fprintf(stderr, "store %lu: raft engine write failed: %s\n",
                   static_cast<unsigned long>(config_.store_id),
                   s.ToString().c_str());
      std::abort();
    }
  }
  for (Peer* p : ready) p->FinishReady(transport_);
  return true;
}

}  // namespace raftkv::raftstore
