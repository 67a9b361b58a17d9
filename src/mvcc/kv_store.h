// The etcd v3 KV state machine: etcd 3.4's Range, Put, DeleteRange, Txn and
// Compact semantics over the kv engine, applied in raft order at apply time.
//
// Only the latest version of each key is kept (no history): a read at an
// older revision fails with "required revision has been compacted", which
// etcd clients already handle. Revisions, create/mod revisions and versions
// follow etcd exactly, so clients that compare them (optimistic locking,
// leases of locks, elections) work unchanged.
//
// Key encoding, in the kv engine under the data keys of column family
// "write" (storage::DataKey(kCfWrite, ...)), so a region snapshot carries
// everything:
//
// clang-format off
//   what              engine key                          value
//   user key k        DataKey(kCfWrite, "k" + k)          mvccpb.KeyValue (key, value,
//                                                         create_revision, mod_revision,
//                                                         version, lease)
//   current revision  DataKey(kCfWrite, "mrev")           EncodeU64(revision)
//   compact revision  DataKey(kCfWrite, "mcompact")       EncodeU64(revision)
// clang-format on
//
// A deleted key has no entry. Absent meta entries mean a fresh store:
// revision 1 (as in etcd, the first write creates revision 2) and compact
// revision 0. User keys sort in byte order under the "k" prefix, so a range
// of user keys is a range of engine keys.
//
// Errors. Every error is an absl::Status carrying etcd's gRPC message text
// and the gRPC code etcd uses, so the server maps them 1:1 (code -> gRPC
// code, message -> grpc-message, which etcd clients match on):
//   InvalidArgument  "etcdserver: key is not provided" (empty key)
//   InvalidArgument  "etcdserver: key not found" (ignore_value/ignore_lease
//                    on a missing key; also an empty RequestOp, as in etcd)
//   InvalidArgument  "etcdserver: value is provided" (ignore_value + value)
//   InvalidArgument  "etcdserver: lease is provided" (ignore_lease + lease)
//   InvalidArgument  "etcdserver: too many operations in txn request"
//   InvalidArgument  "etcdserver: duplicate key given in txn request"
//   OutOfRange       "etcdserver: mvcc: required revision has been compacted"
//   OutOfRange       "etcdserver: mvcc: required revision is a future
//                    revision"
//   NotFound         "etcdserver: requested lease not found" (any lease != 0:
//                    raftkv has no leases yet)
// Other codes (DataLoss, Internal, Unavailable, ...) come from the engine
// and are not etcd errors: the server should report them as Unavailable or
// Internal, and the raftstore should treat them as fatal at apply time.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "etcdserverpb/rpc.pb.h"
#include "mvccpb/kv.pb.h"
#include "storage/engine.h"

namespace raftkv::mvcc {

// etcd's default --max-txn-ops: the most compares, or ops of one branch, a
// txn (and, with what is left of the budget, each nested txn) may have.
inline constexpr int kMaxTxnOps = 128;

// The messages of the etcd errors above.
inline constexpr std::string_view kErrEmptyKey =
    "etcdserver: key is not provided";
inline constexpr std::string_view kErrKeyNotFound = "etcdserver: key not found";
inline constexpr std::string_view kErrValueProvided =
    "etcdserver: value is provided";
inline constexpr std::string_view kErrLeaseProvided =
    "etcdserver: lease is provided";
inline constexpr std::string_view kErrTooManyOps =
    "etcdserver: too many operations in txn request";
inline constexpr std::string_view kErrDuplicateKey =
    "etcdserver: duplicate key given in txn request";
inline constexpr std::string_view kErrCompacted =
    "etcdserver: mvcc: required revision has been compacted";
inline constexpr std::string_view kErrFutureRev =
    "etcdserver: mvcc: required revision is a future revision";
inline constexpr std::string_view kErrLeaseNotFound =
    "etcdserver: requested lease not found";

// The engine keys of the encoding above.
std::string KvKey(std::string_view user_key);
std::string RevisionKey();
std::string CompactRevisionKey();

// ---- Validation that does not depend on the store's state ----------------
//
// The server calls these before proposing (to fail fast); apply calls them
// again, so a request that reaches apply unvalidated fails the same way on
// every replica. They return OK or one of the InvalidArgument errors above.

// Empty key.
absl::Status ValidateRange(const etcdserverpb::RangeRequest& req);
// Empty key; ignore_value with a value; ignore_lease with a lease.
absl::Status ValidatePut(const etcdserverpb::PutRequest& req);
// Empty key.
absl::Status ValidateDeleteRange(const etcdserverpb::DeleteRangeRequest& req);
// More than kMaxTxnOps compares or ops in a branch (nested txns get the
// budget left by their parent: kMaxTxnOps minus the parent's largest count);
// an empty compare key; an invalid op (the checks above; an op with no
// request set is "key not found", as in etcd); overlapping writes, checked
// per branch as etcd does: a put whose key another put or a delete range of
// the same branch (nested txns included) also writes is a duplicate, except
// that the success and failure branches of one nested txn may put the same
// key. Like etcd 3.4, a delete whose range_end is "\0" (or <= key) takes
// part in no overlap (etcd's interval check sees it as empty).
absl::Status ValidateTxn(const etcdserverpb::TxnRequest& req);

// True if no op of either branch, at any depth, is a put or a delete range.
bool IsReadOnlyTxn(const etcdserverpb::TxnRequest& req);

// ---- Reads over a consistent view -----------------------------------------

struct Revisions {
  // The revision of the latest write (1 for a fresh store).
  int64_t revision = 1;
  // History before this revision is gone (0 for a fresh store).
  int64_t compact_revision = 0;
};

// The view's revisions. Errors: DataLoss for a malformed meta entry; engine
// errors.
absl::StatusOr<Revisions> ReadRevisions(const storage::Snapshot& view);
absl::StatusOr<Revisions> ReadRevisions(const storage::Engine& view);

// What a read would otherwise read back from the kv engine first: the
// current revision at one engine sequence number. The applier publishes it
// after every write (KvStore::MarkWritten), so a read of a snapshot taken
// at that sequence (storage::Snapshot::sequence(), equal only if no write
// came in between) skips the engine lookup, which costs as much as the read
// of the key itself. A published pair is always true: only the applier
// writes the revision keys, and the other way the engine changes under it
// (a region snapshot's ingest, which may not even move the sequence) clears
// the hint first (KvStore::ClearPending). Thread-safe.
class RevisionHint {
 public:
  // Records that the engine at `sequence` has current revision `revision`.
  void Publish(uint64_t sequence, int64_t revision);
  // Forgets the published pair.
  void Clear();
  // The published revision if `sequence` is the published sequence.
  std::optional<int64_t> At(uint64_t sequence) const;

