#include "sim/scenarios.h"

#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "check/linearizability.h"
#include "sim/checkers.h"
#include "storage/keys.h"

namespace raftkv::sim {

namespace {

constexpr int kStores = 5;
constexpr int64_t kMs = 1'000;
constexpr int64_t kSecond = 1'000'000;

raft_cmdpb::RaftCmdRequest PutRequest(const std::string& key,
                                      const std::string& value) {
  raft_cmdpb::RaftCmdRequest req;
  raft_cmdpb::Request* r = req.add_requests();
  r->set_cmd_type(raft_cmdpb::Put);
  r->mutable_put()->set_cf(std::string(storage::kCfDefault));
  r->mutable_put()->set_key(key);
  r->mutable_put()->set_value(value);
  return req;
}

raft_cmdpb::RaftCmdRequest GetRequest(const std::string& key) {
  raft_cmdpb::RaftCmdRequest req;
  raft_cmdpb::Request* r = req.add_requests();
  r->set_cmd_type(raft_cmdpb::Get);
  r->mutable_get()->set_cf(std::string(storage::kCfDefault));
  r->mutable_get()->set_key(key);
  return req;
}

raft_cmdpb::RaftCmdRequest SnapRequest() {
  raft_cmdpb::RaftCmdRequest req;
  req.add_requests()->set_cmd_type(raft_cmdpb::Snap);
  return req;
}

std::string ClientKey(int cli, int j) {
  return absl::StrFormat("%d %08d", cli, j);
}

// The model key of client `cli`'s append list.
std::string ModelKey(int cli) { return absl::StrCat("client ", cli); }

std::optional<std::string> AsModelValue(const std::string& scan) {
  if (scan.empty()) return std::nullopt;
  return scan;
}

// What every scenario run has: the simulator, its clients, the history and
// the result.
class Run {
 public:
  Run(const ScenarioSpec& spec, uint64_t seed, const ScenarioOptions& options)
      : spec_(spec), options_(options), sim_(MakeConfig(seed, options)) {
    result_.scenario = spec.name;
    result_.seed = seed;
  }

  ScenarioResult Finish() {
    std::string summary;
    absl::Status s = CheckLinearizable(history_, &summary);
    result_.linearizability_check =
        s.ok() ? absl::StrCat("ok (", history_.size(), " operations)")
               : std::string(s.message());
    if (!s.ok()) Fail(std::string(s.message()));
    if (spec_.one_partition) {
      result_.appends_check = "n/a";
    } else if (result_.appends_check == "not run" && !failed()) {
      result_.appends_check = "ok";
    }
    result_.sim = sim_.stats();
    result_.virtual_time_us = sim_.now();
    result_.trace_hash = sim_.trace_hash();
    return std::move(result_);
  }

 protected:
  static SimConfig MakeConfig(uint64_t seed, const ScenarioOptions& options) {
    SimConfig c;
    c.seed = seed;
    c.num_stores = kStores;
    c.verbose = options.verbose;
    return c;
  }

  void Fail(std::string what) {
    sim_.Trace("failure", {}, what);
    result_.failures.push_back(std::move(what));
  }
  bool failed() const { return !result_.failures.empty(); }

  KvClient* NewClient() {
    clients_.push_back(std::make_unique<KvClient>(
        &sim_, next_client_id_++, options_.client, &result_.client));
    return clients_.back().get();
  }

  // Runs `req` on `client` to its end (or until a generous deadline).
  std::optional<ClientReply> CallSync(KvClient* client,
                                      raft_cmdpb::RaftCmdRequest req,
                                      std::optional<ScanRange> scan) {
    std::optional<ClientReply> out;
    client->Call(std::move(req), std::move(scan),
                 [&out](ClientReply r) { out = std::move(r); });
    sim_.RunUntilTrue([&out] { return out.has_value(); },
                      sim_.now() + options_.client.give_up_us + 10 * kSecond);
    return out;
  }

  ScenarioSpec spec_;
  ScenarioOptions options_;
  Simulator sim_;
  ScenarioResult result_;
  std::vector<check::KvOperation> history_;
  // Every client of the run, alive until its end.
  std::vector<std::unique_ptr<KvClient>> clients_;
  uint64_t next_client_id_ = 1;
};

// TinyKV's GenericTest.
class GenericRun : public Run {
 public:
  using Run::Run;

  void Execute() {
    if (absl::Status s = sim_.Start(); !s.ok()) {
      Fail(absl::StrCat("start: ", s.ToString()));
      return;
    }
    sim_.RunUntil(sim_.now() + kSecond);
    for (int it = 0; it < options_.iterations && !failed(); ++it) {
      Iteration(it);
    }
  }

 private:
  struct ClientState {
    int cli = 0;
    KvClient* kv = nullptr;
    int j = 0;
    std::string last;
    bool running = false;
  };

