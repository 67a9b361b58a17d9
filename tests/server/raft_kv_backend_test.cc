// RaftKvBackend (server/raft_kv_backend.h) on three in-process stores: each
// store is run by a StoreDriver on an in-memory engine pair, the drivers are
// connected by an InProcessTransport, and every store has its own backend.
// A fake Forwarder stands in for the peer transport: it hands a forwarded
// command to ProposeForwarded on the target store's driver (as the peer
// service does), records every call, and can hold calls behind a gate, fail
// them, or lose their answers.
//
// The election timeout is long (1 s) and store 1 campaigns at once, so the
// leader is known within milliseconds and does not change during a test.
// Where a test needs writes to leave together, it keeps the leader's driver
// thread busy (DriverBlocker) while it issues them. Every wait is bounded.
#include "server/raft_kv_backend.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "raftstore/store.h"
#include "raftstore/store_driver.h"
#include "storage/engine.h"

namespace raftkv::server {
namespace {

namespace pb = etcdserverpb;
using Clock = std::chrono::steady_clock;
using raft_cmdpb::RaftCmdRequest;
using raft_cmdpb::RaftCmdResponse;
using raftstore::StoreDriver;
using std::chrono::milliseconds;

constexpr auto kTick = milliseconds(20);
// 1 s: no election starts while a test runs (store 1 campaigns at once).
constexpr int kElectionTicks = 50;
constexpr auto kWait = std::chrono::seconds(10);
constexpr uint64_t kRegion = 1;
// The etcd member id of store s is kMemberIdBase + s.
constexpr uint64_t kMemberIdBase = 0xabc0;
// The backend's limits (raft_kv_backend.cc).
constexpr int kMaxForwardsInFlight = 4;
constexpr size_t kMaxBatchRequests = 256;
constexpr size_t kMaxBatchBytes = 1 << 20;

std::string Key(int i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "key/%04d", i);
  return buf;
}
std::string Value(int i) { return "value-" + std::to_string(i); }

pb::PutRequest PutReq(const std::string& key, const std::string& value,
                      int64_t lease = 0) {
  pb::PutRequest req;
  req.set_key(key);
  req.set_value(value);
  req.set_lease(lease);
  return req;
}

// Every key >= prefix that starts with it (prefix ends below 0xff).
pb::RangeRequest PrefixRange(const std::string& prefix) {
  pb::RangeRequest req;
  req.set_key(prefix);
  std::string end = prefix;
  end.back() = static_cast<char>(end.back() + 1);
  req.set_range_end(end);
  return req;
}

// The answers of n calls, one slot each. The `done` callbacks hold the
// state, so a callback that comes after the test stopped waiting is safe.
template <typename T>
class Answers {
 public:
  explicit Answers(size_t n) : s_(std::make_shared<State>(n)) {}

  Done<T> Slot(size_t i) {
    return [s = s_, i](absl::StatusOr<T> r) {
      std::lock_guard l(s->mu);
      if (s->results[i].has_value()) {
        ++s->duplicates;  // `done` must be called exactly once
        return;
      }
      s->results[i] = std::move(r);
      ++s->answered;
      s->cv.notify_all();
    };
  }

  // Waits until every slot has its answer; false if some did not come
  // within `timeout`.
  bool WaitAll(Clock::duration timeout) {
    std::unique_lock l(s_->mu);
    return s_->cv.wait_for(l, timeout,
                           [&] { return s_->answered == s_->results.size(); });
  }

  size_t answered() {
    std::lock_guard l(s_->mu);
    return s_->answered;
  }
  int duplicates() {
    std::lock_guard l(s_->mu);
    return s_->duplicates;
  }
  // Slot i's answer; an Internal error if it has none.
  absl::StatusOr<T> Get(size_t i) {
    std::lock_guard l(s_->mu);
    if (!s_->results[i].has_value()) {
      return absl::InternalError("test: no answer");
    }
    return *s_->results[i];
  }

 private:
  struct State {
    explicit State(size_t n) : results(n) {}
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::optional<absl::StatusOr<T>>> results;
    size_t answered = 0;
    int duplicates = 0;
  };
  std::shared_ptr<State> s_;
};

// Makes one call and waits for its answer (DeadlineExceeded if none comes
// within kWait: the backend must always answer).
template <typename T, typename F>
absl::StatusOr<T> Sync(F&& call) {
  Answers<T> a(1);
  call(a.Slot(0));
  if (!a.WaitAll(kWait)) {
    return absl::DeadlineExceededError("test: no answer within 10 s");
  }
  EXPECT_EQ(a.duplicates(), 0);
  return a.Get(0);
}

// The Forwarder of the tests: proposes a call's command on the target
// store's driver (ProposeForwarded, as the peer service does) unless the
// gate is closed (the call is held until OpenGate) or a failure is armed.
class FakeForwarder : public Forwarder {
 public:
  struct Call {
    uint64_t store_id;
    int requests;
    size_t request_bytes;  // the requests' ByteSizeLong, summed
    int timeout_ms;
  };

