#include "mvcc/kv_store.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "storage/keys.h"

namespace raftkv::mvcc {
namespace {

using etcdserverpb::CompactionRequest;
using etcdserverpb::CompactionResponse;
using etcdserverpb::Compare;
using etcdserverpb::DeleteRangeRequest;
using etcdserverpb::DeleteRangeResponse;
using etcdserverpb::PutRequest;
using etcdserverpb::PutResponse;
using etcdserverpb::RangeRequest;
using etcdserverpb::RangeResponse;
using etcdserverpb::RequestOp;
using etcdserverpb::TxnRequest;
using etcdserverpb::TxnResponse;
using mvccpb::KeyValue;
using Ops = google::protobuf::RepeatedPtrField<RequestOp>;
using Overlay = KvStore::Overlay;

#define MVCC_RETURN_IF_ERROR(expr)               \
  do {                                           \
    absl::Status mvcc_status_ = (expr);          \
    if (!mvcc_status_.ok()) return mvcc_status_; \
  } while (0)

absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

absl::Status EtcdError(absl::StatusCode code, std::string_view msg) {
  return absl::Status(code, AbslView(msg));
}
absl::Status EmptyKeyError() {
  return EtcdError(absl::StatusCode::kInvalidArgument, kErrEmptyKey);
}
absl::Status KeyNotFoundError() {
  return EtcdError(absl::StatusCode::kInvalidArgument, kErrKeyNotFound);
}
absl::Status DuplicateKeyError() {
  return EtcdError(absl::StatusCode::kInvalidArgument, kErrDuplicateKey);
}
absl::Status CompactedError() {
  return EtcdError(absl::StatusCode::kOutOfRange, kErrCompacted);
}
absl::Status FutureRevError() {
  return EtcdError(absl::StatusCode::kOutOfRange, kErrFutureRev);
}
absl::Status LeaseNotFoundError() {
  return EtcdError(absl::StatusCode::kNotFound, kErrLeaseNotFound);
}
absl::Status CorruptKvError() {
  return absl::DataLossError("mvcc: malformed KeyValue in the kv engine");
}

// "write_k": the engine-key prefix of every user key, and "write_l", the
// first engine key after all of them.
const std::string& KvPrefix() {
  static const std::string* const kPrefix =
      new std::string(storage::DataKey(storage::kCfWrite, "k"));
  return *kPrefix;
}
const std::string& KvEnd() {
  static const std::string* const kEnd =
      new std::string(storage::DataKey(storage::kCfWrite, "l"));
  return *kEnd;
}
const std::string& RevisionKeyRef() {
  static const std::string* const kKey =
      new std::string(storage::DataKey(storage::kCfWrite, "mrev"));
  return *kKey;
}
const std::string& CompactRevisionKeyRef() {
  static const std::string* const kKey =
      new std::string(storage::DataKey(storage::kCfWrite, "mcompact"));
  return *kKey;
}

// A range of user keys, as etcd's (key, range_end) pair means it.
struct KeyRange {
  std::string_view start;
  // Exclusive; unused when `single` or `unbounded`.
  std::string_view end;
  // Only `start` (empty range_end).
  bool single = false;
  // Every key >= start (range_end "\0").
  bool unbounded = false;

  bool Empty() const { return !single && !unbounded && end <= start; }
};

KeyRange MakeRange(std::string_view key, std::string_view range_end) {
  KeyRange r;
  r.start = key;
  if (range_end.empty()) {
    r.single = true;
  } else if (range_end == std::string_view("\0", 1)) {
    r.unbounded = true;
  } else {
    r.end = range_end;
  }
  return r;
}

// The engine or a snapshot of it.
class BaseView {
 public:
  explicit BaseView(const storage::Engine& e) : engine_(&e) {}
  explicit BaseView(const storage::Snapshot& s) : snap_(&s) {}

  absl::StatusOr<std::optional<std::string>> Get(std::string_view k) const {
    return engine_ != nullptr ? engine_->Get(k) : snap_->Get(k);
  }
  std::unique_ptr<storage::Iterator> NewIterator(std::string lower,
                                                 std::string upper) const {
    return engine_ != nullptr
               ? engine_->NewIterator(std::move(lower), std::move(upper))
               : snap_->NewIterator(std::move(lower), std::move(upper));
  }