  void Iteration(int it) {
    sim_.Trace("iteration", {static_cast<uint64_t>(it)});
    stop_clients_ = false;
    states_.clear();
    for (int cli = 0; cli < spec_.clients; ++cli) {
      auto c = std::make_unique<ClientState>();
      c->cli = cli;
      c->kv = NewClient();
      c->running = true;
      ClientState* cp = c.get();
      states_.push_back(std::move(c));
      sim_.After(0, [this, cp] { ClientNext(cp); });
    }
    if (spec_.crash_under_load) {
      uint64_t gen = ++crash_generation_;
      sim_.After(300 * kMs, [this, gen] { CrashRound(gen); });
    }
    chaos_ran_ = false;
    if (spec_.unreliable || spec_.partitions) {
      uint64_t gen = ++chaos_generation_;
      sim_.After(300 * kMs, [this, gen] {
        if (gen != chaos_generation_) return;
        chaos_ran_ = true;
        ChaosRound(gen);
      });
    }
    sim_.RunUntil(sim_.now() + options_.iteration_us,
                  [this] { return failed(); });
    stop_clients_ = true;
    ++chaos_generation_;  // stops the chaos rounds
    ++crash_generation_;  // stops the crash rounds (a store down restarts)
    if (failed()) return;
    if (chaos_ran_) {
      sim_.filters().Clear();
      sim_.Trace("heal", {});
      sim_.RunUntil(sim_.now() + 500 * kMs, [this] { return failed(); });
    }
    bool stopped = sim_.RunUntilTrue(
        [this] {
          if (failed()) return true;
          for (const auto& c : states_) {
            if (c->running) return false;
          }
          return true;
        },
        sim_.now() + options_.client.give_up_us + 10 * kSecond);
    if (failed()) return;
    if (!stopped) {
      Fail("clients did not finish their last operation");
      return;
    }
    if (spec_.crash) {
      for (uint64_t s = 1; s <= kStores; ++s) sim_.Crash(s);
      sim_.RunUntil(sim_.now() + 500 * kMs);
      for (uint64_t s = 1; s <= kStores; ++s) {
        if (absl::Status st = sim_.Restart(s); !st.ok()) {
          Fail(absl::StrCat("restart of store ", s, ": ", st.ToString()));
          return;
        }
      }
    }
    for (const auto& c : states_) {
      if (!FinalCheck(*c)) return;
    }
  }

  // A client's final scan (checkClntAppends) and the deletion of its keys.
  bool FinalCheck(ClientState& c) {
    ScanRange range{ClientKey(c.cli, 0), ClientKey(c.cli, c.j)};
    std::optional<ClientReply> r = CallSync(c.kv, SnapRequest(), range);
    if (!r.has_value() || !r->status.ok()) {
      Fail(absl::StrCat("client ", c.cli, ": final scan failed: ",
                        r ? r->status.ToString() : "no answer"));
      return false;
    }
    ++result_.scans;
    history_.push_back(check::KvGet(c.cli, ModelKey(c.cli),
                                    AsModelValue(r->scan_values), r->call_time,
                                    r->return_time));
    if (absl::Status s = CheckClientAppends(c.cli, r->scan_values, c.j);
        !s.ok()) {
      result_.appends_check = std::string(s.message());
      Fail(std::string(s.message()));
      return false;
    }
    if (c.j == 0) return true;
    raft_cmdpb::RaftCmdRequest del;
    for (int k = 0; k < c.j; ++k) {
      raft_cmdpb::Request* d = del.add_requests();
      d->set_cmd_type(raft_cmdpb::Delete);
      d->mutable_delete_()->set_cf(std::string(storage::kCfDefault));
      d->mutable_delete_()->set_key(ClientKey(c.cli, k));
    }
    r = CallSync(c.kv, std::move(del), std::nullopt);
    if (!r.has_value() || !r->status.ok()) {
      Fail(absl::StrCat("client ", c.cli, ": deleting its keys failed: ",
                        r ? r->status.ToString() : "no answer"));
      return false;
    }
    ++result_.deletes;
    history_.push_back(
        check::KvDelete(c.cli, ModelKey(c.cli), r->call_time, r->return_time));
    return true;
  }

