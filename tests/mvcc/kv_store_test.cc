#include "mvcc/kv_store.h"

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/engine.h"
#include "storage/keys.h"

namespace raftkv::mvcc {
namespace {

using etcdserverpb::CompactionRequest;
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

const std::string kAll("\0", 1);  // range_end: every key >= key.

// ---- Request builders
// --------------------------------------------------------

PutRequest PutReq(const std::string& k, const std::string& v) {
  PutRequest r;
  r.set_key(k);
  r.set_value(v);
  return r;
}
DeleteRangeRequest DelReq(const std::string& k, const std::string& end = "") {
  DeleteRangeRequest r;
  r.set_key(k);
  r.set_range_end(end);
  return r;
}
RangeRequest RangeReq(const std::string& k, const std::string& end = "") {
  RangeRequest r;
  r.set_key(k);
  r.set_range_end(end);
  return r;
}
RequestOp OpPut(const std::string& k, const std::string& v) {
  RequestOp op;
  *op.mutable_request_put() = PutReq(k, v);
  return op;
}
RequestOp OpDel(const std::string& k, const std::string& end = "") {
  RequestOp op;
  *op.mutable_request_delete_range() = DelReq(k, end);
  return op;
}
RequestOp OpRange(const std::string& k, const std::string& end = "") {
  RequestOp op;
  *op.mutable_request_range() = RangeReq(k, end);
  return op;
}
RequestOp OpTxn(const TxnRequest& t) {
  RequestOp op;
  *op.mutable_request_txn() = t;
  return op;
}
Compare CmpInt(const std::string& key, Compare::CompareTarget target,
               Compare::CompareResult result, int64_t operand) {
  Compare c;
  c.set_key(key);
  c.set_target(target);
  c.set_result(result);
  switch (target) {
    case Compare::VERSION:
      c.set_version(operand);
      break;
    case Compare::CREATE:
      c.set_create_revision(operand);
      break;
    case Compare::MOD:
      c.set_mod_revision(operand);
      break;
    case Compare::LEASE:
      c.set_lease(operand);
      break;
    default:
      ADD_FAILURE() << "not an integer target";
  }
  return c;
}
Compare CmpValue(const std::string& key, Compare::CompareResult result,
                 const std::string& operand) {
  Compare c;
  c.set_key(key);
  c.set_target(Compare::VALUE);
  c.set_result(result);
  c.set_value(operand);
  return c;
}
TxnRequest Txn(std::vector<Compare> cmps, std::vector<RequestOp> success,
               std::vector<RequestOp> failure = {}) {
  TxnRequest t;
  for (auto& c : cmps) *t.add_compare() = c;
  for (auto& o : success) *t.add_success() = o;
  for (auto& o : failure) *t.add_failure() = o;
  return t;
}

// "key=value c<create> m<mod> v<version>".
std::string Str(const KeyValue& kv) {
  return absl::StrCat(kv.key(), "=", kv.value(), " c", kv.create_revision(),
                      " m", kv.mod_revision(), " v", kv.version());
}
std::vector<std::string> Strs(
    const google::protobuf::RepeatedPtrField<KeyValue>& kvs) {
  std::vector<std::string> out;
  for (const KeyValue& kv : kvs) out.push_back(Str(kv));
  return out;
}
std::vector<std::string> Keys(const RangeResponse& r) {
  std::vector<std::string> out;
  for (const KeyValue& kv : r.kvs()) out.push_back(kv.key());
  return out;
}

void ExpectError(const absl::Status& s, absl::StatusCode code,
                 std::string_view msg) {
  EXPECT_EQ(s.code(), code) << s;
  EXPECT_EQ(std::string(s.message()), std::string(msg));
}

class KvStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_ = std::make_shared<storage::InMemoryEnv>();
    Open();
  }

  void Open() {
    store_.reset();
    engine_.reset();
    auto e = storage::Engine::Open({"/mvcc-test/kv", env_});
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
    store_ = std::make_unique<KvStore>(engine_.get());
  }

  // Writes the pending batch and tells the store, as the raftstore does
  // (MarkWritten: the revisions and the key metadata cache stay).
  void Flush() {
    store_->FinishBatch(&batch_);
    ASSERT_TRUE(engine_->Write(batch_, /*sync=*/false).ok());
    batch_.Clear();
    store_->MarkWritten();
  }

  PutResponse MustPut(const PutRequest& req) {
    auto r = store_->Put(req, &batch_);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : PutResponse();
  }
  PutResponse MustPut(const std::string& k, const std::string& v) {
    return MustPut(PutReq(k, v));
  }
  // Compacts at `revision` and writes the batch.
  void MustCompactAndFlush(int64_t revision) {
    CompactionRequest c;
    c.set_revision(revision);
    ASSERT_TRUE(store_->Compact(c, &batch_).ok());
    Flush();
  }
  DeleteRangeResponse MustDel(const DeleteRangeRequest& req) {
    auto r = store_->DeleteRange(req, &batch_);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : DeleteRangeResponse();
  }
  RangeResponse MustRange(const RangeRequest& req) {
    auto r = store_->Range(req);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : RangeResponse();
  }
  TxnResponse MustTxn(const TxnRequest& req) {
    auto r = store_->Txn(req, &batch_);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : TxnResponse();
  }
  int64_t Rev() {
    auto r = store_->GetRevisions();
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->revision : -1;
  }
  std::vector<std::string> All() {
    return Strs(MustRange(RangeReq(std::string("\0", 1), kAll)).kvs());
  }

  std::shared_ptr<storage::InMemoryEnv> env_;
  std::unique_ptr<storage::Engine> engine_;
  std::unique_ptr<KvStore> store_;
  storage::WriteBatch batch_;
};

// ---- Basics
// -------------------------------------------------------------------

TEST_F(KvStoreTest, FreshStoreIsAtRevisionOneAndEmpty) {
  EXPECT_EQ(Rev(), 1);
  auto revs = ReadRevisions(*engine_);
  ASSERT_TRUE(revs.ok());
  EXPECT_EQ(revs->revision, 1);
  EXPECT_EQ(revs->compact_revision, 0);
  RangeResponse r = MustRange(RangeReq("a"));
  EXPECT_EQ(r.count(), 0);
  EXPECT_EQ(r.kvs_size(), 0);
  EXPECT_EQ(r.header().revision(), 1);
}

TEST_F(KvStoreTest, PutTracksCreateModAndVersion) {
  EXPECT_EQ(MustPut("a", "1").header().revision(), 2);
  EXPECT_EQ(MustPut("a", "2").header().revision(), 3);
  EXPECT_EQ(MustPut("b", "x").header().revision(), 4);
  EXPECT_EQ(All(), (std::vector<std::string>{"a=2 c2 m3 v2", "b=x c4 m4 v1"}));
  DeleteRangeResponse d = MustDel(DelReq("a"));
  EXPECT_EQ(d.deleted(), 1);
  EXPECT_EQ(d.header().revision(), 5);
  // Re-creation restarts the version and takes a new create revision.
  EXPECT_EQ(MustPut("a", "3").header().revision(), 6);
  EXPECT_EQ(All(), (std::vector<std::string>{"a=3 c6 m6 v1", "b=x c4 m4 v1"}));
  EXPECT_EQ(Rev(), 6);
}

TEST_F(KvStoreTest, PutSameValueStillCreatesARevision) {
  MustPut("a", "1");
  EXPECT_EQ(MustPut("a", "1").header().revision(), 3);
  EXPECT_EQ(All(), (std::vector<std::string>{"a=1 c2 m3 v2"}));
}

TEST_F(KvStoreTest, PutPrevKv) {
  PutRequest first = PutReq("a", "1");
  first.set_prev_kv(true);
  EXPECT_FALSE(MustPut(first).has_prev_kv());  // Did not exist.
  PutRequest second = PutReq("a", "2");
  second.set_prev_kv(true);
  PutResponse r = MustPut(second);
  ASSERT_TRUE(r.has_prev_kv());
  EXPECT_EQ(Str(r.prev_kv()), "a=1 c2 m2 v1");
  // Without the flag, no prev_kv.
  EXPECT_FALSE(MustPut("a", "3").has_prev_kv());
}

