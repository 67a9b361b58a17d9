// A run is a function of its seed: the same seed gives the same trace hash,
// in-process and through the raftkv-sim binary; another seed another hash.
// Also with snapshot streams, background tasks and failpoint crashes in
// play (SnapshotFailpoints).
#include <sys/wait.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "gtest/gtest.h"
#include "sim/scenarios.h"

namespace raftkv::sim {
namespace {

ScenarioOptions Short() {
  ScenarioOptions o;
  o.iterations = 2;
  o.iteration_us = 1'000'000;
  return o;
}

TEST(DeterminismTest, SameSeedSameTraceOtherSeedOtherTrace) {
  for (const char* name :
       {"ManyPartitionsManyClients", "PersistConcurrentUnreliable",
        "SnapshotFailpoints"}) {
    const ScenarioSpec* spec = FindScenario(name);
    ASSERT_NE(spec, nullptr);
    ScenarioResult a = RunScenario(*spec, 11, Short());
    ScenarioResult b = RunScenario(*spec, 11, Short());
    ScenarioResult c = RunScenario(*spec, 12, Short());
    EXPECT_TRUE(a.passed()) << name;
    EXPECT_EQ(a.trace_hash, b.trace_hash) << name;
    EXPECT_EQ(a.sim.events, b.sim.events) << name;
    EXPECT_EQ(a.puts, b.puts) << name;
    EXPECT_NE(a.trace_hash, c.trace_hash) << name;
    if (FindScenario(name)->failpoints) {
      // The run did stream snapshots and crash at failpoints.
      EXPECT_GT(a.sim.snapshots_completed, 0u) << name;
      uint64_t crashes = 0;
      for (const auto& [fp, n] : a.sim.failpoint_crashes) crashes += n;
      EXPECT_GT(crashes, 0u) << name;
      EXPECT_EQ(a.sim.snapshot_bytes, b.sim.snapshot_bytes) << name;
    }
  }
}

// Runs `args` through the shell; returns the exit code and the output.
int RunBinary(const std::string& args, std::string* out) {
  std::string cmd = std::string(RAFTKV_SIM_BINARY) + " " + args + " 2>&1";
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out->append(buf, n);
  int status = pclose(f);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string LastLine(const std::string& out) {
  std::string s = out;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  size_t nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

TEST(DeterminismTest, BinaryReplaysASeed) {
  std::string first, second, other;
  ASSERT_EQ(RunBinary("--scenario Unreliable --seed 5", &first), 0) << first;
  ASSERT_EQ(RunBinary("--scenario Unreliable --seed 5", &second), 0) << second;
  ASSERT_EQ(RunBinary("--scenario Unreliable --seed 6", &other), 0) << other;
  EXPECT_EQ(LastLine(first).rfind("trace_hash=", 0), 0u) << first;
  EXPECT_EQ(LastLine(first), LastLine(second));
  EXPECT_NE(LastLine(first), LastLine(other));
}

TEST(DeterminismTest, BinaryListsTheScenarios) {
  std::string out;
  ASSERT_EQ(RunBinary("--list", &out), 0) << out;
  for (const ScenarioSpec& s : Scenarios()) {
    EXPECT_NE(out.find(s.name + "\n"), std::string::npos) << s.name;
  }
}

TEST(DeterminismTest, BinaryRejectsBadArguments) {
  std::string out;
  EXPECT_EQ(RunBinary("--scenario nope --seed 1", &out), 2);
  EXPECT_NE(out.find("PersistPartitionUnreliable"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunBinary("--seed 1", &out), 2) << out;
}

}  // namespace
}  // namespace raftkv::sim
