// Three stores in one process, each run by a StoreDriver on its own thread
// with the real steady clock, connected by an InProcessTransport: leader
// election, concurrent clients, failover, restart and catch-up, and Stop
// with proposals in flight. Every wait is bounded by a deadline.
#include "raftstore/store_driver.h"

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "gtest/gtest.h"
#include "storage/keys.h"
#include "test_requests.h"

namespace raftkv::raftstore {
namespace {

using Clock = std::chrono::steady_clock;
using raft_cmdpb::RaftCmdRequest;

constexpr auto kTick = std::chrono::milliseconds(30);
constexpr auto kWait = std::chrono::seconds(10);
constexpr uint64_t kRegion = 1;

// A fresh directory under the system temp dir, removed at the end.
class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "raftkv-driver-XXXXXX")
            .string();
    char* p = mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

metapb::Region MakeRegion() { return InitialRegion(3); }

using test::Get;
using test::MultiGet;
using test::Put;

// The answer slot of one proposal. Shared with the callback, which may
// outlive the wait (a timed-out call). (std::mutex rather than absl::Mutex:
// see store_driver.h on ThreadSanitizer.)
class Reply {
 public:
  void Set(CmdResult r) {
    std::lock_guard l(mu_);
    result_ = std::move(r);
    cv_.notify_all();
  }
  // The answer, or nullopt if none came within `timeout`.
  std::optional<CmdResult> Wait(Clock::duration timeout) {
    std::unique_lock l(mu_);
    cv_.wait_for(l, timeout, [this] { return result_.has_value(); });
    return std::move(result_);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<CmdResult> result_ ABSL_GUARDED_BY(mu_);
};

std::optional<CmdResult> Call(StoreDriver& driver, RaftCmdRequest req,
                              Clock::duration timeout) {
  auto reply = std::make_shared<Reply>();
  driver.Propose(std::move(req), [reply](CmdResult r) { reply->Set(r); });
  return reply->Wait(timeout);
}

bool Ok(const std::optional<CmdResult>& r) {
  return r.has_value() && !r->response.header().has_error();
}

class ThreadedCluster {
 public:
  // Engines on a real temp directory (synced writes really fsync), or on an
  // in-memory file system.
  explicit ThreadedCluster(bool on_disk, int election_ticks = 10)
      : on_disk_(on_disk), election_ticks_(election_ticks) {
    for (uint64_t id = 1; id <= 3; ++id) {
      OpenEngines(id);
      EXPECT_TRUE(
          BootstrapStore(raft_[id].get(), kv_[id].get(), 1, id, MakeRegion())
              .ok());
      OpenStore(id, /*start=*/true);
    }
  }

  ~ThreadedCluster() {
    for (auto& [id, d] : drivers_) {
      transport_.Unregister(id);
      d->Stop();
    }
    drivers_.clear();  // stores go before their engines
    raft_.clear();
    kv_.clear();
  }

  // Opens the store on its engines and gives it a new driver (started or
  // not). Only while no client thread runs and no driver of `id` exists.
  void OpenStore(uint64_t id, bool start, Clock::duration tick = kTick) {
    StoreConfig c;
    c.store_id = id;
    c.election_ticks = election_ticks_;
    c.heartbeat_ticks = 2;
    c.seed = 11;
    auto s = Store::Open(c, raft_[id].get(), kv_[id].get(), &transport_);
    ASSERT_TRUE(s.ok()) << s.status();
    StoreDriverOptions o;
    o.tick_interval = tick;
    drivers_[id] = std::make_unique<StoreDriver>(*std::move(s), o);
    if (start) {
      transport_.Register(id, drivers_[id].get());
      absl::Status st = drivers_[id]->Start();
      ASSERT_TRUE(st.ok()) << st;
    }
  }

  // Stops the store's driver; the driver object stays (clients may still
  // hold it and get errors from it).
  void StopStore(uint64_t id) {
    transport_.Unregister(id);
    drivers_[id]->Stop();
  }

  // A clean restart: stop, close the engines, reopen everything. Only
  // while no client thread runs.
  void RestartStore(uint64_t id, bool start = true,
                    Clock::duration tick = kTick) {
    StopStore(id);
    drivers_.erase(id);
    raft_.erase(id);
    kv_.erase(id);
    OpenEngines(id);
    OpenStore(id, start, tick);
  }

