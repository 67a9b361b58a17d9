// The etcd v3 services (server/kv_service.h) on a fake KvBackend, served by
// an in-process gRPC server on 127.0.0.1 and called through the generated
// etcdserverpb stubs (and a raw GenericStub for malformed requests).
#include "server/kv_service.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "mvcc/kv_store.h"

namespace raftkv::server {
namespace {

namespace pb = etcdserverpb;

constexpr uint64_t kClusterId = 0x1234'5678'9abc'def0ULL;
constexpr uint64_t kMemberId = 0x0fed'cba9'8765'4321ULL;

// Answers every request with `error` if set, else a response whose header
// carries `revision` and `raft_term`; records what it was asked. With
// `defer`, keeps each `done` for the test to call later (from its own
// thread).
class FakeBackend : public KvBackend {
 public:
  void Put(pb::PutRequest req, Done<pb::PutResponse> done) override {
    Record("put", req.key());
    Answer(std::move(done));
  }
  void DeleteRange(pb::DeleteRangeRequest req,
                   Done<pb::DeleteRangeResponse> done) override {
    Record("delete", req.key());
    Answer<pb::DeleteRangeResponse>(
        std::move(done), [](pb::DeleteRangeResponse& r) { r.set_deleted(1); });
  }
  void Txn(pb::TxnRequest /*req*/, Done<pb::TxnResponse> done) override {
    Record("txn", "");
    Answer<pb::TxnResponse>(std::move(done),
                            [](pb::TxnResponse& r) { r.set_succeeded(true); });
  }
  void Compact(pb::CompactionRequest req,
               Done<pb::CompactionResponse> done) override {
    Record("compact", std::to_string(req.revision()));
    Answer(std::move(done));
  }
  void Range(pb::RangeRequest req, Done<pb::RangeResponse> done) override {
    Record(req.serializable() ? "range-serializable" : "range", req.key());
    Answer<pb::RangeResponse>(std::move(done), [&](pb::RangeResponse& r) {
      mvccpb::KeyValue* kv = r.add_kvs();
      kv->set_key(req.key());
      kv->set_value("v");
      r.set_count(1);
    });
  }
  StatusInfo Status() override {
    std::lock_guard l(mu_);
    ++status_calls_;
    return status_;
  }
  std::vector<MemberInfo> Members() override {
    MemberInfo a{
        11, "n1", {"http://127.0.0.1:2380"}, {"http://127.0.0.1:2379"}};
    MemberInfo b{22, "n2", {"http://127.0.0.1:2382"}, {}};
    return {a, b};
  }

  void set_error(absl::Status s) {
    std::lock_guard l(mu_);
    error_ = std::move(s);
  }
  void set_header(int64_t revision, uint64_t raft_term) {
    std::lock_guard l(mu_);
    revision_ = revision;
    raft_term_ = raft_term;
  }
  void set_status(StatusInfo s) {
    std::lock_guard l(mu_);
    status_ = std::move(s);
  }
  void set_defer(bool d) {
    std::lock_guard l(mu_);
    defer_ = d;
  }
  std::vector<std::string> calls() {
    std::lock_guard l(mu_);
    return calls_;
  }
  int status_calls() {
    std::lock_guard l(mu_);
    return status_calls_;
  }
  // Waits until `n` answers are deferred, then takes them.
  std::vector<std::function<void()>> TakeDeferred(size_t n) {
    std::unique_lock l(mu_);
    bool ok = cv_.wait_for(l, std::chrono::seconds(5),
                           [&] { return deferred_.size() >= n; });
    EXPECT_TRUE(ok) << "only " << deferred_.size() << " of " << n
                    << " calls reached the backend";
    std::vector<std::function<void()>> out;
    out.swap(deferred_);
    return out;
  }

 private:
  void Record(const std::string& what, const std::string& key) {
    std::lock_guard l(mu_);
    calls_.push_back(key.empty() ? what : what + ":" + key);
  }

