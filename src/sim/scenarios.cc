#include "sim/scenarios.h"

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "check/linearizability.h"
#include "sim/checkers.h"
#include "storage/keys.h"

namespace raftkv::sim {

namespace {

constexpr int64_t kMs = 1'000;
constexpr int64_t kSecond = 1'000'000;
// GenericTest and OnePartition run on 5 stores, OneSnapshot on 3.
constexpr int kStores = 5;
constexpr int kOneSnapshotStores = 3;
// The column families of user data, in the order the replica check hashes
// them.
constexpr std::string_view kDataCfs[] = {storage::kCfDefault, storage::kCfLock,
                                         storage::kCfWrite};

raft_cmdpb::RaftCmdRequest PutRequest(
    const std::string& key, const std::string& value,
    std::string_view cf = storage::kCfDefault) {
  raft_cmdpb::RaftCmdRequest req;
  raft_cmdpb::Request* r = req.add_requests();
  r->set_cmd_type(raft_cmdpb::Put);
  r->mutable_put()->set_cf(std::string(cf));
  r->mutable_put()->set_key(key);
  r->mutable_put()->set_value(value);
  return req;
}

raft_cmdpb::RaftCmdRequest GetRequest(
    const std::string& key, std::string_view cf = storage::kCfDefault) {
  raft_cmdpb::RaftCmdRequest req;
  raft_cmdpb::Request* r = req.add_requests();
  r->set_cmd_type(raft_cmdpb::Get);
  r->mutable_get()->set_cf(std::string(cf));
  r->mutable_get()->set_key(key);
  return req;
}

raft_cmdpb::RaftCmdRequest DeleteRequest(
    const std::string& key, std::string_view cf = storage::kCfDefault) {
  raft_cmdpb::RaftCmdRequest req;
  raft_cmdpb::Request* r = req.add_requests();
  r->set_cmd_type(raft_cmdpb::Delete);
  r->mutable_delete_()->set_cf(std::string(cf));
  r->mutable_delete_()->set_key(key);
  return req;
}

// The failpoint probabilities of SnapshotFailpoints, given the crashes so
// far: every failpoint is armed lightly (the snapshot steps are passed
// rarely, as a snapshot needs a lagging follower; the log-GC steps on every
// compaction of every replica), and strongly until it first fires (the
// later steps of a snapshot apply are reached only when the earlier ones did
// not crash).
FailpointProbabilities ScenarioFailpoints(const SimStats& stats) {
  FailpointProbabilities f;
  for (std::string_view name : raftstore::kFailpoints) {
    bool log_gc = name.substr(0, 6) == "log_gc";
    bool fired = stats.failpoint_crashes.contains(std::string(name));
    f[std::string(name)] = fired ? (log_gc ? 0.01 : 0.1) : (log_gc ? 0.1 : 0.5);
  }
  return f;
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
      : spec_(spec),
        options_(options),
        sim_(MakeConfig(spec, seed, options)),
        stores_(sim_.config().num_stores) {
    result_.scenario = spec.name;
    result_.seed = seed;
  }

  ScenarioResult Finish() {
    // The replica check of the end of the run (not after a failure: the
    // first failure is the one to debug).
    if (!failed()) CheckReplicas("the end of the run");
    for (const std::string& v : sim_.violations()) Fail(v);
    if (result_.replica_check == "not run" && replica_checks_ > 0) {
      result_.replica_check = absl::StrCat("ok (", replica_checks_, " checks)");
    }
    std::string summary;
    absl::Status s = CheckLinearizable(history_, &summary);
    result_.linearizability_check =
        s.ok() ? absl::StrCat("ok (", history_.size(), " operations)")
               : std::string(s.message());
    if (!s.ok()) Fail(std::string(s.message()));
    if (spec_.kind != ScenarioKind::kGeneric) {
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
  static SimConfig MakeConfig(const ScenarioSpec& spec, uint64_t seed,
                              const ScenarioOptions& options) {
    SimConfig c;
    c.seed = seed;
    c.num_stores =
        spec.kind == ScenarioKind::kOneSnapshot ? kOneSnapshotStores : kStores;
    c.verbose = options.verbose;
    if (spec.max_raft_log > 0) {
      c.raft_log_gc_count_limit = static_cast<uint64_t>(spec.max_raft_log);
    }
    if (spec.failpoints) c.failpoints = ScenarioFailpoints(SimStats());
    if (spec.snap_bandwidth > 0) {
      c.snap_bandwidth_bytes_per_s = spec.snap_bandwidth;
    }
    return c;
  }

  // The replica check (see scenarios.h); `when` names the moment in the
  // failure message. Failpoint crashes are off during the check and back on
  // after it. Returns false after a failure.
  bool CheckReplicas(const std::string& when) {
    sim_.Trace("replica-check", {}, when);
    failpoints_paused_ = true;
    ArmFailpoints();
    sim_.filters().Clear();
    for (uint64_t s = 1; s <= stores_; ++s) {
      if (absl::Status st = sim_.Restart(s); !st.ok()) {
        Fail(absl::StrCat("restart of store ", s, ": ", st.ToString()));
        return false;
      }
    }
    // Quiet until every applied index equals the leader's; polled every
    // 10 ms of virtual time.
    int64_t deadline = sim_.now() + 30 * kSecond;
    std::string applied;
    for (;;) {
      uint64_t leader = sim_.LeaderStore();
      std::optional<raft_serverpb::RaftApplyState> ls;
      if (leader != 0) ls = sim_.ApplyState(leader);
      bool equal = ls.has_value();
      applied.clear();
      for (uint64_t s = 1; s <= stores_; ++s) {
        std::optional<raft_serverpb::RaftApplyState> st = sim_.ApplyState(s);
        uint64_t a = st.has_value() ? st->applied_index() : 0;
        absl::StrAppend(&applied, s == 1 ? "" : ", ", "store ", s, ": ", a);
        if (!ls.has_value() || a != ls->applied_index()) equal = false;
      }
      if (equal) break;
      if (sim_.now() >= deadline || failed()) {
        Fail(absl::StrCat("replica check at ", when,
                          ": the stores did not converge in 30 s (leader ",
                          leader, "; applied ", applied, ")"));
        result_.replica_check = result_.failures.back();
        return false;
      }
      sim_.RunUntil(sim_.now() + 10 * kMs);
    }
    std::map<uint64_t, std::pair<uint64_t, uint64_t>> digests;
    std::set<uint64_t> distinct;
    std::string detail;
    for (uint64_t s = 1; s <= stores_; ++s) {
      std::pair<uint64_t, uint64_t> d = DataDigest(s);
      digests[s] = d;
      distinct.insert(d.first);
      absl::StrAppend(&detail, s == 1 ? "" : "; ", "store ", s, ": ", d.second,
                      " keys, hash ", absl::Hex(d.first));
    }
    ++replica_checks_;
    sim_.Trace("replicas", {distinct.size(), digests[1].second});
    failpoints_paused_ = false;
    ArmFailpoints();
    if (distinct.size() != 1) {
      Fail(absl::StrCat("replica check at ", when,
                        ": the replicas' user data differ (applied ", applied,
                        "): ", detail));
      result_.replica_check = result_.failures.back();
      return false;
    }
    return true;
  }

  // Sets the failpoint probabilities of the spec (see ScenarioFailpoints)
  // for the crashes so far; none while paused. Once started with
  // `periodic`, again every 10 ms of virtual time.
  void ArmFailpoints(bool periodic = false) {
    if (!spec_.failpoints) return;
    sim_.set_failpoints(failpoints_paused_ ? FailpointProbabilities()
                                           : ScenarioFailpoints(sim_.stats()));
    if (periodic) sim_.After(10 * kMs, [this] { ArmFailpoints(true); });
  }

  // The hash of store `s`'s user data (every key and value of the data
  // column families, in order) and the number of keys.
  std::pair<uint64_t, uint64_t> DataDigest(uint64_t s) {
    TraceHasher h;
    uint64_t keys = 0;
    storage::Engine* kv = sim_.kv_engine(s);
    if (kv == nullptr) return {0, 0};
    for (std::string_view cf : kDataCfs) {
      auto it = kv->NewIterator(storage::DataStartKey(cf, ""),
                                storage::DataEndKey(cf, ""));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        h.AddString(it->key());
        h.AddString(it->value());
        ++keys;
      }
      if (!it->status().ok()) {
        Fail(absl::StrCat("store ", s, ": iterating ", std::string(cf), ": ",
                          it->status().ToString()));
      }
    }
    return {h.hash(), keys};
  }

  // TinyKV's bound on the log: every up store's applied index of region 1 is
  // at most 2 * limit above its truncated index.
  void CheckLogBound(uint64_t limit, const std::string& when) {
    result_.min_truncated_index = 0;
    for (uint64_t s = 1; s <= stores_; ++s) {
      std::optional<raft_serverpb::RaftApplyState> st = sim_.ApplyState(s);
      if (!st.has_value()) continue;
      uint64_t applied = st->applied_index();
      uint64_t truncated = st->truncated_state().index();
      if (result_.min_truncated_index == 0 ||
          truncated < result_.min_truncated_index) {
        result_.min_truncated_index = truncated;
      }
      sim_.Trace("log-bound", {s, applied, truncated});
      if (applied > truncated + 2 * limit) {
        Fail(absl::StrCat("at ", when, ": store ", s, " keeps ",
                          applied - truncated, " applied entries (applied ",
                          applied, ", truncated ", truncated,
                          "), more than 2 * ", limit));
      }
    }
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
  uint64_t stores_;
  int replica_checks_ = 0;
  bool failpoints_paused_ = false;
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
    ArmFailpoints(/*periodic=*/true);
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
    if (spec_.script != SnapshotScript::kNone) {
      uint64_t gen = ++script_generation_;
      sim_.After(300 * kMs, [this, gen] { ScriptRound(gen); });
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
    if (script_generation_ > 0) {
      ++script_generation_;  // stops the script's rounds
      sim_.filters().Clear();
      sim_.Trace("script-heal", {});
    }
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
      for (uint64_t s = 1; s <= stores_; ++s) sim_.Crash(s);
      sim_.RunUntil(sim_.now() + 500 * kMs);
      for (uint64_t s = 1; s <= stores_; ++s) {
        if (absl::Status st = sim_.Restart(s); !st.ok()) {
          Fail(absl::StrCat("restart of store ", s, ": ", st.ToString()));
          return;
        }
      }
    }
    for (const auto& c : states_) {
      if (!FinalScan(*c)) return;
    }
    // The replicas hold the iteration's data now (the deletes come next).
    if (!CheckReplicas(absl::StrCat("iteration ", it))) return;
    for (const auto& c : states_) {
      if (!DeleteKeys(*c)) return;
    }
    if (spec_.max_raft_log > 0) {
      sim_.RunUntil(sim_.now() + kSecond, [this] { return failed(); });
      CheckLogBound(static_cast<uint64_t>(spec_.max_raft_log),
                    absl::StrCat("the end of iteration ", it));
    }
  }

  // A client's final scan (checkClntAppends).
  bool FinalScan(ClientState& c) {
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
    return true;
  }

  // Deletes every key client `c` put.
  bool DeleteKeys(ClientState& c) {
    if (c.j == 0) return true;
    raft_cmdpb::RaftCmdRequest del;
    for (int k = 0; k < c.j; ++k) {
      raft_cmdpb::Request* d = del.add_requests();
      d->set_cmd_type(raft_cmdpb::Delete);
      d->mutable_delete_()->set_cf(std::string(storage::kCfDefault));
      d->mutable_delete_()->set_key(ClientKey(c.cli, k));
    }
    std::optional<ClientReply> r = CallSync(c.kv, std::move(del), std::nullopt);
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
      for (uint64_t s = 1; s <= stores_; ++s) {
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

  // One round of the spec's SnapshotScript against a follower (see
  // scenarios.h); schedules the next round while the iteration lasts.
  void ScriptRound(uint64_t gen) {
    if (gen != script_generation_ || failed()) return;
    uint64_t leader = sim_.LeaderStore();
    uint64_t f = 1 + sim_.Random(stores_);
    if (leader != 0 && f == leader) f = f % stores_ + 1;
    ++result_.script_rounds;
    Isolate(f);
    int64_t isolate_us = spec_.script == SnapshotScript::kBackToBack
                             ? sim_.RandomIn(500 * kMs, 900 * kMs)
                             : sim_.RandomIn(600 * kMs, 1'000 * kMs);
    sim_.After(isolate_us, [this, gen, f] {
      if (gen != script_generation_) return;
      sim_.filters().Clear();
      sim_.Trace("script-heal", {f});
      if (spec_.script == SnapshotScript::kCompactDuringSnapshot) {
        sim_.After(1'500 * kMs, [this, gen] { ScriptRound(gen); });
        return;
      }
      uint64_t before = Received(f);
      WaitForSnapshot(gen, f, before, sim_.now() + 2 * kSecond);
    });
  }

  // kBackToBack: once follower `f` received a snapshot after `before` (or at
  // `deadline`), isolates it again, then heals it and counts the round.
  void WaitForSnapshot(uint64_t gen, uint64_t f, uint64_t before,
                       int64_t deadline) {
    if (gen != script_generation_) return;
    if (Received(f) == before && sim_.now() < deadline) {
      sim_.After(5 * kMs, [this, gen, f, before, deadline] {
        WaitForSnapshot(gen, f, before, deadline);
      });
      return;
    }
    Isolate(f);
    sim_.After(sim_.RandomIn(200 * kMs, 600 * kMs), [this, gen, f, before] {
      if (gen != script_generation_) return;
      sim_.filters().Clear();
      sim_.Trace("script-heal", {f});
      sim_.After(kSecond, [this, gen, f, before] {
        if (gen != script_generation_) return;
        if (Received(f) >= before + 2) ++result_.back_to_back_rounds;
        ScriptRound(gen);
      });
    });
  }

  void Isolate(uint64_t f) {
    std::set<uint64_t> rest;
    for (uint64_t s = 1; s <= stores_; ++s) {
      if (s != f) rest.insert(s);
    }
    sim_.filters().Partition({f}, rest);
    sim_.Trace("script-isolate", {f});
  }

  // The snapshots store `s` received so far.
  uint64_t Received(uint64_t s) const {
    auto it = sim_.stats().snapshots_received.find(s);
    return it == sim_.stats().snapshots_received.end() ? 0 : it->second;
  }

  // Crashes one store (the others keep a quorum), restarts it 100-600 ms
  // later, and schedules the next crash while the iteration lasts.
  void CrashRound(uint64_t gen) {
    if (gen != crash_generation_) return;
    uint64_t s = 1 + sim_.Random(stores_);
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
  uint64_t script_generation_ = 0;
};

// The base of the scripted scenarios: one client and must-succeed calls.
class ScriptedRun : public Run {
 public:
  using Run::Run;

 protected:
  // The value of `key` in column family `cf` of store `s`'s kv engine;
  // nullopt if absent or the store is down.
  std::optional<std::string> EngineValue(
      uint64_t s, const std::string& key,
      std::string_view cf = storage::kCfDefault) {
    storage::Engine* e = sim_.kv_engine(s);
    if (e == nullptr) return std::nullopt;
    auto v = e->Get(storage::DataKey(cf, key));
    if (!v.ok()) return std::nullopt;
    return *v;
  }

  bool MustPut(const std::string& key, const std::string& value,
               std::string_view cf = storage::kCfDefault) {
    sim_.Trace("must-put", {}, key);
    std::optional<ClientReply> r =
        CallSync(client_, PutRequest(key, value, cf), std::nullopt);
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

  bool MustDelete(const std::string& key,
                  std::string_view cf = storage::kCfDefault) {
    sim_.Trace("must-delete", {}, key);
    std::optional<ClientReply> r =
        CallSync(client_, DeleteRequest(key, cf), std::nullopt);
    if (!r.has_value() || !r->status.ok()) {
      Fail(absl::StrCat("delete ", key, ": ",
                        r ? r->status.ToString() : "no answer"));
      return false;
    }
    ++result_.deletes;
    history_.push_back(check::KvDelete(0, key, r->call_time, r->return_time));
    return true;
  }

  // Gets `key` through the client; it must be `want` (nullopt: absent).
  bool MustGet(const std::string& key, std::optional<std::string> want,
               std::string_view cf = storage::kCfDefault) {
    sim_.Trace("must-get", {}, key);
    std::optional<ClientReply> r = CallSync(client_, GetRequest(key, cf), {});
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
    if (AsModelValue(got) != want) {
      Fail(absl::StrCat("get ", key, ": got \"", got, "\", want \"",
                        want.value_or("<absent>"), "\""));
      return false;
    }
    return true;
  }

  KvClient* client_ = nullptr;
};

// TinyKV's TestOnePartition2B.
class OnePartitionRun : public ScriptedRun {
 public:
  using ScriptedRun::ScriptedRun;

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
    for (uint64_t s = 1; s <= stores_; ++s) {
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
};

// TinyKV's TestOneSnapshot2C, on 3 stores with a log limit of 10: store 1
// is cut off while the others write and compact, then catches up by a
// snapshot that carries the "lock" column family.
class OneSnapshotRun : public ScriptedRun {
 public:
  using ScriptedRun::ScriptedRun;

  void Execute() {
    const std::string_view cf = storage::kCfLock;
    if (absl::Status s = sim_.Start(); !s.ok()) {
      Fail(absl::StrCat("start: ", s.ToString()));
      return;
    }
    client_ = NewClient();
    // 1. k1 and k2 reach store 1.
    if (!MustPut("k1", "v1", cf) || !MustPut("k2", "v2", cf)) return;
    if (!Eventually(
            [&] {
              return EngineValue(1, "k1", cf) == Want("v1") &&
                     EngineValue(1, "k2", cf) == Want("v2");
            },
            "store 1 has k1 and k2")) {
      return;
    }
    // 2. Nothing compacted yet: every truncated state is the initial (5, 5).
    for (uint64_t s = 1; s <= stores_; ++s) {
      std::optional<raft_serverpb::RaftApplyState> st = sim_.ApplyState(s);
      if (!st.has_value() || st->truncated_state().index() != 5 ||
          st->truncated_state().term() != 5) {
        Fail(absl::StrCat(
            "store ", s, ": truncated state ",
            st ? absl::StrCat("(", st->truncated_state().index(), ", ",
                              st->truncated_state().term(), ")")
               : "missing",
            ", want (5, 5) before any compaction"));
        return;
      }
    }
    // 3. Store 1 is cut off; the others write, delete k2 and compact.
    sim_.filters().Partition({1}, {2, 3});
    sim_.Trace("partition", {1});
    for (int i = 100; i < 115; ++i) {
      if (!MustPut(absl::StrCat("k", i), absl::StrCat("v", i), cf)) return;
    }
    if (!MustDelete("k2", cf)) return;
    sim_.RunUntil(sim_.now() + 500 * kMs);
    if (EngineValue(1, "k100", cf).has_value()) {
      Fail("store 1, cut off, has k100");
      return;
    }
    std::optional<raft_serverpb::RaftApplyState> lagging = sim_.ApplyState(1);
    uint64_t leader = sim_.LeaderStore();
    std::optional<raft_serverpb::RaftApplyState> ls;
    if (leader != 0) ls = sim_.ApplyState(leader);
    if (!lagging.has_value() || !ls.has_value() || leader == 1) {
      Fail("no leader among stores 2 and 3, or store 1 lost its state");
      return;
    }
    // The premise: the leader compacted past everything store 1 has, so
    // only a snapshot can bring it up to date.
    if (ls->truncated_state().index() <= lagging->applied_index()) {
      Fail(absl::StrCat("the leader (store ", leader,
                        ") did not compact past store 1: truncated ",
                        ls->truncated_state().index(), ", store 1 applied ",
                        lagging->applied_index()));
      return;
    }
    uint64_t received = Received(1);
    // 4. Healed: store 1 catches up by a snapshot.
    sim_.filters().Clear();
    sim_.Trace("heal", {});
    if (!Eventually(
            [&] {
              return EngineValue(1, "k1", cf) == Want("v1") &&
                     EngineValue(1, "k100", cf) == Want("v100") &&
                     EngineValue(1, "k114", cf) == Want("v114") &&
                     !EngineValue(1, "k2", cf).has_value();
            },
            "store 1 caught up (k1, k100, k114, no k2)")) {
      return;
    }
    std::optional<raft_serverpb::RaftApplyState> caught = sim_.ApplyState(1);
    if (Received(1) <= received || !caught.has_value() ||
        caught->truncated_state().index() < ls->truncated_state().index()) {
      Fail(absl::StrCat(
          "store 1 caught up without a snapshot: ", Received(1) - received,
          " snapshots received, truncated index ",
          caught ? caught->truncated_state().index() : 0, " (the leader's was ",
          ls->truncated_state().index(), ")"));
      return;
    }
    // 5. Store 1 restarts from the snapshot and its log.
    sim_.Crash(1);
    if (absl::Status s = sim_.Restart(1); !s.ok()) {
      Fail(absl::StrCat("restart of store 1: ", s.ToString()));
      return;
    }
    if (!Eventually([&] { return EngineValue(1, "k1", cf) == Want("v1"); },
                    "store 1 still has k1 after its restart")) {
      return;
    }
    if (!MustGet("k1", "v1", cf) || !MustGet("k2", std::nullopt, cf) ||
        !MustGet("k114", "v114", cf)) {
      return;
    }
    // 6. The logs stay bounded.
    sim_.RunUntil(sim_.now() + kSecond);
    CheckLogBound(10, "the end");
  }

 private:
  static std::optional<std::string> Want(const char* v) {
    return std::string(v);
  }

  // Runs until `pred` holds, polling every 20 ms for 6 s (TinyKV's
  // MustGetCfEqual); a failure names `what`.
  bool Eventually(const std::function<bool()>& pred, const std::string& what) {
    for (int i = 0; i < 300; ++i) {
      if (pred()) return true;
      sim_.RunUntil(sim_.now() + 20 * kMs);
    }
    if (pred()) return true;
    Fail(absl::StrCat("timed out waiting until ", what));
    return false;
  }

  uint64_t Received(uint64_t s) const {
    auto it = sim_.stats().snapshots_received.find(s);
    return it == sim_.stats().snapshots_received.end() ? 0 : it->second;
  }
};

}  // namespace

const std::vector<ScenarioSpec>& Scenarios() {
  static const std::vector<ScenarioSpec>* const kScenarios =
      new std::vector<ScenarioSpec>{
          {.name = "Basic", .clients = 1},
          {.name = "Concurrent", .clients = 5},
          {.name = "Unreliable", .clients = 5, .unreliable = true},
          {.name = "OnePartition", .kind = ScenarioKind::kOnePartition},
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
          // 2C.
          {.name = "OneSnapshot",
           .kind = ScenarioKind::kOneSnapshot,
           .max_raft_log = 10},
          {.name = "SnapshotRecover",
           .clients = 1,
           .crash = true,
           .max_raft_log = 100},
          {.name = "SnapshotRecoverManyClients",
           .clients = 20,
           .crash = true,
           .max_raft_log = 100},
          {.name = "SnapshotUnreliable",
           .clients = 5,
           .unreliable = true,
           .max_raft_log = 100},
          {.name = "SnapshotUnreliableRecover",
           .clients = 5,
           .unreliable = true,
           .crash = true,
           .max_raft_log = 100},
          {.name = "SnapshotUnreliableRecoverConcurrentPartition",
           .clients = 5,
           .unreliable = true,
           .crash = true,
           .partitions = true,
           .max_raft_log = 100},
          // Ours.
          {.name = "CrashUnderLoad",
           .clients = 5,
           .unreliable = true,
           .crash_under_load = true},
          {.name = "SnapshotFailpoints",
           .clients = 5,
           .max_raft_log = 10,
           .crash_under_load = true,
           .failpoints = true},
          {.name = "CompactDuringSnapshot",
           .clients = 5,
           .max_raft_log = 10,
           .script = SnapshotScript::kCompactDuringSnapshot,
           .snap_bandwidth = 20'000},
          {.name = "BackToBackSnapshots",
           .clients = 5,
           .max_raft_log = 10,
           .script = SnapshotScript::kBackToBack},
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
  if (spec.kind == ScenarioKind::kOnePartition) {
    OnePartitionRun run(spec, seed, options);
    run.Execute();
    return run.Finish();
  }
  if (spec.kind == ScenarioKind::kOneSnapshot) {
    OneSnapshotRun run(spec, seed, options);
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