TEST_F(KvStoreTest, PutIgnoreValueAndIgnoreLease) {
  PutRequest iv;
  iv.set_key("a");
  iv.set_ignore_value(true);
  ExpectError(store_->Put(iv, &batch_).status(),
              absl::StatusCode::kInvalidArgument, "etcdserver: key not found");
  PutRequest il;
  il.set_key("a");
  il.set_value("new");
  il.set_ignore_lease(true);
  ExpectError(store_->Put(il, &batch_).status(),
              absl::StatusCode::kInvalidArgument, "etcdserver: key not found");
  EXPECT_TRUE(batch_.Empty());
  EXPECT_EQ(Rev(), 1);  // Failed puts create no revision.

  MustPut("a", "old");                            // rev 2
  EXPECT_EQ(MustPut(iv).header().revision(), 3);  // keeps "old"
  EXPECT_EQ(All(), (std::vector<std::string>{"a=old c2 m3 v2"}));
  EXPECT_EQ(MustPut(il).header().revision(), 4);  // new value, lease 0
  EXPECT_EQ(All(), (std::vector<std::string>{"a=new c2 m4 v3"}));
}

TEST_F(KvStoreTest, PutWithLeaseFailsLeaseNotFound) {
  PutRequest p = PutReq("a", "1");
  p.set_lease(42);
  ExpectError(store_->Put(p, &batch_).status(), absl::StatusCode::kNotFound,
              "etcdserver: requested lease not found");
  // The lease is checked before ignore_value for a plain put, as in etcd.
  PutRequest q;
  q.set_key("missing");
  q.set_ignore_value(true);
  q.set_lease(7);
  ExpectError(store_->Put(q, &batch_).status(), absl::StatusCode::kNotFound,
              "etcdserver: requested lease not found");
  EXPECT_TRUE(batch_.Empty());
  EXPECT_EQ(Rev(), 1);
}

TEST_F(KvStoreTest, ValidationErrors) {
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  ExpectError(ValidatePut(PutReq("", "v")), kInvalid,
              "etcdserver: key is not provided");
  ExpectError(ValidateRange(RangeReq("")), kInvalid,
              "etcdserver: key is not provided");
  ExpectError(ValidateDeleteRange(DelReq("")), kInvalid,
              "etcdserver: key is not provided");
  PutRequest iv = PutReq("a", "v");
  iv.set_ignore_value(true);
  ExpectError(ValidatePut(iv), kInvalid, "etcdserver: value is provided");
  PutRequest il = PutReq("a", "v");
  il.set_ignore_lease(true);
  il.set_lease(3);
  ExpectError(ValidatePut(il), kInvalid, "etcdserver: lease is provided");
  EXPECT_TRUE(ValidatePut(PutReq("a", "v")).ok());
  EXPECT_TRUE(ValidateRange(RangeReq("a")).ok());

  // Apply runs the same validation.
  ExpectError(store_->Put(PutReq("", "v"), &batch_).status(), kInvalid,
              "etcdserver: key is not provided");
  ExpectError(store_->Put(iv, &batch_).status(), kInvalid,
              "etcdserver: value is provided");
  ExpectError(store_->DeleteRange(DelReq(""), &batch_).status(), kInvalid,
              "etcdserver: key is not provided");
  ExpectError(store_->Range(RangeReq("")).status(), kInvalid,
              "etcdserver: key is not provided");
  ExpectError(Range(*engine_, RangeReq("")).status(), kInvalid,
              "etcdserver: key is not provided");
  EXPECT_TRUE(batch_.Empty());
}

// ---- DeleteRange
// ----------------------------------------------------------------

TEST_F(KvStoreTest, DeleteRangeCountsAndReturnsPrevKvs) {
  for (std::string k : {"a", "b", "c", "d"}) MustPut(k, "v" + k);  // rev 2..5
  DeleteRangeRequest d = DelReq("b", "d");
  d.set_prev_kv(true);
  DeleteRangeResponse r = MustDel(d);
  EXPECT_EQ(r.deleted(), 2);
  EXPECT_EQ(Strs(r.prev_kvs()),
            (std::vector<std::string>{"b=vb c3 m3 v1", "c=vc c4 m4 v1"}));
  EXPECT_EQ(r.header().revision(), 6);
  EXPECT_EQ(All(),
            (std::vector<std::string>{"a=va c2 m2 v1", "d=vd c5 m5 v1"}));

  // Without prev_kv: only the count.
  DeleteRangeResponse single = MustDel(DelReq("a"));
  EXPECT_EQ(single.deleted(), 1);
  EXPECT_EQ(single.prev_kvs_size(), 0);
  EXPECT_EQ(single.header().revision(), 7);
}

TEST_F(KvStoreTest, DeleteOfNothingCreatesNoRevision) {
  MustPut("a", "1");  // rev 2
  DeleteRangeResponse r = MustDel(DelReq("zz"));
  EXPECT_EQ(r.deleted(), 0);
  EXPECT_EQ(r.header().revision(), 2);
  // range_end <= key: an empty range.
  EXPECT_EQ(MustDel(DelReq("b", "a")).deleted(), 0);
  EXPECT_EQ(MustDel(DelReq("a", "a")).deleted(), 0);
  EXPECT_EQ(Rev(), 2);
  EXPECT_EQ(MustPut("b", "1").header().revision(), 3);
}

TEST_F(KvStoreTest, DeleteFromKeyToTheEnd) {
  for (std::string k : {"a", "b", "c"}) MustPut(k, "1");
  DeleteRangeResponse r = MustDel(DelReq("b", kAll));
  EXPECT_EQ(r.deleted(), 2);
  EXPECT_EQ(All(), (std::vector<std::string>{"a=1 c2 m2 v1"}));
  // Every key: key "\0" with range_end "\0" (etcdctl del "" --prefix).
  EXPECT_EQ(MustDel(DelReq(std::string("\0", 1), kAll)).deleted(), 1);
  EXPECT_TRUE(All().empty());
}

// ---- Range
// ----------------------------------------------------------------------

class RangeTest : public KvStoreTest {
 protected:
  void SetUp() override {
    KvStoreTest::SetUp();
    // a: c2 m2 v1 "3" | b: c3 m9 v3 "1" | c: c4 m4 v1 "5" | d: c5 m8 v2 "2"
    // e: c6 m6 v1 "4"
    MustPut("a", "3");  // 2
    MustPut("b", "x");  // 3
    MustPut("c", "5");  // 4
    MustPut("d", "y");  // 5
    MustPut("e", "4");  // 6
    MustPut("b", "z");  // 7
    MustPut("d", "2");  // 8
    MustPut("b", "1");  // 9
  }
};

