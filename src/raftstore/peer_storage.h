// PeerStorage: one peer's raft::Storage, on the store's two engines.
//
// What it keeps (see storage/keys.h for the keys):
//   raft engine  the log entries and RaftLocalState (hard state, last index
//                and term), written in the caller's synced batch;
//   kv engine    RaftApplyState (applied index, truncated state) and
//                RegionLocalState, written by the apply path together with
//                the data they describe.
// The log holds the entries (truncated.index, last_index]; the term of
// truncated.index stays known for log matching. A freshly bootstrapped
// region starts with an empty log truncated at (index 5, term 5), as TinyKV.
//
// After a crash between a snapshot's kv writes and its raft-engine write
// (raftstore/snap.h), Create moves the raft state up to the truncated
// state, so the log starts after the applied snapshot.
//
// Persisting a Ready (SaveReadyState) only fills a WriteBatch: the raft
// worker gathers the batches of every peer it handled in one pass and writes
// them with one synced write (group commit), then sends and advances. The
// in-memory RaftLocalState is updated at once, which is safe because the raft
// core reads new entries from its own unstable log until Advance.
//
// Not thread-safe: owned and used by the peer's raft worker.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "raft/raw_node.h"
#include "raft/storage.h"
#include "storage/engine.h"
#include "storepb/metapb.pb.h"
#include "storepb/raft_serverpb.pb.h"

namespace raftkv::raftstore {

// The index and term a bootstrapped region's log starts after.
inline constexpr uint64_t kRaftInitLogIndex = 5;
inline constexpr uint64_t kRaftInitLogTerm = 5;

// The first region of a new cluster of `num_stores` stores: id 1, the whole
// key space ["", ""), epoch (conf_ver 1, version 1), and peer i on store i
// for i in 1..num_stores (TinyKV's bootstrap).
metapb::Region InitialRegion(uint64_t num_stores);

// Writes the initial states of `region` on a store that is being
// bootstrapped: RaftLocalState{hard state (term 5, commit 5), last index 5,
// term 5} in the raft engine; RaftApplyState{applied 5, truncated (5, 5)} and
// RegionLocalState{Normal, region} in the kv engine. Both writes are synced.
// Errors: FailedPrecondition if the region already has a raft state on this
// store; engine errors.
absl::Status WriteInitialStates(storage::Engine* raft_engine,
                                storage::Engine* kv_engine,
                                const metapb::Region& region);

class PeerStorage final : public raft::Storage {
 public:
  // Loads the region's persisted states. `tag` prefixes log lines (e.g.
  // "[region 1] 2"). Errors: NotFound if the region has no raft or apply
  // state on this store; DataLoss if they are inconsistent (last index below
  // the truncated index, commit past the last index); engine errors.
  static absl::StatusOr<std::unique_ptr<PeerStorage>> Create(
      storage::Engine* raft_engine, storage::Engine* kv_engine,
      const metapb::Region& region, std::string tag);

  // raft::Storage. InitialState's membership is the region's peers.
  absl::StatusOr<raft::RaftState> InitialState() override;
  absl::StatusOr<std::vector<raftpb::Entry>> Entries(
      uint64_t lo, uint64_t hi, uint64_t max_size) override;
  absl::StatusOr<uint64_t> Term(uint64_t i) override;
  absl::StatusOr<uint64_t> FirstIndex() override;
  absl::StatusOr<uint64_t> LastIndex() override;
  // The latest generated snapshot, unless the log was compacted past it;
  // otherwise starts generating one (through the hook set with
  // set_snapshot_generator, at most one at a time) and answers
  // kSnapshotTemporarilyUnavailable: raft asks again later.
  absl::StatusOr<raftpb::Snapshot> Snapshot() override;

  // The hook Snapshot() calls to start generating a snapshot off the raft
  // loop; the peer calls OnSnapshotGenerated when it is done. Without a
  // hook no snapshot is ever available.
  void set_snapshot_generator(std::function<void()> generate) {
    generate_ = std::move(generate);
  }
  // Records the outcome of a generation (an error lets the next Snapshot()
  // call try again). Returns the snapshot it replaces, whose files the
  // caller deletes.
  std::optional<raftpb::Snapshot> OnSnapshotGenerated(
      absl::StatusOr<raftpb::Snapshot> snap);
  // Records that the kv part of received snapshot `snap` of `region` is
  // applied (steps 1-3 of raftstore/snap.h): applied and truncated move to
  // the snapshot, the region is the snapshot's. The raft part follows in
  // SaveReadyState.
  void OnSnapshotApplied(const raftpb::Snapshot& snap,
                         const metapb::Region& region);

  // Adds `entries` (contiguous) to `raft_wb`: entries below the first index
  // are skipped, and previously persisted entries after the new last one
  // are deleted (a conflicting tail). Updates last index and term.
  void Append(const std::vector<raftpb::Entry>& entries,
              storage::WriteBatch* raft_wb);
  // Adds everything `rd` asks to persist (snapshot, entries, hard state)
  // and the new RaftLocalState to `raft_wb`. For a snapshot, the old log is
  // deleted and the log restarts after it. Precondition: a snapshot's kv
  // part is applied (OnSnapshotApplied; aborts otherwise). Returns whether
  // the write must be synced before the Ready's messages go and its entries
  // count as persisted: rd.must_sync (entries, a new term or vote), or a
  // snapshot. A HardState whose commit index alone moved need not be (as in
  // etcd: a lost commit index is learnt again from the leader, and Create
  // moves it up to the applied index).
  bool SaveReadyState(const raft::Ready& rd, storage::WriteBatch* raft_wb);
  // Deletes every persisted state of the peer (log, raft state, apply state,
  // region state) into the two batches, for destroying the peer.
  void ClearMeta(storage::WriteBatch* raft_wb, storage::WriteBatch* kv_wb);

  const raft_serverpb::RaftLocalState& raft_state() const {
    return raft_state_;
  }
  const raft_serverpb::RaftApplyState& apply_state() const {
    return apply_state_;
  }
  // The apply path records what it wrote to the kv engine.
  void set_apply_state(const raft_serverpb::RaftApplyState& s) {
    apply_state_ = s;
  }
  uint64_t applied_index() const { return apply_state_.applied_index(); }
  uint64_t truncated_index() const {
    return apply_state_.truncated_state().index();
  }
  uint64_t truncated_term() const {
    return apply_state_.truncated_state().term();
  }
  const metapb::Region& region() const { return region_; }
  void set_region(const metapb::Region& r) { region_ = r; }
  const std::string& tag() const { return tag_; }

 private:
  PeerStorage(storage::Engine* raft_engine, storage::Engine* kv_engine,
              metapb::Region region, std::string tag)
      : raft_engine_(raft_engine),
        kv_engine_(kv_engine),
        region_(std::move(region)),
        tag_(std::move(tag)) {}

  storage::Engine* raft_engine_;
  storage::Engine* kv_engine_;
  metapb::Region region_;
  std::string tag_;
  raft_serverpb::RaftLocalState raft_state_;
  raft_serverpb::RaftApplyState apply_state_;
  std::function<void()> generate_;
  bool generating_ = false;
  std::optional<raftpb::Snapshot> generated_;
};

}  // namespace raftkv::raftstore