  template <typename Resp>
  void Answer(
      Done<Resp> done, std::function<void(Resp&)> fill = [](Resp&) {}) {
    std::unique_lock l(mu_);
    std::function<void()> answer;
    if (!error_.ok()) {
      answer = [done, e = error_] { done(e); };
    } else {
      Resp r;
      r.mutable_header()->set_revision(revision_);
      r.mutable_header()->set_raft_term(raft_term_);
      fill(r);
      answer = [done, r] { done(r); };
    }
    if (defer_) {
      deferred_.push_back(std::move(answer));
      cv_.notify_all();
      return;
    }
    l.unlock();
    answer();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  absl::Status error_;
  int64_t revision_ = 42;
  uint64_t raft_term_ = 7;
  StatusInfo status_;
  bool defer_ = false;
  int status_calls_ = 0;
  std::vector<std::string> calls_;
  std::vector<std::function<void()>> deferred_;
};

class KvServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EtcdServiceOptions options;
    options.cluster_id = kClusterId;
    options.member_id = kMemberId;
    services_ = std::make_unique<EtcdServices>(&backend_, options);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    services_->RegisterOn(&builder);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port, 0);
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(-1);  // let oversized requests reach the server
    channel_ =
        grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                  grpc::InsecureChannelCredentials(), args);
    kv_ = pb::KV::NewStub(channel_);
    maintenance_ = pb::Maintenance::NewStub(channel_);
    cluster_ = pb::Cluster::NewStub(channel_);
  }
  void TearDown() override {
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() +
                        std::chrono::seconds(2));
    }
  }

  static void SetDeadline(grpc::ClientContext* ctx) {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::seconds(5));
  }

  grpc::Status Put(const std::string& key, const std::string& value,
                   pb::PutResponse* resp) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    pb::PutRequest req;
    req.set_key(key);
    req.set_value(value);
    return kv_->Put(&ctx, req, resp);
  }

  // A raw call of `method` with `payload` as the request's bytes.
  grpc::Status RawCall(const std::string& method, const std::string& payload) {
    grpc::GenericStub stub(channel_);
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    grpc::Slice slice(payload);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    std::promise<grpc::Status> result;
    stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response,
                   [&result](grpc::Status s) { result.set_value(s); });
    return result.get_future().get();
  }

  FakeBackend backend_;
  std::unique_ptr<EtcdServices> services_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::KV::Stub> kv_;
  std::unique_ptr<pb::Maintenance::Stub> maintenance_;
  std::unique_ptr<pb::Cluster::Stub> cluster_;
};

TEST(ToGrpcStatusTest, EveryCodeAndMessageCarriesOver) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  for (int code = 1; code <= 16; ++code) {
    std::string message = "etcdserver: message " + std::to_string(code);
    grpc::Status g = ToGrpcStatus(
        absl::Status(static_cast<absl::StatusCode>(code), message));
    EXPECT_EQ(static_cast<int>(g.error_code()), code);
    EXPECT_EQ(g.error_message(), message);
  }
}

TEST_F(KvServiceTest, BackendErrorsReachTheClientUnchanged) {
  const absl::Status errors[] = {
      absl::InvalidArgumentError(std::string(mvcc::kErrEmptyKey)),
      absl::InvalidArgumentError(std::string(mvcc::kErrTooManyOps)),
      absl::OutOfRangeError(std::string(mvcc::kErrCompacted)),
      absl::NotFoundError(std::string(mvcc::kErrLeaseNotFound)),
      absl::UnavailableError("etcdserver: no leader"),
      absl::UnavailableError("etcdserver: request timed out"),
      absl::InternalError("engine failure"),
  };
  for (const absl::Status& e : errors) {
    backend_.set_error(e);
    pb::PutResponse resp;
    grpc::Status s = Put("k", "v", &resp);
    EXPECT_EQ(static_cast<int>(s.error_code()), static_cast<int>(e.code()))
        << e;
    EXPECT_EQ(s.error_message(), e.message());

    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    pb::RangeRequest req;
    req.set_key("k");
    pb::RangeResponse range;
    s = kv_->Range(&ctx, req, &range);
    EXPECT_EQ(static_cast<int>(s.error_code()), static_cast<int>(e.code()))
        << e;
    EXPECT_EQ(s.error_message(), e.message());
  }
}