 private:
  mutable std::mutex mu_;
  bool valid_ = false;
  uint64_t sequence_ = 0;
  int64_t revision_ = 0;
};

// Serves a Range on `view` with etcd's semantics: key / range_end ("\0" =
// every key >= key, empty = key alone), limit (with `more`), count (every
// key of the range, regardless of limit and filters), keys_only,
// count_only, sort_order / sort_target (ties keep key order), the min/max
// mod/create revision filters, revision (0 or the current revision: the
// latest; greater: future error; smaller: compacted error, since no history
// is kept). serializable is ignored (the caller picks the view). The header
// carries only the revision (the current one). Without sorting or filters,
// values are only decoded up to the limit (the rest of the range is still
// walked, to count it). With `hint` (may be null), the current revision
// comes from it when it knows the view's sequence. Errors: the validation
// errors, the revision errors, engine errors.
absl::StatusOr<etcdserverpb::RangeResponse> Range(
    const storage::Snapshot& view, const etcdserverpb::RangeRequest& req,
    const RevisionHint* hint = nullptr);
absl::StatusOr<etcdserverpb::RangeResponse> Range(
    const storage::Engine& view, const etcdserverpb::RangeRequest& req);

// Serves a read-only Txn (IsReadOnlyTxn) on `view`, as KvStore::Txn would;
// `hint` as for Range. Errors: FailedPrecondition if the txn writes;
// otherwise as KvStore::Txn.
absl::StatusOr<etcdserverpb::TxnResponse> ReadOnlyTxn(
    const storage::Snapshot& view, const etcdserverpb::TxnRequest& req,
    const RevisionHint* hint = nullptr);

// ---- Writes at apply time ---------------------------------------------------

// Applies etcd write requests, in raft order, to one kv engine. Each request
// reads the engine's state as left by every earlier request and adds its
// writes to a storage::WriteBatch owned by the caller, which may hold other
// commands' writes and is written by the caller later.
//
// Pending writes: the object keeps an overlay of every write it added to
// batches since the last ClearPending() (and the revisions they produced),
// and every read goes through it, so requests see the unwritten writes of
// earlier requests; the caller does NOT have to write the batch between
// requests. Once the batches are written to the engine (or dropped), the
// caller calls ClearPending(): the overlay is forgotten and the next request
// reads the revisions afresh from the engine (so an applied region snapshot
// or any other change made to the engine between batches is seen).
//
// Every request either succeeds, adding all its writes, or fails, adding
// none (the batch and the overlay are unchanged): etcd errors are detected
// before anything is written. A request that changes nothing (a failed
// request, a delete of nothing, a txn whose branch only reads) does not
// create a revision; a Put always does. Responses carry only the header's
// revision (the revision after the request); the server fills in
// cluster_id, member_id and raft_term.
//
// Not thread-safe: the apply thread owns it. The engine must outlive it.
class KvStore {
 public:
  explicit KvStore(const storage::Engine* engine);
  KvStore(const KvStore&) = delete;
  KvStore& operator=(const KvStore&) = delete;

  // Writes one key (one new revision): create_revision is kept if the key
  // exists, else it is the new revision; version is the old version + 1
  // (1 at creation). prev_kv returns the old key. ignore_value /
  // ignore_lease keep the old value / lease. Errors: validation; lease != 0
  // -> lease not found; ignore_* on a missing key -> key not found; engine
  // errors.
  absl::StatusOr<etcdserverpb::PutResponse> Put(
      const etcdserverpb::PutRequest& req, storage::WriteBatch* batch);