  explicit FakeForwarder(std::function<StoreDriver*(uint64_t)> driver_of)
      : driver_of_(std::move(driver_of)) {}

  void Forward(
      uint64_t store_id, RaftCmdRequest req, int timeout_ms,
      std::function<void(absl::StatusOr<RaftCmdResponse>)> done) override {
    Call call{store_id, req.requests_size(), 0, timeout_ms};
    for (const raft_cmdpb::Request& r : req.requests()) {
      call.request_bytes += r.ByteSizeLong();
    }
    bool fail = false;
    bool lose = false;
    {
      std::lock_guard l(mu_);
      calls_.push_back(call);
      ++outstanding_;
      if (fail_next_ > 0) {
        --fail_next_;
        ++failed_;
        fail = true;
      } else if (lose_next_ > 0) {
        --lose_next_;
        lose = true;
      } else if (!open_) {
        held_.push_back(Held{store_id, std::move(req), std::move(done)});
      }
      cv_.notify_all();
      if (!fail && !lose && !open_) return;  // held
    }
    if (fail) {
      // Not sent: the target never sees the command.
      done(absl::FailedPreconditionError("test: forward not sent"));
      Finished();
      return;
    }
    Deliver(store_id, std::move(req), std::move(done), lose);
  }

  void CloseGate() {
    std::lock_guard l(mu_);
    open_ = false;
  }
  // Opens the gate for good, delivering the held calls in order.
  void OpenGate() {
    std::vector<Held> held;
    {
      std::lock_guard l(mu_);
      open_ = true;
      held.swap(held_);
    }
    for (Held& h : held) {
      Deliver(h.store_id, std::move(h.req), std::move(h.done), false);
    }
  }
  // The next n calls fail with FailedPrecondition ("not sent", as the peer
  // transport reports a channel that is not connected) without being
  // delivered.
  void FailNext(int n) {
    std::lock_guard l(mu_);
    fail_next_ = n;
  }
  // The next n calls are delivered, but their answer is lost on the way
  // back: the caller gets Unavailable (a connection that broke after the
  // request went out).
  void LoseNextAnswers(int n) {
    std::lock_guard l(mu_);
    lose_next_ = n;
  }

  std::vector<Call> calls() {
    std::lock_guard l(mu_);
    return calls_;
  }
  size_t held() {
    std::lock_guard l(mu_);
    return held_.size();
  }
  int failed() {
    std::lock_guard l(mu_);
    return failed_;
  }
  // Waits until at least n calls were made.
  bool WaitForCalls(size_t n, Clock::duration timeout) {
    std::unique_lock l(mu_);
    return cv_.wait_for(l, timeout, [&] { return calls_.size() >= n; });
  }
  // Waits until every call made so far has been answered.
  bool WaitIdle(Clock::duration timeout) {
    std::unique_lock l(mu_);
    return cv_.wait_for(l, timeout, [&] { return outstanding_ == 0; });
  }

 private:
  struct Held {
    uint64_t store_id;
    RaftCmdRequest req;
    std::function<void(absl::StatusOr<RaftCmdResponse>)> done;
  };

  void Deliver(uint64_t store_id, RaftCmdRequest req,
               std::function<void(absl::StatusOr<RaftCmdResponse>)> done,
               bool lose) {
    ProposeForwarded(driver_of_(store_id), std::move(req),
                     [this, done = std::move(done), lose](RaftCmdResponse r) {
                       if (lose) {
                         done(absl::UnavailableError("test: answer lost"));
                       } else {
                         done(std::move(r));
                       }
                       Finished();
                     });
  }

  void Finished() {
    std::lock_guard l(mu_);
    --outstanding_;
    cv_.notify_all();
  }

