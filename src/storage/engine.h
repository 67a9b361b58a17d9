// Engine: one RocksDB instance, behind the interface the raftstore uses.
//
// A store runs two engines, as in TinyKV: the raft engine holds raft logs
// and raft states and is written with synced writes (a Ready is durable
// before its messages leave); the kv engine holds the state machine (user
// data, apply states, region states) and is written without sync, because
// after a crash it is rebuilt by re-applying the raft log from its durable
// applied index. Keeping them apart lets each be tuned for its load and
// keeps log churn out of the data LSM. See keys.h for what lives where.
//
// RocksDB statuses are converted to absl::Status here and nowhere else:
// NotFound -> NotFound, Corruption -> DataLoss, InvalidArgument ->
// InvalidArgument, Busy / TryAgain / TimedOut -> Unavailable, anything else
// (IO errors) -> Internal. A failed synced write must be treated as fatal by
// the caller (durability can no longer be promised).
//
// Thread-safety: every method may be called from any thread; a WriteBatch,
// Iterator or Snapshot belongs to one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace google::protobuf {
class MessageLite;
}  // namespace google::protobuf

namespace rocksdb {
class DB;
class Env;
class Iterator;
class Snapshot;
class WriteBatch;
}  // namespace rocksdb

namespace raftkv::storage {

// An in-memory file system for engines, for the deterministic simulator:
// engines opened on it cost no real I/O, and they can be closed and reopened
// (a simulated crash) while the "disk" survives. Shared by every engine of a
// simulated cluster; must outlive them.
class InMemoryEnv {
 public:
  InMemoryEnv();
  ~InMemoryEnv();
  InMemoryEnv(const InMemoryEnv&) = delete;
  InMemoryEnv& operator=(const InMemoryEnv&) = delete;

  rocksdb::Env* env() const { return env_.get(); }

 private:
  std::unique_ptr<rocksdb::Env> env_;
};

struct EngineOptions {
  // The directory of the instance; created if missing.
  std::string path;
  // If set, the engine lives on this in-memory file system (and keeps it
  // alive while open).
  std::shared_ptr<InMemoryEnv> memory_env;
  // Test hook (crash tests and the simulator): unsynced writes skip the WAL
  // and the engine closes without flushing, so closing it loses every
  // unsynced write since the last flush, as a power cut loses writes that
  // were never synced. Synced writes are unaffected.
  bool lose_unsynced_writes_on_close = false;
};

// A batch of writes applied atomically by Engine::Write.
class WriteBatch {
 public:
  WriteBatch();
  ~WriteBatch();
  WriteBatch(WriteBatch&&) noexcept;
  WriteBatch& operator=(WriteBatch&&) noexcept;

  void Put(std::string_view key, std::string_view value);
  // Puts the serialized form of `msg`.
  void PutProto(std::string_view key, const google::protobuf::MessageLite& msg);
  void Delete(std::string_view key);
  // Deletes every key in [begin, end).
  void DeleteRange(std::string_view begin, std::string_view end);
  // Number of operations, and bytes of the batch's encoding.
  int Count() const;
  size_t DataSize() const;
  bool Empty() const { return Count() == 0; }
  void Clear();

 private:
  friend class Engine;
  std::unique_ptr<rocksdb::WriteBatch> batch_;
};

class Snapshot;

// A forward iterator over the keys in [lower, upper) of an engine or a
// snapshot. Valid() is false once exhausted or on error (see status()).
class Iterator {
 public:
  ~Iterator();
  void SeekToFirst();
  // Positions at the first key >= key (within the bounds).
  void Seek(std::string_view key);
  bool Valid() const;
  void Next();
  // Preconditions: Valid(). The views stay valid until the next move.
  std::string_view key() const;
  std::string_view value() const;
  // OK, or why iteration stopped early.
  absl::Status status() const;

  // The bounds live here: RocksDB keeps pointers to them for the iterator's
  // whole life. (Defined in engine.cc.)
  struct Bounds;