TEST_F(RangeTest, SingleKeyPrefixAndAll) {
  EXPECT_EQ(Strs(MustRange(RangeReq("b")).kvs()),
            (std::vector<std::string>{"b=1 c3 m9 v3"}));
  EXPECT_EQ(MustRange(RangeReq("bb")).count(), 0);
  RangeResponse r = MustRange(RangeReq("b", "d"));
  EXPECT_EQ(Keys(r), (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(r.count(), 2);
  EXPECT_FALSE(r.more());
  EXPECT_EQ(r.header().revision(), 9);
  EXPECT_EQ(Keys(MustRange(RangeReq("c", kAll))),
            (std::vector<std::string>{"c", "d", "e"}));
  EXPECT_EQ(MustRange(RangeReq("d", "b")).count(), 0);
}

TEST_F(RangeTest, LimitMoreAndCount) {
  RangeRequest q = RangeReq("a", kAll);
  q.set_limit(2);
  RangeResponse r = MustRange(q);
  EXPECT_EQ(Keys(r), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(r.more());
  EXPECT_EQ(r.count(), 5);  // The whole range, not the limit.
  q.set_limit(5);
  r = MustRange(q);
  EXPECT_EQ(r.kvs_size(), 5);
  EXPECT_FALSE(r.more());
  q.set_limit(-1);  // Non-positive: no limit.
  EXPECT_EQ(MustRange(q).kvs_size(), 5);
}

TEST_F(RangeTest, CountOnlyAndKeysOnly) {
  RangeRequest q = RangeReq("b", "e");
  q.set_count_only(true);
  RangeResponse r = MustRange(q);
  EXPECT_EQ(r.count(), 3);
  EXPECT_EQ(r.kvs_size(), 0);
  EXPECT_FALSE(r.more());
  q.set_count_only(false);
  q.set_keys_only(true);
  r = MustRange(q);
  EXPECT_EQ(Strs(r.kvs()), (std::vector<std::string>{
                               "b= c3 m9 v3", "c= c4 m4 v1", "d= c5 m8 v2"}));
}

TEST_F(RangeTest, Sorting) {
  RangeRequest q = RangeReq("a", kAll);
  q.set_sort_order(RangeRequest::DESCEND);
  EXPECT_EQ(Keys(MustRange(q)),
            (std::vector<std::string>{"e", "d", "c", "b", "a"}));
  q.set_sort_target(RangeRequest::VALUE);  // values 3 1 5 2 4
  EXPECT_EQ(Keys(MustRange(q)),
            (std::vector<std::string>{"c", "e", "a", "d", "b"}));
  q.set_sort_order(RangeRequest::ASCEND);
  EXPECT_EQ(Keys(MustRange(q)),
            (std::vector<std::string>{"b", "d", "a", "e", "c"}));
  q.set_sort_target(RangeRequest::MOD);  // mods 2 9 4 8 6
  EXPECT_EQ(Keys(MustRange(q)),
            (std::vector<std::string>{"a", "c", "e", "d", "b"}));
  q.set_sort_target(RangeRequest::CREATE);
  q.set_sort_order(RangeRequest::DESCEND);
  EXPECT_EQ(Keys(MustRange(q)),
            (std::vector<std::string>{"e", "d", "c", "b", "a"}));
  // Versions 1 3 1 2 1: ties keep key order.
  q.set_sort_target(RangeRequest::VERSION);
  EXPECT_EQ(Keys(MustRange(q)),
            (std::vector<std::string>{"b", "d", "a", "c", "e"}));
  // A non-key target without an order sorts ascending.
  q.set_sort_order(RangeRequest::NONE);
  EXPECT_EQ(Keys(MustRange(q)),
            (std::vector<std::string>{"a", "c", "e", "d", "b"}));
  // With a limit, sorting happens before the cut.
  q.set_sort_order(RangeRequest::DESCEND);
  q.set_limit(2);
  RangeResponse r = MustRange(q);
  EXPECT_EQ(Keys(r), (std::vector<std::string>{"b", "d"}));
  EXPECT_TRUE(r.more());
  EXPECT_EQ(r.count(), 5);
}

TEST_F(RangeTest, NonKeyTargetWithoutOrderSortsOnlyTheFetchedKeys) {
  // etcd fetches limit+1 keys in key order when sort_order is NONE, then
  // sorts those: a(v1) b(v3) c(v1) -> a c b -> cut to a c.
  RangeRequest q = RangeReq("a", kAll);
  q.set_sort_target(RangeRequest::VERSION);
  q.set_limit(2);
  RangeResponse r = MustRange(q);
  EXPECT_EQ(Keys(r), (std::vector<std::string>{"a", "c"}));
  EXPECT_TRUE(r.more());
}

TEST_F(RangeTest, RevisionFilters) {
  RangeRequest q = RangeReq("a", kAll);
  q.set_min_mod_revision(5);  // mods 2 9 4 8 6
  EXPECT_EQ(Keys(MustRange(q)), (std::vector<std::string>{"b", "d", "e"}));
  q.set_max_mod_revision(8);
  EXPECT_EQ(Keys(MustRange(q)), (std::vector<std::string>{"d", "e"}));
  q.set_min_mod_revision(0);
  q.set_max_mod_revision(0);
  q.set_min_create_revision(3);  // creates 2 3 4 5 6
  q.set_max_create_revision(5);
  RangeResponse r = MustRange(q);
  EXPECT_EQ(Keys(r), (std::vector<std::string>{"b", "c", "d"}));
  EXPECT_EQ(r.count(), 5);  // Count ignores the filters.
  q.set_limit(2);
  r = MustRange(q);
  EXPECT_EQ(Keys(r), (std::vector<std::string>{"b", "c"}));
  EXPECT_TRUE(r.more());
  q.set_limit(3);
  EXPECT_FALSE(MustRange(q).more());
}

TEST_F(RangeTest, RevisionArgument) {
  RangeRequest q = RangeReq("a", kAll);
  q.set_revision(9);  // The current revision.
  EXPECT_EQ(MustRange(q).count(), 5);
  q.set_revision(-3);  // Non-positive: latest.
  EXPECT_EQ(MustRange(q).count(), 5);
  q.set_revision(10);
  ExpectError(store_->Range(q).status(), absl::StatusCode::kOutOfRange,
              "etcdserver: mvcc: required revision is a future revision");
  q.set_revision(8);
  ExpectError(store_->Range(q).status(), absl::StatusCode::kOutOfRange,
              "etcdserver: mvcc: required revision has been compacted");
  q.set_revision(1);
  ExpectError(store_->Range(q).status(), absl::StatusCode::kOutOfRange,
              "etcdserver: mvcc: required revision has been compacted");
}

TEST_F(KvStoreTest, KeysWithAnyBytesSortBytewise) {
  const std::string a0("a\0", 2);
  const std::string aff("a\xff", 2);
  MustPut("b", "1");
  MustPut(aff, "1");
  MustPut("a", "1");
  MustPut(a0, "1");
  Flush();
  MustPut("a\x80", "1");  // Pending, merged with the engine's keys.
  RangeResponse r = MustRange(RangeReq("a", kAll));
  EXPECT_EQ(Keys(r), (std::vector<std::string>{"a", a0, "a\x80", aff, "b"}));
  EXPECT_EQ(Keys(MustRange(RangeReq(a0, "a\x81"))),
            (std::vector<std::string>{a0, "a\x80"}));
}

// ---- Txn
// ------------------------------------------------------------------------

TEST_F(KvStoreTest, TxnCreatesOneRevisionForAllItsWrites) {
  MustPut("c", "old");  // 2
  TxnResponse r = MustTxn(Txn(
      {}, {OpPut("a", "1"), OpPut("b", "2"), OpDel("c"), OpRange("a", "z")}));
  EXPECT_TRUE(r.succeeded());
  EXPECT_EQ(r.header().revision(), 3);
  ASSERT_EQ(r.responses_size(), 4);
  EXPECT_EQ(r.responses(0).response_put().header().revision(), 3);
  EXPECT_EQ(r.responses(1).response_put().header().revision(), 3);
  EXPECT_EQ(r.responses(2).response_delete_range().deleted(), 1);
  EXPECT_EQ(r.responses(2).response_delete_range().header().revision(), 3);
  // The range sees the txn's own writes.
  const RangeResponse& rr = r.responses(3).response_range();
  EXPECT_EQ(Strs(rr.kvs()),
            (std::vector<std::string>{"a=1 c3 m3 v1", "b=2 c3 m3 v1"}));
  EXPECT_EQ(rr.header().revision(), 3);
  EXPECT_EQ(Rev(), 3);
  EXPECT_EQ(All(), (std::vector<std::string>{"a=1 c3 m3 v1", "b=2 c3 m3 v1"}));
}

TEST_F(KvStoreTest, TxnThatChangesNothingCreatesNoRevision) {
  MustPut("a", "1");  // 2
  TxnResponse r = MustTxn(Txn({}, {OpRange("a"), OpDel("zz")}));
  EXPECT_EQ(r.header().revision(), 2);
  EXPECT_EQ(r.responses(0).response_range().header().revision(), 2);
  EXPECT_EQ(r.responses(1).response_delete_range().header().revision(), 2);
  EXPECT_EQ(r.responses(1).response_delete_range().deleted(), 0);
  // An empty txn.
  EXPECT_EQ(MustTxn(TxnRequest()).header().revision(), 2);
  EXPECT_EQ(Rev(), 2);
  EXPECT_EQ(batch_.Count(), 1);  // Only the first put's key.
}

TEST_F(KvStoreTest, TxnDeleteBeforeAnyChangeReportsTheOldRevision) {
  MustPut("a", "1");  // 2
  // A delete of nothing reports the current revision; once the txn has
  // changed something, later ops report the new one.
  TxnResponse r = MustTxn(
      Txn({}, {OpDel("zz"), OpPut("b", "1"), OpDel("zz"), OpRange("a")}));
  EXPECT_EQ(r.responses(0).response_delete_range().header().revision(), 2);
  EXPECT_EQ(r.responses(2).response_delete_range().header().revision(), 3);
  EXPECT_EQ(r.responses(3).response_range().header().revision(), 3);
  EXPECT_EQ(r.header().revision(), 3);
}

TEST_F(KvStoreTest, TxnBranches) {
  MustPut("k", "v1");  // 2
  MustPut("k", "v2");  // 3
  TxnRequest t = Txn({CmpValue("k", Compare::EQUAL, "v2")}, {OpPut("ok", "1")},
                     {OpPut("fail", "1")});
  TxnResponse r = MustTxn(t);
  EXPECT_TRUE(r.succeeded());
  EXPECT_TRUE(r.responses(0).has_response_put());
  t = Txn({CmpValue("k", Compare::EQUAL, "v1")}, {OpPut("ok", "2")},
          {OpPut("fail", "2"), OpRange("k")});
  r = MustTxn(t);
  EXPECT_FALSE(r.succeeded());
  ASSERT_EQ(r.responses_size(), 2);
  EXPECT_TRUE(r.responses(0).has_response_put());
  EXPECT_EQ(r.responses(1).response_range().kvs(0).value(), "v2");
  EXPECT_EQ(All(), (std::vector<std::string>{"fail=2 c5 m5 v1", "k=v2 c2 m3 v2",
                                             "ok=1 c4 m4 v1"}));
}

TEST_F(KvStoreTest, TxnCompareTargetsAndResults) {
  MustPut("k", "v1");  // 2
  MustPut("x", "x");   // 3
  MustPut("k", "v2");  // 4: k is c2 m4 v2 "v2"
  struct Case {
    Compare cmp;
    bool want;
  };
  const std::vector<Case> cases = {
      {CmpInt("k", Compare::VERSION, Compare::EQUAL, 2), true},
      {CmpInt("k", Compare::VERSION, Compare::EQUAL, 1), false},
      {CmpInt("k", Compare::VERSION, Compare::GREATER, 1), true},
      {CmpInt("k", Compare::VERSION, Compare::GREATER, 2), false},
      {CmpInt("k", Compare::VERSION, Compare::LESS, 3), true},
      {CmpInt("k", Compare::VERSION, Compare::LESS, 2), false},
      {CmpInt("k", Compare::VERSION, Compare::NOT_EQUAL, 2), false},
      {CmpInt("k", Compare::VERSION, Compare::NOT_EQUAL, 0), true},
      {CmpInt("k", Compare::CREATE, Compare::EQUAL, 2), true},
      {CmpInt("k", Compare::CREATE, Compare::LESS, 2), false},
      {CmpInt("k", Compare::MOD, Compare::EQUAL, 4), true},
      {CmpInt("k", Compare::MOD, Compare::GREATER, 3), true},
      {CmpInt("k", Compare::MOD, Compare::LESS, 4), false},
      {CmpInt("k", Compare::LEASE, Compare::EQUAL, 0), true},
      {CmpInt("k", Compare::LEASE, Compare::GREATER, 0), false},
      {CmpValue("k", Compare::EQUAL, "v2"), true},
      {CmpValue("k", Compare::GREATER, "v1"), true},
      {CmpValue("k", Compare::GREATER, "v3"), false},
      {CmpValue("k", Compare::LESS, "w"), true},
      {CmpValue("k", Compare::NOT_EQUAL, "v2"), false},
      // A missing key: version/create/mod/lease 0; a value compare fails.
      {CmpInt("nope", Compare::VERSION, Compare::EQUAL, 0), true},
      {CmpInt("nope", Compare::CREATE, Compare::EQUAL, 0), true},
      {CmpInt("nope", Compare::MOD, Compare::LESS, 1), true},
      {CmpValue("nope", Compare::NOT_EQUAL, "a"), false},
      {CmpValue("nope", Compare::EQUAL, ""), false},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(
        absl::StrCat("case ", i, ": ", cases[i].cmp.ShortDebugString()));
    TxnResponse r = MustTxn(Txn({cases[i].cmp}, {}));
    EXPECT_EQ(r.succeeded(), cases[i].want);
  }
  // Every compare must hold.
  EXPECT_FALSE(MustTxn(Txn({CmpInt("k", Compare::VERSION, Compare::EQUAL, 2),
                            CmpValue("k", Compare::EQUAL, "v1")},
                           {}))
                   .succeeded());
  EXPECT_EQ(Rev(), 4);
}

TEST_F(KvStoreTest, TxnCompareOperandOfTheWrongKindCountsAsZero) {
  MustPut("k", "v");  // 2
  Compare c;
  c.set_key("k");
  c.set_target(Compare::VERSION);
  c.set_result(Compare::GREATER);
  c.set_create_revision(5);  // Not a version: the operand is 0, 1 > 0.
  EXPECT_TRUE(MustTxn(Txn({c}, {})).succeeded());
  Compare v;
  v.set_key("k");
  v.set_target(Compare::VALUE);
  v.set_result(Compare::GREATER);
  v.set_version(100);  // Not a value: the operand is "", "v" > "".
  EXPECT_TRUE(MustTxn(Txn({v}, {})).succeeded());
}

TEST_F(KvStoreTest, TxnCompareOverARange) {
  MustPut("a1", "x");  // 2
  MustPut("a2", "x");  // 3
  MustPut("b", "y");   // 4
  Compare c = CmpValue("a", Compare::EQUAL, "x");
  c.set_range_end("b");
  EXPECT_TRUE(MustTxn(Txn({c}, {})).succeeded());
  c.set_range_end(kAll);  // Includes b = "y".
  EXPECT_FALSE(MustTxn(Txn({c}, {})).succeeded());
  Compare m = CmpInt("a", Compare::MOD, Compare::LESS, 3);
  m.set_range_end("b");  // a2 has mod 3.
  EXPECT_FALSE(MustTxn(Txn({m}, {})).succeeded());
  // A range with no key compares against an absent key.
  Compare none = CmpInt("c", Compare::VERSION, Compare::EQUAL, 0);
  none.set_range_end("d");
  EXPECT_TRUE(MustTxn(Txn({none}, {})).succeeded());
  Compare none_value = CmpValue("c", Compare::NOT_EQUAL, "z");
  none_value.set_range_end("d");
  EXPECT_FALSE(MustTxn(Txn({none_value}, {})).succeeded());
}

TEST_F(KvStoreTest, NestedTxnComparesSeeTheStateBeforeTheTxn) {
  // The outer txn puts "a"; the nested compare (a absent) still holds,
  // since etcd evaluates every compare before running any op.
  TxnRequest inner =
      Txn({CmpInt("a", Compare::VERSION, Compare::EQUAL, 0)},
          {OpPut("inner-ok", "1"), OpRange("a")}, {OpPut("inner-fail", "1")});
  TxnResponse r = MustTxn(Txn({}, {OpPut("a", "1"), OpTxn(inner)}));
  EXPECT_TRUE(r.succeeded());
  ASSERT_EQ(r.responses_size(), 2);
  const TxnResponse& nested = r.responses(1).response_txn();
  EXPECT_TRUE(nested.succeeded());
  // The nested response's header is present but carries no revision.
  EXPECT_TRUE(nested.has_header());
  EXPECT_EQ(nested.header().revision(), 0);
  ASSERT_EQ(nested.responses_size(), 2);
  EXPECT_EQ(nested.responses(0).response_put().header().revision(), 2);
  // The nested range sees the outer put (ops do see earlier writes).
  EXPECT_EQ(Strs(nested.responses(1).response_range().kvs()),
            (std::vector<std::string>{"a=1 c2 m2 v1"}));
  EXPECT_EQ(r.header().revision(), 2);
  EXPECT_EQ(All(),
            (std::vector<std::string>{"a=1 c2 m2 v1", "inner-ok=1 c2 m2 v1"}));
}

TEST_F(KvStoreTest, NestedTxnsOnBothBranchesFollowTheirPath) {
  MustPut("x", "1");  // 2
  TxnRequest inner1 = Txn({CmpValue("x", Compare::EQUAL, "2")},
                          {OpPut("p", "s1")}, {OpPut("p", "f1")});
  TxnRequest inner2 = Txn({CmpValue("x", Compare::EQUAL, "1")},
                          {OpPut("q", "s2")}, {OpPut("q", "f2")});
  TxnResponse r = MustTxn(Txn({}, {OpTxn(inner1), OpTxn(inner2)}));
  EXPECT_FALSE(r.responses(0).response_txn().succeeded());
  EXPECT_TRUE(r.responses(1).response_txn().succeeded());
  EXPECT_EQ(All(), (std::vector<std::string>{"p=f1 c3 m3 v1", "q=s2 c3 m3 v1",
                                             "x=1 c2 m2 v1"}));
}

TEST_F(KvStoreTest, TxnDeletesSeeEarlierWritesOfTheTxn) {
  MustPut("a", "1");  // 2
  MustPut("b", "1");  // 3
  // Overlapping deletes are allowed; the second counts what is left. A
  // delete over the whole keyspace ("\0") never counts as an overlap.
  TxnResponse r = MustTxn(Txn({}, {OpDel("a", "c"), OpDel("b", "c"),
                                   OpPut("c", "new"), OpDel("a", kAll)}));
  EXPECT_EQ(r.responses(0).response_delete_range().deleted(), 2);
  EXPECT_EQ(r.responses(1).response_delete_range().deleted(), 0);
  // The last delete removes "c", written earlier in the same txn.
  EXPECT_EQ(r.responses(3).response_delete_range().deleted(), 1);
  EXPECT_EQ(r.header().revision(), 4);
  EXPECT_TRUE(All().empty());
  EXPECT_EQ(Rev(), 4);
}

TEST_F(KvStoreTest, TxnRangeAtTheRevisionBeforeTheTxn) {
  MustPut("a", "old");  // 2
  RequestOp read_old = OpRange("a");
  read_old.mutable_request_range()->set_revision(2);
  TxnResponse r = MustTxn(Txn({}, {OpPut("a", "new"), read_old, OpRange("a")}));
  const RangeResponse& old_view = r.responses(1).response_range();
  EXPECT_EQ(Strs(old_view.kvs()), (std::vector<std::string>{"a=old c2 m2 v1"}));
  EXPECT_EQ(old_view.header().revision(), 3);  // etcd reports curRev.
  EXPECT_EQ(Strs(r.responses(2).response_range().kvs()),
            (std::vector<std::string>{"a=new c2 m3 v2"}));
}

TEST_F(KvStoreTest, TxnErrorsAbortTheWholeTxn) {
  MustPut("a", "1");  // 2
  MustPut("b", "1");  // 3
  Flush();
  PutRequest iv;
  iv.set_key("missing");
  iv.set_ignore_value(true);
  RequestOp bad_put;
  *bad_put.mutable_request_put() = iv;
  ExpectError(
      store_->Txn(Txn({}, {OpPut("c", "1"), bad_put}), &batch_).status(),
      absl::StatusCode::kInvalidArgument, "etcdserver: key not found");
  // The same op on the branch not taken is harmless.
  EXPECT_TRUE(store_->Txn(Txn({}, {OpPut("c", "1")}, {bad_put}), &batch_).ok());
  EXPECT_EQ(Rev(), 4);

  RequestOp future = OpRange("a");
  future.mutable_request_range()->set_revision(5);
  ExpectError(store_->Txn(Txn({}, {OpPut("d", "1"), future}), &batch_).status(),
              absl::StatusCode::kOutOfRange,
              "etcdserver: mvcc: required revision is a future revision");
  RequestOp old = OpRange("a");
  old.mutable_request_range()->set_revision(3);
  ExpectError(store_->Txn(Txn({}, {OpPut("d", "1"), old}), &batch_).status(),
              absl::StatusCode::kOutOfRange,
              "etcdserver: mvcc: required revision has been compacted");
  RequestOp leased = OpPut("d", "1");
  leased.mutable_request_put()->set_lease(9);
  ExpectError(store_->Txn(Txn({}, {leased}), &batch_).status(),
              absl::StatusCode::kNotFound,
              "etcdserver: requested lease not found");
  // A failing op inside a nested txn aborts the outer one too.
  ExpectError(
      store_
          ->Txn(Txn({}, {OpPut("d", "1"), OpTxn(Txn({}, {bad_put}))}), &batch_)
          .status(),
      absl::StatusCode::kInvalidArgument, "etcdserver: key not found");
  EXPECT_EQ(Rev(), 4);
  EXPECT_EQ(MustRange(RangeReq("d")).count(), 0);
  EXPECT_EQ(All(), (std::vector<std::string>{"a=1 c2 m2 v1", "b=1 c3 m3 v1",
                                             "c=1 c4 m4 v1"}));
}

TEST_F(KvStoreTest, TxnDuplicateKeys) {
  auto dup = [&](const TxnRequest& t) {
    ExpectError(ValidateTxn(t), absl::StatusCode::kInvalidArgument,
                "etcdserver: duplicate key given in txn request");
    ExpectError(store_->Txn(t, &batch_).status(),
                absl::StatusCode::kInvalidArgument,
                "etcdserver: duplicate key given in txn request");
  };
  auto ok = [&](const TxnRequest& t) {
    EXPECT_TRUE(ValidateTxn(t).ok()) << t.ShortDebugString();
  };
  dup(Txn({}, {OpPut("a", "1"), OpPut("a", "2")}));
  dup(Txn({}, {}, {OpPut("a", "1"), OpPut("a", "2")}));
  dup(Txn({}, {OpPut("a", "1"), OpDel("a")}));
  dup(Txn({}, {OpDel("a", "c"), OpPut("b", "1")}));
  dup(Txn({}, {OpPut("b", "1"), OpTxn(Txn({}, {OpPut("b", "2")}))}));
  dup(Txn({}, {OpDel("a", "c"), OpTxn(Txn({}, {}, {OpPut("b", "2")}))}));
  dup(Txn({}, {OpTxn(Txn({}, {OpDel("b")})), OpPut("b", "1")}));
  dup(Txn({}, {OpTxn(Txn({}, {OpPut("b", "1")})),
               OpTxn(Txn({}, {OpPut("b", "2")}))}));
  // The earlier sibling's delete covers the later sibling's put.
  dup(Txn({}, {OpTxn(Txn({}, {OpDel("a", "z")})),
               OpTxn(Txn({}, {OpPut("b", "2")}))}));
  // Not duplicates: the two branches of one txn, the two branches of a
  // nested txn, overlapping deletes, disjoint ranges, a "\0" delete, and a
  // later sibling's delete (etcd only checks deletes already collected).
  ok(Txn({}, {OpPut("a", "1")}, {OpPut("a", "2")}));
  ok(Txn({}, {OpTxn(Txn({}, {OpPut("a", "1")}, {OpPut("a", "2")}))}));
  ok(Txn({}, {OpDel("a", "c"), OpDel("b", "d")}));
  ok(Txn({}, {OpDel("a", "c"), OpPut("c", "1")}));
  ok(Txn({}, {OpDel("a", kAll), OpPut("b", "1")}));
  ok(Txn({}, {OpTxn(Txn({}, {OpPut("b", "2")})),
              OpTxn(Txn({}, {OpDel("a", "z")}))}));
  EXPECT_TRUE(batch_.Empty());
}

TEST_F(KvStoreTest, TxnTooManyOpsAndBadOps) {
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  TxnRequest t;
  for (int i = 0; i < kMaxTxnOps; ++i) {
    *t.add_success() = OpPut(absl::StrCat("k", i), "v");
  }
  EXPECT_TRUE(ValidateTxn(t).ok());
  *t.add_success() = OpPut("one-more", "v");
  ExpectError(ValidateTxn(t), kInvalid,
              "etcdserver: too many operations in txn request");
  ExpectError(store_->Txn(t, &batch_).status(), kInvalid,
              "etcdserver: too many operations in txn request");

  TxnRequest cmps;
  for (int i = 0; i <= kMaxTxnOps; ++i) {
    *cmps.add_compare() = CmpInt("k", Compare::VERSION, Compare::EQUAL, 0);
  }
  ExpectError(ValidateTxn(cmps), kInvalid,
              "etcdserver: too many operations in txn request");

  // A nested txn gets what its parent leaves: 128 - 100 = 28.
  TxnRequest outer;
  for (int i = 0; i < 99; ++i) {
    *outer.add_success() = OpRange(absl::StrCat("r", i));
  }
  TxnRequest inner;
  for (int i = 0; i < 28; ++i) {
    *inner.add_success() = OpRange(absl::StrCat("i", i));
  }
  *outer.add_success() = OpTxn(inner);
  EXPECT_TRUE(ValidateTxn(outer).ok());
  *outer.mutable_success(99)->mutable_request_txn()->add_success() =
      OpRange("i28");
  ExpectError(ValidateTxn(outer), kInvalid,
              "etcdserver: too many operations in txn request");

  ExpectError(ValidateTxn(Txn({}, {RequestOp()})), kInvalid,
              "etcdserver: key not found");
  ExpectError(
      ValidateTxn(Txn({CmpInt("", Compare::VERSION, Compare::EQUAL, 0)}, {})),
      kInvalid, "etcdserver: key is not provided");
  ExpectError(ValidateTxn(Txn({}, {}, {OpPut("", "v")})), kInvalid,
              "etcdserver: key is not provided");
  ExpectError(ValidateTxn(Txn({}, {OpTxn(Txn({}, {OpRange("")}))})), kInvalid,
              "etcdserver: key is not provided");
  EXPECT_TRUE(batch_.Empty());
}

TEST_F(KvStoreTest, IsReadOnlyTxn) {
  EXPECT_TRUE(IsReadOnlyTxn(Txn({}, {OpRange("a")}, {OpRange("b")})));
  EXPECT_FALSE(IsReadOnlyTxn(Txn({}, {OpRange("a")}, {OpDel("b")})));
  EXPECT_FALSE(IsReadOnlyTxn(Txn({}, {OpTxn(Txn({}, {}, {OpPut("a", "1")}))})));
  EXPECT_TRUE(IsReadOnlyTxn(Txn({}, {OpTxn(Txn({}, {OpRange("a")}))})));
}

// ---- Compaction
// ------------------------------------------------------------------

TEST_F(KvStoreTest, Compaction) {
  MustPut("a", "1");  // 2
  MustPut("a", "2");  // 3
  CompactionRequest c;
  c.set_revision(4);
  ExpectError(store_->Compact(c, &batch_).status(),
              absl::StatusCode::kOutOfRange,
              "etcdserver: mvcc: required revision is a future revision");
  c.set_revision(0);
  ExpectError(store_->Compact(c, &batch_).status(),
              absl::StatusCode::kOutOfRange,
              "etcdserver: mvcc: required revision has been compacted");
  c.set_revision(2);
  auto r = store_->Compact(c, &batch_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->header().revision(), 3);
  ExpectError(store_->Compact(c, &batch_).status(),
              absl::StatusCode::kOutOfRange,
              "etcdserver: mvcc: required revision has been compacted");
  c.set_revision(3);
  EXPECT_TRUE(store_->Compact(c, &batch_).ok());
  auto revs = store_->GetRevisions();
  ASSERT_TRUE(revs.ok());
  EXPECT_EQ(revs->revision, 3);  // Compaction creates no revision.
  EXPECT_EQ(revs->compact_revision, 3);
  Flush();
  revs = ReadRevisions(*engine_);
  ASSERT_TRUE(revs.ok());
  EXPECT_EQ(revs->compact_revision, 3);
  EXPECT_EQ(MustPut("a", "3").header().revision(), 4);
}

// ---- Pending writes, persistence, views
// --------------------------------------------

TEST_F(KvStoreTest, PendingWritesAreSeenBeforeTheBatchIsWritten) {
  MustPut("a", "1");  // 2, pending
  MustPut("a", "2");  // 3, sees the pending version 1
  MustDel(DelReq("b"));
  MustPut("b", "1");  // 4
  EXPECT_EQ(All(), (std::vector<std::string>{"a=2 c2 m3 v2", "b=1 c4 m4 v1"}));
  // The engine does not have them yet.
  auto engine_view = Range(*engine_, RangeReq("a", kAll));
  ASSERT_TRUE(engine_view.ok());
  EXPECT_EQ(engine_view->count(), 0);
  EXPECT_EQ(engine_view->header().revision(), 1);
  Flush();
  engine_view = Range(*engine_, RangeReq("a", kAll));
  ASSERT_TRUE(engine_view.ok());
  EXPECT_EQ(Strs(engine_view->kvs()),
            (std::vector<std::string>{"a=2 c2 m3 v2", "b=1 c4 m4 v1"}));
  EXPECT_EQ(engine_view->header().revision(), 4);
  // Pending deletes hide engine keys.
  MustDel(DelReq("a"));  // 5
  EXPECT_EQ(All(), (std::vector<std::string>{"b=1 c4 m4 v1"}));
  EXPECT_EQ(MustRange(RangeReq("a")).count(), 0);
}

TEST_F(KvStoreTest, DroppedBatchIsForgotten) {
  MustPut("a", "1");  // 2
  Flush();
  MustPut("a", "2");  // 3, to be dropped
  MustPut("b", "1");  // 4, to be dropped
  batch_.Clear();
  store_->ClearPending();
  EXPECT_EQ(Rev(), 2);
  EXPECT_EQ(All(), (std::vector<std::string>{"a=1 c2 m2 v1"}));
  EXPECT_EQ(MustPut("a", "3").header().revision(), 3);
  EXPECT_EQ(All(), (std::vector<std::string>{"a=3 c2 m3 v2"}));
}

TEST_F(KvStoreTest, RevisionKeyIsWrittenOncePerBatch) {
  for (int i = 0; i < 10; ++i) MustPut("k" + std::to_string(i), "v");
  EXPECT_EQ(batch_.Count(), 10);  // the keys only
  CompactionRequest c;
  c.set_revision(5);
  ASSERT_TRUE(store_->Compact(c, &batch_).ok());
  EXPECT_EQ(batch_.Count(), 10);
  store_->FinishBatch(&batch_);
  EXPECT_EQ(batch_.Count(), 12);  // + mrev + mcompact
  store_->FinishBatch(&batch_);   // nothing changed since
  EXPECT_EQ(batch_.Count(), 12);
  Flush();
  EXPECT_EQ(Rev(), 11);
  Open();
  auto revs = store_->GetRevisions();
  ASSERT_TRUE(revs.ok());
  EXPECT_EQ(revs->revision, 11);
  EXPECT_EQ(revs->compact_revision, 5);
  // A batch with no new revision writes no revision key.
  MustDel(DelReq("absent"));
  store_->FinishBatch(&batch_);
  EXPECT_EQ(batch_.Count(), 0);
}

TEST_F(KvStoreTest, MarkWrittenKeepsTheRevisionsAndForgetsTheOverlay) {
  MustPut("a", "1");  // 2
  store_->FinishBatch(&batch_);
  ASSERT_TRUE(engine_->Write(batch_, /*sync=*/false).ok());
  batch_.Clear();
  store_->MarkWritten();
  // The revisions stay loaded: a change made under the store is not seen
  // until ClearPending (which the raftstore calls after a snapshot).
  storage::WriteBatch b;
  b.Put(RevisionKey(), storage::EncodeU64(10));
  b.Delete(KvKey("a"));
  ASSERT_TRUE(engine_->Write(b, false).ok());
  EXPECT_EQ(Rev(), 2);
  // The overlay is gone: reads go to the engine.
  EXPECT_EQ(MustRange(RangeReq("a")).count(), 0);
  store_->ClearPending();
  EXPECT_EQ(Rev(), 10);
  EXPECT_EQ(MustPut("b", "1").header().revision(), 11);
}

TEST(RevisionHintTest, KnowsOnlyThePublishedSequence) {
  RevisionHint hint;
  EXPECT_EQ(hint.At(0), std::nullopt);
  hint.Publish(7, 3);
  EXPECT_EQ(hint.At(7), 3);
  EXPECT_EQ(hint.At(6), std::nullopt);
  EXPECT_EQ(hint.At(8), std::nullopt);
  hint.Publish(9, 4);
  EXPECT_EQ(hint.At(7), std::nullopt);
  EXPECT_EQ(hint.At(9), 4);
  hint.Clear();
  EXPECT_EQ(hint.At(9), std::nullopt);
}

// The store publishes the revision it wrote at the engine's sequence; a
// read of a snapshot at that sequence takes it from the hint, any other
// snapshot reads the engine; ClearPending forgets it.
TEST_F(KvStoreTest, RevisionHintFollowsWrittenBatches) {
  RevisionHint hint;
  store_->set_revision_hint(&hint);
  MustPut("a", "1");  // 2
  MustPut("b", "1");  // 3
  EXPECT_EQ(hint.At(engine_->LatestSequence()), std::nullopt)
      << "published before the batch was written";
  Flush();
  const uint64_t seq = engine_->LatestSequence();
  EXPECT_EQ(hint.At(seq), 3);
  auto snap = engine_->NewSnapshot();
  auto r = Range(*snap, RangeReq("a"), &hint);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->header().revision(), 3);
  EXPECT_EQ(r->count(), 1);

  // The hint is what the read uses at its sequence: a (deliberately false)
  // revision published there shows up in the header...
  hint.Publish(seq, 42);
  EXPECT_EQ(Range(*snap, RangeReq("a"), &hint)->header().revision(), 42);
  // ...and the revision at a requested revision is checked against it.
  RangeRequest at = RangeReq("a");
  at.set_revision(42);
  EXPECT_TRUE(Range(*snap, at, &hint).ok());
  hint.Publish(seq, 3);

  // A write the store did not make moves the sequence: the hint no longer
  // applies, and a newer snapshot reads the engine.
  storage::WriteBatch b;
  b.Put(RevisionKey(), storage::EncodeU64(10));
  ASSERT_TRUE(engine_->Write(b, false).ok());
  auto snap2 = engine_->NewSnapshot();
  EXPECT_EQ(hint.At(snap2->sequence()), std::nullopt);
  EXPECT_EQ(Range(*snap2, RangeReq("a"), &hint)->header().revision(), 10);
  // The older snapshot still gets its own revision.
  EXPECT_EQ(Range(*snap, RangeReq("a"), &hint)->header().revision(), 3);

  store_->ClearPending();
  EXPECT_EQ(hint.At(seq), std::nullopt);
  // Until a revision is loaded again, a written batch publishes nothing.
  storage::WriteBatch other;
  other.Put("unrelated", "x");
  ASSERT_TRUE(engine_->Write(other, false).ok());
  store_->MarkWritten();
  EXPECT_EQ(hint.At(engine_->LatestSequence()), std::nullopt);
  MustPut("c", "1");  // 11
  Flush();
  EXPECT_EQ(hint.At(engine_->LatestSequence()), 11);
}

// Reads need only the current revision: a read at an older revision is
// compacted whatever the compact revision says, the current one is served.
TEST_F(KvStoreTest, SnapshotReadsCheckRevisionsWithoutTheCompactRevision) {
  MustPut("a", "1");  // 2
  MustPut("a", "2");  // 3
  MustCompactAndFlush(3);
  if (HasFatalFailure()) return;
  auto snap = engine_->NewSnapshot();
  RangeRequest now = RangeReq("a");
  now.set_revision(3);
  auto r = Range(*snap, now);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kvs(0).value(), "2");
  RangeRequest old = RangeReq("a");
  old.set_revision(2);
  ExpectError(Range(*snap, old).status(), absl::StatusCode::kOutOfRange,
              "etcdserver: mvcc: required revision has been compacted");
  RangeRequest future = RangeReq("a");
  future.set_revision(4);
  ExpectError(Range(*snap, future).status(), absl::StatusCode::kOutOfRange,
              "etcdserver: mvcc: required revision is a future revision");
}

// Puts read a key's create revision, version and lease from a cache kept
// across written batches; an engine changed underneath (a region snapshot)
// is seen after ClearPending.
TEST_F(KvStoreTest, KeyMetadataCacheFollowsWritesAndEngineChanges) {
  MustPut("a", "1");  // 2: a c2 v1
  Flush();
  MustPut("a", "2");  // 3: from the cache
  Flush();
  EXPECT_EQ(All(), (std::vector<std::string>{"a=2 c2 m3 v2"}));
  // A snapshot replaces the engine's contents: "a" now has another
  // history, and "b" exists.
  storage::WriteBatch b;
  KeyValue kv;
  kv.set_key("a");
  kv.set_value("s");
  kv.set_create_revision(7);
  kv.set_mod_revision(8);
  kv.set_version(5);
  b.Put(KvKey("a"), kv.SerializeAsString());
  kv.set_key("b");
  kv.set_create_revision(9);
  kv.set_mod_revision(9);
  kv.set_version(1);
  b.Put(KvKey("b"), kv.SerializeAsString());
  b.Put(RevisionKey(), storage::EncodeU64(20));
  ASSERT_TRUE(engine_->Write(b, false).ok());
  store_->ClearPending();
  MustPut("a", "3");     // 21
  MustPut("b", "2");     // 22
  MustPut("a", "4");     // 23: from the pending overlay
  MustDel(DelReq("b"));  // 24
  MustPut("b", "3");     // 25: created again
  Flush();
  EXPECT_EQ(All(),
            (std::vector<std::string>{"a=4 c7 m23 v7", "b=3 c25 m25 v1"}));
  MustPut("b", "4");  // 26: from the cache, after the delete and re-create
  Flush();
  EXPECT_EQ(All(),
            (std::vector<std::string>{"a=4 c7 m23 v7", "b=4 c25 m26 v2"}));
}

TEST_F(KvStoreTest, OtherWritesInTheSameBatchAreKept) {
  batch_.Put("unrelated", "x");  // Another command's write.
  MustPut("a", "1");
  Flush();
  auto v = engine_->Get("unrelated");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->value_or(""), "x");
  EXPECT_EQ(All(), (std::vector<std::string>{"a=1 c2 m2 v1"}));
}

