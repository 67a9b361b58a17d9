// Every simulator scenario: TinyKV's 2B and 2C ones and ours (CrashUnderLoad,
// SnapshotFailpoints, CompactDuringSnapshot, BackToBackSnapshots; see
// sim/scenarios.h), each from seeds 1..K, where K is $RAFTKV_SIM_SEEDS
// (default 20). A failure prints its seed and the raftkv-sim command that
// replays it (stopping after three failing seeds).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "raftstore/scheduler.h"
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

// The initial truncated index of region 1 (a fresh region's log starts
// after index 5).
constexpr uint64_t kInitialTruncatedIndex = 5;

class ScenarioTest : public testing::TestWithParam<std::string> {};

TEST_P(ScenarioTest, PassesEverySeed) {
  const ScenarioSpec* spec = FindScenario(GetParam());
  ASSERT_NE(spec, nullptr);
  uint64_t seeds = SeedCount();
  int failed = 0;
  for (uint64_t seed = 1; seed <= seeds; ++seed) {
    ScenarioResult r = RunScenario(*spec, seed, ScenarioOptions());
    const SimStats& st = r.sim;
    EXPECT_TRUE(r.passed())
        << spec->name << " failed with seed " << seed << ":\n  "
        << absl::StrJoin(r.failures, "\n  ")
        << "\nreplay: " << RAFTKV_SIM_BINARY << " --scenario " << spec->name
        << " --seed " << seed;
    // A run in which the clients barely moved would pass the checkers
    // vacuously: every scenario must complete real work, and every checker
    // must have run.
    // (Seeds 1-5 of the harshest scenarios complete 700-1,300 puts and as
    // many scans; OnePartition and OneSnapshot are short scripted
    // sequences.)
    switch (spec->kind) {
      case ScenarioKind::kOnePartition:
        EXPECT_GE(r.puts, 3u) << spec->name << " seed " << seed;
        EXPECT_GE(r.gets, 2u) << spec->name << " seed " << seed;
        break;
      case ScenarioKind::kOneSnapshot:
        EXPECT_EQ(r.puts, 17u) << spec->name << " seed " << seed;
        EXPECT_EQ(r.gets, 3u) << spec->name << " seed " << seed;
        // Store 1 caught up by a snapshot (the scenario also checks that
        // store 1 received it and that its truncated index passed the
        // leader's at the heal).
        EXPECT_GT(st.snapshots_completed, 0u) << spec->name << " seed " << seed;
        break;
      case ScenarioKind::kGeneric:
        EXPECT_GE(r.puts, 100u)
            << spec->name << " seed " << seed << ": too little progress";
        EXPECT_GE(r.scans, 100u) << spec->name << " seed " << seed;
        EXPECT_EQ(r.appends_check, "ok") << spec->name << " seed " << seed;
        break;
    }
    EXPECT_EQ(r.linearizability_check.substr(0, 2), "ok")
        << spec->name << " seed " << seed;
    EXPECT_EQ(r.replica_check.substr(0, 2), "ok")
        << spec->name << " seed " << seed << ": " << r.replica_check;
    if (spec->max_raft_log > 0) {
      // Every store compacted its log at least once.
      EXPECT_GT(r.min_truncated_index, kInitialTruncatedIndex)
          << spec->name << " seed " << seed << ": no compaction";
    } else {
      EXPECT_EQ(st.snapshots_sent, 0u) << spec->name << " seed " << seed;
    }
    if (spec->failpoints) {
      for (std::string_view name : raftstore::kFailpoints) {
        auto it = st.failpoint_crashes.find(std::string(name));
        EXPECT_TRUE(it != st.failpoint_crashes.end() && it->second > 0)
            << spec->name << " seed " << seed << ": failpoint " << name
            << " never fired";
      }
    }
    switch (spec->script) {
      case SnapshotScript::kNone:
        break;
      case SnapshotScript::kCompactDuringSnapshot:
        EXPECT_GT(st.snapshots_completed, 0u) << spec->name << " seed " << seed;
        EXPECT_GT(st.snapshots_outlived_by_compaction, 0u)
            << spec->name << " seed " << seed
            << ": the leader never compacted during a stream";
        break;
      case SnapshotScript::kBackToBack:
        EXPECT_GT(r.back_to_back_rounds, 0u)
            << spec->name << " seed " << seed
            << ": no round delivered two snapshots to the follower";
        break;
    }
    if (!r.passed() && ++failed >= 3) break;  // enough to debug from
  }
}

INSTANTIATE_TEST_SUITE_P(Scenarios, ScenarioTest, testing::ValuesIn(Names()),
                         [](const testing::TestParamInfo<std::string>& p) {
                           return p.param;
                         });

}  // namespace
}  // namespace raftkv::sim