  // Deletes the keys of [key, range_end) ("\0" = every key >= key, empty =
  // key alone); `deleted` counts them, prev_kv returns them. Creates a
  // revision only if some key existed. Errors: validation; engine errors.
  absl::StatusOr<etcdserverpb::DeleteRangeResponse> DeleteRange(
      const etcdserverpb::DeleteRangeRequest& req, storage::WriteBatch* batch);

  // Runs a txn as etcd 3.4 does: every compare of the txn and of the nested
  // txns on the chosen branches is evaluated first, on the state before the
  // txn; then the puts' and ranges' preconditions are checked along that
  // path (errors abort the whole txn); then the ops run in order, each
  // seeing the earlier ops' writes, all writes sharing one new revision
  // (none if nothing changed). A compare over a range holds if every key of
  // the range satisfies it; over no key, it compares against an absent key
  // (version, revisions and lease 0), except that a VALUE compare fails. An
  // operand of the wrong kind for the target counts as 0 / empty. A range op
  // may read at the revision before the txn even after the txn wrote. A
  // nested txn's response has an empty header (revision 0), as in etcd.
  // Errors: validation; the ops' errors (key not found, lease not found,
  // compacted, future); engine errors.
  absl::StatusOr<etcdserverpb::TxnResponse> Txn(
      const etcdserverpb::TxnRequest& req, storage::WriteBatch* batch);

  // Records `revision` as the compact revision (nothing else to discard: no
  // history is kept); creates no revision. Errors: revision <= the compact
  // revision -> compacted; revision > the current revision -> future;
  // engine errors.
  absl::StatusOr<etcdserverpb::CompactionResponse> Compact(
      const etcdserverpb::CompactionRequest& req, storage::WriteBatch* batch);

  // Serves a Range at apply time (a read through the log), seeing the
  // pending writes. Same semantics and errors as the free Range().
  absl::StatusOr<etcdserverpb::RangeResponse> Range(
      const etcdserverpb::RangeRequest& req);

  // The revisions including pending writes. Errors: as ReadRevisions().
  absl::StatusOr<Revisions> GetRevisions();

  // Adds to `batch` the revision keys ("mrev", "mcompact") that changed
  // since they were last loaded or added: requests do not write them, so a
  // batch of many requests writes each at most once. Call it once, on the
  // last batch, before writing the batches and calling ClearPending();
  // without it the written requests' revisions are lost.
  void FinishBatch(storage::WriteBatch* batch);

  // Forgets the pending writes once every batch passed since the last call
  // has been written to the engine, FinishBatch included, and nothing else
  // changed the engine's mvcc keys: the revisions stay loaded (no engine
  // read for the next batch). Publishes the current revision at the
  // engine's latest sequence to the revision hint, if there is one; so call
  // it right after the write, on the engine's only writing thread.
  void MarkWritten();

  // Forgets the pending writes and the revisions, which the next request
  // reads afresh from the engine, and clears the revision hint: call when
  // batches were dropped, and BEFORE the engine changes underneath (a region
  // snapshot is ingested) as well as after.
  void ClearPending();

  // Where MarkWritten publishes (null: nowhere). Not owned; must outlive
  // this object.
  void set_revision_hint(RevisionHint* hint) { hint_ = hint; }

  // The overlay: user key -> serialized mvccpb.KeyValue, or nullopt for a
  // deleted key. (Public for the implementation's helpers only.)
  using Overlay =
      std::map<std::string, std::optional<std::string>, std::less<>>;

  // What a Put needs of a key's current version, or of its absence
  // (version 0). (Public for the implementation's helpers only.)
  struct KeyMeta {
    int64_t create_revision = 0;
    int64_t version = 0;
    int64_t lease = 0;
  };
  // User key -> KeyMeta of the keys looked up or written lately, as the
  // engine plus the pending writes hold them: a Put that needs neither the
  // old value nor prev_kv reads no engine key when the key is here.
  using MetaCache = absl::flat_hash_map<std::string, KeyMeta>;
  // The cache is dropped whole when it grows past this many keys.
  static constexpr size_t kMaxCachedMetas = 1 << 18;

 private:
  // Loads the revisions from the engine unless they are loaded.
  absl::Status LoadMeta();
  // Adds the writes in *txn to `batch`, moves them into the overlay and
  // takes the new revisions (FinishBatch writes them). Updates the metadata
  // cache: deleted keys become absent; written keys are dropped from it
  // unless `metas_noted` (the request's Exec cached their new metadata).
  void Commit(Overlay* txn, int64_t new_revision, int64_t new_compact,
              storage::WriteBatch* batch, bool metas_noted = false);

  const storage::Engine* engine_;
  RevisionHint* hint_ = nullptr;
  bool meta_loaded_ = false;
  Revisions revs_;
  // The revisions as the engine has them (or FinishBatch added them).
  Revisions written_revs_;
  Overlay pending_;
  MetaCache metas_;
  // Reused buffers (no per-request allocation for keys and values).
  std::string key_buf_;
};

}  // namespace raftkv::mvcc
