#include "storage/engine.h"

#include <google/protobuf/message_lite.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/perf_level.h>
#include <rocksdb/write_batch.h>

#include <utility>

#include "storage/rocks_status.h"

namespace raftkv::storage {
namespace {

rocksdb::Slice ToSlice(std::string_view s) { return {s.data(), s.size()}; }

using internal::FromRocks;

// RocksDB counts into a per-thread perf context by default (PerfLevel
// kEnableCount): every memtable key comparison, for one, bumps a counter
// through a thread-local of the shared library, which costs a
// __tls_get_addr call each (about 3% of a leader's instructions under a
// put load). Nothing here reads those counters: each thread that touches
// an engine turns them off once.
void NoPerfCounters() {
  thread_local bool off = false;
  if (off) return;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  off = true;
}

absl::StatusOr<bool> ParseInto(
    const absl::StatusOr<std::optional<std::string>>& v,
    google::protobuf::MessageLite* msg) {
  if (!v.ok()) return v.status();
  if (!v->has_value()) return false;
  if (!msg->ParseFromString(**v)) {
    return absl::DataLossError("stored value does not parse as " +
                               msg->GetTypeName());
  }
  return true;
}

}  // namespace

InMemoryEnv::InMemoryEnv()
    : env_(rocksdb::NewMemEnv(rocksdb::Env::Default())) {}
InMemoryEnv::~InMemoryEnv() = default;

// ---- WriteBatch ----------------------------------------------------------

WriteBatch::WriteBatch() : batch_(std::make_unique<rocksdb::WriteBatch>()) {}
WriteBatch::~WriteBatch() = default;
WriteBatch::WriteBatch(WriteBatch&&) noexcept = default;
WriteBatch& WriteBatch::operator=(WriteBatch&&) noexcept = default;

void WriteBatch::Put(std::string_view key, std::string_view value) {
  // A WriteBatch only fails on size overflow (> 4 GiB), a programming error.
  (void)batch_->Put(ToSlice(key), ToSlice(value));
}

void WriteBatch::PutProto(std::string_view key,
                          const google::protobuf::MessageLite& msg) {
  Put(key, msg.SerializeAsString());
}

void WriteBatch::Delete(std::string_view key) {
  (void)batch_->Delete(ToSlice(key));
}

void WriteBatch::DeleteRange(std::string_view begin, std::string_view end) {
  (void)batch_->DeleteRange(ToSlice(begin), ToSlice(end));
}

int WriteBatch::Count() const { return batch_->Count(); }
size_t WriteBatch::DataSize() const { return batch_->GetDataSize(); }
void WriteBatch::Clear() { batch_->Clear(); }

// ---- Iterator --------------------------------------------------------------

struct Iterator::Bounds {
  std::string lower, upper;
  rocksdb::Slice lower_slice, upper_slice;
};

Iterator::Iterator() = default;
Iterator::~Iterator() = default;

std::unique_ptr<Iterator> Iterator::Make(rocksdb::DB* db,
                                         const rocksdb::Snapshot* snap,
                                         std::string lower, std::string upper) {
  NoPerfCounters();
  std::unique_ptr<Iterator> it(new Iterator());
  it->bounds_ = std::make_unique<Bounds>();
  Bounds& b = *it->bounds_;
  b.lower = std::move(lower);
  b.upper = std::move(upper);
  b.lower_slice = rocksdb::Slice(b.lower);
  b.upper_slice = rocksdb::Slice(b.upper);
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  ro.iterate_lower_bound = &b.lower_slice;
  ro.iterate_upper_bound = &b.upper_slice;
  it->it_.reset(db->NewIterator(ro));
  return it;
}

void Iterator::SeekToFirst() { it_->SeekToFirst(); }
void Iterator::Seek(std::string_view key) { it_->Seek(ToSlice(key)); }
bool Iterator::Valid() const { return it_->Valid(); }
void Iterator::Next() { it_->Next(); }
std::string_view Iterator::key() const {
  rocksdb::Slice k = it_->key();
  return {k.data(), k.size()};
}
std::string_view Iterator::value() const {
  rocksdb::Slice v = it_->value();
  return {v.data(), v.size()};
}
absl::Status Iterator::status() const { return FromRocks(it_->status()); }

// ---- Snapshot --------------------------------------------------------------

Snapshot::~Snapshot() { db_->ReleaseSnapshot(snap_); }

absl::StatusOr<std::optional<std::string>> Snapshot::Get(
    std::string_view key) const {
  NoPerfCounters();
  rocksdb::ReadOptions ro;
  ro.snapshot = snap_;
  std::string value;
  rocksdb::Status s = db_->Get(ro, ToSlice(key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s);
  return std::optional<std::string>(std::move(value));
}

absl::StatusOr<bool> Snapshot::GetProto(
    std::string_view key, google::protobuf::MessageLite* msg) const {
  return ParseInto(Get(key), msg);
}

std::unique_ptr<Iterator> Snapshot::NewIterator(std::string lower,
                                                std::string upper) const {
  return Iterator::Make(db_, snap_, std::move(lower), std::move(upper));
}

uint64_t Snapshot::sequence() const { return snap_->GetSequenceNumber(); }

// ---- Engine ----------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(
    const EngineOptions& options) {
  rocksdb::Options opts;
  opts.create_if_missing = true;
  if (options.memory_env) opts.env = options.memory_env->env();
  // With the test hook, a close must not save what the WAL never saw.
  if (options.lose_unsynced_writes_on_close) {
    opts.avoid_flush_during_shutdown = true;
  }
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(opts, options.path, &db);
  if (!s.ok()) return FromRocks(s);
  return std::unique_ptr<Engine>(
      new Engine(options.memory_env, std::unique_ptr<rocksdb::DB>(db),
                 options.path, options.lose_unsynced_writes_on_close));
}

Engine::Engine(std::shared_ptr<InMemoryEnv> memory_env,
               std::unique_ptr<rocksdb::DB> db, std::string path,
               bool lose_unsynced_writes)
    : memory_env_(std::move(memory_env)),
      db_(std::move(db)),
      path_(std::move(path)),
      lose_unsynced_writes_(lose_unsynced_writes) {}

Engine::~Engine() {
  if (db_) (void)db_->Close();
}

absl::StatusOr<std::optional<std::string>> Engine::Get(
    std::string_view key) const {
  NoPerfCounters();
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), ToSlice(key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s);
  return std::optional<std::string>(std::move(value));
}