TEST_F(KvStoreTest, StateSurvivesReopen) {
  MustPut("a", "1");  // 2
  MustPut("b", "1");  // 3
  MustCompactAndFlush(2);
  if (HasFatalFailure()) return;
  Open();
  auto revs = store_->GetRevisions();
  ASSERT_TRUE(revs.ok());
  EXPECT_EQ(revs->revision, 3);
  EXPECT_EQ(revs->compact_revision, 2);
  EXPECT_EQ(MustPut("a", "2").header().revision(), 4);
  EXPECT_EQ(All(), (std::vector<std::string>{"a=2 c2 m4 v2", "b=1 c3 m3 v1"}));
}

TEST_F(KvStoreTest, EngineLayoutIsTheDocumentedOne) {
  MustPut("a", "v");  // 2
  Flush();
  auto raw = engine_->Get(storage::DataKey(storage::kCfWrite, "ka"));
  ASSERT_TRUE(raw.ok());
  ASSERT_TRUE(raw->has_value());
  KeyValue kv;
  ASSERT_TRUE(kv.ParseFromString(**raw));
  EXPECT_EQ(Str(kv), "a=v c2 m2 v1");
  EXPECT_EQ(KvKey("a"), storage::DataKey(storage::kCfWrite, "ka"));
  auto rev = engine_->Get(storage::DataKey(storage::kCfWrite, "mrev"));
  ASSERT_TRUE(rev.ok());
  EXPECT_EQ(rev->value_or(""), storage::EncodeU64(2));
  EXPECT_EQ(RevisionKey(), storage::DataKey(storage::kCfWrite, "mrev"));
  EXPECT_EQ(CompactRevisionKey(),
            storage::DataKey(storage::kCfWrite, "mcompact"));
  // A change made to the engine between batches (as a region snapshot
  // would) is seen by the next request.
  storage::WriteBatch b;
  b.Put(RevisionKey(), storage::EncodeU64(10));
  ASSERT_TRUE(engine_->Write(b, false).ok());
  store_->ClearPending();
  EXPECT_EQ(MustPut("a", "w").header().revision(), 11);
}