  StoreDriver& driver(uint64_t id) { return *drivers_.at(id); }
  InProcessTransport& transport() { return transport_; }
  storage::Engine& kv(uint64_t id) { return *kv_.at(id); }

  bool IsLeader(uint64_t id) {
    bool leader = false;
    drivers_.at(id)->Run(
        [&](Store& s) { leader = s.GetPeer(kRegion)->IsLeader(); });
    return leader;
  }

  // Polls until a store other than `exclude` leads; 0 on timeout.
  uint64_t WaitForLeader(uint64_t exclude = 0) {
    Clock::time_point deadline = Clock::now() + kWait;
    while (Clock::now() < deadline) {
      for (uint64_t id = 1; id <= 3; ++id) {
        if (id != exclude && IsLeader(id)) return id;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return 0;
  }

  // Runs the command `make(store_id)` until a store answers it without
  // error, following NotLeader hints and retrying on StaleCommand, no
  // answer or a stopped store, until `deadline`. *target is where it starts
  // and, on success, the store that answered. Returns the last answer (an
  // error other than those is returned at once).
  std::optional<CmdResult> Execute(
      const std::function<RaftCmdRequest(uint64_t)>& make, uint64_t* target,
      Clock::time_point deadline) {
    std::optional<CmdResult> r;
    uint64_t id = *target == 0 ? 1 : *target;
    while (Clock::now() < deadline) {
      r = Call(*drivers_.at(id), make(id), std::chrono::seconds(2));
      if (Ok(r)) {
        *target = id;
        return r;
      }
      uint64_t next = id % 3 + 1;
      if (r.has_value()) {
        const errorpb::Error& e = r->response.header().error();
        if (!e.has_not_leader() && !e.has_stale_command()) return r;
        uint64_t hint = e.not_leader().leader().store_id();
        if (hint != 0 && hint != id) next = hint;
      }
      id = next;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return r;
  }

  // Polls store `id`'s kv engine until it holds every pair of `want`. The
  // engine is read on the store's driver thread while it runs: RocksDB is
  // thread-safe, but the system librocksdb is not built with TSan, which
  // would report its lock-free memtable reads racing with the writes.
  bool WaitForKv(uint64_t id, const std::map<std::string, std::string>& want) {
    storage::Engine* kv = kv_.at(id).get();
    auto holds_all = [&] {
      for (const auto& [k, v] : want) {
        auto got = kv->Get(storage::DataKey(storage::kCfDefault, k));
        if (!got.ok() || !got->has_value() || **got != v) return false;
      }
      return true;
    };
    Clock::time_point deadline = Clock::now() + kWait;
    while (Clock::now() < deadline) {
      bool all = false;
      if (!drivers_.at(id)->Run([&](Store&) { all = holds_all(); })) {
        all = holds_all();  // stopped: nothing writes any more
      }
      if (all) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

 private:
  void OpenEngines(uint64_t id) {
    storage::EngineOptions o;
    std::string base = on_disk_ ? dir_.path() : std::string("/cluster");
    base += "/store" + std::to_string(id);
    if (on_disk_) {
      std::filesystem::create_directories(base);
    } else {
      o.memory_env = env_;
    }
    o.path = base + "/raft";
    auto raft = storage::Engine::Open(o);
    o.path = base + "/kv";
    auto kv = storage::Engine::Open(o);
    ASSERT_TRUE(raft.ok()) << raft.status();
    ASSERT_TRUE(kv.ok()) << kv.status();
    raft_[id] = *std::move(raft);
    kv_[id] = *std::move(kv);
  }

  const bool on_disk_;
  const int election_ticks_;
  TempDir dir_;  // first: removed after the engines are closed
  std::shared_ptr<storage::InMemoryEnv> env_ =
      std::make_shared<storage::InMemoryEnv>();
  std::map<uint64_t, std::unique_ptr<storage::Engine>> raft_, kv_;
  InProcessTransport transport_;
  std::map<uint64_t, std::unique_ptr<StoreDriver>> drivers_;
};

// Client `c` puts keys c<c>-<i> for i in [0, n) with sequence numbers
// 1.. (retries keep exactly-once), then reads each back through raft.
// Returns how many puts were acknowledged; bumps *acked on each.
int RunClient(ThreadedCluster* cluster, int c, int n,
              Clock::time_point deadline, std::atomic<int>* acked) {
  uint64_t target = static_cast<uint64_t>(c) % 3 + 1;
  int ok = 0;
  for (int i = 0; i < n; ++i) {
    std::string k = "c" + std::to_string(c) + "-" + std::to_string(i);
    std::string v = "v" + std::to_string(c) + "-" + std::to_string(i);
    auto r = cluster->Execute(
        [&](uint64_t id) {
          return Put(id, k, v, static_cast<uint64_t>(c) + 1,
                     static_cast<uint64_t>(i) + 1);
        },
        &target, deadline);
    if (!Ok(r)) {
      ADD_FAILURE() << "client " << c << ": put " << k << " failed: "
                    << (r ? r->response.header().error().message()
                          : "no answer");
      return ok;
    }
    ++ok;
    acked->fetch_add(1);
  }
  // An acknowledged put is visible to every later read.
  for (int i = 0; i < n; ++i) {
    std::string k = "c" + std::to_string(c) + "-" + std::to_string(i);
    auto r = cluster->Execute([&](uint64_t id) { return MultiGet(id, {k}); },
                              &target, deadline);
    if (!Ok(r) || r->response.responses_size() != 1) {
      ADD_FAILURE() << "client " << c << ": get " << k << " failed";
      continue;
    }
    EXPECT_EQ(r->response.responses(0).get().value(),
              "v" + std::to_string(c) + "-" + std::to_string(i));
  }
  return ok;
}

std::map<std::string, std::string> Expected(int clients, int n) {
  std::map<std::string, std::string> want;
  for (int c = 0; c < clients; ++c) {
    for (int i = 0; i < n; ++i) {
      want["c" + std::to_string(c) + "-" + std::to_string(i)] =
          "v" + std::to_string(c) + "-" + std::to_string(i);
    }
  }
  return want;
}

// Reads every key of `want` in one command through the leader.
void ExpectReadable(ThreadedCluster& cluster, uint64_t leader,
                    const std::map<std::string, std::string>& want) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : want) keys.push_back(k);
  uint64_t target = leader;
  auto r = cluster.Execute([&](uint64_t id) { return MultiGet(id, keys); },
                           &target, Clock::now() + kWait);
  ASSERT_TRUE(Ok(r));
  ASSERT_EQ(r->response.responses_size(), static_cast<int>(keys.size()));
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(r->response.responses(static_cast<int>(i)).get().value(),
              want.at(keys[i]))
        << keys[i];
  }
}

TEST(StoreDriverTest, ConcurrentClientsOnDiskReachEveryStore) {
  ThreadedCluster cluster(/*on_disk=*/true);
  uint64_t leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u) << "no leader within the deadline";

  constexpr int kClients = 4, kPuts = 25;
  std::atomic<int> acked{0};
  Clock::time_point deadline = Clock::now() + kWait;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back(
        [&, c] { RunClient(&cluster, c, kPuts, deadline, &acked); });
  }
  for (std::thread& t : clients) t.join();
  ASSERT_EQ(acked.load(), kClients * kPuts);