  void ClientNext(ClientState* c) {
    if (stop_clients_ || failed()) {
      c->running = false;
      return;
    }
    if (sim_.Random(2) == 0) {
      std::string value = AppendValue(c->cli, c->j);
      sim_.Trace("put",
                 {static_cast<uint64_t>(c->cli), static_cast<uint64_t>(c->j)});
      c->kv->Call(PutRequest(ClientKey(c->cli, c->j), value), std::nullopt,
                  [this, c, value](ClientReply r) {
                    if (!r.status.ok()) {
                      history_.push_back(check::KvAppend(
                          c->cli, ModelKey(c->cli), value, std::nullopt,
                          r.call_time, check::kUnknownReturnTime));
                      Fail(absl::StrCat("client ", c->cli, ": put ", c->j, ": ",
                                        r.status.ToString()));
                      c->running = false;
                      return;
                    }
                    ++result_.puts;
                    history_.push_back(check::KvAppend(
                        c->cli, ModelKey(c->cli), value, std::nullopt,
                        r.call_time, r.return_time));
                    c->last += value;
                    ++c->j;
                    ClientNext(c);
                  });
    } else {
      sim_.Trace("scan",
                 {static_cast<uint64_t>(c->cli), static_cast<uint64_t>(c->j)});
      ScanRange range{ClientKey(c->cli, 0), ClientKey(c->cli, c->j)};
      c->kv->Call(SnapRequest(), range, [this, c](ClientReply r) {
        if (!r.status.ok()) {
          Fail(
              absl::StrCat("client ", c->cli, ": scan: ", r.status.ToString()));
          c->running = false;
          return;
        }
        ++result_.scans;
        history_.push_back(check::KvGet(c->cli, ModelKey(c->cli),
                                        AsModelValue(r.scan_values),
                                        r.call_time, r.return_time));
        if (r.scan_values != c->last) {
          Fail(absl::StrCat("client ", c->cli, ": scan got \"", r.scan_values,
                            "\", want \"", c->last, "\""));
          c->running = false;
          return;
        }
        ClientNext(c);
      });
    }
  }

  void ChaosRound(uint64_t gen) {
    if (gen != chaos_generation_) return;
    if (spec_.partitions) {
      std::set<uint64_t> a, b;
      for (uint64_t s = 1; s <= kStores; ++s) {
        (sim_.Random(2) == 0 ? a : b).insert(s);
      }
      sim_.filters().Clear();
      sim_.filters().Partition(a, b);
      sim_.Trace(
          "partition", {},
          absl::StrCat(absl::StrJoin(a, ","), "|", absl::StrJoin(b, ",")));
    }
    if (spec_.unreliable) {
      sim_.filters().AddUnreliable(options_.unreliable);
      sim_.Trace("unreliable",
                 {static_cast<uint64_t>(sim_.filters().drop_filters())});
    }
    sim_.After(500 * kMs + sim_.RandomIn(0, 199 * kMs),
               [this, gen] { ChaosRound(gen); });
  }

  // Crashes one store (the others keep a quorum), restarts it 100-600 ms
  // later, and schedules the next crash while the iteration lasts.
  void CrashRound(uint64_t gen) {
    if (gen != crash_generation_) return;
    uint64_t s = 1 + sim_.Random(kStores);
    sim_.Crash(s);
    sim_.After(sim_.RandomIn(100 * kMs, 600 * kMs), [this, s, gen] {
      if (absl::Status st = sim_.Restart(s); !st.ok()) {
        Fail(absl::StrCat("restart of store ", s, ": ", st.ToString()));
        return;
      }
      sim_.After(sim_.RandomIn(200 * kMs, 700 * kMs),
                 [this, gen] { CrashRound(gen); });
    });
  }

  std::vector<std::unique_ptr<ClientState>> states_;
  uint64_t crash_generation_ = 0;
  bool stop_clients_ = false;
  bool chaos_ran_ = false;
  uint64_t chaos_generation_ = 0;
};

// TinyKV's TestOnePartition2B.
class OnePartitionRun : public Run {
 public:
  using Run::Run;

  void Execute() {
    if (absl::Status s = sim_.Start(); !s.ok()) {
      Fail(absl::StrCat("start: ", s.ToString()));
      return;
    }
    client_ = NewClient();
    if (!sim_.RunUntilTrue([this] { return sim_.LeaderStore() != 0; },
                           sim_.now() + 10 * kSecond)) {
      Fail("no leader elected");
      return;
    }
    uint64_t leader = sim_.LeaderStore();
    std::vector<uint64_t> others;
    for (uint64_t s = 1; s <= kStores; ++s) {
      if (s != leader) others.push_back(s);
    }
    // 1. The leader and two followers against the other two.
    sim_.filters().Partition({leader, others[0], others[1]},
                             {others[2], others[3]});
    sim_.Trace("partition", {leader, others[0], others[1]});
    if (!MustPut("k1", "v1") || !MustGet("k1", "v1")) return;
    for (uint64_t s : {others[2], others[3]}) {
      if (EngineValue(s, "k1").has_value()) {
        Fail(absl::StrCat("store ", s, " in the minority has k1"));
        return;
      }
    }
    sim_.filters().Clear();
    // 2. The old leader and one follower against the other three.
    sim_.filters().Partition({leader, others[0]},
                             {others[1], others[2], others[3]});
    sim_.Trace("partition", {leader, others[0]});
    if (!MustGet("k1", "v1") || !MustPut("k1", "changed")) return;
    for (uint64_t s : {leader, others[0]}) {
      if (EngineValue(s, "k1") != std::optional<std::string>("v1")) {
        Fail(absl::StrCat("store ", s, " in the minority lost k1=v1"));
        return;
      }
    }
    sim_.filters().Clear();
    // 3. Healed: the old leader catches up.
    if (!MustPut("k2", "v2")) return;
    if (!sim_.RunUntilTrue(
            [this, leader] {
              return EngineValue(leader, "k2") ==
                         std::optional<std::string>("v2") &&
                     EngineValue(leader, "k1") ==
                         std::optional<std::string>("changed");
            },
            sim_.now() + 6 * kSecond)) {
      Fail("the old leader did not catch up (k1=changed, k2=v2)");
    }
  }