  const std::function<StoreDriver*(uint64_t)> driver_of_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;
  int fail_next_ = 0;
  int lose_next_ = 0;
  int failed_ = 0;
  int outstanding_ = 0;
  std::vector<Call> calls_;
  std::vector<Held> held_;
};

// Keeps a driver's thread busy in a task until Release (or destruction),
// so that whatever is posted to it meanwhile waits for the same pass.
class DriverBlocker {
 public:
  explicit DriverBlocker(StoreDriver* driver) {
    bool posted = driver->Post([s = s_](raftstore::Store&) {
      std::unique_lock l(s->mu);
      s->entered = true;
      s->cv.notify_all();
      // Bounded: a failing test must not hang the driver forever.
      s->cv.wait_for(l, kWait, [&] { return s->released; });
    });
    EXPECT_TRUE(posted);
    std::unique_lock l(s_->mu);
    EXPECT_TRUE(s_->cv.wait_for(l, kWait, [&] { return s_->entered; }))
        << "the driver never ran the blocking task";
  }
  ~DriverBlocker() { Release(); }
  void Release() {
    std::lock_guard l(s_->mu);
    s_->released = true;
    s_->cv.notify_all();
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool entered = false;
    bool released = false;
  };
  std::shared_ptr<State> s_ = std::make_shared<State>();
};

// Three bootstrapped stores on one in-memory file system, each run by a
// started driver.
class Cluster {
 public:
  Cluster() {
    for (uint64_t id = 1; id <= 3; ++id) {
      storage::EngineOptions o;
      o.memory_env = env_;
      o.path = "/cluster/store" + std::to_string(id) + "/raft";
      auto raft = storage::Engine::Open(o);
      o.path = "/cluster/store" + std::to_string(id) + "/kv";
      auto kv = storage::Engine::Open(o);
      EXPECT_TRUE(raft.ok()) << raft.status();
      EXPECT_TRUE(kv.ok()) << kv.status();
      if (!raft.ok() || !kv.ok()) return;
      raft_[id] = *std::move(raft);
      kv_[id] = *std::move(kv);
      absl::Status b = raftstore::BootstrapStore(
          raft_[id].get(), kv_[id].get(), 1, id, raftstore::InitialRegion(3));
      EXPECT_TRUE(b.ok()) << b;
      raftstore::StoreConfig c;
      c.store_id = id;
      c.election_ticks = kElectionTicks;
      c.heartbeat_ticks = 2;
      c.seed = 7;
      auto s = raftstore::Store::Open(c, raft_[id].get(), kv_[id].get(),
                                      &transport_);
      EXPECT_TRUE(s.ok()) << s.status();
      if (!s.ok()) return;
      raftstore::StoreDriverOptions d;
      d.tick_interval = kTick;
      drivers_[id] = std::make_unique<StoreDriver>(*std::move(s), d);
      transport_.Register(id, drivers_[id].get());
    }
    for (auto& [id, d] : drivers_) {
      absl::Status st = d->Start();
      EXPECT_TRUE(st.ok()) << st;
    }
  }

  ~Cluster() {
    StopAll();
    drivers_.clear();  // stores go before their engines
    raft_.clear();
    kv_.clear();
  }

  bool ok() const { return drivers_.size() == 3; }
  StoreDriver* driver(uint64_t id) { return drivers_.at(id).get(); }
  storage::Engine* kv(uint64_t id) { return kv_.at(id).get(); }

  void Stop(uint64_t id) {
    transport_.Unregister(id);
    drivers_.at(id)->Stop();
  }
  void StopAll() {
    for (auto& [id, d] : drivers_) Stop(id);
  }

  // Has store 1 campaign, then waits until one store leads and every store
  // knows it. Returns the leader's store id, 0 on timeout.
  uint64_t ElectLeader() {
    driver(1)->Run(
        [](raftstore::Store& s) { s.GetPeer(kRegion)->raw_node().Campaign(); });
    Clock::time_point deadline = Clock::now() + kWait;
    while (Clock::now() < deadline) {
      uint64_t leader = 0;
      std::set<uint64_t> known;
      for (uint64_t id = 1; id <= 3; ++id) {
        driver(id)->Run([&](raftstore::Store& s) {
          raftstore::Peer* p = s.GetPeer(kRegion);
          if (p->IsLeader()) leader = id;
          known.insert(p->LeaderId());  // peer ids equal store ids
        });
      }
      if (leader != 0 && known == std::set<uint64_t>{leader}) return leader;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return 0;
  }

 private:
  std::shared_ptr<storage::InMemoryEnv> env_ =
      std::make_shared<storage::InMemoryEnv>();
  std::map<uint64_t, std::unique_ptr<storage::Engine>> raft_, kv_;
  raftstore::InProcessTransport transport_;
  std::map<uint64_t, std::unique_ptr<StoreDriver>> drivers_;
};

class RaftKvBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.ok());
    leader_ = cluster_.ElectLeader();
    ASSERT_NE(leader_, 0u) << "no leader within 10 s";
    follower_ = leader_ % 3 + 1;
    for (uint64_t id = 1; id <= 3; ++id) NewBackend(id, 5000);
  }

  // The contract: drivers stop before the backends go; the forwarder (a
  // member declared before the cluster) outlives both.
  void TearDown() override {
    forwarder_.OpenGate();
    EXPECT_TRUE(forwarder_.WaitIdle(kWait)) << "a forward was never answered";
    cluster_.StopAll();
    backends_.clear();
  }

  BackendOptions Options(uint64_t store, int timeout_ms) {
    BackendOptions o;
    o.region_id = kRegion;
    o.member_id = kMemberIdBase + store;
    for (uint64_t id = 1; id <= 3; ++id) {
      MemberInfo m;
      m.id = kMemberIdBase + id;
      m.name = "n" + std::to_string(id);
      m.peer_urls = {"http://127.0.0.1:" + std::to_string(2380 + id)};
      o.members.push_back(m);
    }
    o.request_timeout_ms = timeout_ms;
    return o;
  }

  // A backend on store `store`'s driver, alive until TearDown.
  KvBackend& NewBackend(uint64_t store, int timeout_ms) {
    backends_.push_back(NewRaftKvBackend(cluster_.driver(store),
                                         cluster_.kv(store), &forwarder_,
                                         Options(store, timeout_ms)));
    return *backends_.back();
  }
  // The backend made for store `store` in SetUp.
  KvBackend& backend(uint64_t store) { return *backends_.at(store - 1); }

  // The leader's last raft log index (Status runs on the driver thread).
  uint64_t LeaderLastIndex() { return backend(leader_).Status().raft_index; }

  absl::StatusOr<pb::RangeResponse> Range(uint64_t store,
                                          pb::RangeRequest req) {
    return Sync<pb::RangeResponse>([&](Done<pb::RangeResponse> done) {
      backend(store).Range(std::move(req), std::move(done));
    });
  }

  FakeForwarder forwarder_{
      [this](uint64_t store) { return cluster_.driver(store); }};
  Cluster cluster_;
  std::vector<std::unique_ptr<KvBackend>> backends_;
  uint64_t leader_ = 0;
  uint64_t follower_ = 0;
};

