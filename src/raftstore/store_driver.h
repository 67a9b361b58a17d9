// StoreDriver: the production driver of one Store. It owns the store and
// runs it on a thread of its own with a real clock; an InProcessTransport
// connects drivers living in one process.
//
// The driver thread loops:
//
//   1. wait until the mailbox has events, Stop is called, or the next tick
//      is due (std::chrono::steady_clock);
//   2. take EVERY queued event in one go and hand it to the store, in
//      arrival order: proposals to Store::Propose, raft messages to
//      Store::Step, tasks (Run) to their function;
//   3. call Store::Tick once if a tick is due;
//   4. call Store::HandleReadies until it returns false.
//
// Because step 2 drains the whole mailbox before step 4, all proposals and
// messages that arrived while the previous pass was busy (typically while
// it waited for the fsync) share one worker pass and thus one synced
// raft-engine write: group commit grows with the load by itself.
//
// Ticks missed while a pass was running long (a slow disk) are not made up:
// the driver ticks once and schedules the next tick a full interval later,
// so a stall never turns into a burst of ticks that would fire elections.
//
// The Store is single-threaded; the driver thread is the only thread that
// touches it while the driver runs. Store creation stays with the caller
// (Store::Open on engines the caller owns), so the caller decides where the
// engines live and can inspect or reopen them around the driver's life; the
// engines must outlive the driver.
//
// Stopping. Stop() closes the mailbox, lets the current pass finish and
// joins the thread; nothing is left hanging:
//   - a proposal still queued (never given to the store) is answered with
//     NotLeader without a leader hint: it was not proposed, try elsewhere;
//   - a proposal the store took but has not answered yet is answered with
//     StaleCommand: its outcome is unknown (the entry may still commit
//     through the other replicas), so the client retries, with the same
//     client id and sequence number to keep exactly-once;
//   - a proposal made after Stop is answered at once, on the caller's
//     thread, with NotLeader;
//   - queued raft messages are dropped (raft tolerates loss) and Deliver
//     fails with Unavailable;
//   - queued Run tasks return false without running.
// The store is not driven again: a restarted store is a new Store::Open
// and a new driver.
//
// Locking uses the standard library's mutexes rather than absl::Mutex: the
// system abseil is not built with ThreadSanitizer, which therefore cannot
// see absl::Mutex's synchronization and reports every guarded access as a
// race; std::mutex is pthread-based, which TSan understands.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "raftstore/peer.h"
#include "raftstore/scheduler.h"
#include "raftstore/store.h"
#include "raftstore/transport.h"
#include "storage/snap_files.h"
#include "storepb/raft_cmdpb.pb.h"
#include "storepb/raft_serverpb.pb.h"

namespace raftkv::raftstore {

struct StoreDriverOptions {
  // The wall-clock length of one store tick (StoreConfig's election and
  // heartbeat timeouts are counted in ticks). Must be positive.
  std::chrono::steady_clock::duration tick_interval =
      std::chrono::milliseconds(100);
  // Raft messages the mailbox holds at most; Deliver fails with
  // ResourceExhausted beyond it (the sender's raft sees an unreachable peer
  // and retries later). Proposals and tasks are not counted.
  size_t max_queued_messages = 1 << 16;
};

class StoreDriver {
 public:
  // Takes `store` (non-null, opened by the caller; its engines and
  // transport must outlive the driver). The driver does nothing until Start.
  explicit StoreDriver(std::unique_ptr<Store> store,
                       StoreDriverOptions options = {});
  // Stops the driver if it is running (see Stop), then destroys the store.
  ~StoreDriver();
  StoreDriver(const StoreDriver&) = delete;
  StoreDriver& operator=(const StoreDriver&) = delete;

  uint64_t store_id() const { return store_id_; }
  // The store's Store::revision_hint(), for any thread.
  const mvcc::RevisionHint* revision_hint() const { return revision_hint_; }

  // Starts the driver thread. Events queued before Start are handled by its
  // first pass. Errors: FailedPrecondition if the driver was already
  // started or stopped; InvalidArgument if the tick interval is not
  // positive.
  absl::Status Start();

