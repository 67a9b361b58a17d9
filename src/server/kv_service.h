// The etcd v3 gRPC services of a raftkv-server member, on a KvBackend:
//
//   etcdserverpb.KV           Range, Put, DeleteRange, Txn, Compact
//   etcdserverpb.Maintenance  Status
//   etcdserverpb.Cluster      MemberList
//
// Methods etcd has and these services lack (Watch, Lease, Auth, the other
// Maintenance and Cluster methods) are not registered, so gRPC answers them
// UNIMPLEMENTED, as it does for any unknown method.
//
// The services are thin: they parse the request, hand it to the backend and
// answer with what it returns. They use gRPC's callback API, so no thread
// waits while raft works: a method returns at once and the backend's `done`
// finishes the call from whatever thread it runs on. The methods are
// registered "raw" (the generated WithRawCallbackMethod_* classes: the
// request arrives as bytes) so that the services parse requests themselves:
//
//   - a request that does not parse is answered INVALID_ARGUMENT (the typed
//     handler would answer INTERNAL before any of our code runs), and the
//     server keeps serving;
//   - the request-size limit is applied, as etcd applies it, to the
//     request's encoded size (see kMaxRequestBytes).
//
// Errors: the backend's absl::Status is mapped to a grpc::Status with the
// same code and the same message (etcd clients match on the message text,
// e.g. "etcdserver: key is not provided"; see ToGrpcStatus).
//
// Response headers, as etcd fills them: cluster_id and member_id come from
// EtcdServiceOptions; revision and raft_term are the backend's (a write's
// revision is the one it created; a read's the store's revision it read
// at). When the backend leaves raft_term at 0 the service fills it from
// KvBackend::RaftTerm(). Maintenance.Status and Cluster.MemberList take their
// revision from a serializable one-key Range.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"
#include "server/kv_backend.h"

namespace raftkv::server {

// etcd's default --max-request-bytes: a write request (Put, DeleteRange, a
// Txn that writes, Compact) whose encoding is larger is refused with
// InvalidArgument kErrRequestTooLarge before it reaches raft.
inline constexpr size_t kMaxRequestBytes = 3 * 1024 * 1024 / 2;
// What etcd adds to --max-request-bytes for gRPC's own receive limit: a
// message over max_request_bytes + kGrpcOverheadBytes is refused by gRPC
// itself with RESOURCE_EXHAUSTED, before any service code runs (as etcd).
inline constexpr size_t kGrpcOverheadBytes = 512 * 1024;
inline constexpr std::string_view kErrRequestTooLarge =
    "etcdserver: request is too large";

struct EtcdServiceOptions {
  // Reported in every response header.
  uint64_t cluster_id = 0;
  uint64_t member_id = 0;
  // See kMaxRequestBytes. Must be positive.
  size_t max_request_bytes = kMaxRequestBytes;
};

// The grpc::Status of the same code (absl and gRPC share the canonical
// codes) and message. OK maps to OK.
grpc::Status ToGrpcStatus(const absl::Status& status);

// The three services, ready to be registered on a grpc::ServerBuilder.
class EtcdServices {
 public:
  // `backend` is not owned and must outlive every call served: keep it
  // alive until the grpc::Server the services run on has shut down (its
  // Shutdown waits for every call to finish, i.e. for every `done`).
  EtcdServices(KvBackend* backend, EtcdServiceOptions options);
  ~EtcdServices();
  EtcdServices(const EtcdServices&) = delete;
  EtcdServices& operator=(const EtcdServices&) = delete;

  // Registers KV, Maintenance and Cluster on `builder` and sets its receive
  // limit to max_request_bytes + kGrpcOverheadBytes and its send limit to
  // the largest gRPC allows (etcd's settings). The services must outlive
  // the server built.
  void RegisterOn(grpc::ServerBuilder* builder);

  const EtcdServiceOptions& options() const { return options_; }

 private:
  class Kv;
  class Maintenance;
  class Cluster;

  EtcdServiceOptions options_;
  std::unique_ptr<Kv> kv_;
  std::unique_ptr<Maintenance> maintenance_;
  std::unique_ptr<Cluster> cluster_;
};

}  // namespace raftkv::server
