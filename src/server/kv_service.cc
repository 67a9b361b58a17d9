#include "server/kv_service.h"

#include <climits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "mvcc/kv_store.h"

namespace raftkv::server {

namespace {

namespace pb = etcdserverpb;

// Whether etcd sends the request through raft, where its size limit
// applies (a read-only txn is served like a read).
bool IsWrite(const pb::RangeRequest&) { return false; }
bool IsWrite(const pb::PutRequest&) { return true; }
bool IsWrite(const pb::DeleteRangeRequest&) { return true; }
bool IsWrite(const pb::TxnRequest& req) { return !mvcc::IsReadOnlyTxn(req); }
bool IsWrite(const pb::CompactionRequest&) { return true; }

template <typename Req>
grpc::Status Parse(const grpc::ByteBuffer& in, Req* req) {
  // Deserialize consumes its buffer; the copy shares the slices.
  grpc::ByteBuffer copy(in);
  grpc::Status s = grpc::SerializationTraits<Req>::Deserialize(&copy, req);
  if (s.ok()) return s;
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat("raftkv: malformed request: not a valid ",
                                   Req::descriptor()->full_name()));
}

template <typename Resp>
grpc::Status Serialize(const Resp& resp, grpc::ByteBuffer* out) {
  bool own_buffer = false;
  return grpc::SerializationTraits<Resp>::Serialize(resp, out, &own_buffer);
}

// The methods' shared machinery: parse, check the size, call the backend,
// answer with a filled header.
class Handler {
 public:
  Handler(KvBackend* backend, const EtcdServiceOptions& options)
      : backend_(backend), options_(options) {}

  KvBackend* backend() const { return backend_; }

  // Serves one unary call: `call(req, done)` hands the parsed request to
  // the backend; `done` finishes the call.
  template <typename Req, typename Resp, typename Call>
  grpc::ServerUnaryReactor* Serve(grpc::CallbackServerContext* ctx,
                                  const grpc::ByteBuffer* in,
                                  grpc::ByteBuffer* out, Call call) {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    Req req;
    if (grpc::Status s = Parse(*in, &req); !s.ok()) {
      reactor->Finish(s);
      return reactor;
    }
    if (IsWrite(req) && in->Length() > options_.max_request_bytes) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   std::string(kErrRequestTooLarge)));
      return reactor;
    }
    call(std::move(req),
         Done<Resp>([this, reactor, out](absl::StatusOr<Resp> r) {
           if (!r.ok()) {
             reactor->Finish(ToGrpcStatus(r.status()));
             return;
           }
           FillHeader(r->mutable_header());
           reactor->Finish(Serialize(*r, out));
         }));
    return reactor;
  }

  // Answers `resp` after filling its header's revision with the store's
  // current revision (a serializable read of one key; 0 if it fails) and
  // the rest with FillHeader.
  template <typename Resp>
  void FinishWithRevision(grpc::ServerUnaryReactor* reactor,
                          grpc::ByteBuffer* out, Resp resp) {
    pb::RangeRequest probe;
    probe.set_key(std::string(1, '\0'));
    probe.set_keys_only(true);
    probe.set_serializable(true);
    backend_->Range(
        std::move(probe), [this, reactor, out, resp = std::move(resp)](
                              absl::StatusOr<pb::RangeResponse> r) mutable {
          if (r.ok())
            resp.mutable_header()->set_revision(r->header().revision());
          FillHeader(resp.mutable_header());
          reactor->Finish(Serialize(resp, out));
        });
  }

  void FillHeader(pb::ResponseHeader* h) {
    h->set_cluster_id(options_.cluster_id);
    h->set_member_id(options_.member_id);
    if (h->raft_term() == 0) h->set_raft_term(backend_->RaftTerm());
  }

 private:
  KvBackend* const backend_;
  const EtcdServiceOptions options_;
};

using KvRaw = pb::KV::WithRawCallbackMethod_Range<
    pb::KV::WithRawCallbackMethod_Put<pb::KV::WithRawCallbackMethod_DeleteRange<
        pb::KV::WithRawCallbackMethod_Txn<
            pb::KV::WithRawCallbackMethod_Compact<pb::KV::Service>>>>>;
using MaintenanceRaw =
    pb::Maintenance::WithRawCallbackMethod_Status<pb::Maintenance::Service>;
using ClusterRaw =
    pb::Cluster::WithRawCallbackMethod_MemberList<pb::Cluster::Service>;

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode both number google.rpc.Code.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

class EtcdServices::Kv final : public KvRaw {
 public:
  Kv(KvBackend* backend, const EtcdServiceOptions& options)
      : h_(backend, options) {}

