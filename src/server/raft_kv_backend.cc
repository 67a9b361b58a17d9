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
    {
      std::lock_guard l(mu_);
      tasks_.emplace(when, std::move(fn));
    }
    cv_.notify_one();
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
    done_(std::move(v));
  }
  bool fired() const { return fired_.load(); }

 private:
  Done<T> done_;
  std::atomic<bool> fired_{false};
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
          /*serializable=*/false, std::move(done),
          [shared](const storage::Snapshot& view) {
            return mvcc::ReadOnlyTxn(view, *shared);
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
    auto shared = std::make_shared<etcdserverpb::RangeRequest>(std::move(req));
    Read<etcdserverpb::RangeResponse>(serializable, std::move(done),
                                      [shared](const storage::Snapshot& view) {
                                        return mvcc::Range(view, *shared);
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

  // A write through the log: propose locally; forward to the leader's
  // member when this one does not lead; retry while no leader is known.
  template <typename T>
  void Write(EtcdRequest er, Done<T> done,
             std::function<T(EtcdResponse&)> pick) {
    auto once = std::make_shared<Once<T>>(std::move(done));
    Clock::time_point deadline = Deadline();
    timer_.At(deadline,
              [once] { (*once)(absl::UnavailableError(kErrTimeout)); });
    RaftCmdRequest req = Command(driver_->store_id());
    auto* r = req.add_requests();
    r->set_cmd_type(raft_cmdpb::Etcd);
    *r->mutable_etcd() = std::move(er);
    auto answer = [once, pick](const RaftCmdResponse& resp) {
      EtcdResponse out =
          resp.responses_size() > 0 ? resp.responses(0).etcd() : EtcdResponse();
      if (out.error_code() != 0) return (*once)(EtcdError(out));
      (*once)(pick(out));
    };
    TryWrite(
        std::make_shared<RaftCmdRequest>(std::move(req)), deadline,
        std::move(answer), [once] { return once->fired(); },
        [once](absl::Status s) { (*once)(std::move(s)); });
  }

  using Answer = std::function<void(const RaftCmdResponse&)>;
  using Fail = std::function<void(absl::Status)>;

  void TryWrite(std::shared_ptr<RaftCmdRequest> req, Clock::time_point deadline,
                Answer answer, std::function<bool()> finished, Fail fail) {
    if (finished() || Clock::now() >= deadline) return;
    RaftCmdRequest local = *req;
    driver_->Propose(std::move(local), [=, this](raftstore::CmdResult res) {
      // Off the store's thread: answering a gRPC call costs it time.
      executor_.Submit([=, this, r = std::move(res)] {
        HandleProposed(req, deadline, answer, finished, fail, r);
      });
    });
  }

  void HandleProposed(const std::shared_ptr<RaftCmdRequest>& req,
                      Clock::time_point deadline, const Answer& answer,
                      const std::function<bool()>& finished, const Fail& fail,
                      const raftstore::CmdResult& r) {
    {
      const errorpb::Error& err = r.response.header().error();
      if (!r.response.header().has_error()) return answer(r.response);
      if (err.has_stale_command()) {
        return fail(absl::UnavailableError(kErrLeaderChanged));
      }
      if (!err.has_not_leader()) {
        return fail(absl::UnavailableError(
            absl::StrCat("etcdserver: ", err.message())));
      }
      uint64_t leader = err.not_leader().leader().store_id();
      if (leader == 0 || leader == driver_->store_id() ||
          forwarder_ == nullptr) {
        // No leader yet (an election is on): ask again shortly.
        timer_.At(Clock::now() + kRetryDelay, [=, this] {
          TryWrite(req, deadline, answer, finished, fail);
        });
        return;
      }
      RaftCmdRequest fwd = *req;
      fwd.mutable_header()->mutable_peer()->set_id(leader);
      fwd.mutable_header()->mutable_peer()->set_store_id(leader);
      int left_ms = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                Clock::now())
              .count());
      if (left_ms <= 0) return;
      forwarder_->Forward(
          leader, std::move(fwd), left_ms,
          [=, this](absl::StatusOr<RaftCmdResponse> resp) {
            if (!resp.ok()) {
              // The leader's member is unreachable: maybe it is gone and a
              // new leader is being elected.
              timer_.At(Clock::now() + kRetryDelay, [=, this] {
                TryWrite(req, deadline, answer, finished, fail);
              });
              return;
            }
            const errorpb::Error& e = resp->header().error();
            if (!resp->header().has_error()) return answer(*resp);
            if (e.has_stale_command()) {
              return fail(absl::UnavailableError(kErrLeaderChanged));
            }
            if (e.has_not_leader()) {
              // Leadership moved on: not proposed there, so try again.
              timer_.At(Clock::now() + kRetryDelay, [=, this] {
                TryWrite(req, deadline, answer, finished, fail);
              });
              return;
            }
            fail(absl::UnavailableError(
                absl::StrCat("etcdserver: ", e.message())));
          });
    }
  }

  // A read: linearizable ones wait for a ReadIndex round and the apply of
  // its index, then read the view the store hands back; serializable ones
  // read a view of the kv engine now. The read itself runs on executor_.
  template <typename T>
  void Read(bool serializable, Done<T> done,
            std::function<absl::StatusOr<T>(const storage::Snapshot&)> read) {
    auto once = std::make_shared<Once<T>>(std::move(done));
    if (serializable) {
      executor_.Submit([this, once, read] {
        std::unique_ptr<storage::Snapshot> view = kv_->NewSnapshot();
        (*once)(read(*view));
      });
      return;
    }
    Clock::time_point deadline = Deadline();
    timer_.At(deadline,
              [once] { (*once)(absl::UnavailableError(kErrTimeout)); });
    TryRead<T>(once, deadline, std::move(read));
  }

  template <typename T>
  void TryRead(
      std::shared_ptr<Once<T>> once, Clock::time_point deadline,
      std::function<absl::StatusOr<T>(const storage::Snapshot&)> read) {
    if (once->fired() || Clock::now() >= deadline) return;
    RaftCmdRequest req = Command(driver_->store_id());
    bool posted = driver_->Post([=, this](raftstore::Store& store) {
      store.ReadIndex(req, [=, this](raftstore::CmdResult r) {
        if (r.response.header().has_error() || r.snap == nullptr) {
          // No leader, or the round was lost: a read can simply retry.
          timer_.At(Clock::now() + kRetryDelay,
                    [=, this] { TryRead<T>(once, deadline, read); });
          return;
        }
        std::shared_ptr<storage::Snapshot> view = std::move(r.snap);
        executor_.Submit([once, view, read] { (*once)(read(*view)); });
      });
    });
    if (!posted) (*once)(absl::UnavailableError("etcdserver: server stopped"));
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
  // Destroyed first (declared last): their threads may call into the rest.
  Executor executor_;
  Timer timer_;
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
