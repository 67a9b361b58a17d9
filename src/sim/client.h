// KvClient: a simulated client of the cluster, as TinyKV's test client
// (Request / CallCommandOnLeader): it sends one command at a time to the
// store it believes leads region 1, follows NotLeader hints, and retries on
// StaleCommand, EpochNotMatch, a refusal without a hint, or no answer within
// an attempt timeout (then it tries another store), until it gets an answer
// or gives up.
//
// Exactly-once: a client has a fresh client id; every command that writes
// carries it and the client's next sequence number, which a retry keeps, so
// a write applies once however many attempts reach the log. Reads carry no
// client id.
//
// Scans: a Snap command answered by the leader carries a read view of the kv
// engine taken when the command was applied; the client iterates it at once
// (while the store is alive) over the requested range of the default column
// family, clipped to the region, and keeps the values' concatenation.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "sim/simulator.h"
#include "storepb/metapb.pb.h"
#include "storepb/raft_cmdpb.pb.h"

namespace raftkv::sim {

// A key range [start, end) of the default column family (end "" = no end).
struct ScanRange {
  std::string start;
  std::string end;
};

// The outcome of one client call.
struct ClientReply {
  // OK with the answer; Internal for an error the client does not retry;
  // DeadlineExceeded when it gave up without an answer (the outcome is
  // then unknown: the command may still apply).
  absl::Status status;
  raft_cmdpb::RaftCmdResponse response;
  // For a scan: the values in range, concatenated in key order.
  std::string scan_values;
  // Virtual times of the first attempt and of the answer.
  int64_t call_time = 0;
  int64_t return_time = 0;
};

// Counters shared by a scenario's clients.
struct ClientStats {
  uint64_t calls = 0;
  uint64_t attempts = 0;
  uint64_t timeouts = 0;
  uint64_t gave_up = 0;
};

struct ClientOptions {
  // An attempt without an answer after this long is abandoned.
  int64_t attempt_timeout_us = 1'000'000;
  // The pause before retrying after StaleCommand, EpochNotMatch or a
  // NotLeader with a hint.
  int64_t retry_us = 1'000;
  // The pause before retrying after a NotLeader without a hint.
  int64_t no_leader_backoff_us = 50'000;
  // The call gives up this long after it started.
  int64_t give_up_us = 60'000'000;
};

class KvClient {
 public:
  // `client_id` must be unique in the cluster's life (it keys the stores'
  // exactly-once table); `stats` (not owned) may be null. The first guess of
  // the leader is a random store. The client must outlive every later event
  // of `sim` (stores and events keep callbacks that point to it).
  KvClient(Simulator* sim, uint64_t client_id, const ClientOptions& options,
           ClientStats* stats);

  // Sends `req` (its requests; the header is filled in here) and calls
  // `done` exactly once, from a later event, with the outcome. With `scan`,
  // `req` must be a single Snap request. Precondition: !busy().
  void Call(raft_cmdpb::RaftCmdRequest req, std::optional<ScanRange> scan,
            std::function<void(ClientReply)> done);
  // True while a call is in progress.
  bool busy() const { return busy_; }
  // The id its writes carry.
  uint64_t client_id() const { return client_id_; }

 private:
  void Attempt();
  void OnAnswer(uint64_t attempt, ClientReply reply);
  void OnTimeout(uint64_t attempt);
  void Retry(int64_t delay_us);
  void Finish(ClientReply reply);
  uint64_t RandomStore();

  Simulator* sim_;
  uint64_t client_id_;
  ClientOptions options_;
  ClientStats* stats_;
  uint64_t leader_guess_;
  metapb::RegionEpoch epoch_;
  uint64_t next_sequence_ = 1;
  // The call in progress.
  bool busy_ = false;
  uint64_t attempt_ = 0;
  raft_cmdpb::RaftCmdRequest req_;
  std::optional<ScanRange> scan_;
  std::function<void(ClientReply)> done_;
  int64_t call_time_ = 0;
};

}  // namespace raftkv::sim