 private:
  std::optional<std::string> EngineValue(uint64_t s, const std::string& key) {
    storage::Engine* e = sim_.kv_engine(s);
    if (e == nullptr) return std::nullopt;
    auto v = e->Get(storage::DataKey(storage::kCfDefault, key));
    if (!v.ok()) return std::nullopt;
    return *v;
  }

  bool MustPut(const std::string& key, const std::string& value) {
    sim_.Trace("must-put", {}, key);
    std::optional<ClientReply> r =
        CallSync(client_, PutRequest(key, value), std::nullopt);
    if (!r.has_value() || !r->status.ok()) {
      Fail(absl::StrCat("put ", key, ": ",
                        r ? r->status.ToString() : "no answer"));
      return false;
    }
    ++result_.puts;
    history_.push_back(
        check::KvPut(0, key, value, r->call_time, r->return_time));
    return true;
  }

  bool MustGet(const std::string& key, const std::string& want) {
    sim_.Trace("must-get", {}, key);
    std::optional<ClientReply> r = CallSync(client_, GetRequest(key), {});
    if (!r.has_value() || !r->status.ok() ||
        r->response.responses_size() != 1) {
      Fail(absl::StrCat("get ", key, ": ",
                        r ? r->status.ToString() : "no answer"));
      return false;
    }
    ++result_.gets;
    const std::string& got = r->response.responses(0).get().value();
    history_.push_back(
        check::KvGet(0, key, AsModelValue(got), r->call_time, r->return_time));
    if (got != want) {
      Fail(absl::StrCat("get ", key, ": got \"", got, "\", want \"", want,
                        "\""));
      return false;
    }
    return true;
  }

  KvClient* client_ = nullptr;
};

}  // namespace

const std::vector<ScenarioSpec>& Scenarios() {
  static const std::vector<ScenarioSpec>* const kScenarios =
      new std::vector<ScenarioSpec>{
          {.name = "Basic", .clients = 1},
          {.name = "Concurrent", .clients = 5},
          {.name = "Unreliable", .clients = 5, .unreliable = true},
          {.name = "OnePartition", .one_partition = true},
          {.name = "ManyPartitionsOneClient", .clients = 1, .partitions = true},
          {.name = "ManyPartitionsManyClients",
           .clients = 5,
           .partitions = true},
          {.name = "PersistOneClient", .clients = 1, .crash = true},
          {.name = "PersistConcurrent", .clients = 5, .crash = true},
          {.name = "PersistConcurrentUnreliable",
           .clients = 5,
           .unreliable = true,
           .crash = true},
          {.name = "PersistPartition",
           .clients = 5,
           .crash = true,
           .partitions = true},
          {.name = "PersistPartitionUnreliable",
           .clients = 5,
           .unreliable = true,
           .crash = true,
           .partitions = true},
          {.name = "CrashUnderLoad",
           .clients = 5,
           .unreliable = true,
           .crash_under_load = true},
      };
  return *kScenarios;
}

const ScenarioSpec* FindScenario(std::string_view name) {
  for (const ScenarioSpec& s : Scenarios()) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

std::string ScenarioNames() {
  std::vector<std::string> names;
  for (const ScenarioSpec& s : Scenarios()) names.push_back(s.name);
  return absl::StrJoin(names, ", ");
}

ScenarioResult RunScenario(const ScenarioSpec& spec, uint64_t seed,
                           const ScenarioOptions& options) {
  if (spec.one_partition) {
    OnePartitionRun run(spec, seed, options);
    run.Execute();
    return run.Finish();
  }
  GenericRun run(spec, seed, options);
  run.Execute();
  return run.Finish();
}

std::string ReplayCommand(std::string_view scenario, uint64_t seed) {
  return absl::StrCat("raftkv-sim --scenario ", std::string(scenario),
                      " --seed ", seed);
}

}  // namespace raftkv::sim
