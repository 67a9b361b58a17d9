// raftkv-sim: runs one TinyKV 2B scenario on the deterministic simulator.
//
//   raftkv-sim --scenario NAME --seed N [--verbose]
//
// Prints a summary and, as its last line, trace_hash=<hex>. Exit code: 0 when
// every check passed, 1 on a checker failure, 2 on bad arguments.
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "sim/scenarios.h"

int main(int argc, char** argv) {
  CLI::App app{"Runs one deterministic cluster-simulator scenario."};
  std::string scenario;
  uint64_t seed = 1;
  bool verbose = false;
  app.add_option("--scenario", scenario, "scenario name")->required();
  app.add_option("--seed", seed, "seed of the run")->required();
  app.add_flag("--verbose", verbose, "print every event to stderr");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
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
  std::printf("time: virtual=%.3fs wall=%.3fs events=%" PRIu64 "\n",
              static_cast<double>(r.virtual_time_us) / 1e6, wall, s.events);
  std::printf("check appends: %s\n", r.appends_check.c_str());
  std::printf("check linearizability: %s\n", r.linearizability_check.c_str());
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