 private:
  const storage::Engine* engine_ = nullptr;
  const storage::Snapshot* snap_ = nullptr;
};

// Reads the revision stored under `key` into *out; leaves *out alone if the
// key is absent (a fresh store).
absl::Status ReadRevisionKey(const BaseView& view, const std::string& key,
                             int64_t* out) {
  absl::StatusOr<std::optional<std::string>> v = view.Get(key);
  if (!v.ok()) return v.status();
  if (!v->has_value()) return absl::OkStatus();
  uint64_t u = 0;
  if (!storage::DecodeU64(**v, &u)) {
    return absl::DataLossError("mvcc: malformed revision in the kv engine");
  }
  *out = static_cast<int64_t>(u);
  return absl::OkStatus();
}

absl::StatusOr<Revisions> ReadRevisionsFrom(const BaseView& view) {
  Revisions revs;
  MVCC_RETURN_IF_ERROR(ReadRevisionKey(view, RevisionKeyRef(), &revs.revision));
  MVCC_RETURN_IF_ERROR(
      ReadRevisionKey(view, CompactRevisionKeyRef(), &revs.compact_revision));
  return revs;
}

// The revisions a read needs: only the current one. No history is kept, so
// a read at any other revision fails as compacted whatever the compact
// revision is (never above the current one), and the compact revision key
// is not read (it stays 0).
absl::StatusOr<Revisions> ReadRevisionForRead(const BaseView& view,
                                              uint64_t sequence,
                                              const RevisionHint* hint) {
  Revisions revs;
  if (hint != nullptr) {
    if (std::optional<int64_t> r = hint->At(sequence)) {
      revs.revision = *r;
      return revs;
    }
  }
  MVCC_RETURN_IF_ERROR(ReadRevisionKey(view, RevisionKeyRef(), &revs.revision));
  return revs;
}

// Reads the user keys of a base view seen through up to two overlays (the
// upper one wins).
class Reader {
 public:
  Reader(BaseView base, const Overlay* lower, const Overlay* upper)
      : base_(base) {
    if (lower != nullptr) layers_[n_layers_++] = lower;
    if (upper != nullptr) layers_[n_layers_++] = upper;
  }

  // The serialized KeyValue of `key`, nullopt if absent. The view lives
  // until the next call or the next change of an overlay.
  absl::StatusOr<std::optional<std::string_view>> Find(
      std::string_view key) const {
    for (int i = n_layers_ - 1; i >= 0; --i) {
      auto it = layers_[i]->find(key);
      if (it == layers_[i]->end()) continue;
      if (!it->second.has_value()) return std::nullopt;
      return std::string_view(*it->second);
    }
    key_buf_.assign(KvPrefix());
    key_buf_.append(key);
    absl::StatusOr<std::optional<std::string>> v = base_.Get(key_buf_);
    if (!v.ok()) return v.status();
    if (!v->has_value()) return std::nullopt;
    value_buf_ = std::move(**v);
    return std::string_view(value_buf_);
  }

  // Parses the KeyValue of `key` into *kv; false if absent.
  absl::StatusOr<bool> Get(std::string_view key, KeyValue* kv) const {
    absl::StatusOr<std::optional<std::string_view>> raw = Find(key);
    if (!raw.ok()) return raw.status();
    if (!raw->has_value()) return false;
    if (!kv->ParseFromArray((*raw)->data(), static_cast<int>((*raw)->size()))) {
      return CorruptKvError();
    }
    return true;
  }

  // Calls fn(user key, serialized KeyValue) for every present key of `r`,
  // in key order, until fn returns false. The views die when fn returns.
  absl::Status Scan(
      const KeyRange& r,
      absl::FunctionRef<bool(std::string_view, std::string_view)> fn) const {
    if (r.single) {
      absl::StatusOr<std::optional<std::string_view>> raw = Find(r.start);
      if (!raw.ok()) return raw.status();
      if (raw->has_value()) fn(r.start, **raw);
      return absl::OkStatus();
    }
    if (r.Empty()) return absl::OkStatus();
    const std::string& prefix = KvPrefix();
    std::string lower = prefix;
    lower.append(r.start);
    std::string upper = r.unbounded ? KvEnd() : prefix + std::string(r.end);
    std::unique_ptr<storage::Iterator> it =
        base_.NewIterator(std::move(lower), std::move(upper));
    it->SeekToFirst();
    struct Cursor {
      Overlay::const_iterator cur, end;
    };
    Cursor cs[2];
    for (int i = 0; i < n_layers_; ++i) {
      cs[i].cur = layers_[i]->lower_bound(r.start);
      cs[i].end =
          r.unbounded ? layers_[i]->end() : layers_[i]->lower_bound(r.end);
    }
    const size_t plen = prefix.size();
    while (true) {
      // The smallest key of any source.
      bool have = false;
      std::string_view min;
      const bool base_valid = it->Valid();
      if (base_valid) {
        min = it->key().substr(plen);
        have = true;
      }
      for (int i = 0; i < n_layers_; ++i) {
        if (cs[i].cur == cs[i].end) continue;
        std::string_view k = cs[i].cur->first;
        if (!have || k < min) {
          min = k;
          have = true;
        }
      }
      if (!have) break;
      // The top-most source holding it decides.
      bool at[2] = {false, false};
      const std::optional<std::string>* top = nullptr;
      for (int i = n_layers_ - 1; i >= 0; --i) {
        if (cs[i].cur != cs[i].end && cs[i].cur->first == min) {
          at[i] = true;
          if (top == nullptr) top = &cs[i].cur->second;
        }
      }
      const bool base_at = base_valid && it->key().substr(plen) == min;
      bool more = true;
      if (top != nullptr) {
        if (top->has_value()) more = fn(min, **top);
      } else {
        more = fn(min, it->value());
      }
      if (!more) break;
      for (int i = 0; i < n_layers_; ++i) {
        if (at[i]) ++cs[i].cur;
      }
      if (base_at) it->Next();
    }
    return it->status();
  }