  // The typed (synchronous) overloads stay the generated ones; naming them
  // keeps them visible next to the raw overrides below.
  using KvRaw::Compact;
  using KvRaw::DeleteRange;
  using KvRaw::Put;
  using KvRaw::Range;
  using KvRaw::Txn;

  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* ctx,
                                  const grpc::ByteBuffer* in,
                                  grpc::ByteBuffer* out) override {
    return h_.Serve<pb::RangeRequest, pb::RangeResponse>(
        ctx, in, out, [this](auto req, auto done) {
          h_.backend()->Range(std::move(req), std::move(done));
        });
  }
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* ctx,
                                const grpc::ByteBuffer* in,
                                grpc::ByteBuffer* out) override {
    return h_.Serve<pb::PutRequest, pb::PutResponse>(
        ctx, in, out, [this](auto req, auto done) {
          h_.backend()->Put(std::move(req), std::move(done));
        });
  }
  grpc::ServerUnaryReactor* DeleteRange(grpc::CallbackServerContext* ctx,
                                        const grpc::ByteBuffer* in,
                                        grpc::ByteBuffer* out) override {
    return h_.Serve<pb::DeleteRangeRequest, pb::DeleteRangeResponse>(
        ctx, in, out, [this](auto req, auto done) {
          h_.backend()->DeleteRange(std::move(req), std::move(done));
        });
  }
  grpc::ServerUnaryReactor* Txn(grpc::CallbackServerContext* ctx,
                                const grpc::ByteBuffer* in,
                                grpc::ByteBuffer* out) override {
    return h_.Serve<pb::TxnRequest, pb::TxnResponse>(
        ctx, in, out, [this](auto req, auto done) {
          h_.backend()->Txn(std::move(req), std::move(done));
        });
  }
  grpc::ServerUnaryReactor* Compact(grpc::CallbackServerContext* ctx,
                                    const grpc::ByteBuffer* in,
                                    grpc::ByteBuffer* out) override {
    return h_.Serve<pb::CompactionRequest, pb::CompactionResponse>(
        ctx, in, out, [this](auto req, auto done) {
          h_.backend()->Compact(std::move(req), std::move(done));
        });
  }

 private:
  Handler h_;
};

class EtcdServices::Maintenance final : public MaintenanceRaw {
 public:
  Maintenance(KvBackend* backend, const EtcdServiceOptions& options)
      : h_(backend, options) {}

  using MaintenanceRaw::Status;

  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* ctx,
                                   const grpc::ByteBuffer* in,
                                   grpc::ByteBuffer* out) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    pb::StatusRequest req;
    if (grpc::Status s = Parse(*in, &req); !s.ok()) {
      reactor->Finish(s);
      return reactor;
    }
    StatusInfo info = h_.backend()->Status();
    pb::StatusResponse resp;
    resp.mutable_header()->set_raft_term(info.raft_term);
    resp.set_version(info.version);
    resp.set_dbsize(info.db_size);
    resp.set_dbsizeinuse(info.db_size);
    resp.set_leader(info.leader_member_id);
    resp.set_raftindex(info.raft_index);
    resp.set_raftterm(info.raft_term);
    resp.set_raftappliedindex(info.raft_applied_index);
    h_.FinishWithRevision(reactor, out, std::move(resp));
    return reactor;
  }

 private:
  Handler h_;
};

class EtcdServices::Cluster final : public ClusterRaw {
 public:
  Cluster(KvBackend* backend, const EtcdServiceOptions& options)
      : h_(backend, options) {}

  using ClusterRaw::MemberList;

  grpc::ServerUnaryReactor* MemberList(grpc::CallbackServerContext* ctx,
                                       const grpc::ByteBuffer* in,
                                       grpc::ByteBuffer* out) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    pb::MemberListRequest req;
    if (grpc::Status s = Parse(*in, &req); !s.ok()) {
      reactor->Finish(s);
      return reactor;
    }
    pb::MemberListResponse resp;
    for (const MemberInfo& m : h_.backend()->Members()) {
      pb::Member* pm = resp.add_members();
      pm->set_id(m.id);
      pm->set_name(m.name);
      for (const std::string& u : m.peer_urls) pm->add_peerurls(u);
      for (const std::string& u : m.client_urls) pm->add_clienturls(u);
    }
    h_.FinishWithRevision(reactor, out, std::move(resp));
    return reactor;
  }

 private:
  Handler h_;
};

EtcdServices::EtcdServices(KvBackend* backend, EtcdServiceOptions options)
    : options_(options),
      kv_(std::make_unique<Kv>(backend, options)),
      maintenance_(std::make_unique<Maintenance>(backend, options)),
      cluster_(std::make_unique<Cluster>(backend, options)) {}

EtcdServices::~EtcdServices() = default;

void EtcdServices::RegisterOn(grpc::ServerBuilder* builder) {
  builder->RegisterService(kv_.get());
  builder->RegisterService(maintenance_.get());
  builder->RegisterService(cluster_.get());
  size_t recv = options_.max_request_bytes + kGrpcOverheadBytes;
  builder->SetMaxReceiveMessageSize(
      recv > static_cast<size_t>(INT_MAX) ? INT_MAX : static_cast<int>(recv));
  builder->SetMaxSendMessageSize(INT_MAX);
}

}  // namespace raftkv::server