TEST_F(KvStoreTest, CorruptValueIsDataLoss) {
  storage::WriteBatch b;
  b.Put(KvKey("a"), "\xff\xff\xff");
  ASSERT_TRUE(engine_->Write(b, false).ok());
  EXPECT_EQ(store_->Range(RangeReq("a")).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(store_->Put(PutReq("a", "1"), &batch_).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_TRUE(batch_.Empty());
}

TEST_F(KvStoreTest, SnapshotReadsAndReadOnlyTxn) {
  MustPut("a", "1");  // 2
  Flush();
  std::unique_ptr<storage::Snapshot> snap = engine_->NewSnapshot();
  MustPut("a", "2");  // 3
  MustPut("b", "1");  // 4
  Flush();
  auto r = Range(*snap, RangeReq("a", kAll));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Strs(r->kvs()), (std::vector<std::string>{"a=1 c2 m2 v1"}));
  EXPECT_EQ(r->header().revision(), 2);

  auto t = ReadOnlyTxn(*snap, Txn({CmpValue("a", Compare::EQUAL, "1")},
                                  {OpRange("a", kAll)}, {OpRange("b")}));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(t->succeeded());
  EXPECT_EQ(t->header().revision(), 2);
  EXPECT_EQ(t->responses(0).response_range().count(), 1);
  EXPECT_EQ(ReadOnlyTxn(*snap, Txn({}, {OpPut("a", "x")})).status().code(),
            absl::StatusCode::kFailedPrecondition);
  snap.reset();
  auto now =
      ReadOnlyTxn(*engine_->NewSnapshot(), Txn({}, {OpRange("a", kAll)}));
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->header().revision(), 4);
  EXPECT_EQ(now->responses(0).response_range().count(), 2);
}

