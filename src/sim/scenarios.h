// The TinyKV 2B scenarios (inventory section 3) on the simulator.
//
// GenericTest(nclients, unreliable, crash, partitions), on 5 stores: after
// a 1 s start, 3 iterations; in each, nclients clients loop 50/50 between a
// Put of "<cli> <j %08d>" = "x <cli> <j> y" and a scan of the client's keys
// so far, which must equal everything it put ("last"); with chaos, 300 ms
// in and then every 500-700 ms the network is re-drawn: partitions put each
// store in one of two random sets, unreliable stacks one more 10% drop
// filter (plus delays that reorder and duplicates); after 5 s the clients
// finish their current op and stop, filters are cleared (and 500 ms pass);
// with crash every store is stopped and, 500 ms later, restarted; then each
// client's final scan passes checkClntAppends and its keys are deleted. The
// whole history must be linearizable.
//
// OnePartition: TinyKV's TestOnePartition2B (majority and minority
// partitions around the leader; see scenarios.cc).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sim/client.h"
#include "sim/simulator.h"

namespace raftkv::sim {

struct ScenarioSpec {
  std::string name;
  // TestOnePartition2B rather than GenericTest.
  bool one_partition = false;
  int clients = 1;
  bool unreliable = false;
  bool crash = false;
  bool partitions = false;
  // Beyond TinyKV: while the clients run, one store at a time crashes and
  // restarts 100-600 ms later (TinyKV crashes every store only between
  // iterations, when no client is active).
  bool crash_under_load = false;
};

// TinyKV's 11 scenarios in its order, then ours (CrashUnderLoad).
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
