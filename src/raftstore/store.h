// Store: one store's raft groups (peers), driven by events.
//
// The store is single-threaded and event-driven: its owner (the production
// driver, or the deterministic simulator) calls Propose, Step and Tick as
// events arrive, then HandleReadies, which does one raft worker pass over
// every peer with work:
//
//   1. persist: every peer's Ready is added to ONE raft-engine write batch,
//      written with ONE synced write (group commit); a leader's messages
//      leave as its Ready is taken, before the write (Raft thesis 10.2.1:
//      the leader counts its own log only when it steps a later message,
//      which is after this write);
//   2. send the other Readies' messages through the Transport;
//   3. apply the committed entries to the kv engine (data, the applied
//      index and the exactly-once table in one batch per peer) and answer
//      the proposals they carry;
//   4. advance every RawNode.
//
// Nothing here reads a clock, draws a random number outside the raft core's
// seeded generator, or starts a thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mvcc/kv_store.h"
#include "raftstore/peer.h"
#include "raftstore/scheduler.h"
#include "raftstore/transport.h"
#include "storage/engine.h"
#include "storage/snap_files.h"
#include "storepb/metapb.pb.h"
#include "storepb/raft_cmdpb.pb.h"

namespace raftkv::raftstore {

struct StoreConfig {
  uint64_t store_id = 0;
  // Raft timing in store ticks (the driver decides how long a tick is).
  int election_ticks = 10;
  int heartbeat_ticks = 2;
  bool pre_vote = true;
  bool check_quorum = true;
  // raft::Config::skip_bcast_commit: a commit index rides on the next append
  // or heartbeat instead of a broadcast of its own.
  bool skip_bcast_commit = true;
  uint64_t max_size_per_msg = 1 << 20;
  uint64_t max_inflight_msgs = 256;
  // Seeds the peers' raft generators (combined with the peer id).
  uint64_t seed = 1;
  // Log compaction (TinyKV's RaftLogGcCountLimit): every
  // raft_log_gc_tick_interval ticks a leader whose log holds at least
  // raft_log_gc_count_limit applied entries (applied - truncated) proposes
  // CompactLog up to applied - raft_log_gc_count_limit / 2, keeping that
  // trailing window so that a briefly slow follower still catches up from
  // the log. So applied - truncated stays below about twice the limit.
  int raft_log_gc_tick_interval = 10;
  uint64_t raft_log_gc_count_limit = 10'000;
  // See scheduler.h; empty in production.
  FailpointFn failpoint;
};

// Writes the store identity and the initial states of `region` on a fresh
// store (both engines). Errors: FailedPrecondition if the store was already
// bootstrapped; engine errors.
absl::Status BootstrapStore(storage::Engine* raft_engine,
                            storage::Engine* kv_engine, uint64_t cluster_id,
                            uint64_t store_id, const metapb::Region& region);

class Store {
 public:
  // Opens the store on its engines (not owned; must outlive the store):
  // checks the store identity, finishes applying any snapshot a crash
  // interrupted (a region left Applying), removes leftover snapshot files,
  // and creates a peer for every region found in the kv engine.
  // `snap_dir` (on the kv engine's file system) holds snapshot files; if
  // null, this store never generates or accepts snapshots (unit tests).
  // `scheduler` runs background work; if null, work runs inline and its
  // completion at the start of the next HandleReadies. Errors: NotFound if
  // the store was never bootstrapped; FailedPrecondition if it belongs to
  // another store id; DataLoss if an interrupted snapshot's files are
  // missing; engine errors.
  ~Store();
  static absl::StatusOr<std::unique_ptr<Store>> Open(
      const StoreConfig& config, storage::Engine* raft_engine,
      storage::Engine* kv_engine, Transport* transport,
      storage::SnapDir* snap_dir = nullptr, Scheduler* scheduler = nullptr);

  // Proposes a command; `cb` is called exactly once, from a later
  // HandleReadies (or at once for a command refused up front).
  void Propose(raft_cmdpb::RaftCmdRequest req, Callback cb);
  // Queues a linearizable read of the region named by req.header() (checked
  // like a proposal: store, region, peer id): `cb` gets a response whose
  // CmdResult::snap is a kv engine view that observes every write
  // committed before the call (see Peer::ReadIndex), or an error. Any
  // member may serve it; reads arriving before one worker pass share one
  // ReadIndex round.
  void ReadIndex(const raft_cmdpb::RaftCmdRequest& req, Callback cb);
  // Delivers a raft message from another store, or a MsgSnapStatus from
  // this store's transport (Transport::SendSnapshot).
  void Step(raft_serverpb::RaftMessage msg);
  // Advances every peer's logical clock by one tick.
  void Tick();
  // One raft worker pass (see the file comment). Returns true if any peer
  // had work. Aborts if the synced raft-engine write fails.
  bool HandleReadies();

  uint64_t store_id() const { return config_.store_id; }
  // The peer of `region_id`, or null.
  Peer* GetPeer(uint64_t region_id);
  storage::Engine* kv_engine() const { return kv_engine_; }
  storage::Engine* raft_engine() const { return raft_engine_; }
  storage::SnapDir* snap_dir() const { return snap_dir_; }
  const StoreConfig& config() const { return config_; }
  // The kv engine's current revision as the apply last wrote it, for reads
  // of kv engine snapshots (mvcc::Range). Thread-safe; lives as long as the
  // store.
  const mvcc::RevisionHint* revision_hint() const { return &revision_hint_; }

 private:
  class InlineScheduler;
  Store(const StoreConfig& config, storage::Engine* raft_engine,
        storage::Engine* kv_engine, Transport* transport,
        storage::SnapDir* snap_dir, Scheduler* scheduler);

  StoreConfig config_;
  storage::Engine* raft_engine_;
  storage::Engine* kv_engine_;
  Transport* transport_;
  storage::SnapDir* snap_dir_;
  std::unique_ptr<InlineScheduler> inline_scheduler_;
  Scheduler* scheduler_;
  int ticks_ = 0;
  mvcc::RevisionHint revision_hint_;
  // The peer `req` is for, or null after answering `cb` with the error.
  Peer* CheckHeader(const raft_cmdpb::RaftCmdRequest& req, Callback& cb);
  std::map<uint64_t, std::unique_ptr<Peer>> peers_;  // by region id
};

}  // namespace raftkv::raftstore
