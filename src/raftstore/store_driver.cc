#include "raftstore/store_driver.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "raftstore/snap.h"
#include "raftstore/thread_name.h"

namespace raftkv::raftstore {

namespace {

using Clock = std::chrono::steady_clock;

// The answer to a proposal that never reached the store.
CmdResult NotProposed(uint64_t store_id,
                      const raft_cmdpb::RaftCmdRequest& req) {
  errorpb::Error e = NotLeaderError(req.header().region_id(), nullptr);
  e.set_message(absl::StrCat("store ", store_id,
                             " is stopped; the command was not proposed"));
  return CmdResult{ErrorResponse(e)};
}

// The answer to a proposal the store took but did not answer before Stop.
CmdResult Abandoned(uint64_t store_id) {
  errorpb::Error e = StaleCommandError();
  e.set_message(absl::StrCat(
      "store ", store_id,
      " stopped before the command was applied; it may still be applied: "
      "retry with the same client id and sequence"));
  return CmdResult{ErrorResponse(e)};
}

}  // namespace

StoreDriver::StoreDriver(std::unique_ptr<Store> store,
                         StoreDriverOptions options)
    : options_(options),
      store_id_(store->store_id()),
      revision_hint_(store->revision_hint()),
      store_(std::move(store)) {}

StoreDriver::~StoreDriver() { Stop(); }

absl::Status StoreDriver::Start() {
  if (options_.tick_interval <= Clock::duration::zero()) {
    return absl::InvalidArgumentError("tick interval must be positive");
  }
  std::lock_guard stop_lock(stop_mu_);
  {
    std::lock_guard l(mu_);
    if (state_ != State::kNew) {
      return absl::FailedPreconditionError(
          absl::StrCat("driver of store ", store_id_, " was already started"));
    }
    state_ = State::kRunning;
  }
  thread_ = std::thread([this] {
    SetThreadName("raftkv-store" + std::to_string(store_id_));
    Loop();
  });
  return absl::OkStatus();
}

void StoreDriver::Stop() {
  if (OnDriverThread()) {
    std::fprintf(stderr,
                 "StoreDriver::Stop called from the driver thread of store "
                 "%lu\n",
                 static_cast<unsigned long>(store_id_));
    std::abort();
  }
  std::lock_guard stop_lock(stop_mu_);
  std::vector<Event> never_started;
  {
    std::lock_guard l(mu_);
    if (state_ == State::kStopped) return;
    if (state_ == State::kNew) never_started.swap(mailbox_);
    state_ = State::kStopped;
  }
  has_work_.notify_one();
  if (thread_.joinable()) {
    thread_.join();  // the thread cancels what is left
  } else {
    CancelEvents(std::move(never_started));
    FailInFlight();
  }
}

bool StoreDriver::running() const {
  std::lock_guard l(mu_);
  return state_ == State::kRunning;
}

bool StoreDriver::Enqueue(Event ev, bool is_message, bool* full) {
  bool wake;
  {
    std::lock_guard l(mu_);
    if (state_ == State::kStopped) return false;
    if (is_message) {
      if (queued_messages_ >= options_.max_queued_messages) {
        *full = true;
        return false;
      }
      ++queued_messages_;
    }
    wake = mailbox_.empty();  // otherwise the driver was woken already
    mailbox_.push_back(std::move(ev));
  }
  if (wake) has_work_.notify_one();
  return true;
}

void StoreDriver::Propose(raft_cmdpb::RaftCmdRequest req, Callback cb) {
  bool wake;
  {
    std::lock_guard l(mu_);
    if (state_ == State::kStopped) {
      wake = false;
    } else {
      wake = mailbox_.empty();
      mailbox_.push_back(ProposalEvent{std::move(req), std::move(cb)});
      cb = nullptr;
    }
  }
  if (cb) {
    cb(NotProposed(store_id_, req));
  } else if (wake) {
    has_work_.notify_one();
  }
}

absl::Status StoreDriver::Deliver(raft_serverpb::RaftMessage msg) {
  bool full = false;
  if (Enqueue(Event(std::move(msg)), /*is_message=*/true, &full)) {
    return absl::OkStatus();
  }
  if (full) {
    return absl::ResourceExhaustedError(
        absl::StrCat("mailbox of store ", store_id_, " is full"));
  }
  return absl::UnavailableError(
      absl::StrCat("store ", store_id_, " is stopped"));
}

bool StoreDriver::Run(absl::AnyInvocable<void(Store&)> fn) {
  if (OnDriverThread()) {
    fn(*store_);
    return true;
  }
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  bool ran = false;
  Task task = [&](Store* store) {
    if (store != nullptr) fn(*store);
    std::lock_guard l(mu);
    ran = store != nullptr;
    done = true;
    cv.notify_one();  // under the lock: the waiter owns cv
  };
  bool full = false;
  if (!Enqueue(Event(std::move(task)), /*is_message=*/false, &full)) {
    return false;
  }
  std::unique_lock l(mu);
  cv.wait(l, [&] { return done; });
  return ran;
}

bool StoreDriver::Post(absl::AnyInvocable<void(Store&)> fn) {
  Task task = [fn = std::move(fn)](Store* store) mutable {
    if (store != nullptr) fn(*store);
  };
  bool full = false;
  return Enqueue(Event(std::move(task)), /*is_message=*/false, &full);
}

bool StoreDriver::PostOrCancel(absl::AnyInvocable<void(Store*)> fn) {
  bool full = false;
  return Enqueue(Event(Task(std::move(fn))), /*is_message=*/false, &full);
}

void StoreDriver::ProposeOnDriverThread(raft_cmdpb::RaftCmdRequest req,
                                        Callback cb) {
  if (!OnDriverThread()) {
    std::fprintf(stderr,
                 "StoreDriver::ProposeOnDriverThread called off the driver "
                 "thread of store %lu\n",
                 static_cast<unsigned long>(store_id_));
    std::abort();
  }
  ProposeToStore(ProposalEvent{std::move(req), std::move(cb)});
}

bool StoreDriver::OnDriverThread() const {
  return thread_id_.load(std::memory_order_acquire) ==
         std::this_thread::get_id();
}

void StoreDriver::Loop() {
  thread_id_.store(std::this_thread::get_id(), std::memory_order_release);
  const Clock::duration interval = options_.tick_interval;
  Clock::time_point next_tick = Clock::now() + interval;
  std::vector<Event> batch;
  for (;;) {
    bool stopping;
    {
      std::unique_lock l(mu_);
      // Returns at once if there is work or the tick is already due.
      has_work_.wait_until(l, next_tick, [this] { return HasWork(); });
      stopping = state_ == State::kStopped;
      batch.swap(mailbox_);
      queued_messages_ = 0;
    }
    if (stopping) break;
    for (Event& ev : batch) Handle(std::move(ev));
    batch.clear();
    Clock::time_point now = Clock::now();
    if (now >= next_tick) {
      store_->Tick();
      next_tick += interval;
      if (next_tick <= now) next_tick = now + interval;  // no burst
    }
    while (store_->HandleReadies()) {
    }
  }
  CancelEvents(std::move(batch));
  FailInFlight();
  // Thread ids are reused once a thread exits: forget ours.
  thread_id_.store(std::thread::id(), std::memory_order_release);
}

void StoreDriver::Handle(Event ev) {
  if (auto* p = std::get_if<ProposalEvent>(&ev)) {
    ProposeToStore(std::move(*p));
  } else if (auto* m = std::get_if<raft_serverpb::RaftMessage>(&ev)) {
    store_->Step(std::move(*m));
  } else {
    std::get<Task>(ev)(store_.get());
  }
}

void StoreDriver::ProposeToStore(ProposalEvent p) {
  uint64_t id = ++next_proposal_id_;
  in_flight_.emplace(id, std::move(p.cb));
  store_->Propose(std::move(p.req), [this, id](CmdResult result) {
    auto it = in_flight_.find(id);
    if (it == in_flight_.end()) return;  // already answered by Stop
    Callback cb = std::move(it->second);
    in_flight_.erase(it);
    cb(std::move(result));
  });
}

void StoreDriver::CancelEvents(std::vector<Event> events) {
  for (Event& ev : events) {
    if (auto* p = std::get_if<ProposalEvent>(&ev)) {
      p->cb(NotProposed(store_id_, p->req));
    } else if (auto* t = std::get_if<Task>(&ev)) {
      (*t)(nullptr);
    }
    // Raft messages are dropped.
  }
}

void StoreDriver::FailInFlight() {
  std::unordered_map<uint64_t, Callback> in_flight;
  in_flight.swap(in_flight_);
  for (auto& [id, cb] : in_flight) cb(Abandoned(store_id_));
}

struct WorkerScheduler::Queue {
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::deque<std::pair<std::function<void()>, std::function<void()>>> tasks;
  std::thread thread;
};

WorkerScheduler::WorkerScheduler() {
  for (int i = 0; i < 3; ++i) {
    queues_.push_back(std::make_unique<Queue>());
    Queue* q = queues_.back().get();
    q->thread = std::thread([this, q, i] {
      static const char* const kNames[] = {"raftkv-loggc", "raftkv-snapgen",
                                           "raftkv-snapapply"};
      SetThreadName(kNames[i]);
      Loop(q);
    });
  }
}

WorkerScheduler::~WorkerScheduler() { Shutdown(); }

void WorkerScheduler::Shutdown() {
  for (auto& q : queues_) {
    {
      std::lock_guard l(q->mu);
      q->stop = true;
    }
    q->cv.notify_one();
  }
  for (auto& q : queues_) {
    if (q->thread.joinable()) q->thread.join();
  }
}

void WorkerScheduler::Schedule(TaskKind kind, std::function<void()> work,
                               std::function<void()> done) {
  Queue* q = queues_[static_cast<size_t>(kind)].get();
  {
    std::lock_guard l(q->mu);
    if (q->stop) return;
    q->tasks.emplace_back(std::move(work), std::move(done));
  }
  q->cv.notify_one();
}

void WorkerScheduler::Loop(Queue* q) {
  for (;;) {
    std::pair<std::function<void()>, std::function<void()>> task;
    {
      std::unique_lock l(q->mu);
      q->cv.wait(l, [q] { return q->stop || !q->tasks.empty(); });
      if (q->stop) return;
      task = std::move(q->tasks.front());
      q->tasks.pop_front();
    }
    task.first();
    if (driver_ != nullptr) {
      driver_->Post([done = std::move(task.second)](Store&) { done(); });
    }
  }
}

InProcessTransport::~InProcessTransport() { WaitSnapshots(); }

void InProcessTransport::Register(uint64_t store_id, StoreDriver* driver,
                                  storage::SnapDir* snap_dir) {
  std::unique_lock l(mu_);
  drivers_[store_id] = driver;
  snap_dirs_[store_id] = snap_dir;
}

void InProcessTransport::Unregister(uint64_t store_id) {
  std::unique_lock l(mu_);
  drivers_.erase(store_id);
  snap_dirs_.erase(store_id);
}

void InProcessTransport::WaitSnapshots() {
  std::vector<std::thread> streams;
  {
    std::lock_guard l(streams_mu_);
    streams.swap(streams_);
  }
  for (std::thread& t : streams) t.join();
}

storage::SnapDir* InProcessTransport::SnapDirOf(uint64_t store_id) {
  std::shared_lock l(mu_);
  auto it = snap_dirs_.find(store_id);
  return it == snap_dirs_.end() ? nullptr : it->second;
}

bool InProcessTransport::Connected(uint64_t a, uint64_t b) {
  std::shared_lock l(mu_);
  return isolated_.count(a) == 0 && isolated_.count(b) == 0 &&
         drivers_.count(a) > 0 && drivers_.count(b) > 0;
}

void InProcessTransport::SendSnapshot(raft_serverpb::RaftMessage msg) {
  std::lock_guard l(streams_mu_);
  streams_.emplace_back([this, msg = std::move(msg)] {
    SetThreadName("raftkv-snapsend");
    bool ok = StreamSnapshot(msg);
    raft_serverpb::RaftMessage status = SnapStatusMessage(msg, !ok);
    std::shared_lock rl(mu_);
    auto it = drivers_.find(msg.from_peer().store_id());
    if (it != drivers_.end()) (void)it->second->Deliver(std::move(status));
  });
}

bool InProcessTransport::StreamSnapshot(const raft_serverpb::RaftMessage& msg) {
  uint64_t from = msg.from_peer().store_id();
  uint64_t to = msg.to_peer().store_id();
  storage::SnapDir* src = SnapDirOf(from);
  storage::SnapDir* dst = SnapDirOf(to);
  if (src == nullptr || dst == nullptr) return false;
  SnapshotSender sender(src, msg, chunk_size_,
                        next_stream_.fetch_add(1, std::memory_order_relaxed));
  SnapshotReceiver receiver(dst);
  raft_serverpb::SnapshotChunk chunk;
  for (;;) {
    if (!Connected(from, to)) return false;
    absl::StatusOr<bool> more = sender.Next(&chunk);
    if (!more.ok() || !*more) return false;
    absl::StatusOr<std::optional<raft_serverpb::RaftMessage>> got =
        receiver.Add(std::move(chunk));
    if (!got.ok()) return false;
    if (got->has_value()) {
      std::shared_lock l(mu_);
      if (isolated_.count(from) > 0 || isolated_.count(to) > 0) return false;
      auto it = drivers_.find(to);
      return it != drivers_.end() && it->second->Deliver(**got).ok();
    }
  }
}

void InProcessTransport::Isolate(uint64_t store_id) {
  std::unique_lock l(mu_);
  isolated_.insert(store_id);
}

void InProcessTransport::Reconnect(uint64_t store_id) {
  std::unique_lock l(mu_);
  isolated_.erase(store_id);
}

absl::Status InProcessTransport::Send(raft_serverpb::RaftMessage msg) {
  uint64_t to = msg.to_peer().store_id();
  // Held (shared) across Deliver so that Unregister waits for sends in
  // progress. Lock order: this mutex, then the driver's mailbox mutex; a
  // driver never holds its mailbox mutex while it sends.
  std::shared_lock l(mu_);
  if (isolated_.count(to) > 0 ||
      isolated_.count(msg.from_peer().store_id()) > 0) {
    return absl::UnavailableError(absl::StrCat("store ", to, " is cut off"));
  }
  auto it = drivers_.find(to);
  if (it == drivers_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown store ", to));
  }
  return it->second->Deliver(std::move(msg));
}

}  // namespace raftkv::raftstore
