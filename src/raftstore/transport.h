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
  // be lost silently, which raft tolerates.
  virtual absl::Status Send(raft_serverpb::RaftMessage msg) = 0;
};

}  // namespace raftkv::raftstore