 private:
  BaseView base_;
  const Overlay* layers_[2] = {nullptr, nullptr};
  int n_layers_ = 0;
  mutable std::string key_buf_;
  mutable std::string value_buf_;
};

int Sign(int64_t a, int64_t b) { return a < b ? -1 : (a > b ? 1 : 0); }

// etcd's compareKV: `kv` against the compare's operand (0 / empty if the
// operand is not of the target's kind).
bool CompareKv(const Compare& c, const KeyValue& kv) {
  int result = 0;
  switch (c.target()) {
    case Compare::VALUE: {
      std::string_view v;
      if (c.target_union_case() == Compare::kValue) v = c.value();
      int r = std::string_view(kv.value()).compare(v);
      result = r < 0 ? -1 : (r > 0 ? 1 : 0);
      break;
    }
    case Compare::CREATE:
      result = Sign(kv.create_revision(),
                    c.target_union_case() == Compare::kCreateRevision
                        ? c.create_revision()
                        : 0);
      break;
    case Compare::MOD:
      result =
          Sign(kv.mod_revision(), c.target_union_case() == Compare::kModRevision
                                      ? c.mod_revision()
                                      : 0);
      break;
    case Compare::VERSION:
      result =
          Sign(kv.version(),
               c.target_union_case() == Compare::kVersion ? c.version() : 0);
      break;
    case Compare::LEASE:
      result = Sign(kv.lease(),
                    c.target_union_case() == Compare::kLease ? c.lease() : 0);
      break;
    default:
      break;
  }
  switch (c.result()) {
    case Compare::EQUAL:
      return result == 0;
    case Compare::NOT_EQUAL:
      return result != 0;
    case Compare::GREATER:
      return result > 0;
    case Compare::LESS:
      return result < 0;
    default:
      return true;
  }
}

// Runs requests on a state: a base view under the pending overlay (`before`,
// the state before the current request) and, for writes, the current
// request's own writes (`txn`, null for read-only views).
class Exec {
 public:
  // `metas` (may be null) caches what puts need of keys that are in
  // neither overlay: it is read, and filled on a miss.
  Exec(BaseView base, const Overlay* pending, Overlay* txn, Revisions revs,
       KvStore::MetaCache* metas = nullptr)
      : before_(base, pending, nullptr),
        now_(base, pending, txn),
        pending_(pending),
        txn_(txn),
        metas_(metas),
        revs_(revs) {}

  int64_t begin_rev() const { return revs_.revision; }
  // The revision the current request has reached (etcd's curRev).
  int64_t cur_rev() const {
    return revs_.revision + (txn_ != nullptr && !txn_->empty() ? 1 : 0);
  }

  absl::Status DoRange(const RangeRequest& req, RangeResponse* resp) {
    const int64_t cur = cur_rev();
    const Reader* reader = &now_;
    const int64_t rev = req.revision();
    if (rev > cur) return FutureRevError();
    if (rev > 0 && rev < cur) {
      // Only the state before the current write txn is still known.
      if (rev != begin_rev() || rev < revs_.compact_revision) {
        return CompactedError();
      }
      reader = &before_;
    }
    const bool filtered =
        req.min_mod_revision() != 0 || req.max_mod_revision() != 0 ||
        req.min_create_revision() != 0 || req.max_create_revision() != 0;
    // As etcd: sorting or filtering needs every key; otherwise decode one
    // past the limit to learn `more`.
    int64_t fetch = req.limit();
    if (req.sort_order() != RangeRequest::NONE || filtered) fetch = 0;
    if (fetch > 0 && fetch < std::numeric_limits<int64_t>::max()) ++fetch;
    auto* kvs = resp->mutable_kvs();
    int64_t count = 0;
    bool corrupt = false;
    MVCC_RETURN_IF_ERROR(
        reader->Scan(MakeRange(req.key(), req.range_end()),
                     [&](std::string_view, std::string_view raw) {
                       ++count;
                       if (req.count_only()) return true;
                       if (fetch > 0 && kvs->size() >= fetch) return true;
                       if (!kvs->Add()->ParseFromArray(
                               raw.data(), static_cast<int>(raw.size()))) {
                         corrupt = true;
                         return false;
                       }
                       return true;
                     }));
    if (corrupt) return CorruptKvError();

    if (filtered) {
      const int64_t min_mod = req.min_mod_revision();
      const int64_t max_mod = req.max_mod_revision();
      const int64_t min_create = req.min_create_revision();
      const int64_t max_create = req.max_create_revision();
      int j = 0;
      for (int i = 0; i < kvs->size(); ++i) {
        const KeyValue& kv = kvs->Get(i);
        bool drop = (max_mod != 0 && kv.mod_revision() > max_mod) ||
                    (min_mod != 0 && kv.mod_revision() < min_mod) ||
                    (max_create != 0 && kv.create_revision() > max_create) ||
                    (min_create != 0 && kv.create_revision() < min_create);
        if (drop) continue;
        if (i != j) kvs->SwapElements(i, j);
        ++j;
      }
      kvs->DeleteSubrange(j, kvs->size() - j);
    }

    RangeRequest::SortOrder order = req.sort_order();
    if (req.sort_target() != RangeRequest::KEY && order == RangeRequest::NONE) {
      order = RangeRequest::ASCEND;
    }
    if (order == RangeRequest::ASCEND || order == RangeRequest::DESCEND) {
      SortKvs(req.sort_target(), order == RangeRequest::DESCEND, kvs);
    }

    if (req.limit() > 0 && kvs->size() > req.limit()) {
      const int limit = static_cast<int>(req.limit());
      kvs->DeleteSubrange(limit, kvs->size() - limit);
      resp->set_more(true);
    }
    if (req.keys_only()) {
      for (KeyValue& kv : *kvs) kv.clear_value();
    }
    resp->set_count(count);
    resp->mutable_header()->set_revision(cur);
    return absl::OkStatus();
  }

