// The peer transport of a raftkv-server member: raft messages, snapshots and
// forwarded commands between members, over gRPC on the peer port (the Peer
// service of proto/serverpb/peer.proto).
//
// Client side, PeerTransport (one per member):
//   - raft messages (Send): a bounded queue per destination store, drained
//     by a sender thread of that destination into RaftMessageBatches (every
//     message queued at that moment, up to a size bound) on ONE long-lived
//     Peer.Raft client stream. When the stream or a connection attempt
//     fails, the batch in hand is dropped (raft tolerates loss) and the
//     sender reconnects after an exponential, jittered backoff; meanwhile
//     the queue keeps filling up to its bound, beyond which Send fails with
//     ResourceExhausted (the store reports the peer unreachable). Send only
//     appends to a queue: it never blocks the raft loop.
//   - snapshots (SendSnapshot): a Peer.Snapshot stream per snapshot, on a
//     thread (and a connection) of its own, reading SnapshotSender chunks
//     from this store's SnapDir; the outcome goes back to THIS store as a
//     MsgSnapStatus through the deliver-local callback.
//   - forwarded commands (Forward, the server::Forwarder): a unary
//     Peer.Forward call with a deadline, on gRPC's callback API.
//
// Server side, PeerService: the Peer service, handing raft messages and
// received snapshots to a delivery function (StoreDriver::Deliver in the
// server) and forwarded commands to a forward function (ProposeForwarded in
// the server). Both are std::functions so that tests can use fake sinks.
//
// Locking uses std::mutex (see store_driver.h: TSan and the system abseil).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "raftstore/transport.h"
#include "server/kv_backend.h"
#include "serverpb/peer.grpc.pb.h"
#include "storage/snap_files.h"
#include "storepb/raft_cmdpb.pb.h"
#include "storepb/raft_serverpb.pb.h"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace raftkv::server {

// The largest gRPC message the peer service must accept: the server that
// hosts a PeerService should call
// ServerBuilder::SetMaxReceiveMessageSize(kPeerMaxMessageBytes) (gRPC's
// default, 4 MiB, is less than a batch of large raft messages may take).
inline constexpr int kPeerMaxMessageBytes = 64 << 20;

struct PeerTransportOptions {
  // Per destination: raft messages queued at most, and their bytes at most
  // (a single message larger than the byte bound is still accepted into an
  // empty queue). Send fails with ResourceExhausted beyond either bound.
  size_t max_queued_messages = 4096;
  size_t max_queued_bytes = 32 << 20;
  // A RaftMessageBatch takes at most this many messages / about this many
  // bytes (at least one message); must stay well below
  // kPeerMaxMessageBytes. The default keeps batches below gRPC's default
  // 4 MiB limit too (a raft MsgApp carries about 1 MiB of entries).
  size_t max_batch_messages = 1024;
  size_t max_batch_bytes = 2 << 20;
  // Reconnect backoff of a destination's raft stream: starts at
  // min_backoff, doubles on each failure up to max_backoff, each wait
  // jittered to [0.5, 1.0] of the current value; a success resets it.
  std::chrono::milliseconds min_backoff{50};
  std::chrono::milliseconds max_backoff{2000};
  // How long one connection attempt may take.
  std::chrono::milliseconds connect_timeout{2000};
  // Bytes per snapshot chunk, and how long a whole snapshot stream may take.
  size_t snapshot_chunk_size = 1 << 20;
  std::chrono::milliseconds snapshot_timeout{std::chrono::minutes(5)};
};

// Counters of one destination (for tests and introspection).
struct PeerSendStats {
  uint64_t queued = 0;    // messages Send accepted
  uint64_t rejected = 0;  // messages Send refused (queue full, stopped)
  uint64_t batches = 0;   // batches written to a stream
  uint64_t sent = 0;      // messages in those batches
  uint64_t dropped = 0;   // accepted messages lost to a failure or Stop
  uint64_t connects = 0;  // streams opened
  uint64_t failures = 0;  // failed connection attempts and broken streams
};

class PeerTransport : public raftstore::Transport, public Forwarder {
 public:
  using DeliverLocal = std::function<void(raft_serverpb::RaftMessage)>;

