// raft_core_bench: throughput of the raft core alone.
//
// Three RawNodes in one process on MemoryStorage; messages are delivered at
// once. Each round the leader proposes `batch` entries of 256 bytes, then the
// group is driven until quiet (no Ready and no message in flight), so every
// entry of the round is committed and applied on all three nodes. The rate
// reported is entries committed and applied per second of wall time.
//
// The last line printed is
//   batch64_entries_per_s=N batch1_entries_per_s=N
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "raft/raw_node.h"
#include "raft/storage.h"

namespace raftkv::raft {
namespace {

constexpr int kNodes = 3;
constexpr size_t kPayload = 256;
// Entries kept in each log behind the applied index.
constexpr uint64_t kKeepEntries = 4096;

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "raft_core_bench: %s\n", what);
  std::abort();
}

class Group {
 public:
  Group() {
    std::vector<uint64_t> peers;
    for (int i = 1; i <= kNodes; ++i) peers.push_back(i);
    for (int i = 0; i < kNodes; ++i) {
      storage_[i] = std::make_unique<MemoryStorage>();
      Config c;
      c.id = i + 1;
      c.peers = peers;
      c.storage = storage_[i].get();
      auto n = RawNode::Create(c);
      if (!n.ok()) Die("cannot create node");
      nodes_[i] = *std::move(n);
    }
    nodes_[0]->Campaign();
    DriveUntilQuiet();
    if (nodes_[0]->raft().state() != StateType::kLeader) Die("no leader");
  }

  RawNode& leader() { return *nodes_[0]; }
  uint64_t applied(int i) const { return applied_[i]; }

  // Handles every Ready and delivers every message until nothing is left.
  void DriveUntilQuiet() {
    bool busy = true;
    while (busy) {
      busy = false;
      for (int i = 0; i < kNodes; ++i) {
        if (!nodes_[i]->HasReady()) continue;
        busy = true;
        HandleReady(i);
      }
      if (!inflight_.empty()) {
        busy = true;
        std::vector<raftpb::Message> msgs;
        msgs.swap(inflight_);
        for (raftpb::Message& m : msgs) {
          (void)nodes_[m.to() - 1]->Step(std::move(m));
        }
      }
    }
  }

 private:
  void HandleReady(int i) {
    RawNode& n = *nodes_[i];
    MemoryStorage& s = *storage_[i];
    Ready rd = n.GetReady();
    // Persist, then send, then apply, then advance.
    if (!IsEmptySnap(rd.snapshot)) {
      if (!s.ApplySnapshot(std::move(rd.snapshot)).ok()) Die("snapshot");
    }
    if (!rd.entries.empty()) {
      if (!s.Append(std::move(rd.entries)).ok()) Die("append");
    }
    if (!IsEmptyHardState(rd.hard_state)) s.SetHardState(rd.hard_state);
    for (raftpb::Message& m : rd.messages) inflight_.push_back(std::move(m));
    for (const raftpb::Entry& e : rd.committed_entries) {
      // "Apply": touch the payload so the work cannot be optimized away.
      checksum_ += e.data().size();
      if (e.index() > applied_[i]) applied_[i] = e.index();
    }
    n.Advance();
    // Like a real application, compact the log behind what was applied,
    // keeping a trailing window for followers that lag a little.
    if (applied_[i] > s.FirstIndex().value() + 2 * kKeepEntries) {
      if (!s.Compact(applied_[i] - kKeepEntries).ok()) Die("compact");
    }
  }

  std::unique_ptr<MemoryStorage> storage_[kNodes];
  std::unique_ptr<RawNode> nodes_[kNodes];
  std::vector<raftpb::Message> inflight_;
  uint64_t applied_[kNodes] = {};
  uint64_t checksum_ = 0;
};

void BM_ProposeRounds(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  Group g;
  const std::string payload(kPayload, 'x');
  uint64_t start = g.applied(0);
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) {
      if (!g.leader().Propose(payload).ok()) Die("proposal refused");
    }
    g.DriveUntilQuiet();
  }
  uint64_t done = g.applied(0) - start;
  for (int i = 1; i < kNodes; ++i) {
    if (g.applied(i) != g.applied(0)) Die("followers did not apply");
  }
  if (done != state.iterations() * static_cast<uint64_t>(batch)) {
    Die("not every proposal was applied");
  }
  state.counters["entries_per_s"] = benchmark::Counter(
      static_cast<double>(done), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ProposeRounds)->Arg(64)->Arg(1);

// Remembers the rate of each batch size for the summary line.
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  // No colours: the output is meant to be read by scripts too.
  SummaryReporter() : ConsoleReporter(OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      auto it = r.counters.find("entries_per_s");
      if (it == r.counters.end()) continue;
      // With --benchmark_repetitions, the median stands for the batch size;
      // otherwise the single run does.
      bool median =
          r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
      if (r.run_type == Run::RT_Iteration || median) {
        rates_[r.run_name.args] = it->second.value;
      }
    }
  }
  double rate(const std::string& arg) const {
    auto it = rates_.find(arg);
    return it == rates_.end() ? 0 : it->second;
  }

 private:
  std::map<std::string, double> rates_;
};

}  // namespace
}  // namespace raftkv::raft

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  raftkv::raft::SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  std::printf("batch64_entries_per_s=%.0f batch1_entries_per_s=%.0f\n",
              reporter.rate("64"), reporter.rate("1"));
  return 0;
}