std::set<int64_t> Revisions(int64_t first, int64_t last) {
  std::set<int64_t> s;
  for (int64_t r = first; r <= last; ++r) s.insert(r);
  return s;
}

// 300 puts issued back to back through the leader's backend: each gets its
// own revision (2..301 on a fresh store), and a linearizable read then sees
// every key with its value and revisions.
// RaftTerm (every response header's raft_term) answers the store's term
// without a wait on the store's thread once it knows it.
TEST_F(RaftKvBackendTest, RaftTermIsTheStoresTerm) {
  for (uint64_t store = 1; store <= 3; ++store) {
    SCOPED_TRACE(store);
    uint64_t term = backend(store).Status().raft_term;
    ASSERT_GT(term, 0u);
    EXPECT_EQ(backend(store).RaftTerm(), term);  // asks the store once
    EXPECT_EQ(backend(store).RaftTerm(), term);  // then remembers it
  }
  // A write's answer carries the term too.
  absl::StatusOr<pb::PutResponse> r =
      Sync<pb::PutResponse>([&](Done<pb::PutResponse> done) {
        backend(follower_).Put(PutReq("k", "v"), std::move(done));
      });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(backend(follower_).RaftTerm(), backend(leader_).Status().raft_term);
}

TEST_F(RaftKvBackendTest, ConcurrentPutsThroughLeaderEachGetOwnRevision) {
  constexpr int kPuts = 300;
  Answers<pb::PutResponse> answers(kPuts);
  for (int i = 0; i < kPuts; ++i) {
    backend(leader_).Put(PutReq(Key(i), Value(i)), answers.Slot(i));
  }
  ASSERT_TRUE(answers.WaitAll(kWait))
      << answers.answered() << " of " << kPuts << " answered";
  EXPECT_EQ(answers.duplicates(), 0);
  std::set<int64_t> revisions;
  std::map<std::string, int64_t> revision_of;
  for (int i = 0; i < kPuts; ++i) {
    absl::StatusOr<pb::PutResponse> r = answers.Get(i);
    ASSERT_TRUE(r.ok()) << Key(i) << ": " << r.status();
    revisions.insert(r->header().revision());
    revision_of[Key(i)] = r->header().revision();
  }
  EXPECT_EQ(revisions, Revisions(2, 1 + kPuts));

  absl::StatusOr<pb::RangeResponse> range = Range(leader_, PrefixRange("key/"));
  ASSERT_TRUE(range.ok()) << range.status();
  EXPECT_EQ(range->header().revision(), 1 + kPuts);
  EXPECT_EQ(range->count(), kPuts);
  ASSERT_EQ(range->kvs_size(), kPuts);
  for (int i = 0; i < kPuts; ++i) {
    const mvccpb::KeyValue& kv = range->kvs(i);
    EXPECT_EQ(kv.key(), Key(i));
    EXPECT_EQ(kv.value(), Value(i));
    EXPECT_EQ(kv.mod_revision(), revision_of[Key(i)]) << kv.key();
    EXPECT_EQ(kv.create_revision(), revision_of[Key(i)]) << kv.key();
    EXPECT_EQ(kv.version(), 1) << kv.key();
  }
}

// Local writes that queue while the driver is busy leave together: 300
// puts are two raft entries (256 + 44 requests), each put still answered
// with its own revision.
TEST_F(RaftKvBackendTest, QueuedLocalWritesLeaveAsCappedCommands) {
  constexpr int kPuts = 300;
  const uint64_t before = LeaderLastIndex();
  Answers<pb::PutResponse> answers(kPuts);
  {
    DriverBlocker block(cluster_.driver(leader_));
    for (int i = 0; i < kPuts; ++i) {
      backend(leader_).Put(PutReq(Key(i), Value(i)), answers.Slot(i));
    }
    EXPECT_EQ(answers.answered(), 0u);
  }
  ASSERT_TRUE(answers.WaitAll(kWait));
  std::set<int64_t> revisions;
  for (int i = 0; i < kPuts; ++i) {
    absl::StatusOr<pb::PutResponse> r = answers.Get(i);
    ASSERT_TRUE(r.ok()) << Key(i) << ": " << r.status();
    // One command applies its requests in queue order.
    EXPECT_EQ(r->header().revision(), 2 + i) << Key(i);
    revisions.insert(r->header().revision());
  }
  EXPECT_EQ(revisions, Revisions(2, 1 + kPuts));
  EXPECT_EQ(LeaderLastIndex() - before,
            (kPuts + kMaxBatchRequests - 1) / kMaxBatchRequests);
}

