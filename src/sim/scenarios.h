// The TinyKV 2B and 2C scenarios (inventory section 3) on the simulator,
// and ours.
//
// GenericTest(nclients, unreliable, crash, partitions, maxraftlog), on 5
// stores: after a 1 s start, 3 iterations; in each, nclients clients loop
// 50/50 between a Put of "<cli> <j %08d>" = "x <cli> <j> y" and a scan of
// the client's keys so far, which must equal everything it put ("last");
// with chaos, 300 ms in and then every 500-700 ms the network is re-drawn:
// partitions put each store in one of two random sets, unreliable stacks
// one more 10% drop filter (plus delays that reorder and duplicates); after
// 5 s the clients finish their current op and stop, filters are cleared
// (and 500 ms pass); with crash every store is stopped and, 500 ms later,
// restarted; then each client's final scan passes checkClntAppends, the
// replicas are compared (below), and the client's keys are deleted. With
// maxraftlog > 0 (log compaction on: StoreConfig's count limit, GC every 2
// ticks), after 1 s more every up store's applied index of region 1 is at
// most 2 * maxraftlog above its truncated index. The whole history must be
// linearizable.
//
// The replica check (every scenario, after each iteration's final scans and
// at the end): failpoints off, filters cleared, every store up, then quiet
// until every store's applied index equals the leader's; then the user data
// of every kv engine (default, lock and write) must hash the same.
//
// OnePartition: TinyKV's TestOnePartition2B (majority and minority
// partitions around the leader; see scenarios.cc). OneSnapshot: TinyKV's
// TestOneSnapshot2C on 3 stores: an isolated store catches up by a snapshot
// carrying the "lock" column family.
//
// Ours, beyond TinyKV (GenericTest with 5 clients plus the following; the
// last three with a log limit of 10, so that a follower that falls behind
// needs a snapshot):
//   CrashUnderLoad          one store at a time crashes and restarts while
//                           the clients run (over an unreliable network);
//   SnapshotFailpoints      stores crash at the snapshot and compaction
//                           failpoints (raftstore::kFailpoints; each armed
//                           strongly until it first fired, lightly after)
//                           and restart 100-600 ms later, besides the
//                           crashes of CrashUnderLoad (which make followers
//                           lag, hence snapshots); every failpoint fires;
//   CompactDuringSnapshot   a follower is isolated until the leader's log
//                           is compacted past it, then healed; its snapshot
//                           streams slowly (20 KB/s) while the leader keeps
//                           compacting;
//   BackToBackSnapshots     a follower is isolated, healed until a snapshot
//                           reaches it, isolated again at once (its apply
//                           task may still be pending), and healed again:
//                           two snapshots in a row.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sim/client.h"
#include "sim/simulator.h"

namespace raftkv::sim {

enum class ScenarioKind { kGeneric, kOnePartition, kOneSnapshot };

// What a GenericTest iteration does to one follower besides the clients'
// load (beyond TinyKV).
enum class SnapshotScript {
  kNone,
  // Isolate a follower 600-1,000 ms, heal 1.5 s, repeat.
  kCompactDuringSnapshot,
  // Isolate a follower 500-900 ms, heal until a snapshot reaches it (at
  // most 2 s), isolate it again 200-600 ms, heal 1 s, repeat.
  kBackToBack,
};

struct ScenarioSpec {
  std::string name;
  ScenarioKind kind = ScenarioKind::kGeneric;
  int clients = 1;
  bool unreliable = false;
  bool crash = false;
  bool partitions = false;
  // Log compaction: -1 off, else StoreConfig::raft_log_gc_count_limit.
  int max_raft_log = -1;
  // Beyond TinyKV: while the clients run, one store at a time crashes and
  // restarts 100-600 ms later (TinyKV crashes every store only between
  // iterations, when no client is active).
  bool crash_under_load = false;
  // Beyond TinyKV: the stores crash at failpoints while the clients run
  // (see SnapshotFailpoints above).
  bool failpoints = false;
  SnapshotScript script = SnapshotScript::kNone;
  // Snapshot stream bandwidth in bytes per second (0: the simulator's).
  int64_t snap_bandwidth = 0;
};

// TinyKV's 2B and 2C scenarios in its order, then ours.
const std::vector<ScenarioSpec>& Scenarios();
// The scenario called `name`, or null.
const ScenarioSpec* FindScenario(std::string_view name);
// The scenario names, comma-separated.
std::string ScenarioNames();

struct ScenarioOptions {
  bool verbose = false;
  int iterations = 3;
  // Client activity per iteration.
  int64_t iteration_us = 5'000'000;
  // The faults an unreliable round adds.
  UnreliableFaults unreliable{.drop = 0.1,
                              .delay_min_us = 0,
                              .delay_max_us = 20'000,
                              .duplicate = 0.05};
  ClientOptions client;
};

struct ScenarioResult {
  std::string scenario;
  uint64_t seed = 0;
  // Empty when every check passed.
  std::vector<std::string> failures;
  // Completed client operations by kind.
  uint64_t puts = 0;
  uint64_t scans = 0;
  uint64_t gets = 0;
  uint64_t deletes = 0;
  ClientStats client;
  // "ok" or the first failure, for each checker.
  std::string appends_check = "not run";
  std::string linearizability_check = "not run";
  // "ok (N checks)" or the first failure of the replica check.
  std::string replica_check = "not run";
  // Scripted follower rounds (SnapshotScript) and, for kBackToBack, the
  // rounds in which the follower received two snapshots.
  uint64_t script_rounds = 0;
  uint64_t back_to_back_rounds = 0;
  // The lowest truncated index of region 1 over the up stores at the last
  // log-bound check (0 when none ran): above 5 once every store compacted.
  uint64_t min_truncated_index = 0;
  SimStats sim;
  int64_t virtual_time_us = 0;
  uint64_t trace_hash = 0;

  // True when every check passed.
  bool passed() const { return failures.empty(); }
};

// Runs `spec` from `seed`. Deterministic: the same arguments give the same
// result, trace hash included.
ScenarioResult RunScenario(const ScenarioSpec& spec, uint64_t seed,
                           const ScenarioOptions& options);

// The command line that replays a run: "raftkv-sim --scenario NAME --seed N".
std::string ReplayCommand(std::string_view scenario, uint64_t seed);

}  // namespace raftkv::sim
