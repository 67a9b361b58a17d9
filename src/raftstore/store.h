// Store: one store's raft groups (peers), driven by events.
//
// The store is single-threaded and event-driven: its owner (the production
// driver, or the deterministic simulator) calls Propose, Step and Tick as
// events arrive, then HandleReadies, which does one raft worker pass over
// every peer with work:
//
//   1. persist: every peer's Ready is added to ONE raft-engine write batch,
//      written with ONE synced write (group commit);
//   2. send the Readies' messages through the Transport;
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
#include "raftstore/peer.h"
#include "raftstore/transport.h"
#include "storage/engine.h"
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
  uint64_t max_size_per_msg = 1 << 20;
  uint64_t max_inflight_msgs = 256;
  // Seeds the peers' raft generators (combined with the peer id).
  uint64_t seed = 1;
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
  // checks the store identity and creates a peer for every region found in
  // the kv engine. Errors: NotFound if the store was never bootstrapped;
  // FailedPrecondition if it belongs to another store id; engine errors.
  static absl::StatusOr<std::unique_ptr<Store>> Open(
      const StoreConfig& config, storage::Engine* raft_engine,
      storage::Engine* kv_engine, Transport* transport);

  // Proposes a command; `cb` is called exactly once, from a later
  // HandleReadies (or at once for a command refused up front).
  void Propose(raft_cmdpb::RaftCmdRequest req, Callback cb);
  // Delivers a raft message from another store.
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

 private:
  Store(const StoreConfig& config, storage::Engine* raft_engine,
        storage::Engine* kv_engine, Transport* transport)
      : config_(config),
        raft_engine_(raft_engine),
        kv_engine_(kv_engine),
        transport_(transport) {}

  StoreConfig config_;
  storage::Engine* raft_engine_;
  storage::Engine* kv_engine_;
  Transport* transport_;
  std::map<uint64_t, std::unique_ptr<Peer>> peers_;  // by region id
};

}  // namespace raftkv::raftstore