 private:
  friend class Engine;
  friend class Snapshot;
  static std::unique_ptr<Iterator> Make(rocksdb::DB* db,
                                        const rocksdb::Snapshot* snap,
                                        std::string lower, std::string upper);
  Iterator();
  std::unique_ptr<Bounds> bounds_;
  std::unique_ptr<rocksdb::Iterator> it_;
};

// A consistent read view of an engine at one point in time. Keeps the engine
// alive is NOT guaranteed: release snapshots before closing the engine.
class Snapshot {
 public:
  ~Snapshot();
  // The value of `key` at the snapshot, nullopt if absent.
  absl::StatusOr<std::optional<std::string>> Get(std::string_view key) const;
  // Parses the value of `key` into *msg. Returns false if absent. Errors:
  // DataLoss if the value does not parse.
  absl::StatusOr<bool> GetProto(std::string_view key,
                                google::protobuf::MessageLite* msg) const;
  std::unique_ptr<Iterator> NewIterator(std::string lower,
                                        std::string upper) const;
  // The engine's sequence number the snapshot sees: the engine's
  // LatestSequence() when it was taken.
  uint64_t sequence() const;

 private:
  friend class Engine;
  Snapshot(rocksdb::DB* db, const rocksdb::Snapshot* snap)
      : db_(db), snap_(snap) {}
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snap_;
};

class Engine {
 public:
  // Opens (creating if needed) the instance at options.path.
  static absl::StatusOr<std::unique_ptr<Engine>> Open(
      const EngineOptions& options);
  ~Engine();

  // The value of `key`, nullopt if absent.
  absl::StatusOr<std::optional<std::string>> Get(std::string_view key) const;
  // Parses the value of `key` into *msg. Returns false if absent. Errors:
  // DataLoss if the value does not parse.
  absl::StatusOr<bool> GetProto(std::string_view key,
                                google::protobuf::MessageLite* msg) const;
  // Applies `batch` atomically; with `sync`, durably (WAL fsynced) before it
  // returns. The batch is left unchanged.
  absl::Status Write(const WriteBatch& batch, bool sync);
  // The sequence number of the latest write: every write moves it forward,
  // so two views with the same sequence see the same data. (An SST ingest
  // may leave it unchanged: whoever ingests must not rely on it.)
  uint64_t LatestSequence() const;
  // Makes every earlier unsynced write durable.
  absl::Status SyncWal();
  // Ingests SST files written by SnapDir::WriteSstFiles on this engine's
  // file system, after checking their block checksums; the ingested keys
  // shadow older values of the same keys. With `move`, the files are moved
  // into the engine (hard-linked where the file system allows, else copied)
  // and the given paths are gone afterwards; otherwise they are copied and
  // stay. Ingestion is durable when it returns. Errors: InvalidArgument for
  // an empty list; DataLoss for a corrupt file; I/O errors.
  absl::Status IngestFiles(const std::vector<std::string>& paths,
                           bool move = false);
  // The approximate bytes the engine holds (SST files plus memtables), for
  // status reports.
  uint64_t ApproximateSize() const;
  // A consistent view of the engine now.
  std::unique_ptr<Snapshot> NewSnapshot() const;
  // Iterates the current state of [lower, upper).
  std::unique_ptr<Iterator> NewIterator(std::string lower,
                                        std::string upper) const;
  const std::string& path() const { return path_; }

 private:
  Engine(std::shared_ptr<InMemoryEnv> memory_env,
         std::unique_ptr<rocksdb::DB> db, std::string path,
         bool lose_unsynced_writes);
  // Declared before db_ so that it is destroyed after the DB is closed.
  std::shared_ptr<InMemoryEnv> memory_env_;
  std::unique_ptr<rocksdb::DB> db_;
  std::string path_;
  bool lose_unsynced_writes_;
};

}  // namespace raftkv::storage