  // Stops the driver and joins its thread, answering every pending
  // proposal (see the file comment). Idempotent; concurrent calls all
  // return once the driver has stopped. Also valid before Start (the queued
  // proposals are then answered on the calling thread). Must not be called
  // from the driver thread (a callback or a Run task): aborts.
  void Stop();

  // True between Start and Stop.
  bool running() const;

  // Proposes `req` to the store. Thread-safe and non-blocking. `cb` is
  // called exactly once, on the driver thread (or at once on the calling
  // thread if the driver is stopped); it must not block, since the whole
  // store waits for it, and must not call Stop. It may call Propose,
  // Deliver or Run.
  void Propose(raft_cmdpb::RaftCmdRequest req, Callback cb);

  // Queues a raft message from another store. Thread-safe and
  // non-blocking. Errors: Unavailable if the driver is stopped;
  // ResourceExhausted if the mailbox holds max_queued_messages messages.
  absl::Status Deliver(raft_serverpb::RaftMessage msg);

  // Runs `fn` on the driver thread between two passes and waits for it
  // (for tests and introspection: the store may only be touched there).
  // Returns false, without running `fn`, if the driver is stopped first.
  // Called from the driver thread itself, runs `fn` at once.
  bool Run(absl::AnyInvocable<void(Store&)> fn);
  // Queues `fn` to run on the driver thread before a later pass, without
  // waiting. Thread-safe. Returns false (dropping `fn`) once stopped.
  bool Post(absl::AnyInvocable<void(Store&)> fn);
  // As Post, but a task that Stop cancels after it was queued still runs,
  // with a null store, as the driver stops (so it can answer whatever it
  // carries). Returns false, without running `fn`, once stopped.
  bool PostOrCancel(absl::AnyInvocable<void(Store*)> fn);

  // Proposes `req` at once, from a task running on the driver thread (Post,
  // PostOrCancel, Run, or a proposal's callback): unlike Propose it does not
  // wait for the next pass, so a task can build one command out of many
  // requests that queued up meanwhile and have it in this pass's Ready.
  // `cb` as for Propose (Stop answers it if the store has not). Aborts if
  // called from another thread.
  void ProposeOnDriverThread(raft_cmdpb::RaftCmdRequest req, Callback cb);

 private:
  struct ProposalEvent {
    raft_cmdpb::RaftCmdRequest req;
    Callback cb;
  };
  // Called with the store, or with null when cancelled by Stop.
  using Task = absl::AnyInvocable<void(Store*)>;
  using Event = std::variant<ProposalEvent, raft_serverpb::RaftMessage, Task>;
  enum class State { kNew, kRunning, kStopped };

  void Loop();
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return state_ == State::kStopped || !mailbox_.empty();
  }
  // Enqueues `ev` unless the driver is stopped or, for a message, the
  // mailbox is full (then sets *full); returns whether it did.
  bool Enqueue(Event ev, bool is_message, bool* full);
  void Handle(Event ev);
  void ProposeToStore(ProposalEvent p);
  // Answers or cancels events that will never be handled.
  void CancelEvents(std::vector<Event> events);
  // Answers the proposals the store took but never answered.
  void FailInFlight();
  bool OnDriverThread() const;

  const StoreDriverOptions options_;
  const uint64_t store_id_;
  const mvcc::RevisionHint* const revision_hint_;

  std::mutex stop_mu_;  // serializes Start and Stop
  std::thread thread_ ABSL_GUARDED_BY(stop_mu_);
  std::atomic<std::thread::id> thread_id_{};

  mutable std::mutex mu_;
  std::condition_variable has_work_;  // signalled when HasWork() turns true
  State state_ ABSL_GUARDED_BY(mu_) = State::kNew;
  std::vector<Event> mailbox_ ABSL_GUARDED_BY(mu_);
  size_t queued_messages_ ABSL_GUARDED_BY(mu_) = 0;

  // Driver thread only (or the Stop caller before Start): the callbacks of
  // the proposals handed to the store and not answered yet, by a local id.
  uint64_t next_proposal_id_ = 0;
  std::unordered_map<uint64_t, Callback> in_flight_;