// Through a follower: with the forwarder's gate closed, the first put is
// held, the next three each take one of the remaining in-flight slots, and
// the other 197 wait and leave together in one call once a slot frees up.
TEST_F(RaftKvBackendTest, FollowerForwardsQueuedWritesInBatches) {
  constexpr int kPuts = 201;
  forwarder_.CloseGate();
  Answers<pb::PutResponse> answers(kPuts);
  backend(follower_).Put(PutReq(Key(0), Value(0)), answers.Slot(0));
  // Its own store answers NotLeader (with the leader), then it is forwarded.
  ASSERT_TRUE(forwarder_.WaitForCalls(1, kWait));
  for (int i = 1; i < kPuts; ++i) {
    backend(follower_).Put(PutReq(Key(i), Value(i)), answers.Slot(i));
  }
  // Every Put above queued synchronously: the leader is known, and nothing
  // can answer while the gate is closed.
  std::vector<FakeForwarder::Call> held = forwarder_.calls();
  ASSERT_EQ(held.size(), static_cast<size_t>(kMaxForwardsInFlight));
  for (const FakeForwarder::Call& c : held) {
    EXPECT_EQ(c.store_id, leader_);
    EXPECT_EQ(c.requests, 1);
    EXPECT_GT(c.timeout_ms, 0);
    EXPECT_LE(c.timeout_ms, 5000);
  }
  EXPECT_EQ(forwarder_.held(), held.size());
  EXPECT_EQ(answers.answered(), 0u);

  forwarder_.OpenGate();
  ASSERT_TRUE(answers.WaitAll(kWait))
      << answers.answered() << " of " << kPuts << " answered";
  EXPECT_EQ(answers.duplicates(), 0);
  std::set<int64_t> revisions;
  for (int i = 0; i < kPuts; ++i) {
    absl::StatusOr<pb::PutResponse> r = answers.Get(i);
    ASSERT_TRUE(r.ok()) << Key(i) << ": " << r.status();
    revisions.insert(r->header().revision());
  }
  EXPECT_EQ(revisions, Revisions(2, 1 + kPuts));  // all distinct

  // The first call to end took everything that waited.
  std::vector<FakeForwarder::Call> calls = forwarder_.calls();
  std::vector<int> sizes;
  for (const FakeForwarder::Call& c : calls) {
    EXPECT_EQ(c.store_id, leader_);
    sizes.push_back(c.requests);
  }
  EXPECT_EQ(sizes,
            (std::vector<int>{1, 1, 1, 1, kPuts - kMaxForwardsInFlight}));

  absl::StatusOr<pb::RangeResponse> range =
      Range(follower_, PrefixRange("key/"));
  ASSERT_TRUE(range.ok()) << range.status();
  ASSERT_EQ(range->kvs_size(), kPuts);
  for (int i = 0; i < kPuts; ++i) EXPECT_EQ(range->kvs(i).value(), Value(i));
}

// A forwarded batch stays within ~1 MiB: large puts that queue behind the
// held calls leave in several calls, none above the byte cap.
TEST_F(RaftKvBackendTest, ForwardedBatchesRespectTheByteCap) {
  constexpr int kLarge = 40;
  const std::string big(64 << 10, 'x');
  forwarder_.CloseGate();
  Answers<pb::PutResponse> answers(kMaxForwardsInFlight + kLarge);
  backend(follower_).Put(PutReq(Key(0), "small"), answers.Slot(0));
  ASSERT_TRUE(forwarder_.WaitForCalls(1, kWait));
  for (int i = 1; i < kMaxForwardsInFlight; ++i) {
    backend(follower_).Put(PutReq(Key(i), "small"), answers.Slot(i));
  }
  for (int i = 0; i < kLarge; ++i) {
    int slot = kMaxForwardsInFlight + i;
    backend(follower_).Put(PutReq(Key(slot), big), answers.Slot(slot));
  }
  EXPECT_EQ(forwarder_.calls().size(),
            static_cast<size_t>(kMaxForwardsInFlight));
  forwarder_.OpenGate();
  ASSERT_TRUE(answers.WaitAll(kWait));
  for (int i = 0; i < kMaxForwardsInFlight + kLarge; ++i) {
    absl::StatusOr<pb::PutResponse> r = answers.Get(i);
    EXPECT_TRUE(r.ok()) << Key(i) << ": " << r.status();
  }
  // The large puts left in calls of at most ~1 MiB, each as full as the
  // cap allows (all large requests have the same size): only the last one
  // may have room for another.
  std::vector<FakeForwarder::Call> calls = forwarder_.calls();
  ASSERT_GT(calls.size(), static_cast<size_t>(kMaxForwardsInFlight) + 1);
  int forwarded = 0;
  for (size_t i = kMaxForwardsInFlight; i < calls.size(); ++i) {
    const FakeForwarder::Call& c = calls[i];
    forwarded += c.requests;
    EXPECT_GT(c.request_bytes, big.size() * c.requests) << "call " << i;
    EXPECT_LE(c.request_bytes, kMaxBatchBytes) << "call " << i;
    if (i + 1 < calls.size()) {
      size_t one = c.request_bytes / c.requests;
      EXPECT_GT(c.request_bytes + one, kMaxBatchBytes) << "call " << i;
    }
  }
  EXPECT_EQ(forwarded, kLarge);
}