  // `store_id` is this member's store; `peer_urls` maps every other store
  // id (it may include this store's own, which is then ignored) to its
  // peer URL ("http://host:port"; a URL without a scheme is taken as
  // host:port). `snap_dir` (this store's SnapDir, not owned) must outlive
  // the transport; it may be null if no snapshot is ever sent. No
  // connection is made before Start (or before the first Forward).
  PeerTransport(uint64_t store_id, std::map<uint64_t, std::string> peer_urls,
                storage::SnapDir* snap_dir, PeerTransportOptions options = {});
  // Stops the transport (see Stop).
  ~PeerTransport() override;
  PeerTransport(const PeerTransport&) = delete;
  PeerTransport& operator=(const PeerTransport&) = delete;

  // Where the outcome of SendSnapshot goes: a MsgSnapStatus for THIS store
  // (StoreDriver::Deliver in the server). Must be set before Start; called
  // from snapshot threads, must not block.
  void set_deliver_local(DeliverLocal deliver) {
    deliver_local_ = std::move(deliver);
  }

  // Starts the sender threads. Messages sent before Start wait in their
  // queues. Errors: FailedPrecondition if already started or stopped.
  absl::Status Start();
  // Cancels every stream and call in progress, drops the queued messages,
  // joins every thread and answers every Forward still pending. Bounded in
  // time (cancellation interrupts any blocking gRPC call). Idempotent; the
  // transport cannot be restarted. Must not be called from a `done` of
  // Forward or from deliver_local.
  void Stop();

  // Queues `msg` for msg.to_peer().store_id() and returns at once.
  // Thread-safe. Errors: NotFound for a store without a URL;
  // ResourceExhausted if its queue is full; Unavailable after Stop.
  absl::Status Send(raft_serverpb::RaftMessage msg) override;
  // Streams a MsgSnapshot (files from this store's SnapDir) on a thread of
  // its own and then delivers the MsgSnapStatus to this store (reject on
  // any failure, an unknown store included). Thread-safe, non-blocking.
  // After Stop the MsgSnapStatus (reject) is delivered at once.
  void SendSnapshot(raft_serverpb::RaftMessage msg) override;
  // Forwarder: a unary Peer.Forward call with a deadline of `timeout_ms`.
  // `done` runs exactly once, on a gRPC thread (or at once on the calling
  // thread for NotFound and after Stop). Errors: NotFound for a store
  // without a URL; FailedPrecondition, without sending, when the channel
  // to that member is not connected (it is asked to connect); Unavailable
  // for every other transport failure, the deadline and Stop.
  void Forward(uint64_t store_id, raft_cmdpb::RaftCmdRequest req,
               int timeout_ms,
               std::function<void(absl::StatusOr<raft_cmdpb::RaftCmdResponse>)>
                   done) override;
  // Asks the member of `store_id` who it is (Peer.Member) within
  // `timeout_ms`; `done` is called exactly once, on a gRPC thread.
  void FetchMember(
      uint64_t store_id, int timeout_ms,
      std::function<void(absl::StatusOr<serverpb::MemberResponse>)> done);

  // The counters of destination `store_id` (zero for an unknown store).
  PeerSendStats Stats(uint64_t store_id) const;

 private:
  struct Destination;
  struct SnapshotStream;
  struct ForwardCall;

  void SenderLoop(Destination* d);
  // Opens d's raft stream; false when the attempt failed or Stop began.
  bool Connect(Destination* d);
  // Waits for `delay` or Stop; false on Stop.
  bool SleepUnlessStopped(Destination* d, std::chrono::milliseconds delay);
  void CloseStream(Destination* d, bool cancel);
  // Runs one snapshot stream; OK iff the receiver took the snapshot.
  absl::Status StreamSnapshot(SnapshotStream* s,
                              const raft_serverpb::RaftMessage& msg);
  void DeliverSnapStatus(const raft_serverpb::RaftMessage& msg, bool reject);
  void ReapSnapshotStreams() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint64_t store_id_;
  storage::SnapDir* const snap_dir_;
  const PeerTransportOptions options_;
  DeliverLocal deliver_local_;
  // Built in the constructor, never changed: lookups need no lock.
  std::map<uint64_t, std::unique_ptr<Destination>> dests_;

  enum class State { kNew, kRunning, kStopped };
  std::mutex stop_mu_;  // serializes Start and Stop
  mutable std::mutex mu_;
  std::condition_variable forwards_done_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kNew;
  std::list<std::unique_ptr<SnapshotStream>> snapshots_ ABSL_GUARDED_BY(mu_);
  std::set<ForwardCall*> forwards_ ABSL_GUARDED_BY(mu_);
};

