// KvBackend: what the etcd v3 API services (kv_service.h) ask of the store,
// and Forwarder: how a member hands a write to the leader's member.
//
// The gRPC services translate etcd requests into these calls and their
// results into gRPC answers; they hold no state of their own. Every call is
// asynchronous: `done` is called exactly once, on some internal thread (it
// must not block), with the response or an absl::Status whose code and
// message are etcd's (see src/mvcc/kv_store.h for the mapping; NotLeader /
// no-leader / leader-changed / timeout are Unavailable with etcd's messages
// "etcdserver: no leader", "etcdserver: leader changed", "etcdserver:
// request timed out").
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "etcdserverpb/rpc.pb.h"
#include "storepb/raft_cmdpb.pb.h"

namespace raftkv::server {

template <typename T>
using Done = std::function<void(absl::StatusOr<T>)>;

// What Maintenance.Status reports.
struct StatusInfo {
  uint64_t member_id = 0;
  uint64_t leader_member_id = 0;  // 0: no leader known
  uint64_t raft_term = 0;
  uint64_t raft_index = 0;
  uint64_t raft_applied_index = 0;
  int64_t db_size = 0;
  std::string version;  // the etcd API version we speak ("3.4.0")
};

// A member of the cluster (Cluster.MemberList).
struct MemberInfo {
  uint64_t id = 0;  // etcd member id
  std::string name;
  std::vector<std::string> peer_urls;
  std::vector<std::string> client_urls;
};

class KvBackend {
 public:
  virtual ~KvBackend() = default;
  // Writes go through the raft log (forwarded to the leader's member when
  // this member does not lead). Requests are validated first (the etcd
  // errors of mvcc::Validate*: empty key, too many operations, ...).
  virtual void Put(etcdserverpb::PutRequest req,
                   Done<etcdserverpb::PutResponse> done) = 0;
  virtual void DeleteRange(etcdserverpb::DeleteRangeRequest req,
                           Done<etcdserverpb::DeleteRangeResponse> done) = 0;
  // A read-only txn is served like a linearizable Range (no log entry).
  virtual void Txn(etcdserverpb::TxnRequest req,
                   Done<etcdserverpb::TxnResponse> done) = 0;
  virtual void Compact(etcdserverpb::CompactionRequest req,
                       Done<etcdserverpb::CompactionResponse> done) = 0;
  // Linearizable (default): after a ReadIndex round (concurrent reads share
  // one) this member waits until it applied the read index, then reads its
  // own kv engine. Serializable (req.serializable()): reads its kv engine
  // at once (may be stale).
  virtual void Range(etcdserverpb::RangeRequest req,
                     Done<etcdserverpb::RangeResponse> done) = 0;
  // This member's view; never blocks for long (no raft round).
  virtual StatusInfo Status() = 0;
  // The raft term for response headers, cheaply: called for every response,
  // so an implementation may answer a recently seen term (lagging a term
  // change by a moment, as any response racing an election may). The
  // default asks Status().
  virtual uint64_t RaftTerm() { return Status().raft_term; }
  virtual std::vector<MemberInfo> Members() = 0;
};

// Hands a command to another member (the leader) and returns its answer.
// Implemented by the peer transport (a unary RPC on the peer port).
class Forwarder {
 public:
  virtual ~Forwarder() = default;
  // Sends `req` to the member of store `store_id`, which proposes it to its
  // own store and answers with the command's response (including a
  // NotLeader error: it never forwards further). `done` is called exactly
  // once, on some internal thread. Errors: FailedPrecondition when the
  // call was certainly not sent (no connection to that member: the caller
  // may retry); any other error (Unavailable for transport failures and
  // `timeout_ms` expiring) leaves the command's fate unknown: the member
  // may have proposed it.
  virtual void Forward(
      uint64_t store_id, raft_cmdpb::RaftCmdRequest req, int timeout_ms,
      std::function<void(absl::StatusOr<raft_cmdpb::RaftCmdResponse>)>
          done) = 0;
};

}  // namespace raftkv::server