// One command answers each of its requests from its own response: puts
// with a lease fail alone, the others (and a delete range and a txn of the
// same command) succeed with consecutive revisions.
TEST_F(RaftKvBackendTest, PerRequestErrorsInsideOneBatch) {
  const uint64_t before = LeaderLastIndex();
  KvBackend& b = backend(leader_);
  Answers<pb::PutResponse> puts(6);
  Answers<pb::DeleteRangeResponse> del(1);
  Answers<pb::TxnResponse> txn(1);
  {
    DriverBlocker block(cluster_.driver(leader_));
    b.Put(PutReq("a/1", "v1"), puts.Slot(0));
    b.Put(PutReq("b/1", "v", /*lease=*/5), puts.Slot(1));
    b.Put(PutReq("a/2", "v2"), puts.Slot(2));
    b.Put(PutReq("b/2", "v", /*lease=*/5), puts.Slot(3));
    pb::DeleteRangeRequest d;
    d.set_key("a/1");
    d.set_prev_kv(true);
    b.DeleteRange(d, del.Slot(0));
    pb::TxnRequest t;
    pb::Compare* c = t.add_compare();
    c->set_key("a/2");
    c->set_target(pb::Compare::VERSION);
    c->set_result(pb::Compare::EQUAL);
    c->set_version(1);
    *t.add_success()->mutable_request_put() = PutReq("a/3", "v3");
    *t.add_success()->mutable_request_range() = PrefixRange("a/");
    *t.add_failure()->mutable_request_put() = PutReq("a/4", "v4");
    b.Txn(t, txn.Slot(0));
    b.Put(PutReq("b/3", "v", /*lease=*/5), puts.Slot(4));
    b.Put(PutReq("a/5", "v5"), puts.Slot(5));
  }
  ASSERT_TRUE(puts.WaitAll(kWait));
  ASSERT_TRUE(del.WaitAll(kWait));
  ASSERT_TRUE(txn.WaitAll(kWait));
  EXPECT_EQ(LeaderLastIndex() - before, 1u) << "not one command";

  const int64_t want_put_revision[] = {2, 0, 3, 0, 0, 6};  // 0: lease error
  for (int i = 0; i < 6; ++i) {
    absl::StatusOr<pb::PutResponse> r = puts.Get(i);
    if (want_put_revision[i] == 0) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << i;
      EXPECT_EQ(r.status().message(), "etcdserver: requested lease not found")
          << i;
    } else {
      ASSERT_TRUE(r.ok()) << i << ": " << r.status();
      EXPECT_EQ(r->header().revision(), want_put_revision[i]) << i;
    }
  }
  absl::StatusOr<pb::DeleteRangeResponse> d = del.Get(0);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->header().revision(), 4);
  EXPECT_EQ(d->deleted(), 1);
  ASSERT_EQ(d->prev_kvs_size(), 1);
  EXPECT_EQ(d->prev_kvs(0).value(), "v1");
  absl::StatusOr<pb::TxnResponse> tr = txn.Get(0);
  ASSERT_TRUE(tr.ok()) << tr.status();
  EXPECT_TRUE(tr->succeeded());
  EXPECT_EQ(tr->header().revision(), 5);
  ASSERT_EQ(tr->responses_size(), 2);
  const pb::RangeResponse& inner = tr->responses(1).response_range();
  ASSERT_EQ(inner.kvs_size(), 2);
  EXPECT_EQ(inner.kvs(0).key(), "a/2");
  EXPECT_EQ(inner.kvs(1).key(), "a/3");

  absl::StatusOr<pb::RangeResponse> a = Range(leader_, PrefixRange("a/"));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->header().revision(), 6);
  std::vector<std::pair<std::string, int64_t>> got;
  for (const mvccpb::KeyValue& kv : a->kvs()) {
    got.emplace_back(kv.key(), kv.mod_revision());
  }
  EXPECT_EQ(got, (std::vector<std::pair<std::string, int64_t>>{
                     {"a/2", 3}, {"a/3", 5}, {"a/5", 6}}));
  absl::StatusOr<pb::RangeResponse> bs = Range(leader_, PrefixRange("b/"));
  ASSERT_TRUE(bs.ok()) << bs.status();
  EXPECT_EQ(bs->kvs_size(), 0);
}

