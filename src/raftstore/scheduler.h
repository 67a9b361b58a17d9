// Scheduler: how a store runs work off its raft loop, injected like the
// Transport so that the same store logic runs on worker threads in
// production and as events of the deterministic simulator.
//
// The store hands out three kinds of background work (TinyKV's workers):
//   kLogGc          deleting compacted raft-log entries from the raft engine
//                   (after syncing the kv engine: see Peer);
//   kSnapGenerate   writing a region snapshot's files from a consistent kv
//                   engine snapshot;
//   kSnapApply      clearing a region's range and ingesting a received
//                   snapshot's files.
// Each task is a pair: `work`, which runs off the loop and must not touch
// the Store (it may use the engines and the SnapDir, which are
// thread-safe), and `done`, which runs later on the store's loop (then a
// worker pass follows). Tasks of one kind run in the order scheduled.
//
// Failpoints. The snapshot and compaction paths call the store's
// FailpointFn (StoreConfig::failpoint) at each step where a crash matters
// (names in kFailpoints). When it returns true the code stops there at
// once, writes nothing more and does not run `done`: the simulator crashes
// the store at that point. In production the hook is empty.
#pragma once

#include <functional>
#include <string_view>

namespace raftkv::raftstore {

enum class TaskKind { kLogGc, kSnapGenerate, kSnapApply };

// Returns true to crash the store at the named point.
using FailpointFn = std::function<bool(std::string_view name)>;

// Every failpoint, in the order a snapshot or compaction passes them.
inline constexpr std::string_view kFailpoints[] = {
    // Log GC: before the kv engine is synced; after it, before the raft-log
    // entries are deleted.
    "log_gc_before_sync",
    "log_gc_before_delete",
    // Snapshot generation: after the files are written, before `done`.
    "snap_gen_after_files",
    // Snapshot apply (receiver): after the Applying state is written; after
    // the range is cleared and the files ingested; after the Normal state
    // is written (before the raft engine learns of the snapshot).
    "snap_apply_after_applying_state",
    "snap_apply_after_ingest",
    "snap_apply_after_normal_state",
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  // Runs `work` off the store's loop, then `done` on it. If the store stops
  // (or crashes) first, `done` may never run.
  virtual void Schedule(TaskKind kind, std::function<void()> work,
                        std::function<void()> done) = 0;
};

}  // namespace raftkv::raftstore
