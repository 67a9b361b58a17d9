#include "raftstore/store.h"

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "raftstore/snap.h"
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

// Runs work at once and its completion at the start of the next worker
// pass (stores without a scheduler: unit tests).
class Store::InlineScheduler : public Scheduler {
 public:
  void Schedule(TaskKind /*kind*/, std::function<void()> work,
                std::function<void()> done) override {
    work();
    done_.push_back(std::move(done));
  }
  // Runs the completions queued so far; returns whether there were any.
  bool RunDone() {
    if (done_.empty()) return false;
    std::vector<std::function<void()>> done;
    done.swap(done_);
    for (auto& fn : done) fn();
    return true;
  }

 private:
  std::vector<std::function<void()>> done_;
};

Store::Store(const StoreConfig& config, storage::Engine* raft_engine,
             storage::Engine* kv_engine, Transport* transport,
             storage::SnapDir* snap_dir, Scheduler* scheduler)
    : config_(config),
      raft_engine_(raft_engine),
      kv_engine_(kv_engine),
      transport_(transport),
      snap_dir_(snap_dir),
      scheduler_(scheduler) {
  if (scheduler_ == nullptr) {
    inline_scheduler_ = std::make_unique<InlineScheduler>();
    scheduler_ = inline_scheduler_.get();
  }
}

Store::~Store() = default;

namespace {

// Finishes the kv part of a snapshot apply a crash interrupted (region
// state Applying; see snap.h), from the received files it kept.
absl::Status FinishInterruptedApply(storage::Engine* kv,
                                    storage::SnapDir* snap_dir,
                                    raft_serverpb::RegionLocalState* rs) {
  const metapb::Region& region = rs->region();
  if (snap_dir == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "region ", region.id(),
        " was applying a snapshot but the store has no snapshot dir"));
  }
  raft_serverpb::RaftApplyState as;
  absl::StatusOr<bool> found =
      kv->GetProto(storage::ApplyStateKey(region.id()), &as);
  if (!found.ok()) return found.status();
  if (!*found) return absl::DataLossError("applying region has no state");
  absl::Status s =
      ApplySnapshotFiles(kv, snap_dir, region, as.truncated_state().term(),
                         as.truncated_state().index(), -1, rs->applying_tag());
  if (!s.ok()) {
    return absl::DataLossError(
        absl::StrCat("region ", region.id(),
                     ": finishing the snapshot apply: ", s.ToString()));
  }
  rs->set_state(raft_serverpb::Normal);
  rs->clear_applying_tag();
  storage::WriteBatch wb;
  wb.PutProto(storage::RegionStateKey(region.id()), *rs);
  return kv->Write(wb, /*sync=*/true);
}

// Removes every snapshot file: generated ones are made again on demand,
// received ones were applied (or their stream never completed).
void CleanSnapDir(storage::SnapDir* snap_dir) {
  (void)snap_dir->CleanTemporary();
  for (const char* prefix : {"gen_", "rcv_", "ing_"}) {
    absl::StatusOr<std::vector<std::string>> names = snap_dir->List(prefix);
    if (!names.ok()) continue;
    for (const std::string& n : *names) (void)snap_dir->Delete(n);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const StoreConfig& config,
                                                   storage::Engine* raft_engine,
                                                   storage::Engine* kv_engine,
                                                   Transport* transport,
                                                   storage::SnapDir* snap_dir,
                                                   Scheduler* scheduler) {
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
  std::unique_ptr<Store> store(new Store(config, raft_engine, kv_engine,
                                         transport, snap_dir, scheduler));
  PeerEnv env{&store->config_, raft_engine,       kv_engine,
              snap_dir,        store->scheduler_, &store->revision_hint_};
  // Every region state of this store: keys 01 03 <region> 01.
  std::string lo = storage::RegionStateKey(0);
  std::string hi = storage::RegionStateKey(~0ull);
  hi.push_back('\0');
  std::vector<raft_serverpb::RegionLocalState> regions;
  auto it = kv_engine->NewIterator(lo, hi);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view k = it->key();
    if (k.size() != lo.size() || k.back() != lo.back()) continue;
    raft_serverpb::RegionLocalState rs;
    if (!rs.ParseFromArray(it->value().data(),
                           static_cast<int>(it->value().size()))) {
      return absl::DataLossError("malformed region state");
    }
    regions.push_back(std::move(rs));
  }
  if (absl::Status s = it->status(); !s.ok()) return s;
  it.reset();
  for (raft_serverpb::RegionLocalState& rs : regions) {
    if (rs.state() == raft_serverpb::Tombstone) continue;
    if (rs.state() == raft_serverpb::Applying) {
      if (absl::Status s = FinishInterruptedApply(kv_engine, snap_dir, &rs);
          !s.ok()) {
        return s;
      }
    }
    absl::StatusOr<std::unique_ptr<Peer>> peer = Peer::Create(env, rs.region());
    if (!peer.ok()) return peer.status();
    store->peers_[rs.region().id()] = *std::move(peer);
  }
  if (snap_dir != nullptr) CleanSnapDir(snap_dir);
  return store;
}