// A forward that fails before it is sent is retried (after the backend's
// retry delay, ~50 ms) and the put succeeds, once. A first put goes ahead so
// that the backend knows the leader and its timer already has a (late)
// deadline to wait for: the retry must not wait behind it.
TEST_F(RaftKvBackendTest, FailedForwardIsRetried) {
  auto put = [&](const std::string& key) {
    return Sync<pb::PutResponse>([&](Done<pb::PutResponse> done) {
      backend(follower_).Put(PutReq(key, "v"), std::move(done));
    });
  };
  absl::StatusOr<pb::PutResponse> first = put("first");
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(forwarder_.calls().size(), 1u);

  forwarder_.FailNext(1);
  Clock::time_point start = Clock::now();
  absl::StatusOr<pb::PutResponse> r = put("k");
  Clock::duration took = Clock::now() - start;
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->header().revision(), 3);
  EXPECT_EQ(forwarder_.failed(), 1);
  std::vector<FakeForwarder::Call> calls = forwarder_.calls();
  ASSERT_EQ(calls.size(), 3u);  // the first put, the failure, the retry
  for (const FakeForwarder::Call& c : calls) EXPECT_EQ(c.store_id, leader_);
  EXPECT_GE(took, milliseconds(50));
  // Well within the request timeout (5 s).
  EXPECT_LT(took, milliseconds(2000));

  pb::RangeRequest get;
  get.set_key("k");
  absl::StatusOr<pb::RangeResponse> g = Range(follower_, get);
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_EQ(g->kvs_size(), 1);
  EXPECT_EQ(g->kvs(0).value(), "v");
  EXPECT_EQ(g->kvs(0).version(), 1);
  EXPECT_EQ(g->header().revision(), 3);
}

// A forward whose answer is lost after the leader's member received it (a
// connection that broke on the way back) has an unknown fate: it must not
// be proposed a second time. (Regression: the backend used to retry every
// failed forward, and the put was applied twice.)
TEST_F(RaftKvBackendTest, ForwardWithLostAnswerIsNotAppliedTwice) {
  forwarder_.LoseNextAnswers(1);
  absl::StatusOr<pb::PutResponse> r =
      Sync<pb::PutResponse>([&](Done<pb::PutResponse> done) {
        backend(follower_).Put(PutReq("k", "v"), std::move(done));
      });
  // Its fate is unknown to the backend: etcd's "connection lost" timeout.
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_EQ(r.status().message(),
            "etcdserver: request timed out, possibly due to connection lost");
  pb::RangeRequest get;
  get.set_key("k");
  absl::StatusOr<pb::RangeResponse> g = Range(leader_, get);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->header().revision(), 2);
  ASSERT_EQ(g->kvs_size(), 1);
  EXPECT_EQ(g->kvs(0).version(), 1);
}

// No answer within request_timeout_ms: "request timed out", in about that
// time, while the forward is still held; twice in a row (the second one
// usually finds the backend's timer idle, with nothing left to wait for).
TEST_F(RaftKvBackendTest, RequestTimesOut) {
  constexpr int kTimeoutMs = 300;
  KvBackend& b = NewBackend(follower_, kTimeoutMs);
  forwarder_.CloseGate();
  for (int attempt = 1; attempt <= 2; ++attempt) {
    SCOPED_TRACE(attempt);
    Clock::time_point start = Clock::now();
    absl::StatusOr<pb::PutResponse> r =
        Sync<pb::PutResponse>([&](Done<pb::PutResponse> done) {
          b.Put(PutReq(Key(attempt), "v"), std::move(done));
        });
    Clock::duration took = Clock::now() - start;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
    EXPECT_EQ(r.status().message(), "etcdserver: request timed out");
    EXPECT_GE(took, milliseconds(kTimeoutMs));
    EXPECT_LT(took, milliseconds(3000));
    // Each put is held in its own call, given what was left of its time.
    ASSERT_EQ(forwarder_.held(), static_cast<size_t>(attempt));
    std::vector<FakeForwarder::Call> calls = forwarder_.calls();
    ASSERT_EQ(calls.size(), static_cast<size_t>(attempt));
    EXPECT_EQ(calls.back().store_id, leader_);
    EXPECT_EQ(calls.back().requests, 1);
    EXPECT_GT(calls.back().timeout_ms, 0);
    EXPECT_LE(calls.back().timeout_ms, kTimeoutMs);
    // Held, so not applied.
    pb::RangeRequest get;
    get.set_key(Key(attempt));
    absl::StatusOr<pb::RangeResponse> g = Range(leader_, get);
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ(g->kvs_size(), 0);
  }
}

