// ReadOnly: the leader's queue of read-index requests waiting for a quorum
// to confirm its leadership (ReadOnlyOption::kSafe).
//
// Requests are grouped into rounds. A round is one heartbeat broadcast whose
// messages carry the round id as context; a request joins the newest round
// while that round's heartbeats have not left the node yet (so every request
// in a round was made before the round confirms anything), otherwise it
// opens a new round. When a quorum has acknowledged round r, every request
// in rounds <= r is answered with the commit index recorded when it arrived.
// So many concurrent reads share one confirmation round.
#pragma once

#include <cstdint>
#include <deque>
#include <set>
#include <string>
#include <vector>

#include "raft/types.h"

namespace raftkv::raft {

struct ReadIndexStatus {
  // The request (its `from` and `context` say whom to answer).
  raftpb::Message req;
  // The commit index when the request arrived.
  uint64_t index = 0;
  uint64_t round = 0;
};

class ReadOnly {
 public:
  // Queues `req` with read index `index`. It joins the newest round if
  // `join_open_round` and that round exists, else opens a new one. Returns
  // the round id and sets *opened when a new round must be broadcast.
  uint64_t AddRequest(uint64_t index, raftpb::Message req, bool join_open_round,
                      bool* opened);
  // Records that `id` acknowledged round `round` (and so every round before
  // it). Returns the ids that acknowledged it, or null for an unknown round.
  const std::set<uint64_t>* RecvAck(uint64_t id, uint64_t round);
  // Removes and returns every request in rounds <= `round`, oldest first.
  std::vector<ReadIndexStatus> Advance(uint64_t round);
  // The newest round with pending requests, or 0.
  uint64_t LastPendingRound() const;
  size_t PendingCount() const { return queue_.size(); }
  // Drops everything (on a change of role or term).
  void Reset();

  // Encodes and decodes a round id as heartbeat context (8 bytes, big
  // endian). Decode returns 0 for anything else.
  static std::string EncodeRound(uint64_t round);
  static uint64_t DecodeRound(const std::string& ctx);

 private:
  struct Round {
    uint64_t id;
    std::set<uint64_t> acks;
  };
  uint64_t next_round_ = 1;
  std::deque<Round> rounds_;
  std::deque<ReadIndexStatus> queue_;
};

}  // namespace raftkv::raft