  std::map<std::string, std::string> want = Expected(kClients, kPuts);
  leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u);
  ExpectReadable(cluster, leader, want);
  for (uint64_t id = 1; id <= 3; ++id) {
    EXPECT_TRUE(cluster.WaitForKv(id, want)) << "store " << id;
  }
}

TEST(StoreDriverTest, FailoverKeepsServingAndRestartCatchesUp) {
  ThreadedCluster cluster(/*on_disk=*/true);
  uint64_t old_leader = cluster.WaitForLeader();
  ASSERT_NE(old_leader, 0u) << "no leader within the deadline";

  // Clients run while the leader is stopped under them.
  constexpr int kClients = 3, kPuts = 30;
  std::atomic<int> acked{0};
  Clock::time_point deadline = Clock::now() + kWait;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back(
        [&, c] { RunClient(&cluster, c, kPuts, deadline, &acked); });
  }
  while (acked.load() < 10 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  cluster.StopStore(old_leader);
  uint64_t new_leader = cluster.WaitForLeader(/*exclude=*/old_leader);
  EXPECT_NE(new_leader, 0u) << "no new leader within the deadline";
  for (std::thread& t : clients) t.join();
  ASSERT_EQ(acked.load(), kClients * kPuts);

  std::map<std::string, std::string> want = Expected(kClients, kPuts);
  ExpectReadable(cluster, new_leader, want);

  // The old leader comes back from its engines and catches up.
  cluster.RestartStore(old_leader);
  uint64_t target = new_leader;
  auto r =
      cluster.Execute([](uint64_t id) { return Put(id, "after", "restart"); },
                      &target, Clock::now() + kWait);
  ASSERT_TRUE(Ok(r));
  want["after"] = "restart";
  for (uint64_t id = 1; id <= 3; ++id) {
    EXPECT_TRUE(cluster.WaitForKv(id, want)) << "store " << id;
  }
}

// Records every answer of a batch of proposals.
class Answers {
 public:
  Callback Add() {
    std::lock_guard l(mu_);
    ++proposed_;
    return [this](CmdResult r) {
      std::lock_guard l2(mu_);
      const errorpb::Error& e = r.response.header().error();
      ++answered_;
      if (!r.response.header().has_error()) ++ok_;
      if (e.has_stale_command()) ++stale_;
      if (e.has_not_leader()) ++not_leader_;
    };
  }
  struct Counts {
    int proposed, answered, ok, stale, not_leader;
  };
  Counts Get() {
    std::lock_guard l(mu_);
    return {proposed_, answered_, ok_, stale_, not_leader_};
  }