TEST_F(KvServiceTest, EveryMethodReachesTheBackendAndFillsTheHeader) {
  backend_.set_header(/*revision=*/99, /*raft_term=*/5);
  {
    pb::PutResponse resp;
    ASSERT_TRUE(Put("a", "1", &resp).ok());
    EXPECT_EQ(resp.header().cluster_id(), kClusterId);
    EXPECT_EQ(resp.header().member_id(), kMemberId);
    EXPECT_EQ(resp.header().revision(), 99);
    EXPECT_EQ(resp.header().raft_term(), 5u);
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    pb::RangeRequest req;
    req.set_key("a");
    pb::RangeResponse resp;
    ASSERT_TRUE(kv_->Range(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.kvs_size(), 1);
    EXPECT_EQ(resp.kvs(0).key(), "a");
    EXPECT_EQ(resp.header().cluster_id(), kClusterId);
    EXPECT_EQ(resp.header().member_id(), kMemberId);
    EXPECT_EQ(resp.header().revision(), 99);
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    pb::DeleteRangeRequest req;
    req.set_key("b");
    pb::DeleteRangeResponse resp;
    ASSERT_TRUE(kv_->DeleteRange(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.deleted(), 1);
    EXPECT_EQ(resp.header().member_id(), kMemberId);
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    pb::TxnRequest req;
    pb::PutRequest* put = req.add_success()->mutable_request_put();
    put->set_key("c");
    pb::TxnResponse resp;
    ASSERT_TRUE(kv_->Txn(&ctx, req, &resp).ok());
    EXPECT_TRUE(resp.succeeded());
    EXPECT_EQ(resp.header().cluster_id(), kClusterId);
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    pb::CompactionRequest req;
    req.set_revision(50);
    pb::CompactionResponse resp;
    ASSERT_TRUE(kv_->Compact(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.header().raft_term(), 5u);
  }
  EXPECT_EQ(backend_.calls(),
            (std::vector<std::string>{"put:a", "range:a", "delete:b", "txn",
                                      "compact:50"}));
}

TEST_F(KvServiceTest, MissingRaftTermComesFromStatus) {
  StatusInfo info;
  info.raft_term = 12;
  backend_.set_status(info);
  backend_.set_header(/*revision=*/3, /*raft_term=*/0);
  pb::PutResponse resp;
  ASSERT_TRUE(Put("k", "v", &resp).ok());
  EXPECT_EQ(resp.header().raft_term(), 12u);
  EXPECT_EQ(resp.header().revision(), 3);
}

TEST_F(KvServiceTest, StatusReportsTheBackendsView) {
  StatusInfo info;
  info.member_id = kMemberId;
  info.leader_member_id = 77;
  info.raft_term = 4;
  info.raft_index = 120;
  info.raft_applied_index = 118;
  info.db_size = 4096;
  info.version = "3.4.0";
  backend_.set_status(info);
  backend_.set_header(/*revision=*/31, /*raft_term=*/4);
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  pb::StatusResponse resp;
  ASSERT_TRUE(maintenance_->Status(&ctx, pb::StatusRequest(), &resp).ok());
  EXPECT_EQ(resp.version(), "3.4.0");
  EXPECT_EQ(resp.leader(), 77u);
  EXPECT_EQ(resp.raftterm(), 4u);
  EXPECT_EQ(resp.raftindex(), 120u);
  EXPECT_EQ(resp.raftappliedindex(), 118u);
  EXPECT_EQ(resp.dbsize(), 4096);
  EXPECT_EQ(resp.header().cluster_id(), kClusterId);
  EXPECT_EQ(resp.header().member_id(), kMemberId);
  EXPECT_EQ(resp.header().raft_term(), 4u);
  // The header's revision is the store's, read without a raft round.
  EXPECT_EQ(resp.header().revision(), 31);
  std::vector<std::string> calls = backend_.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].rfind("range-serializable", 0), 0u) << calls[0];
}

TEST_F(KvServiceTest, MemberListListsTheBackendsMembers) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  pb::MemberListResponse resp;
  ASSERT_TRUE(cluster_->MemberList(&ctx, pb::MemberListRequest(), &resp).ok());
  ASSERT_EQ(resp.members_size(), 2);
  EXPECT_EQ(resp.members(0).id(), 11u);
  EXPECT_EQ(resp.members(0).name(), "n1");
  ASSERT_EQ(resp.members(0).peerurls_size(), 1);
  EXPECT_EQ(resp.members(0).peerurls(0), "http://127.0.0.1:2380");
  ASSERT_EQ(resp.members(0).clienturls_size(), 1);
  EXPECT_EQ(resp.members(0).clienturls(0), "http://127.0.0.1:2379");
  EXPECT_EQ(resp.members(1).id(), 22u);
  EXPECT_EQ(resp.members(1).clienturls_size(), 0);
  EXPECT_EQ(resp.header().cluster_id(), kClusterId);
  EXPECT_EQ(resp.header().member_id(), kMemberId);
}