Peer* Store::GetPeer(uint64_t region_id) {
  auto it = peers_.find(region_id);
  return it == peers_.end() ? nullptr : it->second.get();
}

Peer* Store::CheckHeader(const raft_cmdpb::RaftCmdRequest& req, Callback& cb) {
  const raft_cmdpb::RaftRequestHeader& h = req.header();
  if (h.peer().store_id() != config_.store_id) {
    errorpb::Error e = MessageError("store not match");
    e.mutable_store_not_match()->set_request_store_id(h.peer().store_id());
    e.mutable_store_not_match()->set_actual_store_id(config_.store_id);
    cb(CmdResult{ErrorResponse(e)});
    return nullptr;
  }
  Peer* peer = GetPeer(h.region_id());
  if (peer == nullptr) {
    errorpb::Error e = MessageError("region not found");
    e.mutable_region_not_found()->set_region_id(h.region_id());
    cb(CmdResult{ErrorResponse(e)});
    return nullptr;
  }
  if (h.peer().id() != peer->id()) {
    cb(CmdResult{ErrorResponse(
        MessageError(absl::StrCat("mismatched peer id ", h.peer().id(),
                                  " != ", peer->id())),
        peer->term())});
    return nullptr;
  }
  return peer;
}

void Store::Propose(raft_cmdpb::RaftCmdRequest req, Callback cb) {
  Peer* peer = CheckHeader(req, cb);
  if (peer == nullptr) return;
  const raft_cmdpb::RaftRequestHeader& h = req.header();
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

void Store::ReadIndex(const raft_cmdpb::RaftCmdRequest& req, Callback cb) {
  Peer* peer = CheckHeader(req, cb);
  if (peer == nullptr) return;
  peer->ReadIndex(std::move(cb));
}

void Store::Step(raft_serverpb::RaftMessage msg) {
  Peer* peer = GetPeer(msg.region_id());
  // Creating peers for regions this store does not know comes with
  // membership changes; until then such messages are dropped.
  if (peer == nullptr || msg.to_peer().id() != peer->id()) return;
  if (msg.message().msg_type() == raftpb::MsgSnapStatus) {
    peer->ReportSnapshot(msg.from_peer().id(), msg.message().reject());
    return;
  }
  peer->Step(std::move(*msg.mutable_message()));
}

void Store::Tick() {
  ++ticks_;
  bool gc = config_.raft_log_gc_tick_interval > 0 &&
            ticks_ % config_.raft_log_gc_tick_interval == 0;
  for (auto& [id, peer] : peers_) {
    peer->Tick();
    if (gc) peer->OnGcTick();
  }
}

bool Store::HandleReadies() {
  bool did = inline_scheduler_ != nullptr && inline_scheduler_->RunDone();
  storage::WriteBatch raft_wb;
  bool must_sync = false;
  std::vector<Peer*> ready;
  for (auto& [id, peer] : peers_) {
    peer->FlushReads();
    if (peer->PrepareReady(&raft_wb, transport_, &must_sync)) {
      ready.push_back(peer.get());
    }
  }
  if (ready.empty()) return did;
  if (!raft_wb.Empty()) {
    // One write for every peer of this pass (group commit), synced unless
    // all it holds is commit indexes that moved. A failed write or fsync
    // means durability can no longer be promised: stop here.
    if (absl::Status s = raft_engine_->Write(raft_wb, must_sync); !s.ok()) {
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
