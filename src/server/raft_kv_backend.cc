#include "server/raft_kv_backend.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "mvcc/kv_store.h"
#include "raftstore/thread_name.h"

namespace raftkv::server {

namespace {

using Clock = std::chrono::steady_clock;
using raft_cmdpb::EtcdRequest;
using raft_cmdpb::EtcdResponse;
using raft_cmdpb::RaftCmdRequest;
using raft_cmdpb::RaftCmdResponse;

constexpr char kErrNoLeader[] = "etcdserver: no leader";
constexpr char kErrLeaderChanged[] = "etcdserver: leader changed";
constexpr char kErrTimeout[] = "etcdserver: request timed out";
constexpr char kErrConnectionLost[] =
    "etcdserver: request timed out, possibly due to connection lost";
// How long to wait before asking again while there is no leader.
constexpr auto kRetryDelay = std::chrono::milliseconds(50);

// Runs functions at given times on one thread (retries and timeouts).
class Timer {
 public:
  Timer()
      : thread_([this] {
          raftstore::SetThreadName("raftkv-timer");
          Loop();
        }) {}
  ~Timer() {
    {
      std::lock_guard l(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  void At(Clock::time_point when, std::function<void()> fn) {
    bool earliest;
    {
      std::lock_guard l(mu_);
      auto it = tasks_.emplace(when, std::move(fn));
      earliest = it == tasks_.begin();
    }
    // A later deadline than the one the thread waits for needs no wake-up
    // (one per request would cost a context switch each).
    if (earliest) cv_.notify_one();
  }

 private:
  void Loop() {
    std::unique_lock l(mu_);
    while (!stop_) {
      if (tasks_.empty()) {
        cv_.wait(l);
        continue;
      }
      auto first = tasks_.begin();
      if (Clock::now() < first->first) {
        cv_.wait_until(l, first->first);
        continue;
      }
      std::function<void()> fn = std::move(first->second);
      tasks_.erase(first);
      l.unlock();
      fn();
      l.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::multimap<Clock::time_point, std::function<void()>> tasks_;
  std::thread thread_;  // last: starts after the rest is built
};

// A few threads that run reads off the store's loop (a large Range must not
// hold up raft).
class Executor {
 public:
  explicit Executor(int threads) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this] {
        raftstore::SetThreadName("raftkv-exec");
        Loop();
      });
    }
  }
  ~Executor() {
    {
      std::lock_guard l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }
  void Submit(std::function<void()> fn) {
    {
      std::lock_guard l(mu_);
      tasks_.push_back(std::move(fn));
    }
    cv_.notify_one();
  }

 private:
  void Loop() {
    std::unique_lock l(mu_);
    for (;;) {
      cv_.wait(l, [this] { return stop_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping, and nothing left
      std::function<void()> fn = std::move(tasks_.front());
      tasks_.pop_front();
      l.unlock();
      fn();
      l.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::deque<std::function<void()>> tasks_;
  std::vector<std::thread> threads_;
};

// Calls `done` at most once: the first of the answer and the timeout wins.
template <typename T>
class Once {
 public:
  explicit Once(Done<T> done) : done_(std::move(done)) {}
  void operator()(absl::StatusOr<T> v) {
    if (fired_.exchange(true)) return;
    // Released once called: the timer keeps the Once until the deadline,
    // but not the gRPC call that `done` holds.
    Done<T> done = std::move(done_);
    done(std::move(v));
  }
  bool fired() const { return fired_.load(); }

 private:
  Done<T> done_;
  std::atomic<bool> fired_{false};
};

// Items waiting for the store's thread. The first item added while no
// drain is pending posts one (StoreDriver::PostOrCancel); the drain takes
// every item queued by then, so whatever arrives while the store is busy
// leaves together. The drain gets no store when the driver stopped.
template <typename T>
class DriverQueue {
 public:
  using Drain = std::function<void(raftstore::Store*, std::vector<T>)>;
  // `driver` must outlive the queue.
  DriverQueue(raftstore::StoreDriver* driver, Drain drain)
      : driver_(driver), drain_(std::move(drain)) {}

  void Add(T item) {
    bool post;
    {
      std::lock_guard l(mu_);
      items_.push_back(std::move(item));
      post = !posted_;
      posted_ = true;
    }
    if (!post) return;
    bool posted =
        driver_->PostOrCancel([this](raftstore::Store* s) { Run(s); });
    if (!posted) Run(nullptr);  // stopped: the drain fails what is queued
  }

 private:
  void Run(raftstore::Store* store) {
    std::vector<T> items;
    {
      std::lock_guard l(mu_);
      items.swap(items_);
      posted_ = false;
    }
    drain_(store, std::move(items));
  }

  raftstore::StoreDriver* const driver_;
  const Drain drain_;
  std::mutex mu_;
  std::vector<T> items_;  // guarded by mu_
  bool posted_ = false;   // a drain is queued; guarded by mu_
};

absl::Status EtcdError(const EtcdResponse& r) {
  return absl::Status(static_cast<absl::StatusCode>(r.error_code()),
                      r.error_message());
}

class RaftKvBackend final : public KvBackend {
 public:
  RaftKvBackend(raftstore::StoreDriver* driver, storage::Engine* kv,
                Forwarder* forwarder, BackendOptions options)
      : driver_(driver),
        kv_(kv),
        forwarder_(forwarder),
        options_(std::move(options)),
        executor_(2) {
    members_->list = options_.members;
  }

  void Put(etcdserverpb::PutRequest req,
           Done<etcdserverpb::PutResponse> done) override {
    if (absl::Status s = mvcc::ValidatePut(req); !s.ok()) return done(s);
    EtcdRequest er;
    *er.mutable_put() = std::move(req);
    Write<etcdserverpb::PutResponse>(
        std::move(er), std::move(done),
        [](EtcdResponse& r) { return std::move(*r.mutable_put()); });
  }

  void DeleteRange(etcdserverpb::DeleteRangeRequest req,
                   Done<etcdserverpb::DeleteRangeResponse> done) override {
    if (absl::Status s = mvcc::ValidateDeleteRange(req); !s.ok()) {
      return done(s);
    }
    EtcdRequest er;
    *er.mutable_delete_range() = std::move(req);
    Write<etcdserverpb::DeleteRangeResponse>(
        std::move(er), std::move(done),
        [](EtcdResponse& r) { return std::move(*r.mutable_delete_range()); });
  }

  void Txn(etcdserverpb::TxnRequest req,
           Done<etcdserverpb::TxnResponse> done) override {
    if (absl::Status s = mvcc::ValidateTxn(req); !s.ok()) return done(s);
    if (mvcc::IsReadOnlyTxn(req)) {
      auto shared = std::make_shared<etcdserverpb::TxnRequest>(std::move(req));
      Read<etcdserverpb::TxnResponse>(
          /*serializable=*/false, /*point=*/false, std::move(done),
          [shared,
           hint = driver_->revision_hint()](const storage::Snapshot& view) {
            return mvcc::ReadOnlyTxn(view, *shared, hint);
          });
      return;
    }
    EtcdRequest er;
    *er.mutable_txn() = std::move(req);
    Write<etcdserverpb::TxnResponse>(
        std::move(er), std::move(done),
        [](EtcdResponse& r) { return std::move(*r.mutable_txn()); });
  }

  void Compact(etcdserverpb::CompactionRequest req,
               Done<etcdserverpb::CompactionResponse> done) override {
    EtcdRequest er;
    *er.mutable_compaction() = std::move(req);
    Write<etcdserverpb::CompactionResponse>(
        std::move(er), std::move(done),
        [](EtcdResponse& r) { return std::move(*r.mutable_compaction()); });
  }

  void Range(etcdserverpb::RangeRequest req,
             Done<etcdserverpb::RangeResponse> done) override {
    if (absl::Status s = mvcc::ValidateRange(req); !s.ok()) return done(s);
    bool serializable = req.serializable();
    bool point = req.range_end().empty();
    auto shared = std::make_shared<etcdserverpb::RangeRequest>(std::move(req));
    Read<etcdserverpb::RangeResponse>(serializable, point, std::move(done),
                                      [shared, hint = driver_->revision_hint()](
                                          const storage::Snapshot& view) {
                                        return mvcc::Range(view, *shared, hint);
                                      });
  }

  StatusInfo Status() override {
    StatusInfo info;
    info.member_id = options_.member_id;
    info.version = "3.4.0";
    info.db_size = static_cast<int64_t>(kv_->ApproximateSize());
    uint64_t leader_store = 0;
    driver_->Run([&](raftstore::Store& store) {
      raftstore::Peer* peer = store.GetPeer(options_.region_id);
      if (peer == nullptr) return;
      info.raft_term = peer->term();
      info.raft_index = peer->raw_node().raft().raft_log().last_index();
      info.raft_applied_index = peer->peer_storage().applied_index();
      uint64_t lead = peer->LeaderId();
      for (const metapb::Peer& p : peer->region().peers()) {
        if (p.id() == lead) leader_store = p.store_id();
      }
    });
    if (leader_store >= 1 && leader_store <= options_.members.size()) {
      info.leader_member_id = options_.members[leader_store - 1].id;
    }
    return info;
  }

  // The term seen last: from the store, asked at most every kTermRefresh
  // (without waiting, but for the first time), and from every write's
  // answer. It used to be Status() per response: a wait for the store's
  // thread on every call.
  uint64_t RaftTerm() override {
    uint64_t term = term_.load(std::memory_order_relaxed);
    int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                      Clock::now().time_since_epoch())
                      .count();
    int64_t asked = term_asked_ms_.load(std::memory_order_relaxed);
    if (term != 0 && now - asked < kTermRefresh.count()) return term;
    if (!term_asked_ms_.compare_exchange_strong(asked, now)) return term;
    auto refresh = [this](raftstore::Store& store) {
      if (raftstore::Peer* peer = store.GetPeer(options_.region_id)) {
        NoteTerm(peer->term());
      }
    };
    if (term == 0) {
      driver_->Run(refresh);
      return term_.load(std::memory_order_relaxed);
    }
    driver_->Post(refresh);
    return term;
  }

  // Every member, with the client URLs known so far; those not known yet
  // are asked of their members, waiting a little for the answers.
  std::vector<MemberInfo> Members() override {
    std::vector<uint64_t> missing;
    {
      std::lock_guard l(members_->mu);
      for (size_t i = 0; i < members_->list.size(); ++i) {
        if (members_->list[i].client_urls.empty()) missing.push_back(i + 1);
      }
    }
    if (!missing.empty() && options_.fetch_client_urls) {
      for (uint64_t store : missing) {
        options_.fetch_client_urls(
            store, [m = members_, store](std::vector<std::string> urls) {
              std::lock_guard l(m->mu);
              m->list[store - 1].client_urls = std::move(urls);
              m->changed.notify_all();
            });
      }
      std::unique_lock l(members_->mu);
      members_->changed.wait_for(l, std::chrono::milliseconds(500), [&] {
        for (uint64_t store : missing) {
          if (members_->list[store - 1].client_urls.empty()) return false;
        }
        return true;
      });
    }
    std::lock_guard l(members_->mu);
    return members_->list;
  }

 private:
  // The header of a command for the region's peer on `store_id` (peer ids
  // equal store ids in the initial region).
  RaftCmdRequest Command(uint64_t store_id) const {
    RaftCmdRequest req;
    auto* h = req.mutable_header();
    h->set_region_id(options_.region_id);
    h->mutable_peer()->set_id(store_id);
    h->mutable_peer()->set_store_id(store_id);
    h->mutable_region_epoch()->set_conf_ver(1);
    h->mutable_region_epoch()->set_version(1);
    return req;
  }

  Clock::time_point Deadline() const {
    return Clock::now() +
           std::chrono::milliseconds(options_.request_timeout_ms);
  }

  // ---- Writes ----------------------------------------------------------
  //
  // Every write becomes one raft_cmdpb Etcd request. Requests are not
  // proposed one by one: they queue, and whatever queued up while the
  // previous command was on its way leaves as ONE command (one raft entry,
  // one apply), of at most kMaxBatchRequests requests and about
  // kMaxBatchBytes. Each request still gets its own answer (its own
  // response, or its own etcd error) from the command's responses.
  //
  //   - Local: while this member's peer leads (or no leader is known), a
  //     task posted to the driver takes the queue and proposes it in the
  //     same pass (StoreDriver::ProposeOnDriverThread).
  //   - Forwarded: while another member's peer leads, the queue goes to that
  //     member in one Forward call; up to kMaxForwardsInFlight calls are in
  //     flight per member, and what queues meanwhile leaves with the next.
  //     The member it is sent to proposes it as one command and never
  //     forwards further.
  // The leader is remembered (leader_store_) from the answers, so a member
  // that does not lead forwards at once, without asking its own store first.

  // A write waiting to be proposed.
  struct PendingWrite {
    raft_cmdpb::Request request;  // cmd_type Etcd
    size_t bytes = 0;
    Clock::time_point deadline;
    // Answers the client (at most once; later calls do nothing).
    std::function<void(absl::StatusOr<EtcdResponse>)> answer;
    std::function<bool()> finished;  // answered already (or timed out)
    int reroutes = 0;                // NotLeader answers so far
  };
  using Writes = std::vector<PendingWrite>;

  static constexpr size_t kMaxBatchRequests = 256;
  static constexpr size_t kMaxBatchBytes = 1 << 20;
  static constexpr int kMaxForwardsInFlight = 4;
  // Answers of a command this small are sent from the driver thread.
  static constexpr size_t kMaxInlineAnswers = 2;
  static constexpr std::chrono::milliseconds kTermRefresh{50};

  void NoteTerm(uint64_t term) {
    uint64_t seen = term_.load(std::memory_order_relaxed);
    while (term > seen && !term_.compare_exchange_weak(
                              seen, term, std::memory_order_relaxed)) {
    }
  }

  // NotLeader answers a write may follow at once; after that it waits
  // kRetryDelay between attempts (leadership is moving).
  static constexpr int kMaxImmediateReroutes = 2;

  template <typename T>
  void Write(EtcdRequest er, Done<T> done,
             std::function<T(EtcdResponse&)> pick) {
    auto once = std::make_shared<Once<T>>(std::move(done));
    PendingWrite w;
    w.deadline = Deadline();
    timer_.At(w.deadline,
              [once] { (*once)(absl::UnavailableError(kErrTimeout)); });
    w.request.set_cmd_type(raft_cmdpb::Etcd);
    *w.request.mutable_etcd() = std::move(er);
    w.bytes = w.request.ByteSizeLong();
    w.answer = [once, pick = std::move(pick)](absl::StatusOr<EtcdResponse> r) {
      if (!r.ok()) return (*once)(r.status());
      if (r->error_code() != 0) return (*once)(EtcdError(*r));
      (*once)(pick(*r));
    };
    w.finished = [once] { return once->fired(); };
    Route(std::move(w));
  }

  // Sends `w` where the leader is believed to be.
  void Route(PendingWrite w) {
    if (w.finished() || Clock::now() >= w.deadline) return;
    uint64_t leader = leader_store_.load(std::memory_order_relaxed);
    if (leader == 0 || leader == driver_->store_id() || forwarder_ == nullptr) {
      local_.Add(std::move(w));
    } else {
      EnqueueForward(leader, std::move(w));
    }
  }

  void RouteLater(Writes writes) {
    auto shared = std::make_shared<Writes>(std::move(writes));
    timer_.At(Clock::now() + kRetryDelay, [this, shared] {
      for (PendingWrite& w : *shared) Route(std::move(w));
    });
  }

  // Takes up to one command's worth of writes off the front of `q`.
  static Writes TakeBatch(Writes* q) {
    size_t n = 0;
    size_t bytes = 0;
    while (n < q->size() && n < kMaxBatchRequests &&
           (n == 0 || bytes + (*q)[n].bytes <= kMaxBatchBytes)) {
      bytes += (*q)[n].bytes;
      ++n;
    }
    if (n == q->size()) return std::exchange(*q, {});
    Writes batch(std::make_move_iterator(q->begin()),
                 std::make_move_iterator(q->begin() + n));
    q->erase(q->begin(), q->begin() + n);
    return batch;
  }

  // The command of a batch, for the region's peer on `store_id`. The
  // requests are copied: a batch may have to go elsewhere after a NotLeader.
  RaftCmdRequest BatchCommand(uint64_t store_id, const Writes& batch) const {
    RaftCmdRequest req = Command(store_id);
    req.mutable_requests()->Reserve(static_cast<int>(batch.size()));
    for (const PendingWrite& w : batch) *req.add_requests() = w.request;
    return req;
  }

  static void FailAll(Writes& batch, const absl::Status& s) {
    for (PendingWrite& w : batch) w.answer(s);
  }

  // Answers every write of `batch` for a command error that is final and
  // returns true; returns false for NotLeader (nothing was proposed: the
  // caller sends the writes elsewhere). StaleCommand: the outcome is
  // unknown, etcd's "leader changed".
  static bool FailOnFinalError(Writes& batch, const errorpb::Error& e) {
    if (e.has_stale_command()) {
      FailAll(batch, absl::UnavailableError(kErrLeaderChanged));
      return true;
    }
    if (!e.has_not_leader()) {
      FailAll(batch, absl::UnavailableError(
                         absl::StrCat("etcdserver: ", e.message())));
      return true;
    }
    return false;
  }

  // Answers every write of `batch` from a command response without a
  // header error.
  void AnswerAll(Writes& batch, RaftCmdResponse& resp) {
    NoteTerm(resp.header().current_term());
    for (size_t i = 0; i < batch.size(); ++i) {
      if (i >= static_cast<size_t>(resp.responses_size())) {
        batch[i].answer(absl::InternalError(
            "etcdserver: the command's response lacks an answer"));
        continue;
      }
      batch[i].answer(std::move(
          *resp.mutable_responses(static_cast<int>(i))->mutable_etcd()));
    }
  }

  // -- local proposals --

  // On the driver thread (local_'s drain): proposes everything queued, in
  // commands.
  void ProposeLocal(raftstore::Store* store, Writes queued) {
    if (store == nullptr) {
      FailAll(queued, absl::UnavailableError("etcdserver: server stopped"));
      return;
    }
    while (!queued.empty()) {
      auto batch = std::make_shared<Writes>(TakeBatch(&queued));
      driver_->ProposeOnDriverThread(
          BatchCommand(driver_->store_id(), *batch),
          [this, batch](raftstore::CmdResult res) {
            // A lone answer is cheaper here than a hand-off (a wake-up on
            // the latency path); many go off the store's thread, since
            // answering gRPC calls costs it time.
            if (batch->size() <= kMaxInlineAnswers) {
              return HandleLocalResult(std::move(*batch), res.response);
            }
            executor_.Submit([this, batch, r = std::move(res)]() mutable {
              HandleLocalResult(std::move(*batch), r.response);
            });
          });
    }
  }

  void HandleLocalResult(Writes batch, RaftCmdResponse& resp) {
    if (!resp.header().has_error()) {
      leader_store_.store(driver_->store_id(), std::memory_order_relaxed);
      return AnswerAll(batch, resp);
    }
    const errorpb::Error& err = resp.header().error();
    if (FailOnFinalError(batch, err)) return;
    // Not proposed: send it where the leader is, if one is known.
    uint64_t leader = err.not_leader().leader().store_id();
    if (leader == driver_->store_id()) leader = 0;
    leader_store_.store(leader, std::memory_order_relaxed);
    Reroute(std::move(batch), /*now=*/leader != 0 && forwarder_ != nullptr);
  }

  // Routes the writes of a batch that was not proposed again: at once if
  // `now` (a leader is known) and they have not bounced too often, else
  // after kRetryDelay (an election is on).
  void Reroute(Writes batch, bool now) {
    Writes later;
    for (PendingWrite& w : batch) {
      if (now && w.reroutes++ < kMaxImmediateReroutes) {
        Route(std::move(w));
      } else {
        later.push_back(std::move(w));
      }
    }
    if (!later.empty()) RouteLater(std::move(later));
  }

  // -- forwarded proposals --

  struct ForwardQueue {
    Writes waiting;
    int in_flight = 0;
  };

  void EnqueueForward(uint64_t leader, PendingWrite w) {
    Writes batch;
    {
      std::lock_guard l(forward_mu_);
      ForwardQueue& q = forward_[leader];
      q.waiting.push_back(std::move(w));
      if (q.in_flight >= kMaxForwardsInFlight) return;  // leaves later
      ++q.in_flight;
      batch = TakeBatch(&q.waiting);
    }
    SendForward(leader, std::move(batch));
  }

  void SendForward(uint64_t leader, Writes batch) {
    Clock::time_point deadline = batch.front().deadline;
    for (const PendingWrite& w : batch)
      deadline = std::max(deadline, w.deadline);
    int left_ms =
        static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                             deadline - Clock::now())
                             .count());
    RaftCmdRequest req = BatchCommand(leader, batch);
    auto shared = std::make_shared<Writes>(std::move(batch));
    forwarder_->Forward(
        leader, std::move(req), std::max(left_ms, 1),
        [this, leader, shared](absl::StatusOr<RaftCmdResponse> resp) {
          ForwardDone(leader);
          HandleForwardResult(leader, std::move(*shared), resp);
        });
  }

  // One Forward call to `leader` ended: send what queued meanwhile.
  void ForwardDone(uint64_t leader) {
    Writes batch;
    {
      std::lock_guard l(forward_mu_);
      ForwardQueue& q = forward_[leader];
      --q.in_flight;
      if (q.waiting.empty()) return;
      ++q.in_flight;
      batch = TakeBatch(&q.waiting);
    }
    SendForward(leader, std::move(batch));
  }

  void HandleForwardResult(uint64_t leader, Writes batch,
                           absl::StatusOr<RaftCmdResponse>& resp) {
    if (!resp.ok()) {
      // The leader's member is unreachable: maybe it is gone and a new
      // leader is being elected; ask the local store again next time.
      uint64_t expected = leader;
      leader_store_.compare_exchange_strong(expected, 0,
                                            std::memory_order_relaxed);
      // Not sent: safe to try again shortly. Anything else may have reached
      // the leader, which may apply it: proposing it again could apply a
      // write twice, so its fate stays unknown to the client (as etcd's).
      if (resp.status().code() == absl::StatusCode::kFailedPrecondition) {
        return RouteLater(std::move(batch));
      }
      return FailAll(batch, absl::UnavailableError(kErrConnectionLost));
    }
    if (!resp->header().has_error()) return AnswerAll(batch, *resp);
    const errorpb::Error& e = resp->header().error();
    if (FailOnFinalError(batch, e)) return;
    // Leadership moved on: not proposed there, so go where it points.
    uint64_t hint = e.not_leader().leader().store_id();
    if (hint == leader) hint = 0;
    uint64_t expected = leader;
    leader_store_.compare_exchange_strong(expected, hint,
                                          std::memory_order_relaxed);
    Reroute(std::move(batch), /*now=*/hint != 0);
  }

  // ---- Reads -----------------------------------------------------------
  //
  // Linearizable reads queue like writes: the reads that queued up while
  // the driver was busy share one Store::ReadIndex call (one round, one kv
  // view), and they are then served by at most two executor tasks. A
  // serializable read of one key is served at once on the calling thread
  // (a point lookup, no hand-off); other serializable reads run on the
  // executor (a large range must not hold up a gRPC thread).

  struct PendingRead {
    Clock::time_point deadline;
    std::function<bool()> finished;
    // Serves the read from the view and answers it.
    std::function<void(const storage::Snapshot&)> serve;
    std::function<void(absl::Status)> fail;
  };
  using Reads = std::vector<PendingRead>;

  template <typename T>
  void Read(bool serializable, bool point, Done<T> done,
            std::function<absl::StatusOr<T>(const storage::Snapshot&)> read) {
    auto once = std::make_shared<Once<T>>(std::move(done));
    if (serializable) {
      auto serve = [this, once, read = std::move(read)] {
        std::unique_ptr<storage::Snapshot> view = kv_->NewSnapshot();
        (*once)(read(*view));
      };
      if (point) {
        serve();
      } else {
        executor_.Submit(std::move(serve));
      }
      return;
    }
    PendingRead r;
    r.deadline = Deadline();
    timer_.At(r.deadline,
              [once] { (*once)(absl::UnavailableError(kErrTimeout)); });
    r.finished = [once] { return once->fired(); };
    r.serve = [once, read = std::move(read)](const storage::Snapshot& view) {
      (*once)(read(view));
    };
    r.fail = [once](absl::Status s) { (*once)(std::move(s)); };
    EnqueueRead(std::move(r));
  }

  void EnqueueRead(PendingRead r) {
    if (r.finished() || Clock::now() >= r.deadline) return;
    reads_.Add(std::move(r));
  }

  // On the driver thread (reads_'s drain): one ReadIndex call for every
  // queued read.
  void ReadLocal(raftstore::Store* store, Reads queued) {
    auto batch = std::make_shared<Reads>(std::move(queued));
    if (store == nullptr) {
      for (PendingRead& r : *batch) {
        r.fail(absl::UnavailableError("etcdserver: server stopped"));
      }
      return;
    }
    store->ReadIndex(Command(driver_->store_id()), [this, batch](
                                                       raftstore::CmdResult r) {
      if (r.response.header().has_error() || r.snap == nullptr) {
        // No leader, or the round was lost: reads can simply retry.
        timer_.At(Clock::now() + kRetryDelay, [this, batch] {
          for (PendingRead& p : *batch) EnqueueRead(std::move(p));
        });
        return;
      }
      std::shared_ptr<storage::Snapshot> view = std::move(r.snap);
      // Two halves for the executor's two threads.
      size_t half = batch->size() >= 8 ? batch->size() / 2 : 0;
      auto serve = [batch, view](size_t from, size_t to) {
        for (size_t i = from; i < to; ++i) {
          PendingRead& p = (*batch)[i];
          if (!p.finished()) p.serve(*view);
        }
      };
      if (half > 0) {
        executor_.Submit([serve, half] { serve(0, half); });
      }
      executor_.Submit([serve, half, n = batch->size()] { serve(half, n); });
    });
  }

  // The member list, shared with the answers of client-URL fetches (which
  // may arrive after the backend is gone).
  struct MemberTable {
    std::mutex mu;
    std::condition_variable changed;
    std::vector<MemberInfo> list;
  };

  raftstore::StoreDriver* driver_;
  storage::Engine* kv_;
  Forwarder* forwarder_;
  BackendOptions options_;
  std::shared_ptr<MemberTable> members_ = std::make_shared<MemberTable>();
  // The store whose peer led at the last answer; 0: unknown.
  std::atomic<uint64_t> leader_store_{0};
  // RaftTerm()'s: the highest term seen, and when the store was last asked.
  std::atomic<uint64_t> term_{0};
  std::atomic<int64_t> term_asked_ms_{0};
  DriverQueue<PendingWrite> local_{
      driver_,
      [this](raftstore::Store* s, Writes w) { ProposeLocal(s, std::move(w)); }};
  std::mutex forward_mu_;
  std::map<uint64_t, ForwardQueue> forward_;  // guarded by forward_mu_
  DriverQueue<PendingRead> reads_{
      driver_,
      [this](raftstore::Store* s, Reads r) { ReadLocal(s, std::move(r)); }};
  // Destroyed first (declared last): their threads may call into the rest.
  // The executor goes before the timer: its last tasks may still set
  // timers (a retry), while timer tasks only reach the executor through
  // the driver, which is stopped by then.
  Timer timer_;
  Executor executor_;
};

}  // namespace

std::unique_ptr<KvBackend> NewRaftKvBackend(raftstore::StoreDriver* driver,
                                            storage::Engine* kv_engine,
                                            Forwarder* forwarder,
                                            BackendOptions options) {
  return std::make_unique<RaftKvBackend>(driver, kv_engine, forwarder,
                                         std::move(options));
}

void ProposeForwarded(raftstore::StoreDriver* driver,
                      raft_cmdpb::RaftCmdRequest req,
                      std::function<void(raft_cmdpb::RaftCmdResponse)> done) {
  // Only etcd commands travel between members.
  for (const raft_cmdpb::Request& r : req.requests()) {
    if (r.cmd_type() != raft_cmdpb::Etcd) {
      done(raftstore::ErrorResponse(
          raftstore::MessageError("only etcd commands may be forwarded")));
      return;
    }
  }
  if (req.has_admin_request() || req.requests_size() == 0) {
    done(raftstore::ErrorResponse(
        raftstore::MessageError("only etcd commands may be forwarded")));
    return;
  }
  // Addressed to this member's peer (peer ids equal store ids).
  req.mutable_header()->mutable_peer()->set_id(driver->store_id());
  req.mutable_header()->mutable_peer()->set_store_id(driver->store_id());
  req.mutable_header()->set_client_id(0);
  driver->Propose(std::move(req),
                  [done = std::move(done)](raftstore::CmdResult r) {
                    done(std::move(r.response));
                  });
}

}  // namespace raftkv::server
