// raftkv-sim: runs one scenario (TinyKV's 2B and 2C, and ours; see
// sim/scenarios.h) on the deterministic simulator.
//
//   raftkv-sim --scenario NAME --seed N [--verbose]
//   raftkv-sim --list
//
// Prints a summary (client operations, raft, network, snapshot streams,
// background tasks, failpoint crashes, the checkers' verdicts) and, as its
// last line, trace_hash=<hex>. --list prints the scenario names, one a line.
// Exit code: 0 when every check passed, 1 on a checker failure, 2 on bad
// arguments.
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "CLI/CLI.hpp"
#include "raftstore/scheduler.h"
#include "sim/scenarios.h"

int main(int argc, char** argv) {
  CLI::App app{"Runs one deterministic cluster-simulator scenario."};
  std::string scenario;
  uint64_t seed = 1;
  bool verbose = false;
  bool list = false;
  auto* list_flag = app.add_flag("--list", list, "list the scenario names");
  app.add_option("--scenario", scenario, "scenario name")->excludes(list_flag);
  app.add_option("--seed", seed, "seed of the run")->excludes(list_flag);
  app.add_flag("--verbose", verbose, "print every event to stderr");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (list) {
    for (const raftkv::sim::ScenarioSpec& s : raftkv::sim::Scenarios()) {
      std::printf("%s\n", s.name.c_str());
    }
    return 0;
  }
  if (scenario.empty() || app.count("--seed") == 0) {
    std::fprintf(stderr, "--scenario and --seed are required (or --list)\n");
    return 2;
  }
  const raftkv::sim::ScenarioSpec* spec = raftkv::sim::FindScenario(scenario);
  if (spec == nullptr) {
    std::fprintf(stderr, "unknown scenario \"%s\"; valid names: %s\n",
                 scenario.c_str(), raftkv::sim::ScenarioNames().c_str());
    return 2;
  }
  raftkv::sim::ScenarioOptions options;
  options.verbose = verbose;
  // Wall time is measured for the summary only; nothing in the run sees it.
  auto start = std::chrono::steady_clock::now();
  raftkv::sim::ScenarioResult r =
      raftkv::sim::RunScenario(*spec, seed, options);
  double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  const raftkv::sim::SimStats& s = r.sim;
  std::printf("scenario=%s seed=%" PRIu64 "\n", r.scenario.c_str(), r.seed);
  std::printf(
      "ops: puts=%" PRIu64 " scans=%" PRIu64 " gets=%" PRIu64
      " deletes=%" PRIu64 " attempts=%" PRIu64 " timeouts=%" PRIu64 "\n",
      r.puts, r.scans, r.gets, r.deletes, r.client.attempts, r.client.timeouts);
  std::printf("raft: elections=%" PRIu64 " crashes=%" PRIu64
              " restarts=%" PRIu64 " ticks=%" PRIu64 " worker_passes=%" PRIu64
              "\n",
              s.elections, s.crashes, s.restarts, s.ticks, s.worker_passes);
  std::printf("messages: sent=%" PRIu64 " delivered=%" PRIu64
              " dropped=%" PRIu64 " duplicated=%" PRIu64 "\n",
              s.messages_sent, s.messages_delivered, s.messages_dropped,
              s.messages_duplicated);
  std::printf("snapshots: sent=%" PRIu64 " completed=%" PRIu64
              " failed=%" PRIu64 " outlived_by_compaction=%" PRIu64
              " while_applying=%" PRIu64 " chunks=%" PRIu64 " bytes=%" PRIu64
              "\n",
              s.snapshots_sent, s.snapshots_completed, s.snapshots_failed,
              s.snapshots_outlived_by_compaction, s.snapshots_while_applying,
              s.snapshot_chunks, s.snapshot_bytes);
  auto task_count = [&s](raftkv::raftstore::TaskKind k) -> uint64_t {
    auto it = s.tasks_run.find(static_cast<int>(k));
    return it == s.tasks_run.end() ? 0 : it->second;
  };
  std::printf("tasks: log_gc=%" PRIu64 " snap_generate=%" PRIu64
              " snap_apply=%" PRIu64 "; log: min_truncated=%" PRIu64
              "; script rounds=%" PRIu64 " back_to_back=%" PRIu64 "\n",
              task_count(raftkv::raftstore::TaskKind::kLogGc),
              task_count(raftkv::raftstore::TaskKind::kSnapGenerate),
              task_count(raftkv::raftstore::TaskKind::kSnapApply),
              r.min_truncated_index, r.script_rounds, r.back_to_back_rounds);
  if (!s.failpoint_calls.empty()) {
    std::printf("failpoints (calls/crashes):");
    for (std::string_view name : raftkv::raftstore::kFailpoints) {
      std::string n(name);
      auto calls = s.failpoint_calls.find(n);
      auto crashes = s.failpoint_crashes.find(n);
      std::printf(" %s=%" PRIu64 "/%" PRIu64, n.c_str(),
                  calls == s.failpoint_calls.end() ? 0 : calls->second,
                  crashes == s.failpoint_crashes.end() ? 0 : crashes->second);
    }
    std::printf("\n");
  }
  std::printf("time: virtual=%.3fs wall=%.3fs events=%" PRIu64 "\n",
              static_cast<double>(r.virtual_time_us) / 1e6, wall, s.events);
  std::printf("check appends: %s\n", r.appends_check.c_str());
  std::printf("check linearizability: %s\n", r.linearizability_check.c_str());
  std::printf("check replicas: %s\n", r.replica_check.c_str());
  int rc = 0;
  if (!r.passed()) {
    rc = 1;
    for (const std::string& f : r.failures) {
      std::printf("FAILED: %s\n", f.c_str());
    }
    std::printf("replay: %s\n",
                raftkv::sim::ReplayCommand(r.scenario, r.seed).c_str());
  } else {
    std::printf("result: PASS\n");
  }
  std::printf("trace_hash=%016" PRIx64 "\n", r.trace_hash);
  return rc;
}