// Writes queued while the leader's driver stops, writes and reads after it
// stopped: all are answered at once, with Unavailable.
TEST_F(RaftKvBackendTest, StoppedDriverAnswersUnavailable) {
  KvBackend& b = backend(leader_);
  // The backend now knows its own store leads: writes go there.
  absl::StatusOr<pb::PutResponse> first =
      Sync<pb::PutResponse>([&](Done<pb::PutResponse> done) {
        b.Put(PutReq("k", "v"), std::move(done));
      });
  ASSERT_TRUE(first.ok()) << first.status();

  constexpr int kQueued = 10;
  Answers<pb::PutResponse> queued(kQueued);
  std::thread stopper;
  {
    DriverBlocker block(cluster_.driver(leader_));
    for (int i = 0; i < kQueued; ++i) {
      b.Put(PutReq(Key(i), Value(i)), queued.Slot(i));
    }
    stopper = std::thread([&] { cluster_.Stop(leader_); });
    Clock::time_point deadline = Clock::now() + kWait;
    while (cluster_.driver(leader_)->running() && Clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(1));
    }
    EXPECT_FALSE(cluster_.driver(leader_)->running());
  }  // released: the driver cancels the queued task and stops
  stopper.join();
  ASSERT_TRUE(queued.WaitAll(kWait));
  for (int i = 0; i < kQueued; ++i) {
    absl::StatusOr<pb::PutResponse> r = queued.Get(i);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
    EXPECT_EQ(r.status().message(), "etcdserver: server stopped");
  }

  Clock::time_point start = Clock::now();
  absl::StatusOr<pb::PutResponse> after =
      Sync<pb::PutResponse>([&](Done<pb::PutResponse> done) {
        b.Put(PutReq("k2", "v2"), std::move(done));
      });
  EXPECT_EQ(after.status().code(), absl::StatusCode::kUnavailable)
      << after.status();
  pb::RangeRequest get;
  get.set_key("k");
  absl::StatusOr<pb::RangeResponse> read = Range(leader_, get);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kUnavailable)
      << read.status();
  EXPECT_LT(Clock::now() - start, milliseconds(3000));
}

// The leader's member proposes a forwarded command and answers with its
// response; a member that does not lead answers NotLeader (it never
// forwards further); only etcd commands are accepted.
TEST_F(RaftKvBackendTest, ProposeForwardedServesEtcdCommandsOnly) {
  auto command = [](uint64_t store) {
    RaftCmdRequest req;
    req.mutable_header()->set_region_id(kRegion);
    req.mutable_header()->mutable_peer()->set_id(store);
    req.mutable_header()->mutable_peer()->set_store_id(store);
    req.mutable_header()->mutable_region_epoch()->set_conf_ver(1);
    req.mutable_header()->mutable_region_epoch()->set_version(1);
    return req;
  };
  auto call = [](StoreDriver* d, RaftCmdRequest req) {
    Answers<RaftCmdResponse> a(1);
    ProposeForwarded(d, std::move(req),
                     [done = a.Slot(0)](RaftCmdResponse r) { done(r); });
    EXPECT_TRUE(a.WaitAll(kWait));
    absl::StatusOr<RaftCmdResponse> r = a.Get(0);
    return r.ok() ? *r : RaftCmdResponse();
  };
  auto add_put = [](RaftCmdRequest* req, const std::string& k) {
    raft_cmdpb::Request* r = req->add_requests();
    r->set_cmd_type(raft_cmdpb::Etcd);
    *r->mutable_etcd()->mutable_put() = PutReq(k, "v");
  };

  RaftCmdRequest ok = command(leader_);
  add_put(&ok, "x");
  add_put(&ok, "y");
  RaftCmdResponse resp = call(cluster_.driver(leader_), ok);
  ASSERT_FALSE(resp.header().has_error()) << resp.header().error().message();
  ASSERT_EQ(resp.responses_size(), 2);
  EXPECT_EQ(resp.responses(0).etcd().put().header().revision(), 2);
  EXPECT_EQ(resp.responses(1).etcd().put().header().revision(), 3);

  // Addressed to the leader's peer, but run by a follower: NotLeader.
  RaftCmdRequest elsewhere = command(leader_);
  add_put(&elsewhere, "z");
  resp = call(cluster_.driver(follower_), elsewhere);
  ASSERT_TRUE(resp.header().error().has_not_leader());
  EXPECT_EQ(resp.header().error().not_leader().leader().store_id(), leader_);

  RaftCmdRequest get = command(leader_);
  raft_cmdpb::Request* r = get.add_requests();
  r->set_cmd_type(raft_cmdpb::Get);
  r->mutable_get()->set_key("x");
  resp = call(cluster_.driver(leader_), get);
  EXPECT_EQ(resp.header().error().message(),
            "only etcd commands may be forwarded");
  resp = call(cluster_.driver(leader_), command(leader_));  // no request
  EXPECT_EQ(resp.header().error().message(),
            "only etcd commands may be forwarded");

  // Nothing but the first command was applied.
  pb::RangeRequest every;
  every.set_key(std::string(1, '\0'));
  every.set_range_end(std::string(1, '\0'));
  absl::StatusOr<pb::RangeResponse> all = Range(leader_, every);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->header().revision(), 3);
  EXPECT_EQ(all->count(), 2);
}

}  // namespace
}  // namespace raftkv::server