  // The state-dependent preconditions of a put, on the current state. etcd
  // checks the lease first for a plain Put, last inside a txn.
  absl::Status CheckPut(const PutRequest& req, bool lease_first) {
    if (lease_first && req.lease() != 0) return LeaseNotFoundError();
    if (req.ignore_value() || req.ignore_lease()) {
      absl::StatusOr<std::optional<std::string_view>> found =
          now_.Find(req.key());
      if (!found.ok()) return found.status();
      if (!found->has_value()) return KeyNotFoundError();
    }
    if (req.lease() != 0) return LeaseNotFoundError();
    return absl::OkStatus();
  }

  // Precondition: CheckPut passed.
  absl::Status DoPut(const PutRequest& req, PutResponse* resp) {
    if (!req.prev_kv() && !req.ignore_value() && metas_ != nullptr) {
      return DoPutFromMeta(req, resp);
    }
    KeyValue prev;
    absl::StatusOr<bool> exists = now_.Get(req.key(), &prev);
    if (!exists.ok()) return exists.status();
    if ((req.ignore_value() || req.ignore_lease()) && !*exists) {
      return KeyNotFoundError();
    }
    const int64_t rev = begin_rev() + 1;
    KeyValue kv;
    kv.set_key(req.key());
    kv.set_value(req.ignore_value() ? prev.value() : req.value());
    kv.set_lease(req.ignore_lease() ? prev.lease() : req.lease());
    kv.set_create_revision(*exists ? prev.create_revision() : rev);
    kv.set_mod_revision(rev);
    kv.set_version(*exists ? prev.version() + 1 : 1);
    NoteMeta(kv);
    std::string bytes;
    kv.SerializeToString(&bytes);
    txn_->insert_or_assign(req.key(), std::move(bytes));
    if (req.prev_kv() && *exists) *resp->mutable_prev_kv() = std::move(prev);
    resp->mutable_header()->set_revision(rev);
    return absl::OkStatus();
  }

  // Records the new version's metadata in the cache (a put's Exec only: the
  // put always commits once it got this far).
  void NoteMeta(const KeyValue& kv) {
    if (metas_ == nullptr) return;
    metas_->insert_or_assign(
        kv.key(),
        KvStore::KeyMeta{kv.create_revision(), kv.version(), kv.lease()});
  }

  // DoPut for a put that needs neither the old value nor prev_kv: the old
  // version's create revision, version and lease come from the cache when
  // the key is in neither overlay.
  absl::Status DoPutFromMeta(const PutRequest& req, PutResponse* resp) {
    const std::string& key = req.key();
    KvStore::KeyMeta meta;
    bool in_overlay = (txn_ != nullptr && txn_->count(key) > 0) ||
                      (pending_ != nullptr && pending_->count(key) > 0);
    auto cached = in_overlay ? metas_->end() : metas_->find(key);
    if (cached != metas_->end()) {
      meta = cached->second;
    } else {
      KeyValue prev;
      absl::StatusOr<bool> exists = now_.Get(key, &prev);
      if (!exists.ok()) return exists.status();
      if (*exists) {
        meta = {prev.create_revision(), prev.version(), prev.lease()};
      }
    }
    const bool exists = meta.version > 0;
    if (req.ignore_lease() && !exists) return KeyNotFoundError();
    const int64_t rev = begin_rev() + 1;
    KeyValue kv;
    kv.set_key(key);
    kv.set_value(req.value());
    kv.set_lease(req.ignore_lease() ? meta.lease : req.lease());
    kv.set_create_revision(exists ? meta.create_revision : rev);
    kv.set_mod_revision(rev);
    kv.set_version(exists ? meta.version + 1 : 1);
    NoteMeta(kv);
    std::string bytes;
    kv.SerializeToString(&bytes);
    txn_->insert_or_assign(key, std::move(bytes));
    resp->mutable_header()->set_revision(rev);
    return absl::OkStatus();
  }

  absl::Status DoDelete(const DeleteRangeRequest& req,
                        DeleteRangeResponse* resp) {
    std::vector<std::string> keys;
    bool corrupt = false;
    MVCC_RETURN_IF_ERROR(now_.Scan(
        MakeRange(req.key(), req.range_end()),
        [&](std::string_view key, std::string_view raw) {
          if (req.prev_kv() && !resp->add_prev_kvs()->ParseFromArray(
                                   raw.data(), static_cast<int>(raw.size()))) {
            corrupt = true;
            return false;
          }
          keys.emplace_back(key);
          return true;
        }));
    if (corrupt) return CorruptKvError();
    for (std::string& k : keys)
      txn_->insert_or_assign(std::move(k), std::nullopt);
    resp->set_deleted(static_cast<int64_t>(keys.size()));
    resp->mutable_header()->set_revision(cur_rev());
    return absl::OkStatus();
  }

