// Transport: how a store hands raft messages to other stores. Injected, so
// the same store logic runs over gRPC in production, over an in-process
// queue in tests, and over the deterministic simulator's network.
#pragma once

#include "absl/status/status.h"
#include "storepb/raft_serverpb.pb.h"

namespace raftkv::raftstore {

class Transport {
 public:
  virtual ~Transport() = default;
  // Queues `msg` for msg.to_peer().store_id(). Must not block and must not
  // call back into the sending store. Errors (an unknown or unreachable
  // store) are reported to raft as an unreachable peer; a message may also
  // be lost silently, which raft tolerates. Never used for MsgSnapshot.
  virtual absl::Status Send(raft_serverpb::RaftMessage msg) = 0;

  // Sends a MsgSnapshot and its files: streams SnapshotChunks (see
  // raftstore/snap.h: SnapshotSender on this side, SnapshotReceiver on the
  // other) and hands the message to the receiving store only once every
  // file arrived and matched its size and checksum. Then, or when the
  // transfer fails, the transport delivers to the SENDING store a
  // MsgSnapStatus RaftMessage from msg.to_peer() to msg.from_peer() whose
  // `reject` tells a failure; the store reports it to raft, which retries a
  // failed snapshot later. Must not block (the files are read elsewhere).
  virtual void SendSnapshot(raft_serverpb::RaftMessage msg) = 0;
};

}  // namespace raftkv::raftstore