 private:
  std::mutex mu_;
  int proposed_ ABSL_GUARDED_BY(mu_) = 0;
  int answered_ ABSL_GUARDED_BY(mu_) = 0;
  int ok_ ABSL_GUARDED_BY(mu_) = 0;
  int stale_ ABSL_GUARDED_BY(mu_) = 0;
  int not_leader_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST(StoreDriverTest, StopAnswersProposalsInFlight) {
  // A longer election timeout (0.9 s): the cut-off leader keeps leading,
  // and holding its proposals, until it is stopped.
  ThreadedCluster cluster(/*on_disk=*/false, /*election_ticks=*/30);
  uint64_t leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u) << "no leader within the deadline";
  StoreDriver& d = cluster.driver(leader);

  // Cut off, the leader accepts proposals it cannot commit.
  cluster.transport().Isolate(leader);
  Answers held;
  constexpr int kHeld = 50;
  for (int i = 0; i < kHeld; ++i) {
    d.Propose(Put(leader, "k" + std::to_string(i), "v"), held.Add());
  }
  // Run is queued behind the proposals: they are in the store now.
  bool still_leader = false;
  ASSERT_TRUE(
      d.Run([&](Store& s) { still_leader = s.GetPeer(kRegion)->IsLeader(); }));
  EXPECT_EQ(held.Get().answered, 0);

  // A client keeps proposing while the driver stops under it.
  Answers racing;
  std::atomic<bool> stop_racing{false};
  std::thread racer([&] {
    for (int i = 0; !stop_racing.load(); ++i) {
      d.Propose(Put(leader, "r" + std::to_string(i), "v"), racing.Add());
      if (i % 16 == 0) std::this_thread::yield();
    }
  });
  Clock::time_point deadline = Clock::now() + kWait;
  while (racing.Get().proposed < 100 && Clock::now() < deadline) {
    std::this_thread::yield();
  }
  cluster.StopStore(leader);
  stop_racing.store(true);
  racer.join();

  // Stop returned: every proposal has its answer, none hangs.
  Answers::Counts h = held.Get();
  EXPECT_EQ(h.answered, kHeld);
  EXPECT_EQ(h.ok, 0);
  if (still_leader) {
    EXPECT_EQ(h.stale, kHeld) << "in-flight proposals are answered stale";
  }
  Answers::Counts rc = racing.Get();
  EXPECT_EQ(rc.answered, rc.proposed);
  EXPECT_EQ(rc.ok, 0);
  EXPECT_EQ(rc.stale + rc.not_leader, rc.answered);

  // After Stop: proposals are answered at once on the caller's thread, and
  // messages and tasks are refused.
  std::thread::id answered_on;
  d.Propose(Put(leader, "late", "v"), [&](CmdResult r) {
    answered_on = std::this_thread::get_id();
    EXPECT_TRUE(r.response.header().error().has_not_leader());
  });
  EXPECT_EQ(answered_on, std::this_thread::get_id());
  raft_serverpb::RaftMessage m;
  m.mutable_to_peer()->set_store_id(leader);
  EXPECT_TRUE(absl::IsUnavailable(d.Deliver(m)));
  EXPECT_FALSE(d.Run([](Store&) {}));
  EXPECT_FALSE(d.running());
  d.Stop();  // idempotent
  EXPECT_FALSE(d.Start().ok());