  // etcd's applyCompare, on the current state.
  absl::StatusOr<bool> EvalCompare(const Compare& c) {
    bool any = false;
    bool holds = true;
    bool corrupt = false;
    MVCC_RETURN_IF_ERROR(
        now_.Scan(MakeRange(c.key(), c.range_end()),
                  [&](std::string_view, std::string_view raw) {
                    any = true;
                    if (!cmp_kv_.ParseFromArray(raw.data(),
                                                static_cast<int>(raw.size()))) {
                      corrupt = true;
                      return false;
                    }
                    if (!CompareKv(c, cmp_kv_)) {
                      holds = false;
                      return false;
                    }
                    return true;
                  }));
    if (corrupt) return CorruptKvError();
    if (!any) {
      // No way to tell a missing value from an empty one: fail.
      if (c.target() == Compare::VALUE) return false;
      return CompareKv(c, KeyValue::default_instance());
    }
    return holds;
  }

  // etcd's compareToPath: the outcome of the compares of `req` and of every
  // nested txn on the branches taken, in pre-order.
  absl::Status ComputePath(const TxnRequest& req, std::vector<bool>* path) {
    bool ok = true;
    for (const Compare& c : req.compare()) {
      absl::StatusOr<bool> holds = EvalCompare(c);
      if (!holds.ok()) return holds.status();
      if (!*holds) {
        ok = false;
        break;
      }
    }
    path->push_back(ok);
    for (const RequestOp& op : ok ? req.success() : req.failure()) {
      if (op.request_case() == RequestOp::kRequestTxn) {
        MVCC_RETURN_IF_ERROR(ComputePath(op.request_txn(), path));
      }
    }
    return absl::OkStatus();
  }

  // Checks the puts (`puts`) or the ranges (`!puts`) along `path`.
  absl::Status CheckPath(const TxnRequest& req, const std::vector<bool>& path,
                         size_t* pos, bool puts) {
    const bool ok = path[(*pos)++];
    for (const RequestOp& op : ok ? req.success() : req.failure()) {
      switch (op.request_case()) {
        case RequestOp::kRequestTxn:
          MVCC_RETURN_IF_ERROR(CheckPath(op.request_txn(), path, pos, puts));
          break;
        case RequestOp::kRequestPut:
          if (puts) {
            MVCC_RETURN_IF_ERROR(
                CheckPut(op.request_put(), /*lease_first=*/false));
          }
          break;
        case RequestOp::kRequestRange:
          if (!puts) MVCC_RETURN_IF_ERROR(CheckTxnRange(op.request_range()));
          break;
        default:
          break;
      }
    }
    return absl::OkStatus();
  }

  absl::Status ApplyPath(const TxnRequest& req, const std::vector<bool>& path,
                         size_t* pos, TxnResponse* resp) {
    const bool ok = path[(*pos)++];
    resp->set_succeeded(ok);
    const Ops& ops = ok ? req.success() : req.failure();
    resp->mutable_responses()->Reserve(ops.size());
    for (const RequestOp& op : ops) {
      etcdserverpb::ResponseOp* r = resp->add_responses();
      switch (op.request_case()) {
        case RequestOp::kRequestRange:
          MVCC_RETURN_IF_ERROR(
              DoRange(op.request_range(), r->mutable_response_range()));
          break;
        case RequestOp::kRequestPut:
          MVCC_RETURN_IF_ERROR(
              DoPut(op.request_put(), r->mutable_response_put()));
          break;
        case RequestOp::kRequestDeleteRange:
          MVCC_RETURN_IF_ERROR(DoDelete(op.request_delete_range(),
                                        r->mutable_response_delete_range()));
          break;
        case RequestOp::kRequestTxn: {
          TxnResponse* t = r->mutable_response_txn();
          t->mutable_header();  // Present but empty, as in etcd.
          MVCC_RETURN_IF_ERROR(ApplyPath(op.request_txn(), path, pos, t));
          break;
        }
        default:
          break;  // Rejected by validation.
      }
    }
    return absl::OkStatus();
  }

  // Precondition: ValidateTxn(req) passed; txn_ != nullptr unless the txn
  // is read-only.
  absl::StatusOr<TxnResponse> RunTxn(const TxnRequest& req) {
    std::vector<bool> path;
    MVCC_RETURN_IF_ERROR(ComputePath(req, &path));
    size_t pos = 0;
    if (!IsReadOnlyTxn(req)) {
      MVCC_RETURN_IF_ERROR(CheckPath(req, path, &pos, /*puts=*/true));
      pos = 0;
    }
    MVCC_RETURN_IF_ERROR(CheckPath(req, path, &pos, /*puts=*/false));
    TxnResponse resp;
    pos = 0;
    MVCC_RETURN_IF_ERROR(ApplyPath(req, path, &pos, &resp));
    resp.mutable_header()->set_revision(cur_rev());
    return resp;
  }

