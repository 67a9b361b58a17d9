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
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "mvcc/kv_store.h"
#include "raft/raw_node.h"
#include "raftstore/peer_storage.h"
#include "raftstore/scheduler.h"
#include "raftstore/transport.h"
#include "storage/engine.h"
#include "storage/snap_files.h"
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

// What a peer uses of its store; everything outlives the peer.
struct PeerEnv {
  const StoreConfig* config = nullptr;
  storage::Engine* raft_engine = nullptr;
  storage::Engine* kv_engine = nullptr;
  // Null: the peer never generates or applies snapshots.
  storage::SnapDir* snap_dir = nullptr;
  Scheduler* scheduler = nullptr;  // non-null
  // Where the apply publishes the kv engine's revision; may be null.
  mvcc::RevisionHint* revision_hint = nullptr;
};

class Peer {
 public:
  // Creates the peer of `region` on env.config->store_id from its
  // persisted states. Errors: NotFound if the region has no peer on this
  // store or no states; DataLoss if they are inconsistent.
  static absl::StatusOr<std::unique_ptr<Peer>> Create(
      const PeerEnv& env, const metapb::Region& region);

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
  // Queues a linearizable read: every read queued before the next worker
  // pass shares one ReadIndex round (FlushReads). Once the round's read
  // index is applied here, `cb` gets a response with a kv engine view
  // (CmdResult::snap) that observes every write committed before the read
  // was queued. Answered NotLeader when no leader is known, StaleCommand
  // when leadership changed or the round got no answer within two
  // election timeouts (the caller may retry: reads have no effect).
  void ReadIndex(Callback cb);
  // Starts the ReadIndex round of the reads queued so far (the store calls
  // it at the start of each worker pass).
  void FlushReads();
  // Steps a raft message addressed to this peer.
  void Step(raftpb::Message m);
  // Reports the outcome of sending a snapshot to peer `to` (from the
  // transport's MsgSnapStatus).
  void ReportSnapshot(uint64_t to, bool failed);
  void Tick();
  // Log compaction, every StoreConfig::raft_log_gc_tick_interval ticks: a
  // leader whose log holds raft_log_gc_count_limit applied entries proposes
  // CompactLog (see StoreConfig); every peer hands the deletion of entries
  // its applied CompactLogs truncated to the log-GC worker, which first
  // syncs the kv engine so that the truncation (and the applied state it
  // rests on) is durable before the entries go.
  void OnGcTick();
  // True while a received snapshot is being applied (its Ready is held).
  bool applying_snapshot() const { return ready_.has_value(); }

  // Phase 1 of a worker pass: takes the Ready and adds what must be
  // persisted to `raft_wb`. Returns false if there was nothing to do. A
  // Ready carrying a snapshot is held: its kv part is applied by the
  // kSnapApply worker (raftstore/snap.h), and only then does a later pass
  // persist its raft part and finish it; meanwhile the peer still steps
  // messages and ticks.
  // A leader sends its messages here, before the write (see peer.cc).
  // Sets *must_sync if the write must be synced before phase 2 (see
  // PeerStorage::SaveReadyState); leaves it alone otherwise.
  bool PrepareReady(storage::WriteBatch* raft_wb, Transport* transport,
                    bool* must_sync);
  // Phase 2, after raft_wb is written (and synced if phase 1 asked to):
  // sends, applies, advances.
  void FinishReady(Transport* transport);

 private:
  Peer(metapb::Peer meta, std::unique_ptr<PeerStorage> storage,
       std::unique_ptr<raft::RawNode> node, const PeerEnv& env)
      : meta_(std::move(meta)),
        storage_(std::move(storage)),
        node_(std::move(node)),
        env_(env),
        raft_engine_(env.raft_engine),
        kv_engine_(env.kv_engine),
        kv_store_(env.kv_engine) {}

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
  // Read index: takes the rounds raft answered; serves the reads whose
  // index is applied; fails every read in flight (leadership changed).
  void TakeReadStates(std::vector<raft::ReadState> states);
  void ServeReadyReads();
  void FailReads(const errorpb::Error& err);
  // Applies one etcd request (an Etcd command) through kv_store_.
  void ExecuteEtcd(const raft_cmdpb::EtcdRequest& req,
                   raft_cmdpb::EtcdResponse* out, storage::WriteBatch* kv_wb);
  absl::Status LoadDedupTable();
  // Applies CompactLog: moves the truncated state in `apply` (written with
  // the batch) and compacts the in-memory view once the batch is written.
  void ExecCompactLog(const raft_cmdpb::CompactLogRequest& req,
                      raft_serverpb::RaftApplyState* apply);
  void ProposeCompactLog();
  void ScheduleLogGc();
  // Snapshot generation (leader) and apply (receiver), see snap.h.
  void GenerateSnapshot();
  void StartApplySnapshot(const raftpb::Snapshot& snap);

  metapb::Peer meta_;
  std::unique_ptr<PeerStorage> storage_;
  std::unique_ptr<raft::RawNode> node_;
  PeerEnv env_;
  storage::Engine* raft_engine_;
  storage::Engine* kv_engine_;
  std::deque<Proposal> proposals_;
  std::optional<raft::Ready> ready_;
  // While applying: the apply state of the entries whose writes are in the
  // current batch (FlushApply writes it with them).
  std::optional<raft_serverpb::RaftApplyState> batch_apply_;
  // The held Ready's snapshot has its kv part applied.
  bool snapshot_kv_done_ = false;
  // Log compaction: the CompactLog this leader proposed last (0: none);
  // the last index the log GC deleted up to, and whether a GC is running.
  uint64_t compact_proposed_ = 0;
  uint64_t gc_done_ = 0;
  bool gc_running_ = false;
  // Exactly-once: client id -> the last applied sequence number.
  std::map<uint64_t, uint64_t> dedup_;
  // The etcd state machine (its overlay holds the current apply batch).
  mvcc::KvStore kv_store_;
  // Linearizable reads: queued for the next round; in a round (by context,
  // with the tick it started); answered by raft, waiting for apply.
  struct ReadRound {
    std::vector<Callback> cbs;
    uint64_t started_tick = 0;
  };
  struct ReadyRead {
    uint64_t index = 0;
    std::vector<Callback> cbs;
  };
  std::vector<Callback> queued_reads_;
  std::map<std::string, ReadRound> read_rounds_;
  std::deque<ReadyRead> ready_reads_;
  uint64_t next_read_ctx_ = 0;
  uint64_t ticks_ = 0;
};

}  // namespace raftkv::raftstore
