// Peer: this store's member of one region's raft group. It owns the region's
// RawNode and PeerStorage, tracks the proposals it made until their entries
// are applied, and applies committed commands to the kv engine.
//
// Proposals are tracked by (index, term) in proposal order. When the entry
// at a proposal's index is applied, the proposal is answered with the
// command's result if the entry's term is the proposal's, and with
// StaleCommand otherwise (a new leader overwrote it); proposals below an
// applied index that never matched are stale too. When the peer stops
// leading, every pending proposal is answered StaleCommand at once: its
// entry may or may not commit under the next leader, so the client retries
// with the same client id and sequence number, which the exactly-once table
// makes safe. So no proposal waits for an index a quiet group never reaches.
//
// Apply is deterministic: every replica applies the same commands in the
// same order, writing the data, the applied index and the exactly-once table
// in one batch. A command carrying a client id and a sequence number not
// above the client's last applied one is a retry: its writes are skipped and
// it is answered as applied.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "raft/raw_node.h"
#include "raftstore/peer_storage.h"
#include "raftstore/transport.h"
#include "storage/engine.h"
#include "storepb/errorpb.pb.h"
#include "storepb/raft_cmdpb.pb.h"

namespace raftkv::raftstore {

struct StoreConfig;

// The answer to a command. For a Snap request, `snap` is a read view of the
// kv engine taken when the command was applied.
struct CmdResult {
  CmdResult() = default;
  explicit CmdResult(raft_cmdpb::RaftCmdResponse r) : response(std::move(r)) {}

  raft_cmdpb::RaftCmdResponse response;
  std::shared_ptr<storage::Snapshot> snap;
};

using Callback = std::function<void(CmdResult)>;

// A response carrying only `err` in its header.
raft_cmdpb::RaftCmdResponse ErrorResponse(const errorpb::Error& err,
                                          uint64_t current_term = 0);
// Builders for the errors of errorpb.
errorpb::Error NotLeaderError(uint64_t region_id, const metapb::Peer* leader);
errorpb::Error StaleCommandError();
errorpb::Error EpochNotMatchError(const metapb::Region& current);
errorpb::Error KeyNotInRegionError(const std::string& key,
                                   const metapb::Region& region);
errorpb::Error MessageError(const std::string& message);

class Peer {
 public:
  // Creates the peer of `region` on `store_id` from its persisted states.
  // Errors: NotFound if the region has no peer on this store or no states.
  static absl::StatusOr<std::unique_ptr<Peer>> Create(
      const StoreConfig& config, storage::Engine* raft_engine,
      storage::Engine* kv_engine, const metapb::Region& region);

  uint64_t id() const { return meta_.id(); }
  uint64_t region_id() const { return storage_->region().id(); }
  const metapb::Region& region() const { return storage_->region(); }
  bool IsLeader() const {
    return node_->raft().state() == raft::StateType::kLeader;
  }
  // The leader's peer id, or 0 when unknown.
  uint64_t LeaderId() const { return node_->raft().lead(); }
  uint64_t term() const { return node_->raft().term(); }
  const PeerStorage& peer_storage() const { return *storage_; }
  raft::RawNode& raw_node() { return *node_; }

  // Proposes `req`, which the store already checked against this region.
  // Answers NotLeader at once if this peer is not the leader or raft refuses
  // the proposal; otherwise `cb` is called when the entry is applied. The
  // TransferLeader admin command does not go through the log: the leader
  // starts the transfer and answers at once (the transfer itself may still
  // fail; the caller watches who leads). Other admin commands are answered
  // with an error until they are supported (CompactLog comes with log
  // compaction).
  void Propose(raft_cmdpb::RaftCmdRequest req, Callback cb);
  // Steps a raft message addressed to this peer.
  void Step(raftpb::Message m);
  void Tick() { node_->Tick(); }

  // Phase 1 of a worker pass: takes the Ready and adds what must be
  // persisted to `raft_wb`. Returns false if there was nothing to do.
  bool PrepareReady(storage::WriteBatch* raft_wb);
  // Phase 2, after raft_wb is durable: sends, applies, advances.
  void FinishReady(Transport* transport);

 private:
  Peer(metapb::Peer meta, std::unique_ptr<PeerStorage> storage,
       std::unique_ptr<raft::RawNode> node, storage::Engine* raft_engine,
       storage::Engine* kv_engine)
      : meta_(std::move(meta)),
        storage_(std::move(storage)),
        node_(std::move(node)),
        raft_engine_(raft_engine),
        kv_engine_(kv_engine) {}

  struct Proposal {
    uint64_t index;
    uint64_t term;
    Callback cb;
  };
  // A command's answer, delivered once the apply batch is written.
  struct Answer {
    Callback cb;
    CmdResult result;
  };

  void Send(std::vector<raftpb::Message> msgs, Transport* transport);
  void ApplyEntries(const std::vector<raftpb::Entry>& entries);
  // Applies one command; reads see the batch so far (it is flushed first).
  CmdResult ExecuteCommand(const raft_cmdpb::RaftCmdRequest& req,
                           storage::WriteBatch* kv_wb);
  // Pops the proposal of (index, term), answering stale ones on the way.
  std::optional<Callback> TakeProposal(uint64_t index, uint64_t term,
                                       std::vector<Answer>* answers);
  void FlushApply(storage::WriteBatch* kv_wb);
  // Answers every pending proposal StaleCommand (leadership was lost).
  void AbandonProposals();
  absl::Status LoadDedupTable();

  metapb::Peer meta_;
  std::unique_ptr<PeerStorage> storage_;
  std::unique_ptr<raft::RawNode> node_;
  storage::Engine* raft_engine_;
  storage::Engine* kv_engine_;
  std::deque<Proposal> proposals_;
  std::optional<raft::Ready> ready_;
  // Exactly-once: client id -> the last applied sequence number.
  std::map<uint64_t, uint64_t> dedup_;
};

}  // namespace raftkv::raftstore