 private:
  // etcd's checkRequestRange, before the txn writes (plus: no history).
  absl::Status CheckTxnRange(const RangeRequest& req) const {
    const int64_t rev = req.revision();
    if (rev <= 0) return absl::OkStatus();
    if (rev > begin_rev()) return FutureRevError();
    if (rev < begin_rev() || rev < revs_.compact_revision) {
      return CompactedError();
    }
    return absl::OkStatus();
  }

  static void SortKvs(RangeRequest::SortTarget target, bool descend,
                      google::protobuf::RepeatedPtrField<KeyValue>* kvs) {
    auto by = [target](const KeyValue* a, const KeyValue* b) -> bool {
      switch (target) {
        case RangeRequest::KEY:
          return a->key() < b->key();
        case RangeRequest::VERSION:
          return a->version() < b->version();
        case RangeRequest::CREATE:
          return a->create_revision() < b->create_revision();
        case RangeRequest::MOD:
          return a->mod_revision() < b->mod_revision();
        case RangeRequest::VALUE:
          return a->value() < b->value();
        default:
          return false;
      }
    };
    if (target == RangeRequest::KEY && !descend) return;  // Already so.
    if (descend) {
      std::stable_sort(
          kvs->pointer_begin(), kvs->pointer_end(),
          [&by](const KeyValue* a, const KeyValue* b) { return by(b, a); });
    } else {
      std::stable_sort(kvs->pointer_begin(), kvs->pointer_end(), by);
    }
  }