  // The transport: unregistered and cut-off stores fail the send.
  EXPECT_TRUE(absl::IsUnavailable(cluster.transport().Send(m)));  // cut off
  cluster.transport().Reconnect(leader);
  EXPECT_TRUE(absl::IsNotFound(cluster.transport().Send(m)));  // unregistered
  uint64_t other = leader % 3 + 1;
  m.mutable_to_peer()->set_store_id(other);
  cluster.transport().Isolate(other);
  EXPECT_TRUE(absl::IsUnavailable(cluster.transport().Send(m)));
  cluster.transport().Reconnect(other);
}

// A task on the driver thread proposes at once (ProposeOnDriverThread):
// the commands it makes go into the same pass, and are answered like any.
TEST(StoreDriverTest, ProposeOnDriverThreadFromATask) {
  ThreadedCluster cluster(/*on_disk=*/false);
  uint64_t leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u);
  StoreDriver& d = cluster.driver(leader);
  Answers answers;
  uint64_t last_before = 0;
  uint64_t last_after = 0;
  ASSERT_TRUE(d.Run([&](Store& s) {
    last_before = s.GetPeer(kRegion)->raw_node().raft().raft_log().last_index();
    for (int i = 0; i < 3; ++i) {
      d.ProposeOnDriverThread(Put(leader, "t" + std::to_string(i), "v"),
                              answers.Add());
    }
    // In the log already, before the task returns.
    last_after = s.GetPeer(kRegion)->raw_node().raft().raft_log().last_index();
  }));
  EXPECT_EQ(last_after, last_before + 3);
  Clock::time_point deadline = Clock::now() + kWait;
  while (answers.Get().answered < 3 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(answers.Get().ok, 3);
  EXPECT_TRUE(
      cluster.WaitForKv(leader, {{"t0", "v"}, {"t1", "v"}, {"t2", "v"}}));
}

// A PostOrCancel task runs with the store, or, when Stop cancels it, with
// none (so that it can answer what it carries); after Stop it is refused.
TEST(StoreDriverTest, PostOrCancelRunsOrIsCancelled) {
  ThreadedCluster cluster(/*on_disk=*/false);
  cluster.RestartStore(3, /*start=*/false);
  StoreDriver& d = cluster.driver(3);
  std::atomic<int> with_store{0};
  std::atomic<int> cancelled{0};
  auto task = [&](Store* s) { (s != nullptr ? with_store : cancelled)++; };
  // Queued before Start, then Stop: cancelled, on the stopping thread.
  ASSERT_TRUE(d.PostOrCancel(task));
  d.Stop();
  EXPECT_EQ(cancelled.load(), 1);
  EXPECT_EQ(with_store.load(), 0);
  EXPECT_FALSE(d.PostOrCancel(task));  // refused once stopped
  EXPECT_EQ(cancelled.load(), 1);
  // On a running driver it runs with the store.
  cluster.RestartStore(3);
  ASSERT_TRUE(cluster.driver(3).PostOrCancel(task));
  Clock::time_point deadline = Clock::now() + kWait;
  while (with_store.load() == 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(with_store.load(), 1);
}

TEST(StoreDriverTest, StopBeforeStartAnswersQueuedProposals) {
  ThreadedCluster cluster(/*on_disk=*/false);
  cluster.RestartStore(3, /*start=*/false);
  StoreDriver& d = cluster.driver(3);
  EXPECT_FALSE(d.running());
  Answers queued;
  for (int i = 0; i < 5; ++i) d.Propose(Put(3, "k", "v"), queued.Add());
  EXPECT_EQ(queued.Get().answered, 0);  // queued until Start
  d.Stop();
  Answers::Counts c = queued.Get();
  EXPECT_EQ(c.answered, 5);
  EXPECT_EQ(c.not_leader, 5);
  EXPECT_TRUE(absl::IsFailedPrecondition(d.Start()));

  // A driver refuses a tick interval that is not positive.
  cluster.RestartStore(3, /*start=*/false, Clock::duration::zero());
  EXPECT_TRUE(absl::IsInvalidArgument(cluster.driver(3).Start()));

  // Started for real, the store rejoins a working cluster.
  cluster.RestartStore(3);
  uint64_t leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u);
  uint64_t target = leader;
  ASSERT_TRUE(Ok(cluster.Execute([](uint64_t id) { return Put(id, "k", "v"); },
                                 &target, Clock::now() + kWait)));
  EXPECT_TRUE(cluster.WaitForKv(3, {{"k", "v"}}));
}

}  // namespace
}  // namespace raftkv::raftstore