absl::StatusOr<bool> Engine::GetProto(
    std::string_view key, google::protobuf::MessageLite* msg) const {
  return ParseInto(Get(key), msg);
}

absl::Status Engine::Write(const WriteBatch& batch, bool sync) {
  NoPerfCounters();
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  wo.disableWAL = !sync && lose_unsynced_writes_;
  return FromRocks(db_->Write(wo, batch.batch_.get()));
}

absl::Status Engine::SyncWal() {
  // Under the test hook unsynced writes bypassed the WAL: persist them by
  // flushing the memtables instead.
  if (lose_unsynced_writes_) {
    rocksdb::FlushOptions fo;
    fo.wait = true;
    return FromRocks(db_->Flush(fo));
  }
  rocksdb::Status s = db_->FlushWAL(true);
  if (s.IsNotSupported()) {
    // Some file systems (the in-memory one) cannot sync a WAL file: flushing
    // the memtables persists the same writes.
    rocksdb::FlushOptions fo;
    fo.wait = true;
    s = db_->Flush(fo);
  }
  return FromRocks(s);
}

absl::Status Engine::IngestFiles(const std::vector<std::string>& paths,
                                 bool move) {
  if (paths.empty()) {
    return absl::InvalidArgumentError("IngestFiles of no file");
  }
  rocksdb::IngestExternalFileOptions o;
  // Copy unless asked to move: a moved file is hard-linked into the engine
  // (no data copied) and its given path removed, so a caller that must keep
  // the file moves a second link of it (see raftstore/snap.cc).
  o.move_files = move;
  o.failed_move_fall_back_to_copy = true;
  // The ingested keys get one sequence number above every existing write,
  // so they shadow older values and the tombstones of a preceding
  // DeleteRange of the region; snapshots taken before do not see them.
  o.snapshot_consistency = true;
  o.allow_global_seqno = true;
  // Memtable data overlapping the files (such as that DeleteRange) is
  // flushed first instead of failing the ingestion.
  o.allow_blocking_flush = true;
  // Ingest at the level that fits, newest data wins (not behind).
  o.ingest_behind = false;
  // Keep the sequence number in the MANIFEST only: the copy is not
  // rewritten, so its block checksums stay valid.
  o.write_global_seqno = false;
  // Refuse a corrupt file before the database changes.
  o.verify_checksums_before_ingest = true;
  return FromRocks(db_->IngestExternalFile(paths, o));
}

uint64_t Engine::ApproximateSize() const {
  uint64_t sst = 0;
  uint64_t mem = 0;
  (void)db_->GetIntProperty("rocksdb.total-sst-files-size", &sst);
  (void)db_->GetIntProperty("rocksdb.cur-size-all-mem-tables", &mem);
  return sst + mem;
}

uint64_t Engine::LatestSequence() const {
  return db_->GetLatestSequenceNumber();
}

std::unique_ptr<Snapshot> Engine::NewSnapshot() const {
  NoPerfCounters();
  return std::unique_ptr<Snapshot>(new Snapshot(db_.get(), db_->GetSnapshot()));
}

std::unique_ptr<Iterator> Engine::NewIterator(std::string lower,
                                              std::string upper) const {
  return Iterator::Make(db_.get(), nullptr, std::move(lower), std::move(upper));
}

}  // namespace raftkv::storage