  // Declared last so that it is destroyed first: the callbacks it holds
  // refer to in_flight_.
  std::unique_ptr<Store> store_;
};

// The production Scheduler of a store: one worker thread per TaskKind
// (so log GC never waits behind a long snapshot), each running its tasks in
// order; a task's `done` is posted to the driver (StoreDriver::Post). Bind
// it to the store's driver before the driver starts. Shutting down:
// driver.Stop(), then Shutdown() (finishes the running tasks, drops the
// queued ones; their `done` never runs), then destroy the driver, then the
// scheduler: the store must not outlive it, and it must not outlive the
// driver while its threads run.
class WorkerScheduler : public Scheduler {
 public:
  WorkerScheduler();
  ~WorkerScheduler() override;
  WorkerScheduler(const WorkerScheduler&) = delete;
  WorkerScheduler& operator=(const WorkerScheduler&) = delete;

  // Where completions go. Precondition: called once, before any Schedule.
  void Bind(StoreDriver* driver) { driver_ = driver; }
  void Schedule(TaskKind kind, std::function<void()> work,
                std::function<void()> done) override;
  // Stops the threads (idempotent).
  void Shutdown();

 private:
  struct Queue;
  void Loop(Queue* q);

  StoreDriver* driver_ = nullptr;
  std::vector<std::unique_ptr<Queue>> queues_;  // by TaskKind
};

// A Transport between drivers of one process: Send queues the message in
// the target driver's mailbox (StoreDriver::Deliver) without waiting.
// Thread-safe. For tests, a store can be cut off: messages to or from it
// fail as if the network were down.
class InProcessTransport : public Transport {
 public:
  // Joins the snapshot streams still running.
  ~InProcessTransport() override;

  // Routes messages for `store_id` to `driver` (not owned), replacing any
  // earlier registration; snapshots to and from it use `snap_dir` (may be
  // null: snapshots to or from it fail). Both must stay alive until
  // Unregister and until the streams they are in end (the destructor, or
  // WaitSnapshots, joins them).
  void Register(uint64_t store_id, StoreDriver* driver,
                storage::SnapDir* snap_dir = nullptr);
  // Stops routing to `store_id`. Once it returns, no Send touches the
  // driver that was registered.
  void Unregister(uint64_t store_id);
  // Cuts `store_id` off: every message to or from it fails with
  // Unavailable until Reconnect.
  void Isolate(uint64_t store_id);
  void Reconnect(uint64_t store_id);

  // Errors: NotFound for an unregistered store; Unavailable for a cut-off
  // or stopped one; ResourceExhausted for a full mailbox. A failed send is
  // reported to raft as an unreachable peer by the caller.
  absl::Status Send(raft_serverpb::RaftMessage msg) override;
  // Streams the snapshot on a thread of its own, chunk by chunk from the
  // sender's SnapDir into the receiver's (see snap.h); a cut-off or
  // unregistered end fails the stream.
  void SendSnapshot(raft_serverpb::RaftMessage msg) override;
  // Waits for every snapshot stream started so far to end.
  void WaitSnapshots();
  // Bytes per snapshot chunk (default 1 MiB).
  void set_snapshot_chunk_size(size_t n) { chunk_size_ = n; }

 private:
  // Runs one stream; returns whether the receiver got the snapshot.
  bool StreamSnapshot(const raft_serverpb::RaftMessage& msg);
  storage::SnapDir* SnapDirOf(uint64_t store_id);
  bool Connected(uint64_t a, uint64_t b);

  size_t chunk_size_ = 1 << 20;
  std::atomic<uint64_t> next_stream_{1};
  std::mutex streams_mu_;
  std::vector<std::thread> streams_ ABSL_GUARDED_BY(streams_mu_);
  std::map<uint64_t, storage::SnapDir*> snap_dirs_ ABSL_GUARDED_BY(mu_);
  std::shared_mutex mu_;
  std::map<uint64_t, StoreDriver*> drivers_ ABSL_GUARDED_BY(mu_);
  std::set<uint64_t> isolated_ ABSL_GUARDED_BY(mu_);
};

}  // namespace raftkv::raftstore