// The server side of the peer service.
//
// It is a callback (reactor) service rather than a synchronous one: a Raft
// stream lives as long as its sender, and a forwarded command waits for a
// raft round, so a synchronous service would hold a thread for each of
// them (and need a pool sized for the worst case); with reactors no thread
// waits. Each reaction is short: a raft message is queued to the store
// (StoreDriver::Deliver never blocks), a forwarded command is handed over
// with a completion, and a snapshot chunk (at most the sender's chunk size,
// 1 MiB) is written to a file — the one piece of I/O done on gRPC's
// callback threads, bounded per reaction and rare (snapshots only).
//
// Never aborts on a bad request: malformed messages fail the call (gRPC
// rejects what does not parse; the snapshot receiver rejects an invalid
// stream and drops its partial files); messages for another store are
// dropped.
class PeerService final : public serverpb::Peer::CallbackService {
 public:
  // Hands a raft message (or a received MsgSnapshot) to the store; errors
  // (a full mailbox, a stopped store) drop the message, or fail the
  // snapshot call. Called from gRPC threads; must not block.
  using Deliver = std::function<absl::Status(raft_serverpb::RaftMessage)>;
  // Proposes a forwarded command and calls its second argument exactly
  // once with the answer (server::ProposeForwarded). Must not block.
  using ForwardFn =
      std::function<void(raft_cmdpb::RaftCmdRequest,
                         std::function<void(raft_cmdpb::RaftCmdResponse)>)>;

  // `store_id`: this member's store (raft messages addressed to another are
  // dropped). `snap_dir` (not owned, may be null: snapshots then fail)
  // must outlive the service. `forward` may be empty: Forward then fails
  // with UNIMPLEMENTED. Note: grpc::Server::Shutdown waits for every call
  // in progress, so a forward function must answer in bounded time.
  PeerService(uint64_t store_id, storage::SnapDir* snap_dir, Deliver deliver,
              ForwardFn forward);

  // Counters (for tests): Raft batches and messages received, messages
  // dropped (wrong store, or refused by Deliver).
  uint64_t batches_received() const { return batches_received_.load(); }
  uint64_t messages_received() const { return messages_received_.load(); }
  uint64_t messages_dropped() const { return messages_dropped_.load(); }

  // The synchronous overloads stay the base's (unused: never called).
  // What Member answers (set before the service serves).
  void set_member_info(serverpb::MemberResponse info) {
    member_info_ = std::move(info);
  }

  using serverpb::Peer::CallbackService::Forward;
  using serverpb::Peer::CallbackService::Member;
  using serverpb::Peer::CallbackService::Raft;
  using serverpb::Peer::CallbackService::Snapshot;
  grpc::ServerReadReactor<serverpb::RaftMessageBatch>* Raft(
      grpc::CallbackServerContext* context, serverpb::Done* response) override;
  grpc::ServerReadReactor<raft_serverpb::SnapshotChunk>* Snapshot(
      grpc::CallbackServerContext* context, serverpb::Done* response) override;
  grpc::ServerUnaryReactor* Forward(
      grpc::CallbackServerContext* context,
      const raft_cmdpb::RaftCmdRequest* request,
      raft_cmdpb::RaftCmdResponse* response) override;
  grpc::ServerUnaryReactor* Member(grpc::CallbackServerContext* context,
                                   const serverpb::MemberRequest* request,
                                   serverpb::MemberResponse* response) override;

 private:
  class RaftReactor;
  class SnapshotReactor;

  // Delivers one raft message from a Raft stream (counting it).
  void DeliverOne(raft_serverpb::RaftMessage msg);

  const uint64_t store_id_;
  storage::SnapDir* const snap_dir_;
  const Deliver deliver_;
  const ForwardFn forward_;
  serverpb::MemberResponse member_info_;
  std::atomic<uint64_t> batches_received_{0};
  std::atomic<uint64_t> messages_received_{0};
  std::atomic<uint64_t> messages_dropped_{0};
};

// The host:port of a peer URL ("http://127.0.0.1:2380" -> "127.0.0.1:2380";
// a trailing '/' is dropped; a string without "://" is returned as is).
std::string PeerUrlTarget(const std::string& url);

}  // namespace raftkv::server