// ---- Randomized comparison against a model
// ---------------------------------------

// The model: etcd's rules on a std::map, written independently of the store.
struct ModelKv {
  std::string value;
  int64_t create = 0, mod = 0, version = 0;
};
struct Model {
  std::map<std::string, ModelKv> kvs;
  int64_t rev = 1;

  std::vector<std::string> Range(const std::string& k, const std::string& end,
                                 int64_t limit, int64_t* count,
                                 bool* more) const {
    std::vector<std::string> out;
    *count = 0;
    for (const auto& [key, kv] : kvs) {
      bool in =
          end.empty() ? key == k : (key >= k && (end == kAll || key < end));
      if (!in) continue;
      ++(*count);
      if (limit <= 0 || static_cast<int64_t>(out.size()) < limit) {
        out.push_back(absl::StrCat(key, "=", kv.value, " c", kv.create, " m",
                                   kv.mod, " v", kv.version));
      }
    }
    *more = limit > 0 && *count > limit;
    return out;
  }
};

TEST_F(KvStoreTest, RandomizedAgainstModel) {
  for (uint32_t seed = 1; seed <= 12; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed=", seed));
    SetUp();  // A fresh store per seed.
    std::mt19937 rng(seed);
    auto pick = [&](int n) {
      return static_cast<int>(
          std::uniform_int_distribution<int>(0, n - 1)(rng));
    };
    auto key = [&] {
      static const char* const kKeys[] = {"a", "b", "ba", "bb",
                                          "c", "d", "e",  "f"};
      return std::string(kKeys[pick(8)]);
    };
    auto end_for = [&](const std::string& k) -> std::string {
      switch (pick(3)) {
        case 0:
          return "";
        case 1:
          return kAll;
        default:
          return k + "\x7f";
      }
    };
    Model model, committed;
    for (int step = 0; step < 300 && !HasFailure(); ++step) {
      SCOPED_TRACE(absl::StrCat("step=", step));
      int what = pick(10);
      if (what <= 2) {  // Put
        std::string k = key(), v = absl::StrCat("v", pick(4));
        PutRequest p = PutReq(k, v);
        p.set_prev_kv(true);
        PutResponse r = MustPut(p);
        auto it = model.kvs.find(k);
        EXPECT_EQ(r.has_prev_kv(), it != model.kvs.end());
        if (r.has_prev_kv() && it != model.kvs.end()) {
          EXPECT_EQ(r.prev_kv().value(), it->second.value);
          EXPECT_EQ(r.prev_kv().version(), it->second.version);
        }
        ++model.rev;
        ModelKv& kv = model.kvs[k];
        if (kv.version == 0) kv.create = model.rev;
        kv.value = v;
        kv.mod = model.rev;
        ++kv.version;
        EXPECT_EQ(r.header().revision(), model.rev);
      } else if (what == 3) {  // DeleteRange
        std::string k = key(), end = end_for(k);
        DeleteRangeResponse r = MustDel(DelReq(k, end));
        int64_t count = 0;
        bool more = false;
        model.Range(k, end, 0, &count, &more);
        EXPECT_EQ(r.deleted(), count);
        if (count > 0) {
          ++model.rev;
          for (auto it = model.kvs.begin(); it != model.kvs.end();) {
            bool in = end.empty() ? it->first == k
                                  : (it->first >= k &&
                                     (end == kAll || it->first < end));
            it = in ? model.kvs.erase(it) : std::next(it);
          }
        }
        EXPECT_EQ(r.header().revision(), model.rev);
      } else if (what <= 5) {  // Range
        std::string k = key(), end = end_for(k);
        RangeRequest q = RangeReq(k, end);
        q.set_limit(pick(4));
        RangeResponse r = MustRange(q);
        int64_t count = 0;
        bool more = false;
        EXPECT_EQ(Strs(r.kvs()), model.Range(k, end, q.limit(), &count, &more));
        EXPECT_EQ(r.count(), count);
        EXPECT_EQ(r.more(), more);
        EXPECT_EQ(r.header().revision(), model.rev);
      } else if (what <= 7) {  // Txn: if version(k) == n then put else delete
        std::string k = key(), put_key = key(), del_key = key();
        int64_t want_version = pick(3);
        TxnRequest t =
            Txn({CmpInt(k, Compare::VERSION, Compare::EQUAL, want_version)},
                {OpPut(put_key, "t"), OpRange(put_key)}, {OpDel(del_key)});
        TxnResponse r = MustTxn(t);
        auto it = model.kvs.find(k);
        bool holds =
            (it == model.kvs.end() ? 0 : it->second.version) == want_version;
        EXPECT_EQ(r.succeeded(), holds);
        if (holds) {
          ++model.rev;
          ModelKv& kv = model.kvs[put_key];
          if (kv.version == 0) kv.create = model.rev;
          kv.value = "t";
          kv.mod = model.rev;
          ++kv.version;
          ASSERT_EQ(r.responses_size(), 2);
          EXPECT_EQ(r.responses(1).response_range().kvs_size(), 1);
        } else if (model.kvs.erase(del_key) > 0) {
          ++model.rev;
        }
        EXPECT_EQ(r.header().revision(), model.rev);
      } else if (what == 8) {  // The batch reaches the engine.
        Flush();
        committed = model;
      } else {  // The batch is dropped (e.g. the apply was abandoned).
        if (pick(2) == 0) {
          batch_.Clear();
          store_->ClearPending();
          model = committed;
        }
      }
      EXPECT_EQ(Rev(), model.rev);
    }
    Flush();
    int64_t count = 0;
    bool more = false;
    auto full = Range(*engine_, RangeReq(std::string("\0", 1), kAll));
    ASSERT_TRUE(full.ok()) << full.status();
    EXPECT_EQ(Strs(full->kvs()),
              model.Range(std::string("\0", 1), kAll, 0, &count, &more));
    EXPECT_EQ(full->header().revision(), model.rev);
    if (HasFailure()) break;
  }
}

}  // namespace
}  // namespace raftkv::mvcc
