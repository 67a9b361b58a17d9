// The TinyKV 2B scenarios and ours (CrashUnderLoad: one store at a time
// crashes and restarts while the clients run) on the simulator, each from
// seeds 1..K, where K is $RAFTKV_SIM_SEEDS (default 20). A failure prints
// its seed and the raftkv-sim command that replays it (stopping after three
// failing seeds).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "sim/scenarios.h"

namespace raftkv::sim {
namespace {

uint64_t SeedCount() {
  const char* env = std::getenv("RAFTKV_SIM_SEEDS");
  if (env == nullptr || *env == '\0') return 20;
  return std::strtoull(env, nullptr, 10);
}

std::vector<std::string> Names() {
  std::vector<std::string> names;
  for (const ScenarioSpec& s : Scenarios()) names.push_back(s.name);
  return names;
}

class ScenarioTest : public testing::TestWithParam<std::string> {};

TEST_P(ScenarioTest, PassesEverySeed) {
  const ScenarioSpec* spec = FindScenario(GetParam());
  ASSERT_NE(spec, nullptr);
  uint64_t seeds = SeedCount();
  int failed = 0;
  for (uint64_t seed = 1; seed <= seeds; ++seed) {
    ScenarioResult r = RunScenario(*spec, seed, ScenarioOptions());
    EXPECT_TRUE(r.passed())
        << spec->name << " failed with seed " << seed << ":\n  "
        << absl::StrJoin(r.failures, "\n  ")
        << "\nreplay: " << RAFTKV_SIM_BINARY << " --scenario " << spec->name
        << " --seed " << seed;
    // A run in which the clients barely moved would pass the checkers
    // vacuously: every scenario must complete real work, and both checkers
    // must have run.
    // (Seeds 1-5 of the harshest scenarios complete 700-1,300 puts and as
    // many scans; OnePartition is a short scripted sequence.)
    if (spec->one_partition) {
      EXPECT_GE(r.puts, 3u) << spec->name << " seed " << seed;
      EXPECT_GE(r.gets, 2u) << spec->name << " seed " << seed;
    } else {
      EXPECT_GE(r.puts, 100u)
          << spec->name << " seed " << seed << ": too little progress to judge";
      EXPECT_GE(r.scans, 100u) << spec->name << " seed " << seed;
      EXPECT_EQ(r.appends_check, "ok") << spec->name << " seed " << seed;
    }
    EXPECT_EQ(r.linearizability_check.substr(0, 2), "ok")
        << spec->name << " seed " << seed;
    if (!r.passed() && ++failed >= 3) break;  // enough to debug from
  }
}

INSTANTIATE_TEST_SUITE_P(Scenarios, ScenarioTest, testing::ValuesIn(Names()),
                         [](const testing::TestParamInfo<std::string>& p) {
                           return p.param;
                         });

}  // namespace
}  // namespace raftkv::sim