TEST_F(KvServiceTest, WritesOverTheLimitAreTooLarge) {
  pb::PutResponse resp;
  // Just over the limit once encoded: etcd's own check.
  grpc::Status s = Put("k", std::string(kMaxRequestBytes, 'x'), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), kErrRequestTooLarge);
  // A write txn over the limit too.
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    pb::TxnRequest req;
    pb::PutRequest* put = req.add_success()->mutable_request_put();
    put->set_key("k");
    put->set_value(std::string(kMaxRequestBytes, 'x'));
    pb::TxnResponse txn;
    s = kv_->Txn(&ctx, req, &txn);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(s.error_message(), kErrRequestTooLarge);
  }
  // None of them reached the backend.
  EXPECT_TRUE(backend_.calls().empty());

  // Just under the limit: served.
  ASSERT_TRUE(Put("k", std::string(kMaxRequestBytes - 100, 'x'), &resp).ok());
  // Reads are not limited by it (etcd checks raft requests only).
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    pb::RangeRequest req;
    req.set_key(std::string(kMaxRequestBytes, 'k'));
    pb::RangeResponse range;
    EXPECT_TRUE(kv_->Range(&ctx, req, &range).ok());
  }
  EXPECT_EQ(backend_.calls().size(), 2u);

  // Over gRPC's own limit (the limit plus etcd's 512 KiB overhead): gRPC
  // refuses it before the service runs, as in etcd.
  s = Put("k", std::string(kMaxRequestBytes + kGrpcOverheadBytes, 'x'), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(backend_.calls().size(), 2u);

  // And the server keeps serving.
  EXPECT_TRUE(Put("small", "v", &resp).ok());
}

TEST_F(KvServiceTest, MalformedRequestsAreInvalidAndTheServerKeepsServing) {
  // A field tag announcing a length-delimited field longer than the
  // message, then bytes with an invalid wire type.
  const std::string garbage =
      std::string("\x0a\xff\xff\x03garbage\x0f\x0f", 13);
  for (const char* method :
       {"/etcdserverpb.KV/Put", "/etcdserverpb.KV/Range",
        "/etcdserverpb.KV/DeleteRange", "/etcdserverpb.KV/Txn",
        "/etcdserverpb.KV/Compact", "/etcdserverpb.Maintenance/Status",
        "/etcdserverpb.Cluster/MemberList"}) {
    grpc::Status s = RawCall(method, garbage);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
  }
  EXPECT_TRUE(backend_.calls().empty());
  pb::PutResponse resp;
  EXPECT_TRUE(Put("k", "v", &resp).ok());
  EXPECT_EQ(backend_.calls(), std::vector<std::string>{"put:k"});
}

TEST_F(KvServiceTest, MethodsEtcdHasButWeDoNotAreUnimplemented) {
  grpc::Status s = RawCall("/etcdserverpb.Maintenance/Defragment", "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  s = RawCall("/etcdserverpb.Lease/LeaseGrant", "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(KvServiceTest, CallsFinishWhenTheBackendAnswersLaterFromItsThread) {
  backend_.set_defer(true);
  constexpr int kCalls = 32;
  std::vector<std::thread> clients;
  std::vector<grpc::Status> results(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    clients.emplace_back([this, i, &results] {
      pb::PutResponse resp;
      results[i] = Put("k" + std::to_string(i), "v", &resp);
    });
  }
  // Every call is pending in the backend at once; none holds the server.
  std::vector<std::function<void()>> answers = backend_.TakeDeferred(kCalls);
  ASSERT_EQ(answers.size(), static_cast<size_t>(kCalls));
  std::thread answerer([&answers] {
    for (auto& a : answers) a();
  });
  answerer.join();
  for (auto& t : clients) t.join();
  for (int i = 0; i < kCalls; ++i) EXPECT_TRUE(results[i].ok()) << i;
}

}  // namespace
}  // namespace raftkv::server