  Reader before_;
  Reader now_;
  const Overlay* pending_;
  Overlay* txn_;
  KvStore::MetaCache* metas_;
  Revisions revs_;
  KeyValue cmp_kv_;
};

// ---- Validation helpers ----------------------------------------------------

absl::Status ValidateOp(const RequestOp& op, int max_ops);

absl::Status ValidateTxnOps(const TxnRequest& req, int max_ops) {
  const int opc =
      std::max({req.compare_size(), req.success_size(), req.failure_size()});
  if (opc > max_ops) {
    return EtcdError(absl::StatusCode::kInvalidArgument, kErrTooManyOps);
  }
  for (const Compare& c : req.compare()) {
    if (c.key().empty()) return EmptyKeyError();
  }
  for (const Ops* ops : {&req.success(), &req.failure()}) {
    for (const RequestOp& op : *ops) {
      MVCC_RETURN_IF_ERROR(ValidateOp(op, max_ops - opc));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateOp(const RequestOp& op, int max_ops) {
  switch (op.request_case()) {
    case RequestOp::kRequestRange:
      return ValidateRange(op.request_range());
    case RequestOp::kRequestPut:
      return ValidatePut(op.request_put());
    case RequestOp::kRequestDeleteRange:
      return ValidateDeleteRange(op.request_delete_range());
    case RequestOp::kRequestTxn:
      return ValidateTxnOps(op.request_txn(), max_ops);
    default:
      return KeyNotFoundError();  // etcd's answer to an empty op.
  }
}

// A delete range, as etcd's overlap check sees it: [begin, end), or the
// single key `begin`.
struct DelInterval {
  std::string_view begin;
  std::string_view end;
  bool point;
};

bool Covered(const std::vector<DelInterval>& dels, std::string_view k) {
  for (const DelInterval& d : dels) {
    if (d.point ? k == d.begin : (d.begin <= k && k < d.end)) return true;
  }
  return false;
}

using KeySet = absl::flat_hash_set<std::string_view>;

// etcd's checkIntervals: collects the puts and deletes of `ops` (nested
// txns included) into *puts / *dels, failing on a forbidden overlap.
absl::Status CheckIntervals(const Ops& ops, KeySet* puts,
                            std::vector<DelInterval>* dels) {
  for (const RequestOp& op : ops) {
    if (op.request_case() != RequestOp::kRequestDeleteRange) continue;
    const DeleteRangeRequest& d = op.request_delete_range();
    dels->push_back({d.key(), d.range_end(), d.range_end().empty()});
  }
  for (const RequestOp& op : ops) {
    if (op.request_case() != RequestOp::kRequestTxn) continue;
    KeySet then_puts, else_puts;
    std::vector<DelInterval> then_dels, else_dels;
    MVCC_RETURN_IF_ERROR(
        CheckIntervals(op.request_txn().success(), &then_puts, &then_dels));
    MVCC_RETURN_IF_ERROR(
        CheckIntervals(op.request_txn().failure(), &else_puts, &else_dels));
    for (std::string_view k : then_puts) {
      if (puts->contains(k) || Covered(*dels, k)) return DuplicateKeyError();
      puts->insert(k);
    }
    for (std::string_view k : else_puts) {
      // The two branches exclude each other: sharing a key is fine.
      if (puts->contains(k) && !then_puts.contains(k)) {
        return DuplicateKeyError();
      }
      if (Covered(*dels, k)) return DuplicateKeyError();
      puts->insert(k);
    }
    dels->insert(dels->end(), then_dels.begin(), then_dels.end());
    dels->insert(dels->end(), else_dels.begin(), else_dels.end());
  }
  for (const RequestOp& op : ops) {
    if (op.request_case() != RequestOp::kRequestPut) continue;
    std::string_view k = op.request_put().key();
    if (puts->contains(k) || Covered(*dels, k)) return DuplicateKeyError();
    puts->insert(k);
  }
  return absl::OkStatus();
}

bool OpsReadOnly(const Ops& ops) {
  for (const RequestOp& op : ops) {
    switch (op.request_case()) {
      case RequestOp::kRequestPut:
      case RequestOp::kRequestDeleteRange:
        return false;
      case RequestOp::kRequestTxn:
        if (!IsReadOnlyTxn(op.request_txn())) return false;
        break;
      default:
        break;
    }
  }
  return true;
}

template <typename View>
absl::StatusOr<RangeResponse> RangeOn(const View& view, const RangeRequest& req,
                                      uint64_t sequence,
                                      const RevisionHint* hint) {
  MVCC_RETURN_IF_ERROR(ValidateRange(req));
  BaseView base(view);
  absl::StatusOr<Revisions> revs = ReadRevisionForRead(base, sequence, hint);
  if (!revs.ok()) return revs.status();
  Exec exec(base, nullptr, nullptr, *revs);
  RangeResponse resp;
  MVCC_RETURN_IF_ERROR(exec.DoRange(req, &resp));
  return resp;
}

}  // namespace

std::string KvKey(std::string_view user_key) {
  std::string k = KvPrefix();
  k.append(user_key);
  return k;
}
std::string RevisionKey() { return RevisionKeyRef(); }
std::string CompactRevisionKey() { return CompactRevisionKeyRef(); }

absl::Status ValidateRange(const RangeRequest& req) {
  if (req.key().empty()) return EmptyKeyError();
  return absl::OkStatus();
}

absl::Status ValidatePut(const PutRequest& req) {
  if (req.key().empty()) return EmptyKeyError();
  if (req.ignore_value() && !req.value().empty()) {
    return EtcdError(absl::StatusCode::kInvalidArgument, kErrValueProvided);
  }
  if (req.ignore_lease() && req.lease() != 0) {
    return EtcdError(absl::StatusCode::kInvalidArgument, kErrLeaseProvided);
  }
  return absl::OkStatus();
}

absl::Status ValidateDeleteRange(const DeleteRangeRequest& req) {
  if (req.key().empty()) return EmptyKeyError();
  return absl::OkStatus();
}

absl::Status ValidateTxn(const TxnRequest& req) {
  MVCC_RETURN_IF_ERROR(ValidateTxnOps(req, kMaxTxnOps));
  for (const Ops* ops : {&req.success(), &req.failure()}) {
    KeySet puts;
    std::vector<DelInterval> dels;
    MVCC_RETURN_IF_ERROR(CheckIntervals(*ops, &puts, &dels));
  }
  return absl::OkStatus();
}

bool IsReadOnlyTxn(const TxnRequest& req) {
  return OpsReadOnly(req.success()) && OpsReadOnly(req.failure());
}

absl::StatusOr<Revisions> ReadRevisions(const storage::Snapshot& view) {
  return ReadRevisionsFrom(BaseView(view));
}
absl::StatusOr<Revisions> ReadRevisions(const storage::Engine& view) {
  return ReadRevisionsFrom(BaseView(view));
}

absl::StatusOr<RangeResponse> Range(const storage::Snapshot& view,
                                    const RangeRequest& req,
                                    const RevisionHint* hint) {
  return RangeOn(view, req, view.sequence(), hint);
}
absl::StatusOr<RangeResponse> Range(const storage::Engine& view,
                                    const RangeRequest& req) {
  return RangeOn(view, req, 0, nullptr);
}

absl::StatusOr<TxnResponse> ReadOnlyTxn(const storage::Snapshot& view,
                                        const TxnRequest& req,
                                        const RevisionHint* hint) {
  MVCC_RETURN_IF_ERROR(ValidateTxn(req));
  if (!IsReadOnlyTxn(req)) {
    return absl::FailedPreconditionError("mvcc: the txn writes");
  }
  BaseView base(view);
  absl::StatusOr<Revisions> revs =
      ReadRevisionForRead(base, view.sequence(), hint);
  if (!revs.ok()) return revs.status();
  Exec exec(base, nullptr, nullptr, *revs);
  return exec.RunTxn(req);
}

// ---- KvStore ----------------------------------------------------------------

KvStore::KvStore(const storage::Engine* engine) : engine_(engine) {}

absl::Status KvStore::LoadMeta() {
  if (meta_loaded_) return absl::OkStatus();
  absl::StatusOr<Revisions> revs = ReadRevisionsFrom(BaseView(*engine_));
  if (!revs.ok()) return revs.status();
  revs_ = *revs;
  written_revs_ = *revs;
  meta_loaded_ = true;
  return absl::OkStatus();
}

void KvStore::Commit(Overlay* txn, int64_t new_revision, int64_t new_compact,
                     storage::WriteBatch* batch, bool metas_noted) {
  if (metas_.size() + txn->size() > kMaxCachedMetas) metas_.clear();
  for (const auto& [key, value] : *txn) {
    key_buf_.assign(KvPrefix());
    key_buf_.append(key);
    if (value.has_value()) {
      batch->Put(key_buf_, *value);
      // A put's Exec cached the new metadata already; a txn's did not.
      if (!metas_noted) metas_.erase(key);
    } else {
      batch->Delete(key_buf_);
      metas_.insert_or_assign(key, KeyMeta{});  // absent: version 0
    }
  }
  // Move the nodes (no copies, no allocations for new keys).
  while (!txn->empty()) {
    auto r = pending_.insert(txn->extract(txn->begin()));
    if (!r.inserted) r.position->second = std::move(r.node.mapped());
  }
  revs_.revision = new_revision;
  revs_.compact_revision = new_compact;
}

absl::StatusOr<PutResponse> KvStore::Put(const PutRequest& req,
                                         storage::WriteBatch* batch) {
  MVCC_RETURN_IF_ERROR(ValidatePut(req));
  MVCC_RETURN_IF_ERROR(LoadMeta());
  Overlay txn;
  if (metas_.size() >= kMaxCachedMetas) metas_.clear();
  Exec exec(BaseView(*engine_), &pending_, &txn, revs_, &metas_);
  MVCC_RETURN_IF_ERROR(exec.CheckPut(req, /*lease_first=*/true));
  PutResponse resp;
  MVCC_RETURN_IF_ERROR(exec.DoPut(req, &resp));
  Commit(&txn, revs_.revision + 1, revs_.compact_revision, batch,
         /*metas_noted=*/true);
  return resp;
}

absl::StatusOr<DeleteRangeResponse> KvStore::DeleteRange(
    const DeleteRangeRequest& req, storage::WriteBatch* batch) {
  MVCC_RETURN_IF_ERROR(ValidateDeleteRange(req));
  MVCC_RETURN_IF_ERROR(LoadMeta());
  Overlay txn;
  Exec exec(BaseView(*engine_), &pending_, &txn, revs_);
  DeleteRangeResponse resp;
  MVCC_RETURN_IF_ERROR(exec.DoDelete(req, &resp));
  if (!txn.empty()) {
    Commit(&txn, revs_.revision + 1, revs_.compact_revision, batch);
  }
  return resp;
}

absl::StatusOr<TxnResponse> KvStore::Txn(const TxnRequest& req,
                                         storage::WriteBatch* batch) {
  MVCC_RETURN_IF_ERROR(ValidateTxn(req));
  MVCC_RETURN_IF_ERROR(LoadMeta());
  Overlay txn;
  Exec exec(BaseView(*engine_), &pending_, &txn, revs_);
  absl::StatusOr<TxnResponse> resp = exec.RunTxn(req);
  if (!resp.ok()) return resp;
  if (!txn.empty()) {
    Commit(&txn, revs_.revision + 1, revs_.compact_revision, batch);
  }
  return resp;
}

absl::StatusOr<CompactionResponse> KvStore::Compact(
    const CompactionRequest& req, storage::WriteBatch* batch) {
  MVCC_RETURN_IF_ERROR(LoadMeta());
  const int64_t rev = req.revision();
  if (rev <= revs_.compact_revision) return CompactedError();
  if (rev > revs_.revision) return FutureRevError();
  Overlay none;
  Commit(&none, revs_.revision, rev, batch);
  CompactionResponse resp;
  resp.mutable_header()->set_revision(revs_.revision);
  return resp;
}

absl::StatusOr<RangeResponse> KvStore::Range(const RangeRequest& req) {
  MVCC_RETURN_IF_ERROR(ValidateRange(req));
  MVCC_RETURN_IF_ERROR(LoadMeta());
  Exec exec(BaseView(*engine_), &pending_, nullptr, revs_);
  RangeResponse resp;
  MVCC_RETURN_IF_ERROR(exec.DoRange(req, &resp));
  return resp;
}

absl::StatusOr<Revisions> KvStore::GetRevisions() {
  MVCC_RETURN_IF_ERROR(LoadMeta());
  return revs_;
}

void KvStore::FinishBatch(storage::WriteBatch* batch) {
  if (!meta_loaded_) return;  // nothing happened since the last load
  if (revs_.revision != written_revs_.revision) {
    batch->Put(RevisionKeyRef(),
               storage::EncodeU64(static_cast<uint64_t>(revs_.revision)));
  }
  if (revs_.compact_revision != written_revs_.compact_revision) {
    batch->Put(
        CompactRevisionKeyRef(),
        storage::EncodeU64(static_cast<uint64_t>(revs_.compact_revision)));
  }
  written_revs_ = revs_;
}

void KvStore::MarkWritten() {
  pending_.clear();
  // Only a loaded revision is the engine's (after ClearPending it is not).
  if (hint_ != nullptr && meta_loaded_) {
    hint_->Publish(engine_->LatestSequence(), revs_.revision);
  }
}

void KvStore::ClearPending() {
  pending_.clear();
  metas_.clear();
  meta_loaded_ = false;
  if (hint_ != nullptr) hint_->Clear();
}

// ---- RevisionHint -----------------------------------------------------------

void RevisionHint::Publish(uint64_t sequence, int64_t revision) {
  std::lock_guard l(mu_);
  valid_ = true;
  sequence_ = sequence;
  revision_ = revision;
}

void RevisionHint::Clear() {
  std::lock_guard l(mu_);
  valid_ = false;
}

std::optional<int64_t> RevisionHint::At(uint64_t sequence) const {
  std::lock_guard l(mu_);
  if (!valid_ || sequence != sequence_) return std::nullopt;
  return revision_;
}

}  // namespace raftkv::mvcc
